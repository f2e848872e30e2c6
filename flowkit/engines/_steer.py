"""Results that steer the run: a task's spawned sub-flow, a loop's until answer.

What :meth:`Runtime.complete` does with a result of a type registered in
:data:`flowkit._steering.STEERING` instead of storing it as it is. A run
without spawns or loops never gets one, so this module is imported on the
first rather than with the runtime: every engine module costs the first
``engines.load`` of a process its import (doc/benchmarks.rst).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowkit import _steering
from flowkit import exceptions as exc
from flowkit.engines._compiler import RETRY, Node
from flowkit.engines._runtime import SPAWNED_FLOW_KEY
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    from flowkit.engines._runtime import Runtime

__all__ = ["steer"]


def steer(runtime: Runtime, node: Node, value: Any) -> tuple[bool, Any] | None:
    """Act on a spawned sub-flow or a loop's answer; the outcome to store (None: handled)."""
    if _steering.STEERING[type(value)] == _steering.Steer.LOOP:
        scope = node.scope
        if type(scope.flow) in _steering.LOOPS and scope.children[-1] == node.index:
            runtime.scan_loops(scope)  # found at compile time or splice: made already
            assert runtime.loops is not None
            return runtime.loops.verdict(node, value)
        return True, value  # not a loop's until: an ordinary value
    if node.kind == RETRY:
        error = exc.InvalidFlowItem(
            f"retry '{node.name}' returned dynamic.subflow(); only tasks may spawn sub-flows", item=value
        )
        return False, Failure.from_exception(error)
    if runtime.scheduler.reverting(node.index):
        return True, None  # the flow is being reverted: nothing spawned would run
    try:
        runtime.spawns.spawn(node, value)
    except Exception:
        return False, Failure()
    if runtime._durable and not runtime.state.flow_meta.get(SPAWNED_FLOW_KEY):
        runtime.state.flow_meta[SPAWNED_FLOW_KEY] = True
        runtime.state.changed(None)
    return True, None
