"""The resume plan: what resuming a stopped flow will do to each atom, and why.

Worked out from the stored states and intentions alone (nothing runs), by the
rules the engine applies when it loads a flow detail again (``doc/cli.rst``
lists them). The plan assumes nothing fails anew: a new failure changes the
rest of the run, which no plan can know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flowkit import states as st
from flowkit._utils.text import cells, log_safe, pad

__all__ = ["Action", "PlannedAtom", "ResumePlan", "plan_resume"]


class Action(StrEnum):
    """What resuming does with one atom."""

    #: Completed (or ignored, or already reverted): left alone.
    SKIP = "skip"
    #: Never ran: runs.
    RUN = "run"
    #: Was RUNNING when the run stopped: in doubt, runs again (at-least-once).
    RERUN = "rerun"
    #: Marked to revert: its revert runs.
    REVERT = "revert"
    #: Was REVERTING when the run stopped: in doubt, reverts again.
    REREVERT = "rerevert"
    #: A retry that chose RETRY: it reverts its scope and runs again.
    RETRY = "retry"
    #: Failed, and the failure was not yet resolved: resolving it comes first.
    RESOLVE = "resolve"
    #: Its revert failed: the engine does not try again; it stays as it is.
    STUCK = "stuck"
    #: Marked to revert, but after an atom whose revert failed: its revert waits
    #: for that one's, which is not tried again, so it stays as it is.
    BLOCKED = "blocked"
    #: The engine never resolves a failure (``never_resolve``) and one stands: it
    #: starts nothing new, so the atom stays as it is.
    HELD = "held"


@dataclass(frozen=True, slots=True)
class PlannedAtom:
    """One atom's part in the plan.

    Attributes:
        name: the atom's name.
        state: its stored state.
        intention: its stored intention.
        action: what resuming does with it.
        then_run: True when, after that, a retry's RETRY makes it run again.
        reason: why, in words.
    """

    name: str
    state: str
    intention: str
    action: Action
    then_run: bool
    reason: str

    @property
    def runs(self) -> bool:
        """Whether its ``execute`` will be called."""
        return self.action in (Action.RUN, Action.RERUN, Action.RETRY) or self.then_run

    @property
    def reverts(self) -> bool:
        """Whether its ``revert`` will be called."""
        return self.action in (Action.REVERT, Action.REREVERT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "intention": self.intention,
            "action": self.action.value,
            "then_run": self.then_run,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What resuming a flow detail will do.

    Attributes:
        flow_name: the flow's name.
        flow_uuid: its flow detail's uuid.
        flow_state: its stored state.
        note: a sentence about the flow as a whole.
        atoms: every atom, in the flow's order.
    """

    flow_name: str
    flow_uuid: str
    flow_state: str
    note: str
    atoms: tuple[PlannedAtom, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "uuid": self.flow_uuid,
            "name": self.flow_name,
            "state": self.flow_state,
            "note": self.note,
            "atoms": [a.to_dict() for a in self.atoms],
        }

    def to_text(self) -> str:
        """The plan as ``flows resume --dry-run`` prints it.

        The names, uuid and state come from the database, written by whichever
        process ran the flow: escaped (:func:`log_safe`), so that none forges a
        line of the plan or repaints the terminal, as ``flows list`` and
        ``show`` escape them.
        """
        name, uuid, state = log_safe(self.flow_name), log_safe(self.flow_uuid), log_safe(self.flow_state)
        lines = [f"resume plan for flow '{name}' ({uuid}), now {state}:"]
        lines.append(f"  {self.note}")
        names = [log_safe(a.name) for a in self.atoms]
        width = max((cells(n) for n in names), default=4)
        for atom, atom_name in zip(self.atoms, names, strict=True):
            action = atom.action.value + (" then run" if atom.then_run else "")
            lines.append(f"  {pad(atom_name, width)}  {action:<16} {log_safe(atom.reason)}")
        return "\n".join(lines)


_SKIP_REASONS = {
    st.SUCCESS: "completed in an earlier run",
    st.IGNORE: "ignored by a decider",
}


def plan_resume(
    flow_detail: Any, reach: Mapping[str, frozenset[str]] | None = None, never_resolve: bool = False
) -> ResumePlan:
    """Work out the resume plan of ``flow_detail``.

    Args:
        flow_detail: the stopped run's flow detail.
        reach: atom name -> every atom after it in the compiled graph. For a
            retry, what its RETRY resets and runs again (which atoms run again
            after their revert); for any atom, the atoms whose reverts come
            before its own (an atom after one whose revert failed is not
            reverted).
        never_resolve: the resuming engine's option of that name: a failure
            that stands is then neither retried nor reverted, and nothing new
            starts.
    """
    reach = reach or {}
    flow_state = flow_detail.state or st.PENDING
    details = list(flow_detail)
    if flow_state == st.SUCCESS:
        atoms = tuple(
            PlannedAtom(d.name, d.state or st.PENDING, d.intention, Action.SKIP, False, "the flow succeeded")
            for d in details
        )
        return ResumePlan(
            flow_detail.name, flow_detail.uuid, flow_state, "the flow already succeeded: nothing runs", atoms
        )
    if flow_state == st.REVERTED:
        atoms = tuple(
            PlannedAtom(d.name, d.state or st.PENDING, d.intention, Action.RUN, False, "the flow starts over")
            for d in details
        )
        note = "the flow was reverted: resuming resets it and runs every atom again from the start"
        return ResumePlan(flow_detail.name, flow_detail.uuid, flow_state, note, atoms)
    retrying = {d.name for d in details if d.intention == st.RETRY or d.state == st.RETRYING}
    stuck = {d.name for d in details if d.state == st.REVERT_FAILURE}
    planned = []
    for detail in details:
        state = detail.state or st.PENDING
        action, reason = _action(state, detail.intention)
        waits_for = sorted(stuck & reach.get(detail.name, frozenset()))
        if action == Action.REVERT and waits_for:
            # Reverts go from the last atom back: this one's waits for the stuck one's.
            action = Action.BLOCKED
            reason = f"marked to revert, but its revert waits for '{waits_for[0]}', whose revert failed"
        looping = sorted(r for r in retrying if detail.name in reach.get(r, frozenset()))
        # A RETRY resets everything after the retry and runs it again.
        then_run = bool(looping) and action in (Action.REVERT, Action.REREVERT, Action.SKIP)
        if then_run:
            reason += f"; then retry '{looping[0]}' runs it again"
        planned.append(PlannedAtom(detail.name, state, detail.intention, action, then_run, reason))
    if never_resolve and any(p.action == Action.RESOLVE for p in planned):
        planned = [_held(p) for p in planned]
    note = "assuming nothing fails anew (a new failure changes what follows)"
    return ResumePlan(flow_detail.name, flow_detail.uuid, flow_state, note, tuple(planned))


def _held(atom: PlannedAtom) -> PlannedAtom:
    """``atom`` as an engine with ``never_resolve`` leaves it while a failure stands."""
    if atom.action == Action.RESOLVE:
        reason = (
            "stays FAILURE: the engine never resolves a failure (never_resolve);"
            " resume with --engine serial to let its retry or a revert decide"
        )
    elif atom.action == Action.RUN:
        reason = "not run: a failure stands and the engine, with never_resolve, starts nothing new"
    else:
        return atom
    return PlannedAtom(atom.name, atom.state, atom.intention, Action.HELD, False, reason)


def _action(state: str, intention: str) -> tuple[Action, str]:
    if intention == st.RETRY or state == st.RETRYING:
        return Action.RETRY, "its RETRY decision stands: it reverts its scope and runs again"
    if intention == st.REVERT:
        if state in (st.SUCCESS, st.FAILURE):
            return Action.REVERT, "marked to revert when the run stopped"
        if state == st.REVERTING:
            return Action.REREVERT, "was REVERTING when the run stopped: in doubt, reverted again"
        if state == st.REVERT_FAILURE:
            return Action.STUCK, "its revert failed; resuming does not try it again"
        if state == st.REVERTED:
            return Action.SKIP, "already reverted"
        return Action.SKIP, "never ran: nothing to revert"
    if state in _SKIP_REASONS:
        return Action.SKIP, _SKIP_REASONS[state]
    if state == st.RUNNING:
        return Action.RERUN, "was RUNNING when the run stopped: in doubt, run again (at-least-once)"
    if state == st.FAILURE:
        return Action.RESOLVE, "failed and its failure was not yet resolved: its retry (or a revert) decides"
    if state == st.REVERT_FAILURE:
        return Action.STUCK, "its revert failed; resuming does not try it again"
    if state == st.REVERTED:
        return Action.SKIP, "already reverted"
    return Action.RUN, "not run yet"
