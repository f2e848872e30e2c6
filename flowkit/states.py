"""The states of atoms, flows and jobs, and which moves between them are allowed.

States are plain strings (the same strings TaskFlow uses, so stored records and
listeners interoperate). Transitions are data: each table below is a frozenset of
``(old, new)`` pairs with a comment saying when that move happens, and the
``check_*_transition`` functions are the only code that reads them. The docs'
state tables are generated from these sets (see ``doc/states.rst``).
"""

from __future__ import annotations

from flowkit import exceptions as exc

__all__ = [
    "ANALYZING",
    "CLAIMED",
    "COMPLETE",
    "EXECUTE",
    "FAILURE",
    "FLOW_STATES",
    "FLOW_TRANSITIONS",
    "IGNORE",
    "INTENTIONS",
    "JOB_TRANSITIONS",
    "PENDING",
    "RESUMING",
    "RETRY",
    "RETRYING",
    "RETRY_TRANSITIONS",
    "REVERT",
    "REVERTED",
    "REVERTING",
    "REVERT_FAILURE",
    "RUNNING",
    "SCHEDULING",
    "SUCCESS",
    "SUSPENDED",
    "SUSPENDING",
    "TASK_TRANSITIONS",
    "UNCLAIMED",
    "WAITING",
    "check_flow_transition",
    "check_job_transition",
    "check_retry_transition",
    "check_task_transition",
]

# -- job states ----------------------------------------------------------------
UNCLAIMED = "UNCLAIMED"
CLAIMED = "CLAIMED"
COMPLETE = "COMPLETE"

# -- flow and atom states ------------------------------------------------------
PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVERTING = "REVERTING"
REVERTED = "REVERTED"
REVERT_FAILURE = "REVERT_FAILURE"
SUSPENDING = "SUSPENDING"
SUSPENDED = "SUSPENDED"
RESUMING = "RESUMING"
RETRYING = "RETRYING"
IGNORE = "IGNORE"

# -- atom intentions: what the engine means to do with an atom next ------------
EXECUTE = "EXECUTE"
REVERT = "REVERT"
RETRY = "RETRY"
INTENTIONS = (EXECUTE, IGNORE, REVERT, RETRY)

#: Every state a flow can be stored in.
FLOW_STATES = frozenset({PENDING, RUNNING, SUCCESS, FAILURE, REVERTED, SUSPENDING, SUSPENDED, RESUMING})

# -- engine-internal states, yielded by ``run_iter`` but never stored ----------
SCHEDULING = "SCHEDULING"
WAITING = "WAITING"
ANALYZING = "ANALYZING"


JOB_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        (UNCLAIMED, CLAIMED),  # a conductor claimed the job
        (CLAIMED, UNCLAIMED),  # the claim was lost or given up (abandon)
        (CLAIMED, COMPLETE),  # the job's work is done (consume)
    }
)

FLOW_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        (PENDING, RUNNING),  # an engine starts running the flow
        (RUNNING, SUCCESS),  # every atom finished
        (RUNNING, FAILURE),  # something failed and could not be reverted
        (RUNNING, REVERTED),  # something failed and everything was undone
        (RUNNING, SUSPENDING),  # suspend() was asked for while running
        (RUNNING, RESUMING),  # an engine re-opens a flow it finds running
        (SUCCESS, RUNNING),  # run again after new atoms were added
        (FAILURE, RUNNING),  # try again after a failure was fixed
        (REVERTED, PENDING),  # reset after a revert, to run afresh
        (SUCCESS, PENDING),  # reset after success, to run afresh
        (SUSPENDING, SUSPENDED),  # running atoms finished, nothing new started
        (SUSPENDING, SUCCESS),  # everything finished while suspending
        (SUSPENDING, FAILURE),  # something failed while suspending
        (SUSPENDING, REVERTED),  # the revert finished while suspending
        (SUSPENDING, RESUMING),  # an engine re-opens a flow left suspending
        (SUSPENDED, RUNNING),  # run() after a suspend
        (RESUMING, SUSPENDED),  # preparation done, ready to run
    }
)

# Moves into the engine's bookkeeping states from a state where the flow is at
# rest are harmless no-ops (for example suspending a flow that already ended).
_IGNORED_FLOW_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    (old, new)
    for old in (PENDING, FAILURE, SUCCESS, SUSPENDED, REVERTED)
    for new in (SUSPENDING, SUSPENDED, RESUMING)
    if old != new
)

TASK_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        (PENDING, RUNNING),  # the engine starts executing it
        (PENDING, IGNORE),  # a decider (or a retry's choice) skips it
        (RUNNING, SUCCESS),  # execute returned
        (RUNNING, FAILURE),  # execute raised
        (FAILURE, REVERTING),  # undo the failed atom itself
        (SUCCESS, REVERTING),  # undo because something else failed
        (REVERTING, REVERTED),  # revert returned
        (REVERTING, REVERT_FAILURE),  # revert raised: terminal for this run
        (REVERTED, PENDING),  # a retry runs its scope again
        (IGNORE, PENDING),  # a retry runs its scope again
    }
)

RETRY_TRANSITIONS: frozenset[tuple[str, str]] = TASK_TRANSITIONS | {
    (SUCCESS, RETRYING),  # a failure in its scope asked it to try again
    (RETRYING, RUNNING),  # it runs again to pick the next attempt's values
}


def check_job_transition(old_state: str, new_state: str) -> bool:
    """Tell whether a job may move from ``old_state`` to ``new_state``.

    Returns:
        True for an allowed move, False when old and new are the same.

    Raises:
        InvalidState: the move is not allowed.
    """
    if old_state == new_state:
        return False
    if (old_state, new_state) in JOB_TRANSITIONS:
        return True
    raise exc.InvalidState(f"Job transition from {old_state!r} to {new_state!r} is not allowed")


def check_flow_transition(old_state: str, new_state: str) -> bool:
    """Tell whether a flow may move from ``old_state`` to ``new_state``.

    Returns:
        True for an allowed move; False for a no-op (same state, or a harmless
        bookkeeping move that should be skipped).

    Raises:
        InvalidState: the move is not allowed.
    """
    if old_state == new_state:
        return False
    pair = (old_state, new_state)
    if pair in FLOW_TRANSITIONS:
        return True
    if pair in _IGNORED_FLOW_TRANSITIONS:
        return False
    raise exc.InvalidState(f"Flow transition from {old_state!r} to {new_state!r} is not allowed")


def check_task_transition(old_state: str, new_state: str) -> bool:
    """Tell whether a task may move from ``old_state`` to ``new_state``."""
    return (old_state, new_state) in TASK_TRANSITIONS


def check_retry_transition(old_state: str, new_state: str) -> bool:
    """Tell whether a retry may move from ``old_state`` to ``new_state``."""
    return (old_state, new_state) in RETRY_TRANSITIONS
