"""A worker request written by hand, as a test sends it straight to a worker's stream.

Tests that speak the wire protocol themselves (no engine in between) start from
this well-formed ``execute`` request and change what they probe.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["execute_request"]


def execute_request(
    reply_to: str,
    task: str,
    name: str,
    arguments: Mapping[str, Any],
    changes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A version-1 ``execute`` request of ``task`` for atom ``name``, due in a minute, then ``changes``."""
    now = time.time()
    message: dict[str, Any] = {
        "v": 1,
        "type": "request",
        "id": str(uuid.uuid4()),
        "reply_to": reply_to,
        "action": "execute",
        "task": task,
        "name": name,
        "arguments": dict(arguments),
        "sent_at": now,
        "deadline": now + 60.0,
    }
    message.update(changes or {})
    return message
