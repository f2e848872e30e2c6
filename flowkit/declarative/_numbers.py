"""Numbers JSON cannot hold (NaN, Infinity, floats past its range), found wherever a spec has them.

Python's :mod:`json` reads ``NaN``, ``Infinity`` and ``1e400`` (as ``inf``)
though no JSON document holds them, YAML writes ``.nan`` and ``.inf``, and a
dict spec may hold any float. A spec's values are stored as JSON, sent to
workers as JSON and hashed as JSON for the cache, all of which refuse them or
write what other readers cannot read, once the flow runs. The loader refuses
them first, naming the task and key holding one (the place its line is found by).

Cost: one walk of the spec's data, already in memory, skipping at once the
strings and integers most of it is: about 1.5 us per task (under 30 ms of the
3 s a 20,000-task dict spec takes to load).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["NOT_FINITE", "NO_JSON_FORM", "NonFinite", "find_non_finite", "first_non_finite"]

#: What is said of such a number, after its value; the caller says where such values go.
NO_JSON_FORM = (
    "is not a finite number: NaN, Infinity and numbers past the float range (1e400) have no JSON form"
)
#: What a spec's loader says of such a number, after its value.
NOT_FINITE = f"{NO_JSON_FORM}, in which a spec's values are stored"


class NonFinite(NamedTuple):
    """Where a spec holds a number JSON cannot: the task (None: the spec's own keys) and key."""

    task: str | None
    key: str | None
    value: float


def find_non_finite(data: Mapping[Any, Any]) -> NonFinite | None:
    """A non-finite float in a spec, with its task and key; None if it has none.

    Keys are named as errors name them: a task's own key (``timeout``), or one
    level into it (``inputs.value``, ``retry.values``, ``engine.max_workers``).
    """
    return _in_body(None, data)


def _in_body(task: str | None, body: Mapping[Any, Any]) -> NonFinite | None:
    """Search the keys of the spec (``task`` None), a task or a sub-flow, and the items of ``tasks``."""
    for key, value in body.items():
        if key == "tasks" and isinstance(value, Mapping) and (task is None or "flow" in body):
            for item, item_body in value.items():
                if type(item_body) is dict or isinstance(item_body, Mapping):
                    found = _in_body(str(item), item_body)
                else:
                    found = _found(str(item), None, item_body)
                if found is not None:
                    return found
        elif type(value) in _PLAIN:  # most keys of most tasks: nothing to walk
            continue
        elif type(value) is dict or isinstance(value, Mapping):
            for inner, item in value.items():
                if type(item) in _PLAIN and type(inner) in _PLAIN:  # most inputs: a name, a ${ref}
                    continue
                found = _found(task, f"{key}.{inner}", (inner, item))
                if found is not None:
                    return found
        else:
            found = _found(task, str(key), value)
            if found is not None:
                return found
    return None


def _found(task: str | None, key: str | None, value: Any) -> NonFinite | None:
    number = first_non_finite(value)
    return None if number is None else NonFinite(task, key, number)


#: Types of the values a spec holds most, which hold no float: skipped at the cost of one set lookup.
_PLAIN = frozenset({str, int, bool, type(None)})


def first_non_finite(value: Any) -> float | None:
    """A non-finite float in ``value``, its lists, tuples and mappings (keys included), or None.

    Also what the command line checks its JSON values with (``flowkit run
    --store``, ``flowkit jobs post``): Python's :mod:`json` reads ``NaN``,
    ``Infinity`` and ``1e400`` there too.
    """
    if type(value) in _PLAIN:
        return None
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind in _PLAIN:
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return item
        elif kind is dict or isinstance(item, Mapping):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif kind is list or kind is tuple or isinstance(item, list | tuple):
            pending.extend(item)
    return None
