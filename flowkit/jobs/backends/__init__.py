"""Find and make a jobboard by kind (``board`` option) or URL.

``fetch("my-board", {"board": "redis", "host": "127.0.0.1"}, persistence=...)``
makes a board; so does ``fetch("my-board", "redis://127.0.0.1:6379/0")``. Built-in
kinds (``memory``, ``redis``, ``zookeeper``, ``etcd``) resolve from a table here, so they
work from a source tree; others come from the ``flowkit.jobboards`` entry-point
group (name = kind, value = a :class:`~flowkit.jobs.base.JobBoard` class).
Nothing connects until the board's ``connect()``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from flowkit import exceptions as exc
from flowkit.jobs.base import JobBoard
from flowkit.persistence.backends._urls import mask_url

__all__ = ["BOARD_NAMESPACE", "backend", "fetch"]

BOARD_NAMESPACE = "flowkit.jobboards"
"""The entry-point group board kinds are registered in."""

_BUILTIN: dict[str, str] = {
    "etcd": "flowkit.jobs.backends.impl_etcd:EtcdJobBoard",
    "etcds": "flowkit.jobs.backends.impl_etcd:EtcdJobBoard",
    "memory": "flowkit.jobs.backends.impl_memory:MemoryJobBoard",
    "redis": "flowkit.jobs.backends.impl_redis:RedisJobBoard",
    "rediss": "flowkit.jobs.backends.impl_redis:RedisJobBoard",
    "zookeeper": "flowkit.jobs.backends.impl_zookeeper:ZookeeperJobBoard",
    "zk": "flowkit.jobs.backends.impl_zookeeper:ZookeeperJobBoard",
}


def _entry_points(namespace: str) -> dict[str, Any]:
    from importlib import metadata

    return {ep.name: ep for ep in metadata.entry_points(group=namespace)}


def _normalise(conf: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(kind, conf)`` from a URL, a kind name or a conf mapping with ``board``."""
    merged: dict[str, Any] = {"board": conf} if isinstance(conf, str) else dict(conf)
    board = merged.get("board")
    if not isinstance(board, str) or not board:
        raise exc.NotFound(f"jobboard configuration names no 'board' kind: {sorted(merged)}")
    if "://" in board:
        merged.setdefault("url", board)
        scheme = urlsplit(board).scheme
        return scheme.lower(), merged
    return board.lower(), merged


def _board_class(kind: str, namespace: str, shown: str) -> type[JobBoard]:
    target = _BUILTIN.get(kind) if namespace == BOARD_NAMESPACE else None
    if target is not None:
        module, _, attr = target.partition(":")
        cls: type[JobBoard] = getattr(importlib.import_module(module), attr)
        return cls
    found = _entry_points(namespace)
    if kind not in found:
        known = set(found) | (set(_BUILTIN) if namespace == BOARD_NAMESPACE else set())
        raise exc.NotFound(
            # TaskFlow's sentence first, then what would have worked.
            f"Could not find jobboard {kind} (board {shown!r}; known kinds: {', '.join(sorted(known))})"
        )
    loaded: type[JobBoard] = found[kind].load()
    return loaded


def fetch(
    name: str,
    conf: str | Mapping[str, Any],
    namespace: str = BOARD_NAMESPACE,
    **kwargs: Any,
) -> JobBoard:
    """Make the jobboard ``conf`` describes (no I/O yet).

    Args:
        name: the board's name.
        conf: a URL (``redis://host:6379/0``, ``zookeeper://host:2181/path``,
            ``memory://``) or a mapping whose ``board`` key is a kind or a URL,
            plus the board's options.
        namespace: the entry-point group to look kinds up in.
        kwargs: passed to the board class (``persistence=``...).

    Raises:
        NotFound: no board of that kind (the known kinds are listed).
    """
    shown = mask_url(conf) if isinstance(conf, str) else mask_url(dict(conf).get("board"))
    try:
        kind, merged = _normalise(conf)
    except ValueError as err:  # urlsplit's "Invalid IPv6 URL", which names nothing
        raise ValueError(f"malformed jobboard URL {shown!r}: {err}") from None
    cls = _board_class(kind, namespace, shown)
    return cls(name, merged, **kwargs)


@contextlib.contextmanager
def backend(
    name: str,
    conf: str | Mapping[str, Any],
    namespace: str = BOARD_NAMESPACE,
    **kwargs: Any,
) -> Iterator[JobBoard]:
    """Fetch a board, connect it, yield it, and close it on exit."""
    board = fetch(name, conf, namespace=namespace, **kwargs)
    board.connect()
    try:
        yield board
    finally:
        board.close()
