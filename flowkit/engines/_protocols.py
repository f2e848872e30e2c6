"""The protocols between the engine's pieces, for type checkers only.

:class:`Hooks` is what the scheduler needs from the runtime; :class:`Driver` is
what the action engine needs from an engine kind's driver. No run ever needs
them: they are imported under ``TYPE_CHECKING`` only, since a ``Protocol`` class
costs at creation, and its bytecode would be loaded with the engine on every
first load (the first-load cost, ``doc/benchmarks.rst``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flowkit.deciders import Depth
    from flowkit.engines._compiler import Node
    from flowkit.engines._completions import Completions
    from flowkit.engines._runtime import Completion, Runtime
    from flowkit.retry import Decision

__all__ = ["Driver", "Hooks"]


class Hooks(Protocol):
    """What the scheduler needs from the world around it."""

    def record(self, node: Node, state: str | None, intention: str | None) -> None:
        """Persist and announce a state and/or intention the scheduler decided."""

    def decide(self, node: Node) -> Depth | None:
        """Run the deciders on links into ``node``; a Depth means skip that much."""

    def ask_retry(self, retry: Node, failed: Node, origin: Node) -> Decision:
        """Record ``origin``'s failure in ``retry``'s history (under ``failed``'s name) and ask it."""

    def joined(self, spawner: Node) -> None:
        """A spawned sub-flow finished forward: give ``spawner`` its collected result."""


class Driver(Protocol):
    """Where calls run. ``schedule`` starts ready work; ``wait`` collects finished work."""

    @property
    def in_flight(self) -> int:
        """Calls started and not yet collected by :meth:`wait`."""

    @property
    def completions(self) -> Completions | None:
        """The queue calls made in other threads come back through (None: all inline)."""

    def open(self, runtime: Runtime) -> None: ...

    def schedule(self, runtime: Runtime) -> None: ...

    def wait(self, timeout: float | None) -> list[Completion]: ...

    def close(self) -> None: ...
