"""tools/bench_dask.py stays runnable: all three ways compute every result right."""

from __future__ import annotations

import subprocess
import sys

from tests import services
from tests.tools._load import TOOLS


def test_a_tiny_run_checks_every_way_and_prints_the_ratio() -> None:
    services.require_module("distributed", "'flowkit[dask]'")
    # As a script, as documented: its functions reach the workers by value.
    done = subprocess.run(
        [sys.executable, str(TOOLS / "bench_dask.py"), "--tasks", "20", "--rounds", "1", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for way in ("flowkit", "client.map", "submit each"):
        assert f"{way}: median" in done.stdout
    assert "flowkit / client.map:" in done.stdout
