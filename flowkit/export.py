"""Pictures and graphs of a flow: Graphviz DOT, Mermaid, and a networkx graph.

:func:`to_dot` and :func:`to_mermaid` draw the flow as written: every nested
flow is a cluster (DOT) or subgraph (Mermaid) labelled with its pattern, a
flow's retry sits inside its cluster (a hexagon) and the cluster says it is
that retry's scope, and links carry their decider's name (dashed)::

    print(to_mermaid(make_flow()))          # paste into any Mermaid renderer
    to_dot(make_flow())                     # | dot -Tsvg > flow.svg

:func:`to_networkx` gives the compiled execution graph (what the engine
runs, flows' start and end barriers included) as a ``networkx.DiGraph`` for
analysis; networkx is optional (``pip install 'flowkit[graph]'``).
``flowkit graph TARGET --format dot|mermaid`` prints the first two.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flowkit.atom import Atom
from flowkit.flow import LINK_DECIDER, Flow
from flowkit.retry import Retry

__all__ = ["to_dot", "to_mermaid", "to_networkx", "to_networkx_data"]


@dataclass(eq=False)
class _Cluster:
    """A flow as drawn: its id, label, retry, and what it holds."""

    id: str
    flow: Flow
    retry: str | None
    #: Atom node ids and nested clusters, in the flow's order.
    items: list[str | _Cluster] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Edge:
    source: str | _Cluster
    target: str | _Cluster
    decider: str | None = None


class _Drawing:
    """The flow tree walked once into clusters, atom nodes and edges."""

    def __init__(self, root: Flow | Atom) -> None:
        self.labels: dict[str, str] = {}
        self.kinds: dict[str, str] = {}
        self.edges: list[_Edge] = []
        self._ids: dict[int, str] = {}
        self._clusters = 0
        if isinstance(root, Flow):
            self.root: _Cluster | str = self._cluster(root)
        else:
            self.root = self._atom(root)

    def _atom(self, atom: Atom) -> str:
        node_id = f"n{len(self.labels)}"
        self._ids[id(atom)] = node_id
        self.labels[node_id] = atom.name
        self.kinds[node_id] = "retry" if isinstance(atom, Retry) else "task"
        return node_id

    def _cluster(self, flow: Flow) -> _Cluster:
        cluster = _Cluster(f"c{self._clusters}", flow, None)
        self._clusters += 1
        made: dict[int, str | _Cluster] = {}
        entry_targets: list[str | _Cluster] = []
        if flow.retry is not None:
            retry_id = self._atom(flow.retry)
            cluster.retry = retry_id
            cluster.items.append(retry_id)
        for item, _meta in flow.iter_nodes():
            drawn: str | _Cluster = self._cluster(item) if isinstance(item, Flow) else self._atom(item)
            made[id(item)] = drawn
            cluster.items.append(drawn)
        has_pred: set[int] = set()
        for u, v, meta in flow.iter_links():
            has_pred.add(id(v))
            decider = meta.get(LINK_DECIDER)
            name = None if decider is None else getattr(decider, "__name__", type(decider).__name__)
            self.edges.append(_Edge(made[id(u)], made[id(v)], name))
        entry_targets = [made[id(item)] for item, _ in flow.iter_nodes() if id(item) not in has_pred]
        if cluster.retry is not None:
            # The retry runs first in its scope, before everything without a predecessor.
            self.edges.extend(_Edge(cluster.retry, target) for target in entry_targets)
        return cluster

    def clusters(self) -> Iterator[_Cluster]:
        stack = [self.root] if isinstance(self.root, _Cluster) else []
        while stack:
            cluster = stack.pop()
            yield cluster
            stack.extend(i for i in cluster.items if isinstance(i, _Cluster))


def _pattern(flow: Flow) -> str:
    module = type(flow).__module__.rpartition(".")[2]
    return module.replace("_flow", "") if module.endswith("_flow") else type(flow).__name__


def _cluster_label(cluster: _Cluster, labels: dict[str, str]) -> str:
    text = f"{_pattern(cluster.flow)}: {cluster.flow.name}"
    if cluster.retry is not None:
        text += f" (retry scope of {labels[cluster.retry]})"
    return text


def _first(item: str | _Cluster) -> str | None:
    """An atom node inside ``item`` (itself if it is one), for DOT's lhead/ltail trick."""
    if isinstance(item, str):
        return item
    for inner in item.items:
        found = _first(inner)
        if found is not None:
            return found
    return None


def _q(text: str) -> str:
    """A DOT double-quoted string: UTF-8 as it is, ``"`` and ``\\`` escaped, newlines as ``\\n``.

    Not JSON: DOT has no ``\\uXXXX`` escape, so Graphviz drew ``Ünïcode`` as
    ``\\u00dcn\\u00efcode``.
    """
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(flow: Flow | Atom) -> str:
    """The flow as a Graphviz DOT digraph (nested flows as clusters)."""
    drawing = _Drawing(flow)
    name = flow.name
    lines = [
        f"digraph {_q(name)} {{",
        "  compound=true;",
        "  rankdir=TB;",
        "  node [shape=box, style=rounded];",
    ]

    def emit(item: str | _Cluster, pad: str) -> None:
        if isinstance(item, str):
            shape = ", shape=hexagon" if drawing.kinds[item] == "retry" else ""
            lines.append(f"{pad}{item} [label={_q(drawing.labels[item])}{shape}];")
            return
        lines.append(f"{pad}subgraph cluster_{item.id} {{")
        lines.append(f"{pad}  label={_q(_cluster_label(item, drawing.labels))};")
        style = "dashed" if item.retry is not None else "solid"
        lines.append(f"{pad}  style={style};")
        if not item.items:
            lines.append(f'{pad}  {item.id}_empty [label="", shape=point, style=invis];')
        for inner in item.items:
            emit(inner, pad + "  ")
        lines.append(f"{pad}}}")

    emit(drawing.root, "  ")
    for edge in drawing.edges:
        source, target = _first(edge.source), _first(edge.target)
        if source is None or target is None:
            continue
        attrs = []
        if isinstance(edge.source, _Cluster):
            attrs.append(f"ltail=cluster_{edge.source.id}")
        if isinstance(edge.target, _Cluster):
            attrs.append(f"lhead=cluster_{edge.target.id}")
        if edge.decider is not None:
            attrs += [f"label={_q('decider: ' + edge.decider)}", "style=dashed"]
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {source} -> {target}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    # Mermaid labels are double-quoted; a quote inside is written as an entity.
    return '"' + text.replace('"', "#quot;") + '"'


def to_mermaid(flow: Flow | Atom) -> str:
    """The flow as a Mermaid flowchart (nested flows as subgraphs)."""
    drawing = _Drawing(flow)
    lines = ["flowchart TD"]

    def emit(item: str | _Cluster, pad: str) -> None:
        if isinstance(item, str):
            label = _mermaid_text(drawing.labels[item])
            lines.append(
                f"{pad}{item}{{{{{label}}}}}" if drawing.kinds[item] == "retry" else f"{pad}{item}[{label}]"
            )
            return
        lines.append(f"{pad}subgraph {item.id} [{_mermaid_text(_cluster_label(item, drawing.labels))}]")
        lines.append(f"{pad}  direction TB")
        for inner in item.items:
            emit(inner, pad + "  ")
        lines.append(f"{pad}end")

    emit(drawing.root, "  ")
    for edge in drawing.edges:
        source = edge.source.id if isinstance(edge.source, _Cluster) else edge.source
        target = edge.target.id if isinstance(edge.target, _Cluster) else edge.target
        if edge.decider is not None:
            lines.append(f"  {source} -. {_mermaid_text('decider: ' + edge.decider)} .-> {target}")
        else:
            lines.append(f"  {source} --> {target}")
    for cluster in drawing.clusters():
        if cluster.retry is not None:
            lines.append(f"  style {cluster.id} stroke-dasharray: 5 5")
    return "\n".join(lines) + "\n"


def to_networkx_data(flow_or_engine: Any) -> tuple[list[dict[str, Any]], list[tuple[str, str, Any]]]:
    """The compiled graph as plain data: what :func:`to_networkx` builds its graph from.

    Returns:
        ``(nodes, edges)``: node dicts with ``id``, ``kind``, ``flow``, ``retry``
        (see :func:`to_networkx`) and ``scope``, the id of the enclosing flow's
        start node: one flow's, where two flows may share a name (what the
        monitor groups a big graph's nodes by); and ``(source id, target id,
        decider)`` edges.
    """
    from flowkit import engines
    from flowkit.engines import _compiler

    engine: Any = flow_or_engine if hasattr(flow_or_engine, "compile") else engines.load(flow_or_engine)
    engine.compile()
    compilation = engine.compilation
    kinds = {
        _compiler.TASK: "task",
        _compiler.RETRY: "retry",
        _compiler.FLOW_START: "flow_start",
        _compiler.FLOW_END: "flow_end",
    }
    keys: dict[int, str] = {}
    taken: set[str] = set()
    for node in compilation.nodes:
        if node.atom is not None:
            key = node.name
        else:
            base = f"{node.scope.name}/{'start' if node.kind == _compiler.FLOW_START else 'end'}"
            key, extra = base, 2
            while key in taken:
                key, extra = f"{base}#{extra}", extra + 1
        taken.add(key)
        keys[node.index] = key
    all_nodes = compilation.nodes
    nodes = [
        {
            "id": keys[node.index],
            "kind": kinds.get(node.kind, str(node.kind)),
            "flow": node.scope.name,
            "scope": keys[node.scope.start],
            "retry": all_nodes[node.retry].name if node.retry >= 0 else None,
        }
        for node in all_nodes
    ]
    edges: list[tuple[str, str, Any]] = []
    for node in all_nodes:
        deciders = {d.source: d.decider for d in node.deciders}
        edges.extend((keys[pred], keys[node.index], deciders.get(pred)) for pred in node.pred)
    return nodes, edges


def to_networkx(flow_or_engine: Any) -> Any:
    """The compiled execution graph as a ``networkx.DiGraph``.

    Args:
        flow_or_engine: a flow (or atom), compiled here, or an engine (its own
            compiled graph is used).

    Returns:
        A DiGraph whose nodes are atom names, plus one ``start`` and one
        ``end`` node per flow (``"<flow>/start"``, ``"<flow>/end"``: the
        barriers that order nested flows). Node attributes: ``kind``
        (``task``, ``retry``, ``flow_start``, ``flow_end``), ``flow`` (the
        enclosing flow's name), ``retry`` (the controlling retry's name or
        None). Edge attribute ``decider``: the link's decider or None.

    Raises:
        ImportError: networkx is not installed.
    """
    try:
        import networkx as nx
    except ImportError as err:
        raise ImportError("to_networkx needs networkx: pip install 'flowkit[graph]'") from err
    nodes, edges = to_networkx_data(flow_or_engine)
    graph = nx.DiGraph()
    for node in nodes:
        graph.add_node(node["id"], kind=node["kind"], flow=node["flow"], retry=node["retry"])
    for source, target, decider in edges:
        graph.add_edge(source, target, decider=decider)
    return graph
