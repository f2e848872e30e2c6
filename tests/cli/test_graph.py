"""Graph export: DOT, Mermaid, networkx, and ``flowkit graph``."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from flowkit import retry, task
from flowkit.export import to_dot, to_mermaid, to_networkx
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from tests.cli.conftest import flowkit_cmd
from tests.declarative.test_load import PRICING


class T(task.Task):
    def execute(self) -> int:
        return 1


def only_on_weekdays(history: object) -> bool:
    return True


def _flow() -> linear_flow.Flow:
    g = graph_flow.Flow("g")
    a, b, c = T("a"), T("b"), T("c")
    g.add(a, b, c)
    g.link(a, b, decider=only_on_weekdays)
    g.link(a, c)
    parallel = unordered_flow.Flow("par", retry=retry.Times(2, "r1")).add(T("x"), T("y"))
    return linear_flow.Flow("root").add(T("first"), parallel, g, T("last"))


def test_dot_draws_nested_flows_as_clusters_with_retry_scopes_and_deciders() -> None:
    dot = to_dot(_flow())
    assert dot.startswith('digraph "root" {') and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    assert 'subgraph cluster_c1 {\n      label="unordered: par (retry scope of r1)";' in dot
    assert 'label="graph: g"' in dot and 'label="linear: root"' in dot
    assert 'n1 [label="r1", shape=hexagon];' in dot
    assert 'n4 -> n5 [label="decider: only_on_weekdays", style=dashed];' in dot
    # Flow-to-flow order goes between clusters.
    assert "n1 -> n4 [ltail=cluster_c1, lhead=cluster_c2];" in dot
    assert "n0 -> n1 [lhead=cluster_c1];" in dot


def test_mermaid_draws_subgraphs_retry_hexagons_and_decider_links() -> None:
    text = to_mermaid(_flow())
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    subgraph c1 ["unordered: par (retry scope of r1)"]' in lines
    assert '      n1{{"r1"}}' in lines
    assert '  n4 -. "decider: only_on_weekdays" .-> n5' in lines
    assert "  n0 --> c1" in lines and "  c1 --> c2" in lines and "  c2 --> n7" in lines
    assert sum(1 for line in lines if line.strip().startswith("subgraph")) == sum(
        1 for line in lines if line.strip() == "end"
    )


def test_networkx_graph_is_the_compiled_graph() -> None:
    graph = to_networkx(_flow())
    assert isinstance(graph, nx.DiGraph)
    assert nx.is_directed_acyclic_graph(graph)
    assert graph.nodes["x"] == {"kind": "task", "flow": "par", "retry": "r1"}
    assert graph.nodes["r1"]["kind"] == "retry"
    assert graph.nodes["par/start"]["kind"] == "flow_start"
    assert graph.edges["a", "b"]["decider"] is only_on_weekdays
    assert nx.has_path(graph, "first", "last")
    order = list(nx.topological_sort(graph))
    assert order.index("r1") < order.index("x") < order.index("a")


def test_flowkit_graph_prints_dot_and_mermaid() -> None:
    dot = flowkit_cmd("graph", "tests.cli._flows:make_shop")
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith('digraph "shop"') and "retry scope of r1" in dot.stdout
    mermaid = flowkit_cmd("graph", "tests.cli._flows:SHOP", "--format", "mermaid")
    assert mermaid.returncode == 0 and mermaid.stdout.startswith("flowchart TD")
    bad = flowkit_cmd("graph", "tests.cli._flows:CardDeclined")
    assert bad.returncode == 2 and "did not give a flow" in bad.stderr


def test_flowkit_graph_draws_a_spec_file_as_flowkit_run_takes_it(tmp_path: Path) -> None:
    spec = tmp_path / "pricing.yaml"
    spec.write_text(PRICING)
    dot = flowkit_cmd("graph", str(spec))
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith('digraph "pricing"') and 'label="price"' in dot.stdout
    spec.write_text(PRICING.replace("${fx}", "${fxx}"))
    bad = flowkit_cmd("graph", str(spec), "--format", "mermaid")
    assert bad.returncode == 2
    assert f"{spec}, line 5, task 'price', key 'inputs.rate'" in bad.stderr
    missing = flowkit_cmd("graph", str(tmp_path / "missing.json"))
    assert missing.returncode == 2 and "missing.json" in missing.stderr


def test_dot_keeps_unicode_names_as_they_are_and_escapes_quotes_and_backslashes() -> None:
    # json.dumps wrote \u00dc, which DOT does not read as an escape: Graphviz drew the backslash codes.
    flow = linear_flow.Flow("Ünïcode ✓ <b>").add(T("naïve—step 日本語"), T('say "hi" \\ bye'))
    dot = to_dot(flow)
    assert 'digraph "Ünïcode ✓ <b>" {' in dot
    assert 'label="naïve—step 日本語"' in dot and "\\u" not in dot
    assert 'label="say \\"hi\\" \\\\ bye"' in dot
