"""Crash fuzzing: SIGKILL a run at random points, resume it until it ends, check what happened.

Each case starts a flow in a child process that kills itself at a random *kill
point* (in an ``execute``, in a ``revert``, or just before or after one of the
engine's writes; see ``_fuzz_child.py``), then resumes it in new children,
each maybe killed again, until a run ends. Then it checks:

- the final flow and atom states equal those of an uninterrupted run;
- no atom stored SUCCESS at a crash executes again;
- only the atoms stored RUNNING at a crash (the ones in flight) execute again;
- in a reverted flow, every atom that executed is reverted;
- the store stays readable after every kill.

A few dozen cases run by default; ``FLOWKIT_FUZZ=long`` (or a number of
seeds per combination) runs hundreds.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from flowkit import states
from flowkit.persistence import backends

CHILD = Path(__file__).with_name("_fuzz_child.py")
_SETTING = os.environ.get("FLOWKIT_FUZZ", "")
SEEDS = 40 if _SETTING == "long" else int(_SETTING) if _SETTING.isdigit() else 3
#: Kill points a run passes at most (a little more than the longest flow has).
MAX_POINT = 45
MAX_SEGMENTS = 12

FLOWS = {
    "serial": ["linear_ok", "linear_fails"],
    "parallel": ["graph_ok", "graph_fails"],
}
EXPECTED = {
    "linear_ok": (states.SUCCESS, dict.fromkeys(["t0", "t1", "t2", "t3", "t4"], states.SUCCESS)),
    "linear_fails": (
        states.REVERTED,
        dict.fromkeys(["t0", "t1", "t2", "t3", "t4", "boom"], states.REVERTED),
    ),
    "graph_ok": (states.SUCCESS, dict.fromkeys(["a", "b", "c", "d"], states.SUCCESS)),
    "graph_fails": (states.REVERTED, dict.fromkeys(["a", "b", "boom"], states.REVERTED)),
}


def _url(kind: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fuzz.db'}" if kind == "sqlite" else f"dir://{tmp_path / 'store'}"


def _stored(backend: Any, book: str) -> tuple[str | None, dict[str, tuple[str, str]]]:
    """The stored flow state and ``{atom: (state, intention)}``; reading must work after any kill."""
    with contextlib.closing(backend.get_connection()) as conn:
        flows = list(conn.get_flows_for_book(book, lazy=True))
        if not flows:
            return None, {}
        (fd,) = flows
        fd = conn.get_flow_details(fd.uuid)
        return fd.state or states.PENDING, {ad.name: (ad.state, ad.intention) for ad in fd}


def _segment(url: str, book: str, mode: str, engine: str, flow: str, die_at: int, log: Path) -> int:
    done = subprocess.run(
        [sys.executable, str(CHILD), url, book, mode, engine, flow, str(die_at), str(log)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode not in (0, -9):
        raise AssertionError(f"child failed ({done.returncode}):\n{done.stderr}")
    return done.returncode


def _lines(log: Path) -> list[tuple[str, str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split(" ", 2)) for line in log.read_text().splitlines() if line]  # type: ignore[misc]


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize("backend_kind", ["sqlite", "dir"])
@pytest.mark.parametrize(("engine", "flow"), [(e, f) for e, fs in FLOWS.items() for f in fs])
def test_a_run_killed_at_random_points_resumes_to_the_uninterrupted_outcome(
    tmp_path: Path, backend_kind: str, engine: str, flow: str, seed: int
) -> None:
    rng = random.Random(f"{backend_kind}-{engine}-{flow}-{seed}")
    url = _url(backend_kind, tmp_path)
    backend = backends.fetch({"connection": url})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    book = str(uuid.uuid4())
    log = tmp_path / "calls.log"
    mode = "start"
    kills: list[tuple[set[str], set[str], int]] = []
    try:
        for segment in range(MAX_SEGMENTS):
            die_at = rng.randint(1, MAX_POINT) if segment < MAX_SEGMENTS - 1 else 0
            code = _segment(url, book, mode, engine, flow, die_at, log)
            flow_state, atoms = _stored(backend, book)
            if mode == "start" and flow_state is None:
                continue  # killed before the run was filed: nothing to resume, start again
            mode = "resume"
            if code == 0:
                break
            in_flight = {name for name, (state, _) in atoms.items() if state == states.RUNNING}
            succeeded = {name for name, (state, _) in atoms.items() if state == states.SUCCESS}
            kills.append((in_flight, succeeded, len(_lines(log))))
        calls = _lines(log)
        _check_reruns(calls, kills)
        want_flow, want_atoms = EXPECTED[flow]
        flow_state, atoms = _stored(backend, book)
        assert flow_state == want_flow
        assert {name: state for name, (state, _) in atoms.items()} == want_atoms
        if want_flow == states.REVERTED:
            executed = {atom for kind, phase, atom in calls if kind == "execute" and phase == "start"}
            reverted = {atom for kind, phase, atom in calls if kind == "revert" and phase == "done"}
            assert executed <= reverted, f"executed but never reverted: {executed - reverted}"
    finally:
        backend.close()


def _check_reruns(calls: list[tuple[str, str, str]], kills: list[tuple[set[str], set[str], int]]) -> None:
    """After each kill: no SUCCESS atom executes again; only in-flight ones execute twice."""
    for in_flight, succeeded, at in kills:
        before = {atom for kind, phase, atom in calls[:at] if kind == "execute" and phase == "start"}
        after = [atom for kind, phase, atom in calls[at:] if kind == "execute" and phase == "start"]
        again = {atom for atom in after if atom in before}
        assert not again & succeeded, f"SUCCESS atoms executed again: {again & succeeded}"
        assert again <= in_flight, f"atoms executed again that were not in flight: {again - in_flight}"
