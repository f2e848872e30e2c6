// Package flowkit is the Go side of the flowkit worker protocol v1 over Redis.
//
// It holds the protocol's messages (notify, request, response and failure
// records), the envelope codec (JSON body, optional HMAC-SHA256 signature,
// size limit, validation identical in effect to the Python side and the JSON
// Schemas in flowkit/engines/worker_based/schemas/), a Registry of Go
// functions served under task names, and a Worker that serves them to
// flowkit's worker-based engine. doc/workers_protocol.rst is the normative
// description of the protocol.
package flowkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Protocol constants shared with the Python engine and worker.
const (
	// Version is the protocol version this package speaks.
	Version = 1
	// DefaultNamespace prefixes every Redis key unless configured otherwise.
	DefaultNamespace = "flowkit"
	// Group is the consumer group every worker of a topic reads requests in.
	Group = "workers"
	// MaxMessageBytes is the default limit on a message body (1 MiB).
	MaxMessageBytes = 1 << 20
	// MaxDepth is the deepest nesting of arrays and objects a message body
	// may have, its own object counting as the first level. Parsers differ
	// on how deep they can read (encoding/json 10,000 levels, CPython's json
	// about 1,000, fewer on a deep stack), so every side checks this one
	// limit on what it sends and receives: a Go answer the engine cannot read
	// would leave its atom waiting for ever.
	MaxDepth = 512
	// MaxIntegerDigits is the most digits an integer in a message may have:
	// Python's limit on reading text as an int. The engine cannot read a
	// longer one, nor a number too large for a double (1e400).
	MaxIntegerDigits = 4300
	// SecretEnv names the environment variable holding the signing secret.
	SecretEnv = "FLOWKIT_WORKER_SECRET"
	// MaxClockSkew is how far the clocks of engines and workers may disagree:
	// a request id is remembered against replays until this long after its
	// deadline, and an advert is stale three heartbeats plus this after its sent_at.
	MaxClockSkew = 30 * time.Second
	// MaxSeen is the longest a request id is kept against replays: until its
	// deadline, but no longer than this, so a request with an absurd deadline
	// cannot make the replay check fail (Redis refuses such an expiry) or overflow.
	MaxSeen = 10 * 366 * 24 * time.Hour
	// ReplyMaxLen is the approximate length reply streams are trimmed to.
	ReplyMaxLen = 100000
	// ArrivalsMaxLen is the approximate length the arrivals stream is trimmed to.
	ArrivalsMaxLen = 1000
	// ReplyTTL is how long a reply stream lives after its last write (the
	// engine's open and tidy-ups, or a worker's answer): an answer arriving
	// after its engine deleted the stream makes it again, read by nobody, and
	// it must expire as the engine's own does rather than stay for ever.
	ReplyTTL = 24 * time.Hour
)

// Request actions and response events.
const (
	ActionExecute = "execute"
	ActionRevert  = "revert"

	EventRunning  = "running"
	EventProgress = "progress"
	EventSuccess  = "success"
	EventFailure  = "failure"
	// EventNotification relays an event the task notified (Call.Notify), as
	// TaskFlow relays a remote task's notifier events to the engine's task.
	EventNotification = "notification"

	TypeNotify   = "notify"
	TypeRequest  = "request"
	TypeResponse = "response"
)

// Exception type names of a task's failures, in TaskFlow's spelling, as the
// Python worker records a Python task's (see taskflowNames).
var (
	// GoErrorTypes names a plain Go error returned by a task.
	GoErrorTypes = []string{"go.error", "Exception"}
	// GoPanicTypes names a panic inside a task.
	GoPanicTypes = []string{"go.panic", "Exception"}
	// GoExitTypes names a task function that ended its goroutine
	// (runtime.Goexit, which t.FailNow calls) instead of returning. That is
	// no error and no panic but a request to stop, as a Python task's
	// SystemExit is, which the Python worker records as ["SystemExit",
	// "BaseException"]: so it ends with BaseException too, and an engine's
	// failure.check(Exception) does not take it for an error the task raised.
	GoExitTypes = []string{"go.goexit", "BaseException"}
	// TypeErrorTypes names bad task arguments (missing, unexpected, wrong
	// JSON type), as Python's call would raise.
	TypeErrorTypes = []string{"TypeError", "Exception"}
	// InvalidFormatTypes names a result the task returned that cannot be
	// sent (not JSON, too large), as the Python worker names it.
	InvalidFormatTypes = []string{"flowkit.exceptions.InvalidFormat", "flowkit.exceptions.TaskFlowException", "Exception"}
)

// Exception type names the protocol prescribes for failures a worker makes
// up, in the qualified form both workers write.
var (
	// NotFoundTypes names a request for a task the worker does not offer.
	NotFoundTypes = []string{"flowkit.exceptions.NotFound", "flowkit.exceptions.TaskFlowException", "builtins.Exception", "builtins.BaseException"}
	// RequestTimeoutTypes names a request delivered more than max_deliveries times.
	RequestTimeoutTypes = []string{"flowkit.exceptions.RequestTimeout", "flowkit.exceptions.ExecutionFailure", "flowkit.exceptions.TaskFlowException", "builtins.Exception", "builtins.BaseException"}
	// IncompatibleVersionTypes names a request of a protocol version other than 1.
	IncompatibleVersionTypes = []string{"flowkit.exceptions.IncompatibleVersion", "flowkit.exceptions.TaskFlowException", "builtins.Exception", "builtins.BaseException"}
)

// RequestsKey is the stream engines add requests for workers of topic to.
func RequestsKey(namespace, topic string) string { return namespace + ":requests:" + topic }

// WorkersKey is the sorted set of live worker ids of topic (score: expiry in unix ms).
func WorkersKey(namespace, topic string) string { return namespace + ":workers:" + topic }

// TopicsKey is the sorted set of the topics live workers serve (score: the
// latest expiry in unix ms). Engines given no topics find them here; every
// worker raises its topic's score (ZADD GT) at each heartbeat.
func TopicsKey(namespace string) string { return namespace + ":topics" }

// ArrivalsKey is the stream a worker adds an entry to when it (re)appears:
// engines holding a request for its tasks block on it beside their reply
// stream, and send the request at once instead of at their next periodic
// look at the adverts. Only a hint: engines still read and check the adverts.
func ArrivalsKey(namespace string) string { return namespace + ":arrivals" }

// WorkerKey is the hash holding one worker's notify envelope.
func WorkerKey(namespace, workerID string) string { return namespace + ":worker:" + workerID }

// SeenKey is the string a worker sets, once, for each request id it runs:
// a replayed request finds it taken.
func SeenKey(namespace, requestID string) string { return namespace + ":seen:" + requestID }

// RepliesKey is the stream workers add responses for one engine to.
func RepliesKey(namespace, engineID string) string { return namespace + ":replies:" + engineID }

// Now is the current time as unix seconds, the protocol's time format.
func Now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// Failure is a failure record: flowkit.types.failure.Failure.to_dict() in JSON.
type Failure struct {
	ExceptionStr string
	TracebackStr string
	// ExcTypeNames is the exception's class hierarchy, most derived first.
	// A task's failure is sent in TaskFlow's spelling, as the Python worker
	// sends a Python task's (built-ins bare, ending with "Exception":
	// ["RuntimeError", "Exception"]); the failures a worker makes up itself
	// (NotFoundTypes...) in the qualified form, ending with
	// "builtins.BaseException". Records read may hold either.
	ExcTypeNames []string
	// ExcArgs are the exception's arguments; they must be JSON values.
	ExcArgs []any
	// Causes is the chain of causes, nearest first.
	Causes []*Failure
}

// NewFailure makes a record with the given names, message and exc_args [message].
func NewFailure(message string, typeNames []string) *Failure {
	return &Failure{ExceptionStr: message, ExcTypeNames: append([]string(nil), typeNames...), ExcArgs: []any{message}}
}

// Error makes a *Failure usable as a Go error.
func (f *Failure) Error() string { return f.ExceptionStr }

// HasType reports whether the record names the exception type name among its types.
//
// A built-in matches in either spelling, "builtins.KeyError" or "KeyError", as
// Python's Failure.check does: records from Python's flowkit (and TaskFlow) name
// built-ins bare, this worker's and earlier flowkit's with the prefix.
func (f *Failure) HasType(typeName string) bool {
	other := ""
	if bare, found := strings.CutPrefix(typeName, builtinsPrefix); found {
		other = bare
	} else if !strings.Contains(typeName, ".") {
		other = builtinsPrefix + typeName
	}
	for _, name := range f.ExcTypeNames {
		if name == typeName || (other != "" && name == other) {
			return true
		}
	}
	return false
}

const builtinsPrefix = "builtins."

// MarshalJSON writes the record with every field, empty lists included.
//
// A record whose causes lead back to itself or to one of its causes (a task's
// own *Failure, built by hand) is refused with an error: each level is
// encoded afresh, out of reach of encoding/json's cycle check, and would
// recurse until the goroutine's stack overflowed, which ends the process.
func (f *Failure) MarshalJSON() ([]byte, error) {
	if loop := f.loopingCause(); loop != nil {
		return nil, fmt.Errorf("failure record %q: its causes loop back to the record %q", f.ExceptionStr, loop.ExceptionStr)
	}
	names := f.ExcTypeNames
	if names == nil {
		names = []string{}
	}
	args := f.ExcArgs
	if args == nil {
		args = []any{}
	}
	causes := f.Causes
	if causes == nil {
		causes = []*Failure{}
	}
	return marshalObject([]field{
		{"version", 1},
		{"exception_str", f.ExceptionStr},
		{"traceback_str", f.TracebackStr},
		{"exc_type_names", names},
		{"exc_args", args},
		{"causes", causes},
	})
}

// loopingCause returns a record reached again through its own causes, or nil
// when the causes of f form a tree. It walks without recursion, keeping the
// path from f to the record it is at.
func (f *Failure) loopingCause() *Failure {
	type step struct {
		record *Failure
		next   int
	}
	onPath := map[*Failure]bool{f: true}
	path := []step{{record: f}}
	for len(path) > 0 {
		top := &path[len(path)-1]
		if top.next == len(top.record.Causes) {
			delete(onPath, top.record)
			path = path[:len(path)-1]
			continue
		}
		cause := top.record.Causes[top.next]
		top.next++
		if cause == nil {
			continue
		}
		if onPath[cause] {
			return cause
		}
		onPath[cause] = true
		path = append(path, step{record: cause})
	}
	return nil
}

// Notify is a worker's advertisement, kept in the hash {ns}:worker:{id}.
type Notify struct {
	Worker            string
	Topic             string
	Tasks             []string
	Language          string
	PID               int64
	Host              string
	Heartbeat         float64 // seconds
	VisibilityTimeout float64 // seconds
	// MaxMessageBytes is the largest request body the worker reads, so that
	// engines send it nothing larger (it would drop such a request unread);
	// 0 leaves the field out, as workers did before it existed.
	MaxMessageBytes int
	SentAt          float64
}

// MarshalJSON writes the notify message.
func (n *Notify) MarshalJSON() ([]byte, error) {
	tasks := n.Tasks
	if tasks == nil {
		tasks = []string{}
	}
	fields := []field{
		{"v", Version},
		{"type", TypeNotify},
		{"worker", n.Worker},
		{"topic", n.Topic},
		{"tasks", tasks},
		{"language", n.Language},
		{"pid", n.PID},
		{"host", n.Host},
		{"heartbeat", n.Heartbeat},
		{"visibility_timeout", n.VisibilityTimeout},
	}
	if n.MaxMessageBytes > 0 {
		fields = append(fields, field{"max_message_bytes", n.MaxMessageBytes})
	}
	return marshalObject(append(fields, field{"sent_at", n.SentAt}))
}

// Request asks a worker to execute or revert one task.
type Request struct {
	ID        string
	ReplyTo   string
	Action    string // ActionExecute or ActionRevert
	Task      string
	Name      string
	Arguments map[string]any
	// Result is, for a revert whose execute succeeded, what execute returned.
	Result any
	// Failure is, for a revert whose own execute failed, how it failed
	// (sent instead of Result).
	Failure *Failure
	// FlowFailures maps atom names to failures, revert only.
	FlowFailures map[string]*Failure
	// TraceParent is the W3C traceparent of the engine's span for this
	// request ("" when it carried none); optional on the wire.
	TraceParent string
	SentAt      float64
	Deadline    float64
	// body is the JSON text the request was decoded from (nil for one built
	// in code): the order of its arguments, which the map above loses, is
	// read from it on the rare path that needs it (firstListed).
	body []byte
}

// MarshalJSON writes the request; revert-only fields appear for reverts only.
func (r *Request) MarshalJSON() ([]byte, error) {
	arguments := r.Arguments
	if arguments == nil {
		arguments = map[string]any{}
	}
	fields := []field{
		{"v", Version},
		{"type", TypeRequest},
		{"id", r.ID},
		{"reply_to", r.ReplyTo},
		{"action", r.Action},
		{"task", r.Task},
		{"name", r.Name},
		{"arguments", arguments},
	}
	if r.Action == ActionRevert {
		if r.Failure != nil {
			fields = append(fields, field{"failure", r.Failure})
		} else {
			fields = append(fields, field{"result", r.Result})
		}
		flowFailures := r.FlowFailures
		if flowFailures == nil {
			flowFailures = map[string]*Failure{}
		}
		fields = append(fields, field{"flow_failures", flowFailures})
	}
	if r.TraceParent != "" {
		fields = append(fields, field{"traceparent", r.TraceParent})
	}
	fields = append(fields, field{"sent_at", r.SentAt}, field{"deadline", r.Deadline})
	return marshalObject(fields)
}

// Response is a worker's answer to a request.
type Response struct {
	ID     string
	Worker string
	Event  string // EventRunning, EventProgress, EventNotification, EventSuccess or EventFailure
	// Progress (0 to 1) belongs to progress events, EventType (non-empty) to
	// notification events, Details (nil: null) to both.
	Progress  float64
	EventType string
	Details   map[string]any
	// Result belongs to success events (nil: null).
	Result any
	// Failure belongs to failure events.
	Failure *Failure
	SentAt  float64
}

// MarshalJSON writes the response with exactly the fields its event carries.
func (r *Response) MarshalJSON() ([]byte, error) {
	fields := []field{
		{"v", Version},
		{"type", TypeResponse},
		{"id", r.ID},
		{"worker", r.Worker},
		{"event", r.Event},
	}
	switch r.Event {
	case EventProgress:
		if math.IsNaN(r.Progress) || r.Progress < 0 || r.Progress > 1 {
			return nil, fmt.Errorf("progress %v is not a number from 0 to 1", r.Progress)
		}
		var details any
		if r.Details != nil {
			details = r.Details
		}
		fields = append(fields, field{"progress", r.Progress}, field{"details", details})
	case EventNotification:
		if r.EventType == "" {
			return nil, fmt.Errorf("a notification response needs an event type")
		}
		var details any
		if r.Details != nil {
			details = r.Details
		}
		fields = append(fields, field{"event_type", r.EventType}, field{"details", details})
	case EventSuccess:
		fields = append(fields, field{"result", r.Result})
	case EventFailure:
		if r.Failure == nil {
			return nil, fmt.Errorf("a failure response needs a failure")
		}
		fields = append(fields, field{"failure", r.Failure})
	case EventRunning:
	default:
		return nil, fmt.Errorf("unknown event %q", r.Event)
	}
	fields = append(fields, field{"sent_at", r.SentAt})
	return marshalObject(fields)
}

type field struct {
	key   string
	value any
}

// marshalObject writes an object with its keys in the given order, so bodies
// read naturally (v and type first) and do not depend on map iteration.
func marshalObject(fields []field) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(strconv.Quote(f.key))
		buf.WriteByte(':')
		value, err := marshalValue(f.value)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", f.key, err)
		}
		buf.Write(value)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// marshalValue is json.Marshal writing text as Python's json.dumps with
// ensure_ascii=False does: raw UTF-8, no HTML escapes, and U+2028 and U+2029
// raw too (encoding/json escapes them, for JavaScript's sake, in 6 bytes
// instead of 3, which could put a result the Python worker sends over the
// size limit). A string that is not valid UTF-8 is refused, as Python refuses
// a str it cannot encode, rather than sent with U+FFFD in place of its bad
// bytes, which would change the value without a word.
//
// A panic while encoding (a result's own MarshalJSON, which is the task's
// code) is returned as an error, so the worker answers the request with a
// failure instead of leaving it to be run again at every delivery.
func marshalValue(value any) (text []byte, err error) {
	defer func() {
		if cause := recover(); cause != nil {
			text, err = nil, fmt.Errorf("encoding panicked: %v", cause)
		}
	}()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(value); err != nil {
		return nil, err
	}
	return asPythonWrites(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
}

// asPythonWrites takes JSON text made by encoding/json and writes its
// \u2028 and \u2029 escapes as the raw characters; it refuses the text when
// it holds a \ufffd escape, which is how encoding/json writes the bytes of a
// string that are not UTF-8 (a U+FFFD of valid text is written raw). Every
// other backslash there starts a two-character escape or a \uXXXX one,
// skipped whole, so an escaped backslash followed by "u2028" is left alone.
func asPythonWrites(text []byte) ([]byte, error) {
	if !bytes.Contains(text, []byte(`\u`)) {
		return text, nil
	}
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		if text[i] != '\\' || i+1 >= len(text) {
			out = append(out, text[i])
			continue
		}
		if i+6 <= len(text) && text[i+1] == 'u' {
			switch escape := text[i+2 : i+6]; {
			case bytes.Equal(escape, []byte("2028")) || bytes.Equal(escape, []byte("2029")):
				out = append(out, 0xe2, 0x80, 0xa0+escape[3]-'0') // U+2028 is E2 80 A8 in UTF-8
				i += 5
				continue
			case bytes.Equal(escape, []byte("fffd")):
				return nil, errors.New("a string is not valid UTF-8 text")
			}
		}
		out = append(out, text[i], text[i+1])
		i++
	}
	return out, nil
}

// traceParentPattern is a W3C traceparent: version (not ff), trace id (not all
// zeros), parent span id (not all zeros), flags; lowercase hex.
var traceParentPattern = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// ValidTraceParent returns value when it is a W3C traceparent this side
// understands, else "" (W3C Trace Context: ignore what does not parse).
func ValidTraceParent(value string) string {
	if !traceParentPattern.MatchString(value) || value[:2] == "ff" ||
		value[3:35] == strings.Repeat("0", 32) || value[36:52] == strings.Repeat("0", 16) {
		return ""
	}
	return value
}
