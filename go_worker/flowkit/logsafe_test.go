package flowkit

import "testing"

func TestLogSafeEscapesWhatBreaksALineAndKeepsPrintableText(t *testing.T) {
	cases := map[string]string{
		"echo":                        "echo",
		"tâche 日本語 ⚙":                 "tâche 日本語 ⚙",
		"a\u00a0b":                    "a\u00a0b",
		`C:\tasks\n`:                  `C:\tasks\n`,
		"ok\n2026-12-06 ERROR forged": `ok\n2026-12-06 ERROR forged`,
		"a\rb\tc":                     `a\rb\tc`,
		"\x1b[2J\x00\x7f\u0085":       `\x1b[2J\x00\x7f\x85`,
		"a\u2028b\u2029c":             `a\u2028b\u2029c`,
		"safe\u202eexe.txt":           `safe\u202eexe.txt`,
		"bad\xffbyte":                 `bad\xffbyte`,
	}
	for name, want := range cases {
		if got := logSafe(name); got != want {
			t.Errorf("logSafe(%q) = %q, want %q", name, got, want)
		}
	}
}
