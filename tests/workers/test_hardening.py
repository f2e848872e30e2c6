"""Hostile input against real worker processes: both workers, signed and unsigned.

What an attacker with write access to Redis, or a buggy client, can send:
32 malformed request entries, captured requests replayed before their
deadline, answers Redis refuses to store, and a dead worker's advertisement
written back. Every case runs against the Python and the Go worker, with and
without a signing secret (malformed bodies are correctly signed in signed
mode, so they get past the signature check and reach the body's checks).
After each batch a good request must still be answered: no input may stop a
worker or keep it from serving.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowkit import engines
from flowkit import exceptions as exc
from flowkit.engines.worker_based import protocol
from tests import services
from tests.workers.behaviour_tasks import Echo
from tests.workers.conftest import (
    NAMESPACE,
    WorkerFactory,
    WorkerProcess,
    fresh_topic,
    pending_requests,
    requests_key,
)
from tests.workers.fake_clock import FakeClock
from tests.workers.raw_requests import execute_request

# Generous: the first Go test also pays for the session's `go build`.
pytestmark = pytest.mark.timeout(300)

SECRET = "hardening-secret"
ECHO = "flowkit_go_tasks.Echo"
#: The protocol's default body size limit (both workers' default).
MAX_MESSAGE_BYTES = 1 << 20


@pytest.fixture(params=["signed", "unsigned"])
def signing(request: pytest.FixtureRequest) -> str | None:
    """The secret workers and the test share (None: no signing)."""
    return SECRET if request.param == "signed" else None


def _sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _envelope(body: bytes, secret: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"body": body}
    if secret is not None:
        fields["sig"] = _sign(body, secret)
    return fields


def _reply_to() -> str:
    return f"{NAMESPACE}:replies:test-{uuid.uuid4().hex[:8]}"


def _request(reply_to: str, **changes: Any) -> dict[str, Any]:
    return execute_request(reply_to, ECHO, "echo", {"value": "ok"}, changes)


def _json(message: Any) -> bytes:
    return json.dumps(message).encode()


def _without(field: str) -> Callable[[str], bytes]:
    def make(reply_to: str) -> bytes:
        message = _request(reply_to)
        del message[field]
        return _json(message)

    return make


def _with(**changes: Any) -> Callable[[str], bytes]:
    return lambda reply_to: _json(_request(reply_to, **changes))


def _lone_surrogate(field: str) -> Callable[[str], bytes]:
    def make(reply_to: str) -> bytes:
        message = _request(reply_to)
        if field == "arguments":
            message["arguments"] = {"\ud800": 1}
        else:
            message[field] = "\ud800"
        body = _json(message)  # ensure_ascii: the escape travels as the six bytes \ud800
        assert b"\\ud800" in body
        return body

    return make


def _raw(body: bytes) -> Callable[[str], bytes]:
    return lambda reply_to: body


#: 32 request bodies no worker may run, and that must not stop it.
MALFORMED: dict[str, Callable[[str], bytes]] = {
    "empty-body": _raw(b""),
    "not-utf8": _raw(b'{"v": 1, "type": "request", "id": "\xff\xfe"}'),
    "not-json": _raw(b"{v: 1}"),
    "truncated": _raw(b'{"v": 1, "type": "request", "id": '),
    "trailing-data": lambda reply_to: _json(_request(reply_to)) + b" {}",
    "json-array": _raw(b'["request"]'),
    "json-string": _raw(b'"request"'),
    "json-null": _raw(b"null"),
    "nan": lambda reply_to: _json(_request(reply_to)).replace(b'"ok"', b"NaN"),
    "deep-nesting": _raw(b"[" * 100_000 + b"]" * 100_000),
    "oversized": _with(arguments={"value": "x" * MAX_MESSAGE_BYTES}),
    "no-version": _without("v"),
    "version-string": _with(v="1"),
    "version-fraction": _with(v=1.5),
    "version-true": _with(v=True),
    "no-type": _without("type"),
    "unknown-type": _with(type="bogus"),
    "a-response": _with(type="response"),
    "no-id": _without("id"),
    "empty-id": _with(id=""),
    "numeric-id": _with(id=5),
    "no-reply-to": _without("reply_to"),
    "unknown-action": _with(action="destroy"),
    "no-task": _without("task"),
    "arguments-list": _with(arguments=["ok"]),
    "deadline-string": _with(deadline="soon"),
    "no-sent-at": _without("sent_at"),
    "execute-with-result": _with(result=1),
    "surrogate-in-id": _lone_surrogate("id"),
    "surrogate-in-task": _lone_surrogate("task"),
    "surrogate-in-reply-to": _lone_surrogate("reply_to"),
    "surrogate-in-argument-key": _lone_surrogate("arguments"),
}
assert len(MALFORMED) == 32


def _replies(client: Any, key: str) -> list[dict[str, Any]]:
    return [json.loads(fields[b"body"]) for _, fields in client.xrange(key)]


def _good_request_is_answered(client: Any, worker: WorkerProcess, secret: str | None) -> None:
    reply_to = _reply_to()
    request = _request(reply_to, arguments={"value": ["still", "here"]})
    client.xadd(requests_key(worker.topic), _envelope(_json(request), secret))

    def final() -> dict[str, Any] | None:
        return next((r for r in _replies(client, reply_to) if r["event"] in ("success", "failure")), None)

    answer = services.wait_until(final, 15.0, message=f"an answer from {worker!r}\n{worker.log()[-3000:]}")
    assert (answer["event"], answer["result"]) == ("success", ["still", "here"]), answer
    assert worker.alive, worker.log()


def _settled(client: Any, topic: str) -> bool:
    return client.xlen(requests_key(topic)) == 0 and pending_requests(client, topic) == 0


def test_no_malformed_entry_stops_a_worker_or_gets_run(
    spawn_worker: WorkerFactory, signing: str | None, redis_client: Any
) -> None:
    worker = spawn_worker(fresh_topic(), secret=signing)
    reply_to = _reply_to()
    names = list(MALFORMED)
    entries: dict[str, str] = {}
    for start in range(0, len(names), 8):  # four batches of eight, a good request after each
        for name in names[start : start + 8]:
            entry = redis_client.xadd(
                requests_key(worker.topic), _envelope(MALFORMED[name](reply_to), signing)
            )
            entries[name] = entry.decode()
        _good_request_is_answered(redis_client, worker, signing)

    services.wait_until(
        lambda: _settled(redis_client, worker.topic), 15.0, message="every malformed entry acknowledged"
    )
    assert _replies(redis_client, reply_to) == [], "a malformed request was answered"
    log = worker.log()
    unlogged = [name for name, entry in entries.items() if f"entry {entry}" not in log]
    assert unlogged == [], f"no log line names the entries of {unlogged}:\n{log[-5000:]}"
    assert worker.alive


@pytest.mark.parametrize(
    "reply_to",
    ["victim:jobs", f"{NAMESPACE}:requests:other-topic", f"{NAMESPACE}:replies:", f"{NAMESPACE}x:replies:e"],
)
def test_a_request_whose_reply_to_is_no_reply_stream_of_the_namespace_is_not_answered(
    spawn_worker: WorkerFactory, signing: str | None, redis_client: Any, reply_to: str
) -> None:
    # Else a worker writes, with its own Redis rights, a body partly of the sender's
    # choosing (an echoed argument) into any stream: another application's queue,
    # another topic's requests.
    worker = spawn_worker(fresh_topic(), secret=signing)
    request = _request(reply_to, arguments={"value": {"injected": True}})
    entry = redis_client.xadd(requests_key(worker.topic), _envelope(_json(request), signing)).decode()
    _good_request_is_answered(redis_client, worker, signing)
    services.wait_until(lambda: _settled(redis_client, worker.topic), 15.0, message="entry acknowledged")
    assert redis_client.exists(reply_to) == 0, f"the worker wrote to {reply_to!r}"
    assert any(entry in line and "reply_to" in line for line in worker.log().splitlines()), worker.log()[
        -3000:
    ]


@pytest.mark.parametrize("deadline", [1e17, 1e308])
def test_a_request_with_a_far_deadline_neither_stops_the_worker_nor_holds_up_others(
    spawn_worker: WorkerFactory, signing: str | None, redis_client: Any, deadline: float
) -> None:
    # The replay guard keeps the request id until the deadline: a deadline Redis cannot
    # take as an expiry (or that overflows) must not fail the guard for a whole batch.
    # Nor may it shorten the guard: the Go worker kept such an id for a millisecond.
    worker = spawn_worker(fresh_topic(), secret=signing)
    reply_to = _reply_to()
    captured = _envelope(_json(_request(reply_to, deadline=deadline, arguments={"value": "far"})), signing)
    redis_client.xadd(requests_key(worker.topic), captured)
    _good_request_is_answered(redis_client, worker, signing)
    services.wait_until(lambda: _settled(redis_client, worker.topic), 15.0, message="far request settled")
    redis_client.xadd(requests_key(worker.topic), captured)  # replayed
    _good_request_is_answered(redis_client, worker, signing)
    services.wait_until(lambda: _settled(redis_client, worker.topic), 15.0, message="replay settled")
    assert [r["event"] for r in _replies(redis_client, reply_to)] == ["running", "success"]
    assert worker.alive, worker.log()


def test_a_replayed_request_is_refused_and_its_task_not_run_again(
    spawn_worker: WorkerFactory, signing: str | None, redis_client: Any
) -> None:
    worker = spawn_worker(fresh_topic(), secret=signing)
    reply_to = _reply_to()
    request = _request(reply_to, arguments={"value": "once"})
    captured = _envelope(_json(request), signing)
    redis_client.xadd(requests_key(worker.topic), captured)
    services.wait_until(
        lambda: any(r["event"] == "success" for r in _replies(redis_client, reply_to)), 15.0, message="answer"
    )

    replays = [redis_client.xadd(requests_key(worker.topic), captured).decode() for _ in range(5)]
    _good_request_is_answered(redis_client, worker, signing)
    services.wait_until(lambda: _settled(redis_client, worker.topic), 15.0, message="replays acknowledged")

    assert [r["event"] for r in _replies(redis_client, reply_to)] == ["running", "success"]
    log = worker.log()
    for entry in replays:
        assert any(entry in line and "replay" in line for line in log.splitlines()), log[-3000:]


def test_a_request_redis_refuses_to_answer_is_dropped_and_later_ones_answered(
    spawn_worker: WorkerFactory, redis_client: Any, redis_flushed_url: str
) -> None:
    user = f"fk-{uuid.uuid4().hex[:8]}"
    # Every key of the namespace but one engine's reply stream (the tests' engines are "test-...").
    keys = [f"~{NAMESPACE}:{kind}" for kind in ("requests:*", "workers:*", "worker:*", "topics", "seen:*")]
    keys.append(f"~{NAMESPACE}:replies:test-*")
    redis_client.execute_command("ACL", "SETUSER", user, "on", ">pw", *keys, "&*", "+@all")
    worker: WorkerProcess | None = None
    try:
        limited = redis_flushed_url.replace("redis://", f"redis://{user}:pw@", 1)
        worker = spawn_worker(fresh_topic(), url=limited)
        refused = _request(f"{NAMESPACE}:replies:denied")  # NOPERM for the worker's user
        redis_client.xadd(requests_key(worker.topic), _envelope(_json(refused), None))
        for _ in range(3):
            _good_request_is_answered(redis_client, worker, None)
        services.wait_until(lambda: _settled(redis_client, worker.topic), 15.0, message="refused one acked")
        assert any(refused["id"] in line and "refused" in line for line in worker.log().splitlines())
    finally:
        if worker is not None:
            worker.stop()  # while its user still exists, so it leaves cleanly
        redis_client.execute_command("ACL", "DELUSER", user)


# -- the engine's side -----------------------------------------------------------


@pytest.fixture
def no_env_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(protocol.SECRET_ENV, raising=False)
    yield


def _write_advert(client: Any, topic: str, worker_id: str, sent_at: float, secret: str | None) -> None:
    """Put back a ``notify`` as a captured one would be: written at ``sent_at``, expiring in the future."""
    notify = protocol.notify_message(worker_id, topic, [ECHO], heartbeat=1.0, visibility_timeout=30.0)
    notify["sent_at"] = sent_at
    client.hset(protocol.worker_key(NAMESPACE, worker_id), mapping=_envelope(_json(notify), secret))
    client.zadd(protocol.workers_key(NAMESPACE, topic), {worker_id: int((time.time() + 60) * 1000)})


def test_a_replayed_advertisement_of_a_dead_worker_is_refused(
    no_env_secret: None, signing: str | None, redis_client: Any, redis_flushed_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    topic = fresh_topic()
    _write_advert(redis_client, topic, "dead-worker", time.time() - 600, signing)
    engine = engines.load(
        Echo(name="echo"),
        store={"value": 1},
        engine="worker-based",
        url=redis_flushed_url,
        topics=[topic],
        secret=signing,
        worker_wait=5.0,
        clock=FakeClock(),  # its sleep() moves it on: the wait for a worker costs no real time
    )
    with caplog.at_level(logging.WARNING), pytest.raises(exc.NotFound, match="echo"):
        engine.run()
    assert any("dead-worker" in r.getMessage() and "stale" in r.getMessage() for r in caplog.records)


def test_a_fresh_advertisement_counts(
    no_env_secret: None, signing: str | None, redis_client: Any, redis_flushed_url: str
) -> None:
    from flowkit.engines.worker_based import _transport

    topic = fresh_topic()
    _write_advert(redis_client, topic, "live-worker", time.time(), signing)
    secret = protocol.resolve_secret(signing)
    assert list(_transport.live_workers(redis_client, NAMESPACE, topic, secret)) == ["live-worker"]


def test_an_advertisement_of_another_protocol_version_is_reported_once_not_at_every_scan(
    no_env_secret: None, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A rolling upgrade leaves a worker of the next protocol version advertised
    # beside this engine: the engine scans for workers every tick (a quarter of a
    # second while requests run), and said so at every scan, for the whole run.
    from flowkit.engines.worker_based import _transport

    topic = fresh_topic()
    _write_advert(redis_client, topic, "live-worker", time.time(), None)
    notify = protocol.notify_message("next-worker", topic, [ECHO], heartbeat=1.0, visibility_timeout=30.0)
    notify["v"] = 2
    redis_client.hset(protocol.worker_key(NAMESPACE, "next-worker"), mapping=_envelope(_json(notify), None))
    redis_client.zadd(protocol.workers_key(NAMESPACE, topic), {"next-worker": int((time.time() + 60) * 1000)})
    with caplog.at_level(logging.WARNING, logger=_transport.LOG.name):
        for _ in range(20):
            assert list(_transport.live_workers(redis_client, NAMESPACE, topic, None)) == ["live-worker"]
    said = [r.getMessage() for r in caplog.records if "next-worker" in r.getMessage()]
    assert len(said) == 1, said
    assert "unsupported protocol version 2" in said[0]
    # Once it advertises in a form this engine reads, a later problem is told again.
    redis_client.hset(protocol.worker_key(NAMESPACE, "next-worker"), mapping=_envelope(b"{", None))
    with caplog.at_level(logging.WARNING, logger=_transport.LOG.name):
        _transport.live_workers(redis_client, NAMESPACE, topic, None)
    assert any("next-worker" in r.getMessage() and "not JSON" in r.getMessage() for r in caplog.records)


# -- names from the wire in log lines ----------------------------------------------


def _forged_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("FORGED")]


def test_names_a_request_carries_cannot_forge_a_workers_log_line(
    spawn_worker: WorkerFactory, worker_kind: str, redis_client: Any
) -> None:
    # The protocol takes any string as a task or atom name (TaskFlow's does): the
    # worker runs or refuses it as any other, and only logs it escaped.
    worker = spawn_worker(fresh_topic())
    reply_to = _reply_to()
    request = _request(
        reply_to, id="id\rFORGED id", task="no.such\nFORGED task", name="atom\u2028FORGED\x1b[2J"
    )
    redis_client.xadd(requests_key(worker.topic), _envelope(_json(request), None))
    answer = services.wait_until(
        lambda: next(iter(_replies(redis_client, reply_to)), None), 15.0, message="the refusal"
    )
    assert answer["event"] == "failure", answer
    assert answer["failure"]["exception_str"].endswith("has no task named no.such\\nFORGED task")
    log = worker.log()
    # The Go worker's log handler quotes each message, doubling the backslash of an escape.
    shown = log.replace("\\\\", "\\") if worker_kind == "go" else log
    assert "(request id\\rFORGED id, entry " in shown, log[-3000:]
    assert _forged_lines(log) == [], log[-3000:]
    _good_request_is_answered(redis_client, worker, None)


def test_a_worker_id_from_an_advertisement_cannot_forge_an_engines_log_line(
    no_env_secret: None, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from flowkit.engines.worker_based import _transport

    topic = fresh_topic()
    forger = "w1\nFORGED\x1b[31m"
    _write_advert(redis_client, topic, forger, time.time() - 600, None)
    with caplog.at_level(logging.WARNING, logger=_transport.LOG.name):
        assert _transport.live_workers(redis_client, NAMESPACE, topic, None) == {}
    said = [r.getMessage() for r in caplog.records if "stale" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "worker w1\\nFORGED\\x1b[31m of topic" in said[0]
    assert _forged_lines(said[0]) == []
