package flowkit

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// bidiControls reorder the text after them on screen ("Trojan Source"): a log
// line could show a name other than the one it holds.
var bidiControls = map[rune]bool{
	0x061c: true, 0x200e: true, 0x200f: true,
	0x202a: true, 0x202b: true, 0x202c: true, 0x202d: true, 0x202e: true,
	0x2066: true, 0x2067: true, 0x2068: true, 0x2069: true,
}

// escapes are the control characters written the way Go and Python write them.
var escapes = map[rune]string{'\n': `\n`, '\r': `\r`, '\t': `\t`}

// logSafe returns s as text that stays on its log line: control characters
// (C0, DEL, C1), line and paragraph separators, bidi controls and bytes that
// are not UTF-8 are escaped (\n, \x1b, \u2028). For names another process
// sent (a request's id, task and atom name; a consumer's name read from
// Redis), wherever they go into a log line or a failure's text: the protocol
// accepts any string, as TaskFlow does, so such a name is not refused, only
// its showing made safe. A Logger given in Options need not quote its
// messages (slog's TextHandler does; a plain one does not). Printable text,
// however un-ASCII, comes back as it is, backslashes too: the same rule as the
// Python side's flowkit._utils.text.log_safe.
func logSafe(s string) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if needsEscape(r, size) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case escapes[r] != "":
			b.WriteString(escapes[r])
		case needsEscape(r, size) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case needsEscape(r, size):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(r rune, size int) bool {
	if r == utf8.RuneError && size == 1 {
		return true // a byte that is no UTF-8
	}
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || bidiControls[r]
}
