"""The engine's decision core: which atom to run, revert or retry next.

It does no I/O and calls no atom. Like :mod:`graphlib`'s ``get_ready()/done()``
it keeps integer counters per node and answers in O(1) per event:

* ``waiting[n]`` counts predecessors that have not finished forward. A node whose
  count reaches zero is ready to execute (a virtual flow node just passes through).
* When something fails, a *revert set* is marked. Every revert set is closed under
  successors (a retry's scope is the retry and everything after it, and "revert
  all" is everything), so ``revert_wait[n]`` counts successors that are not yet
  *cleared* (reverted, or never ran). A node whose count reaches zero is reverted,
  and then clears its predecessors in turn: newest first, with no graph walk.

The driver reports outcomes (:meth:`executed`, :meth:`reverted`) and pulls work
(:meth:`next_item`). Everything that needs the outside world goes through the
small :class:`Hooks` protocol the runtime implements: recording a state change,
evaluating a link's decider, and asking a retry controller what to do.

States are not kept here. The scheduler reads and writes each atom's state and
intention on the record the runtime gives it for that node (the run's
:class:`~flowkit._atom_record.AtomRecord`, the one place they live), so there is
no copy to keep in step; flow nodes, and every node when a test drives the
scheduler alone, get a bare :class:`Mark`. A change the outside world must hear
of (persisted, notified) goes through :meth:`Hooks.record`, which the runtime
answers by making the transition on that same record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from flowkit import states as st
from flowkit._utils.records import Record
from flowkit.engines._compiler import FLOW_END, FLOW_START, RETRY, Compilation, Node
from flowkit.retry import Decision

try:  # the C heap functions without heapq.py around them: a quarter-millisecond of a first load
    from _heapq import heappop, heappush
except ImportError:  # an interpreter without the extension
    from heapq import heappop, heappush

__all__ = ["EXECUTE", "RETRY_AGAIN", "REVERT", "Hooks", "Mark", "Scheduler"]

# What the driver is asked to do with a node.
EXECUTE = 0
REVERT = 1
RETRY_AGAIN = 2

# How a failure is resolved (TaskFlow's strategies; UNDEFINED = no retry in scope).
_UNDEFINED = "UNDEFINED"

_DONE_STATES = frozenset({st.SUCCESS, st.IGNORE})
# PENDING, or RUNNING in doubt (a resumed run): may be handed out to execute.
_STARTABLE_STATES = frozenset({st.PENDING, st.RUNNING})
_CLEAR_STATES = frozenset({st.PENDING, st.REVERTED, st.IGNORE})
_TO_REVERT_STATES = frozenset({st.SUCCESS, st.FAILURE, st.REVERTING})
_REVERT_INTENTIONS = frozenset({st.REVERT, st.RETRY})


class Resolution(Record):
    """How the scheduler resolved one failure: the cause of the reverts it ordered.

    Attributes:
        failed: the atom whose ``execute`` failed.
        decision: ``RETRY``, ``REVERT`` or ``REVERT_ALL``; None when no retry
            controls the failed atom (the whole flow reverts).
        retry: the retry whose decision was applied (None with no decision).
    """

    failed: Node
    decision: Decision | None
    retry: Node | None


class Mark:
    """A node's state and intention where no atom record holds them (flow nodes, tests)."""

    __slots__ = ("intention", "state")

    def __init__(self) -> None:
        self.state = st.PENDING
        self.intention = st.EXECUTE


if TYPE_CHECKING:  # a Protocol costs at class creation: type checkers only need it
    from flowkit.deciders import Depth  # an enum class: imported where deciders run

    class Hooks(Protocol):
        """What the scheduler needs from the world around it."""

        def record(self, node: Node, state: str | None, intention: str | None) -> None:
            """Persist and announce a state and/or intention the scheduler decided."""

        def decide(self, node: Node) -> Depth | None:
            """Run the deciders on links into ``node``; a Depth means skip that much."""

        def ask_retry(self, retry: Node, failed: Node, origin: Node) -> Decision:
            """Record ``origin``'s failure in ``retry``'s history (under ``failed``'s name) and ask it."""

        def joined(self, spawner: Node) -> None:
            """A spawned sub-flow finished forward: give ``spawner`` its collected result."""


class Scheduler:
    """Counters and ready queues over a :class:`Compilation`."""

    def __init__(
        self,
        compilation: Compilation,
        hooks: Hooks,
        *,
        defer_reverts: bool = False,
        never_resolve: bool = False,
        records: Sequence[Any] | None = None,
    ) -> None:
        """
        Args:
            records: per node index, the object holding that node's ``state`` and
                ``intention`` (an atom record); None entries, or no sequence at
                all, get a fresh :class:`Mark`.
        """
        self._nodes = compilation.nodes
        self._order = compilation.order
        count = len(self._nodes)
        self._hooks = hooks
        self._defer_reverts = defer_reverts
        self._never_resolve = never_resolve
        #: Per node index: where its state and intention live.
        self.records: list[Any] = _marked(records, count)
        self._waiting = [0] * count
        self._fwd_done = [False] * count
        self._in_revert = [False] * count
        self._revert_wait = [0] * count
        self._cleared = [False] * count
        # Handed out by next_item() and not reported back yet: never hand out twice.
        self._busy = [False] * count
        self._finished_seq = [0] * count
        self._seq = 0
        # A node's place in the topological order breaks ties among ready nodes;
        # when that order is creation order, the index is the rank.
        if isinstance(self._order, range):
            self._rank: Sequence[int] = self._order
        else:
            ranks = [0] * count
            for rank, index in enumerate(self._order):
                ranks[index] = rank
            self._rank = ranks
        #: A spliced sub-flow's end node -> its spawner (see grow()).
        self._joins: dict[int, int] = {}
        self._exec_heap: list[tuple[int, int, int]] = []
        self._revert_heap: list[tuple[int, int, int]] = []
        #: Set when a failure could not be resolved: nothing new may start.
        self.halted = False
        #: Atoms whose failure was resolved by a strategy (for statistics).
        self.resolved_failures = 0
        #: The failure being resolved (set just before its reverts are marked).
        self.resolution: Resolution | None = None

    # -- start / resume -------------------------------------------------------

    def load(self, index: int, state: str, intention: str) -> None:
        """Seed one atom's stored state before :meth:`begin` (a test's resume)."""
        record = self.records[index]
        record.state = state
        record.intention = intention

    @property
    def state(self) -> list[str]:
        """Every node's state, by index (a snapshot)."""
        return [record.state for record in self.records]

    def begin(self) -> list[Node]:
        """Compute every counter from the loaded states and queue what is ready.

        Returns:
            Atoms found in FAILURE that still need their failure resolved (a run
            that stopped between a failure and its resolution); the caller
            passes each to :meth:`executed` again once it has their failure.
        """
        nodes, records = self._nodes, self.records
        in_revert, fwd_done, waiting_of = self._in_revert, self._fwd_done, self._waiting
        finished_seq = self._finished_seq
        unresolved: list[Node] = []
        retries: list[int] = []
        any_revert = False
        for index in self._order:
            node = nodes[index]
            record = records[index]
            # Predecessors not finished forward (a loop, not a generator: this runs per node).
            waiting = 0
            for p in node.pred:
                if not fwd_done[p]:
                    waiting += 1
            waiting_of[index] = waiting
            if node.atom is None:
                reverting = False
                for p in node.pred:
                    if in_revert[p]:
                        reverting = True
                        break
                if reverting:
                    in_revert[index] = any_revert = True
                    continue
                done = fwd_done[index] = waiting == 0
                if done and index in self._joins:
                    self._hooks.joined(nodes[self._joins[index]])
                # A flow whose link deciders may not have run yet: let next_item() run them.
                if (
                    done
                    and node.kind == FLOW_START
                    and node.deciders
                    and all(records[s].state == st.PENDING for s in node.succ)
                ):
                    fwd_done[index] = False
                    self._push_exec(index)
                continue
            state, intention = record.state, record.intention
            if node.kind == RETRY:
                retries.append(index)
            if intention in _REVERT_INTENTIONS:
                in_revert[index] = any_revert = True
            elif state == st.FAILURE and intention == st.EXECUTE:
                unresolved.append(node)
            if state in _DONE_STATES or state == st.FAILURE:
                self._seq += 1
                finished_seq[index] = self._seq
            if state in _DONE_STATES and intention in (st.EXECUTE, st.IGNORE):
                fwd_done[index] = True
            elif waiting == 0 and intention == st.EXECUTE:
                if state in _STARTABLE_STATES:
                    self._push_exec(index)
                elif state == st.RETRYING:
                    record.intention = st.RETRY
                    in_revert[index] = any_revert = True
        # A retry stopped while about to retry (RETRYING, or its RETRY decision
        # stored): its whole scope must be undone before it runs again, whatever
        # intentions its atoms were left with (TaskFlow resumes it the same way).
        for index in retries:
            if in_revert[index] and records[index].intention == st.RETRY:
                for succ in self._successors_closure(index)[1:]:
                    in_revert[succ] = True
        if not any_revert:
            return unresolved
        for index in reversed(self._order):
            if not in_revert[index]:
                continue
            self._revert_wait[index] = sum(1 for s in nodes[index].succ if not self._cleared[s])
            if self._revert_wait[index] == 0:
                self._settle(index)
        return unresolved

    # -- pulling work ---------------------------------------------------------

    def next_item(self) -> tuple[Node, int] | None:
        """Pop the next node to act on, or None when nothing is ready now.

        Reverts come before executions so undoing is never starved. Virtual flow
        nodes and decider-skipped atoms are handled here and never returned.
        """
        if self.halted:
            return None
        revert_heap, exec_heap = self._revert_heap, self._exec_heap
        while revert_heap:
            index = heappop(revert_heap)[2]
            if (
                self._in_revert[index]
                and self._revert_wait[index] == 0
                and not self._cleared[index]
                and not self._busy[index]
            ):
                action = self._revert_action(index)
                if action is not None:
                    self._busy[index] = True
                    return self._nodes[index], action
        if not exec_heap:
            return None
        nodes, waiting, in_revert, fwd_done, busy = (
            self._nodes,
            self._waiting,
            self._in_revert,
            self._fwd_done,
            self._busy,
        )
        pop = heappop
        while exec_heap:
            index = pop(exec_heap)[2]
            if waiting[index] or in_revert[index] or fwd_done[index] or busy[index]:
                continue
            node = nodes[index]
            if node.deciders:
                depth = self._hooks.decide(node)
                if depth is not None:
                    self._ignore(node, depth)
                    continue
            if node.atom is None:
                self._forward_done(index)
                continue
            record = self.records[index]
            state = record.state
            if state in _STARTABLE_STATES and record.intention == st.EXECUTE:
                busy[index] = True
                return node, EXECUTE
        return None

    def _revert_action(self, index: int) -> int | None:
        """What undoing ``index`` means in its record's state now: RETRY_AGAIN (a
        retry set to retry), REVERT, or None (nothing left to undo)."""
        record = self.records[index]
        current = record.state
        if record.intention == st.RETRY and current in (st.SUCCESS, st.RETRYING):
            return RETRY_AGAIN
        if current in _TO_REVERT_STATES or current == st.RUNNING:  # RUNNING: in doubt
            return REVERT
        return None

    def give_back(self, node: Node) -> None:
        """Take back ``node``, handed out by :meth:`next_item` but not started (its
        concurrency limit is full); it stays as it was until :meth:`offer`."""
        self._busy[node.index] = False

    def offer(self, node: Node, action: int) -> None:
        """Queue ``node`` again after :meth:`give_back`; :meth:`next_item` hands it
        out only if it is still ready for ``action``."""
        if action == EXECUTE:
            self._push_exec(node.index)
        else:
            self._push_revert(node.index)

    def has_ready(self) -> bool:
        """Tell whether anything could start now (used to tell SUSPENDED from done)."""
        return bool(self._exec_heap or self._revert_heap)

    def has_work(self) -> bool:
        """Tell whether :meth:`next_item` would still hand something out.

        :meth:`has_ready` also counts queue entries that went stale (an atom queued
        to run, then put in the revert set): a run suspended just as its revert
        finished has nothing left, and must end REVERTED, not SUSPENDED, as on
        TaskFlow. Stale entries are dropped here as :meth:`next_item` would drop
        them; an atom with deciders still counts (deciding is work: a suspended
        run leaves it for the next run).
        """
        revert_heap, exec_heap = self._revert_heap, self._exec_heap
        while revert_heap:
            index = revert_heap[0][2]
            if (
                self._in_revert[index]
                and not self._cleared[index]
                and (self._busy[index] or self._revert_wait[index] == 0)
                and self._revert_action(index) is not None
            ):
                return True
            heappop(revert_heap)
        while exec_heap:
            index = exec_heap[0][2]
            if not (
                self._waiting[index] or self._in_revert[index] or self._fwd_done[index] or self._busy[index]
            ):
                return True
            heappop(exec_heap)
        return False

    # -- reporting outcomes ---------------------------------------------------

    def executed(self, node: Node, ok: bool) -> None:
        """Account for a finished ``execute`` (the runtime already stored the outcome)."""
        index = node.index
        self._busy[index] = False
        seq = self._seq = self._seq + 1
        self._finished_seq[index] = seq
        record = self.records[index]
        if ok:
            record.state = st.SUCCESS
            if self._in_revert[index]:
                if self._revert_wait[index] == 0:
                    self._push_revert(index)
            else:
                self._forward_done(index)
            return
        record.state = st.FAILURE
        if self._never_resolve:
            self.halted = True
            return
        self.resolved_failures += 1
        self._resolve(node)
        if self._in_revert[index] and self._revert_wait[index] == 0:
            self._push_revert(index)

    def reverted(self, node: Node, ok: bool) -> None:
        """Account for a finished ``revert``: clear it, or halt when it failed."""
        index = node.index
        self._busy[index] = False
        if not ok:
            self.records[index].state = st.REVERT_FAILURE
            self.halted = True
            return
        self.records[index].state = st.REVERTED
        self._clear(index)

    def retry_restarted(self, retry: Node) -> list[Node]:
        """Reset a retry's scope to run again; returns the atoms whose state changed.

        Called by the driver when it acts on a ``RETRY_AGAIN`` item, after it moved
        the retry to RETRYING and before it executes the retry again.
        """
        changed: list[Node] = []
        scope = self._successors_closure(retry.index)
        for index in scope:
            self._in_revert[index] = False
            self._cleared[index] = False
            self._fwd_done[index] = False
            self._revert_wait[index] = 0
        for index in scope[1:]:
            node = self._nodes[index]
            record = self.records[index]
            if node.atom is not None and (record.state != st.PENDING or record.intention != st.EXECUTE):
                new_state = None if record.state == st.PENDING else st.PENDING
                # Told first, so the runtime's transition sees the state it leaves.
                self._hooks.record(node, new_state, st.EXECUTE)
                record.state = st.PENDING
                record.intention = st.EXECUTE
                if new_state is not None:
                    changed.append(node)
        for index in scope:
            self._waiting[index] = sum(1 for p in self._nodes[index].pred if not self._fwd_done[p])
        r = retry.index
        self._in_revert[r] = False
        self._cleared[r] = False
        # The retry itself goes RUNNING when the runtime starts executing it again.
        self._hooks.record(retry, None, st.EXECUTE)
        self.records[r].intention = st.EXECUTE
        return changed

    # -- a graph that changes while it runs (dynamic sub-flows, loops) ---------

    def grow(self, join_end: int, spawner: int, records: Sequence[Any] | None = None) -> None:
        """Take up nodes appended to the graph, a sub-flow spliced in after ``spawner``.

        The new nodes start PENDING; each waits for its predecessors (the
        sub-flow's start waits for the spawner). When the node ``join_end``
        finishes forward, :meth:`Hooks.joined` is called for the spawner.
        ``records`` holds every node's record by index, new ones included (see
        ``__init__``); without it the new nodes get marks.
        """
        old, new = len(self.records), len(self._nodes)
        extra = new - old
        if extra > 0:
            self.records.extend(_marked(None if records is None else records[old:new], extra))
            for counters in (self._waiting, self._revert_wait, self._finished_seq):
                counters.extend([0] * extra)
            for flags in (self._fwd_done, self._in_revert, self._cleared, self._busy):
                flags.extend([False] * extra)
            # New nodes rank after every older one among nodes ready together.
            if isinstance(self._rank, range):
                self._rank = range(new)
            else:
                self._rank.extend(range(old, new))  # type: ignore[attr-defined]
            fwd_done = self._fwd_done
            for index in range(old, new):
                self._waiting[index] = sum(1 for p in self._nodes[index].pred if not fwd_done[p])
        self.join(join_end, spawner)

    def join(self, join_end: int, spawner: int) -> None:
        """Call :meth:`Hooks.joined` for ``spawner`` when ``join_end`` finishes forward."""
        self._joins[join_end] = spawner

    def drop(self, indices: Iterable[int], join_end: int) -> None:
        """Retire nodes cut out of the graph (a sub-flow replaced by a new spawn)."""
        self._joins.pop(join_end, None)
        for index in indices:
            # Finished in both directions: never handed out, never waited for.
            self._fwd_done[index] = True
            self._cleared[index] = True
            self._in_revert[index] = False

    def reverting(self, index: int) -> bool:
        """Tell whether node ``index`` is marked to be reverted."""
        return self._in_revert[index]

    def body(self, start: int, end: int) -> list[int]:
        """A loop's body: the nodes from ``start`` up to (not including) ``end``, ``start`` first."""
        return self._between(start, end)

    def restart(self, body: list[int]) -> list[Node]:
        """Run the nodes of ``body`` (from :meth:`body`) again: a loop's next iteration.

        They go back to PENDING (through :meth:`Hooks.record`); the body's start
        is then queued by :meth:`wake`, at once or after the loop's delay.
        Returns the atoms put back to PENDING.
        """
        changed: list[Node] = []
        for index in body:
            self._fwd_done[index] = False
            self._cleared[index] = False
            self._in_revert[index] = False
            self._revert_wait[index] = 0
            self._busy[index] = False
            node = self._nodes[index]
            record = self.records[index]
            if node.atom is not None and (record.state != st.PENDING or record.intention != st.EXECUTE):
                self._hooks.record(node, st.PENDING, st.EXECUTE)  # before: see retry_restarted
                record.state = st.PENDING
                record.intention = st.EXECUTE
                changed.append(node)
        for index in body:
            self._waiting[index] = sum(1 for p in self._nodes[index].pred if not self._fwd_done[p])
        return changed

    def wake(self, index: int) -> None:
        """Queue ``index`` (a loop's start, after its delay) if it may still run."""
        if not self._in_revert[index] and not self._fwd_done[index] and self._waiting[index] == 0:
            self._push_exec(index)

    def _between(self, start: int, end: int) -> list[int]:
        """Nodes reachable from ``start`` without passing ``end`` (``start`` first)."""
        seen = {start, end}
        out = [start]
        stack = [start]
        nodes = self._nodes
        while stack:
            for succ in nodes[stack.pop()].succ:
                if succ not in seen:
                    seen.add(succ)
                    out.append(succ)
                    stack.append(succ)
        return out

    # -- internals --------------------------------------------------------------

    def _push_exec(self, index: int) -> None:
        heappush(self._exec_heap, (-self._nodes[index].priority, self._rank[index], index))

    def _push_revert(self, index: int) -> None:
        heappush(
            self._revert_heap,
            (-self._nodes[index].priority, -self._finished_seq[index], index),
        )

    def _forward_done(self, index: int) -> None:
        """Mark ``index`` finished forward and wake successors whose wait is over."""
        fwd_done = self._fwd_done
        if fwd_done[index]:
            return
        fwd_done[index] = True
        nodes, waiting, in_revert, records = self._nodes, self._waiting, self._in_revert, self.records
        cascade: list[int] | None = None
        for succ in nodes[index].succ:
            left = waiting[succ] - 1
            waiting[succ] = left
            if left or in_revert[succ]:
                continue
            node = nodes[succ]
            # Ignored atoms and plain flow barriers pass straight through.
            if (records[succ].state == st.IGNORE) if node.atom is not None else not node.deciders:
                if cascade is None:
                    cascade = []
                cascade.append(succ)
            else:
                heappush(self._exec_heap, (-node.priority, self._rank[succ], succ))
        if cascade is not None:
            joins = self._joins
            for succ in cascade:
                if joins and succ in joins:
                    self._hooks.joined(nodes[joins[succ]])
                self._forward_done(succ)

    def _ignore(self, node: Node, depth: Depth) -> None:
        """Skip ``node`` (a decider said no) and what ``depth`` covers."""
        for index in self._ignore_set(node, depth):
            record = self.records[index]
            if record.state == st.PENDING:
                self._hooks.record(self._nodes[index], st.IGNORE, st.IGNORE)  # before: see retry_restarted
                record.state = st.IGNORE
                record.intention = st.IGNORE
        if node.atom is None or self._waiting[node.index] == 0:
            self._forward_done(node.index)

    def _ignore_set(self, node: Node, depth: Depth) -> list[int]:
        from flowkit.deciders import Depth  # only flows with deciders get here

        nodes = self._nodes
        if depth == Depth.ALL:
            return [i for i in self._successors_closure(node.index) if nodes[i].atom is not None]
        targets = [node.index] if node.atom is not None else self._first_atoms(node.index)
        if depth == Depth.ATOM:
            return targets
        if depth == Depth.NEIGHBORS:
            found = list(targets)
            for t in targets:
                found.extend(s for s in nodes[t].succ if nodes[s].atom is not None and nodes[s].kind != RETRY)
            return found
        # Depth.FLOW: successors inside the same flow, not entering nested flows.
        scope = node.scope
        seen = {node.index}
        stack = [node.index]
        found = []
        while stack:
            current = stack.pop()
            if nodes[current].atom is not None:
                found.append(current)
            for succ in nodes[current].succ:
                if succ not in seen and nodes[succ].scope is scope and nodes[succ].kind != FLOW_END:
                    seen.add(succ)
                    stack.append(succ)
        return found

    def _first_atoms(self, index: int) -> list[int]:
        found: list[int] = []
        stack = list(self._nodes[index].succ)
        while stack:
            current = stack.pop()
            if self._nodes[current].atom is not None:
                found.append(current)
            elif self._nodes[current].kind == FLOW_START:
                stack.extend(self._nodes[current].succ)
        return found

    def scope_of(self, retry: Node) -> list[int]:
        """The nodes a retry controls (every node after it), for a RETRY's reset."""
        return self._successors_closure(retry.index)[1:]

    def _successors_closure(self, index: int) -> list[int]:
        """``index`` and every node after it (``index`` first)."""
        return self._between(index, index)

    def _resolve(self, failed: Node) -> None:
        """Apply the failure resolution strategy for ``failed`` (TaskFlow's rules)."""
        kind, retry = self._determine(failed, failed)
        # Read by the runtime's record() hook as _mark_revert marks each atom.
        self.resolution = Resolution(failed, None if kind == _UNDEFINED else Decision(kind), retry)
        if kind == Decision.RETRY and retry is not None:
            scope = self._successors_closure(retry.index)
            self._mark_revert(scope[1:], retry_node=retry)
        elif kind == Decision.REVERT and retry is not None:
            self._mark_revert(self._successors_closure(retry.index))
        else:
            # Every node, spliced ones included (the compiled order predates them).
            self._mark_revert(range(len(self._nodes)))

    def _determine(self, failed: Node, origin: Node) -> tuple[str, Node | None]:
        if failed.retry < 0:
            return _UNDEFINED, None
        retry = self._nodes[failed.retry]
        decision = self._hooks.ask_retry(retry, failed, origin)
        if decision == Decision.RETRY:
            return Decision.RETRY, retry
        if decision == Decision.REVERT:
            parent = self._determine(retry, origin)
            if self._defer_reverts:
                return parent
            if parent[0] != _UNDEFINED and parent[0] != Decision.REVERT:
                return parent
            return Decision.REVERT, retry
        if decision == Decision.REVERT_ALL:
            return Decision.REVERT_ALL, retry  # the retry that chose it (everything reverts)
        raise ValueError(f"retry '{retry.name}' returned unknown decision {decision!r}")

    def _mark_revert(self, indices: Iterable[int], retry_node: Node | None = None) -> None:
        """Put ``indices`` (closed under successors) into the revert set."""
        added: list[int] = []
        nodes = self._nodes
        for index in indices:
            if self._in_revert[index]:
                # A retry already set to retry (a sibling's earlier RETRY) that a
                # wider decision now covers is reverted, not retried: REVERT_ALL
                # (or an enclosing REVERT/RETRY) undoes its scope for good.
                record = self.records[index]
                if record.intention == st.RETRY and not self._busy[index] and not self._cleared[index]:
                    record.intention = st.REVERT
                    self._hooks.record(nodes[index], None, st.REVERT)
                continue
            self._in_revert[index] = True
            added.append(index)
            node = nodes[index]
            if node.atom is not None:
                self.records[index].intention = st.REVERT
                self._hooks.record(node, None, st.REVERT)
        if retry_node is not None:
            r = retry_node.index
            if self.records[r].intention != st.REVERT:
                self._in_revert[r] = True
                self.records[r].intention = st.RETRY
                self._hooks.record(retry_node, None, st.RETRY)
                added.append(r)
        for index in added:
            self._revert_wait[index] = sum(1 for s in nodes[index].succ if not self._cleared[s])
        for index in sorted(added, key=self._rank.__getitem__, reverse=True):
            if self._revert_wait[index] == 0 and not self._cleared[index]:
                self._settle(index)

    def _settle(self, index: int) -> None:
        """Act on a revert-set node whose successors are all cleared."""
        current = self.records[index].state
        if self._nodes[index].atom is None or current in _CLEAR_STATES:
            self._clear(index)
        elif current in _TO_REVERT_STATES or current == st.RETRYING or self._in_doubt(index):
            self._push_revert(index)
        # RUNNING with a call out: executed() queues it once it finishes.

    def _clear(self, index: int) -> None:
        stack = [index]
        nodes = self._nodes
        while stack:
            current = stack.pop()
            if self._cleared[current]:
                continue
            self._cleared[current] = True
            for pred in nodes[current].pred:
                if not self._in_revert[pred] or self._cleared[pred]:
                    continue
                self._revert_wait[pred] -= 1
                if self._revert_wait[pred] == 0:
                    precord = self.records[pred]
                    pstate = precord.state
                    clear = pstate in _CLEAR_STATES and precord.intention != st.RETRY
                    if nodes[pred].atom is None or clear:
                        stack.append(pred)
                    elif (
                        pstate in _TO_REVERT_STATES
                        or pstate == st.RETRYING
                        or precord.intention == st.RETRY
                        or self._in_doubt(pred)
                    ):
                        self._push_revert(pred)

    def _in_doubt(self, index: int) -> bool:
        """RUNNING with no call out: a resumed run's in-doubt atom (it may have run)."""
        return self.records[index].state == st.RUNNING and not self._busy[index]


def _marked(records: Sequence[Any] | None, count: int) -> list[Any]:
    """``records`` (or nothing) as ``count`` state holders, a :class:`Mark` where one is missing."""
    if records is None:
        return [Mark() for _ in range(count)]
    return [Mark() if record is None else record for record in records]
