"""Sphinx extension: render flowkit's state transition tables from the code.

``doc/states.rst`` writes::

    .. flowkit-transitions:: TASK_TRANSITIONS

and gets a table with one row per ``(from, to)`` pair of
``flowkit.states.TASK_TRANSITIONS``, plus the comment that line carries in
``flowkit/states.py`` ("when this happens"). The tables are read when the
docs are built, so they cannot drift from the engine: a pair added or removed
in the code is added or removed here, and a table that is renamed or deleted
fails the build. ``tests/unit/test_doc_state_tables.py`` checks the rendering.

The directive is a plain docutils directive, so it also works outside Sphinx
(the test renders it with docutils alone).
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import Directive

from flowkit import states

__all__ = [
    "TransitionsDirective",
    "build_table",
    "setup",
    "table_names",
    "transition_comments",
    "transition_rows",
]

# One entry of a transition table, as written in flowkit/states.py:
#     (PENDING, RUNNING),  # the engine starts executing it
_ENTRY = re.compile(r"^\s*\(\s*(?P<old>[A-Z_]+)\s*,\s*(?P<new>[A-Z_]+)\s*\)\s*,?\s*#\s*(?P<when>.+?)\s*$")


def table_names() -> list[str]:
    """Return the public transition tables of :mod:`flowkit.states`, in ``__all__`` order."""
    return [name for name in states.__all__ if name.endswith("_TRANSITIONS")]


def _table(name: str) -> frozenset[tuple[str, str]]:
    if name not in table_names():
        raise ValueError(f"flowkit.states has no public transition table {name!r}; it has {table_names()}")
    table: frozenset[tuple[str, str]] = getattr(states, name)
    return table


def _state_rank() -> dict[str, int]:
    """Rank each state by where flowkit.states defines it: roughly the order of a life cycle."""
    names = [key for key, value in vars(states).items() if isinstance(value, str) and key == value]
    return {name: rank for rank, name in enumerate(names)}


def _table_source(tree: ast.Module, name: str) -> ast.Assign | ast.AnnAssign | None:
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return node
    return None


def transition_comments(name: str) -> dict[tuple[str, str], str]:
    """Map each ``(from, to)`` of table ``name`` to the comment its line carries in flowkit/states.py.

    Only the lines of that table's own definition count, because one pair can
    mean different things in different tables (``PENDING -> RUNNING`` for a
    flow and for a task). A table built from another (``TASK_TRANSITIONS |
    {...}``) inherits that table's comments for the pairs it does not write
    itself. Pairs written without a comment are absent.
    """
    source = inspect.getsource(states)
    node = _table_source(ast.parse(source), name)
    if node is None or node.value is None:
        return {}
    comments: dict[tuple[str, str], str] = {}
    for used in ast.walk(node.value):
        if isinstance(used, ast.Name) and used.id != name and used.id in table_names():
            comments.update(transition_comments(used.id))
    lines = source.splitlines()[node.lineno - 1 : node.end_lineno]
    for line in lines:
        match = _ENTRY.match(line)
        if match is None:
            continue
        old = getattr(states, match["old"], None)
        new = getattr(states, match["new"], None)
        if isinstance(old, str) and isinstance(new, str):
            comments[(old, new)] = match["when"]
    return comments


def transition_rows(name: str) -> list[tuple[str, str, str]]:
    """Return ``(from, to, when)`` for every pair of table ``name``, in life-cycle order.

    Raises:
        ValueError: ``flowkit.states`` has no public table by that name.
    """
    table = _table(name)
    rank = _state_rank()
    comments = transition_comments(name)
    last = len(rank)
    ordered = sorted(table, key=lambda pair: (rank.get(pair[0], last), rank.get(pair[1], last), pair))
    return [(old, new, comments.get((old, new), "")) for old, new in ordered]


def _cell(text: str, literal: bool) -> nodes.entry:
    paragraph = nodes.paragraph()
    if text:
        paragraph += nodes.literal(text, text) if literal else nodes.Text(text)
    return nodes.entry("", paragraph)


def _row(cells: list[tuple[str, bool]]) -> nodes.row:
    row = nodes.row()
    for text, literal in cells:
        row += _cell(text, literal)
    return row


def build_table(name: str) -> nodes.table:
    """Build the docutils table for transition table ``name``.

    Raises:
        ValueError: ``flowkit.states`` has no public table by that name.
    """
    rows = transition_rows(name)
    table = nodes.table(classes=["flowkit-transitions"], ids=[nodes.make_id(f"transitions-{name}")])
    group = nodes.tgroup(cols=3)
    table += group
    for width in (20, 20, 60):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += _row([("From", False), ("To", False), ("When", False)])
    group += head
    body = nodes.tbody()
    for old, new, when in rows:
        body += _row([(old, True), (new, True), (when, False)])
    group += body
    return table


class TransitionsDirective(Directive):
    """``.. flowkit-transitions:: TABLE_NAME``: the table's pairs, one row each."""

    required_arguments = 1
    optional_arguments = 0
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        try:
            table = build_table(name)
        except ValueError as err:
            return [self.state_machine.reporter.error(str(err), line=self.lineno)]
        env = getattr(self.state.document.settings, "env", None)
        if env is not None:
            # Rebuild the page when the state tables (or this renderer) change.
            env.note_dependency(inspect.getfile(states))
            env.note_dependency(__file__)
        return [table]


def setup(app: Any) -> dict[str, Any]:
    """Register the directive with Sphinx."""
    app.add_directive("flowkit-transitions", TransitionsDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
