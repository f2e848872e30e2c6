"""Yes/no options written as text: one reading for every place that takes them.

Configuration files, URL query strings and command lines give booleans as
text, and ``bool("false")`` is true. Persistence URLs and jobboard options read
them here, so ``"off"`` means the same to both; so do the engines' flags
(``never_resolve="false"``). The words are those of oslo's ``bool_from_string``,
which TaskFlow reads all of these with.
"""

from __future__ import annotations

__all__ = ["read_switch"]

_TRUE = frozenset({"1", "t", "true", "y", "yes", "on"})
_FALSE = frozenset({"0", "f", "false", "n", "no", "off"})


def read_switch(value: object) -> bool | None:
    """``value`` as a bool: a bool as it is, else its text (any case); None if it is neither.

    The caller raises its own error for None, naming its option.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None
