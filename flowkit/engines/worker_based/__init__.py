"""The worker-based engine: tasks run on remote workers reached through Redis.

``engines.load(flow, engine="worker-based", url=..., topics=[...])`` finds
:class:`~flowkit.engines.worker_based.engine.WorkerBasedActionEngine` by entry
point; :class:`~flowkit.engines.worker_based.worker.Worker` (or ``flowkit
worker``) serves the tasks. The wire protocol lives in
:mod:`flowkit.engines.worker_based.protocol`. Importing this package imports
neither redis nor the engine, so that ``import flowkit.engines`` stays light;
the two names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowkit.engines.worker_based.engine import WorkerBasedActionEngine
    from flowkit.engines.worker_based.worker import Worker

__all__ = ["Worker", "WorkerBasedActionEngine"]

_LAZY = {
    "WorkerBasedActionEngine": "flowkit.engines.worker_based.engine",
    "Worker": "flowkit.engines.worker_based.worker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
