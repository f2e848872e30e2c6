"""The monitor in a real headless Chromium: a flow run by another process appears and
its atoms change colour live; and the live stream itself, from a real server.

Chromium is Debian's package (installed by tools/test.sh), driven by Playwright
for Python; no browser is downloaded. The screenshot goes to tests/artifacts/.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from flowkit import engines
from flowkit.cli.monitor import LISTENING_PREFIX
from flowkit.persistence import backends
from tests import services
from tests.cli._flows import make_shop
from tests.cli.conftest import FLOWKIT, SOURCE_ROOT, command_env, flowkit_cmd
from tests.conftest import wait_until
from tests.monitor._factories import run_big, run_twice

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Request, Route

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
#: The atoms of ``tests.cli._flows:make_slow``.
SLOW_ATOMS = ("one", "two", "three")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
    "--mute-audio",
]


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _first_flow(url: str, timeout: float = 60) -> str:
    """The uuid of the first flow the monitor at ``url`` lists, waiting until it lists one (run elsewhere)."""
    flows = wait_until(lambda: _get_json(url + "/api/flows"), timeout=timeout)
    assert isinstance(flows, list)
    return str(flows[0]["uuid"])


class Monitor:
    def __init__(self, url: str, connection: str) -> None:
        self.url = url
        self.connection = connection


def _start_monitor(connection: str, *options: str, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``flowkit monitor --port 0`` and read the URL it bound from its first line.

    The system picks the port and the monitor says which: no port is chosen
    here and then bound there, which another process could take in between.
    """
    proc = subprocess.Popen(
        [FLOWKIT, "monitor", "--connection", connection, "--port", "0", *options],
        env=command_env(**env),
        cwd=SOURCE_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith(LISTENING_PREFIX):
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"monitor printed {line!r}, not its URL; stderr: {err.decode()}")
    return proc, line[len(LISTENING_PREFIX) :].strip().rstrip("/")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.communicate(timeout=30)


@contextlib.contextmanager
def _monitoring(connection: str, *options: str, **env: str) -> Iterator[str]:
    """A monitor of ``connection`` (as :func:`_start_monitor`) for the block: gives its URL, then stops it."""
    proc, url = _start_monitor(connection, *options, **env)
    try:
        yield url
    finally:
        _stop(proc)


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    connection = f"sqlite:///{tmp_path}/watched.db"
    with _monitoring(connection, "--poll", "0.1") as base:
        yield Monitor(base, connection)


@contextlib.contextmanager
def _browser() -> Iterator[Browser]:
    """Debian's headless Chromium, driven by Playwright (the test is skipped where either is missing).

    Closed when the block ends, before the test stops its monitor (a stop ends the pages'
    open streams, but a page left open would try to reconnect to a stopped server).
    """
    chromium = services.require_binary("chromium", "chromium")
    sync_api = services.require_module("playwright.sync_api", "playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    """The folder a gated run's atoms wait on: each runs until the test opens its gate (:func:`_open`)."""
    made = tmp_path / "gate"
    made.mkdir()
    return made


def _start_gated_run(factory: str, connection: str, gate: Path) -> subprocess.Popen[bytes]:
    """Run the flow ``factory`` (one of ``tests.cli._flows``) whose atoms wait on ``gate``."""
    return subprocess.Popen(
        [
            FLOWKIT,
            "run",
            f"tests.cli._flows:{factory}",
            "--store",
            "delay=0",
            "--connection",
            connection,
            "--no-progress",
            "--report",
            "none",
        ],
        env=command_env(FLOWKIT_TEST_GATE=str(gate)),
        cwd=SOURCE_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _open(gate: Path, *atoms: str) -> None:
    """Let these atoms of the slow flow finish."""
    for atom in atoms:
        (gate / atom).touch()


def _finish(run: subprocess.Popen[bytes], gate: Path) -> None:
    """Open every gate and wait for the run to end (killing it if it does not)."""
    _open(gate, *SLOW_ATOMS)
    try:
        run.wait(timeout=60)
    except subprocess.TimeoutExpired:
        run.kill()
        run.wait(timeout=10)
        raise


def test_a_flow_run_elsewhere_appears_and_its_atoms_change_colour_live(monitor: Monitor, gate: Path) -> None:
    run = _start_gated_run("make_slow", monitor.connection, gate)
    try:
        with _browser() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(monitor.url + "/")
            # The list refreshes by itself: the new flow shows up without a reload.
            link = page.wait_for_selector("#flows a:text('slow')", timeout=60_000)
            assert link is not None
            link.click()
            # Cytoscape.js draws the graph on canvases; its nodes' state and the
            # colour it paints them are read back from the instance the page keeps.
            page.wait_for_selector("#graph canvas", timeout=60_000)
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            cy = "flowkitMonitor.current.cy"
            page.wait_for_function(f"() => {cy} && {cy}.nodes().length > 0", timeout=60_000)
            drawn = page.evaluate(f"() => {cy}.nodes().map(n => n.id())")
            assert {"one", "two", "three"} <= set(drawn)
            in_state = f"([atom, state]) => {cy}.getElementById(atom).data('state') === state"
            fill = f"atom => {cy}.getElementById(atom).style('background-color')"
            first_running = f"() => {cy}.nodes('[state = \"RUNNING\"]').map(n => n.id())[0]"
            running = page.wait_for_function(first_running, timeout=60_000)
            atom = running.json_value()
            running_fill = page.evaluate(fill, atom)
            # The atom runs until seen RUNNING here; let it finish: the same node
            # turns SUCCESS, with no reload, and the rest of the flow runs.
            _open(gate, *SLOW_ATOMS)
            page.wait_for_function(in_state, arg=[atom, "SUCCESS"], timeout=60_000)
            success_fill = page.evaluate(fill, atom)
            assert running_fill != success_fill
            assert not errors
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "monitor-live.png"), full_page=True)
            page.wait_for_selector('body[data-flow-state="SUCCESS"]', timeout=60_000)
            page.wait_for_function(in_state, arg=["three", "SUCCESS"], timeout=60_000)
            # The report and the event log were refreshed live too.
            assert page.inner_text("#flow-state") == "SUCCESS"
            assert "the flow started" in page.inner_text("#events")
            page.screenshot(path=str(ARTIFACTS / "monitor-done.png"), full_page=True)
    finally:
        _finish(run, gate)
    assert run.returncode == 0, run.stderr.read().decode() if run.stderr else ""


def test_a_sub_flow_spawned_at_run_time_joins_the_drawn_graph_live(monitor: Monitor, gate: Path) -> None:
    # The page drew the graph once, when opened: atoms a task spawned later never
    # appeared (the server also cached the first drawing for good), so their
    # states could not be seen.
    run = _start_gated_run("make_slow_spawning", monitor.connection, gate)
    try:
        uuid = _first_flow(monitor.url)
        with _browser() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(f"{monitor.url}/flows/{uuid}")
            cy = "flowkitMonitor.current.cy"
            state_of = f"([atom, state]) => {cy} && {cy}.getElementById(atom).data('state') === state"
            page.wait_for_function(state_of, arg=["one", "RUNNING"], timeout=60_000)
            ids = f"() => {cy}.nodes().map(n => n.id()).sort()"
            edges = f"() => {cy}.edges().map(e => e.source().id() + '>' + e.target().id()).sort()"
            assert page.evaluate(ids) == ["last", "one", "spawner"]
            _open(gate, "one", "spawner")
            # The spawned atoms are drawn, below the spawner, and coloured as they run.
            page.wait_for_function(state_of, arg=["s1", "RUNNING"], timeout=60_000)
            assert page.evaluate(ids) == ["last", "one", "s1", "s2", "spawner"]
            _open(gate, "s1", "s2")
            page.wait_for_function(state_of, arg=["last", "RUNNING"], timeout=60_000)
            grown = f"() => {cy}.edges().length === 4"
            page.wait_for_function(grown, timeout=60_000)
            # What ran after the spawner now runs after the sub-flow: its link went.
            assert page.evaluate(edges) == ["one>spawner", "s1>s2", "s2>last", "spawner>s1"]
            heights = f"() => Object.fromEntries({cy}.nodes().map(n => [n.id(), n.position('y')]))"
            y = page.evaluate(heights)
            assert y["one"] < y["spawner"] < y["s1"] < y["s2"] < y["last"]
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "monitor-grown.png"), full_page=True)
            _open(gate, "last")
            page.wait_for_selector('body[data-flow-state="SUCCESS"]', timeout=60_000)
            page.wait_for_function(state_of, arg=["s2", "SUCCESS"], timeout=60_000)
            assert not errors
    finally:
        _open(gate, "one", "spawner", "s1", "s2", "last")
        run.wait(timeout=60)
    assert run.returncode == 0, run.stderr.read().decode() if run.stderr else ""


def test_the_stream_sends_each_change_of_state(monitor: Monitor, gate: Path) -> None:
    run = _start_gated_run("make_slow", monitor.connection, gate)
    try:
        uuid = _first_flow(monitor.url, timeout=30)
        seen: list[dict[str, object]] = []
        with urllib.request.urlopen(f"{monitor.url}/api/flows/{uuid}/stream", timeout=30) as stream:
            for raw in stream:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    snapshot = json.loads(line[len("data: ") :])
                    seen.append(snapshot)
                    # An atom runs until the stream has said so: no RUNNING can be missed.
                    _open(gate, *(a for a, state in snapshot["atoms"].items() if state == "RUNNING"))
                    if snapshot["state"] == "SUCCESS":
                        break
    finally:
        _finish(run, gate)
    assert seen[-1]["atoms"] == {"one": "SUCCESS", "two": "SUCCESS", "three": "SUCCESS"}
    # Each message differs from the one before: changes only, no repeats.
    assert all(a != b for a, b in zip(seen, seen[1:], strict=False))
    assert any(s["atoms"].get("two") == "RUNNING" for s in seen)  # type: ignore[attr-defined]


def test_the_stream_asked_for_changes_sends_only_the_atoms_that_changed(monitor: Monitor, gate: Path) -> None:
    # Each snapshot held every atom's state: 10,000 of them per poll for a big flow.
    run = _start_gated_run("make_slow", monitor.connection, gate)
    try:
        uuid = _first_flow(monitor.url, timeout=30)
        seen: list[dict[str, object]] = []
        states: dict[str, str] = {}
        resent: list[str] = []  # atoms sent again in a state the stream had already said
        url = f"{monitor.url}/api/flows/{uuid}/stream?changes=1"
        with urllib.request.urlopen(url, timeout=30) as stream:
            for raw in stream:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    snapshot = json.loads(line[len("data: ") :])
                    seen.append(snapshot)
                    resent += [a for a, state in snapshot["atoms"].items() if states.get(a) == state]
                    states.update(snapshot["atoms"])
                    _open(gate, *(a for a, state in states.items() if state == "RUNNING"))
                    if snapshot["state"] == "SUCCESS":
                        break
    finally:
        _finish(run, gate)
    assert "changes" not in seen[0]  # the first is whole, the ones after it differences
    assert len(seen) > 3 and all(s["changes"] is True for s in seen[1:])
    assert states == dict.fromkeys(SLOW_ATOMS, "SUCCESS")
    # Each atom's state is sent when it changes only: never again while it stays the same.
    assert resent == []


def _read_stream(url: str, within: float = 10) -> tuple[list[str], bool]:
    """The stream's lines, and whether it ended by itself within ``within`` seconds.

    The server writes a line at each poll (0.1 s here), so the deadline is
    checked often even while nothing changes.
    """
    lines: list[str] = []
    deadline = time.monotonic() + within
    with urllib.request.urlopen(url, timeout=within) as stream:
        for raw in stream:
            lines.append(raw.decode().rstrip("\n"))
            if time.monotonic() > deadline:
                return lines, False
    return lines, True


def test_the_stream_of_a_finished_flow_ends_after_its_last_state(monitor: Monitor) -> None:
    # It polled the database forever, per open connection, for a flow that would not change.
    done = flowkit_cmd(
        "run", "tests.cli._flows:make_shop", "--store", "amount=5", "--connection", monitor.connection,
        "--report", "none",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    uuid = _get_json(monitor.url + "/api/flows")[0]["uuid"]  # type: ignore[index]
    lines, ended = _read_stream(f"{monitor.url}/api/flows/{uuid}/stream")
    assert ended, f"the stream of a finished flow went on: {lines[:5]}"
    data = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    assert data[0]["state"] == "SUCCESS" and data[-1] == {"state": "SUCCESS"}
    assert lines.count("event: end") == 1


def test_the_stream_of_an_unknown_flow_is_404_not_a_poll_forever(monitor: Monitor) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{monitor.url}/api/flows/no-such-uuid/stream", timeout=10)
    assert refused.value.code == 404
    assert "no-such-uuid" in json.load(refused.value)["error"]


def test_the_stream_of_a_flow_deleted_while_watched_ends_saying_so(monitor: Monitor) -> None:
    with backends.backend(monitor.connection) as backend:
        engine = engines.load_from_factory(make_shop, store={"amount": 5}, backend=backend)
        uuid = engine.storage.flow_uuid
    lines: list[str] = []
    deadline = time.monotonic() + 10
    with urllib.request.urlopen(f"{monitor.url}/api/flows/{uuid}/stream", timeout=10) as stream:
        for raw in stream:
            lines.append(raw.decode().rstrip("\n"))
            if lines[-1].startswith("data: ") and len(lines) == 1:
                # A flow not run yet is watched until it changes: delete it instead.
                with backends.backend(monitor.connection) as backend, backend.get_connection() as conn:
                    conn.clear_all()
            assert time.monotonic() < deadline, f"the stream went on: {lines[:5]}"
    assert json.loads(lines[0][len("data: ") :])["state"] == "PENDING"
    assert "event: gone" in lines and f"flow {uuid} is no longer in the backend" in "\n".join(lines)


def test_monitor_refuses_requests_without_the_token(tmp_path: Path) -> None:
    def status(url: str, headers: dict[str, str]) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0

    with _monitoring(f"sqlite:///{tmp_path}/t.db", FLOWKIT_MONITOR_TOKEN="t0ken") as url:
        assert status(f"{url}/api/flows", {}) == 401
        assert status(f"{url}/api/flows", {"Authorization": "Bearer t0ken"}) == 200


def test_port_0_prints_the_url_it_bound_and_answers_there(tmp_path: Path) -> None:
    with _monitoring(f"sqlite:///{tmp_path}/t.db") as url:
        assert url.startswith("http://127.0.0.1:")
        assert int(url.rsplit(":", 1)[1]) > 0
        # Listening before the line is printed: the first request is answered, no polling.
        assert _get_json(f"{url}/api/flows") == []


def _status_code(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), {}
    except urllib.error.HTTPError as err:
        return int(err.code), json.loads(err.read() or b"{}")


def test_a_database_that_goes_away_is_named_on_the_pages_which_recover_when_it_is_back(
    postgresql_server: services.PostgresServer, postgresql_db_url: str
) -> None:
    # A password in the URL (trust auth ignores it): every message must mask it.
    connection = postgresql_db_url.replace("flowkit@", "flowkit:s3cret@")
    # A flow not run yet: a finished flow's stream ends, and its page reads nothing more.
    with backends.backend(connection) as backend:
        engines.load_from_factory(make_shop, store={"amount": 5}, backend=backend)
    proc, base = _start_monitor(connection, "--poll", "0.1")
    try:
        with _browser() as browser:
            listing = browser.new_page(viewport={"width": 1280, "height": 800})
            listing.goto(base + "/")
            listing.wait_for_selector("#flows a:text('shop')", timeout=60_000)
            flow = browser.new_page(viewport={"width": 1280, "height": 800})
            flow.goto(base + listing.get_attribute("#flows a", "href"))
            flow.wait_for_selector("body[data-flow-state='PENDING']", timeout=60_000)
            postgresql_server.stop()
            try:
                status, body = _status_code(base + "/api/flows")
                assert status == 503
                error = str(body["error"])
                assert "cannot connect to database" in error and "flowkit:***@" in error
                assert "s3cret" not in error and "\n" not in error
                for page, words in (
                    (listing, "cannot list the flows"),
                    (flow, "database does not answer"),
                ):
                    page.wait_for_selector("#status:visible", timeout=60_000)
                    shown = page.inner_text("#status")
                    assert words in shown and "flowkit:***@" in shown and "s3cret" not in shown
                # What was read before stays on the page.
                assert listing.inner_text("#flows a") == "shop"
                ARTIFACTS.mkdir(exist_ok=True)
                listing.screenshot(path=str(ARTIFACTS / "monitor-database-away.png"), full_page=True)
            finally:
                postgresql_server.start()
            for page in (listing, flow):
                page.wait_for_selector("#status", state="hidden", timeout=60_000)
            assert _status_code(base + "/api/flows")[0] == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    log = err.decode()
    # One line when the outage starts and one when it ends; no traceback per request.
    assert "Traceback" not in log, log
    assert log.count("cannot read its backend") == 1 and "reads its backend again" in log, log
    assert "s3cret" not in log


def test_a_long_flow_keeps_the_atom_it_runs_in_view(postgresql_db_url: str, gate: Path) -> None:
    # 300 atoms in a column do not fit the graph's box even at the smallest zoom,
    # which then showed the middle of the flow: the atom running (the 241st) was
    # out of sight, so its progress could not be watched.
    run = _start_gated_run("make_long_gated", postgresql_db_url, gate)
    proc, base = _start_monitor(postgresql_db_url, "--poll", "0.1")
    try:
        uuid = _first_flow(base)
        with _browser() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(base + "/")
            created = page.wait_for_selector("#flows tbody td:nth-child(4)", timeout=60_000)
            assert created is not None
            # The viewer's local time to the second, not the raw ISO text with microseconds.
            assert "T" not in created.inner_text() and "." not in created.inner_text()
            page.goto(f"{base}/flows/{uuid}")
            cy = "flowkitMonitor.current.cy"
            page.wait_for_function(
                f"() => {cy} && {cy}.getElementById('gated').data('state') === 'RUNNING'", timeout=60_000
            )
            # How long it has been running: a killed run's atom looks the same.
            page.wait_for_selector('#report tr[data-atom="gated"] td.took:text("since")', timeout=60_000)
            assert page.title() == "long-gated RUNNING - flowkit monitor"  # which tab is which flow
            in_view = (
                f"() => {{ const p = {cy}.getElementById('gated').renderedPosition();"
                f" return p.x >= 0 && p.y >= 0 && p.x <= {cy}.width() && p.y <= {cy}.height(); }}"
            )
            page.wait_for_function(in_view, timeout=60_000)
            # Every state of the legend is inside the graph's box (REVERT_FAILURE ran out of it).
            overflow = page.evaluate(
                """() => {
                  const box = document.getElementById('legend').parentElement.getBoundingClientRect();
                  return [...document.querySelectorAll('#legend span')]
                    .filter(b => b.getBoundingClientRect().right > box.right).map(b => b.textContent);
                }"""
            )
            assert overflow == []
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "monitor-long-flow.png"), full_page=False)
            (gate / "gated").touch()
            page.wait_for_selector('body[data-flow-state="SUCCESS"]', timeout=60_000)
    finally:
        (gate / "gated").touch()
        _stop(proc)
        run.wait(timeout=60)
    assert run.returncode == 0, run.stderr.read().decode() if run.stderr else ""


def test_500_flows_html_and_unicode_names_and_a_2000_atom_flow_in_the_browser(
    postgresql_db_url: str,
) -> None:
    from flowkit import engines
    from flowkit.listeners.events import EventLogListener
    from flowkit.patterns import linear_flow
    from flowkit.persistence import backends
    from tests.cli._flows import LONG, Step

    odd = "<script>alert('flow')</script> Ünïcode ✓ & <b>bold</b> 日本語"
    with backends.backend(postgresql_db_url) as backend:
        for i in range(499):
            engine = engines.load(linear_flow.Flow(f"bulk-{i}").add(Step("a"), Step("b")), backend=backend)
            with EventLogListener(engine):
                engine.run()
        engine = engines.load(
            linear_flow.Flow(odd).add(Step("<img src=x onerror=alert(1)>")), backend=backend
        )
        with EventLogListener(engine):
            engine.run()
    run = ("run", "tests.cli._flows:make_long", "--no-progress", "--report", "none")
    assert flowkit_cmd(*run, "--connection", postgresql_db_url).returncode == 0
    with _monitoring(postgresql_db_url) as base, _browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(90_000)  # 500 flows on a loaded machine: generous, not slept
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(base + "/")
        # A page of 100, newest first; the 401 others are a click away.
        page.wait_for_function("() => document.querySelectorAll('#flows tbody tr').length === 100")
        assert page.inner_text("#page-info") == "100 of 501 flows"
        assert page.is_hidden("#newer") and page.is_visible("#older")
        # Names are text: nothing of theirs became an element, no script ran.
        assert page.inner_text("#flows tbody tr:nth-child(2) a") == odd
        assert page.evaluate("document.querySelectorAll('#flows tbody b, #flows tbody script').length") == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "monitor-many-flows.png"))
        page.click("#older")
        page.wait_for_selector("#flows tbody tr:first-child a:text-is('bulk-400')")
        assert page.evaluate("document.querySelectorAll('#flows tbody tr').length") == 100
        assert page.is_visible("#newer") and "before=" in page.url
        page.click("#newer")
        page.wait_for_selector("#flows tbody tr:first-child a:text-is('long')")
        page.click("#flows a:text('long')")
        # The click starts a navigation: until the flow page's script runs, its name is undefined.
        cy = "(typeof flowkitMonitor !== 'undefined' && flowkitMonitor.current.cy)"
        page.wait_for_function(f"() => {cy} && {cy}.nodes().length === {LONG}")
        ys = page.evaluate(f"{cy}.nodes().map(n => n.position('y'))")
        assert len(set(ys)) == LONG  # one under the other, in the flow's order
        page.wait_for_selector(f"#report tr[data-atom='step-{LONG - 1:04d}']")
        page.screenshot(path=str(ARTIFACTS / "monitor-2000-atoms.png"))
        page.go_back()
        page.locator("#flows a", has_text="Ünïcode").click()
        page.wait_for_function(f"() => {cy} && {cy}.nodes().length === 1")
        # The title comes with the report, which is asked for once the graph's answer came.
        page.wait_for_function(
            "(odd) => document.querySelector('#flow-title').innerText.startsWith(odd)", arg=odd
        )
        assert page.evaluate(f"{cy}.nodes()[0].id()") == "<img src=x onerror=alert(1)>"
        assert page.evaluate("document.querySelectorAll('main img').length") == 0
        assert dialogs == []


def _status_for_host(url: str, host: str, method: str = "GET", path: str = "/api/flows") -> int:
    """The status the monitor at ``url`` answers a request carrying ``Host: host`` with."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        conn.request(method, path, headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_loopback_monitor_refuses_a_request_for_another_host_name(tmp_path: Path) -> None:
    # DNS rebinding: a page of evil.example re-resolves its name to 127.0.0.1 and
    # reads the token-less monitor with the browser's Host: evil.example.
    with _monitoring(f"sqlite:///{tmp_path}/t.db") as url:
        port = url.rsplit(":", 1)[1]
        assert _status_for_host(url, f"evil.example:{port}") == 403
        assert _status_for_host(url, f"evil.example:{port}", path="/") == 403
        for good in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert _status_for_host(url, good) == 200, good


def test_the_monitor_has_no_endpoint_that_changes_anything(tmp_path: Path) -> None:
    # So a cross-site POST (CSRF) can do nothing: every route takes GET only.
    with _monitoring(f"sqlite:///{tmp_path}/t.db") as url:
        port = url.rsplit(":", 1)[1]
        for path in ("/", "/api/flows", "/api/flows/x", "/api/flows/x/graph", "/api/flows/x/stream"):
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                assert _status_for_host(url, f"127.0.0.1:{port}", method, path) == 405, (method, path)


def test_names_and_failure_texts_are_shown_as_text_never_run_as_markup(tmp_path: Path) -> None:
    from flowkit import engines
    from flowkit.persistence import backends
    from tests.cli._flows import HOSTILE_MARKUP, make_hostile

    connection = f"sqlite:///{tmp_path}/hostile.db"
    with backends.backend(connection) as backend:
        engine = engines.load_from_factory(make_hostile, backend=backend)
        with pytest.raises(RuntimeError):
            engine.run()
        uuid = engine.storage.flow_uuid
    with _monitoring(connection) as url, _browser() as browser:
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector(f'#flows tr[data-uuid="{uuid}"]', timeout=60_000)
        assert HOSTILE_MARKUP in page.inner_text("#flows")
        page.goto(f"{url}/flows/{uuid}")
        page.wait_for_selector("#failures h3", timeout=60_000)
        page.wait_for_function("() => flowkitMonitor.current.cy", timeout=60_000)
        assert HOSTILE_MARKUP in page.inner_text("#flow-title")
        assert f"bad {HOSTILE_MARKUP} execute: RuntimeError: {HOSTILE_MARKUP}" in page.inner_text("#failures")
        assert HOSTILE_MARKUP in page.inner_text("#report")
        # Nothing parsed the text as markup: no element was made of it, no script ran.
        assert page.evaluate("() => document.querySelectorAll('img, main script').length") == 0
        assert page.evaluate("() => window.__flowkit_xss") is None
        drawn = page.evaluate("() => flowkitMonitor.current.cy.nodes().map(n => n.id())")
        assert f"bad {HOSTILE_MARKUP}" in drawn


def test_a_revert_of_an_earlier_attempt_is_not_shown_as_the_atoms_outcome(tmp_path: Path) -> None:
    # The report's table put "(reverted)" next to an atom that a retry ran again and that
    # succeeded: it read as if its work had been undone.
    from flowkit import retry
    from flowkit.listeners.events import EventLogListener
    from flowkit.patterns import linear_flow
    from tests.cli.test_report_and_events import Flaky

    connection = f"sqlite:///{tmp_path}/retried.db"
    flow = linear_flow.Flow("retried", retry=retry.Times(3, "r")).add(Flaky("flaky", failures=1))
    with backends.backend(connection) as backend:
        engine = engines.load(flow, backend=backend)
        with EventLogListener(engine):
            engine.run()
        uuid = engine.storage.flow_uuid
    with _monitoring(connection) as url, _browser() as browser:
        page = browser.new_page()
        page.goto(f"{url}/flows/{uuid}")
        row = page.wait_for_selector('#report tr[data-atom="flaky"]', timeout=60_000)
        assert row is not None
        shown = row.inner_text()
        # What its earlier attempt came to, in the text report's words (the table said
        # "(an earlier attempt: reverted)", and nothing of the failure).
        assert "SUCCESS" in shown and "(earlier attempts: 1 failed and reverted)" in shown, shown
        assert "(reverted)" not in shown


def test_an_atom_reset_for_its_next_iteration_shows_its_time_as_its_earlier_attempts(tmp_path: Path) -> None:
    # The table said "1.000s" of a PENDING atom its loop had reset: iteration 1's time.
    from tests.unit.engines.test_loops import _suspended_between_iterations

    connection = f"sqlite:///{tmp_path}/loop.db"
    with backends.backend(connection) as backend:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        uuid = _suspended_between_iterations(backend).storage.flow_uuid
    with _monitoring(connection) as url, _browser() as browser:
        page = browser.new_page()
        page.goto(f"{url}/flows/{uuid}")
        cell = page.wait_for_selector('#report tr[data-atom="poll"] td.took', timeout=60_000)
        assert cell is not None
        assert cell.inner_text() == "1.000s in earlier attempts"


def test_static_files_cannot_reach_outside_their_directory(tmp_path: Path) -> None:
    with _monitoring(f"sqlite:///{tmp_path}/t.db") as url:
        host = url.removeprefix("http://")
        assert _status_for_host(url, host, path="/static/monitor.js") == 200
        for path in (
            "/static/../app.py",
            "/static/%2e%2e/app.py",
            "/static/..%2fapp.py",
            "/static/vendor/%2e%2e/%2e%2e/app.py",
            "/static/..%5capp.py",
            "/static//etc/passwd",
        ):
            assert _status_for_host(url, host, path=path) == 404, path


def test_the_summary_of_a_flow_run_twice_says_over_how_many_runs(tmp_path: Path) -> None:
    # The page said "in 0.004s" of a flow run twice, where the text report said
    # "in 0.004s over 2 runs (the last 0.001s)": the same figure, read as one run's.
    connection = f"sqlite:///{tmp_path}/twice.db"
    uuid = run_twice(connection)
    with _monitoring(connection) as url, _browser() as browser:
        page = browser.new_page()
        page.goto(f"{url}/flows/{uuid}")
        summary = page.wait_for_selector("#report p", timeout=60_000)
        assert summary is not None
        shown = summary.inner_text()
    assert re.search(r" in \d+\.\d{3}s over 2 runs \(the last \d+\.\d{3}s\)$", shown), shown


def test_the_monitor_stops_on_sigterm_while_a_page_watches_a_flow_that_never_ends(tmp_path: Path) -> None:
    # uvicorn waited for the page's stream to end, and a flow never run to its end
    # never ends it: `flowkit monitor` outlived SIGTERM for as long as the page was open.
    connection = f"sqlite:///{tmp_path}/pending.db"
    with backends.backend(connection) as backend:
        uuid = engines.load_from_factory(make_shop, store={"amount": 5}, backend=backend).storage.flow_uuid
    proc, url = _start_monitor(connection, "--poll", "0.1")
    try:
        with _browser() as browser:
            page = browser.new_page()
            page.goto(f"{url}/flows/{uuid}")
            page.wait_for_selector("#report p", timeout=60_000)  # the report read; the stream opens with it
            proc.terminate()
            assert proc.wait(timeout=5) == 0  # with the page still open; a graceful stop is no kill
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_a_page_says_the_monitor_stopped_and_is_live_again_once_back(tmp_path: Path, gate: Path) -> None:
    # A stop ends each stream with 'event: closing', which the page ignored: it kept showing
    # its last snapshot as if live. It now says so, dims what it shows, and reconnects with a
    # bounded backoff, picking up what the flow did meanwhile.
    connection = f"sqlite:///{tmp_path}/restarted.db"
    run = _start_gated_run("make_slow", connection, gate)
    proc, url = _start_monitor(connection, "--poll", "0.1")
    try:
        uuid = _first_flow(url)
        with _browser() as browser:
            flow = browser.new_page(viewport={"width": 1280, "height": 800})
            flow.set_default_timeout(60_000)
            errors: list[str] = []
            flow.on("pageerror", lambda err: errors.append(str(err)))
            flow.goto(f"{url}/flows/{uuid}")
            cy = "flowkitMonitor.current.cy"
            state_of = f"([atom, state]) => {cy} && {cy}.getElementById(atom).data('state') === state"
            flow.wait_for_function(state_of, arg=["one", "RUNNING"])
            flow.wait_for_selector('body[data-live="yes"]')
            listing = browser.new_page(viewport={"width": 1280, "height": 800})
            listing.set_default_timeout(60_000)
            listing.goto(url + "/")
            listing.wait_for_selector(f'#flows tr[data-uuid="{uuid}"]')

            _stop(proc)
            assert proc.returncode == 0
            flow.wait_for_selector('body[data-live="no"]')
            shown = flow.inner_text("#status")
            assert "the monitor stopped" in shown and "reconnecting in" in shown, shown
            listing.wait_for_selector('body[data-live="no"]')
            assert "cannot list the flows" in listing.inner_text("#status")
            # The tabs say so too: an operator with several open reads the state there.
            assert flow.title() == "(not live) slow RUNNING - flowkit monitor"
            assert listing.title() == "(not live) 1 flow - flowkit monitor"
            # What was read stays, dimmed: it is no longer live.
            assert flow.evaluate("getComputedStyle(document.querySelector('main')).opacity") != "1"
            ARTIFACTS.mkdir(exist_ok=True)
            flow.screenshot(path=str(ARTIFACTS / "monitor-stopped.png"), full_page=True)

            _open(gate, "one")  # the flow goes on while no monitor watches it
            proc, again = _start_monitor(connection, "--poll", "0.1", "--port", url.rsplit(":", 1)[1])
            assert again == url
            # Back by itself: the state reached meanwhile is picked up, and changes are live again.
            flow.wait_for_function(state_of, arg=["one", "SUCCESS"])
            flow.wait_for_selector('body[data-live="yes"]')
            flow.wait_for_selector("#status", state="hidden")
            listing.wait_for_selector('body[data-live="yes"]')
            listing.wait_for_selector("#status", state="hidden")
            flow.wait_for_function(state_of, arg=["two", "RUNNING"])
            _open(gate, "two", "three")
            flow.wait_for_selector('body[data-flow-state="SUCCESS"]')
            flow.wait_for_selector('body[data-live="ended"]')
            assert flow.inner_text("#flow-state") == "SUCCESS"
            assert flow.title() == "slow SUCCESS - flowkit monitor"
            assert listing.title() == "1 flow - flowkit monitor"
            flow.screenshot(path=str(ARTIFACTS / "monitor-back.png"), full_page=True)
            assert not errors
    finally:
        _finish(run, gate)
        if proc.poll() is None:
            _stop(proc)
    assert run.returncode == 0, run.stderr.read().decode() if run.stderr else ""


def _run_named(connection: str, *names: str) -> None:
    """Run one small flow of each name in ``names`` to success, recorded in ``connection``."""
    from flowkit.patterns import linear_flow
    from tests.cli._flows import Step

    with backends.backend(connection) as backend:
        for name in names:
            engines.load(linear_flow.Flow(name).add(Step("a")), backend=backend).run()


def test_the_flow_list_counts_in_words_says_why_it_is_empty_and_is_labelled(tmp_path: Path) -> None:
    # It said "0 flows" over an empty table whether none had run or the filters kept
    # none, the tab was always "flowkit monitor", and the name box had no label.
    connection = f"sqlite:///{tmp_path}/counted.db"
    with _monitoring(connection) as url, _browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)
        page.goto(url + "/")
        page.wait_for_selector("#flows td.empty")
        assert "No flows yet" in page.inner_text("#flows tbody")
        assert page.inner_text("#page-info") == "no flows"
        assert page.title() == "no flows - flowkit monitor"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "monitor-no-flows.png"))

        _run_named(connection, "shop-one")
        page.wait_for_selector("#page-info:text-is('1 flow')")  # the list follows by itself
        assert page.title() == "1 flow - flowkit monitor"
        _run_named(connection, "shop-two")
        page.wait_for_selector("#page-info:text-is('2 flows')")

        # Labelled controls, reachable by their names (a screen reader's, a keyboard user's).
        name_box = page.get_by_role("searchbox", name="Name")
        page.get_by_label("State").select_option("FAILURE")
        page.wait_for_selector("#flows td.empty")
        assert "No flow matches these filters" in page.inner_text("#flows tbody")
        assert page.inner_text("#page-info") == "no FAILURE flows"
        page.screenshot(path=str(ARTIFACTS / "monitor-no-match.png"))
        page.get_by_label("State").select_option("SUCCESS")
        name_box.fill("two")
        page.wait_for_selector("#page-info:text-is('1 SUCCESS flow whose name contains \u201ctwo\u201d')")
        assert page.title() == "1 SUCCESS flow whose name contains \u201ctwo\u201d - flowkit monitor"
        name_box.fill("shop")
        page.wait_for_selector("#page-info:text-is('2 SUCCESS flows whose name contains \u201cshop\u201d')")
        name_box.fill("nothing-like-it")
        # The way out of an empty filter is a link, reached and followed from the keyboard.
        page.wait_for_selector("#clear-filters").focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("#page-info:text-is('2 flows')")
        assert page.input_value("#name-filter") == "" and page.input_value("#state-filter") == ""
        assert page.get_by_role("table", name="flows, newest first").is_visible()
        assert page.get_by_role("heading", level=1).inner_text() == "flows"
        # The filters are a search form now: Enter in the name box must not submit (reload) it.
        name_box.fill("one")
        name_box.press("Enter")
        page.wait_for_selector("#page-info:text-is('1 flow whose name contains \u201cone\u201d')")
        assert "name=one" in page.url
        # A page past the oldest flow (its neighbours deleted, an old address) is not "No flows yet".
        oldest = _get_json(url + "/api/flows")[0]["uuid"]  # type: ignore[index]
        page.goto(f"{url}/?before={oldest}")
        page.wait_for_selector("#flows td.empty")
        assert "No flow on this page" in page.inner_text("#flows tbody")
        page.click("#first-page")
        page.wait_for_selector("#page-info:text-is('2 flows')")


def test_a_late_answer_for_an_older_filter_is_not_drawn_over_the_newer_one(tmp_path: Path) -> None:
    # Typing sends a read per key: an earlier, slower answer drawn last showed the flows of
    # a filter no longer in the box (until the next refresh, 2 s later).
    import re as regex

    connection = f"sqlite:///{tmp_path}/raced.db"
    _run_named(connection, "apple", "banana")
    with _monitoring(connection) as url, _browser() as browser:
        page = browser.new_page()
        page.set_default_timeout(60_000)
        page.goto(url + "/")
        page.wait_for_selector("#page-info:text-is('2 flows')")
        held: list[Route] = []

        def hold(route: Route) -> None:
            held.append(route)

        page.route(regex.compile(r"/api/flows\?name=a&"), hold)
        page.fill("#name-filter", "a")  # its read is held back
        # Each evaluate lets Playwright hand the held request to the route handler.
        wait_until(lambda: held or page.evaluate("false"), timeout=30)
        page.fill("#name-filter", "ap")
        page.wait_for_selector("#page-info:text-is('1 flow whose name contains \u201cap\u201d')")
        # Every text the count shows from now on is kept.
        page.evaluate(
            """() => {
              const info = document.getElementById('page-info');
              window.__counts = [];
              new MutationObserver(() => window.__counts.push(info.textContent))
                .observe(info, {childList: true, characterData: true, subtree: true});
            }"""
        )
        route = held[0]
        with page.expect_response(regex.compile(r"/api/flows\?name=a&")):
            route.continue_()
        # The next read of the list (every 2 s) comes after the late answer was handled.
        with page.expect_response(regex.compile(r"/api/flows\?name=ap&")):
            pass
        counts = page.evaluate("window.__counts")
        assert "2 flows whose name contains \u201ca\u201d" not in counts, counts
        assert page.inner_text("#page-info") == "1 flow whose name contains \u201cap\u201d"
        shown = page.inner_text("#flows tbody")
        assert shown.count("apple") == 1 and "banana" not in shown


def test_very_long_names_wrap_instead_of_widening_the_pages(tmp_path: Path) -> None:
    from flowkit.patterns import linear_flow
    from tests.cli._flows import Step

    long_flow = 'it\'s "quoted" ' + "x" * 400
    long_atom = "y" * 300
    connection = f"sqlite:///{tmp_path}/long.db"
    with backends.backend(connection) as backend:
        engine = engines.load(linear_flow.Flow(long_flow).add(Step(long_atom)), backend=backend)
        engine.run()
        uuid = engine.storage.flow_uuid
    wide = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    with _monitoring(connection) as url, _browser() as browser:
        page = browser.new_page(viewport={"width": 1024, "height": 700})
        page.set_default_timeout(60_000)
        page.goto(url + "/")
        page.wait_for_selector(f'#flows tr[data-uuid="{uuid}"]')
        assert page.inner_text("#flows a") == long_flow  # as text, quotes and all
        assert page.evaluate(wide) <= 0
        page.goto(f"{url}/flows/{uuid}")
        page.wait_for_selector(f'#report tr[data-atom="{long_atom}"]')
        assert page.inner_text("#flow-title").startswith(long_flow)
        assert page.evaluate(wide) <= 0
        # What wraps is the name: a state badge next to it, and the header's link, stay on one line.
        lines = (
            "(selector) => { const r = document.createRange();"
            " r.selectNodeContents(document.querySelector(selector));"
            " return r.getClientRects().length; }"
        )
        assert page.evaluate(lines, f'#report tr[data-atom="{long_atom}"] .state') == 1
        assert page.evaluate(lines, "header a") == 1
        # The node's label is cut to the node's width (it ran out of the node).
        cy = "flowkitMonitor.current.cy"
        page.wait_for_function(f"() => {cy} && {cy}.nodes().length === 1")
        only_label = "{includeNodes: false, includeEdges: false, includeOverlays: false,"
        only_label += " includeUnderlays: false}"
        label, node = page.evaluate(
            f"() => {{ const n = {cy}.nodes()[0]; return [n.boundingBox({only_label}).w, n.width()]; }}"
        )
        assert label <= node, (label, node)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "monitor-long-names.png"), full_page=True)


#: How many lines the text of a table row's cell takes (JavaScript, given [selector, column];
#: the row is found anew each time: the page redraws its tables).
_CELL_LINES = (
    "([selector, column]) => { const r = document.createRange();"
    " r.selectNodeContents(document.querySelector(selector).cells[column]);"
    " return new Set(Array.from(r.getClientRects(), x => Math.round(x.top))).size; }"
)


def _declined_quickstart(tmp_path: Path) -> tuple[str, str]:
    """Run the quickstart's flow with its card declined into a SQLite file: its URL and the flow's uuid."""
    connection = f"sqlite:///{tmp_path}/shop.db"
    ran = flowkit_cmd(
        "run", "examples.quickstart:build_flow", "--store", "shop=bakery", "--connection", connection
    )
    assert ran.returncode == 1, ran.stderr
    listed = flowkit_cmd("flows", "list", "--connection", connection, "--json")
    (flow,) = [f["uuid"] for f in json.loads(listed.stdout)]
    return connection, flow


def test_numbers_in_the_report_and_event_tables_stay_on_one_line(tmp_path: Path) -> None:
    # On a 1280-pixel window the quickstart's flow showed event "10" as "1" over "0": the
    # cells of every column could break anywhere, so the wide cause column squeezed the
    # number columns down to one digit.
    connection, flow = _declined_quickstart(tmp_path)  # 12 events, three reverts
    with _monitoring(connection) as url, _browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(f"{url}/flows/{flow}")
        page.wait_for_selector('#events tr[data-seq="12"]')
        for seq in ("10", "11", "12"):
            row = f'#events tr[data-seq="{seq}"]'
            assert page.evaluate(_CELL_LINES, [row, 0]) == 1, seq  # the event's number
            assert page.evaluate(_CELL_LINES, [row, 1]) == 1, seq  # its run
        page.wait_for_selector('#report tr[data-atom="create_database"]')
        row = '#report tr[data-atom="create_database"]'
        assert page.evaluate(_CELL_LINES, [row, 2]) == 1  # attempts
        assert page.evaluate(_CELL_LINES, [row, 3]) == 1  # duration


def test_a_page_for_a_flow_the_monitor_does_not_know_says_so_once_and_stops_asking(tmp_path: Path) -> None:
    # It asked again every 2 s for good, as if the monitor might start knowing the flow.
    with _monitoring(f"sqlite:///{tmp_path}/t.db") as url, _browser() as browser:
        page = browser.new_page()
        page.set_default_timeout(60_000)
        page.clock.install()  # the page's timers run when the test says, not on the wall clock
        asked: list[str] = []

        def note(request: Request) -> None:
            if "/api/flows/no-such-flow" in request.url:
                asked.append(request.url)

        page.on("request", note)
        page.goto(f"{url}/flows/no-such-flow")
        page.wait_for_selector("#status:visible")
        assert "no flow no-such-flow" in page.inner_text("#status")
        page.clock.run_for(60_000)  # a minute of the page's timers, at once
        # A read of our own, after any the timers started: their requests are reported before its answer.
        assert page.evaluate("fetch('/api/flows').then(r => r.status)") == 200
        # Its graph and its report are asked for together (the report is read while the graph
        # is drawn): each once, never again.
        assert len(asked) == len(set(asked)) <= 2, asked
        assert "trying again" not in page.inner_text("#status")


def test_the_list_keeps_the_keyboard_focus_and_a_selection_across_its_refreshes(tmp_path: Path) -> None:
    # The list was drawn again every 2 s, changed or not: the link a keyboard user had tabbed
    # to lost the focus, and a uuid being selected to copy it was unselected under the mouse.
    connection = f"sqlite:///{tmp_path}/kept.db"
    _run_named(connection, "first", "second")
    reads = re.compile(r"/api/flows\?limit=")
    with _monitoring(connection) as url, _browser() as browser:
        page = browser.new_page()
        page.set_default_timeout(60_000)
        page.goto(url + "/")
        page.wait_for_selector("#page-info:text-is('2 flows')")
        uuid = page.get_attribute("#flows tbody tr:last-child", "data-uuid")
        page.evaluate(
            """(uuid) => {
              const cell = document.querySelector(`#flows tr[data-uuid="${uuid}"] td:last-child`);
              window.getSelection().selectAllChildren(cell);
            }""",
            uuid,
        )
        page.focus("#flows tbody tr:last-child a")  # as reached with Tab
        for _ in range(2):  # two reads of the list, nothing changed
            with page.expect_response(reads):
                pass
        assert page.evaluate("window.getSelection().toString()") == uuid
        assert page.evaluate("document.activeElement.textContent") == "first"
        _run_named(connection, "third")  # the list changes: drawn again, the focus stays on "first"
        page.wait_for_selector("#page-info:text-is('3 flows')")
        assert page.evaluate("document.activeElement.closest('tr').dataset.uuid") == uuid
        page.keyboard.press("Enter")
        page.wait_for_url(f"{url}/flows/{uuid}")


#: Where a text's first and last characters are drawn: [left of the first, left of the last].
_DRAWN_ENDS = """([selector, text]) => {
  const root = document.querySelector(selector);
  const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walk.nextNode(); node; node = walk.nextNode()) {
    const at = node.data.indexOf(text);
    if (at < 0) continue;
    const left = (i) => {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      return range.getBoundingClientRect().left;
    };
    return [left(at), left(at + text.length - 1)];
  }
  return null;
}"""


def test_a_bidi_control_in_a_name_does_not_reorder_what_the_page_shows_after_it(tmp_path: Path) -> None:
    # A flow named "pay\u202e" (RIGHT-TO-LEFT OVERRIDE) had the uuid after its name in the
    # page's title drawn backwards, "(flow)" after it in the event tree drawn "(wolf)", and
    # "(reverted)" after a result holding one drawn "(detrever)": the monitor put the names
    # and texts another process wrote beside its own text without isolating them, where the
    # CLI escapes them. Each is checked where the browser draws it: left to right.
    from flowkit import engines
    from flowkit.listeners.events import EventLogListener
    from flowkit.patterns import linear_flow
    from flowkit.persistence import backends
    from tests.cli._flows import CardDeclined, Step

    override = "\u202e"

    class Declines(Step):
        def execute(self) -> str:
            raise CardDeclined(f"declined{override}")

    connection = f"sqlite:///{tmp_path}/bidi.db"
    flow = linear_flow.Flow(f"pay{override}").add(Step(f"ok{override}"), Declines(f"bad{override}"))
    with backends.backend(connection) as backend:
        engine = engines.load(flow, backend=backend)
        with EventLogListener(engine), pytest.raises(CardDeclined):
            engine.run()
        uuid = engine.storage.flow_uuid
    with _monitoring(connection) as url, _browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}/flows/{uuid}")
        page.wait_for_selector("#events tbody tr", timeout=60_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "monitor-bidi-names.png"))
        for selector, text in (
            ("#flow-title", uuid),
            ("#events tbody tr:first-child", "(flow)"),
            ("#events tbody tr:nth-child(2)", "#1"),
            (f"#report tr[data-atom='bad{override}']", "(reverted)"),
            ("#failures h3", "execute: tests.cli._flows.CardDeclined"),
        ):
            first, last = page.evaluate(_DRAWN_ENDS, [selector, text])
            assert first < last, (selector, text, first, last)
        # The names are shown as they are, only isolated from their neighbours; in a
        # sentence made of names (a cause), the control is shown escaped, as by the CLI.
        assert page.inner_text("#flow-title") == f"pay{override} ({uuid})"
        cause = page.inner_text("#events tbody tr:nth-child(4) td:last-child")
        assert cause == "'ok\\u202e' completed (#3)", cause
        # The tab's title has no element to isolate a name in: an isolate (FSI...PDI) does it.
        assert page.title() == f"\u2068pay{override}\u2069 REVERTED - flowkit monitor"


def _save_running_flow(connection: str, atoms: int) -> list[str]:
    """Save a RUNNING flow ``big-flow`` of ``atoms`` PENDING atoms; their names."""
    from flowkit.persistence import models

    names = [f"atom-{i:04d}" for i in range(atoms)]
    with backends.backend(connection) as backend, contextlib.closing(backend.get_connection()) as conn:
        book, flow = models.LogBook("big"), models.FlowDetail("big", uuid="big-flow")
        flow.state = "RUNNING"
        for name in names:
            detail = models.TaskDetail(name, uuid=f"big-{name}")
            detail.state = "PENDING"
            flow.add(detail)
        book.add(flow)
        conn.save_logbook(book)
    return names


def test_a_big_flows_page_follows_each_change_but_reads_its_report_only_now_and_then(tmp_path: Path) -> None:
    # The page read the whole report again after every change: 7 MB per change for 10,000 atoms.
    connection = f"sqlite:///{tmp_path}/big.db"
    names = _save_running_flow(connection, 1000)
    with _monitoring(connection, "--poll", "0.1") as base, _browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)
        # The page's clock stands still unless moved here: its throttle cannot depend on how fast
        # this machine is. The stream and the reads are not timers: they go on.
        page.clock.install()
        page.clock.pause_at(time.time() * 1000 + 60_000)
        reads: list[str] = []
        page.on("request", lambda r: reads.append(r.url) if r.url.endswith("/api/flows/big-flow") else None)
        page.goto(base + "/flows/big-flow")
        page.wait_for_selector(f"#report tr[data-atom='{names[-1]}']")
        with backends.backend(connection) as backend, contextlib.closing(backend.get_connection()) as conn:
            for name in names[:5]:
                detail = conn.get_atom_details(f"big-{name}")
                detail.state = "SUCCESS"
                conn.update_atom_details(detail)
                # Each change is shown, in the graph and in the report's table, as it comes.
                page.wait_for_selector(f"#report tr[data-atom='{name}'] .s-SUCCESS")
                cy = "flowkitMonitor.current.cy"
                assert page.evaluate(f"{cy}.getElementById('{name}').data('state')") == "SUCCESS"
        assert len(reads) == 1  # the first read only: the report waits for its next turn
        page.clock.run_for(1000)  # a second per 1,000 atoms: one read for the five changes
        wait_until(lambda: len(reads) == 2)
        page.wait_for_selector(f"#report tr[data-atom='{names[4]}'] .s-SUCCESS")
        assert len(reads) == 2


def test_the_graph_is_drawn_while_the_report_is_still_being_read(tmp_path: Path) -> None:
    # The graph waited for the report: seconds for a 10,000-atom flow, whose report is 7 MB.
    connection = f"sqlite:///{tmp_path}/shop.db"
    with backends.backend(connection) as backend:
        engine = engines.load_from_factory(make_shop, store={"amount": 5}, backend=backend)
        engine.run()
        uuid = engine.storage.flow_uuid
    with _monitoring(connection) as base, _browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        held: list[Route] = []
        # The report's read is held, not answered, until the graph is seen drawn.
        # A bound method is no handler to Playwright (it marks what it wraps): a function is.
        page.route(re.compile(r".*/api/flows/[^/?]+$"), lambda route: held.append(route))  # noqa: PLW0108
        page.goto(f"{base}/flows/{uuid}")
        cy = "flowkitMonitor.current.cy"
        page.wait_for_function(f"() => {cy} && {cy}.nodes().length > 0", timeout=30_000)
        # Asked for once the graph's answer came (each evaluate lets Playwright hand over the route).
        wait_until(lambda: page.evaluate("1") and held)
        assert len(held) == 1 and page.query_selector("#report tr[data-atom]") is None
        held[0].continue_()
        page.wait_for_selector("#report tr[data-atom='charge']")


def test_a_10000_atom_flow_opens_with_its_first_rows_and_draws_the_rest_as_they_are_wanted(
    tmp_path: Path,
) -> None:
    # Every row of the report and of the event tree was drawn on opening: 13 s for 10,000
    # atoms, most of it the browser laying 30,000 rows out again whenever the graph asked
    # where its box was. The first rows are drawn now, and more as the view nears them.
    from flowkit.listeners.events import EventLogListener
    from flowkit.patterns import linear_flow
    from tests.cli._flows import Step

    atoms = 10_000
    connection = f"sqlite:///{tmp_path}/big.db"
    with backends.backend(connection) as backend:
        flow = linear_flow.Flow("big").add(*(Step(f"step-{i:05d}") for i in range(atoms)))
        engine = engines.load(flow, backend=backend)
        with EventLogListener(engine):
            engine.run()
        uuid = engine.storage.flow_uuid
    rows = "document.querySelectorAll('#report tr[data-atom]').length"
    event_rows = "document.querySelectorAll('#events tbody tr').length"
    with _monitoring(connection) as base, _browser() as browser:
        events = len(_get_json(f"{base}/api/flows/{uuid}")["event_tree"])  # type: ignore[index]
        assert events > 2 * atoms  # each atom's RUNNING and SUCCESS, and the flow's
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(180_000)  # 10,000 atoms on a loaded machine: generous, not slept
        page.goto(f"{base}/flows/{uuid}")
        page.wait_for_selector("#report tr[data-atom='step-00000']")
        page.wait_for_selector("#events tbody tr")
        # The first 200 rows of each table (more than a screen), in order, and a note on the rest.
        assert page.evaluate(rows) == 200 and page.evaluate(event_rows) == 200
        assert page.query_selector("#report tr[data-atom='step-00199']") is not None
        assert page.query_selector("#report tr[data-atom='step-00200']") is None
        assert page.inner_text("#report-more").startswith("Showing 200 of 10,000 atoms")
        assert page.inner_text("#events-more").startswith(f"Showing 200 of {events:,} events")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "monitor-10000-atoms.png"))
        # Scrolled to the end of what is drawn: the next rows are drawn, and no more than wanted.
        page.locator("#report-more").scroll_into_view_if_needed()
        page.wait_for_function(f"() => {rows} >= 400")
        assert page.evaluate(rows) % 200 == 0 and page.evaluate(rows) < atoms
        assert page.query_selector("#report tr[data-atom='step-00399']") is not None
        # Asked for all (the browser's find needs them drawn): every row, and the note goes.
        page.click("#report-more button")
        page.wait_for_selector(f"#report tr[data-atom='step-{atoms - 1:05d}']")
        assert page.evaluate(rows) == atoms and page.is_hidden("#report-more")
        page.click("#events-more button")
        page.wait_for_function(f"() => {event_rows} === {events}")
        assert page.is_hidden("#events-more")
        # The graph is its summary: the flow's 10,000 atoms in groups of at most 250, each labelled.
        groups = page.evaluate(
            "flowkitMonitor.current.cy.nodes('[kind = \"group\"]').map(n => n.data('label'))"
        )
        assert len(groups) == atoms // 250 and groups[0] == "big (1/40)\n250 SUCCESS"


def test_rows_drawn_late_show_the_live_state_and_a_report_read_again_keeps_them_drawn(
    tmp_path: Path,
) -> None:
    # A row drawn in a later step is drawn from the report read on opening: without the
    # stream's states since, an atom done meanwhile would show PENDING until the next read.
    connection = f"sqlite:///{tmp_path}/big.db"
    names = _save_running_flow(connection, 2500)  # past the 2,000 rows a table is drawn whole
    rows = "document.querySelectorAll('#report tr[data-atom]').length"
    with _monitoring(connection, "--poll", "0.1") as base, _browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)
        page.clock.install()  # the report is read again only when this test moves the clock
        page.clock.pause_at(time.time() * 1000 + 60_000)
        reads: list[str] = []
        page.on("request", lambda r: reads.append(r.url) if r.url.endswith("/api/flows/big-flow") else None)
        page.goto(base + "/flows/big-flow")
        page.wait_for_selector(f"#report tr[data-atom='{names[199]}']")
        assert page.evaluate(rows) == 200
        late = names[300]  # drawn in the next step
        with backends.backend(connection) as backend, contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_atom_details(f"big-{late}")
            detail.state = "SUCCESS"
            conn.update_atom_details(detail)
        cy = "flowkitMonitor.current.cy"
        # 2,500 atoms are drawn as a summary: the group holding it counts it done.
        page.wait_for_function(
            f"() => {cy}.nodes('[kind = \"group\"]').some(n => / 1 SUCCESS$/.test(n.data('label')))"
        )
        page.locator("#report-more").scroll_into_view_if_needed()
        page.wait_for_selector(f"#report tr[data-atom='{late}'] .s-SUCCESS")
        assert len(reads) == 1  # from the stream's state, not a report read again
        page.evaluate("window.scrollTo(0, 0)")  # the note out of view: nothing more is drawn
        drawn = page.evaluate(rows)
        assert 400 <= drawn < len(names)
        # Read again (its turn comes): drawn as far as it was, not back to its first rows.
        page.evaluate("document.querySelector('#report table').setAttribute('data-old', '')")
        page.clock.run_for(3000)  # a second per 1,000 atoms
        wait_until(lambda: len(reads) == 2)
        page.wait_for_selector("#report table:not([data-old])")
        assert page.evaluate(rows) == drawn
        page.wait_for_selector(f"#report tr[data-atom='{late}'] .s-SUCCESS")


def test_a_big_flows_graph_is_a_summary_whose_groups_open_on_a_click(tmp_path: Path) -> None:
    # 10,000 nodes took Cytoscape seconds to draw, as a column no one could read. Past 2,000
    # nodes each sub-flow is one node counting its atoms by state; what failed stays drawn.
    connection = f"sqlite:///{tmp_path}/big.db"
    uuid = run_big(connection, 500)  # fails in part-2: p2-119's revert raises
    factory = ("--allow-factory", "tests.monitor._factories.make_big")
    with _monitoring(connection, *factory) as base, _browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/graph" in r.url else None)
        page.goto(f"{base}/flows/{uuid}")
        cy = "flowkitMonitor.current.cy"
        page.wait_for_selector("#report tr[data-atom]")
        page.wait_for_function(f"() => {cy}.getElementById('p2-119').data('state') === 'REVERT_FAILURE'")
        groups = page.evaluate(
            f"{cy}.nodes('[kind = \"group\"]').map(n => [n.data('group'), n.data('label'), n.data('state')])"
        )
        assert len(groups) == 10 and page.evaluate(f"{cy}.nodes().length") == 11
        assert groups[0] == ["p0-000", "part-0 (1/2)\n225 SUCCESS", "SUCCESS"]
        # Coloured by its worst state, counted, and holding the atom that failed.
        assert groups[4] == [
            "p2-000",
            "part-2 (1/2)\n1 REVERT_FAILURE, 1 REVERTED, 104 PENDING, 119 SUCCESS",
            "REVERT_FAILURE",
        ]
        assert page.evaluate(f"{cy}.getElementById('p2-119').parent().data('group')") == "p2-000"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "monitor-big-summary.png"))
        # A click on the group: only its part is asked for, and drawn in its place.
        box = page.locator("#graph").bounding_box()
        assert box is not None
        where = page.evaluate(f"{cy}.getElementById('p2-119').parent().renderedPosition()")
        page.mouse.click(box["x"] + where["x"], box["y"] + where["y"])
        page.wait_for_function(f"() => {cy}.getElementById('p2-000').nonempty()")
        assert [u.split("/graph")[1] for u in asked] == ["?summary=1", "?group=p2-000"]
        shown = page.evaluate(f"{cy}.nodes().map(n => n.id())")
        # Its atoms, in the open group's box (a click there closes it), and the 9 other groups.
        assert {f"p2-{i:03d}" for i in range(225)} <= set(shown) and len(shown) == 225 + 10
        # The failed atom among its neighbours, linked to them, in the view.
        assert page.evaluate(f"{cy}.getElementById('p2-119').parent().data('opened')") is True
        assert page.evaluate(f"{cy}.getElementById('p2-119').data('state')") == "REVERT_FAILURE"
        linked = page.evaluate(f"{cy}.getElementById('p2-119').neighborhood('node').map(n => n.id())")
        assert sorted(linked) == ["p2-118", "p2-120"]
        in_view = (
            f"() => {{ const p = {cy}.getElementById('p2-119').renderedPosition();"
            f" return p.x >= 0 && p.y >= 0 && p.x <= {cy}.width() && p.y <= {cy}.height(); }}"
        )
        page.wait_for_function(in_view)
        # Its neighbours stay groups, linked to the part's first and last atoms.
        assert page.evaluate(f"{cy}.getElementById('p2-000').incomers('node').map(n => n.data('group'))") == [
            "p1-225"
        ]
        page.screenshot(path=str(ARTIFACTS / "monitor-big-opened.png"))


#: The closed groups of the flow page's summary, and the one group of a node id (open or closed).
GROUPS = "flowkitMonitor.current.cy.nodes('[kind = \"group\"]')"


def _group(ident: str) -> str:
    return f'flowkitMonitor.current.cy.nodes(\'[kind = "group"][group = "{ident}"]\')'


def _open_big_summary(browser: Browser, base: str, uuid: str, asked: list[str]) -> Any:
    """A page on :func:`run_big`'s flow, once its summary is drawn; ``asked`` gets each graph URL it asks."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(60_000)
    page.on("request", lambda r: asked.append(r.url.split("/graph")[1]) if "/graph" in r.url else None)
    page.goto(f"{base}/flows/{uuid}")
    page.wait_for_selector("#report tr[data-atom]")
    page.wait_for_function(f"() => {GROUPS}.length === 10")
    return page


def test_an_opened_group_closes_again_on_a_click_on_its_box(tmp_path: Path) -> None:
    # A group once opened stayed open: a long flow's view filled with parts no one could fold away.
    connection = f"sqlite:///{tmp_path}/big.db"
    uuid = run_big(connection, 500)
    factory = ("--allow-factory", "tests.monitor._factories.make_big")
    cy = "flowkitMonitor.current.cy"
    with _monitoring(connection, *factory) as base, _browser() as browser:
        asked: list[str] = []
        page = _open_big_summary(browser, base, uuid, asked)
        box = page.locator("#graph").bounding_box()
        assert box is not None

        def click(at: dict[str, float]) -> None:
            page.mouse.click(box["x"] + at["x"], box["y"] + at["y"])

        click(page.evaluate(f"{_group('p1-225')}.renderedPosition()"))
        page.wait_for_function(f"() => {cy}.getElementById('p1-300').nonempty()")
        opened = _group("p1-225")
        assert page.evaluate(f"{opened}.data('opened')") is True
        assert page.evaluate(f"{cy}.getElementById('p1-300').parent().same({opened})") is True
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "monitor-group-open.png"))
        # A click on the open group's box, beside its first atom (not on an atom nor a link): it closes.
        edge = page.evaluate(f"{opened}.renderedBoundingBox({{includeLabels: false}})")
        first = page.evaluate(f"{cy}.getElementById('p1-225').renderedBoundingBox()")
        click({"x": (edge["x1"] + first["x1"]) / 2, "y": first["y1"] + first["h"] / 2})
        page.wait_for_function(f"() => {cy}.getElementById('p1-300').empty()")
        assert page.evaluate(f"{GROUPS}.length") == 10 and page.evaluate(f"{cy}.nodes().length") == 11
        assert page.evaluate(f"{opened}.data('opened')") is not True
        assert asked == ["?summary=1", "?group=p1-225"]  # closing asks for nothing
        page.screenshot(path=str(ARTIFACTS / "monitor-group-closed.png"))
        # And opens again on a click.
        click(page.evaluate(f"{opened}.renderedPosition()"))
        page.wait_for_function(f"() => {cy}.getElementById('p1-300').nonempty()")


def test_the_summarys_groups_open_and_close_from_the_keyboard_and_are_named_for_screen_readers(
    tmp_path: Path,
) -> None:
    # Groups opened by mouse only: Cytoscape draws on a canvas, which the keyboard and a screen
    # reader cannot reach. Each group is now a button over its node: Tab, Enter, Space.
    connection = f"sqlite:///{tmp_path}/big.db"
    uuid = run_big(connection, 500)
    factory = ("--allow-factory", "tests.monitor._factories.make_big")
    cy = "flowkitMonitor.current.cy"
    focused = "document.activeElement"
    with _monitoring(connection, *factory) as base, _browser() as browser:
        asked: list[str] = []
        page = _open_big_summary(browser, base, uuid, asked)
        # Real key presses, from the top of the page, up to the first group (bounded).
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate(f"{focused}.getAttribute('aria-expanded')") is not None:
                break
        assert page.evaluate(f"{focused}.tagName") == "BUTTON"
        assert (
            page.evaluate(f"{focused}.getAttribute('aria-label')") == "part-0 (1/2): 225 atoms, 225 SUCCESS"
        )
        for _ in range(4):
            page.keyboard.press("Tab")
        label = "part-2 (1/2): 225 atoms, 1 REVERT_FAILURE, 1 REVERTED, 104 PENDING, 119 SUCCESS"
        assert page.evaluate(f"{focused}.getAttribute('aria-label')") == label
        assert page.evaluate(f"{focused}.getAttribute('aria-expanded')") == "false"
        # A focus ring a sighted keyboard user sees, around the group's node.
        ring = page.evaluate(
            f"(() => {{ const s = getComputedStyle({focused}); return [s.outlineStyle, s.outlineWidth]; }})()"
        )
        assert ring[0] != "none" and float(ring[1].rstrip("px")) >= 2, ring
        assert page.evaluate(f"{focused}.matches(':focus-visible')") is True
        button = page.evaluate(
            f"(({{x, y, width, height}}) => [x, y, width, height])({focused}.getBoundingClientRect())"
        )
        graph = page.locator("#graph").bounding_box()
        assert graph is not None
        node = page.evaluate(f"{_group('p2-000')}.renderedPosition()")
        x, y = graph["x"] + node["x"], graph["y"] + node["y"]
        assert button[0] < x < button[0] + button[2] and button[1] < y < button[1] + button[3]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "monitor-group-focused.png"))
        # Enter opens it; the focus stays on it, now expanded.
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => {cy}.getElementById('p2-200').nonempty()")
        page.wait_for_function(f"() => {focused}.getAttribute('aria-expanded') === 'true'")
        assert page.evaluate(f"{focused}.getAttribute('aria-label')") == label
        page.screenshot(path=str(ARTIFACTS / "monitor-group-opened-by-key.png"))
        # The next group, out of view below the open one, is brought into view when Tab reaches it.
        following = _group("p2-225")
        in_view = (
            f"(() => {{ const p = {following}.renderedPosition();"
            f" return p.x >= 0 && p.y >= 0 && p.x <= {cy}.width() && p.y <= {cy}.height(); }})()"
        )
        assert page.evaluate(in_view) is False
        page.keyboard.press("Tab")
        assert page.evaluate(f"{focused}.getAttribute('aria-label')").startswith("part-2 (2/2): 225 atoms")
        page.wait_for_function(in_view)
        button = page.evaluate(
            f"(({{x, y, width, height}}) => [x, y, width, height])({focused}.getBoundingClientRect())"
        )
        node = page.evaluate(f"{following}.renderedPosition()")
        x, y = graph["x"] + node["x"], graph["y"] + node["y"]
        assert button[0] < x < button[0] + button[2] and button[1] < y < button[1] + button[3]
        # Back to the open group: Space closes it.
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(f"{focused}.getAttribute('aria-expanded')") == "true"
        page.keyboard.press("Space")
        page.wait_for_function(f"() => {cy}.getElementById('p2-200').empty()")
        assert page.evaluate(f"{focused}.getAttribute('aria-expanded')") == "false"
        assert asked == ["?summary=1", "?group=p2-000"]
        # The graph is no image to a screen reader any more: its groups are reached inside it.
        assert page.get_attribute("#graph", "role") == "group"
        assert page.get_by_role("button", name=label).count() == 1


def test_an_open_group_of_a_graph_learned_from_the_event_log_draws_the_links_learned_since(
    tmp_path: Path, gate: Path
) -> None:
    # An open group's part was fetched once: while the run went on inside it, the summary did not
    # change (no new link between groups), so the links its event log learned were never drawn.
    connection = f"sqlite:///{tmp_path}/gated.db"
    cy = "flowkitMonitor.current.cy"
    link = f'{cy}.edges(\'[source = "step-0300"][target = "step-0301"]\')'
    with _monitoring(connection, "--poll", "0.1") as base:
        run = _start_gated_run("make_big_gated", connection, gate)
        try:
            uuid = _first_flow(base)
            with _browser() as browser:
                asked: list[str] = []
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.set_default_timeout(60_000)
                page.on(
                    "request", lambda r: asked.append(r.url.split("/graph")[1]) if "/graph" in r.url else None
                )
                page.goto(f"{base}/flows/{uuid}")
                page.wait_for_function(f"() => {cy} && {GROUPS}.length === 9")
                page.wait_for_function(f"() => {cy}.getElementById('step-0300').data('state') === 'RUNNING'")
                box = page.locator("#graph").bounding_box()
                assert box is not None
                where = page.evaluate(f"{_group('step-0234')}.renderedPosition()")
                page.mouse.click(box["x"] + where["x"], box["y"] + where["y"])
                page.wait_for_function(f"() => {cy}.getElementById('step-0350').nonempty()")
                assert page.evaluate(f"{link}.length") == 0  # step-0301 has not started
                _open(gate, "step-0300")  # the run goes on to step-0400, inside the same group
                page.wait_for_function(f"() => {cy}.getElementById('step-0400').data('state') === 'RUNNING'")
                page.wait_for_function(f"() => {link}.length === 1")
                assert (
                    page.evaluate(f'{cy}.edges(\'[source = "step-0399"][target = "step-0400"]\').length') == 1
                )
                # The summary was not sent again: the page said which drawings it had.
                assert all("drawing=" in url for url in asked[1:] if "summary=1" in url)
                ARTIFACTS.mkdir(exist_ok=True)
                # The part is placed anew as it learns links: the view still shows some of it.
                in_view = (
                    f'{cy}.nodes(\'[group = "step-0234"][kind != "group"]\').some(n => {{'
                    f" const p = n.renderedPosition();"
                    f" return p.x >= 0 && p.y >= 0 && p.x <= {cy}.width() && p.y <= {cy}.height(); }})"
                )
                assert page.evaluate(in_view) is True
                page.screenshot(path=str(ARTIFACTS / "monitor-open-group-learns.png"))
        finally:
            _open(gate, "step-0300", "step-0400")
            run.wait(timeout=120)


def test_a_summarised_graph_draws_the_atoms_that_run_or_fail_as_the_run_goes(tmp_path: Path) -> None:
    # A summary that only counted would hide where the run is and what failed: those atoms stay
    # drawn, in their group, while they are so.
    connection = f"sqlite:///{tmp_path}/big.db"
    names = _save_running_flow(connection, 2500)
    moving = names[1234]  # in the fifth group of 250
    cy = "flowkitMonitor.current.cy"
    with _monitoring(connection, "--poll", "0.1") as base, _browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)
        page.goto(base + "/flows/big-flow")
        page.wait_for_function(f"() => {cy} && {cy}.nodes('[kind = \"group\"]').length === 10")
        assert page.evaluate(f"{cy}.getElementById('{moving}').empty()")
        with backends.backend(connection) as backend, contextlib.closing(backend.get_connection()) as conn:

            def move(state: str) -> None:
                detail = conn.get_atom_details(f"big-{moving}")
                detail.state = state
                conn.update_atom_details(detail)

            move("RUNNING")
            page.wait_for_function(f"() => {cy}.getElementById('{moving}').data('state') === 'RUNNING'")
            group = page.evaluate(f"{cy}.getElementById('{moving}').parent().data()")
            assert (group["group"], group["state"]) == (names[1000], "RUNNING")
            assert group["label"] == "big (5/10)\n1 RUNNING, 249 PENDING"
            move("FAILURE")
            page.wait_for_function(f"() => {cy}.getElementById('{moving}').data('state') === 'FAILURE'")
            assert page.evaluate(f"{cy}.getElementById('{moving}').parent().data('state')") == "FAILURE"
            move("SUCCESS")  # done (a retry ran it again): no longer drawn, counted
            page.wait_for_function(f"() => {cy}.getElementById('{moving}').empty()")
            label = page.evaluate(f"{cy}.nodes('[kind = \"group\"]')[4].data('label')")
            assert label == "big (5/10)\n249 PENDING, 1 SUCCESS"


def test_a_graph_that_grows_past_the_threshold_becomes_a_summary_and_keeps_its_open_groups(
    tmp_path: Path,
) -> None:
    # A running flow grows (a spawned sub-flow adds atoms): the page draws the graph again as
    # the server answers it, whole up to 2,000 nodes and a summary past that.
    from flowkit.persistence import models

    connection = f"sqlite:///{tmp_path}/big.db"
    names = _save_running_flow(connection, 2000)
    cy = "flowkitMonitor.current.cy"
    groups = f"{cy}.nodes('[kind = \"group\"]')"
    with _monitoring(connection, "--poll", "0.1") as base, _browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)
        page.goto(base + "/flows/big-flow")
        page.wait_for_function(f"() => {cy} && {cy}.nodes().length === 2000")
        with backends.backend(connection) as backend, contextlib.closing(backend.get_connection()) as conn:

            def join(name: str) -> None:
                flow = conn.get_flow_details("big-flow")
                flow.add(models.TaskDetail(name, uuid=f"big-{name}"))
                conn.update_flow_details(flow)

            join("joined-1")
            page.wait_for_function(f"() => {groups}.length === 9")
            assert page.evaluate(f"{cy}.nodes().length") == 9
            # A group opened, then the flow grows again: drawn again, the group still open.
            page.evaluate(f"{groups}[1].emit('tap')")
            page.wait_for_function(f"() => {cy}.getElementById('{names[300]}').nonempty()")
            join("joined-2")
            page.wait_for_function(f"() => {cy}.scratch('flowkit').version === '2002.0'")
            page.wait_for_function(f"() => {cy}.getElementById('{names[300]}').nonempty()")
            assert page.evaluate(f"{groups}.length") == 9  # 9 groups of 223 nodes or fewer, one open
            last = page.evaluate(f"{groups}[{groups}.length - 1].data('label')")
            assert last == "big (9/9)\n218 PENDING"


def test_a_resumed_atoms_since_is_its_own_not_its_flows_of_the_same_name(tmp_path: Path, gate: Path) -> None:
    # The report's "since" took the last RUNNING event with the atom's name, flows' events
    # included: the flow ``gated`` resumed showed its own resume as when its atom ``gated``
    # (in doubt, run again without a new RUNNING event) had started.
    connection = f"sqlite:///{tmp_path}/gated.db"
    with _monitoring(connection) as base:
        first = _start_gated_run("make_gated_alone", connection, gate)
        try:
            uuid = _first_flow(base)
            # Its RUNNING event is saved with the atom's next write (its progress), after its state.
            started = wait_until(lambda: _events(base, uuid, "task", run=1))[-1]
            first.kill()  # as a crash: the atom stays RUNNING
        finally:
            first.wait(timeout=30)
        assert started["state"] == "RUNNING"
        # The resume's events come in a later second than the atom's start, or the two read alike.
        wait_until(lambda: time.time() >= int(started["at"]) + 1, timeout=5)
        resume = subprocess.Popen(
            [FLOWKIT, "flows", "resume", uuid, "--connection", connection, "--no-progress"],
            env=command_env(FLOWKIT_TEST_GATE=str(gate)),
            cwd=SOURCE_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            resumed = wait_until(lambda: _events(base, uuid, "flow", run=2), timeout=60)[-1]
            assert int(resumed["at"]) > int(started["at"])
            with _browser() as browser:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"{base}/flows/{uuid}")
                took = page.wait_for_selector(
                    '#report tr[data-atom="gated"] td.took:text("since")', timeout=60_000
                )
                assert took is not None
                when = "(at) => new Date(at * 1000).toLocaleTimeString()"
                assert took.inner_text() == "since " + page.evaluate(when, started["at"])
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "monitor-resumed-since.png"))
        finally:
            (gate / "gated").touch()
            resume.wait(timeout=60)
    assert resume.returncode == 0, resume.stderr.read().decode() if resume.stderr else ""


def _events(base: str, uuid: str, kind: str, run: int) -> list[dict[str, Any]]:
    """The RUNNING events of ``kind`` (``flow``, ``task``) in run ``run`` of the flow, as the monitor says."""
    report = _get_json(f"{base}/api/flows/{uuid}")
    assert isinstance(report, dict)
    events: list[dict[str, Any]] = report["events"]
    return [e for e in events if (e["kind"], e["run"], e["state"]) == (kind, run, "RUNNING")]


def test_atom_names_in_the_report_and_events_break_only_where_they_must(tmp_path: Path) -> None:
    # The quickstart's report showed "create_d" over "atabase" on a 1280-pixel window, room
    # to spare, and its events "create_databa" over "se #1" on a 1024-pixel one: names could
    # break anywhere, and the table's layout gave the room to the long failure and cause texts.
    connection, flow = _declined_quickstart(tmp_path)  # a long failure text
    rows = (
        "(table) => Array.from(document.querySelectorAll("
        "table + ' tr[data-atom], ' + table + ' tr[data-seq]'))"
    )
    atoms = f"() => ({rows})('#report').map(r => r.dataset.atom)"
    events = f"() => ({rows})('#events').map(r => r.dataset.seq)"
    # How far a table reaches past its box (a table wider than its section scrolled sideways).
    past = (
        "(table) => { const t = document.querySelector(table);"
        " return t.scrollWidth - t.parentElement.clientWidth; }"
    )
    with _monitoring(connection) as url, _browser() as browser:
        for width in (1024, 1280):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/flows/{flow}")
            page.wait_for_selector('#report tr[data-atom="create_database"]')
            page.wait_for_selector('#events tr[data-seq="14"]')
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"monitor-report-names-{width}.png"), full_page=True)
            assert page.evaluate(past, "#report table") <= 0, width
            assert page.evaluate(past, "#events") <= 0, width
            # The events span the page: room for every name at either width.
            seqs = page.evaluate(events)
            assert len(seqs) == 14, seqs
            broken = [
                seq for seq in seqs if page.evaluate(_CELL_LINES, [f'#events tr[data-seq="{seq}"]', 2]) != 1
            ]
            assert broken == [], (width, broken)
            if width == 1280:  # the report has room for its names there; at 1024 it has not
                names = page.evaluate(atoms)
                assert "create_database" in names and len(names) == 3, names
                broken = [
                    a for a in names if page.evaluate(_CELL_LINES, [f'#report tr[data-atom="{a}"]', 0]) != 1
                ]
                assert broken == [], (width, broken)
            page.close()
