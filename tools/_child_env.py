"""The environment benchmarks start their Python children with.

The shell of this project exports ``PYTHONDONTWRITEBYTECODE=1``; a child that
inherits it compiles every module it imports at each start, which makes
start-up about three times slower than that of an installed flowkit (pip
compiles what it installs). Every benchmark starts its Python children (the
measured interpreters, workers and conductors) with this environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["child_env"]


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: this process's environment) that lets children write bytecode."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env
