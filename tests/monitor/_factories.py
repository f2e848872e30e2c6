"""A flow factory that counts its calls: whether the monitor called it is what its tests check."""

from __future__ import annotations

import contextlib

from flowkit import engines
from flowkit.listeners.events import EventLogListener
from flowkit.patterns import linear_flow, unordered_flow
from flowkit.persistence import backends
from tests.cli._flows import Charge, RevertFails, Step, run_logged

__all__ = [
    "BIG_PARTS",
    "BIG_SIZE",
    "CALLS",
    "STEPS",
    "TWIN_SIZE",
    "make_big",
    "make_fan",
    "make_steps",
    "make_twins",
    "run_big",
    "run_fan",
    "run_twice",
]

#: One entry per call of :func:`make_fan` in this process.
CALLS: list[str] = []


def make_fan() -> linear_flow.Flow:
    """``a``, then ``b`` and ``c`` in any order, then ``d``."""
    CALLS.append("make_fan")
    return linear_flow.Flow("fan").add(
        Step("a"), unordered_flow.Flow("middle").add(Step("b"), Step("c")), Step("d")
    )


#: The atoms of :func:`make_steps`' flow.
STEPS = 240


def make_steps() -> linear_flow.Flow:
    """``steps``: ``STEPS`` steps in a row, ``s-000`` ..."""
    return linear_flow.Flow("steps").add(*(Step(f"s-{i:03d}") for i in range(STEPS)))


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


#: :func:`make_big`'s sub-flows, and the atoms of each: 2,250 in all, past the graph's summary threshold.
BIG_PARTS, BIG_SIZE = 5, 450


def make_big() -> linear_flow.Flow:
    """``big``: five sub-flows ``part-0`` .. ``part-4`` of 450 steps each, in a row.

    Step 120 of ``part-2`` is ``p2-120``, which charges (``amount`` over 100
    is declined) after ``p2-119``, whose revert raises: given a large amount
    the flow fails there, ``p2-120`` ends ``REVERTED`` and ``p2-119``
    ``REVERT_FAILURE``.
    """
    parts = []
    for k in range(BIG_PARTS):
        steps: list[Step | Charge | RevertFails] = [Step(f"p{k}-{i:03d}") for i in range(BIG_SIZE)]
        if k == 2:
            steps[119], steps[120] = RevertFails("p2-119"), Charge("p2-120")
        parts.append(linear_flow.Flow(f"part-{k}").add(*steps))
    return linear_flow.Flow("big").add(*parts)


def run_big(url: str, amount: int) -> str:
    """Run :func:`make_big`'s flow with ``amount`` in the backend at ``url``, its event log kept; its uuid."""
    return run_logged(url, make_big, {"amount": amount}, Exception)


#: The atoms of each of :func:`make_twins`' two sub-flows named ``part``.
TWIN_SIZE = 100


def make_twins() -> linear_flow.Flow:
    """``twins``: two sub-flows named ``part`` (``a-000``.., ``b-000``..), then ``rest`` (2,000 steps).

    Past the graph's summary threshold; the two ``part`` flows are adjacent,
    small enough for one group between them if groups went by name.
    """
    return linear_flow.Flow("twins").add(
        linear_flow.Flow("part").add(*(Step(f"a-{i:03d}") for i in range(TWIN_SIZE))),
        linear_flow.Flow("part").add(*(Step(f"b-{i:03d}") for i in range(TWIN_SIZE))),
        linear_flow.Flow("rest").add(*(Step(f"r-{i:04d}") for i in range(2000))),
    )
