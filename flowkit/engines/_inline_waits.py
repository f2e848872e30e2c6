"""The serial engine's calls that run on another thread while the engine thread waits.

A coroutine runs on the shared loop thread, a call with a time limit on a
helper thread; meanwhile the engine thread waits on a queue of its own and
takes the progress the call reports there, so the listeners hear it in the
engine's thread, as they hear a plain task's, and the run's records keep one
writer. A run of plain functions without time limits never waits so, so
this module is imported with the first such call rather than with the
runtime: every engine module costs the first ``engines.load`` of a process its
import (doc/benchmarks.rst).
"""

from __future__ import annotations

import contextlib
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from flowkit.engines._compiler import Node
from flowkit.engines._completions import Completions

if TYPE_CHECKING:
    from flowkit.engines._runtime import Call, Runtime

__all__ = ["await_inline", "run_timed_inline"]


def run_timed_inline(runtime: Runtime, node: Node, action: int, call: Call) -> tuple[bool, Any]:
    """Make a timed call on a helper thread and wait for it here (:meth:`Runtime.run_inline`).

    The task's progress comes back through the queue this thread waits on, so
    this thread stays the only one writing the run's records.
    """
    with _relaying_inline(runtime) as box:
        return runtime.timed_calls().run_inline(box, node, action, call, runtime.timeouts[node.index])


def await_inline(runtime: Runtime, node: Node, action: int, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on the shared loop thread; return (or raise) its outcome, relaying its progress."""
    from flowkit._utils.asyncio_bridge import result_of
    from flowkit.engines._bridges import shared_bridge  # not for timed calls: they need no loop

    with _relaying_inline(runtime) as box:
        box.started()
        future = shared_bridge().submit(coro)
        future.add_done_callback(lambda _ended: box.put(node, action, True, None))
        try:
            box.take(None)
        except BaseException:  # an interrupt (Ctrl-C) ends the run: the coroutine too
            future.cancel()
            raise
    return result_of(future)


@contextlib.contextmanager
def _relaying_inline(runtime: Runtime) -> Iterator[Completions]:
    """A queue this thread waits on for an inline call, taking its progress meanwhile.

    The progress the call reports on another thread comes through the queue,
    so the listeners hear it in this thread; the relay set before is put back
    when the call is done.
    """
    box = Completions()
    outer = runtime._relay
    runtime.relay_progress(box)
    try:
        yield box
    finally:
        runtime.relay_progress(outer)
