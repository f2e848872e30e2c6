"""Conductor processes on real Redis and ZooKeeper boards: SIGKILL take-over, fencing, board restarts.

Each conductor is a ``flowkit conductor`` process; flows come from
``tests.conductors.flows`` and log every task call with the PID that made it,
so a test can tell which conductor ran what, and kill or stop exactly that
one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import states
from flowkit.jobs import backends
from flowkit.jobs.base import JobBoard
from flowkit.persistence import backends as persistence_backends
from flowkit.persistence.base import Backend
from tests import services
from tests.conductors import flows
from tests.conductors.conftest import flow_state, post_flow, stored_results

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Seconds a claim lasts (Redis) or a session (ZooKeeper) in these tests.
EXPIRY = 2.0
#: Seconds anything the tests wait for may take on a loaded 2-core machine.
PATIENCE = 60.0


def board_url(kind: str, request: pytest.FixtureRequest) -> str:
    unique = uuid.uuid4().hex[:12]
    if kind == "redis":
        server: services.RedisServer = request.getfixturevalue("redis_server")
        server.start()
        return f"redis://127.0.0.1:{server.port}/0?namespace=t-{unique}"
    zk: services.ZooKeeperServer = request.getfixturevalue("zookeeper_server")
    return f"zookeeper://{zk.hosts}{zk.root}/{unique}/jobs"  # entities are kept next to the path


class Conductors:
    """Starts ``flowkit conductor`` processes on one board and stops them all at the end."""

    def __init__(self, url: str, connection: str, logs: Path) -> None:
        self.url = url
        self.connection = connection
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        command = [
            sys.executable, "-m", "flowkit", "-v", "conductor",
            "--board", self.url, "--connection", self.connection, "--name", name,
            "--claim-expiry", str(EXPIRY), "--wait-timeout", "0.05", *extra,
        ]  # fmt: skip
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def by_pid(self, pid: int) -> str:
        return next(name for name, proc in self.procs.items() if proc.pid == pid)

    def close(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            proc.wait(10)


@pytest.fixture(params=["redis", "zookeeper"])
def kind(request: pytest.FixtureRequest) -> str:
    services.require_module("redis" if request.param == "redis" else "kazoo", request.param)
    return str(request.param)


@pytest.fixture
def setup(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[JobBoard, Backend, Conductors]]:
    url = board_url(kind, request)
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    persistence = persistence_backends.fetch(connection)
    with persistence.get_connection() as conn:
        conn.upgrade()
    board = backends.fetch("test", url, persistence=persistence)
    board.connect()
    running = Conductors(url, connection, tmp_path)
    try:
        yield board, persistence, running
    finally:
        running.close()
        board.close()
        persistence.close()


def registered(board: Any) -> int:
    """How many conductors registered themselves on ``board``."""
    if board.where.startswith("redis"):
        return len(list(board._redis().scan_iter(match=board.join("entity", "*"))))
    return len(board._zk().get_children(f"{board.entity_path}/conductor"))


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = PATIENCE) -> Any:
    return services.wait_until(predicate, timeout, 0.02, message=what)


def test_sigkilled_conductor_is_taken_over_and_no_finished_task_reruns(
    setup: tuple[JobBoard, Backend, Conductors], tmp_path: Path
) -> None:
    board, persistence, running = setup
    calls, gate = str(tmp_path / "calls"), tmp_path / "gate"
    job, fd = post_flow(
        board, persistence, flows.chain, [3, 1, str(gate)], job_store={"v0": 0, "calls": calls}
    )
    for name in ("c1", "c2", "c3"):
        running.start(name)

    def holder_pid() -> int | None:
        step1 = [c for c in flows.read_calls(calls) if c["atom"] == "step1"]
        return step1[0]["pid"] if step1 else None

    pid = wait_for(holder_pid, "a conductor reaching step1")
    victim = running.by_pid(pid)
    os.kill(pid, signal.SIGKILL)
    running.procs[victim].wait(10)
    killed_at = time.monotonic()
    gate.touch()
    wait_for(lambda: job.state == states.COMPLETE, "the job consumed by another conductor")
    took_over = time.monotonic() - killed_at
    by_atom: dict[str, list[int]] = {}
    for call in flows.read_calls(calls):
        by_atom.setdefault(call["atom"], []).append(call["pid"])
    assert by_atom["step0"] == [pid], "a task that had succeeded ran again"
    assert len(by_atom["step1"]) == 2 and by_atom["step1"][1] != pid  # in doubt: ran again elsewhere
    assert by_atom["step2"] == [by_atom["step1"][1]]
    assert flow_state(persistence, fd)[0] == states.SUCCESS
    assert stored_results(persistence, fd) == {"step0": 1, "step1": 2, "step2": 3}
    assert took_over < EXPIRY + PATIENCE


def test_stopped_conductor_cannot_write_after_its_claim_was_taken_over(
    setup: tuple[JobBoard, Backend, Conductors], kind: str, tmp_path: Path
) -> None:
    """The fencing proof: on ZooKeeper the paused holder's session expires, on Redis its claim key."""
    board, persistence, running = setup
    calls, gate1, gate2 = str(tmp_path / "calls"), tmp_path / "gate1", tmp_path / "gate2"
    job, fd = post_flow(
        board, persistence, flows.fenced, [str(gate1), str(gate2)], job_store={"v0": 0, "calls": calls}
    )
    paused = running.start("paused")
    wait_for(
        lambda: [c["pid"] for c in flows.read_calls(calls)] == [paused.pid], "the first conductor running"
    )
    first_token = board.current_claim(job)
    os.kill(paused.pid, signal.SIGSTOP)
    gate1.touch()
    taker = running.start("taker")
    wait_for(lambda: stored_results(persistence, fd).get("whoami") == taker.pid, "the take-over done")
    second = board.current_claim(job)
    assert second is not None and first_token is not None
    assert second.owner == "taker" and second.token > first_token.token
    # The paused conductor wakes up with whoami finished in its own process too.
    os.kill(paused.pid, signal.SIGCONT)
    wait_for(lambda: "ClaimLost" in running.log("paused") or "was lost" in running.log("paused"), "refusal")
    assert stored_results(persistence, fd)["whoami"] == taker.pid, "the paused conductor's write went through"
    gate2.touch()
    wait_for(lambda: job.state == states.COMPLETE, "the job consumed by the taker")
    assert stored_results(persistence, fd) == {"whoami": taker.pid, "after": 1}
    assert flow_state(persistence, fd)[0] == states.SUCCESS


def test_conductors_survive_a_board_restart(
    setup: tuple[JobBoard, Backend, Conductors], kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    board, persistence, running = setup
    calls = str(tmp_path / "calls")
    for name in ("c1", "c2", "c3"):
        running.start(name)
    first, _ = post_flow(
        board, persistence, flows.chain, [1], job_store={"v0": 0, "calls": calls}, name="first"
    )
    wait_for(lambda: first.state == states.COMPLETE, "the first job done")
    # Every conductor must be up (a conductor that cannot reach its board at start exits).
    wait_for(lambda: registered(board) == 3, "all three conductors registered on the board")
    server: Any = request.getfixturevalue("redis_server" if kind == "redis" else "zookeeper_server")
    # Redis restarts (empty: it keeps nothing on disk); ZooKeeper freezes past every
    # session's timeout and thaws (a restart would replay its log, slowly on a busy machine).
    if kind == "redis":
        server.stop()
    else:
        os.kill(server.pid, signal.SIGSTOP)
    try:
        # Conductors keep polling a dead board: give them time to fail a few times.
        wait_for(lambda: all("failure" in running.log(n).lower() or "error" in running.log(n).lower()
                             for n in running.procs), "conductors noticing the board is gone")  # fmt: skip
        if kind == "zookeeper":
            time.sleep(EXPIRY)  # sessions outlive their timeout: the failure is real
    finally:
        if kind == "redis":
            server.start()
            server.flushall()
        else:
            os.kill(server.pid, signal.SIGCONT)
    board.close()
    board.connect()
    second, fd = post_flow(
        board, persistence, flows.chain, [2], job_store={"v0": 10, "calls": calls}, name="2nd"
    )
    wait_for(lambda: second.state == states.COMPLETE, "a job posted after the restart done")
    assert stored_results(persistence, fd) == {"step0": 11, "step1": 12}
    dead = [name for name, proc in running.procs.items() if proc.poll() is not None]
    assert not dead, f"{dead} died with the board: {running.log(dead[0])[-3000:] if dead else ''}"


def test_no_job_is_lost_when_redis_is_killed_and_restarts_from_its_append_only_file(
    redis_aof_server: services.RedisServer, tmp_path: Path
) -> None:
    """A claimed job mid-flow and two jobs waiting on the board all end consumed after SIGKILL of Redis."""
    services.require_module("redis", "redis")
    server = redis_aof_server
    server.start()
    url = f"redis://127.0.0.1:{server.port}/0?namespace=t-{uuid.uuid4().hex[:12]}"
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    persistence = persistence_backends.fetch(connection)
    with persistence.get_connection() as conn:
        conn.upgrade()
    board = backends.fetch("test", url, persistence=persistence)
    board.connect()
    running = Conductors(url, connection, tmp_path)
    calls, gate = str(tmp_path / "calls"), tmp_path / "gate"
    try:
        held, held_fd = post_flow(
            board, persistence, flows.chain, [3, 1, str(gate)], job_store={"v0": 0, "calls": calls}
        )
        running.start("c1")
        wait_for(lambda: any(c["atom"] == "step1" for c in flows.read_calls(calls)), "c1 inside step1")
        # c1 is busy (a blocking conductor runs one job at a time): these two stay unclaimed.
        waiting = [
            post_flow(
                board,
                persistence,
                flows.chain,
                [1],
                job_store={"v0": 10 * i, "calls": f"{calls}-w{i}"},
                name=f"w{i}",
            )
            for i in (1, 2)
        ]
        assert [job.state for job, _ in waiting] == [states.UNCLAIMED, states.UNCLAIMED]
        board.close()
        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        server.stop()
        server.start()
        board.connect()
        assert board.job_count == 3, "jobs were lost with the Redis process"
        gate.touch()
        running.start("c2")
        for job, _ in [(held, held_fd), *waiting]:
            wait_for(lambda job=job: job.state == states.COMPLETE, f"job {job.name} consumed")
        step0 = [c for c in flows.read_calls(calls) if c["atom"] == "step0"]
        assert len(step0) == 1, "a task that had succeeded ran again"
        assert stored_results(persistence, held_fd) == {"step0": 1, "step1": 2, "step2": 3}
        for i, (_, fd) in enumerate(waiting, start=1):
            assert stored_results(persistence, fd) == {"step0": 10 * i + 1}
    finally:
        running.close()
        board.close()
        persistence.close()
