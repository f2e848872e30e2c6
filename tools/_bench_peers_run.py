"""How the peer benchmarks start a measured child: its environment, its time-out, its output.

``tools/bench_peers.py`` and ``tools/bench_sleep_timeline.py`` both run
library code in fresh interpreters and read one JSON line back; they must see
the libraries the same way (no telemetry, compiled bytecode, this checkout's
flowkit), so both start their children here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from _child_env import child_env

__all__ = ["CHILD_ENV", "CHILD_SCRIPT", "ROOT", "run_child"]

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
#: The child that runs one library's workload (what run_child starts by default).
CHILD_SCRIPT = TOOLS / "_bench_peers_child.py"

# Peers must not phone home from this machine (and would only time out trying).
# Prefect's children also get PREFECT_API_URL: the server the benchmark started.
CHILD_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "ERROR",
    "DO_NOT_TRACK": "1",
    "HAMILTON_TELEMETRY_ENABLED": "false",
    # Every library runs from compiled bytecode, as an installed package does (pip
    # compiles the peers when it installs them): a private cache keeps the checkout
    # clean, and the benchmarks' untimed warm-up runs fill it before anything is timed.
    # Without it flowkit compiled its engine's sources inside every timed run (~60 ms
    # on this machine).
    "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "flowkit-bench-pycache"),
    # The checkout's flowkit is measured, whatever the interpreter has installed.
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}


def run_child(
    args: list[str],
    timeout: float,
    extra_env: Mapping[str, str] | None = None,
    script: Path = CHILD_SCRIPT,
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; kill its whole process group on time-out or Ctrl-C."""
    command = [sys.executable, str(script), *args]
    env = child_env({**os.environ, **CHILD_ENV, **(extra_env or {})})
    with subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # whatever it starts goes with it
    ) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            return {"ok": False, "timeout": True, "error": f"over {timeout:.0f} s"}
        except BaseException:  # Ctrl-C: its own session does not get the SIGINT
            os.killpg(child.pid, signal.SIGKILL)
            raise
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "error": f"exit {child.returncode}: {tail}"[:300]}
    return json.loads(lines[-1])  # type: ignore[no-any-return]
