"""The event log of a resumed run explains what it finishes by what the earlier run recorded."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, exceptions, task
from flowkit.listeners.events import CauseKind, EventLogListener
from flowkit.patterns import linear_flow
from flowkit.persistence import backends


class CardDeclined(Exception):
    pass


class Charge(task.Task):
    def execute(self) -> None:
        raise CardDeclined("card declined")


class Reserve(task.Task):
    """Its first revert is interrupted (a crash stand-in), after the failure was recorded."""

    interrupt = True

    def execute(self) -> None:
        pass

    def revert(self, **kwargs: Any) -> None:
        if Reserve.interrupt:
            Reserve.interrupt = False
            raise KeyboardInterrupt


def reserve_then_charge() -> linear_flow.Flow:
    return linear_flow.Flow("order").add(Reserve("reserve"), Charge("charge"))


def test_a_resumed_run_names_the_failure_an_earlier_run_recorded(tmp_path: Path) -> None:
    Reserve.interrupt = True
    backend = backends.fetch({"connection": "dir", "path": str(tmp_path)})
    try:
        engine = engines.load_from_factory(reserve_then_charge, backend=backend)
        with EventLogListener(engine), pytest.raises(KeyboardInterrupt):
            engine.run()
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        resumed = engines.load_from_detail(detail, backend=backend)
        listener = EventLogListener(resumed)
        with listener, pytest.raises(exceptions.WrappedFailure):
            resumed.run()
        log = listener.log
        (failed,) = [e for e in log if e.state == "FAILURE"]  # recorded by the first run
        finished = [e for e in log if e.kind == "flow"][-1]
        assert finished.state == "REVERTED"
        assert finished.cause.kind is CauseKind.FINISHED
        # Only the failure's type name was stored; it is still named, not "an error".
        assert finished.cause.text == "'charge' failed with CardDeclined; the flow ended REVERTED"
        assert (finished.cause.failure, finished.cause.event) == ("CardDeclined", failed.seq)
    finally:
        backend.close()
