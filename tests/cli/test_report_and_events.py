"""The execution report, the causal event log and the progress display, in process."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from typing import Any

import pytest

from flowkit import engines, exceptions, retry, task
from flowkit.listeners.events import META_KEY, CauseKind, EventLog, EventLogListener
from flowkit.listeners.progress import ProgressListener
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from flowkit.persistence import backends
from flowkit.report import ExecutionReport
from tests.cli._flows import CardDeclined, StopsOnce, make_shop


class Ticking:
    """A wall clock that moves one second per reading."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1000)

    def __call__(self) -> float:
        return float(next(self._ticks))


class Flaky(task.Task):
    """Fails its first ``failures`` attempts."""

    def __init__(self, name: str, failures: int) -> None:
        super().__init__(name=name)
        self.left = failures

    def execute(self) -> str:
        if self.left:
            self.left -= 1
            raise CardDeclined("declined")
        return "ok"


class Step(task.Task):
    def execute(self) -> str:
        self.update_progress(0.5)
        return self.name


def _run(flow: Any, **kwargs: Any) -> tuple[Any, EventLogListener]:
    engine = engines.load(flow, **kwargs)
    listener = EventLogListener(engine, clock=Ticking())
    with listener, contextlib.suppress(CardDeclined):
        engine.run()
    return engine, listener


def test_every_transition_is_logged_with_its_cause() -> None:
    flow = linear_flow.Flow("f").add(
        Step("a"),
        linear_flow.Flow("sub", retry=retry.Times(3, "r1")).add(Step("b"), Flaky("flaky", failures=1)),
        Step("c"),
    )
    engine, listener = _run(flow)
    log = listener.log
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    first = log.of("a")[0]
    assert first.state == "RUNNING" and first.cause.kind == CauseKind.READY and first.cause.atoms == ()
    c_running = log.of("c")[0]
    assert c_running.cause.atoms == ("flaky",)
    assert log.get(c_running.cause.event).name == "flaky"  # type: ignore[union-attr]
    flaky_failed = next(e for e in log.of("flaky") if e.state == "FAILURE")
    assert flaky_failed.cause.kind == CauseKind.RAISED and flaky_failed.cause.failure == "CardDeclined"
    b_reverting = next(e for e in log.of("b") if e.state == "REVERTING")
    assert b_reverting.cause.kind == CauseKind.FAILURE
    assert (b_reverting.cause.retry, b_reverting.cause.decision) == ("r1", "RETRY")
    assert b_reverting.cause.event == flaky_failed.seq
    b_again = [e for e in log.of("b") if e.state == "RUNNING"][1]
    assert b_again.attempt == 2 and b_again.cause.kind == CauseKind.RETRY
    flow_events = [e for e in log if e.kind == "flow"]
    assert flow_events[0].cause.kind == CauseKind.STARTED
    assert flow_events[-1].state == "SUCCESS" and flow_events[-1].cause.kind == CauseKind.FINISHED
    # Kept in the details' metadata, and read back the same from a flow detail.
    detail = engine.storage.flow_detail
    assert META_KEY in detail.meta
    assert EventLog.from_flow_detail(detail).to_list() == log.to_list()
    json.dumps(log.to_list())


def test_revert_all_and_scoped_revert_are_told_apart() -> None:
    def flow(retry_atom: Any) -> Any:
        return linear_flow.Flow("g").add(
            Step("a"), linear_flow.Flow("sub", retry=retry_atom).add(Step("b"), Flaky("bad", failures=9))
        )

    _, everything = _run(flow(retry.AlwaysRevertAll("r1")))
    causes = {e.name: e.cause for e in everything.log if e.state == "REVERTING"}
    assert {c.decision for c in causes.values()} == {"REVERT_ALL"}
    assert set(causes) == {"a", "b", "bad", "r1"}
    chain = everything.log.why("a")
    assert [(e.name, e.state) for e in chain] == [("a", "REVERTED"), ("a", "REVERTING"), ("bad", "FAILURE")]

    _, scoped = _run(flow(retry.AlwaysRevert("r1")))
    b_cause = next(e.cause for e in scoped.log.of("b") if e.state == "REVERTING")
    assert (b_cause.retry, b_cause.decision) == ("r1", "REVERT")


def test_without_a_listener_nothing_is_recorded() -> None:
    engine = engines.load(make_shop(), store={"amount": 5})
    engine.run()
    detail = engine.storage.flow_detail
    assert META_KEY not in detail.meta
    assert all(META_KEY not in (d.meta or {}) for d in detail)
    assert not EventLog.from_flow_detail(detail)


def test_report_of_a_failed_run_counts_attempts_durations_and_reverts() -> None:
    engine, _ = _run(make_shop(), store={"amount": 500})
    report = ExecutionReport.from_engine(engine)
    assert report.state == "REVERTED" and report.runs == 1
    atoms = {a.name: a for a in report.atoms}
    assert atoms["charge"].attempts == 2
    assert atoms["charge"].failure is not None and atoms["charge"].failure.type.endswith("CardDeclined")
    assert atoms["charge"].duration == 2.0  # two attempts of one tick each
    assert atoms["reserve"].reverted == "reverted" and atoms["reserve"].revert_duration == 1.0
    assert atoms["ship"].state == "PENDING" and atoms["ship"].attempts == 0
    assert report.totals == {"PENDING": 1, "REVERTED": 3, "total": 4}
    assert [a.name for a in report.failures] == ["charge"]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["atoms"][0]["name"] == "reserve" and data["events"]
    text = report.to_text()
    assert text.splitlines()[0].startswith("flow 'shop'") and "REVERTED" in text
    assert "failed: " in text and "CardDeclined: card declined for 500" in text


class BadRevert(task.Task):
    """Fails, and fails to revert, with messages of several lines."""

    def execute(self) -> None:
        raise CardDeclined("declined\n  by the bank")

    def revert(self, *args: Any, **kwargs: Any) -> None:
        raise exceptions.ExecutionFailure("cannot refund", cause=ValueError("no\nrecord"))


def test_the_text_report_keeps_one_line_per_atom_when_messages_span_lines() -> None:
    # A flowkit error's causes (and pydantic's messages) span lines; they broke the layout.
    engine = engines.load(linear_flow.Flow("f").add(BadRevert("pay")))
    with contextlib.suppress(Exception):
        engine.run()
    report = ExecutionReport.from_engine(engine)
    lines = report.to_text().splitlines()
    assert len(lines) == 2, lines
    assert lines[1].endswith(
        "failed: tests.cli._flows.CardDeclined: declined by the bank  "
        "revert failed: flowkit.exceptions.ExecutionFailure: cannot refund ValueError: no record"
    ), lines
    assert report.atoms[0].failure is not None and "\n" in report.atoms[0].failure.message  # kept whole


def test_report_from_a_persisted_flow_detail_read_in_another_connection(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    with backends.backend(url) as backend:
        engine, _ = _run(make_shop(), store={"amount": 5}, backend=backend)
        uuid = engine.storage.flow_uuid
    with backends.backend(url) as backend, backend.get_connection() as conn:
        detail = conn.get_flow_details(uuid)
    report = ExecutionReport.from_flow_detail(detail)
    assert report.state == "SUCCESS"
    assert {a.name: a.result for a in report.atoms}["charge"] == "5"
    assert report.started_at is not None and report.ended_at is not None
    assert report.duration == report.ended_at - report.started_at


def test_report_without_an_event_log_leaves_timings_unknown() -> None:
    engine = engines.load(make_shop(), store={"amount": 5})
    engine.run()
    report = ExecutionReport.from_engine(engine)
    # Every run's time is unknown (earlier runs left no record); the engine timed its own.
    assert report.duration is None and report.last_run_duration is not None
    assert ExecutionReport.from_flow_detail(engine.storage.flow_detail).last_run_duration is None
    assert "(its last run)" in report.to_text().splitlines()[0]
    assert all(a.attempts is None and a.duration is None for a in report.atoms)


class _Manual:
    """A clock the tasks below move: each execute and revert takes as long as it says."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


_TIMED = _Manual()


class TakesTen(task.Task):
    """Executes in 10 s, reverts in 1 s (of ``_TIMED``)."""

    def execute(self) -> str:
        _TIMED.now += 10.0
        return self.name

    def revert(self, *args: Any, **kwargs: Any) -> None:
        _TIMED.now += 1.0


class FailsInFive(task.Task):
    """Fails in 5 s; its revert fails in 0.5 s (of ``_TIMED``) when ``revert_fails`` is set."""

    def __init__(self, name: str, revert_fails: bool = False) -> None:
        super().__init__(name=name)
        self.revert_fails = revert_fails

    def execute(self) -> None:
        _TIMED.now += 5.0
        raise CardDeclined("declined")

    def revert(self, *args: Any, **kwargs: Any) -> None:
        _TIMED.now += 0.5
        if self.revert_fails:
            raise ValueError("no refund")


@pytest.mark.parametrize("revert_fails", [False, True], ids=["reverted", "revert-failed"])
def test_report_from_duration_metadata_does_not_give_a_reverts_time_as_the_executes(
    revert_fails: bool,
) -> None:
    # Without an event log the report reads the time a DurationListener saved, which (as
    # TaskFlow's) is that of whatever ended last: for a reverted atom, its revert. The
    # report gave it as the execute's: "reserve  REVERTED  1.000s" for a 10 s execute.
    from flowkit.listeners.timing import DurationListener

    flow = linear_flow.Flow("f").add(TakesTen("reserve"), FailsInFive("charge", revert_fails))
    engine = engines.load(flow)
    with DurationListener(engine, clock=_TIMED), pytest.raises((CardDeclined, ValueError)):
        engine.run()
    atoms = {a.name: a for a in ExecutionReport.from_engine(engine).atoms}
    assert (atoms["charge"].duration, atoms["charge"].revert_duration) == (None, 0.5)
    assert atoms["charge"].state == ("REVERT_FAILURE" if revert_fails else "REVERTED")
    # Reverted, or left done once the failed revert stopped the flow's.
    reserve = (10.0, None) if revert_fails else (None, 1.0)
    assert (atoms["reserve"].duration, atoms["reserve"].revert_duration) == reserve
    text = ExecutionReport.from_engine(engine).to_text()
    assert "1.000s" not in text and "0.500s" not in text, text


def test_report_from_duration_metadata_gives_an_executes_time_when_it_ended_last() -> None:
    from flowkit.listeners.timing import DurationListener

    engine = engines.load(linear_flow.Flow("f").add(TakesTen("reserve")))
    with DurationListener(engine, clock=_TIMED):
        engine.run()
    (reserve,) = ExecutionReport.from_engine(engine).atoms
    assert (reserve.duration, reserve.revert_duration) == (10.0, None)


def _flow_bar(drawn: str) -> str:
    """The flow's bar as last drawn, escape sequences taken out."""
    import re

    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    return [line for line in re.split(r"[\r\n]", plain) if "flow " in line][-1]


def test_the_progress_bar_of_a_resumed_run_counts_the_atoms_done_before_it() -> None:
    # The flow's bar counted only what this run finished: `flowkit flows resume` of a
    # flow stopped halfway ended on "flow f SUCCESS ... 50%".
    from rich.console import Console

    StopsOnce.armed = True
    backend = backends.fetch({"connection": "memory://"})
    flow = linear_flow.Flow("f").add(Step("a"), Step("b"), StopsOnce("c"), Step("d"))
    engine = engines.load(flow, backend=backend)
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    with contextlib.closing(backend.get_connection()) as conn:
        detail = conn.get_flow_details(engine.storage.flow_uuid)
    resumed = engines.load(flow, flow_detail=detail, backend=backend)
    out = io.StringIO()
    with ProgressListener(resumed, console=Console(file=out, force_terminal=True, width=100)):
        resumed.run()
    bar = _flow_bar(out.getvalue())
    assert "SUCCESS" in bar and "100%" in bar, bar


def test_the_progress_bar_of_an_engine_run_again_after_an_interrupt_is_drawn() -> None:
    # Run again after an interrupt, the engine announces nothing as it starts (the flow
    # never left RUNNING, as in TaskFlow): the listener waited for the flow's RUNNING to
    # start its bar, and drew nothing for the whole run.
    from rich.console import Console

    StopsOnce.armed = True
    engine = engines.load(linear_flow.Flow("f").add(Step("a"), Step("b"), StopsOnce("c"), Step("d")))
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    out = io.StringIO()
    with ProgressListener(engine, console=Console(file=out, force_terminal=True, width=100)):
        engine.run()
    assert "flow f" in out.getvalue(), out.getvalue()
    bar = _flow_bar(out.getvalue())
    assert "SUCCESS" in bar and "100%" in bar, bar


class PeeksAtTheFlowBar(task.Task):
    """Notes the flow's bar (completed, total) as the listener in ``bar`` holds it while this runs."""

    listener: Any = None
    seen: list[tuple[float, float | None]] = []

    def execute(self) -> str:
        (flow_bar, *_) = PeeksAtTheFlowBar.listener._bar.tasks  # what the next refresh draws
        PeeksAtTheFlowBar.seen.append((flow_bar.completed, flow_bar.total))
        return self.name


def three_peeking_steps() -> linear_flow.Flow:
    return linear_flow.Flow("spawned").add(*(PeeksAtTheFlowBar(f"k{n}") for n in range(3)))


class SpawnsThree(task.Task):
    def execute(self) -> Any:
        from flowkit import dynamic

        return dynamic.subflow(three_peeking_steps)


def test_the_flow_bar_counts_the_atoms_a_spawned_sub_flow_adds() -> None:
    # The total was counted once, as the run started: a flow of 3 atoms that spawned 3
    # more showed its bar full (3 of 3) while the spawned ones still had 2 to run.
    from rich.console import Console

    engine = engines.load(linear_flow.Flow("f").add(Step("a"), SpawnsThree("spawner"), Step("z")))
    out = io.StringIO()
    listener = ProgressListener(engine, console=Console(file=out, force_terminal=True, width=100))
    PeeksAtTheFlowBar.listener, PeeksAtTheFlowBar.seen = listener, []
    with listener:
        engine.run()
    assert PeeksAtTheFlowBar.seen == [(2, 6), (3, 6), (4, 6)]


def test_progress_listener_draws_on_a_terminal_and_stays_quiet_otherwise() -> None:
    from rich.console import Console

    flow = unordered_flow.Flow("p").add(Step("one"), Step("two"))
    out = io.StringIO()
    engine = engines.load(flow)
    with ProgressListener(engine, console=Console(file=out, force_terminal=True, width=100)) as listener:
        assert listener.enabled
        engine.run()
    drawn = out.getvalue()
    assert "flow p" in drawn and "one" in drawn and "100%" in drawn

    quiet = io.StringIO()
    engine = engines.load(flow)
    with ProgressListener(engine, console=Console(file=quiet, force_terminal=False)) as listener:
        assert not listener.enabled
        engine.run()
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("engine_kind", ["serial", "parallel"])
def test_event_log_works_on_every_engine(engine_kind: str) -> None:
    flow = unordered_flow.Flow("u").add(*(Step(f"s{i}") for i in range(10)))
    engine, listener = _run(flow, engine=engine_kind)
    assert sum(1 for e in listener.log if e.state == "SUCCESS" and e.kind == "task") == 10


class Declines(task.Task):
    """Always fails, with its own name in the message."""

    def execute(self) -> str:
        raise CardDeclined(f"{self.name} declined")


def test_overlapping_failures_each_revert_their_own_scope_for_the_engines_reason() -> None:
    # Both branches fail in the same step of the serial engine: 'right_fail' fails
    # after 'left_fail', before any revert starts. The engine tells each revert which
    # failure and which retry decision caused it; the newest failure would be wrong
    # for the left branch.
    flow = unordered_flow.Flow("both").add(
        linear_flow.Flow("left", retry=retry.AlwaysRevert("r_left")).add(Step("l1"), Declines("left_fail")),
        linear_flow.Flow("right", retry=retry.AlwaysRevert("r_right")).add(
            Step("r1"), Declines("right_fail")
        ),
    )
    engine = engines.load(flow)
    listener = EventLogListener(engine, clock=Ticking())
    with listener, pytest.raises(exceptions.WrappedFailure):
        engine.run()
    log = listener.log
    failed_at = {e.name: e.seq for e in log if e.state == "FAILURE"}
    assert (
        failed_at["left_fail"] < failed_at["right_fail"] < min(e.seq for e in log if e.state == "REVERTING")
    )
    for atom, failed, retry_name in (("l1", "left_fail", "r_left"), ("r1", "right_fail", "r_right")):
        (reverting,) = [e for e in log.of(atom) if e.state == "REVERTING"]
        cause = reverting.cause
        assert (cause.atoms, cause.retry, cause.decision) == ((failed,), retry_name, "REVERT")
        assert cause.event == failed_at[failed]
        assert f"'{failed}' failed with CardDeclined: {failed} declined" in cause.text
        assert [(e.name, e.state) for e in log.why(atom)][:3] == [
            (atom, "REVERTED"),
            (atom, "REVERTING"),
            (failed, "FAILURE"),
        ]


def test_the_engine_tells_which_failure_and_decision_made_an_atom_revert() -> None:
    flow = linear_flow.Flow("f", retry=retry.Times(2, "r1", revert_all=True)).add(Step("a"), Declines("pay"))
    engine = engines.load(flow)
    assert engine.revert_cause("a") is None
    with pytest.raises(CardDeclined):
        engine.run()
    cause = engine.revert_cause("a")
    assert cause is not None
    assert (cause.failed, cause.retry, cause.decision) == ("pay", "r1", "REVERT_ALL")
    assert cause.failure is not None and cause.failure.check(CardDeclined)
    assert engine.revert_cause("r1") is not None


def test_the_event_tree_puts_each_event_under_its_cause_and_indents_only_branches() -> None:
    _, listener = _run(make_shop(), store={"amount": 500})
    log = listener.log
    rows = log.tree()
    assert sorted(row.event.seq for row in rows) == [e.seq for e in log]  # each event once
    depth = {(row.event.name, row.event.state, row.event.attempt): row.depth for row in rows}
    # The forward chain is one level: each event is its cause's only consequence.
    assert depth[("reserve", "RUNNING", 1)] == depth[("charge", "RUNNING", 1)] == 0
    # A failure branches: the reverts and the retry it caused sit one level under it.
    assert depth[("charge", "FAILURE", 1)] == 0
    assert depth[("charge", "REVERTING", 1)] == depth[("r1", "RETRYING", 1)] == 1
    assert depth[("reserve", "REVERTING", 1)] == depth[("shop", "REVERTED", 0)] == 1
    # Every child comes after the event that caused it.
    order = [row.event.seq for row in rows]
    for row in rows:
        if row.depth and row.event.cause.event is not None:
            assert order.index(row.event.cause.event) < order.index(row.event.seq)


@pytest.mark.parametrize("engine_kind", ["serial", "parallel"])
def test_why_an_atom_was_skipped_names_the_decider_link_and_chains_to_its_source(engine_kind: str) -> None:
    # Every IGNORE said "a decider on a link into it returned False", also for the
    # atoms a depth ALL skipped behind the target (no decider sits on a link into
    # them), and linked to nothing: `why` could not reach the atom whose result
    # the decider judged.
    from flowkit.deciders import Depth
    from flowkit.patterns import graph_flow

    a, b_, c_, n_ = Step("a"), Step("b"), Step("c"), Step("n")
    g = graph_flow.Flow("g").add(a, b_, c_, n_)
    g.link(a, b_, decider=lambda history: False)
    g.link(b_, c_)
    g.link(a, n_, decider=lambda history: False, decider_depth=Depth.ATOM)
    flow = linear_flow.Flow("f").add(g, linear_flow.Flow("after").add(Step("x")))
    engine, listener = _run(flow, engine=engine_kind)
    log = listener.log
    by_name = {e.name: e for e in log.events}
    b, c, x, n = by_name["b"], by_name["c"], by_name["x"], by_name["n"]
    assert b.cause.kind == CauseKind.DECIDER
    assert b.cause.text == "the decider on the link 'a' -> 'b' returned False"
    assert b.cause.atoms == ("a", "b")
    assert b.cause.event == by_name["a"].seq and by_name["a"].state == "SUCCESS"
    assert n.cause.text == "the decider on the link 'a' -> 'n' returned False"
    for skipped in (c, x):
        assert skipped.cause.kind == CauseKind.DECIDER
        assert skipped.cause.text == (
            "the decider on the link 'a' -> 'b' returned False; its depth ALL skips this atom too"
        )
        assert skipped.cause.event == b.seq
    assert [e.name for e in log.why("x")] == ["x", "b", "a", "a"]


class MeetsThenFails(task.Task):
    """Fails once every task of its group has started (two failures at once)."""

    group: Any = None

    def execute(self) -> None:
        MeetsThenFails.group.wait(30)
        raise CardDeclined(f"{self.name} declined")


def test_a_flow_ended_by_two_failures_at_once_names_both() -> None:
    # The flow's end named only the newest failure: `why` of a run the engine
    # ended with a WrappedFailure of two named one of them.
    import threading

    MeetsThenFails.group = threading.Barrier(2)
    flow = unordered_flow.Flow("f").add(MeetsThenFails("b"), MeetsThenFails("c"))
    engine = engines.load(flow, engine="parallel", max_workers=2)
    listener = EventLogListener(engine, clock=Ticking())
    with listener, pytest.raises(exceptions.WrappedFailure):
        engine.run()
    log = listener.log
    failed = {e.name: e.seq for e in log if e.state == "FAILURE"}
    end = [e for e in log if e.kind == "flow"][-1]
    assert end.state == "REVERTED"
    assert sorted(end.cause.atoms) == ["b", "c"]
    assert end.cause.event == max(failed.values())
    first, second = sorted(failed, key=failed.__getitem__)
    assert end.cause.text == (
        f"'{first}' failed with CardDeclined: {first} declined and '{second}' failed with "
        f"CardDeclined: {second} declined; the flow ended REVERTED"
    )


class UndoFails(task.Task):
    def execute(self) -> str:
        return "done"

    def revert(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("cannot undo")


def test_why_a_revert_failed_goes_on_to_the_failure_that_made_it_revert() -> None:
    # A raise was linked to nothing: `why` of a REVERT_FAILURE atom stopped at "revert
    # raised RuntimeError", never saying what it was being reverted for.
    engine = engines.load(linear_flow.Flow("f").add(UndoFails("undoer"), Flaky("pay", failures=1)))
    listener = EventLogListener(engine, clock=Ticking())
    with listener, contextlib.suppress(RuntimeError, CardDeclined):
        engine.run()
    chain = [(e.name, e.state) for e in listener.log.why("undoer")]
    assert chain == [("undoer", "REVERT_FAILURE"), ("undoer", "REVERTING"), ("pay", "FAILURE")]
    # In the tree the failed revert sits under the revert it ended, under the failure.
    depth = {(row.event.name, row.event.state): row.depth for row in listener.log.tree()}
    assert depth[("pay", "FAILURE")] < depth[("undoer", "REVERTING")] <= depth[("undoer", "REVERT_FAILURE")]


def test_the_text_report_says_a_revert_was_an_earlier_attempts_when_the_atom_ran_again() -> None:
    # "flaky SUCCESS attempts=3 -> 'ok'  reverted": the revert was of its failed attempts,
    # not of the result shown, but the line read as if its work had been undone.
    flow = linear_flow.Flow("f", retry=retry.Times(5, "r")).add(Step("a"), Flaky("flaky", failures=2))
    engine, _ = _run(flow)
    lines = {line.split()[0]: line for line in ExecutionReport.from_engine(engine).to_text().splitlines()[1:]}
    assert lines["flaky"].endswith("-> 'ok'  (earlier attempts: 2 failed and reverted)"), lines
    assert lines["a"].endswith("-> 'a'  (earlier attempts: 2 reverted)"), lines
    assert not lines["flaky"].endswith(" reverted")
    # An atom whose last word is its revert still says so plainly.
    engine, _ = _run(make_shop(), store={"amount": 500})
    text = ExecutionReport.from_engine(engine).to_text()
    assert next(line for line in text.splitlines() if line.split()[0] == "reserve").endswith("reverted")


class OpensOnce(task.Task):
    """Says True to its first call only: the link it feeds lets the next atom run once."""

    default_provides = "open"

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.calls = 0

    def execute(self) -> bool:
        self.calls += 1
        return self.calls == 1


def _opened(history: dict[str, Any]) -> bool:
    return bool(next(iter(history.values())))


def test_an_atom_skipped_after_an_earlier_attempt_failed_says_that_attempt_was_earlier() -> None:
    # A retry's first attempt ran "pay", which failed and was reverted; the second attempt's
    # decider skipped it. Its line said "IGNORE  1.000s  failed: ... declined" and nothing
    # else: the failure read as this run's, though the flow succeeded. Its earlier
    # attempt (the same attempt number: a skipped atom starts none) was dropped as if
    # it were the current one.
    flow = graph_flow.Flow("g", retry=retry.Times(3, "r"))
    gate, pay = OpensOnce("gate"), Flaky("pay", failures=1)
    flow.add(gate, pay)
    flow.link(gate, pay, decider=_opened)
    engine, _ = _run(flow)
    assert engine.storage.get_atom_state("pay") == "IGNORE"
    report = ExecutionReport.from_engine(engine)
    (pay_report,) = [atom for atom in report.atoms if atom.name == "pay"]
    assert pay_report.failure is None
    assert pay_report.earlier_attempts == "1 failed and reverted"
    assert pay_report.took() == "1.000s in earlier attempts"
    (line,) = [line for line in report.to_text().splitlines() if line.split()[0] == "pay"]
    assert "failed:" not in line, line
    assert line.endswith("1.000s in earlier attempts  (earlier attempts: 1 failed and reverted)"), line
    assert report.failures == []


def test_the_error_line_of_a_run_ended_by_two_failures_names_both() -> None:
    # `flowkit run` said "atom 'b' failed with ..." of a run two parallel failures ended.
    import threading

    from flowkit.cli.run import _failure_line

    MeetsThenFails.group = threading.Barrier(2)
    flow = unordered_flow.Flow("f").add(MeetsThenFails("b"), MeetsThenFails("c"))
    engine = engines.load(flow, engine="parallel", max_workers=2)
    with EventLogListener(engine, clock=Ticking()), pytest.raises(exceptions.WrappedFailure):
        engine.run()
    line = _failure_line(ExecutionReport.from_engine(engine))
    assert line == (
        "flow 'f' ended REVERTED; atoms 'b' failed with tests.cli._flows.CardDeclined: b declined and "
        "'c' failed with tests.cli._flows.CardDeclined: c declined; reverted 2 atom(s)"
    ), line


class Counts(task.Task):
    default_provides = "count"

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.calls = 0

    def execute(self) -> int:
        self.calls += 1
        return self.calls


def test_why_an_atom_of_a_loop_runs_again_is_its_loops_verdict_not_what_ran_before_the_loop() -> None:
    # The first atom of a loop's body, in its 2nd and 3rd iterations, was said to run
    # because 'start' (before the loop) completed, and the `until` verdicts that made the
    # loop go on were recorded as a RUNNING with no end (their time lost in the report).
    from flowkit.patterns import loop_flow

    body = (Counts("count"), Step("body"))
    loop = loop_flow.Flow("loop", *body, until=lambda count: count >= 3, max_iterations=5)
    engine, listener = _run(linear_flow.Flow("f").add(Step("start"), loop, Step("after")))
    log = listener.log
    third = [e for e in log.of("count") if e.state == "RUNNING"][2]
    assert third.cause.kind == CauseKind.ENGINE and third.cause.text == "its loop runs again: iteration 3"
    verdict = log.get(third.cause.event or 0)
    assert verdict is not None and (verdict.name, verdict.state) == ("loop^until", "PENDING")
    assert verdict.cause.text == "it found its loop not done: iteration 3 follows"
    chain = [(e.name, e.state, e.attempt) for e in log.why("count")]
    assert chain[:4] == [
        ("count", "SUCCESS", 3),
        ("count", "RUNNING", 3),
        ("loop^until", "PENDING", 2),
        ("loop^until", "RUNNING", 2),
    ]
    assert ("start", "SUCCESS", 1) not in chain[:4]
    until = log.of("loop^until")
    ends = [e for e in until if e.state in ("PENDING", "SUCCESS")]
    starts = [e for e in until if e.state == "RUNNING"]
    report = {a.name: a for a in ExecutionReport.from_engine(engine).atoms}
    assert report["loop^until"].attempts == 3
    assert report["loop^until"].duration == sum(e.at - s.at for s, e in zip(starts, ends, strict=True))


def test_a_suspended_run_ended_for_the_flow_list_as_for_the_report() -> None:
    # The list (flows list --json, the monitor's list) said ended_at null of a run that
    # was suspended, while the flow's report gave when it ended.
    from flowkit.persistence import models
    from flowkit.report import flow_summary

    engine = engines.load(linear_flow.Flow("f").add(Step("a"), Step("b")))

    def suspend_after_a(state: str, details: dict[str, Any]) -> None:
        if details.get("task_name") == "a" and state == "SUCCESS":
            engine.suspend()

    engine.atom_notifier.register(engine.atom_notifier.ANY, suspend_after_a)
    with EventLogListener(engine, clock=Ticking()):
        engine.run()
    detail = engine.storage.flow_detail
    assert detail.state == "SUSPENDED"
    report = ExecutionReport.from_flow_detail(detail)
    listed = flow_summary(models.LogBook("book"), detail)
    assert report.ended_at is not None
    assert listed["ended_at"] == report.ended_at


def test_an_atom_left_failed_does_not_count_its_own_failure_among_its_earlier_attempts() -> None:
    # never_resolve leaves the failed atom FAILURE: its one attempt is the failure shown.
    flow = linear_flow.Flow("f", retry=retry.Times(2, "r")).add(Flaky("flaky", failures=9))
    engine = engines.load(flow, never_resolve=True)
    with EventLogListener(engine, clock=Ticking()), contextlib.suppress(CardDeclined):
        engine.run()
    line = next(x for x in ExecutionReport.from_engine(engine).to_text().splitlines() if "flaky" in x)
    assert "FAILURE" in line and "failed: " in line
    assert "earlier attempts" not in line, line


def _shop_named(name: str) -> linear_flow.Flow:
    """The shop flow (``reserve``, then ``charge`` under ``r1``) under another flow name."""
    flow = linear_flow.Flow(name)
    for atom in make_shop():
        flow.add(atom)
    return flow


def test_why_an_atom_named_as_its_flow_explains_the_atom_not_the_flows_end(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # `flows why reserve reserve` of a flow 'reserve' holding an atom 'reserve' printed
    # the flow's end ("the flow ended REVERTED"), not why the atom was reverted: the
    # log looked the name up among the flow's events and the atoms' alike.
    from flowkit.cli import main

    connection = f"sqlite:///{tmp_path}/flows.db"
    with backends.backend({"connection": connection}) as backend:
        engine = engines.load(_shop_named("reserve"), store={"amount": 500}, backend=backend)
        with EventLogListener(engine), contextlib.suppress(CardDeclined):
            engine.run()
    capsys.readouterr()
    assert main(["flows", "why", "reserve", "reserve", "--connection", connection]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "reserve is REVERTED:"
    assert lines[1] == "  reserve REVERTED (attempt 1, run 1): revert returned", lines
    assert lines[2].startswith("    <- reserve REVERTING (attempt 1, run 1): 'charge' failed with Card")
    assert main(["flows", "why", "reserve", "--connection", connection, "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)["chain"]
    assert [(e["kind"], e["name"], e["state"]) for e in chain[:2]] == [
        ("flow", "reserve", "REVERTED"),
        ("task", "charge", "FAILURE"),
    ]


def test_the_report_of_an_atom_named_as_its_flow_counts_only_the_atoms_attempts() -> None:
    # The flow's own REVERTED event was counted as one of the atom's earlier attempts:
    # "top  SUCCESS  -> 'top'  (earlier attempts: 1 reverted)" of an atom never reverted.
    inner = linear_flow.Flow("inner", retry=retry.Times(2, "r_inner")).add(Flaky("flaky", failures=9))
    outer = linear_flow.Flow("outer", retry=retry.Times(2, "r_outer")).add(inner)
    engine, _ = _run(linear_flow.Flow("top").add(Step("top"), outer))
    report = ExecutionReport.from_engine(engine)
    assert report.state == "REVERTED"
    line = next(x for x in report.to_text().splitlines() if x.split()[0] == "top")
    assert line.split()[1] == "SUCCESS" and "earlier attempts" not in line, line


class _CountedName(str):
    """An atom name that counts how often it is compared for equality."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        type(self).compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_the_text_report_looks_each_atoms_events_up_without_reading_the_whole_log() -> None:
    # The text report (`flows show`) read the whole event log once per atom: 10,000 atoms
    # took 7 s (most of it in EventLog.of), and `flows show --events` as long. Each
    # atom's events are now looked up by name; counted here in name comparisons, since a
    # test does not time.
    import dataclasses

    size = 400
    engine, listener = _run(linear_flow.Flow("f").add(*(Step(f"s{i}") for i in range(size))))
    log = EventLog(tuple(dataclasses.replace(e, name=_CountedName(e.name)) for e in listener.log))
    report = dataclasses.replace(ExecutionReport.from_engine(engine), events=log)
    _CountedName.compared = 0
    assert len(report.to_text().splitlines()) == size + 1
    assert _CountedName.compared <= 4 * size, _CountedName.compared


def test_the_error_line_counts_as_reverted_only_the_atoms_left_reverted() -> None:
    # An inner retry that gives up reverts its own scope only (as in TaskFlow): 'start' and
    # the outer retry's 'prep' keep their work. The error line said "reverted 4 atom(s)"
    # (it counted 'prep', reverted by an earlier attempt and run again), and did not say
    # that work was left done.
    from flowkit.cli.run import _failure_line

    inner = linear_flow.Flow("inner", retry=retry.Times(2, "r_inner"))
    inner.add(Step("make"), Flaky("use", failures=9))
    outer = linear_flow.Flow("outer", retry=retry.Times(2, "r_outer")).add(Step("prep"), inner)
    engine, _ = _run(linear_flow.Flow("top").add(Step("start"), outer))
    report = ExecutionReport.from_engine(engine)
    assert report.state == "REVERTED"
    assert report.totals["REVERTED"] == 3 and report.totals["SUCCESS"] == 3
    line = _failure_line(report)
    assert line.endswith("; reverted 3 atom(s), 3 left in SUCCESS"), line


def test_an_unknown_atom_lists_a_few_names_the_nearest_first_not_every_atom(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # `flows why big s99999` of a 10,000-atom flow printed an error line of 69 kB: every
    # atom's name, unquoted (a name holding ", " read as two). The names are now listed as
    # the flows are when none matches: quoted, a few, the ones nearest the name given first.
    from flowkit.cli import main

    connection = f"sqlite:///{tmp_path}/flows.db"
    with backends.backend({"connection": connection}) as backend:
        engine = engines.load(
            linear_flow.Flow("f").add(*(Step(f"step-{i}") for i in range(50))), backend=backend
        )
        engine.run()
    capsys.readouterr()
    assert main(["flows", "why", "f", "step-4O", "--connection", connection]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and len(said) < 300, said
    assert "has no atom 'step-4O' (its atoms: 'step-4', " in said, said
    assert "'step-40'" in said and "and 45 more;" in said, said


def test_show_events_of_a_flow_without_an_event_log_says_it_has_none(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # `flows show --events` of a flow run without the listener printed the report and
    # nothing after it, as if the run had had no transitions; `flows why` says why.
    from flowkit.cli import main

    connection = f"sqlite:///{tmp_path}/flows.db"
    with backends.backend({"connection": connection}) as backend:
        engines.load(linear_flow.Flow("f").add(Step("a")), backend=backend).run()
    capsys.readouterr()
    assert main(["flows", "show", "f", "--events", "--connection", connection]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == (
        "  no event log: run it with 'flowkit run' or attach flowkit.listeners.events.EventLogListener"
    ), last


def test_why_says_when_the_chain_goes_on_past_what_it_prints(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # The chain is cut after 12 events: `flows why` of the 20th step of a line ended on
    # "<- step-14 RUNNING: 'step-13' completed", as if nothing came before. It now says
    # that the chain goes on, and where to read the rest.
    from flowkit.cli import main

    connection = f"sqlite:///{tmp_path}/flows.db"
    with backends.backend({"connection": connection}) as backend:
        engine = engines.load(
            linear_flow.Flow("f").add(*(Step(f"step-{i}") for i in range(20))), backend=backend
        )
        with EventLogListener(engine):
            engine.run()
    capsys.readouterr()
    assert main(["flows", "why", "f", "step-19", "--connection", connection]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 14, lines
    assert "<- step-14 RUNNING" in lines[-2], lines
    assert (
        lines[-1] == "  ... earlier causes from #29 back: 'flowkit flows show f --events' lists every event"
    )
    # A chain that ends by itself says nothing more.
    assert main(["flows", "why", "f", "step-2", "--connection", connection]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].endswith("step-0 RUNNING (attempt 1, run 1): it is first in its flow"), lines


def test_why_a_flow_ended_failure_names_the_revert_that_failed() -> None:
    # A flow ends FAILURE, not REVERTED, because a revert failed; its last event said
    # "'charge' failed with CardDeclined ...; the flow ended FAILURE" and `flows why`
    # stopped at charge's failure, which alone would have ended it REVERTED.
    from tests.cli._flows import make_revert_fails

    engine = engines.load(make_revert_fails(), store={"amount": 500})
    listener = EventLogListener(engine, clock=Ticking())
    with listener, pytest.raises(RuntimeError):
        engine.run()
    log = listener.log
    chain = log.why("revert-fails", flow=True)
    assert [(e.name, e.state) for e in chain] == [
        ("revert-fails", "FAILURE"),
        ("b", "REVERT_FAILURE"),
        ("b", "REVERTING"),
        ("charge", "FAILURE"),
    ], [e.describe() for e in chain]
    assert chain[0].cause.text == (
        "reverting 'b' failed with RuntimeError: cannot undo b, after 'charge' failed with "
        "CardDeclined: card declined for 500; the flow ended FAILURE"
    )
    assert chain[0].cause.atoms == ("b", "charge") and chain[0].cause.failure == "RuntimeError"


def test_a_decider_link_from_or_into_a_nested_flow_is_named_by_the_flows_name() -> None:
    # The cause named the compiler's barrier nodes, which no user wrote: "the decider on
    # the link 'a' -> 'sub^start' returned False" of a link into the flow 'sub', and
    # 'sub^end' for a link out of it.
    from flowkit.patterns import graph_flow

    into = graph_flow.Flow("into")
    sub = linear_flow.Flow("sub").add(Step("s1"))
    a = Step("a")
    into.add(a, sub)
    into.link(a, sub, decider=lambda history: False)
    out = graph_flow.Flow("out")
    other = linear_flow.Flow("other").add(Step("o1"))
    z = Step("z")
    out.add(other, z)
    out.link(other, z, decider=lambda history: False)
    by_name = {e.name: e for flow in (into, out) for e in _run(flow)[1].log.events}
    assert by_name["s1"].cause.text == (
        "the decider on the link 'a' -> 'sub' returned False; its depth ALL skips this atom too"
    )
    assert by_name["z"].cause.text == "the decider on the link 'other' -> 'z' returned False"
    assert by_name["z"].cause.atoms == ("other", "z")
