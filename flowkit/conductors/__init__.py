"""Conductors: run the flows of jobs claimed from a jobboard (TaskFlow's ``taskflow.conductors``).

``conductors.backends.fetch("blocking", name, board, persistence=...)`` makes
one; see :mod:`flowkit.conductors.base` and :mod:`flowkit.conductors.in_doubt`.
"""

from __future__ import annotations

from flowkit.conductors import backends

__all__ = ["backends"]
