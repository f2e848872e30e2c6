package flowkit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Envelope is a message as Redis field/value pairs: "body" (JSON text) and,
// when signing, "sig" (lowercase hex HMAC-SHA256 of the body). It is the
// Values of an XADD and the mapping of the worker hash's HSET.
type Envelope map[string]any

// ProtocolError says why a message cannot be sent or was rejected on receipt.
type ProtocolError struct {
	// Reason is what is wrong, fit for a log line.
	Reason string
	// MessageID and ReplyTo are filled (when present as non-empty strings)
	// only for a JSON object whose "v" is an integer other than 1, so a
	// worker can answer a request of a version it does not speak.
	MessageID string
	ReplyTo   string
}

func (e *ProtocolError) Error() string { return e.Reason }

func protocolError(format string, args ...any) *ProtocolError {
	return &ProtocolError{Reason: fmt.Sprintf(format, args...)}
}

// Message is a decoded, valid message: exactly one of Notify, Request and
// Response is set, as Type says. Fields is the JSON object as decoded
// (numbers are json.Number), unknown fields included.
type Message struct {
	Type     string
	Fields   map[string]any
	Notify   *Notify
	Request  *Request
	Response *Response
}

// ResolveSecret returns the signing key: secret when non-nil, else the
// FLOWKIT_WORKER_SECRET environment variable. An empty result means no signing.
func ResolveSecret(secret []byte) []byte {
	if secret == nil {
		secret = []byte(os.Getenv(SecretEnv))
	}
	if len(secret) == 0 {
		return nil
	}
	return secret
}

// Sign returns the lowercase hex HMAC-SHA256 of body under secret.
func Sign(body, secret []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Encode wraps a message (*Notify, *Request, *Response or any JSON value)
// in an envelope, signed when secret is non-empty.
//
// It returns a *ProtocolError when the message is not JSON-encodable or its
// body is over maxBytes (0: MaxMessageBytes).
func Encode(message any, secret []byte, maxBytes int) (Envelope, error) {
	body, err := marshalValue(message)
	if err != nil {
		return nil, protocolError("message is not JSON-encodable: %v", err)
	}
	if maxBytes <= 0 {
		maxBytes = MaxMessageBytes
	}
	if len(body) > maxBytes {
		return nil, protocolError("message body is %d bytes, over the limit of %d bytes", len(body), maxBytes)
	}
	if nestsDeeperThan(body, MaxDepth) {
		return nil, protocolError("%s", tooDeep)
	}
	if problem := bigNumber(body); problem != "" {
		return nil, protocolError("message is not JSON-encodable: %s", problem)
	}
	envelope := Envelope{"body": string(body)}
	if len(secret) > 0 {
		envelope["sig"] = Sign(body, secret)
	}
	return envelope, nil
}

func fieldBytes(envelope map[string]any, name string) ([]byte, bool) {
	switch v := envelope[name].(type) {
	case string:
		return []byte(v), true
	case []byte:
		return v, true
	}
	return nil, false
}

// Decode unwraps and checks an envelope read from Redis and returns its message.
//
// Checks, in order: a "body" field, its size (maxBytes, 0: MaxMessageBytes),
// the signature (when secret is non-empty; compared in constant time), UTF-8
// JSON text of an object with no lone surrogate escape ("\ud800") in any
// string, "v" == 1, a known "type" and the fields that type
// requires with their JSON types. Any problem is a *ProtocolError naming the
// first one found.
func Decode(envelope map[string]any, secret []byte, maxBytes int) (*Message, error) {
	body, ok := fieldBytes(envelope, "body")
	if !ok {
		return nil, protocolError("envelope has no 'body' field")
	}
	if maxBytes <= 0 {
		maxBytes = MaxMessageBytes
	}
	if len(body) > maxBytes {
		return nil, protocolError("message body is %d bytes, over the limit of %d bytes", len(body), maxBytes)
	}
	if len(secret) > 0 {
		sig, ok := fieldBytes(envelope, "sig")
		if !ok {
			return nil, protocolError("message is not signed but a secret is configured")
		}
		if !hmac.Equal([]byte(Sign(body, secret)), sig) {
			return nil, protocolError("message signature does not match")
		}
	}
	return DecodeBody(body)
}

// DecodeBody parses and checks a message body (no size or signature check).
func DecodeBody(body []byte) (*Message, error) {
	if !utf8.Valid(body) {
		return nil, protocolError("message body is not JSON text: invalid UTF-8")
	}
	if nestsDeeperThan(body, MaxDepth) { // before parsing: parsers differ on what they can read
		return nil, protocolError("%s", tooDeep)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var value any
	if err := dec.Decode(&value); err != nil {
		return nil, protocolError("message body is not JSON text: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, protocolError("message body is not JSON text: extra data after the value")
	}
	if problem := bigNumber(body); problem != "" {
		return nil, protocolError("message body is not JSON text: %s", problem)
	}
	object, ok := value.(map[string]any)
	if !ok {
		return nil, protocolError("message must be a JSON object, not %s", jsonType(value))
	}
	if at := loneSurrogateAt(body); at >= 0 {
		// Go's decoder turned it into U+FFFD; the protocol refuses it, as Python does.
		return nil, protocolError("message holds a lone surrogate escape at byte %d: JSON strings must be Unicode text", at)
	}
	version, present := object["v"]
	if v, isNumber := numberValue(version); !isNumber || v != Version {
		if !present {
			return nil, protocolError("message has no 'v' (protocol version) field")
		}
		if !isInteger(version) {
			return nil, protocolError("message field 'v' must be an integer, not %s", jsonType(version))
		}
		// Another version's message may differ in every other field; only its
		// id and reply_to are read, so a worker can say it cannot handle it.
		err := protocolError("unsupported protocol version %s (this side speaks %d)", version, Version)
		err.MessageID, _ = object["id"].(string)
		err.ReplyTo, _ = object["reply_to"].(string)
		return nil, err
	}
	if problem := messageProblem(object); problem != "" {
		return nil, protocolError("%s", problem)
	}
	message := &Message{Type: object["type"].(string), Fields: object}
	switch message.Type {
	case TypeNotify:
		message.Notify = notifyFrom(object)
	case TypeRequest:
		message.Request = requestFrom(object)
		message.Request.body = body
	case TypeResponse:
		message.Response = responseFrom(object)
	}
	return message, nil
}

func float(value any) float64 {
	f, _ := numberValue(value)
	return f
}

func notifyFrom(m map[string]any) *Notify {
	n := &Notify{
		Worker:            m["worker"].(string),
		Topic:             m["topic"].(string),
		Language:          m["language"].(string),
		PID:               int64(float(m["pid"])),
		Host:              m["host"].(string),
		Heartbeat:         float(m["heartbeat"]),
		VisibilityTimeout: float(m["visibility_timeout"]),
		SentAt:            float(m["sent_at"]),
		Tasks:             []string{},
	}
	for _, task := range m["tasks"].([]any) {
		n.Tasks = append(n.Tasks, task.(string))
	}
	// Absent (an older worker) stays 0; a limit past what an int holds is no limit at all.
	if limit := float(m["max_message_bytes"]); limit >= math.MaxInt64 {
		n.MaxMessageBytes = math.MaxInt
	} else {
		n.MaxMessageBytes = int(limit)
	}
	return n
}

func requestFrom(m map[string]any) *Request {
	r := &Request{
		ID:        m["id"].(string),
		ReplyTo:   m["reply_to"].(string),
		Action:    m["action"].(string),
		Task:      m["task"].(string),
		Name:      m["name"].(string),
		Arguments: m["arguments"].(map[string]any),
		Result:    m["result"],
		SentAt:    float(m["sent_at"]),
		Deadline:  float(m["deadline"]),
	}
	if traceParent, ok := m["traceparent"].(string); ok {
		r.TraceParent = traceParent
	}
	if record, ok := m["failure"]; ok {
		r.Failure = failureFrom(record)
	}
	if records, ok := m["flow_failures"].(map[string]any); ok {
		r.FlowFailures = make(map[string]*Failure, len(records))
		for atom, record := range records {
			r.FlowFailures[atom] = failureFrom(record)
		}
	}
	return r
}

func responseFrom(m map[string]any) *Response {
	r := &Response{
		ID:     m["id"].(string),
		Worker: m["worker"].(string),
		Event:  m["event"].(string),
		Result: m["result"],
		SentAt: float(m["sent_at"]),
	}
	r.Progress = float(m["progress"])
	r.EventType, _ = m["event_type"].(string)
	r.Details, _ = m["details"].(map[string]any)
	if record, ok := m["failure"]; ok {
		r.Failure = failureFrom(record)
	}
	return r
}

// failureFrom converts a record that passed failureProblem.
func failureFrom(record any) *Failure {
	m := record.(map[string]any)
	f := &Failure{
		ExceptionStr: m["exception_str"].(string),
		TracebackStr: m["traceback_str"].(string),
		ExcArgs:      []any{},
	}
	for _, name := range m["exc_type_names"].([]any) {
		f.ExcTypeNames = append(f.ExcTypeNames, name.(string))
	}
	if args, ok := m["exc_args"].([]any); ok {
		f.ExcArgs = args
	}
	if causes, ok := m["causes"].([]any); ok {
		for _, cause := range causes {
			f.Causes = append(f.Causes, failureFrom(cause))
		}
	}
	return f
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}

// loneSurrogateAt returns the byte offset of the first \uXXXX escape of a
// (valid) JSON text that spells half of a UTF-16 surrogate pair without the
// other half, or -1. No UTF-8 text can hold such a string, so a message with
// one could not be answered by every worker alike.
func loneSurrogateAt(body []byte) int {
	if !bytes.Contains(body, []byte(`\u`)) {
		return -1
	}
	inString := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !inString {
			inString = c == '"'
			continue
		}
		if c == '"' {
			inString = false
			continue
		}
		if c != '\\' {
			continue
		}
		if i+1 >= len(body) || body[i+1] != 'u' {
			i++ // a one-letter escape such as \" or \\
			continue
		}
		r, ok := hex4(body, i+2)
		switch {
		case !ok || r < 0xD800 || r > 0xDFFF:
			i += 5
		case r >= 0xDC00: // a low half with no high half before it
			return i
		default: // a high half: the next escape must be its low half
			if low, ok := escapeAt(body, i+6); ok && low >= 0xDC00 && low <= 0xDFFF {
				i += 11
			} else {
				return i
			}
		}
	}
	return -1
}

var tooDeep = fmt.Sprintf("message nests arrays and objects deeper than the limit of %d levels", MaxDepth)

// nestsDeeperThan says whether the JSON text body nests arrays and objects
// more than limit levels deep; brackets inside strings do not count. body need
// not be valid JSON (the parser, which runs after, says what is wrong).
func nestsDeeperThan(body []byte, limit int) bool {
	if bytes.Count(body, []byte("["))+bytes.Count(body, []byte("{")) <= limit {
		return false // nearly every message: no scan
	}
	depth, inString := 0, false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case inString && c == '\\':
			i++ // the escaped byte, whatever it is
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			if depth++; depth > limit {
				return true
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return false
}

// bigNumber says why the JSON text body holds a number that no double
// (1e400) or no Python int (more than MaxIntegerDigits digits) can hold, or
// returns "". The engine's parser refuses such a number, so a worker that
// sent one would have its answer dropped unread; Python's worker refuses it
// in a request, and so must this one.
func bigNumber(body []byte) string {
	inString := false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '-' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(body) && strings.IndexByte("0123456789+-.eE", body[j]) >= 0 {
				j++
			}
			if problem := numberProblem(string(body[i:j])); problem != "" {
				return problem
			}
			i = j - 1
		}
	}
	return ""
}

func numberProblem(text string) string {
	shown := text
	if len(shown) > 24 {
		shown = shown[:20] + "..."
	}
	if !strings.ContainsAny(text, ".eE") {
		if digits := len(strings.TrimPrefix(text, "-")); digits > MaxIntegerDigits {
			return fmt.Sprintf("integer %s has %d digits, more than %d digits", shown, digits, MaxIntegerDigits)
		}
		return ""
	}
	if f, err := strconv.ParseFloat(text, 64); err != nil && math.IsInf(f, 0) {
		return fmt.Sprintf("number %s is too large for a double", shown)
	}
	return ""
}

// escapeAt reads a \uXXXX escape starting at body[i].
func escapeAt(body []byte, i int) (rune, bool) {
	if i+1 >= len(body) || body[i] != '\\' || body[i+1] != 'u' {
		return 0, false
	}
	return hex4(body, i+2)
}

// hex4 reads four hexadecimal digits starting at body[i].
func hex4(body []byte, i int) (rune, bool) {
	if i+4 > len(body) {
		return 0, false
	}
	var r rune
	for _, c := range body[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
