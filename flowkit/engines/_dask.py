"""Driving a Dask client's executor (``client.get_executor()``) from the parallel engine.

The parallel engine takes any :class:`concurrent.futures.Executor`; Dask's
needs more than the others, because its defaults get a flow wrong:

- it keys a call by its content (``pure=True``), so two equal calls (the same
  task of two jobs with the same arguments) would run once for both: every call
  here gets a key of its own, naming its atom (what Dask's dashboard and
  ``KilledWorker`` then show);
- it never completes the future of a result it cannot serialize, and fails an
  unpicklable call with an error about its own graph objects: the call and its
  outcome travel as bytes pickled here with Dask's pickler, so what cannot
  cross fails its atom with an error naming the atom and the culprit;
- a client that lost its scheduler cancels its futures: nobody knows whether
  such a call did its work, so the run stops with the atom ``RUNNING`` (in
  doubt) for a resume, rather than failing it and reverting it on a cluster
  that cannot take the revert either;
- ``SystemExit`` or ``KeyboardInterrupt`` raised by a task would take the
  worker down (and Dask would retry the call on the next, and the next): it is
  sent back and raised in the engine's thread, as on local threads;
- each ``submit`` is a graph of its own for the scheduler, and costs the client
  most of a millisecond: the atoms made ready by one scheduling round (a
  fan-out's hundreds) are sent as one graph (``client.map``), which the
  scheduler takes in at once. A call with a time limit is still submitted
  alone, so that its time-out can cancel its future;
- a task on a worker cannot reach the engine: its ``update_progress`` and the
  events it notifies are logged on the worker (``Worker.log_event``), tagged
  with the run, under a Dask event topic of the client's own, which the client
  subscribes to (``Client.subscribe_topic``) and hands to the run each message
  names; see :class:`_Relay` for why a report always arrives before its
  call's outcome, and :class:`_Router` for why a topic per client.

Imported only when a run is given such an executor, so the parallel engine's
first load costs a plain thread pool nothing for it.
"""

from __future__ import annotations

import _thread
import functools
import logging
import os
import weakref
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit._utils.records import Record
from flowkit._utils.reprs import short_repr
from flowkit.engines._completions import RAISE, Completion, Completions
from flowkit.engines._engine import DispatchingDriver, call_outcome
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import Callable

    from flowkit.engines._compiler import Node
    from flowkit.engines._runtime import Call, Runtime

__all__ = ["DaskDriver", "TaskFailed", "landed"]

#: How many atoms a "could not be submitted" note names before "and N more".
_NAMED_IN_NOTE = 5

_LOG = logging.getLogger(__name__)

# What a message logged on a worker carries (pickled): progress, or another event.
_PROGRESS = "p"
_EVENT = "e"


class TaskFailed(Exception):
    """A task's failure, raised on the Dask worker so that the executor's ``retries=`` apply.

    A call returns its task's failure as a record (the traceback object cannot
    cross), so Dask saw every call succeed and retried none. When the executor
    asks for retries, the worker raises this instead: Dask runs the call again
    up to ``retries`` times, and the last failure's record reaches the engine.
    """

    def __init__(self, name: str, record: dict[str, Any]) -> None:
        super().__init__(name, record)  # the arguments a pickled copy is made with
        self.name = name
        self.record = record

    def __str__(self) -> str:
        names = self.record.get("exc_type_names") or ["Exception"]
        return f"atom {self.name!r} failed: {names[0]}: {self.record.get('exception_str', '')}"


class _Ready(Record):
    """A call waiting for the end of its scheduling round, pickled for the cluster."""

    node: Node
    action: int
    payload: bytes


class DaskDriver(DispatchingDriver):
    """Sends ready atoms to a Dask cluster: each scheduling round's as one graph.

    ``executor`` is ``client.get_executor()``: its options (``workers=``,
    ``resources=``, ``retries=``...) apply to every call. Batching goes through
    the executor's own parts (``_client``, ``_kwargs``, ``_wrap_future``, there
    since Dask's executor exists): should a Dask release drop them, every call
    is submitted alone through the executor, as a timed call is.
    """

    def __init__(self, executor: cf.Executor) -> None:
        super().__init__()
        self._executor = executor
        #: Whether the executor retries a call that fails (``retries=``): a task's
        #: failure is then raised on the worker (see :class:`TaskFailed`).
        self._retried = bool(getattr(executor, "_kwargs", {}).get("retries"))
        self._round: list[_Ready] = []
        self._relay: _Relay | None = None

    def open(self, runtime: Runtime) -> None:
        client = getattr(self._executor, "_client", None)
        if client is not None:
            self._relay = _Relay.open(client, runtime)

    def close(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.close()

    @property
    def _route(self) -> _Route | None:
        return None if self._relay is None else self._relay.route

    def schedule(self, runtime: Runtime) -> None:
        try:
            super().schedule(runtime)
        finally:
            # Even when the round stopped half-way: what was dispatched is counted
            # in flight, and the run waits for it.
            self._send_round()

    def dispatch(self, done: Completions, node: Node, action: int, call: Call) -> cf.Future[Any] | None:
        try:
            payload = _dask_payload(node, call)
        except TypeError:
            done.put(node, action, False, Failure())
            return None
        if done is not self._done:
            # A timed call (its own completion handle): submitted now, alone, so
            # that its time-out can cancel the future returned here.
            return _submit_payload(self._executor, done, node, action, payload, self._route, self._retried)
        self._round.append(_Ready(node, action, payload))
        return None

    def _send_round(self) -> None:
        ready, self._round = self._round, []
        if not ready:
            return
        executor: Any = self._executor
        client = getattr(executor, "_client", None)
        wrap = getattr(executor, "_wrap_future", None)
        if client is None or wrap is None:
            for node, action, payload in ready:
                _submit_payload(executor, self._done, node, action, payload, self._route, self._retried)
            return
        options = {**getattr(executor, "_kwargs", {}), "pure": False}
        try:
            if getattr(executor, "_shutdown", False):
                raise RuntimeError("cannot schedule new futures after shutdown")  # as its submit says
            futures = client.map(
                _on_dask_worker,
                [item.payload for item in ready],
                [str(item.node.name) for item in ready],
                [self._route] * len(ready),
                [self._retried] * len(ready),
                key=[_key(item.node) for item in ready],
                **options,
            )
        except Exception as err:  # a closed client: the run stops, the atoms stay in doubt
            _note_not_submitted(err, [item.node for item in ready])
            raise
        for item, future in zip(ready, futures, strict=True):
            # As the executor's own submit does: it keeps the Dask future (a
            # shutdown waits for it) and hands back a concurrent.futures one, which
            # its event loop completes with the result already fetched.
            executor._futures.add(future)
            wrap(future).add_done_callback(functools.partial(_from_dask, self._done, item.node, item.action))

    def wait(self, timeout: float | None) -> list[Completion]:
        return [landed(completion) for completion in super().wait(timeout)]


def _submit_payload(
    executor: cf.Executor,
    done: Completions,
    node: Node,
    action: int,
    payload: bytes,
    route: _Route | None,
    retried: bool = False,
) -> cf.Future[Any]:
    """Send one pickled call to the cluster under a key of its own; its outcome reaches ``done``.

    ``route`` is the run's channel (see :class:`_Relay`), if it has one: the
    task's progress and events are sent along it. ``retried``: the executor
    retries failed calls, so the task's failure is raised on the worker.

    Raises:
        Exception: the client could not submit (closed): with a note naming the
            atom; the run stops with it in doubt.
    """
    submit_call: Any = executor.submit  # Dask's takes submit options (key=) as keywords
    try:
        future: cf.Future[Any] = submit_call(
            _on_dask_worker, payload, str(node.name), route, retried, key=_key(node)
        )
    except Exception as err:  # a closed client: the run stops, the atom stays in doubt
        _note_not_submitted(err, [node])
        raise
    future.add_done_callback(functools.partial(_from_dask, done, node, action))
    return future


def _note_not_submitted(err: BaseException, nodes: list[Node]) -> None:
    """Say on ``err`` which atoms could not be submitted, and that they are left in doubt."""
    if len(nodes) == 1:
        named, them = f"atom {nodes[0].name!r}", "it"
    else:
        names = [repr(str(node.name)) for node in nodes]
        named = "atoms " + ", ".join(names[:_NAMED_IN_NOTE])
        if len(names) > _NAMED_IN_NOTE:
            named += f" and {len(names) - _NAMED_IN_NOTE} more"
        them = "them"
    err.add_note(
        f"flowkit: {named} could not be submitted to the Dask cluster; the run stopped with {them} "
        f"RUNNING (in doubt): resume it once the client reaches a scheduler"
    )


class _Route(Record):
    """Where a call's task sends its progress and events: its client's topic, and its run."""

    topic: str
    run: str


class _Relay:
    """One run's channel for the progress and events of its tasks on Dask workers.

    A task's worker logs them under its client's flowkit topic (see
    :class:`_Router`), tagged with the run: concurrent runs never hear each
    other's. No drain is needed before a call's outcome is handed in, as a
    process pool's relay does, because every hop is one stream read in order:
    the task's thread queues its message on the worker's event loop before its
    call returns, so the worker sends it to the scheduler ahead of the call's
    "finished"; the scheduler handles a worker's messages in order and forwards
    both on the client's one stream; the client runs the topic's handler for the
    message before it marks the call's key done, and only then does the executor
    fetch the result and complete the call's future. So a report is put on the
    engine's queue ahead of its call's outcome, which the engine would otherwise
    drop as stale. The subscription goes out ahead of the run's first graph on
    that same client stream, so the scheduler knows where to forward before any
    task runs.
    """

    def __init__(self, router: _Router, runtime: Runtime) -> None:
        from flowkit.engines._executor_driver import relayed, relayed_event

        self.route = _Route(router.topic, os.urandom(16).hex())
        self._router: _Router | None = router
        atoms = {node.name: node.atom for node in runtime.compilation.atoms}
        self.deliver = functools.partial(relayed, runtime, atoms)
        self.deliver_event = functools.partial(relayed_event, atoms)

    @classmethod
    def open(cls, client: Any, runtime: Runtime) -> _Relay | None:
        """A channel for ``runtime``'s run on ``client`` (None: a closed client)."""
        router = _Router.of(client)
        if router is None:
            return None  # the run's first submit fails, naming its atoms
        relay = cls(router, runtime)
        router.add(relay)
        return relay

    def close(self) -> None:
        """Stop delivering: the run is over (a call left running on the cluster may still report)."""
        router, self._router = self._router, None
        if router is not None:
            router.remove(self)


class _Router:
    """A client's one flowkit topic, whose messages it hands to the run each names.

    One topic per client, not per run: Dask cannot drop a topic, so the
    scheduler keeps each one (and up to ``distributed.admin.low-level-log-length``
    of its latest events) for as long as it runs. A topic per run made a
    long-lived scheduler grow with every run; a topic per client grows with
    clients, which come and go far more rarely. The topic's name carries the
    client's id, so no other client hears this one's messages.
    """

    _lock = _thread.allocate_lock()
    _routers: weakref.WeakKeyDictionary[Any, _Router] = weakref.WeakKeyDictionary()

    def __init__(self, client: Any) -> None:
        self.topic = f"flowkit-relay-{client.id}"
        self._runs: dict[str, _Relay] = {}

    @classmethod
    def of(cls, client: Any) -> _Router | None:
        """``client``'s router, subscribed to its topic on first use (None: a closed client)."""
        with cls._lock:
            router = cls._routers.get(client)
            if router is None:
                router = cls(client)
                try:
                    client.subscribe_topic(router.topic, router.heard)
                except Exception:
                    return None
                cls._routers[client] = router
        return router

    def add(self, relay: _Relay) -> None:
        self._runs[relay.route.run] = relay

    def remove(self, relay: _Relay) -> None:
        self._runs.pop(relay.route.run, None)

    def heard(self, event: tuple[float, Any]) -> None:
        """Deliver a message logged by a task on a worker (on the client's event-loop thread)."""
        try:
            run, kind, name, *rest = _loads(event[1])
        except Exception:
            _LOG.warning(
                "a progress report or event of a task on a Dask worker cannot be unpickled in the "
                "engine's process; dropped (topic %s)",
                self.topic,
                exc_info=True,
            )
            return
        relay = self._runs.get(run)
        if relay is None:
            return  # the run is over: a call left running on the cluster (timed out) still reports
        if kind == _PROGRESS:
            relay.deliver(name, *rest)
        else:
            relay.deliver_event(name, *rest)


def _attach_on_worker(atom: Any, route: _Route) -> None:
    """Send ``atom``'s progress and other events along ``route``, through this worker."""
    from flowkit.task import BaseTask

    if not isinstance(atom, BaseTask):
        return
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not in a worker's task: nowhere to send them
        return
    log = functools.partial(_log_event, worker, route)
    atom._progress_sink = functools.partial(_progress_from_worker, log)
    atom._event_sink = functools.partial(_event_from_worker, log, atom.name)


def _log_event(worker: Any, route: _Route, message: tuple[Any, ...]) -> None:
    """Log ``message``, pickled and tagged with its run, under the route's topic."""
    worker.log_event(route.topic, _dumps((route.run, *message)))


def _progress_from_worker(
    log: Callable[[tuple[Any, ...]], None], atom: Any, progress: float, details: dict[str, Any] | None = None
) -> None:
    """A task's progress report, sent to the engine (see :class:`_Relay`)."""
    try:
        log((_PROGRESS, atom.name, progress, details))
    except Exception:  # the task's run goes on, and so does its progress
        _LOG.warning(
            "the details of progress %r of task '%s' cannot be sent to the engine (they do not "
            "pickle); sent without them",
            progress,
            atom.name,
            exc_info=True,
        )
        log((_PROGRESS, atom.name, progress, None))


def _event_from_worker(
    log: Callable[[tuple[Any, ...]], None], name: str, event_type: Any, details: dict[str, Any]
) -> None:
    """An event a task notified on its own notifier, sent to its listeners in the engine's process."""
    try:
        log((_EVENT, name, event_type, details))
    except Exception:  # the task's run goes on, as when a process pool's child cannot send one
        _LOG.warning(
            "event %r of task '%s' cannot be sent to the engine (it does not pickle); dropped",
            event_type,
            name,
            exc_info=True,
        )
        return


def _key(node: Node) -> str:
    """A key of the call's own (Dask would key equal calls alike), naming its atom."""
    return f"{node.name}-{os.urandom(16).hex()}"


def _dumps(value: Any) -> bytes:
    """Pickle as Dask does (pickle, cloudpickle for what pickle cannot do)."""
    from distributed.protocol import pickle

    return pickle.dumps(value)  # type: ignore[no-any-return,no-untyped-call]


def _loads(data: bytes) -> Any:
    from distributed.protocol import pickle

    return pickle.loads(data)  # type: ignore[no-untyped-call]


def _on_dask_worker(
    payload: bytes, name: str, route: _Route | None = None, retried: bool = False
) -> tuple[bool | None, Any]:
    """Run a pickled call on a Dask worker; the result comes back pickled, a failure as a record.

    Pickling the result here, not leaving it to Dask, is what lets a result that
    cannot cross fail its atom: Dask's executor never completes the future of a
    result it cannot serialize, which would hang the run. ``name`` is the atom's,
    for the error when the call cannot even be unpickled here; ``route`` the
    run's channel, where the task's progress and events go (None: nowhere).
    ``retried``: the executor retries a failed call (``retries=``), so the
    task's failure is raised, as :class:`TaskFailed`, for Dask to retry it.

    Raises:
        TaskFailed: the task failed and ``retried`` is set.
    """
    try:
        call: Call = _loads(payload)
    except Exception as err:
        try:
            raise TypeError(
                f"atom {name!r} cannot be unpickled on the Dask worker (is the module of its task, "
                f"and of its arguments, installed there?): {type(err).__name__}: {err}"
            ) from err
        except TypeError:
            return False, Failure().to_dict()
    if route is not None:
        _attach_on_worker(call.kwargs.get("atom"), route)
    try:
        ok, value = call_outcome(call)
    except (SystemExit, KeyboardInterrupt) as err:
        # Raised on the worker, it would take the worker down (and Dask would try
        # the call on the next, and the next...): it interrupts the run instead,
        # in the engine's thread, as it does on local threads and process pools.
        # Sent as (class, args): Dask's pickle protocol loses SystemExit's code.
        return RAISE, (type(err), err.args)
    if not ok:
        if retried:
            raise TaskFailed(name, value.to_dict())
        return False, value.to_dict()
    try:
        return True, _dumps(value)
    except Exception as err:  # pickle raises TypeError, AttributeError, PicklingError...
        try:
            raise TypeError(
                f"atom {_atom_name(call)!r} returned {type(value).__name__} {short_repr(value)}, which "
                f"cannot be sent back from the Dask worker: {type(err).__name__}: {err}"
            ) from err
        except TypeError:
            return False, Failure().to_dict()


def _from_dask(done: Completions, node: Node, action: int, future: cf.Future[Any]) -> None:
    """Hand a Dask call's outcome in; a call the cluster dropped stops the run instead.

    Dask cancels the futures of a client that lost its scheduler (and those
    cancelled on the cluster by hand). Nobody knows whether such a call did its
    work: failing the atom would revert it, on a cluster that cannot take the
    revert either (a ``REVERT_FAILURE`` halts the flow for good). So the run
    stops with the atom ``RUNNING``, in doubt, as if the engine's process had
    died, and a resume runs it again. A call flowkit cancelled itself (on its
    timeout) was settled by then: nothing more is said about it.
    """
    if not future.cancelled():
        error = future.exception()
        if error is None:
            ok, value = future.result()
            if ok is RAISE:  # an interrupt raised by the task, as (class, args)
                kind, args = value
                done.put_raising(node, action, kind(*args))
                return
        elif isinstance(error, TaskFailed):  # out of retries: the task's last failure
            done.put(node, action, False, error.record)
            return
        done.put_future(node, action, future)
        return
    if getattr(done, "settled", False):
        return  # cancelled by its timeout, which already failed the atom
    try:
        raise exc.ExecutionFailure(
            f"the Dask cluster dropped the call of atom {node.name!r} (its future was cancelled: the "
            f"client lost its scheduler, or the call was cancelled on the cluster); the run stopped "
            f"with the atom RUNNING (in doubt): resume it once the cluster is back"
        )
    except exc.ExecutionFailure as err:
        done.put_fatal(err)


def _atom_name(call: Call) -> str:
    atom = call.kwargs.get("atom")
    return str(getattr(atom, "name", "?"))


def _dask_payload(node: Node, call: Call) -> bytes:
    """Pickle ``call`` for a Dask worker, or raise a TypeError naming what cannot cross."""
    try:
        return _dumps(call)
    except Exception as err:
        from flowkit.engines._pickling import culprit  # a failed call loads it (first-load cost)

        part = culprit(call, _dumps) or "the call"
        raise TypeError(
            f"atom {node.name!r} cannot be sent to the Dask cluster: {part} cannot be pickled: "
            f"{type(err).__name__}: {err}"
        ) from err


def landed(completion: Completion) -> Completion:
    """Unpickle a result that came back from a Dask worker; rebuild a failure record."""
    node, action, ok, value = completion
    if not ok:
        if isinstance(value, dict):
            return Completion(node, action, False, Failure.from_dict(value))
        return completion  # the future itself failed (KilledWorker, a closed client...)
    if not isinstance(value, bytes):
        return completion
    try:
        return Completion(node, action, True, _loads(value))
    except Exception as err:
        try:
            raise TypeError(
                f"the result of atom {node.name!r} came back from the Dask worker but cannot be "
                f"unpickled in the engine's process: {type(err).__name__}: {err}"
            ) from err
        except TypeError:
            return Completion(node, action, False, Failure())
