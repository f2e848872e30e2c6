"""The Redis cache store: one string per entry (``SET ... PX`` for the TTL) and a
sorted set indexing the keys by write time, which bounds the size.

Keys live under ``flowkit:cache:``; Redis expires entries itself. Every process
talking to the server shares the cache.

Every command waits at most :data:`SOCKET_TIMEOUT` seconds for its answer
(``?socket_timeout=`` and ``?socket_connect_timeout=`` in the URL change it):
a Redis that stops answering without closing its connections (a frozen
server, a network that drops packets) fails the cache read or write with a
``StorageFailure`` instead of holding the run for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from flowkit import exceptions as exc
from flowkit.cache._stores import CacheStore, Clock
from flowkit.persistence.backends._urls import mask_url

__all__ = ["PREFIX", "SOCKET_TIMEOUT", "RedisStore"]

PREFIX = "flowkit:cache:"
_INDEX = PREFIX + "@index"
_T = TypeVar("_T")
#: Default seconds a command (and a connect) may wait for the server: the URL's query may say otherwise.
SOCKET_TIMEOUT = 5.0


class RedisStore(CacheStore):
    """Entries in a Redis server (``redis://host:port/db``).

    TTL is Redis's own (``PX``), so it follows the server's clock; the injected
    clock only orders the size index.
    """

    def __init__(
        self, url: str, ttl: float | None = None, max_entries: int | None = None, clock: Clock = time.time
    ) -> None:
        super().__init__(ttl, max_entries, clock)
        try:
            import redis
        except ImportError as err:
            raise exc.StorageFailure(
                "the redis cache store needs the redis client: pip install 'flowkit[workers]'"
            ) from err
        self.url = url
        self._errors: type[Exception] = redis.RedisError
        try:
            # Options in the URL's query (socket_timeout=...) win over these defaults.
            self._client: Any = redis.Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
            )
            self._client.ping()
        except (ValueError, TypeError) as err:
            raise exc.StorageFailure(f"cache store {mask_url(url)}: bad option in the URL: {err}") from err
        except redis.RedisError as err:
            raise exc.StorageFailure(f"cannot reach cache store {mask_url(url)}: {err}") from err

    def _run(self, what: str, work: Callable[[], _T]) -> _T:
        """Run ``work`` against the server, turning redis-py's errors into the stores' own.

        Raises:
            StorageFailure: the server failed, naming the (masked) store and ``what``,
                as the SQL store's errors do; the client reconnects on the next call.
        """
        try:
            return work()
        except self._errors as err:
            raise exc.StorageFailure(f"cache store {mask_url(self.url)}: cannot {what}: {err}") from err

    def _get(self, key: str, now: float) -> str | None:
        found = self._run("read an entry", lambda: self._client.get(PREFIX + key))
        return None if found is None else found.decode("utf-8")

    def _put(self, key: str, text: str, now: float, expires: float | None) -> None:
        self._run("write an entry", lambda: self._write(key, text, now))

    def _write(self, key: str, text: str, now: float) -> None:
        pipe = self._client.pipeline()
        if self.ttl is None:
            pipe.set(PREFIX + key, text)
        else:
            pipe.set(PREFIX + key, text, px=max(1, int(self.ttl * 1000)))
            # Redis expires the entries, not their members of the size index: drop
            # those whose entries have expired, or a cache with a TTL grows the
            # index by one member per key ever written, for as long as it is used.
            pipe.zremrangebyscore(_INDEX, "-inf", now - self.ttl)
        pipe.zadd(_INDEX, {key: now})
        pipe.execute()
        if self.max_entries is not None:
            extra = self._client.zcard(_INDEX) - self.max_entries
            if extra > 0:
                for old, _score in self._client.zpopmin(_INDEX, extra):
                    self._client.delete(PREFIX + old.decode("utf-8"))

    def _delete(self, key: str) -> None:
        self._run("remove an entry", lambda: self._remove(key))

    def _remove(self, key: str) -> None:
        pipe = self._client.pipeline()
        pipe.delete(PREFIX + key)
        pipe.zrem(_INDEX, key)
        pipe.execute()

    def _entries(self, now: float) -> int:
        return self._run("count entries", self._count)

    def _count(self) -> int:
        count = 0
        for _key in self._client.scan_iter(match=PREFIX + "*", count=1000):
            count += 1
        return max(0, count - (1 if self._client.exists(_INDEX) else 0))

    def clear(self) -> int:
        return self._run("clear", self._clear)

    def _clear(self) -> int:
        count = self._count()
        keys = list(self._client.scan_iter(match=PREFIX + "*", count=1000))
        if keys:
            self._client.delete(*keys)
        return count

    def close(self) -> None:
        self._client.close()
