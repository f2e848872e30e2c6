"""How every backend reports a record that is not there: one message, TaskFlow's words.

The SQL backend and the document backends (memory, directory, ZooKeeper) raise
:class:`~flowkit.exceptions.NotFound` for a missing logbook, flow detail or atom
detail through :func:`not_found`, so callers that show (or match) the message
see the same text whatever the backend, as they did with TaskFlow's.
"""

from __future__ import annotations

from flowkit import exceptions as exc

__all__ = ["ATOMS", "BOOKS", "FLOWS", "not_found"]

BOOKS = "books"
FLOWS = "flows"
ATOMS = "atoms"
_MISSING = {BOOKS: "No logbook found", FLOWS: "No flow details found", ATOMS: "No atom details found"}


def not_found(kind: str, uuid: str) -> exc.NotFound:
    """The error for a missing record of ``kind`` (:data:`BOOKS`, :data:`FLOWS` or :data:`ATOMS`)."""
    return exc.NotFound(f"{_MISSING[kind]} with uuid {uuid!r}")
