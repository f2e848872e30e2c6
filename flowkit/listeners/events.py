"""The causal event log: every flow and atom transition, with what caused it.

Attach an :class:`EventLogListener` to an engine and each state change of the
flow, its tasks and its retries is recorded as an :class:`Event` whose
:class:`Cause` says why it happened: the predecessors whose completion made an
atom ready, the failure (and the retry decision) that made it revert, the
retry that reset it, the resume that picked it up again. ``flowkit flows why``,
the execution report (:mod:`flowkit.report`) and the web monitor read it.

Where it lives: an atom's events in its own atom detail's metadata, the flow's
in the flow detail's metadata (both under :data:`META_KEY`), so they are saved
by the engine's own writes, in every backend, and no write is added to the
run's hot path. :meth:`EventLog.from_flow_detail` puts them back in order.

What the engine tells and what is inferred: for a revert (or a retry's reset)
the engine's ``revert_cause(atom)`` names the failure it resolved, the retry
and its decision, exactly; the rest is derived from the compiled graph and the
stored states at the moment each notification arrives:

* RUNNING: the predecessor atoms (through nested flows) whose completion came
  last; a retry's reset when the atom runs again inside a retry's scope; the
  resume when the atom was RUNNING (in doubt) when the previous run stopped.
* REVERTING / RETRYING / PENDING: the engine's account; from an engine
  without one, the newest execute failure and the decision read from the
  controlling retries' stored intentions (RETRY), or from whether the
  reverting atom lies inside the retry's scope (REVERT) or outside it
  (REVERT_ALL, or a REVERT that an outer retry widened).
* SUCCESS, FAILURE, REVERTED, REVERT_FAILURE: what ``execute``/``revert`` did.

Without a listener attached nothing is recorded and nothing is paid. With it,
the two transitions every atom makes (RUNNING because it became ready,
SUCCESS because it returned) take a short path that builds one small dict
each; their cause's sentence is written out when the log is read, not when it
is recorded. When the run is persisted (a backend), each event is added to its
atom's metadata at once, so the engine's next write saves it with the state
it explains; a run kept only in memory holds its events in the listener and
hands them to storage when the flow ends, when :attr:`EventLogListener.log`
is read and when the listener is detached (measured in
``tools/bench_events.py``).

This module is the listener; the records it writes are in ``_event_model``
(re-exported here) and the graph questions it asks in ``_event_graph``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit import states as st
from flowkit._utils.records import Record
from flowkit.listeners import base
from flowkit.listeners._event_graph import Decided, FlowGraph, failure_words, state_before
from flowkit.listeners._event_model import (
    META_KEY,
    Cause,
    CauseKind,
    Event,
    EventLog,
    TreeRow,
    cause_text,
    recorded_attempts,
)
from flowkit.retry import Retry
from flowkit.types import notifier as nt

if TYPE_CHECKING:  # for annotations only: importing a listener does not import the engines
    from flowkit.engines.base import Engine

__all__ = [
    "META_KEY",
    "Cause",
    "CauseKind",
    "Event",
    "EventLog",
    "EventLogListener",
    "TreeRow",
]

#: Events an atom gathers before its list is written in chunks (flowkit.persistence._archived.CHUNK,
#: spelled here: that module is imported only by runs that need it).
_CHUNKED_FROM = 32

#: Atom states that end an ``execute`` or a ``revert``.
_DONE = frozenset({st.SUCCESS, st.IGNORE})

Clock = Callable[[], float]

#: A cause as stored (what :meth:`Cause.to_dict` gives), made directly on the two
#: paths every atom takes (it became ready, its call returned): making a frozen
#: Cause first cost more there than the rest of recording the event. Their
#: ``text`` is left out: it follows from the rest and is written when read
#: (:func:`~flowkit.listeners._event_model.cause_text`).
CauseRecord = dict[str, Any]

_RUNNING = st.RUNNING
_SUCCESS = st.SUCCESS


def _plain(kind: CauseKind, event: int | None = None, atoms: list[str] | None = None) -> CauseRecord:
    """A ready/returned cause as stored (its sentence is made on reading)."""
    out: CauseRecord = {"kind": kind.value}
    if event is not None:
        out["event"] = event
    if atoms:
        out["atoms"] = list(atoms)
    return out


class _Failed(Record):
    """An execute failure: the newest one explains reverts when the engine gives no account."""

    seq: int  # of its FAILURE event
    atom: str
    failure: Any  # a Failure; read back from a stored event, its short type name


def _failed_words(failure: Any) -> tuple[str | None, str]:
    """:func:`failure_words` of a :class:`_Failed` failure, which may be read back as a type name."""
    if isinstance(failure, str):
        return failure, failure
    return failure_words(failure)


def _held(failed: _Failed | None, held_by: Callable[[], Mapping[str, Any]]) -> _Failed | None:
    """``failed`` read back from a stored event, with the failure storage still holds for it.

    The stored event names only the failure's type; the atom's record keeps the
    failure itself (its message too) until the atom runs again, so a resumed run
    words it as the run that saw it did ("failed with CardDeclined: card
    declined", not "failed with CardDeclined"). Taken only when its type is the
    one the event names, as it is when nothing ran the atom since.
    """
    if failed is None or not isinstance(failed.failure, str):
        return failed
    held = held_by().get(failed.atom)
    if held is None or failure_words(held)[0] != failed.failure:
        return failed
    return _Failed(failed.seq, failed.atom, held)


#: The details key of a start that waited for a concurrency slot
#: (flowkit.engines._limits.SLOT_WAIT_KEY, spelled here: that module is imported only by runs with limits).
_SLOT_WAIT = "slot_wait"
#: Marks the details of a restart the listener records on the engine's behalf.
_INFERRED = "inferred_restart"
_UNANNOUNCED = " (unannounced by the engine: its time is when it ended)"
#: Loop verdicts remembered to explain the iteration they start (loops running at once, at most).
_VERDICTS_KEPT = 64


class EventLogListener(base.Listener):
    """Records every flow and atom transition with its inferred cause.

    Opt-in: attach it to an engine (``with EventLogListener(engine): engine.run()``);
    ``flowkit run`` and ``flowkit flows resume`` attach one. The events go into
    the flow detail's and atom details' metadata (see :data:`META_KEY`) and are
    read back with :meth:`EventLog.from_flow_detail` or :attr:`log`.

    Args:
        engine: the engine to watch (it must expose its compiled graph as
            ``engine.compilation`` for predecessors and retry scopes; without it
            causes name no predecessors).
        clock: the wall clock, seconds since the epoch (tests drive it by hand).
    """

    def __init__(self, engine: Engine, clock: Clock = time.time) -> None:
        super().__init__(engine)
        self._clock = clock
        self._graph = FlowGraph(engine)
        self._attached = False
        self._forget_run()

    def _forget_run(self) -> None:
        """Start from nothing: what a run's events are worked out from, read as a run begins."""
        self._seq = 0
        self._run = 0
        #: whether this run has recorded the flow's RUNNING: the next one starts another run.
        self._flow_ran = False
        #: whether the flow ran before this run without an event log (the log begins mid-life).
        self._ran_unlogged = False
        self._storage: Any = None
        #: The engine's run state: whether it is persisted decides when events are handed over.
        self._state: Any = None
        #: atom name -> how many times it entered RUNNING.
        self._attempts: dict[str, int] = {}
        #: atom name -> seq of its latest completion (SUCCESS/IGNORE).
        self._done: dict[str, int] = {}
        #: the newest execute failure.
        self._failure: _Failed | None = None
        # The newest failed revert: what ends a flow FAILURE rather than REVERTED.
        self._revert_failed: _Failed | None = None
        #: atom name -> seq of its latest execute FAILURE event.
        self._failed_at: dict[str, int] = {}
        #: atom name -> the cause of the retry decision that reset it.
        self._retried: dict[str, Cause] = {}
        #: atoms that were RUNNING/REVERTING when this run began (in doubt).
        self._in_doubt: set[str] = set()
        #: atom name -> (seq, iteration) of the reset that puts it in its loop's next iteration.
        self._looped: dict[str, tuple[int, int]] = {}
        #: seqs of the latest loop verdicts (an ``until`` task reset: its loop goes on), oldest first.
        self._verdicts: list[int] = []
        #: atom name -> seq of its latest event.
        self._last: dict[str, int] = {}
        #: atom name -> its events so far (what its metadata holds, or will).
        self._atom_events: dict[str, list[dict[str, Any]]] = {}
        #: atoms whose events storage has not been given yet (a run kept in memory).
        self._unwritten: set[str] = set()

    @property
    def log(self) -> EventLog:
        """Everything recorded for this flow so far (earlier runs included)."""
        self.write()
        return EventLog.from_flow_detail(self._engine.storage.flow_detail)

    # -- attaching ----------------------------------------------------------------------

    def register(self) -> None:
        """Start recording: one receiver for the atoms' state changes, one for the flow's.

        Registered directly for :attr:`Notifier.ANY` (which hears state changes
        only): the receiver tells tasks from retries itself, so no details
        filter runs per notification.
        """
        if self._attached:
            return
        self._engine.atom_notifier.register(nt.Notifier.ANY, self._on_atom)
        try:
            self._engine.notifier.register(nt.Notifier.ANY, self._flow_receiver)
        except ValueError:
            self._engine.atom_notifier.deregister(nt.Notifier.ANY, self._on_atom)
            raise
        self._attached = True

    def deregister(self) -> None:
        """Stop recording; hand storage whatever it has not been given yet."""
        if not self._attached:
            return
        self._attached = False
        self._engine.atom_notifier.deregister(nt.Notifier.ANY, self._on_atom)
        self._engine.notifier.deregister(nt.Notifier.ANY, self._flow_receiver)
        self.write()

    def write(self) -> None:
        """Give storage the events it does not hold yet (a run kept in memory only)."""
        if not self._unwritten:
            return
        unwritten, self._unwritten = self._unwritten, set()
        storage = self._engine.storage
        for name in unwritten:
            # A copy: this listener goes on appending to its own list.
            storage.update_atom_metadata(name, {META_KEY: list(self._atom_events[name])})

    # -- starting a run ---------------------------------------------------------------

    def _in_run(self) -> bool:
        return bool(self._run)

    def _begin_unannounced_run(self, atom: str, was: str | None) -> None:
        # Every atom notice begins one, a reset's too: the log records those as well.
        self._begin_run(atom, was)

    def _begin_run(
        self, heard: str | None = None, was: str | None = None, flow_was: str | None = None
    ) -> None:
        """Number this run and pick up the seq/attempt counters of earlier ones.

        Args:
            heard: the atom whose notice begins the run, when an atom's does. An
                engine run again after an interrupt announces nothing as it
                starts (the flow never left RUNNING), so the first notice may be
                the outcome of an atom left RUNNING, stored already.
            was: the state ``heard`` left (its notice's ``old_state``): the one
                it was in as the run began.
            flow_was: the state the flow's first notice left. A flow that ran before
                (not PENDING) but whose log holds nothing ran without one (from Python,
                then ``flowkit flows resume``): its atoms left RUNNING are in doubt all
                the same, and this run resumes it rather than starts it.
        """
        storage = self._storage = self._engine.storage
        self._state = getattr(storage, "run_state", None)
        earlier = storage.flow_meta.get(META_KEY) or ()
        self._run = 1 + max((int(e.get("run", 1)) for e in earlier), default=0)
        self._seq = max((int(e["seq"]) for e in earlier), default=0)
        if not earlier:
            if flow_was is None or flow_was == st.PENDING:
                return  # a fresh flow: nothing ran before, nothing is in doubt
            self._ran_unlogged = True
        names = [name for name, node in self._graph.nodes().items() if node is not None]
        if self._state is not None:
            # Atoms a sub-flow spawned in an earlier run (flowkit.dynamic) have
            # records but are spliced in again only as this run goes on: their
            # events (and seq numbers) are taken in now too, or this run would
            # number its events over theirs and write its own over them.
            graph = set(names)
            names.extend(name for name in self._state.names() if name not in graph)
        from flowkit.engines._loops import ITERATION_KEY  # a run is under way: engines are loaded

        settled: list[tuple[str, str, dict[str, Any]]] = []
        missed: list[tuple[str, int, dict[str, Any]]] = []
        for name in names:
            if name == heard and was is not None:
                state = was
            else:
                try:
                    state = storage.get_atom_state(name)
                except exc.NotFound:
                    # An atom the flow gained since the earlier run (a spec or factory
                    # fixed before the resume) has no record until the engine makes it,
                    # after RESUMING as in TaskFlow: it has no earlier events to take in.
                    continue
            if state in (st.RUNNING, st.REVERTING):
                self._in_doubt.add(name)
            meta = storage.get_atom_metadata(name)
            stored = list(meta.get(META_KEY, ()))
            self._atom_events[name] = stored
            attempts = recorded_attempts(meta)
            if attempts:
                self._attempts[name] = attempts
            for data in stored:
                self._seq = max(self._seq, int(data["seq"]))
                self._last[name] = max(self._last.get(name, 0), int(data["seq"]))
                if data["state"] in _DONE:
                    self._done[name] = int(data["seq"])
                elif data["state"] == st.FAILURE and (
                    self._failure is None or self._failure.seq < int(data["seq"])
                ):
                    cause = data.get("cause", {})
                    self._failure = _Failed(int(data["seq"]), name, cause.get("failure"))
                if data["state"] == st.FAILURE:
                    self._failed_at[name] = int(data["seq"])
                elif data["state"] == st.REVERT_FAILURE and state == st.REVERT_FAILURE:
                    # Still failed (not tried again): it ends this run FAILURE too.
                    raised = data.get("cause", {}).get("failure")
                    self._revert_failed = _Failed(int(data["seq"]), name, raised)
            if stored and state == st.SUCCESS and stored[-1]["state"] == st.RUNNING:
                settled.append((name, state, stored[-1]))
            elif stored and state == st.PENDING and meta.get(ITERATION_KEY) is not None:
                # Stopped between a loop's verdict and its next iteration: that iteration
                # still runs because of the verdict, as it would have without the stop.
                last = stored[-1]
                if last["state"] == st.PENDING and last.get("cause", {}).get("kind") == CauseKind.ENGINE:
                    if last.get("old") == st.RUNNING:
                        self._verdicts.append(int(last["seq"]))
                    else:
                        self._looped[name] = (int(last["seq"]), int(meta[ITERATION_KEY]))
                elif last["state"] != st.PENDING:
                    missed.append((name, int(meta[ITERATION_KEY]), last))
        self._verdicts.sort()
        self._failure = _held(self._failure, storage.get_execute_failures)
        self._revert_failed = _held(self._revert_failed, storage.get_revert_failures)
        for name, state, last in settled:
            self._settled(name, state, last)
        if missed:
            self._missed_resets(missed)

    def _missed_resets(self, missed: list[tuple[str, int, dict[str, Any]]]) -> None:
        """Record the loop resets the earlier run made but this log never heard of.

        A listener registered before this one may raise as a loop's body is
        reset (a crash stand-in): the records hold the reset, the next iteration
        number with it, while the notices that had not reached this listener are
        gone. Without these events the resumed run would say the body runs again
        because the atom before the loop completed, and ``why`` would never
        reach the loop's verdict. They are recorded as the earlier run's (when
        it stopped), in the order the engine makes a reset: the body atoms, then
        the ``until`` task (the one that was RUNNING), whose verdict they follow.
        """
        missed.sort(key=lambda entry: (entry[2]["state"] == st.RUNNING, int(entry[2]["seq"])))
        nodes = self._graph.nodes()
        for name, iteration, last in missed:
            node = nodes.get(name)
            kind = "retry" if node is not None and isinstance(node.atom, Retry) else "task"
            stopped = int(last.get("run", 1))
            note = f"(recorded as run {self._run} began: run {stopped} stopped before this log heard of it)"
            old = str(last["state"])
            if old == st.RUNNING:
                cause = Cause(
                    CauseKind.ENGINE,
                    f"it found its loop not done: iteration {iteration} follows {note}",
                    event=int(last["seq"]),
                )
            else:
                cause = Cause(CauseKind.ENGINE, f"its loop runs again: iteration {iteration} {note}")
            seq = self._record(
                kind,
                name,
                old,
                st.PENDING,
                self._attempts.get(name, 0),
                cause,
                run=stopped,
                at=last.get("at"),
            )
            self._last[name] = seq
            if old == st.RUNNING:
                self._verdicts = [*self._verdicts[-(_VERDICTS_KEPT - 1) :], seq]
            else:
                self._looped[name] = (seq, iteration)

    def _settled(self, name: str, state: str, last: Mapping[str, Any]) -> None:
        """Record what became of an atom between runs: RUNNING when its run stopped, SUCCESS now.

        A conductor asks such an atom's ``check_done`` before the run
        (:func:`flowkit.conductors.in_doubt.resolve`) and records it done
        without running it again: no notification says so, and the log would
        end the atom at RUNNING, its successors made ready by nothing.
        """
        node = self._graph.nodes().get(name)
        kind = "retry" if node is not None and isinstance(node.atom, Retry) else "task"
        stopped = int(last.get("run", 1))
        cause = Cause(
            CauseKind.RESUMED,
            f"it was RUNNING when run {stopped} stopped and was found done before run {self._run} "
            f"(an in-doubt check): recorded {state} without running it again",
            event=int(last["seq"]),
        )
        seq = self._record(kind, name, st.RUNNING, state, self._attempts.get(name, 0), cause)
        self._last[name] = self._done[name] = seq

    # -- recording ----------------------------------------------------------------

    def _record(
        self,
        kind: str,
        name: str,
        old: str | None,
        state: str,
        attempt: int,
        cause: Cause | CauseRecord,
        *,
        run: int | None = None,
        at: float | None = None,
    ) -> int:
        self._seq = seq = self._seq + 1
        data: dict[str, Any] = {
            "seq": seq,
            "at": self._clock() if at is None else at,
            "run": self._run if run is None else run,
            "old": old,
            "state": state,
            "attempt": attempt,
            "cause": cause.to_dict() if isinstance(cause, Cause) else cause,
        }
        if kind == "flow":
            self.write()  # the atoms' events first: a reader then sees the whole log
            storage = self._engine.storage
            # A new list each time: a backend may hold on to the one it was given.
            storage.update_flow_metadata({META_KEY: [*(storage.flow_meta.get(META_KEY) or ()), data]})
            return seq
        events = self._atom_events.get(name)
        run_state = self._state
        if run_state is not None and not run_state.durable:
            # Kept in memory only: nobody reads the metadata before the flow
            # ends or the log is asked for (then write() hands it over).
            if events is None:
                self._atom_events[name] = [data]
            else:
                events.append(data)
            self._unwritten.add(name)
            return seq
        if self._unwritten:
            self.write()  # the run became persisted (a backend attached on request)
        # A new list each time: a backend may hold on to the one it was given.
        events = [*events, data] if events else [data]
        self._atom_events[name] = events
        if run_state is not None and not run_state.long_lists and len(events) >= _CHUNKED_FROM:
            # An atom in a loop gathers events without end: written in chunks from now on.
            run_state.long_lists = True
        self._storage.update_atom_metadata(name, {META_KEY: events})
        return seq

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        if self._flow_ran and state in (st.RUNNING, st.RESUMING):
            # The engine runs again (run() after a suspension), this listener still
            # attached: a new run, numbered and explained as a listener attached for
            # it would, from what the earlier runs stored.
            self.write()
            self._forget_run()
        old = details.get("old_state")
        if not self._run:
            self._begin_run(flow_was=old)
        if state == st.RUNNING:
            self._flow_ran = True
            unlogged = "; the runs before it kept no event log" if self._ran_unlogged else ""
            cause = (
                Cause(CauseKind.STARTED, "the flow started")
                if self._run == 1 and not self._ran_unlogged
                else Cause(CauseKind.RESUMED, f"run {self._run} resumed the flow (it was {old}){unlogged}")
            )
        elif state == st.SUSPENDED and old == st.RESUMING:
            # The engine's preparation of a run (it takes stored states up), not a
            # suspension: nothing ended, whatever the state's name says.
            cause = Cause(CauseKind.ENGINE, "the engine prepared the run (RESUMING -> SUSPENDED)")
        elif state in (st.SUCCESS, st.REVERTED, st.FAILURE, st.SUSPENDED):
            cause = self._finish_cause(state)
        else:
            cause = Cause(CauseKind.ENGINE, f"the engine moved the flow to {state}")
        self._record("flow", details["flow_name"], old, state, 0, cause)

    def _finish_cause(self, state: str) -> Cause:
        if state == st.SUCCESS:
            return Cause(CauseKind.FINISHED, "every atom completed")
        if state == st.SUSPENDED:
            return Cause(CauseKind.FINISHED, "the run was suspended")
        if state == st.FAILURE and self._revert_failed is not None:
            return self._revert_failure_cause(self._revert_failed, state)
        if self._failure is None:
            return Cause(CauseKind.FINISHED, f"the flow ended {state}")
        both = self._ended_by()
        if len(both) > 1:
            # Failures at once (parallel branches): the engine raised them all.
            newest = both[-1]
            return Cause(
                CauseKind.FINISHED,
                " and ".join(f"'{f.atom}' failed with {_failed_words(f.failure)[1]}" for f in both)
                + f"; the flow ended {state}",
                event=newest.seq,
                atoms=tuple(f.atom for f in both),
                failure=_failed_words(newest.failure)[0],
            )
        last = self._failure
        kind, words = _failed_words(last.failure)
        return Cause(
            CauseKind.FINISHED,
            f"'{last.atom}' failed with {words}; the flow ended {state}",
            event=last.seq,
            atoms=(last.atom,),
            failure=kind,
        )

    def _revert_failure_cause(self, failed: _Failed, state: str) -> Cause:
        """The end of a flow a failed revert left FAILURE: that revert, after the failure it undid.

        Linked to the revert's REVERT_FAILURE, so ``why`` goes on to why it
        was reverting and to the execute failure behind it.
        """
        kind, words = _failed_words(failed.failure)
        text = f"reverting '{failed.atom}' failed with {words}"
        atoms: tuple[str, ...] = (failed.atom,)
        if self._failure is not None:
            text += f", after '{self._failure.atom}' failed with {_failed_words(self._failure.failure)[1]}"
            atoms += (self._failure.atom,)
        return Cause(
            CauseKind.FINISHED, f"{text}; the flow ended {state}", event=failed.seq, atoms=atoms, failure=kind
        )

    def _ended_by(self) -> list[_Failed]:
        """The execute failures the flow ends with (those still stored), oldest first.

        Read once per ending run, from storage: a failure a retry resolved is gone
        from there, one that ended the run is kept.
        """
        stored = self._engine.storage.get_execute_failures()
        found = [
            _Failed(self._failed_at[name], name, f) for name, f in stored.items() if name in self._failed_at
        ]
        return sorted(found, key=lambda f: f.seq)

    def _on_atom(self, state: str, details: base.Details) -> None:
        """Every atom state change: the common two inline, the rest by :meth:`_atom_event`."""
        name = details.get("task_name")
        if name is None:
            name = details.get("retry_name")
            if name is None:
                return
            kind = "retry"
        else:
            kind = "task"
        if not self._run:  # inline first: this runs for every notice
            self._take_up_run(name, state, details, any_notice=True)
        if self._in_doubt or self._retried or self._looped or "cache_hit" in details or _SLOT_WAIT in details:
            self._atom_event(kind, name, state, details)
        elif state == _RUNNING and (kind == "task" or name not in self._attempts):
            attempt = self._attempts[name] = self._attempts.get(name, 0) + 1
            preds = self._graph.predecessors(name)
            cause: CauseRecord
            if not preds:
                cause = {"kind": "ready"}
            else:
                done = self._done
                if len(preds) == 1:
                    last = done.get(preds[0])
                else:
                    last = max((done[p] for p in preds if p in done), default=None)
                cause = {"kind": "ready", "atoms": list(preds)}
                if last is not None:
                    cause["event"] = last
            self._last[name] = self._record(kind, name, details.get("old_state"), state, attempt, cause)
        elif state == _SUCCESS:
            last = self._last.get(name)
            cause = {"kind": "returned"} if last is None else {"kind": "returned", "event": last}
            seq = self._record(
                kind, name, details.get("old_state"), state, self._attempts.get(name, 0), cause
            )
            self._last[name] = self._done[name] = seq
        else:
            self._atom_event(kind, name, state, details)

    def _atom_event(self, kind: str, name: str, state: str, details: base.Details) -> None:
        old = details.get("old_state")
        if name in self._in_doubt and old is not None and old == state_before(state):
            # An atom in doubt is run (or reverted) again without a new RUNNING
            # (REVERTING) notification, since it never left that state: record
            # the restart now, when its outcome shows it happened.
            self._atom_event(kind, name, old, {"old_state": old, _INFERRED: True})
        if state == st.RUNNING:
            self._attempts[name] = self._attempts.get(name, 0) + 1
        attempt = self._attempts.get(name, 0)
        cause = self._cause(name, old, state, details, attempt)
        wait = details.get(_SLOT_WAIT)
        if wait is not None:
            cause = self._waited(cause, state, wait)
        seq = self._record(kind, name, old, state, attempt, cause)
        self._last[name] = seq
        if self._looped and state != st.RUNNING:
            self._looped.pop(name, None)
        iteration = details.get("iteration") if state == st.PENDING else None
        if iteration is not None and isinstance(cause, Cause) and cause.kind == CauseKind.ENGINE:
            if old == st.RUNNING:  # the loop's ``until`` task, reset: its verdict, the loop goes on
                self._verdicts = [*self._verdicts[-(_VERDICTS_KEPT - 1) :], seq]
            else:
                self._looped[name] = (seq, int(iteration))
        if state in _DONE:
            self._done[name] = seq
        elif state == st.FAILURE:
            self._failure = _Failed(seq, name, details.get("result"))
            self._failed_at[name] = seq
        elif state == st.REVERT_FAILURE:
            self._revert_failed = _Failed(seq, name, details.get("result"))

    # -- inferring causes ---------------------------------------------------------

    def _cause(
        self, name: str, old: str | None, state: str, details: base.Details, attempt: int
    ) -> Cause | CauseRecord:
        if state == st.RUNNING:
            return self._running_cause(name, attempt, bool(details.get(_INFERRED)), details.get("iteration"))
        if state == st.SUCCESS and details.get("cache_hit"):
            key = str(details.get("cache_key") or "")
            return Cause(
                CauseKind.CACHED,
                f"its result came from the cache (key {key[:12]}), not from running it",
                event=self._last.get(name),
            )
        if state == st.REVERTED and details.get("cache_hit"):
            return Cause(
                CauseKind.CACHED,
                "its revert was not called: its result came from the cache, and the run "
                "that computed it owns what it did",
                event=self._last.get(name),
            )
        if state in (st.SUCCESS, st.REVERTED):
            # Linked to the atom's start, so a chain of causes walks on from there.
            return _plain(CauseKind.RETURNED, self._last.get(name))
        if state in (st.FAILURE, st.REVERT_FAILURE):
            what = "execute" if state == st.FAILURE else "revert"
            kind, words = failure_words(details.get("result"))
            # A failed revert is linked to its REVERTING, as a returned one is, so why it
            # failed goes on to why it was reverting. A failed execute is where a chain
            # of causes ends: the failure is the root of what it made happen.
            start = self._last.get(name) if state == st.REVERT_FAILURE else None
            return Cause(CauseKind.RAISED, f"{what} raised {words}", event=start, failure=kind)
        if state == st.REVERTING:
            if name in self._in_doubt and old == st.REVERTING:
                self._in_doubt.discard(name)
                note = _UNANNOUNCED if details.get(_INFERRED) else ""
                return Cause(
                    CauseKind.RESUMED,
                    f"it was REVERTING when {self._previous_run()} stopped: reverted again (in doubt){note}",
                    event=self._last.get(name),  # that REVERTING: `why` goes on to what it reverted for
                )
            return self._failure_cause(name, "reverts", told=self._told(name))
        if state == st.RETRYING:
            retried = self._failure_cause(name, "retries its scope", told=self._told(name))
            if retried.decision == "RETRY":
                self._retried[name] = retried  # it runs again next: for that reason
            return retried
        if state == st.PENDING:
            told = self._told(name)
            if told is None and details.get("iteration") is not None:
                if old == st.RUNNING:
                    # The loop's ``until`` task: reset from RUNNING, it found the loop not done.
                    return Cause(
                        CauseKind.ENGINE,
                        f"it found its loop not done: iteration {details['iteration']} follows",
                        event=self._last.get(name),
                    )
                return Cause(CauseKind.ENGINE, f"its loop runs again: iteration {details['iteration']}")
            retried = self._failure_cause(name, "is reset", told=told)
            if retried.decision == "RETRY":
                self._retried[name] = retried
            if self._failure is None and told is None:
                return Cause(CauseKind.ENGINE, "reset")
            return retried
        if state == st.IGNORE:
            return self._ignore_cause(name)
        return Cause(CauseKind.ENGINE, f"moved to {state}")

    def _previous_run(self) -> str:
        """The run before this one, as a cause names it: by number, unless the log began after it."""
        return f"run {self._run - 1}" if self._run > 1 else "an earlier run"

    def _running_cause(
        self, name: str, attempt: int, inferred: bool, iteration: int | None = None
    ) -> Cause | CauseRecord:
        if name in self._in_doubt:
            self._in_doubt.discard(name)
            note = _UNANNOUNCED if inferred else ""
            return Cause(
                CauseKind.RESUMED,
                f"it was RUNNING when {self._previous_run()} stopped: run again (in doubt){note}",
                event=self._last.get(name),  # that RUNNING: `why` goes on to what made it ready
            )
        retried = self._retried.pop(name, None) if self._retried else None
        if retried is None and attempt > 1:
            node = self._graph.nodes().get(name)
            if node is not None and isinstance(node.atom, Retry):
                # A retry runs again only because it chose RETRY.
                retried = self._failure_cause(name, "runs again", decided=Decided(name, "RETRY"))
        if retried is not None:
            return Cause(
                CauseKind.RETRY,
                f"attempt {attempt}: {retried.text}",
                event=retried.event,
                atoms=retried.atoms,
                failure=retried.failure,
                retry=retried.retry,
                decision=retried.decision,
            )
        preds = self._graph.predecessors(name)
        done = self._done
        last_seq = max((done[p] for p in preds if p in done), default=None)
        looped = self._looped.pop(name, None) if self._looped else None
        if looped is not None and (last_seq is None or last_seq < looped[0]):
            # The first atom of a loop's body: its predecessors completed before the loop
            # began; it runs again because the loop's ``until`` found the loop not done.
            reset, reset_iteration = looped
            verdict = next((v for v in self._verdicts if v > reset), reset)
            text = f"its loop runs again: iteration {iteration or reset_iteration}"
            return Cause(CauseKind.ENGINE, text, event=verdict)
        if not preds:
            return _plain(CauseKind.READY)
        return _plain(CauseKind.READY, last_seq, preds)

    def _waited(self, cause: Cause | CauseRecord, state: str, wait: Any) -> Cause:
        """``cause`` of a start that then waited for a concurrency slot (``wait``, the engine's account).

        A start made ready by its predecessors becomes a WAITED cause, linked to
        the end of the call that gave the slot back, so ``why`` walks on to
        that atom rather than stopping at "first in its flow". Any other cause
        (a retry, a resume, a revert's failure) keeps its kind and link, and
        says the wait too.
        """
        waited = f"waited for a slot of concurrency key '{wait.key}' (limit {wait.limit})"
        if wait.held_by is not None:
            waited += f" until '{wait.held_by}' gave its slot back"
        if isinstance(cause, dict):
            text = cause_text(cause, state)
            if cause.get("kind") == CauseKind.READY:
                released = None if wait.held_by is None else self._last.get(wait.held_by)
                return Cause(
                    CauseKind.WAITED,
                    f"{text}, then it {waited}",
                    event=cause.get("event") if released is None else released,
                    atoms=tuple(cause.get("atoms", ())),
                    key=wait.key,
                    held_by=wait.held_by,
                )
            cause = Cause.from_dict({**cause, "text": text})
        return dataclasses.replace(
            cause, text=f"{cause.text}; then it {waited}", key=wait.key, held_by=wait.held_by
        )

    def _ignore_cause(self, name: str) -> Cause:
        """Explain a skip by the engine's account of it: the link, its source, the depth.

        Linked to the source's completion (when the decider ran) for the link's
        target, and to the target's skip for the atoms the depth skipped with it,
        so ``why`` walks from any of them to the result the decider judged.
        """
        ask = getattr(self._engine, "ignore_cause", None)
        told = ask(name) if ask is not None else None
        if told is None:
            return Cause(CauseKind.DECIDER, "a decider on a link into it returned False")
        sources = " / ".join(repr(source) for source in told.sources)
        text = f"the decider on the link {sources} -> {told.target!r} returned False"
        judged = max((self._done[s] for s in told.sources if s in self._done), default=None)
        event = judged
        if name != told.target:
            text += f"; its depth {told.depth} skips this atom too"
            # The target's own skip, unless it is a flow (no event of its own).
            event = self._last.get(told.target, judged)
        return Cause(CauseKind.DECIDER, text, event=event, atoms=(*told.sources, told.target))

    def _told(self, name: str) -> Any:
        """The engine's own account of why ``name`` reverts or resets, if it gives one."""
        ask = getattr(self._engine, "revert_cause", None)
        return ask(name) if ask is not None else None

    def _failure_cause(
        self,
        name: str,
        verb: str,
        decided: Decided | None = None,
        told: Any = None,
    ) -> Cause:
        """Explain ``name`` reverting/retrying/resetting by the failure behind it.

        ``told`` is the engine's own account (``engine.revert_cause``: the
        failed atom, its failure, the retry and its decision), exact even when
        failures overlap; without it (an engine that gives none), the newest
        failure is taken and the decision inferred from the graph.
        """
        if told is not None:
            failed = str(told.failed)
            failure: Any = told.failure
            seq: int | None = self._failed_at.get(failed)
            retry, decision = told.retry, told.decision
        elif self._failure is None:
            return Cause(CauseKind.FAILURE, f"it {verb} (no failure was recorded in this log)")
        else:
            seq, failed, failure = self._failure.seq, self._failure.atom, self._failure.failure
            if decided is None:
                decided = self._graph.decision(failed, seq)
            retry, decision = decided.retry, decided.decision
        kind, words = _failed_words(failure)
        attempt = self._attempts.get(failed, 1)
        head = f"'{failed}' failed with {words} in attempt {attempt}"
        if retry is None:
            tail = "no retry controls it, so the whole flow reverts"
        else:
            tail = f"retry '{retry}' chose {decision}"
        return Cause(
            CauseKind.FAILURE,
            f"{head}; {tail}",
            event=seq,
            atoms=(failed,),
            failure=kind,
            retry=retry,
            decision=decision,
        )
