"""The parallel engine's driver for an executor it does not run itself: processes, green threads, yours.

:class:`ExecutorDriver` submits every ready atom to a
:class:`concurrent.futures.Executor`: one given as ``executor=``, flowkit's own
process pool (``executor="processes"``), whose children relay their progress
reports back, or a green-thread pool. The default (flowkit's own worker threads)
never needs it, so :mod:`flowkit.engines.parallel` imports it only for such an
option: the first-load cost, ``doc/benchmarks.rst``. :func:`relayed` and
:func:`relayed_event` also serve the Dask driver (:mod:`flowkit.engines._dask`).

Process pools get each call pickled by the engine and unpickled by flowkit in
the child (so tasks must be importable and picklable, and what is not is
named: :mod:`flowkit.engines._pickling`); failures come back as JSON-safe
records, never as pickled exceptions.
"""

from __future__ import annotations

import functools
import pickle
from typing import TYPE_CHECKING, Any

from flowkit.engines._completions import Completion, Completions
from flowkit.engines._engine import DispatchingDriver, call_outcome
from flowkit.task import EVENT_UPDATE_PROGRESS
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    import concurrent.futures as cf

    from flowkit.engines._compiler import Node
    from flowkit.engines._process_progress import ProgressRelay
    from flowkit.engines._runtime import Call, Runtime

__all__ = ["ExecutorDriver", "relayed", "relayed_event"]


def relayed(
    runtime: Runtime, atoms: dict[str, Any], name: str, progress: float, details: dict[str, Any] | None
) -> None:
    """A report from a child process or a Dask worker: the task's own listeners hear it, the run records it.

    In the child the task has no listeners (its notifier is not pickled), so they
    are told here, as the worker-based engine tells them of a remote task's report
    (and as they hear a task that runs in this process). Reports are drained
    before their call's outcome is handed in, so they come before the final 1.0.
    """
    own = getattr(atoms.get(name), "_own_notifier", None)
    if own is not None and own.has_listeners:
        own.tell_listeners(EVENT_UPDATE_PROGRESS, {"progress": progress})
    runtime.progress_by_name(name, progress, details)


def relayed_event(atoms: dict[str, Any], name: str, event_type: Any, details: dict[str, Any]) -> None:
    """An event a task notified in a child process or on a Dask worker: its own listeners hear it here."""
    own = getattr(atoms.get(name), "_own_notifier", None)
    if own is not None and own.has_listeners:
        own.tell_listeners(event_type, details)


def _in_process(payload: bytes, name: str, action: int) -> tuple[bool, Any]:
    """Run the pickled call of atom ``name`` in a child process; a failure comes back as a plain dict.

    The call is unpickled here rather than by the pool: a task whose class the
    child cannot import then fails its atom, naming it, instead of killing the
    child (and breaking the pool) with a bare ``Can't get attribute``.
    """
    from flowkit.engines import _process_progress

    try:
        call: Call = pickle.loads(payload)
    except Exception as err:
        from flowkit.engines._pickling import call_unpickling_error

        return False, Failure.from_exception(call_unpickling_error(name, action, err)).to_dict()
    _process_progress.attach_in_child(call.kwargs["atom"])
    ok, value = call_outcome(call)
    if not ok:
        return False, value.to_dict()
    return True, value


class ExecutorDriver(DispatchingDriver):
    """Submits every ready atom to a :class:`concurrent.futures.Executor`."""

    def __init__(
        self,
        executor: cf.Executor | None,
        processes: bool,
        workers: int | None = None,
        green: bool = False,
    ):
        super().__init__()
        self._given = executor
        self._processes = processes
        self._workers = workers
        self._executor: cf.Executor | None = None
        self._relay: ProgressRelay | None = None
        # Green threads run only while the engine thread waits the green way (_green).
        self._green = green
        self._futures: list[cf.Future[Any]] = []
        self._runtime: Runtime | None = None

    def open(self, runtime: Runtime) -> None:
        self._runtime = runtime
        if self._given is not None:
            self._executor = self._given
        elif self._green:
            from flowkit.engines import _green

            self._executor = _green.make_pool(self._workers)
        else:
            # flowkit's own process pool: its children relay progress to this run.
            import concurrent.futures as cf

            from flowkit.engines import _process_progress

            atoms = {node.name: node.atom for node in runtime.compilation.atoms}
            self._relay = _process_progress.ProgressRelay(
                functools.partial(relayed, runtime, atoms), functools.partial(relayed_event, atoms)
            )
            self._executor = cf.ProcessPoolExecutor(
                self._workers,
                initializer=_process_progress.child_initializer,
                initargs=(self._relay.queue,),
            )

    def dispatch(self, done: Completions, node: Node, action: int, call: Call) -> cf.Future[Any] | None:
        executor = self._executor
        assert executor is not None
        if self._processes:
            # Pickled here, not in the pool's feeder thread: a call that does not
            # pickle fails its atom at once, naming the atom and the part at fault.
            try:
                payload = _dumps(call)
            except Exception as err:
                from flowkit.engines import _pickling  # a failed call loads it (first-load cost)

                error = _pickling.call_pickling_error(node, action, call, err)
                done.put(node, action, False, Failure.from_exception(error))
                return None
            future = executor.submit(_in_process, payload, node.name, action)
            # A result that does not pickle fails the future with Python's bare
            # message: the callback says which atom.
            future.add_done_callback(functools.partial(_from_process, self._relay, done, node, action))
        else:
            future = executor.submit(call_outcome, call)
            future.add_done_callback(functools.partial(done.put_future, node, action))
        if self._green:
            self._futures.append(future)
        return future

    def wait(self, timeout: float | None) -> list[Completion]:
        if self._green:
            return self._wait_green(timeout)
        finished = super().wait(timeout)
        if self._processes:
            # Failures raised in a child come back as records; a call that could not
            # even be pickled (an unpicklable task) failed at dispatch with a real Failure.
            finished = [
                Completion(node, action, False, Failure.from_dict(value))
                if not ok and isinstance(value, dict)
                else Completion(node, action, ok, value)
                for node, action, ok, value in finished
            ]
        return finished

    def _wait_green(self, timeout: float | None) -> list[Completion]:
        """Wait on the futures themselves, which lets the green threads run."""
        finished = super().wait(0)
        if not finished and self._futures:
            from flowkit.engines import _green

            _green.wait_for_any(self._futures, timeout)
            finished = super().wait(0)
        self._futures = [future for future in self._futures if not future.done()]
        return finished

    def close(self) -> None:
        if self._given is None and self._executor is not None:
            watch = self._runtime.watchdog if self._runtime is not None else None
            if watch is not None and watch.abandoned:
                watch.stopping_processes = True  # the broken futures are not late outcomes
                _stop_processes(self._executor)
            self._executor.shutdown(wait=True)
        if self._relay is not None:
            self._relay.close()
        self._executor = self._relay = None


def _dumps(call: Call) -> bytes:
    """Pickle ``call`` for a child process: with pickle's C pickler, else as the pool would.

    multiprocessing's own pickler knows a few more types (sockets, pipe
    connections) but copies a dispatch table per call: a third slower for a
    task's call, paid only by a call that plain pickle refuses.
    """
    try:
        return pickle.dumps(call, pickle.HIGHEST_PROTOCOL)
    except Exception:
        from multiprocessing.reduction import ForkingPickler  # loaded with the pool already

        return bytes(ForkingPickler.dumps(call, pickle.HIGHEST_PROTOCOL))


def _from_process(
    relay: ProgressRelay | None, done: Completions, node: Node, action: int, future: cf.Future[Any]
) -> None:
    """Hand in a process pool's outcome; a result that did not pickle says whose."""
    if relay is not None:
        relay.drain()  # the child's progress reports go first, or the engine drops them as stale
    error = None if future.cancelled() else future.exception()
    if error is not None:
        from flowkit.engines import _pickling  # a failed call loads it (first-load cost)

        explained = _pickling.result_pickling_error(node, action, error)
        if explained is not error:
            done.put_raising(node, action, explained)
            return
    done.put_future(node, action, future)  # a broken pool, an interrupt: as any driver's


def _stop_processes(executor: cf.Executor) -> None:
    """End the child processes of our own pool: one still runs a timed-out call.

    ``shutdown`` would wait for that call, which may never end. Python 3.14 has
    ``terminate_workers()``; before it, the pool's process table is the only way.
    """
    terminate = getattr(executor, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    for process in list(getattr(executor, "_processes", {}).values()):
        process.terminate()
