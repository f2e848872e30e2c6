"""The parallel engine: calls run on an executor while the engine thread schedules.

Workers never touch the scheduler: a finished call is put on a queue, and the
engine thread takes it from there, so the decision core needs no locks. With a
thread pool (the default) a worker reports straight into the queue; with any
other :class:`concurrent.futures.Executor` (a process pool, or your own) the
future's done-callback does.

Process pools pickle the task and its arguments (so tasks must be importable and
picklable) and bring failures back as JSON-safe records, never as pickled
exceptions. Retries always run in the engine thread: they only decide.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from flowkit import exceptions as exc
from flowkit.engines import _process_progress, _threads
from flowkit.engines._compiler import RETRY, Node
from flowkit.engines._completions import Completion, Completions
from flowkit.engines._engine import ActionEngine, Driver, call_outcome, start_or_fail
from flowkit.engines._runtime import Call, Runtime
from flowkit.types.failure import Failure

__all__ = ["ParallelEngine"]

_THREAD_NAMES = frozenset({"thread", "threads", "threaded"})
_PROCESS_NAMES = frozenset({"process", "processes"})


def _report(done: Completions, node: Node, action: int, call: Call) -> None:
    """Run ``call`` on a pool thread and hand its outcome straight to the engine."""
    try:
        ok, value = call_outcome(call)
    except BaseException as err:
        done.put_raising(node, action, err)
    else:
        done.put(node, action, ok, value)


def _in_process(call: Call) -> tuple[bool, Any]:
    """Run ``call`` in a child process; a failure comes back as a plain dict."""
    _process_progress.attach_in_child(call[1]["atom"])
    ok, value = call_outcome(call)
    if not ok:
        return False, value.to_dict()
    return True, value


class _ThreadsDriver:
    """Hands every ready atom to the engine's own worker threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._threads: _threads.WorkerThreads | None = None
        self._done = Completions()

    @property
    def in_flight(self) -> int:
        return self._done.in_flight

    def open(self, runtime: Runtime) -> None:
        self._threads = _threads.borrow(self._size)

    def schedule(self, runtime: Runtime) -> None:
        threads = self._threads
        assert threads is not None
        submit = threads.submit
        next_item = runtime.scheduler.next_item
        done = self._done
        while (item := next_item()) is not None:
            node, action = item
            call = start_or_fail(runtime, node, action)
            if call is None:
                continue
            if node.kind == RETRY:
                runtime.complete(node, action, *call_outcome(call))
                continue
            done.started()
            submit(_report, done, node, action, call)

    def wait(self, timeout: float | None) -> list[Completion]:
        return self._done.take(timeout)

    def close(self) -> None:
        if self._threads is not None and not self._done.in_flight:
            _threads.give_back(self._threads)
        self._threads = None


class _ExecutorDriver:
    """Submits every ready atom to a :class:`concurrent.futures.Executor`."""

    def __init__(
        self,
        executor: cf.Executor | None,
        factory: Callable[[], cf.Executor] | None,
        processes: bool,
        workers: int | None = None,
    ):
        self._given = executor
        self._factory = factory
        self._processes = processes
        self._workers = workers
        self._executor: cf.Executor | None = None
        self._done = Completions()

    @property
    def in_flight(self) -> int:
        return self._done.in_flight

    def open(self, runtime: Runtime) -> None:
        self._relay = None
        if self._processes and self._given is None:
            self._relay = _process_progress.ProgressRelay(runtime.progress_by_name)
        if self._given is not None:
            self._executor = self._given
        elif self._relay is not None:
            self._executor = cf.ProcessPoolExecutor(
                self._workers,
                initializer=_process_progress.child_initializer,
                initargs=(self._relay.queue,),
            )
        else:
            self._executor = self._factory()  # type: ignore[misc]

    def schedule(self, runtime: Runtime) -> None:
        executor = self._executor
        assert executor is not None
        next_item = runtime.scheduler.next_item
        done = self._done
        while (item := next_item()) is not None:
            node, action = item
            call = start_or_fail(runtime, node, action)
            if call is None:
                continue
            if node.kind == RETRY:
                runtime.complete(node, action, *call_outcome(call))
                continue
            done.started()
            if self._processes:
                future = executor.submit(_in_process, call)
            else:
                future = executor.submit(call_outcome, call)
            future.add_done_callback(functools.partial(done.put_future, node, action))

    def wait(self, timeout: float | None) -> list[Completion]:
        finished = self._done.take(timeout)
        if self._processes:
            # Failures raised in a child come back as records; a pool that could not
            # even ship the call (unpicklable task) fails locally with a real Failure.
            finished = [
                (node, action, ok, Failure.from_dict(value) if not ok and isinstance(value, dict) else value)
                for node, action, ok, value in finished
            ]
        return finished

    def close(self) -> None:
        if self._given is None and self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._relay is not None:
            self._relay.close()
        self._executor = None


class ParallelEngine(ActionEngine):
    """Runs independent atoms at the same time (``engine="parallel"``).

    Options (besides the common ones): ``executor`` (a
    :class:`concurrent.futures.Executor` you own, or ``"threads"`` (default) or
    ``"processes"``) and ``max_workers`` (pool size when flowkit creates the pool).
    """

    kind: ClassVar[str] = "parallel"
    OPTIONS: ClassVar[frozenset[str]] = ActionEngine.OPTIONS | {"executor", "max_workers"}

    def __init__(
        self,
        flow: Any,
        flow_detail: Any = None,
        backend: Any = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(flow, flow_detail, backend, options)
        self._executor, self._factory, self._processes = self._choose_executor()

    def _choose_executor(self) -> tuple[cf.Executor | None, Callable[[], cf.Executor] | None, bool]:
        executor = self._options.get("executor")
        workers = self._options.get("max_workers")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise exc.InvalidEngineOption(
                f"max_workers must be a positive int, not {workers!r}", engine=self.kind, option="max_workers"
            )
        if isinstance(executor, cf.Executor):
            return executor, None, isinstance(executor, cf.ProcessPoolExecutor)
        if executor is None or (isinstance(executor, str) and executor.lower() in _THREAD_NAMES):
            return None, None, False
        if isinstance(executor, str) and executor.lower() in _PROCESS_NAMES:
            return None, lambda: cf.ProcessPoolExecutor(workers), True
        raise exc.InvalidEngineOption(
            f"executor must be a concurrent.futures.Executor or one of "
            f"{sorted(_THREAD_NAMES | _PROCESS_NAMES)}, not {executor!r}",
            engine=self.kind,
            option="executor",
        )

    def _make_driver(self) -> Driver:
        if self._executor is None and self._factory is None:
            workers = self._options.get("max_workers") or min(32, (os.cpu_count() or 1) + 4)
            return _ThreadsDriver(workers)
        return _ExecutorDriver(
            self._executor, self._factory, self._processes, self._options.get("max_workers")
        )
