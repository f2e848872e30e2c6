"""The parallel engine: truly concurrent, thread-safe, and usable with your own executor or processes."""

from __future__ import annotations

import _thread
import collections
import concurrent.futures as cf
import os
import threading
from typing import Any

import pytest

from flowkit import engines, exceptions, states, task
from flowkit.patterns import linear_flow, unordered_flow
from tests.unit.engines._fresh_python import run_python

from ._tasks import (
    AddOne,
    CustomError,
    HoldsLock,
    RaiseCustom,
    Recorder,
    ReportPid,
    ReturnsLock,
    RevertReturnsLock,
    Square,
    Step,
)


class Rendezvous(task.Task):
    """Waits at a barrier: the run only finishes if every party runs at the same time."""

    def __init__(self, name: str, barrier: threading.Barrier) -> None:
        super().__init__(name)
        self.barrier = barrier

    def execute(self) -> int:
        return self.barrier.wait()


class CountCalls(task.Task):
    def __init__(self, name: str, counts: collections.Counter[str], lock: threading.Lock) -> None:
        super().__init__(name, provides=name)
        self.counts = counts
        self.lock = lock

    def execute(self) -> str:
        with self.lock:
            self.counts[self.name] += 1
        return self.name


class ThreadName(task.Task):
    def execute(self) -> str:
        return threading.current_thread().name


def test_independent_tasks_run_at_the_same_time() -> None:
    # A barrier that times out fails the run unless all parties are waiting together.
    parties = 4
    barrier = threading.Barrier(parties, timeout=10)
    flow = unordered_flow.Flow("u").add(*(Rendezvous(f"t{i}", barrier) for i in range(parties)))
    engine = engines.load(flow, engine="parallel", max_workers=parties)
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert sorted(engine.storage.get(f"t{i}") for i in range(parties)) == list(range(parties))


def test_asyncio_engine_runs_plain_tasks_at_the_same_time_too() -> None:
    barrier = threading.Barrier(3, timeout=10)
    flow = unordered_flow.Flow("u").add(*(Rendezvous(f"t{i}", barrier) for i in range(3)))
    engine = engines.load(flow, engine="asyncio")
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_hundreds_of_tasks_each_run_exactly_once() -> None:
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    names = [f"t{i}" for i in range(500)]
    flow = unordered_flow.Flow("u").add(*(CountCalls(name, counts, lock) for name in names))
    results = engines.run(flow, engine="parallel", max_workers=8)
    assert counts == collections.Counter(names)
    assert results == {name: name for name in names}


def test_hundreds_of_tasks_in_parallel_chains_keep_their_order() -> None:
    rec = Recorder()
    chains = [linear_flow.Flow(f"c{c}").add(*(Step(f"c{c}.{i}", rec) for i in range(10))) for c in range(30)]
    engines.run(unordered_flow.Flow("u").add(*chains), engine="parallel", max_workers=6)
    order = rec.executed()
    assert len(order) == 300
    for c in range(30):
        mine = [name for name in order if name.startswith(f"c{c}.")]
        assert mine == [f"c{c}.{i}" for i in range(10)]


def test_a_single_worker_still_runs_everything() -> None:
    rec = Recorder()
    flow = unordered_flow.Flow("u").add(*(Step(f"t{i}", rec) for i in range(20)))
    engines.run(flow, engine="parallel", max_workers=1)
    assert sorted(rec.executed()) == sorted(f"t{i}" for i in range(20))


def test_a_user_supplied_thread_pool_is_used_and_not_shut_down() -> None:
    with cf.ThreadPoolExecutor(2, thread_name_prefix="users-pool") as pool:
        flow = unordered_flow.Flow("u").add(ThreadName("a", provides="a"), ThreadName("b", provides="b"))
        results = engines.run(flow, engine="parallel", executor=pool)
        assert results["a"].startswith("users-pool")
        assert results["b"].startswith("users-pool")
        assert pool.submit(lambda: "still open").result(timeout=10) == "still open"


def test_the_executor_can_be_named_threads(rec: Recorder) -> None:
    engines.run(Step("a", rec), engine="parallel", executor="threads")
    assert rec.executed() == ["a"]


def test_failures_in_a_user_supplied_pool_revert_the_flow(rec: Recorder) -> None:
    from ._tasks import Boom

    with cf.ThreadPoolExecutor(2) as pool:
        engine = engines.load(
            linear_flow.Flow("f").add(Step("a", rec), Boom("b", rec)), engine="parallel", executor=pool
        )
        with pytest.raises(ValueError, match="b failed"):
            engine.run()
    assert rec.reverted() == ["b", "a"]


# -- processes -------------------------------------------------------------------------------


def test_process_executor_runs_tasks_in_other_processes_and_returns_results() -> None:
    flow = linear_flow.Flow("f").add(
        unordered_flow.Flow("u").add(Square("sq", provides="value"), ReportPid("pid", provides="pid")),
        AddOne("inc", provides="out"),
    )
    results = engines.run(flow, store={"x": 7}, engine="parallel", executor="processes", max_workers=2)
    assert results["value"] == 49
    assert results["out"] == 50
    assert results["pid"] != os.getpid()


def test_process_executor_brings_failures_back_with_their_type_names() -> None:
    engine = engines.load(
        linear_flow.Flow("f").add(Square("sq", provides="value"), RaiseCustom("bad")),
        store={"x": 3},
        engine="parallel",
        executor="processes",
        max_workers=2,
    )
    with pytest.raises(exceptions.WrappedFailure) as info:
        engine.run()
    (failure,) = list(info.value)
    assert failure.check(CustomError) is CustomError
    assert failure.exception_type_names[0] == f"{CustomError.__module__}.CustomError"
    assert failure.exception_str == "raised in a child process"
    assert engine.storage.get_flow_state() == states.REVERTED
    assert engine.storage.get_atom_state("sq") == states.REVERTED
    assert engine.storage.get_execute_failures()["bad"].check(CustomError)


def test_a_user_supplied_process_pool_is_used_and_not_shut_down() -> None:
    with cf.ProcessPoolExecutor(1) as pool:
        results: dict[str, Any] = engines.run(
            Square("sq", provides="value"), store={"x": 5}, engine="parallel", executor=pool
        )
        assert results["value"] == 25
        assert pool.submit(os.getpid).result(timeout=30) != os.getpid()


_ASYNC_AFTER_FORK = """
import concurrent.futures as cf, multiprocessing, threading
from flowkit import engines, task

class Coro(task.Task):
    async def execute(self) -> int:
        return 1

# An async task run here starts the process's shared event-loop thread first.
assert engines.run(Coro("here", provides="n"))["n"] == 1
with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
    out = []
    run = threading.Thread(
        target=lambda: out.append(engines.run(Coro("there", provides="n"), engine="parallel", executor=pool)),
        daemon=True,
    )
    run.start()
    run.join(20)
    print(out[0]["n"] if out else "the forked child waited for a loop thread it does not have")
    if not out:
        for child in multiprocessing.active_children():
            child.kill()
        import os
        os._exit(0)
"""


def test_an_async_task_runs_in_a_forked_child_after_the_parent_ran_one() -> None:
    # The parent's event-loop thread is kept in a module list the forked child
    # inherits, but the thread is not: the child must start its own loop.
    out = run_python(_ASYNC_AFTER_FORK)
    assert out.stdout.strip() == "1", out.stdout + out.stderr


class Meet(task.Task):
    """Meets its partner at a (reusable) barrier, then fails its first ``fail_times`` runs."""

    def __init__(self, name: str, barrier: threading.Barrier, rec: Recorder, fail_times: int = 0) -> None:
        super().__init__(name)
        self.barrier = barrier
        self.rec = rec
        self.fail_times = fail_times
        self.runs = 0

    def execute(self) -> str:
        self.runs += 1
        self.barrier.wait()
        self.rec.add("execute", self.name)
        if self.runs <= self.fail_times:
            raise ValueError(f"{self.name} failed")
        return self.name

    def revert(self, **kwargs: Any) -> None:
        self.rec.add("revert", self.name)


def test_a_retry_waits_for_running_siblings_then_reverts_and_reruns_them(rec: Recorder) -> None:
    from flowkit import retry

    barrier = threading.Barrier(2, timeout=10)
    flow = unordered_flow.Flow("u", retry=retry.Times(3, "r")).add(
        Meet("steady", barrier, rec), Meet("flaky", barrier, rec, fail_times=1)
    )
    engine = engines.load(flow, engine="parallel", max_workers=2)
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert sorted(rec.executed()) == ["flaky", "flaky", "steady", "steady"]
    assert sorted(rec.reverted()) == ["flaky", "steady"]


def test_two_concurrent_failures_under_a_retry_are_both_in_its_history(rec: Recorder) -> None:
    from flowkit import retry

    barrier = threading.Barrier(2, timeout=10)
    flow = unordered_flow.Flow("u", retry=retry.Times(2, "r")).add(
        Meet("one", barrier, rec, fail_times=1), Meet("two", barrier, rec, fail_times=1)
    )
    engine = engines.load(flow, engine="parallel", max_workers=2)
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    history = engine.storage.get_retry_history("r")
    assert sorted(name for name, _ in history.outcomes_iter(0)) == ["one", "two"]
    assert sorted(rec.executed()) == ["one", "one", "two", "two"]


def test_a_task_that_cannot_be_pickled_fails_its_atom_on_the_process_executor() -> None:
    import pickle

    local = task.FunctorTask(lambda: 1, name="local")  # a lambda cannot be pickled
    engine = engines.load(local, engine="parallel", executor="processes", max_workers=1)
    # pickle's own kind of error, as before: a local object's AttributeError (PicklingError from 3.12)
    with pytest.raises((AttributeError, pickle.PicklingError)) as info:
        engine.run()
    # As doc/engines.rst says: the revert cannot be shipped either, and run() raises
    # the revert's own pickling error, as for any failed revert.
    assert str(info.value).startswith(
        "atom 'local' cannot be sent to a child process to revert: its task object (FunctorTask: "
        "its attribute '_execute' is function <function "
    ), info.value
    assert type(info.value.__cause__) is type(info.value)
    assert str(info.value.__cause__) in str(info.value)
    assert engine.storage.get_atom_state("local") == states.REVERT_FAILURE
    assert engine.storage.get_flow_state() == states.FAILURE
    failure = engine.storage.get_execute_failures()["local"]
    assert failure.exception_str.startswith("atom 'local' cannot be sent to a child process to run: ")


_NEEDS = "a process pool needs tasks whose class is importable and whose attributes, arguments and results"


@pytest.fixture(params=["processes", "a ProcessPoolExecutor"])
def process_executor(request: pytest.FixtureRequest) -> Any:
    """flowkit's own process pool, or one the user passes."""
    if request.param == "processes":
        yield "processes"
        return
    with cf.ProcessPoolExecutor(1) as pool:
        yield pool


def test_a_task_holding_a_lock_names_its_atom_and_attribute_on_a_process_pool(process_executor: Any) -> None:
    engine = engines.load(HoldsLock("holder"), engine="parallel", executor=process_executor, max_workers=1)
    with pytest.raises(TypeError) as info:  # the kind pickle raised, for code that catches it
        engine.run()
    assert str(info.value).startswith(
        "atom 'holder' cannot be sent to a child process to revert: its task object (HoldsLock: its "
        "attribute 'lock' is lock <unlocked _thread.lock object at "
    ), info.value
    assert "cannot be pickled (TypeError: cannot pickle '_thread.lock' object); " + _NEEDS in str(info.value)
    assert isinstance(info.value.__cause__, TypeError)
    failure = engine.storage.get_execute_failures()["holder"]
    assert failure.check(TypeError) is TypeError
    assert failure.exception_str.startswith("atom 'holder' cannot be sent to a child process to run: ")
    assert engine.storage.get_atom_state("holder") == states.REVERT_FAILURE


def test_an_argument_that_cannot_be_pickled_is_named_on_a_process_pool(process_executor: Any) -> None:
    engine = engines.load(
        Square("sq"),
        store={"x": threading.Lock()},
        engine="parallel",
        executor=process_executor,
        max_workers=1,
    )
    with pytest.raises(TypeError):
        engine.run()
    failure = engine.storage.get_execute_failures()["sq"]
    assert failure.exception_str.startswith(
        "atom 'sq' cannot be sent to a child process to run: its argument 'x' (lock <unlocked _thread.lock "
    ), failure.exception_str
    assert _NEEDS in failure.exception_str


def test_a_result_that_cannot_be_pickled_names_its_atom_on_a_process_pool(process_executor: Any) -> None:
    engine = engines.load(ReturnsLock("locker"), engine="parallel", executor=process_executor, max_workers=1)
    with pytest.raises(TypeError) as info:
        engine.run()
    assert str(info.value) == (
        "atom 'locker' ran in a child process, but its result cannot be pickled to come back "
        f"(TypeError: cannot pickle '_thread.lock' object); {_NEEDS} can be pickled"
    )
    # The failure itself pickles: the revert went to the child and back.
    assert engine.storage.get_atom_state("locker") == states.REVERTED
    assert engine.storage.get_execute_failures()["locker"].exception_str == str(info.value)


def test_a_task_class_the_child_cannot_import_fails_its_atom_and_leaves_the_pool_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A class only this process has (as one defined under ``if __name__ == "__main__":``
    # is, for a spawned child): it pickles by name here, and the child cannot find it.
    # The child died on it with "Can't get attribute", and run() raised BrokenProcessPool,
    # naming no atom, with the user's pool broken for good.
    import multiprocessing

    from . import _tasks

    ghost_class = type("Ghost", (Square,), {"__module__": _tasks.__name__, "__qualname__": "Ghost"})
    monkeypatch.setattr(_tasks, "Ghost", ghost_class, raising=False)
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        engine = engines.load(ghost_class("ghost"), store={"x": 2}, engine="parallel", executor=pool)
        with pytest.raises(exceptions.WrappedFailure) as info:
            engine.run()
        (failure,) = list(info.value)  # the revert's: it cannot be unpickled there either
        assert failure.exception_str.startswith(
            "atom 'ghost' cannot be unpickled in its child process to revert (is the module of its task's "
            "class, and of its arguments' classes, importable there?) (AttributeError: Can't get attribute "
            "'Ghost' on <module 'tests.unit.engines._tasks' from "
        ), failure.exception_str
        assert _NEEDS in failure.exception_str
        execute = engine.storage.get_execute_failures()["ghost"]
        assert execute.check(AttributeError) is AttributeError
        assert execute.exception_str.startswith(
            "atom 'ghost' cannot be unpickled in its child process to run "
        )
        assert engine.storage.get_atom_state("ghost") == states.REVERT_FAILURE
        assert pool.submit(os.getpid).result(timeout=60) != os.getpid()  # the pool still works


def test_a_revert_result_that_cannot_be_pickled_names_its_atom_on_a_process_pool(
    process_executor: Any,
) -> None:
    flow = linear_flow.Flow("f").add(RevertReturnsLock("undo"), RaiseCustom("bad"))
    engine = engines.load(flow, engine="parallel", executor=process_executor, max_workers=1)
    with pytest.raises(TypeError) as info:
        engine.run()
    assert str(info.value).startswith(
        "atom 'undo' reverted in a child process, but what it returned cannot be pickled "
    ), info.value
    assert engine.storage.get_atom_state("undo") == states.REVERT_FAILURE


@pytest.mark.parametrize("make", ["ThreadPoolExecutor", "SynchronousExecutor"])
def test_futurist_executors_taskflow_users_pass_work_too(make: str, rec: Recorder) -> None:
    import futurist

    executor = (
        futurist.ThreadPoolExecutor(2) if make == "ThreadPoolExecutor" else futurist.SynchronousExecutor()
    )
    try:
        flow = linear_flow.Flow("f").add(
            unordered_flow.Flow("u").add(Step("a", rec), Step("b", rec)), Step("c", rec)
        )
        engines.run(flow, engine="parallel", executor=executor)
    finally:
        executor.shutdown()
    assert sorted(rec.executed()) == ["a", "b", "c"]
    assert rec.executed()[-1] == "c"


@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
def test_a_short_wait_timeout_only_makes_the_engine_poll(kind: str) -> None:
    barrier = threading.Barrier(2, timeout=10)
    flow = unordered_flow.Flow("u").add(Rendezvous("a", barrier), Rendezvous("b", barrier))
    engine = engines.load(flow, engine=kind)
    engine.run(timeout=0.001)
    assert engine.storage.get_flow_state() == states.SUCCESS


class RunsAFlow(task.Task):
    """Runs a parallel flow of its own whose two tasks must meet: nested runs need their own threads."""

    def execute(self) -> int:
        barrier = threading.Barrier(2, timeout=10)
        inner = unordered_flow.Flow(f"{self.name}-inner").add(
            Rendezvous(f"{self.name}.a", barrier), Rendezvous(f"{self.name}.b", barrier)
        )
        engine = engines.load(inner, engine="parallel", max_workers=2)
        engine.run()
        return 1 if engine.storage.get_flow_state() == states.SUCCESS else 0


def test_tasks_that_run_parallel_flows_of_their_own_do_not_starve_each_other() -> None:
    flow = unordered_flow.Flow("outer").add(*(RunsAFlow(f"t{i}", provides=f"t{i}") for i in range(4)))
    results = engines.run(flow, engine="parallel", max_workers=2)
    assert results == {f"t{i}": 1 for i in range(4)}


def test_concurrent_runs_of_different_engines_do_not_interfere() -> None:
    outcomes: list[str] = []
    lock = threading.Lock()

    def run_one(index: int) -> None:
        barrier = threading.Barrier(3, timeout=10)
        flow = unordered_flow.Flow(f"u{index}").add(*(Rendezvous(f"r{index}.{i}", barrier) for i in range(3)))
        engine = engines.load(flow, engine="parallel", max_workers=3)
        engine.run()
        with lock:
            outcomes.append(engine.storage.get_flow_state())

    runners = [threading.Thread(target=run_one, args=(i,)) for i in range(4)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=30)
    assert outcomes == [states.SUCCESS] * 4


def test_idle_worker_threads_kept_between_runs_stay_bounded() -> None:
    # Runs sized by their flows' width must not leave ever more idle threads behind:
    # keeping a couple of pools warm is fine, keeping two per size ever used is not.
    # Counted as threads running (pool threads are not threading.Thread objects).
    before = _thread._count()
    for size in range(1, 41):
        engines.run(
            unordered_flow.Flow("u").add(Square("sq", provides="v")),
            store={"x": 2},
            engine="parallel",
            max_workers=size,
        )
    assert _thread._count() - before <= 2


_THREAD_POOL_RUN = """
import json, sys
from flowkit import engines, task
from flowkit.patterns import unordered_flow

class One(task.Task):
    def execute(self) -> int:
        return 1

flow = unordered_flow.Flow("u").add(One("a"), One("b"))
engines.load(flow, engine="parallel", max_workers=2).run()
print(json.dumps(sorted(sys.modules)))
"""


def test_a_thread_pool_run_imports_neither_concurrent_futures_nor_logging() -> None:
    # concurrent.futures brings logging (with traceback, tokenize...): milliseconds
    # that flowkit's own worker threads never need (executors and timeouts import them).
    import json

    out = run_python(_THREAD_POOL_RUN, no_site=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not loaded & {"concurrent.futures", "logging"}, sorted(loaded & {"concurrent.futures", "logging"})


_CONCURRENT_FIRST_LOADS = """
import json, sys, threading, time
from importlib import machinery
from flowkit import engines, task
from flowkit.engines import helpers
from flowkit.patterns import linear_flow

target = helpers._BUILTIN[sys.argv[1]].partition(":")[0]
assert target not in sys.modules, target
threads = []

def others_blocked_or_done():
    # True once every other loader has finished, or waits on the module's import lock.
    frames = sys._current_frames()
    for thread in threads:
        if thread.ident == threading.get_ident() or not thread.is_alive():
            continue
        frame = frames.get(thread.ident)
        while frame is not None and not (
            frame.f_code.co_filename == "<frozen importlib._bootstrap>" and frame.f_code.co_name == "acquire"
        ):
            frame = frame.f_back
        if frame is None:
            return False
    return True

class Gated:
    # Holds the engine module half made (in sys.modules, not yet run), lets the other
    # threads load, and goes on once they failed or wait for the import to end.
    def __init__(self, real):
        self.real = real
    def create_module(self, spec):
        return self.real.create_module(spec)
    def exec_module(self, module):
        half_made.set()
        deadline = time.monotonic() + 20
        while not others_blocked_or_done() and time.monotonic() < deadline:
            time.sleep(0.005)
        self.real.exec_module(module)

class Finder:
    def find_spec(self, name, path, target_module=None):
        if name != target:
            return None
        spec = machinery.PathFinder.find_spec(name, path)
        spec.loader = Gated(spec.loader)
        return spec

sys.meta_path.insert(0, Finder())

class One(task.Task):
    def execute(self):
        return 1

errors = []
half_made = threading.Event()

def load(first):
    if not first:
        half_made.wait(20)  # the first thread's import is under way
    try:
        engines.load(linear_flow.Flow("f").add(One("one")), engine=sys.argv[1])
    except Exception as err:
        errors.append(repr(err))

threads.extend(threading.Thread(target=load, args=(i == 0,)) for i in range(4))
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(errors))
"""


@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
def test_the_first_loads_of_a_process_in_several_threads_all_get_the_engine(kind: str) -> None:
    # Conductors and services load engines from several threads; the first loads of
    # a process import the engine's module, and the others found it half made
    # in sys.modules ("partially initialized module ... has no attribute").
    import json

    out = run_python(_CONCURRENT_FIRST_LOADS, kind, check=True)
    assert json.loads(out.stdout) == []
