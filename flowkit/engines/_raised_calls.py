"""Calls that raised, handed to a completion queue: a failure of their atom, or an interrupt.

What :meth:`Completions.put_raising`, :meth:`Completions.put_raised` and
:meth:`Completions.put_fatal` do. A successful run never raises, so this module
is imported with the first call that does on a pool, a future or a loop thread
rather than with the queue: every engine module costs the first
``engines.load`` of a process its import (doc/benchmarks.rst).
"""

from __future__ import annotations

from flowkit._utils.records import Record
from flowkit.engines._compiler import Node
from flowkit.engines._completions import Completion, Completions
from flowkit.engines._runtime import raised_cancel
from flowkit.types.failure import Failure

__all__ = ["Raise", "put_fatal", "put_raised", "put_raising"]


class Raise(Record):
    """An exception the engine thread must raise (an interrupt met by a call, a run-ending outcome)."""

    error: BaseException


def put_raising(completions: Completions, node: Node, action: int, error: BaseException) -> None:
    """Hand in a call that ended with ``error`` (see :meth:`Completions.put_raising`)."""
    if isinstance(error, Exception):
        completions._put(Completion(node, action, False, Failure.from_exception(error)))
    else:
        completions._put(Raise(error))


def put_raised(completions: Completions, node: Node, action: int, error: BaseException) -> None:
    """Hand in what a call raised, from its ``except`` (see :meth:`Completions.put_raised`)."""
    if isinstance(error, Exception) or raised_cancel(error):
        completions._put(Completion(node, action, False, Failure._of_any()))
    else:
        completions._put(Raise(error))


def put_fatal(completions: Completions, error: BaseException) -> None:
    """Hand in a call that ended the run, not just its atom (see :meth:`Completions.put_fatal`)."""
    completions._put(Raise(error))
