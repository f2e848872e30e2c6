"""A spec's flow is an ordinary flow: persisted to SQLite, stopped or killed, and resumed as in Python."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from flowkit import declarative, engines, states
from flowkit.persistence import backends
from flowkit.types.notifier import Notifier
from tests.declarative import tasks

SPEC = {
    "name": "resumable",
    "tasks": {
        "a": {"task": "tests.declarative.tasks:Recorded", "inputs": {"value": 1}},
        "b": {"task": "tests.declarative.tasks:Recorded", "inputs": {"value": {"v": "${a}"}}},
        "c": {"task": "tests.declarative.tasks:Recorded", "inputs": {"value": "got ${b.v}"}},
    },
}


def test_a_suspended_spec_flow_resumes_from_sqlite(tmp_path: Path) -> None:
    tasks.CALLS.clear()
    backend = backends.fetch({"connection": f"sqlite:///{tmp_path / 'flows.db'}"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    try:
        engine = engines.load(declarative.load_flow(SPEC), backend=backend)

        def stop_after_b(state: str, details: dict[str, Any]) -> None:
            if details["task_name"] == "b" and state == states.SUCCESS:
                engine.suspend()

        engine.atom_notifier.register(Notifier.ANY, stop_after_b)
        engine.run()
        assert engine.storage.get_flow_state() == states.SUSPENDED
        flow_uuid = engine.storage.flow_uuid
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(flow_uuid)

        resumed = engines.load(declarative.load_flow(SPEC), flow_detail=detail, backend=backend)
        resumed.run()
        assert resumed.storage.get_flow_state() == states.SUCCESS
        assert resumed.storage.fetch_all() == {"a": 1, "b": {"v": 1}, "c": "got 1"}
        assert [name for name, _ in tasks.CALLS] == ["a", "b", "c"]
    finally:
        backend.close()


CRASHING_TASKS = '''
import os
from pathlib import Path

from flowkit.patterns import graph_flow, linear_flow
from flowkit import retry, task


def note(text: str) -> None:
    with Path("calls").open("a") as calls:
        calls.write(text + "\\n")


def pair(x: int) -> tuple:
    note(f"pair {x}")
    return (x, {"v": x * 2})


def use(text: str, v: int) -> str:
    note(f"use {text} {v}")
    if not Path("crashed").exists():  # the first call kills the process, as a power cut would
        Path("crashed").write_text("")
        os._exit(9)
    return f"{text}/{v}"


def use_tried(first: int, second: dict, tried: int) -> str:
    return use(f"got {first} try {tried}", second["v"])


def by_hand():
    """The flow of crash.yaml, written in Python."""
    return graph_flow.Flow("crashy").add(
        task.FunctorTask(pair, name="p", provides=("first", "second"), inject={"x": 3}),
        linear_flow.Flow("s", retry=retry.ForEach([1, 2], provides="tried")).add(
            task.FunctorTask(use_tried, name="u", provides="u")
        ),
    )
'''

CRASH_SPEC = """\
name: crashy
tasks:
  p: {task: crashing:pair, inputs: {x: 3}, provides: [first, second]}
  s:
    flow: linear
    retry: {controller: for_each, values: [1, 2], provides: tried}
    tasks:
      u: {task: crashing:use, inputs: {text: "got ${first} try ${tried}", v: "${second.v}"}}
"""


def test_a_declared_flow_resumes_after_a_crash_as_the_python_flow_does(tmp_path: Path) -> None:
    from tests.cli.conftest import flowkit_cmd

    seen = []
    for target in ("crash.yaml", "crashing:by_hand"):
        where = tmp_path / target.replace(":", "_")
        where.mkdir()
        (where / "crashing.py").write_text(CRASHING_TASKS)
        (where / "crash.yaml").write_text(CRASH_SPEC)
        db = f"sqlite:///{where}/flows.db"
        options = ("--connection", db, "--no-progress", "--report", "json")
        crashed = flowkit_cmd("run", target, *options, cwd=where)
        resumed = flowkit_cmd("flows", "resume", "crashy", *options, cwd=where)
        assert crashed.returncode == 9, crashed.stderr
        assert resumed.returncode == 0, resumed.stderr
        import json

        report = json.loads(resumed.stdout)
        atoms = {a["name"]: (a["state"], a["result"]) for a in report["atoms"]}
        seen.append((atoms, (where / "calls").read_text().splitlines()))
    assert seen[0] == seen[1]
    atoms, calls = seen[0]
    # p is not run again; u, in doubt when the process died, is run again with the same try
    assert calls == ["pair 3", "use got 3 try 1 6", "use got 3 try 1 6"]
    assert atoms["u"] == ("SUCCESS", repr("got 3 try 1/6"))
