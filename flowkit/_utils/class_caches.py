"""A bound on the caches flowkit keeps per class.

Several hot paths look a class up in a module-level dict rather than ask an ABC
``isinstance`` question per item (a microsecond each, over flows of 100,000
atoms). Such a dict holds its classes strongly: a flow factory that defines its
task classes inside itself makes new ones for every flow it builds, and a
conductor building one per job kept every job's classes (some 44 kB each, with
their functions and ABC caches) for as long as it ran. A cache that holds
:data:`MAX_CLASSES` classes is emptied before it takes one more, as the atom
module's mapping cache is: programs have far fewer classes of their own, so
theirs stay known, and the classes of a finished job go with the next clearing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_CLASSES", "make_room"]

#: How many classes (or per-class keys) a per-class cache holds before it starts afresh.
MAX_CLASSES = 1024


def make_room(cache: dict[Any, Any] | set[Any]) -> None:
    """Empty ``cache`` if it is full, before the caller adds one more class to it.

    Emptied in place: hot paths keep bound methods of these dicts (``cache.get``).
    """
    if len(cache) >= MAX_CLASSES:
        cache.clear()
