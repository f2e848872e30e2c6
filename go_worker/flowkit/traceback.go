package flowkit

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"strings"
)

// A task's failure carries a traceback text (the record's traceback_str), as
// a Python task's does, so that what a user reads of it (Failure.pformat
// with the traceback, the logging listeners, 'flowkit flows show -v') says
// where it failed whichever worker ran the task. A Python traceback names
// the frames down to the line that raised. A Go error carries no stack, and
// taking one where the worker receives it would only show the worker, so a
// Go task's traceback is one frame, written as Python writes a frame: the
// function registered for the task (its file and the line it begins on),
// then the task, its method and what went wrong; for an error, the chain of
// errors it wraps, outermost first, each with its Go type. A panic adds the
// goroutine's stack from the panicking call down, which costs nothing more:
// it is taken anyway to recover.
//
//	  File "/src/app/disks.go", line 40, in example.com/app.resize
//	    Go task myapp.Resize, execute, returned *fmt.wrapError: open disk 7: permission denied
//	      which wraps *fs.PathError: open disk 7: permission denied
//	        which wraps syscall.Errno: permission denied

// maxChain is how many errors of a chain a traceback lists; a longer chain
// (or an Unwrap that never ends) is cut short, saying so.
const maxChain = 32

// taskFunction is where a registered Go function is, for tracebacks.
type taskFunction struct {
	name string // its package-qualified name ("example.com/app.resize")
	file string
	line int // the line it begins on
}

// locate finds fn (an ExecuteFunc or RevertFunc, not nil) in the binary.
// Done once, when the task is registered.
func locate(fn any) taskFunction {
	pc := reflect.ValueOf(fn).Pointer()
	f := runtime.FuncForPC(pc)
	if f == nil {
		return taskFunction{name: "(unknown function)", file: "(unknown file)"}
	}
	file, line := f.FileLine(f.Entry())
	return taskFunction{name: f.Name(), file: file, line: line}
}

// origin is where a task's failure arose: the request's task and method,
// and the Go function registered for it (nil: none, a revert that does
// nothing).
type origin struct {
	task     string
	action   string
	function *taskFunction
}

// frame writes the Python-style frame line and the line naming the task,
// followed by what (a sentence in the frame's second line's place).
func (o origin) frame(what string) string {
	var b strings.Builder
	if o.function != nil {
		fmt.Fprintf(&b, "  File %s, line %d, in %s\n", strconv.Quote(o.function.file), o.function.line, o.function.name)
	}
	action := o.action
	if action == "" {
		action = ActionExecute
	}
	fmt.Fprintf(&b, "    Go task %s, %s, %s\n", logSafe(o.task), action, what)
	return b.String()
}

// returned is the traceback of an error the task's function returned.
func (o origin) returned(err error) string {
	return o.frame("returned " + errorChain(err, "      "))
}

// notCalled is the traceback of a request whose arguments did not fit the
// function's declaration, so it was not called.
func (o origin) notCalled() string {
	return o.frame("not called: the request's arguments do not fit those it is registered with")
}

// panicked is the traceback of a panic: the frame, then the goroutine's
// stack from the panicking call down (stack as debug.Stack gave it, in the
// deferred function that recovered).
func (o origin) panicked(value any, stack []byte) string {
	what := "panicked: " + logSafe(fmt.Sprint(value))
	if err, ok := value.(error); ok {
		what = "panicked with " + errorChain(err, "      ")
	}
	return o.frame(what) + panickingStack(stack)
}

// errorChain describes err and the errors it wraps, outermost first, one a
// line ("*fs.PathError: open x: ...", then "which wraps ..." lines indented
// one more step each); an error wrapping several (errors.Join) lists each.
// Messages are escaped to stay on their line (logSafe).
func errorChain(err error, indent string) string {
	var b strings.Builder
	listed := 0
	var walk func(err error, depth int)
	walk = func(err error, depth int) {
		if listed == maxChain {
			return
		}
		listed++
		if depth > 0 {
			b.WriteString("\n" + indent + strings.Repeat("  ", depth-1) + "which wraps ")
		}
		fmt.Fprintf(&b, "%T: %s", err, logSafe(err.Error()))
		switch wrapper := err.(type) {
		case interface{ Unwrap() []error }:
			for _, inner := range wrapper.Unwrap() {
				if inner != nil {
					walk(inner, depth+1)
				}
			}
		default:
			if inner := errors.Unwrap(err); inner != nil {
				walk(inner, depth+1)
			}
		}
	}
	walk(err, 0)
	if listed == maxChain {
		b.WriteString("\n" + indent + fmt.Sprintf("(the chain is cut after %d errors)", maxChain))
	}
	return b.String()
}

// panickingStack returns the goroutine's stack from the frame that panicked
// down: the frames above it (debug.Stack, the recovering function and
// panic itself) are the worker's, not the task's. Each frame is two lines,
// the call and then its file and line.
func panickingStack(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	for i := 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "panic(") {
			return strings.Join(append(lines[:1:1], lines[min(i+2, len(lines)):]...), "\n")
		}
	}
	return string(stack)
}
