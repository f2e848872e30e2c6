"""Saving flow progress so a flow can resume after a crash, TaskFlow-style.

``models`` holds the records (logbooks, flow details, atom details), ``base``
the :class:`~flowkit.persistence.base.Backend` and
:class:`~flowkit.persistence.base.Connection` interfaces, and ``backends`` the
``fetch()`` that picks an implementation by URL scheme (memory, dir, SQLAlchemy
databases, ZooKeeper).

The submodules load on first attribute access, so importing this package costs
nothing and never imports a backend library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowkit.persistence import backends, base, models

__all__ = ["backends", "base", "models"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
