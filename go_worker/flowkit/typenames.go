package flowkit

import "strings"

// A task's failure is recorded with its exception type names spelt as the
// Python worker records a Python task's (TaskFlow's Failure spelling): a
// built-in bare ("TypeError", not "builtins.TypeError"), and the list ends
// with "Exception", or with "BaseException" for an exception that is no
// Exception. Readers match either spelling (Failure.check, HasType), but the
// names themselves are what listeners, reports and stored records show, and
// a flow must record the same failure whichever worker ran its task.
//
// The failures a worker makes up itself (NotFoundTypes and the others the
// protocol prescribes) keep the qualified form, which both workers write.

// taskflowNames returns names (most derived first) in TaskFlow's spelling:
// the "builtins." prefix dropped, and nothing after "Exception" kept. Names
// already so spelt come back equal; the result is a new slice.
func taskflowNames(names []string) []string {
	spelt := make([]string, 0, len(names))
	for _, name := range names {
		name = strings.TrimPrefix(name, builtinsPrefix)
		spelt = append(spelt, name)
		if name == "Exception" {
			break // TaskFlow names only the classes that are an Exception
		}
	}
	return spelt
}

// taskflowRecord returns a copy of f, and of its causes, with type names in
// TaskFlow's spelling; f itself (a task's own record) is left as it is.
// Records reached twice, or through a loop, are copied once, so a loop
// stays a loop for MarshalJSON to refuse rather than a copy without end.
func taskflowRecord(f *Failure) *Failure {
	copies := map[*Failure]*Failure{}
	var walk func(*Failure) *Failure
	walk = func(record *Failure) *Failure {
		if record == nil {
			return nil
		}
		if done, ok := copies[record]; ok {
			return done
		}
		spelt := *record
		copies[record] = &spelt
		spelt.ExcTypeNames = taskflowNames(record.ExcTypeNames)
		if record.Causes != nil {
			spelt.Causes = make([]*Failure, len(record.Causes))
			for i, cause := range record.Causes {
				spelt.Causes[i] = walk(cause)
			}
		}
		return &spelt
	}
	return walk(f)
}
