"""Dask workers and the cluster failing under a running flow, each test on a cluster of its own.

What ``doc/jobs.rst`` (Scale-out on Dask) promises: a worker that dies
mid-task has its call run again on another one and the run goes on; a call
that kills every worker it lands on fails its atom with Dask's
``KilledWorker`` and the flow reverts on the workers left; a cluster that
goes away mid-run stops the run with the atom in doubt, nothing reverted.
These tests kill and close what they start, so they do not share the
module cluster of ``test_dask_executor``.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, states
from flowkit import exceptions as exc
from flowkit.patterns import linear_flow
from flowkit.types.failure import Failure
from tests import services
from tests.dask import dask_tasks
from tests.services import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cluster() -> Iterator[Any]:
    distributed = services.require_module("distributed", "'flowkit[dask]'")
    made = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    distributed = services.require_module("distributed", "'flowkit[dask]'")
    made = distributed.Client(cluster)
    try:
        yield made
    finally:
        made.close()


def _started(marker_dir: Path) -> list[Path]:
    return sorted(marker_dir.glob("started-*"))


def _charge(client: Any, marker_dir: Path) -> Any:
    flow = linear_flow.Flow("payment").add(dask_tasks.Charge(name="charge", provides="charged"))
    store = {"marker_dir": str(marker_dir), "amount": 5}
    return engines.load(flow, store=store, engine="parallel", executor=client.get_executor())


def _in_background(engine: Any) -> tuple[threading.Thread, list[BaseException | None]]:
    outcome: list[BaseException | None] = []
    thread = threading.Thread(target=lambda: outcome.append(services.run_bounded(engine, 60)), daemon=True)
    thread.start()
    return thread, outcome


def test_a_worker_killed_mid_task_has_its_call_run_again_on_another_and_the_run_completes(
    client: Any, tmp_path: Path
) -> None:
    engine = _charge(client, tmp_path)
    thread, outcome = _in_background(engine)
    first = wait_until(lambda: _started(tmp_path), 30, message="the charge to start")[0]
    pid = int(first.name.split("-")[1])  # the worker process running the call

    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len(_started(tmp_path)) == 2, 30, message="the charge to start again elsewhere")
    (tmp_path / "release").touch()
    thread.join(60)

    assert outcome == [None]
    assert engine.storage.fetch("charged") == 5
    assert engine.storage.get_flow_state() == states.SUCCESS
    # At least once: the call ran twice, in two worker processes.
    assert len({path.name.split("-")[1] for path in _started(tmp_path)}) == 2


def test_a_call_that_kills_every_worker_fails_its_atom_with_killed_worker_and_the_flow_reverts(
    client: Any, tmp_path: Path
) -> None:
    undo_log = tmp_path / "undo.log"
    flow = linear_flow.Flow("doomed").add(
        dask_tasks.Reserve(name="reserve", provides="reserved"), dask_tasks.KillsItsWorker(name="crash")
    )
    engine = engines.load(
        flow, store={"x": 1, "undo_log": str(undo_log)}, engine="parallel", executor=client.get_executor()
    )

    raised = services.run_bounded(engine, 120)

    # One failure: run() raises it as it came (as TaskFlow does), not wrapped.
    assert type(raised).__name__ == "KilledWorker", repr(raised)
    failure = engine.storage.get("crash")
    assert isinstance(failure, Failure)
    assert failure.check("distributed.scheduler.KilledWorker")
    assert "'crash-" in failure.exception_str  # Dask's key names the atom
    assert engine.storage.get_atom_state("reserve") == states.REVERTED
    assert engine.storage.get_flow_state() == states.REVERTED
    undone_by = undo_log.read_text().split()  # the PID of the worker that reverted it
    assert len(undone_by) == 1 and int(undone_by[0]) != os.getpid()


def test_a_cluster_closed_mid_run_stops_the_run_with_the_atom_in_doubt_and_nothing_reverted(
    cluster: Any, client: Any, tmp_path: Path
) -> None:
    engine = _charge(client, tmp_path)
    thread, outcome = _in_background(engine)
    wait_until(lambda: _started(tmp_path), 30, message="the charge to start")

    cluster.close()
    thread.join(60)

    assert outcome, "the run had not ended"
    raised = outcome[0]
    assert isinstance(raised, exc.ExecutionFailure), raised
    assert "the Dask cluster dropped the call of atom 'charge'" in str(raised)
    assert engine.storage.get_atom_state("charge") == states.RUNNING
    assert engine.storage.get_flow_state() == states.FAILURE
