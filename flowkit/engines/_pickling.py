"""What in a call cannot be pickled, for the drivers that ship calls to other processes.

A process pool (:mod:`flowkit.engines._executor_driver`) and a Dask cluster
(:mod:`flowkit.engines._dask`) pickle each call: the task object and its
arguments. Python's own message for what does not pickle (``cannot pickle
'_thread.lock' object``) names neither the atom nor which part of the call held
the lock, so both drivers pickle the parts one by one to say it. Only a call
that already failed to pickle pays for this; a successful one never loads the
module.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowkit._utils.reprs import short_repr
from flowkit.engines._scheduler import REVERT

if TYPE_CHECKING:
    from flowkit.engines._compiler import Node
    from flowkit.engines._runtime import Call

__all__ = ["call_pickling_error", "call_unpickling_error", "culprit", "result_pickling_error"]

#: What pickling raises, by kind of object: a lock or a socket (TypeError), a
#: lambda or a class that cannot be imported (PicklingError), a local object
#: (AttributeError, before Python 3.12). An explained error keeps its kind, so
#: an ``except TypeError`` around ``run()`` still catches it.
_PICKLING_ERRORS = (TypeError, AttributeError, pickle.PicklingError)

_NEEDS = (
    "a process pool needs tasks whose class is importable and whose attributes, "
    "arguments and results can be pickled"
)


def culprit(call: Call, dumps: Callable[[Any], object]) -> str | None:
    """Say which part of ``call`` ``dumps`` cannot pickle: its task object or which argument.

    Returns:
        ``"its task object (Kind: its attribute 'lock' is lock <...>)"``,
        ``"its argument 'x' (Kind repr)"``, or None when each part pickles on
        its own.
    """
    atom = call.kwargs.get("atom")
    try:
        dumps(atom)
    except Exception:
        return f"its task object ({type(atom).__name__}: {_attribute(atom, dumps)})"
    for name, value in (call.kwargs.get("kwargs") or {}).items():
        try:
            dumps(value)
        except Exception:
            return f"its argument {name!r} ({type(value).__name__} {short_repr(value)})"
    return None


def _attribute(atom: Any, dumps: Callable[[Any], object]) -> str:
    """Name the attribute of ``atom`` that does not pickle, or say its class may not be importable."""
    try:  # what pickle takes of it: atoms leave their views, hooks and listeners out
        state = atom.__getstate__()
    except Exception:
        state = None
    for name, value in (state if isinstance(state, dict) else {}).items():
        try:
            dumps(value)
        except Exception:
            return f"its attribute {name!r} is {type(value).__name__} {short_repr(value)}"
    kind = type(atom)
    return f"is its class {kind.__module__}.{kind.__qualname__} importable?"


def _explained(error: BaseException, text: str) -> BaseException:
    """``error``'s kind, with ``text``, pickle's message and what a process pool needs; chained to it."""
    message = f"{text} ({type(error).__name__}: {error}); {_NEEDS}"
    explained: BaseException = TypeError(message)
    if isinstance(error, _PICKLING_ERRORS):
        # Its own kind, unless a subclass's constructor wants more than a message.
        with contextlib.suppress(Exception):
            explained = type(error)(message)
    explained.__cause__ = error
    return explained


def call_pickling_error(node: Node, action: int, call: Call, error: BaseException) -> BaseException:
    """The error of a call that cannot be pickled for a child process: which atom, which part of it."""
    from multiprocessing.reduction import ForkingPickler  # the pool's own pickler

    part = culprit(call, ForkingPickler.dumps) or "the call"
    to = "revert" if action == REVERT else "run"
    text = f"atom {node.name!r} cannot be sent to a child process to {to}: {part} cannot be pickled"
    return _explained(error, text)


def call_unpickling_error(name: str, action: int, error: BaseException) -> BaseException:
    """The error of a call the child process cannot unpickle: most often a class it cannot import.

    A class defined in ``__main__`` under ``if __name__ == "__main__":``, or in
    an interactive session, pickles by name but is not there in a child that
    was spawned rather than forked (macOS's and Windows' default, and Linux's
    from Python 3.14).
    """
    to = "revert" if action == REVERT else "run"
    return _explained(
        error,
        f"atom {name!r} cannot be unpickled in its child process to {to} (is the module of its task's "
        "class, and of its arguments' classes, importable there?)",
    )


def result_pickling_error(node: Node, action: int, error: BaseException) -> BaseException:
    """The error of a call whose result could not come back from its child process.

    ``error`` is what the pool's future raised. Anything but a pickling error
    (a broken pool, an interrupt) comes back unchanged: the call itself was
    pickled in the engine's process and unpickled in the child's, so pickling
    that failed now was that of its outcome.
    """
    if not isinstance(error, _PICKLING_ERRORS):
        return error
    if action == REVERT:
        text = f"atom {node.name!r} reverted in a child process, but what it returned cannot be pickled"
    else:
        text = f"atom {node.name!r} ran in a child process, but its result cannot be pickled to come back"
    return _explained(error, text)
