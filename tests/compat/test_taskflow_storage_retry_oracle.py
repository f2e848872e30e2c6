"""TaskFlow 6.5 as an oracle for a save that fails during a run: a listed difference.

TaskFlow's storage tries each save three times, five seconds apart, whatever
the ``StorageFailure``; flowkit's writes once and leaves retrying transient
errors to the backend (the SQL backend's ``max_retries``). Here a backend
fails the save of a finished task twice: TaskFlow pauses twice and finishes,
flowkit stops with the failure and a new engine resumes the stored flow. The
difference is listed in ``doc/migrating.rst`` and in
``taskflow_known_differences.txt`` as ``defaults::storage_save_retry``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tests.compat.test_taskflow_suite import load_known_differences

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAILED_SAVES = 2


def test_taskflow_pauses_and_tries_a_failed_save_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskflow import engines, exceptions, storage, task
    from taskflow.patterns import linear_flow
    from taskflow.persistence.backends import impl_memory

    naps: list[float] = []
    # TaskFlow's retry sleeps for real; record the pauses instead.
    for save in (storage.Storage._save_atom_detail, storage.Storage._save_flow_detail):
        monkeypatch.setattr(save.retry, "sleep", naps.append)
    failures = [FAILED_SAVES]

    class Connection(impl_memory.Connection):  # type: ignore[misc]
        def update_atom_details(self, atom_detail: Any) -> Any:
            if failures[0] and atom_detail.state == "SUCCESS":
                failures[0] -= 1
                raise exceptions.StorageFailure("the database is away")
            return super().update_atom_details(atom_detail)

    class Backend(impl_memory.MemoryBackend):  # type: ignore[misc]
        def get_connection(self) -> Connection:
            return Connection(self)

    class Done(task.Task):  # type: ignore[misc]
        def execute(self) -> int:
            return 1

    engine = engines.load(linear_flow.Flow("f").add(Done("a")), backend=Backend({}))
    engine.run()
    assert (engine.storage.get_flow_state(), naps) == ("SUCCESS", [5.0, 5.0])


def test_flowkit_stops_on_a_failed_save_and_a_new_engine_resumes() -> None:
    from flowkit import engines, exceptions, task
    from flowkit.patterns import linear_flow
    from flowkit.persistence import models
    from flowkit.persistence.backends import impl_memory

    assert "defaults::storage_save_retry" in load_known_differences()
    failures = [FAILED_SAVES]
    calls: list[str] = []

    class Backend(impl_memory.MemoryBackend):
        def get_connection(self) -> impl_memory.Connection:
            conn = super().get_connection()
            save = conn.save_flow_progress

            def failing_save(
                flow_detail: models.FlowDetail,
                atom_details: Sequence[models.AtomDetail],
                flow_changed: bool = True,
            ) -> None:
                if failures[0] and any(ad.state == "SUCCESS" for ad in atom_details):
                    failures[0] -= 1
                    raise exceptions.StorageFailure("the database is away")
                save(flow_detail, atom_details, flow_changed)

            conn.save_flow_progress = failing_save  # type: ignore[method-assign]
            return conn

    class Done(task.Task):
        def execute(self) -> int:
            calls.append(self.name)
            return 1

    backend = Backend({})
    engine = engines.load(linear_flow.Flow("f").add(Done("a")), backend=backend)
    with pytest.raises(exceptions.StorageFailure, match="away"):
        engine.run()
    failures[0] = 0
    with backend.get_connection() as conn:
        flow_detail = conn.get_flow_details(engine.storage.flow_uuid)
    resumed = engines.load(linear_flow.Flow("f").add(Done("a")), backend=backend, flow_detail=flow_detail)
    resumed.run()
    assert (resumed.storage.get_flow_state(), calls) == ("SUCCESS", ["a", "a"])
