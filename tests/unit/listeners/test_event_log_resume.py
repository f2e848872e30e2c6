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


class Crashes(task.Task):
    """Interrupted the first time (a crash stand-in: it stays RUNNING), then returns."""

    armed = True

    def execute(self) -> str:
        if Crashes.armed:
            Crashes.armed = False
            raise KeyboardInterrupt
        return "done"


class Clock:
    """A wall clock that moves one second per reading, and as far as a test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_crash_and_its_resume_count_only_the_runs_active_time_not_the_downtime(tmp_path: Path) -> None:
    # The resumed engine's preparation (RESUMING -> SUSPENDED) was logged as "the
    # run was suspended", and the report took that SUSPENDED, in run 2, as the end
    # of run 1: the hours between a crash and its resume counted as active time.
    from flowkit.report import ExecutionReport

    Crashes.armed = True
    clock = Clock()
    flow = linear_flow.Flow("f").add(Reserve("a"), Crashes("b"))
    backend = backends.fetch({"connection": "dir", "path": str(tmp_path)})
    try:
        engine = engines.load(flow, backend=backend)
        with EventLogListener(engine, clock=clock), pytest.raises(KeyboardInterrupt):
            engine.run()
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        clock.now += 3600.0  # down for an hour
        resumed = engines.load(flow, flow_detail=detail, backend=backend)
        with EventLogListener(resumed, clock=clock) as listener:
            resumed.run()
        log = list(listener.log)
        with contextlib.closing(backend.get_connection()) as conn:
            report = ExecutionReport.from_flow_detail(conn.get_flow_details(engine.storage.flow_uuid))
    finally:
        backend.close()
    prepared = [e for e in log if e.kind == "flow" and e.state == "SUSPENDED"]
    assert prepared and all(e.cause.kind is CauseKind.ENGINE for e in prepared)
    assert all("suspended" not in e.cause.text for e in prepared)
    # Run 1: from its RUNNING to its last event (it never ended); run 2: RUNNING to SUCCESS.
    run1 = [e.at for e in log if e.run == 1]
    run2_start = next(e.at for e in log if e.run == 2 and e.kind == "flow" and e.state == "RUNNING")
    run2_end = next(e.at for e in log if e.run == 2 and e.kind == "flow" and e.state == "SUCCESS")
    assert report.runs == 2
    assert report.duration == (max(run1) - min(run1)) + (run2_end - run2_start)
    assert report.duration < 3600


def test_a_resumed_engines_report_counts_every_run_as_the_stored_report_does(tmp_path: Path) -> None:
    # from_engine took the engine's own statistics (its latest run() only) while
    # from_flow_detail summed the event log's runs: after a resume the two reports
    # of one flow gave different durations.
    from flowkit.report import ExecutionReport

    Crashes.armed = True
    clock = Clock()
    flow = linear_flow.Flow("f").add(Reserve("a"), Crashes("b"))
    backend = backends.fetch({"connection": "dir", "path": str(tmp_path)})
    try:
        engine = engines.load(flow, backend=backend)
        with EventLogListener(engine, clock=clock), pytest.raises(KeyboardInterrupt):
            engine.run()
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        resumed = engines.load(flow, flow_detail=detail, backend=backend)
        with EventLogListener(resumed, clock=clock) as listener:
            resumed.run()
        log = list(listener.log)
        live = ExecutionReport.from_engine(resumed)
        with contextlib.closing(backend.get_connection()) as conn:
            stored = ExecutionReport.from_flow_detail(conn.get_flow_details(engine.storage.flow_uuid))
    finally:
        backend.close()
    run1 = [e.at for e in log if e.run == 1]
    run2 = [e.at for e in log if e.run == 2 and e.kind == "flow" and e.state in ("RUNNING", "SUCCESS")]
    first, last = max(run1) - min(run1), run2[-1] - run2[0]
    assert (live.runs, stored.runs) == (2, 2)
    assert live.duration == stored.duration == first + last
    assert live.last_run_duration == stored.last_run_duration == last
    assert live.to_dict(events=False) == stored.to_dict(events=False)
    assert f"in {first + last:.3f}s over 2 runs (the last {last:.3f}s)" in live.to_text()


class CreatesOnce(task.Task):
    """Interrupted the first time after its work is done (a crash stand-in); ``check_done`` finds it."""

    armed = True

    def execute(self) -> str:
        if CreatesOnce.armed:
            CreatesOnce.armed = False
            raise KeyboardInterrupt
        raise AssertionError("found done: not to be run again")

    def check_done(self) -> Any:
        from flowkit.conductors import in_doubt

        return in_doubt.Done("vol-1")


def test_an_atom_found_done_between_runs_is_logged_done_and_its_successors_follow_it(
    tmp_path: Path,
) -> None:
    # A conductor records an in-doubt atom its check_done finds done (SUCCESS) before the
    # run, with no notification: its log ended at RUNNING, so `why` said RUNNING of a
    # SUCCESS atom and its successor's "made ready by it" led nowhere.
    from flowkit.conductors import in_doubt
    from flowkit.report import ExecutionReport

    CreatesOnce.armed = True
    clock = Clock()
    flow = linear_flow.Flow("f").add(Reserve("a"), CreatesOnce("create"), Reserve("after"))
    backend = backends.fetch({"connection": "dir", "path": str(tmp_path)})
    try:
        engine = engines.load(flow, backend=backend)
        with EventLogListener(engine, clock=clock), pytest.raises(KeyboardInterrupt):
            engine.run()

        def stored() -> Any:
            with contextlib.closing(backend.get_connection()) as conn:
                return conn.get_flow_details(engine.storage.flow_uuid)

        checking = engines.load(flow, flow_detail=stored(), backend=backend)
        checking.compile()
        checking.prepare()
        assert in_doubt.resolve(checking) == ["create"]  # as a conductor does, before listening
        checking.storage.flush()
        clock.now += 3600.0  # the conductor died an hour before
        resumed = engines.load(flow, flow_detail=stored(), backend=backend)
        with EventLogListener(resumed, clock=clock) as listener:
            resumed.run()
        log = listener.log
        report = ExecutionReport.from_flow_detail(stored())
    finally:
        backend.close()
    done = log.of("create")[-1]
    assert (done.state, done.run, done.cause.kind) == ("SUCCESS", 2, CauseKind.RESUMED)
    assert "found done" in done.cause.text
    chain = [(e.name, e.state) for e in log.why("create")]
    assert chain[:2] == [("create", "SUCCESS"), ("create", "RUNNING")]
    after = log.of("after")[0]
    assert after.cause.atoms == ("create",) and after.cause.event == done.seq
    atoms = {a.name: a for a in report.atoms}
    # Its work's length is unknown (it ran before the crash): not the hour between the runs.
    assert atoms["create"].attempts == 1 and atoms["create"].duration is None


class Counts(task.Task):
    default_provides = "count"
    calls = 0

    def execute(self) -> int:
        Counts.calls += 1
        return Counts.calls


def test_a_loop_stopped_after_its_verdict_runs_again_in_the_next_run_because_of_that_verdict(
    tmp_path: Path,
) -> None:
    # Resumed between a loop's verdict and its next iteration, the first atom of the body
    # was said to run because the atom before the loop completed (in the earlier run).
    from flowkit import states
    from flowkit.patterns import loop_flow

    Counts.calls = 0

    def make() -> linear_flow.Flow:
        loop = loop_flow.Flow("loop", Counts("count"), until=lambda count: count >= 3, max_iterations=5)
        return linear_flow.Flow("f").add(Reserve("start"), loop)

    def stop_at_the_verdict(state: str, details: dict[str, Any]) -> None:
        if details.get("task_name") == "loop^until" and state == states.PENDING:
            raise KeyboardInterrupt  # a crash stand-in, once the verdict is recorded

    backend = backends.fetch({"connection": "dir", "path": str(tmp_path)})
    try:
        engine = engines.load(make(), backend=backend)
        with EventLogListener(engine), contextlib.suppress(KeyboardInterrupt):
            engine.atom_notifier.register(engine.atom_notifier.ANY, stop_at_the_verdict)  # after the log's
            engine.run()
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        resumed = engines.load(make(), flow_detail=detail, backend=backend)
        with EventLogListener(resumed) as listener:
            resumed.run()
        log = listener.log
    finally:
        backend.close()
    (verdict,) = [e for e in log.of("loop^until") if e.state == "PENDING" and e.run == 1]
    again = next(e for e in log.of("count") if e.state == "RUNNING" and e.run == 2)
    assert again.cause.kind == CauseKind.ENGINE and again.cause.text.startswith("its loop runs again")
    assert again.cause.event == verdict.seq
