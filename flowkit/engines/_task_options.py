"""Read the run options of a compiled flow's tasks (timeouts, concurrency keys), once, at load.

Options set by constructor arguments were checked when the task was made; class
attributes and later assignments were not, so every value is checked here too,
naming the atom, before anything runs. A concurrency key that the engine's
``concurrency_limits`` does not name is refused here as well: a misspelt key
would otherwise mean "no limit" without a word.

The engine keeps only atoms that have an option, in dicts by node index, so a
flow without any costs one pass over its atoms at load and nothing per call.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from flowkit import exceptions as exc
from flowkit.atom import check_concurrency_key, check_timeout
from flowkit.engines._compiler import RETRY, Compilation, Node
from flowkit.engines._limits import check_limits

__all__ = ["AtomOptions", "TaskOptions", "check_default_timeout", "options_of", "read_task_options"]


class TaskOptions(NamedTuple):
    """The per-atom run options of one compiled flow (a named tuple: no dataclasses
    module to import on a short-lived process's first run)."""

    #: node index -> seconds its execute may run (timed atoms only).
    timeouts: dict[int, float]
    #: node index -> concurrency key (keyed atoms only).
    keys: dict[int, str]
    #: concurrency key -> most calls at once (the engine option, checked).
    limits: dict[str, int]
    #: The engine's ``default_timeout`` (None: none).
    default_timeout: float | None


def check_default_timeout(value: Any, engine: str) -> float | None:
    """Check the ``default_timeout`` engine option (None, or seconds above zero)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise exc.InvalidEngineOption(
            f"default_timeout must be a number of seconds above zero (or None), not {value!r}",
            engine=engine,
            option="default_timeout",
        )
    return None if math.isinf(value) else float(value)


def read_task_options(compilation: Compilation, options: Mapping[str, Any], engine: str) -> TaskOptions:
    """Collect and check the timeouts and concurrency keys of ``compilation``'s tasks.

    Raises:
        InvalidEngineOption: a bad ``default_timeout`` or ``concurrency_limits``.
        InvalidAtomOption: a bad ``timeout`` or ``concurrency_key`` on a task, or a
            key ``concurrency_limits`` does not name.
    """
    default = check_default_timeout(options.get("default_timeout"), engine)
    limits = check_limits(options.get("concurrency_limits"), engine)
    timeouts: dict[int, float] = {}
    keys: dict[int, str] = {}
    for node in compilation.atoms:
        seconds, key = options_of(node, default, limits)
        if seconds is not None:
            timeouts[node.index] = seconds
        if key is not None:
            keys[node.index] = key
    return TaskOptions(timeouts, keys, limits, default)


class AtomOptions(NamedTuple):
    """The run options of one atom, checked."""

    #: Seconds its execute may run (None: no timeout).
    timeout: float | None
    #: Its concurrency key (None: not limited).
    key: str | None


def options_of(node: Node, default: float | None, limits: Mapping[str, int]) -> AtomOptions:
    """The timeout and concurrency key of one atom node, checked.

    Also for atoms added to a running flow (spawned sub-flows).

    Raises:
        InvalidAtomOption: as :func:`read_task_options`.
    """
    atom: Any = node.atom
    if node.kind == RETRY or type(atom) is _until_class():
        return AtomOptions(None, None)  # retries and loops' checks only decide
    own = atom.timeout
    seconds = default if own is None else check_timeout(node.name, own)
    if seconds is not None and math.isinf(seconds):
        seconds = None
    key = atom.concurrency_key
    if key is not None:
        key = check_concurrency_key(node.name, key)
        if key not in limits:
            named = f"names only {sorted(limits)}" if limits else "is not set"
            raise exc.InvalidAtomOption(
                f"atom '{node.name}' has concurrency_key={key!r}, but the engine's "
                f"concurrency_limits {named}; add {key!r}: n to concurrency_limits",
                atom=node.name,
                option="concurrency_key",
                value=key,
            )
    return AtomOptions(seconds, key)


def _until_class() -> type | None:
    """Loops' check task, if loops are in use (not imported for a flow without any)."""
    loops = sys.modules.get("flowkit.patterns.loop_flow")
    return None if loops is None else loops.Until
