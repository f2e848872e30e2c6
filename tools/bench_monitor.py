#!/usr/bin/env python3
"""Measure what the web monitor costs over a big flow (10,000 atoms by default).

Usage::

    python tools/bench_monitor.py                      # this checkout, 10,000 atoms
    python tools/bench_monitor.py --atoms 2000 --no-browser
    python tools/bench_monitor.py --root /tmp/old      # another checkout of flowkit (before/after)
    python tools/bench_monitor.py --backend dir        # the flows in a directory, not SQLite

Figures, each the best of ``--repeat``:

* ``list``: one read of the list page's ``/api/flows?limit=100`` with the big
  flow and a small one in the backend, and one filtered by name to the small
  flow (the big one in the backend, not on the page);
* ``poll``: one read of the live stream's snapshot (what each poll reads), and
  the bytes a poll sends when one atom changed (with ``?changes=1`` where the
  checkout has it, else the whole snapshot); beside it the backend's read of
  the flow whole (``read_whole_flow_seconds``) and, where the checkout has
  ``Connection.get_atom_states``, of its atoms' states alone
  (``read_atom_states_seconds``; ``read_atom_states_first_seconds`` the first
  such read of a backend made anew: the directory's keeps what it read for the
  next, while each file is unchanged);
* ``report`` and ``graph``: one read of each, and their bytes;
  ``graph_for_the_page``: the graph as the flow page asks for it
  (``?summary=1``: a summary past 2,000 nodes where the checkout has it, else
  the whole graph), and ``graph_group`` one group of the summary, as a click
  asks for it;
* ``graph_polled_through_a_run``: a run of the same size in this process,
  stepped (``run_iter``), with the graph asked for as the page asks, every
  :data:`POLL_STEPS` steps where the live stream's version moved (saying the
  drawing it has, ``drawing=``, which a checkout without it ignores): how
  many times, how many answers were a whole graph, and the bytes. Counted by
  steps, not time, so it is the same on a fast machine and a slow one;
  ``seconds`` is the time the monitor took to answer them all (the run's own
  steps left out). ``graph_polled_through_a_run_with_its_shape``: the same
  with the flow's shape stored as ``flowkit run`` stores it (a fixed
  structure: only the atoms' states change during the run);
* with the browser (Debian's Chromium through Playwright): the flow page's load
  until the graph is painted (and how many nodes it drew) and until the report
  is drawn, and a run of a flow of the same
  size into the same SQLite file alone and with a page open on it; while that
  page watches the run, how many times it asked for its graph and how many
  bytes came back (``page_graph_requests_while_watching``,
  ``page_graph_bytes_while_watching``: the flow's graph is learned from its
  event log, so its version moves as atoms start).

Measured, not asserted: tests count reads and bytes; times belong here.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _child_env import child_env  # a sibling in tools/, on the path of a script run from there

ROOT = Path(__file__).resolve().parent.parent

#: What a child interpreter runs: a linear flow of N trivial atoms, its event log kept, into URL.
RUN_CHILD = """
import sys, time
from flowkit import engines, task
from flowkit.listeners.events import EventLogListener
from flowkit.patterns import linear_flow
from flowkit.persistence import backends

class Step(task.Task):
    def execute(self):
        return 1

url, atoms, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
flow = linear_flow.Flow(name).add(*(Step(f"step-{i:05d}") for i in range(atoms)))
with backends.backend(url) as backend:
    engine = engines.load(flow, backend=backend)
    start = time.perf_counter()
    with EventLogListener(engine):
        engine.run()
    print(engine.storage.flow_uuid, time.perf_counter() - start, flush=True)
"""


#: The ``flowkit`` command, run by the checkout measured (the console script may be another's).
MONITOR_CHILD = "import sys; from flowkit.cli import main; sys.argv[0] = 'flowkit'; sys.exit(main())"


def _run_flow(root: Path, url: str, atoms: int, name: str) -> subprocess.Popen[str]:
    env = child_env()
    env["PYTHONPATH"] = str(root)
    # Run from the checkout: ``python -c`` puts the working directory first on the path, so a
    # child started from another checkout measured that one's flowkit, not ``--root``'s.
    return subprocess.Popen(
        [sys.executable, "-c", RUN_CHILD, url, str(atoms), name],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finished(proc: subprocess.Popen[str]) -> tuple[str, float]:
    out, _ = proc.communicate(timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"the run failed ({proc.returncode})")
    uuid, seconds = out.split()
    return uuid, float(seconds)


def _best(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _in_process(url: str, uuid: str, repeat: int) -> dict[str, Any]:
    from flowkit.monitor import _data, create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    figures: dict[str, Any] = {}
    with TestClient(create_app(url)) as client:
        for key, path in (
            ("list", "/api/flows?limit=100"),
            ("list_without_the_big_flow", "/api/flows?limit=100&name=small"),
            ("report", f"/api/flows/{uuid}"),
            ("graph", f"/api/flows/{uuid}/graph"),
        ):
            seconds, response = _best(repeat, functools.partial(client.get, path))
            figures[key] = {"seconds": round(seconds, 4), "bytes": len(response.content)}
        # What the flow page asks for its graph (a checkout without summaries answers the whole
        # graph), and, past the threshold, one group of it, as a click on it asks.
        seconds, response = _best(repeat, functools.partial(client.get, f"/api/flows/{uuid}/graph?summary=1"))
        summary = response.json()
        figures["graph_for_the_page"] = {
            "seconds": round(seconds, 4),
            "bytes": len(response.content),
            "summary": bool(summary.get("summary")),
        }
        if summary.get("summary"):
            group = summary["groups"][len(summary["groups"]) // 2]["id"]
            seconds, response = _best(
                repeat, functools.partial(client.get, f"/api/flows/{uuid}/graph", params={"group": group})
            )
            figures["graph_group"] = {"seconds": round(seconds, 4), "bytes": len(response.content)}
    reader = _data.Reader(url)
    try:
        seconds, snapshot = _best(repeat, lambda: reader.states(uuid))
        # What of a poll is the backend's read: the flow whole, and (where the checkout
        # has it) its atoms' states alone, the read a poll makes since.
        with contextlib.closing(reader._backend.get_connection()) as conn:
            whole, _ = _best(repeat, lambda: conn.get_flow_details(uuid))
            figures["read_whole_flow_seconds"] = round(whole, 4)
            if hasattr(conn, "get_atom_states"):
                # The first read of a backend made anew, then the best of the next ones (a store
                # that keeps what it read, the directory's, reads only the files changed since).
                fresh = _data.Reader(url)
                try:
                    with contextlib.closing(fresh._backend.get_connection()) as cold:
                        first, _ = _best(1, lambda: cold.get_atom_states(uuid))
                finally:
                    fresh.close()
                figures["read_atom_states_first_seconds"] = round(first, 4)
                narrow, _ = _best(repeat, lambda: conn.get_atom_states(uuid))
                figures["read_atom_states_seconds"] = round(narrow, 4)
    finally:
        reader.close()
    moved = dict(snapshot)
    first = next(iter(snapshot["atoms"]))
    moved["atoms"] = {**snapshot["atoms"], first: "RUNNING"}
    changes = getattr(_data, "changes", None)
    sent = changes(snapshot, moved) if changes is not None else moved
    figures["poll"] = {
        "seconds": round(seconds, 4),
        "bytes_one_atom_changed": len(json.dumps(sent)),
        "changes_only": changes is not None,
    }
    return figures


#: Engine steps between two of ``_polled``'s polls: about 100 atoms of its flow, what a page
#: polling every 0.5 s sees of a run of 200 atoms a second (trivial atoms run 5,000 a second
#: here: polled as often, each poll would find a quarter of the flow run since).
POLL_STEPS = 400


def _polled(url: str, atoms: int, shaped: bool = False) -> dict[str, Any]:
    """A run of ``atoms`` steps, its graph asked for as the flow page does while it runs (see above).

    ``shaped``: the flow's shape is stored in its metadata first, as ``flowkit run`` stores it
    (here at any size: the command stores it up to 2,000 atoms).
    """
    from flowkit import engines, task
    from flowkit.listeners.events import EventLogListener
    from flowkit.monitor import _data, create_app
    from flowkit.monitor._layout import shape_of
    from flowkit.patterns import linear_flow
    from flowkit.persistence import backends

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    class Step(task.Task):
        def execute(self) -> int:
            return 1

    flow = linear_flow.Flow("polled").add(*(Step(f"step-{i:05d}") for i in range(atoms)))
    asked = whole = sent = 0
    took = 0.0
    reader = _data.Reader(url)
    with TestClient(create_app(url)) as client, backends.backend(url) as backend:
        engine = engines.load(flow, backend=backend)
        uuid = engine.storage.flow_uuid
        if shaped:
            engine.storage.update_flow_metadata({_data.GRAPH_KEY: shape_of(engine).to_dict()})
        version, drawing = None, ""
        with EventLogListener(engine):
            for step, _ in enumerate(engine.run_iter()):
                if step % POLL_STEPS:
                    continue
                snapshot = reader.states(uuid)
                if snapshot is None or snapshot["graph"] == version:
                    continue
                began = time.perf_counter()
                answer = client.get(f"/api/flows/{uuid}/graph", params={"summary": "1", "drawing": drawing})
                took += time.perf_counter() - began
                got = answer.json()
                asked, sent, version = asked + 1, sent + len(answer.content), got["version"]
                if not got.get("unchanged"):
                    whole, drawing = whole + 1, got.get("drawing", "")
    reader.close()
    return {"asked": asked, "whole_answers": whole, "bytes": sent, "seconds": round(took, 3)}


@contextlib.contextmanager
def _monitor(root: Path, url: str) -> Iterator[str]:
    env = child_env()
    env["PYTHONPATH"] = str(root)
    proc = subprocess.Popen(
        [sys.executable, "-c", MONITOR_CHILD, "monitor", "--connection", url, "--port", "0"],
        env=env,
        cwd=root,  # as _run_flow's
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        if "http://" not in line:
            raise SystemExit(f"the monitor printed {line!r}")
        yield line[line.index("http://") :].strip().rstrip("/")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@contextlib.contextmanager
def _page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no chromium: apt-get install chromium, or give --no-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(600_000)
            yield page
        finally:
            browser.close()


def _browser(root: Path, url: str, uuid: str, atoms: int) -> dict[str, Any]:
    import urllib.request

    figures: dict[str, Any] = {}
    with _monitor(root, url) as base, _page() as page:
        start = time.perf_counter()
        page.goto(f"{base}/flows/{uuid}")
        page.wait_for_function("() => flowkitMonitor.current.cy !== null")
        # Until the graph is painted: Cytoscape draws on the next animation frames.
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        figures["page_graph_seconds"] = round(time.perf_counter() - start, 2)
        figures["page_graph_nodes"] = page.evaluate("flowkitMonitor.current.cy.nodes().length")
        page.wait_for_selector("#report tr[data-atom]", state="attached")
        figures["page_report_seconds"] = round(time.perf_counter() - start, 2)
        page.goto("about:blank")

        _, alone = _finished(_run_flow(root, url, atoms, "alone"))

        def watched(name: str, watch: Callable[[str], None]) -> float:
            run = _run_flow(root, url, atoms, name)
            uuid_seen = None
            while uuid_seen is None and run.poll() is None:
                with urllib.request.urlopen(f"{base}/api/flows?limit=1&name={name}", timeout=30) as answer:
                    rows = json.load(answer)
                uuid_seen = rows[0]["uuid"] if rows else None
            if uuid_seen is not None:
                watch(uuid_seen)
            return _finished(run)[1]

        def stream(uuid: str) -> None:
            # What the page's live stream costs the run, without the browser's own work on this machine.
            def read() -> None:
                address = f"{base}/api/flows/{uuid}/stream?changes=1"
                with contextlib.suppress(OSError), urllib.request.urlopen(address, timeout=60) as lines:
                    for _line in lines:
                        pass

            threading.Thread(target=read, daemon=True).start()

        figures["run_alone_seconds"] = round(alone, 2)
        figures["run_with_a_stream_open_seconds"] = round(watched("streamed", stream), 2)
        graph_answers: list[int] = []

        def answered(response: Any) -> None:
            if "/graph" in response.url:
                graph_answers.append(int(response.headers.get("content-length", 0)))

        page.on("response", answered)
        page_open = watched("watched", lambda uuid: page.goto(f"{base}/flows/{uuid}"))
        figures["run_with_a_page_open_seconds"] = round(page_open, 2)
        page.wait_for_function("() => document.body.getAttribute('data-live') === 'ended'")
        page.remove_listener("response", answered)
        figures["page_graph_requests_while_watching"] = len(graph_answers)
        figures["page_graph_bytes_while_watching"] = sum(graph_answers)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--atoms", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout of flowkit to measure")
    parser.add_argument("--no-browser", action="store_true", help="skip the page load and the watched run")
    parser.add_argument(
        "--backend",
        choices=("sqlite", "dir"),
        default="sqlite",
        help="where the flows are stored (default sqlite)",
    )
    args = parser.parse_args()
    root = args.root.resolve()
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = str(root)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/monitor.db" if args.backend == "sqlite" else f"dir://{tmp}/monitor"
        _finished(_run_flow(root, url, 3, "small"))
        uuid, _ = _finished(_run_flow(root, url, args.atoms, "big"))
        figures = {"root": str(root), "backend": args.backend, "atoms": args.atoms}
        figures.update(_in_process(url, uuid, args.repeat))
        figures["graph_polled_through_a_run"] = _polled(url, args.atoms)
        figures["graph_polled_through_a_run_with_its_shape"] = _polled(url, args.atoms, shaped=True)
        if not args.no_browser:
            figures.update(_browser(root, url, uuid, args.atoms))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
