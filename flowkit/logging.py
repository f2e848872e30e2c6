"""TaskFlow's logging helpers: a ``TRACE``/``BLATHER`` level and :func:`getLogger`.

Code written for TaskFlow calls ``taskflow.logging.getLogger(__name__)`` and then
``LOG.trace(...)`` or ``LOG.blather(...)``, a level below ``DEBUG`` for output so
detailed that only someone chasing a bug wants it. The logger returned here is a
:class:`logging.LoggerAdapter` with those methods; it gets a
:class:`logging.NullHandler` when it has no handler of its own, so a library using it
never prints "no handlers could be found".

This module shadows nothing: inside flowkit, ``import logging`` is still the standard
library (imports are absolute).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BLATHER",
    "CRITICAL",
    "DEBUG",
    "ERROR",
    "FATAL",
    "INFO",
    "NOTSET",
    "TRACE",
    "WARN",
    "WARNING",
    "getLogger",
]

# The level below DEBUG that multiprocessing, kazoo and oslo.log also declare.
BLATHER = 5
TRACE = BLATHER

CRITICAL = logging.CRITICAL
DEBUG = logging.DEBUG
ERROR = logging.ERROR
FATAL = logging.FATAL
INFO = logging.INFO
NOTSET = logging.NOTSET
WARN = logging.WARNING
WARNING = logging.WARNING

_ROOT = __name__.split(".", 1)[0]

if logging.getLevelName(TRACE) == f"Level {TRACE}":
    logging.addLevelName(TRACE, "TRACE")


class _TraceLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger adapter that also logs at :data:`TRACE` (alias ``blather``)."""

    def trace(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """Log ``msg`` at the :data:`TRACE` level."""
        self.log(TRACE, msg, *args, **kwargs)

    blather = trace

    def warn(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """Log ``msg`` as a warning (the old spelling TaskFlow code still uses)."""
        self.warning(msg, *args, **kwargs)


def getLogger(  # TaskFlow's (and the standard library's) spelling
    name: str = _ROOT, extra: Mapping[str, object] | None = None
) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """Return an adapter over ``logging.getLogger(name)`` with a ``trace`` method.

    Args:
        name: The logger's name; flowkit's root logger by default.
        extra: Context added to every record, as :class:`logging.LoggerAdapter` does.
    """
    logger = logging.getLogger(name)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return _TraceLoggerAdapter(logger, extra=extra)
