"""``flowkit graph``: draw a flow as Graphviz DOT or Mermaid.

::

    flowkit graph myapp.flows:make_flow --format mermaid
    flowkit graph myapp.flows:make_flow --format dot | dot -Tsvg > flow.svg

``TARGET`` is what ``flowkit run`` takes: ``module:callable`` returning a flow,
``module:name`` of one, or a declarative spec file (``.yaml``, ``.yml``,
``.json``). Nested flows are clusters (DOT) or subgraphs (Mermaid), retries
sit in the scope they control, links show their deciders.
"""

from __future__ import annotations

import argparse
from typing import Any

from flowkit.cli._common import CliError, build_flow, guarded, import_target, importable_cwd, spec_error

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``graph`` command to the ``flowkit`` parser."""
    parser = subparsers.add_parser(
        "graph",
        help="draw a flow as DOT or Mermaid",
        description=(
            "Print a flow (MODULE:CALLABLE, MODULE:FLOW or a declarative spec file) as a Graphviz"
            " DOT digraph or a Mermaid flowchart."
        ),
    )
    parser.add_argument(
        "target", metavar="TARGET", help="MODULE:CALLABLE, MODULE:FLOW or a spec file (.yaml, .yml, .json)"
    )
    parser.add_argument("--format", choices=("dot", "mermaid"), default="dot", help="default: dot")
    parser.set_defaults(handler=guarded("flowkit graph", _graph))


def load_flow(text: str) -> Any:
    """The flow named by a ``flowkit run``-style target (calling a callable, reading a spec file).

    Raises:
        CliError: the target is neither a flow nor a callable returning one.
    """
    from flowkit import declarative
    from flowkit.atom import Atom
    from flowkit.flow import Flow

    if declarative.is_spec_path(text):
        # What `flowkit run` takes, so what it runs can be drawn first.
        importable_cwd()
        try:
            return declarative.load_flow(text)
        except (declarative.FlowSpecError, OSError) as err:
            raise spec_error(text, err) from err
    target = import_target(text)
    if not isinstance(target, (Flow, Atom)):
        if not callable(target):
            raise CliError(f"target '{text}' is neither a flow nor a callable returning one")
        target = build_flow(text, target)
    if not isinstance(target, (Flow, Atom)):
        raise CliError(f"target '{text}' did not give a flow (it gave {type(target).__name__})")
    return target


def _graph(args: argparse.Namespace) -> int:
    from flowkit.export import to_dot, to_mermaid

    flow = load_flow(args.target)
    print(to_dot(flow) if args.format == "dot" else to_mermaid(flow), end="")
    return 0
