"""Find and make a persistence backend from a URL or a conf dict.

``fetch({"connection": "sqlite:///flows.db"})`` (or just the URL) picks the
backend class by the URL's scheme and makes it; nothing is opened until the
backend's ``get_connection()``. Built-in schemes are resolved from a table
here, so they work even when flowkit runs from a source tree without installed
entry points; other schemes come from the ``flowkit.persistence`` entry-point
group (name = scheme, value = a :class:`~flowkit.persistence.base.Backend`).

Any backend configured ``writable=False`` (``{"connection": url, "writable":
False}`` or ``?writable=false``) creates, migrates and writes nothing; what
reads through one (``flowkit flows list``, the monitor) checks its store with
:func:`ready_for_reading`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from flowkit import exceptions as exc
from flowkit.persistence.backends._urls import backend_name, mask_url, split_conf
from flowkit.persistence.base import Backend

__all__ = ["BACKEND_NAMESPACE", "backend", "fetch", "ready_for_reading"]

BACKEND_NAMESPACE = "flowkit.persistence"
"""The entry-point group backends are registered in."""

_SQLALCHEMY = "flowkit.persistence.backends.impl_sqlalchemy:SQLAlchemyBackend"
_BUILTIN: dict[str, str] = {
    "memory": "flowkit.persistence.backends.impl_memory:MemoryBackend",
    "dir": "flowkit.persistence.backends.impl_dir:DirBackend",
    "file": "flowkit.persistence.backends.impl_dir:DirBackend",
    "sqlite": _SQLALCHEMY,
    "postgresql": _SQLALCHEMY,
    "postgres": _SQLALCHEMY,
    "mysql": _SQLALCHEMY,
    "zookeeper": "flowkit.persistence.backends.impl_zookeeper:ZkBackend",
}


def _entry_points(namespace: str) -> dict[str, Any]:
    from importlib import metadata

    return {ep.name: ep for ep in metadata.entry_points(group=namespace)}


def _path_hint(connection: Any) -> str:
    """For a SQLite file's path given where a URL goes, the URL it most likely meant (or ``""``).

    ``--connection flows.db`` reads as the scheme ``flows.db``; saying so alone
    leaves a newcomer guessing how a SQLite file is spelled (three slashes for
    a relative path, four for an absolute one: ``sqlite:///`` plus the path).
    """
    if not isinstance(connection, str) or ":" in connection:
        return ""
    if not connection.endswith((".db", ".sqlite", ".sqlite3")):
        return ""
    return f"; for a SQLite file, sqlite:///{connection}"


def _backend_class(name: str, namespace: str, connection: Any) -> type[Backend]:
    # The table only speaks for our own group; another group is entirely its owner's.
    target = _BUILTIN.get(name) if namespace == BACKEND_NAMESPACE else None
    if target is not None:
        module, _, attr = target.partition(":")
        cls: type[Backend] = getattr(importlib.import_module(module), attr)
        return cls
    found = _entry_points(namespace)
    if name not in found:
        known = set(found) | (set(_BUILTIN) if namespace == BACKEND_NAMESPACE else set())
        raise exc.NotFound(
            # TaskFlow's sentence first (its entry point group is flowkit's here).
            f"Could not find backend {mask_url(name)}: No '{namespace}' driver found, looking for "
            f"{mask_url(name)!r} (connection {mask_url(connection)!r}; "
            f"known schemes: {', '.join(sorted(known))}){_path_hint(connection)}"
        )
    loaded: type[Backend] = found[name].load()
    return loaded


def fetch(conf: str | Mapping[str, Any], namespace: str = BACKEND_NAMESPACE, **kwargs: Any) -> Backend:
    """Make the backend that ``conf`` describes (no I/O happens yet).

    Args:
        conf: a URL (``memory://``, ``dir:///var/lib/flows``,
            ``postgresql+psycopg://user:pw@host/db``, ...) or a dict whose
            ``connection`` key holds the URL or a bare scheme name, plus
            backend options. The URL's query parameters become options too
            (options given in the dict win).
        namespace: the entry-point group to look schemes up in.
        kwargs: extra keyword arguments for the backend class.

    Returns:
        a new backend; call ``get_connection()`` to use it.

    Raises:
        NotFound: no backend for that scheme (the known schemes are listed).
        StorageFailure: the URL is malformed.
    """
    scheme, merged = split_conf(conf)
    cls = _backend_class(backend_name(scheme), namespace, merged["connection"])
    return cls(merged, **kwargs)


@contextlib.contextmanager
def backend(
    conf: str | Mapping[str, Any], namespace: str = BACKEND_NAMESPACE, **kwargs: Any
) -> Iterator[Backend]:
    """Fetch a backend, bring its layout up to date, yield it, and close it on exit.

    As in TaskFlow, entering runs ``upgrade()`` once on a short-lived
    connection, so the yielded backend is ready for use.
    """
    made = fetch(conf, namespace=namespace, **kwargs)
    try:
        with made.get_connection() as conn:
            conn.upgrade()
        yield made
    finally:
        made.close()


def ready_for_reading(made: Backend, *, create_missing: bool = False) -> None:
    """Check that a read-only (``writable=False``) backend's store is there to be read (its ``upgrade()``).

    Args:
        made: the backend; a writable one is simply upgraded.
        create_missing: a store not made yet (no SQLite file, directory or
            ZooKeeper path, or one without flowkit's collections or schema)
            is first made by a writable backend of the same class and conf,
            which is then closed; ``made`` itself still writes nothing. For a
            reader started before anything wrote the store (the monitor). A
            store at an older schema is not migrated: that is for
            ``flowkit db upgrade``, not for a reader, while the processes
            writing it may be older.

    Raises:
        StoreMissing: no store there (without ``create_missing``).
        StoreNotUpgraded: the store lacks its collections or schema (without
            ``create_missing``); the message names ``flowkit db upgrade``.
        StorageFailure: the store cannot be reached, or its schema is older
            or newer than this flowkit's.
    """
    try:
        with made.get_connection() as conn:
            conn.upgrade()
    except exc.StoreNotUpgraded:
        if not create_missing or made.writable:
            raise
        maker = type(made)({**made.conf, "writable": True})
        try:
            with maker.get_connection() as conn:
                conn.upgrade()
        finally:
            maker.close()
        with made.get_connection() as conn:
            conn.upgrade()
