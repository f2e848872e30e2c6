"""pydantic results persist as JSON and come back as models when a flow resumes."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, states
from flowkit.patterns import linear_flow
from flowkit.persistence import backends
from flowkit.types.notifier import Notifier

pytest.importorskip("pydantic")

from tests.typed import models  # noqa: E402 - needs pydantic


def test_a_model_result_is_stored_on_sqlite_and_is_a_model_again_after_resume(tmp_path: Path) -> None:
    backend = backends.fetch({"connection": f"sqlite:///{tmp_path / 'flows.db'}"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()

    def flow() -> linear_flow.Flow:
        return linear_flow.Flow("f").add(models.MakePrice("make"), models.UsePrice("use"))

    try:
        engine = engines.load(flow(), store={"raw": models.Price(amount=2, currency="EUR")}, backend=backend)

        def stop(state: str, details: dict[str, Any]) -> None:
            if details["task_name"] == "make" and state == states.SUCCESS:
                engine.suspend()

        engine.atom_notifier.register(Notifier.ANY, stop)
        engine.run()
        assert engine.storage.get_atom_state("use") == states.PENDING
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        stored = {atom.name: atom.results for atom in detail}
        assert stored["make"] == {"amount": 2.0, "currency": "EUR"}  # JSON in the database

        resumed = engines.load(flow(), flow_detail=detail, backend=backend)
        resumed.run()
        assert resumed.storage.fetch("seen") == "Price 2.0 EUR"
    finally:
        backend.close()
