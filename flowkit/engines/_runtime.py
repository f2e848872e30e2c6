"""The engine's hands: it does what the scheduler decides, and reports back.

:class:`Runtime` turns a scheduler decision into a call (fetching arguments,
moving the atom to RUNNING or REVERTING, persisting, notifying), and turns the
call's outcome into stored results and a scheduler event. It also implements the
scheduler's :class:`~flowkit.engines._protocols.Hooks`. Drivers (serial, thread
or process pool, asyncio) only decide *where* the call runs.

The per-atom hot path is written for speed: records are reached by node index,
notification details are built only when someone listens, and arguments come from
the compiler's precomputed plans.

Code a successful run never calls (reverts, retries, deciders, resets, guards,
progress reports, spawns and loops, coroutines) lives in modules imported on
first use, which its methods here delegate to (first-load cost: doc/benchmarks.rst).
"""

from __future__ import annotations

import _thread  # threading's lock and get_ident, without importing threading (start-up time)
import functools
import sys
import types
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowkit import _steering
from flowkit import exceptions as exc
from flowkit import states as st
from flowkit._atom_record import RESULT_STATES, holds_result
from flowkit._utils.lazy_logging import module_logger
from flowkit._utils.records import Record
from flowkit.engines import _scheduler as sch
from flowkit.engines._compiler import RETRY, ArgPlan, Compilation, FlowScope, Node, topological_order
from flowkit.storage import AtomRecord, Storage
from flowkit.types.failure import Failure
from flowkit.types.notifier import Notifier

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from flowkit._utils.asyncio_bridge import EventLoopThread
    from flowkit.deciders import Depth  # an enum class: imported where deciders run
    from flowkit.engines._completions import Completions, ProgressReport
    from flowkit.engines._deciding import Deciding, IgnoreCause
    from flowkit.engines._guarding import Guarding
    from flowkit.engines._limits import Limiter
    from flowkit.engines._loops import Clock, Loops
    from flowkit.engines._progress_reports import Reporting
    from flowkit.engines._reverting import RevertCause, Reverting
    from flowkit.engines._splice import SpawnedEdges
    from flowkit.engines._timeouts import Timer, Watchdog
    from flowkit.retry import Decision

__all__ = ["Call", "Completion", "Runtime", "call_outcome", "raised_cancel"]

EVENT_UPDATE_PROGRESS = "update_progress"
_LOG = module_logger(__name__)


class Call(Record):
    """What a driver runs: ``fn(**kwargs)``; the result may be a coroutine to await.

    Attributes:
        fn: a retry's own ``execute``/``revert``, or the wrapper that runs a
            task's with its pre- and post-hooks.
        kwargs: the arguments; for a task, ``{"atom": task, "kwargs": its arguments}``.
    """

    fn: Callable[..., Any]
    kwargs: dict[str, Any]


class Completion(Record):
    """A finished call, as the engine thread accounts for it.

    Defined here, beside :class:`Call`, rather than with the completion queue
    (:mod:`flowkit.engines._completions`): the serial engine hands its outcomes
    over as completions too, and never needs the queue's module.

    Attributes:
        node: the atom's node.
        action: what was asked of it (``EXECUTE``, ``REVERT`` or ``RETRY_AGAIN``).
        ok: whether the call returned (False: it raised).
        value: what it returned, or the :class:`~flowkit.types.failure.Failure`.
    """

    node: Node
    action: int
    ok: bool
    value: Any


#: Results that steer the run rather than being stored as they are: a spawned
#: sub-flow (flowkit.dynamic) and a loop's until answer (loop_flow).
_CONTROL = _steering.STEERING
#: The states an atom's call starts in: a concurrency-slot wait is told with them.
_STARTS = frozenset({st.RUNNING, st.REVERTING})
#: Flow-detail metadata set once a durable run spawned a sub-flow (resume looks for spawns).
SPAWNED_FLOW_KEY = "dynamic"


# _run_execute and its twin, flowkit.engines._reverting.run_revert, are two functions on
# purpose: one generic helper taking the three methods would cost three bound-method
# objects per call on the hot path.
# As TaskFlow's, the post-hook runs whatever happened, also when the pre-hook raised
# (OpenStack Watcher stops a cancelled plan's actions from pre_execute and relies on it).
def _run_execute(atom: Any, kwargs: dict[str, Any]) -> Any:
    try:
        atom.pre_execute()
        value = atom.execute(**kwargs)
    except BaseException:
        atom.post_execute()
        raise
    if type(value) is types.CoroutineType:
        return _then(value, atom.post_execute)
    atom.post_execute()
    return value


async def _then(coro: Coroutine[Any, Any, Any], after: Callable[[], None]) -> Any:
    """Await an async ``execute``/``revert``, then run its post-hook."""
    try:
        return await coro
    finally:
        after()


class Runtime:
    """Binds a compilation to a storage and notifiers for one engine."""

    def __init__(
        self,
        compilation: Compilation,
        storage: Storage,
        atom_notifier: Notifier,
        *,
        defer_reverts: bool = False,
        never_resolve: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.compilation = compilation
        self.storage = storage
        #: The run's records, store and writes; the runtime's working data.
        self.state = storage.run_state
        self.notifier = atom_notifier
        self._defer_reverts = defer_reverts
        self._never_resolve = never_resolve
        self.records: list[AtomRecord | None] = [None] * len(compilation.nodes)
        # Only a flow detail someone can see (a backend's, or one passed in) is kept
        # up to date; in memory the hot path skips even the calls.
        self._durable = self.state.durable
        #: The current run's scheduler, made by :meth:`start` from the stored
        #: states (none before the first run: a 100,000-atom flow would pay for
        #: a scheduler it throws away).
        self.scheduler: sch.Scheduler = _NOT_STARTED  # type: ignore[assignment]
        #: node index -> the authoring layers' guard (type validation, caching);
        #: set by the engine, empty for flows that use neither (flowkit._guards).
        self.guards: dict[int, Any] = {}
        #: Makes the guards of atoms spliced in while the flow runs (their nodes and
        #: :attr:`guards` in, theirs out); set by the engine, which knows the options.
        self.guard_spawned: Callable[[Sequence[Node], Mapping[int, Any]], dict[int, Any]] | None = None
        #: Checks the declared types of a sub-flow about to be spliced in, as the
        #: compile checked the flow's; set by the engine unless ``check_types=False``.
        self.check_spawned: Callable[[SpawnedEdges], None] | None = None
        #: Failures that end the run in FAILURE (revert failures, unresolvable ones).
        self.retained: list[Failure] = []
        #: Calls whose outcome was accounted for in the current run.
        self.completed = 0
        #: atom name -> its execute failure, for every atom whose last execute failed.
        self._failures: dict[str, Failure] = {}
        #: atom name -> the resolution that put it in the revert set (or reset it for
        #: a retry), for :meth:`cause_of`. Written on failures only: the hot path
        #: never touches it.
        self._causes: dict[str, sch.Resolution] = {}
        #: Functions ``(atom name) -> traceparent or None`` (the engine's list):
        #: when one answers, the task's call runs in that trace context.
        self.trace_sources: list[Callable[[str], str | None]] = []
        #: The link decision being applied (set by :meth:`decide` when a decider says
        #: no), and atom name -> the one that skipped it, for :meth:`ignore_cause_of`.
        #: Deciders' flows only.
        self._skipping: IgnoreCause | None = None
        self._ignored: dict[str, IgnoreCause] = {}
        #: The runtime's parts for reverting, link decisions and guarded calls, each
        #: made with its module on first use (:meth:`_reverting`, :meth:`_deciding`,
        #: :meth:`_guarding`): a successful run of a plain flow imports none of them.
        #: Per-atom callers read ``self._reverter or self._reverting()``: no call once made.
        self._reverter: Reverting | None = None
        self._decider: Deciding | None = None
        self._guarder: Guarding | None = None
        #: Progress reports, made with the first (:meth:`_reporting`); kept, as a task
        #: may report many times and an import at each cost a third of its run.
        self._reporter: Reporting | None = None
        #: Notifications held back while a change spanning several records is made
        #: (:meth:`notices_held`); None: each is sent as its state changes.
        self._held: list[tuple[str, dict[str, Any]]] | None = None
        #: Loops' iterations and delays (flowkit.engines._loops); None while the
        #: graph has no loop flow (the module is not even imported then).
        self.loops: Loops | None = None
        self._clock = clock
        self.scan_loops(compilation.root)
        #: Spliced sub-flows (flowkit.engines._splice), made on the first spawn.
        self._spawns: Any = None
        #: node index -> seconds its execute may run; set by the engine (timed atoms only).
        self.timeouts: dict[int, float] = {}
        #: What timeouts are measured with (set by the engine; default: real time).
        self.timer: Timer | None = None
        #: The timed calls of the current run (made on first use, see timed_calls()).
        self.watchdog: Watchdog | None = None
        #: The engine's ``default_timeout`` (for atoms added while running).
        self.default_timeout: float | None = None
        #: concurrency key -> limit, and node index -> key; set by the engine.
        self.limits: dict[str, int] = {}
        self.keys: dict[int, str] = {}
        #: The current run's slots (None when the engine has no concurrency limits).
        self.limiter: Limiter | None = None
        #: What drivers pull work from and the run loop asks for more: the
        #: scheduler's own methods, or the limiter's wrappers around them.
        self.next_item: Callable[[], tuple[Node, int] | None] = _nothing_ready
        self.has_ready: Callable[[], bool] = _NOT_STARTED.has_ready
        # Nodes that never take run_inline's short path (guarded or timed ones).
        self._special: set[int] = set()
        #: Where progress reported from other threads goes during a run (the
        #: driver's completion queue), and the thread that applies it.
        self._relay: Completions | None = None
        self._engine_thread = 0
        #: Whether someone watches every engine step (``run_iter``); when not, a
        #: driver may make several steps in one go (set by the engine per run).
        self.steps_watched = True

    def scan_loops(self, root: FlowScope) -> None:
        """Start the loops' book-keeping once a loop flow is among the scopes under ``root``.

        Called for the compiled graph and for each spliced sub-flow. Until then
        :attr:`loops` stays None: a program that never made a loop flow (nothing
        registered in :data:`flowkit._steering.LOOPS`) does not import the module.
        """
        if self.loops is not None or not _steering.LOOPS:
            return
        from flowkit.engines._loops import Loops

        loops = Loops(self, self._clock)
        loops.scan(root)
        if loops.present:
            self.loops = loops

    def start(self) -> None:
        """Make a fresh scheduler from the stored states (this is also resuming)."""
        records = self.records
        state = self.state
        self._durable = state.durable
        storage_records = state.records
        if self.loops is not None:
            self.loops.reset()
        if self._spawns is not None or state.flow_meta.get(SPAWNED_FLOW_KEY):
            spawns = self.spawns
            spawns.restore()
            if spawns.order_stale:
                self.compilation.order = topological_order(self.compilation.nodes)
                spawns.order_stale = False
            records = self.records
        halted_by: list[Failure] = []
        failures: dict[str, Failure] = {}
        for node in self.compilation.atoms:
            # A record, once made, is the atom's for good (prepare() put most here).
            record = records[node.index]
            if record is None:
                record = records[node.index] = storage_records[node.name]
            if record.failure is not None:
                failures[node.name] = record.failure
            if record.state == st.REVERT_FAILURE and record.revert_failure is not None:
                halted_by.append(record.revert_failure)
        if len(storage_records) != len(self.compilation.atoms):
            # The flow detail holds atoms this flow no longer has: their failures count too.
            failures = state.failures()
        # The scheduler decides on these same records (no copy of the states): an
        # atom left RUNNING has no call out any more, and it treats it as in doubt.
        scheduler = sch.Scheduler(
            self.compilation,
            self,
            defer_reverts=self._defer_reverts,
            never_resolve=self._never_resolve,
            records=records,
        )
        self.scheduler = scheduler
        if self._spawns is not None:
            for splice in self._spawns.splices.values():
                scheduler.join(splice.end, splice.spawner)
        self.retained = []
        self.completed = 0
        self._failures = failures
        self._start_options(scheduler)
        if halted_by:
            # A revert failed in an earlier run: the flow stays halted, as it ended.
            scheduler.halted = True
            self.retained.extend(halted_by)
            self._attach_progress(True)
            return
        for node in scheduler.begin():
            # Stopped between a failure and its resolution: resolve it now.
            scheduler.executed(node, False)
        self._attach_progress(True)

    def _start_options(self, scheduler: sch.Scheduler) -> None:
        """Set up this run's timeouts and concurrency limits, if any atom has them."""
        self.watchdog = None
        self._special = set(self.guards)
        records = self.records
        for index, guard in self.guards.items():
            record = records[index]
            guard.begin_run(record._meta if record is not None else None)
        self._special.update(self.timeouts)
        # With limits set, keyed atoms may also arrive later (spawned sub-flows).
        if self.limits:
            from flowkit.engines._limits import Limiter

            limiter = self.limiter = Limiter(self.limits, self.keys)
            self.next_item = functools.partial(limiter.next_item, scheduler)
            self.has_ready = functools.partial(limiter.has_ready, scheduler)
        else:
            self.limiter = None
            self.next_item = scheduler.next_item
            self.has_ready = scheduler.has_ready

    def _call_inline(self, node: Node, action: int, call: Call) -> tuple[bool, Any]:
        """:func:`call_outcome` for the serial engine, which listeners or a store watch.

        A coroutine runs on the shared loop thread, and this thread waits for it
        taking the progress the task reports there through a queue, as for a
        timed call: the listeners hear it in the engine's thread, as they hear a
        plain task's, and the records have one writer.
        """
        return call_outcome(call, awaited=functools.partial(self._await_inline, node, action))

    def _await_inline(self, node: Node, action: int, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the shared loop thread; return (or raise) its outcome, relaying its progress."""
        from flowkit.engines import _inline_waits  # loaded with the first coroutine (first-load cost)

        return _inline_waits.await_inline(self, node, action, coro)

    def timed_calls(self) -> Watchdog:
        """The current run's timed calls, made when the first timed call starts.

        Made on first use, so a flow without timeouts never imports the module.
        """
        watch = self.watchdog
        if watch is None:
            from flowkit.engines._timeouts import SYSTEM_TIMER, Watchdog

            watch = self.watchdog = Watchdog(self.timer or SYSTEM_TIMER)
        return watch

    def adopt_options(self, nodes: Iterable[Node]) -> None:
        """Read the timeouts and concurrency keys of atoms added to the running flow.

        Raises:
            InvalidAtomOption: a bad timeout or key, or a key the limits do not name.
        """
        from flowkit.engines._task_options import options_of  # loaded with the first spawned atom

        for node in nodes:
            found = options_of(node, self.default_timeout, self.limits)
            seconds, key = found.timeout, found.key
            if seconds is not None:
                self.timeouts[node.index] = seconds
                self._special.add(node.index)
            if key is not None:
                self.keys[node.index] = key  # the limiter reads this same dict

    def adopt_guards(self, nodes: Sequence[Node]) -> None:
        """Give atoms added to the running flow the guards (type validation) the options ask for."""
        if self.guard_spawned is None:
            return
        added = self.guard_spawned(nodes, self.guards)
        if added:
            self.guards.update(added)
            self._special.update(added)
            for guard in added.values():
                guard.begin_run()

    def reset_all(self) -> None:
        """Put every atom back to PENDING with the intention to execute (engine.reset())."""
        from flowkit.engines import _resetting  # loaded on the first reset (first-load cost)

        _resetting.reset_all(self)

    def finish(self, best_effort: bool = False) -> None:
        """End a run: stop relaying progress, write what is pending, release storage.

        Args:
            best_effort: the run is ending with an error already; a failed write
                is logged instead of raised, so that error is the one the caller sees.
        """
        self._attach_progress(False)
        if self.watchdog is not None:
            self.watchdog.close()
        self.relay_progress(None)
        state = self.state
        state.batching = False
        try:
            state.flush()
        except (exc.StorageFailure, exc.JobFailure) as err:
            if not best_effort:
                raise
            from flowkit._utils.text import LogSafe  # a rare path: no import for every run

            # The backend failed already (a database restarting, a lost connection), or a
            # conductor's claim counts as lost and its fence refuses writes: that failure
            # is what the run raises, and a traceback of the same cause again buried it.
            # One line says what the store was left with.
            _LOG.error(
                "could not write the final state of flow '%s' either (%s); the backend holds "
                "the state of its last write, which a resume continues from",
                LogSafe(state.flow_name),
                LogSafe(err.message),
            )
        except Exception:
            if not best_effort:
                raise
            from flowkit._utils.text import LogSafe

            _LOG.exception("could not write the final state of flow '%s'", LogSafe(state.flow_name))
        finally:
            state.release()

    def _attach_progress(self, on: bool) -> None:
        sink = self._on_progress if on else None
        for node in self.compilation.atoms:
            if node.kind != RETRY:
                node.atom._progress_sink = sink  # type: ignore[union-attr]

    # -- the serial fast path -------------------------------------------------------

    def run_inline(self, node: Node, action: int) -> tuple[bool, Any] | None:
        """Begin and call ``node`` in this thread (the serial engine's step).

        A plain task executing with nobody listening and nothing to persist takes a
        short path with the same effects as ``begin``/``call``/``complete``, minus
        the notifications nobody would receive, and its success is accounted for
        at once. Anything else (reverts, retries, failures, listeners, durable
        storage) returns ``(ok, value)`` for the engine to :meth:`complete` when it
        analyzes outcomes, where TaskFlow does (None: nothing left to account for).
        """
        atom = node.atom
        if (
            action != sch.EXECUTE
            or node.kind == RETRY
            or self._durable
            or self.notifier.has_listeners
            or atom._own_notifier is not None  # type: ignore[union-attr]
            or node.index in self._special
        ):
            call = self.begin_or_fail(node, action)
            if call is None:
                return None
            if node.kind == RETRY:  # a retry's decision steers what comes next: at once
                self.complete(node, action, *call_outcome(call))
                return None
            if self._durable:
                self.state.flush()
            if action != sch.REVERT and node.index in self.timeouts:
                from flowkit.engines import _inline_waits  # the first timed call loads it (first-load cost)

                return _inline_waits.run_timed_inline(self, node, action, call)
            return self._call_inline(node, action, call)
        index = node.index
        record = self.records[index]
        assert record is not None
        record.state = st.RUNNING
        record.progress = 0.0
        if self.loops is not None:
            self.loops.stamp(node, record)
        try:
            kwargs = self._fetch(node, node.exec_args, record) if node.exec_args else {}
            value = _run_execute(atom, kwargs)
            if type(value) is types.CoroutineType:
                value = _shared_bridge().run(value)
            if type(value) in _CONTROL:
                return True, value
            if atom._extraction:  # type: ignore[union-attr]
                _check_unpacks(node, atom, value)
        except Exception:
            return False, Failure()
        except BaseException as err:
            if not raised_cancel(err):
                raise
            return False, Failure._of_any()
        self.completed += 1
        record.result = value
        if record.failure is not None:  # it failed on an earlier attempt of a retry
            record.failure = None
            self._failures.pop(node.name, None)
        record.progress = 1.0
        record.state = st.SUCCESS
        self.scheduler.executed(node, True)
        return None

    def begin_or_fail(self, node: Node, action: int) -> Call | None:
        """:meth:`begin`, but an argument that cannot be fetched fails the atom (None)."""
        try:
            call = self.begin(node, action)
        except Exception:
            self.complete(node, action, False, Failure())
            return None
        guard = self.guards.get(node.index) if self.guards else None
        if guard is None:
            return call
        return self._guarding().guarded(guard, node, action, call)

    # -- starting work ------------------------------------------------------------

    def begin(self, node: Node, action: int) -> Call:
        """Move ``node`` into its running state and return the call to make.

        Raises:
            NotFound: an argument has no value; the caller fails the atom with it.
        """
        if action == sch.EXECUTE:
            return self._begin_execute(node)
        if action == sch.REVERT:
            return (self._reverter or self._reverting()).begin(node)
        from flowkit.engines import _retrying  # loaded on the first retry (first-load cost)

        return _retrying.begin_again(self, node)

    def _begin_execute(self, node: Node) -> Call:
        record = self.records[node.index]
        assert record is not None
        if node.kind != RETRY:
            record.progress = 0.0
        if self.loops is not None:
            self.loops.stamp(node, record)
        self._transition(node, st.RUNNING)
        kwargs = self._fetch(node, node.exec_args, record) if node.exec_args else {}
        atom = node.atom
        if node.kind == RETRY:
            kwargs["history"] = self.storage.get_retry_history(node.name)
            return Call(atom.execute, kwargs)  # type: ignore[union-attr]
        own = atom._own_notifier  # type: ignore[union-attr]
        if self.notifier.has_listeners or (own is not None and own.has_listeners):  # _progress_watched
            self._announce_progress(node.name, atom, 0.0)
        if self.trace_sources:
            return self._traced(node.name, _run_execute, atom, kwargs)
        return Call(_run_execute, {"atom": atom, "kwargs": kwargs})

    def _traced(
        self, name: str, run: Callable[[Any, dict[str, Any]], Any], atom: Any, kwargs: dict[str, Any]
    ) -> Call:
        """The call of ``run(atom, kwargs)`` in the trace context of ``name``'s span.

        Its ``atom`` and ``kwargs`` stay where drivers read them (a Dask payload's
        check, the result cache's guard); the ``traceparent`` is a string, so the
        call still pickles for a process pool or a Dask worker.
        """
        traceparent = self.trace_sources[-1](name)
        if traceparent is None:
            return Call(run, {"atom": atom, "kwargs": kwargs})
        from flowkit.engines._call_tracing import run_traced  # traced runs only

        return Call(run_traced, {"fn": run, "traceparent": traceparent, "atom": atom, "kwargs": kwargs})

    def source_of(self, node: Node, plan: ArgPlan) -> int:
        """Which node's result gives ``node`` its argument ``plan.arg`` now (-1: an injected value).

        :meth:`_fetch`'s order of sources, without fetching: the atom's own
        injected values, then the store, win over any provider's result; a
        planned provider a decider skipped gives way to the next visible one.
        The result cache asks it, to key an argument by its provider's key only
        when that provider's result is what the atom gets.
        """
        return self._guarding().source_of(node, plan)

    def _fetch(self, node: Node, plans: tuple[ArgPlan, ...], record: AtomRecord) -> dict[str, Any]:
        # The order of sources :meth:`source_of` also follows (inline here: the hot path).
        out: dict[str, Any] = {}
        injected = record.injected
        store = self.state.store
        records = self.records
        for plan in plans:
            symbol = plan.symbol
            if injected is not None and symbol in injected:
                out[plan.arg] = injected[symbol]
                continue
            if symbol in store:
                out[plan.arg] = store[symbol]
                continue
            provider = plan.provider
            if provider >= 0:
                source = records[provider]
                if source is not None and source.failure is None and source.state in RESULT_STATES:
                    key = plan.key
                    out[plan.arg] = source.result if key is None else source.result[key]
                    continue
                # The planned provider was skipped by a decider: the next visible one.
                provider = self.compilation.resolve(node, symbol, self._has_no_result)
                if provider >= 0:
                    source = records[provider]
                    key = self.compilation.nodes[provider].atom.save_as[symbol]  # type: ignore[union-attr]
                    out[plan.arg] = source.result if key is None else source.result[key]  # type: ignore[union-attr]
                    continue
            if not plan.optional:
                raise _unfetchable(node, plan)
        return out

    def _has_no_result(self, index: int) -> bool:
        record = self.records[index]
        return record is None or not holds_result(record)

    # -- finishing work -------------------------------------------------------------

    def complete(self, node: Node, action: int, ok: bool, value: Any) -> None:
        """Store the outcome of a call and tell the scheduler."""
        self.completed += 1
        if self.limiter is not None:
            # First: whatever this outcome starts (a spawned sub-flow, the next
            # atom) may need the slot the call held.
            self.limiter.release(node)
        if action == sch.REVERT:
            (self._reverter or self._reverting()).complete(node, ok, value)
        else:
            self._complete_execute(node, ok, value)

    def _complete_execute(self, node: Node, ok: bool, value: Any) -> None:
        record = self.records[node.index]
        assert record is not None
        atom = node.atom
        guard = self.guards.get(node.index) if self.guards else None
        if ok and type(value) in _CONTROL:
            spawning = _CONTROL[type(value)] == _steering.Steer.SPAWN
            from flowkit.engines import _steer  # loaded with the first spawn or loop (first-load cost)

            outcome = _steer.steer(self, node, value)
            if outcome is None:
                return
            ok, value = outcome
            if spawning and guard is not None:
                # The spawner's result is the sub-flow's, collected when it ends:
                # None is no result to validate or cache now (see Guard.spawned).
                guard.spawned()
                guard = None
        encoded = None
        if ok:
            try:
                if guard is not None:
                    value = guard.on_result(value)
                    if self._durable and guard.caches:
                        guard.remember(record.meta)  # written with the SUCCESS, for a resume
                if atom._extraction:  # type: ignore[union-attr]
                    _check_unpacks(node, atom, value)
                if self._durable:
                    encoded = self.check_storable(node, "result", value)
            except exc.InvalidFormat as err:
                ok, value = False, Failure.from_exception(err)
        if ok:
            record.result, record.failure = value, None
            if encoded is not None and node.kind != RETRY:
                # The write that follows stores this text, not a second encoding
                # (a retry's row holds its history, not this value alone).
                self.state.remember_encoded(node.name, "results", value, encoded)
            if record.revert_result is not None or record.revert_failure is not None:
                # Re-run after a revert (a retry): as TaskFlow, the old revert outcome goes.
                record.revert_result = record.revert_failure = None
            if self._failures:
                self._failures.pop(node.name, None)
            if node.kind == RETRY:
                self.state.append_retry_result(node.name, value)
            else:
                record.progress = 1.0
            self._transition(node, st.SUCCESS, value)
            if node.kind != RETRY:
                own = atom._own_notifier  # type: ignore[union-attr]
                if self.notifier.has_listeners or (own is not None and own.has_listeners):
                    self._announce_progress(node.name, atom, 1.0)
            self.scheduler.executed(node, True)
            return
        record.failure, record.result = value, None
        self._failures[node.name] = value
        self._transition(node, st.FAILURE, value)
        self.scheduler.executed(node, False)
        if self.scheduler.halted and self._never_resolve:
            self.retained.append(value)

    @property
    def spawns(self) -> Any:
        """The spliced sub-flows (made on first use: static flows never import it)."""
        if self._spawns is None:
            from flowkit.engines._splice import Spawns

            self._spawns = Spawns(self)
        return self._spawns

    def spawns_spawner_of(self, root: FlowScope) -> int:
        """The spawner of a spawned sub-flow's root scope, or -1."""
        return -1 if self._spawns is None else self._spawns.spawner_of(root)

    def _transition(self, node: Node, state: str, result: Any = sch) -> None:
        record = self.records[node.index]
        assert record is not None
        old = record.state
        record.state = state  # the scheduler reads this same record
        if self._durable:
            self.state.changed(record)
        # A state re-entered (an in-doubt RUNNING atom re-run on resume) is no
        # transition: TaskFlow's listeners never hear RUNNING -> RUNNING.
        if old != state and self.notifier.has_listeners:
            details: dict[str, Any]
            if node.kind == RETRY:
                details = {"retry_name": node.name, "retry_uuid": record.uuid, "old_state": old}
            else:
                details = {"task_name": node.name, "task_uuid": record.uuid, "old_state": old}
            if result is not sch:
                details["result"] = result
            loops = self.loops
            if loops is not None:
                until = loops.until_of(node)
                if until >= 0:
                    details["iteration"] = loops.iteration(until)
            limiter = self.limiter
            if limiter is not None and limiter.waited and state in _STARTS:
                # It waited for a concurrency slot: the notice of its start says so.
                limiter.annotate(node.index, details)
            if state in (st.SUCCESS, st.REVERTED) and node.index in self.guards:
                # A REVERTED says whether its revert was skipped (a hit) or called (a
                # miss), as the SUCCESS said whether execute was: a trace's revert span
                # carries ``flowkit.cache.hit`` either way, as its execute span does.
                self.guards[node.index].annotate(details)
            if self._held is not None:
                self._held.append((state, details))
            else:
                if self._durable and self.notifier.has_user_listeners:
                    # As TaskFlow: the change is stored before a user's listener hears
                    # of it, so one reading the backend (an audit) finds it there.
                    # flowkit's own listeners read only the storage, current already:
                    # for them the write waits for the next batch (one per atom).
                    self.state.flush()
                self.notifier.notify(state, details)

    def notices_held(self) -> AbstractContextManager[None]:
        """Send the state changes made in the block only once it has made them all.

        A listener may raise (a ``KeyboardInterrupt`` stands for a crash) and
        the run's last write then stores what the records hold. A change made
        of several records, such as a loop's reset of its body with the next
        iteration number, must be whole by then: a resume reading half of it
        ran the body past ``max_iterations``. The notifications keep their
        order and their details as of each change. If the block raises, they
        are dropped with it.
        """
        from flowkit.engines import _held_notices  # loaded by the first retry or loop (first-load cost)

        return _held_notices.notices_held(self)

    def relay_progress(self, completions: Completions | None) -> None:
        """Send progress reported from other threads through ``completions`` (None: stop).

        Called by the engine thread as a run starts and ends. While a relay is
        set, a report made in any other thread (a pool worker, an event loop, the
        thread relaying a process pool's or a remote worker's reports) is queued
        and applied by the engine thread as it waits, so that thread is the only
        one writing the run's records and the listeners hear it there.
        """
        if self._relay is not None:
            self._relay.on_progress = None
        self._relay = completions
        self._engine_thread = _thread.get_ident()
        if completions is not None:
            completions.on_progress = self._apply_report

    def _apply_report(self, report: ProgressReport) -> None:
        """Record a progress report taken from the completion queue (engine thread)."""
        (self._reporter or self._reporting()).apply_report(report)

    def progress_by_name(
        self, atom_name: str, progress: float, details: dict[str, Any] | None = None
    ) -> None:
        """Record progress reported for an atom that runs elsewhere (another process, a worker).

        A report that arrives after its atom's call ended is stale and dropped.
        """
        (self._reporter or self._reporting()).progress_by_name(atom_name, progress, details)

    def _on_progress(self, atom: Any, progress: float, details: dict[str, Any] | None = None) -> None:
        """Called (from any thread) when a running task reports progress."""
        (self._reporter or self._reporting()).on_progress(atom, progress, details)

    def _announce_progress(self, name: str, atom: Any, progress: float) -> None:
        """Tell listeners of the 0.0 and 1.0 the engine itself reports (already recorded).

        As in TaskFlow they reach the task's own listeners but are not a report of
        the task's: the details it last reported stay in storage.
        """
        own = atom._own_notifier
        if own is not None and own.has_listeners:
            own.tell_listeners(EVENT_UPDATE_PROGRESS, {"progress": progress})
        self._notify_progress(name, progress, None)

    def _notify_progress(self, name: str, progress: float, details: dict[str, Any] | None) -> None:
        if self.notifier.has_listeners:
            record = self.state.records[name]
            event = {"task_name": name, "task_uuid": record.uuid, "progress": progress}
            if details:
                event.update(details)
            self.notifier.notify(EVENT_UPDATE_PROGRESS, event)

    def check_storable(self, node: Node, what: str, value: Any) -> str | None:
        """Raise InvalidFormat, naming the atom, if the backend in use cannot store ``value``.

        Returns the JSON text the check made (see ``RunState.check_storable``).
        """
        try:
            return self.state.check_storable(value)
        except (TypeError, ValueError, RecursionError) as err:
            if what == "result" and _steering.LOOPS:
                # only on this failure (first-load cost)
                from flowkit.engines._loops import loop_answered_by, unstorable_until

                loop = loop_answered_by(node)
                if loop is not None:
                    raise unstorable_until(loop, node, value, err) from err
            from flowkit.persistence._json import unstorable  # loaded already by the check

            raise unstorable(f"{what} of atom '{node.name}'", err) from err

    # -- scheduler hooks ---------------------------------------------------------------

    def record(self, node: Node, state: str | None, intention: str | None) -> None:
        record = self.records[node.index]
        assert record is not None
        if intention in _REVERT_INTENTIONS and self.scheduler.resolution is not None:
            self._causes[node.name] = self.scheduler.resolution
        if state is not None:
            if state == st.IGNORE and self._skipping is not None:
                self._ignored[node.name] = self._skipping
            if node.kind != RETRY and (record.state != state or record.progress is not None):
                # A reset (PENDING) or a skip (IGNORE) starts over, as in TaskFlow; like
                # TaskFlow's, a reset of a task still PENDING that never had one sets none.
                record.progress = 0.0
            # The state first, then the intention, as TaskFlow does: a listener told
            # of an IGNORE or a reset to PENDING still reads the intention it had.
            self._transition(node, state)
            if intention is None:
                return
        if intention is not None:
            record.intention = intention
        if self._durable:
            self.state.changed(record)

    def cause_of(self, name: str) -> RevertCause | None:
        """The failure resolution behind ``name``'s latest revert or reset in this run, if any."""
        if not self._causes:
            return None  # no failure was resolved: no need to load the module
        return self._reverting().cause_of(name)

    def ignore_cause_of(self, name: str) -> IgnoreCause | None:
        """The link decision that skipped ``name`` (IGNORE) in this engine's runs, if any."""
        return self._ignored.get(name) if self._ignored else None

    def decide(self, node: Node) -> Depth | None:
        return (self._decider or self._deciding()).decide(node)

    def joined(self, spawner: Node) -> None:
        record = self.records[spawner.index]
        assert record is not None
        record.result = self.spawns.collect(spawner)
        if self._durable:
            self.state.changed(record)

    def ask_retry(self, retry: Node, failed: Node, origin: Node) -> Decision:
        from flowkit.engines import _retrying  # loaded on the first retry (first-load cost)

        return _retrying.ask_retry(self, retry, failed, origin)

    # -- parts made on first use (their modules too: the first load's cost) ------------

    def _reverting(self) -> Reverting:
        """The revert half, made on the first revert."""
        if self._reverter is None:
            from flowkit.engines._reverting import Reverting

            self._reverter = Reverting(self)
        return self._reverter

    def _deciding(self) -> Deciding:
        """The link decisions, made on the first decision."""
        if self._decider is None:
            from flowkit.engines._deciding import Deciding

            self._decider = Deciding(self)
        return self._decider

    def _reporting(self) -> Reporting:
        """The progress reports, made on the first (in any thread: one a race makes twice is as good)."""
        if self._reporter is None:
            from flowkit.engines._progress_reports import Reporting

            self._reporter = Reporting(self)
        return self._reporter

    def _guarding(self) -> Guarding:
        """The guarded calls, made on the first guarded call."""
        if self._guarder is None:
            from flowkit.engines._guarding import Guarding

            self._guarder = Guarding(self)
        return self._guarder


class _NotStarted:
    """The scheduler of a runtime that has not started a run: nothing is ready, nothing halted."""

    halted = False
    resolved_failures = 0
    resolution = None

    def has_ready(self) -> bool:
        return False


_NOT_STARTED = _NotStarted()


def _nothing_ready() -> tuple[Node, int] | None:
    return None


#: Intentions the scheduler gives the atoms a failure's resolution sends back.
_REVERT_INTENTIONS = frozenset({st.REVERT, st.RETRY})


def call_outcome(
    call: Call,
    bridge: EventLoopThread | None = None,
    *,
    awaited: Callable[[Coroutine[Any, Any, Any]], Any] | None = None,
) -> tuple[bool, Any]:
    """Make ``call``; return ``(True, result)`` or ``(False, Failure)``.

    A coroutine result is run to completion first: by ``awaited`` if given,
    else on ``bridge`` (default: the shared event-loop thread).
    """
    fn, kwargs = call
    try:
        value = fn(**kwargs)
        if type(value) is types.CoroutineType:
            value = awaited(value) if awaited is not None else (bridge or _shared_bridge()).run(value)
    except Exception:
        return False, Failure()
    except BaseException as err:
        if not raised_cancel(err):
            raise
        return False, Failure._of_any()
    return True, value


def raised_cancel(error: BaseException) -> bool:
    """Tell whether a call raised :class:`asyncio.CancelledError`: a failure of its atom.

    Only KeyboardInterrupt and SystemExit stop a run (doc/engines.rst). A task
    raises CancelledError itself (a call it made was cancelled), and a call the
    engine cancels never reaches here as one, so it fails the atom, as it does
    on the asyncio engine. asyncio is looked up, not imported: without it no
    CancelledError exists.
    """
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(error, asyncio.CancelledError)


def _shared_bridge() -> EventLoopThread:
    """The loop thread for a coroutine of the synchronous engines, one per nesting level."""
    from flowkit.engines import _bridges  # loaded with the first coroutine (first-load cost)

    return _bridges.shared_bridge()


def _check_unpacks(node: Node, atom: Any, result: Any) -> None:
    """Check that every provided name can be read out of ``result``, or fail naming the atom."""
    for name, key in atom._extraction:
        if key is None:
            continue
        try:
            result[key]
        except (IndexError, KeyError, TypeError) as err:
            from flowkit.engines import _result_errors  # the failure path only (first-load cost)

            raise _result_errors.unpack_error(node, atom, result, name, key) from err


def _unfetchable(node: Node, plan: ArgPlan) -> exc.NotFound:
    """The error of an argument whose providers left no value (a decider skipped them), naming who needs it.

    A loop's hidden ``until`` task is named by its loop: the user made the loop, not the task.
    """
    who = f"atom '{node.name}'"
    if _steering.LOOPS:
        from flowkit.engines._loops import loop_answered_by  # only on this failure (first-load cost)

        loop = loop_answered_by(node)
        if loop is not None:
            who = f"loop '{loop.name}': its until predicate"
    return exc.NotFound(
        f"{who} needs '{plan.symbol}' (argument '{plan.arg}'), but no value was injected and no atom "
        "visible to it produced one"
    )
