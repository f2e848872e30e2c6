"""Random (version 4) UUID strings without importing :mod:`uuid`.

:mod:`uuid` imports :mod:`platform` at import time, about 2 ms that every process
pays on its first flow only to name it. The text is the same as ``str(uuid.uuid4())``.
"""

from __future__ import annotations

import os

__all__ = ["random_uuid"]

# Version 4 in bits 76-79 and the RFC 4122 variant (binary 10) in bits 62-63.
_CLEAR = ~((0xF << 76) | (0x3 << 62))
_SET = (0x4 << 76) | (0x2 << 62)


def random_uuid() -> str:
    """A random version-4 UUID in its usual 8-4-4-4-12 lowercase hex form."""
    text = f"{(int.from_bytes(os.urandom(16)) & _CLEAR) | _SET:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
