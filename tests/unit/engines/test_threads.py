"""The parallel engine's own worker threads (flowkit.engines._threads)."""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from flowkit import engines, task
from flowkit.engines import _threads
from flowkit.engines._threads import WorkerThreads, default_thread_count
from flowkit.patterns import unordered_flow
from tests.conftest import wait_until


def _threads_back_to(before: int) -> None:
    """Wait until no more threads run in the process than ``before`` (the pool's have all ended).

    ``close()`` returns once each thread has released its end lock, a moment before
    the thread is gone from the count; and threads an earlier test left (an
    abandoned call returning) may end meanwhile, so the count may also drop
    below ``before``. Bounded: a thread that never ends fails the test.
    """
    wait_until(lambda: _thread._count() <= before, timeout=10.0)


@pytest.mark.parametrize(("cpus", "expected"), [(None, 5), (1, 5), (2, 10), (64, 320)])
def test_the_default_thread_count_is_five_per_cpu_as_taskflows(
    monkeypatch: pytest.MonkeyPatch, cpus: int | None, expected: int
) -> None:
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: cpus)
    assert default_thread_count() == expected


@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
def test_the_engines_pools_default_to_the_default_thread_count(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # A count no other test's pool has, so that the pool given back is this run's.
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 3)
    engines.run(unordered_flow.Flow("f").add(Where("w", provides="w")), engine=kind)
    assert _threads._idle[-1].size == default_thread_count() == 15


def test_a_worker_defaults_to_the_default_thread_count() -> None:
    from flowkit.engines.worker_based.worker import Worker

    worker = Worker(topic="t", url="memory://default-thread-count")
    assert f"  threads: {default_thread_count()}\n" in worker.banner


class Where(task.Task):
    def execute(self) -> str:
        return threading.current_thread().name


def test_tasks_run_on_threads_named_as_flowkit_workers() -> None:
    flow = unordered_flow.Flow("f").add(*(Where(f"t{i}", provides=f"t{i}") for i in range(4)))
    results = engines.run(flow, engine="parallel", max_workers=4)
    assert all(results[f"t{i}"].startswith("flowkit-worker-") for i in range(4)), results
    assert all(results[f"t{i}"] != threading.current_thread().name for i in range(4))


def test_worker_threads_carry_the_tracing_function_set_with_threading_settrace() -> None:
    # What threading.Thread does for the threads it starts (coverage, debuggers).
    seen: set[str] = set()

    def tracer(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            seen.add(frame.f_code.co_name)

    def traced() -> None:
        pass

    pool = WorkerThreads(2)
    threading.settrace(tracer)  # type: ignore[arg-type]
    try:
        done = threading.Event()
        pool.submit(lambda: (traced(), done.set()))
        assert done.wait(10)
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
        pool.close()
    assert "traced" in seen
    assert sys.gettrace() is None  # this thread's own tracing was left alone


def test_every_call_runs_once_on_at_most_size_threads_and_close_waits_for_them() -> None:
    before = _thread._count()
    pool = WorkerThreads(3)
    ran: list[int] = []
    lock = threading.Lock()
    gate = threading.Event()

    def call(i: int) -> None:
        gate.wait(10)
        with lock:
            ran.append(i)

    for i in range(50):
        pool.submit(call, i)
    assert pool.started == 3
    gate.set()
    pool.close()
    assert sorted(ran) == list(range(50))
    _threads_back_to(before)  # every thread ended


def test_idle_threads_take_new_calls_instead_of_new_threads_starting() -> None:
    pool = WorkerThreads(8)
    try:
        for _ in range(20):
            done = threading.Event()
            pool.submit(done.set)
            assert done.wait(10)
            # Parked again: the call's effect is seen a moment before its thread is idle.
            wait_until(lambda: pool.idle == 1, timeout=10.0)
        # One call at a time: the first thread took every one of them.
        assert pool.started == 1
    finally:
        pool.close()


def test_a_pool_keeping_few_idle_threads_ends_the_others_as_their_calls_return() -> None:
    # run_async's bookkeeping pool: a burst's threads end with it, bar keep_idle.
    before = _thread._count()
    pool = WorkerThreads(8, keep_idle=2)
    together = threading.Barrier(8 + 1, timeout=10)
    names: list[str] = []
    try:
        for _ in range(8):
            pool.submit(together.wait)
        together.wait()  # all eight threads were running at once
        wait_until(lambda: pool.idle == 2 and pool.started == 2, timeout=10.0)
        _threads_back_to(before + 2)
        # Below size again: a new burst starts threads anew, each with a name of its own.
        again = threading.Barrier(4 + 1, timeout=10)
        for _ in range(4):
            pool.submit(lambda: (names.append(threading.current_thread().name), again.wait()))
        again.wait()
        assert len(set(names)) == 4, names
    finally:
        pool.close()
    _threads_back_to(before)


def test_stop_lets_the_submitted_calls_finish_and_then_ends_the_threads() -> None:
    before = _thread._count()
    pool = WorkerThreads(2)
    gate = threading.Event()
    ran: list[int] = []
    for i in range(6):
        pool.submit(lambda i=i: (gate.wait(10), ran.append(i)))
    pool.stop()
    gate.set()
    pool.close()
    assert sorted(ran) == list(range(6))
    _threads_back_to(before)


class _NotedLock:
    """A real lock that notes each wait with a time limit (a start handshake) in ``waits``."""

    def __init__(self, waits: list[_NotedLock]) -> None:
        self._lock = _thread.allocate_lock()
        self._waits = waits

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if timeout >= 0:
            self._waits.append(self)
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class _HeldStarts:
    """Stands in for ``_thread`` in flowkit.engines._threads: threads start when the test says."""

    def __init__(self) -> None:
        self.waits: list[_NotedLock] = []
        self.held: list[tuple[Any, tuple[Any, ...]]] = []

    def allocate_lock(self) -> _NotedLock:
        return _NotedLock(self.waits)

    def start_new_thread(self, fn: Any, args: tuple[Any, ...]) -> int:
        self.held.append((fn, args))
        return 0

    def waited_for(self) -> list[int]:
        """The threads (by number) whose start was waited for, in order."""
        return [next(args[0] for _fn, args in self.held if args[2] is lock) for lock in self.waits]

    def start_held(self) -> None:
        """Start the held threads for real."""
        for fn, args in self.held:
            _thread.start_new_thread(fn, args)


@pytest.fixture
def held_starts(monkeypatch: pytest.MonkeyPatch) -> Iterator[_HeldStarts]:
    """Worker threads made in the test start only at its end (their waits all time out, 0.5 ms each)."""
    from flowkit.engines import _threads

    fake = _HeldStarts()
    monkeypatch.setattr(_threads, "_thread", fake)
    yield fake


def test_starting_a_thread_waits_for_the_one_started_two_before_not_for_itself(
    held_starts: _HeldStarts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While a new thread gets scheduled, the engine thread starts the next one
    # instead of idling; it waits (a bounded handshake) for the thread started two
    # before, so that started threads get the GIL to begin their calls.
    pool = WorkerThreads(8)
    ran: list[int] = []
    for i in range(2):
        pool.submit(ran.append, i)
    assert held_starts.waited_for() == []  # neither start waited
    pool.submit(ran.append, 2)
    pool.submit(ran.append, 3)
    assert held_starts.waited_for() == [0, 1]
    monkeypatch.undo()
    held_starts.start_held()
    pool.close()
    assert sorted(ran) == [0, 1, 2, 3]


def test_once_every_thread_is_started_the_ones_still_starting_are_waited_for(
    held_starts: _HeldStarts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Queueing more calls holds the GIL: the last threads started get to begin first.
    pool = WorkerThreads(3)
    ran: list[int] = []
    for i in range(3):
        pool.submit(ran.append, i)
    assert held_starts.waited_for() == [0]
    pool.submit(ran.append, 3)  # queued: the pool is full
    pool.submit(ran.append, 4)
    assert held_starts.waited_for() == [0, 1, 2]
    monkeypatch.undo()
    held_starts.start_held()
    pool.close()
    assert sorted(ran) == [0, 1, 2, 3, 4]


_FORKED_RUN = """
import asyncio, multiprocessing, sys
from flowkit import engines, task
from flowkit.patterns import unordered_flow

class One(task.Task):
    def execute(self) -> int:
        return 1

def flow():
    return unordered_flow.Flow("f").add(*(One(f"t{i}", provides=f"t{i}") for i in range(3)))

def run() -> int:
    return sum(engines.run(flow(), engine="parallel", max_workers=3).values())

async def run_async() -> int:
    engine = engines.load(flow(), engine="asyncio")
    await engine.run_async()
    return sum(engine.storage.fetch_all().values())

def child(out) -> None:
    out.put(run() + asyncio.run(run_async()))

if __name__ == "__main__":
    assert run() == 3  # leaves a pool of three threads idle in this process
    assert asyncio.run(run_async()) == 3  # and a bookkeeping thread
    context = multiprocessing.get_context("fork")
    out = context.SimpleQueue()
    process = context.Process(target=child, args=(out,))
    process.start()
    process.join(20)
    assert process.exitcode == 0, process.exitcode
    assert out.get() == 6
    print("ok")
"""


def test_a_forked_child_runs_its_flows_on_threads_of_its_own(tmp_path: Any) -> None:
    # The parent's idle pools (and run_async's bookkeeping threads) are kept in
    # module globals the child inherits, but their threads are not: the child
    # must start its own.
    import subprocess

    script = tmp_path / "forked.py"
    script.write_text(_FORKED_RUN)
    out = subprocess.run(
        [sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "ok", out.stderr


_LATE_THREADING = """
import sys

from flowkit import engines, task
from flowkit.patterns import unordered_flow


class Name(task.Task):
    def execute(self):
        threading = sys.modules.get("threading")
        return None if threading is None else threading.current_thread().name


def run():
    flow = unordered_flow.Flow("f").add(*(Name(f"t{i}", provides=f"t{i}") for i in range(3)))
    results = engines.run(flow, engine="parallel", max_workers=3)
    return sorted(str(results[f"t{i}"]) for i in range(3))


print(run())  # threading never imported: nothing to name the threads with
import threading  # as logging would, for instance

print(run())  # the same pool's threads, named now
print(sorted(t.name for t in threading.enumerate() if t.name.startswith("flowkit-worker-")))
"""


def test_a_worker_takes_its_name_once_threading_is_imported(tmp_path: Any) -> None:
    # The engine does not import threading (first-run time); a program that
    # imports it later still sees the workers' names, on the threads already started.
    import ast
    import subprocess

    script = tmp_path / "late.py"
    script.write_text(_LATE_THREADING)
    out = subprocess.run(
        [sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=60
    )
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out.stderr
    first, second, listed = (ast.literal_eval(line) for line in lines)
    assert first == ["None", "None", "None"]
    assert all(name.startswith("flowkit-worker-") for name in second), second
    assert set(second) <= set(listed)
