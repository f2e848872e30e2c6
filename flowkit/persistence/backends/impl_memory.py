"""A backend that keeps everything in this process's memory, for tests and demos.

All connections of one :class:`MemoryBackend` share its documents; two
backends never share anything. Documents are kept as JSON bytes, so the
memory backend behaves like the durable ones: what goes in is copied, what
comes out is fresh, and results come back as JSON types.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from flowkit.persistence.backends._path_based import (
    FLOWS,
    KINDS,
    Batch,
    DocumentConnection,
    DocumentStore,
    Members,
    Read,
)
from flowkit.persistence.base import Backend

__all__ = ["Connection", "MemoryBackend"]


class _MemoryStore(DocumentStore):
    """Three dicts of JSON bytes and the flows' links, behind one re-entrant lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._docs: dict[str, dict[str, bytes]] = {kind: {} for kind in KINDS}
        # flow uuid -> its atom uuids (a dict keeps them in the order linked)
        self._members: dict[str, dict[str, None]] = {}

    def describe(self) -> str:
        return "memory://"

    def read(self, kind: str, key: str) -> Read | None:
        data = self._docs[kind].get(key)
        return Read(data, None) if data is not None else None

    def read_many(self, kind: str, keys: Sequence[str]) -> list[Read | None]:
        docs = self._docs[kind]
        return [Read(docs[key], None) if key in docs else None for key in keys]

    def linked_many(self, flow: str, atoms: Sequence[str]) -> list[bool]:
        members = self._members.get(flow, {})
        return [atom in members for atom in atoms]

    def members(self, flow: str) -> Members:
        return Members(list(self._members.get(flow, ())), None)

    def keys(self, kind: str) -> list[str]:
        with self._lock:
            return list(self._docs[kind])

    def writing(self) -> AbstractContextManager[None]:
        return self._lock  # type: ignore[return-value]

    def commit(self, batch: Batch) -> None:
        # Called with the lock held; dict updates cannot fail half-way.
        for (kind, key), data in batch.writes.items():
            if data is None:
                self._docs[kind].pop(key, None)
                if kind == FLOWS:
                    self._members.pop(key, None)
            else:
                self._docs[kind][key] = data
        for (flow, atom), add in batch.links.items():
            if add:
                self._members.setdefault(flow, {})[atom] = None
            elif flow in self._members:
                self._members[flow].pop(atom, None)

    def ensure(self) -> None:
        """Nothing to create: the collections exist from the start."""

    def clear(self) -> None:
        with self._lock:
            for docs in self._docs.values():
                docs.clear()
            self._members.clear()


class Connection(DocumentConnection):
    """A connection to a :class:`MemoryBackend` (TaskFlow's name for the memory backend's connection class).

    Every method is the shared document connection's; the class exists so that
    code naming it, in ``isinstance`` checks or type hints, keeps working.
    """


class MemoryBackend(Backend):
    """Keeps logbooks in memory; shared by every connection it hands out.

    Args:
        conf: options (none are used); ``{"connection": "memory://"}`` typically.
    """

    def __init__(self, conf: Mapping[str, Any] | None = None) -> None:
        super().__init__(conf)
        self._store = _MemoryStore()

    def get_connection(self) -> Connection:
        return Connection(self, self._store)

    def close(self) -> None:
        """Nothing to release; the data lives as long as the backend object."""
