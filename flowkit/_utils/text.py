"""Text for people: laid out in a terminal's columns, and made safe to log.

A CJK character takes two cells of a terminal (:func:`cells`, :func:`pad`).
A name another process sent (a worker's id, a task or atom name in a request)
may hold a newline or a terminal escape; logged raw it forges a log line or
rewrites the terminal (:func:`log_safe`, or :class:`LogSafe` as a log call's
argument, escaped only if the line is emitted).
"""

from __future__ import annotations

import unicodedata

__all__ = ["LogSafe", "cells", "error_text", "log_safe", "pad"]


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


#: Characters that reorder the text after them on screen ("Trojan Source"): a
#: log line could show a name other than the one it holds.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Unicode categories escaped: control characters (C0, DEL, C1), line and
#: paragraph separators (read as line breaks by some log viewers), and lone
#: surrogates (a log handler writing UTF-8 would fail on one).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def error_text(error: BaseException) -> str:
    """What ``error`` says, or its class name when it says nothing.

    For a message that quotes its cause (``f"... failed: {error_text(err)}"``):
    several client libraries raise exceptions without text (kazoo's
    ``ConnectionLoss()``), and quoted raw they left a message ending in a colon.
    """
    return str(error) or type(error).__name__


def _escaped(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if char in _BIDI_CONTROLS or unicodedata.category(char) in _ESCAPED_CATEGORIES:
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def log_safe(value: object) -> str:
    """``value`` as text that stays on its log line: control characters escaped as ``\\n``, ``\\x1b``...

    For a name another process sent (a worker's id, a request's task or atom
    name) wherever it goes into a log line or a message that is logged: the
    protocol accepts any string, as TaskFlow does, so the name is not refused;
    only its showing is made safe. Printable text, however un-ASCII, comes back
    as it is (one C-speed check, so a log line of an ordinary name pays nothing
    more); a backslash is not doubled, so names read as they were written.
    The Go worker's ``logSafe`` applies the same rule.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(map(_escaped, text))


class LogSafe:
    """``value`` as a log call's argument, shown as :func:`log_safe` shows it, when the line is emitted.

    ``LOG.debug("claiming %s", LogSafe(job))`` stays one allocation on a hot
    path whose level is off: :mod:`logging` formats (calls ``str``) only a
    record a handler takes, so the name is read and escaped then, not at every
    call. ``%r`` needs no wrapper: ``repr`` of a string already escapes what
    :func:`log_safe` does.
    """

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return log_safe(self.value)

    def __repr__(self) -> str:
        return log_safe(repr(self.value))
