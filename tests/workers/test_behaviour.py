"""One behaviour suite for both workers: the worker-based engine driving Python or Go.

Every test runs twice, once per worker kind (``worker_kind``); the tasks are
the Go example tasks and their Python twins from ``behaviour_tasks``, so the
same flow must give the same results, failures and progress whichever
language serves it. Workers and Redis are real processes.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowkit import engines, task
from flowkit import exceptions as exc
from flowkit import states as st
from flowkit.patterns import linear_flow, unordered_flow
from flowkit.report import ExecutionReport
from flowkit.retry import Times
from flowkit.types.failure import Failure
from tests import services
from tests.workers.behaviour_tasks import (
    Announce,
    CountPrimes,
    Echo,
    Exit,
    Fail,
    Reserve,
    Sha256Rounds,
    Sleep,
    sha256_rounds,
)
from tests.workers.conftest import (
    NAMESPACE,
    BackgroundRun,
    Events,
    WaitScans,
    WorkerFactory,
    WorkerProcess,
    fresh_topic,
    load_engine,
    pending_by_worker,
    requests_added,
    requests_key,
    wait_stopped,
    worker_key,
    workers_key,
)
from tests.workers.fake_clock import FakeClock

# Generous: the first Go test also pays for the session's `go build`.
pytestmark = pytest.mark.timeout(300)

# Both workers name a task's exception types as TaskFlow does (Failure's default).
TASK_FAILED_NAMES = ["flowkit_go_tasks.TaskFailed", "Exception"]


class NotOffered(task.Task):
    """A task no worker registers: the engine must refuse to start a flow using it."""

    def execute(self, value: Any) -> Any:
        return value


def _failure_of(engine: Any, atom: str) -> Failure:
    failure = engine.storage.get(atom)
    assert isinstance(failure, Failure), f"atom {atom} has no failure, its result is {failure!r}"
    return failure


def test_results_flow_between_tasks_of_a_linear_flow(
    worker: WorkerProcess, redis_client: Any, redis_flushed_url: str
) -> None:
    flow = linear_flow.Flow("chain").add(
        Echo(name="start", provides="text"),
        Sha256Rounds(name="hash", rebind={"data": "text"}, provides="digest"),
        Echo(name="copy", rebind={"value": "digest"}, provides="copied"),
        CountPrimes(name="primes", provides="count"),
    )
    engine = load_engine(
        flow, redis_flushed_url, worker.topic, store={"value": "héllo wörld", "rounds": 5, "limit": 10_000}
    )

    engine.run()

    expected = sha256_rounds("héllo wörld", 5)
    assert engine.storage.fetch("digest") == expected
    assert engine.storage.fetch("copied") == expected
    assert engine.storage.fetch("count") == 1229
    assert engine.storage.get_flow_state() == st.SUCCESS
    # Four requests went through Redis: nothing ran in the engine's process.
    assert requests_added(redis_client, worker.topic) == 4


def test_engine_and_worker_meet_over_a_unix_socket_url(
    spawn_worker: WorkerFactory, redis_server: services.RedisServer, redis_flushed_url: str
) -> None:
    # unix:// is one of the three URL kinds both sides document; the Python side
    # handed redis-py a TCP-only option and failed before sending a command.
    url = redis_server.unix_url
    worker = spawn_worker(fresh_topic(), url=url)
    flow = linear_flow.Flow("over-a-socket").add(Echo(name="echo", provides="echoed"))
    engine = load_engine(flow, url, worker.topic, store={"value": "through the socket"})

    engine.run()

    assert engine.storage.fetch("echoed") == "through the socket"


def test_results_of_an_unordered_flow_are_all_kept(
    worker: WorkerProcess, redis_client: Any, redis_flushed_url: str
) -> None:
    limits = {"p100": 100, "p1000": 1000, "p2": 2, "p7919": 7920}
    flow = unordered_flow.Flow("fan-out").add(
        *(CountPrimes(name=name, provides=name, inject={"limit": limit}) for name, limit in limits.items()),
        Echo(name="echo", provides="echoed", inject={"value": {"nested": [1, 2.5, None, True, "x"]}}),
    )
    engine = load_engine(flow, redis_flushed_url, worker.topic)

    engine.run()

    assert {name: engine.storage.fetch(name) for name in limits} == {
        "p100": 25,
        "p1000": 168,
        "p2": 0,
        "p7919": 1000,
    }
    assert engine.storage.fetch("echoed") == {"nested": [1, 2.5, None, True, "x"]}


def test_the_replay_guard_costs_a_fresh_request_one_command(
    worker: WorkerProcess, redis_client: Any, redis_flushed_url: str
) -> None:
    # Both workers claim a fresh request id with one SET NX and read the key back
    # (GET) only after a claim that failed: a replay, or an entry taken over.
    flow = unordered_flow.Flow("fresh").add(
        *(Echo(name=f"e{i}", provides=f"v{i}", inject={"value": i}) for i in range(12))
    )
    engine = load_engine(flow, redis_flushed_url, worker.topic)
    redis_client.config_resetstat()

    engine.run()

    assert [engine.storage.fetch(f"v{i}") for i in range(12)] == list(range(12))
    calls = {
        name.removeprefix("cmdstat_"): stats["calls"]
        for name, stats in redis_client.info("commandstats").items()
    }
    assert calls.get("get", 0) == 0, calls
    assert calls.get("set", 0) == 12, calls


def test_a_remote_failure_keeps_its_type_names_and_message(
    worker: WorkerProcess, redis_client: Any, redis_flushed_url: str
) -> None:
    flow = linear_flow.Flow("failing").add(Fail(name="fail"))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"message": "disk 7 is on fire"})

    with pytest.raises(exc.WrappedFailure) as raised:
        engine.run()

    assert raised.value.check("flowkit_go_tasks.TaskFailed")
    failure = _failure_of(engine, "fail")
    assert list(failure.exception_type_names) == TASK_FAILED_NAMES
    assert failure.check(Exception) is Exception
    assert failure.exception_str == "disk 7 is on fire"
    assert list(failure.exception_args) == ["disk 7 is on fire"]
    assert str(failure) == "Failure: flowkit_go_tasks.TaskFailed: disk 7 is on fire"
    assert failure.check("flowkit_go_tasks.TaskFailed") == "flowkit_go_tasks.TaskFailed"
    assert engine.storage.get_flow_state() == st.REVERTED


#: What each worker's traceback of Fail's failure says: the line that raised (Python); the Go
#: function registered for the task, the task and the error it returned, outermost first (Go).
#: The Go file is named by its module path, as a -trimpath build names it, not by where
#: the build machine kept the sources ("/home/ci/src/..." is no use to the reader).
FAIL_TRACEBACKS = {
    "python": [
        'tests/workers/behaviour_tasks.py", line ',
        ", in execute\n",
        "    raise TaskFailed(message)\n",
    ],
    "go": [
        '  File "github.com/flowkit/flowkit/go_worker/tasks/tasks.go", line ',
        ", in github.com/flowkit/flowkit/go_worker/tasks.fail\n",
        "    Go task flowkit_go_tasks.Fail, execute, returned *flowkit.TaskError: disk 7 is on fire\n",
    ],
}


def test_a_remote_failure_carries_a_traceback_saying_where_it_failed(
    worker: WorkerProcess, redis_flushed_url: str
) -> None:
    # A Go task's failure had none (only a panic's had its stack): the failure's
    # traceback_str, the logging listeners and 'flowkit flows show -v' said
    # "Traceback not available." where a Python task's named the line that raised.
    flow = linear_flow.Flow("failing").add(Fail(name="fail"))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"message": "disk 7 is on fire"})

    with pytest.raises(exc.WrappedFailure):
        engine.run()

    failure = _failure_of(engine, "fail")
    for part in FAIL_TRACEBACKS[worker.kind]:
        assert part in failure.traceback_str, failure.traceback_str
    assert failure.traceback_str.startswith('  File "'), failure.traceback_str
    assert failure.pformat(traceback=True).startswith(
        "Failure: flowkit_go_tasks.TaskFailed: disk 7 is on fire\nTraceback (most recent call last):\n  File "
    )
    report = ExecutionReport.from_engine(engine).to_text(verbose=True)
    assert "fail execute traceback:\n  " + failure.traceback_str.splitlines()[0] in report


def test_a_remote_builtin_error_is_recorded_as_the_python_worker_records_it(
    worker: WorkerProcess, redis_flushed_url: str
) -> None:
    # Python's time.sleep raises ValueError; the Go Sleep fails with the same names.
    # The Go worker once wrote them qualified (builtins.ValueError, ..., builtins.BaseException):
    # check() matched, but a listener or report reading the names saw another spelling.
    flow = linear_flow.Flow("negative").add(Sleep(name="sleep"))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"seconds": -1})

    with pytest.raises(exc.WrappedFailure) as raised:
        engine.run()

    assert raised.value.check(ValueError) is ValueError
    failure = _failure_of(engine, "sleep")
    assert failure.exception_type_names == ("ValueError", "Exception")
    assert failure.check(ValueError) is ValueError
    assert failure.check(TypeError) is None
    assert str(failure) == "Failure: ValueError: sleep length must be non-negative"
    assert failure.to_dict()["exc_type_names"] == ["ValueError", "Exception"]


#: What each worker records of a task that stops instead of returning: Python's SystemExit,
#: Go's runtime.Goexit. Neither is an Exception.
EXIT_NAMES = {"python": ("SystemExit", "BaseException"), "go": ("go.goexit", "BaseException")}


def test_a_task_that_stops_instead_of_returning_fails_as_no_exception_and_the_worker_goes_on(
    worker: WorkerProcess, redis_flushed_url: str
) -> None:
    # The Go worker recorded a runtime.Goexit as a panic (go.panic, an Exception), where
    # the Python worker records a task's SystemExit as what it is: a stop, no Exception.
    flow = linear_flow.Flow("stopping").add(Echo(name="before", provides="copy"), Exit(name="exit"))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"value": 1})

    with pytest.raises(exc.WrappedFailure) as raised:
        engine.run()

    assert raised.value.check(Exception) is None
    failure = _failure_of(engine, "exit")
    assert failure.exception_type_names == EXIT_NAMES[worker.kind]
    assert failure.check(Exception) is None
    assert failure.check(BaseException) is BaseException
    assert engine.storage.get_atom_state("before") == st.REVERTED
    assert engine.storage.get_flow_state() == st.REVERTED
    # The worker is still there to serve the next flow.
    again = load_engine(Echo(name="after"), redis_flushed_url, worker.topic, store={"value": 2})
    again.run()
    assert again.storage.get("after") == 2


class EchoTakingMore(task.Task):
    """A stub of Echo whose execute also takes ``extra``, an argument Echo's never takes."""

    worker_task_name = Echo.worker_task_name

    def execute(self, value: Any, extra: Any) -> Any:
        return value


class EchoTakingNothing(task.Task):
    """A stub of Echo whose execute takes nothing, so the worker's Echo misses its ``value``."""

    worker_task_name = Echo.worker_task_name

    def execute(self) -> None:
        return None


@pytest.mark.parametrize(
    ("stub", "message"),
    [
        (EchoTakingMore, "Echo.execute() got an unexpected keyword argument 'extra'"),
        (EchoTakingNothing, "Echo.execute() missing 1 required positional argument: 'value'"),
    ],
    ids=["unexpected", "missing"],
)
def test_arguments_the_task_does_not_take_fail_it_as_pythons_call_would(
    worker: WorkerProcess, redis_flushed_url: str, stub: type[task.Task], message: str
) -> None:
    # The Python worker's call raises TypeError; the Go worker checks the arguments
    # its task declares, before running it, and words the failure the same way.
    flow = linear_flow.Flow("mismatch").add(Echo(name="fine", provides="copy"), stub(name="echo"))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"value": 1, "extra": 2})
    events = Events(engine)

    with pytest.raises(exc.WrappedFailure, match=re.escape(message)) as raised:
        engine.run()

    assert raised.value.check(TypeError) is TypeError

    failure = _failure_of(engine, "echo")
    assert failure.check(TypeError) is TypeError
    assert failure.exception_type_names == ("TypeError", "Exception")
    assert failure.exception_str == message
    assert failure.traceback_str.startswith('  File "'), failure.traceback_str
    assert list(failure.exception_args) == [message]
    assert events.saw("echo", st.FAILURE)
    assert engine.storage.get_atom_state("echo") == st.REVERTED
    assert engine.storage.get_atom_state("fine") == st.REVERTED
    assert engine.storage.get_flow_state() == st.REVERTED


def test_reverts_run_on_the_worker_after_a_failure(
    worker: WorkerProcess, redis_client: Any, redis_flushed_url: str
) -> None:
    flow = linear_flow.Flow("undo").add(
        Echo(name="first", provides="a"),
        Echo(name="second", rebind={"value": "a"}, provides="b"),
        Fail(name="fail"),
    )
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"value": 3, "message": "stop"})
    events = Events(engine)

    with pytest.raises(exc.WrappedFailure):
        engine.run()

    for name in ("first", "second", "fail"):
        assert engine.storage.get_atom_state(name) == st.REVERTED
        assert engine.storage.get_revert_result(name) is None
        assert events.saw(name, st.REVERTING)
    # Three executes and three reverts, all sent to the worker.
    assert requests_added(redis_client, worker.topic) == 6


class EchoRevertedBare(task.Task):
    """A stub of Echo with the revert every task has by default, which names no argument."""

    worker_task_name = Echo.worker_task_name

    def execute(self, value: Any) -> Any:
        return value


def test_a_task_without_a_revert_of_its_own_reverts_alike_on_both_workers(
    worker: WorkerProcess, redis_client: Any, redis_flushed_url: str
) -> None:
    # The Go Echo registers no revert (a revert that does nothing): its twin must not
    # have one that needs arguments, or the Python worker fails a revert Go does not.
    flow = linear_flow.Flow("undo-bare").add(EchoRevertedBare(name="echo", provides="a"), Fail(name="fail"))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"value": 3, "message": "stop"})

    with pytest.raises(exc.WrappedFailure):
        engine.run()

    assert engine.storage.get_atom_state("echo") == st.REVERTED
    assert engine.storage.get_revert_result("echo") is None
    assert engine.storage.get_flow_state() == st.REVERTED
    assert requests_added(redis_client, worker.topic) == 4


class ReserveRevertingWithMore(task.Task):
    """A stub of Reserve whose revert also names ``extra``, which Reserve's revert never takes."""

    worker_task_name = Reserve.worker_task_name

    def execute(self, slot: str) -> str:
        return slot

    def revert(self, slot: str, extra: Any, result: Any, flow_failures: Any) -> None:
        return None


class ReserveRevertingWithNothing(task.Task):
    """A stub of Reserve whose revert names no argument, so Reserve's revert misses its ``slot``."""

    worker_task_name = Reserve.worker_task_name

    def execute(self, slot: str) -> str:
        return slot

    def revert(self, result: Any, flow_failures: Any) -> None:
        return None


def test_a_revert_of_its_own_runs_on_the_worker_with_its_arguments(
    worker: WorkerProcess, redis_flushed_url: str
) -> None:
    flow = linear_flow.Flow("release").add(Reserve(name="reserve", provides="held"), Fail(name="fail"))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"slot": "s1", "message": "stop"})

    with pytest.raises(exc.WrappedFailure):
        engine.run()

    assert engine.storage.get_atom_state("reserve") == st.REVERTED
    assert engine.storage.get_revert_result("reserve") == "released s1"
    assert engine.storage.get_flow_state() == st.REVERTED


@pytest.mark.parametrize(
    ("stub", "message"),
    [
        (ReserveRevertingWithMore, "Reserve.revert() got an unexpected keyword argument 'extra'"),
        (ReserveRevertingWithNothing, "Reserve.revert() missing 1 required positional argument: 'slot'"),
    ],
    ids=["unexpected", "missing"],
)
def test_arguments_a_revert_does_not_take_fail_it_as_pythons_call_would(
    worker: WorkerProcess, redis_flushed_url: str, stub: type[task.Task], message: str
) -> None:
    # The Python worker's call of revert(**arguments, result=..., flow_failures=...) raises
    # TypeError before the revert runs; the Go worker checks the arguments its revert
    # declares (those of its execute unless said otherwise) and fails it the same way.
    # It once ran the revert with whatever came, so a revert the Python worker fails
    # succeeded on Go (or failed only when it read a missing argument).
    flow = linear_flow.Flow("mismatch").add(stub(name="reserve"), Fail(name="fail"))
    engine = load_engine(
        flow, redis_flushed_url, worker.topic, store={"slot": "s1", "extra": 2, "message": "stop"}
    )
    events = Events(engine)

    with pytest.raises(exc.WrappedFailure, match=re.escape(message)) as raised:
        engine.run()

    assert raised.value.check(TypeError) is TypeError
    failure = engine.storage.get_revert_result("reserve")
    assert isinstance(failure, Failure), failure
    assert failure.exception_type_names == ("TypeError", "Exception")
    assert failure.exception_str == message
    assert events.saw("reserve", st.REVERT_FAILURE)
    assert engine.storage.get_atom_state("reserve") == st.REVERT_FAILURE
    assert engine.storage.get_atom_state("fail") == st.REVERTED
    assert engine.storage.get_flow_state() == st.FAILURE


def test_progress_reported_by_the_worker_reaches_the_atom_notifier(
    worker: WorkerProcess, redis_client: Any, redis_flushed_url: str
) -> None:
    flow = linear_flow.Flow("slow").add(Sleep(name="nap"))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"seconds": 0.4})
    events = Events(engine)

    engine.run()

    assert 0.5 in events.progress_of("nap")
    assert engine.storage.get_task_progress("nap") == 1.0


def test_events_and_every_progress_report_of_a_remote_task_reach_its_listeners_in_order(
    worker: WorkerProcess, redis_flushed_url: str
) -> None:
    announce = Announce(name="announce", provides="announced")
    heard: list[tuple[Any, Any]] = []
    announce.notifier.register(
        announce.notifier.ANY, lambda event_type, details: heard.append((event_type, details))
    )
    flow = linear_flow.Flow("announcing").add(announce)
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"events": ["A", "B", "C", "D"]})

    engine.run()

    assert engine.storage.fetch("announced") == 4
    progress = task.EVENT_UPDATE_PROGRESS
    assert heard == [
        (progress, {"progress": 0.0}),
        ("A", {"leftover": ["A", "B", "C", "D"]}),
        (progress, {"progress": 0.25}),  # four reports in a row: each one sent
        ("B", {"leftover": ["B", "C", "D"]}),
        (progress, {"progress": 0.5}),
        ("C", {"leftover": ["C", "D"]}),
        (progress, {"progress": 0.75}),
        ("D", {"leftover": ["D"]}),
        (progress, {"progress": 1.0}),
        (progress, {"progress": 1.0}),
    ]


def test_a_request_nobody_picks_up_times_out_and_the_flow_reverts(
    spawn_worker: WorkerFactory, redis_client: Any, redis_flushed_url: str
) -> None:
    # A long heartbeat keeps the paused worker's advertisement live, so the
    # engine keeps routing to it; while paused it reads nothing.
    worker = spawn_worker(fresh_topic(), heartbeat=3.0)
    flow = linear_flow.Flow("stall").add(
        Echo(name="first", provides="x"),
        Echo(name="stalled", rebind={"value": "x"}),
    )
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"value": 1}, transition_timeout=1.5)
    events = Events(engine)

    def pause() -> None:
        os.kill(worker.pid, signal.SIGSTOP)
        wait_stopped(worker.pid)

    # Pause once "first" is done, before "stalled" is sent; resume once
    # "stalled" timed out, so the reverts have a worker.
    events.on("first", st.SUCCESS, pause)
    events.on("stalled", st.FAILURE, lambda: os.kill(worker.pid, signal.SIGCONT))
    began = time.monotonic()

    with pytest.raises(Exception) as raised:  # noqa: PT011 - RequestTimeout, maybe wrapped
        engine.run()

    elapsed = time.monotonic() - began
    failure = _failure_of(engine, "stalled")
    assert failure.check(exc.RequestTimeout), failure.pformat()
    for part in ("stalled", "flowkit_go_tasks.Echo", worker.topic):
        assert part in failure.exception_str
    if isinstance(raised.value, exc.WrappedFailure):
        assert raised.value.check(exc.RequestTimeout)
    else:
        assert isinstance(raised.value, exc.RequestTimeout)
    assert engine.storage.get_atom_state("stalled") == st.REVERTED
    assert engine.storage.get_atom_state("first") == st.REVERTED
    assert engine.storage.get_flow_state() == st.REVERTED
    assert elapsed < 15.0
    assert worker.alive


def test_a_task_past_its_timeout_fails_without_waiting_for_the_worker(
    spawn_worker: WorkerFactory, redis_client: Any, redis_flushed_url: str
) -> None:
    # A short grace: at teardown the worker leaves the still sleeping task
    # instead of finishing its eight seconds.
    worker = spawn_worker(fresh_topic(), grace=0.1)
    flow = linear_flow.Flow("slow").add(Echo(name="first", provides="x"), Sleep(name="nap", timeout=0.5))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"value": 1, "seconds": 8.0})
    began = time.monotonic()

    with pytest.raises(exc.TaskTimeout) as raised:
        engine.run()

    elapsed = time.monotonic() - began
    assert (raised.value.atom, raised.value.timeout) == ("nap", 0.5)
    assert _failure_of(engine, "nap").check(exc.TaskTimeout)
    assert engine.storage.get_atom_state("nap") == st.REVERTED
    assert engine.storage.get_atom_state("first") == st.REVERTED
    assert elapsed < 6.0, "the engine waited for the sleeping worker"
    assert worker.alive


def test_an_engine_started_before_its_worker_gets_the_work_done(
    spawn_worker: WorkerFactory, redis_flushed_url: str
) -> None:
    topic = fresh_topic()
    engine = load_engine(Echo(name="echo", provides="out"), redis_flushed_url, topic, store={"value": "hi"})
    events = Events(engine)
    run = BackgroundRun(engine)
    services.wait_until(lambda: events.saw("echo", st.RUNNING), 10.0, message="the request waiting")
    assert not run.done  # no NotFound, as in TaskFlow: the request waits for a worker

    spawn_worker(topic)

    assert run.join(30.0) is None
    assert engine.storage.fetch("out") == "hi"


#: Workers started, one after another, each for a request held before it appeared.
ARRIVAL_TRIES = 3


class _HeldLine(logging.Handler):
    """Notices the engine's line saying it holds a request for a worker (its deadline set then)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "for a live worker offering their task" in record.getMessage():
            self.seen.set()


def _held_until_a_worker_arrives(
    spawn_worker: WorkerFactory,
    url: str,
    worker_url: str | None = None,
    looked: Callable[[], bool] = lambda: True,
    **options: Any,
) -> float:
    """Hold a request for a worker not started yet, start it: seconds from its first advert to ``running``.

    The worker starts once the engine holds the request and ``looked()`` is true.
    """
    topic = fresh_topic()
    engine = load_engine(Echo(name="echo", provides="out"), url, topic, store={"value": "hi"}, **options)
    started: list[float] = []
    engine.start_watchers.append(lambda _atom, _worker: started.append(time.time()))
    held = _HeldLine()
    logger = logging.getLogger("flowkit.engines.worker_based.engine")
    logger.addHandler(held)
    try:
        run = BackgroundRun(engine)
        services.wait_until(held.seen.is_set, 10.0, message="the engine holding the request")
    finally:
        logger.removeHandler(held)
    services.wait_until(looked, 10.0, message="the engine's first look for workers")
    # A long heartbeat: the advert read back is the first one, written as the worker appeared.
    worker = spawn_worker(topic, heartbeat=5.0, wait=False, url=worker_url)
    advert = worker.wait_advertised()
    services.wait_until(lambda: started, 10.0, message=f"the held request reaching the {worker.kind} worker")
    assert run.join(30.0) is None
    assert engine.storage.fetch("out") == "hi"
    worker.stop()
    return started[0] - float(advert["sent_at"])


def test_a_held_request_goes_out_on_its_workers_arrival_not_at_the_next_look(
    spawn_worker: WorkerFactory,
    redis_flushed_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The engine's periodic look for workers, every 0.25 s, is pushed past the
    # test's bounded waits, and each worker starts after the engine's first look
    # (made as its reply reader starts): only the worker's arrival entry can
    # release the request then (before it, the delay spread over 0-0.35 s; with
    # it, a few ms). Structural rather than timed, so a loaded machine cannot fail it.
    from flowkit.engines.worker_based import _driver

    looks = threading.Semaphore(0)
    tick = _driver.RedisDriver._tick

    def counted_tick(self: Any) -> None:
        tick(self)
        looks.release()

    monkeypatch.setattr(_driver, "LOOK_EVERY", 600.0)
    monkeypatch.setattr(_driver.RedisDriver, "_tick", counted_tick)
    caplog.set_level(logging.INFO, logger="flowkit.engines.worker_based.engine")
    for _ in range(ARRIVAL_TRIES):
        _held_until_a_worker_arrives(
            spawn_worker,
            redis_flushed_url,
            looked=lambda: looks.acquire(blocking=False),
            # A short transition_timeout would shorten the look's period (to a quarter of it).
            transition_timeout=7200.0,
        )


@pytest.fixture
def pre_arrivals_url(redis_flushed_url: str) -> Iterator[str]:
    """The URL of an ACL user set up before arrivals existed: every worker key but ``flowkit:arrivals``."""
    redis = services.require_module("redis", "redis")
    admin = redis.Redis.from_url(redis_flushed_url)
    user = f"fk-{uuid.uuid4().hex[:8]}"
    kinds = ("requests:*", "workers:*", "worker:*", "topics", "seen:*", "replies:*")
    keys = [f"~{NAMESPACE}:{kind}" for kind in kinds]
    admin.execute_command("ACL", "SETUSER", user, "on", ">pw", *keys, "&*", "+@all")
    try:
        yield redis_flushed_url.replace("redis://", f"redis://{user}:pw@", 1)
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_a_worker_whose_arrival_entry_is_refused_is_still_found_at_the_engines_next_look(
    spawn_worker: WorkerFactory,
    redis_flushed_url: str,
    pre_arrivals_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As an older worker, which writes no arrival entry: found by the periodic look instead.
    caplog.set_level(logging.INFO, logger="flowkit.engines.worker_based.engine")
    delay = _held_until_a_worker_arrives(spawn_worker, redis_flushed_url, worker_url=pre_arrivals_url)

    assert delay >= 0.0
    client = services.require_module("redis", "redis").Redis.from_url(redis_flushed_url)
    try:
        assert client.xlen(f"{NAMESPACE}:arrivals") == 0
    finally:
        client.close()


def test_with_worker_wait_a_task_no_worker_offers_fails_fast_before_anything_runs(
    worker: WorkerProcess, redis_client: Any, redis_flushed_url: str
) -> None:
    flow = linear_flow.Flow("missing").add(Echo(name="fine"), NotOffered(name="lonely"))
    # Its sleep() moves it on: the wait for a worker costs no real time. The wait is
    # shorter than an advert lives (three heartbeats), or the engine, its clock
    # jumping past them, would rightly find the worker of "fine" gone too.
    clock = FakeClock()
    began = clock.monotonic()

    with pytest.raises(exc.NotFound) as raised:
        engine = load_engine(
            flow, redis_flushed_url, worker.topic, store={"value": 1}, worker_wait=0.5, clock=clock
        )
        engine.run()

    message = str(raised.value)
    assert "lonely" in message
    assert f"{__name__}.NotOffered" in message
    assert worker.topic in message
    assert "fine" not in message.replace("flowkit_go_tasks", "")
    assert 0.5 <= clock.monotonic() - began < 0.6  # the whole worker_wait, on the engine's clock
    assert requests_added(redis_client, worker.topic) == 0


def _blocked_reading(client: Any) -> bool:
    """Whether some client of the server is blocked in XREAD (the engine: workers use XREADGROUP)."""
    return any(c.get("cmd") == "xread" and "b" in c.get("flags", "") for c in client.client_list())


def test_worker_wait_ends_as_the_worker_arrives_not_at_the_next_look(
    spawn_worker: WorkerFactory,
    redis_client: Any,
    redis_flushed_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The periodic look for workers is pushed past the test's bounded waits, and the
    # worker starts once the wait has made its first scan and blocks on the arrivals
    # stream: only the worker's arrival entry can end the wait then, with one more
    # scan. Counted, not timed, so a loaded machine cannot fail it.
    from flowkit.engines.worker_based import _driver

    monkeypatch.setattr(_driver, "LOOK_EVERY", 600.0)
    scans = WaitScans(monkeypatch)
    for _ in range(ARRIVAL_TRIES):
        topic = fresh_topic()
        engine = load_engine(
            Echo(name="echo", provides="out"),
            redis_flushed_url,
            topic,
            store={"value": "hi"},
            worker_wait=600.0,
        )
        run = BackgroundRun(engine)
        # Blocked only after its first scan (the last run's reader is closed).
        services.wait_until(
            lambda: _blocked_reading(redis_client), 10.0, message="the wait blocking on the arrivals stream"
        )
        worker = spawn_worker(topic, wait=False)
        assert run.join(30.0) is None

        assert engine.storage.fetch("out") == "hi"
        assert scans.during_wait[-1] == 2, f"{worker.kind} worker: {scans.during_wait}"
        worker.stop()


def test_an_engine_given_no_topics_finds_the_worker_by_its_announcement(
    worker: WorkerProcess, redis_client: Any, redis_flushed_url: str
) -> None:
    expires_ms = redis_client.zscore(f"{NAMESPACE}:topics", worker.topic)
    assert expires_ms is not None and expires_ms > time.time() * 1000
    flow = linear_flow.Flow("found").add(
        Echo(name="start", provides="text"),
        Sha256Rounds(name="hash", rebind={"data": "text"}, provides="digest"),
    )
    engine = engines.load(
        flow, engine="worker-based", url=redis_flushed_url, store={"value": "abc", "rounds": 2},
        transition_timeout=30.0,
    )  # fmt: skip

    engine.run()

    assert engine.storage.fetch("digest") == sha256_rounds("abc", 2)
    assert requests_added(redis_client, worker.topic) == 2


def test_one_worker_runs_several_requests_at_once(
    spawn_worker: WorkerFactory, redis_client: Any, redis_flushed_url: str
) -> None:
    worker = spawn_worker(fresh_topic(), concurrency=4)
    flow = unordered_flow.Flow("naps").add(*(Sleep(name=f"nap{i}") for i in range(4)))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"seconds": 2.0})

    run = BackgroundRun(engine)
    # All four are held by the one worker at the same moment.
    services.wait_until(
        lambda: sum(pending_by_worker(redis_client, worker.topic).values()) == 4,
        10.0,
        message="4 requests in flight on the worker",
    )
    assert list(pending_by_worker(redis_client, worker.topic)) == [worker.worker_id]
    assert run.join(30.0) is None
    assert run.elapsed is not None and run.elapsed < 7.0
    assert all(engine.storage.get_atom_state(f"nap{i}") == st.SUCCESS for i in range(4))


class _Overlap:
    """The most atoms of a flow the engine had RUNNING (or REVERTING) at once, by its notifications."""

    def __init__(self, engine: Any) -> None:
        self.busy: set[str] = set()
        self.peak = 0
        engine.atom_notifier.register(engine.atom_notifier.ANY, self._on_state)

    def _on_state(self, state: str, details: dict[str, Any]) -> None:
        name = details.get("task_name")
        if name is None:  # the retry's own states
            return
        if state in (st.RUNNING, st.REVERTING):
            self.busy.add(name)
            self.peak = max(self.peak, len(self.busy))
        else:
            self.busy.discard(name)


def test_a_concurrency_limit_holds_for_remote_calls_through_retries_and_reverts(
    spawn_worker: WorkerFactory, redis_flushed_url: str
) -> None:
    # A worker free to run four at once, a limit of one: the engine sends one
    # call of the key at a time, through both attempts of the retry and the
    # reverts after each (the failing task fails every time).
    worker = spawn_worker(fresh_topic(), concurrency=4)
    attempt = linear_flow.Flow("attempt", retry=Times(2, name="again")).add(
        unordered_flow.Flow("calls").add(
            *(Echo(name=f"echo{i}", provides=f"out{i}", concurrency_key="api") for i in range(3)),
            Fail(name="flaky", concurrency_key="api", rebind={"message": "text"}),
        )
    )
    engine = load_engine(
        attempt,
        redis_flushed_url,
        worker.topic,
        store={"value": "v", "text": "first try fails"},
        concurrency_limits={"api": 1},
    )
    overlap = _Overlap(engine)
    with pytest.raises(exc.WrappedFailure):
        engine.run()
    assert overlap.peak == 1
    assert engine.storage.get_atom_state("again") == st.REVERTED
    assert all(engine.storage.get_atom_state(f"echo{i}") == st.REVERTED for i in range(3))


def test_sigterm_stops_an_idle_worker_and_withdraws_its_advertisement(
    worker: WorkerProcess, redis_client: Any
) -> None:
    worker_id = worker.worker_id
    assert worker_id is not None

    assert worker.stop() == 0, worker.log()

    assert redis_client.zscore(workers_key(worker.topic), worker_id) is None
    assert not redis_client.exists(worker_key(worker_id))


def _blocked_reads(client: Any) -> int:
    """How many connections Redis lists as blocked in ``XREADGROUP``."""
    return sum(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in client.client_list())


def test_sigterm_ends_an_idle_workers_blocked_read_instead_of_waiting_it_out(
    worker: WorkerProcess, redis_client: Any
) -> None:
    # A stop sends CLIENT UNBLOCK for the worker's read of requests (doc/workers.rst),
    # which ends it at once: without it the stop waited for Redis to end the block,
    # up to half a second and Redis's next timer tick later. Counted, not timed: the
    # read is seen blocked, then the only way the stop can have cut it short is seen.
    services.wait_until(lambda: _blocked_reads(redis_client) == 1, 10.0, message="the worker's read blocking")
    redis_client.config_resetstat()

    assert worker.stop() == 0, worker.log()

    unblocks = redis_client.info("commandstats").get("cmdstat_client|unblock", {}).get("calls", 0)
    assert unblocks >= 1, f"the {worker.kind} worker's stop waited out its read's block"
    assert redis_client.zscore(workers_key(worker.topic), worker.worker_id) is None


def test_a_late_answer_does_not_leave_a_reply_stream_for_ever(
    spawn_worker: WorkerFactory, redis_client: Any, redis_flushed_url: str
) -> None:
    """The engine gave up on a request and deleted its reply stream; the worker answers later.

    The answer re-creates the stream (nobody reads it any more): it must
    expire as the engine's own would, not stay in Redis for ever.
    """
    worker = spawn_worker(fresh_topic(), grace=0.1)
    flow = linear_flow.Flow("late").add(Sleep(name="nap", timeout=0.3))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"seconds": 1.0})
    with pytest.raises(exc.TaskTimeout):
        engine.run()
    assert not redis_client.keys("flowkit:replies:*"), "the engine left its reply stream behind"

    # The worker finishes the nap a moment later and answers into the void.
    late = services.wait_until(
        lambda: redis_client.keys("flowkit:replies:*"), 15.0, message="the worker's late answer"
    )
    for key in late:
        ttl_ms = redis_client.pttl(key)
        assert 0 < ttl_ms <= 24 * 3600 * 1000, f"{key!r} has no expiry (PTTL {ttl_ms}): it stays for ever"


def _consumers(client: Any, topic: str) -> dict[str, dict[str, Any]]:
    """``{consumer name: XINFO CONSUMERS row}`` of ``topic``'s workers group."""
    rows = client.xinfo_consumers(requests_key(topic), "workers")
    return {row["name"].decode() if isinstance(row["name"], bytes) else row["name"]: row for row in rows}


def test_a_worker_stopped_cleanly_leaves_no_consumer_behind(
    spawn_worker: WorkerFactory, redis_client: Any, redis_flushed_url: str
) -> None:
    """Every restart would otherwise add a dead consumer name to the group, for ever."""
    worker = spawn_worker(fresh_topic())
    flow = linear_flow.Flow("once").add(Echo(name="echo", provides="y"))
    engine = load_engine(flow, redis_flushed_url, worker.topic, store={"value": 1})
    engine.run()  # the worker read a request: it is a consumer of the group now
    assert worker.worker_id in _consumers(redis_client, worker.topic)
    assert worker.stop() == 0
    assert worker.worker_id not in _consumers(redis_client, worker.topic)


def test_live_workers_remove_the_consumer_of_a_dead_worker_once_it_holds_nothing(
    spawn_worker: WorkerFactory, redis_client: Any
) -> None:
    topic = fresh_topic()
    redis_client.xgroup_create(requests_key(topic), "workers", id="0", mkstream=True)
    # A worker killed with nothing in hand: its consumer holds no entry.
    redis_client.xgroup_createconsumer(requests_key(topic), "workers", "dead-worker")
    live = spawn_worker(topic, heartbeat=0.1, visibility_timeout=0.5)
    services.wait_until(
        lambda: "dead-worker" not in _consumers(redis_client, topic),
        15.0,
        message="the dead worker's consumer removed by the live one",
    )
    assert live.alive, live.log()
