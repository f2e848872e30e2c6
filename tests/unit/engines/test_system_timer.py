"""The real-time timer behind task timeouts (``SystemTimer``): order, cancelling, compaction.

Every engine test moves a manual timer instead (``_manual_timer.py``); these few
use real time, with deadlines of zero or a few milliseconds, and wait for a
callback on an event (bounded), never for time to pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flowkit.engines._timeouts import SystemTimer

#: Bound on waiting for a callback that is due now (a loaded CI machine may be slow).
_WAIT = 30.0


def _recorder(ran: list[str], name: str, done: threading.Event | None = None) -> Callable[[], None]:
    def callback() -> None:
        ran.append(name)
        if done is not None:
            done.set()

    return callback


def test_callbacks_run_in_deadline_order_not_in_the_order_set() -> None:
    timer = SystemTimer()
    ran: list[str] = []
    done = threading.Event()
    timer.call_later(0.05, _recorder(ran, "later", done))
    timer.call_later(0.0, _recorder(ran, "sooner"))
    assert done.wait(_WAIT)
    assert ran == ["sooner", "later"]


def test_a_cancelled_callback_never_runs() -> None:
    timer = SystemTimer()
    ran: list[str] = []
    done = threading.Event()
    timer.call_later(0.05, _recorder(ran, "cancelled")).cancel()
    timer.call_later(0.05, _recorder(ran, "kept", done))
    # Both fall due together; "cancelled" was set first, so it comes off the heap first.
    assert done.wait(_WAIT)
    assert ran == ["kept"]


def test_a_heap_mostly_of_cancelled_entries_is_rebuilt_without_them() -> None:
    timer = SystemTimer()
    # A live entry due first keeps the timer's thread asleep, so it never pops the
    # cancelled ones below it: only the rebuild can remove them.
    first = timer.call_later(1800.0, lambda: None)
    for _ in range(256):
        timer.call_later(3600.0, lambda: None).cancel()
    assert len(timer._heap) == 257
    timer.call_later(3600.0, lambda: None)
    assert len(timer._heap) == 2  # the first entry and the new one
    first.cancel()
