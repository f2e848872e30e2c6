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

func TestANegativeGraceIsRefusedAsThePythonWorkerRefusesIt(t *testing.T) {
	for _, value := range []string{"-1", "-0.5", "-2s"} {
		code, stderr := runCapturing(t, "--redis", "redis://127.0.0.1:1/0", "--topic", "t", "--grace", value)
		if code != 2 || !strings.Contains(stderr, "--grace must not be negative") {
			t.Errorf("--grace %s: status %d, stderr %q; want 2 naming --grace", value, code, stderr)
		}
	}
	// 0 stays "no grace": it gets past the checks to NewWorker, which refuses the bad URL scheme.
	code, stderr := runCapturing(t, "--redis", "nosuch://127.0.0.1:1/0", "--topic", "t", "--grace", "0")
	if code != 2 || strings.Contains(stderr, "--grace") {
		t.Errorf("--grace 0: status %d, stderr %q; want it accepted", code, stderr)
	}
}

func TestTheRedisURLIsReadFromAFileGivenAsAtPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "url")
	// A URL only NewWorker refuses (before dialing), naming it masked: proof it was read from the file.
	if err := os.WriteFile(file, []byte("  nosuch://:hunter2@127.0.0.1:1/0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr := runCapturing(t, "--redis", "@"+file, "--topic", "t")
	if code != 2 || !strings.Contains(stderr, `nosuch://:***@127.0.0.1:1/0`) || strings.Contains(stderr, "hunter2") {
		t.Errorf("--redis @%s: status %d, stderr %q; want 2 and the file's URL, masked", file, code, stderr)
	}
	for _, c := range []struct{ content, want string }{
		{"", "is empty"},
		{"redis://a/0\nredis://b/0", "holds more than one line"},
	} {
		if err := os.WriteFile(file, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stderr := runCapturing(t, "--redis", "@"+file, "--topic", "t")
		if code != 2 || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, file) {
			t.Errorf("file %q: status %d, stderr %q; want 2 and %q naming the file", c.content, code, stderr, c.want)
		}
	}
	missing := filepath.Join(dir, "missing")
	code, stderr = runCapturing(t, "--redis", "@"+missing, "--topic", "t")
	if code != 2 || !strings.Contains(stderr, "cannot read the URL from file") || !strings.Contains(stderr, missing) {
		t.Errorf("missing file: status %d, stderr %q", code, stderr)
	}
}

func TestCountsAndTimesBelowOneAreRefusedAsThePythonWorkerRefusesThem(t *testing.T) {
	// Options takes 0 for "the default"; on the command line a 0 is a mistake,
	// and serving with the default instead would hide it.
	for _, c := range []struct{ flag, value, want string }{
		{"--concurrency", "0", "--concurrency must be at least 1, not 0"},
		{"--concurrency", "-2", "--concurrency must be at least 1, not -2"},
		{"--max-deliveries", "0", "--max-deliveries must be at least 1, not 0"},
		{"--max-message-bytes", "0", "--max-message-bytes must be at least 1, not 0"},
		{"--heartbeat", "0", "--heartbeat must be above zero, not 0s"},
		{"--heartbeat", "-1s", "--heartbeat must be above zero, not -1s"},
		{"--visibility-timeout", "0", "--visibility-timeout must be above zero, not 0s"},
	} {
		code, stderr := runCapturing(t, "--redis", "redis://127.0.0.1:1/0", "--topic", "t", c.flag, c.value)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s %s: status %d, stderr %q; want 2 and %q", c.flag, c.value, code, stderr, c.want)
		}
	}
}
