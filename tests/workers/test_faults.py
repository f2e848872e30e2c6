"""Faults around real worker processes: crashes, a Redis restart, bad input.

Every test runs against the Python and the Go worker. Waits are bounded and
poll for the condition they need (progress seen, request held, advert
back), so a broken fault path fails with a message instead of hanging.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time
import uuid
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states as st
from flowkit.patterns import linear_flow
from flowkit.types.failure import Failure
from tests import services
from tests.services import RedisServer
from tests.workers.behaviour_tasks import CountPrimes, Echo, Sleep
from tests.workers.conftest import (
    NAMESPACE,
    BackgroundRun,
    Events,
    WorkerFactory,
    WorkerProcess,
    fresh_topic,
    load_engine,
    pending_by_worker,
    pending_requests,
    requests_added,
    requests_key,
    wait_stopped,
)

# Generous: the first Go test also pays for the session's `go build`.
pytestmark = pytest.mark.timeout(300)

SECRET = "s3cret-for-tests"
#: The protocol's default body size limit (both workers' default).
MAX_MESSAGE_BYTES = 1 << 20
NOT_FOUND_NAMES = [
    "flowkit.exceptions.NotFound",
    "flowkit.exceptions.TaskFlowException",
    "builtins.Exception",
    "builtins.BaseException",
]


def _sleep_flow(seconds: float) -> tuple[Any, dict[str, Any]]:
    flow = linear_flow.Flow("crash").add(
        Echo(name="first", provides="x"),
        Sleep(name="nap", inject={"seconds": seconds}),
        Echo(name="last", rebind={"value": "x"}, provides="y"),
    )
    return flow, {"value": {"payload": [1, 2, 3]}}


def _consumer_names(client: Any, topic: str) -> list[bytes]:
    return [row["name"] for row in client.xinfo_consumers(requests_key(topic), "workers")]


def _timed_out(error: BaseException | None, engine: Any, atom: str) -> Failure:
    """Check that ``atom`` failed with RequestTimeout and ``error`` is what run() raised for it."""
    assert error is not None, "engine.run() succeeded; a RequestTimeout was expected"
    if isinstance(error, exc.WrappedFailure):
        assert error.check(exc.RequestTimeout), str(error)
    else:
        assert isinstance(error, exc.RequestTimeout), repr(error)
    failure = engine.storage.get(atom)
    assert isinstance(failure, Failure) and failure.check(exc.RequestTimeout), failure
    return failure


# --- (a) a worker killed mid-task -------------------------------------------------


def test_a_task_whose_worker_is_killed_is_finished_by_another_worker(
    spawn_worker: WorkerFactory, redis_client: Any, redis_flushed_url: str
) -> None:
    topic = fresh_topic()
    first = spawn_worker(topic, heartbeat=0.2, visibility_timeout=1.0)
    flow, store = _sleep_flow(4.0)
    # The paused worker's advert lapses while the second one starts; from then on the
    # request may wait transition_timeout for a taker: room for a slow start.
    engine = load_engine(flow, redis_flushed_url, topic, store=store, transition_timeout=30.0)
    events = Events(engine)
    run = BackgroundRun(engine)

    services.wait_until(
        lambda: 0.5 in events.progress_of("nap"), 15.0, message="first worker halfway through nap"
    )
    # Frozen halfway: nap cannot end however long the second worker takes to start.
    first.signal(signal.SIGSTOP)
    wait_stopped(first.pid)
    assert pending_by_worker(redis_client, topic) == {first.worker_id: 1}, "nap ended before the pause"
    second = spawn_worker(topic, heartbeat=0.2, visibility_timeout=1.0)
    first.kill()

    assert run.join(60.0) is None
    assert engine.storage.fetch("y") == {"payload": [1, 2, 3]}
    assert engine.storage.get_atom_state("nap") == st.SUCCESS
    # The second worker re-ran the request from the stream (it reported
    # progress again); the engine did not send it twice.
    assert events.progress_of("nap").count(0.5) >= 2
    assert requests_added(redis_client, topic) == 3
    assert pending_requests(redis_client, topic) == 0
    assert second.alive
    # The killed worker's consumer, holding nothing once its entry was taken
    # over, is removed by the live worker rather than left in the group for ever.
    services.wait_until(
        lambda: first.worker_id.encode() not in _consumer_names(redis_client, topic),
        15.0,
        message="the killed worker's consumer removed from the group",
    )


def test_a_task_whose_worker_is_killed_times_out_when_nobody_takes_it_over(
    spawn_worker: WorkerFactory, redis_client: Any, redis_flushed_url: str
) -> None:
    topic = fresh_topic()
    doomed = spawn_worker(topic, heartbeat=0.2, visibility_timeout=1.0)
    flow, store = _sleep_flow(4.0)
    engine = load_engine(flow, redis_flushed_url, topic, store=store, transition_timeout=2.0)
    events = Events(engine)
    reverters: list[WorkerProcess] = []

    def await_reverter() -> None:
        # In the engine's thread, before it sends the reverts: they must find a worker
        # within transition_timeout, however long the reverter takes to start.
        services.wait_until(lambda: reverters, 30.0, message="the reverter spawned")
        reverters[0].wait_advertised()

    events.on("nap", st.FAILURE, await_reverter)
    run = BackgroundRun(engine)

    services.wait_until(lambda: 0.5 in events.progress_of("nap"), 15.0, message="worker halfway through nap")
    # Someone must serve the reverts; this worker's visibility timeout is far
    # too long for it to take over the dead worker's request.
    reverters.append(spawn_worker(topic, heartbeat=0.2, visibility_timeout=120.0, wait=False))
    doomed.kill()
    [reverter] = reverters

    failure = _timed_out(run.join(60.0), engine, "nap")
    for part in ("nap", "flowkit_go_tasks.Sleep", topic):
        assert part in failure.exception_str, failure.exception_str
    assert engine.storage.get_atom_state("nap") == st.REVERTED
    assert engine.storage.get_atom_state("first") == st.REVERTED
    assert engine.storage.get_flow_state() == st.REVERTED
    assert events.progress_of("nap").count(0.5) == 1
    assert pending_requests(redis_client, topic) == 0
    assert reverter.alive


# --- (b) Redis restarted mid-flow ---------------------------------------------------


def test_a_redis_restart_mid_flow_ends_in_a_documented_outcome_and_workers_recover(
    spawn_worker: WorkerFactory, redis_server: RedisServer, redis_client: Any, redis_flushed_url: str
) -> None:
    topic = fresh_topic()
    worker = spawn_worker(topic, heartbeat=0.2, visibility_timeout=1.0)
    flow, store = _sleep_flow(3.0)
    engine = load_engine(flow, redis_flushed_url, topic, store=store, transition_timeout=3.0)
    events = Events(engine)
    run = BackgroundRun(engine)

    services.wait_until(lambda: 0.5 in events.progress_of("nap"), 15.0, message="worker halfway through nap")
    try:
        redis_server.stop()  # no persistence: the restarted server is empty
    finally:
        redis_server.start()

    error = run.join(60.0)
    flow_state = engine.storage.get_flow_state()
    print(f"outcome after the Redis restart: {flow_state} {error!r}")
    if error is None:
        # The worker finished and its reply reached the engine after both reconnected.
        assert flow_state == st.SUCCESS
        assert engine.storage.fetch("y") == {"payload": [1, 2, 3]}
    elif isinstance(error, exc.RequestTimeout | exc.WrappedFailure):
        # The reply was lost with the old server's streams: the request timed out.
        _timed_out(error, engine, "nap")
        assert flow_state in (st.REVERTED, st.FAILURE)
    else:
        # Redis stayed unreachable past the engine's retries: a clear error, not a hang.
        assert str(error), f"unexplained {error!r}"
    assert worker.alive, worker.log()

    # The worker re-advertises itself and serves a new flow on the new server.
    worker.wait_advertised(15.0)
    again = linear_flow.Flow("after").add(
        Echo(name="echo", provides="v"), CountPrimes(name="primes", provides="n")
    )
    engine = load_engine(
        again, redis_flushed_url, topic, store={"value": "back", "limit": 100}, transition_timeout=5.0
    )
    engine.run()
    assert engine.storage.fetch("v") == "back"
    assert engine.storage.fetch("n") == 25


# --- (c) bad input reaching a worker ----------------------------------------------


def _sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _request(reply_to: str, **changes: Any) -> dict[str, Any]:
    now = time.time()
    message = {
        "v": 1,
        "type": "request",
        "id": str(uuid.uuid4()),
        "reply_to": reply_to,
        "action": "execute",
        "task": "flowkit_go_tasks.Echo",
        "name": "echo",
        "arguments": {"value": "ok"},
        "sent_at": now,
        "deadline": now + 30.0,
    }
    message.update(changes)
    return message


def _send(client: Any, topic: str, body: bytes | str, sig: str | None = None) -> str:
    fields: dict[str, Any] = {"body": body}
    if sig is not None:
        fields["sig"] = sig
    entry = client.xadd(requests_key(topic), fields)
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def _send_signed(client: Any, topic: str, message: dict[str, Any] | bytes) -> str:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return _send(client, topic, body, _sign(body))


def _replies(client: Any, key: str) -> list[dict[str, Any]]:
    return [json.loads(fields[b"body"]) for _, fields in client.xrange(key)]


def _request_id(body: bytes) -> str | None:
    try:
        request_id = json.loads(body).get("id")
    except (ValueError, AttributeError):
        return None
    return request_id if isinstance(request_id, str) else None


def _reply_to() -> str:
    return f"{NAMESPACE}:replies:test-{uuid.uuid4().hex[:8]}"


def _assert_serves(client: Any, worker: WorkerProcess) -> None:
    """A good, signed request still gets its answer: the worker kept running."""
    reply_to = _reply_to()
    request = _request(reply_to, arguments={"value": ["still", "here"]})
    _send_signed(client, worker.topic, request)

    def finished() -> dict[str, Any] | None:
        return next((r for r in _replies(client, reply_to) if r["event"] in ("success", "failure")), None)

    final = services.wait_until(finished, 15.0, message=f"answer from {worker!r}")
    assert final["event"] == "success", final
    assert final["id"] == request["id"]
    assert final["result"] == ["still", "here"]
    assert worker.alive


@pytest.fixture
def signed_worker(spawn_worker: WorkerFactory) -> WorkerProcess:
    """A worker that requires signed messages (and takes bodies up to the default 1 MiB)."""
    return spawn_worker(fresh_topic(), secret=SECRET)


def _malformed_json(reply_to: str) -> tuple[bytes, str | None]:
    body = b'{"v": 1, "type": "request", "id": '
    return body, _sign(body)


def _not_a_request(reply_to: str) -> tuple[bytes, str | None]:
    body = json.dumps(["a", "list"]).encode()
    return body, _sign(body)


def _missing_fields(reply_to: str) -> tuple[bytes, str | None]:
    request = _request(reply_to)
    del request["task"], request["arguments"]
    body = json.dumps(request).encode()
    return body, _sign(body)


def _oversized(reply_to: str) -> tuple[bytes, str | None]:
    body = json.dumps(_request(reply_to, arguments={"value": "x" * MAX_MESSAGE_BYTES})).encode()
    return body, _sign(body)


def _wrong_signature(reply_to: str) -> tuple[bytes, str | None]:
    body = json.dumps(_request(reply_to)).encode()
    return body, _sign(body, secret="not-the-secret")


def _unsigned(reply_to: str) -> tuple[bytes, str | None]:
    return json.dumps(_request(reply_to)).encode(), None


def _past_deadline(reply_to: str) -> tuple[bytes, str | None]:
    body = json.dumps(_request(reply_to, sent_at=time.time() - 60, deadline=time.time() - 30)).encode()
    return body, _sign(body)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_malformed_json, "json"),
        (_not_a_request, "object"),
        (_missing_fields, "task"),
        (_oversized, "limit"),
        (_wrong_signature, "signature"),
        (_unsigned, "sign"),
        (_past_deadline, "deadline"),
    ],
    ids=lambda value: value.__name__.strip("_") if callable(value) else None,
)
def test_a_bad_entry_is_dropped_with_a_warning_and_no_reply(
    make: Any, reason: str, signed_worker: WorkerProcess, redis_client: Any
) -> None:
    reply_to = _reply_to()
    body, sig = make(reply_to)
    entry = _send(redis_client, signed_worker.topic, body, sig)
    request_id = _request_id(body)

    def logged() -> list[str]:
        return [
            line
            for line in signed_worker.log().splitlines()
            if entry in line or (request_id is not None and request_id in line)
        ]

    lines = services.wait_until(
        logged, 15.0, message=f"a log line naming entry {entry} (or request {request_id})"
    )
    assert any(reason in line.lower() for line in lines), lines
    # Acknowledged and deleted: nobody will see it again.
    services.wait_until(
        lambda: (
            redis_client.xlen(requests_key(signed_worker.topic)) == 0
            and pending_requests(redis_client, signed_worker.topic) == 0
        ),
        10.0,
        message="bad entry acknowledged and deleted",
    )
    _assert_serves(redis_client, signed_worker)
    assert _replies(redis_client, reply_to) == []


def test_a_request_of_another_protocol_version_is_answered_with_a_failure(
    signed_worker: WorkerProcess, redis_client: Any
) -> None:
    reply_to = _reply_to()
    request = _request(reply_to, v=2)
    entry = _send_signed(redis_client, signed_worker.topic, request)

    replies = services.wait_until(lambda: _replies(redis_client, reply_to), 15.0, message="failure reply")
    assert [(r["id"], r["event"]) for r in replies] == [(request["id"], "failure")]
    failure = Failure.from_dict(replies[0]["failure"])
    assert "version" in failure.exception_str.lower() and "2" in failure.exception_str
    services.wait_until(
        lambda: redis_client.xlen(requests_key(signed_worker.topic)) == 0, 10.0, message="request deleted"
    )
    services.wait_until(
        lambda: entry in signed_worker.log(), 10.0, message=f"a log line naming entry {entry}"
    )
    _assert_serves(redis_client, signed_worker)


def test_a_request_for_an_unknown_task_is_answered_with_not_found(
    signed_worker: WorkerProcess, redis_client: Any
) -> None:
    reply_to = _reply_to()
    request = _request(reply_to, task="nowhere.NoSuchTask")
    entry = _send_signed(redis_client, signed_worker.topic, request)

    replies = services.wait_until(lambda: _replies(redis_client, reply_to), 15.0, message="failure reply")
    assert [(r["id"], r["event"]) for r in replies] == [(request["id"], "failure")]
    assert replies[0]["worker"] == signed_worker.worker_id
    failure = Failure.from_dict(replies[0]["failure"])
    assert list(failure.exception_type_names) == NOT_FOUND_NAMES
    worker_id, topic = signed_worker.worker_id, signed_worker.topic
    expected = f"worker {worker_id} on topic {topic} has no task named nowhere.NoSuchTask"
    assert failure.exception_str == expected
    services.wait_until(
        lambda: redis_client.xlen(requests_key(signed_worker.topic)) == 0, 10.0, message="request deleted"
    )
    services.wait_until(
        lambda: entry in signed_worker.log(), 10.0, message=f"a log line naming entry {entry}"
    )
    _assert_serves(redis_client, signed_worker)


def test_a_worker_that_rejected_bad_input_still_runs_a_signed_flow(
    signed_worker: WorkerProcess, redis_client: Any, redis_flushed_url: str
) -> None:
    reply_to = _reply_to()
    for make in (_malformed_json, _oversized, _wrong_signature, _unsigned):
        body, sig = make(reply_to)
        _send(redis_client, signed_worker.topic, body, sig)
    _send_signed(redis_client, signed_worker.topic, _request(reply_to, task="nowhere.NoSuchTask"))
    services.wait_until(
        lambda: redis_client.xlen(requests_key(signed_worker.topic)) == 0,
        15.0,
        message="bad input all dropped",
    )

    flow = linear_flow.Flow("signed").add(
        Echo(name="echo", provides="v"), CountPrimes(name="primes", provides="n")
    )
    engine = load_engine(
        flow, redis_flushed_url, signed_worker.topic, store={"value": "fine", "limit": 1000}, secret=SECRET
    )
    engine.run()

    assert engine.storage.fetch("v") == "fine"
    assert engine.storage.fetch("n") == 168
    assert signed_worker.alive
