"""Errors of the engine name the flow they are about, where TaskFlow's sentence names nothing."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, task
from flowkit import exceptions as exc
from flowkit.patterns import linear_flow


class RunsItsEngine(task.Task):
    """Asks the engine running it to run again (a re-entrant call, as from a callback)."""

    engine: Any = None

    def execute(self) -> None:
        RunsItsEngine.engine.run()


def test_running_an_engine_already_running_names_its_flow() -> None:
    # It said "this engine is already running", with nothing to tell which of a
    # program's engines it was.
    engine = engines.load(linear_flow.Flow("nightly-report").add(RunsItsEngine("again")))
    RunsItsEngine.engine = engine
    with pytest.raises(exc.ExecutionFailure) as refused:
        engine.run()
    assert str(refused.value) == (
        "Engine currently locked, please try again later: the engine of flow 'nightly-report' "
        "is already running; wait for it to finish"
    )
