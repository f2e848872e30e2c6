"""``flowkit workers``: an operator sees which workers are alive, on a real Redis."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.workers.conftest import WorkerFactory

REPO = Path(__file__).resolve().parents[2]


def _workers(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOWKIT_WORKER_SECRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "flowkit", "workers", "--redis", url, *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _listed(url: str) -> list[dict[str, Any]]:
    done = _workers(url, "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def test_workers_lists_the_live_workers_by_topic_and_drops_a_stopped_one(
    python_worker: WorkerFactory, redis_flushed_url: str
) -> None:
    assert _workers(redis_flushed_url).stdout == "no live workers\n"
    volumes = python_worker("volumes", heartbeat=0.2)
    python_worker("images", heartbeat=0.2)
    rows = _listed(redis_flushed_url)
    assert [(r["topic"], r["language"]) for r in rows] == [("images", "python"), ("volumes", "python")]
    assert {r["worker"] for r in rows if r["topic"] == "volumes"} == {volumes.worker_id}
    assert rows[0]["tasks"] and rows[0]["tasks"] == rows[1]["tasks"]  # what the worker offers
    text = _workers(redis_flushed_url, "--topic", "volumes").stdout.splitlines()
    assert text[0].split() == ["TOPIC", "WORKER", "HOST", "PID", "LANGUAGE", "SEEN", "TASKS"]
    assert len(text) == 2 and text[1].startswith(f"volumes  {volumes.worker_id}  ")
    volumes.stop()
    wait_until(lambda: [r["topic"] for r in _listed(redis_flushed_url)] == ["images"], timeout=30)


def test_workers_names_an_unreachable_redis_with_its_password_masked() -> None:
    done = _workers("redis://:hunter2@127.0.0.1:1/0")
    assert done.returncode == 1
    assert done.stderr.startswith(
        "flowkit workers: error: cannot read workers from Redis redis://:***@127.0.0.1:1/0"
    )
    assert "hunter2" not in done.stderr and done.stderr.count("\n") == 1
    assert _workers("amqp://somewhere").returncode == 2


def test_workers_fails_within_its_timeout_on_a_frozen_redis_naming_the_masked_url(own_redis: Any) -> None:
    # It connected without a socket timeout: with redis-py before 8, a frozen Redis held it for ever.
    url = f"redis://:hunter2@127.0.0.1:{own_redis.port}/0"
    own_redis.freeze()
    began = time.monotonic()
    done = _workers(url, "--timeout", "0.5")
    elapsed = time.monotonic() - began
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(
        f"flowkit workers: error: cannot read workers from Redis redis://:***@127.0.0.1:{own_redis.port}/0"
    )
    assert "hunter2" not in done.stderr
    assert elapsed < 10.0, f"took {elapsed:.1f}s with --timeout 0.5"


def test_workers_sets_its_own_socket_timeouts_by_default(redis_flushed_url: str) -> None:
    # Not left to the client's default, which is "no timeout" in redis-py before 8.
    from flowkit.cli.workers import TIMEOUT, connect

    client = connect(redis_flushed_url)
    try:
        options = client.connection_pool.connection_kwargs
        assert options["socket_timeout"] == TIMEOUT
        assert options["socket_connect_timeout"] <= TIMEOUT
    finally:
        client.close()


def test_workers_escapes_what_a_hostile_advertisement_says(redis_flushed_url: str, redis_client: Any) -> None:
    # A worker id, topic, host or task name is any string a process on the Redis
    # wrote: printed raw, an escape repainted the operator's terminal and a
    # newline forged a row of the table.
    from flowkit.engines.worker_based import protocol

    worker_id = "w1\x1b[2J\nimages  forged-worker"
    topic = "vol\u202eumes"
    advert = protocol.notify_message(
        worker_id, topic, ["ok.task", "evil\r\x1b]0;owned\x07task"], heartbeat=30.0, visibility_timeout=60.0
    )
    advert["host"] = "host\nFORGED"
    advert["language"] = "py\x00"
    expires_ms = int((time.time() + 90) * 1000)
    redis_client.hset(protocol.worker_key("flowkit", worker_id), mapping=protocol.encode(advert, None))
    redis_client.zadd(protocol.workers_key("flowkit", topic), {worker_id: expires_ms})
    redis_client.zadd(protocol.topics_key("flowkit"), {topic: expires_ms})

    done = _workers(redis_flushed_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout  # the header and one row: no forged one
    assert not any(c in done.stdout for c in "\x1b\r\x00\x07\u202e")
    row = lines[1]
    assert row.startswith("vol\\u202eumes  w1\\x1b[2J\\nimages  forged-worker  host\\nFORGED  ")
    assert row.endswith("2: ok.task, evil\\r\\x1b]0;owned\\x07task")
    rows = json.loads(_workers(redis_flushed_url, "--json").stdout)  # JSON escapes them itself
    assert [(r["worker"], r["host"]) for r in rows] == [(worker_id, "host\nFORGED")]


def test_a_worker_asked_to_stop_while_it_imports_its_tasks_exits_0(redis_url: str, tmp_path: Path) -> None:
    # Its handlers went in once its task modules were imported: a SIGTERM while a
    # module took its time importing (a large library, a model loaded) killed it
    # (status -15), a Ctrl-C printed a KeyboardInterrupt traceback.
    marker, gate = tmp_path / "importing", tmp_path / "gate"
    (tmp_path / "slow_tasks.py").write_text(
        "import pathlib, time\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        f"deadline = time.monotonic() + 60\n"
        f"while not pathlib.Path({str(gate)!r}).exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "from flowkit import task\n"
        "class Slow(task.Task):\n"
        "    def execute(self):\n"
        "        return 1\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "FLOWKIT_WORKER_SECRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    log = tmp_path / "worker.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowkit", "worker", "--redis", redis_url, "--topic", "slow",
             "--tasks", "slow_tasks", "--worker-id", "starting"],
            cwd=tmp_path, env=env, stderr=err, text=True,
        )  # fmt: skip
    try:
        wait_until(marker.exists, timeout=60)
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "SIGTERM received" in log.read_text() or proc.poll() is not None, timeout=30)
        gate.touch()
        status = proc.wait(timeout=60)
    finally:
        gate.touch()
        proc.kill()
        proc.wait()
    said = log.read_text()
    assert status == 0, said
    assert "SIGTERM received: stopping worker starting gracefully" in said and "Traceback" not in said, said


def test_a_stop_between_the_start_up_check_and_run_is_not_lost(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The command checks for a stop that came while it started, then calls
    # run(); run() forgets a stop() made before it (as TaskFlow's worker does), so
    # a SIGTERM in the few bytecodes between the two was lost and the worker
    # served on. The signal is raised right there: at the entry of run().
    from flowkit.cli import main
    from flowkit.engines.worker_based.worker import Worker

    real_run = Worker.run

    def signalled_run(self: Worker, *args: Any, **kwargs: Any) -> None:
        signal.raise_signal(signal.SIGTERM)  # its handler runs before the next bytecode
        real_run(self, *args, **kwargs)

    monkeypatch.setattr(Worker, "run", signalled_run)
    caplog.set_level(logging.INFO)
    status = main(
        ["worker", "--redis", "memory://", "--topic", "t", "--tasks", "tests.workers.behaviour_tasks",
         "--burst", "--worker-id", "between"]
    )  # fmt: skip
    assert status == 0
    said = [record.getMessage() for record in caplog.records]
    assert "SIGTERM received: stopping worker between gracefully" in said, said
    assert not [line for line in said if "serves topic" in line], said  # it never served
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was put back


def _connects_to(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds an established TCP connection to 127.0.0.1:``port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
            return True
    return False


def test_a_worker_asked_to_stop_while_redis_does_not_answer_exits_0_at_once(own_redis: Any) -> None:
    # A stop while the worker reached for a Redis that did not answer waited out
    # the connect timeout, then failed "cannot reach Redis" with status 1: a stop
    # someone asked for, read as a failure by a supervisor. The Redis is real,
    # and frozen (SIGSTOP): its port accepts the connection, nothing answers.
    from flowkit.engines.worker_based.worker import MAX_BLOCK, REDIS_TIMEOUT

    env = {k: v for k, v in os.environ.items() if k != "FLOWKIT_WORKER_SECRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    own_redis.freeze()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowkit", "worker", "--redis", own_redis.url, "--topic", "frozen",
         "--tasks", "tests.workers.behaviour_tasks", "--worker-id", "frozen"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: proc.poll() is not None or _connects_to(proc.pid, own_redis.port), timeout=60)
        assert proc.poll() is None, proc.communicate()
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, said = proc.communicate(timeout=60)
        took = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, said
    assert said.strip().endswith("SIGTERM received: stopping worker frozen gracefully"), said
    assert "cannot reach Redis" not in said and "Traceback" not in said, said
    assert took < REDIS_TIMEOUT + MAX_BLOCK, took  # before Redis's answer would have timed out
