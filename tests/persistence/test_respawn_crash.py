"""A retried spawner that spawns less, killed (SIGKILL) inside its new sub-flow, then resumed.

The atom the second spawn left out must end IGNORE in the store, not stay
PENDING (with its first attempt's result) in a flow that ends SUCCESS; the
resumed run must not run the spawner again nor what finished before the kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flowkit import states
from flowkit.persistence import backends

CHILD = Path(__file__).with_name("_respawn_child.py")
REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT = 120.0


def _run_child(url: str, mode: str, marks: Path) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(CHILD), url, mode, str(marks)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode


def _stored(url: str) -> tuple[str, dict[str, tuple[str, object]]]:
    with (
        contextlib.closing(backends.fetch({"connection": url})) as backend,
        contextlib.closing(backend.get_connection()) as conn,
    ):
        (book,) = conn.get_logbooks()
        (detail,) = book
        return detail.state, {ad.name: (ad.state, ad.results) for ad in detail}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        made = f"sqlite:///{tmp_path / 'flows.db'}"
    else:
        made = str(request.getfixturevalue("postgresql_db_url"))
    with (
        contextlib.closing(backends.fetch({"connection": made})) as backend,
        contextlib.closing(backend.get_connection()) as conn,
    ):
        conn.upgrade()
    return made


def test_a_respawn_killed_midway_resumes_with_the_left_out_atom_ignored(url: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    assert _run_child(url, "start", marks) == -signal.SIGKILL
    state, atoms = _stored(url)
    assert state == states.RUNNING
    assert atoms["z"][0] == states.RUNNING  # where the process died
    assert atoms["y"] == (states.IGNORE, None)  # written with the second spawn

    assert _run_child(url, "resume", marks) == 0
    state, atoms = _stored(url)
    assert state == states.SUCCESS
    assert {name: atoms[name] for name in ("x", "y", "z", "fan", "check")} == {
        "x": (states.SUCCESS, "x@2"),
        "y": (states.IGNORE, None),
        "z": (states.SUCCESS, "z@2"),
        "fan": (states.SUCCESS, ["x@2", "z@2"]),
        "check": (states.SUCCESS, ["x@2", "z@2"]),
    }
