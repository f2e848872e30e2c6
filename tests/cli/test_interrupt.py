"""A run stopped with Ctrl-C says how to carry on the flow it leaves behind."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import FLOWKIT, SOURCE_ROOT, command_env, flowkit_cmd, flowkit_json
from tests.conftest import wait_until


def _interrupt_run(connection: str, marker: Path) -> tuple[int, str]:
    """Start ``flowkit run`` of the blocking flow, send SIGINT once it blocks; its status and stderr."""
    proc = subprocess.Popen(
        [FLOWKIT, "run", "tests.cli._flows:make_blocking", "--connection", connection, "--no-progress"],
        env=command_env(FLOWKIT_TEST_MARKER=str(marker)),
        cwd=SOURCE_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(marker.exists, timeout=60)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode, stderr


def test_an_interrupted_run_names_the_flow_and_the_resume_that_carries_it_on(tmp_path: Path) -> None:
    # It said "flowkit run: interrupted" alone: nothing said the flow was kept, half
    # done, nor how to go on with it.
    connection = f"sqlite:///{tmp_path}/flows.db"
    marker = tmp_path / "blocked"
    status, stderr = _interrupt_run(connection, marker)
    assert status == 130, stderr
    (uuid,) = [flow["uuid"] for flow in flowkit_json("flows", "list", "--connection", connection)]
    assert stderr.strip().splitlines()[-1] == (
        f"flowkit run: interrupted: flow 'blocking' ({uuid}) is left RUNNING;"
        f" 'flowkit flows resume {uuid}' with the same --connection carries it on"
    )
    # What it says works: the resume finishes the flow.
    resumed = flowkit_cmd(
        "flows", "resume", uuid, "--connection", connection, env=command_env(FLOWKIT_TEST_MARKER=str(marker))
    )
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.parametrize("connection", ["memory://", "sqlite://", "sqlite:///:memory:"])
def test_an_interrupted_run_kept_in_memory_offers_no_resume(tmp_path: Path, connection: str) -> None:
    # An in-memory SQLite database dies with the process as memory:// does: the
    # resume offered for it found no flow.
    status, stderr = _interrupt_run(connection, tmp_path / "blocked")
    assert status == 130, stderr
    assert stderr.strip().splitlines()[-1] == (
        "flowkit run: interrupted: flow 'blocking' is lost with the process (run it with"
        " --connection URL of a database file or server to keep it for 'flowkit flows resume')"
    )
