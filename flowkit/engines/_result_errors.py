"""The error of a result that lacks a name its atom provides (``provides=("a", "b")``).

Built only when a result fails the runtime's unpacking check: a successful
run never builds it, so this module is imported with the first such failure
rather than with the runtime: every engine module costs the first
``engines.load`` of a process its import (doc/benchmarks.rst).
"""

from __future__ import annotations

from typing import Any

from flowkit import exceptions as exc
from flowkit._utils.reprs import short_repr
from flowkit.engines._compiler import Node

__all__ = ["unpack_error"]


def unpack_error(node: Node, atom: Any, result: Any, name: str, key: int | str) -> exc.ResultUnpackError:
    """The error naming ``node``'s atom, whose ``result`` has no ``key`` for provided ``name``."""
    how = f"item {key}" if isinstance(key, int) else f"key {key!r}"
    return exc.ResultUnpackError(
        f"atom '{node.name}' returned {type(result).__name__} {short_repr(result)}, which has no "
        f"{how} for provided name '{name}' (provides={list(atom.save_as)})",
        atom=node.name,
        provides=list(atom.save_as),
    )
