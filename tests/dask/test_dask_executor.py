"""The parallel engine on a Dask cluster: ``executor=client.get_executor()``.

A ``distributed.LocalCluster`` of worker *processes* stands in for a real
cluster: tasks, arguments, results and failures cross a process boundary the
way they would cross machines.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import conductors, engines, states, task
from flowkit import exceptions as exc
from flowkit.jobs.backends.impl_memory import MemoryJobBoard
from flowkit.patterns import linear_flow, unordered_flow
from flowkit.persistence.base import Backend
from tests import services
from tests.conductors.conftest import persistence, post_flow, stored_results  # noqa: F401 - fixture
from tests.dask import dask_tasks
from tests.services import wait_until
from tests.unit.engines._manual_timer import ManualTimer


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    distributed = services.require_module("distributed", "'flowkit[dask]'")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    made = distributed.Client(cluster)
    try:
        yield made
    finally:
        made.close()
        cluster.close()


def test_independent_tasks_run_on_the_cluster_workers(client: Any) -> None:
    engine = engines.load(
        dask_tasks.squares(6),
        store={f"x{i}": i for i in range(6)},
        engine="parallel",
        executor=client.get_executor(),
    )
    engine.run()
    results = {name: value for name, value in engine.storage.fetch_all().items() if name.startswith("r")}
    assert {name: value[0] for name, value in results.items()} == {f"r{i}": i * i for i in range(6)}
    worker_pids = set(client.run(os.getpid).values())
    assert {value[1] for value in results.values()} <= worker_pids
    assert os.getpid() not in worker_pids


def test_the_atoms_ready_together_reach_the_scheduler_as_one_graph(client: Any) -> None:
    # One submit per call was one graph per call for the scheduler (and most of a
    # millisecond of the client's time each): a fan-out of hundreds crawled.
    distributed = services.require_module("distributed", "'flowkit[dask]'")
    # Made here: dask_tasks imports without distributed, and the scheduler tells
    # its plugins apart by their base class.
    plugin = type("Counter", (dask_tasks.GraphCounter, distributed.diagnostics.plugin.SchedulerPlugin), {})
    client.register_plugin(plugin())
    count = 12
    engine = engines.load(
        dask_tasks.squares(count),
        store={f"x{i}": i for i in range(count)},
        engine="parallel",
        executor=client.get_executor(),
    )
    engine.run()
    assert [engine.storage.fetch(f"r{i}")[0] for i in range(count)] == [i * i for i in range(count)]
    graphs = client.run_on_scheduler(dask_tasks.graphs_received)
    ours = [keys for keys in graphs if any(key.startswith("sq") for key in keys)]
    assert len(ours) == 1, ours
    assert sorted(key.rsplit("-", 1)[0] for key in ours[0]) == sorted(f"sq{i}" for i in range(count))


def test_atoms_that_could_not_be_submitted_stay_in_doubt_and_a_resume_completes(
    client: Any,
    persistence: Backend,  # noqa: F811
) -> None:
    closed = client.get_executor()
    closed.shutdown()
    count = 7
    flow = dask_tasks.squares(count)
    store = {f"x{i}": i for i in range(count)}
    engine = engines.load(flow, store=store, backend=persistence, engine="parallel", executor=closed)
    with pytest.raises(RuntimeError, match="after shutdown") as raised:
        engine.run()
    note = "\n".join(getattr(raised.value, "__notes__", []))
    assert "atoms 'sq0', 'sq1', 'sq2', 'sq3', 'sq4' and 2 more could not be submitted" in note
    assert {engine.storage.get_atom_state(f"sq{i}") for i in range(count)} == {states.RUNNING}
    with persistence.get_connection() as conn:
        detail = conn.get_flow_details(engine.storage.flow_uuid)
    resumed = engines.load(
        flow,
        flow_detail=detail,
        backend=persistence,
        engine="parallel",
        executor=client.get_executor(),
    )
    resumed.run()
    assert [resumed.storage.fetch(f"r{i}")[0] for i in range(count)] == [i * i for i in range(count)]


def test_a_failure_on_a_worker_reverts_the_flow_with_the_real_exception(client: Any, tmp_path: Path) -> None:
    undo_log = tmp_path / "undo"
    engine = engines.load(
        dask_tasks.reserve_then_refuse(),
        store={"x": 3, "undo_log": str(undo_log)},
        engine="parallel",
        executor=client.get_executor(),
    )
    # The failure crosses back as a record (its traceback object cannot): the engine
    # raises it wrapped, still naming the real exception type.
    with pytest.raises(exc.WrappedFailure, match="refused 3 in process") as raised:
        engine.run()
    assert raised.value.check(ValueError)
    assert engine.storage.get_flow_state() == states.REVERTED
    assert int(undo_log.read_text().split()[0]) != os.getpid()


def test_a_conductor_runs_jobs_on_the_cluster(client: Any, persistence: Backend) -> None:  # noqa: F811
    board = MemoryJobBoard("board", persistence=persistence)
    job, fd = post_flow(board, persistence, dask_tasks.squares, [2], job_store={"x0": 3, "x1": 4})
    conductor = conductors.backends.fetch(
        "blocking",
        "dask-conductor",
        board,
        persistence=persistence,
        engine="parallel",
        engine_options={"executor": client.get_executor()},
    )
    conductor.run(max_dispatches=1)
    assert job.state == states.COMPLETE
    results = stored_results(persistence, fd)
    assert (results["sq0"][0], results["sq1"][0]) == (9, 16)


def test_the_same_task_of_two_runs_runs_twice(client: Any, tmp_path: Path) -> None:
    # Dask's executor submits pure=True by default: two equal calls (same task, same
    # arguments) would share one key and run once, the second job charging nobody.
    def engine() -> Any:
        flow = linear_flow.Flow("payment").add(dask_tasks.Charge(name="charge", provides="charged"))
        store = {"marker_dir": str(tmp_path), "amount": 5}
        return engines.load(flow, store=store, engine="parallel", executor=client.get_executor())

    first, second = engine(), engine()
    threads = [threading.Thread(target=made.run, daemon=True) for made in (first, second)]
    threads[0].start()
    wait_until(lambda: list(tmp_path.glob("started-*")), 30, message="the first charge to start")
    threads[1].start()
    try:
        wait_until(
            lambda: len(list(tmp_path.glob("started-*"))) == 2, 10, message="the second charge to start"
        )
    finally:
        (tmp_path / "release").touch()
        for thread in threads:
            thread.join(30)
    assert first.storage.fetch("charged") == second.storage.fetch("charged") == 5


def test_a_result_that_cannot_be_pickled_fails_its_atom_naming_it(client: Any) -> None:
    flow = linear_flow.Flow("locking").add(dask_tasks.ReturnsLock(name="make-lock"))
    engine = engines.load(flow, engine="parallel", executor=client.get_executor())
    # Dask's executor never completes the future of a result it cannot send: it hung.
    raised = services.run_bounded(engine, 30)
    assert isinstance(raised, exc.WrappedFailure)
    assert raised.check(TypeError)
    assert "atom 'make-lock' returned lock" in str(raised)
    assert "cannot be sent back from the Dask worker" in str(raised)
    assert engine.storage.get_flow_state() == states.REVERTED


def test_a_task_that_cannot_be_pickled_fails_naming_the_atom_and_attribute(client: Any) -> None:
    flow = linear_flow.Flow("locked").add(dask_tasks.HoldsLock(name="hold-lock"))
    engine = engines.load(flow, engine="parallel", executor=client.get_executor())
    with pytest.raises(TypeError) as raised:
        engine.run()
    # Its revert cannot be sent either: it ends as any failed revert does.
    assert (
        "atom 'hold-lock' cannot be sent to the Dask cluster: its task object (HoldsLock: its attribute "
        "'lock' is lock <unlocked _thread.lock object at "
    ) in str(raised.value)
    assert engine.storage.get_atom_state("hold-lock") == states.REVERT_FAILURE
    failure = engine.storage.get_execute_failures()["hold-lock"]
    assert "cannot be sent to the Dask cluster" in str(failure)


def test_an_argument_that_cannot_be_pickled_fails_naming_it(client: Any) -> None:
    flow = linear_flow.Flow("echo").add(dask_tasks.Echo(name="echo"))
    engine = engines.load(
        flow, store={"value": threading.Lock()}, engine="parallel", executor=client.get_executor()
    )
    with pytest.raises(
        TypeError, match="atom 'echo' cannot be sent to the Dask cluster: its argument 'value' "
    ):
        engine.run()


def test_a_task_whose_module_the_workers_lack_fails_naming_the_atom(
    client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module only the engine's process can import (its directory is not on the
    # workers' path): the worker cannot unpickle the call.
    (tmp_path / "qa8_local_tasks.py").write_text(
        "from flowkit import task\n\nclass Local(task.Task):\n    def execute(self):\n        return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    local_tasks = importlib.import_module("qa8_local_tasks")
    flow = linear_flow.Flow("local").add(local_tasks.Local(name="local-only"))
    engine = engines.load(flow, engine="parallel", executor=client.get_executor())
    # Dask's executor never completed that call's future: the run hung.
    raised = services.run_bounded(engine, 30)
    assert isinstance(raised, exc.WrappedFailure)
    assert raised.check(TypeError)
    assert "atom 'local-only' cannot be unpickled on the Dask worker" in str(raised)
    assert "No module named 'qa8_local_tasks'" in str(raised)
    monkeypatch.delitem(sys.modules, "qa8_local_tasks")


def test_a_call_the_cluster_drops_stops_the_run_in_doubt_and_a_rerun_completes(
    client: Any, tmp_path: Path
) -> None:
    # Dask cancels the futures of a client that lost its scheduler; here the call is
    # cancelled on the cluster by hand. Failing the atom would revert it on a cluster
    # that cannot take the revert either, halting the flow with REVERT_FAILURE.
    distributed = services.require_module("distributed", "'flowkit[dask]'")
    flow = linear_flow.Flow("payment").add(dask_tasks.Charge(name="charge", provides="charged"))
    store = {"marker_dir": str(tmp_path), "amount": 5}
    engine = engines.load(flow, store=store, engine="parallel", executor=client.get_executor())
    outcome: list[BaseException | None] = []
    thread = threading.Thread(target=lambda: outcome.append(services.run_bounded(engine, 30)), daemon=True)
    thread.start()
    wait_until(lambda: list(tmp_path.glob("started-*")), 30, message="the charge to start")
    keys = [key for key in client.futures if str(key).startswith("charge-")]
    client.cancel([distributed.Future(key, client) for key in keys])
    thread.join(40)
    (tmp_path / "release").touch()
    assert outcome, "the run had not ended"
    raised = outcome[0]
    assert isinstance(raised, exc.ExecutionFailure), raised
    assert "the Dask cluster dropped the call of atom 'charge'" in str(raised)
    assert engine.storage.get_atom_state("charge") == states.RUNNING
    assert engine.storage.get_flow_state() == states.FAILURE
    engine.run()
    assert engine.storage.fetch("charged") == 5


def test_a_call_cancelled_on_its_timeout_is_not_reported_as_dropped(
    client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    timer = ManualTimer()
    flow = linear_flow.Flow("payment").add(dask_tasks.Charge(name="charge", provides="charged", timeout=5))
    store = {"marker_dir": str(tmp_path), "amount": 5}
    engine = engines.load(flow, store=store, engine="parallel", executor=client.get_executor(), clock=timer)
    outcome: list[BaseException | None] = []
    thread = threading.Thread(target=lambda: outcome.append(services.run_bounded(engine, 30)), daemon=True)
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        thread.start()
        wait_until(lambda: list(tmp_path.glob("started-*")), 30, message="the charge to start")
        timer.wait_armed(1)
        timer.advance(5)
        thread.join(40)
    (tmp_path / "release").touch()
    assert outcome, "the run had not ended"
    assert isinstance(outcome[0], exc.TaskTimeout), outcome[0]
    # The timeout cancelled the Dask future itself: nothing was dropped by the cluster.
    assert not [record for record in caplog.records if "dropped" in record.getMessage()]


def test_sys_exit_in_a_task_interrupts_the_run_as_locally_and_spares_the_workers(client: Any) -> None:
    # SystemExit raised on a worker took the worker process down; Dask then tried
    # the call on the next worker, and the next, before giving up with KilledWorker.
    workers = set(client.scheduler_info()["workers"])
    flow = linear_flow.Flow("exiting").add(dask_tasks.Exit(name="exit"))
    engine = engines.load(flow, engine="parallel", executor=client.get_executor())
    raised = services.run_bounded(engine, 30)
    assert isinstance(raised, SystemExit) and raised.code == 3, repr(raised)
    # An interrupt, as on local threads: the run stopped, nothing was reverted.
    assert engine.storage.get_flow_state() == states.RUNNING
    assert engine.storage.get_atom_state("exit") == states.RUNNING
    assert set(client.scheduler_info()["workers"]) == workers


def test_every_progress_report_from_the_workers_is_recorded_in_order_before_its_task_ends(
    client: Any,
) -> None:
    # A report handed in after its call's outcome is dropped as stale: one that
    # overtook the outcome would be missing here, one out of order misplaced.
    steps = 150
    flow = unordered_flow.Flow("steps").add(
        *(dask_tasks.Steps(name=f"s{i}", inject={"steps": steps, "label": f"s{i}"}) for i in range(4))
    )
    engine = engines.load(flow, engine="parallel", executor=client.get_executor())
    heard: dict[str, list[tuple[float, Any]]] = {f"s{i}": [] for i in range(4)}
    engine.atom_notifier.register(
        task.EVENT_UPDATE_PROGRESS,
        lambda event_type, details: heard[details["task_name"]].append(
            (details["progress"], details.get("step"))
        ),
    )
    engine.run()
    expected = [(0.0, None), *((step / steps, step) for step in range(1, steps)), (1.0, None)]
    assert heard == {f"s{i}": expected for i in range(4)}
    # The task's last details stay in storage (the engine's 1.0 carries none).
    assert engine.storage.get_task_progress_details("s2") == {
        "at_progress": (steps - 1) / steps,
        "details": {"step": steps - 1, "label": "s2"},
    }


def test_concurrent_runs_hear_only_their_own_tasks_over_one_topic_of_their_client(
    client: Any, tmp_path: Path
) -> None:
    def engine(label: str) -> tuple[Any, list[Any], list[tuple[str, Any]]]:
        flow = linear_flow.Flow("waits").add(
            dask_tasks.ReportsThenWaits(name="wait", inject={"label": label, "marker_dir": str(tmp_path)})
        )
        made = engines.load(flow, engine="parallel", executor=client.get_executor())
        progress: list[Any] = []  # what the engine's listeners hear
        made.atom_notifier.register(
            task.EVENT_UPDATE_PROGRESS, lambda event_type, details: progress.append(details.get("label"))
        )
        events: list[tuple[str, Any]] = []  # what the task's own listeners hear
        for atom in flow:
            atom.notifier.register(
                atom.notifier.ANY, lambda event_type, details: events.append((event_type, details))
            )
        return made, progress, events

    (first, first_progress, first_events), (second, second_progress, second_events) = engine("a"), engine("b")
    threads = [threading.Thread(target=made.run, daemon=True) for made in (first, second)]
    for thread in threads:
        thread.start()
    try:
        wait_until(
            lambda: "a" in first_progress and "b" in second_progress,
            30,
            message="both runs to hear their task's first report",
        )
        # One topic for the client's runs, not one per run: Dask cannot drop a
        # topic, so a topic per run made a long-lived scheduler grow with each.
        assert client.run_on_scheduler(dask_tasks.flowkit_topics) == {f"flowkit-relay-{client.id}": 1}
    finally:
        (tmp_path / "release").touch()
        for thread in threads:
            thread.join(30)
    for label, progress, events in (
        ("a", first_progress, first_events),
        ("b", second_progress, second_events),
    ):
        assert progress == [None, label, label, None], label  # the engine's 0.0 and 1.0 carry none
        assert events == [
            (task.EVENT_UPDATE_PROGRESS, {"progress": 0.0}),
            (task.EVENT_UPDATE_PROGRESS, {"progress": 0.25}),
            (task.EVENT_UPDATE_PROGRESS, {"progress": 0.75}),
            ("done", {"label": label}),
            (task.EVENT_UPDATE_PROGRESS, {"progress": 1.0}),
        ], label
    assert client.run_on_scheduler(dask_tasks.flowkit_topics) == {f"flowkit-relay-{client.id}": 1}


def test_progress_whose_details_cannot_leave_the_worker_arrives_without_them(client: Any) -> None:
    engine = engines.load(
        linear_flow.Flow("locked").add(dask_tasks.ReportsLock(name="locked")),
        engine="parallel",
        executor=client.get_executor(),
    )
    heard: list[dict[str, Any]] = []
    engine.atom_notifier.register(
        task.EVENT_UPDATE_PROGRESS,
        lambda event_type, details: heard.append({k: v for k, v in details.items() if k != "task_uuid"}),
    )
    engine.run()
    assert heard == [
        {"task_name": "locked", "progress": 0.0},
        {"task_name": "locked", "progress": 0.5},
        {"task_name": "locked", "progress": 0.75, "n": 1},
        {"task_name": "locked", "progress": 1.0},
    ]


def test_a_task_on_a_dask_worker_runs_in_its_atoms_trace_context(client: Any) -> None:
    # The traceparent travels with the pickled call, so what the task does on the
    # worker (its own spans, the context it passes on) joins the flow's trace.
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from flowkit.listeners.otel import TracingListener
    from tests.cli.test_tracing import SeesItsSpan

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    SeesItsSpan.tracer = None
    engine = engines.load(SeesItsSpan("a"), engine="parallel", executor=client.get_executor())
    with TracingListener(engine, tracer=provider.get_tracer("test")):
        engine.run()
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "execute a"]
    assert engine.storage.get("a") == f"{span.context.trace_id:032x}:{span.context.span_id:016x}"


@pytest.mark.parametrize("timed", [False, True], ids=["in-a-graph", "timed-alone"])
@pytest.mark.parametrize(("retries", "tries"), [(None, 1), (1, 2), (3, 3)])
def test_the_executors_retries_retry_a_failing_task(
    client: Any, tmp_path: Path, retries: int | None, tries: int, timed: bool
) -> None:
    # The call caught the task's exception and returned it as a record, so Dask
    # never saw it fail: client.get_executor(retries=3) retried nothing. A call
    # with a timeout (its clock never advanced here) is submitted alone.
    options = {} if retries is None else {"retries": retries}
    flaky = dask_tasks.FailsTwice("flaky", provides="tries", timeout=60 if timed else None)
    engine = engines.load(
        linear_flow.Flow("f").add(flaky),
        store={"marker_dir": str(tmp_path)},
        engine="parallel",
        executor=client.get_executor(**options),
        clock=ManualTimer(),
    )
    if tries < 3:
        # Out of retries: the last failure, as a record naming the real exception.
        with pytest.raises(exc.WrappedFailure, match=f"transient failure on try {tries - 1}") as raised:
            engine.run()
        assert raised.value.check(RuntimeError)
        assert engine.storage.get_flow_state() == states.REVERTED
    else:
        engine.run()
        assert engine.storage.fetch("tries") == 2
    assert len(os.listdir(tmp_path)) == tries
