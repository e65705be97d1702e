package examples_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// snippet is one ```go block of the README.
type snippet struct {
	line     int      // where the block starts in the README, 1-based
	segments []string // the import lines and the code, each to find verbatim
}

// goSnippets returns the ```go blocks of markdown, each split into its
// import lines (as they are in a file's import block) and its code (every
// line indented by one tab, as it is in an example function's body).
func goSnippets(markdown string) []snippet {
	var out []snippet
	lines := strings.Split(markdown, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```go" {
			continue
		}
		s := snippet{line: i + 1}
		var imports, code []string
		inImport := false
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			l := lines[i]
			switch {
			case l == "import (":
				inImport = true
			case inImport && l == ")":
				inImport = false
			case inImport:
				imports = append(imports, l) // already indented as in a file
			default:
				code = append(code, indent(l))
			}
		}
		for _, seg := range [][]string{imports, code} {
			if text := strings.TrimSpace(strings.Join(seg, "\n")); text != "" {
				s.segments = append(s.segments, strings.Join(trimBlank(seg), "\n"))
			}
		}
		out = append(out, s)
	}
	return out
}

func indent(l string) string {
	if l == "" {
		return ""
	}
	return "\t" + l
}

// trimBlank drops leading and trailing empty lines.
func trimBlank(ls []string) []string {
	for len(ls) > 0 && ls[0] == "" {
		ls = ls[1:]
	}
	for len(ls) > 0 && ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1]
	}
	return ls
}

// exampleFiles reads every example*_test.go of the module below root.
func exampleFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		name := d.Name()
		if d.IsDir() || !strings.HasPrefix(name, "example") || !strings.HasSuffix(name, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[path] = string(b)
		return nil
	})
	require.NoError(t, err)
	return files
}

// TestReadmeGoSnippetsAreCompiledExamples fails when a Go snippet of the
// README is not an example the compiler checks: the README's code once
// called a two-valued function as one value and declared a variable twice.
func TestReadmeGoSnippetsAreCompiledExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	snippets := goSnippets(string(readme))
	require.NotEmpty(t, snippets, "README.md has no ```go block: has the test lost its way?")
	files := exampleFiles(t, "..")
	require.NotEmpty(t, files)

	for _, s := range snippets {
		found := ""
		for path, src := range files {
			all := true
			for _, seg := range s.segments {
				if !strings.Contains(src, seg) {
					all = false
					break
				}
			}
			if all {
				found = path
				break
			}
		}
		if found == "" {
			t.Errorf("README.md:%d: this Go snippet is in no example*_test.go (indented by one tab inside an Example function, its imports in the file's imports); "+
				"copy it there, make it compile, and copy the gofmt'ed code back:\n%s",
				s.line, strings.Join(s.segments, "\n\t---\n"))
		}
	}
}

func TestGoSnippetsSplitsImportsFromCode(t *testing.T) {
	md := "text\n```go\nimport (\n\t\"fmt\"\n)\n\nfmt.Println(1)\n\nx := 2\n```\n```sh\nls\n```\n"
	got := goSnippets(md)
	require.Len(t, got, 1)
	require.Equal(t, 2, got[0].line)
	require.Equal(t, []string{"\t\"fmt\"", "\tfmt.Println(1)\n\n\tx := 2"}, got[0].segments)
}
