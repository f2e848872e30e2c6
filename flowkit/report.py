"""The execution report: what happened to a flow run, atom by atom.

Built from a flow detail, so it works as well for a run persisted by another
process (``flowkit flows show``) as for the engine in hand
(:meth:`ExecutionReport.from_engine`)::

    engine.run()
    report = ExecutionReport.from_engine(engine)
    print(report.to_text())
    json.dumps(report.to_dict())

Attempts and durations come from the causal event log when an
:class:`~flowkit.listeners.events.EventLogListener` recorded one; otherwise
from the ``duration`` metadata a
:class:`~flowkit.listeners.timing.DurationListener` leaves; otherwise they are
unknown (``None``), never guessed.
"""

from __future__ import annotations

import reprlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from flowkit import exceptions as exc
from flowkit import states as st
from flowkit._utils.text import cells, log_safe, pad
from flowkit.listeners.events import META_KEY, CauseKind, Event, EventLog
from flowkit.persistence._json import MODEL_KEY, model_dump, model_name
from flowkit.types.failure import Failure

__all__ = ["AtomReport", "ExecutionReport", "FailureReport", "flow_summary"]

_SUMMARY = reprlib.Repr()
_SUMMARY.maxstring = 60
_SUMMARY.maxother = 60
_SUMMARY.maxlist = _SUMMARY.maxdict = _SUMMARY.maxtuple = 5


def summarize(value: Any, model: str | None = None) -> str:
    """A short one-line ``repr`` of a result (long values are cut with ``...``).

    A pydantic model reads as its class name with its fields,
    ``Price(amount=2.0, currency='EUR')``, whether it is in hand (the engine's
    report) or was stored: a model is stored as its JSON object, and ``model``
    is the class name its atom detail recorded
    (:data:`~flowkit.persistence._json.MODEL_KEY`), so a report made from the
    store alone (``flowkit flows show``, the monitor), with no flow code to make
    the model again, names it as well. Both are shown from the stored form
    (:func:`~flowkit.persistence._json.model_dump`), so they read the same.

    Args:
        value: the result.
        model: the model class name its stored JSON object was, if any.
    """
    name = model_name(value)
    if name is not None:
        model, value = name, model_dump(value)
    if model is None:
        return " ".join(_SUMMARY.repr(value).split())
    # A root model's dump is its root, which pydantic shows as the field ``root``.
    fields: dict[Any, Any] = value if type(value) is dict else {"root": value}
    shown = [f"{key}={_SUMMARY.repr(field)}" for key, field in islice(fields.items(), _SUMMARY.maxdict)]
    if len(fields) > _SUMMARY.maxdict:
        shown.append("...")
    return " ".join(f"{model}({', '.join(shown)})".split())


@dataclass(frozen=True, slots=True)
class FailureReport:
    """A failure as a report shows it.

    Attributes:
        type: the exception's type name (qualified as recorded).
        message: the exception's message.
        traceback: the recorded traceback text (may be empty).
    """

    type: str
    message: str
    traceback: str

    @classmethod
    def from_failure(cls, failure: Failure) -> FailureReport:
        names = failure.exception_type_names
        kind = names[0] if names else "Exception"
        kind = kind.removeprefix("builtins.")
        return cls(kind, failure.exception_str, failure.traceback_str or "")

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

    def one_line(self) -> str:
        """``str()`` on one line: messages may span lines (a flowkit error's causes, pydantic's)."""
        return " ".join(str(self).split())


@dataclass(frozen=True, slots=True)
class AtomReport:
    """One atom of the run.

    Attributes:
        name: the atom's name.
        kind: ``task`` or ``retry``.
        uuid: its atom detail's uuid.
        state: its last state (``PENDING`` if it never ran).
        intention: what the engine meant to do with it next.
        attempts: how many times ``execute`` started (None: unknown).
        duration: seconds spent in ``execute``, all attempts (None: unknown).
        revert_duration: seconds spent in ``revert`` (None: unknown or never).
        result: a short summary of its result (None when it has none).
        failure: why ``execute`` failed, if its last attempt did.
        reverted: ``reverted`` or ``revert failed`` when a revert ran, else None.
        revert_failure: why ``revert`` failed, if it did.
        progress: the last progress it reported (0.0 to 1.0).
        cached: True when its latest result came from the result cache rather
            than from running it (None: unknown, no event log).
        earlier_attempts: what its earlier attempts that did not succeed came
            to, from the event log (``2 failed and reverted, 1 interrupted``;
            ``""``: none, or no event log).
        waited_for_slot: the concurrency key whose slot its latest execute
            waited for before it started (None: it did not wait, or no event log).
        slot_held_by: the atom whose call gave that slot back (None: unknown).
    """

    name: str
    kind: str
    uuid: str
    state: str
    intention: str
    attempts: int | None
    duration: float | None
    revert_duration: float | None
    result: str | None
    failure: FailureReport | None
    reverted: str | None
    revert_failure: FailureReport | None
    progress: float
    cached: bool | None = None
    earlier_attempts: str = ""
    waited_for_slot: str | None = None
    slot_held_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "uuid": self.uuid,
            "state": self.state,
            "intention": self.intention,
            "attempts": self.attempts,
            "duration": self.duration,
            "revert_duration": self.revert_duration,
            "result": self.result,
            "failure": None if self.failure is None else self.failure.to_dict(),
            "reverted": self.reverted,
            "revert_failure": None if self.revert_failure is None else self.revert_failure.to_dict(),
            "progress": self.progress,
            "cached": self.cached,
            "earlier_attempts": self.earlier_attempts,
            "waited_for_slot": self.waited_for_slot,
            "slot_held_by": self.slot_held_by,
        }

    def took(self) -> str:
        """Its ``duration`` as the text report and the monitor's table say it (``""``: unknown).

        A RUNNING or PENDING atom is in (or before) an attempt that has not
        ended, and an IGNORE one was skipped: its figure is its earlier
        attempts' (a loop's earlier iterations, a retry's earlier tries), and
        says so, or it read as the current attempt's.
        """
        if self.duration is None:
            return ""
        took = f"{self.duration:.3f}s"
        return f"{took} in earlier attempts" if self.state in _NO_OUTCOME else took


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """What happened to one flow run.

    Attributes:
        flow_name: the flow's name.
        flow_uuid: its flow detail's uuid.
        state: the flow's state.
        started_at: when its first run started (epoch seconds; None: unknown).
        ended_at: when its latest run ended (None: unknown or still running).
        duration: seconds the engine was active over *every* run of the flow
            (a run and its resumes), from the event log: what the flow cost so
            far, as the atoms' durations and attempts also count every run.
            None without an event log, whichever constructor built the report.
        runs: how many runs the event log saw (0 without an event log).
        atoms: every atom, in the flow's order.
        events: the causal event log (empty if none was recorded).
        last_run_duration: seconds the latest run alone was active (from the
            event log; built from an engine without one, the engine's own
            figure for its latest ``run()``, which the flow's earlier runs, if
            any, are not in). None: unknown.
    """

    flow_name: str
    flow_uuid: str
    state: str
    started_at: float | None
    ended_at: float | None
    duration: float | None
    runs: int
    atoms: tuple[AtomReport, ...]
    events: EventLog
    last_run_duration: float | None = None

    # -- building -----------------------------------------------------------------

    @classmethod
    def from_flow_detail(cls, flow_detail: Any, elapsed: float | None = None) -> ExecutionReport:
        """Build the report of ``flow_detail`` (a :class:`~flowkit.persistence.models.FlowDetail`).

        Args:
            flow_detail: the run's flow detail, fresh from a backend or an engine.
            elapsed: seconds the latest run was active, when the caller timed
                it; used only without an event log (as ``last_run_duration``).
        """
        log = EventLog.from_flow_detail(flow_detail)
        flow_events = log.of(flow_detail.name, flow=True)
        atoms = tuple(_atom_report(detail, log.of(detail.name, flow=False)) for detail in flow_detail)
        runs = max((e.run for e in log), default=0)
        started = next((e.at for e in flow_events if e.state == st.RUNNING), None)
        last = flow_events[-1] if flow_events else None
        ended = last.at if last is not None and _ends_run(last.state, last.old_state) else None
        spans = _run_times(log)
        return cls(
            flow_name=flow_detail.name,
            flow_uuid=flow_detail.uuid,
            state=flow_detail.state or st.PENDING,
            started_at=started,
            ended_at=ended,
            duration=sum(spans) if spans else None,
            runs=runs,
            atoms=atoms,
            events=log,
            last_run_duration=spans[-1] if spans else elapsed,
        )

    @classmethod
    def from_engine(cls, engine: Any) -> ExecutionReport:
        """Build the report of ``engine``'s flow: :meth:`from_flow_detail` of its flow detail.

        The same report, durations included, as one built later from the
        stored flow detail: ``duration`` counts every run the event log saw,
        also those of earlier engines (a resume), which the engine's own
        ``statistics["active_for"]`` (its latest ``run()`` only) does not.
        That figure fills ``last_run_duration`` when no event log was recorded.
        """
        elapsed = (getattr(engine, "statistics", None) or {}).get("active_for")
        return cls.from_flow_detail(engine.storage.flow_detail, elapsed=elapsed)

    # -- reading --------------------------------------------------------------------

    @property
    def totals(self) -> dict[str, int]:
        """Atom count by state (only states that occur), plus ``total``."""
        counts = Counter(a.state for a in self.atoms)
        return {**dict(sorted(counts.items())), "total": len(self.atoms)}

    @property
    def failures(self) -> list[AtomReport]:
        """Atoms whose execute or revert failed."""
        return [a for a in self.atoms if a.failure is not None or a.revert_failure is not None]

    def to_dict(self, events: bool = True) -> dict[str, Any]:
        """A JSON-safe dict (the keys are documented in ``doc/reports.rst``)."""
        out: dict[str, Any] = {
            "uuid": self.flow_uuid,
            "name": self.flow_name,
            "state": self.state,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration": self.duration,
            "last_run_duration": self.last_run_duration,
            "runs": self.runs,
            "totals": self.totals,
            "atoms": [a.to_dict() for a in self.atoms],
        }
        if events:
            out["events"] = self.events.to_list()
        return out

    def took(self) -> str:
        """How long the flow took, as its summary line says it (``""`` when unknown).

        A space, then ``in 1.500s``, and ``over 2 runs (the last 0.500s)``
        after it when it was resumed: the text report and the monitor's page both say it from
        here, so a figure over every run is never shown as if it were one.
        """
        if self.duration is not None:
            took = f" in {self.duration:.3f}s"
            if self.runs > 1 and self.last_run_duration is not None:
                took += f" over {self.runs} runs (the last {self.last_run_duration:.3f}s)"
            return took
        if self.last_run_duration is not None:
            return f" in {self.last_run_duration:.3f}s (its last run)"
        return ""

    def to_text(self, verbose: bool = False) -> str:
        """A readable report: one line per atom, then the failures.

        Args:
            verbose: add failures' tracebacks.
        """
        took = self.took()
        counts = ", ".join(f"{n} {s}" for s, n in self.totals.items() if s != "total")
        lines = [f"flow '{self.flow_name}' ({self.flow_uuid}): {self.state}{took}; {counts}"]
        width = max((cells(a.name) for a in self.atoms), default=4)
        for atom in self.atoms:
            parts = [f"  {pad(atom.name, width)}  {atom.state:<14}"]
            if atom.attempts is not None and atom.attempts != 1:
                parts.append(f"attempts={atom.attempts}")
            if atom.state in (st.RUNNING, st.REVERTING):
                # A run that stopped (its process killed) looks like one under way: when
                # it began tells a stuck atom from a busy one.
                began = [e.at for e in self.events.of(atom.name, flow=False) if e.state == atom.state]
                if began:
                    parts.append(f"since {_utc(began[-1])}")
            took = atom.took()
            if took:
                parts.append(took)
            if atom.failure is not None:
                parts.append(f"failed: {atom.failure.one_line()}")
            elif atom.result is not None and atom.state == st.SUCCESS:
                parts.append(f"-> {atom.result}")
            if atom.cached:
                parts.append("(from the cache)")
            if atom.waited_for_slot is not None:
                held = "" if atom.slot_held_by is None else f" held by '{atom.slot_held_by}'"
                parts.append(f"(waited for a '{atom.waited_for_slot}' slot{held})")
            if atom.state not in _UNDOING:
                # Run again since (a retry, a flow run anew): "reverted" next to SUCCESS read as
                # if its work had been undone. Say what its earlier attempts came to instead.
                if atom.earlier_attempts:
                    parts.append(f"(earlier attempts: {atom.earlier_attempts})")
            elif atom.reverted is not None and atom.revert_failure is None:
                parts.append(atom.reverted)  # "revert failed" is said with its failure below
            if atom.revert_failure is not None:
                parts.append(f"revert failed: {atom.revert_failure.one_line()}")
            lines.append("  ".join(parts).rstrip())
        for atom in self.failures if verbose else ():
            for what, failure in (("execute", atom.failure), ("revert", atom.revert_failure)):
                if failure is not None and failure.traceback:
                    lines.append(f"{atom.name} {what} traceback:")
                    lines.extend(f"  {line}" for line in failure.traceback.rstrip().splitlines())
        # Names, results and failures are the flow's, maybe written by another process
        # (flowkit flows show): each line escaped, none forges a line or repaints a terminal.
        return "\n".join(map(log_safe, lines))

    def __str__(self) -> str:
        return self.to_text()


#: States in which an atom's revert is what the report says of it (not an earlier attempt's).
_UNDOING = frozenset({st.REVERTING, st.REVERTED, st.REVERT_FAILURE})
#: What an earlier attempt may have come to, in the order :func:`_earlier_attempts` says them.
_OUTCOMES = (
    "failed and reverted",
    "failed",
    "reverted",
    "failed and failed to revert",
    "failed to revert",
    "interrupted",
)


def _outcome(states: Collection[str]) -> str | None:
    """What one attempt that reached ``states`` came to (None: it succeeded and stood).

    An attempt that only ever was RUNNING was cut short: its run stopped (a
    crash) and the next one ran the atom again in doubt, as a new attempt.
    """
    failed = st.FAILURE in states
    if st.REVERT_FAILURE in states:
        return "failed and failed to revert" if failed else "failed to revert"
    if st.REVERTED in states:
        return "failed and reverted" if failed else "reverted"
    if failed:
        return "failed"
    if set(states) == {st.RUNNING}:
        return "interrupted"
    return None


def _earlier_attempts(events: list[Event], state: str) -> str:
    """``2 failed and reverted, 1 interrupted``: what the atom's earlier attempts came to.

    One phrase per attempt, so that two attempts that each failed and were
    reverted read as two, not as four (``2 failed, 2 reverted`` did). The
    latest attempt is the atom's own state, which its line already says,
    unless the atom is PENDING or IGNORE: reset for its next attempt, or
    skipped (which starts no attempt: the skip is logged under the number
    of the attempt before), every one it had is earlier.
    """
    by_attempt: dict[int, set[str]] = {}
    for event in events:
        by_attempt.setdefault(event.attempt, set()).add(event.state)
    if state not in _ALL_EARLIER and by_attempt:
        del by_attempt[max(by_attempt)]
    counts = Counter(_outcome(states) for states in by_attempt.values())
    return ", ".join(f"{counts[word]} {word}" for word in _OUTCOMES if counts[word])


def _utc(seconds: float) -> str:
    """A time (seconds since the epoch) as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def flow_summary(book: Any, flow: Any, atom_states: Collection[str | None] | None = None) -> dict[str, Any]:
    """One flow at a glance: what ``flowkit flows list --json`` and the monitor's list show.

    Keys (stable, documented in ``doc/cli.rst``): ``uuid``, ``name``, ``state``,
    ``book``, ``created_at``, ``updated_at``, ``started_at``, ``ended_at``,
    ``atoms`` (count by state), ``total``.

    Args:
        book: the flow's logbook.
        flow: the flow detail, with its atoms unless ``atom_states`` is given.
        atom_states: the state of each of its atoms, for a flow read without
            them (the monitor's list reads only these:
            :meth:`~flowkit.persistence.base.Connection.get_atom_states`).
    """
    if atom_states is None:
        atom_states = [d.state for d in flow]
    counts = Counter((state or "PENDING") for state in atom_states)
    events = [e for e in (flow.meta or {}).get(META_KEY, ()) if isinstance(e, dict)]
    started = next((e["at"] for e in events if e.get("state") == "RUNNING"), None)
    # As the report's ended_at: a SUSPENDED run ended too (it was left out here).
    final = events[-1] if events and _ends_run(events[-1].get("state"), events[-1].get("old")) else None
    return {
        "uuid": flow.uuid,
        "name": flow.name,
        "state": flow.state or "PENDING",
        "book": {"uuid": book.uuid, "name": book.name},
        "created_at": book.created_at.isoformat() if book.created_at else None,
        "updated_at": book.updated_at.isoformat() if book.updated_at else None,
        "started_at": started,
        "ended_at": final["at"] if final else None,
        "atoms": dict(sorted(counts.items())),
        "total": len(atom_states),
    }


def _ends_run(state: str | None, old_state: str | None) -> bool:
    """Whether the flow's move to ``state`` ends a run (RESUMING -> SUSPENDED prepares one)."""
    return state in (st.SUCCESS, st.REVERTED, st.FAILURE, st.SUSPENDED) and old_state != st.RESUMING


def _run_times(events: Iterable[Event]) -> list[float]:
    """Seconds from each RUNNING of the flow to the end of that run, one figure per run.

    A run ends with the flow's SUCCESS, REVERTED, FAILURE or SUSPENDED in that
    same run; one that never ended (a crash) counts up to its last event, what
    is known of it. The RESUMING -> SUSPENDED of the next run's preparation
    ends nothing: counted as the end, the time between a crash and its resume
    would be taken for work.
    """
    spans: list[float] = []
    began: float | None = None
    run = 0
    last = 0.0
    for event in events:
        if began is not None and event.run != run:  # the run stopped without an end
            spans.append(last - began)
            began = None
        last = event.at
        if event.kind != "flow":
            continue
        if event.state == st.RUNNING:
            began, run = event.at, event.run
        elif began is not None and _ends_run(event.state, event.old_state):
            spans.append(event.at - began)
            began = None
    if began is not None:
        spans.append(last - began)
    return spans


def _spans(events: list[Event], starts: str, ends: frozenset[str]) -> float | None:
    """Seconds from each ``starts`` event to the end that follows it in the same run, summed.

    An end in a later run (an atom RUNNING when its run stopped, found done
    before the next: see ``EventLogListener``) does not say how long the
    work took; the time between the runs is not counted as work. Nor does
    the restart of an atom a stopped run left in doubt: the engine does not
    announce it, and the log records it (cause ``resumed``) when its outcome
    arrives, timed then, so that attempt's time is unknown, not 0.
    """
    total, began, seen = 0.0, None, False
    for event in events:
        if event.state == starts:
            began = None if event.cause.kind == CauseKind.RESUMED else event
        elif began is not None and (
            event.state in ends
            # A loop's ``until`` task that found its loop not done is reset from RUNNING:
            # its execute returned there (flowkit.patterns.loop_flow).
            or (starts == st.RUNNING and event.state == st.PENDING and event.old_state == st.RUNNING)
        ):
            if event.run == began.run:
                total += event.at - began.at
                seen = True
            began = None
    return total if seen else None


_EXEC_ENDS = frozenset({st.SUCCESS, st.FAILURE})
_REVERT_ENDS = frozenset({st.REVERTED, st.REVERT_FAILURE})


#: States of an atom whose attempts all came before: reset for the next one, or skipped.
_ALL_EARLIER = frozenset({st.PENDING, st.IGNORE})
#: States of an atom with no outcome of its own in the current attempt: in it, before
#: it, or skipped; a failure or a time its record holds is an earlier attempt's.
_NO_OUTCOME = frozenset({st.RUNNING, *_ALL_EARLIER})


def _atom_report(detail: Any, events: list[Event]) -> AtomReport:
    kind = "retry" if type(detail).__name__ == "RetryDetail" else "task"
    meta: Mapping[str, Any] = detail.meta or {}
    state = detail.state or st.PENDING
    cached: bool | None = None
    waited: Event | None = None
    if events:
        starts = 0
        started: Event | None = None  # its latest execute's start
        for event in events:
            if event.state == st.RUNNING:
                starts += 1
                started = event
        attempts: int | None = starts
        if started is not None and started.cause.key is not None:
            waited = started
        outcome = next((e for e in reversed(events) if e.state == st.SUCCESS), None)
        cached = outcome is not None and outcome.cause.kind == CauseKind.CACHED
        duration = _spans(events, st.RUNNING, _EXEC_ENDS)
        revert_duration = _spans(events, st.REVERTING, _REVERT_ENDS)
    else:
        attempts = None if state != st.PENDING else 0
        timed = meta.get("duration") if isinstance(meta.get("duration"), (int, float)) else None
        # A DurationListener saves the time of whatever ended last, as TaskFlow's does:
        # for an atom that ended reverting, its revert's (its execute's is gone).
        duration, revert_duration = (None, timed) if state in _REVERT_ENDS else (timed, None)
    # A RUNNING or PENDING atom is in (or before) an attempt that has not failed, an
    # IGNORE one was skipped: a failure its record still holds is an earlier attempt's (a
    # retry's reset keeps it, as TaskFlow's does), which "earlier attempts" tells; shown,
    # it read as this one's.
    failure = detail.failure if state not in _NO_OUTCOME else None
    revert_failure = detail.revert_failure
    reverted = None
    if state == st.REVERTED or (events and any(e.state == st.REVERTED for e in events)):
        reverted = "reverted"
    if revert_failure is not None or state == st.REVERT_FAILURE:
        reverted = "revert failed"
    try:
        results = detail.last_results
    except exc.NotFound:  # a retry with no (or reverted) results
        results = None
    has_result = state in (st.SUCCESS, st.REVERTED, st.REVERTING) and results is not None
    return AtomReport(
        name=detail.name,
        kind=kind,
        uuid=detail.uuid,
        state=state,
        intention=detail.intention or st.EXECUTE,
        attempts=attempts,
        duration=duration,
        revert_duration=revert_duration,
        result=summarize(results, meta.get(MODEL_KEY)) if has_result else None,
        failure=FailureReport.from_failure(failure) if isinstance(failure, Failure) else None,
        reverted=reverted,
        revert_failure=FailureReport.from_failure(revert_failure)
        if isinstance(revert_failure, Failure)
        else None,
        progress=float(meta.get("progress", 0.0) or 0.0),
        cached=cached,
        earlier_attempts=_earlier_attempts(events, state),
        waited_for_slot=None if waited is None else waited.cause.key,
        slot_held_by=None if waited is None else waited.cause.held_by,
    )
