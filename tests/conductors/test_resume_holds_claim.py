"""``flowkit flows resume --board`` of a job's flow holds the job's claim while it runs (real boards).

A resume that only read the claim left a window: a conductor could claim the
job between the check and the end of the run and run the same flow detail, its
tasks twice at once. The resume claims the job itself and runs with the flow
detail fenced for that claim, as a conductor does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.conductors import backends as conductor_backends
from flowkit.jobs import backends
from flowkit.jobs.base import JobBoard
from flowkit.persistence.backends._urls import mask_url
from flowkit.persistence.base import Backend, FenceRefused, WriteFence
from tests import services
from tests.conductors import flows
from tests.conductors.conftest import flow_state, post_flow
from tests.conftest import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def resume_process(*args: str) -> subprocess.Popen[str]:
    """``flowkit flows resume ARGS`` in its own process (a test may kill it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "flowkit", "flows", "resume", *args, "--no-progress"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait (bounded) for ``proc``; its status and stderr."""
    _out, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.fixture(params=["redis", "zookeeper"])
def board_url(request: pytest.FixtureRequest) -> str:
    """A board URL of each kind, of this test's own (Redis: a short claim expiry)."""
    if request.param == "redis":
        server: services.RedisServer = request.getfixturevalue("redis_server")
        server.start()
        return f"redis://127.0.0.1:{server.port}/0?namespace=hold-{uuid.uuid4().hex[:8]}&claim_expiry=1"
    return str(request.getfixturevalue("zookeeper_path_url"))


@pytest.fixture
def connection(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flows.db'}"


@pytest.fixture
def store(persistence: Backend) -> Backend:
    """The conductors' SQLite backend: the database ``connection`` names (one file per test)."""
    return persistence


@pytest.fixture
def board(board_url: str, store: Backend) -> Iterator[JobBoard]:
    made = backends.fetch("test", board_url, persistence=store)
    made.connect()
    try:
        yield made
    finally:
        made.close()


def record_job(store: Backend, fd: Any, job_uuid: str, board_url: str) -> None:
    """Record the job in the flow's metadata, as the conductor that ran it did."""
    from flowkit.cli._held import JOB_KEY, JobRecord

    fd.meta[JOB_KEY] = JobRecord.of(job_uuid, board_url).to_dict()
    with store.get_connection() as conn:
        conn.update_flow_details(fd)


def test_a_resume_holds_the_jobs_claim_and_fence_until_it_ends_and_consumes_the_done_job(
    board_url: str, board: JobBoard, store: Backend, connection: str, tmp_path: Path
) -> None:
    calls, gate = str(tmp_path / "calls"), str(tmp_path / "gate")
    job, fd = post_flow(board, store, flows.chain, [2, 0, gate], meta_store={"v0": 0, "calls": calls})
    # An earlier conductor claimed the job and fenced the flow detail, then its claim went
    # (abandoned here; lapsed in life): a writer still holding that claim is stale.
    from flowkit.conductors._fencing import ClaimFence, FencedBackend

    stale_claim = board.claim(job, "stale-conductor")
    stale = FencedBackend(store, ClaimFence(board, job, stale_claim))
    stale.take(fd.uuid)
    board.abandon(job, "stale-conductor", claim=stale_claim)
    record_job(store, fd, job.uuid, board_url)

    proc = resume_process(fd.uuid, "--connection", connection, "--board", board_url)
    try:
        # The resume's first task runs, held at its gate: the window the check left open.
        wait_until(lambda: flows.read_calls(calls) or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        held = board.claim_of(job.uuid)
        assert held is not None
        assert held.owner.startswith("flowkit flows resume@"), held.owner
        assert held.owner.endswith(f":{proc.pid}")
        # A conductor cannot claim the job meanwhile...
        with pytest.raises(exc.UnclaimableJob):
            board.claim(job, "conductor-x")
        # ...and the stale claim cannot write the flow detail: the store holds the resume's fence.
        with store.get_connection() as conn, pytest.raises(FenceRefused):
            conn.save_flow_progress_fenced(fd, [], True, WriteFence(job.uuid, stale_claim.token))
    finally:
        Path(gate).touch()
    status, err = finished(proc)
    assert status == 0, err
    assert [c["atom"] for c in flows.read_calls(calls)] == ["step0", "step1"]
    assert flow_state(store, fd)[0] == states.SUCCESS
    # A conductor consumes a job whose flow succeeded: so does the resume.
    assert [j.uuid for j in board.iterjobs(ensure_fresh=True)] == []


def test_a_resume_refuses_a_job_claimed_meanwhile_naming_its_holder_and_runs_nothing(
    board_url: str, board: JobBoard, store: Backend, connection: str, tmp_path: Path
) -> None:
    calls = str(tmp_path / "calls")
    job, fd = post_flow(board, store, flows.chain, [1], meta_store={"v0": 0, "calls": calls})
    record_job(store, fd, job.uuid, board_url)
    board.claim(job, "live-conductor")
    status, err = finished(resume_process(fd.uuid, "--connection", connection, "--board", board_url))
    assert status == 2, err
    assert f"job {job.uuid} is claimed by 'live-conductor'" in err
    assert flows.read_calls(calls) == []
    claim = board.claim_of(job.uuid)
    assert claim is not None and claim.owner == "live-conductor"


@pytest.mark.parametrize(
    ("factory", "left_on_board"),
    [(flows.failing, False), (flows.failing_not_consumed, True)],
    ids=["reverted-consumed", "reverted-given-back"],
)
def test_a_resume_that_reverts_ends_the_job_as_a_conductor_would(
    board_url: str,
    board: JobBoard,
    store: Backend,
    connection: str,
    tmp_path: Path,
    factory: Any,
    left_on_board: bool,
) -> None:
    # A task's own failure: the conductor consumes the job (TaskFlow's rule). An
    # ExecutionFailure asks for another try: the conductor gives the job back.
    calls = str(tmp_path / "calls")
    job, fd = post_flow(board, store, factory, meta_store={"calls": calls})
    record_job(store, fd, job.uuid, board_url)
    status, err = finished(resume_process(fd.uuid, "--connection", connection, "--board", board_url))
    assert status == 1, err
    assert flow_state(store, fd)[0] == states.REVERTED
    listed = [j.uuid for j in board.iterjobs(ensure_fresh=True)]
    assert listed == ([job.uuid] if left_on_board else [])
    if left_on_board:
        assert board.claim_of(job.uuid) is None  # given back, for a conductor to take up


def test_a_resume_whose_flow_cannot_be_rebuilt_gives_the_claim_back(
    board_url: str, board: JobBoard, store: Backend, connection: str, tmp_path: Path
) -> None:
    job, fd = post_flow(board, store, flows.chain, [1], meta_store={"v0": 0, "calls": str(tmp_path / "c")})
    fd.meta["factory"]["name"] = "tests.conductors.flows.no_such_factory"
    record_job(store, fd, job.uuid, board_url)
    status, err = finished(resume_process(fd.uuid, "--connection", connection, "--board", board_url))
    assert status == 2, err
    assert "cannot be rebuilt" in err
    assert [j.uuid for j in board.iterjobs(ensure_fresh=True)] == [job.uuid]
    assert board.claim_of(job.uuid) is None


def test_a_killed_resumes_claim_lapses_and_a_conductor_finishes_the_job(
    board_url: str, board: JobBoard, store: Backend, connection: str, tmp_path: Path
) -> None:
    # As a dead conductor's: the Redis claim expires (1 s here, the board URL's
    # claim_expiry), the ZooKeeper claim goes with the resume's session.
    calls, gate = str(tmp_path / "calls"), str(tmp_path / "gate")
    job, fd = post_flow(board, store, flows.chain, [2, 1, gate], meta_store={"v0": 0, "calls": calls})
    record_job(store, fd, job.uuid, board_url)
    proc = resume_process(fd.uuid, "--connection", connection, "--board", board_url)
    try:
        wait_until(lambda: len(flows.read_calls(calls)) == 2 or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        assert board.claim_of(job.uuid) is not None
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    wait_until(lambda: board.claim_of(job.uuid) is None, timeout=60)
    Path(gate).touch()
    conductor = conductor_backends.fetch("blocking", "after", board, persistence=store, wait_timeout=0.05)
    conductor.run(max_dispatches=1)
    conductor.wait(60)
    assert flow_state(store, fd)[0] == states.SUCCESS
    # step0 ran once (its result was saved before the kill); step1, in flight, ran again.
    assert [c["atom"] for c in flows.read_calls(calls)] == ["step0", "step1", "step1"]
    assert [j.uuid for j in board.iterjobs(ensure_fresh=True)] == []


def test_a_resume_refuses_a_flow_detail_another_claimed_job_runs_and_gives_its_claim_back(
    board_url: str, board: JobBoard, store: Backend, connection: str, tmp_path: Path
) -> None:
    from flowkit.conductors._fencing import ClaimFence, FencedBackend

    calls = str(tmp_path / "calls")
    job, fd = post_flow(board, store, flows.chain, [1], meta_store={"v0": 0, "calls": calls})
    record_job(store, fd, job.uuid, board_url)
    # A second job for the same flow detail, claimed and running it (its fence taken).
    other = board.post("again", book=job.book)
    other_claim = board.claim(other, "other-conductor")
    FencedBackend(store, ClaimFence(board, other, other_claim)).take(fd.uuid)
    status, err = finished(resume_process(fd.uuid, "--connection", connection, "--board", board_url))
    assert status == 2, err
    assert f"job {other.uuid}" in err and "'other-conductor'" in err
    assert flows.read_calls(calls) == []
    assert board.claim_of(job.uuid) is None  # its own claim given back


def test_force_resumes_without_claiming_the_job(
    board_url: str, board: JobBoard, store: Backend, connection: str, tmp_path: Path
) -> None:
    # --force is the way past the guard (a board out of reach): nothing held, nothing fenced.
    calls = str(tmp_path / "calls")
    job, fd = post_flow(board, store, flows.chain, [1], meta_store={"v0": 0, "calls": calls})
    record_job(store, fd, job.uuid, board_url)
    status, err = finished(
        resume_process(fd.uuid, "--connection", connection, "--board", board_url, "--force")
    )
    assert status == 0, err
    assert [j.uuid for j in board.iterjobs(ensure_fresh=True)] == [job.uuid]
    assert [a.owner for a in board.attempts(job)] == []
    assert json.loads(json.dumps(flow_state(store, fd)))[0] == states.SUCCESS


def test_an_interrupted_resume_gives_the_job_back(
    board_url: str, board: JobBoard, store: Backend, connection: str, tmp_path: Path
) -> None:
    calls, gate = str(tmp_path / "calls"), str(tmp_path / "gate")
    job, fd = post_flow(board, store, flows.chain, [1, 0, gate], meta_store={"v0": 0, "calls": calls})
    record_job(store, fd, job.uuid, board_url)
    proc = resume_process(fd.uuid, "--connection", connection, "--board", board_url)
    try:
        wait_until(lambda: flows.read_calls(calls) or proc.poll() is not None)
        assert board.claim_of(job.uuid) is not None
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        status, err = finished(proc)
    finally:
        Path(gate).touch()
        proc.kill()
    assert status == 130, err
    assert [j.uuid for j in board.iterjobs(ensure_fresh=True)] == [job.uuid]
    assert board.claim_of(job.uuid) is None  # given back at once, not left to lapse
    # The resume it offers names the board: without it the resume of a job is refused.
    assert f"'flowkit flows resume {fd.uuid} --board {mask_url(board_url)}'" in err


def test_a_resume_holds_the_job_of_a_redis_board_without_a_namespace_given_its_recorded_url(
    redis_server: services.RedisServer, store: Backend, connection: str, tmp_path: Path
) -> None:
    # The recorded URL of a board with ``namespace: None`` read back as the default
    # namespace: the resume found no job there and ran the flow unclaimed and unfenced.
    import redis

    redis_server.start()
    client = redis.Redis(host="127.0.0.1", port=redis_server.port, db=11)
    client.flushdb()  # unprefixed keys: a database of this test's own
    conf = {"board": "redis", "host": "127.0.0.1", "port": redis_server.port, "db": 11, "namespace": None}
    board = backends.fetch("test", conf, persistence=store)
    board.connect()
    try:
        calls = str(tmp_path / "calls")
        job, fd = post_flow(board, store, flows.chain, [1], meta_store={"v0": 0, "calls": calls})
        record_job(store, fd, job.uuid, board.url)  # what the board's conductor records
        status, err = finished(resume_process(fd.uuid, "--connection", connection, "--board", board.url))
        assert status == 0, err
        # Consumed, as a conductor would: the resume held the job (it was left on the board).
        assert [j.uuid for j in board.iterjobs(ensure_fresh=True)] == []
    finally:
        board.close()
        client.flushdb()
        client.close()


def test_a_resume_whose_claim_is_taken_over_stops_writing_and_says_so(
    redis_server: services.RedisServer, store: Backend, connection: str, tmp_path: Path
) -> None:
    from flowkit.conductors._fencing import ClaimFence, FencedBackend

    redis_server.start()
    url = f"redis://127.0.0.1:{redis_server.port}/0?namespace=lost-{uuid.uuid4().hex[:8]}"
    board = backends.fetch("test", url, persistence=store)
    board.connect()
    try:
        calls, gate = str(tmp_path / "calls"), str(tmp_path / "gate")
        job, fd = post_flow(board, store, flows.chain, [2, 0, gate], meta_store={"v0": 0, "calls": calls})
        record_job(store, fd, job.uuid, url)
        proc = resume_process(fd.uuid, "--connection", connection, "--board", url)
        try:
            wait_until(lambda: flows.read_calls(calls) or proc.poll() is not None)
            # The resume's claim lapses (its key gone, as after a pause past its expiry) and
            # a conductor takes the job over, fencing the flow detail for its own claim.
            import redis

            client = redis.Redis.from_url(redis_server.url)
            assert client.delete(f"{url.rsplit('=', 1)[1]}:owner:{job.uuid}") == 1
            client.close()
            taker = board.claim(job, "taker")
            FencedBackend(store, ClaimFence(board, job, taker)).take(fd.uuid)
        finally:
            Path(gate).touch()
        status, err = finished(proc)
        assert status == 1, err
        assert "lost its claim of job" in err
        assert [c["atom"] for c in flows.read_calls(calls)] == ["step0"]  # step1 never ran
        claim = board.claim_of(job.uuid)
        assert claim is not None and claim.owner == "taker"  # the new owner's claim is left alone
        assert flow_state(store, fd)[1]["step0"] == states.RUNNING  # the refused write never landed
    finally:
        board.close()
