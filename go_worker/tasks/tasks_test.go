package tasks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowkit/flowkit/go_worker/flowkit"
)

func naivePrimes(limit int64) int64 {
	count := int64(0)
	for n := int64(2); n < limit; n++ {
		prime := true
		for d := int64(2); d*d <= n; d++ {
			if n%d == 0 {
				prime = false
				break
			}
		}
		if prime {
			count++
		}
	}
	return count
}

func TestCountPrimesCountsPrimesBelowTheLimit(t *testing.T) {
	for limit := int64(-3); limit < 3000; limit++ {
		if got, want := CountPrimes(limit), naivePrimes(limit); got != want {
			t.Fatalf("CountPrimes(%d) = %d, want %d", limit, got, want)
		}
	}
	for limit, want := range map[int64]int64{10_000: 1229, 1_000_000: 78498, 5_000_000: 348513} {
		if got := CountPrimes(limit); got != want {
			t.Errorf("CountPrimes(%d) = %d, want %d", limit, got, want)
		}
	}
}

func TestSha256RoundsHashesTheRawDigestEachRound(t *testing.T) {
	if got := Sha256Rounds("héllo", 0); got != hex.EncodeToString([]byte("héllo")) {
		t.Errorf("0 rounds = %s", got)
	}
	first := sha256.Sum256([]byte("héllo"))
	second := sha256.Sum256(first[:])
	if got := Sha256Rounds("héllo", 2); got != hex.EncodeToString(second[:]) {
		t.Errorf("2 rounds = %s", got)
	}
	// Same value as the Python twin: sha256_rounds("héllo wörld", 5).
	if got := Sha256Rounds("héllo wörld", 5); got != "9d2694f4c8af435bafb615b2f7b10b8e336a728bfb8d41cb28859de9e36cc4f2" {
		t.Errorf("5 rounds = %s", got)
	}
}

func run(t *testing.T, name string, arguments map[string]any, progress func(float64, map[string]any)) (any, *flowkit.Failure) {
	t.Helper()
	reg := flowkit.NewRegistry()
	RegisterAll(reg)
	if progress == nil {
		progress = func(float64, map[string]any) {}
	}
	call := &flowkit.Call{Context: context.Background(), Task: name, Arguments: arguments, Progress: progress,
		Notify: func(string, map[string]any) {}}
	return reg.Run(call, &flowkit.Request{Task: name, Action: flowkit.ActionExecute, Arguments: arguments})
}

func TestRegisterAllOffersTheContractNames(t *testing.T) {
	reg := flowkit.NewRegistry()
	RegisterAll(reg)
	want := []string{
		"flowkit_go_tasks.Announce", "flowkit_go_tasks.CountPrimes", "flowkit_go_tasks.Echo", "flowkit_go_tasks.Exit", "flowkit_go_tasks.Fail",
		"flowkit_go_tasks.Reserve", "flowkit_go_tasks.Sha256Rounds", "flowkit_go_tasks.Sleep", "flowkit_go_tasks.TraceParent",
	}
	if got := reg.Names(); !reflect.DeepEqual(got, want) {
		t.Fatalf("names = %v", got)
	}
}

func TestFailFailsWithTaskFailedAndTheMessage(t *testing.T) {
	_, failure := run(t, FailName, map[string]any{"message": "no way"}, nil)
	want := flowkit.Failure{ExceptionStr: "no way", ExcTypeNames: TaskFailedTypes, ExcArgs: []any{"no way"}}
	got := *failure
	got.TracebackStr = ""
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("failure = %#v", failure)
	}
	if !strings.Contains(failure.TracebackStr, "tasks.go\", line ") || !strings.Contains(failure.TracebackStr, "tasks.fail\n") {
		t.Fatalf("traceback = %q", failure.TracebackStr)
	}
}

func TestSleepReportsHalfwayProgress(t *testing.T) {
	var reports []float64
	began := time.Now()
	result, failure := run(t, SleepName, map[string]any{"seconds": json.Number("0.05")},
		func(p float64, _ map[string]any) { reports = append(reports, p) })
	if result != nil || failure != nil || !reflect.DeepEqual(reports, []float64{0.5}) {
		t.Fatalf("result=%v failure=%v reports=%v", result, failure, reports)
	}
	if elapsed := time.Since(began); elapsed < 50*time.Millisecond {
		t.Fatalf("slept only %s", elapsed)
	}
}

func TestSleepRefusesANegativeLengthAsPythonsSleepDoes(t *testing.T) {
	_, failure := run(t, SleepName, map[string]any{"seconds": json.Number("-1")}, nil)
	if failure == nil || failure.ExceptionStr != "sleep length must be non-negative" || !reflect.DeepEqual(failure.ExcTypeNames, ValueErrorTypes) {
		t.Fatalf("failure = %+v", failure)
	}
}

func TestSleepStopsWhenItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	call := &flowkit.Call{Context: ctx, Arguments: map[string]any{"seconds": json.Number("60")}, Progress: func(float64, map[string]any) {}}
	if _, err := sleep(call); err == nil {
		t.Fatal("no error")
	}
}

func TestEchoReturnsItsValueAndCountPrimesChecksItsArgument(t *testing.T) {
	value := map[string]any{"a": []any{json.Number("1"), "x", nil}}
	if result, failure := run(t, EchoName, map[string]any{"value": value}, nil); failure != nil || !reflect.DeepEqual(result, value) {
		t.Fatalf("result=%v failure=%v", result, failure)
	}
	if _, failure := run(t, CountPrimesName, map[string]any{"limit": "ten"}, nil); failure == nil || !failure.HasType("builtins.TypeError") {
		t.Fatalf("failure = %#v", failure)
	}
	if result, _ := run(t, Sha256RoundsName, map[string]any{"data": "a", "rounds": json.Number("1")}, nil); result != Sha256Rounds("a", 1) {
		t.Fatalf("result = %v", result)
	}
}

func BenchmarkCountPrimes5M(b *testing.B) {
	for i := 0; i < b.N; i++ {
		CountPrimes(5_000_000)
	}
}

func TestAnnounceNotifiesEachEventWithThoseLeftThenReportsProgress(t *testing.T) {
	var heard []string
	reg := flowkit.NewRegistry()
	RegisterAll(reg)
	arguments := map[string]any{"events": []any{"A", "B"}}
	call := &flowkit.Call{
		Context: context.Background(), Task: AnnounceName, Arguments: arguments,
		Progress: func(p float64, _ map[string]any) { heard = append(heard, fmt.Sprint(p)) },
		Notify: func(name string, details map[string]any) {
			heard = append(heard, fmt.Sprint(name, details["leftover"]))
		},
	}
	result, failure := reg.Run(call, &flowkit.Request{Task: AnnounceName, Action: flowkit.ActionExecute, Arguments: arguments})
	if result != 2 || failure != nil || !reflect.DeepEqual(heard, []string{"A[A B]", "0.5", "B[B]", "1"}) {
		t.Fatalf("result=%v failure=%v heard=%v", result, failure, heard)
	}
	for _, bad := range []any{"A", []any{"A", 1}, []any{""}} {
		_, failure := run(t, AnnounceName, map[string]any{"events": bad}, nil)
		if failure == nil || !reflect.DeepEqual(failure.ExcTypeNames, flowkit.TypeErrorTypes) {
			t.Errorf("events=%v: failure = %+v", bad, failure)
		}
	}
}

func TestReserveReturnsItsSlotAndItsRevertReleasesIt(t *testing.T) {
	if result, failure := run(t, ReserveName, map[string]any{"slot": "s1"}, nil); failure != nil || result != "s1" {
		t.Fatalf("result=%v failure=%v", result, failure)
	}
	reg := flowkit.NewRegistry()
	RegisterAll(reg)
	revert := func(arguments map[string]any) (any, *flowkit.Failure) {
		call := &flowkit.Call{Context: context.Background(), Task: ReserveName, Arguments: arguments}
		return reg.Run(call, &flowkit.Request{Task: ReserveName, Action: flowkit.ActionRevert, Arguments: arguments, Result: "s1"})
	}
	if result, failure := revert(map[string]any{"slot": "s1"}); failure != nil || result != "released s1" {
		t.Fatalf("revert: result=%v failure=%v", result, failure)
	}
	// Its revert takes what its execute takes, as its Python twin's does.
	want := "Reserve.revert() got an unexpected keyword argument 'extra'"
	if _, failure := revert(map[string]any{"slot": "s1", "extra": "x"}); failure == nil || failure.ExceptionStr != want {
		t.Fatalf("revert with extra: failure = %v", failure)
	}
}
