"""TaskFlow 6.5's example scripts, run on flowkit with the import root aliased.

Each script in ``taskflow/examples`` runs in its own process through
``python -m tests.compat.taskflow_alias SCRIPT`` (so ``import taskflow.X`` gives
``flowkit.X``). It must exit 0, and where TaskFlow ships the expected output
(``NAME.out.txt``) print the same, with UUIDs masked as TaskFlow's own example test
does; for a few examples that ship none, ``taskflow_outputs/NAME.out.txt`` holds
what TaskFlow 6.5 printed when run here with kombu installed. Some of the shipped
files are older than TaskFlow 6.5 (they print atoms without the quotes 6.5 puts
around them), so when the output differs from the file, the script is also run on
the real TaskFlow: printing what TaskFlow 6.5 itself prints passes too.
An example may fail only if ``taskflow_known_differences.txt`` lists it
(``examples/NAME.py  # reason``); until all others pass, the ratchets below hold the
ground gained.

One example, ``jobboard_produce_consume_colors.py``, connects to a ZooKeeper at
``localhost:2181`` that it hard-codes (TaskFlow's CI runs one there); where nothing
listens on that port it is reported as not run, with that reason, rather than failed.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from tests.compat import taskflow_alias
from tests.compat.test_taskflow_suite import ROOT, load_known_differences

UUID_RE = re.compile("-".join(f"[0-9a-f]{{{n}}}" for n in (8, 4, 4, 4, 12)))

# Ratchets: move them only towards the goal (every example passes or is listed).
MIN_PASSED = 35
MAX_UNLISTED_FAILURES = 0

#: What TaskFlow 6.5 printed for examples that ship no output file (see its README).
RECORDED = Path(__file__).parent / "taskflow_outputs"

# Examples that connect to a ZooKeeper at this address, which they hard-code.
ZOOKEEPER_AT = ("localhost", 2181)
NEEDS_ZOOKEEPER = frozenset({"jobboard_produce_consume_colors.py"})


class Outcome(NamedTuple):
    """One example's run: its id and what went wrong (empty when it passed)."""

    case: str
    problem: str
    #: Why the example was not run (empty when it was).
    not_run: str = ""


def _listening(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1.0):
            return True
    except OSError:
        return False


def example_scripts() -> list[Path]:
    """Return TaskFlow's example scripts (not its ``example_utils`` helper)."""
    examples = taskflow_alias.real_taskflow_dir() / "examples"
    return sorted(p for p in examples.glob("*.py") if not p.stem.endswith("utils"))


def _run(script: Path, on_flowkit: bool) -> subprocess.CompletedProcess[str]:
    """Run ``script`` on flowkit (import root aliased) or on the real TaskFlow."""
    alias = ["-m", "tests.compat.taskflow_alias"] if on_flowkit else []
    command = [sys.executable, "-W", "ignore", *alias, str(script)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(
        command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def run_example(script: Path) -> Outcome:
    """Run one example on flowkit and compare its output with the shipped one, if any."""
    case = f"examples/{script.name}"
    if script.name in NEEDS_ZOOKEEPER and not _listening(ZOOKEEPER_AT):
        return Outcome(case, "", not_run="needs a ZooKeeper on localhost:2181, which it hard-codes")
    try:
        child = _run(script, on_flowkit=True)
    except subprocess.TimeoutExpired:
        return Outcome(case, "timed out after 120 s")
    if child.returncode != 0:
        last = child.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        return Outcome(case, f"exit {child.returncode}: {last[0]}")
    expected_path = script.with_suffix(".out.txt")
    if not expected_path.exists():
        expected_path = RECORDED / expected_path.name
    if expected_path.exists():
        expected = UUID_RE.sub("<SOME UUID>", expected_path.read_text(encoding="utf-8"))
        actual = UUID_RE.sub("<SOME UUID>", child.stdout)
        if actual != expected and actual != UUID_RE.sub("<SOME UUID>", _run(script, on_flowkit=False).stdout):
            diff = f"{actual}\n--- expected ---\n{expected}"
            return Outcome(case, f"output differs from {expected_path.name}:\n{diff}")
    return Outcome(case, "")


def test_taskflow_examples_run_on_flowkit() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(run_example, example_scripts()))
    known = load_known_differences()
    failed = [outcome for outcome in outcomes if outcome.problem]
    unlisted = [outcome for outcome in failed if outcome.case not in known]
    not_run = [outcome for outcome in outcomes if outcome.not_run]
    passed = len(outcomes) - len(failed) - len(not_run)
    listed = len(failed) - len(unlisted)
    summary = (
        f"TaskFlow's examples on flowkit: {passed} of {len(outcomes)} passed, {listed} listed, "
        f"{len(not_run)} not run"
    )
    print(summary)
    for outcome in not_run:
        print(f"  not run: {outcome.case}: {outcome.not_run}")
    for outcome in unlisted:
        print(f"  {outcome.case}: {outcome.problem.splitlines()[0]}")
    detail = summary + "\n" + "\n\n".join(f"{o.case}: {o.problem}" for o in unlisted)
    assert passed >= MIN_PASSED, detail
    assert len(unlisted) <= MAX_UNLISTED_FAILURES, detail
