"""Hand-written checks of decoded protocol messages, mirroring ``schemas/*.schema.json``.

:func:`protocol.decode <flowkit.engines.worker_based.protocol.decode>` runs on
every message, so the checks are plain type tests that cost well under a
microsecond each instead of a JSON Schema evaluation. ``tests/workers/
test_protocol.py`` holds them to the schemas with golden and generated
messages; change both together.

The functions return a reason (a sentence naming the field) or ``None``; the
caller wraps it in ``ProtocolError``. Keeping exceptions out of this module
leaves it free of imports from ``protocol``.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["failure_problem", "is_integer", "json_type", "problem"]

_ACTIONS: Final = frozenset(("execute", "revert"))
_EVENTS: Final = frozenset(("running", "progress", "notification", "success", "failure"))
_BASE_NAMES: Final = frozenset(("builtins.BaseException", "builtins.Exception", "BaseException", "Exception"))
_REVERT_ONLY: Final = ("result", "failure", "flow_failures")
_JSON_TYPES: Final = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def problem(message: dict[str, Any]) -> str | None:
    """What is wrong with a decoded message whose ``v`` is already known good, or ``None``."""
    kind = message.get("type")
    if kind == "request":
        return _request(message)
    if kind == "response":
        return _response(message)
    if kind == "notify":
        return _notify(message)
    if "type" not in message:
        return "message has no 'type' field"
    return f"unknown message type {kind!r} (expected 'notify', 'request' or 'response')"


def _is_number(value: Any) -> bool:
    kind = type(value)
    return kind is float or kind is int


def is_integer(value: Any) -> bool:
    """Whether a decoded value is a JSON integer (``2.0`` counts, ``true`` does not)."""
    kind = type(value)
    return kind is int or (kind is float and value.is_integer())


def _bad(kind: str, message: dict[str, Any], field: str, expected: str) -> str:
    if field not in message:
        return f"{kind} has no '{field}' field"
    value = message[field]
    return f"{kind} field '{field}' must be {expected}, not {json_type(value)} {value!r:.60}"


def _strings(kind: str, message: dict[str, Any], fields: tuple[str, ...]) -> str | None:
    for field in fields:
        value = message.get(field)
        if type(value) is not str or not value:
            return _bad(kind, message, field, "a non-empty string")
    return None


def _numbers(kind: str, message: dict[str, Any], fields: tuple[str, ...]) -> str | None:
    for field in fields:
        value = message.get(field)
        if type(value) is not float and type(value) is not int:
            return _bad(kind, message, field, "a number")
    return None


def _request(message: dict[str, Any]) -> str | None:
    found = _strings("request", message, ("id", "reply_to", "action", "task"))
    if found is not None:
        return found
    if type(message.get("name")) is not str:
        # Only for logs and errors; flowkit does not forbid an atom named "".
        return _bad("request", message, "name", "a string")
    action = message["action"]
    if action not in _ACTIONS:
        return f"request field 'action' must be 'execute' or 'revert', not {action!r:.60}"
    if type(message.get("arguments")) is not dict:
        return _bad("request", message, "arguments", "an object")
    found = _numbers("request", message, ("sent_at", "deadline"))
    if found is not None:
        return found
    if "traceparent" in message and type(message["traceparent"]) is not str:
        # Only the type is checked: W3C Trace Context has receivers ignore a
        # value they cannot parse rather than refuse the work it came with.
        return _bad("request", message, "traceparent", "a string")
    if action == "execute":
        for field in _REVERT_ONLY:
            if field in message:
                return f"execute request must not carry '{field}' (revert requests only)"
        return None
    flow_failures = message.get("flow_failures")
    if type(flow_failures) is not dict:
        return _bad("revert request", message, "flow_failures", "an object")
    for atom, record in flow_failures.items():
        found = failure_problem(record, f"flow_failures.{atom}")
        if found is not None:
            return found
    if "failure" in message:
        if "result" in message:
            return "revert request must carry 'result' or 'failure', not both"
        return failure_problem(message["failure"], "failure")
    if "result" not in message:
        return "revert request must carry 'result' or 'failure'"
    return None


def _response(message: dict[str, Any]) -> str | None:
    found = _strings("response", message, ("id", "worker", "event"))
    if found is not None:
        return found
    event = message["event"]
    if event not in _EVENTS:
        return f"response field 'event' must be one of {sorted(_EVENTS)}, not {event!r:.60}"
    if type(message.get("sent_at")) is not float and type(message.get("sent_at")) is not int:
        return _bad("response", message, "sent_at", "a number")
    if event == "progress":
        progress: Any = message.get("progress")
        if not _is_number(progress) or not 0.0 <= progress <= 1.0:
            return _bad("progress response", message, "progress", "a number from 0 to 1")
    elif "progress" in message:
        return f"{event} response must not carry 'progress' (progress responses only)"
    if event == "notification":
        found = _strings("notification response", message, ("event_type",))
        if found is not None:
            return found
    elif "event_type" in message:
        return f"{event} response must not carry 'event_type' (notification responses only)"
    if event in ("progress", "notification"):
        details = message.get("details")
        if details is not None and type(details) is not dict:
            return _bad(f"{event} response", message, "details", "an object or null")
    elif "details" in message:
        return f"{event} response must not carry 'details' (progress and notification responses only)"
    if event == "success":
        if "result" not in message:
            return "success response has no 'result' field"
    elif "result" in message:
        return f"{event} response must not carry 'result' (success responses only)"
    if event == "failure":
        if "failure" not in message:
            return "failure response has no 'failure' field"
        return failure_problem(message["failure"], "failure")
    if "failure" in message:
        return f"{event} response must not carry 'failure' (failure responses only)"
    return None


def _notify(message: dict[str, Any]) -> str | None:
    found = _strings("notify", message, ("worker", "topic", "language"))
    if found is not None:
        return found
    tasks = message.get("tasks")
    if type(tasks) is not list:
        return _bad("notify", message, "tasks", "an array of task names")
    for index, name in enumerate(tasks):
        if type(name) is not str or not name:
            return f"notify field 'tasks[{index}]' must be a non-empty string, not {json_type(name)}"
    pid: Any = message.get("pid")
    if not is_integer(pid) or pid < 0:
        return _bad("notify", message, "pid", "a non-negative integer")
    if type(message.get("host")) is not str:
        return _bad("notify", message, "host", "a string")
    for field in ("heartbeat", "visibility_timeout"):
        value: Any = message.get(field)
        if not _is_number(value) or value <= 0:
            return _bad("notify", message, field, "a positive number")
    if "max_message_bytes" in message:  # optional: workers written before it leave it out
        limit: Any = message["max_message_bytes"]
        if not is_integer(limit) or limit < 1:
            return _bad("notify", message, "max_message_bytes", "a positive integer")
    return _numbers("notify", message, ("sent_at",))


def failure_problem(record: Any, where: str) -> str | None:
    """What is wrong with a failure record (and its causes) at ``where``, or ``None``."""
    pending: list[tuple[str, Any]] = [(where, record)]
    while pending:
        path, item = pending.pop()
        if type(item) is not dict:
            return f"failure record '{path}' must be an object, not {json_type(item)}"
        version = item.get("version")
        if version != 1 or not _is_number(version):
            return _bad(f"failure record '{path}'", item, "version", "1")
        for field in ("exception_str", "traceback_str"):
            if type(item.get(field)) is not str:
                return _bad(f"failure record '{path}'", item, field, "a string")
        names = item.get("exc_type_names")
        if type(names) is not list or not names or any(type(name) is not str for name in names):
            return _bad(f"failure record '{path}'", item, "exc_type_names", "a non-empty array of strings")
        if names[-1] not in _BASE_NAMES:
            return (
                f"failure record '{path}' field 'exc_type_names' must end with one of "
                f"{sorted(_BASE_NAMES)}, not {names[-1]!r:.60}"
            )
        if "exc_args" in item and type(item["exc_args"]) is not list:
            return _bad(f"failure record '{path}'", item, "exc_args", "an array")
        causes = item.get("causes", [])
        if type(causes) is not list:
            return _bad(f"failure record '{path}'", item, "causes", "an array")
        # Reversed so that pop() visits causes in order and reports the first bad one.
        for index in range(len(causes) - 1, -1, -1):
            pending.append((f"{path}.causes[{index}]", causes[index]))
    return None
