"""Jobboards: where work is posted for any conductor to claim (TaskFlow's ``taskflow.jobs``).

See :mod:`flowkit.jobs.base` for the interfaces and :mod:`flowkit.jobs.backends`
to make a board (memory, Redis, ZooKeeper).
"""

from __future__ import annotations

__all__: list[str] = []
