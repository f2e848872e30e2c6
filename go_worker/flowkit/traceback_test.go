package flowkit

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

func TestATracebackListsTheErrorChainOutermostFirst(t *testing.T) {
	inner := &fs.PathError{Op: "open", Path: "disk7", Err: fs.ErrPermission}
	err := fmt.Errorf("resize: %w", errors.Join(inner, errors.New("and a\nsecond line")))
	got := errorChain(err, "      ")
	want := "*fmt.wrapError: resize: open disk7: permission denied\\nand a\\nsecond line\n" +
		"      which wraps *errors.joinError: open disk7: permission denied\\nand a\\nsecond line\n" +
		"        which wraps *fs.PathError: open disk7: permission denied\n" +
		"          which wraps *errors.errorString: permission denied\n" +
		"        which wraps *errors.errorString: and a\\nsecond line"
	if got != want {
		t.Fatalf("chain =\n%s\nwant\n%s", got, want)
	}
}

// endless wraps itself for ever, as a buggy Unwrap may.
type endless struct{}

func (endless) Error() string   { return "again" }
func (e endless) Unwrap() error { return e }

func TestAChainThatDoesNotEndIsCutShort(t *testing.T) {
	got := errorChain(endless{}, "  ")
	if n := strings.Count(got, "flowkit.endless: again"); n != maxChain {
		t.Fatalf("%d errors listed:\n%s", n, got)
	}
	if !strings.HasSuffix(got, fmt.Sprintf("\n  (the chain is cut after %d errors)", maxChain)) {
		t.Fatalf("chain = %s", got)
	}
}

func TestAPanicsTracebackStartsAtThePanickingFrame(t *testing.T) {
	reg := NewRegistry()
	reg.Register("t.Boom", Takes(), boom, nil)
	_, failure := reg.Run(newCall(nil), &Request{Task: "t.Boom", Action: ActionExecute})
	lines := strings.Split(failure.TracebackStr, "\n")
	if len(lines) < 5 || !strings.HasPrefix(lines[0], `  File "`) || !strings.HasSuffix(lines[0], ", in github.com/flowkit/flowkit/go_worker/flowkit.boom") ||
		lines[1] != "    Go task t.Boom, execute, panicked with *errors.errorString: kaboom" ||
		!strings.HasPrefix(lines[2], "goroutine ") || !strings.HasPrefix(lines[3], "github.com/flowkit/flowkit/go_worker/flowkit.boom(") {
		t.Fatalf("traceback =\n%s", failure.TracebackStr)
	}
}

func boom(*Call) (any, error) { panic(errors.New("kaboom")) }

func TestAFailureOfItsOwnKeepsTheTracebackItCarries(t *testing.T) {
	reg := NewRegistry()
	reg.Register("t.T", Takes(), func(*Call) (any, error) {
		return nil, &Failure{ExceptionStr: "x", ExcTypeNames: GoErrorTypes, TracebackStr: "  File \"elsewhere.py\", line 1, in f\n"}
	}, nil)
	_, failure := reg.Run(newCall(nil), &Request{Task: "t.T", Action: ActionExecute})
	if failure.TracebackStr != "  File \"elsewhere.py\", line 1, in f\n" {
		t.Fatalf("traceback = %q", failure.TracebackStr)
	}
}
