"""Results that steer a run, and flow classes that loop: registered by the modules defining them.

A task may return something the engine acts on instead of storing as it is: a
spawned sub-flow (:mod:`flowkit.dynamic`) or a loop's answer
(:mod:`flowkit.patterns.loop_flow`). The engine's runtime checks every result
against :data:`STEERING` and every compiled flow against :data:`LOOPS`. Those
modules add their classes here when they are imported, so the engine knows
them without importing them: a program that uses neither never loads them (one
of them pulls in the graph pattern, milliseconds of start-up).
"""

from __future__ import annotations

import enum

__all__ = ["LOOPS", "STEERING", "Steer"]


class Steer(enum.Enum):
    """What a steering result asks of the engine."""

    SPAWN = "spawn"
    LOOP = "loop"


#: Result type -> what it asks for.
STEERING: dict[type, Steer] = {}
#: Flow classes whose body repeats (their last atom answers with a ``Steer.LOOP`` result).
LOOPS: set[type] = set()
