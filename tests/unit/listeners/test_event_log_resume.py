"""The event log of a resumed run explains what it finishes by what the earlier run recorded."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, exceptions, task
from flowkit.engines.base import Engine
from flowkit.listeners.events import CauseKind, EventLog, EventLogListener
from flowkit.patterns import linear_flow
from flowkit.persistence import backends, models
from flowkit.persistence.base import Backend


class CardDeclined(Exception):
    pass


class Charge(task.Task):
    def execute(self) -> None:
        raise CardDeclined("card declined")


def crash_the_first_time(task_class: Any) -> None:
    """The crash stand-in: a KeyboardInterrupt while ``task_class.armed`` is set (a test sets it), once."""
    if task_class.armed:
        task_class.armed = False
        raise KeyboardInterrupt


class Reserve(task.Task):
    """Its first revert is interrupted (a crash stand-in), after the failure was recorded."""

    armed = True

    def execute(self) -> None:
        pass

    def revert(self, **kwargs: Any) -> None:
        crash_the_first_time(Reserve)


def reserve_then_charge() -> linear_flow.Flow:
    return linear_flow.Flow("order").add(Reserve("reserve"), Charge("charge"))


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    """A directory backend: what one run stores, the next (a new engine, as after a crash) reads."""
    made = backends.fetch({"connection": "dir", "path": str(tmp_path)})
    yield made
    made.close()


def stored(backend: Backend, engine: Engine) -> models.FlowDetail:
    """The engine's flow as the backend holds it: what a resume (or a stored report) starts from."""
    with contextlib.closing(backend.get_connection()) as conn:
        return conn.get_flow_details(engine.storage.flow_uuid)


def run_to_the_crash(flow: linear_flow.Flow, backend: Backend, clock: Callable[[], float]) -> Engine:
    """Run ``flow`` under an event log until its crash stand-in (a KeyboardInterrupt) stops it."""
    engine = engines.load(flow, backend=backend)
    with EventLogListener(engine, clock=clock), pytest.raises(KeyboardInterrupt):
        engine.run()
    return engine


def resume(
    flow: linear_flow.Flow, backend: Backend, crashed: Engine, clock: Callable[[], float] = time.time
) -> tuple[Engine, EventLog]:
    """Load ``flow`` from what ``crashed`` stored, as a new process would, and run it to its end.

    Gives the resumed engine and the event log of every run, the earlier ones included.
    """
    resumed = engines.load(flow, flow_detail=stored(backend, crashed), backend=backend)
    with EventLogListener(resumed, clock=clock) as listener:
        resumed.run()
    return resumed, listener.log


def test_a_resumed_run_names_the_failure_an_earlier_run_recorded(backend: Backend) -> None:
    Reserve.armed = True
    engine = engines.load_from_factory(reserve_then_charge, backend=backend)
    with EventLogListener(engine), pytest.raises(KeyboardInterrupt):
        engine.run()
    resumed = engines.load_from_detail(stored(backend, engine), backend=backend)
    listener = EventLogListener(resumed)
    with listener, pytest.raises(exceptions.WrappedFailure):
        resumed.run()
    log = listener.log
    (failed,) = [e for e in log if e.state == "FAILURE"]  # recorded by the first run
    finished = [e for e in log if e.kind == "flow"][-1]
    assert finished.state == "REVERTED"
    assert finished.cause.kind is CauseKind.FINISHED
    # The log stored only the failure's type name, but storage keeps the failure: the
    # resumed run words it as the first run did (it said "failed with CardDeclined;").
    assert finished.cause.text == "'charge' failed with CardDeclined: card declined; the flow ended REVERTED"
    assert (finished.cause.failure, finished.cause.event) == ("CardDeclined", failed.seq)


class FailsOnce(task.Task):
    """Fails its first execute, its revert is interrupted (a crash stand-in), then it succeeds."""

    calls = 0

    def execute(self) -> None:
        FailsOnce.calls += 1
        if FailsOnce.calls == 1:
            raise CardDeclined("card declined")

    def revert(self, **kwargs: Any) -> None:
        crash_the_first_time(Reserve)


def test_a_resumed_retry_words_the_failure_as_the_run_that_saw_it(backend: Backend) -> None:
    from flowkit import retry

    Reserve.armed, FailsOnce.calls = True, 0
    flow = linear_flow.Flow("order", retry=retry.Times(2, name="r")).add(FailsOnce("charge"))
    crashed = run_to_the_crash(flow, backend, time.time)
    _resumed, log = resume(flow, backend, crashed)
    said = "'charge' failed with CardDeclined: card declined in attempt 1; retry 'r' chose RETRY"
    (reverting,) = [e for e in log if e.name == "charge" and e.state == "REVERTING" and e.run == 1]
    assert reverting.cause.text == said
    # Run 2's restart of the retried atom said "'charge' failed with CardDeclined in attempt 1".
    restart = [e for e in log if e.name == "charge" and e.state == "RUNNING"][-1]
    assert (restart.run, restart.cause.text) == (2, f"attempt 2: {said}")


class FailsThenCrashes(task.Task):
    """Fails its first execute; its second is interrupted (a crash stand-in: it stays RUNNING)."""

    calls = 0

    def execute(self) -> None:
        FailsThenCrashes.calls += 1
        if FailsThenCrashes.calls == 1:
            raise CardDeclined("card declined")
        raise KeyboardInterrupt


def test_an_atom_stopped_in_its_next_attempt_is_not_reported_failed(backend: Backend) -> None:
    from flowkit import retry
    from flowkit.report import ExecutionReport

    FailsThenCrashes.calls = 0
    flow = linear_flow.Flow("order", retry=retry.Times(2, name="r")).add(FailsThenCrashes("charge"))
    crashed = run_to_the_crash(flow, backend, time.time)
    report = ExecutionReport.from_flow_detail(stored(backend, crashed))
    (charge,) = [a for a in report.atoms if a.name == "charge"]
    # Its record still holds attempt 1's failure: the line said "RUNNING ... failed: CardDeclined".
    assert (charge.state, charge.failure) == ("RUNNING", None)
    (line,) = [line for line in report.to_text().splitlines() if line.startswith("  charge")]
    assert "failed:" not in line
    assert "(earlier attempts: 1 failed and reverted)" in line
    assert report.failures == []


class Crashes(task.Task):
    """Interrupted the first time (a crash stand-in: it stays RUNNING), then returns."""

    armed = True

    def execute(self) -> str:
        crash_the_first_time(Crashes)
        return "done"


class Clock:
    """A wall clock that moves one second per reading, and as far as a test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_crash_and_its_resume_count_only_the_runs_active_time_not_the_downtime(backend: Backend) -> None:
    # The resumed engine's preparation (RESUMING -> SUSPENDED) was logged as "the
    # run was suspended", and the report took that SUSPENDED, in run 2, as the end
    # of run 1: the hours between a crash and its resume counted as active time.
    from flowkit.report import ExecutionReport

    Crashes.armed = True
    clock = Clock()
    flow = linear_flow.Flow("f").add(Reserve("a"), Crashes("b"))
    engine = run_to_the_crash(flow, backend, clock)
    clock.now += 3600.0  # down for an hour
    _, log = resume(flow, backend, engine, clock)
    report = ExecutionReport.from_flow_detail(stored(backend, engine))
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


def test_a_resumed_engines_report_counts_every_run_as_the_stored_report_does(backend: Backend) -> None:
    # from_engine took the engine's own statistics (its latest run() only) while
    # from_flow_detail summed the event log's runs: after a resume the two reports
    # of one flow gave different durations.
    from flowkit.report import ExecutionReport

    Crashes.armed = True
    clock = Clock()
    flow = linear_flow.Flow("f").add(Reserve("a"), Crashes("b"))
    engine = run_to_the_crash(flow, backend, clock)
    resumed, log = resume(flow, backend, engine, clock)
    live = ExecutionReport.from_engine(resumed)
    kept = ExecutionReport.from_flow_detail(stored(backend, engine))
    run1 = [e.at for e in log if e.run == 1]
    run2 = [e.at for e in log if e.run == 2 and e.kind == "flow" and e.state in ("RUNNING", "SUCCESS")]
    first, last = max(run1) - min(run1), run2[-1] - run2[0]
    assert (live.runs, kept.runs) == (2, 2)
    assert live.duration == kept.duration == first + last
    assert live.last_run_duration == kept.last_run_duration == last
    assert live.to_dict(events=False) == kept.to_dict(events=False)
    assert f"in {first + last:.3f}s over 2 runs (the last {last:.3f}s)" in live.to_text()


class CreatesOnce(task.Task):
    """Interrupted the first time after its work is done (a crash stand-in); ``check_done`` finds it."""

    armed = True

    def execute(self) -> str:
        crash_the_first_time(CreatesOnce)
        raise AssertionError("found done: not to be run again")

    def check_done(self) -> Any:
        from flowkit.conductors import in_doubt

        return in_doubt.Done("vol-1")


def test_an_atom_found_done_between_runs_is_logged_done_and_its_successors_follow_it(
    backend: Backend,
) -> None:
    # A conductor records an in-doubt atom its check_done finds done (SUCCESS) before the
    # run, with no notification: its log ended at RUNNING, so `why` said RUNNING of a
    # SUCCESS atom and its successor's "made ready by it" led nowhere.
    from flowkit.conductors import in_doubt
    from flowkit.report import ExecutionReport

    CreatesOnce.armed = True
    clock = Clock()
    flow = linear_flow.Flow("f").add(Reserve("a"), CreatesOnce("create"), Reserve("after"))
    engine = run_to_the_crash(flow, backend, clock)
    checking = engines.load(flow, flow_detail=stored(backend, engine), backend=backend)
    checking.compile()
    checking.prepare()
    assert in_doubt.resolve(checking) == ["create"]  # as a conductor does, before listening
    checking.storage.flush()
    clock.now += 3600.0  # the conductor died an hour before
    _, log = resume(flow, backend, engine, clock)
    report = ExecutionReport.from_flow_detail(stored(backend, engine))
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
    backend: Backend,
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

    engine = engines.load(make(), backend=backend)
    with EventLogListener(engine), contextlib.suppress(KeyboardInterrupt):
        engine.atom_notifier.register(engine.atom_notifier.ANY, stop_at_the_verdict)  # after the log's
        engine.run()
    _, log = resume(make(), backend, engine)
    (verdict,) = [e for e in log.of("loop^until") if e.state == "PENDING" and e.run == 1]
    again = next(e for e in log.of("count") if e.state == "RUNNING" and e.run == 2)
    assert again.cause.kind == CauseKind.ENGINE and again.cause.text.startswith("its loop runs again")
    assert again.cause.event == verdict.seq


def test_a_loop_reset_the_log_missed_is_recorded_as_the_next_run_begins(backend: Backend) -> None:
    # A listener registered before the event log stopped the run (a crash stand-in) as
    # the loop's body was reset: the records went on to iteration 2 but the log never
    # heard of the reset, so the resumed run said the body ran again because the atom
    # before the loop had completed, and `why` never reached the loop's verdict.
    from flowkit import states
    from flowkit.patterns import loop_flow

    Counts.calls = 0

    def make() -> linear_flow.Flow:
        loop = loop_flow.Flow("loop", Counts("count"), until=lambda count: count >= 3, max_iterations=5)
        return linear_flow.Flow("f").add(Reserve("start"), loop)

    def stop_at_the_reset(state: str, details: dict[str, Any]) -> None:
        if details.get("task_name") == "count" and state == states.PENDING:
            raise KeyboardInterrupt  # a crash stand-in, before the log hears of the reset

    engine = engines.load(make(), backend=backend)
    engine.atom_notifier.register(engine.atom_notifier.ANY, stop_at_the_reset)  # before the log's
    with EventLogListener(engine), contextlib.suppress(KeyboardInterrupt):
        engine.run()
    missed = EventLog.from_flow_detail(stored(backend, engine))
    assert [e.state for e in missed.of("count")] == ["RUNNING", "SUCCESS"]  # the log missed the reset
    _, log = resume(make(), backend, engine)
    count_reset, verdict = [e for e in log.events if e.state == "PENDING" and e.run == 1]
    assert (count_reset.name, count_reset.run, verdict.name, verdict.run) == ("count", 1, "loop^until", 1)
    assert verdict.cause.kind == CauseKind.ENGINE and "iteration 2 follows" in verdict.cause.text
    assert verdict.cause.event == next(e.seq for e in log.of("loop^until") if e.state == "RUNNING")
    again = next(e for e in log.of("count") if e.state == "RUNNING" and e.run == 2)
    assert again.cause.kind == CauseKind.ENGINE and again.cause.text.startswith(
        "its loop runs again: iteration 2"
    )
    assert again.cause.event == verdict.seq
    chain = [(e.name, e.state, e.run) for e in log.why("count")]
    assert ("loop^until", "PENDING", 1) in chain and ("start", "SUCCESS", 1) not in chain[:3]


def test_an_atom_run_again_in_doubt_has_no_made_up_duration(backend: Backend) -> None:
    # The restart of an atom a crash left RUNNING is not announced by the engine: the log
    # records it when its outcome arrives, timed then. The report took that RUNNING as
    # the attempt's start, and said "b  SUCCESS  attempts=2  0.000s" of an atom that ran
    # for an unknown time: a guess, where the report says unknown (None).
    from flowkit.report import ExecutionReport

    Crashes.armed = True
    clock = Clock()
    flow = linear_flow.Flow("f").add(Reserve("a"), Crashes("b"))
    engine = run_to_the_crash(flow, backend, clock)
    _, log = resume(flow, backend, engine, clock)
    (restart,) = [e for e in log.of("b", flow=False) if e.state == "RUNNING" and e.run == 2]
    assert restart.cause.kind is CauseKind.RESUMED
    report = {a.name: a for a in ExecutionReport.from_flow_detail(stored(backend, engine)).atoms}
    assert report["b"].attempts == 2
    assert report["b"].duration is None
    assert report["a"].duration is not None
    line = next(
        x
        for x in ExecutionReport.from_flow_detail(stored(backend, engine)).to_text().splitlines()
        if x.split()[0] == "b"
    )
    assert "0.000s" not in line, line
    # Its first attempt (RUNNING when the run stopped) came to nothing the log saw: the
    # line counted attempts=2 but said nothing of the earlier one.
    assert line.endswith("(earlier attempts: 1 interrupted)"), line
    assert "earlier attempts" not in next(
        x
        for x in ExecutionReport.from_flow_detail(stored(backend, engine)).to_text().splitlines()
        if x.split()[0] == "a"
    )


def test_why_an_atom_ran_again_in_doubt_goes_back_to_the_run_that_left_it_running(backend: Backend) -> None:
    # The restart of an atom a crash left RUNNING named no event, unlike the same atom
    # found done between the runs: `why` stopped at "it was RUNNING when run 1 stopped"
    # and the tree hung the restart at its root, cut off from the run it continues.
    Crashes.armed = True
    flow = linear_flow.Flow("f").add(Reserve("a"), Crashes("b"))
    engine = run_to_the_crash(flow, backend, Clock())
    _, log = resume(flow, backend, engine)
    chain = [(e.name, e.state, e.run) for e in log.why("b")]
    assert chain == [
        ("b", "SUCCESS", 2),
        ("b", "RUNNING", 2),  # run again, in doubt...
        ("b", "RUNNING", 1),  # ...because it was running when run 1 stopped
        ("a", "SUCCESS", 1),
        ("a", "RUNNING", 1),
    ]
    stopped, restart = [e for e in log.of("b") if e.state == "RUNNING"]
    assert restart.cause.kind is CauseKind.RESUMED and restart.cause.event == stopped.seq
    rows = [row.event.seq for row in log.tree()]
    assert rows.index(restart.seq) > rows.index(stopped.seq)  # in the tree, under what it continues


def test_why_a_revert_resumed_in_doubt_goes_back_to_the_failure_it_reverts_for(backend: Backend) -> None:
    # Same for a revert a crash interrupted: its resumed REVERTING named no event, so
    # `why reserve` ended at "reverted again (in doubt)", short of the declined card.
    Reserve.armed = True
    engine = run_to_the_crash(reserve_then_charge(), backend, Clock())
    resumed = engines.load(reserve_then_charge(), flow_detail=stored(backend, engine), backend=backend)
    with EventLogListener(resumed) as listener, pytest.raises(exceptions.WrappedFailure):
        resumed.run()
    chain = [(e.name, e.state, e.run) for e in listener.log.why("reserve")]
    assert chain == [
        ("reserve", "REVERTED", 2),
        ("reserve", "REVERTING", 2),  # reverted again, in doubt...
        ("reserve", "REVERTING", 1),  # ...because its revert was under way when run 1 stopped
        ("charge", "FAILURE", 1),
    ]


class SuspendsItsEngine(task.Task):
    """Suspends ``engine`` (set by the test) the first time, then returns."""

    engine: Engine | None = None

    def execute(self) -> str:
        if SuspendsItsEngine.engine is not None:
            SuspendsItsEngine.engine, engine = None, SuspendsItsEngine.engine
            engine.suspend()
        return self.name


def test_one_listener_over_a_suspended_run_and_the_run_again_numbers_the_second_run() -> None:
    # Attached once around both run() calls, the listener kept numbering run 1 and said
    # the second run "the flow started", where a listener attached for each run says
    # run 2 "resumed the flow": the log, the report's runs and `why` depended on it.
    from flowkit.report import ExecutionReport

    engine = engines.load(linear_flow.Flow("f").add(Reserve("a"), SuspendsItsEngine("s"), Reserve("b")))
    SuspendsItsEngine.engine = engine
    with EventLogListener(engine, clock=Clock()) as listener:
        engine.run()
        assert engine.storage.get_flow_state() == "SUSPENDED"
        engine.run()
    log = listener.log
    starts = [e for e in log if e.kind == "flow" and e.state == "RUNNING"]
    assert [(e.run, e.cause.kind) for e in starts] == [(1, CauseKind.STARTED), (2, CauseKind.RESUMED)]
    assert starts[1].cause.text == "run 2 resumed the flow (it was SUSPENDED)"
    assert {e.run for e in log if e.name == "b"} == {2}
    assert [e.seq for e in log] == list(range(1, len(log.events) + 1))  # numbered on, none twice
    report = ExecutionReport.from_engine(engine)
    assert report.runs == 2 and report.state == "SUCCESS"


def test_a_listener_whose_first_notice_is_an_in_doubt_atoms_outcome_records_it_once() -> None:
    # The engine run again after an interrupt announces nothing as it starts (the flow
    # never left RUNNING, as in TaskFlow): a listener attached for that run first hears
    # the outcome of the atom left RUNNING, already stored. It took that atom for one
    # found done between the runs and recorded its SUCCESS twice, "found done" then
    # "execute returned".
    Crashes.armed = True
    engine = engines.load(linear_flow.Flow("f").add(Reserve("a"), Crashes("s"), Reserve("b")))
    with EventLogListener(engine, clock=Clock()), pytest.raises(KeyboardInterrupt):
        engine.run()
    with EventLogListener(engine, clock=Clock()) as listener:
        engine.run()
    events = [(e.run, e.old_state, e.state, e.cause.kind) for e in listener.log.of("s")]
    assert events == [
        (1, "PENDING", "RUNNING", CauseKind.READY),
        (2, "RUNNING", "RUNNING", CauseKind.RESUMED),  # run again, in doubt
        (2, "RUNNING", "SUCCESS", CauseKind.RETURNED),
    ]


def test_a_flow_resumed_with_an_atom_the_earlier_run_did_not_have_is_logged_whole(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    # A flow fixed between the crash and the resume (a spec file edited, a task
    # added to a factory) has an atom with no record yet when RESUMING is sent:
    # the engine adds it afterwards, as TaskFlow does. The log asked the storage
    # for its state, the listener failed (a traceback logged), and the run was
    # logged without the earlier run's events: 'b' read as never attempted.
    from flowkit.report import ExecutionReport

    Crashes.armed = True
    crashed = run_to_the_crash(linear_flow.Flow("f").add(Reserve("a"), Crashes("b")), backend, time.time)
    fixed = linear_flow.Flow("f").add(Reserve("a"), Crashes("b"), Reserve("c"))
    with caplog.at_level("WARNING"):
        resumed, log = resume(fixed, backend, crashed)
    assert not [r for r in caplog.records if "Failure calling listener" in r.getMessage()]
    assert [(e.run, e.state) for e in log if e.name == "b"] == [
        (1, "RUNNING"),
        (2, "RUNNING"),
        (2, "SUCCESS"),
    ]
    assert [(e.run, e.state) for e in log if e.name == "c"] == [(2, "RUNNING"), (2, "SUCCESS")]
    (b,) = [a for a in ExecutionReport.from_flow_detail(stored(backend, resumed)).atoms if a.name == "b"]
    assert b.attempts == 2


def test_a_log_first_attached_to_a_resume_records_the_atom_it_runs_again_in_doubt(backend: Backend) -> None:
    # A flow run from Python without an event log, killed mid-task, then resumed with one
    # (what `flowkit flows resume` does): the log found no earlier events and took the
    # run for a fresh one. The atom left RUNNING got its SUCCESS alone, "attempt 0", and
    # the report said "b  SUCCESS  attempts=0" of an atom that ran (twice), and the flow
    # "started" rather than resumed.
    from flowkit.report import ExecutionReport

    Crashes.armed = True
    flow = linear_flow.Flow("f").add(Reserve("a"), Crashes("b"))
    engine = engines.load(flow, backend=backend)
    with pytest.raises(KeyboardInterrupt):
        engine.run()  # no event log in this run
    _, log = resume(flow, backend, engine, Clock())
    b = [(e.state, e.attempt, e.cause.kind) for e in log.of("b", flow=False)]
    assert b == [("RUNNING", 1, CauseKind.RESUMED), ("SUCCESS", 1, CauseKind.RETURNED)]
    (restart,) = [e for e in log.of("b", flow=False) if e.state == "RUNNING"]
    assert "an earlier run stopped" in restart.cause.text, restart.cause.text
    started = next(e for e in log if e.kind == "flow" and e.state == "RUNNING")
    assert started.cause.kind is CauseKind.RESUMED, started.cause.text
    report = {a.name: a for a in ExecutionReport.from_flow_detail(stored(backend, engine)).atoms}
    assert report["b"].attempts == 1
