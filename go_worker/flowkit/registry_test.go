package flowkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func newCall(arguments map[string]any) *Call {
	return &Call{Context: context.Background(), Task: "t.T", Arguments: arguments, Progress: func(float64, map[string]any) {}}
}

func TestRegistryRunsExecuteWithTheRequestArguments(t *testing.T) {
	reg := NewRegistry()
	reg.Register("t.Add", Takes("a", "b"), func(c *Call) (any, error) {
		a, err := c.Int("a")
		if err != nil {
			return nil, err
		}
		b, err := c.Float("b")
		if err != nil {
			return nil, err
		}
		return float64(a) + b, nil
	}, nil)
	request := &Request{Task: "t.Add", Action: ActionExecute, Arguments: map[string]any{"a": json.Number("2"), "b": json.Number("0.5")}}
	result, failure := reg.Run(newCall(request.Arguments), request)
	if failure != nil || result != 2.5 {
		t.Fatalf("result=%v failure=%v", result, failure)
	}
}

func TestRegistryPassesResultOrFailureAndFlowFailuresToRevert(t *testing.T) {
	reg := NewRegistry()
	type seen struct {
		result       any
		failure      *Failure
		flowFailures map[string]*Failure
	}
	var got seen
	reg.Register("t.T", Takes(), func(*Call) (any, error) { return nil, nil },
		func(_ *Call, result any, failure *Failure, flowFailures map[string]*Failure) (any, error) {
			got = seen{result, failure, flowFailures}
			return "reverted", nil
		})
	boom := NewFailure("boom", GoErrorTypes)
	flow := map[string]*Failure{"other": boom}
	result, failure := reg.Run(newCall(nil), &Request{Task: "t.T", Action: ActionRevert, Result: "vol-1", FlowFailures: flow})
	if failure != nil || result != "reverted" || got.result != "vol-1" || got.failure != nil || !reflect.DeepEqual(got.flowFailures, flow) {
		t.Fatalf("result=%v failure=%v seen=%+v", result, failure, got)
	}
	_, _ = reg.Run(newCall(nil), &Request{Task: "t.T", Action: ActionRevert, Failure: boom, FlowFailures: flow})
	if got.result != nil || got.failure != boom {
		t.Fatalf("seen=%+v", got)
	}
}

func TestRevertWithoutAFunctionReturnsNull(t *testing.T) {
	reg := NewRegistry()
	reg.Register("t.T", Takes(), func(*Call) (any, error) { return 1, nil }, nil)
	result, failure := reg.Run(newCall(nil), &Request{Task: "t.T", Action: ActionRevert})
	if result != nil || failure != nil {
		t.Fatalf("result=%v failure=%v", result, failure)
	}
}

func TestPlainErrorsBecomeGoErrorFailures(t *testing.T) {
	reg := NewRegistry()
	reg.Register("t.T", Takes(), func(*Call) (any, error) { return nil, fmt.Errorf("wrapped: %w", errors.New("inner")) }, nil)
	_, failure := reg.Run(newCall(nil), &Request{Task: "t.T", Action: ActionExecute})
	want := Failure{ExceptionStr: "wrapped: inner", ExcTypeNames: GoErrorTypes, ExcArgs: []any{"wrapped: inner"}}
	got := *failure
	got.TracebackStr = ""
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("failure = %#v", failure)
	}
	// The error chain, outermost first, under the task's function.
	if !strings.HasSuffix(failure.TracebackStr, "\n    Go task t.T, execute, returned *fmt.wrapError: wrapped: inner\n"+
		"      which wraps *errors.errorString: inner\n") ||
		!strings.Contains(failure.TracebackStr, "registry_test.go\", line ") {
		t.Fatalf("traceback = %q", failure.TracebackStr)
	}
}

func TestTaskErrorsKeepTheirTypeNamesEvenWhenWrapped(t *testing.T) {
	taskErr := &TaskError{Types: []string{"app.Quota", "builtins.Exception", "builtins.BaseException"}, Message: "over", Args: []any{"over", 3}}
	failure := FailureFromError(fmt.Errorf("context: %w", taskErr))
	// In TaskFlow's spelling, as the Python worker records a Python exception's.
	want := &Failure{ExceptionStr: "over", ExcTypeNames: []string{"app.Quota", "Exception"}, ExcArgs: []any{"over", 3}}
	if !reflect.DeepEqual(failure, want) {
		t.Fatalf("failure = %#v", failure)
	}
}

func TestTaskErrorDefaults(t *testing.T) {
	failure := FailureFromError(&TaskError{Types: []string{"app.Quota"}, Message: "over"})
	if got := strings.Join(failure.ExcTypeNames, ","); got != "app.Quota,Exception" {
		t.Errorf("names = %s", got)
	}
	if !reflect.DeepEqual(failure.ExcArgs, []any{"over"}) {
		t.Errorf("args = %v", failure.ExcArgs)
	}
	if got := FailureFromError(&TaskError{Message: "x"}).ExcTypeNames; !reflect.DeepEqual(got, GoErrorTypes) {
		t.Errorf("names without Types = %v", got)
	}
}

func TestPanicsBecomeGoPanicFailuresWithTheStack(t *testing.T) {
	reg := NewRegistry()
	reg.Register("t.T", Takes(), func(*Call) (any, error) {
		var m map[string]int
		m["x"] = 1 // panics
		return nil, nil
	}, nil)
	result, failure := reg.Run(newCall(nil), &Request{Task: "t.T", Action: ActionExecute})
	if result != nil || failure == nil {
		t.Fatalf("result=%v failure=%v", result, failure)
	}
	if !reflect.DeepEqual(failure.ExcTypeNames, GoPanicTypes) || !strings.Contains(failure.ExceptionStr, "nil map") {
		t.Fatalf("failure = %#v", failure)
	}
	if !strings.Contains(failure.TracebackStr, "goroutine") {
		t.Fatalf("traceback = %q", failure.TracebackStr)
	}
}

func TestUnknownTasksFailWithNotFound(t *testing.T) {
	_, failure := NewRegistry().Run(newCall(nil), &Request{Task: "t.Missing", Action: ActionExecute})
	if failure == nil || !failure.HasType("flowkit.exceptions.NotFound") {
		t.Fatalf("failure = %#v", failure)
	}
}

func TestRegisterRefusesDuplicatesAndEmptyNames(t *testing.T) {
	reg := NewRegistry()
	exec := func(*Call) (any, error) { return nil, nil }
	reg.Register("t.T", Takes(), exec, nil)
	for name, register := range map[string]func(){
		"duplicate":  func() { reg.Register("t.T", Takes(), exec, nil) },
		"empty name": func() { reg.Register("", Takes(), exec, nil) },
		"nil exec":   func() { reg.Register("t.U", Takes(), nil, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			register()
		}()
	}
	if got := reg.Names(); !reflect.DeepEqual(got, []string{"t.T"}) {
		t.Fatalf("names = %v", got)
	}
}

func TestArgumentHelpersNameTheProblemAsATypeError(t *testing.T) {
	call := newCall(map[string]any{"n": json.Number("2.0"), "s": "x", "f": json.Number("1e3"), "big": json.Number("1.5")})
	if n, err := call.Int("n"); err != nil || n != 2 {
		t.Errorf("Int(n) = %v, %v", n, err)
	}
	if f, err := call.Float("f"); err != nil || f != 1000 {
		t.Errorf("Float(f) = %v, %v", f, err)
	}
	for name, get := range map[string]func() error{
		"missing":        func() error { _, err := call.Int("nope"); return err },
		"fraction":       func() error { _, err := call.Int("big"); return err },
		"string for int": func() error { _, err := call.Int("s"); return err },
		"int for string": func() error { _, err := call.String("n"); return err },
		"string for num": func() error { _, err := call.Float("s"); return err },
	} {
		err := get()
		var taskErr *TaskError
		if !errors.As(err, &taskErr) || !reflect.DeepEqual(taskErr.Types, TypeErrorTypes) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestProgressThrottleSendsABurstThenOnePerIntervalAndTheLastValueOnFlush(t *testing.T) {
	var sent []float64
	now := time.Unix(1000, 0)
	th := newThrottle(func() time.Time { return now }, func(p float64, _ map[string]any) { sent = append(sent, p) })
	for i := 0; i < progressBurst; i++ {
		th.report(0.01, nil) // the whole burst goes out at once
	}
	th.report(0.2, nil)        // no report left: held back
	th.report(7, nil)          // clamped to 1, replaces 0.2
	th.report(math.NaN(), nil) // ignored
	now = now.Add(progressInterval - time.Millisecond)
	th.report(0.4, nil) // not quite one earned: replaces 1
	now = now.Add(time.Millisecond)
	th.report(0.5, nil) // one earned: sent (0.4 is dropped)
	th.report(0.9, nil) // held back again ...
	th.flush()          // ... until the task ends
	th.report(0.3, nil) // after flush: ignored
	now = now.Add(time.Hour)
	th.flush()
	want := []float64{}
	for i := 0; i < progressBurst; i++ {
		want = append(want, 0.01)
	}
	want = append(want, 0.5, 0.9)
	if !reflect.DeepEqual(sent, want) {
		t.Fatalf("sent = %v, want %v", sent, want)
	}
}

func TestProgressThrottleEarnsBackAtMostABurst(t *testing.T) {
	sent := 0
	now := time.Unix(1000, 0)
	th := newThrottle(func() time.Time { return now }, func(float64, map[string]any) { sent++ })
	now = now.Add(time.Hour) // idle for long: still only a burst at once
	for i := 0; i < 3*progressBurst; i++ {
		th.report(0.5, nil)
	}
	if sent != progressBurst {
		t.Fatalf("sent %d reports after an idle hour, want %d", sent, progressBurst)
	}
}
