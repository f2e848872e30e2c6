"""TaskFlow's engine class names over flowkit's engines.

``isinstance(engine, SerialActionEngine)`` holds for an engine loaded with
``engine="serial"``, and so on: these are the same classes, not wrappers.
"""

from __future__ import annotations

from flowkit.engines._engine import ActionEngine
from flowkit.engines.parallel import ParallelEngine as ParallelActionEngine
from flowkit.engines.serial import SerialEngine as SerialActionEngine

__all__ = ["ActionEngine", "ParallelActionEngine", "SerialActionEngine"]
