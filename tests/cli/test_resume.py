"""``flowkit flows resume``: after a SIGKILL, the dry-run plan is what the resume then does."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.cli.conftest import FLOWKIT, SOURCE_ROOT, command_env, flowkit_cmd, flowkit_json
from tests.conftest import wait_until


def _run_until_killed(target: str, connection: str, marker: Path, *extra: str) -> None:
    """Start ``flowkit run TARGET``, wait for it to block on ``marker``, SIGKILL it."""
    env = command_env(FLOWKIT_TEST_MARKER=str(marker))
    proc = subprocess.Popen(
        [FLOWKIT, "run", target, "--connection", connection, "--no-progress", *extra],
        env=env,
        cwd=SOURCE_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(marker.exists, timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _what_run_did(connection: str, flow: str, run: int) -> tuple[set[str], set[str]]:
    """The atoms whose execute (RUNNING) and revert (REVERTING) started in run ``run``."""
    events: list[dict[str, Any]] = flowkit_json("flows", "show", flow, "--connection", connection)["events"]
    mine = [e for e in events if e["run"] == run and e["kind"] != "flow"]
    return {e["name"] for e in mine if e["state"] == "RUNNING"}, {
        e["name"] for e in mine if e["state"] == "REVERTING"
    }


def _plan(connection: str, flow: str, env: dict[str, str]) -> dict[str, Any]:
    plan: dict[str, Any] = flowkit_json(
        "flows", "resume", flow, "--dry-run", "--connection", connection, env=env
    )
    return plan


def test_resume_after_sigkill_in_execute_does_exactly_the_plan(connection: str, tmp_path: Path) -> None:
    marker = tmp_path / "blocked"
    _run_until_killed("tests.cli._flows:make_blocking", connection, marker)
    env = command_env(FLOWKIT_TEST_MARKER=str(marker))
    plan = _plan(connection, "blocking", env)
    actions = {a["name"]: a["action"] for a in plan["atoms"]}
    assert actions == {"a": "skip", "b": "skip", "c": "rerun", "d": "run"}
    text = flowkit_cmd("flows", "resume", "blocking", "--dry-run", "--connection", connection, env=env)
    assert "in doubt" in text.stdout
    # The dry run changed nothing.
    assert flowkit_json("flows", "show", "blocking", "--connection", connection)["state"] == "RUNNING"

    resumed = flowkit_cmd("flows", "resume", "blocking", "--connection", connection, "--no-progress", env=env)
    assert resumed.returncode == 0, resumed.stderr
    ran, reverted = _what_run_did(connection, "blocking", run=2)
    assert ran == {
        a["name"] for a in plan["atoms"] if a["action"] in ("run", "rerun", "retry") or a["then_run"]
    }
    assert reverted == {a["name"] for a in plan["atoms"] if a["action"] in ("revert", "rerevert", "retry")}
    shown = flowkit_json("flows", "show", "blocking", "--connection", connection)
    assert shown["state"] == "SUCCESS" and shown["runs"] == 2
    c_events = [e for e in shown["events"] if e["name"] == "c" and e["state"] == "RUNNING"]
    assert c_events[-1]["cause"]["kind"] == "resumed"


def test_show_says_since_when_an_atom_of_a_killed_run_is_running(connection: str, tmp_path: Path) -> None:
    # A run whose process died looks like one under way; without a time an
    # operator could not tell a stuck atom from a busy one.
    before = time.time()
    _run_until_killed("tests.cli._flows:make_blocking", connection, tmp_path / "blocked")
    shown = flowkit_cmd("flows", "show", "blocking", "--connection", connection)
    assert shown.returncode == 0, shown.stderr
    found = re.search(r"^  c  RUNNING +since (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$", shown.stdout, re.M)
    assert found, shown.stdout
    since = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    assert int(before) <= since <= time.time()
    # Why has d not run? Not "it never ran; the flow started": c is under way (or stuck).
    why = flowkit_cmd("flows", "why", "blocking", "d", "--connection", connection)
    assert why.returncode == 0, why.stderr
    assert why.stdout.splitlines()[:2] == [
        "d is PENDING:",
        "  it has not run yet; the flow is RUNNING with these under way:",
    ]
    assert why.stdout.splitlines()[2].startswith("  c RUNNING (attempt 1, run 1): 'b' completed; since ")


def test_resume_keeps_the_event_log_of_spawned_atoms_and_tells_their_restart(
    connection: str, tmp_path: Path
) -> None:
    # Spawned atoms are spliced in again only as the resumed run goes on: their
    # first run's events used to be overwritten (and renumbered over) by the
    # second's, and the restart of the one in doubt went unrecorded.
    marker = tmp_path / "blocked"
    _run_until_killed("tests.cli._flows:make_spawning", connection, marker)
    before = flowkit_json("flows", "show", "spawning", "--connection", connection)["events"]
    env = command_env(FLOWKIT_TEST_MARKER=str(marker))
    resumed = flowkit_cmd("flows", "resume", "spawning", "--connection", connection, "--no-progress", env=env)
    assert resumed.returncode == 0, resumed.stderr
    shown = flowkit_json("flows", "show", "spawning", "--connection", connection)
    events = shown["events"]
    seqs = [e["seq"] for e in events]
    assert len(seqs) == len(set(seqs))
    assert all(e in events for e in before)  # nothing of run 1 lost
    blocks = [(e["run"], e["state"], e["cause"]["kind"]) for e in events if e["name"] == "blocks"]
    assert blocks == [(1, "RUNNING", "ready"), (2, "RUNNING", "resumed"), (2, "SUCCESS", "returned")]
    attempts = {a["name"]: a["attempts"] for a in shown["atoms"]}
    assert attempts["s1"] == 1 and attempts["blocks"] == 2 and attempts["s2"] == 1


def test_resume_after_sigkill_in_revert_does_exactly_the_plan(connection: str, tmp_path: Path) -> None:
    marker = tmp_path / "blocked"
    _run_until_killed("tests.cli._flows:make_stuck_revert", connection, marker, "--store", "amount=500")
    env = command_env(FLOWKIT_TEST_MARKER=str(marker))
    plan = _plan(connection, "stuck-revert", env)
    actions = {a["name"]: a["action"] for a in plan["atoms"]}
    assert actions == {"a": "revert", "b": "rerevert", "charge": "skip"}

    resumed = flowkit_cmd(
        "flows", "resume", "stuck-revert", "--connection", connection, "--no-progress", env=env
    )
    assert resumed.returncode == 1
    ran, reverted = _what_run_did(connection, "stuck-revert", run=2)
    assert ran == {
        a["name"] for a in plan["atoms"] if a["action"] in ("run", "rerun", "retry") or a["then_run"]
    }
    assert reverted == {a["name"] for a in plan["atoms"] if a["action"] in ("revert", "rerevert", "retry")}
    assert flowkit_json("flows", "show", "stuck-revert", "--connection", connection)["state"] == "REVERTED"


def test_resume_after_sigkill_in_a_retry_revert_does_exactly_the_plan(
    connection: str, tmp_path: Path
) -> None:
    marker = tmp_path / "blocked"
    _run_until_killed("tests.cli._flows:make_retried", connection, marker)
    env = command_env(FLOWKIT_TEST_MARKER=str(marker))
    plan = _plan(connection, "retried", env)
    planned = {a["name"]: (a["action"], a["then_run"]) for a in plan["atoms"]}
    assert planned == {
        "a": ("skip", False),
        "r1": ("retry", False),
        "b": ("rerevert", True),
        "c": ("skip", True),
        "d": ("skip", True),
    }

    resumed = flowkit_cmd("flows", "resume", "retried", "--connection", connection, "--no-progress", env=env)
    assert resumed.returncode == 0, resumed.stderr
    ran, reverted = _what_run_did(connection, "retried", run=2)
    assert ran == {
        a["name"] for a in plan["atoms"] if a["action"] in ("run", "rerun", "retry") or a["then_run"]
    }
    assert reverted == {a["name"] for a in plan["atoms"] if a["action"] in ("revert", "rerevert")}
    assert flowkit_json("flows", "show", "retried", "--connection", connection)["state"] == "SUCCESS"


def test_the_plan_of_a_failed_flow_says_an_atom_before_a_failed_revert_stays_as_it_is(
    connection: str,
) -> None:
    # b's revert failed, so a's revert, which waits for b's, never runs: the plan
    # said "revert" for a, and an operator expected the resume to undo it.
    run = flowkit_cmd(
        "run", "tests.cli._flows:make_revert_fails", "--store", "amount=500", "--connection", connection
    )
    assert run.returncode == 1
    plan = _plan(connection, "revert-fails", command_env())
    actions = {a["name"]: a["action"] for a in plan["atoms"]}
    assert actions == {"a": "blocked", "b": "stuck", "charge": "skip"}
    assert "'b'" in next(a["reason"] for a in plan["atoms"] if a["name"] == "a")

    resumed = flowkit_cmd("flows", "resume", "revert-fails", "--connection", connection, "--no-progress")
    assert resumed.returncode == 1
    ran, reverted = _what_run_did(connection, "revert-fails", run=2)
    assert ran == set() and reverted == {
        a["name"] for a in plan["atoms"] if a["action"] in ("revert", "rerevert")
    }
    atoms = {
        a["name"]: a["state"]
        for a in flowkit_json("flows", "show", "revert-fails", "--connection", connection)["atoms"]
    }
    assert atoms == {"a": "SUCCESS", "b": "REVERT_FAILURE", "charge": "REVERTED"}


def test_a_flow_left_failed_by_never_resolve_is_planned_held_and_reverted_by_hand(connection: str) -> None:
    # The plan said "resolve" and "run" while the resume, with the run's
    # never_resolve engine, did nothing; and --dry-run ignored --engine.
    engine = "serial://?never_resolve=true"
    run = flowkit_cmd("run", "tests.cli._flows:make_shop", "--store", "amount=500", "--engine", engine,
                      "--connection", connection)  # fmt: skip
    assert run.returncode == 1
    plan = _plan(connection, "shop", command_env())
    actions = {a["name"]: a["action"] for a in plan["atoms"]}
    assert actions == {"reserve": "skip", "r1": "skip", "charge": "held", "ship": "held"}
    resumed = flowkit_cmd("flows", "resume", "shop", "--connection", connection, "--no-progress")
    assert resumed.returncode == 1
    assert _what_run_did(connection, "shop", run=2) == (set(), set())

    # By hand: the same flow resumed with an engine that resolves failures is reverted.
    by_hand = flowkit_json(
        "flows", "resume", "shop", "--dry-run", "--engine", "serial", "--connection", connection
    )
    assert {a["name"]: a["action"] for a in by_hand["atoms"]}["charge"] == "resolve"
    reverted = flowkit_cmd("flows", "resume", "shop", "--engine", "serial", "--connection", connection)
    assert reverted.returncode == 1
    assert flowkit_json("flows", "show", "shop", "--connection", connection)["state"] == "REVERTED"


def test_resume_of_a_flow_without_a_factory_says_so(tmp_path: Path) -> None:
    from flowkit import engines
    from flowkit.persistence import backends
    from tests.cli._flows import make_blocking

    url = f"sqlite:///{tmp_path}/plain.db"
    with backends.backend(url) as backend:
        engine = engines.load(make_blocking(), backend=backend)
        engine.compile()
        engine.prepare()
        uuid = engine.storage.flow_uuid
    done = flowkit_cmd("flows", "resume", uuid, "--connection", url)
    assert done.returncode == 2
    assert "cannot be rebuilt" in done.stderr and "records no flow factory" in done.stderr


def test_resume_of_a_flow_whose_factory_module_is_not_on_the_path_says_why_and_what_to_do(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # It said "'mod.make' cannot be imported": not that the module was missing, nor where to run.
    from flowkit import engines
    from flowkit.persistence import backends

    module = "resume_elsewhere_flows"
    (tmp_path / f"{module}.py").write_text(
        "from flowkit import task\n"
        "from flowkit.patterns import linear_flow\n"
        "class One(task.Task):\n"
        "    def execute(self):\n"
        "        return 1\n"
        "def make():\n"
        "    return linear_flow.Flow('elsewhere').add(One(provides='x'))\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    url = f"sqlite:///{tmp_path}/flows.db"
    with backends.backend(url) as backend:
        engine = engines.load_from_factory(f"{module}.make", backend=backend)
        engine.compile()
        engine.prepare()
        uuid = engine.storage.flow_uuid
    done = flowkit_cmd("flows", "resume", uuid, "--connection", url)  # run from the source tree
    assert done.returncode == 2
    assert "cannot be rebuilt" in done.stderr
    assert f"No module named '{module}'" in done.stderr
    assert "the directory the run started in" in done.stderr and "PYTHONPATH" in done.stderr


def test_a_recorded_lambda_target_that_raises_on_resume_fails_as_a_named_factory_does(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # A lambda target is recorded as flowkit run's own _called factory: its raising
    # said "cannot be rebuilt" with status 2 (bad usage), a named factory's status 1.
    from flowkit import engines
    from flowkit.persistence import backends

    module = "resume_lambda_flows"
    marker = tmp_path / "broken"
    (tmp_path / f"{module}.py").write_text(
        "import pathlib\n"
        "from flowkit import task\n"
        "from flowkit.patterns import linear_flow\n"
        "class One(task.Task):\n"
        "    def execute(self):\n"
        "        return 1\n"
        "def _build():\n"
        f"    if pathlib.Path({str(marker)!r}).exists():\n"
        "        raise RuntimeError('no config')\n"
        "    return linear_flow.Flow('lam').add(One(provides='x'))\n"
        "make = lambda: _build()\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    url = f"sqlite:///{tmp_path}/flows.db"
    with backends.backend(url) as backend:
        engine = engines.load_from_factory(
            "flowkit.cli.run._called", factory_args=[f"{module}:make"], backend=backend
        )
        engine.compile()
        engine.prepare()
        uuid = engine.storage.flow_uuid
    marker.touch()
    done = flowkit_cmd("flows", "resume", uuid, "--connection", url, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "cannot be rebuilt" in done.stderr and "raised RuntimeError: no config" in done.stderr


def test_a_dry_run_refuses_a_misspelled_engine_as_the_resume_does(tmp_path: Path) -> None:
    # The plan was printed (status 0) for --engine paralel; only the real resume refused it.
    url = f"sqlite:///{tmp_path}/flows.db"
    run = flowkit_cmd("run", "tests.cli._flows:make_shop", "--store", "amount=500", "--connection", url)
    assert run.returncode == 1
    for extra in (["--dry-run"], []):
        done = flowkit_cmd("flows", "resume", "shop", *extra, "--engine", "paralel", "--connection", url)
        assert done.returncode == 2, (extra, done.stdout, done.stderr)
        assert done.stdout == ""
        assert done.stderr.strip() == (
            "flowkit flows resume: error: --engine 'paralel': Could not find engine 'paralel' "
            "(known engines: asyncio, default, parallel, serial, worker-based, worker_based)"
        )


def test_the_dry_run_plan_escapes_what_another_process_wrote(tmp_path: Path) -> None:
    # The plan's text showed the flow's name and state raw: a newline in either,
    # written by whichever process ran the flow, forged a line of the plan and an
    # escape sequence repainted the terminal (flows list and show escape them).
    import contextlib
    import sqlite3

    database = tmp_path / "flows.db"
    connection = f"sqlite:///{database}"
    ran = flowkit_cmd(
        "run", "tests.cli._flows:make_shop", "--store", "amount=500", "--connection", connection
    )
    assert ran.returncode == 1, ran.stderr
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute("UPDATE flowdetails SET name = ?, state = ?", ("shop\x1b[2J\nforged", "FAILURE\x1b[31m"))
    [row] = flowkit_json("flows", "list", "--connection", connection)
    done = flowkit_cmd("flows", "resume", row["uuid"], "--dry-run", "--connection", connection)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout, done.stdout
    first = done.stdout.splitlines()[0]
    assert first == f"resume plan for flow 'shop\\x1b[2J\\nforged' ({row['uuid']}), now FAILURE\\x1b[31m:"


def test_a_password_in_the_engine_uri_is_not_stored_and_resume_asks_for_the_engine(tmp_path: Path) -> None:
    # `flowkit run` recorded --engine as given in the flow's metadata, for `flows resume`:
    # a Redis password in a worker-based URI was stored in clear in the database.
    database = tmp_path / "flows.db"
    url = f"sqlite:///{database}"
    engine = "worker-based://?url=redis://:hunter2@127.0.0.1:1/0"  # a closed port: the run fails
    run = flowkit_cmd("run", "tests.cli._flows:make_shop", "--store", "amount=5", "--engine", engine,
                      "--connection", url, "--no-progress")  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert all(b"hunter2" not in f.read_bytes() for f in tmp_path.glob("flows.db*"))
    [row] = flowkit_json("flows", "list", "--connection", url)
    shown = flowkit_json("flows", "show", row["uuid"], "--connection", url)
    assert "hunter2" not in json.dumps(shown)
    # The recorded engine has no password to reach Redis with: resume says what to pass.
    done = flowkit_cmd("flows", "resume", "shop", "--connection", url)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.strip() == (
        "flowkit flows resume: error: flow 'shop' ran on engine "
        "'worker-based://?url=redis://:***@127.0.0.1:1/0', whose password is not stored; "
        "pass the engine again with --engine (or --engine @PATH to read it from a file)"
    )
    # A dry run only plans: it needs no password.
    assert flowkit_cmd("flows", "resume", "shop", "--dry-run", "--connection", url).returncode == 0
