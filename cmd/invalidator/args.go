package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/tasks"
)

// Argument checks that report a usage error (exit code 2).

func noArgs(cmd *cobra.Command, args []string) error { return asUsage(cmd, cobra.NoArgs(cmd, args)) }

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error { return asUsage(cmd, cobra.ExactArgs(n)(cmd, args)) }
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error { return asUsage(cmd, cobra.MinimumNArgs(n)(cmd, args)) }
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error { return asUsage(cmd, cobra.MaximumNArgs(n)(cmd, args)) }
}

// asUsage adds the command's usage line, which names the arguments that
// cobra's message only counts.
func asUsage(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	return &usageError{fmt.Errorf("%w; usage: %s", err, cmd.UseLine())}
}

// group makes a command that only holds subcommands answer an unknown
// subcommand with a usage error (exit 2) rather than its help and exit 0.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	return cmd
}

// Text input: keys and NAME=VALUE parameters typed on a command line or read
// from a file.
//
// A key is bytes, and binary keys are legitimate, but a key given as text
// is text. A control character in it is far more likely a mangled line
// ending than part of the key: "k\r" is what a file saved on Windows, or
// the output of `docker exec -t`, leaves behind, and deleting "k\r" leaves
// "k" cached with no error anywhere. The same goes for a byte that is not
// UTF-8 (a file in a Windows code page, or UTF-16), an invisible byte-order
// mark, and a space at either end (copied from a table, or "id= 7"). So
// text is checked, never cleaned: anything of the above is refused with the
// argument or line named and what to do, and --hex carries any bytes.
// Refusing loses nothing; silently deleting a different key is the bug.
//
// The one normalisation is the line ending itself: "\r\n" ends a line as
// "\n" does, which is unambiguous because a text key cannot hold "\r".

// input is one key or parameter as given, and where it was given
// ("argument 2", "line 7 of standard input"), for errors.
type input struct {
	where string
	text  string
}

// maxInputLine bounds a line of standard input: the hex of the longest key,
// a CRLF and a byte-order mark fit with room to spare. A longer line cannot
// be a key, and is refused before it is read whole.
const maxInputLine = 64 << 10

// argInputs labels command-line arguments.
func argInputs(args []string) []input {
	in := make([]input, len(args))
	for i, a := range args {
		in[i] = input{where: fmt.Sprintf("argument %d", i+1), text: a}
	}
	return in
}

// readLines splits standard input into lines. A line ends at "\n" or
// "\r\n"; the last one may end at EOF instead. A UTF-8 byte-order mark at
// the start (Notepad writes one) is dropped. Empty lines are skipped; any
// other line is returned as it is, for decodeKeys to check.
func readLines(r io.Reader) ([]input, error) {
	br := bufio.NewReaderSize(r, maxInputLine)
	var lines []input
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, usagef("line %d of standard input is longer than %d bytes, which no key is (is it a binary file? give binary keys hex-encoded with --hex)",
				n, maxInputLine)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		if n == 1 {
			if bytes.HasPrefix(line, []byte("\xff\xfe")) || bytes.HasPrefix(line, []byte("\xfe\xff")) {
				return nil, usagef("standard input is UTF-16 (it starts with a UTF-16 byte-order mark, as Windows PowerShell writes with '>'): convert it to UTF-8, e.g. with iconv -f UTF-16 -t UTF-8")
			}
			line = bytes.TrimPrefix(line, []byte("\ufeff"))
		}
		if text, ended := bytes.CutSuffix(line, []byte("\n")); ended {
			line = bytes.TrimSuffix(text, []byte("\r"))
		}
		if len(line) > 0 {
			lines = append(lines, input{where: fmt.Sprintf("line %d of standard input", n), text: string(line)})
		}
		if err != nil { // io.EOF
			return lines, nil
		}
	}
}

// decodeKeys turns inputs into keys: as text, checked by checkText, or with
// isHex as hex, which can carry any bytes. Every key is the exact bytes
// given, or there is a usage error naming the input.
func decodeKeys(in []input, isHex bool) ([]string, error) {
	keys := make([]string, 0, len(in))
	for _, k := range in {
		key := k.text
		if isHex {
			var err error
			if key, err = decodeHexKey(k.text); err != nil {
				return nil, usagef("%s: %v", k.where, err)
			}
		} else if err := checkText(key); err != nil {
			return nil, usagef("%s: key %s %v; for a key that really holds such bytes, give it hex-encoded with --hex",
				k.where, quoteInput(key), err)
		}
		if len(key) > tasks.MaxKeyBytes {
			return nil, usagef("%s: the key is %d bytes, more than the %d a key may have (keys are never truncated)",
				k.where, len(key), tasks.MaxKeyBytes)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// decodeHexKey decodes one hex-encoded key. Spaces, tabs and carriage
// returns around it are dropped: none is a hex digit, so dropping them
// cannot change the key. Digits may be upper or lower case. Anything else
// that is not a digit, and an odd number of digits (which half byte is
// missing?), is refused.
func decodeHexKey(s string) (string, error) {
	h := strings.Trim(s, " \t\r")
	if h == "" {
		return "", errors.New("no hex digits: give each key as one run of hex digits, e.g. 6b6579 for \"key\"")
	}
	for i := 0; i < len(h); i++ {
		if !isHexDigit(h[i]) {
			r, _ := utf8.DecodeRuneInString(h[i:])
			return "", fmt.Errorf("hex key %s: %q at byte %d is not a hex digit: give each key as one run of hex digits, e.g. 6b6579 for \"key\", with no spaces or 0x inside",
				quoteInput(h), r, i+1)
		}
	}
	if len(h)%2 != 0 {
		return "", fmt.Errorf("hex key %s has an odd number of digits (%d): every byte takes two, so a digit is missing",
			quoteInput(h), len(h))
	}
	b, err := hex.DecodeString(h)
	if err != nil { // unreachable after the checks above; kept so no error is ever dropped
		return "", fmt.Errorf("hex key %s: %w", quoteInput(h), err)
	}
	return string(b), nil
}

// hexWraps are the widths, in hex digits, at which common tools wrap a hex
// dump: xxd -p at 30 bytes a line, basenc --base16 at 76 columns. A key
// longer than that comes out as several lines, and read one key per line it
// would become several keys, none of them the real one.
var hexWraps = []struct {
	digits int
	tool   string // as typed
	fix    string // the tool's one-key-per-line form
}{
	{60, "xxd -p", `"xxd -p -c 0", or, for a single key, "xxd -p | tr -d '\n'" (which works with any xxd)`},
	{76, "basenc --base16", `"basenc --base16 -w0"`},
}

// refuseWrappedHex refuses hex input that may be a wrapped dump: a key of
// exactly a wrap width with another key after it. A real key of 30 bytes
// followed by another key looks the same as a 31-byte key that xxd -p
// wrapped, so nothing can tell them apart; refusing loses nothing, while
// guessing "one key" or "two keys" wrong leaves a key cached.
// --one-key-per-line (the caller skips this check) settles it.
func refuseWrappedHex(in []input) error {
	for _, k := range in[:max(len(in)-1, 0)] {
		h := strings.Trim(k.text, " \t\r")
		for _, w := range hexWraps {
			if len(h) == w.digits && isHexRun(h) {
				return usagef("%s is exactly %d hex digits and more keys follow: that is how %s wraps a key longer than %d bytes, "+
					"and read one key per line, such a key would become several keys, none of them the real one. "+
					"Give each key on one line: %s. If every line really is a whole key, add --one-key-per-line",
					k.where, w.digits, w.tool, w.digits/2, w.fix)
			}
		}
	}
	return nil
}

// isHexRun reports whether s is nothing but hex digits.
func isHexRun(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// checkText reports why s is not plain text, or nil: what checks a key or a
// parameter value given as text (see the comment above input). The reason
// reads after "key ..." or "value ...".
func checkText(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if !utf8.ValidString(s) {
		i := 0
		for i < len(s) {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			i += size
		}
		return fmt.Errorf("is not valid UTF-8 (byte %d is 0x%02x; is the input in a Windows code page or UTF-16?): convert it to UTF-8", i+1, s[i])
	}
	for i, r := range s {
		switch {
		case r == '\r':
			return fmt.Errorf("holds a carriage return (\\r) at byte %d, as a Windows (CRLF) line ending leaves behind: convert the input with dos2unix", i+1)
		case r == '\n':
			return fmt.Errorf("holds a line feed (\\n) at byte %d", i+1)
		case r == '\t':
			return fmt.Errorf("holds a tab at byte %d", i+1)
		case r == 0:
			return fmt.Errorf("holds a NUL byte at byte %d", i+1)
		case unicode.IsControl(r), r == '\u2028', r == '\u2029':
			return fmt.Errorf("holds the control character U+%04X at byte %d", r, i+1)
		case r == '\ufeff':
			return fmt.Errorf("holds an invisible byte-order mark (U+FEFF) at byte %d, as a file saved with a BOM starts with: remove it", i+1)
		}
	}
	if r, _ := utf8.DecodeRuneInString(s); unicode.IsSpace(r) {
		if strings.TrimLeftFunc(s, unicode.IsSpace) == "" {
			return errors.New("holds only spaces")
		}
		return errors.New("starts with a space")
	}
	if r, _ := utf8.DecodeLastRuneInString(s); unicode.IsSpace(r) {
		return errors.New("ends with a space")
	}
	return nil
}

// quoteInput quotes s for an error, shortened: the user gave it, but it may
// be long.
func quoteInput(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// parseParams turns NAME=VALUE arguments into template parameters or event
// attributes. It splits at the first '=' and changes nothing. A name must be
// a parameter name ([A-Za-z_][A-Za-z0-9_]*); a value must be text that
// checkText accepts, not start with '=' ("id==7") and not be empty ("id= 7",
// where the shell makes "7" an argument of its own). Anything else, and a
// name given twice, is a usage error, since the value would render a key
// that nobody caches.
func parseParams(args []string) (map[string]string, error) {
	params := make(map[string]string, len(args))
	for i, arg := range args {
		name, value, ok := strings.Cut(arg, "=")
		if !ok {
			hint := ": write NAME=VALUE"
			if i > 0 && strings.HasSuffix(args[i-1], "=") {
				hint = fmt.Sprintf(": is it the value of %q? write %s%s, with no space after '='", args[i-1], args[i-1], arg)
			}
			return nil, usagef("parameter %s is not NAME=VALUE%s", quoteInput(arg), hint)
		}
		if !isParamName(name) {
			return nil, usagef("parameter %s: %s is not a parameter name (letters, digits and '_', not starting with a digit; no spaces around '=')",
				quoteInput(arg), quoteInput(name))
		}
		if value == "" {
			return nil, usagef("parameter %s has an empty value: write %s=VALUE, with no space after '='", quoteInput(arg), name)
		}
		if err := checkText(value); err != nil {
			return nil, usagef("parameter %s: value %v; the CLI takes values as plain text, so send a value that really holds such bytes from code (enqueue.Client)",
				quoteInput(arg), err)
		}
		if strings.HasPrefix(value, "=") {
			return nil, usagef("parameter %s: the value starts with '=': write %s=VALUE with one '=' (a value that really starts with '=' can be sent from code, with enqueue.Client)",
				quoteInput(arg), name)
		}
		if _, dup := params[name]; dup {
			return nil, usagef("parameter %q given twice: give each once", name)
		}
		params[name] = value
	}
	return params, nil
}

// isParamName reports whether s matches [A-Za-z_][A-Za-z0-9_]*, the names
// of template parameters and event attributes.
func isParamName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0) {
			return false
		}
	}
	return true
}
