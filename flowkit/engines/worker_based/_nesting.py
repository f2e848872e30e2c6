"""How deep a message body nests its arrays and objects, checked before it is parsed.

JSON sets no limit on nesting, but every parser has one, and they differ:
CPython's ``json`` gives up near its recursion limit (about 1,000 levels, fewer
the deeper the calling stack), Go's ``encoding/json`` at 10,000. A Go worker
could thus run a request the Python worker refuses, or send an answer that the
engine cannot read and so never sees: its atom would wait for ever while the
worker stays alive. The protocol therefore fixes one limit,
:data:`MAX_DEPTH`, that every side checks on what it sends and receives.

The check counts brackets outside strings on the raw bytes. It costs two
``bytes.count`` calls on a body with no more than :data:`MAX_DEPTH` opening
brackets in all (nearly every message); only a body with more is scanned,
with strings cut out by one regular expression and the brackets summed in C
(``itertools.accumulate``), so even a 1 MiB body costs milliseconds.
"""

from __future__ import annotations

import itertools
import re
from typing import Final

__all__ = ["MAX_DEPTH", "nests_deeper_than"]

#: The deepest nesting of arrays and objects a message body may have, the
#: message's own object counting as the first level. Far below what any
#: parser on either side can read, and far above what any task needs.
MAX_DEPTH: Final = 512

# A JSON string: a quote, then characters other than a quote or a backslash, or
# an escape (a backslash and the byte after it), then a quote.
_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(byte for byte in range(256) if byte not in b"[]{}")
# What each bracket adds to the depth (only brackets are looked up).
_STEP: Final = tuple(1 if byte in b"[{" else -1 for byte in range(256))


def nests_deeper_than(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``body`` nests arrays and objects more than ``limit`` levels deep.

    Brackets inside strings do not count. ``body`` need not be valid JSON: a
    malformed one is answered as such by the parser, which runs after.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return len(brackets) > limit and max(itertools.accumulate(map(_STEP.__getitem__, brackets))) > limit
