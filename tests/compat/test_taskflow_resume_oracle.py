"""TaskFlow 6.5 as an oracle for a suspended run resumed from SQLite by a new engine.

``test_taskflow_oracle.py`` resumes a suspended run on the same engine, in memory.
A service resumes elsewhere: the flow is built again, and a new engine loads the
flow detail the first one saved to the database. Each case here suspends a
scenario of that module at one point (from a listener, on the serial or the
parallel engine), then builds the flow afresh and loads the stored flow detail
until the run ends, on both libraries, and compares the calls made into the atoms
after the resume, the flow's and every atom's final state, and what was raised.

A retry's history is compared by the failures of each attempt only: TaskFlow 6.5
reads back the first attempt's result as the failure that ended it (see
:func:`test_a_for_each_retry_resumed_from_sqlite_tries_each_value_once`, and
``doc/migrating.rst``).
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import Any

import pytest

from tests.compat.test_taskflow_oracle import (
    SCENARIOS,
    Builder,
    Lib,
    _atom_names,
    _error_summary,
    for_each,
)

# Importing taskflow pulls in oslo_utils.eventletutils, which warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:oslo_utils.eventletutils")

FLOW_UUID = "7f1b59f6-5e1a-4a41-9d36-7b7a3c1f0c2e"


def _retry_names(flow: Any) -> set[str]:
    """The names of the retries in ``flow`` and its sub-flows."""
    found: set[str] = set()
    retry = getattr(flow, "retry", None)
    if retry is not None:
        found.add(retry.name)
    if hasattr(flow, "iter_nodes"):
        for child, _meta in flow.iter_nodes():
            found |= _retry_names(child)
    return found


def _suspended_then_resumed(
    root: str, build: Builder, at: tuple[str, str], kind: str, path: Path
) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """Suspend ``build``'s run the first time ``at`` is announced, then resume it from SQLite until it ends.

    Returns what the run ended with, and the values retries gave (``(retry, value)``)
    after the resume.
    """
    lib = Lib(root)
    backends = importlib.import_module(f"{root}.persistence.backends")
    models = importlib.import_module(f"{root}.persistence.models")
    backend = backends.fetch({"connection": f"sqlite:///{path / root}.db"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    book = models.LogBook("book")
    flow_detail = models.FlowDetail("f", FLOW_UUID)
    book.add(flow_detail)
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
    engine = lib.engines.load(build(lib), flow_detail=flow_detail, book=book, backend=backend, engine=kind)
    asked: list[bool] = []

    def suspend_once(state: str, details: dict[str, Any]) -> None:
        if (details.get("task_name", details.get("retry_name")), state) == at and not asked:
            asked.append(True)
            engine.suspend()

    engine.atom_notifier.register(engine.atom_notifier.ANY, suspend_once)
    engine.run()
    found: dict[str, Any] = {"suspended": engine.storage.get_flow_state(), "error": None}
    lib.journal.calls.clear()
    handed_out: list[Any] = []

    def note_retry_value(state: str, details: dict[str, Any]) -> None:
        if "retry_name" in details:
            handed_out.append((details["retry_name"], details["result"]))

    for _attempt in range(3):
        with contextlib.closing(backend.get_connection()) as conn:
            stored = conn.get_logbook(book.uuid).find(flow_detail.uuid)
        flow = build(lib)
        resumed = lib.engines.load(flow, flow_detail=stored, book=book, backend=backend, engine=kind)
        resumed.atom_notifier.register("SUCCESS", note_retry_value)
        try:
            resumed.run()
        except Exception as err:  # the oracle compares what is raised
            found["error"] = _error_summary(err)
        storage = resumed.storage
        if storage.get_flow_state() != "SUSPENDED":
            break
    found["calls"] = [call for call in lib.journal.calls if call[0] != "on_failure"]
    found["flow_state"] = storage.get_flow_state()
    found["atom_states"] = {name: storage.get_atom_state(name) for name in _atom_names(flow)}
    found["histories"] = {
        name: [sorted(failures) for _result, failures in storage.get_retry_history(name)]
        for name in sorted(_retry_names(flow))
    }
    backend.close()
    return found, handed_out


RESUME_POINTS = {
    "linear-failure": ("b", "REVERTING"),
    "times-recovering": ("b", "FAILURE"),
    "nested-times-recovering": ("r2", "RETRYING"),
    "inner-revert-outer-retries": ("a", "REVERTED"),
    "revert-all": ("c", "FAILURE"),
    "decider-in-retried-flow": ("c", "FAILURE"),
    "decider-flow": ("a", "SUCCESS"),
    "decider-into-subflow-atom": ("a", "SUCCESS"),
}


@pytest.mark.parametrize("kind", ["serial", "parallel"])
@pytest.mark.parametrize("name", sorted(RESUME_POINTS))
def test_a_run_suspended_and_resumed_from_sqlite_ends_as_in_taskflow(
    name: str, kind: str, tmp_path: Path
) -> None:
    build, options, _exact = SCENARIOS[name]
    assert not options
    at = RESUME_POINTS[name]
    expected, _values = _suspended_then_resumed("taskflow", build, at, kind, tmp_path)
    actual, _values = _suspended_then_resumed("flowkit", build, at, kind, tmp_path)
    assert expected["suspended"] == "SUSPENDED", "the scenario must suspend"
    assert actual == expected


def _for_each_values_tried(root: str, tmp_path: Path) -> tuple[list[Any], str]:
    """The values a ForEach retry gave after a suspend at its first failure and a resume from SQLite."""
    found, handed_out = _suspended_then_resumed(root, for_each, ("b", "REVERTED"), "serial", tmp_path)
    return [value for _name, value in handed_out], found["flow_state"]


def test_a_for_each_retry_resumed_from_sqlite_tries_each_value_once(tmp_path: Path) -> None:
    # ForEach(["x", "y", "z"]) over a task failing its first two calls, suspended
    # once "x" has failed (the task is built again on the resume, so it fails twice
    # more). TaskFlow reads the first attempt's result back as the failure that ended
    # it, so "x" counts as untried: it hands out x, y and z again, and the third call
    # succeeds. flowkit keeps the history as written: y and z, both fail, and the
    # flow reverts. (doc/migrating.rst)
    tried, state = _for_each_values_tried("flowkit", tmp_path)
    assert (tried, state) == (["y", "z"], "REVERTED")
    tried, state = _for_each_values_tried("taskflow", tmp_path)
    assert (tried, state) == (["x", "y", "z"], "SUCCESS")
