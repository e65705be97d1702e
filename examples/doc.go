// Package examples holds no code: it holds the example policy
// (policy.yaml), and a test that keeps the README's Go snippets compiled.
//
// Every ```go block of README.md must appear, verbatim (indented by one tab),
// in one example file of the module (example*_test.go), where the compiler
// checks it; its import lines must appear in that file's imports:
//
//	go test ./examples/
package examples
