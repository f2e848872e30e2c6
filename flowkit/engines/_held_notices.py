"""State-change notifications held back until a change of several records is whole.

A retry starting its scope again and a loop starting its next iteration put
many atoms back to PENDING at once (:meth:`Runtime.notices_held`). A run with
neither never holds a notice, so this module is imported with the first rather
than with the runtime: every engine module costs the first ``engines.load`` of
a process its import (doc/benchmarks.rst).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowkit.engines._runtime import Runtime

__all__ = ["notices_held"]


@contextlib.contextmanager
def notices_held(runtime: Runtime) -> Iterator[None]:
    """Send the state changes made in the block only once it has made them all (see the runtime's)."""
    if runtime._held is not None:
        yield  # nested: the outer block sends them
        return
    held: list[tuple[str, dict[str, Any]]] = []
    runtime._held = held
    try:
        yield
    finally:
        runtime._held = None
    if held and runtime._durable and runtime.notifier.has_user_listeners:
        runtime.state.flush()  # stored whole before the first of them is heard
    for state, details in held:
        runtime.notifier.notify(state, details)
