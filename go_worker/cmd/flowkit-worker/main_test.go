package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCapturing runs the command with args and returns its status and what it wrote to stderr.
func runCapturing(t *testing.T, args ...string) (int, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stderr")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = file
	code := run(args)
	os.Stderr = saved
	file.Close()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return code, string(text)
}

func TestTimesAreGoDurationsOrPlainSecondsAsThePythonWorkerTakes(t *testing.T) {
	// NewWorker refuses a visibility timeout not above the heartbeat, and says
	// both as it read them, before anything dials Redis.
	for _, c := range []struct {
		heartbeat, visibility, want string
	}{
		{"2", "1", "visibility timeout (1s) must exceed heartbeat (2s)"},
		{"1500ms", "1.2", "visibility timeout (1.2s) must exceed heartbeat (1.5s)"},
		{"0.5", "250ms", "visibility timeout (250ms) must exceed heartbeat (500ms)"},
	} {
		code, stderr := runCapturing(t, "--redis", "redis://127.0.0.1:1/0", "--topic", "t",
			"--heartbeat", c.heartbeat, "--visibility-timeout", c.visibility, "--grace", "0.1")
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("--heartbeat %s --visibility-timeout %s: status %d, stderr %q; want 2 and %q",
				c.heartbeat, c.visibility, code, stderr, c.want)
		}
	}
	code, stderr := runCapturing(t, "--redis", "redis://127.0.0.1:1/0", "--topic", "t", "--grace", "soon")
	if code != 2 || !strings.Contains(stderr, `invalid value "soon" for flag -grace`) {
		t.Errorf("--grace soon: status %d, stderr %q", code, stderr)
	}
}
