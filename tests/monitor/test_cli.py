"""``flowkit monitor`` as a shell user starts it: the address it prints is the one it serves."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import FLOWKIT, SOURCE_ROOT, command_env
from tests.conftest import wait_until
from tests.monitor._factories import run_fan


def _start_monitor(
    tmp_path: Path, *options: str, verbose: bool = False, stderr: int = subprocess.PIPE, **env: str
) -> subprocess.Popen[str]:
    """Start ``flowkit [-v] monitor --port 0`` on a fresh SQLite file, as a shell user would.

    The caller reads the first line itself: what it says is what these tests check.
    """
    return subprocess.Popen(
        [
            FLOWKIT,
            *(["-v"] if verbose else []),
            "monitor",
            "--connection",
            f"sqlite:///{tmp_path}/t.db",
            "--port",
            "0",
            *options,
        ],
        env=command_env(**env),
        cwd=SOURCE_ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def test_port_0_prints_the_port_it_picked_and_serves_there(tmp_path: Path) -> None:
    # It printed "flowkit monitor on http://127.0.0.1:0/", so nobody could tell where it was.
    proc = _start_monitor(tmp_path, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.fullmatch(r"flowkit monitor on http://127\.0\.0\.1:(\d+)/\n", line)
        assert found, line
        port = int(found.group(1))
        assert port != 0

        def flows() -> bytes | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/flows", timeout=5) as response:
                    return bytes(response.read())
            except OSError:
                return None

        assert wait_until(flows, timeout=30) == b"[]"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [FLOWKIT, "monitor", "--connection", f"sqlite:///{tmp_path}/t.db", "--port", str(port)],
            env=command_env(),
            cwd=SOURCE_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.startswith(f"flowkit monitor: error: cannot listen on 127.0.0.1:{port}: "), done.stderr
    assert done.stdout == ""


def test_verbose_access_lines_do_not_show_the_token(tmp_path: Path) -> None:
    # A browser opens /?token=TOKEN once; uvicorn's access line printed that URL whole.
    proc = _start_monitor(tmp_path, verbose=True, FLOWKIT_MONITOR_TOKEN="t0k3n-s3cret")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" on ", 1)[1].strip()
        for path in ("?token=t0k3n-s3cret", "api/flows?state=RUNNING&token=t0k3n-s3cret"):
            with urllib.request.urlopen(url + path, timeout=5) as response:
                assert response.status == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "t0k3n-s3cret" not in out + err
    assert '"GET /?token=*** HTTP/1.1" 200' in out + err
    assert '"GET /api/flows?state=RUNNING&token=*** HTTP/1.1" 200' in out + err


def test_verbose_access_lines_of_hostile_paths_stay_on_one_line(tmp_path: Path) -> None:
    """A client's path reaches the access lines (``-v``) on one line, however it is written.

    Percent-encoded controls stay encoded there (uvicorn logs the raw target),
    and the HTTP parser installed here (h11) refuses raw ones before any line
    is logged; uvicorn's other parser (httptools) is laxer, which
    ``test_access_line_filter_escapes_what_a_path_holds`` covers.
    """
    proc = _start_monitor(tmp_path, verbose=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" on ", 1)[1].strip()
        host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        for target in (b"/api/flows/%0A%1B[2J%C2%85forged", b"/api/flows/a\x85\x9b2J\x1bforged"):
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert conn.recv(64).startswith(b"HTTP/1.1 ")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert '"GET /api/flows/%0A%1B[2J%C2%85forged HTTP/1.1" 404' in out + err, out + err
    assert not any(c in out + err for c in "\x1b\x85\x9b\u2028"), repr(out + err)


def test_access_line_filter_escapes_what_a_path_holds() -> None:
    # uvicorn's httptools parser lets bytes of a target through that h11 refuses, and
    # uvicorn writes them as they came (read as Latin-1): NEL starts a line for many
    # log viewers, CSI (the 8-bit ESC [) rewrote the terminal of whoever read them.
    from flowkit.cli.monitor import _TokenMask

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/a\x85\x9b2J\x1bforged?token=s3cret", "1.1", 404),
        None,
    )
    assert _TokenMask().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /a\\x85\\x9b2J\\x1bforged?token=*** HTTP/1.1" 404'


def test_serving_beyond_loopback_without_a_token_warns_once_on_stderr(tmp_path: Path) -> None:
    proc = _start_monitor(tmp_path, "--host", "0.0.0.0")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("flowkit monitor on http://0.0.0.0:")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    warnings = [line for line in err.splitlines() if "without a token" in line]
    assert len(warnings) == 1 and "FLOWKIT_MONITOR_TOKEN" in warnings[0], err


def test_allow_factory_lets_the_monitor_call_that_factory_only(tmp_path: Path) -> None:
    uuid = run_fan(f"sqlite:///{tmp_path}/t.db")
    for options, drawn_from in (
        ((), "events"),
        (("--allow-factory", "tests.monitor._factories."), "factory"),
    ):
        proc = _start_monitor(tmp_path, *options, stderr=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip().removeprefix("flowkit monitor on ")
            with urllib.request.urlopen(f"{url}api/flows/{uuid}/graph", timeout=30) as response:
                graph = json.load(response)
            assert graph["drawn_from"] == drawn_from, options
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_the_stream_of_a_flow_that_never_ends_and_exits_0(
    tmp_path: Path, sig: signal.Signals
) -> None:
    # uvicorn waited for every open stream to end before stopping: a page watching a
    # flow never run to its end kept the monitor running after SIGTERM, for good.
    from flowkit import engines
    from flowkit.persistence import backends
    from tests.monitor._factories import make_fan

    with backends.backend(f"sqlite:///{tmp_path}/t.db") as backend:
        uuid = engines.load_from_factory(make_fan, backend=backend).storage.flow_uuid  # PENDING for good
    proc = _start_monitor(tmp_path, "--poll", "0.1")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("flowkit monitor on ")
        with urllib.request.urlopen(f"{url}api/flows/{uuid}/stream", timeout=30) as stream:
            assert stream.readline().startswith(b"data: ")  # the stream is open and watching
            proc.send_signal(sig)
            rest: list[str] = []
            deadline = time.monotonic() + 5
            for raw in stream:  # a comment line each poll, so the deadline is checked
                rest.append(raw.decode())
                assert time.monotonic() < deadline, f"the stream went on after SIGTERM: {rest[-3:]}"
        assert "event: closing\n" in rest, rest
        # Stopped within a couple of seconds, and with status 0: a graceful stop, as a worker's
        # or a conductor's (uvicorn raised the signal again once stopped: -15, read as a kill).
        assert proc.wait(timeout=5) == 0
        assert proc.stderr is not None
        assert f"{sig.name} received: stopping the monitor gracefully" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_a_second_stop_signal_stops_at_once_and_still_exits_0(tmp_path: Path) -> None:
    # The rule flowkit worker and flowkit conductor follow too (doc/cli.rst, "Exit status").
    proc = _start_monitor(tmp_path, "--poll", "0.1")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("flowkit monitor on ")
        with urllib.request.urlopen(f"{url}api/flows", timeout=30) as response:  # uvicorn handles signals
            assert response.status == 200
        # Both before the first is even handled (Python runs handlers between bytecodes,
        # and uvicorn looks at its stop flag a tenth of a second later): never racing the exit.
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        said = proc.stderr.read()
        # Python runs pending handlers by signal number: SIGINT's may come first.
        assert " received: stopping the monitor gracefully" in said, said
        assert " received again: stopping the monitor now" in said, said
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_a_stop_signal_right_after_the_announcement_is_a_graceful_stop(tmp_path: Path) -> None:
    # The line was printed before uvicorn put its handlers in: a SIGTERM sent as
    # soon as it was read killed the monitor (-15, read as a crash by a supervisor).
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = _start_monitor(tmp_path)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("flowkit monitor on ")
            proc.send_signal(sig)
            assert proc.wait(timeout=30) == 0, sig.name
            assert proc.stderr is not None
            assert f"{sig.name} received: stopping the monitor gracefully" in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def test_a_forced_stop_prints_no_traceback(tmp_path: Path) -> None:
    # uvicorn skipped the application's shutdown on a second signal and cancelled
    # it instead, and the lifespan's CancelledError (and an open stream's) was
    # printed as an ERROR with its traceback: an operator's own "stop now" read as a crash.
    from flowkit import engines
    from flowkit.persistence import backends
    from tests.monitor._factories import make_fan

    with backends.backend(f"sqlite:///{tmp_path}/t.db") as backend:
        uuid = engines.load_from_factory(make_fan, backend=backend).storage.flow_uuid  # PENDING for good
    proc = _start_monitor(tmp_path, "--poll", "5")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("flowkit monitor on ")
        with urllib.request.urlopen(f"{url}api/flows/{uuid}/stream", timeout=30) as stream:
            assert stream.readline().startswith(b"data: ")  # a request in flight when it stops
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        said = proc.stderr.read().splitlines()
        assert len(said) == 2, said
        assert said[0].endswith(" received: stopping the monitor gracefully"), said
        assert said[1].endswith(" received again: stopping the monitor now"), said
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_while_it_opens_its_database_exits_0_at_once(
    postgresql_server: Any, postgresql_db_url: str, sig: signal.Signals
) -> None:
    # Its handlers went in only from the announcement on: a SIGTERM while it
    # opened a database that was slow to answer killed it (status -15), a
    # Ctrl-C printed a KeyboardInterrupt traceback. Slow for real here: another
    # session holds the schema's version table locked, so the monitor's schema
    # check waits on PostgreSQL until the lock goes.
    from flowkit.persistence import backends

    with backends.backend(postgresql_db_url) as backend, backend.get_connection() as conn:
        conn.upgrade()
    dbname = postgresql_db_url.rsplit("/", 1)[1]
    locker = postgresql_server.connect(dbname)
    try:
        # Held until the connection closes: psycopg opened a transaction for it.
        locker.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
        proc = subprocess.Popen(
            [FLOWKIT, "monitor", "--connection", postgresql_db_url, "--port", "0"],
            env=command_env(),
            cwd=SOURCE_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def waits_on_the_lock() -> bool:
                assert proc.poll() is None, proc.communicate()
                with postgresql_server.connect(dbname) as watcher:
                    row = watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = %s AND wait_event_type = 'Lock'",
                        (dbname,),
                    ).fetchone()
                return bool(row and row[0])

            wait_until(waits_on_the_lock, timeout=60, interval=0.05)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)  # at once: the lock is still held
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    finally:
        locker.close()
    assert proc.returncode == 0, err
    assert out == ""  # it never announced itself: it never served
    [said] = err.splitlines()  # that line alone: no traceback, no "interrupted"
    assert said.endswith(f" {sig.name} received: stopping the monitor gracefully"), err


@pytest.mark.parametrize("token", ["", "  "])
def test_an_empty_token_is_refused_rather_than_serving_without_one(tmp_path: Path, token: str) -> None:
    # `--token "$TOKEN"` with TOKEN unset served every flow to anyone, without a word on loopback.
    done = subprocess.run(
        [FLOWKIT, "monitor", "--connection", f"sqlite:///{tmp_path}/t.db", "--port", "0", f"--token={token}"],
        env=command_env(),
        cwd=SOURCE_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(
        "flowkit monitor: error: argument --token: is empty: give the token requests must carry, or leave"
        " --token out (and $FLOWKIT_MONITOR_TOKEN unset) to serve without one\n"
    ), done.stderr
    assert done.stdout == "" and not (tmp_path / "t.db").exists()
