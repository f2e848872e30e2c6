"""One atom's run options (its timeout and concurrency key), checked.

Only flows whose atoms set an option, or whose engine sets ``default_timeout``,
need this: :func:`flowkit.engines._task_options.read_task_options` passes over
every other atom without a call. So it is imported on first use: a successful
run of a flow without options never needs it, and each module the first
``engines.load`` imports costs a fresh process time (doc/benchmarks.rst, the
first load).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

from flowkit import exceptions as exc
from flowkit.atom import check_concurrency_key, check_timeout
from flowkit.engines._compiler import RETRY, Node

__all__ = ["AtomOptions", "options_of"]


class AtomOptions:
    """The run options of one atom, checked."""

    __slots__ = ("key", "timeout")

    def __init__(self, timeout: float | None, key: str | None) -> None:
        #: Seconds its execute may run (None: no timeout).
        self.timeout = timeout
        #: Its concurrency key (None: not limited).
        self.key = key


def options_of(node: Node, default: float | None, limits: Mapping[str, int]) -> AtomOptions:
    """The timeout and concurrency key of one atom node, checked (see ``_task_options.options_of``)."""
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
