"""Keys a flow detail's ``meta`` holds for flowkit.

One definition for the writers and readers on both sides of the layering: the
engine's run state (writes and resumes), the conductor (reads), and the
TaskFlow database import (moves TaskFlow's injected values there).
"""

from __future__ import annotations

__all__ = ["STORE_KEY"]

#: Where a flow detail keeps the values injected with ``store=`` (a resume runs with them).
STORE_KEY = "store"
