"""The worker protocol, version 1: key names, message builders, encoding and checks.

Engines and workers (Python or Go) talk through Redis streams in JSON messages
wrapped in an *envelope* of two Redis fields, ``body`` (the JSON text) and
``sig`` (an HMAC-SHA256 of the body, when a secret is configured). This module
holds everything both sides must agree on byte for byte; it does no I/O, so it
imports without redis. ``doc/workers_protocol.rst`` is the normative prose and
the JSON Schemas in ``schemas/`` are its executable form; :func:`decode` checks
exactly what they check, by hand, because it runs once per message and has to
cost microseconds.

Rules the schemas state and the builders here follow:

* a revert request carries ``flow_failures`` and exactly one of ``result``
  (the atom's execute succeeded, possibly ``null``) or ``failure`` (it failed);
  an execute request carries none of the three;
* a response carries ``progress`` only on ``progress`` events, ``event_type``
  only on ``notification`` events, ``details`` only on those two, ``result``
  only on ``success`` and ``failure`` only on ``failure``;
* a failure record's ``exc_type_names`` ends with a base exception name (the
  schema can only check that one is present; :func:`decode` checks the end, so
  every record it accepts also passes :meth:`Failure.from_dict
  <flowkit.types.failure.Failure.from_dict>`).
"""

from __future__ import annotations

import hmac
import json
import math
import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from flowkit import exceptions as exc
from flowkit.engines.worker_based import _validate
from flowkit.engines.worker_based._json_text import MAX_INTEGER_DIGITS, loads
from flowkit.engines.worker_based._nesting import MAX_DEPTH, nests_deeper_than
from flowkit.engines.worker_based._response_head import response_head

__all__ = [
    "ARRIVALS_MAXLEN",
    "DEFAULT_NAMESPACE",
    "EXECUTE",
    "FAILURE",
    "GROUP",
    "MAX_CLOCK_SKEW",
    "MAX_DEPTH",
    "MAX_INTEGER_DIGITS",
    "MAX_MESSAGE_BYTES",
    "MAX_SEEN",
    "MISSING",
    "NOTIFICATION",
    "PROGRESS",
    "REPLY_TTL",
    "REVERT",
    "RUNNING",
    "SECRET_ENV",
    "SUCCESS",
    "VERSION",
    "ProtocolError",
    "arrivals_key",
    "decode",
    "encode",
    "notify_message",
    "replies_key",
    "request_message",
    "requests_key",
    "resolve_secret",
    "response_message",
    "seen_key",
    "sign",
    "task_name",
    "topics_key",
    "worker_key",
    "workers_key",
]

VERSION: Final = 1
DEFAULT_NAMESPACE: Final = "flowkit"
GROUP: Final = "workers"
MAX_MESSAGE_BYTES: Final = 1 << 20
SECRET_ENV: Final = "FLOWKIT_WORKER_SECRET"
#: Seconds by which the clocks of engines and workers may disagree. Times in
#: messages are compared across machines with this much slack: an advert is
#: stale three heartbeats plus this after its ``sent_at``, and a request id is
#: remembered (against replays) until this long after its ``deadline``.
MAX_CLOCK_SKEW: Final = 30.0
#: Seconds a reply stream lives after its last write (engine's open and tidy-ups,
#: or a worker's answer): a crashed engine's stream goes, and so does one that
#: an answer arriving after its engine deleted it made again.
REPLY_TTL: Final = 24 * 3600.0
#: The longest a worker remembers a request id against replays (seconds): until
#: the request's deadline plus the clock skew, but no longer than this, so a
#: request with an absurd deadline cannot make the replay check fail (Redis
#: refuses such an expiry) or overflow.
MAX_SEEN: Final = 10 * 366 * 24 * 3600.0

EXECUTE: Final = "execute"
REVERT: Final = "revert"
RUNNING: Final = "running"
PROGRESS: Final = "progress"
SUCCESS: Final = "success"
FAILURE: Final = "failure"
#: An event the task notified on its own notifier (``self.notifier.notify``),
#: relayed to the engine's copy of the task, as TaskFlow relays them.
NOTIFICATION: Final = "notification"

NOTIFY: Final = "notify"
REQUEST: Final = "request"
RESPONSE: Final = "response"


class _Missing:
    """Marks an argument that was not given, where ``None`` is a real value (``null``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

_EVENTS: Final = frozenset((RUNNING, PROGRESS, NOTIFICATION, SUCCESS, FAILURE))


class ProtocolError(exc.InvalidFormat):
    """A message cannot be sent or was received in a shape the protocol forbids.

    Attributes:
        reason: what is wrong, in words fit for a log line.
        message_id: the message's ``id`` when it is a JSON object whose ``v``
            is an integer other than 1 (a protocol version this side does not
            speak), else ``None``.
        reply_to: that message's ``reply_to`` under the same condition, so a
            worker can answer a request it cannot run instead of dropping it.
        quoted_id: the ``id`` a (correctly signed) JSON object quotes as a
            non-empty string, whatever else is wrong with it, else ``None``:
            so an engine can fail the request a malformed final response
            answers instead of waiting for an answer that will not come.
        quoted_event: that object's ``event`` when it is a string, else ``None``.
    """

    def __init__(
        self,
        reason: str,
        *,
        message_id: str | None = None,
        reply_to: str | None = None,
        quoted_id: str | None = None,
        quoted_event: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message_id = message_id
        self.reply_to = reply_to
        self.quoted_id = quoted_id
        self.quoted_event = quoted_event


# -- keys and names -----------------------------------------------------------


def requests_key(namespace: str, topic: str) -> str:
    """The stream engines add requests for workers of ``topic`` to."""
    return f"{namespace}:requests:{topic}"


def workers_key(namespace: str, topic: str) -> str:
    """The sorted set of live worker ids of ``topic`` (score: expiry in unix ms)."""
    return f"{namespace}:workers:{topic}"


def topics_key(namespace: str) -> str:
    """The sorted set of the topics live workers serve (score: the latest expiry in unix ms).

    An engine given no topics finds them here; each worker raises its topic's
    score (``ZADD GT``) at every heartbeat, so a topic drops out once its last
    worker has gone quiet for three heartbeats.
    """
    return f"{namespace}:topics"


def arrivals_key(namespace: str) -> str:
    """The stream a worker adds an entry to when it (re)appears, to wake the engines holding requests.

    Engines block on it beside their reply stream, so a request held for a task
    nobody offered goes out as soon as a worker advertises it, without the
    engine polling the adverts any faster. Only a hint: the engine still reads
    (and checks) the adverts themselves before sending anything.
    """
    return f"{namespace}:arrivals"


#: The length (approximate: ``MAXLEN ~``) workers cap the arrivals stream at.
ARRIVALS_MAXLEN: Final = 1000


def worker_key(namespace: str, worker_id: str) -> str:
    """The hash holding one worker's ``notify`` envelope."""
    return f"{namespace}:worker:{worker_id}"


def replies_key(namespace: str, engine_id: str) -> str:
    """The stream workers add responses for one engine to."""
    return f"{namespace}:replies:{engine_id}"


def seen_key(namespace: str, request_id: str) -> str:
    """The string a worker sets, once, for each request id it runs: a replay finds it taken."""
    return f"{namespace}:seen:{request_id}"


def task_name(task_or_class: object) -> str:
    """The name a task travels under: its class's ``worker_task_name``, else ``module.QualName``.

    Engine and worker both use this rule, so a stub class with a
    ``worker_task_name`` can call a task that only exists in another language.
    """
    cls = task_or_class if isinstance(task_or_class, type) else type(task_or_class)
    name = getattr(cls, "worker_task_name", None)
    if name:
        return str(name)
    return f"{cls.__module__}.{cls.__qualname__}"


def resolve_secret(secret: str | bytes | None) -> bytes | None:
    """The signing key: ``secret`` if given, else ``$FLOWKIT_WORKER_SECRET``, else none.

    An empty value means "no signing"; an explicitly empty option does not fall
    back to the environment, so a caller can turn signing off.
    """
    if secret is None:
        secret = os.environ.get(SECRET_ENV) or None
        if secret is None:
            return None
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    return key or None


# -- building messages --------------------------------------------------------


def notify_message(
    worker_id: str,
    topic: str,
    tasks: Iterable[str],
    *,
    language: str = "python",
    heartbeat: float,
    visibility_timeout: float,
    max_message_bytes: int | None = None,
    sent_at: float | None = None,
) -> dict[str, Any]:
    """A worker's advertisement: who it is and which tasks it runs (``sent_at``: default now).

    ``max_message_bytes`` is the largest request body the worker reads: engines
    route a larger request elsewhere, or fail it at once, instead of sending it
    to be dropped unread. None leaves the field out, as workers did before it
    existed (engines then cannot tell, and send as they did).
    """
    message: dict[str, Any] = {
        "v": VERSION,
        "type": NOTIFY,
        "worker": worker_id,
        "topic": topic,
        "tasks": list(tasks),
        "language": language,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "heartbeat": float(heartbeat),
        "visibility_timeout": float(visibility_timeout),
        "sent_at": time.time() if sent_at is None else float(sent_at),
    }
    if max_message_bytes is not None:
        message["max_message_bytes"] = int(max_message_bytes)
    return message


def request_message(
    request_id: str,
    reply_to: str,
    action: str,
    task: str,
    name: str,
    arguments: Mapping[str, Any],
    deadline: float,
    *,
    result: Any = MISSING,
    failure: Any = None,
    flow_failures: Mapping[str, Any] | None = None,
    traceparent: str | None = None,
) -> dict[str, Any]:
    """A request for a worker to execute or revert one task.

    Args:
        request_id: unique id (a uuid4 string); responses carry it back.
        reply_to: the engine's replies stream key (see :func:`replies_key`).
        action: :data:`EXECUTE` or :data:`REVERT`.
        task: the task's travelling name (see :func:`task_name`).
        name: the atom's name in the flow.
        arguments: keyword arguments for the task, JSON-encodable.
        deadline: unix time after which a worker must not start it.
        result: revert only: the execute result (a missing one is sent as ``null``).
        failure: revert only: the execute failure, a ``Failure`` or its record;
            sent instead of ``result``.
        flow_failures: revert only: atom name -> ``Failure`` or record.
        traceparent: the W3C ``traceparent`` of the engine's span for this
            request (see the tracing page of the docs); omitted when None.

    Raises:
        ValueError: unknown action, or revert-only values given to execute.
    """
    message: dict[str, Any] = {
        "v": VERSION,
        "type": REQUEST,
        "id": request_id,
        "reply_to": reply_to,
        "action": action,
        "task": task,
        "name": name,
        "arguments": dict(arguments),
    }
    if action == REVERT:
        if failure is not None:
            if result is not MISSING:
                raise ValueError("a revert request carries either result or failure, not both")
            message["failure"] = _record(failure)
        else:
            message["result"] = None if result is MISSING else result
        message["flow_failures"] = {key: _record(value) for key, value in (flow_failures or {}).items()}
    elif action == EXECUTE:
        if result is not MISSING or failure is not None or flow_failures is not None:
            raise ValueError("result, failure and flow_failures belong to revert requests only")
    else:
        raise ValueError(f"unknown action {action!r} (expected {EXECUTE!r} or {REVERT!r})")
    if traceparent is not None:
        message["traceparent"] = traceparent
    message["sent_at"] = time.time()
    message["deadline"] = float(deadline)
    return message


def response_message(
    request_id: str,
    worker_id: str,
    event: str,
    *,
    progress: float | None = None,
    event_type: str | None = None,
    details: Mapping[str, Any] | None = None,
    result: Any = MISSING,
    failure: Any = None,
) -> dict[str, Any]:
    """A worker's answer to a request: running, progress, notification, success or failure.

    Args:
        request_id: the request's ``id``.
        worker_id: the answering worker.
        event: :data:`RUNNING`, :data:`PROGRESS`, :data:`NOTIFICATION`,
            :data:`SUCCESS` or :data:`FAILURE`.
        progress: progress events only: a number from 0.0 to 1.0.
        event_type: notification events only: the event the task notified
            (a non-empty string).
        details: progress and notification events only: an optional JSON object.
        result: success only: the result (missing is sent as ``null``).
        failure: failure only: a ``Failure`` or its record.

    Raises:
        ValueError: unknown event, or a value that belongs to another event.
    """
    message: dict[str, Any] = {"v": VERSION, "type": RESPONSE, "id": request_id, "worker": worker_id}
    message["event"] = event
    if event not in _EVENTS:
        raise ValueError(f"unknown event {event!r} (expected one of {sorted(_EVENTS)})")
    if progress is not None and event != PROGRESS:
        raise ValueError("progress belongs to progress events only")
    if event_type is not None and event != NOTIFICATION:
        raise ValueError("event_type belongs to notification events only")
    if details is not None and event not in (PROGRESS, NOTIFICATION):
        raise ValueError("details belong to progress and notification events only")
    if result is not MISSING and event != SUCCESS:
        raise ValueError("result belongs to success events only")
    if failure is not None and event != FAILURE:
        raise ValueError("failure belongs to failure events only")
    if event == PROGRESS:
        if progress is None:
            raise ValueError("a progress event needs a progress value")
        message["progress"] = float(progress)
        message["details"] = None if details is None else dict(details)
    elif event == NOTIFICATION:
        if not event_type or not isinstance(event_type, str):
            raise ValueError(f"a notification event needs a non-empty string event_type, not {event_type!r}")
        message["event_type"] = event_type
        message["details"] = None if details is None else dict(details)
    elif event == SUCCESS:
        message["result"] = None if result is MISSING else result
    elif event == FAILURE:
        if failure is None:
            raise ValueError("a failure event needs a failure")
        message["failure"] = _record(failure)
    message["sent_at"] = time.time()
    return message


def _record(failure: Any) -> dict[str, Any]:
    to_dict = getattr(failure, "to_dict", None)
    if to_dict is not None:
        return _json_form(to_dict())
    if isinstance(failure, Mapping):
        return _json_form(failure)
    raise ValueError(f"expected a Failure or a failure record, got {type(failure).__name__}")


def _json_form(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as it travels: ``Failure.to_dict()`` gives ``exc_args`` as a tuple
    (TaskFlow's dict), a message holds the JSON array, in its causes too."""
    found = dict(record)
    if isinstance(found.get("exc_args"), tuple):
        found["exc_args"] = list(found["exc_args"])
    causes = found.get("causes")
    if isinstance(causes, list | tuple):
        found["causes"] = [_json_form(c) if isinstance(c, Mapping) else c for c in causes]
    return found


# -- envelopes ----------------------------------------------------------------


def _model_dump(value: Any) -> Any:
    """JSON for a pydantic model (its ``model_dump(mode="json")``); anything else is refused.

    Typed tasks take and return models; they travel as JSON objects and the
    receiving side makes them into models again from the task's annotations.
    """
    dump = getattr(value, "model_dump", None)
    if dump is None or isinstance(value, type):
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return dump(mode="json")


_dumps = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_model_dump
).encode


_TOO_DEEP: Final = f"message nests arrays and objects deeper than the limit of {MAX_DEPTH} levels"


def sign(body: bytes, secret: bytes) -> bytes:
    """Lowercase hex HMAC-SHA256 of ``body`` under ``secret``, as ASCII bytes."""
    return hmac.digest(secret, body, "sha256").hex().encode("ascii")


def encode(
    message: Mapping[str, Any], secret: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES
) -> dict[str, bytes]:
    """Wrap ``message`` in an envelope: ``{"body": json, "sig": hex}`` (``sig`` when signing).

    Raises:
        ProtocolError: a value is not JSON (the message names where), the
            body is larger than ``max_bytes``, or it nests arrays and objects
            deeper than :data:`MAX_DEPTH` (a receiver would refuse it).
            Whatever a model's ``model_dump`` raises (user code: a computed field may raise
            anything) is reported so too, so that a worker answers the request
            instead of leaving it to be run again.
    """
    try:
        body = _dumps(message).encode("utf-8")
    except Exception as err:  # TypeError, ValueError, RecursionError... or a model_dump's own error
        where = _first_bad_path(message)
        place = f" at {where}" if where else ""
        raise exc.quoting_cause(
            ProtocolError(f"message is not JSON-encodable{place}: {type(err).__name__}: {err}")
        ) from err
    if len(body) > max_bytes:
        raise ProtocolError(f"message body is {len(body)} bytes, over the limit of {max_bytes} bytes")
    if nests_deeper_than(body):
        raise ProtocolError(_TOO_DEEP)
    if secret:
        return {"body": body, "sig": sign(body, secret)}
    return {"body": body}


def _first_bad_path(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Find the first value JSON cannot hold, as ``arguments.items[2]``; best effort."""
    if depth > 200:
        return path or "."
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else path or "."
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"{path}[{key!r}]" if path else f"[{key!r}]"
            found = _first_bad_path(item, f"{path}.{key}" if path else str(key), depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _first_bad_path(item, f"{path}[{index}]", depth + 1)
            if found is not None:
                return found
        return None
    return path or "."


_ESCAPE: Final = b"\\ud"
_ESCAPE_UPPER: Final = b"\\uD"


def _lone_surrogate_path(value: Any, path: str = "") -> str | None:
    """Where a decoded message holds a string with a lone surrogate (``\\ud800``), or None.

    JSON's grammar lets such an escape through, but no UTF-8 text can hold it:
    a message carrying one could never be answered (its ``id`` or ``reply_to``
    cannot be written back to Redis), so :func:`decode` refuses it up front.
    """
    if type(value) is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "."
        return None
    if type(value) is dict:
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if _lone_surrogate_path(key, where) is not None:
                return f"{path}[{key!r}]" if path else repr(key)
            found = _lone_surrogate_path(item, where)
            if found is not None:
                return found
        return None
    if type(value) is list:
        for index, item in enumerate(value):
            found = _lone_surrogate_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _signature_problem(fields: Mapping[Any, Any], body: bytes, secret: bytes | None) -> str | None:
    """Why ``body``'s signature is not good under ``secret`` (None: it is, or there is no secret)."""
    if not secret:
        return None
    sig = fields.get(b"sig")
    if sig is None:
        sig = fields.get("sig")
        if sig is None:
            return "message is not signed but a secret is configured"
    if isinstance(sig, str):
        sig = sig.encode("ascii", "replace")
    if not hmac.compare_digest(sign(body, secret), sig):
        return "message signature does not match"
    return None


def _unparsed(reason: str, body: bytes | None) -> ProtocolError:
    """The error for a (correctly signed) ``body`` refused unparsed, quoting what its head shows.

    ``body`` is None when its head must not be believed (a bad signature).
    """
    head = response_head(body) if body is not None else None
    if head is None:
        return ProtocolError(reason)
    return ProtocolError(reason, quoted_id=head.id, quoted_event=head.event)


def decode(
    fields: Mapping[Any, Any], secret: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES
) -> dict[str, Any]:
    """Unwrap and check an envelope read from Redis; return the message.

    Checks, in order: a ``body`` field, its size, the signature (when ``secret``
    is set), nesting no deeper than :data:`MAX_DEPTH`, JSON text of an object
    with no lone surrogate escape in any string, ``v == 1``, a known ``type``,
    and the fields that type requires with their JSON types. Keys and values may be
    ``bytes`` or ``str``.

    Raises:
        ProtocolError: naming the first problem found. When the message is a
            (correctly signed) JSON object whose ``v`` is an integer other than
            1, its ``message_id`` and ``reply_to`` are filled in when present as
            non-empty strings; they are ``None`` for every other problem. A
            correctly signed body refused before it could be parsed (too big,
            too deep, not JSON) still quotes the ``id`` and ``event`` its head
            shows, when it begins as a response does.
    """
    body = fields.get(b"body")
    if body is None:
        body = fields.get("body")
        if body is None:
            raise ProtocolError("envelope has no 'body' field")
    if isinstance(body, str):
        try:
            body = body.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ProtocolError(f"message body is not UTF-8 text: {err}") from None
    if len(body) > max_bytes:
        reason = f"message body is {len(body)} bytes, over the limit of {max_bytes} bytes"
        # Its signature is checked only when its head makes it worth quoting.
        quotable = response_head(body) is not None and _signature_problem(fields, body, secret) is None
        raise _unparsed(reason, body if quotable else None)
    if secret:
        problem = _signature_problem(fields, body, secret)
        if problem is not None:
            raise ProtocolError(problem)
    if nests_deeper_than(body):  # before parsing: parsers differ on what they can read
        raise _unparsed(_TOO_DEEP, body)
    try:
        message = loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise _unparsed(f"message body is not JSON text: {err}", body) from None
    if type(message) is not dict:
        raise ProtocolError(f"message must be a JSON object, not {_validate.json_type(message)}")
    if _ESCAPE in body or _ESCAPE_UPPER in body:  # only an escape can spell a lone surrogate
        where = _lone_surrogate_path(message)
        if where is not None:
            raise ProtocolError(
                f"message holds a lone surrogate escape at {where}: JSON strings must be Unicode text"
            )
    quoted = message.get("id")
    quoted_id = quoted if type(quoted) is str and quoted else None
    version = message.get("v")
    if version != VERSION or type(version) is bool:
        if "v" not in message:
            raise ProtocolError("message has no 'v' (protocol version) field", quoted_id=quoted_id)
        if not _validate.is_integer(version):
            kind = _validate.json_type(version)
            raise ProtocolError(f"message field 'v' must be an integer, not {kind}", quoted_id=quoted_id)
        # Another version's message may differ in every other field; only its id
        # and reply_to are read, so a worker can say it cannot handle it.
        reply_to = message.get("reply_to")
        raise ProtocolError(
            f"unsupported protocol version {version!r} (this side speaks {VERSION})",
            message_id=quoted_id,
            reply_to=reply_to if type(reply_to) is str and reply_to else None,
            quoted_id=quoted_id,
        )
    problem = _validate.problem(message)
    if problem is not None:
        event = message.get("event")
        raise ProtocolError(problem, quoted_id=quoted_id, quoted_event=event if type(event) is str else None)
    return message
