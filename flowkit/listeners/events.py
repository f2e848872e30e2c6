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

What is inferred, not observed: the listener hears notifications, not the
scheduler's reasoning, so it derives causes from the compiled graph and the
stored states at the moment each notification arrives:

* RUNNING: the predecessor atoms (through nested flows) whose completion came
  last; a retry's reset when the atom runs again inside a retry's scope; the
  resume when the atom was RUNNING (in doubt) when the previous run stopped.
* REVERTING / RETRYING / PENDING: the newest execute failure, and the decision
  read from the controlling retries' stored intentions (RETRY), or from whether
  the reverting atom lies inside the retry's scope (REVERT) or outside it
  (REVERT_ALL, or a REVERT that an outer retry widened).
* SUCCESS, FAILURE, REVERTED, REVERT_FAILURE: what ``execute``/``revert`` did.

Without a listener attached nothing is recorded and nothing is paid; with it,
each transition costs one small dict and a metadata update (measured in
``tools/bench_events.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flowkit import states as st
from flowkit.listeners import base
from flowkit.retry import Retry
from flowkit.types.failure import Failure

__all__ = [
    "META_KEY",
    "Cause",
    "CauseKind",
    "Event",
    "EventLog",
    "EventLogListener",
]

#: The metadata key (of flow and atom details) under which events are kept.
META_KEY = "event_log"

#: Atom states that end an ``execute`` or a ``revert``.
_DONE = frozenset({st.SUCCESS, st.IGNORE})


class CauseKind(StrEnum):
    """What kind of thing caused a transition."""

    #: The flow's first run began.
    STARTED = "started"
    #: A later run picked the flow (or an in-doubt atom) up again.
    RESUMED = "resumed"
    #: Every predecessor had completed, so the atom could run.
    READY = "ready"
    #: ``execute`` or ``revert`` returned.
    RETURNED = "returned"
    #: ``execute`` or ``revert`` raised.
    RAISED = "raised"
    #: A failure (and the decision taken about it) made the atom revert.
    FAILURE = "failure"
    #: A retry controller decided to run its scope again.
    RETRY = "retry"
    #: A decider on a link into the atom returned False.
    DECIDER = "decider"
    #: The flow ended (its atoms all finished, or a failure ended it).
    FINISHED = "finished"
    #: Something else the engine was asked to do (prepare, suspend, reset).
    ENGINE = "engine"


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a transition happened.

    Attributes:
        kind: what kind of cause.
        text: one readable sentence.
        event: the ``seq`` of the event that triggered this one (a predecessor's
            completion, the failure), when there is one.
        atoms: the atoms involved (predecessors, the failed atom).
        failure: the exception type name of the failure involved.
        retry: the retry controller whose decision is involved.
        decision: that decision (``RETRY``, ``REVERT``, ``REVERT_ALL``).
    """

    kind: CauseKind
    text: str
    event: int | None = None
    atoms: tuple[str, ...] = ()
    failure: str | None = None
    retry: str | None = None
    decision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (empty fields left out)."""
        out: dict[str, Any] = {"kind": self.kind.value, "text": self.text}
        if self.event is not None:
            out["event"] = self.event
        if self.atoms:
            out["atoms"] = list(self.atoms)
        for key in ("failure", "retry", "decision"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cause:
        """Rebuild a cause from :meth:`to_dict` output."""
        return cls(
            kind=CauseKind(data["kind"]),
            text=str(data.get("text", "")),
            event=data.get("event"),
            atoms=tuple(data.get("atoms", ())),
            failure=data.get("failure"),
            retry=data.get("retry"),
            decision=data.get("decision"),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One transition of the flow or of one atom.

    Attributes:
        seq: its position in the flow's log (increasing across runs).
        at: wall-clock time, seconds since the epoch.
        run: which run of the flow (1, then 2 for the first resume...).
        kind: ``flow``, ``task`` or ``retry``.
        name: the flow's or the atom's name.
        old_state: the state it left.
        state: the state it entered.
        attempt: for atoms, which execution this belongs to (1 for the first).
        cause: why.
    """

    seq: int
    at: float
    run: int
    kind: str
    name: str
    old_state: str | None
    state: str
    attempt: int
    cause: Cause

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict with every field (the cause nested)."""
        return {
            "seq": self.seq,
            "at": self.at,
            "run": self.run,
            "kind": self.kind,
            "name": self.name,
            "old_state": self.old_state,
            "state": self.state,
            "attempt": self.attempt,
            "cause": self.cause.to_dict(),
        }

    def describe(self) -> str:
        """``name STATE (attempt n, run r): cause text``."""
        where = f"run {self.run}" if self.kind == "flow" else f"attempt {self.attempt}, run {self.run}"
        return f"{self.name} {self.state} ({where}): {self.cause.text}"


def _stored(kind: str, name: str, data: Mapping[str, Any]) -> Event:
    return Event(
        seq=int(data["seq"]),
        at=float(data["at"]),
        run=int(data.get("run", 1)),
        kind=kind,
        name=name,
        old_state=data.get("old"),
        state=str(data["state"]),
        attempt=int(data.get("attempt", 0)),
        cause=Cause.from_dict(data["cause"]),
    )


@dataclass(frozen=True, slots=True)
class EventLog:
    """The events of one flow detail, oldest first.

    Attributes:
        events: every recorded event, by ``seq``.
    """

    events: tuple[Event, ...] = ()
    _by_seq: dict[int, Event] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_seq.update((e.seq, e) for e in self.events)

    @classmethod
    def from_flow_detail(cls, flow_detail: Any) -> EventLog:
        """Read the events kept in a flow detail and its atom details."""
        found: list[Event] = []
        for data in (flow_detail.meta or {}).get(META_KEY, ()):
            found.append(_stored("flow", flow_detail.name, data))
        for detail in flow_detail:
            kind = "retry" if type(detail).__name__ == "RetryDetail" else "task"
            for data in (detail.meta or {}).get(META_KEY, ()):
                found.append(_stored(kind, detail.name, data))
        found.sort(key=lambda e: e.seq)
        return cls(tuple(found))

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def __bool__(self) -> bool:
        return bool(self.events)

    def of(self, name: str) -> list[Event]:
        """The events of the atom (or flow) called ``name``, oldest first."""
        return [e for e in self.events if e.name == name]

    def get(self, seq: int) -> Event | None:
        """The event numbered ``seq``, if recorded."""
        return self._by_seq.get(seq)

    def why(self, name: str, limit: int = 12) -> list[Event]:
        """The chain of causes behind ``name``'s latest transition, newest first.

        Starts at the atom's last event and follows each cause's triggering
        event (the failure behind a revert, the retry decision behind a re-run,
        the predecessor whose completion made it ready) for at most ``limit``
        steps. Empty when nothing was recorded for ``name``.
        """
        own = self.of(name)
        if not own:
            return []
        chain = [own[-1]]
        seen = {own[-1].seq}
        while len(chain) < limit:
            trigger = chain[-1].cause.event
            nxt = None if trigger is None else self._by_seq.get(trigger)
            if nxt is None or nxt.seq in seen:
                break
            seen.add(nxt.seq)
            chain.append(nxt)
        return chain

    def to_list(self) -> list[dict[str, Any]]:
        """Every event as a JSON-safe dict."""
        return [e.to_dict() for e in self.events]


Clock = Callable[[], float]


def _failure_words(failure: Any) -> tuple[str | None, str]:
    if isinstance(failure, Failure):
        names = failure.exception_type_names
        kind = names[0].rpartition(".")[2] if names else "Exception"
        return kind, f"{kind}: {failure.exception_str}" if failure.exception_str else kind
    return None, "an error"


#: Marks the details of a restart the listener records on the engine's behalf.
_INFERRED = "inferred_restart"
_UNANNOUNCED = " (unannounced by the engine: its time is when it ended)"


def state_before(state: str) -> str | None:
    """The state an atom is in while working towards ``state`` (RUNNING before SUCCESS...)."""
    if state in (st.SUCCESS, st.FAILURE):
        return st.RUNNING
    if state in (st.REVERTED, st.REVERT_FAILURE):
        return st.REVERTING
    return None


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

    def __init__(self, engine: Any, clock: Clock = time.time) -> None:
        super().__init__(engine)
        self._clock = clock
        self._seq = 0
        self._run = 0
        self._nodes: dict[str, Any] | None = None
        #: atom name -> how many times it entered RUNNING.
        self._attempts: dict[str, int] = {}
        #: atom name -> seq of its latest completion (SUCCESS/IGNORE).
        self._done: dict[str, int] = {}
        #: the newest execute failure: (seq, atom name, failure).
        self._failure: tuple[int, str, Any] | None = None
        #: atom name -> the cause of the retry decision that reset it.
        self._retried: dict[str, Cause] = {}
        #: atoms that were RUNNING/REVERTING when this run began (in doubt).
        self._in_doubt: set[str] = set()
        #: atom name -> seq of its latest event.
        self._last: dict[str, int] = {}
        #: atom name -> its events so far (what its metadata holds).
        self._atom_events: dict[str, list[dict[str, Any]]] = {}
        #: atom name -> its predecessor atoms.
        self._preds: dict[str, list[str]] = {}
        #: failure seq -> the (retry, decision) inferred for it.
        self._decisions: dict[int, tuple[str | None, str | None]] = {}

    @property
    def log(self) -> EventLog:
        """Everything recorded for this flow so far (earlier runs included)."""
        return EventLog.from_flow_detail(self._engine.storage.flow_detail)

    # -- starting a run ---------------------------------------------------------------

    def _begin_run(self) -> None:
        """Number this run and pick up the seq/attempt counters of earlier ones."""
        storage = self._engine.storage
        earlier = storage.flow_meta.get(META_KEY) or ()
        self._run = 1 + max((int(e.get("run", 1)) for e in earlier), default=0)
        self._seq = max((int(e["seq"]) for e in earlier), default=0)
        if not earlier:
            return
        for name, node in self._graph().items():
            if node is None:
                continue
            state = storage.get_atom_state(name)
            if state in (st.RUNNING, st.REVERTING):
                self._in_doubt.add(name)
            stored = list(storage.get_atom_metadata(name).get(META_KEY, ()))
            self._atom_events[name] = stored
            for data in stored:
                self._seq = max(self._seq, int(data["seq"]))
                self._last[name] = max(self._last.get(name, 0), int(data["seq"]))
                if data["state"] == st.RUNNING:
                    self._attempts[name] = self._attempts.get(name, 0) + 1
                elif data["state"] in _DONE:
                    self._done[name] = int(data["seq"])
                elif data["state"] == st.FAILURE and (
                    self._failure is None or self._failure[0] < int(data["seq"])
                ):
                    cause = data.get("cause", {})
                    self._failure = (int(data["seq"]), name, cause.get("failure"))

    def _graph(self) -> dict[str, Any]:
        """Atom name -> compiled node (empty when the engine exposes no graph)."""
        if self._nodes is None:
            compilation = getattr(self._engine, "compilation", None)
            atoms = getattr(compilation, "atoms", None) or ()
            self._nodes = {node.name: node for node in atoms}
        return self._nodes

    # -- recording ----------------------------------------------------------------

    def _record(self, kind: str, name: str, old: str | None, state: str, attempt: int, cause: Cause) -> int:
        self._seq += 1
        data: dict[str, Any] = {
            "seq": self._seq,
            "at": self._clock(),
            "run": self._run,
            "old": old,
            "state": state,
            "attempt": attempt,
            "cause": cause.to_dict(),
        }
        storage = self._engine.storage
        if kind == "flow":
            # A new list each time: a backend may hold on to the one it was given.
            storage.update_flow_metadata({META_KEY: [*(storage.flow_meta.get(META_KEY) or ()), data]})
        else:
            # This listener's own copy of the atom's list: no read of the metadata back.
            events = [*self._atom_events.get(name, ()), data]
            self._atom_events[name] = events
            storage.update_atom_metadata(name, {META_KEY: events})
        return self._seq

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        if not self._run:
            self._begin_run()
        old = details.get("old_state")
        if state == st.RUNNING:
            cause = (
                Cause(CauseKind.STARTED, "the flow started")
                if self._run == 1
                else Cause(CauseKind.RESUMED, f"run {self._run} resumed the flow (it was {old})")
            )
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
        if self._failure is None:
            return Cause(CauseKind.FINISHED, f"the flow ended {state}")
        seq, name, failure = self._failure
        kind, words = _failure_words(failure)
        if kind is None and isinstance(failure, str):
            kind, words = failure, failure
        return Cause(
            CauseKind.FINISHED,
            f"'{name}' failed with {words}; the flow ended {state}",
            event=seq,
            atoms=(name,),
            failure=kind,
        )

    def _task_receiver(self, state: str, details: base.Details) -> None:
        self._atom_event("task", details["task_name"], state, details)

    def _retry_receiver(self, state: str, details: base.Details) -> None:
        self._atom_event("retry", details["retry_name"], state, details)

    def _atom_event(self, kind: str, name: str, state: str, details: base.Details) -> None:
        if not self._run:
            self._begin_run()
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
        seq = self._record(kind, name, old, state, attempt, cause)
        self._last[name] = seq
        if state in _DONE:
            self._done[name] = seq
        elif state == st.FAILURE:
            self._failure = (seq, name, details.get("result"))

    # -- inferring causes ---------------------------------------------------------

    def _cause(self, name: str, old: str | None, state: str, details: base.Details, attempt: int) -> Cause:
        if state == st.RUNNING:
            return self._running_cause(name, attempt, bool(details.get(_INFERRED)))
        if state in (st.SUCCESS, st.REVERTED):
            what = "execute" if state == st.SUCCESS else "revert"
            # Linked to the atom's start, so a chain of causes walks on from there.
            return Cause(CauseKind.RETURNED, f"{what} returned", event=self._last.get(name))
        if state in (st.FAILURE, st.REVERT_FAILURE):
            what = "execute" if state == st.FAILURE else "revert"
            kind, words = _failure_words(details.get("result"))
            return Cause(CauseKind.RAISED, f"{what} raised {words}", failure=kind)
        if state == st.REVERTING:
            if name in self._in_doubt and old == st.REVERTING:
                self._in_doubt.discard(name)
                note = _UNANNOUNCED if details.get(_INFERRED) else ""
                return Cause(
                    CauseKind.RESUMED,
                    f"it was REVERTING when run {self._run - 1} stopped: reverted again (in doubt){note}",
                )
            return self._failure_cause(name, "reverts")
        if state == st.RETRYING:
            return self._failure_cause(name, "retries its scope")
        if state == st.PENDING:
            retried = self._failure_cause(name, "is reset")
            if retried.decision == "RETRY":
                self._retried[name] = retried
            return retried if self._failure is not None else Cause(CauseKind.ENGINE, "reset")
        if state == st.IGNORE:
            return Cause(CauseKind.DECIDER, "a decider on a link into it returned False")
        return Cause(CauseKind.ENGINE, f"moved to {state}")

    def _running_cause(self, name: str, attempt: int, inferred: bool) -> Cause:
        if name in self._in_doubt:
            self._in_doubt.discard(name)
            note = _UNANNOUNCED if inferred else ""
            return Cause(
                CauseKind.RESUMED,
                f"it was RUNNING when run {self._run - 1} stopped: run again (in doubt){note}",
            )
        retried = self._retried.pop(name, None)
        node = self._graph().get(name)
        if retried is None and node is not None and isinstance(node.atom, Retry) and attempt > 1:
            # A retry runs again only because it chose RETRY.
            retried = self._failure_cause(name, "runs again", decided=(name, "RETRY"))
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
        preds = self._predecessors(name)
        done = [(self._done[p], p) for p in preds if p in self._done]
        if not preds:
            return Cause(CauseKind.READY, "it is first in its flow")
        last_seq = max(done)[0] if done else None
        names = ", ".join(f"'{p}'" for p in preds)
        return Cause(CauseKind.READY, f"{names} completed", event=last_seq, atoms=tuple(preds))

    def _predecessors(self, name: str) -> list[str]:
        """The atoms whose completion ``name`` waits for, through nested flows (cached)."""
        known = self._preds.get(name)
        if known is not None:
            return known
        node = self._graph().get(name)
        if node is None:
            return []
        compilation = self._engine.compilation
        nodes = compilation.nodes
        found: list[str] = []
        seen: set[int] = set()
        stack = list(node.pred)
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            other = nodes[index]
            if other.atom is None:
                stack.extend(other.pred)
            else:
                found.append(other.name)
        found.reverse()
        self._preds[name] = found
        return found

    def _retry_chain(self, name: str) -> list[Any]:
        """The retries controlling ``name``, innermost first."""
        node = self._graph().get(name)
        if node is None:
            return []
        nodes = self._engine.compilation.nodes
        chain = []
        index = getattr(node, "retry", -1)
        while index is not None and index >= 0:
            chain.append(nodes[index])
            index = getattr(nodes[index], "retry", -1)
        return chain

    def _failure_cause(self, name: str, verb: str, decided: tuple[str, str] | None = None) -> Cause:
        """Explain ``name`` reverting/retrying/resetting by the newest failure."""
        if self._failure is None:
            return Cause(CauseKind.FAILURE, f"it {verb} (no failure was recorded in this log)")
        seq, failed, failure = self._failure
        kind, words = _failure_words(failure)
        if kind is None and isinstance(failure, str):
            kind, words = failure, failure
        attempt = self._attempts.get(failed, 1)
        head = f"'{failed}' failed with {words} in attempt {attempt}"
        retry, decision = decided if decided is not None else self._decision(failed, name)
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

    def _decision(self, failed: str, subject: str) -> tuple[str | None, str | None]:
        """Infer (retry name, decision) taken after the newest failure (of ``failed``).

        Worked out once per failure, at its first consequence, when the
        scheduler has marked every atom it will revert: the innermost retry
        that chose RETRY, else the innermost whose scope holds every atom
        meant to revert (REVERT), else REVERT_ALL.
        """
        assert self._failure is not None
        known = self._decisions.get(self._failure[0])
        if known is not None:
            return known
        chain = self._retry_chain(failed)
        decided: tuple[str | None, str | None] = (None, None)
        if chain:
            storage = self._engine.storage
            reverting = [n for n in self._graph() if storage.get_atom_intention(n) in (st.REVERT, st.RETRY)]
            decided = (chain[-1].name, "REVERT_ALL")
            for retry in chain:
                if (
                    storage.get_atom_intention(retry.name) == st.RETRY
                    or storage.get_atom_state(retry.name) == st.RETRYING
                ):
                    decided = (retry.name, "RETRY")
                    break
                if all(n == retry.name or retry in self._retry_chain(n) for n in reverting):
                    decided = (retry.name, "REVERT")
                    break
        self._decisions[self._failure[0]] = decided
        return decided
