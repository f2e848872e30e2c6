"""TaskFlow's ``engines.action_engine`` class names, for code and tests that import them.

flowkit's engines live in :mod:`flowkit.engines.serial` and
:mod:`flowkit.engines.parallel`; :mod:`.engine` and :mod:`.executor` give them the
names TaskFlow programs use (``SerialActionEngine``, ``ParallelThreadTaskExecutor``
...). Nothing here is imported by ``import flowkit.engines``.
"""

from __future__ import annotations

__all__: list[str] = []
