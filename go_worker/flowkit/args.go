package flowkit

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
)

// Args says which keyword arguments a task's execute takes, as a Python
// execute's signature does, and which its revert takes. The worker checks a
// request's arguments against it before the task runs, and fails the request
// as Python's call of execute(**arguments) (or revert(**arguments,
// result=..., flow_failures=...)) fails on the Python worker: a TypeError
// worded as Python words it ("Resize.execute() got an unexpected keyword
// argument 'x'", "Resize.revert() missing 1 required positional argument:
// 'size'"). So a flow fails the same way whichever worker took its task.
//
// The engine sends the arguments its stub class's execute (or revert) names,
// so a stub whose signature differs from the Go task's is what such a
// failure reveals.
type Args struct {
	// Required are the arguments every request must carry, in the order
	// they are listed when missing.
	Required []string
	// Optional are the arguments a request may carry (in Python, those with
	// a default); a task reads them from Call.Arguments when present.
	Optional []string
	// Others takes any other argument too, as a Python **kwargs does.
	Others bool
	// Revert declares the arguments the task's revert takes, besides the
	// result and flow failures it is always handed, when they are not those
	// of its execute (nil: the same as execute's, as a Python revert written
	// `def revert(self, size, result, flow_failures)` mirrors its execute;
	// &Args{Others: true} takes any, as `def revert(self, *args, **kwargs)`).
	// Only a task registered with a revert function may declare it: without
	// one, a revert does nothing and takes any arguments, as Python's
	// default revert does. Its own Revert must be nil.
	Revert *Args
}

// Takes declares a task whose execute takes exactly the arguments names,
// each required: Takes("data", "rounds"); Takes() takes none.
func Takes(names ...string) Args { return Args{Required: names} }

// WithRevert returns a copy of a whose revert takes the arguments revert
// declares: Takes("size").WithRevert(Takes("size", "old_size")).
func (a Args) WithRevert(revert Args) Args {
	a.Revert = &revert
	return a
}

// signature is one method's Args, checked and made ready for looking names up.
type signature struct {
	action   string // ActionExecute or ActionRevert: the method its errors name
	required []string
	known    map[string]bool
	others   bool
}

// anyArguments is the signature of a method that takes every argument (a
// Python def revert(self, *args, **kwargs)): its check finds nothing.
var anyArguments = signature{others: true}

// newSignatures checks args for the task name (and hasRevert, whether a
// revert function is registered) and returns the signatures of its execute
// and its revert, panicking on a fault as Register does with its other
// programming errors.
func newSignatures(name string, args Args, hasRevert bool) (execute, revert signature) {
	execute = newSignature(name, ActionExecute, args)
	switch {
	case args.Revert == nil && hasRevert:
		revert = newSignature(name, ActionRevert, args)
	case args.Revert == nil:
		revert = anyArguments
	case !hasRevert:
		panic("flowkit: task " + name + " declares the arguments of a revert it does not register")
	case args.Revert.Revert != nil:
		panic("flowkit: task " + name + " declares a revert of its revert's arguments")
	default:
		revert = newSignature(name, ActionRevert, *args.Revert)
	}
	return execute, revert
}

// newSignature checks args (every name non-empty and given once) for the
// task name's method action.
func newSignature(name, action string, args Args) signature {
	known := make(map[string]bool, len(args.Required)+len(args.Optional))
	for _, names := range [][]string{args.Required, args.Optional} {
		for _, arg := range names {
			if arg == "" {
				panic("flowkit: task " + name + " declares an argument with an empty name")
			}
			if known[arg] {
				panic("flowkit: task " + name + " declares argument " + arg + " twice")
			}
			known[arg] = true
		}
	}
	return signature{action: action, required: append([]string(nil), args.Required...), known: known, others: args.Others}
}

// check returns the TypeError a Python method of this signature would raise
// when called with the request's arguments, or nil when they fit. As in
// CPython, an unexpected argument is reported before missing ones, and of
// several unexpected ones the first the request lists.
func (s signature) check(request *Request) *TaskError {
	if !s.others {
		var unexpected []string
		for arg := range request.Arguments {
			if !s.known[arg] {
				unexpected = append(unexpected, arg)
			}
		}
		if len(unexpected) > 0 {
			return ArgumentError("%s() got an unexpected keyword argument '%s'",
				method(request.Task, s.action), request.firstListed(unexpected))
		}
	}
	var missing []string
	for _, arg := range s.required {
		if _, ok := request.Arguments[arg]; !ok {
			missing = append(missing, arg)
		}
	}
	if len(missing) > 0 {
		return missingError(request.Task, s.action, missing)
	}
	return nil
}

// missingError is the TypeError of a Python method call missing the
// positional arguments names: "Echo.execute() missing 1 required positional
// argument: 'value'", "... missing 3 required positional arguments: 'a',
// 'b', and 'c'".
func missingError(task, action string, names []string) *TaskError {
	quoted := make([]string, len(names))
	for i, name := range names {
		quoted[i] = "'" + name + "'"
	}
	list := quoted[0]
	switch len(quoted) {
	case 1:
	case 2:
		list = quoted[0] + " and " + quoted[1]
	default:
		list = strings.Join(quoted[:len(quoted)-1], ", ") + ", and " + quoted[len(quoted)-1]
	}
	plural := "argument"
	if len(names) > 1 {
		plural = "arguments"
	}
	return ArgumentError("%s() missing %d required positional %s: %s", method(task, action), len(names), plural, list)
}

// method names a task's execute or revert as Python's messages name a
// method: the class's qualified name, which a task name of the form
// "module.Class" (the form Python tasks travel under) ends with, then the
// method's ("Echo.execute" for flowkit_go_tasks.Echo).
func method(task, action string) string {
	name := "execute"
	if action == ActionRevert {
		name = "revert"
	}
	return task[strings.LastIndexByte(task, '.')+1:] + "." + name
}

// firstListed returns the one of names (arguments of the request, at least
// one) that the request's "arguments" object lists first, as Python's call
// reports the first unexpected keyword it is given. A request built in code,
// which has no JSON text, gives the first by name.
func (r *Request) firstListed(names []string) string {
	sort.Strings(names)
	if len(names) == 1 || r.body == nil {
		return names[0]
	}
	wanted := make(map[string]bool, len(names))
	for _, name := range names {
		wanted[name] = true
	}
	for _, key := range objectKeys(r.body, "arguments") {
		if wanted[key] {
			return key
		}
	}
	return names[0]
}

// objectKeys returns, in order, the keys of the object held under field in
// the JSON object body (nil if it cannot be read: the body was checked when
// decoded, so this is no second validation).
func objectKeys(body []byte, field string) []string {
	dec := json.NewDecoder(bytes.NewReader(body))
	if token, err := dec.Token(); err != nil || token != json.Delim('{') {
		return nil
	}
	var found []string // of the field's last occurrence, as the decoded map holds
	for dec.More() {
		token, err := dec.Token()
		if err != nil {
			return nil
		}
		if token != field {
			var skipped json.RawMessage
			if dec.Decode(&skipped) != nil {
				return nil
			}
			continue
		}
		if token, err := dec.Token(); err != nil || token != json.Delim('{') {
			return nil
		}
		var keys []string
		for dec.More() {
			key, err := dec.Token()
			name, isKey := key.(string)
			var skipped json.RawMessage
			if err != nil || !isKey || dec.Decode(&skipped) != nil {
				return nil
			}
			keys = append(keys, name)
		}
		if token, err := dec.Token(); err != nil || token != json.Delim('}') {
			return nil
		}
		found = keys
	}
	return found
}
