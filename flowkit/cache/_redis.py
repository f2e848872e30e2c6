"""The Redis cache store: one string per entry (``SET ... PX`` for the TTL) and a
sorted set indexing the keys by write time, which bounds the size.

Keys live under ``flowkit:cache:``; Redis expires entries itself. Every process
talking to the server shares the cache.

Every command waits at most ``timeout`` seconds for its answer, and a connect
as long (the URL's ``?timeout=``, as for the SQL stores; default
:data:`~flowkit.cache._stores.TIMEOUT`, also :data:`SOCKET_TIMEOUT` here;
redis-py's own ``?socket_timeout=`` and ``?socket_connect_timeout=`` still win):
a Redis that stops answering without closing its connections (a frozen
server, a network that drops packets) fails the cache read or write with a
``StorageFailure`` instead of holding the run for ever.

An entry's string is its expiry time by the store's clock (``-``: none), a
newline, and the stored text, as a dir store's file: the store serves an entry
until that time, so its clock decides as every other store's does (a test
injects one and does not wait), and Redis drops the entry by its own clock
after the TTL too, so nothing is left behind. An entry without that line
(written by an earlier flowkit) is a miss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from flowkit import exceptions as exc
from flowkit.cache._stores import TIMEOUT, CacheStore, Clock
from flowkit.persistence.backends._urls import mask_url

__all__ = ["PREFIX", "SOCKET_TIMEOUT", "RedisStore"]

PREFIX = "flowkit:cache:"
_INDEX = PREFIX + "@index"
_INDEX_NAME = _INDEX.encode()
_T = TypeVar("_T")
#: Default seconds a command (and a connect) may wait for the server: the URL's query may say otherwise.
SOCKET_TIMEOUT = TIMEOUT

#: KEYS[1] the index, ARGV[1] the score at or below which entries expired, ARGV[2] the prefix.
_PURGE = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for i = 1, #old do
    redis.call('DEL', ARGV[2] .. old[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return #old
"""


class RedisStore(CacheStore):
    """Entries in a Redis server (``redis://host:port/db``).

    An entry is served until its expiry by the store's clock (injectable);
    Redis also removes it after the TTL by the server's clock (``PX``).
    """

    def __init__(
        self,
        url: str,
        ttl: float | None = None,
        max_entries: int | None = None,
        clock: Clock = time.time,
        *,
        timeout: float = TIMEOUT,
    ) -> None:
        super().__init__(ttl, max_entries, clock)
        #: Seconds a command or a connect waits for the server (redis-py's URL options may differ).
        self.timeout = timeout
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
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self._client.ping()
        except (ValueError, TypeError) as err:
            raise exc.quoting_cause(
                exc.StorageFailure(f"cache store {mask_url(url)}: bad option in the URL: {err}")
            ) from err
        except redis.RedisError as err:
            raise exc.quoting_cause(
                exc.StorageFailure(f"cannot reach cache store {mask_url(url)}: {err}")
            ) from err
        self._purge_script: Any = self._client.register_script(_PURGE)

    def _run(self, what: str, work: Callable[[], _T]) -> _T:
        """Run ``work`` against the server, turning redis-py's errors into the stores' own.

        Raises:
            StorageFailure: the server failed, naming the (masked) store and ``what``,
                as the SQL store's errors do; the client reconnects on the next call.
        """
        try:
            return work()
        except self._errors as err:
            raise exc.quoting_cause(
                exc.StorageFailure(f"cache store {mask_url(self.url)}: cannot {what}: {err}")
            ) from err

    def _get(self, key: str, now: float) -> str | None:
        found = self._run("read an entry", lambda: self._client.get(PREFIX + key))
        return None if found is None else _live_text(found, now)

    def _put(self, key: str, text: str, now: float, expires: float | None) -> None:
        self._run("write an entry", lambda: self._write(key, text, now, expires))

    def _write(self, key: str, text: str, now: float, expires: float | None) -> None:
        pipe = self._client.pipeline()
        entry = f"{'-' if expires is None else repr(expires)}\n{text}"
        if self.ttl is None:
            pipe.set(PREFIX + key, entry)
        else:
            pipe.set(PREFIX + key, entry, px=max(1, int(self.ttl * 1000)))
        pipe.zadd(_INDEX, {key: now})
        pipe.execute()
        if self.max_entries is not None:
            extra = self._client.zcard(_INDEX) - self.max_entries
            if extra > 0:
                for old, _score in self._client.zpopmin(_INDEX, extra):
                    self._client.delete(PREFIX + old.decode("utf-8"))

    def _purge(self, now: float) -> None:
        """Drop the entries written over ``ttl`` ago by the store's clock, and their index members.

        Redis expires the entries by its own clock, not their members of the
        size index: without this a cache with a TTL grew the index by one
        member per key ever written, for as long as it was used. One script,
        so that an entry rewritten meanwhile (a newer score) is not dropped.
        """
        assert self.ttl is not None
        since = now - self.ttl
        self._run("remove expired entries", lambda: self._purge_script(keys=[_INDEX], args=[since, PREFIX]))

    def _delete(self, key: str) -> None:
        self._run("remove an entry", lambda: self._remove(key))

    def _remove(self, key: str) -> None:
        pipe = self._client.pipeline()
        pipe.delete(PREFIX + key)
        pipe.zrem(_INDEX, key)
        pipe.execute()

    def _entries(self, now: float) -> int:
        return self._run("count entries", lambda: self._count(now))

    def _count(self, now: float | None = None) -> int:
        """Entries held (``now`` given: only those still served then)."""
        names = [
            name for name in self._client.scan_iter(match=PREFIX + "*", count=1000) if name != _INDEX_NAME
        ]
        if now is None:
            return len(names)
        live = 0
        for start in range(0, len(names), 1000):
            for found in self._client.mget(names[start : start + 1000]):
                if found is not None and _live_text(found, now) is not None:
                    live += 1
        return live

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


def _live_text(found: bytes, now: float) -> str | None:
    """The text of an entry's string if it is still served at ``now``; None if expired or not an entry."""
    try:
        header, sep, text = found.decode("utf-8").partition("\n")
    except UnicodeDecodeError:  # not an entry (something else wrote it): a miss, as a damaged one
        return None
    if not sep:
        return None  # an earlier flowkit's entry, without its expiry: a miss
    if header != "-":
        try:
            if float(header) <= now:
                return None
        except ValueError:
            return None
    return text
