package flowkit

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// argsCase is one request for a task declaring some arguments, and the
// TypeError message Python's call of such an execute gives ("" for none).
type argsCase struct {
	args      Args
	arguments map[string]any
	message   string
}

func TestArgumentsATaskDoesNotTakeOrMissesFailItAsPythonsCallWould(t *testing.T) {
	one := json.Number("1")
	for name, c := range map[string]argsCase{
		"exact":               {Takes("a", "b"), map[string]any{"a": one, "b": one}, ""},
		"optional absent":     {Args{Required: []string{"a"}, Optional: []string{"b"}}, map[string]any{"a": one}, ""},
		"optional given":      {Args{Required: []string{"a"}, Optional: []string{"b"}}, map[string]any{"a": one, "b": one}, ""},
		"others taken":        {Args{Required: []string{"a"}, Others: true}, map[string]any{"a": one, "z": one}, ""},
		"none taken, none":    {Takes(), map[string]any{}, ""},
		"unexpected":          {Takes("a"), map[string]any{"a": one, "extra": one}, "Task.execute() got an unexpected keyword argument 'extra'"},
		"none taken, one":     {Takes(), map[string]any{"x": one}, "Task.execute() got an unexpected keyword argument 'x'"},
		"two unexpected":      {Takes("a"), map[string]any{"a": one, "zz": one, "yy": one}, "Task.execute() got an unexpected keyword argument 'yy'"}, // no JSON text: by name
		"unexpected first":    {Takes("a"), map[string]any{"extra": one}, "Task.execute() got an unexpected keyword argument 'extra'"},
		"missing one":         {Takes("a", "b"), map[string]any{"a": one}, "Task.execute() missing 1 required positional argument: 'b'"},
		"missing two":         {Takes("b", "a"), map[string]any{}, "Task.execute() missing 2 required positional arguments: 'b' and 'a'"},
		"missing three":       {Takes("a", "b", "c"), map[string]any{}, "Task.execute() missing 3 required positional arguments: 'a', 'b', and 'c'"},
		"others, missing one": {Args{Required: []string{"a"}, Others: true}, map[string]any{"z": one}, "Task.execute() missing 1 required positional argument: 'a'"},
	} {
		t.Run(name, func(t *testing.T) {
			ran := false
			reg := NewRegistry()
			reg.Register("my.app.Task", c.args, func(*Call) (any, error) { ran = true; return "ran", nil }, nil)
			request := &Request{Task: "my.app.Task", Action: ActionExecute, Arguments: c.arguments}
			result, failure := reg.Run(newCall(c.arguments), request)
			if c.message == "" {
				if failure != nil || result != "ran" {
					t.Fatalf("result=%v failure=%+v", result, failure)
				}
				return
			}
			if ran {
				t.Fatal("the task ran with arguments it does not take")
			}
			assertNotCalled(t, failure, c.message)
		})
	}
}

// assertNotCalled checks failure is the TypeError message of a function
// that was not called, whose traceback says so.
func assertNotCalled(t *testing.T, failure *Failure, message string) {
	t.Helper()
	if failure == nil {
		t.Fatalf("no failure, want %q", message)
	}
	got := *failure
	got.TracebackStr = ""
	want := Failure{ExceptionStr: message, ExcTypeNames: TypeErrorTypes, ExcArgs: []any{message}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("failure = %+v, want %+v", got, want)
	}
	if !strings.Contains(failure.TracebackStr, "\n    Go task my.app.Task, ") ||
		!strings.HasSuffix(failure.TracebackStr, ", not called: the request's arguments do not fit those it is registered with\n") {
		t.Fatalf("traceback = %q", failure.TracebackStr)
	}
}

func TestOfSeveralUnexpectedArgumentsTheFirstTheRequestListsIsNamed(t *testing.T) {
	// Python's call names the first unexpected keyword it is given; a Go map has no order.
	reg := NewRegistry()
	reg.Register("t.T", Takes("a"), func(*Call) (any, error) { return nil, nil }, nil)
	for _, order := range [][]string{{"zz", "a", "yy"}, {"yy", "zz", "a"}} {
		body := fmt.Sprintf(`{"v":1,"type":"request","id":"r1","reply_to":"flowkit:replies:e",`+
			`"action":"execute","task":"t.T","name":"atom","arguments":{"%s":1,"%s":1,"%s":1},`+
			`"sent_at":1.0,"deadline":2.0}`, order[0], order[1], order[2])
		message, err := DecodeBody([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		request := message.Request
		_, failure := reg.Run(newCall(request.Arguments), request)
		want := "T.execute() got an unexpected keyword argument '" + order[0] + "'"
		if order[0] == "a" {
			want = "T.execute() got an unexpected keyword argument '" + order[1] + "'"
		}
		if failure == nil || failure.ExceptionStr != want {
			t.Errorf("order %v: failure = %+v, want %q", order, failure, want)
		}
	}
}

func TestArgumentsARevertDoesNotTakeOrMissesFailItAsPythonsCallWould(t *testing.T) {
	// The engine sends what its stub's revert names; a Python revert(self, a,
	// result, flow_failures) called with others raises before it runs.
	one := json.Number("1")
	for name, c := range map[string]argsCase{
		"as execute's":             {Takes("a"), map[string]any{"a": one}, ""},
		"as execute's, unexpected": {Takes("a"), map[string]any{"a": one, "other": one}, "Task.revert() got an unexpected keyword argument 'other'"},
		"as execute's, missing":    {Takes("a"), map[string]any{}, "Task.revert() missing 1 required positional argument: 'a'"},
		"its own":                  {Takes("a").WithRevert(Takes("b")), map[string]any{"b": one}, ""},
		"its own, given execute's": {Takes("a").WithRevert(Takes("b")), map[string]any{"a": one}, "Task.revert() got an unexpected keyword argument 'a'"},
		"its own, takes any":       {Takes("a").WithRevert(Args{Others: true}), map[string]any{"z": one}, ""},
		"its own, optional":        {Takes("a").WithRevert(Args{Optional: []string{"a"}}), map[string]any{}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			ran := false
			reg := NewRegistry()
			reg.Register("my.app.Task", c.args, func(*Call) (any, error) { return nil, nil },
				func(*Call, any, *Failure, map[string]*Failure) (any, error) { ran = true; return "reverted", nil })
			request := &Request{Task: "my.app.Task", Action: ActionRevert, Arguments: c.arguments}
			result, failure := reg.Run(newCall(c.arguments), request)
			if c.message == "" {
				if failure != nil || result != "reverted" {
					t.Fatalf("result=%v failure=%+v", result, failure)
				}
				return
			}
			if ran {
				t.Fatal("the revert ran with arguments it does not take")
			}
			assertNotCalled(t, failure, c.message)
		})
	}
}

func TestATaskWithoutARevertTakesAnyArgumentsInItsRevert(t *testing.T) {
	// As Python's default revert(self, *args, **kwargs), which does nothing.
	reg := NewRegistry()
	reg.Register("t.T", Takes("a"), func(*Call) (any, error) { return nil, nil }, nil)
	arguments := map[string]any{"other": "x"}
	result, failure := reg.Run(newCall(arguments), &Request{Task: "t.T", Action: ActionRevert, Arguments: arguments})
	if failure != nil || result != nil {
		t.Fatalf("result=%v failure=%+v", result, failure)
	}
}

func TestAMissingArgumentReadByATaskIsWordedAsPythonsCallWouldWordIt(t *testing.T) {
	for action, want := range map[string]string{
		ActionExecute: "Resize.execute() missing 1 required positional argument: 'size'",
		ActionRevert:  "Resize.revert() missing 1 required positional argument: 'size'",
	} {
		call := &Call{Task: "img.Resize", Arguments: map[string]any{}, action: action}
		_, err := call.Int("size")
		if err == nil || err.Error() != want {
			t.Errorf("%s: err = %v, want %q", action, err, want)
		}
	}
}

func TestRegisterRefusesArgumentsNamedTwiceOrEmpty(t *testing.T) {
	exec := func(*Call) (any, error) { return nil, nil }
	revert := func(*Call, any, *Failure, map[string]*Failure) (any, error) { return nil, nil }
	nested := Takes("a").WithRevert(Takes("a").WithRevert(Takes()))
	for name, c := range map[string]struct {
		args   Args
		revert RevertFunc
	}{
		"twice":                {Takes("a", "a"), nil},
		"required, optional":   {Args{Required: []string{"a"}, Optional: []string{"a"}}, nil},
		"empty":                {Takes(""), nil},
		"revert's twice":       {Takes("a").WithRevert(Takes("b", "b")), revert},
		"revert without one":   {Takes("a").WithRevert(Takes("a")), nil},
		"revert of the revert": {nested, revert},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			NewRegistry().Register("t.T", c.args, exec, c.revert)
		}()
	}
}
