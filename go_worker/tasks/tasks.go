// Package tasks holds the example CPU tasks the flowkit Go worker serves.
//
// Their names and behaviour are fixed by the worker protocol contract, and
// tests/workers/behaviour_tasks.py holds Python twins of them, so one
// behaviour suite runs against both workers.
package tasks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"runtime"
	"time"

	"github.com/flowkit/flowkit/go_worker/flowkit"
)

// Prefix is the "module" of every example task's name.
const Prefix = "flowkit_go_tasks."

// Task names.
const (
	CountPrimesName  = Prefix + "CountPrimes"
	Sha256RoundsName = Prefix + "Sha256Rounds"
	FailName         = Prefix + "Fail"
	SleepName        = Prefix + "Sleep"
	EchoName         = Prefix + "Echo"
	TraceParentName  = Prefix + "TraceParent"
	AnnounceName     = Prefix + "Announce"
	ReserveName      = Prefix + "Reserve"
	ExitName         = Prefix + "Exit"
)

// TaskFailedTypes are the exception type names of Fail's failure.
var TaskFailedTypes = []string{Prefix + "TaskFailed", "Exception"}

// RegisterAll registers every example task in reg.
func RegisterAll(reg *flowkit.Registry) {
	reg.Register(CountPrimesName, flowkit.Takes("limit"), countPrimes, nil)
	reg.Register(Sha256RoundsName, flowkit.Takes("data", "rounds"), sha256Rounds, nil)
	reg.Register(FailName, flowkit.Takes("message"), fail, nil)
	reg.Register(SleepName, flowkit.Takes("seconds"), sleep, nil)
	reg.Register(EchoName, flowkit.Takes("value"), echo, nil)
	reg.Register(TraceParentName, flowkit.Takes(), traceParent, nil)
	reg.Register(AnnounceName, flowkit.Takes("events"), announce, nil)
	reg.Register(ReserveName, flowkit.Takes("slot"), reserve, release)
	reg.Register(ExitName, flowkit.Takes(), exit, nil)
}

// exit ends its goroutine instead of returning (runtime.Goexit, as a test's
// t.FailNow does): the Go twin of a Python task raising SystemExit, which
// the worker answers with a failure of its own kind and goes on.
func exit(*flowkit.Call) (any, error) {
	runtime.Goexit()
	return nil, nil
}

// reserve returns the string argument "slot": what its revert releases.
func reserve(call *flowkit.Call) (any, error) {
	return call.String("slot")
}

// release is reserve's revert: it takes the same argument, "slot", and says
// it released it.
func release(call *flowkit.Call, _ any, _ *flowkit.Failure, _ map[string]*flowkit.Failure) (any, error) {
	slot, err := call.String("slot")
	if err != nil {
		return nil, err
	}
	return "released " + slot, nil
}

// announce notifies each event named in the list "events", with the names
// not yet announced as details, and reports progress after each (the task of
// TaskFlow's wbe_event_sender example); it returns how many it announced.
func announce(call *flowkit.Call) (any, error) {
	value, err := call.Value("events")
	if err != nil {
		return nil, err
	}
	items, ok := value.([]any)
	if !ok {
		return nil, flowkit.ArgumentError("argument 'events' must be a list of strings")
	}
	names := make([]any, len(items))
	for i, item := range items {
		name, ok := item.(string)
		if !ok || name == "" {
			return nil, flowkit.ArgumentError("argument 'events' must be a list of non-empty strings")
		}
		names[i] = name
	}
	for i, name := range names {
		call.Notify(name.(string), map[string]any{"leftover": names[i:]})
		call.Progress(float64(i+1)/float64(len(names)), nil)
	}
	return len(names), nil
}

func countPrimes(call *flowkit.Call) (any, error) {
	limit, err := call.Int("limit")
	if err != nil {
		return nil, err
	}
	return CountPrimes(limit), nil
}

// CountPrimes returns how many primes are smaller than limit (a sieve of the
// odd numbers, CPU-bound on purpose).
func CountPrimes(limit int64) int64 {
	if limit < 3 {
		return 0
	}
	// composite[i] stands for the odd number 2*i+1, for 2*i+1 < limit.
	size := limit / 2 // the odd numbers 1, 3, ... below limit
	composite := make([]bool, size)
	count := size // every odd number below limit, 1 counted in place of 2
	for i := int64(1); ; i++ {
		p := 2*i + 1
		if p*p >= limit {
			break
		}
		if composite[i] {
			continue
		}
		for j := p * p / 2; j < size; j += p {
			if !composite[j] {
				composite[j] = true
				count--
			}
		}
	}
	return count
}

func sha256Rounds(call *flowkit.Call) (any, error) {
	data, err := call.String("data")
	if err != nil {
		return nil, err
	}
	rounds, err := call.Int("rounds")
	if err != nil {
		return nil, err
	}
	return Sha256Rounds(data, rounds), nil
}

// Sha256Rounds hashes the UTF-8 bytes of data rounds times, each round hashing
// the previous raw digest, and returns the last one in lowercase hex (data's
// own bytes in hex for zero rounds).
func Sha256Rounds(data string, rounds int64) string {
	digest := []byte(data)
	if rounds > 0 {
		sum := sha256.Sum256(digest)
		for i := int64(1); i < rounds; i++ {
			sum = sha256.Sum256(sum[:])
		}
		digest = sum[:]
	}
	return hex.EncodeToString(digest)
}

func fail(call *flowkit.Call) (any, error) {
	message, err := call.String("message")
	if err != nil {
		return nil, err
	}
	return nil, &flowkit.TaskError{Types: TaskFailedTypes, Message: message}
}

// ValueErrorTypes are the exception type names of a Python ValueError.
var ValueErrorTypes = []string{"ValueError", "Exception"}

func sleep(call *flowkit.Call) (any, error) {
	seconds, err := call.Float("seconds")
	if err != nil {
		return nil, err
	}
	if seconds < 0 {
		// As the Python twin's time.sleep refuses it, before any progress.
		return nil, &flowkit.TaskError{Types: ValueErrorTypes, Message: "sleep length must be non-negative"}
	}
	half := time.Duration(seconds / 2 * float64(time.Second))
	if err := pause(call.Context, half); err != nil {
		return nil, err
	}
	call.Progress(0.5, nil)
	return nil, pause(call.Context, half)
}

func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func echo(call *flowkit.Call) (any, error) {
	return call.Value("value")
}

// traceParent returns the W3C traceparent its request carried ("" for none):
// the trace context reaches the task, which can pass it on to what it calls.
func traceParent(call *flowkit.Call) (any, error) {
	return call.TraceParent, nil
}
