"""Per-task timeouts on every in-process engine kind, with a timer the test moves by hand.

Each test starts the run in a thread, waits (on the timer, not the clock) until the
timed call started, moves time past the deadline and checks that the atom failed
with TaskTimeout, that the flow reverted (the timed-out atom's revert included), and
that the abandoned call's late outcome was ignored.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from flowkit import engines, states
from flowkit import exceptions as exc
from flowkit.engines._threads import default_thread_count
from flowkit.patterns import linear_flow, unordered_flow
from flowkit.retry import Times
from flowkit.types.failure import Failure
from tests.unit.engines._fresh_python import run_python

from . import _timeout_tasks as tt
from ._manual_timer import ManualTimer

RUN_WAIT = 30.0  # real seconds a test waits for a run it expects to end


@pytest.fixture(autouse=True)
def _fresh_gates() -> Iterator[None]:
    tt.GATES.clear()
    while not tt.STARTS.empty():
        tt.STARTS.get_nowait()
    yield
    for g in tt.GATES.values():
        g.release.set()  # let abandoned calls end


@pytest.fixture
def runner() -> Iterator[cf.ThreadPoolExecutor]:
    with cf.ThreadPoolExecutor(1) as pool:
        yield pool


def _start(runner: cf.ThreadPoolExecutor, engine: Any) -> cf.Future[None]:
    return runner.submit(engine.run)


def _assert_timed_out(future: cf.Future[None], atom: str, seconds: float) -> exc.TaskTimeout:
    with pytest.raises(exc.TaskTimeout) as caught:
        future.result(RUN_WAIT)
    assert caught.value.atom == atom
    assert caught.value.timeout == seconds
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value, exc.ExecutionFailure)
    return caught.value


KINDS = ("serial", "parallel", "asyncio")


@pytest.mark.parametrize("kind", KINDS)
def test_thread_task_past_its_timeout_fails_and_reverts(kind: str, runner: cf.ThreadPoolExecutor) -> None:
    timer = ManualTimer()
    flow = linear_flow.Flow("f").add(tt.Quick("before"), tt.Blocking("slow", timeout=5))
    engine = engines.load(flow, engine=kind, clock=timer)
    running = _start(runner, engine)
    timer.wait_armed(1)
    timer.advance(4.9)
    assert not running.done()
    timer.advance(0.1)
    _assert_timed_out(running, "slow", 5.0)
    storage = engine.storage
    assert storage.get_flow_state() == states.REVERTED
    assert storage.get_atom_state("slow") == states.REVERTED
    assert storage.get_atom_state("before") == states.REVERTED
    # The timed-out atom's own revert ran, and was told why.
    (result,) = tt.gate("slow").reverted
    assert isinstance(result, Failure) and result.check(exc.TaskTimeout)
    # The abandoned thread finishes later: its result is logged and ignored.
    with _LateLog() as late:
        tt.gate("slow").release.set()
        message = late.wait("slow")
    assert "past its timeout" in message and "'slow done'" in message
    assert storage.get_atom_state("slow") == states.REVERTED


class _LateLog(logging.Handler):
    """Collects the timeout module's records; installed before the late call can log."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.messages.append(record.getMessage())
            self._changed.notify_all()

    def __enter__(self) -> _LateLog:
        logger = logging.getLogger("flowkit.engines.timeouts")
        self._level = logger.level
        logger.setLevel(logging.WARNING)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logger = logging.getLogger("flowkit.engines.timeouts")
        logger.removeHandler(self)
        logger.setLevel(self._level)

    def wait(self, atom: str) -> str:
        """The first message about ``atom``: a call an earlier test abandoned may end meanwhile."""

        def about_atom() -> str | None:
            return next((m for m in self.messages if f"atom '{atom}'" in m), None)

        with self._changed:
            message = self._changed.wait_for(about_atom, RUN_WAIT)
        assert message is not None, f"the late outcome of '{atom}' was not logged: {self.messages}"
        return message


@pytest.mark.parametrize("kind", KINDS)
def test_call_in_time_cancels_its_timer(kind: str) -> None:
    timer = ManualTimer()
    flow = unordered_flow.Flow("f").add(*[tt.Quick(f"q{i}", timeout=1) for i in range(5)])
    engine = engines.load(flow, engine=kind, clock=timer)
    engine.run()
    assert timer.armed == 5
    assert timer.pending() == 0  # every deadline cancelled
    timer.advance(10)  # nothing left to fire
    assert engine.storage.get_flow_state() == states.SUCCESS


@pytest.mark.parametrize("kind", KINDS)
def test_async_task_is_cancelled(kind: str, runner: cf.ThreadPoolExecutor) -> None:
    timer = ManualTimer()
    engine = engines.load(tt.AsyncBlocking("coro", timeout=2), engine=kind, clock=timer)
    running = _start(runner, engine)
    timer.wait_armed(1)
    timer.advance(2)
    _assert_timed_out(running, "coro", 2.0)
    assert tt.gate("coro").cancelled.wait(RUN_WAIT)
    assert not tt.gate("coro").finished.is_set()
    assert engine.storage.get_atom_state("coro") == states.REVERTED


@pytest.mark.parametrize("kind", KINDS)
def test_task_that_ignores_cancellation_still_times_out(kind: str, runner: cf.ThreadPoolExecutor) -> None:
    timer = ManualTimer()
    engine = engines.load(tt.Stubborn("stubborn", timeout=1), engine=kind, clock=timer)
    running = _start(runner, engine)
    timer.wait_armed(1)
    timer.advance(1)
    # The run ends on time although the coroutine swallowed its cancellation.
    _assert_timed_out(running, "stubborn", 1.0)
    assert tt.gate("stubborn").cancelled.wait(RUN_WAIT)
    assert not tt.gate("stubborn").finished.is_set()
    assert engine.storage.get_atom_state("stubborn") == states.REVERTED
    # It runs on (on the shared loop thread, or on the asyncio engine's own loop,
    # whose thread outlives the run until the coroutine ends), and its late
    # outcome is logged and ignored.
    with _LateLog() as late:
        tt.gate("stubborn").release.set()
        message = late.wait("stubborn")
    assert "past its timeout" in message and "'stubborn done anyway'" in message
    assert engine.storage.get_atom_state("stubborn") == states.REVERTED


def test_a_coroutine_that_ignores_cancellation_gives_back_its_max_workers_slot(
    runner: cf.ThreadPoolExecutor,
) -> None:
    # On the asyncio engine max_workers counts calls in flight. The abandoned
    # coroutine kept its slot for as long as it went on, so with one slot the
    # call queued behind it (and its own revert) never started: the run hung.
    timer = ManualTimer()
    flow = unordered_flow.Flow("u").add(tt.Stubborn("stubborn", timeout=1), tt.Quick("quick"))
    engine = engines.load(flow, engine="asyncio", max_workers=1, clock=timer)
    running = _start(runner, engine)
    timer.wait_armed(1)
    timer.advance(1)
    try:
        _assert_timed_out(running, "stubborn", 1.0)
    finally:  # failing, let the coroutine end, so the run does (and the runner's thread)
        tt.gate("stubborn").release.set()
    assert not tt.gate("stubborn").finished.is_set()
    assert engine.storage.get_atom_state("stubborn") == states.REVERTED
    assert engine.storage.get_atom_state("quick") == states.REVERTED


def test_waiting_for_a_free_thread_does_not_count(runner: cf.ThreadPoolExecutor) -> None:
    timer = ManualTimer()
    flow = unordered_flow.Flow("both").add(tt.Blocking("a", timeout=10), tt.Blocking("b", timeout=10))
    engine = engines.load(flow, engine="parallel", max_workers=1, clock=timer)
    running = _start(runner, engine)
    timer.wait_armed(1)  # one of them runs; the other waits for the only thread
    # Which one: armed just before it starts, it may not have said so yet.
    first = tt.STARTS.get(timeout=RUN_WAIT)
    second = "b" if first == "a" else "a"
    timer.advance(9)
    tt.gate(first).release.set()
    timer.wait_armed(2)  # the second starts only now, at t=9: its deadline is t=19, not t=10
    timer.advance(5)
    tt.gate(second).release.set()
    running.result(RUN_WAIT)
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_default_timeout_applies_unless_a_task_sets_its_own(runner: cf.ThreadPoolExecutor) -> None:
    timer = ManualTimer()
    flow = unordered_flow.Flow("f").add(
        tt.Blocking("default"), tt.Blocking("own", timeout=50), tt.Blocking("none", timeout=math.inf)
    )
    engine = engines.load(flow, engine="parallel", default_timeout=20, clock=timer)
    running = _start(runner, engine)
    timer.wait_armed(2)  # 'none' sets no timer at all
    tt.gate("own").release.set()
    tt.gate("none").release.set()
    assert tt.gate("own").finished.wait(RUN_WAIT) and tt.gate("none").finished.wait(RUN_WAIT)
    timer.advance(20)
    _assert_timed_out(running, "default", 20.0)
    assert timer.armed == 2


def test_class_attribute_timeout(runner: cf.ThreadPoolExecutor) -> None:
    class Slow(tt.Blocking):
        timeout = 3

    timer = ManualTimer()
    engine = engines.load(Slow("cls"), engine="serial", clock=timer)
    running = _start(runner, engine)
    timer.wait_armed(1)
    timer.advance(3)
    _assert_timed_out(running, "cls", 3.0)


def test_timeout_in_a_retry_scope_is_retried(runner: cf.ThreadPoolExecutor) -> None:
    timer = ManualTimer()
    flow = linear_flow.Flow("f", retry=Times(2)).add(tt.Blocking("flaky", timeout=1, provides="out"))
    engine = engines.load(flow, engine="parallel", clock=timer)
    running = _start(runner, engine)
    timer.wait_armed(1)
    timer.advance(1)  # first attempt abandoned; the retry runs it again
    timer.wait_armed(2)
    tt.gate("flaky").release.set()
    running.result(RUN_WAIT)
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert engine.storage.fetch("out") == "flaky done"
    history = engine.storage.get_retry_history("f_retry")
    assert len(history) == 2
    assert history.caused_by(exc.TaskTimeout, index=0)


def test_process_pool_timeout_refuses_the_result_and_stops_the_child(
    runner: cf.ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    timer = ManualTimer()
    engine = engines.load(
        tt.SleepsLong("long", timeout=2), engine="parallel", executor="processes", clock=timer
    )
    with caplog.at_level(logging.DEBUG, logger="flowkit.engines.timeouts"):
        running = _start(runner, engine)
        timer.wait_armed(1)
        timer.advance(2)
        # The child would sleep two minutes: the run ends now, its pool's processes stopped.
        _assert_timed_out(running, "long", 2.0)
    assert engine.storage.get_atom_state("long") == states.REVERTED
    # Stopping the pool breaks the abandoned call's future: that is the engine's
    # own teardown, not an outcome of the call, and must not be logged as one.
    # Only this atom's: a call an earlier test abandoned may end, and say so, meanwhile.
    late = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and "past its" in r.getMessage() and "'long'" in r.getMessage()
    ]
    assert not late, [r.getMessage() for r in late]


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 0, 0.0, math.nan, "5", True, [1]])
def test_bad_timeout_is_refused_naming_the_task(bad: Any) -> None:
    with pytest.raises(exc.InvalidAtomOption) as caught:
        tt.Quick("named", timeout=bad)
    assert caught.value.atom == "named"
    assert caught.value.option == "timeout"
    assert "'named'" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_bad_class_attribute_timeout_is_refused_at_compile() -> None:
    class Negative(tt.Quick):
        timeout = -2

    engine = engines.load(linear_flow.Flow("f").add(Negative("neg")))
    with pytest.raises(exc.InvalidAtomOption, match="'neg' has timeout=-2"):
        engine.compile()


@pytest.mark.parametrize("bad", [-1, 0, "soon", False])
def test_bad_default_timeout_is_refused(bad: Any) -> None:
    with pytest.raises(exc.InvalidEngineOption) as caught:
        engines.load(tt.Quick("q"), default_timeout=bad)  # at load, as every option value
    assert caught.value.option == "default_timeout"


def test_clock_without_call_later_is_refused() -> None:
    class OnlyMonotonic:
        def monotonic(self) -> float:
            return 0.0

    engine = engines.load(tt.Quick("q", timeout=1), clock=OnlyMonotonic())
    with pytest.raises(exc.InvalidEngineOption, match="call_later"):
        engine.compile()


def test_atoms_added_while_running_get_their_options() -> None:
    # Spawned sub-flows add atoms after compiling; the runtime reads their
    # timeout and key then, with the engine's default and limits.
    engine: Any = engines.load(
        linear_flow.Flow("f").add(tt.Quick("q")),
        engine="parallel",
        default_timeout=7,
        concurrency_limits={"api": 1},
    )
    engine.compile()
    runtime = engine._runtime
    assert runtime is not None
    (node,) = engine.compilation.atoms
    runtime.timeouts.clear()
    node.atom.concurrency_key = "api"
    runtime.adopt_options([node])
    assert runtime.timeouts == {node.index: 7.0}
    assert runtime.keys == {node.index: "api"}
    node.atom.concurrency_key = "nope"
    with pytest.raises(exc.InvalidAtomOption, match="'nope'"):
        runtime.adopt_options([node])


@pytest.mark.parametrize("kind", KINDS)
def test_a_spawned_task_times_out(kind: str, runner: cf.ThreadPoolExecutor) -> None:
    from flowkit import dynamic, task

    class Spawn(task.Task):
        def execute(self) -> Any:
            return dynamic.subflow(linear_flow.Flow("sub").add(tt.Blocking("child", timeout=3)))

    timer = ManualTimer()
    engine = engines.load(linear_flow.Flow("f").add(Spawn("spawner")), engine=kind, clock=timer)
    running = _start(runner, engine)
    timer.wait_armed(1)
    timer.advance(3)
    _assert_timed_out(running, "child", 3.0)
    assert engine.storage.get_atom_state("child") == states.REVERTED
    assert engine.storage.get_atom_state("spawner") == states.REVERTED


def test_a_loops_check_is_not_timed_but_its_body_is() -> None:
    from flowkit.patterns import loop_flow

    timer = ManualTimer()
    counter = iter(range(10))

    class Count(tt.Quick):
        def execute(self) -> int:  # type: ignore[override]
            return next(counter)

    flow = loop_flow.Flow(
        "poll", Count("count", provides="count"), until=lambda count: count == 2, max_iterations=5
    )
    engine = engines.load(flow, engine="serial", default_timeout=30, clock=timer)
    engine.run()
    assert timer.armed == 3  # the body's three calls; the loop's own check runs untimed


def test_progress_of_a_timed_task_on_the_serial_engine_is_heard_in_the_engine_thread() -> None:
    from flowkit import task

    class Reports(task.Task):
        def execute(self) -> int:
            self.update_progress(0.5)
            return 1

    engine = engines.load(Reports("reports", timeout=30), engine="serial")
    heard: list[tuple[float, int]] = []

    def listen(_event: str, details: dict[str, Any]) -> None:
        heard.append((details["progress"], threading.get_ident()))

    engine.atom_notifier.register(task.EVENT_UPDATE_PROGRESS, listen)
    engine.run()
    assert (0.5, threading.get_ident()) in heard  # relayed from the helper thread to this one
    assert engine.storage.get_task_progress("reports") == 1.0


def test_an_asyncio_run_ending_on_a_timed_thread_call_leaves_no_task_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Such a call reports from its thread: the run could end and close its loop
    # before the loop saw the thread return, leaving the call's task pending
    # (asyncio then logs "Task was destroyed but it is pending!"), in most runs.
    import asyncio

    from flowkit._utils.asyncio_bridge import EventLoopThread

    left: list[Any] = []
    close = EventLoopThread.close

    def closing(bridge: EventLoopThread) -> None:
        loop = bridge._loop if bridge._owned else None
        close(bridge)
        if loop is not None:
            left.extend(asyncio.all_tasks(loop))

    monkeypatch.setattr(EventLoopThread, "close", closing)
    for _ in range(10):
        engines.run(tt.Quick("timed", timeout=30), engine="asyncio")
    assert left == []


def test_calls_abandoned_on_the_asyncio_engine_do_not_starve_the_calls_behind_them(
    runner: cf.ThreadPoolExecutor,
) -> None:
    # More timed thread calls than the engine's pool has threads (once asyncio's
    # default executor): the abandoned ones held those threads, so the calls queued
    # behind them never started, never timed out, and the run waited for ever.
    # Each wave of calls that start times out, and lends its threads to the next.
    count = default_thread_count() + 1
    timer = ManualTimer()
    flow = unordered_flow.Flow("u").add(*(tt.Blocking(f"b{i}", timeout=5) for i in range(count)))
    engine = engines.load(flow, engine="asyncio", clock=timer)
    running = _start(runner, engine)
    try:
        # Forced: the first wave takes every thread (as many as the pool
        # has) before this thread looks, as a loaded machine did at random;
        # a loop waiting for "one arm more than seen" then waited for ever.
        timer.wait_armed(default_thread_count())
        while timer.armed < count:
            # The calls a move lends threads to may arm before this thread looks again.
            timer.wait_pending()
            timer.advance(5)
    finally:  # failing, let the calls end, so the run does (and the runner's thread)
        timer.advance(5)
        # Every call's gate, those of calls yet to start too: made later, a gate
        # would hold its call 30 s, and a failing run took minutes to end.
        for i in range(count):
            tt.gate(f"b{i}").release.set()
    with pytest.raises(exc.WrappedFailure) as caught:
        running.result(RUN_WAIT)
    assert len(list(caught.value)) == count
    assert all(failure.check(exc.TaskTimeout) for failure in caught.value)
    assert engine.storage.get_flow_state() == states.REVERTED


_ABANDONED_AT_EXIT = """
import threading
from flowkit import engines, exceptions, task
from tests.unit.engines._manual_timer import ManualTimer

class Forever(task.Task):
    def execute(self):
        threading.Event().wait()  # never returns

timer = ManualTimer()
out = []
def run():
    try:
        engines.run(Forever("forever", timeout=5), engine="asyncio", clock=timer)
    except exceptions.TaskTimeout:
        out.append("timed out")
running = threading.Thread(target=run)
running.start()
timer.wait_armed(1)
timer.advance(5)
running.join(30)
print(out[0] if out else "the run did not end")
"""


def test_a_process_exits_while_a_call_abandoned_on_the_asyncio_engine_runs_on() -> None:
    # The default executor's threads are joined at exit: a call that never
    # returns kept the process from exiting, as no other engine's did.
    out = run_python(_ABANDONED_AT_EXIT)
    assert (out.returncode, out.stdout.strip()) == (0, "timed out"), out.stdout + out.stderr


_STUBBORN_AT_EXIT = """
import asyncio, sys, threading
from flowkit import engines, exceptions, task
from tests.unit.engines._manual_timer import ManualTimer

release = threading.Event()
ended = threading.Event()

class Stubborn(task.Task):
    async def execute(self):
        while not release.is_set():
            try:
                await asyncio.sleep(0.005)
            except asyncio.CancelledError:
                pass  # ignored: the call is abandoned at its timeout and goes on
        ended.set()
        return "done anyway"

timer = ManualTimer()
out = []
def run():
    try:
        engines.run(Stubborn("stubborn", timeout=1), engine="asyncio", clock=timer)
    except exceptions.TaskTimeout:
        out.append("timed out")
running = threading.Thread(target=run)
running.start()
timer.wait_armed(1)
timer.advance(1)
running.join(30)
if sys.argv[1] == "released":
    release.set()
    assert ended.wait(30), "the abandoned coroutine did not go on after the run"
print(out[0] if out else "the run did not end")
"""


@pytest.mark.parametrize("then", ["released", "never-released"])
def test_a_coroutine_abandoned_on_the_asyncio_engine_is_not_destroyed_pending_at_exit(then: str) -> None:
    # Closing the run's loop under a timed-out coroutine that swallowed its
    # cancellation left its task pending on a closed loop: destroyed at exit
    # ("Task was destroyed but it is pending!"), GeneratorExit thrown into it.
    # The loop's thread now runs it on until it ends, as other engines do.
    out = run_python(_STUBBORN_AT_EXIT, then)
    assert (out.returncode, out.stdout.strip()) == (0, "timed out"), out.stdout + out.stderr
    assert "destroyed" not in out.stderr and "GeneratorExit" not in out.stderr, out.stderr


_TIMER_AFTER_FORK = """
import multiprocessing, threading
from flowkit.engines._timeouts import SYSTEM_TIMER

fired = threading.Event()
SYSTEM_TIMER.call_later(0, fired.set)  # starts the timer's thread in this process
assert fired.wait(30)

def child(out):
    again = threading.Event()
    SYSTEM_TIMER.call_later(0, again.set)
    out.put(again.wait(10))

context = multiprocessing.get_context("fork")
out = context.SimpleQueue()
process = context.Process(target=child, args=(out,))
process.start()
process.join(30)
print(out.get() if process.exitcode == 0 else process.exitcode)
"""


def test_a_forked_child_times_calls_on_a_timer_thread_of_its_own() -> None:
    # The timer's thread stays in the parent; the forked child inherits the timer
    # object, which thought its thread was running: no deadline fell due there.
    out = run_python(_TIMER_AFTER_FORK)
    assert out.stdout.strip() == "True", out.stdout + out.stderr


def test_a_timed_plain_call_cancelled_while_queued_for_a_thread_never_starts() -> None:
    # On the asyncio engine a run that is stopped (an interrupt, a cancelled
    # run_async) cancels its calls; one still queued for a thread must not
    # start after the run has ended, as a call queued on asyncio's executor did not.
    import asyncio

    from flowkit.engines._threads import WorkerThreads
    from flowkit.engines.asyncio import _in_pool_thread

    threads = WorkerThreads(1)
    busy, free, ran = threading.Event(), threading.Event(), threading.Event()

    def occupy() -> None:
        busy.set()
        free.wait(RUN_WAIT)

    async def scenario() -> None:
        first = asyncio.ensure_future(_in_pool_thread(threads, occupy, {}))
        await asyncio.to_thread(busy.wait, RUN_WAIT)
        queued = asyncio.ensure_future(_in_pool_thread(threads, ran.set, {}))
        await asyncio.sleep(0)  # it is handed to the pool, behind the busy thread
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        free.set()
        await first

    try:
        asyncio.run(scenario())
        threads.close()  # every call handed to the pool has ended
    finally:
        free.set()
    assert not ran.is_set()
