"""Run a snippet of Python in a fresh interpreter that imports this checkout's flowkit.

For what only a new process shows: what a first run imports, what a forked
child inherits, whether the process exits.
"""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["run_python"]


def run_python(
    code: str, *args: str, no_site: bool = False, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code args...`` (``-S`` with ``no_site``), with this process's ``sys.path``.

    Output is captured as text; a run longer than 60 s fails the test.
    """
    flags = ["-S"] if no_site else []
    return subprocess.run(
        [sys.executable, *flags, "-c", code, *args],
        check=check,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )
