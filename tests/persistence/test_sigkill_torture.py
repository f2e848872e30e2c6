"""SIGKILL torture: kill a durable run from outside at a seeded point, resume it elsewhere, check.

Where ``test_crash_fuzz.py`` lets a run kill itself at counted points and
compares final states, this test holds the run at one point chosen by a seed
among every point an uninterrupted run of the same flow passes (a task's
``execute`` or ``revert`` before or after its side effect, an atom or flow
state change as the engine announces it, just before or after one of the
engine's writes; see ``_torture.py``) and SIGKILLs the process from the test
when the held run has said it is there. A fresh process then resumes the run,
on the same engine or the other one (seeded too), and the test checks:

At the kill, in what the store holds:

- no atom is RUNNING or SUCCESS unless each of its predecessors is SUCCESS;
- no atom is REVERTING or REVERTED unless each of its successors is
  REVERTED or never started;
- every SUCCESS task holds the result an uninterrupted run gives it;
- (flows without a retry) no task ran whose start was not recorded (an atom
  stored PENDING has no execute logged), and no revert ran unrecorded.

After the resume:

- the flow ends in the state of an uninterrupted run, every atom with its
  state and result, and ``fetch_all()`` gives the same values;
- each task executed and reverted as many times as in an uninterrupted run,
  plus at most once more if it was stored RUNNING (executes) or REVERTING
  (reverts) at the kill: the in-doubt ones;
- (flows without a retry) a task stored SUCCESS at the kill never executes
  again, one stored REVERTED is never reverted again.

The flows include loops (a loop exhausted after 3 iterations, alone, with a
delay, beside a branch of a graph, with a retry in its body): a loop's body
runs several times, and the stored iteration numbers and history must be an
uninterrupted run's too. Some cases stop the run from within (a listener
raising ``KeyboardInterrupt``) instead of killing it: the run's last write
then stores whatever its records hold at that moment.

Every combination of engine (serial, parallel) and flow runs on SQLite, and
those of the flows that revert on PostgreSQL; one more case kills a conductor
mid-job on Redis and on ZooKeeper and lets a second conductor finish the job,
and one kills it after its flow reverted, before it consumed the job. Each failure names its seed, its
kill point and its engines. ``FLOWKIT_FUZZ=long`` (or a number) runs more
seeds per combination.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import states
from flowkit.jobs import backends as job_backends
from flowkit.persistence import backends, models
from flowkit.types.failure import Failure
from tests import services
from tests.conductors.conftest import post_flow
from tests.persistence import _torture

REPO_ROOT = Path(__file__).resolve().parents[2]
_SETTING = os.environ.get("FLOWKIT_FUZZ", "")
SEEDS = 10 if _SETTING == "long" else int(_SETTING) if _SETTING.isdigit() else 1
#: Seconds a child gets to reach its kill point, or to finish a resume.
PATIENCE = 30.0
ENGINES = ["serial", "parallel"]

Calls = collections.Counter[tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class Reference:
    """What an uninterrupted run of one flow on one engine does and leaves."""

    state: str
    atoms: dict[str, tuple[str, Any, Any, Any]]
    results: dict[str, Any]
    calls: Calls
    succeeded: dict[str, Any]
    points: list[str]


#: Points a run passes only while it is listened to (the child listens only to hold at one).
_HEARD = ("atom:", "flow:")


@functools.cache
def reference(flow: str, engine: str) -> Reference:
    """Run ``flow`` on ``engine`` without a kill (in memory, in this process).

    Its points are those a held child passes: the state changes of a run that
    listens, and the writes and calls of one that does not. A run listened to
    writes each change before announcing it (as TaskFlow), so it makes more
    writes than one nobody listens to, which batches them.
    """
    with tempfile.TemporaryDirectory(prefix="flowkit-torture-") as tmp:
        log = Path(tmp) / "calls.log"
        try:
            _torture.configure(None)
            with contextlib.closing(backends.fetch({"connection": "memory://"})) as backend:
                _torture.run(backend, str(uuid.uuid4()), "start", engine, flow, listen=False)
            quiet = [p for p in _torture.PASSED if not p.startswith(_HEARD)]
            _torture.configure(str(log))
            with contextlib.closing(backends.fetch({"connection": "memory://"})) as backend:
                book = str(uuid.uuid4())
                outcome = _torture.run(backend, book, "start", engine, flow)
                state, atoms = stored(backend, book)
            return Reference(
                state=outcome["state"],
                atoms=atoms_of(atoms.values()),
                results=json.loads(json.dumps(outcome["results"], default=repr)),
                calls=calls_in(log),
                succeeded=dict(_torture.SUCCEEDED),
                points=[p for p in _torture.PASSED if p.startswith(_HEARD)] + quiet,
            )
        finally:
            _torture.configure(None)


def plain(value: Any) -> Any:
    """``value`` with each Failure as its types and message (tracebacks differ between processes)."""
    if isinstance(value, Failure):
        return ("failure", tuple(value.exception_type_names), value.exception_str)
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def atoms_of(atoms: Any) -> dict[str, tuple[str, Any, Any, Any]]:
    """``{atom: (state, results, iteration, history)}`` of stored atom details, comparable across processes.

    The last two are a loop's (``meta["iteration"]``, ``meta["iterations"]``; None out of loops).
    """
    return {
        atom.name: (
            atom.state,
            plain(atom.results),
            (atom.meta or {}).get("iteration"),
            plain((atom.meta or {}).get("iterations")),
        )
        for atom in atoms
    }


def settled(
    atoms: dict[str, tuple[str, Any, Any, Any]], at_kill: dict[str, models.AtomDetail], ref: Reference
) -> dict[str, tuple[str, Any, Any, Any]]:
    """``atoms`` with the result of each in-doubt atom the resume reverted without running it again.

    An atom RUNNING when its run died, beside a branch whose failure had the flow
    reverting (on the parallel engine), is reverted by the resume without being run
    again to learn its result: it ends REVERTED holding none, where an uninterrupted
    run, which saw it finish first, holds its result.
    """
    out = dict(atoms)
    for name, atom in at_kill.items():
        if atom.state != states.RUNNING or name not in out or name not in ref.atoms:
            continue
        state, result, *loop = out[name]
        if state == states.REVERTED and result is None and ref.atoms[name][0] == states.REVERTED:
            out[name] = (state, ref.atoms[name][1], *loop)
    return out


def board_kind(url: str) -> str:
    return url.split(":", maxsplit=1)[0]


def stored(backend: Any, book: str) -> tuple[str, dict[str, models.AtomDetail]]:
    """The stored flow state and atom details of logbook ``book``'s only flow (a fresh read)."""
    with contextlib.closing(backend.get_connection()) as conn:
        (found,) = list(conn.get_flows_for_book(book, lazy=True))
        detail = conn.get_flow_details(found.uuid)
    return detail.state or states.PENDING, {atom.name: atom for atom in detail}


def calls_in(log: Path) -> Calls:
    """``(action, atom) -> how many times`` from a call log."""
    if not log.exists():
        return collections.Counter()
    return collections.Counter(
        (action, atom) for action, atom, _pid in (line.split() for line in log.read_text().splitlines())
    )


def check_at_kill(flow: str, ref: Reference, atoms: dict[str, models.AtomDetail], before: Calls) -> None:
    """The invariants the store must hold whenever a run dies (see the module docstring)."""
    preds = _torture.PREDECESSORS[flow]
    succs: dict[str, list[str]] = {name: [] for name in preds}
    for name, of in preds.items():
        for pred in of:
            succs[pred].append(name)
    state = {name: atom.state for name, atom in atoms.items()}
    for name, atom in atoms.items():
        if atom.state in (states.RUNNING, states.SUCCESS):
            early = {p: state[p] for p in preds[name] if state[p] != states.SUCCESS}
            assert not early, f"{name} is {atom.state} while its predecessors are {early}"
        if atom.state in (states.REVERTING, states.REVERTED):
            late = {s: state[s] for s in succs[name] if state[s] not in (states.REVERTED, states.PENDING)}
            assert not late, f"{name} is {atom.state} while its successors are {late}"
        if atom.state == states.SUCCESS and isinstance(atom, models.TaskDetail):
            assert atom.results == ref.succeeded[name], f"{name} is SUCCESS holding {atom.results!r}"
    if flow in _torture.RETRIED:
        return
    for (action, name), _count in before.items():
        if action == "execute":
            assert state[name] != states.PENDING, f"{name} executed but is stored PENDING"
        else:
            assert state[name] in (states.REVERTING, states.REVERTED), (
                f"{name} was reverted but is stored {state[name]}"
            )


#: States saying a flow's revert has begun.
_UNDOING = (states.FAILURE, states.REVERTING, states.REVERTED)


def check_after_resume(
    flow: str,
    ref: Reference,
    at_kill: dict[str, models.AtomDetail],
    before: Calls,
    total: Calls,
) -> None:
    """Each task ran as often as in an uninterrupted run, plus one more at most if it was in doubt.

    An atom RUNNING at the kill while the flow was already reverting (a branch
    beside it failed, on the parallel engine) may have run one time fewer: the
    killed run died before its side effect, and the resume reverts it without
    running it again.
    """
    in_doubt = {
        "execute": {name for name, atom in at_kill.items() if atom.state == states.RUNNING},
        "revert": {name for name, atom in at_kill.items() if atom.state == states.REVERTING},
    }
    reverting = any(atom.state in _UNDOING for atom in at_kill.values())
    for action, name in set(total) | set(ref.calls):
        extra = total[action, name] - ref.calls[action, name]
        allowed = {0, 1} if name in in_doubt[action] else {0}
        if reverting and action == "execute" and name in in_doubt[action]:
            allowed.add(-1)
        assert extra in allowed, (
            f"{name}: {action} ran {total[action, name]} times, {ref.calls[action, name]} in a run "
            f"without a kill (stored {at_kill[name].state if name in at_kill else 'nowhere'} at the kill)"
        )
    if flow in _torture.RETRIED:
        return
    after = total - before
    for name, atom in at_kill.items():
        if atom.state == states.SUCCESS:
            assert not after["execute", name], f"{name} was stored SUCCESS at the kill and executed again"
        if atom.state == states.REVERTED:
            assert not after["revert", name], f"{name} was stored REVERTED at the kill and reverted again"


def child(
    url: str, book: str, mode: str, engine: str, flow: str, point: str, tmp: Path
) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "tests.persistence._torture", url, book, mode, engine, flow, point,
        str(tmp / "held"), str(tmp / "calls.log"),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when_held(proc: subprocess.Popen[str], marker: Path, what: str, may_miss: bool = False) -> bool:
    """Wait for ``proc`` to hold at its point (its marker exists), then SIGKILL it.

    Returns False if ``proc`` ended without reaching its point, which only a
    ``may_miss`` point may do; anything else is an assertion error.
    """
    services.wait_until(
        lambda: marker.exists() or proc.poll() is not None, PATIENCE, 0.005, message=f"{what} held"
    )
    if not marker.exists():
        out, err = proc.communicate()
        if may_miss and proc.returncode == 0:
            return False
        raise AssertionError(f"{what} ended ({proc.returncode}) without reaching its point:\n{out}\n{err}")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(PATIENCE) == -signal.SIGKILL
    proc.communicate()
    return True


def interrupted_at(proc: subprocess.Popen[str], marker: Path, what: str) -> None:
    """Wait for ``proc`` to stop itself at its point (``KeyboardInterrupt``, not a kill)."""
    _out, err = proc.communicate(timeout=PATIENCE)
    assert marker.exists(), f"{what} ended ({proc.returncode}) without reaching its point:\n{err}"
    assert "KeyboardInterrupt" in err, f"{what} ended ({proc.returncode}) without its interrupt:\n{err}"


def torture(
    url: str,
    flow: str,
    engine: str,
    seed: int,
    tmp: Path,
    point: str | None = None,
    resume_on: str = "",
    interrupt: bool = False,
) -> None:
    """Kill a run of ``flow`` at ``point`` (else one chosen by ``seed``), resume it, check everything.

    ``interrupt``: the run stops itself at the point, raising ``KeyboardInterrupt`` from
    where it is (a listener, for a state change), instead of being killed there.
    """
    rng = random.Random(f"{flow}-{engine}-{seed}")
    ref = reference(flow, engine)
    # Killed before the load's write there is nothing to resume (test_durability covers it).
    choice = rng.choice([p for p in ref.points if p != "write-before#1"])
    resume_engine = rng.choice(ENGINES)
    point, resume_engine = point or choice, resume_on or resume_engine
    book = str(uuid.uuid4())
    case = f"flow={flow} engine={engine} seed={seed} point={point} resumed on {resume_engine}"
    case += " (interrupted)" if interrupt else ""
    try:
        with contextlib.closing(backends.fetch({"connection": url})) as backend:
            with contextlib.closing(backend.get_connection()) as conn:
                conn.upgrade()
            # On the parallel engine atoms ending together share a write: a run may make
            # fewer writes than the reference did. It then ends unkilled, and is checked so.
            may_miss = engine == "parallel" and point.startswith("write-")
            if interrupt:
                interrupted_at(
                    child(url, book, "start", engine, flow, f"{point}!raise", tmp),
                    tmp / "held",
                    "the first run",
                )
            else:
                kill_when_held(
                    child(url, book, "start", engine, flow, point, tmp),
                    tmp / "held",
                    "the first run",
                    may_miss,
                )
            _, at_kill = stored(backend, book)
            before = calls_in(tmp / "calls.log")
            check_at_kill(flow, ref, at_kill, before)
            resumed = child(url, book, "resume", resume_engine, flow, "-", tmp)
            out, err = resumed.communicate(timeout=PATIENCE)
            assert resumed.returncode == 0, f"the resume failed ({resumed.returncode}):\n{err}"
            outcome = json.loads(out.splitlines()[-1])
            assert outcome["state"] == ref.state
            assert outcome["results"] == ref.results
            state, atoms = stored(backend, book)
            assert state == ref.state
            assert settled(atoms_of(atoms.values()), at_kill, ref) == ref.atoms
            check_after_resume(flow, ref, at_kill, before, calls_in(tmp / "calls.log"))
    except AssertionError as err:
        err.add_note(f"torture case: {case}")
        raise


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize("flow", list(_torture.FLOWS))
@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_killed_at_a_seeded_point_on_sqlite_resumes_as_if_never_killed(
    engine: str, flow: str, seed: int, tmp_path: Path
) -> None:
    torture(f"sqlite:///{tmp_path / 'flows.db'}", flow, engine, seed, tmp_path)


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize(
    "flow", ["linear_fails", "graph_fails", "retried", "loop_exhausted", "loop_in_graph"]
)  # the reverting ones: time
@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_killed_at_a_seeded_point_on_postgresql_resumes_as_if_never_killed(
    engine: str, flow: str, seed: int, tmp_path: Path, postgresql_url: str
) -> None:
    # One database for the session's cases (each has a logbook of its own): creating one costs.
    torture(postgresql_url, flow, engine, seed + 1000, tmp_path)


#: Points at which a loop puts its body back to PENDING for its next iteration.
LOOP_RESETS = ["atom:p1:PENDING#1", "atom:p2:PENDING#1", "atom:lp^until:PENDING#1", "atom:p1:PENDING#2"]


@pytest.mark.parametrize("point", LOOP_RESETS)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_stopped_by_a_listener_as_its_loop_resets_resumes_as_if_never_stopped(
    engine: str, point: str, tmp_path: Path
) -> None:
    # The reset's first records were stored without the next iteration number (or
    # alone): the resume ran the body 3 times more, past max_iterations=3, or found
    # a body half reset and failed for a symbol its first atom had not provided yet.
    other = ENGINES[1 - ENGINES.index(engine)]
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    torture(url, "loop_exhausted", engine, 0, tmp_path, point=point, resume_on=other, interrupt=True)


# --- a conductor killed mid-job ----------------------------------------------------------------

#: Seconds a claim (Redis) or a session (ZooKeeper) lasts: a dead conductor's job is free after it.
EXPIRY = 2.0


@pytest.fixture(params=["redis", "zookeeper"])
def board_url(request: pytest.FixtureRequest) -> str:
    unique = uuid.uuid4().hex[:12]
    if request.param == "redis":
        services.require_module("redis", "redis")
        server: services.RedisServer = request.getfixturevalue("redis_server")
        server.start()
        return f"redis://127.0.0.1:{server.port}/0?namespace=torture-{unique}"
    services.require_module("kazoo", "zookeeper")
    zk: services.ZooKeeperServer = request.getfixturevalue("zookeeper_server")
    return f"zookeeper://{zk.hosts}{zk.root}/{unique}/jobs"


@contextlib.contextmanager
def conductors(
    url: str, connection: str, tmp: Path, env: dict[str, str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two ``flowkit conductor`` processes on ``url``; both killed (by PID) at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("c1", "c2"):
            command = [
                sys.executable, "-m", "tests.persistence._torture", "--conductor", "-v", "conductor",
                "--board", url, "--connection", connection, "--name", name, "--claim-expiry", str(EXPIRY),
                "--wait-timeout", "0.05",
            ]  # fmt: skip
            with open(tmp / f"{name}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        command,
                        cwd=REPO_ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, **env},
                    )
                )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(PATIENCE)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_a_conductor_killed_mid_job_at_a_seeded_point_is_taken_over_as_if_never_killed(
    board_url: str, seed: int, tmp_path: Path
) -> None:
    rng = random.Random(f"conductor-{board_kind(board_url)}-{seed}")
    flow = rng.choice(["linear_fails", "retried"])
    ref = reference(flow, "serial")
    # A conductor's engine has no listener of ours nor a watched backend: the tasks' points,
    # and the end of the job's run (the flow finished, the job not yet consumed).
    point = rng.choice([p for p in ref.points if p.startswith(("exec-", "revert-"))] + ["finish#1"])
    conductor_torture(board_url, flow, point, f"seed={seed}", tmp_path)


@pytest.mark.parametrize("board_url", ["redis"], indirect=True)
def test_a_conductor_killed_after_its_flow_reverted_before_consuming_the_job_runs_nothing_again(
    board_url: str, tmp_path: Path
) -> None:
    """The job's flow ended REVERTED and its conductor died: the next one runs nothing.

    A REVERTED flow detail run again starts over (as in TaskFlow): the
    conductor taking the job over used to run every task a second time.
    """
    conductor_torture(board_url, "linear_fails", "finish#1", "fixed", tmp_path)


def conductor_torture(board_url: str, flow: str, point: str, seed: str, tmp_path: Path) -> None:
    """Post ``flow`` as a job for two conductors; kill the one that reaches ``point``; check the rest."""
    ref = reference(flow, "serial")
    case = f"conductor: flow={flow} {seed} point={point} board={board_kind(board_url)}"
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    marker, log = tmp_path / "held", tmp_path / "calls.log"
    env = {
        "FLOWKIT_TORTURE_LOG": str(log),
        "FLOWKIT_TORTURE_POINT": point,
        "FLOWKIT_TORTURE_MARKER": str(marker),
    }
    try:
        with contextlib.closing(backends.fetch({"connection": connection})) as persistence:
            with contextlib.closing(persistence.get_connection()) as conn:
                conn.upgrade()
            board = job_backends.fetch("torture", board_url, persistence=persistence)
            board.connect()
            try:
                job, fd = post_flow(board, persistence, _torture.FLOWS[flow], [], job_store={"value": 1})
                with conductors(board_url, connection, tmp_path, env) as procs:
                    # The holder creates its marker, then writes its pid and a newline: wait for both.
                    services.wait_until(
                        lambda: marker.exists() and marker.read_text().endswith("\n"),
                        PATIENCE,
                        0.005,
                        message="a conductor held",
                    )
                    holder = int(marker.read_text())
                    (victim,) = [proc for proc in procs if proc.pid == holder]
                    os.kill(holder, signal.SIGKILL)
                    victim.wait(PATIENCE)
                    with contextlib.closing(persistence.get_connection()) as conn:
                        at_kill = {atom.name: atom for atom in conn.get_flow_details(fd.uuid)}
                    before = calls_in(log)
                    check_at_kill(flow, ref, at_kill, before)
                    services.wait_until(
                        lambda: job.state == states.COMPLETE, PATIENCE, 0.02, message="the job taken over"
                    )
                    after = log.read_text().splitlines()[sum(before.values()) :]
                    assert all(line.split()[2] != str(holder) for line in after), (
                        "the killed conductor ran on"
                    )
            finally:
                board.close()
            with contextlib.closing(persistence.get_connection()) as conn:
                detail = conn.get_flow_details(fd.uuid)
            assert detail.state == ref.state
            assert atoms_of(detail) == ref.atoms
            check_after_resume(flow, ref, at_kill, before, calls_in(log))
    except AssertionError as err:
        err.add_note(f"torture case: {case}")
        raise
