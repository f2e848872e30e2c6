"""Turn a flow tree into an indexed execution graph, once, before anything runs.

Why this module is big-ish: it is where every structural rule lives, so that the
scheduler can be a handful of integer counters. The output is a
:class:`Compilation` whose nodes are numbered ``0..n-1``:

* atom nodes (tasks and retries), and
* two virtual nodes per flow, its *start* and *end*. They make pattern order cheap:
  a linear flow of two unordered flows of ``n`` tasks each needs ``4n`` edges through
  the barriers instead of ``n * n`` edges between the tasks.

Edges come from pattern order (``iter_links``), explicit links (with their deciders)
and retries (a flow's retry runs right after the flow's start and before everything
inside). Symbol lookups are *not* edges: flows already order providers before
consumers (graph flows add those edges themselves when items are added), and the
compiler only has to find, for each argument of each atom, which atom's result it
reads. That search walks the flow tree upward from the consumer, nearest scope
first, answered structurally (sibling order, not a transitive closure of the whole
graph) so it costs O(depth) per argument instead of O(n).

The choice is TaskFlow's (its ``ScopeWalker`` and ``Storage`` fetch): at each level,
the children placed before the consumer are searched last-first, each nested flow
last child first (and its retry after its children), keeping only atoms that run
before the consumer; the first provider found wins, and only if a level has none
is the enclosing one searched. So when two unordered branches both provide a
symbol, the one added later is read, as in TaskFlow. With ``strict=True`` several
equally near providers are an :class:`~flowkit.exceptions.AmbiguousDependency`
instead.

All validation that does not depend on stored values happens here and raises
before anything runs: duplicate atom names, items that are not atoms or flows,
and (strict) ambiguous providers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from flowkit import exceptions as exc
from flowkit import flow as flow_mod
from flowkit._utils.class_caches import make_room
from flowkit._utils.records import Record
from flowkit.atom import Atom, _OneName, _OnePair
from flowkit.patterns import unordered_flow
from flowkit.retry import Retry

if TYPE_CHECKING:
    # Depth is an enum class, imported where deciders run; Decider is a protocol, for annotations.
    from flowkit.deciders import Decider, Depth
    from flowkit.patterns.graph_flow import _NumberedLinks

__all__ = [
    "FLOW_END",
    "FLOW_START",
    "RETRY",
    "TASK",
    "ArgPlan",
    "Compilation",
    "FlowScope",
    "Node",
    "compile_flow",
    "topological_order",
]

_new_tuple = tuple.__new__

TASK = 0
RETRY = 1
FLOW_START = 2
FLOW_END = 3

_UNORDERED = 0
_LINEAR = 1
_GRAPH = 2


class ArgPlan(Record):
    """Where one argument of one atom comes from.

    ``provider`` is the node index whose result holds ``symbol`` (or -1 when no atom
    provides it: the value must then come from ``store=``/``inject``). A named tuple,
    not a frozen dataclass: one is made per argument of every atom, and a tuple is
    several times cheaper to build.
    """

    arg: str
    symbol: str
    provider: int
    optional: bool
    #: How to read ``symbol`` out of the provider's result (its ``save_as`` entry).
    key: int | str | None = None


class EdgeDecider:
    """A decider on a link: ``decider(history=...)`` runs before ``target`` starts."""

    __slots__ = ("decider", "depth", "source")

    def __init__(self, source: int, decider: Decider, depth: Depth) -> None:
        self.source = source
        self.decider = decider
        self.depth = depth

    def __repr__(self) -> str:
        return f"EdgeDecider(source={self.source}, depth={self.depth})"


class Node:
    """One vertex of the execution graph (a plain slotted class: there are many)."""

    __slots__ = (
        "atom",
        "deciders",
        "exec_args",
        "index",
        "keyless",
        "kind",
        "name",
        "pos",
        "pred",
        "priority",
        "retry",
        "revert_args",
        "scope",
        "succ",
    )

    def __init__(
        self, index: int, kind: int, name: str, atom: Atom | None, scope: FlowScope, lists: bool = True
    ) -> None:
        self.index = index
        self.kind = kind
        self.name = name
        self.atom = atom
        self.scope = scope
        self.priority: int = atom.priority if atom is not None else 0
        #: The atom's whole result is stored under its one name (``provides="x"``),
        #: so reading a symbol from it needs no key (known here, where the atom is
        #: at hand, so that resolving a reader does not fetch the atom again).
        self.keyless = atom is None or type(atom.save_as) is _OneName
        # Lists while the graph is built, frozen to tuples after (lighter, and final).
        # The builder makes an atom node without them (lists=False) and sets its
        # final tuples when it wires it: most atoms get one edge in and one out,
        # and two lists made, filled, copied and dropped per atom were a fifth of
        # compiling an unordered flow.
        self.succ: Sequence[int] = [] if lists else ()
        self.pred: Sequence[int] = [] if lists else ()
        self.retry = -1
        self.pos = 0
        self.exec_args: tuple[ArgPlan, ...] = ()
        self.revert_args: tuple[ArgPlan, ...] = ()
        self.deciders: tuple[EdgeDecider, ...] = ()

    def __repr__(self) -> str:
        return f"<Node {self.index} {self.name}>"


class FlowScope:
    """A flow as the compiler sees it: its children in order and how they are ordered.

    (Plain slotted classes here, not dataclasses: making a dataclass costs about half
    a millisecond at import, which every short-lived process pays on its first run.)
    """

    __slots__ = (
        "ancestors_of",
        "atoms_from",
        "children",
        "end",
        "flow",
        "keyless",
        "mode",
        "name",
        "parent",
        "pos",
        "preds_of",
        "providers",
        "provides",
        "rank",
        "read_from",
        "read_symbols",
        "retry",
        "start",
    )

    def __init__(self, flow: Any, name: str, parent: FlowScope | None, mode: int = _UNORDERED) -> None:
        self.flow = flow
        self.name = name
        self.parent = parent
        self.pos = 0
        self.start = -1
        self.end = -1
        self.retry = -1
        # Each child is an atom node index (int) or a nested FlowScope.
        self.children: list[int | FlowScope] = []
        # When every child is an atom: the node index of the first (child ``p`` is
        # node ``atoms_from + p``), else -1. Lets a reader skip fetching the child.
        self.atoms_from = -1
        # Whether every atom child stores its whole result under its one name
        # (``provides="x"``), so a symbol read from it needs no key.
        self.keyless = False
        # While compiling a graph flow wired from its numbered links, when the
        # links name their symbols truly (see _index_providers): child position ->
        # the symbol(s) its links in were made for, and -> their sources' positions
        # (a bare value for one link, aligned lists for several; None for none).
        self.read_symbols: list[str | list[str | None] | None] | None = None
        self.read_from: list[int | list[int] | None] | None = None
        self.mode = mode
        # For graph mode: child position -> positions it has a direct link from.
        self.preds_of: Mapping[int, Collection[int]] = {}
        # For graph mode: child position -> its rank in a topological order of the
        # children (an ancestor always ranks lower), so a search for one can stop
        # early; None when the positions themselves are such an order (the usual case).
        self.rank: list[int] | None = None
        # For graph mode: child position -> all positions it (transitively) runs after,
        # filled on demand for children whose providers are not all direct predecessors.
        self.ancestors_of: dict[int, frozenset[int]] = {}
        # symbol -> the child position whose subtree provides it, or a sorted list of
        # them when several do (a bare int for the common single provider saves a list).
        self.providers: dict[str, int | list[int]] = {}
        self.provides: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"<FlowScope {self.name!r}>"

    #: ``_graph_order.precedes`` once a graph flow's reader first asks (None before: not
    #: loaded). Kept, as the compiler asks once per candidate provider of each such
    #: reader, and an import at each made compiling them half as slow again.
    _precedes: ClassVar[Callable[[FlowScope, int, int], bool] | None] = None

    def precedes(self, a: int, b: int) -> bool:
        """Tell whether child ``a`` always finishes before child ``b`` starts."""
        found = FlowScope._precedes
        if found is None:
            from flowkit.engines import _graph_order  # graph flows' unlinked readers (first-load cost)

            found = FlowScope._precedes = _graph_order.precedes
        return found(self, a, b)


class Compilation:
    """The compiled form of a flow: everything the engine needs, indexed.

    Attributes:
        root: the scope of the flow compiled.
        nodes: every node, by index.
        atoms: the atom nodes, in index order.
        open_atoms: atoms with a required argument no atom provides (it must be injected).
        order: node indices in a topological order (every edge goes forward in it);
            a plain ``range`` when creation order already is one.
    """

    __slots__ = ("atoms", "nodes", "open_atoms", "order", "root")

    def __init__(
        self,
        root: FlowScope,
        nodes: list[Node],
        atoms: list[Node],
        open_atoms: list[Node],
        order: Sequence[int],
    ) -> None:
        self.root = root
        self.nodes = nodes
        self.atoms = atoms
        self.open_atoms = open_atoms
        self.order = order

    @property
    def execution_graph(self) -> Any:
        """The atoms as a :class:`flowkit.types.graph.DiGraph` (TaskFlow's ``execution_graph``).

        Nodes are the atom objects (with ``kind`` ``"task"`` or ``"retry"``); an edge
        ``u -> v`` says ``v`` starts only after ``u``. Built on request (it needs
        the ``graph`` extra, networkx); the engine itself never uses it.
        """
        from flowkit.engines import _compilation_queries  # asked off the run (first-load cost)

        return _compilation_queries.execution_graph(self)

    def visible_provider(self, atom_name: str, symbol: str, has_result: Callable[[str], bool]) -> str | None:
        """The nearest atom visible to ``atom_name`` that holds ``symbol`` now, by name.

        What ``storage.fetch_mapped_args(..., atom_name=...)`` reads (TaskFlow's
        scoping); None when no visible atom has it, or no atom has that name.
        """
        from flowkit.engines import _compilation_queries  # asked off the run (first-load cost)

        return _compilation_queries.visible_provider(self, atom_name, symbol, has_result)

    def resolve(self, node: Node, symbol: str, skip: Callable[[int], bool]) -> int:
        """Find the nearest visible provider of ``symbol`` for ``node``, skipping some.

        Used at run time only when the compiled provider was ignored by a decider.
        Returns -1 when none is visible.
        """
        return _Resolver(self.nodes, skip, strict=False).find(node, symbol)


def compile_flow(root: Any, *, strict: bool = False) -> Compilation:
    """Compile ``root`` (a flow, or a single atom) into a :class:`Compilation`.

    Args:
        root: the flow or atom.
        strict: refuse an argument several equally near atoms provide, instead of
            choosing one as TaskFlow does.

    Raises:
        InvalidFlowItem: something in the tree is neither an atom nor a flow.
        Duplicate: two atoms share a name.
        AmbiguousDependency: (strict only) an argument has several equally near providers.
    """
    builder = _Builder()
    kind = _kind_of(root)
    if kind == RETRY:
        # A retry only decides for the flow it is given to (retry=), as in TaskFlow.
        raise exc.InvalidFlowItem(
            f"retry {root.name!r} cannot run on its own; give it to a flow as retry=", item=root
        )
    if kind == _FLOW:
        scope = builder.add_flow(root, None)
    elif kind >= 0:
        from flowkit.engines import _implicit_flows  # an atom on its own (first-load cost)

        scope = _implicit_flows.wrap_atom(builder, root)
    else:
        raise exc.InvalidFlowItem(
            f"engines can only run a flow or an atom, not {root!r} ({type(root).__name__})",
            item=root,
        )
    builder.check_duplicates()
    nodes = builder.nodes
    plan = _Resolver(nodes, _never, strict=strict).plan
    atoms: list[Node] = []
    open_atoms: list[Node] = []
    for node in nodes:
        node.succ = tuple(node.succ)
        node.pred = tuple(node.pred)
        atom = node.atom
        if atom is None:
            continue
        atoms.append(node)
        rebind, revert_rebind = atom.rebind, atom.revert_rebind
        # An atom of no arguments (a fan-out's leaves) needs no plan: spare the call.
        exec_args = node.exec_args = (
            plan(node, rebind, atom.optional) if type(rebind) is _OnePair or rebind else ()
        )
        if revert_rebind is rebind or (revert_rebind == rebind and atom.revert_optional == atom.optional):
            revert_args = node.revert_args = exec_args
        else:
            revert_args = node.revert_args = plan(node, revert_rebind, atom.revert_optional)
        for p in exec_args:
            if p.provider < 0 and not p.optional:
                open_atoms.append(node)
                break
        else:
            if revert_args is not exec_args and _has_open(revert_args):
                open_atoms.append(node)
    for read in builder.read_scopes:
        read.read_symbols = read.read_from = None  # planned: not kept with the compilation
    order: Sequence[int] = range(len(nodes)) if builder.ordered else topological_order(nodes)
    return Compilation(scope, nodes, atoms, open_atoms, order)


def _has_open(plans: tuple[ArgPlan, ...]) -> bool:
    """Whether a required argument has no providing atom (so it must be injected)."""
    return any(p.provider < 0 and not p.optional for p in plans)


def topological_order(nodes: list[Node]) -> list[int]:
    """The node indices in an order every edge goes forward in (nodes made out of order)."""
    from flowkit.engines import _graph_order  # loaded for the first such flow (first-load cost)

    return _graph_order.topological_order(nodes)


def _never(_index: int) -> bool:
    return False


class _Builder:
    """Walks the flow tree once, numbering nodes and wiring edges."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._seen_flows: set[int] = set()
        #: Node creation order is topological until a flow links items by hand.
        self.ordered = True
        #: Scopes given the symbols of their links, to forget once planned.
        self.read_scopes: list[FlowScope] = []

    def add_node(self, kind: int, name: str, atom: Atom | None, scope: FlowScope) -> Node:
        node = Node(len(self.nodes), kind, name, atom, scope)
        self.nodes.append(node)
        return node

    def add_edge(self, u: int, v: int) -> None:
        self.nodes[u].succ.append(v)  # type: ignore[attr-defined]
        self.nodes[v].pred.append(u)  # type: ignore[attr-defined]

    def add_flow(self, flow: Any, parent: FlowScope | None) -> FlowScope:
        if id(flow) in self._seen_flows:
            raise exc.Duplicate(f"flow '{flow.name}' appears more than once", names=[flow.name])
        self._seen_flows.add(id(flow))
        scope = FlowScope(flow=flow, name=flow.name, parent=parent)
        retry_atom = flow.retry
        start = self.add_node(FLOW_START, flow.name + "^start", None, scope)
        scope.start = start.index
        if parent is not None:
            start.retry = _controlling_retry(parent)
        entry = start.index
        if retry_atom is not None:
            if not isinstance(retry_atom, Retry):
                raise exc.InvalidFlowItem(
                    f"flow '{flow.name}' has retry={retry_atom!r}, which is not a Retry",
                    flow=flow.name,
                    item=retry_atom,
                )
            rnode = self.add_node(RETRY, retry_atom.name, retry_atom, scope)
            rnode.retry = start.retry
            scope.retry = rnode.index
            self.add_edge(start.index, rnode.index)
            entry = rnode.index
        # The two stock patterns with fixed order are wired without iter_links():
        # it makes a dict per link, and a 100,000-task flow would pay for it.
        fixed = _FIXED_ORDER.get(type(flow))
        if fixed is None:
            fixed = _linear_order(type(flow))
        # Other flows give their items in order once (a graph flow sorts them to do so).
        ordered = None if fixed is not None else _ordered_items(flow)
        items = iter(flow) if ordered is None else ordered
        controlling = _controlling_retry(scope)
        nodes = self.nodes
        first = len(nodes)
        entries: list[int] = []
        exits: list[int] = []
        children = scope.children
        known_kinds = _KIND_CACHE
        for pos, item in enumerate(items):
            kind = known_kinds.get(type(item))
            if kind is None:
                kind = _kind_of(item)
            if kind == TASK and item.retry is not None and not _is_own_retry_flow(flow):
                child = self.add_flow(_own_retry_flow(item), scope)
                child.pos = pos
                children.append(child)
                entries.append(child.start)
                exits.append(child.end)
            elif kind == _FLOW:
                child = self.add_flow(item, scope)
                child.pos = pos
                children.append(child)
                entries.append(child.start)
                exits.append(child.end)
            elif kind == RETRY:
                # As in TaskFlow, a retry decides for the flow it is given to and is no task.
                raise exc.InvalidFlowItem(
                    f"retry {item.name!r} was added to flow {flow.name!r} as an item; "
                    "give it to a flow as retry= instead",
                    flow=flow.name,
                    item=item,
                )
            elif kind >= 0:
                index = len(nodes)
                node = Node(index, kind, item.name, item, scope, False)
                nodes.append(node)
                node.retry = controlling
                node.pos = pos
                children.append(index)
                entries.append(index)
                exits.append(index)
            else:
                raise exc.InvalidFlowItem(
                    f"flow '{flow.name}' contains {item!r} ({type(item).__name__}), "
                    "which is neither an atom nor a flow",
                    flow=flow.name,
                    item=item,
                )
        if children and len(nodes) - first == len(children):
            scope.atoms_from = first  # a nested flow makes two nodes or more: atoms only
        end = self.add_node(FLOW_END, flow.name + "^end", None, scope)
        end.retry = controlling
        scope.end = end.index
        if not entries:
            self.add_edge(entry, end.index)
        elif fixed == _LINEAR:
            scope.mode = _LINEAR
            # Each child has one edge in and one out, set as its final tuple (an atom
            # child has no lists; a nested flow's start and end have no edges yet).
            last = len(entries) - 1
            nodes[entry].succ.append(entries[0])  # type: ignore[attr-defined]
            before = entry
            for pos in range(last):
                nodes[entries[pos]].pred = (before,)
                before = exits[pos]
                nodes[before].succ = (entries[pos + 1],)
            nodes[entries[last]].pred = (before,)
            nodes[exits[last]].succ = (end.index,)
            end.pred.append(exits[last])  # type: ignore[attr-defined]
        elif fixed == _UNORDERED:
            scope.mode = _UNORDERED
            # self.add_edge inlined, as for the linear flow: two calls per item saved.
            entry_succ = nodes[entry].succ
            end_index = end.index
            end_pred = end.pred
            # Each child has one edge in and one out, set as its final tuple (see above).
            from_entry = (entry,)
            to_end = (end_index,)
            for pos in range(len(entries)):
                after = entries[pos]
                entry_succ.append(after)  # type: ignore[attr-defined]
                nodes[after].pred = from_entry
                before = exits[pos]
                nodes[before].succ = to_end
                end_pred.append(before)  # type: ignore[attr-defined]
        else:
            self._wire_links(flow, scope, entry, entries, exits, ordered or [])
        _index_providers(scope, self.nodes)
        return scope

    def _wire_links(
        self,
        flow: Any,
        scope: FlowScope,
        entry: int,
        entries: list[int],
        exits: list[int],
        ordered: list[Any],
    ) -> None:
        """Wire a flow whose order comes from ``iter_links()`` (graph flows, custom patterns)."""
        count = len(entries)
        has_out = [False] * count
        # Child position -> the positions it has a direct link from.
        preds_of: dict[int, set[int]] = {}
        deciders: dict[int, list[EdgeDecider]] = {}
        # Imported here: a flow without graph flows never needs the module (start-up time).
        from flowkit.patterns import graph_flow

        # Child (or its id) -> its position.
        position: dict[Any, int]
        if type(flow).iter_links is graph_flow.Flow.iter_links:
            numbered = flow._numbered_links() if type(flow).iter_nodes is graph_flow.Flow.iter_nodes else None
            if numbered is not None:
                self._wire_numbered(scope, entry, entries, exits, numbered)
                return
            # A stock graph flow lends its links uncopied (they are only read here),
            # grouped by the child they leave, and says whether any has a decider.
            # Its children key its own dicts, so they may key this one too (found by
            # identity: cheaper than making an id per lookup).
            position = {item: pos for pos, item in enumerate(ordered)}
            groups: Iterable[tuple[Any, Mapping[Any, Any]]] = flow._links_by_source()
            decided = flow._decided
        else:
            position = {id(item): pos for pos, item in enumerate(ordered)}
            groups = ((id(u), {id(v): meta}) for u, v, meta in flow.iter_links())
            decided = True
        nodes = self.nodes
        # Atom children were made without edge lists (see Node): these links are appended.
        for pos in range(count):
            node = nodes[entries[pos]]
            if node.atom is not None:
                node.succ = []
                node.pred = []
        # Children are numbered in the order iter_nodes() gave: a dependency order
        # for a graph flow, so every link points forward. Then node creation order
        # stays topological, and a child's position is its rank (no sort needed).
        forward = True
        # Whether the links make one chain through the children in order (so far).
        chain = True
        links = 0
        for u, outs in groups:
            if not outs:
                continue
            pu = position[u]
            has_out[pu] = True
            source = exits[pu]
            succ: list[int] = nodes[source].succ  # type: ignore[assignment]
            # Targets only: a link's metadata is looked at only if some link has a
            # decider (in a big graph, touching each link's dict costs a cache miss).
            for v in outs:
                pv = position[v]
                links += 1
                if pu > pv:
                    forward = False
                if pu + 1 != pv:
                    chain = False
                found = preds_of.get(pv)
                if found is None:
                    preds_of[pv] = {pu}
                else:
                    found.add(pu)
                target = entries[pv]
                succ.append(target)
                nodes[target].pred.append(source)  # type: ignore[attr-defined]
                if not decided:
                    continue
                meta = outs[v]
                # A graph flow keeps a link made for one symbol as that str (no decider).
                decider = meta.get(_DECIDER) if meta and not isinstance(meta, str) else None
                if decider is not None:
                    from flowkit.deciders import Depth  # only flows with deciders need it

                    depth = meta.get(flow_mod.LINK_DECIDER_DEPTH) or Depth.ALL
                    deciders.setdefault(target, []).append(
                        EdgeDecider(source, decider, Depth.translate(depth))
                    )
        for entry_node, found_deciders in deciders.items():
            nodes[entry_node].deciders = tuple(found_deciders)
        end = scope.end
        # Children no link reaches start at the flow's entry; children no link leaves
        # end at its end (self.add_edge inline: a fan-out has a thousand of each kind).
        entry_succ: list[int] = nodes[entry].succ  # type: ignore[assignment]
        end_pred: list[int] = nodes[end].pred  # type: ignore[assignment]
        for pos in range(count):
            if pos not in preds_of:
                target = entries[pos]
                entry_succ.append(target)
                nodes[target].pred.append(entry)  # type: ignore[attr-defined]
            if not has_out[pos]:
                source = exits[pos]
                nodes[source].succ.append(end)  # type: ignore[attr-defined]
                end_pred.append(source)
        if not forward:
            # A pattern whose items do not come in dependency order: node creation
            # order is no longer topological (compile_flow sorts the nodes).
            self.ordered = False
        _classify(scope, preds_of, linear=chain and links == count - 1, forward=forward)

    def _wire_numbered(
        self,
        scope: FlowScope,
        entry: int,
        entries: list[int],
        exits: list[int],
        numbered: _NumberedLinks,
    ) -> None:
        """Wire a stock graph flow from its links as numbers (what ``_wire_links`` does).

        The edges and their order are those ``_wire_links`` makes: each child's
        successors in the order its links were made, its predecessors by position.
        Nothing but numbers is read, mostly in order (the links of a graph flow
        built providers first come grouped by target), so a big random graph is
        wired without hopping between the scattered dicts of its items: there,
        each hop was a cache miss, and they made a random DAG of 100,000 items
        cost twice as much per item to compile as one of 1,000.
        """
        count = len(entries)
        nodes = self.nodes
        sources, targets = numbered.sources, numbered.targets
        # Child position -> positions linked to it, in the order the links were
        # made, and the symbols they were made for; -> positions it links to (a
        # bare value while there is one: most children have one link or none).
        ins: list[int | list[int] | None] = [None] * count
        symbols: list[str | list[str | None] | None] = [None] * count
        outs: list[int | list[int] | None] = [None] * count
        for u, v, symbol in zip(sources, targets, numbered.symbols, strict=True):
            found = ins[v]
            if found is None:
                ins[v] = u
                symbols[v] = symbol
            elif type(found) is int:
                ins[v] = [found, u]
                symbols[v] = [symbols[v], symbol]  # type: ignore[list-item]
            else:
                found.append(u)  # type: ignore[union-attr]
                symbols[v].append(symbol)  # type: ignore[union-attr]
            found = outs[u]
            if found is None:
                outs[u] = v
            elif type(found) is int:
                outs[u] = [found, v]
            else:
                found.append(v)  # type: ignore[union-attr]
        links = len(sources)
        preds_of: dict[int, Collection[int]] = {}
        end = scope.end
        entry_succ: list[int] = nodes[entry].succ  # type: ignore[assignment]
        end_pred: list[int] = nodes[end].pred  # type: ignore[assignment]
        # A child's own edges are made here only, so they are set as the final
        # tuples at once (no list to fill, copy and drop per node).
        for pos in range(count):
            before = ins[pos]
            target = entries[pos]
            if before is None:
                entry_succ.append(target)
                nodes[target].pred = (entry,)
            elif type(before) is int:
                preds_of[pos] = (before,)
                nodes[target].pred = (exits[before],)
            else:
                # A small tuple answers "is p linked to it" as fast as a set, and is lighter.
                preds_of[pos] = tuple(before) if len(before) <= _SMALL else frozenset(before)  # type: ignore[arg-type]
                # Predecessors by position (node indices grow with positions).
                nodes[target].pred = tuple(sorted(map(exits.__getitem__, before)))  # type: ignore[arg-type]
            after = outs[pos]
            source = exits[pos]
            if after is None:
                nodes[source].succ = (end,)
                end_pred.append(source)
            elif type(after) is int:
                nodes[source].succ = (entries[after],)
            else:
                nodes[source].succ = tuple(map(entries.__getitem__, after))  # type: ignore[arg-type]
        chain = links == count - 1 and all(v - u == 1 for u, v in zip(sources, targets, strict=True))
        _classify(scope, preds_of, linear=chain, forward=True)
        if numbered.plain:
            scope.read_symbols = symbols
            scope.read_from = ins
            self.read_scopes.append(scope)

    def check_duplicates(self) -> None:
        names = [node.name for node in self.nodes if node.atom is not None]
        if len(set(names)) == len(names):
            return  # the usual answer, from one set made in C
        seen: set[str] = set()
        dups: set[str] = set()
        for name in names:
            if name in seen:
                dups.add(name)
            seen.add(name)
        if dups:
            raise exc.Duplicate(f"Atoms with duplicate names found: {sorted(dups)}", names=sorted(dups))


_FLOW = -2
#: Up to this many direct predecessors, a child's are kept as a tuple, not a set.
_SMALL = 8
#: Flow classes wired without their links: the stock linear (once seen) and unordered flows.
_FIXED_ORDER: dict[type, int] = {unordered_flow.Flow: _UNORDERED}
_KIND_CACHE: dict[type, int] = {}
_DECIDER = flow_mod.LINK_DECIDER


def _ordered_items(flow: Any) -> list[Any]:
    """A flow's items in the order of its ``iter_nodes()``.

    A stock graph flow's own ``__iter__`` gives that order without handing out
    each item's metadata (which it makes only when asked for: reading it here
    would give every atom of a big flow a dict it never needed).
    """
    # Imported here: a flow without graph flows never needs the module (start-up time).
    from flowkit.patterns import graph_flow

    cls = type(flow)
    if cls.iter_nodes is graph_flow.Flow.iter_nodes and cls.__iter__ is graph_flow.Flow.__iter__:
        return list(flow)
    return [item for item, _meta in flow.iter_nodes()]


def _kind_of(item: Any) -> int:
    """TASK, RETRY, _FLOW, or -1; cached per class because ABC isinstance is slow."""
    cls = type(item)
    kind = _KIND_CACHE.get(cls)
    if kind is None:
        if isinstance(item, Retry):
            kind = RETRY
        elif isinstance(item, Atom):
            kind = TASK
        elif isinstance(item, flow_mod.Flow):
            kind = _FLOW
        else:
            kind = -1
        make_room(_KIND_CACHE)
        _KIND_CACHE[cls] = kind
    return kind


def _linear_order(cls: type) -> int | None:
    """``_LINEAR`` for the stock linear flow (then kept in ``_FIXED_ORDER``), else None.

    Found by class once a linear flow comes, rather than imported for the table:
    a program that never makes one does not pay for importing the pattern.
    """
    # getattr: another thread may be importing the module, not yet at the class.
    if cls is getattr(sys.modules.get("flowkit.patterns.linear_flow"), "Flow", None):
        _FIXED_ORDER[cls] = _LINEAR
        return _LINEAR
    return None


def _is_own_retry_flow(flow: Any) -> bool:
    """Whether ``flow`` is the one made for a task's own ``retry=`` (its task is not wrapped again)."""
    from flowkit.engines import _implicit_flows  # only a task with its own retry= gets here

    return type(flow) is _implicit_flows.OwnRetryFlow


def _own_retry_flow(atom: Any) -> Any:
    """The one-task flow that a task's own ``retry=`` stands for (see ``_implicit_flows``)."""
    from flowkit.engines import _implicit_flows  # only a task with its own retry= gets here

    return _implicit_flows.own_retry_flow(atom)


def _controlling_retry(scope: FlowScope | None) -> int:
    while scope is not None:
        if scope.retry >= 0:
            return scope.retry
        scope = scope.parent
    return -1


def _classify(
    scope: FlowScope, preds_of: Mapping[int, Collection[int]], *, linear: bool, forward: bool
) -> None:
    """Decide how children of ``scope`` are ordered, for provider visibility.

    Args:
        scope: the flow's scope.
        preds_of: child position -> the positions linked to it.
        linear: the links chain every child to the next one, in order.
        forward: every link goes from a lower position to a higher one, so the
            positions already rank the children (``scope.rank`` stays None).
    """
    if not preds_of:
        scope.mode = _UNORDERED
    elif linear:
        scope.mode = _LINEAR
    else:
        scope.mode = _GRAPH
        scope.preds_of = preds_of
        if not forward:
            from flowkit.engines import _graph_order  # items out of link order (first-load cost)

            scope.rank = _graph_order.ranks(len(scope.children), preds_of)


def _index_providers(scope: FlowScope, nodes: list[Node]) -> None:
    providers = scope.providers
    nested = scope.parent is not None
    provides: set[str] = set()
    keyless = True
    for pos, child in enumerate(scope.children):
        # An atom's save_as holds what it provides (its provides set is made only on demand).
        child_provides: Iterable[str]
        if type(child) is FlowScope:
            child_provides = child.provides
        else:
            save_as = nodes[child].atom.save_as  # type: ignore[union-attr, index]
            # The usual provides="x" read without iterating the mapping in Python: what
            # flowkit.atom._result_names does, inlined (calling it per atom took compiling
            # a linear flow of 100,000 atoms from 3.15 to 3.23 us an atom).
            if type(save_as) is _OneName:
                symbol = save_as._name
                if symbol not in providers:  # the usual: its first provider, indexed at once
                    providers[symbol] = pos
                    if nested:
                        provides.add(symbol)
                    continue
                child_provides = (symbol,)
            else:
                child_provides = save_as
                if save_as:  # (an atom providing nothing is nobody's provider)
                    keyless = False
        for symbol in child_provides:
            found = providers.get(symbol)
            if found is None:
                providers[symbol] = pos
            elif isinstance(found, int):
                providers[symbol] = [found, pos]
            else:
                found.append(pos)
        if nested:
            provides.update(child_provides)
    scope.keyless = keyless
    if not keyless or scope.atoms_from < 0:
        # Sibling readers are planned by number among atoms of one-name results only.
        scope.read_symbols = scope.read_from = None
    # Only a nested flow's parent asks what the whole subtree provides.
    if nested:
        if scope.retry >= 0:
            provides.update(nodes[scope.retry].atom.provides)  # type: ignore[union-attr]
        scope.provides = frozenset(provides)


def _positions(scope: FlowScope, symbol: str) -> list[int]:
    found = scope.providers.get(symbol)
    if found is None:
        return []
    return [found] if isinstance(found, int) else found


class _Resolver:
    """Finds which atom's result an argument reads, nearest visible scope first."""

    def __init__(self, nodes: list[Node], skip: Callable[[int], bool], strict: bool) -> None:
        self._nodes = nodes
        self._skip = skip
        self._strict = strict

    def plan(self, node: Node, rebind: Mapping[str, str], optional: Iterable[str]) -> tuple[ArgPlan, ...]:
        # (type checks first: a one-pair mapping's len() is a Python call, twice per atom)
        if type(rebind) is not _OnePair and not rebind:
            return ()
        if type(optional) is not frozenset:
            optional = frozenset(optional)
        # The common cases, answered inline: an atom reading what its only provider
        # among its siblings gives, placed before it in a linear flow or linked
        # straight to it in a graph flow (what find() would conclude, four calls deep).
        scope = node.scope
        mode = scope.mode
        inline = mode != _UNORDERED and node.kind != RETRY and self._skip is _never
        linked = scope.preds_of.get(node.pos, ()) if mode == _GRAPH else ()
        linear = mode == _LINEAR
        providers, children, pos = scope.providers, scope.children, node.pos
        # Siblings that are all atoms are found without fetching them (in a big
        # graph each fetch is a cache miss): by number, and without a key if none
        # keeps its results under several names.
        atoms_from = scope.atoms_from
        keyless = atoms_from >= 0 and scope.keyless
        # In a graph flow of plain atoms, the link the flow made for a symbol when
        # the atom was added names the provider the search below would choose: the
        # one sibling that gave the symbol then (two were refused as ambiguous),
        # linked to it; a sibling giving it too, added later, is placed after it.
        # So the symbol needs no lookup in the dict of every sibling's symbols.
        read_symbols = scope.read_symbols if inline else None
        # The atom's links in: a symbol and a position, aligned lists, or a dict.
        symbols_in: Any = None
        sources_in: Any = None
        if read_symbols is not None:
            symbols_in = read_symbols[pos]
            sources_in = scope.read_from[pos]  # type: ignore[index]
            if type(symbols_in) is list and len(symbols_in) > _SMALL:
                # Many links in (a fan-in's sink): one dict, not a scan per argument.
                symbols_in = dict(zip(symbols_in, sources_in, strict=True))
        plans = []
        # The usual one-argument mapping read without its items view (two Python calls).
        pairs = ((rebind._arg, rebind._symbol),) if type(rebind) is _OnePair else rebind.items()
        for arg, symbol in pairs:
            provider = -1
            if symbols_in is not None:
                if type(sources_in) is int:  # one link in
                    read = sources_in if symbols_in == symbol else None
                elif type(symbols_in) is dict:
                    read = symbols_in.get(symbol)
                else:
                    read = sources_in[symbols_in.index(symbol)] if symbol in symbols_in else None
                if read is not None:
                    provider = atoms_from + read
                    plans.append(_new_tuple(ArgPlan, (arg, symbol, provider, arg in optional, None)))
                    continue
            if inline:
                found_at = providers.get(symbol)
                if type(found_at) is int and found_at < pos and (linear or found_at in linked):
                    if keyless:
                        provider = atoms_from + found_at
                        plans.append(_new_tuple(ArgPlan, (arg, symbol, provider, arg in optional, None)))
                        continue
                    child = children[found_at]
                    if type(child) is int:
                        # An atom child: the index holds it because its save_as has the symbol.
                        provider = child
            if provider < 0:
                provider = self.find(node, symbol)
            if provider < 0:
                key = None
            else:
                found = self._nodes[provider]
                key = None if found.keyless else found.atom.save_as[symbol]  # type: ignore[union-attr]
            # tuple.__new__ spares the named tuple's own __new__ frame: one per argument.
            plans.append(_new_tuple(ArgPlan, (arg, symbol, provider, arg in optional, key)))
        return tuple(plans)

    def find(self, node: Node, symbol: str) -> int:
        """Return the provider node index of ``symbol`` visible from ``node``, or -1."""
        scope: FlowScope | None = node.scope
        pos = node.pos
        if node.kind == RETRY:
            # A retry sees what comes before its flow, never its flow's own items.
            pos = node.scope.pos
            scope = node.scope.parent
        while scope is not None:
            found = self._in_level(scope, pos, symbol, node)
            if found >= 0:
                return found
            retry = scope.retry
            if (
                retry >= 0
                and retry != node.index
                and symbol in self._provides(retry)
                and not self._skip(retry)
            ):
                return retry
            pos = scope.pos
            scope = scope.parent
        return -1

    def _provides(self, index: int) -> Mapping[str, Any]:
        return self._nodes[index].atom.save_as  # type: ignore[union-attr]

    def _in_level(self, scope: FlowScope, pos: int, symbol: str, consumer: Node) -> int:
        found_at = scope.providers.get(symbol)
        if found_at is None or scope.mode == _UNORDERED:
            return -1
        if scope.mode == _LINEAR and type(found_at) is int:
            # The common case: one provider in a linear flow, before or after us.
            return self._descend(scope.children[found_at], symbol, consumer) if found_at < pos else -1
        positions = _positions(scope, symbol)
        if scope.mode == _LINEAR:
            from bisect import bisect_left  # several providers only: not at module level

            cut = bisect_left(positions, pos)
            for i in range(cut - 1, -1, -1):
                found = self._descend(scope.children[positions[i]], symbol, consumer)
                if found >= 0:
                    return found
            return -1
        if scope.rank is None:
            # Positions are a dependency order: only earlier children can run before.
            before = [p for p in positions if p < pos and scope.precedes(p, pos)]
        else:
            before = [p for p in positions if scope.precedes(p, pos)]
        if self._strict:
            # Nearest first: a provider that precedes another candidate is shadowed by it.
            nearest = [p for p in before if not any(q != p and scope.precedes(p, q) for q in before)]
            if len(nearest) > 1:
                self._ambiguous(scope, nearest, symbol, consumer)
            before.sort(key=lambda p: (p not in nearest, -p))
        else:
            before.reverse()  # TaskFlow's order: the child placed last first
        for p in before:
            found = self._descend(scope.children[p], symbol, consumer)
            if found >= 0:
                return found
        return -1

    def _descend(self, child: int | FlowScope, symbol: str, consumer: Node) -> int:
        """Find the provider of ``symbol`` inside ``child`` that finishes last."""
        if not isinstance(child, FlowScope):
            if symbol in self._provides(child) and not self._skip(child):
                return child
            return -1
        positions = _positions(child, symbol)
        if child.mode == _LINEAR or not self._strict:
            ordered = list(reversed(positions))  # the child placed last first
        else:
            last = [p for p in positions if not any(q != p and child.precedes(p, q) for q in positions)]
            if self._strict and len(last) > 1:
                self._ambiguous(child, last, symbol, consumer)
            ordered = sorted(positions, key=lambda p: (p not in last, -p))
        for p in ordered:
            found = self._descend(child.children[p], symbol, consumer)
            if found >= 0:
                return found
        if child.retry >= 0 and symbol in self._provides(child.retry) and not self._skip(child.retry):
            return child.retry
        return -1

    def _ambiguous(self, scope: FlowScope, positions: list[int], symbol: str, consumer: Node) -> None:
        names = []
        for p in positions:
            child = scope.children[p]
            names.append(child.name if isinstance(child, FlowScope) else self._nodes[child].name)
        raise exc.AmbiguousDependency(
            f"atom '{consumer.name}' requires '{symbol}', which {sorted(names)} in flow "
            f"'{scope.name}' all provide with no order between them; link them or rename one",
            symbol=symbol,
            providers=sorted(names),
            atom=consumer.name,
        )
