"""flowkit: run work as flows of tasks that can be undone.

The public modules mirror OpenStack TaskFlow's (``flowkit.task``,
``flowkit.patterns.linear_flow``, ``flowkit.engines`` ...), so TaskFlow code
migrates by changing its import root. Importing this package is cheap: engines,
backends and listeners are imported only when you use them.
"""

from __future__ import annotations

from flowkit.version import __version__

__all__ = ["__version__"]
