"""Crash fuzzing of dynamic runs: SIGKILL a spawned fan-out or a loop at random points, resume, check.

Like ``test_crash_fuzz.py`` (same kill points, same child protocol; the
flows are in ``_dynamic_fuzz_child.py``: a fan-out, one reverted by a late
failure, a nested fan-out whose spawned tasks spawn, loops that end or are
exhausted, a loop that spawns in each iteration, a loop its own retry runs twice), on
SQLite and PostgreSQL. After
the run ends it checks:

- the final flow and atom states are those of an uninterrupted run (every
  spawned child included);
- an atom stored SUCCESS at a kill is never announced RUNNING again in the
  same loop iteration (a spawner, or a spawned child, never runs again);
- in the fan-out, only atoms in flight at a kill execute twice;
- in a reverted flow every atom that executed (each spawned child
  included) is reverted, and more than once only if its revert was in
  flight at a kill.

``FLOWKIT_FUZZ=long`` (or a number of seeds) runs more cases.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowkit import states
from flowkit.persistence import backends

CHILD = Path(__file__).with_name("_dynamic_fuzz_child.py")
_SETTING = os.environ.get("FLOWKIT_FUZZ", "")
SEEDS = 20 if _SETTING == "long" else int(_SETTING) if _SETTING.isdigit() else 2
MAX_POINT = 60
MAX_SEGMENTS = 12

_CHILDREN = [f"c{i}" for i in range(5)]
_FAN = ["t0", "fan", *_CHILDREN, "total"]
EXPECTED: dict[str, tuple[str, dict[str, str]]] = {
    "fanout_ok": (states.SUCCESS, dict.fromkeys(_FAN, states.SUCCESS)),
    "fanout_fails": (states.REVERTED, dict.fromkeys([*_FAN, "boom"], states.REVERTED)),
    "loop_ok": (
        states.SUCCESS,
        dict.fromkeys(["t0", "poll", "step", "poll-loop^until", "tail"], states.SUCCESS),
    ),
    "loop_fails": (
        states.REVERTED,
        dict.fromkeys(["t0", "poll", "step", "poll-loop^until"], states.REVERTED),
    ),
}
_NESTED = (
    ["t0", "fan", "total"] + [f"s{i}" for i in range(3)] + [f"s{i}.{j}" for i in range(3) for j in range(2)]
)
EXPECTED["nested_ok"] = (states.SUCCESS, dict.fromkeys(_NESTED, states.SUCCESS))
EXPECTED["loop_spawn_ok"] = (
    states.SUCCESS,
    dict.fromkeys(["poll", "fan", "poll-loop^until", "total", *_CHILDREN], states.SUCCESS),
)
EXPECTED["loop_retry_fails"] = (
    states.REVERTED,
    dict.fromkeys(["again", "poll", "step", "poll-loop^until"], states.REVERTED),
)
CASES = [
    ("parallel", "fanout_ok"),
    ("serial", "fanout_fails"),
    ("parallel", "nested_ok"),
    ("serial", "loop_ok"),
    ("parallel", "loop_fails"),
    ("serial", "loop_spawn_ok"),
    ("parallel", "loop_retry_fails"),
]


def _stored(backend: Any, book: str) -> tuple[str | None, dict[str, tuple[str, int]]]:
    """The stored flow state and ``{atom: (state, iteration)}``."""
    with contextlib.closing(backend.get_connection()) as conn:
        flows = list(conn.get_flows_for_book(book, lazy=True))
        if not flows:
            return None, {}
        (fd,) = flows
        fd = conn.get_flow_details(fd.uuid)
        return fd.state or states.PENDING, {
            ad.name: (ad.state, int((ad.meta or {}).get("iteration", 0))) for ad in fd
        }


def _lines(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [line.split(" ") for line in log.read_text().splitlines() if line]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fuzz.db'}"
    return str(request.getfixturevalue("postgresql_db_url"))


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize(("engine", "flow"), CASES)
def test_a_dynamic_run_killed_at_random_points_resumes_to_the_uninterrupted_outcome(
    tmp_path: Path, url: str, engine: str, flow: str, seed: int
) -> None:
    rng = random.Random(f"{url.split(':', maxsplit=1)[0]}-{engine}-{flow}-{seed}")
    backend = backends.fetch({"connection": url})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    book = str(uuid.uuid4())
    log = tmp_path / "calls.log"
    log.touch()
    mode = "start"
    kills: list[tuple[dict[str, tuple[str, int]], int]] = []
    try:
        for segment in range(MAX_SEGMENTS):
            die_at = rng.randint(1, MAX_POINT) if segment < MAX_SEGMENTS - 1 else 0
            done = subprocess.run(
                [sys.executable, str(CHILD), url, book, mode, engine, flow, str(die_at), str(log)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode not in (0, -9):
                raise AssertionError(f"child failed ({done.returncode}):\n{done.stderr}")
            flow_state, atoms = _stored(backend, book)
            if mode == "start" and flow_state is None:
                continue
            mode = "resume"
            if done.returncode == 0 or flow_state in (states.SUCCESS, states.REVERTED):
                # Ended (a kill after the last write changes nothing; resuming a
                # REVERTED flow would run it again from the start, by design).
                break
            kills.append((atoms, len(_lines(log))))
        calls = _lines(log)
        want_flow, want_atoms = EXPECTED[flow]
        flow_state, atoms = _stored(backend, book)
        assert flow_state == want_flow
        assert {name: state for name, (state, _it) in atoms.items()} == want_atoms
        if flow != "loop_retry_fails":
            # There the retry's second attempt runs iteration 1 again, by design:
            # the log's iteration numbers cannot tell the attempts apart.
            _check_no_success_reruns(calls, kills)
        if flow.startswith(("fanout", "nested")):
            _check_only_in_flight_rerun(calls, kills)
        if want_flow == states.REVERTED:
            # The loop's retry reverts its scope after each of its two attempts.
            _check_reverts(calls, kills, 2 if flow == "loop_retry_fails" else 1)
    finally:
        backend.close()


def _check_no_success_reruns(
    calls: list[list[str]], kills: list[tuple[dict[str, tuple[str, int]], int]]
) -> None:
    for atoms, at in kills:
        for line in calls[at:]:
            if line[0] == "running":
                name, iteration = line[1], int(line[2])
                state, stored_iteration = atoms.get(name, (states.PENDING, 0))
                assert not (state == states.SUCCESS and stored_iteration == iteration), (
                    f"{name} was SUCCESS in iteration {iteration} at a kill and ran again in it"
                )


def _check_only_in_flight_rerun(
    calls: list[list[str]], kills: list[tuple[dict[str, tuple[str, int]], int]]
) -> None:
    for atoms, at in kills:
        before = {line[2] for line in calls[:at] if line[:2] == ["execute", "start"]}
        again = {line[2] for line in calls[at:] if line[:2] == ["execute", "start"] and line[2] in before}
        in_flight = {name for name, (state, _it) in atoms.items() if state == states.RUNNING}
        assert again <= in_flight, f"executed again though not in flight: {again - in_flight}"


def _check_reverts(
    calls: list[list[str]], kills: list[tuple[dict[str, tuple[str, int]], int]], times: int
) -> None:
    executed = {line[2] for line in calls if line[:2] == ["execute", "start"]}
    reverted = Counter(line[2] for line in calls if line[:2] == ["revert", "done"])
    assert executed <= set(reverted), f"executed but never reverted: {executed - set(reverted)}"
    in_flight_reverts = {
        name for atoms, _at in kills for name, (state, _it) in atoms.items() if state == states.REVERTING
    }
    twice = {name for name, count in reverted.items() if count > times}
    assert twice <= in_flight_reverts, f"reverted more than once without a kill mid-revert: {twice}"
