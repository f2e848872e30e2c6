"""How far a decider's "no" reaches.

A graph flow link may carry a decider (``graph_flow.Flow.link(u, v,
decider=...)``): a callable that, once ``u`` has finished, decides whether ``v``
runs. When it says no, ``v`` is skipped, and the link's :class:`Depth` says
which of ``v``'s successors are skipped with it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["Decider", "Depth", "pick_widest"]


class Decider(Protocol):
    """What a link's ``decider`` is: called as ``decider(history=...)``, a falsy answer skips.

    ``history`` maps the name of each decided predecessor that ran to its
    result (or its :class:`~flowkit.types.failure.Failure`). Engines pass it by
    keyword, as TaskFlow's do, so a type checker rejects a decider whose
    parameter has another name (it would fail when called); any answer is
    read for its truth.
    """

    def __call__(self, history: dict[str, Any]) -> object: ...


class Depth(enum.StrEnum):
    """Which atoms are skipped along with the decided one, widest first."""

    #: The default: every successor of the target, including those in nested
    #: and later flows.
    ALL = "ALL"
    #: Successors in the same flow as the target, not those in nested flows.
    #: Atoms after a skipped nested flow may then run and miss its symbols.
    FLOW = "FLOW"
    #: Only the target's immediate successors.
    NEIGHBORS = "NEIGHBORS"
    #: Only the target itself.
    ATOM = "ATOM"

    @classmethod
    def translate(cls, desired_depth: Depth | str) -> Depth:  # type: ignore[override]  # TaskFlow's name; shadows str.translate
        """Return the :class:`Depth` for an enum member or its name in any case.

        Raises:
            TypeError: ``desired_depth`` is neither a Depth nor a str.
            ValueError: the string names no depth; the message lists the choices.
        """
        if isinstance(desired_depth, cls):
            return desired_depth
        # TaskFlow's words (log scrapers match them), then what flowkit adds.
        if not isinstance(desired_depth, str):
            raise TypeError(
                f"Unexpected desired depth type, string type expected, not {type(desired_depth)}"
                " (or a flowkit.deciders.Depth)"
            )
        try:
            return cls(desired_depth.upper())
        except ValueError:
            choices = sorted(member.name for member in cls)
            raise ValueError(
                f"Unexpected decider depth value, one of {choices} (case-insensitive) is expected"
                f" and not '{desired_depth}'"
            ) from None


# From the widest reach to the narrowest.
_ORDER: tuple[Depth, ...] = (Depth.ALL, Depth.FLOW, Depth.NEIGHBORS, Depth.ATOM)


def pick_widest(depths: Iterable[Depth]) -> Depth:
    """Return the depth reaching furthest among ``depths``.

    Raises:
        ValueError: ``depths`` is empty.
    """
    return _ORDER[min(_ORDER.index(depth) for depth in depths)]
