"""JSON text to Python values, refusing what no side of the protocol can read.

``NaN`` and ``Infinity`` are no JSON; a number no double holds (``1e400``,
which JSON's grammar lets through) would read as infinity, which cannot be
sent on, and an integer longer than Python's ``int`` conversion limit cannot
be read at all, while Go's parser keeps both as written. The protocol refuses
all of them on every side, so that a Go worker neither runs a request the
Python one refuses nor answers with a number the engine cannot read.

Checking each number costs a Python call per number, twice the parse of a
body full of them, so only a body whose bytes may hold a big number (a run of
309 digits, or an exponent of three) is read that way; the others, nearly
all, by the plain decoder.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

__all__ = ["MAX_INTEGER_DIGITS", "loads"]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: The most digits an integer in a message may have: Python's own limit on
#: converting text to ``int`` (``sys.get_int_max_str_digits()`` by default).
MAX_INTEGER_DIGITS: Final = 4300


def _shown(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:20]}..."


def _finite_float(text: str) -> float:
    # JSON's grammar takes 1e400, but no double holds it: Python would read
    # infinity, which cannot be sent on, and the Go worker keeps the text.
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {_shown(text)} is too large for a double")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INTEGER_DIGITS:
        raise ValueError(f"integer {_shown(text)} has {digits} digits, more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


_loads = json.JSONDecoder(parse_constant=_refuse_constant).decode
# Twice as slow on a body full of numbers, so used only on one that may hold
# a big one (see _may_hold_a_big_number).
_loads_bounded = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int
).decode

_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789E", b"000000000e")
# A double overflows only past 308 digits before the point or with an
# exponent of three digits; an integer too long has more digits still.
_LONG_DIGITS: Final = b"0" * 309


def _may_hold_a_big_number(body: bytes) -> bool:
    """Whether ``body`` may hold a number too large for a double or too long an integer.

    Runs at memchr speed (a translation and three searches); a "yes" only
    sends the body to the slower decoder that checks each number.
    """
    digits = body.translate(_DIGITS_AS_ZERO)
    return _LONG_DIGITS in digits or b"e000" in digits or b"e+000" in digits


def loads(body: bytes) -> Any:
    """Parse the UTF-8 JSON text ``body``.

    Raises:
        ValueError: it is not JSON text (``UnicodeDecodeError`` included), or
            holds a constant or a number the protocol refuses.
        RecursionError: it nests deeper than the parser can go.
    """
    text = body.decode("utf-8")
    return _loads_bounded(text) if _may_hold_a_big_number(body) else _loads(text)
