"""``flowkit run`` on PostgreSQL when the server stops mid-run and comes back (a restart, a fail-over).

The run cannot write its progress: it must stop with one line that names the
database (password masked) and says how to continue, not a traceback nor a
second error about reading the report back; once the server is back,
``flowkit flows resume`` finishes the flow from what was stored.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests import services
from tests.cli.conftest import FLOWKIT, SOURCE_ROOT, command_env, flowkit_cmd, flowkit_json
from tests.conftest import wait_until

__all__: list[str] = []

#: The atoms of ``tests.cli._flows:make_slow``, each waiting for its gate file.
ATOMS = ("one", "two", "three")


def _running_flow(server: services.PostgresServer, dbname: str) -> str | None:
    """The uuid of the flow detail whose atom is RUNNING, if one is (read straight from the tables)."""
    try:
        with server.connect(dbname) as conn:
            row = conn.execute("SELECT parent_uuid FROM atomdetails WHERE state = 'RUNNING'").fetchone()
    except Exception:  # the tables are not there yet
        return None
    return str(row[0]) if row else None


def test_a_run_whose_database_restarts_stops_with_one_resumable_line_and_resume_finishes_it(
    postgresql_server: services.PostgresServer, postgresql_db_url: str, tmp_path: Path
) -> None:
    # A password in the URL (trust auth ignores it): the messages must mask it.
    connection = postgresql_db_url.replace("flowkit@", "flowkit:s3cret@")
    dbname = postgresql_db_url.rsplit("/", 1)[1]
    gate = tmp_path / "gate"
    gate.mkdir()
    env = command_env(FLOWKIT_TEST_GATE=str(gate))
    proc = subprocess.Popen(
        [FLOWKIT, "run", "tests.cli._flows:make_slow", "--store", "delay=0", "--connection", connection]
        + ["--no-progress", "--report", "none"],
        env=env,
        cwd=SOURCE_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        flow_uuid = wait_until(lambda: _running_flow(postgresql_server, dbname), timeout=60)
        postgresql_server.stop()
        try:
            for atom in ATOMS:  # 'one' finishes while the database is away
                (gate / atom).touch()
            _, err = proc.communicate(timeout=120)
        finally:
            postgresql_server.start()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert "s3cret" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("flowkit run: error: "), err
    assert "flowkit:***@127.0.0.1" in last, last
    assert f"flowkit flows resume {flow_uuid}" in last, last
    # The stored state is that of the last write: 'one' in doubt, the others not run yet.
    shown: dict[str, Any] = flowkit_json("flows", "show", flow_uuid, "--connection", connection)
    assert {a["name"]: a["state"] for a in shown["atoms"]} == {
        "one": "RUNNING",
        "two": "PENDING",
        "three": "PENDING",
    }
    done = flowkit_cmd("flows", "resume", flow_uuid, "--connection", connection, env=env)
    assert done.returncode == 0, done.stderr
    shown = flowkit_json("flows", "show", flow_uuid, "--connection", connection)
    assert shown["state"] == "SUCCESS"
    assert {a["name"]: a["state"] for a in shown["atoms"]} == dict.fromkeys(ATOMS, "SUCCESS")
