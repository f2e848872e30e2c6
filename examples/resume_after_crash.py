"""Durable by default: a flow whose process is killed carries on where it stopped.

An order goes through four steps: reserve the stock, charge the card, ship the
parcel, e-mail the customer. The first run saves every step to a SQLite file
as it goes; its process is killed (``SIGKILL``, no clean-up of any kind) while
the parcel is being shipped. A second process then finds the run in the
database and resumes it: the stock is not reserved again and the card is not
charged twice; the step that was cut off runs again (it was in doubt), and
the rest of the flow completes.

No server is needed. Run it with::

    python examples/resume_after_crash.py
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from flowkit import engines, states, task
from flowkit.patterns import linear_flow
from flowkit.persistence import backends, models

# Set in the first run's environment: the shipping step kills its process.
CRASH_ENV = "FLOWKIT_EXAMPLE_CRASH"


class ReserveStock(task.Task):
    default_provides = "reservation"

    def execute(self, order_id: str) -> str:
        print(f"  reserved stock for {order_id}", flush=True)
        return f"rsv-{order_id}"


class ChargeCard(task.Task):
    default_provides = "payment"

    def execute(self, order_id: str, reservation: str) -> str:
        print(f"  charged the card for {order_id}", flush=True)
        return f"pay-{order_id}"


class ShipParcel(task.Task):
    default_provides = "tracking"

    def execute(self, order_id: str, payment: str) -> str:
        print(f"  shipping the parcel for {order_id}...", flush=True)
        if os.environ.get(CRASH_ENV):
            print("  killed with SIGKILL mid-task", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return f"track-{order_id}"


class EmailCustomer(task.Task):
    def execute(self, order_id: str, tracking: str) -> None:
        print(f"  e-mailed tracking number {tracking}", flush=True)


def build_flow(order_id: str) -> linear_flow.Flow:
    """The flow factory: a resumed run rebuilds the flow by calling it again."""
    return linear_flow.Flow(f"order-{order_id}").add(
        ReserveStock("reserve_stock"),
        ChargeCard("charge_card"),
        ShipParcel("ship_parcel"),
        EmailCustomer("email_customer"),
    )


def first_run(url: str) -> None:
    """Start the order (in a child process, which gets killed)."""
    with contextlib.closing(backends.fetch({"connection": url})) as backend:
        book = models.LogBook("orders")
        engine = engines.load_from_factory(
            build_flow, factory_args=["42"], store={"order_id": "42"}, book=book, backend=backend
        )
        engine.run()


def main() -> None:
    """Run the order in a child process that dies, then resume it here."""
    workdir = Path(tempfile.mkdtemp(prefix="flowkit-example-"))
    try:
        resume_in(f"sqlite:///{workdir / 'flows.db'}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def resume_in(url: str) -> None:
    """Start the order in a child process at ``url``, let it die, resume it here."""
    with contextlib.closing(backends.fetch({"connection": url})) as backend:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()

        print(f"first run, saving to {url}")
        env = {**os.environ, CRASH_ENV: "1"}
        child = subprocess.run([sys.executable, __file__, "--first-run", url], env=env, check=False)
        print(f"first run ended with exit status {child.returncode}")

        with contextlib.closing(backend.get_connection()) as conn:
            (book,) = conn.get_logbooks()
            (flow_detail,) = book
        stored = ", ".join(f"{atom.name}={atom.state}" for atom in flow_detail)
        print(f"found flow '{flow_detail.name}' in the database: {stored}")

        print("second run, resuming")
        engine = engines.load_from_detail(flow_detail, backend=backend)
        # Steps finished by this run (the step in doubt was already RUNNING, so it
        # is re-run without a new RUNNING notification, as in TaskFlow).
        finished: list[str] = []
        engine.atom_notifier.register(
            states.SUCCESS, lambda state, details: finished.append(details["task_name"])
        )
        engine.run()
        print(f"steps the second run finished: {', '.join(finished)}")
        results: dict[str, Any] = engine.storage.fetch_all()
        print(f"final flow state: {engine.storage.get_flow_state()}")
        print(f"results: {', '.join(f'{k}={results[k]}' for k in sorted(results))}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--first-run"]:
        first_run(sys.argv[2])
    else:
        main()
