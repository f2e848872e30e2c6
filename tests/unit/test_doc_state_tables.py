"""The documentation's state tables are generated from flowkit.states and cannot drift.

``doc/_ext/state_tables.py`` renders ``.. flowkit-transitions:: NAME`` from the
frozensets in :mod:`flowkit.states`. These tests render each table with
docutils (no Sphinx build needed) and compare the rows with the code, and
check that ``doc/states.rst`` shows every table the code has.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from docutils import nodes
from docutils.core import publish_doctree
from docutils.parsers.rst import directives

from flowkit import states

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "doc" / "_ext" / "state_tables.py"
STATES_PAGE = ROOT / "doc" / "states.rst"


def _load_extension() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flowkit_doc_state_tables", EXTENSION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ext = _load_extension()
TABLES = ext.table_names()


def _render(source: str) -> nodes.document:
    directives.register_directive("flowkit-transitions", ext.TransitionsDirective)
    return publish_doctree(source, settings_overrides={"report_level": 5, "halt_level": 5})


def _rendered_pairs(name: str) -> list[tuple[str, str]]:
    """Render the directive for ``name`` and read (from, to) back out of the table's body rows."""
    document = _render(f".. flowkit-transitions:: {name}\n")
    tables = list(document.findall(nodes.table))
    assert len(tables) == 1, document.pformat()
    pairs = []
    for row in tables[0].findall(nodes.row):
        if isinstance(row.parent, nodes.thead):
            continue
        cells = [entry.astext().strip() for entry in row.findall(nodes.entry)]
        pairs.append((cells[0], cells[1]))
    return pairs


def test_every_public_transition_table_is_known_to_the_extension() -> None:
    assert set(TABLES) == {"JOB_TRANSITIONS", "FLOW_TRANSITIONS", "TASK_TRANSITIONS", "RETRY_TRANSITIONS"}


@pytest.mark.parametrize("name", TABLES)
def test_rendered_table_has_exactly_one_row_per_transition(name: str) -> None:
    pairs = _rendered_pairs(name)
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == set(getattr(states, name))


@pytest.mark.parametrize("name", TABLES)
def test_every_transition_says_when_it_happens(name: str) -> None:
    # RETRY_TRANSITIONS reuses TASK_TRANSITIONS' lines, so comments are looked up by pair.
    missing = [(old, new) for old, new, when in ext.transition_rows(name) if not when]
    assert missing == []


def test_a_pair_takes_the_comment_of_its_own_table() -> None:
    # PENDING -> RUNNING means "the engine starts the flow" in one table and
    # "the engine starts the atom" in the other.
    pair = (states.PENDING, states.RUNNING)
    flow_when = ext.transition_comments("FLOW_TRANSITIONS")[pair]
    task_when = ext.transition_comments("TASK_TRANSITIONS")[pair]
    assert flow_when != task_when


def test_a_table_built_from_another_inherits_its_comments() -> None:
    task_comments = ext.transition_comments("TASK_TRANSITIONS")
    retry_comments = ext.transition_comments("RETRY_TRANSITIONS")
    assert {pair: retry_comments[pair] for pair in task_comments} == task_comments


def test_rows_follow_the_order_states_are_defined_in() -> None:
    pairs = _rendered_pairs("TASK_TRANSITIONS")
    assert pairs[0] == (states.PENDING, states.RUNNING)
    firsts = [old for old, _new in pairs]
    assert firsts.index(states.RUNNING) < firsts.index(states.REVERTING)


def test_unknown_table_is_reported_as_an_error_not_rendered() -> None:
    document = _render(".. flowkit-transitions:: NO_SUCH_TRANSITIONS\n")
    assert not list(document.findall(nodes.table))
    errors = [msg for msg in document.findall(nodes.system_message) if msg["level"] >= 3]
    assert errors and "NO_SUCH_TRANSITIONS" in errors[0].astext()


def test_states_page_shows_every_transition_table() -> None:
    shown = re.findall(r"^\.\. flowkit-transitions:: (\w+)\s*$", STATES_PAGE.read_text(), flags=re.MULTILINE)
    assert sorted(shown) == sorted(TABLES)
