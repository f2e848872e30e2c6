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

Only what a successful run uses is here. The rest of the scheduler's work is in
modules imported on first use (a successful run never needs them, and each is
bytecode a fresh process would otherwise load: the first-load cost,
``doc/benchmarks.rst``): :mod:`~flowkit.engines._resolving` (resolving a failure
into a revert set, a retry's scope), :mod:`~flowkit.engines._skipping` (what a decider
skips), :mod:`~flowkit.engines._growing` (sub-flows spliced in, loop iterations)
and :mod:`~flowkit.engines._suspending` (what a suspended run left).

The ready queue is a heap only once it needs to be: see :meth:`Scheduler._reorder`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from flowkit import states as st
from flowkit.engines._compiler import FLOW_START, RETRY, Compilation, Node

if TYPE_CHECKING:
    from flowkit.deciders import Depth  # an enum class: imported where deciders run
    from flowkit.engines._protocols import Hooks
    from flowkit.engines._resolving import Resolution as Resolution  # noqa: PLC0414  # named sch.Resolution by the runtime

__all__ = ["EXECUTE", "RETRY_AGAIN", "REVERT", "Mark", "Scheduler"]

# What the driver is asked to do with a node.
EXECUTE = 0
REVERT = 1
RETRY_AGAIN = 2

_DONE_STATES = frozenset({st.SUCCESS, st.IGNORE})
# PENDING, or RUNNING in doubt (a resumed run): may be handed out to execute.
_STARTABLE_STATES = frozenset({st.PENDING, st.RUNNING})
_CLEAR_STATES = frozenset({st.PENDING, st.REVERTED, st.IGNORE})
_TO_REVERT_STATES = frozenset({st.SUCCESS, st.FAILURE, st.REVERTING})
_REVERT_INTENTIONS = frozenset({st.REVERT, st.RETRY})

#: A ready queue's entry: ``(-priority, rank, index)``, the smallest handed out first.
Entry = tuple[int, int, int]


class Mark:
    """A node's state and intention where no atom record holds them (flow nodes, tests)."""

    __slots__ = ("intention", "state")

    def __init__(self) -> None:
        self.state = st.PENDING
        self.intention = st.EXECUTE


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
        #: Nodes ready to execute, as entries: a deque in order, a heap once one
        #: arrives out of order or the first revert is queued (see _reorder()).
        self._ready: deque[Entry] | list[Entry] = deque()
        #: Nodes ready to revert: a heap (reverts are rare: its functions are loaded then).
        self._revert_heap: list[Entry] = []
        #: ``_heapq``'s push and pop once the queues are heaps (None before: not loaded).
        self._heappush: Callable[[list[Entry], Entry], None] | None = None
        self._heappop: Callable[[list[Entry]], Entry] | None = None
        #: While :meth:`_pass_through` runs: the nodes it is still to take.
        self._cascading: list[int] | None = None
        #: ``_skipping.ignore`` once a decider has said no (None before: not loaded).
        #: Kept, as a flow may skip an atom per link and an import at each costs.
        self._skip: Callable[[Scheduler, Node, Depth], None] | None = None
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
        # Ready nodes with link deciders, asked once every counter is set (see _admit()).
        undecided: list[Node] = []
        # The atoms each undecided nested flow starts with, found as begin() checks one is
        # still PENDING and handed to _admit() rather than found a second time.
        starts: dict[int, list[int]] = {}
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
                # A flow whose link deciders are still to be asked for an atom it starts with: below.
                if done and node.kind == FLOW_START and node.deciders:
                    first = _pending_start(self, node)
                    if first is not None:
                        fwd_done[index] = False
                        undecided.append(node)
                        starts[index] = first
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
                    if node.deciders:
                        undecided.append(node)
                    else:
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
        # As TaskFlow's resume, the deciders of what is ready are asked before anything starts.
        for node in undecided:
            index = node.index
            if not (in_revert[index] or fwd_done[index] or records[index].state == st.IGNORE):
                self._admit(node, starts.get(index))
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
        nodes are handled here and never returned.
        """
        if self.halted:
            return None
        revert_heap = self._revert_heap
        if revert_heap:
            heappop = self._heappop
            assert heappop is not None  # loaded by the first revert queued
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
        if not self._ready:
            return None
        nodes, waiting, in_revert, fwd_done, busy = (
            self._nodes,
            self._waiting,
            self._in_revert,
            self._fwd_done,
            self._busy,
        )
        ready, heappop = self._ready, self._heappop
        while ready:
            # A deque in order until the heap functions are loaded, a heap list after (_reorder()).
            index = (ready.popleft() if heappop is None else heappop(ready))[2]  # type: ignore[union-attr,arg-type]
            if waiting[index] or in_revert[index] or fwd_done[index] or busy[index]:
                continue
            node = nodes[index]
            # (A node's link deciders were asked before it was queued: see _admit().)
            if node.atom is None:
                self._forward_done(index)
                ready, heappop = self._ready, self._heappop  # it may have become a heap
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
        return bool(self._ready or self._revert_heap)

    def has_work(self) -> bool:
        """Tell whether :meth:`next_item` would still hand something out.

        :meth:`has_ready` also counts queue entries that went stale (an atom queued
        to run, then put in the revert set): a run suspended just as its revert
        finished has nothing left, and must end REVERTED, not SUSPENDED, as on
        TaskFlow. Stale entries are dropped here as :meth:`next_item` would drop
        them. An atom's link deciders were asked before it was queued (see
        :meth:`_admit`): one they skipped is IGNORE, and not counted.
        """
        from flowkit.engines import _suspending  # loaded when a run is suspended (first-load cost)

        return _suspending.has_work(self)

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
        from flowkit.engines import _resolving  # loaded by the first failure (first-load cost)

        return _resolving.retry_restarted(self, retry)

    # -- a graph that changes while it runs (dynamic sub-flows, loops) ---------

    def grow(self, join_end: int, spawner: int, records: Sequence[Any] | None = None) -> None:
        """Take up nodes appended to the graph, a sub-flow spliced in after ``spawner``.

        The new nodes start PENDING; each waits for its predecessors (the
        sub-flow's start waits for the spawner). When the node ``join_end``
        finishes forward, :meth:`Hooks.joined` is called for the spawner.
        ``records`` holds every node's record by index, new ones included (see
        ``__init__``); without it the new nodes get marks.
        """
        from flowkit.engines import _growing  # loaded by the first splice (first-load cost)

        _growing.grow(self, join_end, spawner, records)

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
        from flowkit.engines import _growing  # loaded by the first loop iteration (first-load cost)

        return _growing.restart(self, body)

    def wake(self, index: int) -> None:
        """Queue ``index`` (a loop's start, after its delay) if it may still run."""
        if not self._in_revert[index] and not self._fwd_done[index] and self._waiting[index] == 0:
            node = self._nodes[index]
            if node.deciders:
                self._admit(node)
            else:
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
        """Queue ``index`` to execute (:meth:`_forward_done` has this inlined: once per atom)."""
        entry = (-self._nodes[index].priority, self._rank[index], index)
        ready, heappush = self._ready, self._heappush
        if heappush is not None:
            heappush(ready, entry)  # type: ignore[arg-type]  # a list once heappush is loaded
        elif not ready or ready[-1] <= entry:
            ready.append(entry)
        else:
            self._reorder(entry)

    def _reorder(self, entry: Entry) -> list[Entry]:
        """Turn the ready deque into a heap, as ``entry`` arrives out of order; return the heap.

        Nodes mostly become ready in the order they are handed out (a linear
        flow, a fan-out, equal priorities): while each new entry is at least the
        last one queued, a deque kept in order hands out the smallest from its
        left end. Only the first entry that would go before one already queued
        (a priority, a node ranked before one already ready) needs a heap, and
        only then is ``_heapq`` loaded: an extension a fresh process dlopens in
        about 0.2 ms (the first-load cost, ``doc/benchmarks.rst``). A deque in
        order is a heap already (each entry is at least its parent), so nothing
        moves; either way the smallest entry goes first, the order the scheduler
        has always handed nodes out in.
        """
        heap = self._use_heaps()
        assert self._heappush is not None
        self._heappush(heap, entry)
        return heap

    def _use_heaps(self) -> list[Entry]:
        """Load ``_heapq``'s functions and make the ready queue a heap; return it.

        Called by :meth:`_reorder`, and by the first revert queued (the revert
        queue is always a heap), so that :attr:`_heappush` is set exactly when
        both queues are heaps.
        """
        if self._heappush is None:
            try:  # the C functions without heapq.py around them
                from _heapq import heappop, heappush
            except ImportError:  # pragma: no cover - an interpreter without the extension
                from heapq import heappop, heappush
            self._ready = list(self._ready)  # in order: a heap already
            self._heappush, self._heappop = heappush, heappop
        return self._ready  # type: ignore[return-value]  # a list once the heap functions are loaded

    def _push_revert(self, index: int) -> None:
        """Queue ``index`` to revert: highest priority first, then the latest to finish first."""
        heappush = self._heappush
        if heappush is None:  # the first revert queued
            self._use_heaps()
            heappush = self._heappush
            assert heappush is not None
        heappush(self._revert_heap, (-self._nodes[index].priority, -self._finished_seq[index], index))

    def _forward_done(self, index: int) -> None:
        """Mark ``index`` finished forward and wake successors whose wait is over."""
        fwd_done = self._fwd_done
        if fwd_done[index]:
            return
        fwd_done[index] = True
        nodes, waiting, in_revert, records = self._nodes, self._waiting, self._in_revert, self.records
        ready, heappush = self._ready, self._heappush
        # Successors to pass through or decide on once this loop is done (either may
        # queue more, turning the ready deque into a heap under this loop's feet).
        cascade: list[int] | None = None
        for succ in nodes[index].succ:
            left = waiting[succ] - 1
            waiting[succ] = left
            if left or in_revert[succ]:
                continue
            node = nodes[succ]
            # Ignored atoms, plain flow barriers and nodes whose link deciders must be
            # asked now (see _admit()) are not simply queued.
            if node.deciders or (node.atom is None or records[succ].state == st.IGNORE):
                if cascade is None:
                    cascade = []
                cascade.append(succ)
                continue
            # _push_exec(succ), inlined.
            entry = (-node.priority, self._rank[succ], succ)
            if heappush is not None:
                heappush(ready, entry)  # type: ignore[arg-type]  # a list once heappush is loaded
            elif not ready or ready[-1] <= entry:
                ready.append(entry)
            else:
                ready = self._reorder(entry)
                heappush = self._heappush
        if cascade is not None:
            if self._cascading is not None:  # inside _pass_through(): it takes these next
                self._cascading.extend(reversed(cascade))
            else:
                self._pass_through(cascade)

    def _pass_through(self, cascade: list[int]) -> None:
        """Pass through the nodes :meth:`_forward_done` found ready but did not queue.

        A skipped atom or a flow barrier is finished forward at once, and a node
        with link deciders is admitted (:meth:`_admit`), which may skip more. A
        stack, not recursion: a skip can pass through a chain of any length (one
        "no" at depth ALL skips all after it). Taken last in, first out, in the
        order a recursion would take them.
        """
        nodes, records, joins = self._nodes, self.records, self._joins
        cascade.reverse()
        stack = self._cascading = cascade
        try:
            while stack:
                succ = stack.pop()
                node = nodes[succ]
                if node.deciders and records[succ].state != st.IGNORE:
                    self._admit(node)
                    continue
                if joins and succ in joins:
                    self._hooks.joined(nodes[joins[succ]])
                self._forward_done(succ)
        finally:
            self._cascading = None

    def _admit(self, node: Node, first: list[int] | None = None) -> None:
        """Ask the link deciders of ``node``, ready now: skip it (IGNORE), or queue it to run.

        As TaskFlow does, a node's deciders are asked as soon as its last
        predecessor finishes (while that outcome is taken in), not when the node
        would next be started: a listener hears the IGNOREs right after the
        source's SUCCESS, and a run suspended then leaves them IGNORE in storage
        (and ends SUCCESS when only skipped atoms are left). A halted run takes
        in its last outcomes without deciding anything, as TaskFlow's does.

        ``first``: for a nested flow's start, the atoms it starts with when the
        caller has found them already (:meth:`begin`).
        """
        if not self.halted:
            if node.atom is None:
                # Only a link into a nested flow needs it (first-load cost).
                from flowkit.engines._skipping import admit_flow

                admit_flow(self, node, first)
                return
            depth = self._hooks.decide(node)
            if depth is not None:
                self._ignore(node, depth)
                return
        self._push_exec(node.index)  # never handed out while halted (as now if the decider raised)

    def _ignore(self, node: Node, depth: Depth) -> None:
        """Skip ``node`` (a decider said no) and what ``depth`` covers."""
        skip = self._skip
        if skip is None:
            from flowkit.engines._skipping import ignore  # where a decider says no (first-load cost)

            skip = self._skip = ignore
        skip(self, node, depth)

    def scope_of(self, retry: Node) -> list[int]:
        """The nodes a retry controls (every node after it), for a RETRY's reset."""
        return self._successors_closure(retry.index)[1:]

    def _successors_closure(self, index: int) -> list[int]:
        """``index`` and every node after it (``index`` first)."""
        return self._between(index, index)

    def _resolve(self, failed: Node) -> None:
        """Apply the failure resolution strategy for ``failed`` (TaskFlow's rules)."""
        from flowkit.engines import _resolving  # loaded by the first failure (first-load cost)

        _resolving.resolve(self, failed)

    def _settle(self, index: int) -> None:
        """Act on a revert-set node whose successors are all cleared."""
        from flowkit.engines import _resolving  # loaded by the first failure (first-load cost)

        _resolving.settle(self, index)

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


def _pending_start(scheduler: Scheduler, flow: Node) -> list[int] | None:
    """The atoms a nested flow with link deciders starts with, if one is still PENDING (a resume)."""
    from flowkit.engines._skipping import first_atoms  # a link into a nested flow (first-load cost)

    records = scheduler.records
    first = first_atoms(scheduler._nodes, flow.index)
    return first if any(records[index].state == st.PENDING for index in first) else None


def _marked(records: Sequence[Any] | None, count: int) -> list[Any]:
    """``records`` (or nothing) as ``count`` state holders, a :class:`Mark` where one is missing."""
    if records is None:
        return [Mark() for _ in range(count)]
    return [Mark() if record is None else record for record in records]
