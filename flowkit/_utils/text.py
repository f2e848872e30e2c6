"""Text laid out in a terminal's columns, where a CJK character takes two cells."""

from __future__ import annotations

import unicodedata

__all__ = ["cells", "pad"]


def cells(text: str) -> int:
    """How many terminal cells ``text`` takes: wide (CJK) characters two, combining marks none.

    ``len`` counts code points, so a column padded by it drifts by one cell per
    wide character of a name (``日本語`` pushed every later column three cells).
    """
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text
    )


def pad(text: str, width: int) -> str:
    """``text`` followed by spaces up to ``width`` cells."""
    return text + " " * (width - cells(text))
