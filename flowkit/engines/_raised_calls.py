"""Calls that raised, handed to a completion queue: a failure of their atom, or an interrupt.

What :meth:`Completions.put_raising` and :meth:`Completions.put_raised` do. A
successful run never raises, so this module is imported with the first call
that does on a pool, a future or a loop thread rather than with the queue:
every engine module costs the first ``engines.load`` of a process its import
(doc/benchmarks.rst).
"""

from __future__ import annotations

from flowkit.engines._compiler import Node
from flowkit.engines._completions import Completion, Completions, _Raise
from flowkit.engines._runtime import raised_cancel
from flowkit.types.failure import Failure

__all__ = ["put_raised", "put_raising"]


def put_raising(completions: Completions, node: Node, action: int, error: BaseException) -> None:
    """Hand in a call that ended with ``error`` (see :meth:`Completions.put_raising`)."""
    if isinstance(error, Exception):
        completions._put(Completion(node, action, False, Failure.from_exception(error)))
    else:
        completions._put(_Raise(error))


def put_raised(completions: Completions, node: Node, action: int, error: BaseException) -> None:
    """Hand in what a call raised, from its ``except`` (see :meth:`Completions.put_raised`)."""
    if isinstance(error, Exception) or raised_cancel(error):
        completions._put(Completion(node, action, False, Failure._of_any()))
    else:
        completions._put(_Raise(error))
