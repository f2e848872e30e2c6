"""The ``id`` and ``event`` a response shows in its first bytes, read without parsing it.

An engine must fail the request that a final answer it cannot read answers,
or wait for ever on a worker that stays alive. Most unreadable answers parse
as JSON and quote their ``id`` (see ``ProtocolError.quoted_id``), but a body
refused *before* parsing does not: one over the engine's ``max_message_bytes``
(its workers may allow more), one nested deeper than ``MAX_DEPTH``, one the
JSON parser gives up on (an older worker's number no double holds). Every
worker writes a response's fields in one order, ``v``, ``type``, ``id``,
``worker``, ``event`` first (the Python worker's dicts and the Go worker's
struct fields are so laid out), so the head of such a body still says which
request it answers and whether it is final. One anchored regular expression
reads it; a body whose head is otherwise stays unquoted, as before.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

__all__ = ["ResponseHead", "response_head"]

_HEAD: Final = re.compile(
    rb'\{\s*"v"\s*:\s*1\s*,\s*"type"\s*:\s*"response"\s*,'
    rb'\s*"id"\s*:\s*"([^"\\]{1,256})"\s*,'
    rb'\s*"worker"\s*:\s*"[^"\\]{0,256}"\s*,'
    rb'\s*"event"\s*:\s*"([a-z]{1,32})"'
)


class ResponseHead(NamedTuple):
    """What the head of a response body quotes."""

    id: str
    event: str


def response_head(body: bytes) -> ResponseHead | None:
    """The ``id`` and ``event`` a response body begins with, or None when it begins otherwise."""
    found = _HEAD.match(body)
    if found is None:
        return None
    try:
        return ResponseHead(found[1].decode("utf-8"), found[2].decode("ascii"))
    except UnicodeDecodeError:
        return None
