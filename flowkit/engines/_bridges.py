"""The loop threads on which the synchronous engines run the coroutines they meet.

An ``async def`` task (or revert) called by the serial or parallel engine
returns a coroutine; it runs on a process-wide event-loop thread, one per
nesting level. A run of plain functions never makes one, so this module is
imported with the first coroutine rather than with the runtime: every engine
module costs the first ``engines.load`` of a process its import
(doc/benchmarks.rst).
"""

from __future__ import annotations

import _thread
import os

from flowkit._utils.asyncio_bridge import NESTING, EventLoopThread

__all__ = ["shared_bridge"]

# The process-wide loop threads for coroutines met by the synchronous engines: the
# first for coroutines called from outside any of them, the next for those of a
# flow a coroutine runs itself, and so on.
_BRIDGES: list[EventLoopThread] = []
_BRIDGE_LOCK = _thread.allocate_lock()


def shared_bridge() -> EventLoopThread:
    """The loop thread for a coroutine of the synchronous engines, one per nesting level.

    A coroutine that runs a flow of its own blocks its loop's thread until that
    flow ends: handing the flow's coroutines to the same loop waited forever.
    """
    depth = NESTING.get()
    with _BRIDGE_LOCK:
        while len(_BRIDGES) <= depth:
            _BRIDGES.append(EventLoopThread())
        return _BRIDGES[depth]


def _forget_bridges() -> None:
    """In a forked child: the loop threads stayed in the parent, so drop their bridges.

    An ``async def`` task run in the child (a process pool forked after the parent
    ran one) would otherwise be handed to a loop no thread runs, and wait forever.
    """
    global _BRIDGE_LOCK  # noqa: PLW0603 - a lock another thread held at the fork stays held in the child
    _BRIDGES.clear()
    _BRIDGE_LOCK = _thread.allocate_lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_bridges)
