"""Listeners: objects that watch an engine's notifications and act on them.

Import the module you need; this package imports none of them, so that nothing
here costs an engine anything until a listener is used:

- :mod:`~flowkit.listeners.base`: :class:`~flowkit.listeners.base.Listener`,
  the class to derive from, and
  :class:`~flowkit.listeners.base.DumpingListener`, for listeners that write
  one line per state change.
- :mod:`~flowkit.listeners.logging`: ``LoggingListener`` and
  ``DynamicLoggingListener``, to a :mod:`logging` logger.
- :mod:`~flowkit.listeners.printing`: ``PrintingListener``, to standard output.
- :mod:`~flowkit.listeners.timing`: ``DurationListener``,
  ``PrintingDurationListener`` and ``EventTimeListener``, into storage
  metadata.
- :mod:`~flowkit.listeners.capturing`: ``CaptureListener``, into a list.
- :mod:`~flowkit.listeners.claims`: ``CheckingClaimListener``, which suspends
  an engine whose job's claim was lost.

For example::

    from flowkit.listeners import logging as logging_listeners

    with logging_listeners.DynamicLoggingListener(engine):
        engine.run()
"""

from __future__ import annotations

__all__: list[str] = []
