"""A backend whose schema is made, closed after the block: what a run's test starts from."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flowkit.persistence import backends
from flowkit.persistence.base import Backend

__all__ = ["upgraded_backend"]


@contextlib.contextmanager
def upgraded_backend(url: str) -> Iterator[Backend]:
    """The backend at ``url``, schema upgraded; closed when the block ends."""
    made = backends.fetch({"connection": url})
    try:
        with contextlib.closing(made.get_connection()) as conn:
            conn.upgrade()
        yield made
    finally:
        made.close()
