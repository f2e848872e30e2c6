"""Loops (:mod:`flowkit.patterns.loop_flow`) as the runtime carries them out.

A loop compiles like a linear flow whose last atom is the hidden ``until``
task. When that task says "not yet", :meth:`Loops.verdict` keeps the
iteration's results in each body atom's record, puts the body back to
PENDING (:meth:`Scheduler.restart`) and queues the loop's start again: at
once, or when its delay has passed. Delays are *timers*, not sleeps: the
engine keeps running whatever else is ready and only waits (on the injected
clock) when nothing else can move, so a delay never blocks another branch.

The iteration number lives in each body atom's record (``meta["iteration"]``)
and is written with the body's reset, in the same write, so a resumed run
knows which iteration it was in. The earlier iterations' results
(``meta["iterations"]``) grow by one entry per iteration; a persisted run
writes them in chunks, each once (:mod:`flowkit.persistence._archived`), so
an iteration's writes do not grow with the loop.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from flowkit import exceptions as exc
from flowkit._steering import LOOPS
from flowkit._utils.records import Record
from flowkit.engines._compiler import RETRY, FlowScope, Node
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    from flowkit._atom_record import AtomRecord
    from flowkit.engines._runtime import Runtime
    from flowkit.patterns import loop_flow

__all__ = [
    "ITERATION_KEY",
    "Clock",
    "Loops",
    "MonotonicClock",
    "loop_answered_by",
    "unstorable_until",
    "until_needs",
]

#: Atom-detail metadata: the iteration an atom of a loop's body is in (from 1).
ITERATION_KEY = "iteration"
#: Atom-detail metadata: ``[{"iteration": n, "result": ...}, ...]`` of earlier iterations.
HISTORY_KEY = "iterations"


class Clock(Protocol):
    """What loops need from a clock (the worker-based engine's clocks fit)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _Timer(Record):
    """A loop's delay being waited out; timers sort (in a heap) by when they are due."""

    due: float  # on the loops' monotonic clock
    seq: int  # ties on ``due`` go first-set first (and never compare ``start``)
    start: int  # the node the loop's next iteration starts from (see Loops._entry), woken when due


class Loops:
    """Iteration counters and delay timers of one engine's loops."""

    def __init__(self, runtime: Runtime, clock: Clock | None = None) -> None:
        self._runtime = runtime
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        #: Whether the graph has a loop at all (nothing here costs a thing otherwise).
        self.present = False
        #: ``until`` node index -> the iteration its loop is in.
        self._iteration: dict[int, int] = {}
        #: Node index -> its innermost loop's ``until`` node (-1: in no loop), filled as asked.
        self._loop_of: dict[int, int] = {}
        #: Delays being waited out, a heap (the next due first).
        self.timers: list[_Timer] = []
        self._seq = 0

    def scan(self, root: FlowScope) -> None:
        """Note whether the scopes under ``root`` hold a loop."""
        if not LOOPS or self.present:
            return  # no loop flow was ever made (or one is known already)
        stack = [root]
        while stack:
            scope = stack.pop()
            if type(scope.flow) in LOOPS:
                self.present = True
                return
            stack.extend(child for child in scope.children if type(child) is FlowScope)

    def reset(self) -> None:
        """Forget counters (a new run reads them from the records again) and timers."""
        self._iteration.clear()
        self._loop_of.clear()
        self.timers = []

    # -- iteration numbers ------------------------------------------------------------

    def until_of(self, node: Node) -> int:
        """The ``until`` node of the innermost loop ``node`` is in, or -1."""
        found = self._loop_of.get(node.index)
        if found is not None:
            return found
        found = -1
        scope: FlowScope | None = node.scope
        nodes = self._runtime.compilation.nodes
        while scope is not None:
            if type(scope.flow) in LOOPS:
                last = scope.children[-1]
                found = last if isinstance(last, int) else -1
                break
            if scope.parent is None:
                # A spawned sub-flow's root: carry on from where its spawner sits.
                spawner = self._runtime.spawns_spawner_of(scope)
                scope = nodes[spawner].scope if spawner >= 0 else None
            else:
                scope = scope.parent
        self._loop_of[node.index] = found
        return found

    def iteration(self, until_index: int) -> int:
        """The iteration the loop of ``until_index`` is in (from 1)."""
        found = self._iteration.get(until_index)
        if found is None:
            record = self._runtime.records[until_index]
            meta = record._meta if record is not None else None
            stored = meta.get(ITERATION_KEY) if meta else None
            found = stored if isinstance(stored, int) and stored >= 1 else 1
            self._iteration[until_index] = found
        return found

    def stamp(self, node: Node, record: AtomRecord) -> int | None:
        """Write the iteration ``node`` runs in into its record; return it (None: not in a loop)."""
        until = self.until_of(node)
        if until < 0:
            return None
        current = self.iteration(until)
        record.meta[ITERATION_KEY] = current
        return current

    # -- the until task's answer -------------------------------------------------------

    def verdict(self, node: Node, answer: loop_flow.LoopVerdict) -> tuple[bool, Any] | None:
        """Act on ``until``'s answer: the outcome to store, or None when the body runs again."""
        loop: loop_flow.Flow = node.scope.flow
        current = self.iteration(node.index)
        if answer.done:
            return True, answer.value
        if current >= loop.max_iterations:
            error = exc.LoopExhausted(
                f"loop '{loop.name}' ran {current} iteration(s) (max_iterations={loop.max_iterations}) "
                f"and its until never held (last value: {answer.value!r})",
                loop=loop.name,
                iterations=current,
            )
            return False, Failure.from_exception(error)
        runtime = self._runtime
        # One change, whole before any listener hears of it: the body's reset, the
        # next iteration number and the history. A listener may raise (a crash
        # standing in) and the run's last write stores what the records hold; a
        # body PENDING with its old iteration number would make a resume run the
        # loop past max_iterations.
        with runtime.notices_held():
            self._iteration[node.index] = current + 1
            start = self._entry(node.scope)
            body = runtime.scheduler.body(start, node.scope.end)
            # Loops nested in the body (in sub-flows spawned there too) start over
            # from their first iteration, set before the reset so each PENDING
            # notice carries the iteration its atom runs in next (the one its
            # record is given below).
            nodes = runtime.compilation.nodes
            inner: dict[int, int] = {}
            for index in body:
                if nodes[index].atom is None:
                    continue
                own = self.until_of(nodes[index])
                if own >= 0 and own != node.index and own not in inner:
                    inner[own] = self.iteration(own)
            for own in inner:
                self._iteration[own] = 1
            changed = runtime.scheduler.restart(body)
            for atom_node in changed:
                record = runtime.records[atom_node.index]
                assert record is not None
                if atom_node.kind == RETRY:
                    # A retry in the body starts each iteration with its attempts whole,
                    # as after a revert: its history would otherwise count every iteration.
                    runtime.state.history.pop(atom_node.name, None)
                own = self.until_of(atom_node)
                meta = record.meta
                if atom_node.index != node.index:
                    was = current if own == node.index else inner[own]
                    meta.setdefault(HISTORY_KEY, []).append({"iteration": was, "result": record.result})
                meta[ITERATION_KEY] = current + 1 if own == node.index else 1
                record.result = None
                if runtime.state.durable:
                    runtime.state.long_lists = True  # the history is written in chunks
                    runtime.state.changed(record)
            if loop.delay > 0:
                self._seq += 1
                heapq.heappush(self.timers, _Timer(self.clock.monotonic() + loop.delay, self._seq, start))
                if runtime.state.durable:
                    # Written now: the next call's flush comes only after the delay, and
                    # a run that dies meanwhile must resume in the next iteration
                    # rather than run ``until`` again and wait the delay out again.
                    runtime.state.flush()
            else:
                runtime.scheduler.wake(start)
        return None

    def _entry(self, scope: FlowScope) -> int:
        """Where a loop's next iteration starts: its flow's start, or what follows its own retry.

        A loop's own retry (``retry=``) controls the whole loop, every iteration:
        it is not run again with the body, which would spend one of its attempts
        (and, its history cleared as a body retry's is, leave it never out of
        attempts).
        """
        if scope.retry < 0:
            return scope.start
        (entry,) = self._runtime.compilation.nodes[scope.retry].succ
        return entry

    def restart_scope(self, retry: Node, scope: list[int]) -> None:
        """``retry`` runs its scope again: every loop wholly inside it starts over.

        Such a loop is run again from its first iteration, with
        ``max_iterations`` whole, as when it first ran (a loop nested in a
        loop's body does the same each outer iteration). The iteration number
        is written to its atoms' records, so a resumed run reads it; their
        earlier iterations' results stay in their history. A loop the retry
        sits inside goes on counting.

        Args:
            retry: the retry node.
            scope: the nodes after it (its flow's, and what follows that flow).
        """
        runtime = self._runtime
        nodes = runtime.compilation.nodes
        inside: dict[int, bool] = {}
        restarted: set[int] = set()
        for index in scope:
            node = nodes[index]
            if node.atom is None:
                continue
            until = self.until_of(node)
            if until < 0:
                continue
            known = inside.get(until)
            if known is None:
                known = inside[until] = self._under(nodes[until].scope, retry.index)
            if not known:
                continue
            restarted.add(until)
            record = runtime.records[index]
            if record is not None and record.meta.get(ITERATION_KEY, 1) != 1:
                record.meta[ITERATION_KEY] = 1
                if runtime.state.durable:
                    runtime.state.changed(record)
        if not restarted:
            return
        for until in restarted:
            self._iteration[until] = 1
        starts = {self._entry(nodes[until].scope) for until in restarted}
        if any(timer.start in starts for timer in self.timers):
            # A delay being waited out belongs to the attempt the retry ended.
            self.timers = [timer for timer in self.timers if timer.start not in starts]
            heapq.heapify(self.timers)

    def _under(self, scope: FlowScope | None, retry: int) -> bool:
        """Whether ``scope`` is the flow ``retry`` controls or nested in it."""
        nodes = self._runtime.compilation.nodes
        while scope is not None:
            if scope.retry == retry:
                return True
            if scope.parent is None:
                spawner = self._runtime.spawns_spawner_of(scope)
                scope = nodes[spawner].scope if spawner >= 0 else None
            else:
                scope = scope.parent
        return False

    # -- delays --------------------------------------------------------------------------

    def wake_due(self) -> None:
        """Queue every loop whose delay has passed."""
        timers = self.timers
        if not timers:
            return
        now = self.clock.monotonic()
        while timers and timers[0].due <= now:
            self._runtime.scheduler.wake(heapq.heappop(timers).start)

    def wait_budget(self, timeout: float | None) -> float | None:
        """How long the engine may block waiting for calls before a delay ends."""
        if not self.timers:
            return timeout
        left = max(0.0, self.timers[0].due - self.clock.monotonic())
        return left if timeout is None else min(timeout, left)

    def sleep_until_due(self) -> bool:
        """With nothing else to do: wait out the next delay and queue its loop (False: none left)."""
        scheduler = self._runtime.scheduler
        timers = self.timers
        while timers and scheduler.reverting(timers[0].start):
            heapq.heappop(timers)
        if not timers:
            return False
        left = timers[0].due - self.clock.monotonic()
        if left > 0:
            self.clock.sleep(left)
        self.wake_due()
        return True


def unstorable_until(loop: loop_flow.Flow, node: Node, value: Any, err: BaseException) -> exc.InvalidFormat:
    """The error of a loop whose ``until`` held with a value the run's backend cannot store.

    That value is the result of the loop's hidden task (later atoms may read
    it), so it is checked as any result is; the plain message would name only
    the hidden task, which the user never made. It quotes the encoder's error
    ``err``, which the caller chains.
    """
    from flowkit._utils.reprs import short_repr
    from flowkit.persistence._json import unstorable

    return unstorable(
        f"loop '{loop.name}': its until held, but the value it returned ({type(value).__name__} "
        f"{short_repr(value)}), the result of its hidden task '{node.name}',",
        err,
        hint="; return a bool or another JSON value",
    )


def loop_answered_by(node: Node) -> loop_flow.Flow | None:
    """The loop whose hidden ``until`` task ``node`` is, or None for any other atom.

    Errors about that task name the loop instead: the user made the loop and
    its predicate, never a task named ``<loop>^until``.
    """
    scope = node.scope
    if scope is not None and type(scope.flow) in LOOPS and node.atom is scope.flow.until_task:
        return scope.flow  # type: ignore[no-any-return]
    return None


def until_needs(
    loop: loop_flow.Flow, missing: Iterable[str], cause: BaseException | None = None
) -> exc.MissingDependencies:
    """The error of a loop whose ``until`` reads symbols nothing provides, naming the loop.

    TaskFlow's sentence (services match on it) with the loop and its predicate
    in the place of the hidden task's ``'"<loop>^until==1.0"'``; ``.atom`` is the
    loop's name and ``.who`` the loop.
    """
    error = exc.MissingDependencies(loop, missing, cause=cause)
    error.args = (
        f"loop '{loop.name}': its until predicate requires {error.missing} but no other entity "
        "produces said requirements",
    )
    return error
