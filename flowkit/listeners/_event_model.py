"""The causal event log's records: events, their causes, and a flow's log read back.

Plain frozen values, JSON-safe through ``to_dict``/``from_dict``, with no
engine or listener code: the report, ``flowkit flows why`` and the monitor
read them from a flow detail without importing what records them
(:mod:`flowkit.listeners.events`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from flowkit import states as st

__all__ = [
    "META_KEY",
    "Cause",
    "CauseKind",
    "Event",
    "EventLog",
    "TreeRow",
    "cause_text",
    "recorded_attempts",
]

#: The metadata key (of flow and atom details) under which events are kept.
META_KEY = "event_log"


class CauseKind(StrEnum):
    """What kind of thing caused a transition."""

    #: The flow's first run began.
    STARTED = "started"
    #: A later run picked the flow (or an in-doubt atom) up again.
    RESUMED = "resumed"
    #: Every predecessor had completed, so the atom could run.
    READY = "ready"
    #: Ready (its ``atoms`` completed), it waited for a slot of its concurrency key
    #: until the atom ``held_by`` gave one back.
    WAITED = "waited"
    #: ``execute`` or ``revert`` returned.
    RETURNED = "returned"
    #: The result was taken from the result cache instead of running ``execute``.
    CACHED = "cached"
    #: ``execute`` or ``revert`` raised.
    RAISED = "raised"
    #: A failure (and the decision taken about it) made the atom revert.
    FAILURE = "failure"
    #: A retry controller decided to run its scope again.
    RETRY = "retry"
    #: A decider on a link returned False: into the atom, or into an atom whose skip reaches it.
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
        key: the concurrency key whose slot the atom waited for before it
            started (:doc:`/limits`), when it did.
        held_by: the atom whose call gave that slot back (the event is its end).
    """

    kind: CauseKind
    text: str
    event: int | None = None
    atoms: tuple[str, ...] = ()
    failure: str | None = None
    retry: str | None = None
    decision: str | None = None
    key: str | None = None
    held_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (empty fields left out)."""
        out: dict[str, Any] = {"kind": self.kind.value, "text": self.text}
        if self.event is not None:
            out["event"] = self.event
        if self.atoms:
            out["atoms"] = list(self.atoms)
        if self.failure is not None:
            out["failure"] = self.failure
        if self.retry is not None:
            out["retry"] = self.retry
        if self.decision is not None:
            out["decision"] = self.decision
        if self.key is not None:
            out["key"] = self.key
        if self.held_by is not None:
            out["held_by"] = self.held_by
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
            key=data.get("key"),
            held_by=data.get("held_by"),
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


def cause_text(cause: Mapping[str, Any], state: str) -> str:
    """The sentence of a stored cause; made here for those recorded without one.

    The listener leaves it out of the two causes every atom gets (it became
    ready, its call returned), since it follows from the rest of the record.
    """
    text = cause.get("text")
    if text is not None:
        return str(text)
    kind = cause.get("kind")
    if kind == CauseKind.READY:
        atoms = cause.get("atoms")
        if not atoms:
            return "it is first in its flow"
        return ", ".join(f"'{a}'" for a in atoms) + " completed"
    if kind == CauseKind.RETURNED:
        return "revert returned" if state in ("REVERTED", "REVERT_FAILURE") else "execute returned"
    return ""


def recorded_attempts(atom_meta: Mapping[str, Any]) -> int:
    """How many executions of an atom its stored events record (0 when none are).

    The one count of attempts that outlives an engine: the event log numbers
    a resumed run's attempts on from it, and the tracing listener does too,
    so a span's ``flowkit.atom.attempt`` and the event's ``attempt`` agree.
    """
    return sum(1 for data in atom_meta.get(META_KEY, ()) if data["state"] == st.RUNNING)


def _stored(kind: str, name: str, data: Mapping[str, Any]) -> Event:
    state = str(data["state"])
    cause = data["cause"]
    if "text" not in cause:
        cause = {**cause, "text": cause_text(cause, state)}
    return Event(
        seq=int(data["seq"]),
        at=float(data["at"]),
        run=int(data.get("run", 1)),
        kind=kind,
        name=name,
        old_state=data.get("old"),
        state=state,
        attempt=int(data.get("attempt", 0)),
        cause=Cause.from_dict(cause),
    )


class TreeRow(NamedTuple):
    """One event of :meth:`EventLog.tree` (``event``), with how deep it sits (``depth``).

    ``depth`` is 0 for an event that nothing recorded caused; its cause's
    depth when it is that cause's only consequence (a chain stays level); one
    more when the cause led to several (a branch).
    """

    event: Event
    depth: int


@dataclass(frozen=True, slots=True)
class EventLog:
    """The events of one flow detail, oldest first.

    Attributes:
        events: every recorded event, by ``seq``.
    """

    events: tuple[Event, ...] = ()
    _by_seq: dict[int, Event] = field(default_factory=dict, repr=False, compare=False)
    # Each name's events, the flow's apart from its atoms' (a flow may hold an atom of
    # its own name): a report or `flows why` looks up every atom, and a scan of the
    # whole log per atom made a 10,000-atom report quadratic.
    _by_name: dict[tuple[bool, str], list[Event]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_seq.update((e.seq, e) for e in self.events)
        for event in self.events:
            self._by_name.setdefault((event.kind == "flow", event.name), []).append(event)

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

    def of(self, name: str, *, flow: bool | None = None) -> list[Event]:
        """The events of the atom (or flow) called ``name``, oldest first.

        Args:
            name: the atom's or the flow's name.
            flow: True for the flow's events only, False for the atom's only;
                None (the default) for both, which differ only when the flow
                holds an atom of its own name.
        """
        if flow is not None:
            return list(self._by_name.get((flow, name), ()))
        atoms, own = self._by_name.get((False, name), []), self._by_name.get((True, name), [])
        return sorted(atoms + own, key=lambda e: e.seq) if atoms and own else list(atoms or own)

    def get(self, seq: int) -> Event | None:
        """The event numbered ``seq``, if recorded."""
        return self._by_seq.get(seq)

    def why(self, name: str, limit: int = 12, *, flow: bool | None = None) -> list[Event]:
        """The chain of causes behind ``name``'s latest transition, newest first.

        Starts at the atom's last event and follows each cause's triggering
        event (the failure behind a revert, the retry decision behind a re-run,
        the predecessor whose completion made it ready) for at most ``limit``
        steps. Empty when nothing was recorded for ``name``. ``flow`` chooses
        between the flow and an atom of the same name, as in :meth:`of`.
        """
        own = self.of(name, flow=flow)
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

    def tree(self) -> list[TreeRow]:
        """The events as a tree of causes: each under the event that triggered it.

        An event's children are the events whose ``cause.event`` is its
        ``seq``. A chain (one consequence per event, as in a linear flow)
        stays at one depth, so only branches indent: a fan-out, a failure and
        the reverts it caused. Roots and siblings come in ``seq`` order and
        every event appears once.
        """
        children: dict[int, list[Event]] = {}
        roots: list[Event] = []
        for event in self.events:
            trigger = event.cause.event
            if trigger is None or trigger >= event.seq or trigger not in self._by_seq:
                roots.append(event)
            else:
                children.setdefault(trigger, []).append(event)
        rows: list[TreeRow] = []
        stack = [(event, 0) for event in reversed(roots)]
        while stack:
            event, depth = stack.pop()
            rows.append(TreeRow(event, depth))
            below = children.get(event.seq, ())
            step = depth if len(below) == 1 else depth + 1
            stack.extend((child, step) for child in reversed(below))
        return rows

    def to_list(self) -> list[dict[str, Any]]:
        """Every event as a JSON-safe dict."""
        return [e.to_dict() for e in self.events]
