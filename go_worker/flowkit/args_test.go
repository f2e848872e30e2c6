package flowkit

import (
	"encoding/json"
	"fmt"
	"reflect"
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
			want := &Failure{ExceptionStr: c.message, ExcTypeNames: TypeErrorTypes, ExcArgs: []any{c.message}}
			if !reflect.DeepEqual(failure, want) {
				t.Fatalf("failure = %+v, want %+v", failure, want)
			}
		})
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

func TestARevertIsHandedTheArgumentsItsRequestCarriesUnchecked(t *testing.T) {
	// As a Python revert taking **kwargs: the engine sends what its stub's revert names.
	reg := NewRegistry()
	var seen map[string]any
	reg.Register("t.T", Takes("a"), func(*Call) (any, error) { return nil, nil },
		func(call *Call, _ any, _ *Failure, _ map[string]*Failure) (any, error) {
			seen = call.Arguments
			return nil, nil
		})
	arguments := map[string]any{"other": "x"}
	_, failure := reg.Run(newCall(arguments), &Request{Task: "t.T", Action: ActionRevert, Arguments: arguments})
	if failure != nil || !reflect.DeepEqual(seen, arguments) {
		t.Fatalf("failure=%+v seen=%v", failure, seen)
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
	for name, args := range map[string]Args{
		"twice":              Takes("a", "a"),
		"required, optional": {Required: []string{"a"}, Optional: []string{"a"}},
		"empty":              Takes(""),
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			NewRegistry().Register("t.T", args, exec, nil)
		}()
	}
}
