"""A value's ``repr`` cut to a length an error message can quote.

Error messages name the value at fault (a result of the wrong type, one that
cannot be pickled or unpacked); a whole ``repr`` of a large list or a model
would bury the sentence around it. Modules that quote values import this where
they build such a message, not at module level: it is only needed on the
failure path, so a first flow run does not load it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["short_repr"]


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters ending in ``...`` when longer.

    A ``repr`` that raises gives the default ``<Type object at 0x...>`` form: the
    message about the value must not be lost to a broken ``__repr__``.
    """
    try:
        text = repr(value)
    except Exception:
        text = object.__repr__(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
