package flowkit

import (
	"reflect"
	"testing"
)

func TestTaskFailureNamesAreSpeltAsThePythonWorkerSpellsThem(t *testing.T) {
	cases := []struct{ given, want []string }{
		// What Python's Failure records for a ValueError, and for a class of a module.
		{[]string{"builtins.ValueError", "builtins.Exception", "builtins.BaseException"}, []string{"ValueError", "Exception"}},
		{[]string{"ValueError", "Exception"}, []string{"ValueError", "Exception"}},
		{[]string{"app.Quota", "builtins.LookupError", "builtins.Exception"}, []string{"app.Quota", "LookupError", "Exception"}},
		// An exception that is no Exception ends with BaseException, as a Python SystemExit's does.
		{[]string{"builtins.SystemExit", "builtins.BaseException"}, []string{"SystemExit", "BaseException"}},
		// Only the prefix goes: a module of its own keeps its name.
		{[]string{"builtinsx.E", "mod.builtins.E", "Exception"}, []string{"builtinsx.E", "mod.builtins.E", "Exception"}},
	}
	for _, c := range cases {
		if got := taskflowNames(c.given); !reflect.DeepEqual(got, c.want) {
			t.Errorf("taskflowNames(%v) = %v, want %v", c.given, got, c.want)
		}
	}
	failure := FailureFromError(&TaskError{Types: []string{"builtins.KeyError", "builtins.LookupError"}, Message: "k"})
	if want := []string{"KeyError", "LookupError", "Exception"}; !reflect.DeepEqual(failure.ExcTypeNames, want) {
		t.Errorf("names = %v, want %v", failure.ExcTypeNames, want)
	}
	if !failure.HasType("builtins.KeyError") || !failure.HasType("LookupError") {
		t.Errorf("HasType misses a spelling of %v", failure.ExcTypeNames)
	}
}

func TestATasksOwnFailureIsSentRespeltAndLeftAsItWas(t *testing.T) {
	cause := NewFailure("inner", []string{"builtins.OSError", "builtins.Exception", "builtins.BaseException"})
	own := NewFailure("outer", []string{"app.Broken", "builtins.Exception", "builtins.BaseException"})
	own.Causes = []*Failure{cause}
	sent := FailureFromError(own)
	if want := []string{"app.Broken", "Exception"}; !reflect.DeepEqual(sent.ExcTypeNames, want) {
		t.Errorf("names = %v", sent.ExcTypeNames)
	}
	if want := []string{"OSError", "Exception"}; !reflect.DeepEqual(sent.Causes[0].ExcTypeNames, want) {
		t.Errorf("cause names = %v", sent.Causes[0].ExcTypeNames)
	}
	if own.ExcTypeNames[1] != "builtins.Exception" || cause.ExcTypeNames[0] != "builtins.OSError" {
		t.Errorf("the task's own record was changed: %v, %v", own.ExcTypeNames, cause.ExcTypeNames)
	}
	// A loop is copied as a loop, still refused when encoded, not copied for ever.
	loop := NewFailure("a", GoErrorTypes)
	other := NewFailure("b", GoErrorTypes)
	loop.Causes, other.Causes = []*Failure{other}, []*Failure{loop}
	if copied := FailureFromError(loop); copied.Causes[0].Causes[0] != copied {
		t.Errorf("loop not kept: %+v", copied)
	} else if _, err := copied.MarshalJSON(); err == nil {
		t.Error("a looping copy was encoded")
	}
}
