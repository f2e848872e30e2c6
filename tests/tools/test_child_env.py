"""Benchmarks start their Python children able to write bytecode, whatever the shell exports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools._child_env import child_env


def test_a_child_started_with_child_env_writes_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("FLOWKIT_BENCH_KEPT", "yes")
    probe = "import os, sys; print(sys.flags.dont_write_bytecode, os.environ['FLOWKIT_BENCH_KEPT'])"

    inherited = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    cleared = subprocess.run(
        [sys.executable, "-c", probe], env=child_env(), capture_output=True, text=True, check=True
    )

    assert inherited.stdout.split() == ["1", "yes"]
    assert cleared.stdout.split() == ["0", "yes"]
