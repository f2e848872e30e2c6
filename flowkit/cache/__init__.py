"""Result caching by input hash: a cacheable task whose code and inputs are unchanged is not run again.

Mark a task cacheable with ``cache = True`` (class attribute or instance
attribute; a declarative spec's ``cache: true``) and give the engine a store::

    engines.run(flow, cache="sqlite:///cache.db")

The key of each call is a topological hash (see :mod:`flowkit.cache._keys`):
the task's identity plus its inputs, where inputs from upstream cacheable tasks
count by their keys. Stores: ``memory://``, ``dir://``, ``sqlite://``,
``postgresql://`` and ``redis://``, each with ``?ttl=`` and ``&max_entries=``;
the SQL and Redis ones also with ``&timeout=`` (default :data:`TIMEOUT`
seconds), the longest one lookup or write waits for a hung server.
"""

from __future__ import annotations

from flowkit.cache._keys import Uncacheable, call_key, task_identity
from flowkit.cache._stores import TIMEOUT, CacheStats, CacheStore, DirStore, MemoryStore, open_store

__all__ = [
    "TIMEOUT",
    "CacheStats",
    "CacheStore",
    "DirStore",
    "MemoryStore",
    "Uncacheable",
    "call_key",
    "open_store",
    "task_identity",
]
