"""The live monitor: a web page of the flows a database holds.

``flowkit monitor`` serves a page listing the flows saved in a persistence
backend; each flow's page shows its graph coloured by state (live while it
runs), its execution report and its event log. It only reads, so it shows
the flows of every process and host writing to the same database.

This script runs two small flows into a SQLite file (with the event log
attached, so the monitor can explain them), starts the monitor on that file
as one would from a shell, prints its URL and reads its JSON API the way
the page does. Then it stops the monitor, unless ``--keep-open`` is given:
then open the URL in a browser, and stop it with Ctrl-C.

Needs the ``monitor`` extra (``pip install -e '.[monitor]'``). Run it with::

    python examples/live_monitor.py [--keep-open]
"""

from __future__ import annotations

import contextlib
import json
import select
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from flowkit import engines, task
from flowkit.listeners.events import EventLogListener
from flowkit.patterns import linear_flow
from flowkit.persistence import backends, models

#: Upper bound on every wait, so a broken setup fails instead of hanging.
PATIENCE = 30.0


class Step(task.Task):
    def execute(self, order: str) -> str:
        if self.name == "charge" and order == "order-2":
            raise RuntimeError(f"card declined for {order}")
        return f"{self.name} done"


def run_flows(url: str) -> None:
    """Two orders, one of which fails and reverts: something worth looking at."""
    with contextlib.closing(backends.fetch(url)) as backend:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        for order in ("order-1", "order-2"):
            flow = linear_flow.Flow(order).add(Step("reserve"), Step("charge"), Step("ship"))
            engine = engines.load(flow, store={"order": order}, book=models.LogBook("shop"), backend=backend)
            # The event log is saved with the run: the monitor draws its tree of causes.
            with EventLogListener(engine), contextlib.suppress(RuntimeError):
                engine.run()
            print(f"ran {order}: {engine.storage.get_flow_state()}")


def start_monitor(url: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``flowkit monitor`` on a free port; return it and the URL it prints once it listens."""
    monitor = subprocess.Popen(
        [sys.executable, "-m", "flowkit", "monitor", "--connection", url, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert monitor.stdout is not None
    ready, _, _ = select.select([monitor.stdout], [], [], PATIENCE)
    line = monitor.stdout.readline() if ready else ""
    if not line.startswith("flowkit monitor on "):
        monitor.kill()
        raise SystemExit(f"the monitor did not start (it printed {line!r}); is flowkit[monitor] installed?")
    return monitor, line.removeprefix("flowkit monitor on ").strip()


def get_json(address: str) -> Any:
    with urllib.request.urlopen(address, timeout=PATIENCE) as response:
        return json.load(response)


def main(keep_open: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'shop.db'}"
        run_flows(url)
        monitor, address = start_monitor(url)
        try:
            print(f"monitor listening; open {address} in a browser")
            with urllib.request.urlopen(address, timeout=PATIENCE) as response:
                page = response.read().decode()
            print(f"GET / answers {response.status}: {page.split('<title>')[1].split('</title>')[0]}")
            # What the list page shows, from the JSON API it reads.
            for row in get_json(f"{address}api/flows"):
                report = get_json(f"{address}api/flows/{row['uuid']}")
                atoms = ", ".join(f"{atom['name']}={atom['state']}" for atom in report["atoms"])
                print(f"  {row['name']}: {row['state']} ({atoms})")
            if keep_open:
                print("press Ctrl-C to stop the monitor")
                with contextlib.suppress(KeyboardInterrupt):
                    monitor.wait()
        finally:
            # SIGTERM stops it gracefully: open pages are told, and it exits 0.
            monitor.send_signal(signal.SIGTERM)
            status = monitor.wait(PATIENCE)
        print(f"monitor stopped with exit status {status}")


if __name__ == "__main__":
    main(keep_open="--keep-open" in sys.argv[1:])
