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
from typing import Any

from flowkit import exceptions as exc
from flowkit.atom import check_concurrency_key, check_timeout
from flowkit.engines._compiler import RETRY, Compilation, Node

__all__ = [
    "AtomOptions",
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
    for node in compilation.atoms:
        atom: Any = node.atom
        if default is None and atom.timeout is None and atom.concurrency_key is None:
            continue  # the common case, checked without a call: loads stay O(1) per atom
        found = options_of(node, default, limits)
        if found.timeout is not None:
            timeouts[node.index] = found.timeout
        if found.key is not None:
            keys[node.index] = found.key
    return TaskOptions(timeouts, keys, limits, default)


class AtomOptions:
    """The run options of one atom, checked."""

    __slots__ = ("key", "timeout")

    def __init__(self, timeout: float | None, key: str | None) -> None:
        #: Seconds its execute may run (None: no timeout).
        self.timeout = timeout
        #: Its concurrency key (None: not limited).
        self.key = key


def options_of(node: Node, default: float | None, limits: Mapping[str, int]) -> AtomOptions:
    """The timeout and concurrency key of one atom node, checked.

    Also for atoms added to a running flow (spawned sub-flows).

    Raises:
        InvalidAtomOption: as :func:`read_task_options`.
    """
    atom: Any = node.atom
    if node.kind == RETRY:
        _warn_retry_options(node)
        return AtomOptions(None, None)  # retries only decide, in the engine
    if type(atom) is _until_class():
        return AtomOptions(None, None)  # loops' checks only decide, like retries
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


def _warn_retry_options(node: Node) -> None:
    """Say that a retry's ``timeout``/``concurrency_key`` is ignored, naming the retry.

    A warning, not InvalidAtomOption: TaskFlow's Retry gives these names no
    meaning, so a TaskFlow retry may keep, say, a ``self.timeout`` deadline of
    its own, which refusing would break; but a value meant for flowkit would be
    ignored without a word, since a retry only decides, in the engine, and is
    neither timed nor limited.
    """
    atom: Any = node.atom
    given = [
        f"{option}={value!r}"
        for option, value in (("timeout", atom.timeout), ("concurrency_key", atom.concurrency_key))
        if value is not None
    ]
    if given:
        import logging  # only then: a run of a flow without such a retry does not import it

        logging.getLogger("flowkit.engines.options").warning(
            "retry '%s' has %s, which flowkit ignores: retries only decide, in the engine, "
            "and are neither timed nor limited (doc/timeouts.rst, doc/limits.rst); "
            "rename the attribute if the retry uses it for itself",
            node.name,
            " and ".join(given),
        )


def _until_class() -> type | None:
    """Loops' check task, if loops are in use (not imported for a flow without any)."""
    # getattr: another thread may be importing the module, not yet at the class.
    until: type | None = getattr(sys.modules.get("flowkit.patterns.loop_flow"), "Until", None)
    return until


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
