package flowkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
)

// Call is one request as a task function sees it.
type Call struct {
	// Context is cancelled when the worker gives up on the request (it is
	// still running when a graceful stop's grace period ends).
	Context context.Context
	// Name is the atom's name in the flow (may be empty).
	Name string
	// Task is the task name the request asked for.
	Task string
	// RequestID is the request's id.
	RequestID string
	// Arguments are the keyword arguments; numbers are json.Number.
	Arguments map[string]any
	// TraceParent is the W3C traceparent of the engine's span for this request
	// when it carried a valid one, else "". A task that calls other services
	// passes it on (with OpenTelemetry: propagation.TraceContext{}.Extract) so
	// its work joins the flow's trace.
	TraceParent string
	// Progress reports progress from 0 to 1 with optional JSON details
	// (nil: null); a value outside is clamped, NaN to 0, as a Python task's
	// update_progress does. A burst of 20 reports is sent at once, then at
	// most one per 50 ms; the last one always is.
	Progress func(progress float64, details map[string]any)
	// Notify sends an event of the task's own (eventType non-empty, details
	// JSON or nil) to the engine, whose copy of the task tells its notifier's
	// listeners, as TaskFlow does with a remote task's notifier events. Every
	// event is sent, in order, while the task runs; an empty type, details
	// that cannot be sent, or a call after the task returned are logged and
	// dropped.
	Notify func(eventType string, details map[string]any)
	// action is the request's (ActionExecute or ActionRevert; "" counts as
	// execute), for the wording of a missing argument's TypeError.
	action string
}

// ExecuteFunc runs a task's execute; its result must be JSON-encodable.
type ExecuteFunc func(call *Call) (any, error)

// RevertFunc undoes a task. result is what execute returned when it succeeded
// (failure is then nil); failure is how execute failed otherwise.
// flowFailures maps every failed atom of the flow to its failure.
type RevertFunc func(call *Call, result any, failure *Failure, flowFailures map[string]*Failure) (any, error)

// TaskError is an error carrying the exception type names (most derived
// first) a task wants in its failure record, e.g.
// []string{"myapp.QuotaExceeded", "Exception"}. They are recorded in
// TaskFlow's spelling, as the Python worker records a Python exception's:
// "builtins.ValueError" as "ValueError", and nothing after "Exception"
// ("builtins.BaseException" is dropped); a list that ends with no base
// exception gets "Exception" added.
type TaskError struct {
	Types   []string
	Message string
	// Args become exc_args (JSON values); nil means [Message].
	Args []any
}

func (e *TaskError) Error() string { return e.Message }

// ArgumentError is a TaskError for a missing or ill-typed argument, named
// TypeError as Python would raise.
func ArgumentError(format string, args ...any) *TaskError {
	return &TaskError{Types: TypeErrorTypes, Message: fmt.Sprintf(format, args...)}
}

type entry struct {
	executeArgs signature
	revertArgs  signature
	execute     ExecuteFunc
	revert      RevertFunc
	// Where the functions are, for the tracebacks of their failures
	// (revertAt nil when there is no revert function).
	executeAt *taskFunction
	revertAt  *taskFunction
}

// Registry maps task names to Go functions. It is safe for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	tasks map[string]entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{tasks: map[string]entry{}} }

// Register serves exec (and revert; nil: a revert that returns null) under
// name; args are the arguments exec takes (Takes("size"), or an Args with
// optional ones), and those revert takes (the same unless args.Revert says
// otherwise): a request carrying another argument, or missing a required
// one, fails with a TypeError before the function runs, as the Python
// worker's call fails. Without a revert function, a revert request takes
// any arguments, as Python's default revert does. Register panics on an
// empty name, a nil exec, a name already registered, an argument named
// twice or with an empty name, or an args.Revert without a revert function,
// which are programming errors.
func (r *Registry) Register(name string, args Args, exec ExecuteFunc, revert RevertFunc) {
	if name == "" {
		panic("flowkit: Register with an empty task name")
	}
	if exec == nil {
		panic("flowkit: Register " + name + " with a nil execute function")
	}
	executeArgs, revertArgs := newSignatures(name, args, revert != nil)
	task := entry{executeArgs: executeArgs, revertArgs: revertArgs, execute: exec, revert: revert}
	executeAt := locate(exec)
	task.executeAt = &executeAt
	if revert != nil {
		revertAt := locate(revert)
		task.revertAt = &revertAt
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, taken := r.tasks[name]; taken {
		panic("flowkit: task " + name + " registered twice")
	}
	r.tasks[name] = task
}

// origin says where a failure of the request's task arises, for its
// traceback: the task, its method and the function registered for it.
func (r *Registry) origin(request *Request) origin {
	r.mu.RLock()
	task := r.tasks[request.Task]
	r.mu.RUnlock()
	return task.origin(request)
}

func (e entry) origin(request *Request) origin {
	if request.Action == ActionRevert {
		return origin{task: request.Task, action: ActionRevert, function: e.revertAt}
	}
	return origin{task: request.Task, action: ActionExecute, function: e.executeAt}
}

// Names returns the registered task names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.tasks))
	for name := range r.tasks {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Has says whether name is registered.
func (r *Registry) Has(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.tasks[name]
	return ok
}

// Run executes or reverts the request's task and returns its result, or the
// failure record of its error or panic. A request for an unknown task fails
// with NotFoundTypes.
func (r *Registry) Run(call *Call, request *Request) (result any, failure *Failure) {
	r.mu.RLock()
	task, ok := r.tasks[request.Task]
	r.mu.RUnlock()
	if !ok {
		return nil, NewFailure("no task named "+request.Task, NotFoundTypes)
	}
	from := task.origin(request)
	defer func() {
		if value := recover(); value != nil {
			result = nil
			failure = panicFailure(from, value, debug.Stack())
		}
	}()
	var err error
	if request.Action == ActionRevert {
		if mismatch := task.revertArgs.check(request); mismatch != nil {
			return nil, withTraceback(FailureFromError(mismatch), from.notCalled)
		}
		if task.revert == nil {
			return nil, nil
		}
		var executeResult any
		if request.Failure == nil {
			executeResult = request.Result
		}
		result, err = task.revert(call, executeResult, request.Failure, request.FlowFailures)
	} else {
		if mismatch := task.executeArgs.check(request); mismatch != nil {
			return nil, withTraceback(FailureFromError(mismatch), from.notCalled)
		}
		result, err = task.execute(call)
	}
	if err != nil {
		return nil, withTraceback(FailureFromError(err), func() string { return from.returned(err) })
	}
	return result, nil
}

// withTraceback gives f the traceback text made by traceback, unless it has
// one already (a task's own *Failure may carry the one it was given).
func withTraceback(f *Failure, traceback func() string) *Failure {
	if f.TracebackStr == "" {
		f.TracebackStr = traceback()
	}
	return f
}

// FailureFromError makes the failure record of a task's error: a *TaskError
// (found with errors.As) gives its own names, message and args; a *Failure is
// passed on (a copy); any other error is named GoErrorTypes. The type names
// are written in TaskFlow's spelling, as the Python worker writes a Python
// task's: a TaskError naming "builtins.ValueError", "builtins.Exception",
// "builtins.BaseException" is recorded as ["ValueError", "Exception"].
func FailureFromError(err error) *Failure {
	var taskErr *TaskError
	if errors.As(err, &taskErr) {
		names := taskflowNames(taskErr.Types)
		if len(names) == 0 {
			names = GoErrorTypes
		} else if !baseNames[names[len(names)-1]] {
			// Every record ends with a base exception name; add the usual tail.
			names = append(names, "Exception")
		}
		args := taskErr.Args
		if args == nil {
			args = []any{taskErr.Message}
		}
		return &Failure{ExceptionStr: taskErr.Message, ExcTypeNames: append([]string(nil), names...), ExcArgs: args}
	}
	var record *Failure
	if errors.As(err, &record) {
		return taskflowRecord(record)
	}
	return NewFailure(err.Error(), GoErrorTypes)
}

// panicFailure is the failure record of a panic in the task's function
// (from), its traceback the goroutine's stack as recovered.
func panicFailure(from origin, value any, stack []byte) *Failure {
	message := fmt.Sprint(value)
	if err, ok := value.(error); ok {
		message = err.Error()
	}
	f := NewFailure(message, GoPanicTypes)
	f.TracebackStr = from.panicked(value, stack)
	return f
}

// Value returns the argument name, or, when it is missing, the TypeError a
// Python method missing it raises ("Echo.execute() missing 1 required
// positional argument: 'value'").
func (c *Call) Value(name string) (any, error) {
	value, ok := c.Arguments[name]
	if !ok {
		return nil, missingError(c.Task, c.action, []string{name})
	}
	return value, nil
}

// String returns the string argument name.
func (c *Call) String(name string) (string, error) {
	value, err := c.Value(name)
	if err != nil {
		return "", err
	}
	s, ok := value.(string)
	if !ok {
		return "", ArgumentError("%s: argument '%s' must be a string, not %s", c.Task, name, jsonType(value))
	}
	return s, nil
}

// Int returns the integer argument name (2.0 counts as 2).
func (c *Call) Int(name string) (int64, error) {
	value, err := c.Value(name)
	if err != nil {
		return 0, err
	}
	if n, ok := value.(json.Number); ok {
		if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
			return i, nil
		}
		if f, ok := numberValue(n); ok && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			return int64(f), nil
		}
	}
	return 0, ArgumentError("%s: argument '%s' must be an integer, not %s", c.Task, name, jsonType(value))
}

// Float returns the number argument name.
func (c *Call) Float(name string) (float64, error) {
	value, err := c.Value(name)
	if err != nil {
		return 0, err
	}
	f, ok := numberValue(value)
	if !ok {
		return 0, ArgumentError("%s: argument '%s' must be a number, not %s", c.Task, name, jsonType(value))
	}
	return f, nil
}
