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
each step in C (``bytes.replace``/``translate``/``split``; a few passes that
peel the innermost bracket pairs, which empty a shallow body; then, for a
deep one, the brackets summed by ``itertools.accumulate``). On a 500 kB list of
20,000 records it costs about 4 ms, a fifth of what parsing them does; a
hostile 1 MiB of brackets costs up to a second, bounded by the size limit.
"""

from __future__ import annotations

import itertools
from typing import Final

__all__ = ["MAX_DEPTH", "nests_deeper_than"]

#: The deepest nesting of arrays and objects a message body may have, the
#: message's own object counting as the first level. Far below what any
#: parser on either side can read, and far above what any task needs.
MAX_DEPTH: Final = 512

_NOT_QUOTES_OR_BRACKETS: Final = bytes(byte for byte in range(256) if byte not in b'"[]{}')
# Braces read as brackets: a depth needs no kinds (a body that mixes them up
# is malformed, and the parser says so).
_AS_BRACKETS: Final = bytes.maketrans(b"{}", b"[]")
#: Innermost layers removed before the depth is summed (see nests_deeper_than).
_PEELS: Final = 8
# What each bracket adds to the depth (only brackets are looked up).
_STEP: Final = tuple(1 if byte == ord("[") else -1 for byte in range(256))


def nests_deeper_than(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``body`` nests arrays and objects more than ``limit`` levels deep.

    Brackets inside strings do not count. ``body`` need not be valid JSON: a
    malformed one is answered as such by the parser, which runs after.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    # Every step runs in C. With escaped backslashes gone, a backslash before a
    # quote escapes it; with those gone, the quotes left delimit strings, so
    # the pieces between them alternate outside, inside, outside... Two
    # quotes side by side are a string with no bracket in it (or the end of
    # one and the start of the next): dropping them keeps that alternation
    # and leaves only the rare strings that hold brackets to split out.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = unescaped.translate(_AS_BRACKETS, _NOT_QUOTES_OR_BRACKETS).replace(b'""', b"")
    if b'"' in brackets:
        brackets = b"".join(brackets.split(b'"')[::2])
    # Each pass removes the innermost pairs, one level exactly (replace does
    # not look again at what it joined). A few of them empty the brackets of
    # a shallow body (a long list of records) at memchr speed; a deeper one
    # has the depth left summed, bracket by bracket.
    peeled = 0
    while brackets and peeled < _PEELS:
        brackets = brackets.replace(b"[]", b"")
        peeled += 1
    if not brackets:
        return peeled > limit
    left = limit - peeled
    return any(depth > left for depth in itertools.accumulate(map(_STEP.__getitem__, brackets)))
