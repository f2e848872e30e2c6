"""A timeout that can be cut short (TaskFlow's ``types.timing``).

Loops that poll ("check for work, then wait up to N seconds") wait on a
:class:`Timeout`; another thread calls :meth:`Timeout.interrupt` to wake them at
once, for example when shutting down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["Timeout", "convert_to_timeout"]


class _Event(Protocol):
    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def clear(self) -> None: ...


class Timeout:
    """Wait up to ``value`` seconds, unless interrupted first.

    Args:
        value: The longest wait, in seconds (zero or more).
        event_factory: Makes the event waited on (``threading.Event``; tests and
            other concurrency models may pass their own).

    Raises:
        ValueError: ``value`` is negative.
    """

    def __init__(self, value: float, event_factory: Callable[[], _Event] = threading.Event) -> None:
        if value < 0:
            raise ValueError(f"Timeout value must be greater or equal to zero and not '{value}'")
        self._value = value
        self._event = event_factory()

    @property
    def value(self) -> float:
        """The longest wait, in seconds."""
        return self._value

    def interrupt(self) -> None:
        """Wake every waiter now; later waits return at once until :meth:`reset`."""
        self._event.set()

    def is_stopped(self) -> bool:
        """Tell whether the timeout was interrupted."""
        return self._event.is_set()

    def wait(self) -> None:
        """Block until interrupted or until :attr:`value` seconds have passed."""
        self._event.wait(self._value)

    def reset(self) -> None:
        """Forget an interruption so that the next wait waits again."""
        self._event.clear()


def convert_to_timeout(
    value: Timeout | float | str | None = None,
    default_value: float | str | None = None,
    event_factory: Callable[[], _Event] = threading.Event,
) -> Timeout:
    """Return ``value`` as a :class:`Timeout` (``default_value`` when it is None).

    Raises:
        ValueError: The value is neither a number, a numeric string nor a Timeout.
    """
    if value is None:
        value = default_value
    if isinstance(value, Timeout):
        return value
    if isinstance(value, (int, float, str)):
        return Timeout(float(value), event_factory=event_factory)
    raise ValueError(f"Invalid timeout literal '{value}'")
