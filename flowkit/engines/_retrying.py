"""Retries: asking a retry what to do about a failure, and starting its scope again.

The runtime's retry half (:meth:`Runtime.ask_retry`, and :meth:`Runtime.begin`
of a ``RETRY_AGAIN``). A successful run never asks a retry, so this module is
imported on the first failure a retry decides rather than with the runtime:
every engine module costs the first ``engines.load`` of a process its import
(doc/benchmarks.rst).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkit import states as st
from flowkit.engines._compiler import Node
from flowkit.retry import Decision

if TYPE_CHECKING:
    from flowkit.engines._runtime import Call, Runtime

__all__ = ["ask_retry", "begin_again"]


def ask_retry(runtime: Runtime, retry: Node, failed: Node, origin: Node) -> Decision:
    """Record ``origin``'s failure in ``retry``'s history and return its ``on_failure`` decision.

    Raises:
        ValueError: ``on_failure`` answered something that is not a decision.
    """
    origin_record = runtime.records[origin.index]
    assert origin_record is not None and origin_record.failure is not None
    runtime.storage.save_retry_failure(retry.name, failed.name, origin_record.failure)
    record = runtime.records[retry.index]
    assert record is not None
    kwargs = runtime._fetch(retry, retry.exec_args, record)
    kwargs["history"] = runtime.storage.get_retry_history(retry.name)
    answer = retry.atom.on_failure(**kwargs)  # type: ignore[union-attr]
    try:
        return Decision(answer)
    except ValueError as err:
        # TaskFlow's words first (log scrapers match them), then whose answer it was.
        raise ValueError(
            f"Unknown atom failure resolution action/strategy {answer!r} (the on_failure of retry "
            f"{retry.name!r} returned it; a retry decides {[str(d) for d in Decision]})"
        ) from err


def begin_again(runtime: Runtime, node: Node) -> Call:
    """Move retry ``node`` to RETRYING, put its scope back to PENDING, and begin it anew.

    Raises:
        NotFound: an argument has no value; the caller fails the atom with it.
    """
    runtime._transition(node, st.RETRYING)
    with runtime.notices_held():  # the scope's reset is whole before a listener hears of it
        if runtime.loops is not None and runtime.loops.present:
            # First, so the atoms going back to PENDING are told their new iteration.
            runtime.loops.restart_scope(node, runtime.scheduler.scope_of(node))
        runtime.scheduler.retry_restarted(node)
    return runtime._begin_execute(node)
