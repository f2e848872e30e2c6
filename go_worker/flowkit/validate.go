package flowkit

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Checks of decoded messages, mirroring the JSON Schemas and the Python side's
// _validate module (same rules, same wording of reasons). Decoded values are
// what encoding/json gives with UseNumber: map[string]any, []any, string,
// json.Number, bool and nil.

var baseNames = map[string]bool{
	"builtins.BaseException": true,
	"builtins.Exception":     true,
	"BaseException":          true,
	"Exception":              true,
}

var events = map[string]bool{EventRunning: true, EventProgress: true, EventNotification: true, EventSuccess: true, EventFailure: true}

// jsonType names a decoded value's JSON type the way the Python side does
// (a number written with a fraction or exponent is a "number").
func jsonType(value any) string {
	switch v := value.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		if isFloatLiteral(v) {
			return "number"
		}
		return "integer"
	case bool:
		return "boolean"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%T", value)
	}
}

func isFloatLiteral(n json.Number) bool { return strings.ContainsAny(string(n), ".eE") }

// numberValue returns a decoded number's value; ok is false for non-numbers.
func numberValue(value any) (float64, bool) {
	n, ok := value.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil && !math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// isInteger says whether a decoded value is a JSON integer (2.0 counts, true does not).
func isInteger(value any) bool {
	n, ok := value.(json.Number)
	if !ok {
		return false
	}
	if !isFloatLiteral(n) {
		return true
	}
	f, ok := numberValue(n)
	return ok && !math.IsInf(f, 0) && f == math.Trunc(f)
}

func short(value any) string {
	text := fmt.Sprintf("%v", value)
	if s, ok := value.(string); ok {
		text = strconv.Quote(s)
	}
	if len(text) > 60 {
		text = text[:60]
	}
	return text
}

func bad(kind string, message map[string]any, name, expected string) string {
	value, present := message[name]
	if !present {
		return fmt.Sprintf("%s has no '%s' field", kind, name)
	}
	return fmt.Sprintf("%s field '%s' must be %s, not %s %s", kind, name, expected, jsonType(value), short(value))
}

func nonEmptyStrings(kind string, message map[string]any, names ...string) string {
	for _, name := range names {
		if s, ok := message[name].(string); !ok || s == "" {
			return bad(kind, message, name, "a non-empty string")
		}
	}
	return ""
}

func numbers(kind string, message map[string]any, names ...string) string {
	for _, name := range names {
		if _, ok := numberValue(message[name]); !ok {
			return bad(kind, message, name, "a number")
		}
	}
	return ""
}

// messageProblem says what is wrong with a message whose "v" is known good, or "".
func messageProblem(message map[string]any) string {
	kind, present := message["type"]
	switch kind {
	case TypeRequest:
		return requestProblem(message)
	case TypeResponse:
		return responseProblem(message)
	case TypeNotify:
		return notifyProblem(message)
	}
	if !present {
		return "message has no 'type' field"
	}
	return fmt.Sprintf("unknown message type %s (expected 'notify', 'request' or 'response')", short(kind))
}

func requestProblem(m map[string]any) string {
	if p := nonEmptyStrings("request", m, "id", "reply_to", "action", "task"); p != "" {
		return p
	}
	if _, ok := m["name"].(string); !ok {
		return bad("request", m, "name", "a string")
	}
	action := m["action"].(string)
	if action != ActionExecute && action != ActionRevert {
		return fmt.Sprintf("request field 'action' must be 'execute' or 'revert', not %s", short(action))
	}
	if _, ok := m["arguments"].(map[string]any); !ok {
		return bad("request", m, "arguments", "an object")
	}
	if p := numbers("request", m, "sent_at", "deadline"); p != "" {
		return p
	}
	if value, present := m["traceparent"]; present {
		// Only the type: W3C Trace Context has receivers ignore a value they
		// cannot parse rather than refuse the work it came with.
		if _, ok := value.(string); !ok {
			return bad("request", m, "traceparent", "a string")
		}
	}
	if action == ActionExecute {
		for _, name := range []string{"result", "failure", "flow_failures"} {
			if _, present := m[name]; present {
				return fmt.Sprintf("execute request must not carry '%s' (revert requests only)", name)
			}
		}
		return ""
	}
	flowFailures, ok := m["flow_failures"].(map[string]any)
	if !ok {
		return bad("revert request", m, "flow_failures", "an object")
	}
	for _, atom := range sortedKeys(flowFailures) {
		if p := failureProblem(flowFailures[atom], "flow_failures."+atom); p != "" {
			return p
		}
	}
	if record, present := m["failure"]; present {
		if _, both := m["result"]; both {
			return "revert request must carry 'result' or 'failure', not both"
		}
		return failureProblem(record, "failure")
	}
	if _, present := m["result"]; !present {
		return "revert request must carry 'result' or 'failure'"
	}
	return ""
}

func responseProblem(m map[string]any) string {
	if p := nonEmptyStrings("response", m, "id", "worker", "event"); p != "" {
		return p
	}
	event := m["event"].(string)
	if !events[event] {
		return fmt.Sprintf("response field 'event' must be one of ['failure', 'notification', 'progress', 'running', 'success'], not %s", short(event))
	}
	if p := numbers("response", m, "sent_at"); p != "" {
		return p
	}
	if event == EventProgress {
		progress, ok := numberValue(m["progress"])
		if !ok || !(progress >= 0 && progress <= 1) {
			return bad("progress response", m, "progress", "a number from 0 to 1")
		}
	} else if _, present := m["progress"]; present {
		return fmt.Sprintf("%s response must not carry 'progress' (progress responses only)", event)
	}
	if event == EventNotification {
		if p := nonEmptyStrings("notification response", m, "event_type"); p != "" {
			return p
		}
	} else if _, present := m["event_type"]; present {
		return fmt.Sprintf("%s response must not carry 'event_type' (notification responses only)", event)
	}
	if event == EventProgress || event == EventNotification {
		if details, present := m["details"]; present && details != nil {
			if _, ok := details.(map[string]any); !ok {
				return bad(event+" response", m, "details", "an object or null")
			}
		}
	} else if _, present := m["details"]; present {
		return fmt.Sprintf("%s response must not carry 'details' (progress and notification responses only)", event)
	}
	_, hasResult := m["result"]
	if event == EventSuccess {
		if !hasResult {
			return "success response has no 'result' field"
		}
	} else if hasResult {
		return fmt.Sprintf("%s response must not carry 'result' (success responses only)", event)
	}
	record, hasFailure := m["failure"]
	if event == EventFailure {
		if !hasFailure {
			return "failure response has no 'failure' field"
		}
		return failureProblem(record, "failure")
	}
	if hasFailure {
		return fmt.Sprintf("%s response must not carry 'failure' (failure responses only)", event)
	}
	return ""
}

func notifyProblem(m map[string]any) string {
	if p := nonEmptyStrings("notify", m, "worker", "topic", "language"); p != "" {
		return p
	}
	tasks, ok := m["tasks"].([]any)
	if !ok {
		return bad("notify", m, "tasks", "an array of task names")
	}
	for i, name := range tasks {
		if s, ok := name.(string); !ok || s == "" {
			return fmt.Sprintf("notify field 'tasks[%d]' must be a non-empty string, not %s", i, jsonType(name))
		}
	}
	if pid, _ := numberValue(m["pid"]); !isInteger(m["pid"]) || pid < 0 {
		return bad("notify", m, "pid", "a non-negative integer")
	}
	if _, ok := m["host"].(string); !ok {
		return bad("notify", m, "host", "a string")
	}
	for _, name := range []string{"heartbeat", "visibility_timeout"} {
		if value, ok := numberValue(m[name]); !ok || !(value > 0) {
			return bad("notify", m, name, "a positive number")
		}
	}
	// Optional: workers written before it leave it out.
	if limit, present := m["max_message_bytes"]; present {
		if value, _ := numberValue(limit); !isInteger(limit) || value < 1 {
			return bad("notify", m, "max_message_bytes", "a positive integer")
		}
	}
	return numbers("notify", m, "sent_at")
}

// failureProblem says what is wrong with a failure record (and its causes) at where, or "".
func failureProblem(record any, where string) string {
	type item struct {
		path  string
		value any
	}
	pending := []item{{where, record}}
	for len(pending) > 0 {
		it := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		m, ok := it.value.(map[string]any)
		if !ok {
			return fmt.Sprintf("failure record '%s' must be an object, not %s", it.path, jsonType(it.value))
		}
		kind := fmt.Sprintf("failure record '%s'", it.path)
		if version, ok := numberValue(m["version"]); !ok || version != 1 {
			return bad(kind, m, "version", "1")
		}
		for _, name := range []string{"exception_str", "traceback_str"} {
			if _, ok := m[name].(string); !ok {
				return bad(kind, m, name, "a string")
			}
		}
		names, ok := m["exc_type_names"].([]any)
		good := ok && len(names) > 0
		for _, name := range names {
			if _, ok := name.(string); !ok {
				good = false
			}
		}
		if !good {
			return bad(kind, m, "exc_type_names", "a non-empty array of strings")
		}
		if last := names[len(names)-1].(string); !baseNames[last] {
			return fmt.Sprintf("%s field 'exc_type_names' must end with one of "+
				"['BaseException', 'Exception', 'builtins.BaseException', 'builtins.Exception'], not %s", kind, short(last))
		}
		if args, present := m["exc_args"]; present {
			if _, ok := args.([]any); !ok {
				return bad(kind, m, "exc_args", "an array")
			}
		}
		var causes []any
		if value, present := m["causes"]; present {
			if causes, ok = value.([]any); !ok {
				return bad(kind, m, "causes", "an array")
			}
		}
		// Reversed so the stack visits causes in order and reports the first bad one.
		for i := len(causes) - 1; i >= 0; i-- {
			pending = append(pending, item{fmt.Sprintf("%s.causes[%d]", it.path, i), causes[i]})
		}
	}
	return ""
}
