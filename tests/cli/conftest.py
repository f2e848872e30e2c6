"""Run the real ``flowkit`` command in subprocesses, against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import flowkit

SOURCE_ROOT = str(Path(flowkit.__file__).resolve().parent.parent)
#: The console script next to the interpreter (what ``pip install`` made).
FLOWKIT = str(Path(sys.executable).with_name("flowkit"))


def command_env(**extra: str) -> dict[str, str]:
    """The environment for a ``flowkit`` subprocess: this checkout importable, no colours."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE_ROOT, env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def flowkit_cmd(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: str | Path = SOURCE_ROOT
) -> subprocess.CompletedProcess[str]:
    """Run ``flowkit ARGS`` in ``cwd`` and return what it did (never raises on a status).

    ``cwd`` other than the checkout: for targets (spec files, task modules) a test writes to a folder
    of its own, found the way a user's are, relative to where the command runs.
    """
    return subprocess.run(
        [FLOWKIT, *args],
        capture_output=True,
        text=True,
        env=env or command_env(),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def flowkit_json(*args: str, env: dict[str, str] | None = None) -> Any:
    """Run ``flowkit ARGS --json`` expecting status 0; return the parsed output."""
    done = flowkit_cmd(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(params=["sqlite", "postgresql"])
def connection(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/flows.db"
    url: str = request.getfixturevalue("postgresql_db_url")
    return url


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return flowkit_cmd


__all__: Sequence[str] = ["FLOWKIT", "command_env", "flowkit_cmd", "flowkit_json"]
