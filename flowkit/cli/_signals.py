"""Stop signals of the long-running commands, handled in the order they came.

``flowkit worker``, ``flowkit conductor`` and ``flowkit monitor`` stop
gracefully on a first SIGTERM or SIGINT and at once on a second. Python runs
a signal's handler between two bytecodes of the main thread, including the
bytecodes of another handler: a SIGINT that arrived while the SIGTERM handler
was logging ran inside it, counted itself second but logged first ("received
again" above "received"). :class:`StopSignals` numbers each signal as it
arrives and acts on them one at a time, oldest first; a handler that finds
another one acting leaves its signal to it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

__all__ = ["StopSignals"]

#: Called with the signal's name (``"SIGTERM"``), on the first signal and on each later one.
Action = Callable[[str], None]


class StopSignals:
    """A handler for stop signals: ``first`` on the first one, ``again`` on each later one.

    Install it with :func:`signal.signal`. ``again`` may raise (to leave a
    blocking read) or end the process; ``first`` runs to its end before
    ``again`` starts, whatever the timing of the two signals.
    """

    def __init__(self, first: Action, again: Action) -> None:
        self._first = first
        self._again = again
        self._arrived: list[int] = []  # list.append is atomic under the GIL
        self._acted = 0
        self._acting = False

    @property
    def count(self) -> int:
        """How many stop signals have arrived."""
        return len(self._arrived)

    def __call__(self, signum: int, _frame: FrameType | None = None) -> None:
        self._arrived.append(signum)
        while not self._acting and self._acted < len(self._arrived):
            self._acting = True
            try:
                while self._acted < len(self._arrived):
                    name = signal.Signals(self._arrived[self._acted]).name
                    self._acted += 1
                    (self._first if self._acted == 1 else self._again)(name)
            finally:
                # A signal that came after the inner loop's last look and found
                # us acting is picked up by the outer loop's next look.
                self._acting = False
