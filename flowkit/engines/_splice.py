"""Splicing spawned sub-flows into a running graph, and rebuilding them on resume.

When a task returns :func:`flowkit.dynamic.subflow`, :class:`Spawns` compiles
the sub-flow on its own (the ordinary compiler, so every structural rule and
error is the same as for a flow loaded up front), then renumbers its nodes
after the running graph's and rewires three places: the spawner now leads to
the sub-flow's start, the sub-flow's end leads to what the spawner led to, and
those nodes wait for the end instead of the spawner. The scheduler is told to
grow its counters (:meth:`Scheduler.grow`); nothing else changes, so a
static flow pays nothing for this module. Reverting needs no special case
either: the spawner's successors are reverted first, then the sub-flow's atoms
newest first, then the spawner.

Arguments a spawned atom needs that nothing inside the sub-flow provides are
looked up as the spawner would see them (and, for a spawner that was itself
spawned, as its own spawner would), then in the store and the atom's
``inject``. One that is found nowhere fails the spawner with
:class:`~flowkit.exceptions.MissingDependencies` before anything is spliced.

Durability: what was spawned is stored in the spawner's atom detail
(``meta["spawned"]``) in the same write as its SUCCESS, with the spawned
atoms' records. :meth:`Spawns.restore` splices the same sub-flows again when a
run is resumed, in spawning order (a spawned spawner after its own spawner).

Cost: compiling and splicing are linear in the sub-flow's size; a join (the
sub-flow finishing) collects the children's results in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from flowkit import _flow_codec, dynamic
from flowkit import exceptions as exc
from flowkit import states as st
from flowkit._atom_record import holds_result
from flowkit._utils.gc_pause import gc_paused
from flowkit.engines._compiler import (
    RETRY,
    TASK,
    ArgPlan,
    Compilation,
    EdgeDecider,
    FlowScope,
    Node,
    compile_flow,
)
from flowkit.engines._loops import loop_answered_by
from flowkit.engines._task_options import options_of

if TYPE_CHECKING:
    from flowkit.engines._missing import Gap
    from flowkit.engines._runtime import Runtime

__all__ = ["META_KEY", "SPAWNED_BY_KEY", "SpawnedEdges", "Spawns", "Splice"]

#: The spawner's atom-detail metadata key that records what it spawned.
META_KEY = "spawned"
#: A spawned atom's atom-detail metadata key naming its spawner (durable runs).
SPAWNED_BY_KEY = "spawned_by"

#: A spawned atom's execute and revert argument plans.
_Plans = tuple[tuple[ArgPlan, ...], tuple[ArgPlan, ...]]

#: States of a spawner whose recorded spawn stands (it ran; the sub-flow was spliced).
_SPAWNED_STATES = frozenset({st.SUCCESS, st.REVERTING, st.REVERTED, st.REVERT_FAILURE})


class _Grown:
    """The running graph's nodes and a sub-flow's (renumbered) after them, by index, not yet joined."""

    __slots__ = ("_added", "_before", "_offset")

    def __init__(self, before: list[Node], added: list[Node], offset: int) -> None:
        self._before = before
        self._added = added
        self._offset = offset

    def __getitem__(self, index: int) -> Node:
        return self._added[index - self._offset] if index >= self._offset else self._before[index]


class SpawnedEdges(NamedTuple):
    """What the type check reads of a sub-flow about to be spliced in (as of a compilation).

    ``atoms`` are the sub-flow's, whose argument plans name their providers by
    index in ``nodes``: inside the sub-flow, or in the running flow.
    """

    nodes: _Grown
    atoms: list[Node]


@dataclass(slots=True)
class Splice:
    """One spliced sub-flow: where it sits and how the spawner collects its results."""

    spawner: int
    start: int
    end: int
    #: Every node index the sub-flow added (atoms and virtual flow nodes).
    nodes: range
    #: Task nodes, in the order the sub-flow's tasks were added: the collected list
    #: (a loop's hidden ``until`` task left out).
    tasks: list[int]
    #: What the spawner led to before the splice (restored if the splice is undone).
    old_succ: tuple[int, ...]
    depth: int
    collect: dynamic.Collect
    root: FlowScope


class Spawns:
    """The spliced sub-flows of one engine run, and the bookkeeping they need."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.splices: dict[int, Splice] = {}
        #: Sub-flow root scope -> its splice (to resolve arguments outward).
        self._by_root: dict[int, Splice] = {}
        self.spawned_atoms = 0
        #: Names of atoms in the graph (built on the first spawn).
        self._live: set[str] | None = None
        #: The compiled topological order no longer covers the graph.
        self.order_stale = False

    # -- spawning ----------------------------------------------------------------

    def spawn(self, node: Node, sub: dynamic.Subflow) -> None:
        """Splice ``sub`` in after ``node`` (which just returned it), or raise why not.

        Raises:
            SpawnLimitExceeded: too deep or too many spawned atoms.
            InvalidFlowItem, Duplicate: the sub-flow does not compile, or an atom
                name is already in the running flow.
            MissingDependencies: a spawned atom needs a value nothing provides.
            InvalidFormat: the spawn cannot be recorded for a resume.
        """
        runtime = self._runtime
        depth = self._depth_of(node) + 1
        if depth > dynamic.MAX_DEPTH:
            raise exc.SpawnLimitExceeded(
                f"atom '{node.name}' spawned a sub-flow {depth} levels deep; at most "
                f"{dynamic.MAX_DEPTH} (flowkit.dynamic.MAX_DEPTH) are allowed",
                atom=node.name,
                limit=dynamic.MAX_DEPTH,
            )
        meta: dict[str, Any] = {"depth": depth, "collect": sub.collect.value, "factory": sub.factory}
        if sub.factory is not None:
            meta["args"], meta["kwargs"] = sub.args, sub.kwargs
        if runtime.state.durable:
            if sub.factory is None:
                meta["flow"] = _flow_codec.describe(sub.flow)
            runtime.check_storable(node, "the record of the sub-flow", meta)
        old = self.splices.get(node.index)
        dropped = self._detach(old) if old is not None else []
        # As when a flow is loaded: thousands of nodes and records are made at
        # once, and none of them is garbage.
        with gc_paused():
            splice = self._splice(node, sub.flow, depth, sub.collect, fresh=True)
        record = runtime.records[node.index]
        assert record is not None
        record.meta[META_KEY] = meta
        runtime.scheduler.grow(splice.end, node.index, runtime.records)
        if dropped:
            self._retire(dropped)

    def _retire(self, dropped: list[Node]) -> None:
        """Mark IGNORE the atoms of a replaced sub-flow that the new one did not spawn again.

        A retry (or a loop) reset them to PENDING before the spawner ran again;
        left so, a flow that ended SUCCESS showed them PENDING for ever in its
        flow detail, its report and ``flowkit flows show``, with the result of
        the attempt that spawned them still stored. IGNORE is what an atom the
        flow went past without running is (as a decider's).
        """
        live = self._live_names()
        runtime = self._runtime
        for node in dropped:
            if node.name in live:
                continue  # spawned again: the new splice shares (and reset) its record
            record = runtime.records[node.index]
            if record is None or record.state == st.IGNORE:
                continue
            record.result = record.failure = None
            runtime.record(node, st.IGNORE, st.IGNORE)

    def restore(self) -> None:
        """Splice again what stored spawners spawned (resuming a run), in spawning order."""
        runtime = self._runtime
        records = runtime.state.records
        atoms = runtime.compilation.atoms
        position = 0
        while position < len(atoms):
            node = atoms[position]
            position += 1
            if node.index in self.splices:
                continue
            record = records.get(node.name)
            meta = record._meta if record is not None else None
            spawned = meta.get(META_KEY) if meta else None
            if not isinstance(spawned, dict) or record is None or record.state not in _SPAWNED_STATES:
                continue
            flow = _rebuild(node.name, spawned)
            collect = dynamic.Collect(spawned.get("collect", dynamic.Collect.LIST))
            with gc_paused():
                self._splice(node, flow, int(spawned.get("depth", 1)), collect, fresh=False)

    def _splice(
        self, spawner: Node, flow: Any, depth: int, collect: dynamic.Collect, *, fresh: bool
    ) -> Splice:
        runtime = self._runtime
        compilation = runtime.compilation
        sub = compile_flow(flow)
        if self.spawned_atoms + len(sub.atoms) > dynamic.MAX_SPAWNED:
            raise exc.SpawnLimitExceeded(
                f"atom '{spawner.name}' spawned {len(sub.atoms)} atoms, past the "
                f"{dynamic.MAX_SPAWNED} one run may spawn (flowkit.dynamic.MAX_SPAWNED)",
                atom=spawner.name,
                limit=dynamic.MAX_SPAWNED,
            )
        live = self._live_names()
        clash = sorted(n.name for n in sub.atoms if n.name in live)
        if clash:
            raise exc.Duplicate(
                f"atom '{spawner.name}' spawned atoms named like atoms already in the flow: {clash}",
                names=clash,
            )
        offset = len(compilation.nodes)
        plans = self._plan(spawner, sub, offset)
        for atom_node in sub.atoms:  # a bad timeout or concurrency key fails the spawner
            if atom_node.kind != RETRY:
                # A retry's options are never refused, only warned of: that happens
                # once, as adopt_options() reads them below (here too it said it twice).
                options_of(atom_node, runtime.default_timeout, runtime.limits)
        local_start, local_end = sub.root.start, sub.root.end
        _renumber(sub, offset, spawner.retry, plans)  # the sub-flow's own nodes only
        if fresh and runtime.check_spawned is not None:
            # Every edge into a spawned atom, from its sub-flow or the running flow, as
            # the compile checked the flow's: before any spawned task runs. A resume
            # splices again what a run accepted, and does not judge it anew.
            runtime.check_spawned(SpawnedEdges(_Grown(compilation.nodes, sub.nodes, offset), sub.atoms))
        # Checks done: from here on the running graph changes.
        nodes = compilation.nodes
        start, end = local_start + offset, local_end + offset
        old_succ = tuple(spawner.succ)
        spawner.succ = (start,)
        sub.nodes[local_start].pred = (spawner.index,)
        sub.nodes[local_end].succ = old_succ
        for target in old_succ:
            nodes[target].pred = tuple(end if p == spawner.index else p for p in nodes[target].pred)
        nodes.extend(sub.nodes)
        compilation.atoms.extend(sub.atoms)
        runtime.records.extend([None] * len(sub.nodes))
        splice = Splice(
            spawner=spawner.index,
            start=start,
            end=end,
            nodes=range(offset, offset + len(sub.nodes)),
            # The user added a loop's body, not its check: the collected list holds the
            # body's results only (the check's value is no task's result).
            tasks=[n.index for n in sub.atoms if n.kind == TASK and loop_answered_by(n) is None],
            old_succ=old_succ,
            depth=depth,
            collect=collect,
            root=sub.root,
        )
        self.splices[spawner.index] = splice
        self._by_root[id(sub.root)] = splice
        self.spawned_atoms += len(sub.atoms)
        self.order_stale = True
        runtime.scan_loops(sub.root)
        runtime.adopt_options(sub.atoms)  # timeouts and concurrency keys
        runtime.adopt_guards(sub.atoms)  # result validation, model arguments
        state = runtime.state
        for atom_node in sub.atoms:
            atom = atom_node.atom
            assert atom is not None
            live.add(atom_node.name)
            record = state.ensure(atom, atom_node.kind == RETRY)
            if fresh and (record.state != st.PENDING or record.intention != st.EXECUTE):
                # A name spawned before (a loop's or a retry's earlier round): start over.
                record.state, record.intention = st.PENDING, st.EXECUTE
                record.result = record.failure = None
                if state.durable:
                    state.changed(record)
            runtime.records[atom_node.index] = record
            if fresh and state.durable:
                record.meta[SPAWNED_BY_KEY] = spawner.name
            if atom.inject:
                runtime.storage.inject_atom_args(atom_node.name, atom.inject, transient=True)
            if atom_node.kind != RETRY:
                atom._progress_sink = runtime._on_progress  # type: ignore[attr-defined]
        return splice

    def _plan(self, spawner: Node, sub: Compilation, offset: int) -> dict[int, _Plans]:
        """New argument plans for the sub-flow's atoms, by local index; raise on a gap."""
        out: dict[int, _Plans] = {}
        outward: dict[str, int] = {}
        found: list[Gap] = []
        for node in sub.atoms:
            atom = node.atom
            assert atom is not None
            injected = atom.inject or {}
            execute: set[str] = set()
            exec_args = self._remap(spawner, node.exec_args, offset, outward, injected, execute)
            if node.revert_args is node.exec_args:
                revert_args, revert = exec_args, execute
            else:
                revert = set()
                revert_args = self._remap(spawner, node.revert_args, offset, outward, injected, revert)
            if execute or revert:
                from flowkit.engines._missing import Gap  # only on this failure

                found.append(Gap(node, execute, revert))
            out[node.index] = (exec_args, revert_args)
        if found:
            from flowkit.engines._missing import missing_error

            # Said as the same flow loaded up front says it (one helper for both).
            raise missing_error(sub.root.flow, found)
        return out

    def _remap(
        self,
        spawner: Node,
        plans: tuple[ArgPlan, ...],
        offset: int,
        outward: dict[str, int],
        injected: dict[str, Any],
        missing: set[str],
    ) -> tuple[ArgPlan, ...]:
        """Shift providers inside the sub-flow; find the others outside it (noting gaps)."""
        store = self._runtime.state.store
        nodes = self._runtime.compilation.nodes
        fixed = []
        for plan in plans:
            if plan.provider >= 0:
                fixed.append(plan._replace(provider=plan.provider + offset))
                continue
            provider = outward.get(plan.symbol)
            if provider is None:
                provider = outward[plan.symbol] = self._resolve_outward(spawner, plan.symbol)
            if provider >= 0:
                found = nodes[provider]
                key = None if found.keyless else found.atom.save_as[plan.symbol]  # type: ignore[union-attr]
                fixed.append(plan._replace(provider=provider, key=key))
                continue
            if not plan.optional and plan.symbol not in store and plan.symbol not in injected:
                missing.add(plan.symbol)
            fixed.append(plan)
        return tuple(fixed)

    def _resolve_outward(self, spawner: Node, symbol: str) -> int:
        """The provider of ``symbol`` the spawner sees (through its own spawners), or -1."""
        compilation = self._runtime.compilation
        current: Node | None = spawner
        while current is not None:
            found = compilation.resolve(current, symbol, _never)
            if found >= 0:
                return found
            splice = self._by_root.get(id(_root_of(current.scope)))
            current = compilation.nodes[splice.spawner] if splice is not None else None
        return -1

    def _depth_of(self, node: Node) -> int:
        """How deep ``node`` was spawned (0: in the flow loaded up front)."""
        splice = self._by_root.get(id(_root_of(node.scope)))
        return 0 if splice is None else splice.depth

    def spawner_of(self, root: FlowScope) -> int:
        """The spawner of the sub-flow whose root scope is ``root``, or -1."""
        splice = self._by_root.get(id(root))
        return -1 if splice is None else splice.spawner

    def _live_names(self) -> set[str]:
        if self._live is None:
            self._live = {n.name for n in self._runtime.compilation.atoms}
        return self._live

    # -- undoing a splice (the spawner runs again) ---------------------------------

    def _detach(self, splice: Splice) -> list[Node]:
        """Cut an earlier spawn out of the graph, with whatever it spawned in turn; return its atoms."""
        compilation = self._runtime.compilation
        nodes = compilation.nodes
        spawner = nodes[splice.spawner]
        spawner.succ = splice.old_succ
        for target in splice.old_succ:
            nodes[target].pred = tuple(splice.spawner if p == splice.end else p for p in nodes[target].pred)
        dead: set[int] = set()
        for inner in list(self._nested(splice)):
            dead.update(inner.nodes)
            del self.splices[inner.spawner]
            del self._by_root[id(inner.root)]
            self._runtime.scheduler.drop(inner.nodes, inner.end)
        live = self._live_names()
        kept = []
        dropped = []
        for node in compilation.atoms:
            if node.index in dead:
                live.discard(node.name)
                self.spawned_atoms -= 1
                dropped.append(node)
            else:
                kept.append(node)
        compilation.atoms[:] = kept
        for index in dead:
            nodes[index].succ = ()
            nodes[index].pred = ()
        self.order_stale = True
        return dropped

    def _nested(self, splice: Splice) -> Iterator[Splice]:
        yield splice
        for index in splice.nodes:
            inner = self.splices.get(index)
            if inner is not None:
                yield from self._nested(inner)

    # -- joining -------------------------------------------------------------------

    def collect(self, spawner: Node) -> Any:
        """What ``spawner``'s result becomes now that its sub-flow finished."""
        splice = self.splices[spawner.index]
        if splice.collect == dynamic.Collect.NONE:
            return None
        records = self._runtime.records
        nodes = self._runtime.compilation.nodes
        if splice.collect == dynamic.Collect.DICT:
            out: dict[str, Any] = {}
            for index in splice.tasks:
                record = records[index]
                out[nodes[index].name] = (
                    record.result if record is not None and holds_result(record) else None
                )
            return out
        values = []
        for index in splice.tasks:
            record = records[index]
            values.append(record.result if record is not None and holds_result(record) else None)
        return values


def _rebuild(spawner: str, spawned: dict[str, Any]) -> Any:
    """The flow a stored spawn record describes, made again."""
    factory = spawned.get("factory")
    if isinstance(factory, str):
        try:
            make = _flow_codec.import_path(factory)
        except ImportError as err:
            raise exc.InvalidFormat(
                f"the factory '{factory}' of the sub-flow atom '{spawner}' spawned cannot be imported"
            ) from err
        return make(*spawned.get("args", ()), **spawned.get("kwargs", {}))
    description = spawned.get("flow")
    if not isinstance(description, dict):
        raise exc.InvalidFormat(
            f"atom '{spawner}' spawned a sub-flow that was not recorded (the run was kept in memory?)"
        )
    return _flow_codec.rebuild(description)


def _renumber(
    sub: Compilation,
    offset: int,
    outer_retry: int,
    plans: dict[int, _Plans],
) -> None:
    """Shift every index of ``sub`` by ``offset``, in place."""
    # One int object per new index, shared by the node and every edge naming it
    # (an int past 256 is a new object each time it is computed).
    shifted = [local + offset for local in range(len(sub.nodes))]
    for node in sub.nodes:
        local = node.index
        node.index = shifted[local]
        node.succ = tuple([shifted[s] for s in node.succ])
        node.pred = tuple([shifted[p] for p in node.pred])
        node.retry = node.retry + offset if node.retry >= 0 else outer_retry
        if node.deciders:
            node.deciders = tuple(EdgeDecider(d.source + offset, d.decider, d.depth) for d in node.deciders)
        if local in plans:
            node.exec_args, node.revert_args = plans[local]
    stack = [sub.root]
    while stack:
        scope = stack.pop()
        scope.start += offset
        scope.end += offset
        if scope.retry >= 0:
            scope.retry += offset
        children = scope.children
        for pos, child in enumerate(children):
            if isinstance(child, FlowScope):
                stack.append(child)
            else:
                children[pos] = child + offset


def _root_of(scope: FlowScope) -> FlowScope:
    while scope.parent is not None:
        scope = scope.parent
    return scope


def _never(_index: int) -> bool:
    return False
