"""A guarded atom's call: the authoring layers' guard may answer it from the result cache.

:meth:`Runtime.begin_or_fail` hands a guarded atom's call to the runtime's
:class:`Guarding` (:mod:`flowkit._guards`: type validation, caching), and the
cache asks it which provider gave each argument. A flow whose atoms have no
guard never gets here, so this module is imported with the first guarded call
rather than with the runtime: every engine module costs the first
``engines.load`` of a process its import (doc/benchmarks.rst).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from flowkit.engines import _scheduler as sch
from flowkit.engines._compiler import ArgPlan, Node
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    from flowkit.engines._runtime import Call, Runtime

__all__ = ["Guarding"]


class Guarding:
    """A runtime's guarded calls: a guard may answer them from the cache.

    Args:
        runtime: the runtime whose calls it completes and whose records it reads.
    """

    __slots__ = ("_runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def guarded(self, guard: Any, node: Node, action: int, call: Call) -> Call | None:
        """Let ``guard`` answer from the cache instead of calling; the call to make (None: answered)."""
        runtime = self._runtime
        if action == sch.REVERT:
            if not guard.hit:
                guard.on_revert()  # its revert undoes the call: its entry goes
                return call
            value: Any = None  # revert only what this run executed
        else:
            try:
                hit, value = guard.on_begin(call.kwargs["kwargs"], functools.partial(self.source_of, node))
            except Exception:
                runtime.complete(node, action, False, Failure())
                return None
            if not hit:
                return call
        runtime.complete(node, action, True, value)
        return None

    def source_of(self, node: Node, plan: ArgPlan) -> int:
        """Which node's result gives ``node`` its argument ``plan.arg`` now (:meth:`Runtime.source_of`)."""
        runtime = self._runtime
        record = runtime.records[node.index]
        symbol = plan.symbol
        injected = record.injected if record is not None else None
        if (injected is not None and symbol in injected) or symbol in runtime.state.store:
            return -1
        provider = plan.provider
        if provider < 0 or not runtime._has_no_result(provider):
            return provider
        return runtime.compilation.resolve(node, symbol, runtime._has_no_result)
