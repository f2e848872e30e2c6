"""``async def`` tasks run on every engine; the asyncio engine runs many coroutines at once."""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures as cf
import dataclasses
import signal
import sys
import threading
import warnings
from typing import Any

import pytest

from flowkit import engines, exceptions, states, task
from flowkit.engines._threads import default_thread_count
from flowkit.engines.asyncio import AsyncioEngine
from flowkit.patterns import linear_flow, unordered_flow
from tests.conftest import WAIT_TIMEOUT, wait_until
from tests.services import run_bounded

from ._fresh_python import run_python
from ._tasks import Recorder, Step


class AsyncStep(task.Task):
    """An ``async def`` task that records its execute and revert, awaiting in between."""

    def __init__(self, name: str, recorder: Recorder, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.recorder = recorder

    async def execute(self, **kwargs: Any) -> str:
        await asyncio.sleep(0)
        self.recorder.add("execute", self.name, kwargs)
        return f"{self.name} done"

    async def revert(self, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        self.recorder.add("revert", self.name, kwargs)


class AsyncBoom(AsyncStep):
    async def execute(self, **kwargs: Any) -> str:
        await asyncio.sleep(0)
        self.recorder.add("execute", self.name, kwargs)
        raise ValueError(f"{self.name} failed")


class Gathering(task.Task):
    """Waits until all ``total`` gathering tasks have started: only possible if they run concurrently."""

    def __init__(self, name: str, state: dict[str, Any], total: int) -> None:
        super().__init__(name, provides=name)
        self.state = state
        self.total = total

    async def execute(self) -> int:
        state = self.state
        if "event" not in state:
            state["event"] = asyncio.Event()
        state["started"] += 1
        if state["started"] == self.total:
            state["event"].set()
        await asyncio.wait_for(state["event"].wait(), timeout=10)
        await asyncio.sleep(0.001)  # a "sleeping" coroutine: only concurrency makes this quick
        return state["started"]


def test_async_tasks_run_and_provide_results(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(
        AsyncStep("a", rec, provides="x"), AsyncStep("b", rec, requires=["x"], provides="y")
    )
    results = engines.run(flow, engine=engine_kind)
    assert results == {"x": "a done", "y": "b done"}
    assert rec.details("execute", "b") == [{"x": "a done"}]


def test_async_and_plain_tasks_mix_in_one_flow(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("plain", rec), AsyncStep("async", rec), Step("plain2", rec))
    engines.run(flow, engine=engine_kind)
    assert rec.executed() == ["plain", "async", "plain2"]


def test_an_async_failure_is_re_raised_and_async_reverts_run(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(AsyncStep("a", rec), Step("b", rec), AsyncBoom("c", rec))
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(ValueError, match="c failed"):
        engine.run()
    assert rec.reverted() == ["c", "b", "a"]
    assert engine.storage.get_flow_state() == states.REVERTED


def test_async_function_tasks_work(engine_kind: str) -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert engines.run(task.FunctorTask(double, provides="y"), store={"x": 4}, engine=engine_kind) == {
        "x": 4,
        "y": 8,
    }


@dataclasses.dataclass
class _Adder:
    """A callable value object: a dataclass (so unhashable) with a plain ``__call__``."""

    n: int

    def __call__(self, x: int) -> int:
        return x + self.n


@dataclasses.dataclass
class _AsyncAdder:
    """The same with an ``async def __call__``."""

    n: int

    async def __call__(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + self.n


@pytest.mark.parametrize("make", [_Adder, _AsyncAdder], ids=["plain", "async"])
def test_a_function_task_of_an_unhashable_callable_runs_on_every_engine(
    engine_kind: str, make: type[_Adder | _AsyncAdder]
) -> None:
    # The asyncio engine asked a cache keyed by the callable whether it was a
    # coroutine function: an unhashable one (any dataclass instance) failed the
    # run with "TypeError: unhashable type", where the other engines (and
    # TaskFlow) ran it.
    adder = task.FunctorTask(make(2), name="add", provides="y")
    assert engines.run(adder, store={"x": 1}, engine=engine_kind) == {"x": 1, "y": 3}


def test_map_and_reduce_tasks_await_an_async_functor(engine_kind: str) -> None:
    # They called the functor and kept what it returned: the map stored
    # coroutine objects (never awaited) as its results, and the reduce passed
    # one to the functor's next call, which failed on "coroutine + int".
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def add(x: int, y: int) -> int:
        await asyncio.sleep(0)
        return x + y

    flow = linear_flow.Flow("f").add(
        task.MapFunctorTask(double, requires=["a", "b", "c"], provides=["a2", "b2", "c2"], name="double"),
        task.ReduceFunctorTask(add, requires=["a2", "b2", "c2"], provides="total", name="add"),
    )
    results = engines.run(flow, store={"a": 1, "b": 2, "c": 3}, engine=engine_kind)
    assert {name: results[name] for name in ("a2", "b2", "c2", "total")} == {
        "a2": 2,
        "b2": 4,
        "c2": 6,
        "total": 12,
    }


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_an_async_map_runs_on_the_callers_loop_timed_or_not(timeout: float | None) -> None:
    # The engine sent a map of an async functor to a thread (its execute is no
    # coroutine function) and awaited the coroutine it returned: on the caller's
    # loop untimed, but a timed call awaited it on flowkit's own loop.
    seen: list[asyncio.AbstractEventLoop] = []

    async def which_loop(x: int) -> int:
        seen.append(asyncio.get_running_loop())
        return x

    async def main() -> asyncio.AbstractEventLoop:
        flow = linear_flow.Flow("f").add(task.MapFunctorTask(which_loop, requires=["a"], provides="out"))
        engine = engines.load(flow, store={"a": 1}, engine="asyncio", default_timeout=timeout)
        assert isinstance(engine, AsyncioEngine)
        await engine.run_async()
        assert engine.storage.fetch("out") == [1]
        return asyncio.get_running_loop()

    caller = asyncio.run(main())
    assert seen == [caller]


def test_an_async_map_stops_at_the_first_failure_and_its_flow_reverts(engine_kind: str) -> None:
    called: list[int] = []

    async def check(x: int) -> int:
        await asyncio.sleep(0)
        called.append(x)
        if x == 2:
            raise ValueError(f"bad value {x}")
        return x

    flow = linear_flow.Flow("f").add(task.MapFunctorTask(check, requires=["a", "b", "c"], name="check"))
    engine = engines.load(flow, store={"a": 1, "b": 2, "c": 3}, engine=engine_kind)
    with pytest.raises(ValueError, match="bad value 2"):
        engine.run()
    assert called == [1, 2]  # one value after the other, in order, as a plain map
    assert engine.storage.get_flow_state() == states.REVERTED


def test_asyncio_engine_runs_many_coroutines_concurrently() -> None:
    total = 50
    state: dict[str, Any] = {"started": 0}
    flow = unordered_flow.Flow("u").add(*(Gathering(f"g{i}", state, total) for i in range(total)))
    engine = engines.load(flow, engine="asyncio")
    engine.run()
    assert state["started"] == total
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_asyncio_engine_max_workers_limits_calls_in_flight(rec: Recorder) -> None:
    running = {"now": 0, "peak": 0}

    class Tracked(task.Task):
        async def execute(self) -> None:
            running["now"] += 1
            running["peak"] = max(running["peak"], running["now"])
            for _ in range(5):
                await asyncio.sleep(0)
            running["now"] -= 1

    flow = unordered_flow.Flow("u").add(*(Tracked(f"t{i}") for i in range(12)))
    engines.run(flow, engine="asyncio", max_workers=3)
    assert 1 <= running["peak"] <= 3


class _Meeting(task.Task):
    """A plain task that returns once ``barrier.parties`` of them run at the same time."""

    def __init__(self, name: str, barrier: threading.Barrier) -> None:
        super().__init__(name)
        self.barrier = barrier

    def execute(self) -> None:
        self.barrier.wait()


@pytest.mark.parametrize("how", ["run", "run_async"])
def test_asyncio_engine_runs_max_workers_plain_tasks_at_once(how: str) -> None:
    # Plain tasks ran on the loop's default executor, whose size (cpus + 4) was
    # the real limit: max_workers=12 ran six at once on two cores, however many
    # it allowed, and under run_async they shared the application's threads.
    count = default_thread_count() + 2
    barrier = threading.Barrier(count, timeout=WAIT_TIMEOUT)
    flow = unordered_flow.Flow("u").add(*(_Meeting(f"m{i}", barrier) for i in range(count)))
    engine = engines.load(flow, engine="asyncio", max_workers=count)
    assert isinstance(engine, AsyncioEngine)
    if how == "run":
        engine.run()
    else:
        asyncio.run(engine.run_async())
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_run_async_runs_coroutines_on_the_callers_loop(rec: Recorder) -> None:
    seen: list[asyncio.AbstractEventLoop] = []

    class WhichLoop(task.Task):
        async def execute(self) -> None:
            seen.append(asyncio.get_running_loop())

    async def main() -> asyncio.AbstractEventLoop:
        engine = engines.load(
            linear_flow.Flow("f").add(WhichLoop("w1"), Step("plain", rec), WhichLoop("w2")), engine="asyncio"
        )
        assert isinstance(engine, AsyncioEngine)
        await engine.run_async()
        assert engine.storage.get_flow_state() == states.SUCCESS
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert seen == [loop, loop]
    assert rec.executed() == ["plain"]


def test_as_many_concurrent_run_async_as_the_loops_executor_has_threads_complete(rec: Recorder) -> None:
    # Each run_async took a thread of the loop's default executor for its whole
    # run (asyncio.to_thread), and plain tasks run on that same executor: with
    # as many runs at once as it has threads (cpus + 4 by default: 6 on two
    # cores, a web server's sixth concurrent request), no plain task could ever
    # start and every run hung. Two threads here, so the count does not depend
    # on the machine.
    runs = 2

    async def main() -> list[str]:
        asyncio.get_running_loop().set_default_executor(cf.ThreadPoolExecutor(runs))
        made = [
            engines.load(
                linear_flow.Flow(f"f{i}").add(AsyncStep(f"a{i}", rec), Step(f"p{i}", rec)), engine="asyncio"
            )
            for i in range(runs)
        ]
        await asyncio.wait_for(asyncio.gather(*(engine.run_async() for engine in made)), WAIT_TIMEOUT)
        # The application's own thread calls are not starved either.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), WAIT_TIMEOUT) == "free"
        return [engine.storage.get_flow_state() for engine in made]

    assert asyncio.run(main()) == [states.SUCCESS] * runs
    assert sorted(rec.executed()) == sorted([f"a{i}" for i in range(runs)] + [f"p{i}" for i in range(runs)])


def test_the_bookkeeping_threads_of_a_burst_of_run_async_end_after_it() -> None:
    # Each run_async holds a helper thread for its whole run; those threads were
    # parked for good, so a burst of 200 runs left 200 idle threads in the
    # process. All 200 runs are under way at once here (each one's task waits
    # for the others'), so the burst does start that many threads.
    runs = 200
    before = _thread._count()
    state: dict[str, Any] = {"started": 0}
    during: list[int] = []

    class Counting(Gathering):
        async def execute(self) -> int:
            if self.state["started"] == self.total - 1:
                during.append(_thread._count())  # every other run is in its task now
            return await super().execute()

    async def burst() -> list[str]:
        made = [
            engines.load(linear_flow.Flow(f"f{i}").add(Counting(f"g{i}", state, runs)), engine="asyncio")
            for i in range(runs)
        ]
        await asyncio.wait_for(asyncio.gather(*(engine.run_async() for engine in made)), WAIT_TIMEOUT)
        return [engine.storage.get_flow_state() for engine in made]

    assert asyncio.run(burst()) == [states.SUCCESS] * runs
    assert during and during[0] >= runs  # the burst did hold a thread per run
    # A few stay, idle, for the next runs; the rest end once their run has.
    wait_until(lambda: _thread._count() <= before + 2)


def test_run_async_re_raises_a_failure(rec: Recorder) -> None:
    async def main() -> None:
        engine = engines.load(
            linear_flow.Flow("f").add(AsyncStep("a", rec), AsyncBoom("b", rec)), engine="asyncio"
        )
        await engine.run_async()  # type: ignore[attr-defined]

    with pytest.raises(ValueError, match="b failed"):
        asyncio.run(main())
    assert rec.reverted() == ["b", "a"]


def test_asyncio_engine_runs_coroutines_on_a_given_loop(rec: Recorder) -> None:
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    seen: list[asyncio.AbstractEventLoop] = []

    class WhichLoop(task.Task):
        async def execute(self) -> None:
            seen.append(asyncio.get_running_loop())

    try:
        flow = linear_flow.Flow("f").add(WhichLoop("w1"), Step("plain", rec), WhichLoop("w2"))
        engines.run(flow, engine="asyncio", loop=loop)
        assert seen == [loop, loop]
        assert loop.is_running(), "the engine must not stop a loop it does not own"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_asyncio_engine_refuses_a_given_loop_that_is_not_running(rec: Recorder) -> None:
    # A loop nobody runs would never run the flow's calls: run() waited forever.
    loop = asyncio.new_event_loop()
    try:
        engine = engines.load(linear_flow.Flow("f").add(AsyncStep("a", rec)), engine="asyncio", loop=loop)
        with pytest.raises(exceptions.InvalidEngineOption, match="not running"):
            engine.run()
        assert rec.executed() == []
        assert engine.storage.get_flow_state() == states.PENDING
    finally:
        loop.close()
    with pytest.raises(exceptions.InvalidEngineOption, match="closed"):
        engines.run(linear_flow.Flow("f").add(AsyncStep("a", rec)), engine="asyncio", loop=loop)


def test_asyncio_engine_refuses_run_on_the_loop_of_the_calling_thread(rec: Recorder) -> None:
    # run() blocks its thread: the loop running in that thread could never run the
    # flow's coroutines, so run() inside a coroutine with loop= its own loop deadlocked.
    async def main() -> None:
        engine = engines.load(
            linear_flow.Flow("f").add(AsyncStep("a", rec)), engine="asyncio", loop=asyncio.get_running_loop()
        )
        with pytest.raises(exceptions.InvalidEngineOption, match="run_async"):
            engine.run()

    asyncio.run(main())
    assert rec.executed() == []


@pytest.mark.parametrize("how", ["engine.run", "engines.run", "run_iter"])
def test_run_from_a_coroutine_warns_that_it_blocks_the_loop_and_still_runs(how: str, rec: Recorder) -> None:
    # A blocking run() inside a coroutine stalls every other task of that loop
    # for the whole run, without a word; TaskFlow-style code calling it still works.
    async def main() -> str:
        flow = linear_flow.Flow("blocking").add(AsyncStep("a", rec), Step("p", rec))
        with pytest.warns(RuntimeWarning) as caught:
            if how == "engines.run":
                engines.run(flow, engine="asyncio")
                return "SUCCESS"
            engine = engines.load(flow, engine="asyncio")
            if how == "run_iter":
                list(engine.run_iter())
            else:
                engine.run()
        (warning,) = caught
        text = str(warning.message)
        assert "'blocking'" in text and "await engine.run_async()" in text, text
        assert warning.filename == __file__  # it points at the call, not into flowkit
        return engine.storage.get_flow_state()

    assert asyncio.run(main()) == states.SUCCESS
    assert sorted(rec.executed()) == ["a", "p"]


def test_run_outside_a_loop_and_run_async_do_not_warn(rec: Recorder) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engines.run(linear_flow.Flow("f").add(AsyncStep("a", rec)), engine="asyncio")

        async def main() -> None:
            await engines.load(linear_flow.Flow("g").add(AsyncStep("b", rec)), engine="asyncio").run_async()

        asyncio.run(main())
    assert rec.executed() == ["a", "b"]


def test_cancelling_run_async_stops_the_run_and_cancels_its_coroutines(rec: Recorder) -> None:
    # Cancelling the awaiting coroutine (asyncio.wait_for, a cancelled request
    # handler) used to return at once while the flow went on running in the
    # background, its coroutines uncancelled, to SUCCESS.
    heard: list[str] = []

    class Blocking(task.Task):
        async def execute(self, gate: asyncio.Event, entered: asyncio.Event) -> str:
            entered.set()
            try:
                await gate.wait()
            except asyncio.CancelledError:
                heard.append("cancelled")
                raise
            heard.append("finished")
            return "done"

    async def main() -> None:
        gate, entered = asyncio.Event(), asyncio.Event()
        flow = linear_flow.Flow("f").add(AsyncStep("first", rec), Blocking("block"), AsyncStep("after", rec))
        engine = engines.load(flow, engine="asyncio", store={"gate": gate, "entered": entered})
        assert isinstance(engine, AsyncioEngine)
        run = asyncio.ensure_future(engine.run_async())
        await entered.wait()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        # The run has stopped by the time the cancellation is raised, as an interrupt stops it.
        assert heard == ["cancelled"]
        assert engine.storage.get_flow_state() == states.RUNNING
        assert engine.storage.get_atom_state("block") == states.RUNNING
        assert engine.storage.get_atom_state("after") == states.PENDING
        gate.set()
        await engine.run_async()  # carries on, as after an interrupt
        assert engine.storage.get_flow_state() == states.SUCCESS

    asyncio.run(main())
    assert heard == ["cancelled", "finished"]
    assert rec.executed() == ["first", "after"]


@pytest.mark.parametrize("options", [{}, {"default_timeout": 60}], ids=["untimed", "timed"])
@pytest.mark.parametrize("kind", ["serial", "parallel", "asyncio"])
def test_a_task_raising_cancelled_error_itself_fails_and_the_flow_reverts(
    kind: str, options: dict[str, Any], rec: Recorder
) -> None:
    # Only KeyboardInterrupt and SystemExit stop a run (doc/engines.rst); the
    # asyncio engine took a CancelledError the task raised for an interrupt and
    # left the flow RUNNING, where the other engines failed the atom and reverted.
    # Those reported a bare concurrent.futures.CancelledError instead (asyncio
    # marks the task cancelled): no message, and failure.check() missed it.
    told: list[Any] = []

    class GivesUp(task.Task):
        async def execute(self) -> None:
            raise asyncio.CancelledError("the upstream call was cancelled")

        def revert(self, result: Any, **kwargs: Any) -> None:
            told.append(result.check(asyncio.CancelledError))

    flow = linear_flow.Flow("f").add(AsyncStep("a", rec), GivesUp("g"))
    engine = engines.load(flow, engine=kind, **options)
    with pytest.raises(asyncio.CancelledError, match="the upstream call was cancelled"):
        engine.run()
    assert engine.storage.get_flow_state() == states.REVERTED
    assert engine.storage.get_atom_state("g") == states.REVERTED
    assert told == [asyncio.CancelledError]
    assert rec.reverted() == ["a"]


def test_a_plain_task_raising_cancelled_error_fails_on_every_engine(engine_kind: str, rec: Recorder) -> None:
    # The serial and parallel engines took it for an interrupt (the flow left
    # RUNNING); the asyncio engine, running the same task in a thread, failed it.
    class GivesUp(task.Task):
        def execute(self) -> None:
            raise asyncio.CancelledError("gave up")

    engine = engines.load(linear_flow.Flow("f").add(Step("a", rec), GivesUp("g")), engine=engine_kind)
    with pytest.raises(asyncio.CancelledError, match="gave up"):
        engine.run()
    assert engine.storage.get_flow_state() == states.REVERTED
    assert rec.reverted() == ["a"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_raised_in_a_coroutine_stops_the_run_and_spares_the_loop(
    engine_kind: str, interrupt: type[BaseException], rec: Recorder
) -> None:
    # asyncio re-raises KeyboardInterrupt and SystemExit out of the loop: the
    # serial and parallel engines' shared loop thread died of it, so the run
    # waited forever for the coroutine's outcome, and so did every coroutine of
    # the process after it.
    class Interrupted(task.Task):
        async def execute(self) -> None:
            raise interrupt()

    flow = linear_flow.Flow("f").add(AsyncStep("a", rec), Interrupted("i"))
    engine = engines.load(flow, engine=engine_kind)
    assert isinstance(run_bounded(engine, WAIT_TIMEOUT), interrupt)
    assert engine.storage.get_atom_state("i") == states.RUNNING
    later = engines.load(AsyncStep("later", rec, provides="x"), engine=engine_kind)
    assert run_bounded(later, WAIT_TIMEOUT) is None
    assert later.storage.fetch("x") == "later done"


def test_run_async_while_the_engine_runs_is_refused_and_leaves_the_run_cancellable() -> None:
    # The refused second call reset the first run's stop on its way out, so
    # cancelling the first run no longer stopped it: it waited for its tasks.
    heard: list[str] = []

    class Blocking(task.Task):
        async def execute(self, gate: asyncio.Event, entered: asyncio.Event) -> None:
            entered.set()
            try:
                await gate.wait()
            except asyncio.CancelledError:
                heard.append("cancelled")
                raise

    async def main() -> None:
        gate, entered = asyncio.Event(), asyncio.Event()
        engine = engines.load(Blocking("block"), engine="asyncio", store={"gate": gate, "entered": entered})
        assert isinstance(engine, AsyncioEngine)
        first = asyncio.ensure_future(engine.run_async())
        await entered.wait()
        with pytest.raises(exceptions.ExecutionFailure, match="already running"):
            await engine.run_async()
        first.cancel()
        done, _ = await asyncio.wait([first], timeout=WAIT_TIMEOUT)
        gate.set()  # lets an unstopped run end, so the test fails rather than hangs
        assert done, "cancelling the first run did not stop it"
        assert heard == ["cancelled"]
        assert engine.storage.get_flow_state() == states.RUNNING
        await engine.run_async()  # the engine is free again, and carries on
        assert engine.storage.get_flow_state() == states.SUCCESS

    asyncio.run(main())


def test_progress_from_a_coroutine_is_heard_in_the_engine_thread(engine_kind: str) -> None:
    # doc/engines.rst, "Which thread calls you": listeners hear progress in the
    # engine's thread whatever the kind. The serial engine called them (and
    # wrote the report) in the shared loop thread the coroutine ran on.
    class Reporting(task.Task):
        async def execute(self) -> None:
            for step in (1, 2, 3):
                await asyncio.sleep(0)
                self.update_progress(step / 4)

    heard: list[tuple[float, int]] = []
    engine = engines.load(Reporting("r"), engine=engine_kind)
    engine.atom_notifier.register(
        "update_progress", lambda _event, details: heard.append((details["progress"], threading.get_ident()))
    )
    engine.run()
    assert [progress for progress, _ in heard] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert {thread for _, thread in heard} == {threading.get_ident()}
    assert engine.storage.get_task_progress("r") == 1.0


def test_parallel_engine_coroutines_do_not_hold_a_worker_thread_while_they_await() -> None:
    # Each coroutine held a pool thread until it finished (unless it had a
    # timeout), so max_workers=1 ran one at a time: these two, each waiting
    # for the other to start, never met, and 1,000 tasks awaiting I/O took
    # 1,000 times as long as one.
    state: dict[str, Any] = {"started": 0}
    flow = unordered_flow.Flow("u").add(Gathering("g1", state, 2), Gathering("g2", state, 2))
    results = engines.run(flow, engine="parallel", max_workers=1)
    assert results == {"g1": 2, "g2": 2}


def test_an_interrupted_asyncio_run_cancels_its_coroutines_before_closing_its_loop() -> None:
    # The private loop was closed under the running coroutines: they were
    # destroyed unfinished ("Task was destroyed but it is pending!"), their
    # finally blocks and async-with exits never ran.
    heard: list[str] = []
    entered = threading.Event()

    class Waiting(task.Task):
        async def execute(self) -> None:
            entered.set()
            try:
                await asyncio.Event().wait()  # never set
            except asyncio.CancelledError:
                heard.append("cancelled")
                raise
            finally:
                heard.append("cleaned up")

    class Interrupting(task.Task):
        def execute(self) -> None:
            assert entered.wait(WAIT_TIMEOUT)
            raise KeyboardInterrupt

    flow = unordered_flow.Flow("u").add(Waiting("w"), Interrupting("i"))
    with pytest.raises(KeyboardInterrupt):
        engines.run(flow, engine="asyncio")
    assert heard == ["cancelled", "cleaned up"]


@pytest.mark.parametrize("inner_kind", ["serial", "parallel"])
@pytest.mark.parametrize("outer_kind", ["serial", "parallel"])
def test_an_async_task_can_run_a_flow_with_async_tasks_of_its_own(outer_kind: str, inner_kind: str) -> None:
    # The outer coroutine holds the shared loop thread while its flow runs; the
    # inner flow's coroutine was handed to that same loop and waited forever.
    class Inner(task.Task):
        async def execute(self) -> str:
            await asyncio.sleep(0)
            return "inner done"

    class Outer(task.Task):
        async def execute(self) -> str:
            return str(engines.run(Inner("inner", provides="r"), engine=inner_kind)["r"])

    engine = engines.load(Outer("outer", provides="o"), engine=outer_kind)
    assert run_bounded(engine, WAIT_TIMEOUT) is None
    assert engine.storage.fetch("o") == "inner done"


@pytest.mark.parametrize("listened", [False, True], ids=["quiet", "listened"])
def test_ctrl_c_during_a_serial_async_task_cancels_its_coroutine(listened: bool) -> None:
    # The interrupt ended the run, and the coroutine went on running on the
    # shared loop thread, unwatched; the asyncio engine cancels its coroutines.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    cancelled = threading.Event()

    main = threading.main_thread().ident or 0

    def main_thread_waits() -> bool:
        """Whether the main thread has reached the wait for the coroutine (or the queue)."""
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code.co_name in ("result_of", "take"):
                return True
            frame = frame.f_back
        return False

    class Interrupted(task.Task):
        async def execute(self) -> None:
            # Ctrl-C, as the terminal sends it: a SIGINT the main thread handles,
            # once it waits for this coroutine.
            wait_until(main_thread_waits, interval=0.001)
            signal.pthread_kill(main, signal.SIGINT)
            try:
                await asyncio.Event().wait()  # never set
            except asyncio.CancelledError:
                cancelled.set()
                raise

    engine = engines.load(Interrupted("i"), engine="serial")
    if listened:  # the path that relays the task's progress
        engine.atom_notifier.register("update_progress", lambda _event, _details: None)
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    assert cancelled.wait(WAIT_TIMEOUT)
    assert engine.storage.get_atom_state("i") == states.RUNNING


def test_closing_a_loop_thread_abandons_a_coroutine_that_swallows_its_cancellation(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # close() cancels what is still pending and awaited it without a bound: a
    # coroutine that catches that cancellation and goes on held close (and the
    # end of the run calling it) for ever. Now it is abandoned after the grace
    # period, named in a warning, and runs on until it ends; then the loop closes.
    from flowkit._utils import asyncio_bridge
    from flowkit._utils.asyncio_bridge import EventLoopThread, result_of

    monkeypatch.setattr(asyncio_bridge, "CLOSE_GRACE", 0.05, raising=False)  # not waited for: bounded
    bridge = EventLoopThread()
    heard: list[str] = []
    gates: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    started = threading.Event()

    async def stubborn() -> str:
        gate = asyncio.Event()
        gates.append((asyncio.get_running_loop(), gate))
        started.set()
        while not gate.is_set():
            try:
                await gate.wait()
            except asyncio.CancelledError:
                heard.append("cancellation swallowed")
        return "ended after all"

    future = bridge.submit(stubborn())
    assert started.wait(WAIT_TIMEOUT)
    thread = bridge._thread
    assert thread is not None
    closer = threading.Thread(target=bridge.close, daemon=True)
    try:
        with caplog.at_level("WARNING", logger="flowkit._utils.asyncio_bridge"):
            closer.start()
            closer.join(WAIT_TIMEOUT)
        assert not closer.is_alive(), "close() waited on the coroutine that swallowed its cancellation"
    finally:
        loop, gate = gates[0]
        loop.call_soon_threadsafe(gate.set)  # let it end, whatever happened
    assert heard == ["cancellation swallowed"]
    warned = [r.getMessage() for r in caplog.records if r.name == "flowkit._utils.asyncio_bridge"]
    assert len(warned) == 1, warned
    assert "abandoned 1 task(s)" in warned[0] and "stubborn" in warned[0]
    # Abandoned, it ran on to its end; then the loop's thread closed the loop.
    assert result_of(future) == "ended after all"
    thread.join(WAIT_TIMEOUT)
    assert not thread.is_alive() and loop.is_closed()


_SWALLOWS_AT_CLOSE = """
import asyncio, logging, threading
from flowkit._utils import asyncio_bridge
from flowkit._utils.asyncio_bridge import EventLoopThread

logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
started = threading.Event()

async def never_gives_up():
    started.set()
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # swallowed, every time

bridge = EventLoopThread()
bridge.submit(never_gives_up())
assert started.wait(30)
asyncio_bridge.CLOSE_GRACE = 0.05
bridge.close()
print("closed")
"""


def test_a_process_exits_cleanly_after_closing_a_loop_with_a_coroutine_that_never_ends() -> None:
    # close() waited for ever on the coroutine; now it returns, the coroutine
    # runs on in the loop's daemon thread, and the process exits without
    # destroying it pending ("Task was destroyed but it is pending!").
    out = run_python(_SWALLOWS_AT_CLOSE)
    assert (out.returncode, out.stdout.strip()) == (0, "closed"), out.stdout + out.stderr
    assert "destroyed" not in out.stderr and "GeneratorExit" not in out.stderr, out.stderr
    assert "abandoned 1 task(s)" in out.stderr and "never_gives_up" in out.stderr, out.stderr
