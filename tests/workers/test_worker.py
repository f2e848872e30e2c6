"""The Python worker, driven through raw Redis exactly as an engine (or a stranger) would."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

redis = pytest.importorskip("redis")

from flowkit import exceptions as exc  # noqa: E402
from flowkit.engines.worker_based import protocol  # noqa: E402
from flowkit.engines.worker_based._task_call import PROGRESS_BURST, PROGRESS_INTERVAL  # noqa: E402
from flowkit.engines.worker_based._task_registry import load_tasks  # noqa: E402
from flowkit.engines.worker_based.worker import Worker  # noqa: E402
from flowkit.types.failure import Failure  # noqa: E402
from tests.conftest import wait_until  # noqa: E402
from tests.workers import worker_tasks  # noqa: E402
from tests.workers.fake_clock import FakeClock  # noqa: E402

TOPIC = "tests"
MODULE = worker_tasks.__name__
REPO = Path(__file__).resolve().parents[2]
WORKER_LOG = "flowkit.engines.worker_based.worker"
TERMINAL = ("success", "failure")
NOT_FOUND_NAMES = [
    "flowkit.exceptions.NotFound",
    "flowkit.exceptions.TaskFlowException",
    "builtins.Exception",
    "builtins.BaseException",
]
# The protocol's own failures carry the qualified names the Go worker sends too (a
# RequestTimeout raised in the engine records TaskFlow's; check() matches both).
TIMEOUT_NAMES = list(Failure.from_exception(exc.RequestTimeout("late"), qualified=True).exception_type_names)


def name_of(cls_name: str) -> str:
    return f"{MODULE}.{cls_name}"


class Wire:
    """An engine's view of Redis: add requests, read responses."""

    def __init__(self, url: str, secret: bytes | None = None) -> None:
        self.client = redis.Redis.from_url(url)
        self.secret = secret
        self.stream = protocol.requests_key("flowkit", TOPIC)
        self.reply_to = protocol.replies_key("flowkit", f"engine-{uuid.uuid4().hex[:8]}")

    def request(
        self, task: str, arguments: dict[str, Any] | None = None, *, deadline_in: float = 30.0, **extra: Any
    ) -> dict[str, Any]:
        extra.setdefault("action", protocol.EXECUTE)
        action = extra.pop("action")
        return protocol.request_message(
            str(uuid.uuid4()),
            self.reply_to,
            action,
            task,
            extra.pop("name", "atom"),
            arguments or {},
            time.time() + deadline_in,
            **extra,
        )

    def send(self, task: str, arguments: dict[str, Any] | None = None, **extra: Any) -> str:
        message = self.request(task, arguments, **extra)
        self.add(protocol.encode(message, self.secret))
        return str(message["id"])

    def add(self, fields: dict[str, Any]) -> str:
        return str(self.client.xadd(self.stream, fields).decode())

    def responses(self, request_id: str | None = None) -> list[dict[str, Any]]:
        found = [protocol.decode(fields, self.secret) for _, fields in self.client.xrange(self.reply_to)]
        return [m for m in found if request_id is None or m["id"] == request_id]

    def events(self, request_id: str) -> list[str]:
        return [m["event"] for m in self.responses(request_id)]

    def final(self, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
        def terminal() -> dict[str, Any] | None:
            return next((m for m in self.responses(request_id) if m["event"] in TERMINAL), None)

        return wait_until(terminal, timeout=timeout)

    def pending(self) -> list[dict[str, Any]]:
        try:
            return list(self.client.xpending_range(self.stream, protocol.GROUP, "-", "+", 100))
        except redis.ResponseError:
            return []

    def stream_emptied(self) -> bool:
        return self.client.xlen(self.stream) == 0 and not self.pending()


@pytest.fixture(autouse=True)
def _gate() -> Iterator[None]:
    worker_tasks.GATE.clear()
    worker_tasks.GATE_ENTERED.clear()
    worker_tasks.PACE = threading.Semaphore(0)
    worker_tasks.PACED = threading.Semaphore(0)
    try:
        yield
    finally:
        worker_tasks.GATE.set()  # never leave a pool thread stuck


@pytest.fixture
def wire(redis_flushed_url: str) -> Wire:
    return Wire(redis_flushed_url)


@pytest.fixture
def start_worker(redis_flushed_url: str) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(**options: Any) -> Worker:
        options.setdefault("heartbeat", 0.05)
        options.setdefault("visibility_timeout", 5.0)
        options.setdefault("threads_count", 4)
        options.setdefault("grace", 2.0)
        worker = Worker(topic=TOPIC, tasks=options.pop("tasks", [MODULE]), url=redis_flushed_url, **options)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(grace=0.5)
        assert worker.join(10)


# -- round trips -----------------------------------------------------------------------------------


def test_execute_sends_running_then_success_with_the_result(wire: Wire, start_worker: Any) -> None:
    worker = start_worker()
    request_id = wire.send(name_of("Add"), {"x": 2, "y": 3})
    final = wire.final(request_id)
    assert final["event"] == "success"
    assert final["result"] == 5
    assert final["worker"] == worker.worker_id
    assert wire.events(request_id) == ["running", "success"]


def test_task_is_found_by_its_worker_task_name(wire: Wire, start_worker: Any) -> None:
    start_worker()
    request_id = wire.send("tests.named.Echo", {"value": {"a": [1, 2]}})
    assert wire.final(request_id)["result"] == {"a": [1, 2]}


def test_revert_receives_the_result_and_flow_failures(wire: Wire, start_worker: Any) -> None:
    start_worker()
    try:
        raise RuntimeError("later task broke")
    except RuntimeError:
        other = Failure()
    request_id = wire.send(
        name_of("Add"),
        {"x": 2, "y": 3},
        action=protocol.REVERT,
        name="adder",
        result=5,
        flow_failures={"other": other},
    )
    final = wire.final(request_id)
    assert final["event"] == "success"
    assert final["result"] == {"result": 5, "flow_failures": {"other": "later task broke"}, "name": "adder"}


def test_revert_receives_the_execute_failure_as_a_failure(wire: Wire, start_worker: Any) -> None:
    start_worker()
    try:
        raise ValueError("execute broke")
    except ValueError:
        failure = Failure()
    request_id = wire.send(
        name_of("Add"), {"x": 1, "y": 1}, action=protocol.REVERT, failure=failure, flow_failures={}
    )
    result = wire.final(request_id)["result"]
    assert result["failure"] == "execute broke"
    assert result["types"] == ["ValueError", "Exception"]


def test_task_error_becomes_a_failure_record_with_type_names(wire: Wire, start_worker: Any) -> None:
    start_worker()
    request_id = wire.send(name_of("Boom"), {"message": "kaput"})
    final = wire.final(request_id)
    assert final["event"] == "failure"
    failure = Failure.from_dict(final["failure"])
    assert failure.exception_str == "kaput"
    assert failure.exception_args == ("kaput",)
    assert list(failure.exception_type_names) == [f"{MODULE}.TaskFailed", "Exception"]
    assert "Boom" in failure.traceback_str or "execute" in failure.traceback_str


def test_a_task_raising_system_exit_fails_its_request_and_the_worker_goes_on(
    wire: Wire, start_worker: Any
) -> None:
    # Failure() refuses SystemExit, as TaskFlow's does; the worker still answers with it,
    # spelt as TaskFlow spells types, down to BaseException (a record TaskFlow reads).
    start_worker()
    final = wire.final(wire.send(name_of("Exits"), {"code": 3}))
    assert final["event"] == "failure"
    assert final["failure"]["exc_type_names"] == ["SystemExit", "BaseException"]
    Failure.validate(final["failure"])
    assert wire.final(wire.send(name_of("Add"), {"x": 1, "y": 2}))["result"] == 3


def test_wrong_arguments_fail_the_request(wire: Wire, start_worker: Any) -> None:
    start_worker()
    request_id = wire.send(name_of("Add"), {"x": 1})
    final = wire.final(request_id)
    assert final["failure"]["exc_type_names"][0] == "TypeError"


def test_async_execute_and_revert_run_to_completion(wire: Wire, start_worker: Any) -> None:
    start_worker()
    executed = wire.send(name_of("Double"), {"value": 21})
    reverted = wire.send(
        name_of("Double"), {"value": 21}, action=protocol.REVERT, result=42, flow_failures={}
    )
    assert wire.final(executed)["result"] == 42
    assert wire.final(reverted)["result"] == "undid 42"


def test_progress_is_sent_between_running_and_success_and_ends_with_the_last_value(
    wire: Wire, start_worker: Any
) -> None:
    start_worker(clock=FakeClock())  # time stands still: the burst allowance is all there is
    steps = PROGRESS_BURST + 5
    request_id = wire.send(name_of("Progress"), {"steps": steps})
    wire.final(request_id)
    messages = wire.responses(request_id)
    events = [m["event"] for m in messages]
    assert events == ["running"] + ["progress"] * (PROGRESS_BURST + 1) + ["success"]
    # A burst goes out whole (as TaskFlow sends every report); the last one, held
    # back by the rate limit, when the task ends.
    sent = [m["progress"] for m in messages if m["event"] == "progress"]
    assert sent == [step / steps for step in range(1, PROGRESS_BURST + 1)] + [1.0]
    assert all(m["details"] is None for m in messages if m["event"] == "progress")


def test_past_a_burst_progress_is_sent_once_per_interval_on_the_workers_clock(
    wire: Wire, start_worker: Any
) -> None:
    clock = FakeClock()
    start_worker(clock=clock)
    steps = [round(0.01 * i, 2) for i in range(1, PROGRESS_BURST + 4)]
    request_id = wire.send(name_of("Paced"), {"steps": steps})

    def report(advance: float = 0.0) -> None:
        clock.advance(advance)
        worker_tasks.PACE.release()
        assert worker_tasks.PACED.acquire(timeout=10)

    for _ in range(PROGRESS_BURST):
        report()  # the burst: all sent
    report()  # too soon, held back
    report(PROGRESS_INTERVAL * 1.2)  # one report earned back: sent (the held one is dropped)
    report(PROGRESS_INTERVAL / 2)  # too soon again, held back until the task ends
    wire.final(request_id)
    sent = [m["progress"] for m in wire.responses(request_id) if m["event"] == "progress"]
    assert sent == steps[:PROGRESS_BURST] + steps[PROGRESS_BURST + 1 :]


def test_unknown_task_fails_with_not_found(wire: Wire, start_worker: Any) -> None:
    worker = start_worker()
    request_id = wire.send("no.such.Task")
    final = wire.final(request_id)
    assert final["failure"]["exc_type_names"] == NOT_FOUND_NAMES
    assert final["failure"]["exception_str"] == (
        f"worker {worker.worker_id} on topic {TOPIC} has no task named no.such.Task"
    )
    assert wire.events(request_id) == ["failure"]
    wait_until(wire.stream_emptied)


def test_result_that_is_not_json_fails_with_invalid_format(wire: Wire, start_worker: Any) -> None:
    start_worker()
    request_id = wire.send(name_of("Unsendable"))
    failure = wire.final(request_id)["failure"]
    assert failure["exc_type_names"][0] == "flowkit.exceptions.InvalidFormat"
    assert name_of("Unsendable") in failure["exception_str"]


def test_a_result_whose_model_dump_raises_is_answered_once_with_invalid_format(
    wire: Wire, start_worker: Any
) -> None:
    """The encoder calls a model's ``model_dump`` (user code: a computed field may raise anything).

    Only TypeError and ValueError were caught: a KeyError left the request
    unanswered, so it was taken over and run again until ``max_deliveries``.
    """
    start_worker(visibility_timeout=0.2, heartbeat=0.05)
    request_id = wire.send(name_of("UnsendableModel"))
    failure = wire.final(request_id)["failure"]
    assert failure["exc_type_names"][0] == "flowkit.exceptions.InvalidFormat"
    assert name_of("UnsendableModel") in failure["exception_str"]
    assert "KeyError" in failure["exception_str"] and "quota" in failure["exception_str"]
    wait_until(wire.stream_emptied, timeout=10.0)
    assert wire.events(request_id) == ["running", "failure"]


def test_failure_whose_text_cannot_be_encoded_is_answered_saying_so(wire: Wire, start_worker: Any) -> None:
    """A lone surrogate cannot be sent, not even in the short gist: the answer says why instead.

    Left unanswered, the request would stay pending and run again at every delivery.
    """
    start_worker()
    request_id = wire.send(name_of("Unencodable"))
    final = wire.final(request_id)
    assert final["event"] == "failure"
    failure = Failure.from_dict(final["failure"])
    assert failure.check(exc.InvalidFormat)
    assert "could not be encoded" in failure.exception_str
    assert "broken \\ud800 text" in failure.exception_str  # escaped, so it reads as it was
    assert f"{MODULE}.TaskFailed" in failure.exception_str
    wait_until(wire.stream_emptied, timeout=10.0)


def test_a_failure_whose_causes_loop_is_answered_and_not_run_again(wire: Wire, start_worker: Any) -> None:
    """A cause chain that loops (``a from b``, ``b from a``) once made recording the failure recurse
    for ever: the worker left the request pending, to be run again at every delivery."""
    start_worker(visibility_timeout=0.2, heartbeat=0.05)
    request_id = wire.send(name_of("CyclicCauses"))
    final = wire.final(request_id)
    failure = Failure.from_dict(final["failure"])
    assert (failure.exception_str, [c.exception_str for c in failure.causes]) == ("first", ["second"])
    wait_until(wire.stream_emptied, timeout=10.0)
    assert wire.events(request_id) == ["running", "failure"]


@pytest.mark.timeout(60)
def test_a_failure_with_a_long_cause_chain_is_answered(wire: Wire, start_worker: Any) -> None:
    """Recording a chain of 30 causes took time doubling with each: the pool thread never answered."""
    start_worker()
    request_id = wire.send(name_of("LongChain"), {"depth": 30})
    failure = Failure.from_dict(wire.final(request_id, timeout=20.0)["failure"])
    assert failure.exception_str == "level 30"
    assert [c.exception_str for c in failure.causes] == [f"level {n}" for n in range(29, -1, -1)]
    wait_until(wire.stream_emptied, timeout=10.0)


def test_signed_requests_get_signed_responses(redis_flushed_url: str, start_worker: Any) -> None:
    wire = Wire(redis_flushed_url, secret=b"s3cret")
    start_worker(secret="s3cret")
    request_id = wire.send(name_of("Add"), {"x": 1, "y": 1})
    assert wire.final(request_id)["result"] == 2  # decode() checked every signature


# -- acknowledgement -------------------------------------------------------------------------------


def test_entry_stays_pending_while_running_and_goes_after_the_response(wire: Wire, start_worker: Any) -> None:
    worker = start_worker()
    request_id = wire.send(name_of("Gate"))
    assert worker_tasks.GATE_ENTERED.wait(10)
    pending = wire.pending()
    assert [p["consumer"].decode() for p in pending] == [worker.worker_id]
    assert wire.client.xlen(wire.stream) == 1
    wait_until(lambda: wire.events(request_id) == ["running"])
    worker_tasks.GATE.set()
    assert wire.final(request_id)["result"] == "opened"
    wait_until(wire.stream_emptied)


def test_heartbeat_keeps_a_long_request_claimed(wire: Wire, start_worker: Any) -> None:
    clock = FakeClock()
    worker = start_worker(clock=clock, heartbeat=0.05, visibility_timeout=5.0)
    wire.send(name_of("Gate"))
    assert worker_tasks.GATE_ENTERED.wait(10)
    clock.settle()  # the heartbeat thread waits for its next beat
    (entry,) = wire.pending()
    # Redis sees the running entry idle for a minute: without a refresh, the
    # next beat's XAUTOCLAIM (or a peer's) would take it over as stale.
    _make_idle(wire, worker.worker_id, entry["message_id"])
    assert wire.pending()[0]["time_since_delivered"] >= 60_000

    clock.advance(0.05)  # one heartbeat, on the worker's clock
    clock.settle()  # ... has run: the thread waits for the next one

    (entry,) = wire.pending()
    assert entry["consumer"].decode() == worker.worker_id
    assert entry["time_since_delivered"] < 5_000  # refreshed: younger than the visibility timeout
    assert entry["times_delivered"] == 1  # refreshing is not a delivery, and nothing took it over
    worker_tasks.GATE.set()


def test_without_a_heartbeat_a_running_request_is_left_alone(wire: Wire, start_worker: Any) -> None:
    """The control for the test above: the refresh came from the beat, not from elsewhere."""
    clock = FakeClock()
    worker = start_worker(clock=clock, heartbeat=0.05, visibility_timeout=5.0)
    wire.send(name_of("Gate"))
    assert worker_tasks.GATE_ENTERED.wait(10)
    clock.settle()
    (entry,) = wire.pending()
    _make_idle(wire, worker.worker_id, entry["message_id"])

    clock.advance(0.04)  # short of a heartbeat: the thread wakes, sees it is not due, waits on
    clock.settle()

    (entry,) = wire.pending()
    assert entry["time_since_delivered"] >= 60_000
    worker_tasks.GATE.set()


def _make_idle(wire: Wire, consumer: str, entry_id: Any, idle_ms: int = 60_000) -> None:
    """Hand a pending entry to ``consumer`` and make Redis see it idle for ``idle_ms``, as if
    its worker had died a minute ago (``JUSTID``: this is not a delivery)."""
    wire.client.xclaim(wire.stream, protocol.GROUP, consumer, 0, [entry_id], idle=idle_ms, justid=True)


def test_stale_entry_of_a_dead_worker_is_taken_over(wire: Wire, start_worker: Any) -> None:
    client = wire.client
    client.xgroup_create(wire.stream, protocol.GROUP, id="0", mkstream=True)
    request_id = wire.send(name_of("Add"), {"x": 20, "y": 22})
    (((_, ((entry_id, _),)),)) = client.xreadgroup(protocol.GROUP, "dead", {wire.stream: ">"}, count=1)
    _make_idle(wire, "dead", entry_id)  # far past the visibility timeout, without waiting for it
    # The dead worker had claimed the request id against replays: the same entry still runs.
    client.set(protocol.seen_key("flowkit", request_id), entry_id, px=60_000)
    assert [p["consumer"] for p in wire.pending()] == [b"dead"]
    worker = start_worker(visibility_timeout=5.0)
    final = wire.final(request_id)
    assert final["result"] == 42
    assert final["worker"] == worker.worker_id
    assert wire.events(request_id) == ["running", "success"]
    wait_until(wire.stream_emptied)


def _command_calls(client: Any) -> dict[str, int]:
    """Calls of each command since the last ``CONFIG RESETSTAT``, by lower-case name."""
    return {
        name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()
    }


def test_a_fresh_request_costs_the_replay_guard_one_command(wire: Wire, start_worker: Any) -> None:
    """The guard claims each fresh request id with one SET NX and reads nothing back.

    The GET that tells a replay from a taken-over entry is sent only for a claim
    that failed: on every request it was a second command per request, in a
    batch of the worker's busiest path.
    """
    start_worker()
    wait_until(lambda: wire.client.exists(protocol.workers_key("flowkit", TOPIC)))
    wire.client.config_resetstat()
    request_ids = [wire.send(name_of("Add"), {"x": i, "y": 1}) for i in range(20)]
    for i, request_id in enumerate(request_ids):
        assert wire.final(request_id)["result"] == i + 1
    calls = _command_calls(wire.client)
    assert calls.get("get", 0) == 0, calls
    assert calls.get("set", 0) == len(request_ids), calls


def test_the_replay_claim_goes_out_word_for_word_without_redis_pys_set_helper(
    wire: Wire, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SET {ns}:seen:{id} {entry id} NX PX {ms}``, as Redis's MONITOR sees it.

    The claim is queued as it goes on the wire, not through redis-py's
    ``Pipeline.set()``, whose handling of a dozen keyword options cost the
    reading thread, which every request passes through, about 4 µs a request:
    more than packing the command.
    """
    helper_calls: list[tuple[Any, ...]] = []
    real_set = redis.client.Pipeline.set

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        helper_calls.append(args)
        return real_set(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "set", counted)
    start_worker()
    wait_until(lambda: wire.client.exists(protocol.workers_key("flowkit", TOPIC)))
    message = wire.request(name_of("Add"), {"x": 1, "y": 1})
    with wire.client.monitor() as monitor:
        entry_id = wire.add(protocol.encode(message, wire.secret))
        for _ in range(100_000):  # the heartbeat's commands keep coming: never blocks for long
            words = monitor.next_command()["command"].split()
            if words[0] == "SET":
                break
    assert words[:5] == ["SET", protocol.seen_key("flowkit", message["id"]), entry_id, "NX", "PX"], words
    assert 0 < int(words[5]) <= 60_000
    assert wire.final(message["id"])["result"] == 2
    assert helper_calls == []


class _ThreadRecordingWorker(Worker):
    """A worker noting which thread encodes each request's ``running`` response and which runs it."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.running_on: dict[str, str] = {}
        self.performed_on: dict[str, str] = {}

    def _encode_response(self, job: Any, event: str, progress: float | None = None) -> dict[str, bytes]:
        if event == protocol.RUNNING:
            self.running_on[job.message["id"]] = threading.current_thread().name
        return super()._encode_response(job, event, progress)

    def _perform(self, job: Any) -> dict[str, bytes]:
        self.performed_on[job.message["id"]] = threading.current_thread().name
        return super()._perform(job)


def test_a_requests_running_response_is_made_by_the_pool_thread_that_runs_it(
    wire: Wire, redis_flushed_url: str
) -> None:
    """No request's ``running`` response is handed from the reading thread to the pool.

    The reading thread, which every request passes through, used to encode
    each ``running`` response and queue it apart from the job: work on the
    busiest thread, and an answer the writer usually sent in a block of its
    own. The pool thread now queues it just before running the task (and
    before its answer: the order on the wire stays running, then success).
    """
    worker = _ThreadRecordingWorker(
        topic=TOPIC, tasks=[MODULE], url=redis_flushed_url, heartbeat=0.05, threads_count=3, grace=1.0
    )
    worker.start()
    try:
        request_ids = [wire.send(name_of("Add"), {"x": i, "y": 1}) for i in range(12)]
        for i, request_id in enumerate(request_ids):
            assert wire.final(request_id)["result"] == i + 1
            assert wire.events(request_id) == ["running", "success"]
    finally:
        worker.stop(grace=0.5)
        assert worker.join(10)
    assert set(worker.running_on) == set(request_ids)
    for request_id in request_ids:
        assert worker.running_on[request_id].startswith("flowkit-worker-pool-"), worker.running_on
        assert worker.running_on[request_id] == worker.performed_on[request_id]


def test_the_writer_reads_no_answer_back_when_redis_takes_its_block(
    wire: Wire, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Naming a command Redis refused costs nothing until one is refused.

    The writer used to build a log label for every command it queued, parsing
    each answer's JSON body to name its request: two parses per request on
    the writer thread, for a line logged only on a refusal (which still names
    the request: test_an_answer_redis_refuses_is_dropped...).
    """
    from flowkit.engines.worker_based import worker as worker_module

    read_back: list[object] = []
    real = worker_module._answer_of

    def counting(envelope: Any) -> str | None:
        read_back.append(envelope)
        return real(envelope)

    monkeypatch.setattr(worker_module, "_answer_of", counting)
    start_worker()
    request_ids = [wire.send(name_of("Add"), {"x": i, "y": 2}) for i in range(10)]
    assert [wire.final(request_id)["result"] for request_id in request_ids] == list(range(2, 12))
    assert read_back == []


def test_entry_delivered_too_often_fails_with_request_timeout(wire: Wire, start_worker: Any) -> None:
    client = wire.client
    client.xgroup_create(wire.stream, protocol.GROUP, id="0", mkstream=True)
    request_id = wire.send(name_of("Add"), {"x": 1, "y": 2}, name="poisoned-add")
    (((_, ((entry_id, _),)),)) = client.xreadgroup(protocol.GROUP, "dead", {wire.stream: ">"}, count=1)
    client.xclaim(wire.stream, protocol.GROUP, "dead-too", 0, [entry_id])  # second delivery
    _make_idle(wire, "dead-too", entry_id)
    worker = start_worker(visibility_timeout=5.0, max_deliveries=2)
    final = wire.final(request_id)
    assert final["event"] == "failure"
    assert final["failure"]["exc_type_names"] == TIMEOUT_NAMES
    # The failure names the atom, its task and the worker that gave up, not just a request id.
    assert final["failure"]["exception_str"] == (
        f"the execute request {request_id} of atom 'poisoned-add' (task {name_of('Add')}) "
        "was delivered 3 times and its workers died; "
        f"worker {worker.worker_id} on topic {TOPIC} gave up on it"
    )
    wait_until(wire.stream_emptied)


# -- what is refused -------------------------------------------------------------------------------


def _body(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def _signed(wire: Wire, body: bytes) -> dict[str, Any]:
    assert wire.secret is not None
    return {"body": body, "sig": protocol.sign(body, wire.secret)}


def _missing_task(wire: Wire) -> dict[str, Any]:
    message = wire.request(name_of("Add"), {"x": 1, "y": 1})
    del message["task"]
    return _signed(wire, _body(message))


def _a_response(wire: Wire) -> dict[str, Any]:
    return protocol.encode(protocol.response_message("x", "w", "running"), wire.secret)


def _wrongly_signed(wire: Wire) -> dict[str, Any]:
    return protocol.encode(wire.request(name_of("Add"), {"x": 1, "y": 1}), b"other secret")


def _unsigned(wire: Wire) -> dict[str, Any]:
    return protocol.encode(wire.request(name_of("Add"), {"x": 1, "y": 1}), None)


def _oversized(wire: Wire) -> dict[str, Any]:
    return protocol.encode(wire.request(name_of("Add"), {"x": "y" * 5000, "y": ""}), b"k")


@pytest.mark.parametrize(
    ("make_fields", "reason"),
    [
        (lambda wire: _signed(wire, b"{not json"), "not JSON"),
        (lambda wire: {"payload": b"{}"}, "no 'body'"),
        (lambda wire: _signed(wire, b"[1, 2]"), "JSON object"),
        (_missing_task, "'task'"),
        (_a_response, "not a request"),
        (_unsigned, "not signed"),
        (_wrongly_signed, "signature does not match"),
        (_oversized, "over the limit"),
    ],
    ids=[
        "not-json",
        "no-body",
        "not-object",
        "missing-field",
        "response",
        "unsigned",
        "bad-sig",
        "oversized",
    ],
)
def test_bad_entry_is_logged_and_removed_and_the_worker_keeps_serving(
    redis_flushed_url: str,
    start_worker: Any,
    caplog: pytest.LogCaptureFixture,
    make_fields: Callable[[Wire], dict[str, Any]],
    reason: str,
) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    wire = Wire(redis_flushed_url, secret=b"k")
    bad_id = wire.add(make_fields(wire))
    start_worker(secret=b"k", max_message_bytes=4000)
    good = wire.send(name_of("Add"), {"x": 1, "y": 1})
    assert wire.final(good)["result"] == 2
    wait_until(wire.stream_emptied)
    assert [m["id"] for m in wire.responses()] == [good, good]  # nothing answered the bad entry
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(bad_id in text and reason in text for text in warnings), warnings


def test_request_of_another_protocol_version_is_answered_with_a_failure(
    wire: Wire, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    message = wire.request(name_of("Add"), {"x": 1, "y": 1})
    message["v"] = 2
    entry_id = wire.add({"body": _body(message)})
    start_worker()
    final = wire.final(message["id"])
    # The names the protocol spells out, as the Go worker sends them too.
    assert final["failure"]["exc_type_names"] == [
        "flowkit.exceptions.IncompatibleVersion",
        "flowkit.exceptions.TaskFlowException",
        "builtins.Exception",
        "builtins.BaseException",
    ]
    wait_until(wire.stream_emptied)
    assert any(entry_id in r.getMessage() and "version" in r.getMessage() for r in caplog.records)


def test_request_past_its_deadline_on_the_workers_clock_is_dropped_unanswered(
    wire: Wire, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    clock = FakeClock()
    clock.advance(60.0)  # the worker's time: a minute after the engine's
    late = wire.send(name_of("Add"), {"x": 1, "y": 1}, deadline_in=30.0)
    start_worker(clock=clock)
    good = wire.send(name_of("Add"), {"x": 2, "y": 2}, deadline_in=90.0)
    assert wire.final(good)["result"] == 4
    wait_until(wire.stream_emptied)
    assert wire.responses(late) == []
    assert any(late in r.getMessage() and "deadline passed 30" in r.getMessage() for r in caplog.records)
    # The good one's id is remembered against replays until its deadline (on the
    # worker's clock) plus the clock skew allowed.
    kept = wire.client.pttl(protocol.seen_key("flowkit", good)) / 1000
    assert 30.0 + protocol.MAX_CLOCK_SKEW - 5 < kept <= 30.0 + protocol.MAX_CLOCK_SKEW + 1


@pytest.mark.parametrize("deadline_in", [1e10, 1e18])
def test_request_with_a_far_deadline_is_answered_and_remembered_for_at_most_max_seen(
    wire: Wire, start_worker: Any, deadline_in: float
) -> None:
    """transition_timeout=1e10 ("for ever") must not make the replay record unwritable."""
    start_worker()
    request_id = wire.send(name_of("Add"), {"x": 1, "y": 2}, deadline_in=deadline_in)
    assert wire.final(request_id)["result"] == 3
    wait_until(wire.stream_emptied)
    kept = wire.client.pttl(protocol.seen_key("flowkit", request_id)) / 1000
    assert min(deadline_in, protocol.MAX_SEEN) - 60 < kept <= protocol.MAX_SEEN + 1


# -- life cycle ------------------------------------------------------------------------------------


def test_worker_advertises_itself_and_its_tasks(wire: Wire, start_worker: Any) -> None:
    # The advertisement lives three heartbeats: a long heartbeat keeps it (and its
    # expiry in the future) while this test reads it, however slow the machine.
    worker = start_worker(heartbeat=5.0, visibility_timeout=20.0)
    hash_key = protocol.worker_key("flowkit", worker.worker_id)
    fields = wait_until(lambda: wire.client.hgetall(hash_key))
    notify = protocol.decode(fields, None)
    assert notify["type"] == "notify"
    assert notify["worker"] == worker.worker_id
    assert notify["topic"] == TOPIC
    assert notify["language"] == "python"
    assert notify["tasks"] == worker.tasks
    assert name_of("Add") in notify["tasks"]
    assert notify["heartbeat"] == 5.0
    assert notify["visibility_timeout"] == 20.0
    assert 0 < wire.client.pttl(hash_key) <= 15_000
    score = wire.client.zscore(protocol.workers_key("flowkit", TOPIC), worker.worker_id)
    assert score is not None and score > time.time() * 1000


def _arrivals(wire: Wire) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in wire.client.xrange(protocol.arrivals_key("flowkit"))]


def test_a_worker_adds_an_arrival_when_it_appears_not_at_every_beat(wire: Wire, start_worker: Any) -> None:
    clock = FakeClock()
    worker = start_worker(clock=clock, heartbeat=0.05)
    # After the advert, in the same round trip: an engine holding a request wakes and reads it.
    wait_until(lambda: len(_arrivals(wire)) == 1)
    assert _arrivals(wire) == [{b"worker": worker.worker_id.encode(), b"topic": TOPIC.encode()}]
    for _ in range(3):  # beats in time keep the advert alive: no arrival wakes idle engines
        clock.settle()
        clock.advance(0.05)
    clock.settle()
    assert len(_arrivals(wire)) == 1
    # No beat for three heartbeats (a stalled worker): engines may have dropped its lapsed advert.
    clock.advance(0.2)
    clock.settle()
    assert len(_arrivals(wire)) == 2


def test_stop_waits_for_running_tasks_and_removes_the_advertisement(wire: Wire, start_worker: Any) -> None:
    clock = FakeClock()
    worker = start_worker(clock=clock, grace=10.0)
    hash_key = protocol.worker_key("flowkit", worker.worker_id)
    request_id = wire.send(name_of("Gate"))
    assert worker_tasks.GATE_ENTERED.wait(10)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    clock.settle(waiters=2)  # the heartbeat and the drain wait on the clock
    clock.advance(9.9)  # almost the whole grace
    clock.settle(waiters=2)
    assert not worker.join(0)  # still draining
    worker_tasks.GATE.set()
    stopper.join(10)
    assert worker.join(0)
    assert wire.final(request_id, timeout=0.5)["result"] == "opened"
    assert wire.stream_emptied()
    assert not wire.client.exists(hash_key)
    assert wire.client.zscore(protocol.workers_key("flowkit", TOPIC), worker.worker_id) is None


def _blocked_reads(client: Any) -> list[str]:
    """The ``CLIENT LIST`` lines of connections blocked in XREADGROUP (flag ``b``)."""
    lines = client.execute_command("CLIENT", "LIST")
    text = lines.decode() if isinstance(lines, bytes) else str(lines)
    return [line for line in text.splitlines() if "cmd=xreadgroup" in line and " flags=b " in line]


def test_the_reading_thread_reads_and_claims_without_checking_a_connection_out_of_the_pool(
    wire: Wire, redis_flushed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every request passes through the reading thread; a pool checkout probes the connection
    # (a recv and two settimeout calls) at each of its round trips. It has a connection of
    # its own: counted, the pool hands none to it while it serves requests.
    worker = Worker(
        topic=TOPIC, tasks=[MODULE], url=redis_flushed_url, heartbeat=0.05, visibility_timeout=5.0
    )
    pool = worker._client.connection_pool
    checkouts: dict[str, int] = {}
    get_connection = pool.get_connection

    def counted(*args: Any, **kwargs: Any) -> Any:
        name = threading.current_thread().name
        checkouts[name] = checkouts.get(name, 0) + 1
        return get_connection(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", counted)
    worker.start()
    try:
        assert worker.wait(10)
        checkouts.clear()  # from here on it serves (making the group at start used the pool)
        ids = [wire.send(name_of("Add"), {"x": i, "y": 1}) for i in range(20)]
        assert [wire.final(request_id)["result"] for request_id in ids] == [i + 1 for i in range(20)]
    finally:
        worker.stop()
    assert worker.join(10)
    reading = f"flowkit-worker-{worker.worker_id}"
    assert checkouts.get(reading, 0) == 0, checkouts
    assert checkouts.get("flowkit-worker-writer", 0) > 0  # the others still share the pool


@pytest.mark.timeout(60)  # the old stop waited out the block: fail, do not hang
def test_stop_ends_the_blocking_read_of_an_idle_worker_at_once(
    wire: Wire, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read blocking for ten minutes: a stop that waited for it to end would outlast the
    # test's bounded wait. CLIENT UNBLOCK on the read's connection ends it.
    from flowkit.engines.worker_based import worker as worker_module

    monkeypatch.setattr(worker_module, "MAX_BLOCK", 600.0)
    worker = start_worker(heartbeat=600.0, visibility_timeout=1200.0)
    wait_until(lambda: _blocked_reads(wire.client), 10.0)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    stopper.join(10)

    assert worker.join(0), "stop() waited for the blocking read to run out"
    assert not _blocked_reads(wire.client)


def test_a_stop_redis_refuses_to_wake_the_read_for_waits_for_the_read_and_says_so(
    redis_flushed_url: str, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    # A worker user without @admin: CLIENT UNBLOCK is refused; the stop waits out the
    # read's block (half a second at most), as before, and says why once.
    caplog.set_level(logging.INFO, logger="flowkit.engines.worker_based.worker")
    user = f"w-{uuid.uuid4().hex[:8]}"
    wire.client.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-@admin")
    try:
        url = redis_flushed_url.replace("redis://", f"redis://{user}:pw@", 1)
        worker = Worker(topic=TOPIC, tasks=[MODULE], url=url, heartbeat=0.05, visibility_timeout=5.0)
        worker.start()
        assert worker.wait(10)
        wait_until(lambda: _blocked_reads(wire.client), 10.0)
        worker.stop()
        assert worker.join(10)
    finally:
        wire.client.execute_command("ACL", "DELUSER", user)
    said = [r for r in caplog.records if "CLIENT UNBLOCK" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO], said


def test_stop_leaves_requests_running_past_the_grace_unacknowledged(wire: Wire, start_worker: Any) -> None:
    clock = FakeClock()
    worker = start_worker(clock=clock, grace=10.0)
    request_id = wire.send(name_of("Gate"))
    assert worker_tasks.GATE_ENTERED.wait(10)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    clock.settle(waiters=2)
    clock.advance(10.0)  # the grace is over; the request still runs
    stopper.join(10)
    assert worker.join(0)
    assert [p["consumer"].decode() for p in wire.pending()] == [worker.worker_id]
    assert wire.events(request_id) == ["running"]
    assert not wire.client.exists(protocol.worker_key("flowkit", worker.worker_id))


def test_burst_mode_returns_once_nothing_is_waiting(wire: Wire, redis_flushed_url: str) -> None:
    ids = [wire.send(name_of("Add"), {"x": i, "y": 1}) for i in range(5)]
    worker = Worker(
        topic=TOPIC, tasks=[worker_tasks.Add], url=redis_flushed_url, heartbeat=0.05, threads_count=2
    )
    runner = threading.Thread(target=worker.run, kwargs={"burst": True})
    runner.start()
    runner.join(15)
    assert not runner.is_alive()
    assert [wire.final(i, timeout=0)["result"] for i in ids] == [1, 2, 3, 4, 5]
    assert wire.stream_emptied()
    assert not wire.client.exists(protocol.worker_key("flowkit", worker.worker_id))


def test_worker_survives_a_redis_restart(
    redis_server: Any, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    redis_server.start()
    redis_server.flushall()
    start_worker()
    wire = Wire(redis_server.url)
    assert wire.final(wire.send(name_of("Add"), {"x": 1, "y": 1}))["result"] == 2
    redis_server.stop()
    try:
        wait_until(
            lambda: any("Redis error while reading" in r.getMessage() for r in caplog.records),
            timeout=10,
        )  # the worker met the outage
    finally:
        redis_server.start()
    # The restarted server is empty: the worker must re-create the group.
    request_id = wire.send(name_of("Add"), {"x": 2, "y": 2})
    assert wire.final(request_id, timeout=20)["result"] == 4


def test_running_twice_at_once_is_refused(redis_flushed_url: str, start_worker: Any) -> None:
    worker = start_worker()
    with pytest.raises(RuntimeError, match="already running"):
        worker.start()


def test_unreachable_redis_at_start_raises_connection_error() -> None:
    from tests.services import free_port

    worker = Worker(topic=TOPIC, tasks=[worker_tasks.Add], url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ConnectionError, match="cannot reach Redis"):
        worker.run(burst=True)


# -- task registry ---------------------------------------------------------------------------------


def test_module_spec_offers_every_task_class_defined_there() -> None:
    registry = load_tasks([MODULE])
    assert registry[name_of("Add")] is worker_tasks.Add
    assert registry["tests.named.Echo"] is worker_tasks.Named
    assert "flowkit.task.Task" not in registry  # imported, not defined there


def test_module_spec_with_names_offers_just_those() -> None:
    assert load_tasks([f"{MODULE}:Add, Boom"]) == {
        name_of("Add"): worker_tasks.Add,
        name_of("Boom"): worker_tasks.Boom,
    }


def test_classes_are_accepted_directly() -> None:
    assert load_tasks([worker_tasks.Noop]) == {name_of("Noop"): worker_tasks.Noop}


@pytest.mark.parametrize(
    ("spec", "error", "named"),
    [
        ("no_such_module_xyz", exc.NotFound, "no_such_module_xyz"),
        (f"{MODULE}:Missing", exc.NotFound, "Missing"),
        (f"{MODULE}:NOT_A_TASK", TypeError, "NOT_A_TASK"),
        ("flowkit.states", exc.NotFound, "flowkit.states"),
        (int, TypeError, "int"),
    ],
)
def test_bad_task_specs_are_refused_at_construction(spec: Any, error: type[Exception], named: str) -> None:
    with pytest.raises(error, match=named):
        Worker(topic=TOPIC, tasks=[spec], url="redis://127.0.0.1:1/0")


def test_visibility_timeout_must_exceed_the_heartbeat() -> None:
    with pytest.raises(ValueError, match="visibility_timeout"):
        Worker(
            topic=TOPIC,
            tasks=[worker_tasks.Add],
            url="redis://127.0.0.1:1/0",
            heartbeat=2.0,
            visibility_timeout=1.0,
        )


# -- command line ----------------------------------------------------------------------------------


def _cli(url: str, *extra: str, env: dict[str, str] | None = None) -> list[str]:
    return [sys.executable, "-m", "flowkit", "worker", "--redis", url, "--topic", TOPIC, *extra]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != protocol.SECRET_ENV}
    env.update(extra)
    return env


def test_cli_burst_serves_waiting_requests_and_exits_zero(redis_flushed_url: str) -> None:
    wire = Wire(redis_flushed_url, secret=b"from-env")
    ids = [wire.send(name_of("Add"), {"x": i, "y": i}) for i in range(3)]
    done = subprocess.run(
        _cli(redis_flushed_url, "--tasks", f"{MODULE}:Add", "--burst", "--heartbeat", "0.1"),
        cwd=REPO,
        env=_env(FLOWKIT_WORKER_SECRET="from-env"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [wire.final(i, timeout=0)["result"] for i in ids] == [0, 2, 4]


@pytest.mark.parametrize("kind", ["python", "go"])
def test_cli_reads_the_redis_url_from_a_file_given_as_at_path(
    kind: str, redis_flushed_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # The URL (and its password) stays out of the process list: only the file's path shows.
    url_file = tmp_path / "redis-url"
    url_file.write_text(redis_flushed_url + "\n")
    wire = Wire(redis_flushed_url, secret=b"from-env")
    if kind == "python":
        task, arguments, expected = name_of("Add"), {"x": 2, "y": 3}, 5
        command = [sys.executable, "-m", "flowkit", "worker", "--tasks", f"{MODULE}:Add"]
    else:
        task, arguments, expected = "flowkit_go_tasks.Echo", {"value": "from file"}, "from file"
        command = [request.getfixturevalue("go_worker_binary")]
    request_id = wire.send(task, arguments)
    done = subprocess.run(
        [*command, "--redis", f"@{url_file}", "--topic", TOPIC, "--burst", "--heartbeat", "0.1"],
        cwd=REPO,
        env=_env(FLOWKIT_WORKER_SECRET="from-env"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert wire.final(request_id, timeout=0)["result"] == expected


@pytest.mark.parametrize("kind", ["python", "go"])
def test_both_workers_refuse_a_negative_grace_with_status_2_naming_the_flag(
    kind: str, request: pytest.FixtureRequest
) -> None:
    # The Go worker used to read "--grace -1" as "no grace" where the Python one
    # refuses it; both now refuse it before reaching Redis (nothing listens on port 1).
    if kind == "python":
        command = [sys.executable, "-m", "flowkit", "worker", "--tasks", f"{MODULE}:Add"]
    else:
        command = [request.getfixturevalue("go_worker_binary")]
    done = subprocess.run(
        [*command, "--redis", "redis://127.0.0.1:1/0", "--topic", TOPIC, "--grace", "-1"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "--grace" in done.stderr
    assert "negative" in done.stderr


def test_cli_refuses_an_unknown_task_module_with_status_2(redis_flushed_url: str) -> None:
    done = subprocess.run(
        _cli(redis_flushed_url, "--tasks", "no_such_module_xyz", "--burst"),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no_such_module_xyz" in lines[0]


def test_cli_stops_gracefully_on_sigterm(redis_flushed_url: str) -> None:
    wire = Wire(redis_flushed_url)
    proc = subprocess.Popen(
        _cli(redis_flushed_url, "--tasks", MODULE, "--worker-id", "cli-worker", "--heartbeat", "0.1"),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        hash_key = protocol.worker_key("flowkit", "cli-worker")
        wait_until(lambda: wire.client.exists(hash_key) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, proc.communicate()
        assert wire.final(wire.send(name_of("Add"), {"x": 1, "y": 2}))["result"] == 3
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert not wire.client.exists(hash_key)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _frozen_cli_worker(server: Any, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A CLI worker serving ``server``, advertised, then ``server`` frozen (SIGSTOP)."""
    return _frozen_worker(server, tmp_path, _cli(server.url, "--tasks", MODULE, *extra))


def _frozen_worker(server: Any, tmp_path: Path, command: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
    """Worker ``command`` (Python CLI or Go binary) serving ``server``, advertised, then ``server`` frozen."""
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*command, "--worker-id", "frozen", "--heartbeat", "0.1"],
            cwd=REPO,
            env=_env(PYTHONUNBUFFERED="1"),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = redis.Redis.from_url(server.url)
    try:
        hash_key = protocol.worker_key("flowkit", "frozen")
        wait_until(lambda: client.exists(hash_key) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, log.read_text()
    finally:
        client.close()
    server.freeze()
    return proc, log


def _exits_within(proc: subprocess.Popen[bytes], log: Path, seconds: float) -> int:
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        tail = log.read_text()[-3000:]
        raise AssertionError(f"the worker still ran {seconds:.0f} s later:\n{tail}") from None


def test_cli_stops_within_its_grace_while_redis_is_frozen(own_redis: Any, tmp_path: Path) -> None:
    from flowkit.engines.worker_based import worker as worker_module

    grace = 1.0
    proc, log = _frozen_cli_worker(own_redis, tmp_path, "--grace", str(grace))
    proc.send_signal(signal.SIGTERM)
    # Reading stops within one Redis timeout, answers are flushed for at most
    # min(grace, 5) s, and the helpers get one more Redis timeout to let go.
    bound = grace + min(grace, 5.0) + 2 * worker_module.REDIS_TIMEOUT + 5.0
    assert _exits_within(proc, log, bound) == 0, log.read_text()


def test_cli_stops_at_once_on_a_second_signal_while_redis_is_frozen(own_redis: Any, tmp_path: Path) -> None:
    proc, log = _frozen_cli_worker(own_redis, tmp_path, "--grace", "600")
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping worker frozen gracefully" in log.read_text(), timeout=10)
    proc.send_signal(signal.SIGINT)
    assert _exits_within(proc, log, 3.0) == 0, log.read_text()
    assert "stopping worker frozen now" in log.read_text()


def test_go_worker_stops_at_once_on_a_second_signal_while_redis_is_frozen(
    own_redis: Any, go_worker_binary: str, tmp_path: Path
) -> None:
    command = [go_worker_binary, "--redis", own_redis.url, "--topic", TOPIC, "--grace", "600"]
    proc, log = _frozen_worker(own_redis, tmp_path, command)
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "worker frozen got terminated: stopping" in log.read_text(), timeout=10)
    proc.send_signal(signal.SIGINT)
    # The Go client retries a command of a frozen server for ~18 s; "at once" must not wait for that.
    assert _exits_within(proc, log, 2.0) == 0, log.read_text()
    assert "worker frozen stopped at once" in log.read_text()


# -- entries that once stopped the worker --------------------------------------------------------


def _lone_surrogate_in(wire: Wire, field: str) -> dict[str, Any]:
    """A request whose ``field`` holds the JSON escape of a lone surrogate (no UTF-8 for it)."""
    message = wire.request(name_of("Add"), {"x": 1, "y": 1})
    message[field] = "\ud800"
    body = json.dumps(message).encode()  # ensure_ascii: the escape travels as the six bytes \ud800
    assert b"\\ud800" in body
    return {"body": body}


@pytest.mark.parametrize("field", ["id", "task", "reply_to", "name"])
def test_a_lone_surrogate_escape_is_dropped_with_a_warning_and_the_worker_keeps_serving(
    wire: Wire, start_worker: Any, caplog: pytest.LogCaptureFixture, field: str
) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    worker = start_worker()
    bad_ids = [wire.add(_lone_surrogate_in(wire, field)) for _ in range(3)]
    good = [wire.send(name_of("Add"), {"x": i, "y": 1}) for i in range(5)]
    assert [wire.final(request_id)["result"] for request_id in good] == [1, 2, 3, 4, 5]
    wait_until(wire.stream_emptied)  # acknowledged: neither we nor a peer will see it again
    assert not worker.join(0)  # still running
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for bad_id in bad_ids:
        assert any(bad_id in text and "surrogate" in text for text in warnings), warnings


@pytest.fixture
def limited_url(redis_flushed_url: str) -> Iterator[str]:
    """The URL of a Redis ACL user confined to ``flowkit:*`` keys, as in a locked-down deployment.

    Of the reply streams it may touch only those of engines named ``engine-...``
    (the :class:`Wire`'s), so an answer on ``flowkit:replies:denied`` is refused.
    """
    admin = redis.Redis.from_url(redis_flushed_url)
    user = f"fk-{uuid.uuid4().hex[:8]}"
    keys = [f"~flowkit:{kind}" for kind in ("requests:*", "workers:*", "worker:*", "topics", "seen:*")]
    admin.execute_command(
        "ACL", "SETUSER", user, "on", ">pw", *keys, "~flowkit:replies:engine-*", "&*", "+@all"
    )
    try:
        yield redis_flushed_url.replace("redis://", f"redis://{user}:pw@", 1)
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_an_answer_redis_refuses_is_dropped_with_a_warning_and_later_answers_go_out(
    limited_url: str, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    worker = Worker(topic=TOPIC, tasks=[MODULE], url=limited_url, heartbeat=0.05, threads_count=2, grace=1.0)
    worker.start()
    try:
        outside = Wire(limited_url)
        outside.reply_to = "flowkit:replies:denied"  # NOPERM for this user: MULTI ends in EXECABORT
        refused = outside.send(name_of("Add"), {"x": 1, "y": 1})
        good = [wire.send(name_of("Add"), {"x": i, "y": 2}) for i in range(5)]
        assert [wire.final(request_id)["result"] for request_id in good] == [2, 3, 4, 5, 6]
        wait_until(wire.stream_emptied)  # the refused request was acknowledged, not retried forever
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(refused in text and "refused" in text for text in warnings), warnings
        assert not worker.join(0)
    finally:
        worker.stop(grace=0.5)
        assert worker.join(10)


def test_an_arrival_redis_refuses_costs_the_worker_no_beat_and_is_said_once(
    limited_url: str, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    # The ACL predates the arrivals stream: engines find the worker at their periodic look.
    caplog.set_level(logging.DEBUG, logger=WORKER_LOG)
    clock = FakeClock()
    worker = Worker(topic=TOPIC, tasks=[MODULE], url=limited_url, heartbeat=0.05, grace=1.0, clock=clock)
    worker.start()
    try:
        for _ in range(2):  # two more arriving beats, each over three heartbeats after the last
            clock.settle()
            clock.advance(0.2)
        clock.settle()
        said = [r for r in caplog.records if "refused its arrival entry" in r.getMessage()]
        assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
        assert "flowkit:arrivals" in said[0].getMessage() and worker.worker_id in said[0].getMessage()
        assert not [r for r in caplog.records if "error during heartbeat" in r.getMessage()]
        assert _arrivals(wire) == []
        score = wire.client.zscore(protocol.workers_key("flowkit", TOPIC), worker.worker_id)
        assert score == int(clock.time() * 1000) + 150  # written by the last beat all the same
    finally:
        worker.stop(grace=0.5)
        assert worker.join(10)


@pytest.mark.parametrize(("secret", "warned"), [(None, True), ("s3cret", False)])
def test_a_worker_without_a_secret_warns_at_start_that_anyone_can_command_it(
    start_worker: Any, caplog: pytest.LogCaptureFixture, secret: str | None, warned: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv(protocol.SECRET_ENV, raising=False)
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    worker = start_worker(secret=secret)
    worker.stop(grace=0.1)
    found = [r.getMessage() for r in caplog.records if "signing secret" in r.getMessage()]
    assert bool(found) is warned, found
    if warned:
        assert worker.worker_id in found[0] and protocol.SECRET_ENV in found[0]
