"""The worker-based engine against a real Redis, with workers we script or run in-process.

Most tests drive the engine with a *scripted* worker: a thread that speaks the
protocol with raw redis-py calls and answers each request the way the test
says (late, twice, never, unsigned...), which is how the engine's side of the
request lifecycle is pinned down. The last tests run the real Python
:class:`~flowkit.engines.worker_based.worker.Worker` in a thread of the test.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowkit import dynamic, engines, task
from flowkit import exceptions as exc
from flowkit import states as st
from flowkit.engines.worker_based import protocol
from flowkit.engines.worker_based._driver import BLOCK_MS
from flowkit.patterns import linear_flow, unordered_flow
from flowkit.types.failure import Failure
from tests import services
from tests.workers.conftest import BackgroundRun, Events, WaitScans
from tests.workers.fake_clock import FakeClock

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.timeout(60)

NS = protocol.DEFAULT_NAMESPACE
ENGINE_LOG = "flowkit.engines.worker_based.engine"


class Add(task.Task):
    """Stub of a remote task: the engine only reads its name and signature."""

    def execute(self, value: int) -> int:
        raise AssertionError("runs on the worker, never in the engine")

    def revert(self, value: int, **kwargs: Any) -> None:
        raise AssertionError("runs on the worker, never in the engine")


class Other(task.Task):
    """A task the scripted workers do not offer unless told to."""

    def execute(self, value: int) -> int:
        raise AssertionError("runs on the worker, never in the engine")


ADD = protocol.task_name(Add)
OTHER = protocol.task_name(Other)

Handler = Callable[["ScriptedWorker", bytes, dict[str, Any]], None]


class ScriptedWorker:
    """A protocol-speaking worker whose every answer is chosen by ``handler``."""

    def __init__(
        self,
        url: str,
        topic: str,
        handler: Handler,
        tasks: tuple[str, ...] = (ADD,),
        secret: str | None = None,
    ) -> None:
        self.client = redis.Redis.from_url(url)
        self.topic = topic
        self.handler = handler
        self.tasks = tasks
        self.secret = secret.encode() if secret else None
        self.worker_id = f"scripted-{uuid.uuid4().hex[:8]}"
        self.stream = protocol.requests_key(NS, topic)
        self.received: list[dict[str, Any]] = []
        self.batches: list[int] = []
        self.envelopes: list[dict[bytes, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.worker_id, daemon=True)

    def start(self) -> ScriptedWorker:
        with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: the engine made it first
            self.client.xgroup_create(self.stream, protocol.GROUP, id="0", mkstream=True)
        self.advertise()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        with contextlib.suppress(redis.RedisError):
            self.client.close()

    def advertise(self, secret: bytes | None | bool = True) -> None:
        notify = protocol.notify_message(
            self.worker_id, self.topic, self.tasks, heartbeat=1.0, visibility_timeout=30.0
        )
        envelope = protocol.encode(notify, self.secret if secret is True else secret or None)
        self.client.hset(protocol.worker_key(NS, self.worker_id), mapping=envelope)  # type: ignore[arg-type]
        expiry = int((time.time() + 30.0) * 1000)
        self.client.zadd(protocol.workers_key(NS, self.topic), {self.worker_id: expiry})
        self.client.zadd(protocol.topics_key(NS), {self.topic: expiry}, gt=True)

    def arrive(self) -> None:
        """Add the entry a worker adds after its first advert (:meth:`advertise` alone: an older worker)."""
        self.client.xadd(protocol.arrivals_key(NS), {"worker": self.worker_id, "topic": self.topic})

    def withdraw(self) -> None:
        """Vanish as a crashed worker does once its advertisement expires."""
        self.client.delete(protocol.worker_key(NS, self.worker_id))
        self.client.zrem(protocol.workers_key(NS, self.topic), self.worker_id)

    def reply(self, request: dict[str, Any], event: str, *, signed: bool = True, **fields: Any) -> None:
        message = protocol.response_message(request["id"], self.worker_id, event, **fields)
        self.client.xadd(request["reply_to"], protocol.encode(message, self.secret if signed else None))  # type: ignore[arg-type]

    def ack(self, entry_id: bytes) -> None:
        self.client.xack(self.stream, protocol.GROUP, entry_id)
        self.client.xdel(self.stream, entry_id)

    def finish(self, request: dict[str, Any], entry_id: bytes, event: str, **fields: Any) -> None:
        """Send the final reply and acknowledge the entry in one MULTI block, as the real workers do.

        The engine may end its run as soon as it reads the reply; a test then
        finds the stream as the reply left it, with no acknowledgement to come.
        """
        message = protocol.response_message(request["id"], self.worker_id, event, **fields)
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(request["reply_to"], protocol.encode(message, self.secret))  # type: ignore[arg-type]
        pipe.xack(self.stream, protocol.GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        pipe.execute()

    def requests(self, action: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.received if action is None or r["action"] == action]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self.client.xreadgroup(
                    protocol.GROUP, self.worker_id, {self.stream: ">"}, count=100, block=50
                )
            except redis.RedisError:
                self._stop.wait(0.05)  # the server is down in an outage test
                continue
            for _stream, entries in reply or []:
                self.batches.append(len(entries))
                for entry_id, fields in entries:
                    self.envelopes.append(fields)
                    message = protocol.decode(fields, self.secret)
                    with self._lock:
                        self.received.append(message)
                    with contextlib.suppress(redis.RedisError):
                        self.handler(self, entry_id, message)


def add_one(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
    """Run ``Add`` as a real worker would: execute returns value + 1, revert returns None."""
    worker.reply(request, protocol.RUNNING)
    if request["action"] == protocol.EXECUTE:
        worker.finish(request, entry_id, protocol.SUCCESS, result=request["arguments"]["value"] + 1)
    else:
        worker.finish(request, entry_id, protocol.SUCCESS, result=None)


def failing(name: str) -> Handler:
    """Like :func:`add_one`, but executing the atom ``name`` fails with a RuntimeError."""

    def handle(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        if request["action"] == protocol.EXECUTE and request["name"] == name:
            worker.reply(request, protocol.RUNNING)
            try:
                raise RuntimeError(f"{name} broke")
            except RuntimeError:
                worker.finish(request, entry_id, protocol.FAILURE, failure=Failure())
        else:
            add_one(worker, entry_id, request)

    return handle


def holding_executes(held: list[tuple[bytes, dict[str, Any]]]) -> Handler:
    """Like :func:`add_one`, but an execute only says it started and is kept in ``held``, unanswered."""

    def handle(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        if request["action"] == protocol.EXECUTE:
            worker.reply(request, protocol.RUNNING)
            held.append((entry_id, request))
        else:
            add_one(worker, entry_id, request)

    return handle


@pytest.fixture(autouse=True)
def _no_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(protocol.SECRET_ENV, raising=False)


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def scripted(redis_flushed_url: str, topic: str) -> Iterator[Callable[..., ScriptedWorker]]:
    """Start scripted workers on ``topic``: ``scripted(handler, tasks=..., secret=...)``."""
    started: list[ScriptedWorker] = []

    def start(handler: Handler = add_one, **kwargs: Any) -> ScriptedWorker:
        worker = ScriptedWorker(redis_flushed_url, kwargs.pop("topic", topic), handler, **kwargs)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def client(redis_flushed_url: str) -> Iterator[Any]:
    connection = redis.Redis.from_url(redis_flushed_url)
    yield connection
    connection.close()


def load(flow: Any, url: str, topic: str, store: dict[str, Any] | None = None, **options: Any) -> Any:
    options.setdefault("transition_timeout", 5.0)
    return engines.load(flow, store=store, engine="worker-based", url=url, topics=[topic], **options)


def chain(count: int) -> linear_flow.Flow:
    """add0 -> add1 -> ...: each adds one to the previous result."""
    flow = linear_flow.Flow("chain").add(Add(name="add0", provides="v0"))
    for i in range(1, count):
        flow.add(Add(name=f"add{i}", provides=f"v{i}", rebind={"value": f"v{i - 1}"}))
    return flow


def failure_of(engine: Any, atom: str) -> Failure:
    failure = engine.storage.get(atom)
    assert isinstance(failure, Failure), f"{atom} has no failure: {failure!r}"
    return failure


# -- running flows ---------------------------------------------------------------


def test_results_of_a_linear_flow_reach_the_atoms_that_need_them(
    scripted: Any, redis_flushed_url: str, topic: str, client: Any
) -> None:
    worker = scripted()
    engine = load(chain(4), redis_flushed_url, topic, store={"value": 10})

    engine.run()

    assert [engine.storage.fetch(f"v{i}") for i in range(4)] == [11, 12, 13, 14]
    sent = worker.requests()
    assert [(r["name"], r["task"], r["arguments"]) for r in sent] == [
        ("add0", ADD, {"value": 10}),
        ("add1", ADD, {"value": 11}),
        ("add2", ADD, {"value": 12}),
        ("add3", ADD, {"value": 13}),
    ]
    assert all(r["deadline"] == pytest.approx(r["sent_at"] + 5.0) for r in sent)
    # The engine's reply stream is gone once the run ends.
    assert list(client.scan_iter(f"{NS}:replies:*")) == []


def test_every_result_of_an_unordered_flow_is_kept(scripted: Any, redis_flushed_url: str, topic: str) -> None:
    scripted()
    scripted()  # two workers share the topic's requests
    flow = unordered_flow.Flow("fan").add(
        *(Add(name=f"a{i}", provides=f"r{i}", inject={"value": i}) for i in range(50))
    )
    engine = load(flow, redis_flushed_url, topic)

    engine.run()

    assert [engine.storage.fetch(f"r{i}") for i in range(50)] == list(range(1, 51))
    assert engine.storage.get_flow_state() == st.SUCCESS


def test_a_remote_failure_sends_revert_requests_with_results_and_failures(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    worker = scripted(failing("add1"))
    engine = load(chain(2), redis_flushed_url, topic, store={"value": 1})

    with pytest.raises(exc.WrappedFailure, match="add1 broke") as raised:
        engine.run()

    assert raised.value.check(RuntimeError)
    assert failure_of(engine, "add1").check(RuntimeError)
    reverts = {r["name"]: r for r in worker.requests(protocol.REVERT)}
    assert set(reverts) == {"add0", "add1"}
    assert reverts["add0"]["result"] == 2 and "failure" not in reverts["add0"]
    assert reverts["add0"]["arguments"] == {"value": 1}
    own = reverts["add1"]["failure"]
    assert "result" not in reverts["add1"]
    assert own["exception_str"] == "add1 broke" and own["exc_type_names"][0] == "RuntimeError"
    for revert in reverts.values():
        assert revert["flow_failures"]["add1"]["exception_str"] == "add1 broke"
    assert engine.storage.get_atom_state("add0") == st.REVERTED
    assert engine.storage.get_atom_state("add1") == st.REVERTED


def test_progress_from_the_worker_reaches_the_atom_notifier(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    def slow(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        worker.reply(request, protocol.RUNNING)
        worker.reply(request, protocol.PROGRESS, progress=0.25)
        worker.reply(request, protocol.PROGRESS, progress=0.5, details={"step": "copying"})
        add_one(worker, entry_id, request)

    scripted(slow)
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1})
    events = Events(engine)
    seen: list[dict[str, Any]] = []
    engine.atom_notifier.register("update_progress", lambda event, details: seen.append(details))

    engine.run()

    assert {0.25, 0.5} <= set(events.progress_of("add0"))
    assert any(d.get("step") == "copying" and d["progress"] == 0.5 for d in seen)
    assert engine.storage.get_task_progress("add0") == 1.0


def test_at_most_max_in_flight_requests_are_out_at_once(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    worker = scripted()
    flow = unordered_flow.Flow("fan").add(
        *(Add(name=f"a{i}", provides=f"r{i}", inject={"value": i}) for i in range(12))
    )
    engine = load(flow, redis_flushed_url, topic, max_in_flight=2)

    engine.run()

    assert [engine.storage.fetch(f"r{i}") for i in range(12)] == list(range(1, 13))
    assert len(worker.requests()) == 12
    assert max(worker.batches) <= 2


# -- the request lifecycle -------------------------------------------------------------


def _reader_moved_on(clock: FakeClock) -> None:
    """Wait until the engine's reply reader has begun a timeout check on the clock's current time.

    The reader reads the clock twice a loop (before its read, after it) and once
    more as a check begins, so three reads after the clock moved mean a check read
    the moved time (unless a RUNNING reply or the engine thread read it meanwhile):
    it may still be running. What it does comes before any reply the reader takes
    next (one thread does both), and an assertion that nothing happened yet holds
    either way; a test that needs the check's effect waits for that effect itself.
    """
    start = clock.monotonic_reads
    services.wait_until(
        lambda: clock.monotonic_reads >= start + 3, 5.0, interval=0.005, message="a reader loop"
    )


def _held_for_a_worker(caplog: pytest.LogCaptureFixture, request: str = "") -> None:
    """Wait until the engine says a request is held for a worker (INFO on ENGINE_LOG captured).

    The engine marks an atom RUNNING (or, to revert it, FAILURE then REVERTING)
    before its thread sends the request; the request's deadline is set from the
    clock when it is sent, or held, as this line says. A test must not move the
    clock before then, or the deadline counts from the moved clock, and a clock
    moved once past where the deadline would have been then never reaches it.

    Args:
        caplog: the captured log, at INFO on ENGINE_LOG.
        request: what the line names as its batch's first request (such as
            ``"revert request of atom 'x'"``); empty: any held request.
    """

    def held() -> bool:
        return any(
            "for a live worker offering their task" in r.getMessage() and request in r.getMessage()
            for r in caplog.records
        )

    services.wait_until(held, 30.0, message=f"the engine holding {request or 'a request'} for a worker")


def test_a_request_no_worker_starts_times_out_at_its_deadline_and_the_flow_reverts(
    scripted: Any, redis_flushed_url: str, topic: str, client: Any
) -> None:
    def ignore_executes(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        if request["action"] == protocol.REVERT:
            add_one(worker, entry_id, request)  # reads it, never answers, never acknowledges

    worker = scripted(ignore_executes)
    clock = FakeClock()
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, transition_timeout=5.0, clock=clock)
    run = BackgroundRun(engine)
    services.wait_until(worker.requests, 5.0, message="the request reaching the worker")
    (request,) = worker.requests()
    assert request["deadline"] == request["sent_at"] + 5.0 == clock.time() + 5.0

    clock.advance(4.9)
    _reader_moved_on(clock)
    assert not run.done, "timed out before its deadline"
    clock.advance(0.3)  # past the deadline and the reader's next check (every 0.25 s)
    error = run.join(10.0)

    assert isinstance(error, exc.RequestTimeout), repr(error)
    for part in ("add0", ADD, topic, "5 s"):
        assert part in str(error)
    assert failure_of(engine, "add0").check(exc.RequestTimeout)
    assert engine.storage.get_atom_state("add0") == st.REVERTED
    # The engine took the request back: deleted from the stream, not pending on anyone.
    stream = protocol.requests_key(NS, topic)
    assert client.xlen(stream) == 0
    assert client.xpending(stream, protocol.GROUP)["pending"] == 0


def test_a_request_nobody_starts_fails_at_its_deadline_not_at_the_next_look(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    # The reader's looks come every transition_timeout / 4 (1.25 s) of the clock. One
    # falls 0.1 s before the deadline; the clock then moves just past the deadline, short
    # of the next look: the reader acts at the deadline it knows of, not at that look.
    def ignore_executes(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        if request["action"] == protocol.REVERT:
            add_one(worker, entry_id, request)  # reads the execute, never answers it

    worker = scripted(ignore_executes)
    clock = FakeClock()
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, transition_timeout=5.0, clock=clock)
    run = BackgroundRun(engine)
    services.wait_until(worker.requests, 5.0, message="the request reaching the worker")
    clock.advance(4.9)  # past three looks: the next is due 1.25 s after the one this makes
    _reader_moved_on(clock)
    assert not run.done, "timed out before its deadline"

    clock.advance(0.1)
    error = run.join(10.0)

    assert isinstance(error, exc.RequestTimeout), repr(error)
    assert "no worker started it within 5 s" in str(error)


def test_a_task_fails_at_its_own_timeout_not_at_the_next_look(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    held: list[tuple[bytes, dict[str, Any]]] = []

    scripted(holding_executes(held))  # executes never answered
    clock = FakeClock()
    flow = linear_flow.Flow("f").add(Add(name="add0", provides="v0", timeout=2.0))
    engine = load(flow, redis_flushed_url, topic, store={"value": 1}, transition_timeout=5.0, clock=clock)
    run = BackgroundRun(engine)
    services.wait_until(lambda: held, 5.0, message="the request reaching the worker")
    _reader_moved_on(clock)  # the RUNNING reply is read: the task's time counts from here
    clock.advance(1.95)  # a look now; the next is due 1.25 s later
    _reader_moved_on(clock)
    assert not run.done, "timed out before its timeout"

    clock.advance(0.05)
    error = run.join(10.0)

    assert isinstance(error, exc.TaskTimeout), repr(error)
    assert (error.atom, error.timeout) == ("add0", 2.0)


def test_the_reader_is_woken_from_its_blocking_read_at_a_tasks_timeout(
    scripted: Any, redis_flushed_url: str, topic: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the real clock, with no look for 15 s (LOOK_EVERY pushed away, a long
    # transition_timeout) and no reply coming, only the reader's alarm ends its blocking
    # read at the timeout, with CLIENT UNBLOCK: Redis would end the read only on its timer's
    # tick, and the reader waited for its next look to check timeouts at all.
    from flowkit.engines.worker_based import _driver

    monkeypatch.setattr(_driver, "LOOK_EVERY", 600.0)
    held: list[tuple[bytes, dict[str, Any]]] = []

    scripted(holding_executes(held))  # executes never answered
    flow = linear_flow.Flow("f").add(Add(name="add0", provides="v0", timeout=0.2))
    engine = load(flow, redis_flushed_url, topic, store={"value": 1}, transition_timeout=60.0)
    client.config_resetstat()

    error = BackgroundRun(engine).join(10.0)

    assert isinstance(error, exc.TaskTimeout), repr(error)
    assert held, "the task never started"
    unblocks = client.info("commandstats").get("cmdstat_client|unblock", {}).get("calls", 0)
    assert unblocks >= 1, "the reader's read was not woken at the timeout"


def test_the_looks_for_workers_do_not_wake_the_readers_blocking_read(
    scripted: Any, redis_flushed_url: str, topic: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A task without a timeout runs while the engine looks for workers (often here):
    # the alarm rang the read at every look, a CLIENT UNBLOCK four times a second
    # for as long as the task ran, though nothing a look checks needs it on time.
    from flowkit.engines.worker_based import _driver

    monkeypatch.setattr(_driver, "LOOK_EVERY", 0.02)
    looks: list[int] = []
    tick = _driver.RedisDriver._tick

    def counted_tick(self: Any) -> None:
        looks.append(1)
        tick(self)

    monkeypatch.setattr(_driver.RedisDriver, "_tick", counted_tick)
    answer = threading.Event()

    def answer_late(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        if request["action"] == protocol.EXECUTE:
            worker.reply(request, protocol.RUNNING)
            answer.wait(30.0)  # until the engine looked a few times
        add_one(worker, entry_id, request)

    scripted(answer_late)
    flow = linear_flow.Flow("f").add(Add(name="add0", provides="v0"))
    engine = load(flow, redis_flushed_url, topic, store={"value": 1}, transition_timeout=60.0)
    client.config_resetstat()
    run = BackgroundRun(engine)
    try:
        services.wait_until(lambda: len(looks) >= 10, 30.0, message="ten looks for workers")
    finally:
        answer.set()
    assert run.join(30.0) is None
    unblocks = client.info("commandstats").get("cmdstat_client|unblock", {}).get("calls", 0)
    assert unblocks == 0, f"{unblocks} reads woken for looks"


def test_a_running_request_whose_worker_vanishes_times_out(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    vanished: list[bytes] = []

    def crash_on_execute(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        if request["action"] == protocol.EXECUTE:
            worker.reply(request, protocol.RUNNING)
            worker.withdraw()  # ... and never answers again: its advert is gone
            vanished.append(entry_id)
        else:
            add_one(worker, entry_id, request)

    worker = scripted(crash_on_execute)
    clock = FakeClock()
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, transition_timeout=5.0, clock=clock)
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: vanished, 5.0, message="the worker starting the request and vanishing")
    # The RUNNING reply is read before engine time moves: else the request could pass its
    # deadline as one no worker started, a different timeout from the one tested here.
    _reader_moved_on(clock)

    def moved_until_failed() -> bool:
        # Half a second of engine time per poll, until the worker's absence has lasted the timeout.
        if not events.saw("add0", st.FAILURE):
            clock.advance(0.5)
            return False
        return True

    services.wait_until(moved_until_failed, 10.0, interval=0.01, message="the execute timing out")
    # The revert waits for a live worker offering the task (as TaskFlow's would): the worker comes back.
    assert worker.requests(protocol.REVERT) == []
    worker.advertise()

    def moved_until_reverting() -> bool:
        if not worker.requests(protocol.REVERT):
            clock.advance(0.1)  # the reader's next tick looks again (the revert allows 5 s)
            return False
        return True

    services.wait_until(moved_until_reverting, 10.0, interval=0.05, message="the revert reaching the worker")
    error = run.join(10.0)

    assert isinstance(error, exc.RequestTimeout), repr(error)
    message = str(error)
    assert worker.worker_id in message and "add0" in message and "advertised" in message
    assert "limit 5 s" in message
    assert engine.storage.get_atom_state("add0") == st.REVERTED


def test_a_running_request_survives_while_its_worker_is_advertised(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    held: list[tuple[bytes, dict[str, Any]]] = []

    def hold(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        worker.reply(request, protocol.RUNNING)
        held.append((entry_id, request))

    worker = scripted(hold)
    clock = FakeClock()
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, transition_timeout=5.0, clock=clock)
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: held, 5.0, message="the request reaching the worker")
    # Three transition timeouts pass, checked every three seconds: RUNNING has
    # no deadline while its worker is advertised.
    for _ in range(5):
        clock.advance(3.0)
        _reader_moved_on(clock)
    assert not run.done
    assert not events.saw("add0", st.FAILURE)
    add_one(worker, *held[0])

    assert run.join(5.0) is None
    assert engine.storage.fetch("v0") == 2


def test_a_task_past_its_own_timeout_fails_and_its_late_result_is_refused(
    scripted: Any, redis_flushed_url: str, topic: str, client: Any
) -> None:
    held: list[tuple[bytes, dict[str, Any]]] = []

    worker = scripted(holding_executes(held))  # executes answered by the test, too late
    clock = FakeClock()
    flow = linear_flow.Flow("f").add(Add(name="add0", provides="v0", timeout=2.0))
    engine = load(flow, redis_flushed_url, topic, store={"value": 1}, transition_timeout=5.0, clock=clock)
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: held, 5.0, message="the request reaching the worker")
    _reader_moved_on(clock)  # the RUNNING reply is read: the task's time counts from here

    clock.advance(1.9)
    _reader_moved_on(clock)
    assert not run.done, "timed out before its timeout"
    clock.advance(0.3)  # past the timeout and the reader's next check
    error = run.join(10.0)

    assert isinstance(error, exc.TaskTimeout), repr(error)
    assert (error.atom, error.timeout) == ("add0", 2.0)
    assert isinstance(error, TimeoutError)
    assert engine.storage.get_atom_state("add0") == st.REVERTED
    # The revert went to the worker with the TaskTimeout as the execute's failure.
    (revert,) = worker.requests(protocol.REVERT)
    assert "flowkit.exceptions.TaskTimeout" in revert["failure"]["exc_type_names"]
    # The worker's late answer changes nothing, and the request left the stream.
    add_one(worker, *held[0])
    assert engine.storage.get_atom_state("add0") == st.REVERTED
    assert not events.saw("add0", st.SUCCESS)
    stream = protocol.requests_key(NS, topic)
    assert client.xpending(stream, protocol.GROUP)["pending"] == 0


def test_duplicate_late_and_unknown_responses_are_ignored(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    def chatty(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        if request["name"] == "add0":
            worker.reply(request, protocol.RUNNING)
            worker.reply(request, protocol.SUCCESS, result="first")
            worker.reply(request, protocol.SUCCESS, result="second")
            worker.reply(request, protocol.RUNNING)
            worker.reply(request, protocol.PROGRESS, progress=0.7)
            with_failure = dict(request)
            try:
                raise RuntimeError("too late")
            except RuntimeError:
                worker.reply(with_failure, protocol.FAILURE, failure=Failure())
            worker.reply({**request, "id": str(uuid.uuid4())}, protocol.SUCCESS, result="stranger")
            worker.ack(entry_id)
        else:
            worker.reply(request, protocol.SUCCESS, result=request["arguments"])
            worker.ack(entry_id)

    scripted(chatty)
    flow = linear_flow.Flow("f").add(
        Add(name="add0", provides="v0"), Add(name="add1", provides="v1", rebind={"value": "v0"})
    )
    engine = load(flow, redis_flushed_url, topic, store={"value": 1})

    engine.run()

    assert engine.storage.fetch("v0") == "first"
    assert engine.storage.fetch("v1") == {"value": "first"}
    assert engine.storage.get_flow_state() == st.SUCCESS


# -- checks before running (opt-in: worker_wait) --------------------------------------


def test_with_worker_wait_a_task_no_worker_offers_fails_before_the_run_naming_it(
    scripted: Any, redis_flushed_url: str, topic: str, client: Any
) -> None:
    scripted()
    flow = linear_flow.Flow("f").add(Add(name="offered"), Other(name="lonely"))
    clock = FakeClock()  # its sleep() moves it on: the wait costs no real time
    began = clock.monotonic()
    engine = load(flow, redis_flushed_url, topic, store={"value": 1}, worker_wait=5.0, clock=clock)

    with pytest.raises(exc.NotFound) as raised:
        engine.run()

    assert 5.0 <= clock.monotonic() - began < 5.2  # waited the whole worker_wait, polling
    message = str(raised.value)
    assert "'lonely'" in message and OTHER in message and topic in message
    assert "offered" not in message
    assert (
        client.exists(protocol.requests_key(NS, topic)) == 0
        or client.xlen(protocol.requests_key(NS, topic)) == 0
    )
    assert engine.storage.get_atom_state("offered") == st.PENDING


def test_the_availability_check_waits_for_a_worker_that_is_starting(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    class StartsTheWorker(FakeClock):
        """The worker starts during the check's first pause between scans: after a scan found none."""

        def __init__(self) -> None:
            super().__init__()
            self.pauses: list[float] = []

        def sleep(self, seconds: float) -> None:
            if not self.pauses:
                scripted()
            self.pauses.append(seconds)
            super().sleep(seconds)

    clock = StartsTheWorker()
    began = clock.monotonic()
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, worker_wait=5.0, clock=clock)

    engine.run()

    assert engine.storage.fetch("v0") == 2
    assert len(clock.pauses) == 1  # it looked again after its pause and found the worker
    assert clock.monotonic() - began < 5.0  # not the whole worker_wait


def test_worker_wait_looks_for_workers_at_the_engines_look_period_not_every_50_ms(
    redis_flushed_url: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a clock of its own the wait between two looks is that clock's sleep (a blocking
    # read runs in real time): five seconds of it cost one scan per LOOK_EVERY (21), where
    # polling every 50 ms made 101.
    from flowkit.engines.worker_based import _driver

    scans = WaitScans(monkeypatch)
    clock = FakeClock()
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, worker_wait=5.0, clock=clock)

    with pytest.raises(exc.NotFound, match="for 5 s"):
        engine.run()

    assert scans.during_wait == [1 + math.ceil(5.0 / _driver.LOOK_EVERY)]


def test_worker_wait_blocks_on_the_arrivals_stream_between_its_looks(
    redis_flushed_url: str, topic: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The periodic look pushed past the wait, a wait that nothing ends early reads the
    # adverts twice (as it begins, as it runs out) and otherwise only blocks on the
    # arrivals stream, at most once per BLOCK_MS; polling scanned every 50 ms.
    from flowkit.engines.worker_based import _driver

    monkeypatch.setattr(_driver, "LOOK_EVERY", 600.0)
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, worker_wait=0.5)
    client.config_resetstat()
    began = time.monotonic()

    with pytest.raises(exc.NotFound) as raised:
        engine.run()

    elapsed = time.monotonic() - began
    calls = {
        name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()
    }
    assert calls.get("zrange") == 2, calls  # one scan of the one topic: ZREMRANGEBYSCORE, ZRANGE
    assert 1 <= calls.get("xread", 0) <= elapsed / (BLOCK_MS / 1000) + 2, (calls, elapsed)
    assert set(calls) <= {"config|resetstat", "info", "hello", "ping", "client|setinfo", "xrevrange",
                          "zremrangebyscore", "zrange", "xread"}, calls  # fmt: skip
    message = str(raised.value)
    assert "atom 'add0'" in message and ADD in message and f"['{topic}']" in message
    assert "for 0.5 s" in message


def test_a_workers_arrival_ends_worker_wait_without_waiting_for_a_look(
    scripted: Any, holding: Holding, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The periodic look is pushed past the test's bounded waits: only the worker's arrival
    # entry can end the wait. Counted, not timed: the wait makes its first scan, reads an
    # arrival about another topic (nothing to scan for, when it was given topics), then
    # the worker's, and scans once more.
    from flowkit.engines.worker_based import _driver

    monkeypatch.setattr(_driver, "LOOK_EVERY", 600.0)
    scans = WaitScans(monkeypatch)
    engine = holding.load(chain(1), store={"value": 1}, worker_wait=600.0)
    run = BackgroundRun(engine)
    scans.wait_scan()
    (directory,) = scans.directories
    arrivals = protocol.arrivals_key(NS)
    elsewhere = client.xadd(arrivals, {"worker": "w-elsewhere", "topic": f"elsewhere-{uuid.uuid4().hex[:8]}"})
    services.wait_until(
        lambda: directory.arrivals_seen == elsewhere, 10.0, message="the wait reading the arrivals stream"
    )
    if not directory.topics:  # an engine given no topics cares about every arrival: it looks
        scans.wait_scan()

    worker = scripted()  # advertised: no look comes to find it
    worker.arrive()
    assert run.join(10.0) is None

    assert engine.storage.fetch("v0") == 2
    assert scans.during_wait == [2 if directory.topics else 3]


@pytest.mark.parametrize("refusal", ["acl-at-start", "wrongtype-while-waiting"])
def test_worker_wait_on_an_arrivals_stream_redis_refuses_still_finds_the_worker_at_its_look(
    scripted: Any,
    redis_flushed_url: str,
    pre_arrivals_engine_url: str,
    topic: str,
    client: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    refusal: str,
) -> None:
    # Refused from the start (an ACL older than the stream), or as it waits (a string written
    # over it): the wait says so once and scans at the engine's look period instead.
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    scans = WaitScans(monkeypatch)
    url = pre_arrivals_engine_url if refusal == "acl-at-start" else redis_flushed_url
    engine = load(chain(1), url, topic, store={"value": 1}, worker_wait=600.0)
    run = BackgroundRun(engine)
    scans.wait_scan()
    if refusal == "wrongtype-while-waiting":
        client.set(protocol.arrivals_key(NS), "not a stream")
    refused = f"cannot read the arrivals stream '{protocol.arrivals_key(NS)}'"
    services.wait_until(
        lambda: [r for r in caplog.records if refused in r.getMessage()], 10.0, message="the refusal said"
    )

    worker = scripted()  # no arrival entry could be read anyway: found at the next look
    assert run.join(10.0) is None

    assert engine.storage.fetch("v0") == 2
    assert [request["name"] for request in worker.requests()] == ["add0"]
    said = [r for r in caplog.records if refused in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING], said
    assert "worker_wait" in said[0].getMessage()
    assert "(every 0.25 s)" in said[0].getMessage()


def test_a_task_goes_to_the_first_topic_that_offers_it(scripted: Any, redis_flushed_url: str) -> None:
    first, second = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    only_other = scripted(tasks=(OTHER,), topic=first)
    both = scripted(tasks=(ADD, OTHER), topic=second)
    flow = linear_flow.Flow("f").add(
        Add(name="add", provides="x"), Other(name="other", rebind={"value": "x"}, provides="y")
    )

    def other(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        add_one(worker, entry_id, request)

    only_other.handler = other
    engine = engines.load(
        flow, store={"value": 1}, engine="worker_based", url=redis_flushed_url, topics=[first, second]
    )

    engine.run()

    assert engine.storage.fetch("y") == 3
    assert [r["name"] for r in only_other.requests()] == ["other"]
    assert [r["name"] for r in both.requests()] == ["add"]


# -- no topics given: the engine finds the topics workers announce (TaskFlow's default) ----


def discovering(flow: Any, url: str, store: dict[str, Any] | None = None, **options: Any) -> Any:
    """Load ``flow`` without topics: it must find its workers by their announcements."""
    options.setdefault("transition_timeout", 5.0)
    return engines.load(flow, store=store, engine="worker-based", url=url, **options)


def test_without_topics_each_task_goes_to_a_topic_whose_workers_announce_it(
    scripted: Any, redis_flushed_url: str
) -> None:
    only_other = scripted(tasks=(OTHER,), topic=f"a-{uuid.uuid4().hex[:8]}")
    only_add = scripted(tasks=(ADD,), topic=f"b-{uuid.uuid4().hex[:8]}")
    flow = linear_flow.Flow("f").add(
        Add(name="add", provides="x"), Other(name="other", rebind={"value": "x"}, provides="y")
    )

    engine = discovering(flow, redis_flushed_url, store={"value": 1})
    engine.run()

    assert engine.storage.fetch("y") == 3
    assert [r["name"] for r in only_add.requests()] == ["add"]
    assert [r["name"] for r in only_other.requests()] == ["other"]


def test_without_topics_worker_wait_given_checks_before_the_run(
    scripted: Any, redis_flushed_url: str
) -> None:
    scripted()
    flow = linear_flow.Flow("f").add(Add(name="offered"), Other(name="lonely"))
    engine = discovering(flow, redis_flushed_url, store={"value": 1}, worker_wait=1.0, clock=FakeClock())

    with pytest.raises(exc.NotFound, match="'lonely'"):
        engine.run()

    assert engine.storage.get_atom_state("offered") == st.PENDING


# -- a request no live worker offers waits for one (TaskFlow's way, with topics or without) ----


@dataclass(frozen=True)
class Holding:
    """How a test's engine is loaded (given the test's topic, or none) and where it looks for workers."""

    load: Callable[..., Any]  # (flow, store=None, **options) -> engine
    searched: str  # as a waiting request's timeout names it


@pytest.fixture(params=["given-topics", "no-topics"])
def holding(request: pytest.FixtureRequest, redis_flushed_url: str, topic: str) -> Holding:
    """Both ways of loading hold a request nobody offers: one code path, tested both ways."""
    if request.param == "given-topics":
        return Holding(functools.partial(load, url=redis_flushed_url, topic=topic), f"topic(s) {[topic]}")
    return Holding(functools.partial(discovering, url=redis_flushed_url), "the topics workers announce")


def test_a_request_waits_for_a_worker_that_starts_after_the_engine(
    scripted: Any, holding: Holding, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    clock = FakeClock()
    engine = holding.load(chain(1), store={"value": 1}, clock=clock)  # no worker yet: no NotFound either
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: events.saw("add0", st.RUNNING), 5.0, message="the atom starting")
    # Held (its deadline set) before time moves: held later, it would wait for a tick that never comes.
    _held_for_a_worker(caplog, "execute request of atom 'add0'")
    clock.advance(1.0)
    _reader_moved_on(clock)  # a look for workers found none: the request stays with the engine
    assert not run.done
    assert client.keys(protocol.requests_key(NS, "*")) == []

    worker = scripted()  # advertised without an arrival entry, as a worker older than them
    clock.advance(0.3)  # the reader's next look finds it
    assert run.join(10.0) is None

    assert engine.storage.fetch("v0") == 2
    (request,) = worker.requests()
    # Stamped when it began to wait, not when it was sent: its deadline counts from then.
    assert request["sent_at"] < clock.time()
    assert request["deadline"] == request["sent_at"] + 5.0


def _holding_add0(holding: Holding, caplog: pytest.LogCaptureFixture) -> tuple[Any, BackgroundRun, FakeClock]:
    """An engine on a still clock holding ``add0`` for a worker, its reader's first look over."""
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    clock = FakeClock()
    engine = holding.load(chain(1), store={"value": 1}, clock=clock)
    run = BackgroundRun(engine)
    _held_for_a_worker(caplog, "execute request of atom 'add0'")
    _reader_moved_on(clock)
    _reader_moved_on(clock)  # its first look, made as it began, is over
    return engine, run, clock


def test_a_held_request_goes_out_once_its_worker_arrives_without_waiting_for_a_look(
    scripted: Any, holding: Holding, caplog: pytest.LogCaptureFixture
) -> None:
    # The clock never moves: the reader's periodic look for workers never comes
    # again after its first, so only the arrival entry can send the request.
    engine, run, clock = _holding_add0(holding, caplog)
    worker = scripted()  # advertised, no arrival entry yet: an older worker, found at the next look
    _reader_moved_on(clock)
    assert worker.requests() == [] and not run.done

    worker.arrive()
    assert run.join(10.0) is None

    assert engine.storage.fetch("v0") == 2
    assert [request["name"] for request in worker.requests()] == ["add0"]


def test_watching_for_arrivals_costs_a_held_request_no_command_beside_the_blocking_read(
    scripted: Any, holding: Holding, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The arrivals stream is read by the reply reader's own blocking XREAD: with the clock
    # still (no periodic look) and nothing arriving, that read is all the engine sends,
    # at most once per block, as before arrivals existed.
    engine, run, clock = _holding_add0(holding, caplog)
    client.config_resetstat()
    began = time.monotonic()
    for _ in range(5):
        _reader_moved_on(clock)
    elapsed = time.monotonic() - began

    calls = {
        name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()
    }
    calls.pop("config|resetstat", None)
    assert set(calls) == {"xread"}, calls
    assert calls["xread"] <= elapsed / (BLOCK_MS / 1000) + 2, (calls, elapsed)
    assert not run.done
    scripted()
    clock.advance(0.3)  # the next look finds it: the run ends here, not in a later test's Redis
    assert run.join(10.0) is None


def test_an_arrival_of_a_worker_that_offers_nothing_held_sends_nothing_and_keeps_the_request(
    scripted: Any, holding: Holding, caplog: pytest.LogCaptureFixture
) -> None:
    # An arrival is a hint: what is sent still follows the adverts the engine reads.
    engine, run, clock = _holding_add0(holding, caplog)
    other = scripted(tasks=(OTHER,))
    other.arrive()
    _reader_moved_on(clock)
    _reader_moved_on(clock)  # the wake-up and its scan are over
    assert other.requests() == [] and not run.done
    other.stop()  # advertised still, but reads no more: the request must go to the next one

    worker = scripted()
    worker.arrive()
    assert run.join(10.0) is None
    assert [request["name"] for request in worker.requests()] == ["add0"]


def test_a_run_whose_worker_is_known_sends_each_request_at_once_waiting_on_no_period(
    scripted: Any, holding: Holding, caplog: pytest.LogCaptureFixture
) -> None:
    # A per-run cost guard: with a worker advertised before the run, every request
    # goes out from the engine thread as it is scheduled; none waits for the reader's
    # next look for workers, an advert period or any other clock-driven wait. The
    # clock never moves, so a request that had to wait for time to pass would never
    # be sent (the run would hang), and one held for a later look would say so.
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    clock = FakeClock()
    worker = scripted()
    engine = holding.load(chain(4), store={"value": 1}, clock=clock)

    run = BackgroundRun(engine)
    assert run.join(10.0) is None

    assert [engine.storage.fetch(f"v{i}") for i in range(4)] == [2, 3, 4, 5]
    held = [r.getMessage() for r in caplog.records if "for a live worker" in r.getMessage()]
    assert held == [], f"requests waited for a later look for workers: {held}"
    # Stamped on the clock as it stood when the run began: nothing waited for it to move.
    assert {request["sent_at"] for request in worker.requests()} == {clock.time()}


def test_a_task_no_worker_offers_times_out_and_so_does_its_revert(
    scripted: Any, holding: Holding, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    worker = scripted()
    clock = FakeClock()
    flow = linear_flow.Flow("f").add(
        Add(name="add0", provides="x"), Other(name="lonely", rebind={"value": "x"})
    )
    engine = holding.load(flow, store={"value": 1}, clock=clock)
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: events.saw("lonely", st.RUNNING), 5.0, message="the lonely atom starting")
    _held_for_a_worker(caplog, "execute request of atom 'lonely'")  # only now is its deadline set

    clock.advance(4.9)
    _reader_moved_on(clock)
    assert not run.done, "timed out before transition_timeout"
    clock.advance(0.3)
    services.wait_until(lambda: events.saw("lonely", st.FAILURE), 5.0, message="the execute timing out")
    failure = failure_of(engine, "lonely")
    # Its revert is a request too, which nobody offers either: it times out in turn (as TaskFlow's).
    # Its deadline is set when the engine thread holds it, some time after FAILURE is seen.
    _held_for_a_worker(caplog, "revert request of atom 'lonely'")
    clock.advance(5.3)
    error = run.join(10.0)

    assert isinstance(error, exc.RequestTimeout), repr(error)
    assert failure.check(exc.RequestTimeout)
    for part in ("'lonely'", OTHER, "no live worker offered", "5 s", f"searched {holding.searched}"):
        assert part in str(failure)
    assert "revert request of atom 'lonely'" in str(error)
    # A revert that failed stops the flow there, as in TaskFlow: add0 keeps its result.
    assert engine.storage.get_atom_state("lonely") == st.REVERT_FAILURE
    assert engine.storage.get_atom_state("add0") == st.SUCCESS
    assert engine.storage.get_flow_state() == st.FAILURE
    assert [(r["name"], r["action"]) for r in worker.requests()] == [("add0", protocol.EXECUTE)]


def test_a_request_is_held_by_the_time_the_engine_says_so(
    scripted: Any, redis_flushed_url: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Tests (this file's _held_for_a_worker) move a fake clock once the line is logged; were
    # it said before the request is held, the reader's tick could pass it by, and with the
    # clock standing still no later tick would come. The line's handler forces that window:
    # it starts a worker and moves the clock while the engine thread is still in the logging call.
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    clock = FakeClock()
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, clock=clock)
    sent_meanwhile: list[bool] = []

    class OnHeld(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "for a live worker offering their task" not in record.getMessage():
                return
            worker = scripted()
            clock.advance(0.3)  # the reader's next tick looks for workers for the held requests
            try:
                services.wait_until(worker.requests, 5.0, message="the held request sent")
            except AssertionError:
                sent_meanwhile.append(False)
            else:
                sent_meanwhile.append(True)

    handler = OnHeld()
    logging.getLogger(ENGINE_LOG).addHandler(handler)
    try:
        run = BackgroundRun(engine)
        services.wait_until(lambda: sent_meanwhile, 10.0, message="the engine holding the request")
        assert sent_meanwhile == [True], "the tick after the line did not find the request held"
        assert run.join(10.0) is None
    finally:
        logging.getLogger(ENGINE_LOG).removeHandler(handler)
    assert engine.storage.fetch("v0") == 2


def test_a_pinned_task_waits_for_a_worker_of_its_own_topic(
    scripted: Any, redis_flushed_url: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    elsewhere = scripted()  # offers Add on the engine's topic, where the pinned task must not go
    pinned = Add(name="add0", provides="v0")
    pinned.worker_topic = f"pinned-{uuid.uuid4().hex[:8]}"  # type: ignore[attr-defined]
    clock = FakeClock()
    engine = load(pinned, redis_flushed_url, topic, store={"value": 1}, clock=clock)
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: events.saw("add0", st.RUNNING), 5.0, message="the atom starting")
    _held_for_a_worker(caplog, "execute request of atom 'add0'")  # before time moves, as above
    clock.advance(1.0)
    _reader_moved_on(clock)
    assert not run.done

    own = scripted(topic=pinned.worker_topic)  # type: ignore[attr-defined]
    clock.advance(0.3)
    assert run.join(10.0) is None

    assert engine.storage.fetch("v0") == 2
    assert [r["name"] for r in own.requests()] == ["add0"]
    assert elsewhere.requests() == []


# -- max_in_flight counts the requests out, not those held for a worker ---------------------


class Held:
    """A scripted worker's handler that answers an execute only when the test says so (reverts at once).

    Args:
        start: say RUNNING on reading an execute (a running request whose worker is
            advertised never times out); otherwise it stays PENDING until answered.
    """

    def __init__(self, start: bool = False) -> None:
        self._start = start
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[bytes, dict[str, Any]]] = {}  # by atom name, unanswered

    def __call__(self, worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        if request["action"] == protocol.REVERT:
            add_one(worker, entry_id, request)
            return
        if self._start:
            worker.reply(request, protocol.RUNNING)
        with self._lock:
            self._entries[request["name"]] = (entry_id, request)

    def answer(self, worker: ScriptedWorker, name: str) -> None:
        """Answer the request of atom ``name`` as :func:`add_one` does (which deletes its entry).

        Waits for the handler to have it: a worker records a request as read just before handling it.
        """
        services.wait_until(lambda: self._has(name), 5.0, message=f"the request of {name} handled")
        with self._lock:
            entry_id, request = self._entries.pop(name)
        add_one(worker, entry_id, request)

    def _has(self, name: str) -> bool:
        with self._lock:
            return name in self._entries


def _names_received(worker: ScriptedWorker, count: int) -> list[str]:
    """The atoms of the requests ``worker`` read, once it has read ``count`` of them."""
    services.wait_until(lambda: len(worker.requests()) >= count, 5.0, message=f"{count} request(s) read")
    return [r["name"] for r in worker.requests()]


def test_a_request_held_for_a_worker_takes_no_room_in_the_window(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    worker = scripted()  # offers Add, not Other
    clock = FakeClock()  # never moved until the end: the held request cannot time out meanwhile
    flow = unordered_flow.Flow("f").add(
        Other(name="lonely", provides="x", inject={"value": 1}),  # first: held before the other is sent
        Add(name="served", provides="y", inject={"value": 10}),
    )
    engine = load(flow, redis_flushed_url, topic, max_in_flight=1, clock=clock)
    events = Events(engine)
    run = BackgroundRun(engine)

    services.wait_until(lambda: events.saw("served", st.SUCCESS), 5.0, message="the served atom finishing")
    assert not events.saw("lonely", st.SUCCESS) and not events.saw("lonely", st.FAILURE)
    assert [r["name"] for r in worker.requests()] == ["served"]

    worker.tasks = (ADD, OTHER)
    worker.advertise()
    clock.advance(0.3)  # the reader's next look finds a worker for the held one
    assert run.join(10.0) is None
    assert (engine.storage.fetch("x"), engine.storage.fetch("y")) == (2, 11)
    assert [r["name"] for r in worker.requests()] == ["served", "lonely"]


def test_a_send_under_the_window_costs_what_it_sends_not_the_requests_held(
    scripted: Any, redis_flushed_url: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowkit.engines.worker_based._directory import Directory

    lookups = [0]
    route = Directory.route

    def counted(self: Directory, atom: str, task: str) -> str | None:
        lookups[0] += 1
        return route(self, atom, task)

    monkeypatch.setattr(Directory, "route", counted)
    scripted()  # offers Add, not Other
    clock = FakeClock()  # stands still while the offered tasks run: the held ones stay held
    held, offered = 300, 30
    flow = unordered_flow.Flow("f").add(
        *(Other(name=f"o{i}", inject={"value": i}) for i in range(held)),
        *(Add(name=f"a{i}", provides=f"r{i}", inject={"value": i}) for i in range(offered)),
    )
    engine = load(flow, redis_flushed_url, topic, max_in_flight=1, clock=clock)
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(
        lambda: all(events.saw(f"a{i}", st.SUCCESS) for i in range(offered)), 20.0, message="the offered done"
    )
    # About 1300: each request is routed as it is made and as it leaves, and the held ones
    # at each look for workers (one or two here); a send that walked the held requests
    # would add 300 at each of the 30 sends.
    assert lookups[0] < 6 * (held + offered), lookups[0]

    clock.advance(5.1)  # the held requests time out; their reverts are held in turn
    services.wait_until(
        lambda: all(events.saw(f"a{i}", st.REVERTED) for i in range(offered)), 20.0, message="a* reverted"
    )
    clock.advance(5.1)
    assert isinstance(run.join(10.0), exc.WrappedFailure | exc.RequestTimeout)


def test_held_requests_released_together_go_out_no_more_than_the_window_at_once(
    scripted: Any, redis_flushed_url: str, topic: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    clock = FakeClock()
    names = [f"o{i}" for i in range(5)]
    flow = unordered_flow.Flow("fan").add(
        *(Other(name=name, provides=f"r{i}", inject={"value": i}) for i, name in enumerate(names))
    )
    engine = load(flow, redis_flushed_url, topic, max_in_flight=2, clock=clock)
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: all(events.saw(n, st.RUNNING) for n in names), 5.0, message="all started")
    _held_for_a_worker(caplog)  # all five are held in one batch (none takes room): nobody offers Other

    held = Held()
    worker = scripted(held, tasks=(OTHER,))
    stream = protocol.requests_key(NS, topic)
    clock.advance(0.3)  # the reader's next look finds the worker for all five at once
    for answered, name in enumerate(names):
        assert _names_received(worker, min(answered + 2, 5)) == names[: answered + 2]
        clock.advance(0.3)
        _reader_moved_on(clock)  # another look for workers sends no more than the room left
        assert client.xlen(stream) == min(2, 5 - answered)  # entries out and unanswered
        held.answer(worker, name)

    assert run.join(10.0) is None
    assert [engine.storage.fetch(f"r{i}") for i in range(5)] == [1, 2, 3, 4, 5]
    assert [r["name"] for r in worker.requests()] == names


def test_a_held_request_whose_worker_comes_goes_ahead_of_newer_ones_when_room_frees(
    scripted: Any, redis_flushed_url: str, topic: str, client: Any
) -> None:
    held = Held()
    worker = scripted(held)  # offers Add, not Other (yet)
    clock = FakeClock()
    flow = unordered_flow.Flow("f").add(
        Other(name="lonely", provides="x", inject={"value": 1}),
        Add(name="a0", provides="y0", inject={"value": 10}),
        Add(name="a1", provides="y1", inject={"value": 20}),
    )
    engine = load(flow, redis_flushed_url, topic, max_in_flight=1, clock=clock)
    run = BackgroundRun(engine)
    assert _names_received(worker, 1) == ["a0"]  # lonely held, a1 waits for room

    worker.tasks = (ADD, OTHER)
    worker.advertise()
    clock.advance(0.3)
    _reader_moved_on(clock)  # the reader found lonely a worker, but no room: it stays held
    assert client.xlen(protocol.requests_key(NS, topic)) == 1

    held.answer(worker, "a0")
    assert _names_received(worker, 2) == ["a0", "lonely"]  # the freed slot goes to the older request
    held.answer(worker, "lonely")
    assert _names_received(worker, 3) == ["a0", "lonely", "a1"]
    held.answer(worker, "a1")

    assert run.join(10.0) is None
    assert [engine.storage.fetch(name) for name in ("x", "y0", "y1")] == [2, 11, 21]


def test_a_held_request_the_full_window_leaves_no_room_for_times_out_saying_so(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    held = Held(start=True)
    worker = scripted(held)  # offers Add, not Other (yet)
    clock = FakeClock()
    flow = unordered_flow.Flow("f").add(
        Other(name="lonely", inject={"value": 1}), Add(name="busy", inject={"value": 10})
    )
    engine = load(flow, redis_flushed_url, topic, max_in_flight=1, clock=clock)
    events = Events(engine)
    run = BackgroundRun(engine)
    assert _names_received(worker, 1) == ["busy"]
    worker.tasks = (ADD, OTHER)
    worker.advertise()

    clock.advance(4.9)  # lonely finds its worker, but busy keeps the only slot
    _reader_moved_on(clock)
    assert not events.saw("lonely", st.FAILURE), "timed out before transition_timeout"
    clock.advance(0.3)  # its deadline, set when it began to wait for a worker, has passed
    services.wait_until(lambda: events.saw("lonely", st.FAILURE), 5.0, message="lonely timing out")
    held.answer(worker, "busy")  # the flow reverts once busy is done: both reverts are answered
    error = run.join(10.0)

    assert isinstance(error, exc.RequestTimeout), repr(error)
    failure = failure_of(engine, "lonely")
    assert failure.check(exc.RequestTimeout)
    for part in ("'lonely'", "a worker offers its task", "1 request(s) out at once (max_in_flight)", "5 s"):
        assert part in str(failure)
    first, *reverts = [(r["name"], r["action"]) for r in worker.requests()]
    assert first == ("busy", protocol.EXECUTE)  # lonely's execute never went out
    assert sorted(reverts) == [("busy", protocol.REVERT), ("lonely", protocol.REVERT)]


@dataclass(frozen=True)
class WaitingForRoom:
    """A run in which ``late`` waits for room, routed to ``first``, whose only worker has just left.

    ``busy`` (task Other) runs on ``keeper``, the worker of ``second``, and keeps the
    only slot (max_in_flight=1) until the test answers it through ``held``.
    """

    engine: Any
    run: BackgroundRun
    events: Events
    clock: FakeClock
    held: Held
    keeper: ScriptedWorker
    leaver: ScriptedWorker
    first: str


def _waiting_for_room(scripted: Any, url: str) -> WaitingForRoom:
    first, second = f"t-{uuid.uuid4().hex[:12]}", f"t-{uuid.uuid4().hex[:12]}"
    held = Held(start=True)
    keeper = scripted(held, topic=second, tasks=(OTHER,))
    leaver = scripted(topic=first, tasks=(ADD,))
    clock = FakeClock()
    flow = unordered_flow.Flow("f").add(
        Other(name="busy", provides="x", inject={"value": 1}),
        Add(name="late", provides="y", inject={"value": 10}),
    )
    engine = engines.load(
        flow, engine="worker-based", url=url, topics=[first, second],
        max_in_flight=1, clock=clock, transition_timeout=5.0,
    )  # fmt: skip
    events = Events(engine)
    run = BackgroundRun(engine)
    assert _names_received(keeper, 1) == ["busy"]  # late, routed to the first topic, waits for room
    leaver.withdraw()  # the first topic's only worker goes away
    leaver.stop()
    return WaitingForRoom(engine, run, events, clock, held, keeper, leaver, first)


def test_a_request_waiting_for_room_goes_to_the_topic_that_offers_its_task_when_room_frees(
    scripted: Any, redis_flushed_url: str, client: Any
) -> None:
    w = _waiting_for_room(scripted, redis_flushed_url)
    w.keeper.tasks = (ADD, OTHER)  # the second topic's worker now offers late's task
    w.keeper.advertise()
    w.clock.advance(0.3)
    _reader_moved_on(w.clock)  # the engine has looked for workers since

    w.held.answer(w.keeper, "busy")
    assert _names_received(w.keeper, 2) == ["busy", "late"]
    w.held.answer(w.keeper, "late")
    assert w.run.join(10.0) is None
    assert (w.engine.storage.fetch("x"), w.engine.storage.fetch("y")) == (2, 11)
    assert w.leaver.requests() == []
    assert client.xlen(protocol.requests_key(NS, w.first)) == 0  # nothing left for a worker gone


def test_a_request_waiting_for_room_nobody_offers_when_room_frees_is_held_then_times_out(
    scripted: Any, redis_flushed_url: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    w = _waiting_for_room(scripted, redis_flushed_url)
    w.clock.advance(0.3)
    _reader_moved_on(w.clock)  # the engine has seen the first topic's worker leave

    w.held.answer(w.keeper, "busy")
    # Late is RUNNING since the start, as the engine sees it; it leaves the line in the
    # engine's thread once busy's answer is read, and is held then, its deadline set.
    _held_for_a_worker(caplog)
    _reader_moved_on(w.clock)
    assert client.xlen(protocol.requests_key(NS, w.first)) == 0  # held, not sent to the worker gone
    w.clock.advance(5.1)  # its deadline, set as it left the line
    services.wait_until(lambda: w.events.saw("late", st.FAILURE), 5.0, message="late timing out")
    # Its revert, which nobody offers yet, is held before time moves: held after the
    # reader's one tick on the moved clock, it would wait for another that never comes.
    _held_for_a_worker(caplog, "revert request of atom 'late'")
    w.keeper.tasks = (ADD, OTHER)  # so that late's revert is answered
    w.keeper.advertise()
    w.clock.advance(0.3)
    error = w.run.join(10.0)

    assert isinstance(error, exc.RequestTimeout), repr(error)
    assert "no live worker offered its task within 5 s" in str(failure_of(w.engine, "late"))
    first, *reverts = [(r["name"], r["action"]) for r in w.keeper.requests()]
    assert first == ("busy", protocol.EXECUTE)  # late's execute never went out
    assert sorted(reverts) == [("busy", protocol.REVERT), ("late", protocol.REVERT)]
    assert w.leaver.requests() == []


# -- a request that cannot be added to its topic's stream --------------------------------


def _restore_stream(client: Any, stream: str) -> Callable[[], None]:
    """What makes ``stream`` a stream again, with the workers' group (for a revert to go out)."""

    def restore() -> None:
        client.delete(stream)
        client.xgroup_create(stream, protocol.GROUP, id="0", mkstream=True)

    return restore


def _check_unsent(failure: Failure, topic: str, error: str) -> None:
    """``failure`` says the execute of add0 could not be sent, where, and why."""
    message = failure.exception_str
    stream = protocol.requests_key(NS, topic)
    for part in ("execute request of atom 'add0'", ADD, "could not be sent", f"stream '{stream}'", error):
        assert part in message, (part, message)
    assert "no live worker offered" not in message


def test_a_held_request_redis_refuses_to_add_fails_saying_so_and_the_run_resumes(
    scripted: Any, redis_flushed_url: str, topic: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    clock = FakeClock()
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, clock=clock)
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: events.saw("add0", st.RUNNING), 5.0, message="the atom starting")
    _held_for_a_worker(caplog, "execute request of atom 'add0'")  # no worker offers its task yet
    stream = protocol.requests_key(NS, topic)
    client.set(stream, b"not a stream")  # every XADD to it is refused: WRONGTYPE
    events.on("add0", st.FAILURE, _restore_stream(client, stream))  # before its revert is sent
    worker = scripted()  # offers Add: the reader's next look releases the request, and the send fails

    clock.advance(0.3)
    _reader_moved_on(clock)
    clock.advance(5.0)  # past the deadline, whatever became of it
    error = run.join(10.0)

    assert isinstance(error, exc.ExecutionFailure), repr(error)
    _check_unsent(failure_of(engine, "add0"), topic, "WRONGTYPE")
    # Failed as any task fails: reverted on the worker, the flow reverted, nothing left out.
    assert [(r["name"], r["action"]) for r in worker.requests()] == [("add0", protocol.REVERT)]
    assert engine.storage.get_atom_state("add0") == st.REVERTED
    assert engine.storage.get_flow_state() == st.REVERTED
    assert client.xlen(stream) == 0

    engine.run()  # and run again, it finishes

    assert engine.storage.fetch("v0") == 2
    assert engine.storage.get_flow_state() == st.SUCCESS


def test_a_new_request_redis_refuses_to_add_fails_at_once_naming_the_stream(
    scripted: Any, redis_flushed_url: str, topic: str, client: Any
) -> None:
    worker = scripted()
    stream = protocol.requests_key(NS, topic)
    client.delete(stream)
    client.set(stream, b"not a stream")
    clock = FakeClock()
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, clock=clock)
    events = Events(engine)
    events.on("add0", st.FAILURE, _restore_stream(client, stream))
    began = clock.monotonic()

    with pytest.raises(exc.ExecutionFailure) as raised:
        engine.run()

    assert clock.monotonic() - began < 1.0  # not retried until the deadline: it would fail the same
    assert not isinstance(raised.value, exc.RequestTimeout)
    _check_unsent(failure_of(engine, "add0"), topic, "WRONGTYPE")
    assert [(r["name"], r["action"]) for r in worker.requests()] == [("add0", protocol.REVERT)]
    assert engine.storage.get_atom_state("add0") == st.REVERTED


def test_a_refused_add_in_a_batch_does_not_send_the_others_again(
    scripted: Any, redis_flushed_url: str, client: Any
) -> None:
    fine, broken = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    adder = scripted(topic=fine)
    other = scripted(topic=broken, tasks=(OTHER,))
    stream = protocol.requests_key(NS, broken)
    client.delete(stream)
    client.set(stream, b"not a stream")
    flow = unordered_flow.Flow("f").add(
        Add(name="add", inject={"value": 1}), Other(name="other", inject={"value": 2})
    )  # one scheduling round: both requests leave in one pipeline
    engine = engines.load(
        flow, engine="worker-based", url=redis_flushed_url, topics=[fine, broken],
        clock=FakeClock(), transition_timeout=5.0,
    )  # fmt: skip
    events = Events(engine)
    events.on("other", st.FAILURE, _restore_stream(client, stream))

    with pytest.raises(exc.ExecutionFailure, match="WRONGTYPE"):
        engine.run()

    # The request added with the refused one went out once, and was reverted as any other.
    assert [(r["name"], r["action"]) for r in adder.requests()] == [
        ("add", protocol.EXECUTE),
        ("add", protocol.REVERT),
    ]
    assert [(r["name"], r["action"]) for r in other.requests()] == [("other", protocol.REVERT)]
    assert engine.storage.get_atom_state("add") == st.REVERTED
    assert engine.storage.get_atom_state("other") == st.REVERTED


class CuttingProxy:
    """A TCP proxy in front of Redis that, while ``cutting`` is set, drops any connection adding a request.

    The engine then loses its connection in the middle of an XADD to a topic's stream,
    as on a network fault, while its other commands (looking for workers, reading
    replies) go through. A request's pipeline is small enough to come in one read.
    With ``losing`` set instead, the next XADD of a request reaches Redis and the
    connection drops before its reply comes back (once: ``losing`` is then cleared),
    so the engine cannot tell whether the request was added.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self.cutting = threading.Event()
        self.cuts = 0
        self.losing = threading.Event()
        self.lost = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="cutting-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self._server.accept()
            except OSError:  # closed
                return
            far = socket.create_connection(("127.0.0.1", self._upstream))
            self._sockets += [near, far]
            lose_reply = threading.Event()  # this connection's next reply is dropped, and it with it
            threading.Thread(target=self._pump, args=(near, far, True, lose_reply), daemon=True).start()
            threading.Thread(target=self._pump, args=(far, near, False, lose_reply), daemon=True).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, from_engine: bool, lose_reply: threading.Event
    ) -> None:
        try:
            while data := source.recv(65536):
                adds = from_engine and b"XADD" in data and b":requests:" in data
                if adds and self.cutting.is_set():
                    self.cuts += 1
                    break
                if adds and self.losing.is_set():
                    self.losing.clear()
                    self.lost += 1
                    lose_reply.set()  # before Redis can answer
                elif not from_engine and lose_reply.is_set():
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()
        for end in self._sockets:
            end.close()


def _sends_cut_until_the_deadline(
    clock: FakeClock, proxy: CuttingProxy, run: BackgroundRun
) -> BaseException | None:
    """Let the reader's ticks try a cut send again, then pass its 5 s deadline; return the run's error."""
    for _ in range(3):  # the reader's ticks try it again
        clock.advance(0.3)
        _reader_moved_on(clock)
    assert proxy.cuts >= 2  # tried again at each look, not given up on
    assert not run.done, "a send that may work next time failed before the deadline"
    clock.advance(5.0)
    return run.join(10.0)


@pytest.fixture
def cutting_proxy(redis_server: Any, redis_flushed_url: str) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(redis_server.port)
    yield proxy
    proxy.close()


def test_a_held_request_whose_sends_fail_until_its_deadline_times_out_saying_why(
    scripted: Any, cutting_proxy: CuttingProxy, topic: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    clock = FakeClock()
    url = f"redis://127.0.0.1:{cutting_proxy.port}/0"
    engine = load(
        chain(1), url, topic, store={"value": 1}, clock=clock, retry_options={"attempts": 1, "backoff": 0.0}
    )
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: events.saw("add0", st.RUNNING), 5.0, message="the atom starting")
    _held_for_a_worker(caplog, "execute request of atom 'add0'")  # no worker offers its task yet
    cutting_proxy.cutting.set()
    events.on("add0", st.FAILURE, cutting_proxy.cutting.clear)  # its revert goes out
    worker = scripted()  # straight to Redis: the reader finds it, and its sends are cut

    error = _sends_cut_until_the_deadline(clock, cutting_proxy, run)

    assert isinstance(error, exc.RequestTimeout), repr(error)
    failure = failure_of(engine, "add0")
    assert failure.check(exc.RequestTimeout)
    _check_unsent(failure, topic, "ConnectionError")
    assert "within 5 s" in failure.exception_str
    assert [(r["name"], r["action"]) for r in worker.requests()] == [("add0", protocol.REVERT)]
    assert engine.storage.get_atom_state("add0") == st.REVERTED
    assert client.xlen(protocol.requests_key(NS, topic)) == 0


def test_a_new_request_whose_sends_fail_until_its_deadline_times_out_saying_why(
    scripted: Any, cutting_proxy: CuttingProxy, topic: str
) -> None:
    worker = scripted()
    clock = FakeClock()
    url = f"redis://127.0.0.1:{cutting_proxy.port}/0"
    engine = load(
        chain(1), url, topic, store={"value": 1}, clock=clock, retry_options={"attempts": 1, "backoff": 0.0}
    )
    events = Events(engine)
    events.on("add0", st.FAILURE, cutting_proxy.cutting.clear)  # its revert goes out
    cutting_proxy.cutting.set()
    run = BackgroundRun(engine)
    services.wait_until(lambda: cutting_proxy.cuts >= 1, 5.0, message="the first send cut")

    error = _sends_cut_until_the_deadline(clock, cutting_proxy, run)

    assert isinstance(error, exc.RequestTimeout), repr(error)
    _check_unsent(failure_of(engine, "add0"), topic, "ConnectionError")
    assert "within 5 s" in str(error)
    assert [(r["name"], r["action"]) for r in worker.requests()] == [("add0", protocol.REVERT)]
    assert engine.storage.get_atom_state("add0") == st.REVERTED


class _NoSleep(FakeClock):
    """A fake clock that records the pauses asked of it: the engine thread should ask none."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        super().sleep(seconds)


def test_a_send_that_failed_for_now_leaves_the_engine_thread_free_and_goes_out_once(
    scripted: Any, cutting_proxy: CuttingProxy, topic: str
) -> None:
    # a and b1 go out together and are held at the worker; once b1 is answered,
    # b2's send is cut. The engine thread used to retry it with pauses until
    # Redis took it or its deadline passed, deaf to a's answer meanwhile.
    deferred: dict[str, tuple[bytes, dict[str, Any]]] = {}

    def handler(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        if request["action"] == protocol.EXECUTE and request["name"] in ("a", "b1"):
            worker.reply(request, protocol.RUNNING)
            deferred[request["name"]] = (entry_id, request)  # answered by the test
        else:
            add_one(worker, entry_id, request)

    worker = scripted(handler)
    flow = unordered_flow.Flow("f").add(
        Add(name="a", inject={"value": 1}, provides="va"),
        linear_flow.Flow("chain").add(
            Add(name="b1", inject={"value": 10}, provides="v1"),
            Add(name="b2", rebind={"value": "v1"}, provides="v2"),
        ),
    )
    clock = _NoSleep()
    url = f"redis://127.0.0.1:{cutting_proxy.port}/0"
    engine = load(flow, url, topic, clock=clock, retry_options={"attempts": 1, "backoff": 0.0})
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: len(deferred) == 2, 5.0, message="a and b1 at the worker")

    cutting_proxy.cutting.set()
    entry_id, request = deferred["b1"]
    worker.finish(request, entry_id, protocol.SUCCESS, result=11)
    services.wait_until(lambda: cutting_proxy.cuts >= 1, 5.0, message="b2's send cut")
    entry_id, request = deferred["a"]
    worker.finish(request, entry_id, protocol.SUCCESS, result=2)
    services.wait_until(lambda: events.saw("a", st.SUCCESS), 5.0, message="a's answer taken")
    assert not events.saw("b2", st.FAILURE) and not run.done  # b2 waits for its next try

    cutting_proxy.cutting.clear()
    clock.advance(0.3)  # the reader's next tick sends it
    assert run.join(10.0) is None

    assert engine.storage.fetch_all() == {"va": 2, "v1": 11, "v2": 12}
    assert clock.pauses == []  # no pause between tries on the engine thread
    # Each went out once: the cut sends never reached Redis, the tick's did.
    assert sorted(r["name"] for r in worker.requests()) == ["a", "b1", "b2"]


def test_an_add_whose_reply_was_lost_goes_out_again_and_the_worker_runs_it_once(
    redis_flushed_url: str, cutting_proxy: CuttingProxy, topic: str, client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # The one way a send tried again can add a request twice: the first add reached
    # Redis, but its reply did not come back. The engine cannot tell, and sends it
    # again (from the reader's tick); the worker claims each request id once.
    from flowkit.engines.worker_based.worker import Worker
    from tests.workers.behaviour_tasks import Echo

    ScriptedWorker(redis_flushed_url, topic, add_one, tasks=(protocol.task_name(Echo),)).advertise()
    clock = FakeClock()
    url = f"redis://127.0.0.1:{cutting_proxy.port}/0"
    engine = load(
        Echo(name="echo", provides="v"), url, topic, store={"value": "once"}, clock=clock,
        retry_options={"attempts": 1, "backoff": 0.0},
    )  # fmt: skip
    stream = protocol.requests_key(NS, topic)
    cutting_proxy.losing.set()
    run = BackgroundRun(engine)
    services.wait_until(lambda: cutting_proxy.lost == 1, 5.0, message="the first add's reply lost")
    services.wait_until(lambda: client.exists(stream) and client.xlen(stream) == 1, 5.0, message="added")
    _reader_moved_on(clock)
    clock.advance(0.3)  # the reader's next tick sends it again
    services.wait_until(lambda: client.xlen(stream) == 2, 5.0, message="added again")
    ids = {protocol.decode(fields, None)["id"] for _, fields in client.xrange(stream)}
    assert len(ids) == 1  # the same request twice

    worker = Worker(topic=topic, tasks=["tests.workers.behaviour_tasks"], url=redis_flushed_url)
    with caplog.at_level(logging.WARNING, logger="flowkit.engines.worker_based.worker"):
        worker.start()
        try:
            assert run.join(10.0) is None
            services.wait_until(lambda: client.xlen(stream) == 0, 5.0, message="both entries settled")
        finally:
            worker.stop()

    assert engine.storage.fetch("v") == "once"
    (request_id,) = ids
    replays = [r.getMessage() for r in caplog.records if "is a replay" in r.getMessage()]
    assert len(replays) == 1 and request_id in replays[0], replays  # the second was refused, not run


@pytest.mark.parametrize(
    ("value", "expected"),
    [(object(), "arguments.value"), ("x" * 400, "bytes")],
    ids=["not-json", "too-big"],
)
def test_arguments_that_cannot_be_sent_fail_the_atom_with_invalid_format(
    scripted: Any, redis_flushed_url: str, topic: str, value: Any, expected: str
) -> None:
    worker = scripted()
    engine = load(chain(1), redis_flushed_url, topic, store={"value": value}, max_message_bytes=400)

    with pytest.raises(Exception):  # noqa: B017, PT011 - the execute and the revert failures, wrapped
        engine.run()

    failure = failure_of(engine, "add0")
    assert failure.check(exc.InvalidFormat)
    assert "'add0'" in failure.exception_str and expected in failure.exception_str
    assert worker.requests() == []


def test_arguments_nested_past_the_protocols_limit_fail_the_atom_before_they_are_sent(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    # A worker would refuse the request unanswered, leaving the atom to time out.
    worker = scripted()
    value: Any = []
    for _ in range(protocol.MAX_DEPTH):
        value = [value]
    engine = load(chain(1), redis_flushed_url, topic, store={"value": value})

    with pytest.raises(Exception):  # noqa: B017, PT011 - the execute and the revert failures, wrapped
        engine.run()

    failure = failure_of(engine, "add0")
    assert failure.check(exc.InvalidFormat)
    assert "'add0'" in failure.exception_str and "deeper than the limit of 512" in failure.exception_str
    assert worker.requests() == []


# -- signing -------------------------------------------------------------------------


def test_with_a_secret_unsigned_responses_are_ignored(
    scripted: Any, redis_flushed_url: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    def forger(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        worker.reply(request, protocol.SUCCESS, result="forged", signed=False)
        worker.reply(request, protocol.SUCCESS, result="real")
        worker.ack(entry_id)

    worker = scripted(forger, secret="s3cret")
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, secret="s3cret")

    with caplog.at_level(logging.WARNING, logger=ENGINE_LOG):
        engine.run()

    assert engine.storage.fetch("v0") == "real"
    assert any("not signed" in r.getMessage() for r in caplog.records)
    assert all(b"sig" in fields for fields in worker.envelopes)  # the engine signs its requests
    assert worker.requests()[0]["name"] == "add0"  # decoded with the secret: it was signed


def test_with_a_secret_an_unsigned_advertisement_does_not_count(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    scripted()  # advertises without signing
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, secret="s3cret", worker_wait=0.2)

    with pytest.raises(exc.NotFound):
        engine.run()


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"topics": ["t"]}, "url"),
        ({"url": "http://localhost", "topics": ["t"]}, "url"),
        ({"url": "redis://localhost", "topics": 3}, "topics"),
        ({"url": "redis://localhost", "topics": ["ok", ""]}, "topics"),
        ({"url": "redis://localhost", "topic": 3}, "topic"),
        ({"url": "redis://localhost", "topic": "t", "transition_timeout": 0}, "transition_timeout"),
        ({"url": "redis://localhost", "topic": "t", "transition_timeout": True}, "transition_timeout"),
        ({"url": "redis://localhost", "topic": "t", "worker_wait": -1}, "worker_wait"),
        ({"url": "redis://localhost", "topic": "t", "max_in_flight": 0}, "max_in_flight"),
        ({"url": "redis://localhost", "topic": "t", "max_message_bytes": "big"}, "max_message_bytes"),
        ({"url": "redis://localhost", "topic": "t", "key_prefix": ""}, "key_prefix"),
        ({"url": "redis://localhost", "topic": "t", "secret": 42}, "secret"),
        ({"url": "redis://localhost", "topic": "t", "clock": object()}, "clock"),
        ({"url": "redis://localhost", "topic": "t", "retry_options": {"attempts": 0}}, "retry_options"),
        ({"url": "redis://localhost", "topic": "t", "retry_options": {"tries": 2}}, "retry_options"),
        ({"url": "redis://localhost", "topic": "t", "max_workers": 2, "strict": True}, "max_workers"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(options: dict[str, Any], option: str) -> None:
    with pytest.raises(exc.InvalidEngineOption) as raised:
        engines.load(chain(1), store={"value": 1}, engine="worker-based", **options)

    assert raised.value.option == option
    assert option in str(raised.value)


def test_importing_the_package_does_not_import_redis() -> None:
    code = "import sys, flowkit.engines, flowkit.engines.worker_based; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- Redis trouble -------------------------------------------------------------------


def test_losing_redis_mid_run_stops_the_run_with_the_atom_in_doubt(
    scripted: Any, redis_server: Any, redis_flushed_url: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Before outage_timeout the request timed out and its revert could not be sent
    # either: REVERT_FAILURE, a flow that no resume could finish.
    caplog.set_level(logging.WARNING, logger=ENGINE_LOG)
    held: list[bytes] = []

    def hold(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        worker.reply(request, protocol.RUNNING)
        held.append(entry_id)

    scripted(hold)
    # Engine time moves only when told: however slow the worker's answer or the reader's
    # first look at the dead server, the request cannot time out before the outage began.
    clock = FakeClock()
    engine = load(
        chain(1),
        redis_flushed_url,
        topic,
        store={"value": 1},
        transition_timeout=0.5,
        outage_timeout=1.0,
        retry_options={"attempts": 1, "backoff": 0.05},
        clock=clock,
    )
    run = BackgroundRun(engine)
    try:
        services.wait_until(lambda: held, 5.0, message="the request reaching the worker")
        redis_server.stop()
        services.wait_until(
            lambda: any("lost contact with Redis" in r.getMessage() for r in caplog.records),
            30.0,
            message="the engine's reader losing Redis",
        )
        clock.advance(1.1)  # past the request's deadline and past outage_timeout
        error = run.join(20.0)
    finally:
        redis_server.start()

    assert isinstance(error, exc.ExecutionFailure), repr(error)
    assert f"lost Redis at {redis_flushed_url}" in str(error), str(error)
    assert "atom(s) 'add0' in doubt" in str(error), str(error)
    assert engine.storage.get_atom_state("add0") == st.RUNNING  # for a resume to run again
    assert engine.storage.get_flow_state() == st.FAILURE
    assert not engine.storage.get_revert_failures()


def test_a_replies_stream_redis_refuses_to_read_stops_the_run_at_once_saying_so(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    # Something wrote a string over the engine's replies stream (or an ACL forbids
    # reading it): every XREAD is refused. That was taken for a lost connection,
    # and the run stopped only after outage_timeout, saying Redis was unreachable.
    held: list[bytes] = []

    def clobber(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        worker.reply(request, protocol.RUNNING)
        worker.client.delete(request["reply_to"])
        worker.client.set(request["reply_to"], "not a stream")
        held.append(entry_id)

    scripted(clobber)
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, outage_timeout=30.0)
    run = BackgroundRun(engine)
    services.wait_until(lambda: held, 5.0, message="the request reaching the worker")
    error = run.join(10.0)  # well within outage_timeout
    assert isinstance(error, exc.ExecutionFailure), repr(error)
    text = str(error)
    assert "refused to read" in text and "WRONGTYPE" in text, text
    assert protocol.replies_key(NS, "") in text and "atom(s) 'add0' in doubt" in text, text
    assert engine.storage.get_atom_state("add0") == st.RUNNING  # for a resume to run again


@pytest.fixture
def pre_arrivals_engine_url(redis_flushed_url: str) -> Iterator[str]:
    """The URL of an engine's ACL user set up before arrivals existed: its keys but ``flowkit:arrivals``."""
    user = f"fk-{uuid.uuid4().hex[:8]}"
    keys = [f"~{NS}:{kind}" for kind in ("requests:*", "workers:*", "worker:*", "topics", "replies:*")]
    admin = redis.Redis.from_url(redis_flushed_url)
    admin.execute_command("ACL", "SETUSER", user, "on", ">pw", *keys, "&*", "+@all")
    try:
        yield redis_flushed_url.replace("redis://", f"redis://{user}:pw@", 1)
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


@pytest.mark.parametrize("refusal", ["acl-at-start", "wrongtype-while-held"])
def test_an_arrivals_stream_redis_refuses_costs_promptness_not_the_run(
    scripted: Any,
    redis_flushed_url: str,
    pre_arrivals_engine_url: str,
    topic: str,
    client: Any,
    caplog: pytest.LogCaptureFixture,
    refusal: str,
) -> None:
    # Refused from the start (an ACL older than the stream), or once held (a string written
    # over it): either way the engine says so once and finds the worker at its next look.
    caplog.set_level(logging.INFO, logger=ENGINE_LOG)
    clock = FakeClock()
    url = pre_arrivals_engine_url if refusal == "acl-at-start" else redis_flushed_url
    # A short transition_timeout makes the looks more frequent than LOOK_EVERY (every 0.2 s).
    engine = load(chain(1), url, topic, store={"value": 1}, clock=clock, transition_timeout=0.8)
    run = BackgroundRun(engine)
    _held_for_a_worker(caplog, "execute request of atom 'add0'")
    if refusal == "wrongtype-while-held":
        client.set(protocol.arrivals_key(NS), "not a stream")
    refused = f"cannot read the arrivals stream '{protocol.arrivals_key(NS)}'"
    services.wait_until(
        lambda: [r for r in caplog.records if refused in r.getMessage()], 5.0, message="the refusal said"
    )

    worker = scripted()
    clock.advance(0.3)  # the reader's next look finds it
    assert run.join(10.0) is None

    assert engine.storage.fetch("v0") == 2
    assert [request["name"] for request in worker.requests()] == ["add0"]
    said = [r for r in caplog.records if refused in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING], said
    assert "next periodic look for workers (every 0.2 s)" in said[0].getMessage()


# -- with the real Python worker ----------------------------------------------------------


@pytest.fixture
def python_worker_thread(redis_flushed_url: str, topic: str) -> Iterator[Any]:
    from flowkit.engines.worker_based.worker import Worker

    worker = Worker(
        topic=topic,
        tasks=["tests.workers.behaviour_tasks"],
        url=redis_flushed_url,
        heartbeat=0.2,
        visibility_timeout=1.0,
        grace=1.0,
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def test_flows_run_on_the_python_worker(
    python_worker_thread: Any, redis_flushed_url: str, topic: str
) -> None:
    from tests.workers.behaviour_tasks import Echo, Sleep

    flow = linear_flow.Flow("both").add(
        Echo(name="first", provides="x"),
        unordered_flow.Flow("fan").add(
            *(Echo(name=f"e{i}", provides=f"r{i}", rebind={"value": "x"}) for i in range(20))
        ),
        Sleep(name="nap", inject={"seconds": 0.2}),
    )
    engine = load(flow, redis_flushed_url, topic, store={"value": [1, "two"]})
    events = Events(engine)

    engine.run()

    assert [engine.storage.fetch(f"r{i}") for i in range(20)] == [[1, "two"]] * 20
    assert 0.5 in events.progress_of("nap")


def test_a_failure_on_the_python_worker_reverts_the_flow_there(
    python_worker_thread: Any, redis_flushed_url: str, topic: str
) -> None:
    from tests.workers.behaviour_tasks import Echo, Fail

    flow = linear_flow.Flow("undo").add(Echo(name="first", provides="a"), Fail(name="fail"))
    engine = load(flow, redis_flushed_url, topic, store={"value": 3, "message": "no space left"})

    with pytest.raises(Exception, match="no space left"):  # noqa: PT011 - the remote TaskFailed
        engine.run()

    assert failure_of(engine, "fail").check("flowkit_go_tasks.TaskFailed")
    assert engine.storage.get_atom_state("first") == st.REVERTED
    assert engine.storage.get_atom_state("fail") == st.REVERTED


def test_key_prefix_names_the_redis_keys_and_namespace_stays_the_entry_point_group(
    redis_flushed_url: str, topic: str, client: Any
) -> None:
    from flowkit.engines.helpers import ENTRY_POINT_GROUP
    from flowkit.engines.worker_based.worker import Worker
    from tests.workers.behaviour_tasks import Echo

    worker = Worker(
        topic=topic,
        tasks=["tests.workers.behaviour_tasks"],
        url=redis_flushed_url,
        key_prefix="elsewhere",
        heartbeat=0.2,
    )
    worker.start()
    try:
        engine = load(
            Echo(name="echo", provides="v"),
            redis_flushed_url,
            topic,
            store={"value": "prefixed"},
            key_prefix="elsewhere",
            namespace=ENTRY_POINT_GROUP,  # where engines are looked up: not a key prefix
        )
        assert "namespace" not in engine.options
        engine.run()
    finally:
        worker.stop()
    assert engine.storage.fetch("v") == "prefixed"
    assert client.exists(protocol.requests_key("elsewhere", topic))
    assert not list(client.scan_iter(f"{NS}:*"))


def test_without_a_secret_the_engine_warns_once_that_results_can_be_forged(
    scripted: Any, redis_flushed_url: str, topic: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from flowkit.engines.worker_based import engine as engine_module

    monkeypatch.setattr(engine_module, "_WARNED_UNSIGNED", set())
    caplog.set_level(logging.WARNING, logger=ENGINE_LOG)
    scripted()
    for _ in range(2):
        load(chain(1), redis_flushed_url, topic, store={"value": 1}).run()
    warnings = [r.getMessage() for r in caplog.records if "signing secret" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "forge" in warnings[0] and protocol.SECRET_ENV in warnings[0]


def test_with_a_secret_the_engine_does_not_warn_about_signing(
    scripted: Any, redis_flushed_url: str, topic: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from flowkit.engines.worker_based import engine as engine_module

    monkeypatch.setattr(engine_module, "_WARNED_UNSIGNED", set())
    caplog.set_level(logging.WARNING, logger=ENGINE_LOG)
    scripted(secret="s3cret")
    load(chain(1), redis_flushed_url, topic, store={"value": 1}, secret="s3cret").run()
    assert not [r for r in caplog.records if "signing secret" in r.getMessage()]


def _answers_badly(body_of: Callable[[ScriptedWorker, dict[str, Any]], dict[str, Any]]) -> Handler:
    """A handler that starts each request, then answers it with ``body_of``'s message, signed, and acks it."""

    def handle(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        worker.reply(request, protocol.RUNNING)
        body = json.dumps(body_of(worker, request)).encode()
        envelope = (
            {"body": body}
            if worker.secret is None
            else {"body": body, "sig": protocol.sign(body, worker.secret)}
        )
        pipe = worker.client.pipeline(transaction=True)
        pipe.xadd(request["reply_to"], envelope)  # type: ignore[arg-type]
        pipe.xack(worker.stream, protocol.GROUP, entry_id)
        pipe.xdel(worker.stream, entry_id)
        pipe.execute()

    return handle


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"event": "success"}, "success response has no 'result' field"),
        ({"event": "failure", "failure": {"version": 1}}, "failure record 'failure'"),
        ({"v": 2, "event": "success", "result": 1}, "unsupported protocol version 2"),
    ],
)
def test_a_reply_the_engine_cannot_read_fails_its_atom_instead_of_hanging_the_run(
    scripted: Any, redis_flushed_url: str, topic: str, bad: dict[str, Any], said: str
) -> None:
    # The worker stays alive and advertised, so no timeout ever fired: the run hung.
    def body(worker: ScriptedWorker, request: dict[str, Any]) -> dict[str, Any]:
        message = {
            "v": 1,
            "type": "response",
            "id": request["id"],
            "worker": worker.worker_id,
            "sent_at": 1.0,
        }
        return {**message, **bad}

    scripted(_answers_badly(body), secret="s3cret")
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1}, secret="s3cret")
    with pytest.raises(exc.InvalidFormat) as raised:
        engine.run()
    text = str(raised.value)
    assert "atom 'add0'" in text and said in text and "scripted-" in text


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("result", "said"),
    [
        ('"' + "x" * 3000 + '"', "over the limit of 2000 bytes"),
        ("[" * 600 + "]" * 600, "deeper than the limit of 512"),
        ("1e400", "too large for a double"),
    ],
    ids=["over-the-engines-size-limit", "nested-too-deep", "number-no-double-holds"],
)
def test_an_answer_the_engine_refuses_unparsed_fails_its_atom_instead_of_hanging_the_run(
    scripted: Any, redis_flushed_url: str, topic: str, result: str, said: str
) -> None:
    # A worker whose limits are not the engine's (a larger max_message_bytes, an
    # older release) answers a body the engine refuses before it can read the id:
    # the answer was dropped and the atom waited for its live worker for ever.
    def handle(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        worker.reply(request, protocol.RUNNING)
        head = {
            "v": 1,
            "type": "response",
            "id": request["id"],
            "worker": worker.worker_id,
            "event": "success",
        }
        body = json.dumps(head, separators=(",", ":"))[:-1].encode() + b',"result":' + result.encode() + b"}"
        pipe = worker.client.pipeline(transaction=True)
        pipe.xadd(request["reply_to"], {"body": body, "sig": protocol.sign(body, b"s3cret")})
        pipe.xack(worker.stream, protocol.GROUP, entry_id)
        pipe.xdel(worker.stream, entry_id)
        pipe.execute()

    scripted(handle, secret="s3cret")
    engine = load(
        chain(1), redis_flushed_url, topic, store={"value": 1}, secret="s3cret", max_message_bytes=2000
    )
    with pytest.raises(exc.InvalidFormat) as raised:
        engine.run()
    text = str(raised.value)
    assert "atom 'add0'" in text and said in text and "scripted-" in text


def test_a_failure_record_whose_version_is_written_1_0_keeps_the_workers_failure(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    # The protocol reads 1.0 as the integer 1 (as JSON does), but the engine then
    # refused the record and failed the atom with "an unreadable failure record",
    # losing the worker's exception type and message.
    record = {
        "version": 1.0,
        "exception_str": "disk full",
        "traceback_str": "",
        "exc_type_names": ["builtins.OSError", "builtins.Exception", "builtins.BaseException"],
        "causes": [
            {"version": 1.0, "exception_str": "quota", "traceback_str": "", "exc_type_names": ["Exception"]}
        ],
    }

    def body(worker: ScriptedWorker, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "v": 1,
            "type": "response",
            "id": request["id"],
            "worker": worker.worker_id,
            "sent_at": 1.0,
            **(
                {"event": "failure", "failure": record}
                if request["action"] == "execute"
                else {"event": "success", "result": None}
            ),
        }

    scripted(_answers_badly(body))
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1})
    with pytest.raises(exc.WrappedFailure, match="OSError: disk full"):
        engine.run()
    failure = failure_of(engine, "add0")
    assert failure.check(OSError) and [c.exception_str for c in failure.causes] == ["quota"]


def test_a_malformed_progress_reply_is_ignored_and_the_final_answer_counts(
    scripted: Any, redis_flushed_url: str, topic: str
) -> None:
    # Only a final answer that cannot be read fails the atom: an event a later
    # protocol adds reads as a malformed reply here, and must not.
    def handle(worker: ScriptedWorker, entry_id: bytes, request: dict[str, Any]) -> None:
        body = {"v": 1, "type": "response", "id": request["id"], "worker": worker.worker_id, "sent_at": 1.0}
        worker.client.xadd(request["reply_to"], {"body": json.dumps({**body, "event": "telemetry"})})
        add_one(worker, entry_id, request)

    scripted(handle)
    engine = load(chain(1), redis_flushed_url, topic, store={"value": 1})
    engine.run()
    assert engine.storage.fetch("v0") == 2


# -- dynamic sub-flows spawned on a worker ---------------------------------------------------


@pytest.fixture
def spawning_worker(redis_flushed_url: str, topic: str) -> Iterator[Any]:
    from flowkit.engines.worker_based.worker import Worker

    worker = Worker(
        topic=topic,
        tasks=["tests.workers.behaviour_tasks", "tests.workers.dynamic_tasks"],
        url=redis_flushed_url,
        heartbeat=0.2,
        visibility_timeout=1.0,
        grace=1.0,
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def test_a_task_on_a_worker_spawns_a_sub_flow_that_runs_on_workers_too(
    spawning_worker: Any, redis_flushed_url: str, topic: str
) -> None:
    from tests.workers.dynamic_tasks import FanOut

    engine = load(
        FanOut(name="fan", provides="echoed"), redis_flushed_url, topic, store={"values": [1, "b", 3]}
    )
    events = Events(engine)

    engine.run()

    assert engine.storage.fetch("echoed") == [1, "b", 3]
    assert engine.storage.get_atom_state("echo-1") == st.SUCCESS
    assert events.saw("echo-2", st.SUCCESS)


def test_a_sub_flow_that_cannot_travel_fails_the_spawner_on_the_worker(
    spawning_worker: Any, redis_flushed_url: str, topic: str
) -> None:
    from tests.workers.dynamic_tasks import BadFanOut

    engine = load(BadFanOut(name="bad"), redis_flushed_url, topic)
    with pytest.raises(exc.WrappedFailure, match="spawn it with a factory"):
        engine.run()  # the remote error, wrapped as every failure from a worker is
    assert failure_of(engine, "bad").check(exc.InvalidFlowItem)
    assert engine.storage.get_atom_state("bad") == st.REVERTED


def test_a_worker_spawns_through_a_factory_marked_spawnable(
    spawning_worker: Any, redis_flushed_url: str, topic: str
) -> None:
    from tests.workers.dynamic_tasks import FactoryFanOut

    engine = load(
        FactoryFanOut(name="fan", provides="echoed"), redis_flushed_url, topic, store={"values": [4, "c"]}
    )
    engine.run()
    assert engine.storage.fetch("echoed") == [4, "c"]


def _forged_spawns(mark: Path) -> dict[str, dict[str, Any]]:
    """Results shaped like a worker's spawn record that name a function which is no flow factory."""
    return {
        "factory": {
            dynamic.RECORD_KEY: 1,
            "collect": "list",
            "factory": "tests.workers.dynamic_tasks.leave_mark",
            "args": [str(mark)],
            "kwargs": {},
        },
        "described atom": {
            dynamic.RECORD_KEY: 1,
            "collect": "list",
            "factory": None,
            "flow": {
                "pattern": "linear",
                "name": "forged",
                "items": [
                    {
                        "atom": {
                            "class": "tests.workers.dynamic_tasks.leave_mark",
                            "name": str(mark),
                            "provides": None,
                            "rebind": None,
                            "inject": None,
                        }
                    }
                ],
            },
        },
    }


@pytest.mark.parametrize("kind", ["factory", "described atom"])
def test_a_result_shaped_like_a_spawn_cannot_make_the_engine_call_any_function(
    spawning_worker: Any, redis_flushed_url: str, topic: str, tmp_path: Path, kind: str
) -> None:
    # A task echoing data it was given (or fetched) is how such a result arrives
    # from an honest worker; a hostile one can send it directly.
    from tests.workers.behaviour_tasks import Echo

    mark = tmp_path / "called"
    engine = load(Echo(name="echo"), redis_flushed_url, topic, store={"value": _forged_spawns(mark)[kind]})
    with pytest.raises(exc.InvalidFormat, match="leave_mark") as raised:
        engine.run()
    assert not mark.exists(), "the engine called a function named by a worker's result"
    assert "atom 'echo'" in str(raised.value)
    assert engine.storage.get_atom_state("echo") == st.REVERTED


def test_a_loop_runs_its_body_on_workers_and_its_until_in_the_engine(
    spawning_worker: Any, redis_flushed_url: str, topic: str
) -> None:
    import itertools

    from flowkit.patterns import loop_flow
    from tests.workers.behaviour_tasks import Echo

    asked = itertools.count(1)
    loop = loop_flow.Flow(
        "twice", Echo(name="echo", provides="seen"), until=lambda seen: next(asked) >= 2, max_iterations=3
    )
    engine = load(loop, redis_flushed_url, topic, store={"value": "hi"})
    events = Events(engine)

    engine.run()

    assert engine.storage.fetch("seen") == "hi"
    assert [state for name, state in events.states if name == "echo"].count(st.SUCCESS) == 2
    assert engine.storage.run_state.records["echo"].meta["iteration"] == 2
