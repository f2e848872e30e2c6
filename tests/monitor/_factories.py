"""A flow factory that counts its calls: whether the monitor called it is what its tests check."""

from __future__ import annotations

import contextlib

from flowkit import engines
from flowkit.listeners.events import EventLogListener
from flowkit.patterns import linear_flow, unordered_flow
from flowkit.persistence import backends
from tests.cli._flows import Step

__all__ = ["CALLS", "make_fan", "run_fan", "run_twice"]

#: One entry per call of :func:`make_fan` in this process.
CALLS: list[str] = []


def make_fan() -> linear_flow.Flow:
    """``a``, then ``b`` and ``c`` in any order, then ``d``."""
    CALLS.append("make_fan")
    return linear_flow.Flow("fan").add(
        Step("a"), unordered_flow.Flow("middle").add(Step("b"), Step("c")), Step("d")
    )


def run_fan(url: str) -> str:
    """Run :func:`make_fan`'s flow in the backend at ``url``, its event log kept; return its uuid."""
    with backends.backend(url) as backend:
        engine = engines.load_from_factory(make_fan, backend=backend)
        with EventLogListener(engine):
            engine.run()
        return engine.storage.flow_uuid


def run_twice(url: str) -> str:
    """Run a flow whose one atom fails the first time, then run it again; return its uuid.

    Two runs in its event log (a listener per run, as two processes would):
    its duration is over both, which its summary must say.
    """
    from tests.cli.test_report_and_events import CardDeclined, Flaky

    with backends.backend(url) as backend:
        engine = engines.load(linear_flow.Flow("twice").add(Flaky("flaky", failures=1)), backend=backend)
        with EventLogListener(engine), contextlib.suppress(CardDeclined):
            engine.run()
        with EventLogListener(engine):
            engine.run()
        return engine.storage.flow_uuid
