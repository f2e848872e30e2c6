"""A base for persistence backends that keep logbooks as items under paths.

TaskFlow's ``persistence.path_based`` lets a backend be written for any store that
looks like a file system (a directory tree, ZooKeeper, a key-value store with
``/``-separated keys) by implementing a handful of path operations. Backends written
that way against TaskFlow keep working here: subclass :class:`PathBasedBackend` and
:class:`PathBasedConnection` and implement the same hooks:

* ``_join_path(*parts)``: join path parts;
* ``_get_item(path)``: the value stored at ``path`` (raise
  :class:`~flowkit.exceptions.NotFound` when there is none);
* ``_set_item(path, value, transaction)``: store ``value`` (a JSON text) at ``path``;
* ``_del_tree(path, transaction)``: delete ``path`` and everything under it (absent
  paths are not an error);
* ``_get_children(path)``: the names directly under ``path`` (empty when absent);
* ``_ensure_path(path)``: create ``path`` and its parents if missing;
* ``_create_link(src_path, dest_path, transaction)``: record at ``dest_path`` that
  ``src_path`` belongs there (the value does not matter; only its name is read,
  and whether ``_get_item`` finds it);
* ``_transaction()``: a context manager making the writes inside it one unit.

The layout follows TaskFlow's: ``<path>/books/<uuid>`` (a book; its document lists
its flows), ``<path>/flow_details/<uuid>`` (a flow, whose children link its atoms)
and ``<path>/atom_details/<uuid>``; every value is a JSON text. Everything else
(merging an update into what is stored, lazy loading, which writes one save needs)
is flowkit's document connection,
shared with the memory, directory and ZooKeeper backends; a connection serializes its
writers with a lock held by the backend.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from flowkit import exceptions as exc
from flowkit.persistence.backends._path_based import (
    ATOMS,
    BOOKS,
    FLOWS,
    Batch,
    DocumentConnection,
    DocumentStore,
    Members,
    Read,
)
from flowkit.persistence.base import Backend

__all__ = ["PathBasedBackend", "PathBasedConnection"]

#: Where each collection lives under the backend's path (TaskFlow's directory names).
_DIRECTORIES = {BOOKS: "books", FLOWS: "flow_details", ATOMS: "atom_details"}


class PathBasedBackend(Backend, metaclass=abc.ABCMeta):
    """A backend whose data lives under :attr:`path` (``conf["path"]``, else :attr:`DEFAULT_PATH`).

    Subclasses implement :meth:`get_connection` (returning a
    :class:`PathBasedConnection`) and :meth:`close`.
    """

    #: The path used when the configuration gives none.
    DEFAULT_PATH: ClassVar[str | None] = None

    def __init__(self, conf: Mapping[str, Any] | None) -> None:
        super().__init__(conf)
        self._path: str | None = self.conf.get("path") or self.DEFAULT_PATH
        # One writer at a time across this backend's connections.
        self.write_lock = threading.RLock()

    @property
    def path(self) -> str | None:
        """The root under which books, flow details and atom details are kept."""
        return self._path


class _PathStore(DocumentStore):
    """flowkit's document store, spoken through a path-based connection's hooks."""

    def __init__(self, connection: PathBasedConnection) -> None:
        self._conn = connection

    def describe(self) -> str:
        return f"{type(self._conn.backend).__name__} at {self._conn.backend.path!r}"

    def _item_path(self, kind: str, key: str) -> str:
        return self._conn._join_path(self._conn.root(kind), key)

    def read(self, kind: str, key: str) -> Read | None:
        try:
            value = self._conn._get_item(self._item_path(kind, key))
        except exc.NotFound:
            return None
        data = value.encode() if isinstance(value, str) else bytes(value)
        return Read(data, None)

    def members(self, flow: str) -> Members:
        return Members(list(self._conn._get_children(self._item_path(FLOWS, flow))), None)

    def linked_many(self, flow: str, atoms: Sequence[str]) -> list[bool]:
        flow_path = self._item_path(FLOWS, flow)
        return [self._has(self._conn._join_path(flow_path, atom)) for atom in atoms]

    def _has(self, path: str) -> bool:
        try:
            self._conn._get_item(path)
        except exc.NotFound:
            return False
        return True

    def keys(self, kind: str) -> list[str]:
        return list(self._conn._get_children(self._conn.root(kind)))

    def writing(self) -> AbstractContextManager[None]:
        lock: AbstractContextManager[None] = self._conn.backend.write_lock  # type: ignore[assignment]
        return lock

    def commit(self, batch: Batch) -> None:
        conn = self._conn
        with conn._transaction() as transaction:
            for (kind, key), data in batch.writes.items():
                path = self._item_path(kind, key)
                if data is None:
                    conn._del_tree(path, transaction)
                else:
                    conn._set_item(path, data.decode(), transaction)
            for (flow, atom), add in batch.links.items():
                link = conn._join_path(self._item_path(FLOWS, flow), atom)
                if add:
                    conn._create_link(self._item_path(ATOMS, atom), link, transaction)
                else:
                    conn._del_tree(link, transaction)

    def ensure(self) -> None:
        for kind in _DIRECTORIES:
            self._conn._ensure_path(self._conn.root(kind))

    def clear(self) -> None:
        with self.writing(), self._conn._transaction() as transaction:
            for kind in _DIRECTORIES:
                self._conn._del_tree(self._conn.root(kind), transaction)


class PathBasedConnection(DocumentConnection, metaclass=abc.ABCMeta):
    """A connection that stores documents through the path hooks listed in the module docstring."""

    def __init__(self, backend: PathBasedBackend) -> None:
        super().__init__(backend, _PathStore(self))
        self._path_backend = backend
        root = backend.path if backend.path is not None else ""
        self._book_path = self._join_path(root, _DIRECTORIES[BOOKS])
        self._flow_path = self._join_path(root, _DIRECTORIES[FLOWS])
        self._atom_path = self._join_path(root, _DIRECTORIES[ATOMS])

    @property
    def backend(self) -> PathBasedBackend:
        return self._path_backend

    @property
    def book_path(self) -> str:
        """Where logbooks are kept."""
        return self._book_path

    @property
    def flow_path(self) -> str:
        """Where flow details are kept."""
        return self._flow_path

    @property
    def atom_path(self) -> str:
        """Where atom details are kept."""
        return self._atom_path

    def root(self, kind: str) -> str:
        """The path of one collection (``"books"``, ``"flows"`` or ``"atoms"``)."""
        return {BOOKS: self._book_path, FLOWS: self._flow_path, ATOMS: self._atom_path}[kind]

    @abc.abstractmethod
    def _join_path(self, *parts: str) -> str:
        """Join path parts into one path."""

    @abc.abstractmethod
    def _get_item(self, path: str) -> str | bytes:
        """Return the value stored at ``path``; raise NotFound when there is none."""

    @abc.abstractmethod
    def _set_item(self, path: str, value: str, transaction: Any) -> None:
        """Store ``value`` at ``path`` as part of ``transaction``."""

    @abc.abstractmethod
    def _del_tree(self, path: str, transaction: Any) -> None:
        """Delete ``path`` and everything under it (nothing to do if absent)."""

    @abc.abstractmethod
    def _get_children(self, path: str) -> Sequence[str] | Iterator[str]:
        """Return the names directly under ``path`` (none if absent)."""

    @abc.abstractmethod
    def _ensure_path(self, path: str) -> None:
        """Create ``path`` and its parents if they are missing."""

    @abc.abstractmethod
    def _create_link(self, src_path: str, dest_path: str, transaction: Any) -> None:
        """Record at ``dest_path`` that ``src_path`` belongs under its parent."""

    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """Return a context manager that makes the writes inside it one unit."""
