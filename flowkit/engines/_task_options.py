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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit.engines._compiler import Compilation, Node

if TYPE_CHECKING:
    from flowkit.engines._atom_options import AtomOptions

__all__ = [
    "TaskOptions",
    "check_default_timeout",
    "check_limits",
    "options_of",
    "read_task_options",
]


class TaskOptions:
    """The per-atom run options of one compiled flow.

    A plain slotted class: a named tuple or a dataclass costs a millisecond to
    define, on the start-up path of every short-lived process.
    """

    __slots__ = ("default_timeout", "keys", "limits", "timeouts")

    def __init__(
        self,
        timeouts: dict[int, float],
        keys: dict[int, str],
        limits: dict[str, int],
        default_timeout: float | None,
    ) -> None:
        #: node index -> seconds its execute may run (timed atoms only).
        self.timeouts = timeouts
        #: node index -> concurrency key (keyed atoms only).
        self.keys = keys
        #: concurrency key -> most calls at once (the engine option, checked).
        self.limits = limits
        #: The engine's ``default_timeout`` (None: none).
        self.default_timeout = default_timeout


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
    # _atom_options.options_of, imported for the first atom with an option (first-load cost).
    check: Callable[[Node, float | None, Mapping[str, int]], AtomOptions] | None = None
    for node in compilation.atoms:
        atom: Any = node.atom
        if default is None and atom.timeout is None and atom.concurrency_key is None:
            continue  # the common case, checked without a call: loads stay O(1) per atom
        if check is None:
            from flowkit.engines import _atom_options

            check = _atom_options.options_of
        found = check(node, default, limits)
        if found.timeout is not None:
            timeouts[node.index] = found.timeout
        if found.key is not None:
            keys[node.index] = found.key
    return TaskOptions(timeouts, keys, limits, default)


def options_of(node: Node, default: float | None, limits: Mapping[str, int]) -> AtomOptions:
    """The timeout and concurrency key of one atom node, checked.

    Also for atoms added to a running flow (spawned sub-flows).

    Raises:
        InvalidAtomOption: as :func:`read_task_options`.
    """
    from flowkit.engines import _atom_options  # loaded for the first atom with options (first-load cost)

    return _atom_options.options_of(node, default, limits)


def check_limits(value: object, engine: str) -> dict[str, int]:
    """Check the ``concurrency_limits`` engine option: a mapping of str keys to ints from 1.

    Raises:
        InvalidEngineOption: anything else.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise exc.InvalidEngineOption(
            f"concurrency_limits must be a mapping of key -> most calls at once, not {value!r}",
            engine=engine,
            option="concurrency_limits",
        )
    limits: dict[str, int] = {}
    for key, count in value.items():
        if not isinstance(key, str) or not key:
            raise exc.InvalidEngineOption(
                f"concurrency_limits keys must be non-empty str, not {key!r}",
                engine=engine,
                option="concurrency_limits",
            )
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise exc.InvalidEngineOption(
                f"concurrency_limits[{key!r}] must be an int from 1, not {count!r}",
                engine=engine,
                option="concurrency_limits",
            )
        limits[key] = count
    return limits
