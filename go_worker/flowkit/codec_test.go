package flowkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The schemas and golden messages live with the Python package; the Go codec
// must agree with them exactly.
var schemaDir = filepath.Join("..", "..", "flowkit", "engines", "worker_based", "schemas")

type schemas struct {
	message  *jsonschema.Schema
	envelope *jsonschema.Schema
	byType   map[string]*jsonschema.Schema
}

var (
	loadSchemasOnce sync.Once
	loadedSchemas   *schemas
	loadSchemasErr  error
)

func loadSchemas(t *testing.T) *schemas {
	t.Helper()
	loadSchemasOnce.Do(func() {
		loadedSchemas, loadSchemasErr = compileSchemas()
	})
	if loadSchemasErr != nil {
		t.Fatalf("cannot load the JSON Schemas from %s: %v", schemaDir, loadSchemasErr)
	}
	return loadedSchemas
}

func compileSchemas() (*schemas, error) {
	paths, err := filepath.Glob(filepath.Join(schemaDir, "*.schema.json"))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("no schemas found (%v)", err)
	}
	compiler := jsonschema.NewCompiler()
	ids := map[string]string{}
	for _, path := range paths {
		file, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(file)
		file.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		id, _ := doc.(map[string]any)["$id"].(string)
		if err := compiler.AddResource(id, doc); err != nil {
			return nil, err
		}
		ids[strings.TrimSuffix(filepath.Base(path), ".schema.json")] = id
	}
	result := &schemas{byType: map[string]*jsonschema.Schema{}}
	for name, id := range ids {
		schema, err := compiler.Compile(id)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		switch name {
		case "message":
			result.message = schema
		case "envelope":
			result.envelope = schema
		default:
			result.byType[name] = schema
		}
	}
	if result.message == nil || result.envelope == nil {
		return nil, errors.New("message.schema.json or envelope.schema.json is missing")
	}
	return result, nil
}

// validate checks a JSON text against the message schema.
func (s *schemas) validate(body []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return err
	}
	return s.message.Validate(doc)
}

// validateEnvelope checks an envelope against envelope.schema.json and its body against the message schema.
func (s *schemas) validateEnvelope(envelope Envelope) error {
	doc := map[string]any{}
	for key, value := range envelope {
		doc[key] = value
	}
	if err := s.envelope.Validate(doc); err != nil {
		return err
	}
	return s.validate([]byte(envelope["body"].(string)))
}

type golden struct {
	path        string
	Description string          `json:"description"`
	Reason      string          `json:"reason"`
	Error       string          `json:"error"`
	Message     json.RawMessage `json:"message"`
}

func loadGoldens(t *testing.T, pattern string) []golden {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(schemaDir, "golden", pattern))
	if err != nil {
		t.Fatal(err)
	}
	var goldens []golden
	for _, path := range paths {
		if filepath.Base(path) == "signatures.json" {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		g := golden{path: filepath.Base(path)}
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		goldens = append(goldens, g)
	}
	if len(goldens) == 0 {
		t.Fatalf("no golden messages match %s in %s", pattern, schemaDir)
	}
	return goldens
}

// withoutText returns a decoded message without the JSON text a request
// keeps (its spacing is no part of what the message says).
func withoutText(typed any) any {
	if request, ok := typed.(*Request); ok {
		copied := *request
		copied.body = nil
		return &copied
	}
	return typed
}

func TestValidGoldensDecodeMatchTheSchemaAndSurviveReEncoding(t *testing.T) {
	s := loadSchemas(t)
	for _, g := range loadGoldens(t, "*.json") {
		t.Run(g.path, func(t *testing.T) {
			if err := s.validate(g.Message); err != nil {
				t.Fatalf("the schema rejects the golden message: %v", err)
			}
			message, err := Decode(map[string]any{"body": string(g.Message)}, nil, 0)
			if err != nil {
				t.Fatalf("Decode rejects a valid golden message: %v", err)
			}
			typed := message.typed()
			envelope, err := Encode(typed, nil, 0)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if err := s.validateEnvelope(envelope); err != nil {
				t.Fatalf("the schema rejects the re-encoded message: %v\n%s", err, envelope["body"])
			}
			again, err := Decode(envelope, nil, 0)
			if err != nil {
				t.Fatalf("Decode rejects the re-encoded message: %v", err)
			}
			if !reflect.DeepEqual(withoutText(again.typed()), withoutText(typed)) {
				t.Fatalf("re-encoding changed the message:\n%#v\n%#v", again.typed(), typed)
			}
			var original map[string]any
			decodeNumbers(t, g.Message, &original)
			if diff := jsonDiff(withoutUnknown(original), decodedBody(t, envelope), ""); diff != "" {
				t.Fatalf("re-encoded message differs from the golden one: %s", diff)
			}
		})
	}
}

func (m *Message) typed() any {
	switch {
	case m.Notify != nil:
		return m.Notify
	case m.Request != nil:
		return m.Request
	default:
		return m.Response
	}
}

func decodeNumbers(t *testing.T, data []byte, into any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(into); err != nil {
		t.Fatal(err)
	}
}

func decodedBody(t *testing.T, envelope Envelope) map[string]any {
	var body map[string]any
	decodeNumbers(t, []byte(envelope["body"].(string)), &body)
	return body
}

var knownFields = map[string]bool{
	"v": true, "type": true, "id": true, "reply_to": true, "action": true, "task": true, "name": true,
	"arguments": true, "result": true, "failure": true, "flow_failures": true, "sent_at": true,
	"deadline": true, "traceparent": true, "worker": true, "event": true, "progress": true, "event_type": true, "details": true, "topic": true,
	"tasks": true, "language": true, "pid": true, "host": true, "heartbeat": true, "visibility_timeout": true,
	"max_message_bytes": true,
}

func withoutUnknown(message map[string]any) map[string]any {
	out := map[string]any{}
	for key, value := range message {
		if knownFields[key] {
			out[key] = value
		}
	}
	return out
}

// jsonDiff compares decoded JSON, numbers by value; a failure record's absent
// exc_args and causes equal empty lists, and absent progress details equal null.
func jsonDiff(want, got any, path string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: want an object, got %v", path, got)
		}
		if _, isFailure := w["exc_type_names"]; isFailure {
			w = withDefaults(w, map[string]any{"exc_args": []any{}, "causes": []any{}})
		}
		if w["event"] == EventProgress || w["event"] == EventNotification {
			w = withDefaults(w, map[string]any{"details": nil})
		}
		keys := map[string]bool{}
		for key := range w {
			keys[key] = true
		}
		for key := range g {
			keys[key] = true
		}
		for _, key := range sortedKeys(keys) {
			wv, wok := w[key]
			gv, gok := g[key]
			if wok != gok {
				return fmt.Sprintf("%s.%s: present in golden %v, in encoded %v", path, key, wok, gok)
			}
			if diff := jsonDiff(wv, gv, path+"."+key); diff != "" {
				return diff
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: want %v, got %v", path, w, got)
		}
		for i := range w {
			if diff := jsonDiff(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); diff != "" {
				return diff
			}
		}
		return ""
	case json.Number:
		wf, _ := numberValue(w)
		gf, ok := numberValue(got)
		if !ok || wf != gf {
			return fmt.Sprintf("%s: want %v, got %v", path, w, got)
		}
		return ""
	default:
		if !reflect.DeepEqual(want, got) {
			return fmt.Sprintf("%s: want %#v, got %#v", path, want, got)
		}
		return ""
	}
}

func withDefaults(m, defaults map[string]any) map[string]any {
	out := map[string]any{}
	for key, value := range defaults {
		out[key] = value
	}
	for key, value := range m {
		out[key] = value
	}
	return out
}

func TestInvalidGoldensAreRejectedByDecodeAndBySchema(t *testing.T) {
	s := loadSchemas(t)
	for _, g := range loadGoldens(t, filepath.Join("invalid", "*.json")) {
		t.Run(g.path, func(t *testing.T) {
			if err := s.validate(g.Message); err == nil {
				t.Errorf("the schema accepts an invalid golden message (%s)", g.Reason)
			}
			_, err := Decode(map[string]any{"body": string(g.Message)}, nil, 0)
			var perr *ProtocolError
			if !errors.As(err, &perr) {
				t.Fatalf("Decode accepts an invalid golden message (%s): err=%v", g.Reason, err)
			}
			if !strings.Contains(perr.Reason, g.Error) {
				t.Errorf("reason %q does not mention %q", perr.Reason, g.Error)
			}
			answerable := perr.MessageID != "" && perr.ReplyTo != ""
			if want := strings.Contains(perr.Reason, "unsupported protocol version"); answerable != want {
				t.Errorf("answerable=%v for reason %q", answerable, perr.Reason)
			}
		})
	}
}

func TestSignatureGoldens(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(schemaDir, "golden", "signatures.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []struct {
			Description string `json:"description"`
			Secret      string `json:"secret"`
			Body        string `json:"body"`
			Sig         string `json:"sig"`
			Valid       bool   `json:"valid"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Cases) == 0 {
		t.Fatal("no signature cases")
	}
	for _, c := range doc.Cases {
		t.Run(c.Description, func(t *testing.T) {
			envelope := map[string]any{"body": c.Body, "sig": c.Sig}
			_, err := Decode(envelope, []byte(c.Secret), 0)
			if c.Valid {
				if err != nil {
					t.Fatalf("a valid signature is rejected: %v", err)
				}
				if got := Sign([]byte(c.Body), []byte(c.Secret)); got != c.Sig {
					t.Fatalf("Sign = %s, want %s", got, c.Sig)
				}
			} else if err == nil || !strings.Contains(err.Error(), "signature does not match") {
				t.Fatalf("an invalid signature is not rejected as such: %v", err)
			}
			// Without a secret the signature is not looked at.
			if _, err := Decode(envelope, nil, 0); err != nil {
				t.Fatalf("without a secret: %v", err)
			}
		})
	}
}

func TestDecodeRejectsUnsignedMessagesWhenASecretIsSet(t *testing.T) {
	envelope, err := Encode(&Response{ID: "x", Worker: "w", Event: EventRunning, SentAt: 1}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decode(envelope, []byte("s3cret"), 0)
	if err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("err = %v", err)
	}
	signed, _ := Encode(&Response{ID: "x", Worker: "w", Event: EventRunning, SentAt: 1}, []byte("s3cret"), 0)
	if _, err := Decode(signed, []byte("s3cret"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(signed, []byte("other"), 0); err == nil {
		t.Fatal("a message signed under another secret is accepted")
	}
}

func TestSizeLimitAppliesToSendingAndReceiving(t *testing.T) {
	big := &Response{ID: "x", Worker: "w", Event: EventSuccess, Result: strings.Repeat("a", 200), SentAt: 1}
	if _, err := Encode(big, nil, 100); err == nil || !strings.Contains(err.Error(), "over the limit of 100 bytes") {
		t.Fatalf("Encode: %v", err)
	}
	envelope, err := Encode(big, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(envelope, nil, 100); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("Decode: %v", err)
	}
}

func TestDecodeRejectsBodiesThatAreNotOneJSONObject(t *testing.T) {
	cases := map[string]string{
		"not UTF-8":       "{\"v\":1,\"type\":\"x\xff\"}",
		"not JSON":        "{v:1}",
		"trailing data":   `{"v":1,"type":"response","id":"x","worker":"w","event":"running","sent_at":1} {}`,
		"NaN":             `{"v":NaN}`,
		"empty":           ``,
		"no body field":   "",
		"a JSON string":   `"request"`,
		"v is fractional": `{"v":1.5,"type":"request"}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			envelope := map[string]any{"body": body}
			if name == "no body field" {
				envelope = map[string]any{"sig": "x"}
			}
			if _, err := Decode(envelope, nil, 0); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestDecodeRefusesLoneSurrogateEscapesAsPythonDoes(t *testing.T) {
	request := `{"v":1,"type":"request","id":%s,"reply_to":"r","action":"execute","task":%s,` +
		`"name":"n","arguments":{"a":%s},"sent_at":1,"deadline":2}`
	ok := `"x"`
	refused := map[string][3]string{
		"high half in id":        {`"\ud800"`, ok, ok},
		"low half in task":       {ok, `"a\uDC00b"`, ok},
		"high then text":         {ok, ok, `"\ud83dx"`},
		"two highs":              {ok, ok, `"\ud83d\ud83d"`},
		"high at the end":        {`"ab\ud800"`, ok, ok},
		"in a key":               {ok, ok, `{"\ud800":1}`},
		"after an escaped quote": {ok, ok, `"\"\udfff"`},
	}
	for name, parts := range refused {
		t.Run(name, func(t *testing.T) {
			body := fmt.Sprintf(request, parts[0], parts[1], parts[2])
			_, err := Decode(map[string]any{"body": body}, nil, 0)
			if err == nil || !strings.Contains(err.Error(), "lone surrogate") {
				t.Fatalf("%s: got %v", body, err)
			}
		})
	}
	accepted := map[string]string{
		"a pair":               `"\ud83d\ude00"`,
		"upper-case pair":      `"\uD83D\uDE00"`,
		"an escaped backslash": `"\\ud800"`,
		"plain escapes":        `"\u00e9\n\u2028"`,
	}
	for name, value := range accepted {
		t.Run(name, func(t *testing.T) {
			body := fmt.Sprintf(request, ok, ok, value)
			if _, err := Decode(map[string]any{"body": body}, nil, 0); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
		})
	}
}

func TestDecodeAcceptsBytesValues(t *testing.T) {
	body := []byte(`{"v":1,"type":"response","id":"x","worker":"w","event":"running","sent_at":1}`)
	message, err := Decode(map[string]any{"body": body, "sig": []byte(Sign(body, []byte("k")))}, []byte("k"), 0)
	if err != nil || message.Response.Event != EventRunning {
		t.Fatalf("%v %+v", err, message)
	}
}

func TestEncodeRefusesValuesJSONCannotHold(t *testing.T) {
	for _, result := range []any{math.NaN(), math.Inf(1), make(chan int), func() {}} {
		_, err := Encode(&Response{ID: "x", Worker: "w", Event: EventSuccess, Result: result, SentAt: 1}, nil, 0)
		var perr *ProtocolError
		if !errors.As(err, &perr) || !strings.Contains(perr.Reason, "not JSON-encodable") {
			t.Errorf("%T: err = %v", result, err)
		}
	}
}

func TestEncodeWritesRawUTF8AndNoHTMLEscapes(t *testing.T) {
	envelope, err := Encode(&Response{ID: "x", Worker: "w", Event: EventSuccess, Result: "<é & 🎉>", SentAt: 1}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"type":"response","id":"x","worker":"w","event":"success","result":"<é & 🎉>","sent_at":1}`
	if body := envelope["body"]; body != want {
		t.Fatalf("body = %s", body)
	}
}

func TestEncodedNumbersKeepTheirPrecision(t *testing.T) {
	message, err := DecodeBody([]byte(`{"v":1,"type":"response","id":"x","worker":"w","event":"success",` +
		`"result":[12345678901234567890123,1.0,0.1],"sent_at":1}`))
	if err != nil {
		t.Fatal(err)
	}
	envelope, err := Encode(message.Response, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if body := envelope["body"].(string); !strings.Contains(body, `"result":[12345678901234567890123,1.0,0.1]`) {
		t.Fatalf("body = %s", body)
	}
}

// Every kind of message the worker writes must pass the schemas.
func TestMessagesTheWorkerSendsMatchTheSchemas(t *testing.T) {
	s := loadSchemas(t)
	panicked := panicFailure(origin{task: "a.B", action: ActionExecute}, "boom", []byte("goroutine 1 [running]:\n..."))
	messages := map[string]any{
		"running":           &Response{ID: "r", Worker: "w", Event: EventRunning, SentAt: Now()},
		"progress":          &Response{ID: "r", Worker: "w", Event: EventProgress, Progress: 0.5, SentAt: Now()},
		"progress details":  &Response{ID: "r", Worker: "w", Event: EventProgress, Progress: 1, Details: map[string]any{"a": 1}, SentAt: Now()},
		"success":           &Response{ID: "r", Worker: "w", Event: EventSuccess, Result: map[string]any{"k": []any{1, "x"}}, SentAt: Now()},
		"success null":      &Response{ID: "r", Worker: "w", Event: EventSuccess, SentAt: Now()},
		"go error":          &Response{ID: "r", Worker: "w", Event: EventFailure, Failure: FailureFromError(errors.New("bad")), SentAt: Now()},
		"go panic":          &Response{ID: "r", Worker: "w", Event: EventFailure, Failure: panicked, SentAt: Now()},
		"task error":        &Response{ID: "r", Worker: "w", Event: EventFailure, Failure: FailureFromError(&TaskError{Types: []string{"a.B"}, Message: "m", Args: []any{1, nil}}), SentAt: Now()},
		"not found":         &Response{ID: "r", Worker: "w", Event: EventFailure, Failure: NewFailure("no task", NotFoundTypes), SentAt: Now()},
		"request timeout":   &Response{ID: "r", Worker: "w", Event: EventFailure, Failure: NewFailure("late", RequestTimeoutTypes), SentAt: Now()},
		"notify":            &Notify{Worker: "w", Topic: "t", Tasks: []string{"a.B"}, Language: "go", PID: 7, Host: "h", Heartbeat: 1, VisibilityTimeout: 30, SentAt: Now()},
		"notify size limit": &Notify{Worker: "w", Topic: "t", Language: "go", Heartbeat: 1, VisibilityTimeout: 30, MaxMessageBytes: 4096, SentAt: Now()},
		"notify no tasks":   &Notify{Worker: "w", Topic: "t", Language: "go", Heartbeat: 0.5, VisibilityTimeout: 2, SentAt: Now()},
		"execute request":   &Request{ID: "r", ReplyTo: "flowkit:replies:e", Action: ActionExecute, Task: "a.B", SentAt: 1, Deadline: 2},
		"revert result":     &Request{ID: "r", ReplyTo: "flowkit:replies:e", Action: ActionRevert, Task: "a.B", Result: nil, SentAt: 1, Deadline: 2},
		"revert of failure": &Request{ID: "r", ReplyTo: "flowkit:replies:e", Action: ActionRevert, Task: "a.B", Failure: panicked, FlowFailures: map[string]*Failure{"x": panicked}, SentAt: 1, Deadline: 2},
	}
	names := make([]string, 0, len(messages))
	for name := range messages {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			envelope, err := Encode(messages[name], []byte("k"), 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.validateEnvelope(envelope); err != nil {
				t.Fatalf("%v\n%s", err, envelope["body"])
			}
			if _, err := Decode(envelope, []byte("k"), 0); err != nil {
				t.Fatalf("%v\n%s", err, envelope["body"])
			}
		})
	}
}

func TestResponseRefusesProgressOutsideZeroToOne(t *testing.T) {
	for _, p := range []float64{-0.1, 1.5, math.NaN()} {
		if _, err := Encode(&Response{ID: "r", Worker: "w", Event: EventProgress, Progress: p}, nil, 0); err == nil {
			t.Errorf("progress %v accepted", p)
		}
	}
}

func TestGoErrorFailureMatchesTheGoGolden(t *testing.T) {
	var g golden
	data, err := os.ReadFile(filepath.Join(schemaDir, "golden", "response_failure_go.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	decodeNumbers(t, g.Message, &want)
	response := &Response{
		ID: "5f0c9a52-3c1e-4b0e-9d55-0e8f3f6a2b71", Worker: "go-host2-77-1", Event: EventFailure,
		Failure: FailureFromError(errors.New("primes: limit must be positive")), SentAt: 1700000000.9,
	}
	envelope, err := Encode(response, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := jsonDiff(want, decodedBody(t, envelope), ""); diff != "" {
		t.Fatal(diff)
	}
}

func TestKeys(t *testing.T) {
	got := []string{RequestsKey("ns", "t"), WorkersKey("ns", "t"), WorkerKey("ns", "w"), RepliesKey("ns", "e"), TopicsKey("ns"), ArrivalsKey("ns")}
	want := []string{"ns:requests:t", "ns:workers:t", "ns:worker:w", "ns:replies:e", "ns:topics", "ns:arrivals"}
	if !reflect.DeepEqual(got, want) {
		t.Fatal(got)
	}
}

func TestMaskURLHidesPasswords(t *testing.T) {
	cases := map[string]string{
		"redis://:pw@host:6379/0":      "redis://:***@host:6379/0",
		"rediss://user:pw@host:6380/1": "rediss://user:***@host:6380/1",
		"redis://host:6379":            "redis://host:6379",
	}
	for in, want := range cases {
		if got := MaskURL(in); got != want {
			t.Errorf("MaskURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidTraceParentKeepsW3CValuesAndDropsTheRest(t *testing.T) {
	good := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for value, want := range map[string]string{
		good: good,
		"":   "",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01": "", // uppercase
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": "", // forbidden version
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01": "", // no trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01": "", // no parent id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7":    "", // no flags
	} {
		if got := ValidTraceParent(value); got != want {
			t.Errorf("ValidTraceParent(%q) = %q, want %q", value, got, want)
		}
	}
}

func TestEncodeWritesLineSeparatorsRawAsPythonDoes(t *testing.T) {
	// Python's json.dumps(ensure_ascii=False) writes U+2028 and U+2029 as they
	// are; an escaped backslash before "u2028" stays two characters of text.
	result := []any{"a\u2028b\u2029c", `\u2028`, `\\u2029`, map[string]any{"\u2028": "\u2029"}}
	envelope, err := Encode(&Response{ID: "x", Worker: "w", Event: EventSuccess, Result: result, SentAt: 1}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"type":"response","id":"x","worker":"w","event":"success",` +
		"\"result\":[\"a\u2028b\u2029c\",\"\\\\u2028\",\"\\\\\\\\u2029\",{\"\u2028\":\"\u2029\"}],\"sent_at\":1}"
	body := envelope["body"].(string)
	if body != want {
		t.Fatalf("body = %s\nwant   %s", body, want)
	}
	message, err := DecodeBody([]byte(body))
	if err != nil || !reflect.DeepEqual(message.Response.Result, result) {
		t.Fatalf("decoded %#v (%v), want %#v", message.Response.Result, err, result)
	}
	// So a result the Python worker can send fits the size limit here too:
	// 300 000 line separators are 900 000 bytes of text, not 1 800 000.
	big := strings.Repeat("\u2028", 300000)
	if _, err := Encode(&Response{ID: "x", Worker: "w", Event: EventSuccess, Result: big, SentAt: 1}, nil, 0); err != nil {
		t.Fatal(err)
	}
}

func TestEncodeRefusesTextThatIsNotUTF8AsPythonDoes(t *testing.T) {
	// encoding/json would send U+FFFD in place of the bad byte: a changed value.
	_, err := Encode(&Response{ID: "x", Worker: "w", Event: EventSuccess, Result: []any{"ok", "a\xffb"}, SentAt: 1}, nil, 0)
	var perr *ProtocolError
	if !errors.As(err, &perr) || !strings.Contains(perr.Reason, `field "result": a string is not valid UTF-8 text`) {
		t.Fatalf("err = %v", err)
	}
	// A real U+FFFD, and the six characters \ufffd, are text like any other.
	envelope, err := Encode(&Response{ID: "x", Worker: "w", Event: EventSuccess, Result: []any{"\uFFFD", `\ufffd`}, SentAt: 1}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if body := envelope["body"].(string); !strings.Contains(body, "\"result\":[\"\uFFFD\",\"\\\\ufffd\"]") {
		t.Fatalf("body = %s", body)
	}
}

// Python's flowkit writes TaskFlow's spelling by default (built-ins bare), this
// worker and earlier flowkit the qualified one: HasType matches a built-in either way.
func TestHasTypeMatchesBothSpellingsOfBuiltins(t *testing.T) {
	taskflowForm := NewFailure("k", []string{"KeyError", "LookupError", "Exception"})
	qualified := NewFailure("k", []string{"builtins.KeyError", "builtins.LookupError", "builtins.Exception", "builtins.BaseException"})
	for _, f := range []*Failure{taskflowForm, qualified} {
		for _, name := range []string{"KeyError", "builtins.KeyError", "LookupError", "builtins.Exception"} {
			if !f.HasType(name) {
				t.Errorf("%v: HasType(%q) = false, want true", f.ExcTypeNames, name)
			}
		}
		for _, name := range []string{"ValueError", "builtins.ValueError", "app.KeyError"} {
			if f.HasType(name) {
				t.Errorf("%v: HasType(%q) = true, want false", f.ExcTypeNames, name)
			}
		}
	}
	custom := NewFailure("q", []string{"app.Quota", "Exception"})
	if !custom.HasType("app.Quota") || custom.HasType("Quota") {
		t.Errorf("a qualified name matches only itself")
	}
}

func TestEncodeRefusesAFailureWhoseCausesLoopInsteadOfOverflowingTheStack(t *testing.T) {
	// Each record was encoded afresh, out of reach of encoding/json's cycle
	// check: a loop recursed until the stack overflowed, a fatal error that
	// ended the worker's process (no recover can catch it).
	first := NewFailure("first", GoErrorTypes)
	second := NewFailure("second", GoErrorTypes)
	first.Causes = []*Failure{second}
	second.Causes = []*Failure{first}
	response := &Response{ID: "r", Worker: "w", Event: EventFailure, Failure: first, SentAt: 1}
	_, err := Encode(response, nil, 0)
	var perr *ProtocolError
	if !errors.As(err, &perr) || !strings.Contains(perr.Reason, `its causes loop back to the record "first"`) {
		t.Fatalf("err = %v", err)
	}
	// A record shared by two branches is no loop: it is written twice.
	shared := NewFailure("shared", GoErrorTypes)
	tree := NewFailure("top", GoErrorTypes)
	tree.Causes = []*Failure{shared, {ExceptionStr: "other", ExcTypeNames: GoErrorTypes, Causes: []*Failure{shared}}}
	response.Failure = tree
	envelope, err := Encode(response, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(envelope["body"].(string), `"exception_str":"shared"`); got != 2 {
		t.Fatalf("shared cause written %d times: %s", got, envelope["body"])
	}
}

// nestedRequest is a request body whose arrays and objects nest depth levels,
// its own object included.
func nestedRequest(depth int) string {
	value := strings.Repeat("[", depth-2) + strings.Repeat("]", depth-2)
	return `{"v":1,"type":"request","id":"x","reply_to":"r","action":"execute","task":"t",` +
		`"name":"n","arguments":{"a":` + value + `},"sent_at":1,"deadline":2}`
}

func TestDecodeTakesABodyNestedToTheLimitAndRefusesOneLevelMoreAsPythonDoes(t *testing.T) {
	if MaxDepth != 512 {
		t.Fatalf("MaxDepth = %d, the protocol says 512", MaxDepth)
	}
	if _, err := Decode(map[string]any{"body": nestedRequest(MaxDepth)}, nil, 0); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	_, err := Decode(map[string]any{"body": nestedRequest(MaxDepth + 1)}, nil, 0)
	if err == nil || !strings.Contains(err.Error(), "nests arrays and objects deeper than the limit of 512 levels") {
		t.Fatalf("past the limit: %v", err)
	}
}

func TestBracketsInsideStringsDoNotCountAsNesting(t *testing.T) {
	text, _ := json.Marshal(strings.Repeat("[{", MaxDepth) + `"\`)
	body := strings.Replace(nestedRequest(3), "[]", string(text), 1)
	if _, err := Decode(map[string]any{"body": body}, nil, 0); err != nil {
		t.Fatal(err)
	}
}

func TestEncodeRefusesAResultNestedPastTheLimit(t *testing.T) {
	var value any = []any{}
	for i := 0; i < MaxDepth-1; i++ {
		value = []any{value}
	}
	// value nests MaxDepth levels; the response's own object adds one.
	if _, err := Encode(&Response{ID: "x", Worker: "w", Event: EventSuccess, Result: value.([]any)[0], SentAt: 1}, nil, 0); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	_, err := Encode(&Response{ID: "x", Worker: "w", Event: EventSuccess, Result: value, SentAt: 1}, nil, 0)
	var perr *ProtocolError
	if !errors.As(err, &perr) || !strings.Contains(perr.Reason, "deeper than the limit of 512") {
		t.Fatalf("past the limit: %v", err)
	}
}

func requestWithNumber(number string) string {
	return `{"v":1,"type":"request","id":"x","reply_to":"r","action":"execute","task":"t",` +
		`"name":"n","arguments":{"a":[` + number + `]},"sent_at":1,"deadline":2}`
}

func TestDecodeRefusesANumberNoDoubleOrPythonIntHoldsAsPythonDoes(t *testing.T) {
	refused := map[string]string{
		"1e400":                               "number 1e400 is too large for a double",
		"-1E+309":                             "too large for a double",
		"1" + strings.Repeat("0", 400) + ".0": "too large for a double",
		strings.Repeat("1", 4301):             "more than 4300 digits",
		"-" + strings.Repeat("1", 4301):       "more than 4300 digits",
	}
	for number, reason := range refused {
		_, err := Decode(map[string]any{"body": requestWithNumber(number)}, nil, 0)
		if err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("%.30s: got %v, want %q", number, err, reason)
		}
	}
	for _, number := range []string{"1e308", "-1.7976931348623157e308", "1e-400", strings.Repeat("1", 4300), "0.5e1"} {
		if _, err := Decode(map[string]any{"body": requestWithNumber(number)}, nil, 0); err != nil {
			t.Errorf("%.30s: %v", number, err)
		}
	}
	// Inside a string, such text is no number.
	if _, err := Decode(map[string]any{"body": requestWithNumber(`"1e400 \"` + strings.Repeat("1", 5000) + `"`)}, nil, 0); err != nil {
		t.Errorf("in a string: %v", err)
	}
}

func TestEncodeRefusesAResultNumberTheEngineCannotRead(t *testing.T) {
	for _, result := range []any{json.Number("1e400"), json.Number(strings.Repeat("9", 4301))} {
		_, err := Encode(&Response{ID: "x", Worker: "w", Event: EventSuccess, Result: result, SentAt: 1}, nil, 0)
		var perr *ProtocolError
		if !errors.As(err, &perr) {
			t.Errorf("%.30v: err = %v", result, err)
		}
	}
}

func TestAResponseBeginsWithItsIDAndEventForAnEngineThatCannotParseTheRest(t *testing.T) {
	// The engine reads this head of an answer it refuses unparsed (too big for
	// its own limit, say) to fail the request instead of waiting for ever.
	envelope, err := Encode(&Response{ID: "req-1", Worker: "w-1", Event: EventSuccess, Result: []any{1}, SentAt: 1}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	head := `{"v":1,"type":"response","id":"req-1","worker":"w-1","event":"success",`
	if body := envelope["body"].(string); !strings.HasPrefix(body, head) {
		t.Fatalf("body %s does not begin with %s", body, head)
	}
}

// An advert states the worker's size limit so engines send it nothing larger; a
// Notify without one (0) writes the advert of older workers, without the field.
func TestNotifyStatesItsSizeLimitOnlyWhenItHasOne(t *testing.T) {
	for _, limit := range []int{4096, 0} {
		envelope, err := Encode(&Notify{Worker: "w", Topic: "t", Language: "go", Heartbeat: 1, VisibilityTimeout: 30, MaxMessageBytes: limit, SentAt: 1}, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		body := envelope["body"].(string)
		if strings.Contains(body, "max_message_bytes") != (limit > 0) {
			t.Fatalf("limit %d: body %s", limit, body)
		}
		message, err := Decode(map[string]any{"body": body}, nil, 0)
		if err != nil || message.Notify == nil || message.Notify.MaxMessageBytes != limit {
			t.Fatalf("limit %d decoded as %+v (%v)", limit, message.Notify, err)
		}
	}
}
