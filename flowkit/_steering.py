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

from typing import TYPE_CHECKING, Final

__all__ = ["LOOPS", "STEERING", "Steer"]

if TYPE_CHECKING:
    from typing import Literal

    #: What a steering result asks of the engine: one of :class:`Steer`'s constants.
    #: For type checkers only: a ``Literal`` costs some 40 µs of a process's first load.
    SteerKind = Literal["spawn", "loop"]


class Steer:
    """The two things a steering result may ask of the engine.

    Named constants rather than an :class:`enum.Enum`: the engine imports this
    module on every first load of a process, and making an enum class costs
    about 0.2 ms there, for two values only compared by identity.
    """

    __slots__ = ()

    SPAWN: Final = "spawn"
    LOOP: Final = "loop"


#: Result type -> what it asks for.
STEERING: dict[type, SteerKind] = {}
#: Flow classes whose body repeats (their last atom answers with a ``Steer.LOOP`` result).
LOOPS: set[type] = set()
