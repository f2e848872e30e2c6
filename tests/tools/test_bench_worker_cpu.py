"""tools/bench_worker_cpu.py stays runnable: a tiny run of this checkout prints its per-request row."""

from __future__ import annotations

import subprocess
import sys

from tests.tools._load import TOOLS

ROOT = TOOLS.parent


def test_a_tiny_run_prints_a_row_per_checkout(redis_flushed_url: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(TOOLS / "bench_worker_cpu.py"),
            "--redis",
            redis_flushed_url,
            "--tasks",
            "20",
            "--runs",
            "1",
            "--rounds",
            "1",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    header, row = done.stdout.strip().splitlines()[-2:]
    for column in ("tasks/s", "cpu", "reader", "writer", "MULTI", "commands"):
        assert column in header
    assert row.split()[0] == ROOT.name[:12]
