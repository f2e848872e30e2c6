"""``flowkit conductor`` and ``flowkit jobs`` as an operator runs them (real Redis)."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from flowkit import states
from flowkit.jobs import backends
from flowkit.persistence import backends as persistence_backends
from tests import services
from tests.conductors import flows
from tests.conductors.conftest import flow_state
from tests.conftest import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def flowkit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowkit", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def redis_board(redis_server: services.RedisServer) -> str:
    redis_server.start()
    return f"redis://127.0.0.1:{redis_server.port}/0?namespace=cli-{uuid.uuid4().hex[:8]}"


def test_jobs_post_list_show_and_a_conductor_runs_it(redis_board: str, tmp_path: Path) -> None:
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    calls = str(tmp_path / "calls")
    common = ["jobs", "--board", redis_board, "--connection", connection]
    posted = flowkit(
        *common, "post", "two-steps", "--factory", "tests.conductors.flows.chain", "--args", "[2]",
        "--store", json.dumps({"v0": 5, "calls": calls}), "--priority", "high",
    )  # fmt: skip
    assert posted.returncode == 0, posted.stderr
    job_uuid = posted.stdout.strip()
    listed = flowkit(*common, "list", "--json")
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["uuid"], row["name"], row["state"], row["priority"]) == (
        job_uuid,
        "two-steps",
        "UNCLAIMED",
        "HIGH",
    )
    shown = json.loads(flowkit(*common, "show", job_uuid).stdout)
    assert shown["attempts"] == [] and shown["details"]["store"]["v0"] == 5
    ran = flowkit("conductor", "--board", redis_board, "--connection", connection, "--name", "cli-c",
                  "--max-dispatches", "1")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert flowkit(*common, "list").stdout == ""
    assert [c["atom"] for c in flows.read_calls(calls)] == ["step0", "step1"]


def test_a_flow_a_conductor_ran_records_its_engine_for_flows_resume(redis_board: str, tmp_path: Path) -> None:
    # `flowkit flows resume` reads the engine a run recorded. A conductor recorded
    # none, so a job's flow left in doubt by a dead conductor of worker-based
    # engines, resumed by hand, ran its tasks on the serial engine, in the
    # operator's shell, rather than on the workers.
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    common = ["jobs", "--board", redis_board, "--connection", connection]
    store = json.dumps({"v0": 5, "calls": str(tmp_path / "calls")})
    posted = flowkit(*common, "post", "two-steps", "--factory", "tests.conductors.flows.chain",
                     "--args", "[2]", "--store", store)  # fmt: skip
    assert posted.returncode == 0, posted.stderr
    engine = "parallel://?max_workers=3"
    ran = flowkit("conductor", "--board", redis_board, "--connection", connection, "--name", "c",
                  "--engine", engine, "--max-dispatches", "1")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    persistence = persistence_backends.fetch(connection)
    try:
        with persistence.get_connection() as conn:
            [book] = conn.get_logbooks()
            [detail] = list(book)
    finally:
        persistence.close()
    assert detail.meta["engine"] == engine


def test_jobs_post_takes_a_factory_written_as_flowkit_run_writes_targets(
    redis_board: str, tmp_path: Path
) -> None:
    # "--factory pkg.mod:fn" was saved as is; conductors could not import it and trashed the job.
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    calls = str(tmp_path / "calls")
    common = ["jobs", "--board", redis_board, "--connection", connection]
    posted = flowkit(*common, "post", "colon", "--factory", "tests.conductors.flows:chain", "--args", "[1]",
                     "--store", json.dumps({"v0": 1, "calls": calls}))  # fmt: skip
    assert posted.returncode == 0, posted.stderr
    ran = flowkit("conductor", "--board", redis_board, "--connection", connection, "--name", "c",
                  "--max-dispatches", "1")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert flowkit("jobs", "--board", redis_board, "list", "--trashed").stdout == ""
    assert [c["atom"] for c in flows.read_calls(calls)] == ["step0"]
    bad = flowkit(*common, "post", "x", "--factory", "nodots")
    assert bad.returncode == 2 and "--factory 'nodots' must be MODULE.FUNCTION" in bad.stderr
    # A script's path was posted as is, and the job trashed by the conductor that claimed it.
    path = flowkit(*common, "post", "x", "--factory", "tests/conductors/flows.py:chain")
    assert path.returncode == 2 and path.stderr.strip() == (
        "flowkit jobs post: error: --factory 'tests/conductors/flows.py:chain' is a file path, not a "
        "module: give its module's dotted name, 'tests.conductors.flows:chain'"
    )
    assert flowkit("jobs", "--board", redis_board, "list").stdout == ""


def test_a_refused_post_leaves_no_flow_behind(redis_board: str, postgresql_db_url: str) -> None:
    # The logbook was saved before the board refused the priority: `flows list`
    # then showed a PENDING flow that no job would ever run.
    # The schema made first: flows list reads it and makes none (the refused post need not either).
    assert flowkit("db", "upgrade", "--connection", postgresql_db_url).returncode == 0
    common = ["jobs", "--board", redis_board, "--connection", postgresql_db_url]
    refused = flowkit(
        *common, "post", "urgent-one", "--factory", "tests.conductors.flows.chain", "--priority", "urgent"
    )
    assert refused.returncode == 2 and "'urgent' is not a job priority" in refused.stderr
    listed = flowkit("flows", "list", "--connection", postgresql_db_url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_flows_why_explains_a_flow_a_conductor_ran(redis_board: str, postgresql_db_url: str) -> None:
    # The conductor recorded no event log: `flows why` said "no event log" for
    # every job's flow, and the monitor had no events to show.
    common = ["jobs", "--board", redis_board, "--connection", postgresql_db_url]
    posted = flowkit(*common, "post", "order-7", "--factory", "tests.cli._flows.make_shop",
                     "--store", json.dumps({"amount": 500}))  # fmt: skip
    assert posted.returncode == 0, posted.stderr
    ran = flowkit("conductor", "--board", redis_board, "--connection", postgresql_db_url, "--name", "c",
                  "--max-dispatches", "1")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    why = flowkit("flows", "why", "order-7", "reserve", "--connection", postgresql_db_url)
    assert why.returncode == 0, why.stderr
    assert why.stdout.startswith("reserve is REVERTED:")
    assert (
        "<- charge FAILURE (attempt 2, run 1): execute raised CardDeclined: card declined for 500"
        in why.stdout
    )


def test_jobs_conductors_lists_a_running_conductor_until_it_stops(redis_board: str) -> None:
    def listed() -> list[str]:
        done = flowkit("jobs", "--board", redis_board, "conductors", "--json")
        assert done.returncode == 0, done.stderr
        return [entity["name"] for entity in json.loads(done.stdout)]

    assert flowkit("jobs", "--board", redis_board, "conductors").stdout == "no conductors alive\n"
    conductor = subprocess.Popen(
        [sys.executable, "-m", "flowkit", "conductor", "--board", redis_board, "--name", "night-shift",
         "--wait-timeout", "0.2"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        names = wait_until(listed, timeout=60)
        assert names == [f"night-shift@{socket.gethostname()}:{conductor.pid}"]
        text = flowkit("jobs", "--board", redis_board, "conductors").stdout.splitlines()
        assert text[0].split() == ["NAME", "HOST", "PID", "SINCE", "(UTC)"]
        assert text[1].split()[:3] == [names[0], socket.gethostname(), str(conductor.pid)]
    finally:
        conductor.send_signal(signal.SIGTERM)
        _, err = conductor.communicate(timeout=60)
    assert conductor.returncode == 0, err
    assert listed() == []


def test_conductor_allow_factory_keeps_a_posted_job_from_calling_another_function(
    redis_board: str, tmp_path: Path
) -> None:
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    mark = tmp_path / "called"
    common = ["jobs", "--board", redis_board, "--connection", connection]
    posted = flowkit(*common, "post", "odd", "--factory", "tests.conductors.flows.leave_mark",
                     "--args", json.dumps([str(mark)]))  # fmt: skip
    assert posted.returncode == 0, posted.stderr
    ran = flowkit("conductor", "--board", redis_board, "--connection", connection, "--name", "c",
                  "--max-dispatches", "1", "--allow-factory", "tests.conductors.flows.chain")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert not mark.exists()
    trashed = json.loads(flowkit("jobs", "--board", redis_board, "list", "--trashed", "--json").stdout)
    assert trashed["uuid"] == posted.stdout.strip()
    assert "flow factory 'tests.conductors.flows.leave_mark'" in trashed["reason"]


def test_jobs_trash_sets_a_job_aside(redis_board: str, tmp_path: Path) -> None:
    persistence = persistence_backends.fetch(f"sqlite:///{tmp_path / 'flows.db'}")
    with backends.backend("b", redis_board, persistence=persistence) as board:
        job = board.post("unwanted")
        done = flowkit("jobs", "--board", redis_board, "trash", job.uuid, "--reason", "operator said so")
        assert done.returncode == 0, done.stderr
        assert job.state == states.COMPLETE
        [aside] = board.trashed()
        assert aside["reason"] == "operator said so"
    trashed = flowkit("jobs", "--board", redis_board, "list", "--trashed", "--json")
    assert json.loads(trashed.stdout)["uuid"] == job.uuid
    # Without --json it is a row like the other listing's (it printed JSON either way).
    listed = flowkit("jobs", "--board", redis_board, "list", "--trashed")
    assert listed.stdout == f"{job.uuid}  TRASHED   NORMAL    unwanted: operator said so\n"
    missing = flowkit("jobs", "--board", redis_board, "show", "no-such-job")
    assert missing.returncode == 2 and "no job no-such-job" in missing.stderr
    # Named like every other command's errors, on the board named by its URL (its name,
    # 'flowkit' for every board the command makes, told none from another), and where a
    # finished job's story is.
    assert missing.stderr.startswith(f"flowkit jobs show: error: no job no-such-job on board {redis_board} (")
    assert "its flow stays in the persistence backend: flowkit flows list" in missing.stderr


def test_conductor_stops_gracefully_on_sigterm_and_abandons_its_job(redis_board: str, tmp_path: Path) -> None:
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    persistence = persistence_backends.fetch(connection)
    with persistence.get_connection() as conn:
        conn.upgrade()
    calls, gate = str(tmp_path / "calls"), tmp_path / "gate"
    from tests.conductors.conftest import post_flow

    with backends.backend("b", redis_board, persistence=persistence) as board:
        job, fd = post_flow(
            board, persistence, flows.chain, [3, 1, str(gate)], job_store={"v0": 0, "calls": calls}
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowkit", "conductor", "--board", redis_board, "--connection", connection,
             "--name", "graceful", "--wait-timeout", "0.05"],
            cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            services.wait_until(lambda: len(flows.read_calls(calls)) == 2, 60, message="step1 running")
            proc.send_signal(signal.SIGTERM)
            gate.touch()
            _, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, stderr
        assert "SIGTERM received: stopping conductor graceful gracefully" in stderr
        assert job.state == states.UNCLAIMED
        assert flow_state(persistence, fd) == (
            states.SUSPENDED,
            {"step0": states.SUCCESS, "step1": states.SUCCESS, "step2": states.PENDING},
        )
    persistence.close()


def test_unknown_board_kind_is_a_usage_error() -> None:
    done = flowkit("conductor", "--board", "pigeon://loft", "--name", "c")
    assert done.returncode == 2
    assert "Could not find jobboard pigeon" in done.stderr


@pytest.mark.parametrize(
    "engine", ["worker-bsed", "worker-based://?url=http://:hunter2@nowhere/0", "parallel://?max_workers=0"]
)
def test_an_engine_that_cannot_be_made_stops_the_conductor_before_it_claims(
    engine: str, redis_board: str, tmp_path: Path
) -> None:
    # It started, claimed each job and set it aside in the trash, one after another.
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    common = ["jobs", "--board", redis_board, "--connection", connection]
    posted = flowkit(*common, "post", "j", "--factory", "tests.conductors.flows.chain", "--args", "[1]")
    assert posted.returncode == 0, posted.stderr
    ran = flowkit("conductor", "--board", redis_board, "--connection", connection, "--name", "c",
                  "--engine", engine, "--max-dispatches", "1")  # fmt: skip
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.startswith("flowkit conductor: error: --engine '") and "hunter2" not in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert "UNCLAIMED" in flowkit(*common, "list").stdout


def test_unreachable_board_names_its_masked_url() -> None:
    port = services.free_port()
    done = flowkit("jobs", "--board", f"redis://:hunter2@127.0.0.1:{port}/0", "list")
    assert done.returncode == 1
    assert f"redis://:***@127.0.0.1:{port}/0" in done.stderr and "hunter2" not in done.stderr


@pytest.mark.parametrize("command", ["jobs", "conductor"])
def test_board_option_that_does_not_convert_is_a_usage_error_naming_it(command: str) -> None:
    board = "redis://:hunter2@127.0.0.1:6379/0?claim_expiry=soon"
    extra = ["list"] if command == "jobs" else ["--name", "c"]
    done = flowkit(command, "--board", board, *extra)
    assert done.returncode == 2, done.stderr
    assert "option 'claim_expiry' must be" in done.stderr and "hunter2" not in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["jobs", "conductor"])
@pytest.mark.parametrize(
    ("board", "shown"),
    [
        ("zookeeper://127.0.0.1:notaport/jobs", "zookeeper://127.0.0.1:notaport/jobs"),
        ("redis://:hunter2@[::1/0", "redis://:***@[::1/0"),
        ("zookeeper://[::1/jobs", "zookeeper://[::1/jobs"),
        # redis-py reads a database that is no number as none: database 0, silently.
        ("redis://:hunter2@127.0.0.1:6379/orders", "redis://:***@127.0.0.1:6379/orders"),
    ],
)
def test_a_malformed_board_url_is_a_one_line_usage_error_naming_it(
    command: str, board: str, shown: str
) -> None:
    # Said "Port could not be cast to integer value as 'notaport'" or "Invalid IPv6
    # URL" alone: with several boards configured, the operator could not tell which.
    extra = ["list"] if command == "jobs" else ["--name", "c"]
    done = flowkit(command, "--board", board, *extra)
    assert done.returncode == 2, done.stderr
    assert shown in done.stderr and "hunter2" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_zookeeper_board_masks_a_password_in_its_url() -> None:
    # Its messages ("could not connect to the ZooKeeper jobboard at ...") showed it.
    board = backends.fetch("b", "zookeeper://:hunter2@127.0.0.1:2181/jobs")
    assert board.where == "zookeeper://:***@127.0.0.1:2181/jobs"


def test_conductor_exits_0_at_once_on_a_second_signal(redis_board: str, tmp_path: Path) -> None:
    # A stop asked for twice is still a stop asked for: the conductor exited 1, so a
    # supervisor marked it failed, while the worker and the monitor exit 0 (doc/cli.rst).
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    persistence = persistence_backends.fetch(connection)
    with persistence.get_connection() as conn:
        conn.upgrade()
    calls, gate = str(tmp_path / "calls"), tmp_path / "gate"  # the gate is never opened
    from tests.conductors.conftest import post_flow

    log = tmp_path / "conductor.log"
    with backends.backend("b", redis_board, persistence=persistence) as board, log.open("w") as err:
        post_flow(board, persistence, flows.chain, [3, 1, str(gate)], job_store={"v0": 0, "calls": calls})
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowkit", "conductor", "--board", redis_board, "--connection", connection,
             "--name", "twice", "--wait-timeout", "0.05"],
            cwd=REPO_ROOT, stderr=err, text=True,
        )  # fmt: skip
        try:
            services.wait_until(lambda: len(flows.read_calls(calls)) == 2, 60, message="step1 running")
            proc.send_signal(signal.SIGTERM)  # graceful: waits for step1, which waits for the gate
            graceful = "SIGTERM received: stopping conductor twice gracefully"
            services.wait_until(lambda: graceful in log.read_text(), 30, message="the first signal")
            proc.send_signal(signal.SIGINT)
            status = proc.wait(timeout=30)
        finally:
            proc.kill()
            proc.wait()
    persistence.close()
    assert status == 0, log.read_text()
    assert "SIGINT received again: exiting now" in log.read_text()


def test_jobs_listings_escape_names_another_process_wrote(redis_board: str, tmp_path: Path) -> None:
    # A job's name, its claimant, a trash reason and a conductor's name are any
    # string some process put on the board: printed raw, an escape repainted the
    # operator's terminal and a newline forged a row of the listing.
    from flowkit.types.entity import Entity

    persistence = persistence_backends.fetch(f"sqlite:///{tmp_path / 'flows.db'}")
    with backends.backend("b", redis_board, persistence=persistence) as board:
        claimed = board.post("nightly\x1b[2J\nfake-uuid  UNCLAIMED NORMAL    forged")
        board.claim(claimed, "ops\r\x1b]0;owned\x07")
        aside = board.post("old\u202ejob")
        board.claim(aside, "cli")
        board.trash(aside, "cli", reason="bad\x1b[31m input")
        board.register_entity(Entity("conductor", "night\nshift\x1b[1m", {"hostname": "h\x00", "pid": 7}))
        listed = flowkit("jobs", "--board", redis_board, "list")
        trashed = flowkit("jobs", "--board", redis_board, "list", "--trashed")
        conductors = flowkit("jobs", "--board", redis_board, "conductors")
    for done in (listed, trashed, conductors):
        assert done.returncode == 0, done.stderr
        assert not any(c in done.stdout for c in "\x1b\r\x00\x07\u202e"), done.stdout
    assert listed.stdout == (
        f"{claimed.uuid}  CLAIMED   NORMAL    nightly\\x1b[2J\\nfake-uuid  UNCLAIMED NORMAL    forged"
        " owner=ops\\r\\x1b]0;owned\\x07\n"
    )
    assert trashed.stdout == f"{aside.uuid}  TRASHED   NORMAL    old\\u202ejob: bad\\x1b[31m input\n"
    [header, row] = conductors.stdout.splitlines()
    assert row.split()[:3] == ["night\\nshift\\x1b[1m", "h\\x00", "7"]


def test_conductor_exits_0_on_a_second_signal_while_it_closes_its_board(
    zookeeper_server: services.ZooKeeperServer, zookeeper_path_url: str, tmp_path: Path
) -> None:
    # The handlers were put back before the board was closed: a second Ctrl-C while
    # the ZooKeeper client waited (up to 10 s) for its session's close to be answered
    # printed a KeyboardInterrupt traceback and died of SIGINT, a second SIGTERM
    # killed it (status -15), where doc/cli.rst promises "exiting now", status 0.
    log = tmp_path / "conductor.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowkit", "-vv", "conductor", "--board", zookeeper_path_url,
             "--name", "closing", "--wait-timeout", "30"],
            cwd=REPO_ROOT, stderr=err, text=True,
        )  # fmt: skip
    try:
        # Its first look at the board answered, it waits 30 s before the next: the
        # server frozen now leaves no request of the loop unanswered.
        polled = re.compile(r"GetChildren\(.*\n.*Received response")
        services.wait_until(lambda: polled.search(log.read_text()), 60, message="a first poll")
        zookeeper_server.freeze()
        proc.send_signal(signal.SIGTERM)
        # The loop ended; the client sent its session's Close() and waits for the answer.
        services.wait_until(lambda: "Close()" in log.read_text(), 30, message="the board closing")
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=30)
    finally:
        zookeeper_server.thaw()
        proc.kill()
        proc.wait()
    said = log.read_text()
    assert status == 0, said
    assert "SIGINT received again: exiting now" in said and "Traceback" not in said, said


def test_conductor_stops_gracefully_on_a_signal_while_it_connects_to_its_board(
    zookeeper_server: services.ZooKeeperServer, zookeeper_path_url: str, tmp_path: Path
) -> None:
    # The handlers went in once the board had connected: a SIGTERM while the
    # ZooKeeper client waited for its session killed the conductor (status -15),
    # and a Ctrl-C printed a KeyboardInterrupt traceback. Asked to stop while it
    # starts, it now says so, finishes connecting, and exits 0 without running.
    log = tmp_path / "conductor.log"
    zookeeper_server.freeze()
    try:
        with log.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "flowkit", "-v", "conductor", "--board", zookeeper_path_url,
                 "--name", "starting"],
                cwd=REPO_ROOT, stderr=err, text=True,
            )  # fmt: skip
        services.wait_until(lambda: "Connecting to" in log.read_text(), 60, message="the board connecting")
        proc.send_signal(signal.SIGTERM)
        graceful = "SIGTERM received: stopping conductor starting gracefully"
        services.wait_until(lambda: graceful in log.read_text() or proc.poll() is not None, 30)
        zookeeper_server.thaw()
        status = proc.wait(timeout=60)
    finally:
        zookeeper_server.thaw()
        proc.kill()
        proc.wait()
    said = log.read_text()
    assert status == 0, said
    assert graceful in said and "Traceback" not in said, said


def test_jobs_conductors_lists_the_live_ones_past_a_malformed_entry(
    redis_server: services.RedisServer, redis_board: str, tmp_path: Path
) -> None:
    # An entity's entry is whatever a process wrote under the board's keys: one that
    # was no JSON object made the listing fail ("Expecting value"), and one whose
    # registration time was no number failed it with a TypeError traceback.
    import redis

    from flowkit.types.entity import Entity

    namespace = redis_board.rpartition("namespace=")[2]
    client = redis.Redis(port=redis_server.port)
    persistence = persistence_backends.fetch(f"sqlite:///{tmp_path / 'flows.db'}")
    try:
        with backends.backend("b", redis_board, persistence=persistence) as board:
            board.register_entity(Entity("conductor", "alive", {"hostname": "h1", "pid": 7}))
            client.set(f"{namespace}:entity:torn", b"{not json", px=60_000)
            client.set(f"{namespace}:entity:list", b"[1, 2]", px=60_000)
            odd = {"kind": "conductor", "name": "odd", "registered_at": "yesterday", "metadata": [1]}
            client.set(f"{namespace}:entity:odd", json.dumps(odd), px=60_000)
            listed = flowkit("jobs", "--board", redis_board, "conductors")
            as_json = flowkit("jobs", "--board", redis_board, "conductors", "--json")
    finally:
        client.close()
        persistence.close()
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr, listed.stderr
    rows = listed.stdout.splitlines()
    assert [row.split()[0] for row in rows] == ["NAME", "alive", "odd"], listed.stdout
    assert rows[2].split()[1:] == ["-", "-", "yesterday"], rows
    said = listed.stderr
    assert f"ignoring malformed entity entry {namespace}:entity:torn" in said, said
    assert f"ignoring malformed entity entry {namespace}:entity:list" in said and "a JSON list" in said
    assert as_json.returncode == 0, as_json.stderr
    assert sorted(e["name"] for e in json.loads(as_json.stdout)) == ["alive", "odd"]


def test_flows_resume_refuses_a_flow_a_live_conductor_holds(redis_board: str, tmp_path: Path) -> None:
    # `flowkit flows resume` of a job's flow ran it while a live conductor still
    # held the job: its tasks ran twice at once. The conductor now records the
    # job in the flow's metadata and the resume refuses unless it can hold the job itself.
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    persistence = persistence_backends.fetch(connection)
    with persistence.get_connection() as conn:
        conn.upgrade()
    calls, gate = str(tmp_path / "calls"), tmp_path / "gate"
    from tests.conductors.conftest import post_flow

    with backends.backend("b", redis_board, persistence=persistence) as board:
        job, fd = post_flow(
            board, persistence, flows.chain, [2, 0, str(gate)], job_store={"v0": 0, "calls": calls}
        )
    persistence.close()
    conductor = subprocess.Popen(
        [sys.executable, "-m", "flowkit", "conductor", "--board", redis_board, "--connection", connection,
         "--name", "holder", "--wait-timeout", "0.05", "--max-dispatches", "1"],
        cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    resume = ["flows", "resume", fd.uuid, "--connection", connection, "--no-progress"]
    try:
        services.wait_until(lambda: len(flows.read_calls(calls)) == 1, 60, message="step0 running")
        by_hand = subprocess.Popen(
            [sys.executable, "-m", "flowkit", *resume], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True
        )
        try:
            # Either it refuses, or it runs step0 a second time (the defect).
            services.wait_until(
                lambda: by_hand.poll() is not None or len(flows.read_calls(calls)) > 1, 60, message="resume"
            )
        finally:
            by_hand.kill()
            _, refused = by_hand.communicate(timeout=30)
        assert [c["atom"] for c in flows.read_calls(calls)] == ["step0"]
        assert by_hand.returncode == 2, refused
        assert refused.strip() == (
            f"flowkit flows resume: error: flow 'job' ({fd.uuid}) is run by a conductor for job {job.uuid}"
            f" on redis board {redis_board}; resuming it while a conductor holds the job runs its tasks"
            " twice: pass --board URL for the resume to hold the job while it runs, or --force if you are"
            " sure no conductor runs it"
        )
        # --board sees the claim: refused again, naming its owner.
        held = flowkit(*resume, "--board", redis_board)
        assert held.returncode == 2 and f"job {job.uuid} is claimed by 'holder'" in held.stderr, held.stderr
        # Another board is no proof the job is free.
        other = flowkit(*resume, "--board", redis_board + "-other")
        assert other.returncode == 2 and f"is not the board of job {job.uuid}" in other.stderr, other.stderr
        # The dry run says whose flow it is.
        dry = flowkit(*resume, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"flow 'job' belongs to job {job.uuid} on redis board {redis_board}" in dry.stdout
        dry_json = json.loads(flowkit(*resume, "--dry-run", "--json").stdout)
        assert dry_json["job"] == {"uuid": job.uuid, "board": "redis", "url": redis_board}
        assert [c["atom"] for c in flows.read_calls(calls)] == ["step0"]
        gate.touch()
        _, stderr = conductor.communicate(timeout=60)
    finally:
        conductor.kill()
    assert conductor.returncode == 0, stderr
    # The job is done and gone from the board: --board lets the resume go on.
    done = flowkit(*resume, "--board", redis_board)
    assert done.returncode == 0, done.stderr
    assert [c["atom"] for c in flows.read_calls(calls)] == ["step0", "step1"]
    # --force skips the check.
    assert flowkit(*resume, "--force").returncode == 0


def test_a_conductor_records_no_board_password_in_a_flows_metadata(
    redis_server: services.RedisServer, tmp_path: Path
) -> None:
    # The board's password is the operator's to give again (--board): a database is no place for it.
    import redis

    redis_server.start()
    user = f"pw-{uuid.uuid4().hex[:8]}"
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    client.acl_setuser(
        user, enabled=True, passwords=["+secret-pw"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    client.close()
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    board = f"redis://{user}:secret-pw@127.0.0.1:{redis_server.port}/0?namespace={user}"
    common = ["jobs", "--board", board, "--connection", connection]
    store = json.dumps({"v0": 5, "calls": str(tmp_path / "calls")})
    posted = flowkit(
        *common, "post", "p", "--factory", "tests.conductors.flows.chain", "--args", "[1]", "--store", store
    )
    assert posted.returncode == 0, posted.stderr
    ran = flowkit(
        "conductor", "--board", board, "--connection", connection, "--name", "c", "--max-dispatches", "1"
    )
    assert ran.returncode == 0, ran.stderr
    assert "secret-pw" not in (tmp_path / "flows.db").read_bytes().decode("utf-8", "replace")
    persistence = persistence_backends.fetch(connection)
    try:
        with persistence.get_connection() as conn:
            [book] = conn.get_logbooks()
            [detail] = list(book)
    finally:
        persistence.close()
    assert detail.meta["job"] == {
        "uuid": posted.stdout.strip(),
        "board": "redis",
        "url": board.replace("secret-pw", "***"),
    }


def test_flows_resume_checks_a_zookeeper_claim_and_goes_on_once_its_holder_is_gone(
    zookeeper_path_url: str, tmp_path: Path
) -> None:
    # A conductor that died leaves its claim until its ZooKeeper session ends;
    # from then on `flows resume --board` of its job's flow goes on.
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    calls = str(tmp_path / "calls")
    persistence = persistence_backends.fetch(connection)
    with persistence.get_connection() as conn:
        conn.upgrade()
    from flowkit.cli._held import JOB_KEY, JobRecord
    from tests.conductors.conftest import post_flow

    holder = backends.fetch("holder", zookeeper_path_url, persistence=persistence)
    holder.connect()
    try:
        job, fd = post_flow(holder, persistence, flows.chain, [1], meta_store={"v0": 0, "calls": calls})
        holder.claim(job, "zk-holder")
        # As the conductor that claimed it records it.
        fd.meta[JOB_KEY] = JobRecord.of(job.uuid, zookeeper_path_url).to_dict()
        with persistence.get_connection() as conn:
            conn.update_flow_details(fd)
        resume = ["flows", "resume", fd.uuid, "--connection", connection, "--no-progress"]
        held = flowkit(*resume, "--board", zookeeper_path_url)
        assert held.returncode == 2, held.stderr
        assert f"job {job.uuid} is claimed by 'zk-holder' on zookeeper board" in held.stderr
        assert flows.read_calls(calls) == []
    finally:
        holder.close()  # its session, and with it the claim, ends: as when its conductor dies
        persistence.close()
    done = flowkit(*resume, "--board", zookeeper_path_url)
    assert done.returncode == 0, done.stderr
    assert [c["atom"] for c in flows.read_calls(calls)] == ["step0"]


def test_flows_resume_knows_its_jobs_board_by_what_identifies_it_not_by_its_spelling(
    redis_server: services.RedisServer, tmp_path: Path
) -> None:
    # The board --board names was compared with the recorded one as text: another
    # spelling of the same board (no /0, a trailing slash, the host's case, the
    # password given) was refused as "not the board of job ...".
    import redis

    redis_server.start()
    user, port = f"u-{uuid.uuid4().hex[:8]}", redis_server.port
    client = redis.Redis(host="127.0.0.1", port=port)
    client.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all"])
    client.close()
    recorded = f"redis://{user}:pw@localhost:{port}/0?namespace={user}"
    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    calls = str(tmp_path / "calls")
    persistence = persistence_backends.fetch(connection)
    with persistence.get_connection() as conn:
        conn.upgrade()
    from flowkit.cli._held import JOB_KEY, JobRecord
    from tests.conductors.conftest import post_flow

    resume = ["flows", "resume", "--connection", connection, "--no-progress"]
    same = [
        f"redis://{user}:pw@localhost:{port}?namespace={user}",
        f"redis://{user}:pw@LOCALHOST:{port}/?namespace={user}",
        f"redis://{user}:pw@localhost:{port}/0/?namespace={user}",
    ]
    others = {
        f"redis://{user}:pw@localhost:{port}/1?namespace={user}": "database 1, not 0",
        f"redis://{user}:pw@localhost:{port}/0?namespace={user}&db=1": "database 1, not 0",
        f"redis://{user}:pw@localhost:{port}/0?namespace=other": f"namespace 'other', not '{user}'",
        f"redis://{user}:pw@127.0.0.1:{port}/0?namespace={user}": (
            f"servers 127.0.0.1:{port}, not localhost:{port}"  # one server, maybe: not known from here
        ),
    }
    holder = backends.fetch("holder", recorded, persistence=persistence)
    holder.connect()
    try:
        job, fd = post_flow(holder, persistence, flows.chain, [1], meta_store={"v0": 0, "calls": calls})
        holder.claim(job, "redis-holder")
        fd.meta[JOB_KEY] = JobRecord.of(job.uuid, recorded).to_dict()  # as the conductor records it
        with persistence.get_connection() as conn:
            conn.update_flow_details(fd)
        for url in same:
            held = flowkit(*resume, fd.uuid, "--board", url)
            assert held.returncode == 2, held.stderr
            assert f"job {job.uuid} is claimed by 'redis-holder' on redis board" in held.stderr, url
            assert "pw@" not in held.stderr
        for url, why in others.items():
            other = flowkit(*resume, fd.uuid, "--board", url)
            assert other.returncode == 2, other.stderr
            assert other.stderr == (
                f"flowkit flows resume: error: --board {url.replace(':pw@', ':***@')} is not the board of"
                f" job {job.uuid} ({recorded.replace(':pw@', ':***@')}): {why}; give that board's URL, or"
                " --force if you are sure no conductor runs it\n"
            )
        assert flows.read_calls(calls) == []
        holder.abandon(job, "redis-holder")
    finally:
        holder.close()
        persistence.close()
    done = flowkit(*resume, fd.uuid, "--board", same[1])
    assert done.returncode == 0, done.stderr
    assert [c["atom"] for c in flows.read_calls(calls)] == ["step0"]
