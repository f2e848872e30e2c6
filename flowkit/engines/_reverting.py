"""Undoing: an atom's revert begun and accounted for, and why it was reverted.

The runtime's revert half (:meth:`Runtime.begin` and :meth:`Runtime.complete`
of a ``REVERT``, :meth:`Runtime.cause_of`), made by the runtime on its first
revert. A successful run never reverts, so this module is imported then rather
than with the runtime: every engine module costs the first ``engines.load`` of a
process its import (doc/benchmarks.rst).
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit import states as st
from flowkit._utils.records import Record
from flowkit.engines._compiler import RETRY, Node
from flowkit.engines._runtime import Call, _then
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    from flowkit.engines._runtime import Runtime

__all__ = ["RevertCause", "Reverting", "run_revert"]


class RevertCause(Record):
    """Why an atom is being reverted (or was reset to run again): the failure resolved.

    Attributes:
        failed: the atom whose ``execute`` failed.
        failure: that failure.
        decision: ``RETRY``, ``REVERT`` or ``REVERT_ALL`` (None when no retry
            controls the failed atom: the whole flow reverts).
        retry: the retry whose decision it was (None with no decision).
    """

    failed: str
    failure: Failure | None
    decision: str | None
    retry: str | None


# The twin of the runtime's _run_execute (see there why there are two).
def run_revert(atom: Any, kwargs: dict[str, Any]) -> Any:
    """Call ``atom.revert(**kwargs)`` between its pre- and post-hooks (the post-hook always runs)."""
    try:
        atom.pre_revert()
        value = atom.revert(**kwargs)
    except BaseException:
        atom.post_revert()
        raise
    if type(value) is types.CoroutineType:
        return _then(value, atom.post_revert)
    atom.post_revert()
    return value


class Reverting:
    """A runtime's revert half: what it does to begin and to account for a revert.

    Args:
        runtime: the runtime whose records, storage and scheduler it works on.
    """

    __slots__ = ("_runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def begin(self, node: Node) -> Call:
        """Move ``node`` to REVERTING and return its revert's call.

        Raises:
            NotFound: an argument has no value; the caller fails the atom with it.
        """
        runtime = self._runtime
        record = runtime.records[node.index]
        assert record is not None
        if node.kind != RETRY:
            record.progress = 0.0  # as TaskFlow: a revert starts over from 0.0 (1.0 once reverted)
        runtime._transition(node, st.REVERTING)
        kwargs = runtime._fetch(node, node.revert_args, record)
        # A copy per call (a revert may keep or change it), made from the failures
        # this run tracks rather than by scanning every record: reverting n atoms
        # must not cost n * n.
        kwargs["flow_failures"] = dict(runtime._failures)
        atom = node.atom
        if node.kind == RETRY:
            kwargs["history"] = runtime.storage.get_retry_history(node.name)
            return Call(atom.revert, kwargs)  # type: ignore[union-attr]
        kwargs["result"] = record.failure if record.failure is not None else record.result
        if runtime.trace_sources:
            return runtime._traced(node.name, run_revert, atom, kwargs)
        return Call(run_revert, {"atom": atom, "kwargs": kwargs})

    def complete(self, node: Node, ok: bool, value: Any) -> None:
        """Store the outcome of ``node``'s revert and tell the scheduler."""
        runtime = self._runtime
        record = runtime.records[node.index]
        assert record is not None
        encoded = None
        if ok and runtime._durable:
            try:
                encoded = runtime.check_storable(node, "revert result", value)
            except exc.InvalidFormat as err:
                ok, value = False, Failure.from_exception(err)
        if ok:
            record.revert_result, record.revert_failure = value, None
            if encoded is not None:
                runtime.state.remember_encoded(node.name, "revert_results", value, encoded)
            if node.kind == RETRY:
                runtime.state.history.pop(node.name, None)
            else:
                record.progress = 1.0
            runtime._transition(node, st.REVERTED, value)
            runtime.scheduler.reverted(node, True)
            return
        # As TaskFlow, a failed revert keeps only its failure: the execute result the
        # revert could not undo is dropped (the flow halts; a reset starts it afresh).
        record.revert_failure, record.revert_result = value, None
        if node.kind != RETRY:
            record.result = None
        runtime._transition(node, st.REVERT_FAILURE, value)
        runtime.retained.append(value)
        runtime.scheduler.reverted(node, False)

    def cause_of(self, name: str) -> RevertCause | None:
        """The failure resolution behind ``name``'s latest revert or reset in this run, if any."""
        runtime = self._runtime
        resolution = runtime._causes.get(name)
        if resolution is None:
            return None
        failed = runtime.records[resolution.failed.index]
        return RevertCause(
            failed=resolution.failed.name,
            failure=None if failed is None else failed.failure,
            decision=None if resolution.decision is None else str(resolution.decision),
            retry=None if resolution.retry is None else resolution.retry.name,
        )
