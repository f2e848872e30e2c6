"""How every backend reports a record, or a whole store, that is not there: one message each.

The SQL backend and the document backends (memory, directory, ZooKeeper) raise
:class:`~flowkit.exceptions.NotFound` for a missing logbook, flow detail or atom
detail through :func:`not_found`, so callers that show (or match) the message
see the same text whatever the backend, as they did with TaskFlow's. The
``upgrade()`` of a backend configured ``writable=False``, on a store without
its collections, says the same through :func:`never_upgraded`.
"""

from __future__ import annotations

from flowkit import exceptions as exc

__all__ = ["ATOMS", "BOOKS", "FLOWS", "never_upgraded", "not_found"]

BOOKS = "books"
FLOWS = "flows"
ATOMS = "atoms"
_MISSING = {BOOKS: "No logbook found", FLOWS: "No flow details found", ATOMS: "No atom details found"}


def not_found(kind: str, uuid: str) -> exc.NotFound:
    """The error for a missing record of ``kind`` (:data:`BOOKS`, :data:`FLOWS` or :data:`ATOMS`)."""
    return exc.NotFound(f"{_MISSING[kind]} with uuid {uuid!r}")


def never_upgraded(where: str) -> exc.StoreNotUpgraded:
    """The error of a backend not writable whose store at ``where`` (masked) lacks its collections.

    It names the command that makes them: a read-only backend is what the
    command line's reading commands open, and ``upgrade()`` is a call their
    user cannot make.
    """
    return exc.StoreNotUpgraded(
        f"store {where} has no flowkit collections; create them with "
        f"`flowkit db upgrade --connection {where}`",
        where,
    )
