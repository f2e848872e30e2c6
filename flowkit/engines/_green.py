"""Eventlet green threads as the parallel engine's executor, for programs still on eventlet.

TaskFlow's parallel engine takes ``executor="greenthreads"`` (or a green
executor object) and runs tasks on eventlet green threads. flowkit does too,
when eventlet and futurist are installed; nothing here is imported otherwise.

Green threads run only when the thread that made them gives eventlet's hub a
turn. The engine thread waits for finished calls on a native queue, which
never does, so with a green executor it waits through futurist's waiters
instead: they wait the green way on green futures, and the green threads run
meanwhile. (A program that monkey-patched the standard library with eventlet
waits the green way either way.)
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only named in annotations: the default thread pool never imports it
    import concurrent.futures as cf

__all__ = ["GREEN_NAMES", "is_green", "make_pool", "require", "wait_for_any"]

#: TaskFlow's names for the green-thread executor.
GREEN_NAMES = frozenset({"greenthread", "greenthreads", "greenthreaded"})

_MISSING = (
    "green-thread executors need eventlet and futurist (pip install eventlet futurist); "
    "eventlet is deprecated: consider executor='threads' or engine='asyncio'"
)


def require() -> None:
    """Check that green threads can be had.

    Raises:
        ImportError: eventlet or futurist is missing (the message says what to install).
    """
    _futurist()


def _futurist() -> Any:
    try:
        import eventlet  # type: ignore[import-untyped]  # noqa: F401 - checked, used by futurist
        import futurist
    except ImportError as err:
        raise ImportError(_MISSING) from err
    return futurist


def make_pool(max_workers: int | None = None) -> cf.Executor:
    """Make a green-thread pool (futurist's, at most ``max_workers`` green threads).

    Raises:
        ImportError: eventlet or futurist is missing (the message says what to install).
    """
    futurist = _futurist()
    pool: cf.Executor = futurist.GreenThreadPoolExecutor(max_workers=max_workers or 1000)
    return pool


def is_green(executor: object) -> bool:
    """Tell whether ``executor`` runs calls on eventlet green threads.

    An executor says so with a true ``green`` attribute (flowkit's
    ``ParallelGreenThreadTaskExecutor``), or is futurist's green pool; futurist
    is looked at only if the program imported it.
    """
    if getattr(executor, "green", False) is True:
        return True
    futurist = sys.modules.get("futurist")
    green_pool = getattr(futurist, "GreenThreadPoolExecutor", None)
    return green_pool is not None and isinstance(executor, green_pool)


def wait_for_any(futures: Iterable[cf.Future[Any]], timeout: float | None) -> None:
    """Wait, giving green threads their turns, until one of ``futures`` is done or ``timeout``."""
    _futurist()
    from futurist import waiters

    waiters.wait_for_any(list(futures), timeout)
