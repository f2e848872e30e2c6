package flowkit_test

// Integration tests: a real redis-server (started on a free port, once for the
// package) and a real Worker, driven the way the Python engine drives it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flowkit/flowkit/go_worker/flowkit"
	"github.com/flowkit/flowkit/go_worker/tasks"
)

var (
	redisOnce sync.Once
	redisURL  string
	redisErr  error
	redisProc *exec.Cmd
	testSeq   atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if redisProc != nil {
		_ = redisProc.Process.Kill()
		_, _ = redisProc.Process.Wait()
	}
	os.Exit(code)
}

// needRedis returns the URL of the package's redis-server, starting it once.
// Without redis-server the test is skipped, unless CI=true.
func needRedis(t *testing.T) string {
	t.Helper()
	redisOnce.Do(func() { redisURL, redisErr = startRedis() })
	if redisErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is needed under CI: %v", redisErr)
		}
		t.Skipf("skipping: no usable redis-server (%v)", redisErr)
	}
	return redisURL
}

func startRedis() (string, error) {
	url, cmd, err := launchRedis()
	if cmd != nil {
		redisProc = cmd
	}
	return url, err
}

// launchRedis starts a redis-server on a free port and waits for it to answer;
// the process is returned (when it started) for the caller to kill.
func launchRedis() (string, *exec.Cmd, error) {
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, err
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := listener.Addr().(*net.TCPAddr).Port
	listener.Close()
	cmd := exec.Command(binary, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	client := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), Protocol: 2, DisableIdentity: true})
	defer client.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if client.Ping(context.Background()).Err() == nil {
			return url, cmd, nil
		}
	}
	return "", cmd, errors.New("redis-server did not answer within 10s")
}

// syncBuffer collects the worker's log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness plays the engine: it adds requests and reads the replies.
type harness struct {
	t         *testing.T
	client    *redis.Client
	namespace string
	topic     string
	stream    string
	replyTo   string
	secret    []byte
	log       *syncBuffer
	lastID    string
	unclaimed map[string][]*flowkit.Response // read, for requests not asked about yet
}

func newHarness(t *testing.T) *harness {
	url := needRedis(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opts.Protocol = 2
	opts.DisableIdentity = true
	client := redis.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	namespace := fmt.Sprintf("test%d", testSeq.Add(1))
	return &harness{
		t: t, client: client, namespace: namespace, topic: "cpu",
		stream:    flowkit.RequestsKey(namespace, "cpu"),
		replyTo:   flowkit.RepliesKey(namespace, "engine1"),
		log:       &syncBuffer{},
		lastID:    "0",
		unclaimed: map[string][]*flowkit.Response{},
	}
}

func (h *harness) options(change func(*flowkit.Options)) flowkit.Options {
	opts := flowkit.Options{
		RedisURL:          redisURL,
		Topic:             h.topic,
		Namespace:         h.namespace,
		Concurrency:       4,
		Heartbeat:         100 * time.Millisecond,
		VisibilityTimeout: 2 * time.Second,
		Secret:            h.secret,
		Grace:             5 * time.Second,
		WorkerID:          "go-test-" + h.namespace,
		Logger:            slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if opts.Secret == nil {
		opts.Secret = []byte{}
	}
	if change != nil {
		change(&opts)
	}
	return opts
}

// panickyJSON is a result whose MarshalJSON panics, as a type that reads a
// closed resource to marshal itself does.
type panickyJSON struct{}

func (panickyJSON) MarshalJSON() ([]byte, error) { panic("lost the connection") }

// anyArgs lets a test task take whatever arguments its requests carry: these
// tests are about other things than the arguments' check.
var anyArgs = flowkit.Args{Others: true}

func testRegistry() *flowkit.Registry {
	reg := flowkit.NewRegistry()
	tasks.RegisterAll(reg)
	reg.Register("test.Error", anyArgs, func(*flowkit.Call) (any, error) { return nil, errors.New("plain error") }, nil)
	reg.Register("test.Panic", anyArgs, func(*flowkit.Call) (any, error) { panic("kaboom") }, nil)
	reg.Register("test.NaN", anyArgs, func(*flowkit.Call) (any, error) { return math.NaN(), nil }, nil)
	reg.Register("test.Deep", anyArgs, func(*flowkit.Call) (any, error) {
		var value any = []any{}
		for i := 0; i < flowkit.MaxDepth; i++ {
			value = []any{value}
		}
		return value, nil
	}, nil)
	reg.Register("test.Bytes", anyArgs, func(*flowkit.Call) (any, error) { return string([]byte{'o', 0xff, 'k'}), nil }, nil)
	reg.Register("test.BadText", anyArgs, func(*flowkit.Call) (any, error) {
		return nil, errors.New("x" + strings.Repeat("é", 600) + string([]byte{0xff}))
	}, nil)
	reg.Register("test.Goexit", anyArgs, func(*flowkit.Call) (any, error) { runtime.Goexit(); return nil, nil }, nil)
	reg.Register("test.PanickyResult", anyArgs, func(*flowkit.Call) (any, error) { return panickyJSON{}, nil }, nil)
	reg.Register("test.Notify", anyArgs, func(call *flowkit.Call) (any, error) {
		call.Notify("A", map[string]any{"leftover": []any{"A", "B"}})
		call.Notify("", nil)                                  // no type: dropped
		call.Notify("bad", map[string]any{"nan": math.NaN()}) // not JSON: dropped
		call.Progress(0.5, nil)
		call.Notify("B", nil)
		return "done", nil
	}, nil)
	reg.Register("test.OddProgress", anyArgs, func(call *flowkit.Call) (any, error) {
		call.Progress(math.NaN(), nil)
		call.Progress(-0.5, nil)
		call.Progress(1.5, nil)
		return nil, nil
	}, nil)
	reg.Register("test.Keep", anyArgs, func(call *flowkit.Call) (any, error) {
		kept.Store(call.RequestID, call) // for a test to use after the task returned
		return nil, nil
	}, nil)
	reg.Register(blockName, anyArgs, block, nil)
	reg.Register("test.Revert", anyArgs, func(*flowkit.Call) (any, error) { return nil, nil },
		func(call *flowkit.Call, result any, failure *flowkit.Failure, flowFailures map[string]*flowkit.Failure) (any, error) {
			return map[string]any{
				"result": result, "failure": failure, "flow_failures": flowFailures, "arguments": call.Arguments,
			}, nil
		})
	return reg
}

// kept holds the calls of test.Keep by request id.
var kept sync.Map

// blockName is a task that runs until the test opens its gate (or its
// request is abandoned): a request that stays running as long as a test needs.
const blockName = "test.Block"

var gates sync.Map // gate name -> chan struct{}

// gate makes a gate for blockName's "gate" argument; open (also called when
// the test ends) lets the task finish. Make it after starting the worker, so
// that it opens before the worker is stopped.
func gate(t *testing.T) (name string, open func()) {
	name = fmt.Sprintf("gate-%d", testSeq.Add(1))
	ch := make(chan struct{})
	gates.Store(name, ch)
	var once sync.Once
	open = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(open)
	return name, open
}

func block(call *flowkit.Call) (any, error) {
	name, _ := call.Arguments["gate"].(string)
	ch, ok := gates.Load(name)
	if !ok {
		return nil, fmt.Errorf("no gate named %q", name)
	}
	select {
	case <-ch.(chan struct{}):
		return "opened", nil
	case <-call.Context.Done():
		return nil, call.Context.Err()
	}
}

// start runs a worker until the test ends; the returned channel is closed
// when Run returns, after *runErr is set.
func (h *harness) start(change func(*flowkit.Options)) (*flowkit.Worker, <-chan struct{}, *error) {
	h.t.Helper()
	return h.startWith(testRegistry(), change)
}

// startWith is start with a registry of the test's own.
func (h *harness) startWith(reg *flowkit.Registry, change func(*flowkit.Options)) (*flowkit.Worker, <-chan struct{}, *error) {
	h.t.Helper()
	worker, err := flowkit.NewWorker(reg, h.options(change))
	if err != nil {
		h.t.Fatal(err)
	}
	done := make(chan struct{})
	runErr := new(error)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		*runErr = worker.Run(ctx)
		close(done)
	}()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			h.t.Error("worker did not stop")
		}
	})
	h.waitAdvertised(worker.ID())
	return worker, done, runErr
}

func (h *harness) waitAdvertised(id string) {
	h.t.Helper()
	h.eventually("worker advertised", func() bool {
		return h.client.Exists(context.Background(), flowkit.WorkerKey(h.namespace, id)).Val() == 1
	})
}

// makeIdle gives a pending entry to consumer and makes Redis see it idle for
// idle, as if its worker had died that long ago.
func (h *harness) makeIdle(consumer, entryID string, idle time.Duration) {
	h.t.Helper()
	err := h.client.Do(context.Background(), "XCLAIM", h.stream, flowkit.Group, consumer, 0, entryID,
		"IDLE", idle.Milliseconds(), "JUSTID").Err()
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) eventually(what string, ok func() bool) {
	h.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	h.t.Fatalf("timed out waiting for: %s", what)
}

func (h *harness) request(task, action string, arguments map[string]any, change func(*flowkit.Request)) *flowkit.Request {
	now := flowkit.Now()
	request := &flowkit.Request{
		ID: fmt.Sprintf("req-%d", testSeq.Add(1)), ReplyTo: h.replyTo, Action: action, Task: task,
		Name: "atom", Arguments: arguments, SentAt: now, Deadline: now + 30,
	}
	if action == flowkit.ActionRevert {
		request.FlowFailures = map[string]*flowkit.Failure{}
	}
	if change != nil {
		change(request)
	}
	return request
}

// madeUpEntries encodes n execute requests for task as stream entries with
// made-up ids 1-1..1-n, never added to the stream, so that only a test's own
// Dispatch hands them to the worker; it returns the entries and the request ids.
func (h *harness) madeUpEntries(task string, n int) ([]redis.XMessage, []string) {
	h.t.Helper()
	var entries []redis.XMessage
	var ids []string
	for i := 1; i <= n; i++ {
		request := h.request(task, flowkit.ActionExecute, map[string]any{}, nil)
		envelope, err := flowkit.Encode(request, nil, 0)
		if err != nil {
			h.t.Fatal(err)
		}
		entries = append(entries, redis.XMessage{ID: fmt.Sprintf("1-%d", i), Values: envelope})
		ids = append(ids, request.ID)
	}
	return entries, ids
}

// add sends a request (or raw envelope fields) and returns the stream entry id.
func (h *harness) add(message any) string {
	h.t.Helper()
	var values map[string]any
	switch m := message.(type) {
	case map[string]any:
		values = m
	default:
		envelope, err := flowkit.Encode(m, h.secret, 0)
		if err != nil {
			h.t.Fatal(err)
		}
		values = envelope
	}
	id, err := h.client.XAdd(context.Background(), &redis.XAddArgs{Stream: h.stream, Values: values}).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// responses reads replies until one is terminal for requestID (or timeout).
func (h *harness) responses(requestID string, timeout time.Duration) []*flowkit.Response {
	h.t.Helper()
	return h.responsesUntil(requestID, timeout, flowkit.EventSuccess, flowkit.EventFailure)
}

// responsesUntil reads replies to requestID until one has one of the events (or timeout).
func (h *harness) responsesUntil(requestID string, timeout time.Duration, until ...string) []*flowkit.Response {
	h.t.Helper()
	var got []*flowkit.Response
	for len(h.unclaimed[requestID]) > 0 {
		response := h.unclaimed[requestID][0]
		h.unclaimed[requestID] = h.unclaimed[requestID][1:]
		got = append(got, response)
		for _, event := range until {
			if response.Event == event {
				return got
			}
		}
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		streams, err := h.client.XRead(context.Background(), &redis.XReadArgs{
			Streams: []string{h.replyTo, h.lastID}, Block: 100 * time.Millisecond,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			h.t.Fatal(err)
		}
		for _, stream := range streams {
			for _, entry := range stream.Messages {
				h.lastID = entry.ID
				message, err := flowkit.Decode(entry.Values, h.secret, 0)
				if err != nil {
					h.t.Fatalf("worker sent an invalid message: %v (%v)", err, entry.Values)
				}
				response := message.Response
				if response == nil {
					continue
				}
				if response.ID != requestID || len(h.unclaimed[requestID]) > 0 {
					h.unclaimed[response.ID] = append(h.unclaimed[response.ID], response)
					continue
				}
				got = append(got, response)
				for _, event := range until {
					if response.Event == event {
						return got
					}
				}
			}
		}
	}
	return got
}

// answered returns every response to requestID on the reply stream now,
// without waiting: once the request is acknowledged, any answer is there,
// since a worker writes an answer and its acknowledgement in one MULTI block.
func (h *harness) answered(requestID string) []*flowkit.Response {
	h.t.Helper()
	entries, err := h.client.XRange(context.Background(), h.replyTo, "-", "+").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	var got []*flowkit.Response
	for _, entry := range entries {
		message, err := flowkit.Decode(entry.Values, h.secret, 0)
		if err != nil {
			h.t.Fatalf("worker sent an invalid message: %v (%v)", err, entry.Values)
		}
		if message.Response != nil && message.Response.ID == requestID {
			got = append(got, message.Response)
		}
	}
	return got
}

// pendingEntry is the pending-list record of a request entry.
func (h *harness) pendingEntry(entryID string) redis.XPendingExt {
	h.t.Helper()
	pending, err := h.client.XPendingExt(context.Background(), &redis.XPendingExtArgs{
		Stream: h.stream, Group: flowkit.Group, Start: entryID, End: entryID, Count: 1,
	}).Result()
	if err != nil || len(pending) != 1 {
		h.t.Fatalf("entry %s pending: %v (%v)", entryID, pending, err)
	}
	return pending[0]
}

func (h *harness) final(requestID string) *flowkit.Response {
	h.t.Helper()
	got := h.responses(requestID, 10*time.Second)
	if len(got) == 0 {
		h.t.Fatalf("no response to %s; log:\n%s", requestID, h.log)
	}
	last := got[len(got)-1]
	if last.Event != flowkit.EventSuccess && last.Event != flowkit.EventFailure {
		h.t.Fatalf("no terminal response to %s: %v; log:\n%s", requestID, events(got), h.log)
	}
	return last
}

func events(responses []*flowkit.Response) []string {
	var names []string
	for _, r := range responses {
		names = append(names, r.Event)
	}
	return names
}

// settled says whether the request stream is empty and nothing is pending.
func (h *harness) settled() bool {
	ctx := context.Background()
	pending, err := h.client.XPending(ctx, h.stream, flowkit.Group).Result()
	return err == nil && pending.Count == 0 && h.client.XLen(ctx, h.stream).Val() == 0
}

func TestExecuteAndRevertRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	value := map[string]any{"big": json.Number("123456789012345678901"), "list": []any{json.Number("1.5"), "é", nil, true}}
	request := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": value}, nil)
	h.add(request)
	got := h.responses(request.ID, 10*time.Second)
	if !reflect.DeepEqual(events(got), []string{"running", "success"}) {
		t.Fatalf("events = %v; log:\n%s", events(got), h.log)
	}
	if !reflect.DeepEqual(got[1].Result, value) {
		t.Fatalf("result = %#v", got[1].Result)
	}
	h.eventually("request acknowledged and deleted", h.settled)

	boom := flowkit.NewFailure("boom", []string{"builtins.RuntimeError", "builtins.Exception", "builtins.BaseException"})
	revert := h.request("test.Revert", flowkit.ActionRevert, map[string]any{"x": json.Number("1")}, func(r *flowkit.Request) {
		r.Result = "vol-1"
		r.FlowFailures = map[string]*flowkit.Failure{"other": boom}
	})
	h.add(revert)
	result := h.final(revert.ID).Result.(map[string]any)
	if result["result"] != "vol-1" || result["failure"] != nil || result["arguments"].(map[string]any)["x"] != json.Number("1") {
		t.Fatalf("revert saw %#v", result)
	}
	other := result["flow_failures"].(map[string]any)["other"].(map[string]any)
	if other["exception_str"] != "boom" {
		t.Fatalf("flow failure = %#v", other)
	}

	ownFailure := h.request("test.Revert", flowkit.ActionRevert, nil, func(r *flowkit.Request) { r.Failure = boom })
	h.add(ownFailure)
	result = h.final(ownFailure.ID).Result.(map[string]any)
	if result["result"] != nil || result["failure"].(map[string]any)["exception_str"] != "boom" {
		t.Fatalf("revert saw %#v", result)
	}

	echoRevert := h.request(tasks.EchoName, flowkit.ActionRevert, map[string]any{"value": "v"}, func(r *flowkit.Request) { r.Result = "v" })
	h.add(echoRevert)
	if final := h.final(echoRevert.ID); final.Event != flowkit.EventSuccess || final.Result != nil {
		t.Fatalf("Echo revert = %+v", final)
	}
	h.eventually("every request acknowledged and deleted", h.settled)
}

func TestFailureTypesOfTaskErrorsGoErrorsAndPanics(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	cannotSend := "returned a result it cannot send\n"
	cases := []struct {
		task, message string
		names         []string
		// traceback ends with this, after the frame of the task's function ("": none).
		traceback string
	}{
		{tasks.FailName, "no way", tasks.TaskFailedTypes, "returned *flowkit.TaskError: no way\n"},
		{"test.Error", "plain error", flowkit.GoErrorTypes, "returned *errors.errorString: plain error\n"},
		{"test.Panic", "kaboom", flowkit.GoPanicTypes, ""},
		{"test.NaN", "test.NaN", flowkit.InvalidFormatTypes, cannotSend},
		// Deeper than the engine may read: answered, not left for it to drop.
		{"test.Deep", "returned a result it cannot send: message nests arrays and objects deeper than the limit of 512 levels", flowkit.InvalidFormatTypes, cannotSend},
		// Text that is not UTF-8 is refused rather than sent changed.
		{"test.Bytes", "returned a result it cannot send", flowkit.InvalidFormatTypes, cannotSend},
		// A failure whose message is not UTF-8 (and too long to send whole,
		// cut in the middle of a character) still gets its gist across
		// (without its traceback, as the Python worker's gist).
		{"test.BadText", "x" + strings.Repeat("é", 499) + "\uFFFD (full failure record not sendable", flowkit.GoErrorTypes, ""},
		// Not returning at all (as t.FailNow does) is a failure too, not a request left
		// unanswered; no panic, but what a Python task's SystemExit is: no Exception.
		{"test.Goexit", "the execute of task test.Goexit (atom atom) ended its goroutine (runtime.Goexit)", []string{"go.goexit", "BaseException"}, "ended its goroutine (runtime.Goexit) instead of returning\n"},
		// A result whose MarshalJSON panics (the task's own code, run by the
		// encoder) was left unanswered, to be run again at every delivery.
		{"test.PanickyResult", `returned a result it cannot send: message is not JSON-encodable: json: error calling MarshalJSON for type *flowkit.Response: field "result": encoding panicked: lost the connection`, flowkit.InvalidFormatTypes, cannotSend},
	}
	for _, c := range cases {
		request := h.request(c.task, flowkit.ActionExecute, map[string]any{"message": "no way"}, nil)
		h.add(request)
		final := h.final(request.ID)
		if final.Event != flowkit.EventFailure || !reflect.DeepEqual(final.Failure.ExcTypeNames, c.names) ||
			!strings.Contains(final.Failure.ExceptionStr, c.message) {
			t.Errorf("%s: final = %+v failure = %+v", c.task, final, final.Failure)
		}
		traceback := final.Failure.TracebackStr
		switch {
		case c.task == "test.BadText":
			if traceback != "" {
				t.Errorf("%s: traceback = %q", c.task, traceback)
			}
		case c.task == "test.Panic":
			// The frame, then the stack from the panicking function down (not the worker's recovery).
			if !strings.HasPrefix(traceback, `  File "`) || !strings.Contains(traceback, "\n    Go task test.Panic, execute, panicked: kaboom\ngoroutine ") ||
				!strings.Contains(traceback, "worker_test.go:") || strings.Contains(traceback, "runtime/debug.Stack") {
				t.Errorf("%s: traceback = %q", c.task, traceback)
			}
		default:
			if !strings.HasPrefix(traceback, `  File "`) || !strings.HasSuffix(traceback, "\n    Go task "+c.task+", execute, "+c.traceback) {
				t.Errorf("%s: traceback = %q", c.task, traceback)
			}
		}
	}
	// The worker survived the panic.
	request := h.request(tasks.CountPrimesName, flowkit.ActionExecute, map[string]any{"limit": json.Number("100")}, nil)
	h.add(request)
	if final := h.final(request.ID); final.Result != json.Number("25") {
		t.Fatalf("after the panic: %+v", final)
	}
	h.eventually("every request acknowledged and deleted", h.settled)
}

func TestProgressResponsesComeBetweenRunningAndSuccess(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	request := h.request(tasks.SleepName, flowkit.ActionExecute, map[string]any{"seconds": json.Number("0.2")}, nil)
	h.add(request)
	got := h.responses(request.ID, 10*time.Second)
	if !reflect.DeepEqual(events(got), []string{"running", "progress", "success"}) || got[1].Progress != 0.5 {
		t.Fatalf("events = %v", events(got))
	}
}

func TestNotifiedEventsAreSentInOrderAndUnsendableOnesDropped(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	request := h.request("test.Notify", flowkit.ActionExecute, map[string]any{}, nil)
	h.add(request)
	got := h.responses(request.ID, 10*time.Second)
	want := []string{"running", "notification", "progress", "notification", "success"}
	if !reflect.DeepEqual(events(got), want) {
		t.Fatalf("events = %v, want %v; log:\n%s", events(got), want, h.log)
	}
	first, second := got[1], got[3]
	if first.EventType != "A" || !reflect.DeepEqual(first.Details, map[string]any{"leftover": []any{"A", "B"}}) {
		t.Fatalf("first event = %+v", first)
	}
	if second.EventType != "B" || second.Details != nil {
		t.Fatalf("second event = %+v", second)
	}
	for _, dropped := range []string{"without a type", "of request " + request.ID + " cannot be sent"} {
		if !strings.Contains(h.log.String(), dropped) {
			t.Errorf("log does not say %q:\n%s", dropped, h.log)
		}
	}
}

func TestProgressOutsideZeroToOneIsClampedAsPythonTasksDoNaNToZero(t *testing.T) {
	// A Python task's update_progress clamps NaN to 0.0 and sends it; the Go
	// worker dropped it, so the engine heard one report fewer.
	h := newHarness(t)
	h.start(nil)
	request := h.request("test.OddProgress", flowkit.ActionExecute, map[string]any{}, nil)
	h.add(request)
	got := h.responses(request.ID, 10*time.Second)
	if values := progressValues(got); !reflect.DeepEqual(values, []float64{0, 0, 1}) {
		t.Fatalf("progress = %v, want [0 0 1]", values)
	}
}

// progressValues are the progress values of responses, in order.
func progressValues(responses []*flowkit.Response) []float64 {
	var values []float64
	for _, r := range responses {
		if r.Event == flowkit.EventProgress {
			values = append(values, r.Progress)
		}
	}
	return values
}

func TestProgressIsSentInBurstsOfTwentyThenOnePer50msAndTheLastValueAlways(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock(time.Now())
	reg := testRegistry()
	reg.Register("test.Flood", anyArgs, func(call *flowkit.Call) (any, error) {
		for i := 1; i <= 25; i++ { // the clock stands still: 20 go out, the rest wait
			call.Progress(float64(i)/100, nil)
		}
		clock.advance(50 * time.Millisecond) // one report earned back
		call.Progress(0.5, nil)
		call.Progress(0.6, nil) // none left: kept
		clock.advance(25 * time.Millisecond)
		call.Progress(0.7, nil) // half a report earned: kept instead of 0.6
		clock.advance(25 * time.Millisecond)
		call.Progress(0.8, nil) // the other half: sent
		call.Progress(0.9, nil) // kept, and sent when the task returns
		return nil, nil
	}, nil)
	h.startWith(reg, func(o *flowkit.Options) { o.Clock = clock })
	request := h.request("test.Flood", flowkit.ActionExecute, map[string]any{}, nil)
	h.add(request)
	got := h.responses(request.ID, 10*time.Second)
	var want []float64
	for i := 1; i <= 20; i++ {
		want = append(want, float64(i)/100)
	}
	want = append(want, 0.5, 0.8, 0.9)
	if values := progressValues(got); !reflect.DeepEqual(values, want) {
		t.Fatalf("progress sent = %v, want %v", values, want)
	}
	if last := got[len(got)-1]; last.Event != flowkit.EventSuccess {
		t.Fatalf("events = %v", events(got))
	}
}

func TestUnknownTaskIsAnsweredWithNotFound(t *testing.T) {
	h := newHarness(t)
	worker, _, _ := h.start(nil)
	request := h.request("nobody.Knows", flowkit.ActionExecute, map[string]any{}, nil)
	h.add(request)
	got := h.responses(request.ID, 10*time.Second)
	if len(got) != 1 || got[0].Event != flowkit.EventFailure {
		t.Fatalf("events = %v", events(got))
	}
	want := fmt.Sprintf("worker %s on topic cpu has no task named nobody.Knows", worker.ID())
	if got[0].Failure.ExceptionStr != want || !reflect.DeepEqual(got[0].Failure.ExcTypeNames, flowkit.NotFoundTypes) {
		t.Fatalf("failure = %+v", got[0].Failure)
	}
	h.eventually("request acknowledged and deleted", h.settled)
}

func TestBadlySignedRequestsAreDroppedAndTheWorkerKeepsRunning(t *testing.T) {
	h := newHarness(t)
	h.secret = []byte("s3cret")
	h.start(nil)
	good := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": "x"}, nil)
	body := []byte(`{"v":1}`)
	if envelope, err := flowkit.Encode(good, nil, 0); err == nil {
		body = []byte(envelope["body"].(string))
	}
	entries := map[string]string{
		h.add(map[string]any{"body": string(body)}):                                                  "not signed",
		h.add(map[string]any{"body": string(body), "sig": flowkit.Sign(body, []byte("bad"))}):        "signature does not match",
		h.add(map[string]any{"body": "not json", "sig": flowkit.Sign([]byte("not json"), h.secret)}): "not JSON",
		h.add(map[string]any{"nobody": "x"}):                                                         "no 'body'",
	}
	h.eventually("rejected entries acknowledged and deleted", h.settled)
	for id, reason := range entries {
		if !strings.Contains(h.log.String(), "entry "+id+": ") || !strings.Contains(h.log.String(), reason) {
			t.Errorf("no log line names entry %s and %q:\n%s", id, reason, h.log)
		}
	}
	if n := h.client.XLen(context.Background(), h.replyTo).Val(); n != 0 {
		t.Fatalf("%d responses to rejected requests", n)
	}
	h.add(good)
	final := h.final(good.ID) // decoded with the secret: the reply is signed
	if final.Result != "x" {
		t.Fatalf("final = %+v", final)
	}
}

func TestOtherProtocolVersionsAreAnsweredAndLateRequestsDropped(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	body := fmt.Sprintf(`{"v":2,"type":"request","id":"v2-req","reply_to":%q,"whatever":1}`, h.replyTo)
	h.add(map[string]any{"body": body})
	final := h.final("v2-req")
	if !reflect.DeepEqual(final.Failure.ExcTypeNames, flowkit.IncompatibleVersionTypes) ||
		!strings.Contains(final.Failure.ExceptionStr, "unsupported protocol version 2") {
		t.Fatalf("failure = %+v", final.Failure)
	}
	late := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": 1}, func(r *flowkit.Request) {
		r.Deadline = flowkit.Now() - 1
	})
	h.add(late)
	h.eventually("late request acknowledged and deleted", h.settled)
	if got := h.answered(late.ID); len(got) != 0 {
		t.Fatalf("late request answered: %v", events(got))
	}
	if !strings.Contains(h.log.String(), "its deadline passed") {
		t.Fatalf("no log of the dropped request:\n%s", h.log)
	}
}

func TestStalePendingRequestsAreTakenOverOrFailedAfterMaxDeliveries(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.client.XGroupCreateMkStream(ctx, h.stream, flowkit.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	fresh := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": "again"}, nil)
	worn := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": "never"}, nil)
	freshID, wornID := h.add(fresh), h.add(worn)
	// A worker that died after reading both: they sit in its pending list.
	if err := h.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: flowkit.Group, Consumer: "dead", Streams: []string{h.stream, ">"}, Count: 10,
	}).Err(); err != nil {
		t.Fatal(err)
	}
	// The worn one was already re-delivered to other dead workers (3 deliveries in all).
	for _, consumer := range []string{"dead2", "dead3"} {
		if err := h.client.XClaim(ctx, &redis.XClaimArgs{
			Stream: h.stream, Group: flowkit.Group, Consumer: consumer, Messages: []string{wornID},
		}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Both look idle for a minute, far past the visibility timeout, without
	// waiting for it: XCLAIM ... IDLE sets Redis's own idle clock (JUSTID: not
	// a delivery).
	h.makeIdle("dead", freshID, time.Minute)
	h.makeIdle("dead3", wornID, time.Minute)
	// The dead worker had claimed the fresh one against replays: a takeover of
	// the same entry still runs it.
	if err := h.client.Set(ctx, flowkit.SeenKey(h.namespace, fresh.ID), freshID, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	w, _, _ := h.start(func(o *flowkit.Options) { o.MaxDeliveries = 3 })
	if final := h.final(fresh.ID); final.Result != "again" {
		t.Fatalf("taken-over request: %+v", final)
	}
	final := h.final(worn.ID)
	// The failure names the atom, its task and the worker that gave up, not just a request id.
	want := fmt.Sprintf("the execute request %s of atom 'atom' (task %s) was delivered 4 times and its workers died; "+
		"worker %s on topic %s gave up on it", worn.ID, tasks.EchoName, w.ID(), h.topic)
	if final.Event != flowkit.EventFailure || !reflect.DeepEqual(final.Failure.ExcTypeNames, flowkit.RequestTimeoutTypes) ||
		final.Failure.ExceptionStr != want {
		t.Fatalf("worn request: %+v %+v", final, final.Failure)
	}
	h.eventually("both acknowledged and deleted", h.settled)
	if !strings.Contains(h.log.String(), "takes over request "+fresh.ID+" (entry "+freshID) {
		t.Fatalf("no takeover log:\n%s", h.log)
	}
}

func TestRunningRequestsStayClaimedPastTheVisibilityTimeout(t *testing.T) {
	h := newHarness(t)
	// Two workers, each on a clock of its own: either takes over a request
	// whose entry looks stale when its heartbeat falls due.
	clocks := map[string]*fakeClock{}
	for _, id := range []string{"go-test-a-" + h.namespace, "go-test-b-" + h.namespace} {
		clock := newFakeClock(time.Now())
		clocks[id] = clock
		h.start(func(o *flowkit.Options) {
			o.WorkerID, o.Clock = id, clock
			o.Heartbeat, o.VisibilityTimeout = time.Second, 5*time.Second
		})
		clock.settle(t, 1) // its first beat is done; the next one waits on the clock
	}
	name, open := gate(t)
	request := h.request(blockName, flowkit.ActionExecute, map[string]any{"gate": name}, nil)
	entryID := h.add(request)
	running := h.responsesUntil(request.ID, 5*time.Second, flowkit.EventRunning)
	if len(running) != 1 || running[0].Event != flowkit.EventRunning {
		t.Fatalf("events = %v", events(running))
	}
	owner, other := running[0].Worker, ""
	for id := range clocks {
		if id != owner {
			other = id
		}
	}
	// Redis sees the running entry idle for a minute, far past the
	// visibility timeout: stale, unless its worker refreshes the claim.
	h.makeIdle(owner, entryID, time.Minute)

	clocks[owner].advance(900 * time.Millisecond) // short of a heartbeat: nothing refreshed
	clocks[owner].settle(t, 1)
	if p := h.pendingEntry(entryID); p.Idle < time.Minute {
		t.Fatalf("claim refreshed before a heartbeat was due: %+v", p)
	}
	clocks[owner].advance(100 * time.Millisecond) // the owner's heartbeat
	clocks[owner].settle(t, 1)
	clocks[other].advance(time.Second) // the other worker's heartbeat, which looks for stale entries
	clocks[other].settle(t, 1)
	if p := h.pendingEntry(entryID); p.Consumer != owner || p.Idle >= 5*time.Second || p.RetryCount != 1 {
		t.Fatalf("after both heartbeats: %+v (owner %s; a refresh resets the idle time and is not a delivery)", p, owner)
	}

	open()
	got := h.responses(request.ID, 10*time.Second)
	if !reflect.DeepEqual(events(got), []string{"success"}) || got[0].Worker != owner {
		t.Fatalf("after the running reply: %v from %v (a second running means a takeover)", events(got), got)
	}
}

func TestAdvertisementIsPublishedAndRemovedOnStop(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock(time.Now())
	worker, done, runErr := h.start(func(o *flowkit.Options) { o.Clock = clock })
	ctx := context.Background()
	fields, err := h.client.HGetAll(ctx, flowkit.WorkerKey(h.namespace, worker.ID())).Result()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]any{}
	for k, v := range fields {
		values[k] = v
	}
	message, err := flowkit.Decode(values, nil, 0)
	if err != nil || message.Notify == nil {
		t.Fatalf("advert: %v %v", err, fields)
	}
	notify := message.Notify
	if notify.Language != "go" || notify.Topic != "cpu" || notify.Worker != worker.ID() || notify.Heartbeat != 0.1 ||
		notify.VisibilityTimeout != 2 || len(notify.Tasks) != len(testRegistry().Names()) ||
		notify.MaxMessageBytes != flowkit.MaxMessageBytes {
		t.Fatalf("notify = %+v", notify)
	}
	score, err := h.client.ZScore(ctx, flowkit.WorkersKey(h.namespace, "cpu"), worker.ID()).Result()
	if expiry := clock.Now().Add(300 * time.Millisecond).UnixMilli(); err != nil || score != float64(expiry) {
		t.Fatalf("zset score %v (%v), expected three heartbeats after the worker's now, %d", score, err, expiry)
	}
	topicScore, err := h.client.ZScore(ctx, flowkit.TopicsKey(h.namespace), "cpu").Result()
	if err != nil || topicScore != score {
		t.Fatalf("topics score %v (%v), expected the worker's own expiry %v", topicScore, err, score)
	}
	if ttl := h.client.PTTL(ctx, flowkit.WorkerKey(h.namespace, worker.ID())).Val(); ttl <= 0 || ttl > 300*time.Millisecond {
		t.Fatalf("hash TTL = %v", ttl)
	}
	// A stop lets the running request finish first, however long the grace.
	name, open := gate(t)
	request := h.request(blockName, flowkit.ActionExecute, map[string]any{"gate": name}, nil)
	h.add(request)
	if got := h.responsesUntil(request.ID, 5*time.Second, flowkit.EventRunning); len(got) != 1 {
		t.Fatalf("events = %v", events(got))
	}
	worker.Stop()
	clock.settle(t, 2) // the heartbeat's timer and the grace period's
	clock.advance(4900 * time.Millisecond)
	clock.settle(t, 2)
	select {
	case <-done:
		t.Fatal("Run returned while a request was running within the grace period")
	default:
	}
	open()
	select {
	case <-done:
		if *runErr != nil {
			t.Fatal(*runErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if final := h.final(request.ID); final.Event != flowkit.EventSuccess {
		t.Fatalf("final = %+v", final)
	}
	if !h.settled() {
		t.Fatal("the finished request was not acknowledged")
	}
	if h.client.Exists(ctx, flowkit.WorkerKey(h.namespace, worker.ID())).Val() != 0 ||
		h.client.ZScore(ctx, flowkit.WorkersKey(h.namespace, "cpu"), worker.ID()).Err() != redis.Nil {
		t.Fatal("advertisement left behind")
	}
	if consumers := h.consumers(); consumers[worker.ID()] {
		t.Fatalf("consumers after a clean stop: %v, expected %s gone (each restart would add one)", consumers, worker.ID())
	}
}

// consumers is the set of consumer names in the topic's group.
func (h *harness) consumers() map[string]bool {
	h.t.Helper()
	rows, err := h.client.XInfoConsumers(context.Background(), h.stream, flowkit.Group).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	names := map[string]bool{}
	for _, row := range rows {
		names[row.Name] = true
	}
	return names
}

func TestDeadWorkersConsumersHoldingNothingAreRemoved(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.client.XGroupCreateMkStream(ctx, h.stream, flowkit.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	// A dead worker that held nothing, a dead one still holding an entry, and a
	// live one (advertised) that has not read for a while.
	request := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": 1}, nil)
	h.add(request)
	held := h.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: flowkit.Group, Consumer: "dead-holding", Streams: []string{h.stream, ">"}, Count: 1,
	})
	if err := held.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dead-empty", "alive-idle"} {
		if err := h.client.XGroupCreateConsumer(ctx, h.stream, flowkit.Group, name).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.client.HSet(ctx, flowkit.WorkerKey(h.namespace, "alive-idle"), "body", "{}").Err(); err != nil {
		t.Fatal(err)
	}
	h.start(func(o *flowkit.Options) {
		o.VisibilityTimeout = 300 * time.Millisecond
		o.Heartbeat = 50 * time.Millisecond
	})
	h.eventually("the consumer of the dead worker holding nothing removed", func() bool { return !h.consumers()["dead-empty"] })
	if consumers := h.consumers(); !consumers["alive-idle"] {
		t.Fatalf("consumers = %v: an advertised worker's consumer was removed", consumers)
	}
	// The entry still held is taken over, answered, and then its dead consumer goes too.
	if final := h.final(request.ID); final.Event != flowkit.EventSuccess {
		t.Fatalf("final = %+v", final)
	}
	h.eventually("the dead worker's consumer removed once its entry was taken over", func() bool { return !h.consumers()["dead-holding"] })
}

func TestRequestsStillRunningAfterTheGraceAreLeftPending(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock(time.Now())
	worker, done, _ := h.start(func(o *flowkit.Options) { o.Clock = clock; o.Grace = 10 * time.Second })
	name, _ := gate(t)
	request := h.request(blockName, flowkit.ActionExecute, map[string]any{"gate": name}, nil)
	entryID := h.add(request)
	if got := h.responsesUntil(request.ID, 5*time.Second, flowkit.EventRunning); !reflect.DeepEqual(events(got), []string{"running"}) {
		t.Fatalf("events = %v", events(got))
	}
	worker.Stop()
	clock.settle(t, 2) // the heartbeat's timer and the grace period's
	clock.advance(9900 * time.Millisecond)
	clock.settle(t, 2)
	select {
	case <-done:
		t.Fatal("Run returned before the grace period ended")
	default:
	}
	clock.advance(100 * time.Millisecond) // the grace is over; the request still runs
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return once the grace was over; log:\n%s", h.log)
	}
	if p := h.pendingEntry(entryID); p.Consumer != worker.ID() {
		t.Fatalf("abandoned entry: %+v, expected pending on %s for another worker to take over", p, worker.ID())
	}
	if got := h.answered(request.ID); !reflect.DeepEqual(events(got), []string{"running"}) {
		t.Fatalf("abandoned request answered: %v", events(got))
	}
}

func TestBurstModeReturnsWhenIdle(t *testing.T) {
	h := newHarness(t)
	request := h.request(tasks.CountPrimesName, flowkit.ActionExecute, map[string]any{"limit": json.Number("1000")}, nil)
	h.add(request)
	worker, err := flowkit.NewWorker(testRegistry(), h.options(func(o *flowkit.Options) { o.Burst = true }))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- worker.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		worker.Stop()
		t.Fatal("burst worker did not return")
	}
	if final := h.final(request.ID); final.Result != json.Number("168") {
		t.Fatalf("final = %+v", final)
	}
}

func TestWorkerRecreatesItsGroupWhenTheStreamIsDeleted(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	h.eventually("worker waiting in XREADGROUP", func() bool {
		clients, err := h.client.ClientList(context.Background()).Result()
		return err == nil && strings.Contains(clients, "cmd=xreadgroup")
	})
	if err := h.client.Del(context.Background(), h.stream).Err(); err != nil {
		t.Fatal(err)
	}
	h.eventually("group re-created", func() bool {
		groups, err := h.client.XInfoGroups(context.Background(), h.stream).Result()
		return err == nil && len(groups) == 1
	})
	request := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": "back"}, nil)
	h.add(request)
	if final := h.final(request.ID); final.Result != "back" {
		t.Fatalf("final = %+v", final)
	}
	// A read begun after the deletion gets NOGROUP; one blocked across it is
	// ended by Redis with "UNBLOCKED the stream key no longer exists".
	if log := h.log.String(); !strings.Contains(log, "NOGROUP") && !strings.Contains(log, "no longer exists") {
		t.Fatalf("the Redis error was not logged:\n%s", h.log)
	}
}

func TestNewWorkerChecksItsOptions(t *testing.T) {
	reg := testRegistry()
	for name, opts := range map[string]flowkit.Options{
		"no topic":            {RedisURL: "redis://localhost"},
		"visibility too low":  {RedisURL: "redis://localhost", Topic: "t", Heartbeat: time.Second, VisibilityTimeout: time.Second},
		"bad url":             {RedisURL: "http://localhost", Topic: "t"},
		"negative concurrent": {RedisURL: "redis://localhost", Topic: "t", Concurrency: -1},
	} {
		if _, err := flowkit.NewWorker(reg, opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := flowkit.NewWorker(reg, flowkit.Options{RedisURL: "rediss://user:pw@localhost:6380/2", Topic: "t"}); err != nil {
		t.Errorf("rediss URL with a password: %v", err)
	}
}

func TestLoneSurrogateEscapesAreDroppedAndTheWorkerKeepsServing(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	var bad []string
	for _, field := range []string{"id", "task", "reply_to", "name"} {
		request := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": 1}, nil)
		envelope, err := flowkit.Encode(request, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		var message map[string]any
		if err := json.Unmarshal([]byte(envelope["body"].(string)), &message); err != nil {
			t.Fatal(err)
		}
		message[field] = "LONE"
		body, _ := json.Marshal(message)
		body = bytes.Replace(body, []byte(`"LONE"`), []byte(`"\ud800"`), 1)
		bad = append(bad, h.add(map[string]any{"body": string(body)}))
	}
	for i := 0; i < 3; i++ {
		good := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": i}, nil)
		h.add(good)
		if final := h.final(good.ID); final.Event != flowkit.EventSuccess {
			t.Fatalf("good request after bad ones: %+v", final)
		}
	}
	h.eventually("bad entries acknowledged and deleted", h.settled)
	for _, id := range bad {
		if !strings.Contains(h.log.String(), "entry "+id+": message holds a lone surrogate") {
			t.Errorf("no log line names entry %s:\n%s", id, h.log)
		}
	}
}

// arrivals reads the namespace's arrivals stream, oldest first.
func (h *harness) arrivals() []redis.XMessage {
	h.t.Helper()
	entries, err := h.client.XRange(context.Background(), flowkit.ArrivalsKey(h.namespace), "-", "+").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return entries
}

func TestAWorkerAddsAnArrivalWhenItAppearsNotAtEveryBeat(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock(time.Now())
	worker, _, _ := h.start(func(o *flowkit.Options) { o.Clock = clock })
	// The entry follows the advert in the same round trip: engines holding a
	// request for its tasks wake on it and read the advert at once.
	h.eventually("the first beat's arrival entry", func() bool { return len(h.arrivals()) == 1 })
	if got := h.arrivals()[0].Values; got["worker"] != worker.ID() || got["topic"] != "cpu" {
		t.Fatalf("arrival entry = %v, want the worker's id and topic", got)
	}
	// Beats in time keep the advert alive: no arrival, so idle engines are not woken.
	for i := 0; i < 3; i++ {
		clock.settle(t, 1)
		clock.advance(100 * time.Millisecond)
	}
	clock.settle(t, 1)
	if n := len(h.arrivals()); n != 1 {
		t.Fatalf("%d arrival entries after beats in time, want the first one only", n)
	}
	// No beat for three heartbeats (a stalled worker): its advert may have
	// lapsed, so engines may have dropped it, and the next beat arrives again.
	clock.advance(300 * time.Millisecond)
	clock.settle(t, 1)
	if n := len(h.arrivals()); n != 2 {
		t.Fatalf("%d arrival entries after a beat three heartbeats late, want 2", n)
	}
}

func TestAnArrivalRedisRefusesLeavesTheAdvertAndIsSaidOnce(t *testing.T) {
	h := newHarness(t)
	limited := h.limitedUser() // its ACL predates the arrivals stream
	clock := newFakeClock(time.Now())
	h.start(func(o *flowkit.Options) { o.RedisURL = limited; o.Clock = clock })
	for i := 0; i < 2; i++ { // two arriving beats: the second is said at debug
		clock.settle(t, 1)
		clock.advance(300 * time.Millisecond)
	}
	clock.settle(t, 1)
	if n := len(h.arrivals()); n != 0 {
		t.Fatalf("%d arrival entries written past the ACL", n)
	}
	log := h.log.String()
	warned := strings.Count(log, "level=WARN msg=\"worker go-test-"+h.namespace+": Redis refused its arrival entry")
	debug := strings.Count(log, "level=DEBUG msg=\"worker go-test-"+h.namespace+": Redis refused its arrival entry")
	if warned != 1 || debug != 2 || strings.Contains(log, "Redis error during heartbeat") {
		t.Fatalf("want one warning, then debug lines, and no failed heartbeat:\n%s", log)
	}
	// Still advertised, with a fresh expiry: the refusal cost no beat.
	score, err := h.client.ZScore(context.Background(), flowkit.WorkersKey(h.namespace, "cpu"), "go-test-"+h.namespace).Result()
	if err != nil || score != float64(clock.Now().Add(300*time.Millisecond).UnixMilli()) {
		t.Fatalf("advert score %v (%v), want three heartbeats after the last beat", score, err)
	}
}

// limitedUser makes a Redis ACL user that may touch only the harness's keys
// (of the reply streams, only those of engines named "engine..."), as in a
// locked-down deployment, and returns a URL that logs in as it.
func (h *harness) limitedUser() string {
	h.t.Helper()
	ctx := context.Background()
	user := "fk-" + h.namespace
	args := []any{"ACL", "SETUSER", user, "on", ">pw"}
	for _, keys := range []string{"requests:*", "workers:*", "worker:*", "topics", "seen:*", "replies:engine*"} {
		args = append(args, "~"+h.namespace+":"+keys)
	}
	if err := h.client.Do(ctx, append(args, "&*", "+@all")...).Err(); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { h.client.Do(context.Background(), "ACL", "DELUSER", user) })
	return strings.Replace(redisURL, "redis://", "redis://"+user+":pw@", 1)
}

func TestAnAnswerRedisRefusesIsDroppedAndLaterAnswersGoOut(t *testing.T) {
	h := newHarness(t)
	limited := h.limitedUser()
	h.start(func(o *flowkit.Options) { o.RedisURL = limited })
	// NOPERM for the worker's user: its MULTI block ends in EXECABORT.
	refused := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": "lost"}, func(r *flowkit.Request) {
		r.ReplyTo = flowkit.RepliesKey(h.namespace, "denied")
	})
	h.add(refused)
	for i := 0; i < 5; i++ {
		good := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": i}, nil)
		h.add(good)
		if final := h.final(good.ID); final.Event != flowkit.EventSuccess {
			t.Fatalf("request after a refused answer: %+v", final)
		}
	}
	h.eventually("the refused request acknowledged, not retried forever", h.settled)
	if !strings.Contains(h.log.String(), "refused the answer to request "+refused.ID) {
		t.Fatalf("no log line names the refused request:\n%s", h.log)
	}
}

func TestAReplayedRequestIsRefused(t *testing.T) {
	for _, c := range []struct {
		name           string
		deadline       float64 // seconds from now
		minTTL, maxTTL time.Duration
	}{
		{"deadline in 30s", 30, 30 * time.Second, 61 * time.Second},
		// An engine's transition_timeout of 1e10 s ("for ever"): more than
		// time.Duration holds, which must not make the id forgotten at once.
		{"deadline in 317 years", 1e10, flowkit.MaxSeen - time.Hour, flowkit.MaxSeen},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(nil)
			request := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": "once"},
				func(r *flowkit.Request) { r.Deadline = r.SentAt + c.deadline })
			envelope, err := flowkit.Encode(request, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			h.add(map[string]any(envelope))
			if final := h.final(request.ID); final.Result != "once" {
				t.Fatalf("final = %+v", final)
			}
			var replays []string
			for i := 0; i < 3; i++ {
				replays = append(replays, h.add(map[string]any(envelope)))
			}
			h.eventually("replays acknowledged and deleted", h.settled)
			if got := h.answered(request.ID); !reflect.DeepEqual(events(got), []string{"running", "success"}) {
				t.Fatalf("a replay was run: %v", events(got))
			}
			for _, id := range replays {
				if !strings.Contains(h.log.String(), "refuses entry "+id+": request "+request.ID+" (task "+tasks.EchoName+") is a replay") {
					t.Errorf("no log line names the replayed entry %s:\n%s", id, h.log)
				}
			}
			if ttl := h.client.PTTL(context.Background(), flowkit.SeenKey(h.namespace, request.ID)).Val(); ttl < c.minTTL || ttl > c.maxTTL {
				t.Fatalf("the request id is remembered for %s, not until its deadline plus the clock skew (at most MaxSeen)", ttl)
			}
		})
	}
}

func TestAWorkerWithoutASecretWarnsAtStart(t *testing.T) {
	for _, secret := range []string{"", "s3cret"} {
		h := newHarness(t)
		h.secret = []byte(secret)
		h.start(nil)
		warned := strings.Contains(h.log.String(), "runs without a signing secret")
		if warned != (secret == "") {
			t.Errorf("secret %q: warned = %v:\n%s", secret, warned, h.log)
		}
	}
}

func TestDeadlinesAreReadOnTheWorkersClock(t *testing.T) {
	h := newHarness(t)
	// The worker's clock runs a minute ahead of the harness's.
	h.start(func(o *flowkit.Options) { o.Clock = newFakeClock(time.Now().Add(time.Minute)) })
	late := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": "late"}, func(r *flowkit.Request) {
		r.Deadline = flowkit.Now() + 30 // thirty seconds left here, thirty past for the worker
	})
	timely := h.request(tasks.EchoName, flowkit.ActionExecute, map[string]any{"value": "timely"}, func(r *flowkit.Request) {
		r.Deadline = flowkit.Now() + 90
	})
	lateID := h.add(late)
	h.add(timely)
	final := h.final(timely.ID)
	if final.Result != "timely" || final.SentAt < flowkit.Now()+50 {
		t.Fatalf("timely request: %+v (its sent_at must come from the worker's clock)", final)
	}
	h.eventually("late request acknowledged and deleted", h.settled)
	if got := h.answered(late.ID); len(got) != 0 {
		t.Fatalf("late request answered: %v", events(got))
	}
	if !strings.Contains(h.log.String(), "drops request "+late.ID+" (entry "+lateID+", task "+tasks.EchoName+"): its deadline passed") {
		t.Fatalf("no log line for the late request:\n%s", h.log)
	}
	// Remembered against replays until its deadline, on the worker's clock, plus the skew.
	ttl := h.client.PTTL(context.Background(), flowkit.SeenKey(h.namespace, timely.ID)).Val()
	if ttl < 55*time.Second || ttl > 61*time.Second {
		t.Fatalf("request id kept for %s, expected about 30 s + 30 s", ttl)
	}
}

func TestTheTraceContextOfARequestReachesTheTask(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	good := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for sent, want := range map[string]string{good: good, "": "", "00-garbage": ""} {
		request := h.request(tasks.TraceParentName, flowkit.ActionExecute, nil, func(r *flowkit.Request) { r.TraceParent = sent })
		h.add(request)
		if final := h.final(request.ID); final.Event != flowkit.EventSuccess || final.Result != want {
			t.Fatalf("traceparent %q: the task saw %+v, want %q; log:\n%s", sent, final, want, h.log)
		}
	}
	h.eventually("every request acknowledged and deleted", h.settled)
}

func TestNoMoreTasksRunAtOnceThanTheConcurrency(t *testing.T) {
	h := newHarness(t)
	var running, most atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	openGate := func() { once.Do(func() { close(release) }) }
	reg := flowkit.NewRegistry()
	reg.Register("test.Count", anyArgs, func(call *flowkit.Call) (any, error) {
		now := running.Add(1)
		defer running.Add(-1)
		for seen := most.Load(); now > seen && !most.CompareAndSwap(seen, now); seen = most.Load() {
		}
		<-release
		return nil, nil
	}, nil)
	worker, _, _ := h.startWith(reg, func(o *flowkit.Options) { o.Concurrency = 2 })
	t.Cleanup(openGate) // runs before the worker's stop, which waits for the tasks
	// Three requests accepted at once by a worker with two slots: what a
	// takeover by the heartbeat and a read that counted the same free slots
	// hand over between them. Their entries are made up (never in the
	// stream), so the worker's own reader cannot take them.
	entries, ids := h.madeUpEntries("test.Count", 3)
	flowkit.Dispatch(worker, entries)
	h.eventually("two tasks running and the third waiting (or running)", func() bool {
		return running.Load() == 3 || (running.Load() == 2 && strings.Contains(h.log.String(), "waits for one of the 2"))
	})
	if n := running.Load(); n != 2 {
		t.Fatalf("%d tasks run at once with a concurrency of 2", n)
	}
	openGate()
	for _, id := range ids {
		if final := h.final(id); final.Event != flowkit.EventSuccess {
			t.Fatalf("%s: %+v", id, final)
		}
	}
	if n := most.Load(); n != 2 {
		t.Fatalf("at most %d tasks ran at once, expected the concurrency of 2", n)
	}
}

func TestARequestWaitingForASlotAtTheEndOfTheGraceIsLeftUnrun(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock(time.Now())
	var started atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	openGate := func() { once.Do(func() { close(release) }) }
	reg := flowkit.NewRegistry()
	reg.Register("test.Hold", anyArgs, func(call *flowkit.Call) (any, error) {
		started.Add(1)
		select {
		case <-release:
			return "done", nil
		case <-call.Context.Done():
			return nil, call.Context.Err()
		}
	}, nil)
	worker, done, _ := h.startWith(reg, func(o *flowkit.Options) {
		o.Concurrency, o.Clock, o.Grace = 1, clock, 10*time.Second
	})
	t.Cleanup(openGate)
	entries, ids := h.madeUpEntries("test.Hold", 2)
	flowkit.Dispatch(worker, entries)
	h.eventually("one task running, the other waiting for its slot", func() bool {
		return started.Load() == 1 && strings.Contains(h.log.String(), "waits for one of the 1")
	})
	worker.Stop()
	clock.settle(t, 2) // the heartbeat's timer and the grace period's
	clock.advance(10 * time.Second)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return once the grace was over; log:\n%s", h.log)
	}
	openGate()
	if n := started.Load(); n != 1 {
		t.Fatalf("%d tasks started; the waiting one must not run once abandoned", n)
	}
	for _, id := range ids {
		if got := h.answered(id); !reflect.DeepEqual(events(got), []string{"running"}) {
			t.Fatalf("abandoned request %s answered: %v", id, events(got))
		}
	}
}

func TestAnEventNotifiedAfterTheTaskReturnedIsLoggedAndDropped(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	request := h.request("test.Keep", flowkit.ActionExecute, map[string]any{}, nil)
	h.add(request)
	if final := h.final(request.ID); final.Event != flowkit.EventSuccess {
		t.Fatalf("final = %+v", final)
	}
	call, _ := kept.Load(request.ID)
	// A goroutine the task left behind, say, still holds its Call.
	call.(*flowkit.Call).Notify("late", nil)
	call.(*flowkit.Call).Progress(0.9, nil)
	h.eventually("the late event logged", func() bool {
		return strings.Contains(h.log.String(), "late") &&
			strings.Contains(h.log.String(), "of request "+request.ID+" after it returned; dropped")
	})
	h.eventually("the request acknowledged", h.settled)
	if got := h.answered(request.ID); !reflect.DeepEqual(events(got), []string{"running", "success"}) {
		t.Fatalf("events = %v", events(got))
	}
}

// ownRedis starts a redis-server for one test, which it may freeze (SIGSTOP)
// without harming the others; it is woken and killed when the test ends.
func ownRedis(t *testing.T) (string, *os.Process) {
	t.Helper()
	needRedis(t) // skips (or fails under CI) the same way without redis-server
	url, cmd, err := launchRedis()
	if cmd != nil {
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return url, cmd.Process
}

// freeze stops process p (SIGSTOP) and waits until the kernel says it is stopped.
func freeze(t *testing.T, p *os.Process) {
	t.Helper()
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
		if err != nil {
			t.Skipf("cannot tell whether redis-server is stopped: %v", err)
		}
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 0 && (fields[0] == "T" || fields[0] == "t") {
			return
		}
	}
	t.Fatal("redis-server did not stop within 5s of SIGSTOP")
}

func TestASecondStopEndsRunPromptlyWhileRedisIsFrozen(t *testing.T) {
	url, server := ownRedis(t)
	log := &syncBuffer{}
	worker, err := flowkit.NewWorker(testRegistry(), flowkit.Options{
		RedisURL:  url,
		Topic:     "frozen",
		Heartbeat: 100 * time.Millisecond,
		Grace:     10 * time.Minute,
		Secret:    []byte("s"),
		WorkerID:  "go-frozen",
		Logger:    slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- worker.Run(context.Background()) }()
	opts, _ := redis.ParseURL(url)
	opts.Protocol, opts.DisableIdentity = 2, true
	client := redis.NewClient(opts)
	defer client.Close()
	hashKey := flowkit.DefaultNamespace + ":worker:go-frozen"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := client.Exists(context.Background(), hashKey).Result(); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker not advertised within 10s; log:\n%s", log)
		}
	}
	freeze(t, server)
	worker.Stop() // graceful: stuck on the frozen Redis for as long as its commands retry
	worker.Stop() // at once
	stopped := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(stopped); took > 2*time.Second {
			t.Fatalf("Run returned %s after the second stop, want < 2s; log:\n%s", took, log)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Run still running 30s after the second stop; log:\n%s", log)
	}
	if !strings.Contains(log.String(), "stopped at once") {
		t.Fatalf("the stop was not logged as immediate:\n%s", log)
	}
}

// rawHandler writes each record's message as it is, one per line, as a logger
// given in Options may (slog's TextHandler quotes messages; a plain one not).
type rawHandler struct{ out *syncBuffer }

func (h rawHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h rawHandler) Handle(_ context.Context, r slog.Record) error {
	_, err := h.out.Write([]byte(r.Message + "\n"))
	return err
}
func (h rawHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h rawHandler) WithGroup(string) slog.Handler      { return h }

func TestNamesARequestCarriesCannotForgeALogLine(t *testing.T) {
	h := newHarness(t)
	worker, _, _ := h.start(func(o *flowkit.Options) { o.Logger = slog.New(rawHandler{h.log}) })
	request := h.request("no.such\nFORGED task line", flowkit.ActionExecute, map[string]any{}, func(r *flowkit.Request) {
		r.ID = "id\rFORGED id line"
		r.Name = "atom\u2028FORGED\x1b[2J"
	})
	h.add(request)
	got := h.responses(request.ID, 10*time.Second)
	if len(got) != 1 || got[0].Event != flowkit.EventFailure {
		t.Fatalf("events = %v", events(got))
	}
	// The failure's text is logged by the engine: its name is escaped there too.
	want := fmt.Sprintf(`worker %s on topic cpu has no task named no.such\nFORGED task line`, worker.ID())
	if got[0].Failure.ExceptionStr != want {
		t.Fatalf("failure = %q, want %q", got[0].Failure.ExceptionStr, want)
	}
	log := h.log.String()
	for _, line := range strings.FieldsFunc(log, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if strings.HasPrefix(line, "FORGED") {
			t.Fatalf("a name from the wire started a log line of its own:\n%s", log)
		}
	}
	if !strings.Contains(log, `(request id\rFORGED id line, entry `) {
		t.Fatalf("the request id is not logged escaped:\n%s", log)
	}
}

// blockedReaders counts the connections Redis lists as blocked in XREADGROUP.
func blockedReaders(h *harness) int {
	list, err := h.client.ClientList(context.Background()).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " cmd=xreadgroup") && strings.Contains(line, " flags=b") {
			n++
		}
	}
	return n
}

func TestAStopEndsTheBlockedReadAtOnce(t *testing.T) {
	// Each read blocks for a minute here (a heartbeat as long, so the block is
	// not cut to it): only CLIENT UNBLOCK can end it before the test's bound, so
	// a stop that waited out the block (the old way) fails here.
	flowkit.SetMaxBlock(t, time.Minute)
	h := newHarness(t)
	before := blockedReaders(h)
	worker, done, runErr := h.start(func(o *flowkit.Options) {
		o.Heartbeat = time.Minute
		o.VisibilityTimeout = 2 * time.Minute
	})
	h.waitAdvertised(worker.ID())
	h.eventually("the worker's read blocking", func() bool { return blockedReaders(h) > before })
	worker.Stop()
	select {
	case <-done:
		if *runErr != nil {
			t.Fatal(*runErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Run still running 10s after a stop of an idle worker; log:\n%s", h.log)
	}
	if n, _ := h.client.Exists(context.Background(), flowkit.WorkerKey(h.namespace, worker.ID())).Result(); n != 0 {
		t.Fatalf("the stopped worker left its advertisement; log:\n%s", h.log)
	}
}

// TaskFlow's workers (futurist's pool) and flowkit's Python worker run five
// requests per CPU at once unless told; the Go worker ran min(32, CPUs + 4), so a
// rendezvous of tasks that met on one worker never met on the other.
func TestTheDefaultConcurrencyIsFivePerCPUAsThePythonWorkers(t *testing.T) {
	worker, err := flowkit.NewWorker(testRegistry(), flowkit.Options{RedisURL: "redis://localhost", Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := flowkit.SlotsOf(worker), runtime.NumCPU()*5; got != want {
		t.Fatalf("default concurrency %d, want %d", got, want)
	}
}
