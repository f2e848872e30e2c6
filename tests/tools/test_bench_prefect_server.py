"""The helpers bench_peers.py uses to run Prefect against one API server it starts.

Prefect itself is optional and not installed for the tests: these check the
waiting, the CPU reading and the report, with an injected clock and a real
local HTTP server.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.manual_clock import ManualClock
from tests.tools._load import load_tool

server_mod = load_tool("_bench_prefect_server")
peers = load_tool("bench_peers")


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_url() -> Iterator[str]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api/health"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_healthy_server_is_found_at_once(health_url: str) -> None:
    clock = ManualClock(now=0.0)
    assert server_mod.wait_until_healthy(health_url, 5, clock=clock, sleep=clock.sleep) == 0


def test_a_port_nobody_listens_on_fails_after_the_limit_naming_the_url() -> None:
    clock = ManualClock(now=0.0)
    url = f"http://127.0.0.1:{server_mod.free_port()}/api/health"
    with pytest.raises(server_mod.ServerStartError, match=f"{url} did not answer 200 within 3 s"):
        server_mod.wait_until_healthy(url, 3, clock=clock, sleep=clock.sleep)
    assert 3 < clock.now < 3.5


def test_a_server_that_exited_fails_at_once_with_its_code() -> None:
    clock = ManualClock(now=0.0)
    url = f"http://127.0.0.1:{server_mod.free_port()}/api/health"
    with pytest.raises(server_mod.ServerStartError, match="exited with code 3"):
        server_mod.wait_until_healthy(url, 60, exited=lambda: 3, clock=clock, sleep=clock.sleep)
    assert clock.now == 0


def test_idle_is_a_window_with_little_cpu() -> None:
    clock = ManualClock(now=0.0)
    # Busy (0.9 s of CPU per 1 s window) for three windows, then idle.
    used = iter([0.0, 0.9, 1.8, 2.7, 2.72])
    waited = server_mod.wait_until_idle(lambda: next(used), 60, clock=clock, sleep=clock.sleep)
    assert waited == 4


def test_a_process_busy_past_the_limit_is_reported_as_none() -> None:
    clock = ManualClock(now=0.0)
    waited = server_mod.wait_until_idle(lambda: clock.now * 0.9, 5, clock=clock, sleep=clock.sleep)
    assert waited is None and clock.now == 5


def test_the_cpu_of_a_process_group_counts_this_process() -> None:
    # The test process has run the collection: its group has used some CPU.
    assert server_mod.process_group_cpu_s(os.getpgrp()) > 0
    assert server_mod.process_group_cpu_s(2**22 + 1) == 0  # no such group


def test_a_prefect_child_is_given_only_the_server_url_and_the_client_settings(tmp_path: Path) -> None:
    done = subprocess.Popen([sys.executable, "-c", ""])
    done.wait()
    server = server_mod.PrefectServer(done, tmp_path, "http://127.0.0.1:1/api", 0.0)
    # Variables to add to a child's environment, not a whole one (no PATH, no HOME).
    assert server.extra_env() == {**server_mod.CLIENT_ENV, "PREFECT_API_URL": "http://127.0.0.1:1/api"}


def test_the_note_reports_the_start_and_the_waits() -> None:
    note = peers.prefect_note({"start_s": 12.34, "settle_s": [10.0, 30.0, 20.0, None]})
    assert "took 12.3 s to start" in note
    assert "(median 20 s, at most 30 s)" in note
    assert "still busy after 1 of them" in note
    assert "rounds" not in note


def test_the_note_says_when_prefect_had_fewer_rounds() -> None:
    note = peers.prefect_note({"start_s": 9.0, "settle_s": [], "rounds": 1, "of_rounds": 3})
    assert note.endswith("Prefect's figures are of 1 round (``--prefect-rounds``), not the median of 3.")


def test_a_library_with_fewer_rounds_runs_only_the_first_ones() -> None:
    libs = [peers.Library(name, name, None, None) for name in ("floor-loop", "floor-graphlib-pool")]
    cells = peers.measure(libs, [("linear", 20, 0)], 2, 60, rounds_of={"floor-loop": 1})
    assert len(cells["floor-loop", "linear", 20, 0].samples) == 1
    assert len(cells["floor-graphlib-pool", "linear", 20, 0].samples) == 2


def test_a_library_whose_server_did_not_start_is_failed_without_running() -> None:
    lib = peers.Library("floor-loop", "plain loop", None, None)
    cells = peers.measure([lib], [("linear", 20, 0)], 1, 60, unavailable={"floor-loop": "no server"})
    cell = cells["floor-loop", "linear", 20, 0]
    assert (cell.status, cell.note, cell.samples) == ("failed", "no server", [])
