"""Resetting: every atom back to PENDING for ``engine.reset()`` (:meth:`Runtime.reset_all`).

A run that is not reset never needs it, so this module is imported on the
first reset rather than with the runtime: every engine module costs the first
``engines.load`` of a process its import (doc/benchmarks.rst).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkit import states as st
from flowkit.engines._compiler import RETRY

if TYPE_CHECKING:
    from flowkit.engines._runtime import Runtime

__all__ = ["reset_all"]


def reset_all(runtime: Runtime) -> None:
    """Put every atom back to PENDING with the intention to execute, in one write."""
    state = runtime.state
    runtime._durable = state.durable
    with state.batch():  # one write for them all, unless a listener hears each (then each first)
        for node in runtime.compilation.atoms:
            record = runtime.records[node.index] = state.records[node.name]
            if record.state != st.PENDING:
                if node.kind != RETRY:
                    record.progress = 0.0
                # As Runtime.record(): the state first, then the intention, as TaskFlow.
                runtime._transition(node, st.PENDING)
            record.intention = st.EXECUTE
            if runtime._durable:
                state.changed(record)
        state.history.clear()
