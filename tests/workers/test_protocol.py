"""The worker protocol: goldens, schemas and the hand-written decoder agree.

The JSON Schemas and golden files under ``flowkit/engines/worker_based/schemas``
are the executable form of ``doc/workers_protocol.rst``; the Go worker's tests
read the same files. Every golden valid message must pass both the schema and
``decode(encode(...))``; every invalid one must fail both, and generated
messages must get the same verdict from each.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from flowkit import exceptions as exc
from flowkit.engines.worker_based import protocol
from flowkit.types.failure import Failure

SCHEMAS = Path(protocol.__file__).parent / "schemas"
GOLDEN = SCHEMAS / "golden"
SCHEMA_FILES = sorted(SCHEMAS.glob("*.schema.json"))
VALID = sorted(GOLDEN.glob("*.json"))
VALID = [path for path in VALID if path.name != "signatures.json"]
INVALID = sorted((GOLDEN / "invalid").glob("*.json"))
SIGNATURES = json.loads((GOLDEN / "signatures.json").read_text(encoding="utf-8"))["cases"]


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _validator(name: str) -> Draft202012Validator:
    schemas = {path.name: _load(path) for path in SCHEMA_FILES}
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values()
    )
    return Draft202012Validator(schemas[name], registry=registry)


MESSAGE_SCHEMA = _validator("message.schema.json")
ENVELOPE_SCHEMA = _validator("envelope.schema.json")


def _decodes(message: Any) -> bool:
    try:
        protocol.decode(protocol.encode(message, None), None)
    except protocol.ProtocolError:
        return False
    return True


# -- the schemas and goldens ------------------------------------------------


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_every_schema_is_a_valid_draft_2020_12_schema(path: Path) -> None:
    schema = _load(path)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_the_goldens_cover_every_message_kind() -> None:
    kinds = {
        (_load(p)["message"]["type"], _load(p)["message"].get("action", _load(p)["message"].get("event")))
        for p in VALID
    }
    assert kinds >= {
        ("notify", None),
        ("request", "execute"),
        ("request", "revert"),
        ("response", "running"),
        ("response", "progress"),
        ("response", "success"),
        ("response", "failure"),
    }
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", VALID, ids=lambda path: path.stem)
def test_golden_valid_message_passes_the_schema_and_round_trips(path: Path) -> None:
    golden = _load(path)
    assert golden["description"]
    message = golden["message"]
    assert list(MESSAGE_SCHEMA.iter_errors(message)) == []
    envelope = protocol.encode(message, None)
    assert protocol.decode(envelope, None) == message
    signed = protocol.encode(message, b"k")
    assert protocol.decode(signed, b"k") == message
    assert ENVELOPE_SCHEMA.is_valid({key: value.decode() for key, value in signed.items()})


@pytest.mark.parametrize("path", INVALID, ids=lambda path: path.stem)
def test_golden_invalid_message_fails_the_schema_and_decode(path: Path) -> None:
    golden = _load(path)
    assert golden["reason"]
    message = golden["message"]
    assert not MESSAGE_SCHEMA.is_valid(message)
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode(protocol.encode(message, None), None)
    assert golden["error"] in caught.value.reason
    if golden.get("answerable"):
        assert caught.value.message_id == message["id"]
        assert caught.value.reply_to == message["reply_to"]
    else:
        assert caught.value.message_id is None
        assert caught.value.reply_to is None


def test_failure_records_that_decode_rebuild_as_failures() -> None:
    for path in VALID:
        message = protocol.decode(protocol.encode(_load(path)["message"], None), None)
        records = [message.get("failure"), *message.get("flow_failures", {}).values()]
        for record in filter(None, records):
            assert Failure.from_dict(record).to_dict()["exception_str"] == record["exception_str"]


# -- signatures -------------------------------------------------------------


@pytest.mark.parametrize("case", SIGNATURES, ids=lambda case: case["description"][:40])
def test_signature_golden_matches_byte_for_byte(case: dict[str, Any]) -> None:
    secret = case["secret"].encode("utf-8")
    body = case["body"].encode("utf-8")
    fields = {b"body": body, b"sig": case["sig"].encode("ascii")}
    assert (protocol.sign(body, secret).decode() == case["sig"]) is case["valid"]
    if case["valid"]:
        assert protocol.decode(fields, secret) == json.loads(body)
    else:
        with pytest.raises(protocol.ProtocolError, match="signature"):
            protocol.decode(fields, secret)


def test_signed_envelope_has_lowercase_hex_hmac_of_the_body() -> None:
    envelope = protocol.encode({"v": 1}, b"secret")
    assert set(envelope) == {"body", "sig"}
    assert len(envelope["sig"]) == 64
    assert envelope["sig"] == protocol.sign(envelope["body"], b"secret")
    assert envelope["sig"].decode() == envelope["sig"].decode().lower()


def test_unsigned_message_is_rejected_when_a_secret_is_set() -> None:
    envelope = protocol.encode(_load(GOLDEN / "response_running.json")["message"], None)
    assert "sig" not in envelope
    with pytest.raises(protocol.ProtocolError, match="not signed"):
        protocol.decode(envelope, b"secret")


def test_signature_is_ignored_without_a_secret() -> None:
    message = _load(GOLDEN / "response_running.json")["message"]
    envelope = protocol.encode(message, b"secret")
    envelope["sig"] = b"0" * 64
    assert protocol.decode(envelope, None) == message


def test_decode_accepts_text_keys_and_values() -> None:
    message = _load(GOLDEN / "request_execute_unicode.json")["message"]
    envelope = protocol.encode(message, b"k")
    as_text = {key: value.decode("utf-8") for key, value in envelope.items()}
    assert protocol.decode(as_text, b"k") == message


# -- envelope shape, size and encoding --------------------------------------


def test_encode_writes_compact_utf8_json() -> None:
    body = protocol.encode({"v": 1, "name": "é 🚀", "n": [1, 2]}, None)["body"]
    assert body == '{"v":1,"name":"é 🚀","n":[1,2]}'.encode()


def test_encode_names_the_field_that_is_not_json() -> None:
    message = {"v": 1, "arguments": {"items": [1, datetime(2024, 1, 1)]}}
    with pytest.raises(protocol.ProtocolError, match=r"arguments\.items\[1\]") as caught:
        protocol.encode(message, None)
    assert isinstance(caught.value, exc.InvalidFormat)


def test_encode_refuses_nan_and_names_its_field() -> None:
    with pytest.raises(protocol.ProtocolError, match="result"):
        protocol.encode({"v": 1, "result": math.nan}, None)


def test_encode_refuses_a_body_over_the_limit_naming_size_and_limit() -> None:
    message = {"v": 1, "blob": "x" * 100}
    size = len(protocol.encode(message, None)["body"])
    assert protocol.encode(message, None, max_bytes=size)
    with pytest.raises(protocol.ProtocolError, match=rf"{size} bytes.*limit of {size - 1} bytes"):
        protocol.encode(message, None, max_bytes=size - 1)


def test_decode_refuses_a_body_over_the_limit_before_checking_it() -> None:
    envelope = {b"body": b"x" * 11, b"sig": b"bad"}
    with pytest.raises(protocol.ProtocolError, match="11 bytes, over the limit of 10"):
        protocol.decode(envelope, b"secret", max_bytes=10)


def test_default_limit_is_one_mebibyte() -> None:
    assert protocol.MAX_MESSAGE_BYTES == 1048576
    message = dict(_load(GOLDEN / "response_success.json")["message"], result="")
    overhead = len(protocol.encode(message, None)["body"])
    message["result"] = "x" * (protocol.MAX_MESSAGE_BYTES - overhead)
    assert protocol.decode(protocol.encode(message, None), None) == message
    message["result"] += "x"
    with pytest.raises(protocol.ProtocolError, match="over the limit"):
        protocol.encode(message, None)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "no 'body'"),
        ({b"sig": b"00"}, "no 'body'"),
        ({b"body": b"\xff\xfe"}, "not JSON"),
        ({"body": "\ud800"}, "not UTF-8"),
        ({b"body": b"{"}, "not JSON"),
        ({b"body": b'{"v":1,"x":NaN}'}, "not JSON"),
        ({b"body": b'{"v":1,"x":Infinity}'}, "not JSON"),
        ({b"body": b"[" * 100_000 + b"]" * 100_000}, "deeper than the limit"),
        ({b"body": b"null"}, "JSON object, not null"),
        ({b"body": b'"text"'}, "JSON object, not string"),
    ],
    ids=[
        "empty",
        "sig-only",
        "bad-utf8",
        "lone-surrogate",
        "truncated",
        "nan",
        "infinity",
        "deep",
        "null",
        "string",
    ],
)
def test_decode_rejects_envelopes_that_do_not_hold_a_json_object(
    fields: dict[bytes, bytes], reason: str
) -> None:
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.decode(fields, None)


def test_protocol_error_is_an_invalid_format_with_a_reason() -> None:
    error = protocol.ProtocolError("bad", message_id="1", reply_to="r")
    assert isinstance(error, exc.InvalidFormat)
    assert (error.reason, error.message_id, error.reply_to) == ("bad", "1", "r")
    assert str(error) == "bad"


# -- secrets, keys and names ------------------------------------------------


def test_resolve_secret_prefers_the_option_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(protocol.SECRET_ENV, "from-env")
    assert protocol.resolve_secret("option") == b"option"
    assert protocol.resolve_secret(b"raw\xff") == b"raw\xff"
    assert protocol.resolve_secret("clé") == "clé".encode()
    assert protocol.resolve_secret(None) == b"from-env"
    assert protocol.resolve_secret("") is None
    monkeypatch.setenv(protocol.SECRET_ENV, "")
    assert protocol.resolve_secret(None) is None
    monkeypatch.delenv(protocol.SECRET_ENV)
    assert protocol.resolve_secret(None) is None


def test_key_names_follow_the_namespace() -> None:
    assert protocol.requests_key("flowkit", "volumes") == "flowkit:requests:volumes"
    assert protocol.workers_key("ns", "volumes") == "ns:workers:volumes"
    assert protocol.worker_key("ns", "w-1") == "ns:worker:w-1"
    assert protocol.replies_key("ns", "e1") == "ns:replies:e1"
    assert (protocol.DEFAULT_NAMESPACE, protocol.GROUP, protocol.VERSION) == ("flowkit", "workers", 1)


class _Plain:
    pass


class _Stub:
    worker_task_name = "flowkit_go_tasks.CountPrimes"


def test_task_name_is_the_class_path_unless_the_class_names_itself() -> None:
    assert protocol.task_name(_Plain) == f"{__name__}._Plain"
    assert protocol.task_name(_Plain()) == f"{__name__}._Plain"
    assert protocol.task_name(_Stub()) == "flowkit_go_tasks.CountPrimes"


# -- builders ---------------------------------------------------------------


def _failure() -> Failure:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        return Failure()


def _round_trip(message: dict[str, Any]) -> dict[str, Any]:
    assert MESSAGE_SCHEMA.is_valid(message), list(MESSAGE_SCHEMA.iter_errors(message))
    return protocol.decode(protocol.encode(message, b"k"), b"k")


def test_request_message_builds_valid_execute_and_revert_requests() -> None:
    execute = protocol.request_message("1", "flowkit:replies:e", "execute", "a.B", "b", {"x": 1}, 60.0)
    assert _round_trip(execute)["arguments"] == {"x": 1}
    assert "result" not in execute
    revert = protocol.request_message(
        "1", "r", "revert", "a.B", "b", {}, 60.0, result=[1], flow_failures={"c": _failure()}
    )
    assert _round_trip(revert)["result"] == [1]
    assert revert["flow_failures"]["c"]["exc_type_names"][0] == "RuntimeError"
    assert revert["flow_failures"]["c"]["exc_args"] == ["boom"]  # the JSON array, not to_dict()'s tuple
    failed = protocol.request_message("1", "r", "revert", "a.B", "b", {}, 60.0, failure=_failure())
    assert _round_trip(failed)["flow_failures"] == {}
    assert "result" not in failed
    nothing = protocol.request_message("1", "r", "revert", "a.B", "b", {}, 60.0)
    assert _round_trip(nothing)["result"] is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"action": "run"},
        {"action": "execute", "result": 1},
        {"action": "execute", "flow_failures": {}},
        {"action": "revert", "result": 1, "failure": {"version": 1}},
    ],
)
def test_request_message_refuses_misuse(kwargs: dict[str, Any]) -> None:
    action = kwargs.pop("action")
    with pytest.raises(ValueError):
        protocol.request_message("1", "r", action, "a.B", "b", {}, 1.0, **kwargs)


def test_response_message_builds_each_event() -> None:
    running = protocol.response_message("1", "w", protocol.RUNNING)
    assert set(_round_trip(running)) == {"v", "type", "id", "worker", "event", "sent_at"}
    progress = protocol.response_message("1", "w", protocol.PROGRESS, progress=0.5, details={"a": 1})
    assert _round_trip(progress)["details"] == {"a": 1}
    assert _round_trip(protocol.response_message("1", "w", protocol.SUCCESS))["result"] is None
    failure = protocol.response_message("1", "w", protocol.FAILURE, failure=_failure())
    assert Failure.from_dict(_round_trip(failure)["failure"]).exception_str == "boom"
    notification = protocol.response_message(
        "1", "w", protocol.NOTIFICATION, event_type="A", details={"leftover": ["A", "B"]}
    )
    assert _round_trip(notification)["event_type"] == "A"
    assert _round_trip(notification)["details"] == {"leftover": ["A", "B"]}
    bare = _round_trip(protocol.response_message("1", "w", protocol.NOTIFICATION, event_type="B"))
    assert bare["details"] is None and "progress" not in bare


@pytest.mark.parametrize(
    ("event", "kwargs"),
    [
        ("done", {}),
        ("running", {"progress": 0.1}),
        ("success", {"failure": {}}),
        ("failure", {"result": 1}),
        ("progress", {}),
        ("failure", {}),
        ("notification", {}),
        ("notification", {"event_type": ""}),
        ("notification", {"event_type": "A", "progress": 0.5}),
        ("progress", {"progress": 0.5, "event_type": "A"}),
        ("success", {"details": {}}),
    ],
)
def test_response_message_refuses_misuse(event: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        protocol.response_message("1", "w", event, **kwargs)


def test_notify_message_describes_this_process() -> None:
    notify = protocol.notify_message("w", "t", ("a.B",), heartbeat=1, visibility_timeout=30)
    assert _round_trip(notify)["tasks"] == ["a.B"]
    assert notify["language"] == "python"
    assert isinstance(notify["pid"], int)
    assert notify["heartbeat"] == 1.0


def test_notify_message_states_the_size_limit_only_when_given_one() -> None:
    limited = protocol.notify_message(
        "w", "t", (), heartbeat=1, visibility_timeout=30, max_message_bytes=4096
    )
    assert _round_trip(limited)["max_message_bytes"] == 4096
    # Without one it is the advert of workers older than the field, which receivers still take.
    older = protocol.notify_message("w", "t", (), heartbeat=1, visibility_timeout=30)
    assert "max_message_bytes" not in _round_trip(older)


# -- the schema and decode agree on generated messages ------------------------

_BASE = "builtins.BaseException"
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
# Base names only ever last: the schema's "contains" and decode's "ends with" then agree.
_type_names = st.sampled_from(
    [[], [_BASE], ["a.B", "builtins.Exception", _BASE], ["Exception"], ["a.B"], [1, _BASE], ["a.B", "c.D"]]
)


def _failure_records(depth: int = 2) -> st.SearchStrategy[Any]:
    causes = st.lists(_failure_records(depth - 1), max_size=2) if depth else st.just([])
    fields = {
        "version": st.sampled_from([1, 1.0, 2, True, "1"]),
        "exception_str": st.sampled_from(["boom", "", 3, None]),
        "traceback_str": st.sampled_from(["", "Traceback...", None]),
        "exc_type_names": _type_names,
        "exc_args": st.sampled_from([[], ["boom", 1], {"a": 1}, "x"]),
        "causes": causes | st.sampled_from(["x", {}]),
    }
    return _maybe_fields(fields, weight=0.9) | st.sampled_from([None, "boom", []])


def _maybe_fields(fields: dict[str, st.SearchStrategy[Any]], weight: float) -> st.SearchStrategy[Any]:
    """Objects holding each field with probability ``weight``, each value from its strategy."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, values in fields.items():
            if draw(st.floats(0, 1)) < weight:
                result[name] = draw(values)
        return result

    return build()


_odd = st.sampled_from(["", 0, -1, 1.5, True, None, [], {}, "x"]) | _json_values
_text_field = st.sampled_from(["id-1", "flowkit:replies:e", "é", ""]) | _odd
_number_field = st.sampled_from([0, 1700000000.5, -3, 2.0]) | _odd

_request_fields = {
    "v": st.sampled_from([1, 1, 1, 1.0, 2, True, "1"]),
    "type": st.sampled_from(["request", "request", "request", "response", "notify", "other"]),
    "id": _text_field,
    "reply_to": _text_field,
    "action": st.sampled_from(["execute", "revert", "revert", "undo", ""]),
    "task": _text_field,
    "name": _text_field,
    "arguments": st.dictionaries(st.text(max_size=4), _json_values, max_size=3) | _odd,
    "result": _json_values,
    "failure": _failure_records(),
    "flow_failures": st.dictionaries(st.text(max_size=4), _failure_records(1), max_size=2) | _odd,
    "sent_at": _number_field,
    "deadline": _number_field,
    "extra": _json_values,
}
_response_fields = {
    "v": st.sampled_from([1, 1, 1, 1.0, 2, True]),
    "type": st.sampled_from(["response", "response", "response", "request"]),
    "id": _text_field,
    "worker": _text_field,
    "event": st.sampled_from(["running", "progress", "success", "failure", "done"]),
    "progress": st.sampled_from([0, 0.5, 1, 1.0, -0.1, 1.01]) | _odd,
    "details": st.dictionaries(st.text(max_size=4), _json_values, max_size=2) | _odd,
    "result": _json_values,
    "failure": _failure_records(),
    "sent_at": _number_field,
}
_notify_fields = {
    "v": st.just(1),
    "type": st.just("notify"),
    "worker": _text_field,
    "topic": _text_field,
    "tasks": st.lists(st.sampled_from(["a.B", "", 1]), max_size=3) | _odd,
    "language": st.sampled_from(["python", "go", ""]) | _odd,
    "pid": st.sampled_from([0, 42, 42.0, -1, 1.5]) | _odd,
    "host": st.sampled_from(["h", ""]) | _odd,
    "heartbeat": st.sampled_from([1, 0.5, 0, -1]) | _odd,
    "visibility_timeout": st.sampled_from([30, 0.1, 0]) | _odd,
    "sent_at": _number_field,
}


def _valid_failures(depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    causes = st.lists(_valid_failures(depth - 1), max_size=2) if depth else st.just([])
    return st.fixed_dictionaries(
        {
            "version": st.just(1),
            "exception_str": st.text(max_size=5),
            "traceback_str": st.text(max_size=5),
            "exc_type_names": st.sampled_from([[_BASE], ["a.B", "builtins.Exception", _BASE], ["Exception"]]),
        },
        optional={"exc_args": st.lists(_json_values, max_size=2), "causes": causes},
    )


_ids = st.text(min_size=1, max_size=8)
_times = st.integers(0, 2**40) | st.floats(0, 2e9)
_arguments = st.dictionaries(st.text(max_size=4), _json_values, max_size=3)


@st.composite
def _valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    message = {"v": 1, "type": "request", "action": draw(st.sampled_from(["execute", "revert"]))}
    for field in ("id", "reply_to", "task", "name"):
        message[field] = draw(_ids)
    message.update(arguments=draw(_arguments), sent_at=draw(_times), deadline=draw(_times))
    if message["action"] == "revert":
        message["flow_failures"] = draw(st.dictionaries(_ids, _valid_failures(1), max_size=2))
        if draw(st.booleans()):
            message["failure"] = draw(_valid_failures())
        else:
            message["result"] = draw(_json_values)
    return message


@st.composite
def _valid_responses(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(st.sampled_from(["running", "progress", "success", "failure"]))
    message = {"v": 1, "type": "response", "id": draw(_ids), "worker": draw(_ids), "event": event}
    message["sent_at"] = draw(_times)
    if event == "progress":
        message["progress"] = draw(st.floats(0, 1) | st.sampled_from([0, 1]))
        if draw(st.booleans()):
            message["details"] = draw(st.none() | _arguments)
    elif event == "success":
        message["result"] = draw(_json_values)
    elif event == "failure":
        message["failure"] = draw(_valid_failures())
    return message


_valid_adverts = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "type": st.just("notify"),
        "worker": _ids,
        "topic": _ids,
        "tasks": st.lists(_ids, max_size=3),
        "language": st.sampled_from(["python", "go"]),
        "pid": st.integers(0, 2**22),
        "host": st.text(max_size=5),
        "heartbeat": st.floats(0.01, 10),
        "visibility_timeout": st.floats(0.01, 100),
        "sent_at": _times,
    }
)


def _mutated(valid: st.SearchStrategy[dict[str, Any]], fields: dict[str, st.SearchStrategy[Any]]) -> Any:
    """Valid messages with zero to two fields deleted or replaced by odd values."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        message = draw(valid)
        for _ in range(draw(st.integers(0, 2))):
            field = draw(st.sampled_from(sorted(fields)))
            if draw(st.booleans()):
                message.pop(field, None)
            else:
                message[field] = draw(fields[field])
        return message

    return build()


def _check_agreement(message: dict[str, Any]) -> None:
    assert MESSAGE_SCHEMA.is_valid(message) is _decodes(message), (
        list(MESSAGE_SCHEMA.iter_errors(message)),
        message,
    )


_AGREEMENT = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_AGREEMENT
@given(_mutated(_valid_requests(), _request_fields) | _maybe_fields(_request_fields, weight=0.85))
def test_schema_and_decode_agree_on_generated_requests(message: dict[str, Any]) -> None:
    _check_agreement(message)


@_AGREEMENT
@given(_mutated(_valid_responses(), _response_fields) | _maybe_fields(_response_fields, weight=0.75))
def test_schema_and_decode_agree_on_generated_responses(message: dict[str, Any]) -> None:
    _check_agreement(message)


@_AGREEMENT
@given(_mutated(_valid_adverts, _notify_fields))
def test_schema_and_decode_agree_on_generated_adverts(message: dict[str, Any]) -> None:
    _check_agreement(message)


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ('"\\ud800"', True),
        ('"a\\uDC00b"', True),
        ('"\\ud83dx"', True),
        ('"\\ud83d\\ud83d"', True),
        ('{"\\ud800": 1}', True),
        ('"\\"\\udfff"', True),
        ('"\\ud83d\\ude00"', False),
        ('"\\uD83D\\uDE00"', False),
        ('"\\\\ud800"', False),
        ('"\\u00e9\\n\\u2028"', False),
    ],
)
def test_decode_refuses_lone_surrogate_escapes_as_the_go_worker_does(value: str, refused: bool) -> None:
    body = (
        '{"v":1,"type":"request","id":"x","reply_to":"r","action":"execute","task":"t",'
        f'"name":"n","arguments":{{"a":{value}}},"sent_at":1,"deadline":2}}'
    ).encode()
    if refused:
        with pytest.raises(protocol.ProtocolError, match="lone surrogate escape at arguments.a"):
            protocol.decode({"body": body}, None)
    else:
        protocol.decode({"body": body}, None)


def _nested(depth: int) -> bytes:
    """A request body whose arrays and objects nest ``depth`` levels, its own object included."""
    value = "[" * (depth - 2) + "]" * (depth - 2)  # inside the message and its "arguments" object
    return (
        '{"v":1,"type":"request","id":"x","reply_to":"r","action":"execute","task":"t",'
        f'"name":"n","arguments":{{"a":{value}}},"sent_at":1,"deadline":2}}'
    ).encode()


def test_decode_takes_a_body_nested_to_the_limit_and_refuses_one_level_more() -> None:
    assert protocol.MAX_DEPTH == 512
    protocol.decode({"body": _nested(protocol.MAX_DEPTH)}, None)
    with pytest.raises(protocol.ProtocolError, match="nests arrays and objects deeper than the limit of 512"):
        protocol.decode({"body": _nested(protocol.MAX_DEPTH + 1)}, None)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps("[{" * protocol.MAX_DEPTH + '"\\')
    body = _nested(3).replace(b"[]", text.encode())
    assert protocol.decode({"body": body}, None)["arguments"]["a"] == json.loads(text)


def test_encode_refuses_a_message_nested_past_the_limit() -> None:
    value: Any = []
    for _ in range(protocol.MAX_DEPTH - 2):
        value = [value]
    assert protocol.encode({"v": 1, "arguments": {"a": value[0]}}, None)
    with pytest.raises(protocol.ProtocolError, match="deeper than the limit of 512"):
        protocol.encode({"v": 1, "arguments": {"a": value}}, None)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@pytest.mark.parametrize(
    "value",
    [
        ["\\", [[]]],
        ['\\"[[', [{}]],
        ['\\\\"', "]]]", [[[]]]],
        [{"[": "{", "k\\": ["\\\\"]}, [[[[]]]]],
        ["\"'[{", {"a": [[{"b": []}]]}],
    ],
)
def test_nesting_is_measured_outside_strings_whatever_they_escape(value: Any) -> None:
    from flowkit.engines.worker_based._nesting import nests_deeper_than

    body = json.dumps(value).encode()
    depth = _depth(value)
    assert not nests_deeper_than(body, depth)
    assert nests_deeper_than(body, depth - 1)


@pytest.mark.parametrize("depth", [1, 7, 8, 9, 10, 20, 511, 512, 513, 600])
@pytest.mark.parametrize("shape", ["arrays", "alternating", "wide"])
def test_nesting_depth_is_exact_at_every_depth_and_shape(depth: int, shape: str) -> None:
    from flowkit.engines.worker_based._nesting import nests_deeper_than

    value: Any = []
    for level in range(depth - 1):  # each wrap adds one level; siblings stay shallower
        if shape == "arrays":
            value = [value]
        elif shape == "alternating":
            value = [value] if level % 2 else {"k": value}
        else:
            value = [[], {}, value, "[{", {"a": 1}]
    body = json.dumps(value).encode()
    assert depth > 100 or _depth(value) == depth
    assert nests_deeper_than(body, depth - 1)
    assert not nests_deeper_than(body, depth)


def _with_argument(number: str) -> bytes:
    return (
        '{"v":1,"type":"request","id":"x","reply_to":"r","action":"execute","task":"t",'
        f'"name":"n","arguments":{{"a":[{number}]}},"sent_at":1,"deadline":2}}'
    ).encode()


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("1e400", "1e400 is too large for a double"),
        ("-1E+309", "too large for a double"),
        ("1" + "0" * 400 + ".0", "too large for a double"),
        ("1" * 4301, "more than 4300 digits"),
        ("-" + "1" * 4301, "more than 4300 digits"),
    ],
)
def test_decode_refuses_a_number_no_double_or_python_int_holds_as_the_go_worker_does(
    number: str, reason: str
) -> None:
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.decode({"body": _with_argument(number)}, None)


@pytest.mark.parametrize("number", ["1e308", "-1.7976931348623157e308", "1e-400", "1" * 4300, "0.5e1"])
def test_decode_takes_every_number_a_double_or_python_int_holds(number: str) -> None:
    message = protocol.decode({"body": _with_argument(number)}, None)
    assert message["arguments"]["a"] == [json.loads(number)]


def _response_body(result: str, spaced: bool = False) -> bytes:
    head = {"v": 1, "type": "response", "id": "req-1", "worker": "w-1", "event": "success"}
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(head, separators=separators)[:-1].encode() + b',"result":' + result.encode() + b"}"


@pytest.mark.parametrize(
    ("body", "max_bytes"),
    [
        (_response_body('"' + "x" * 200 + '"'), 100),
        (_response_body('"' + "x" * 200 + '"', spaced=True), 100),
        (_response_body("[" * 600 + "]" * 600), protocol.MAX_MESSAGE_BYTES),
        (_response_body("1e400"), protocol.MAX_MESSAGE_BYTES),
        (_response_body("[1,"), protocol.MAX_MESSAGE_BYTES),
    ],
    ids=["too-big", "too-big-spaced", "too-deep", "number", "truncated"],
)
def test_a_signed_response_refused_unparsed_still_quotes_the_id_and_event_of_its_head(
    body: bytes, max_bytes: int
) -> None:
    with pytest.raises(protocol.ProtocolError) as raised:
        protocol.decode({"body": body, "sig": protocol.sign(body, b"k")}, b"k", max_bytes)
    assert (raised.value.quoted_id, raised.value.quoted_event) == ("req-1", "success")


def test_a_response_refused_unparsed_quotes_nothing_when_badly_signed_or_headed_otherwise() -> None:
    big = _response_body('"' + "x" * 200 + '"')
    with pytest.raises(protocol.ProtocolError, match="over the limit") as raised:
        protocol.decode({"body": big, "sig": protocol.sign(big, b"other")}, b"k", 100)
    assert raised.value.quoted_id is None
    reordered = b'{"id":"req-1","v":1,"type":"response","worker":"w","event":"success","result":' + b"[" * 600
    with pytest.raises(protocol.ProtocolError) as raised:
        protocol.decode({"body": reordered}, None)
    assert raised.value.quoted_id is None
