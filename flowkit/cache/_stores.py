"""Where cached results live: the store interface, the URL parser, memory and dir stores.

Every store keeps JSON text under a hex key, with an optional time to live
(``ttl=`` seconds, from the URL query or the constructor) and an optional size
bound (``max_entries=``: the oldest entries go first). Clocks are injectable so
expiry is tested without sleeping.

Concurrency: no store is single-flight. Two runs that miss the same key at the
same moment both execute the task and both store the (same) result; the last
write wins, which is harmless because the key names the inputs and the code.
"""

from __future__ import annotations

import abc
import contextlib
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flowkit import exceptions as exc
from flowkit._utils.records import Record
from flowkit.persistence.backends._urls import mask_url

__all__ = ["TIMEOUT", "CacheStats", "CacheStore", "DirStore", "MemoryStore", "check_target", "open_store"]

Clock = Callable[[], float]

#: Default seconds an SQL or Redis store waits for its server on one lookup or
#: write (and on a connect) before giving up on the cache for that call; a
#: store URL's ``?timeout=SECONDS`` says otherwise. A hung server (a frozen
#: host, a stopped process) then costs a run this long per call, as a server
#: that is down costs it a refused connection, instead of holding it for ever.
TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What a store holds and how it has been used by this process.

    ``url`` names the store with any password masked (``user:***@host``), as errors do.
    """

    url: str
    entries: int
    hits: int
    misses: int
    writes: int


class _Entry(Record):
    """One stored result, as the memory store holds it and a dir store's file reads back."""

    text: str
    expires: float | None  # wall-clock seconds; None: never
    created: float  # wall-clock seconds when written (a dir store's size bound drops the oldest)

    def live(self, now: float) -> bool:
        """Whether the entry is still served at wall-clock time ``now``."""
        return self.expires is None or self.expires > now


class CacheStore(abc.ABC):
    """A key -> JSON text store with optional TTL and size bound.

    Args:
        ttl: seconds an entry lives (None: until evicted or cleared).
        max_entries: at most this many entries (None: unbounded).
        clock: wall-clock seconds (injectable for tests).
    """

    url: str = ""

    def __init__(
        self, ttl: float | None = None, max_entries: int | None = None, clock: Clock = time.time
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._counts = {"hits": 0, "misses": 0, "writes": 0}
        self._count_lock = threading.Lock()
        #: When the next write also removes the expired entries (see :meth:`_purge`):
        #: the first write, then once per ``ttl``.
        self._next_purge = -math.inf

    def get(self, key: str) -> str | None:
        """The text stored under ``key``, or None (missing or expired)."""
        found = self._get(key, self.clock())
        with self._count_lock:
            self._counts["hits" if found is not None else "misses"] += 1
        return found

    def put(self, key: str, text: str) -> None:
        """Store ``text`` under ``key`` (replacing what was there)."""
        now, ttl = self.clock(), self.ttl
        self._put(key, text, now, None if ttl is None else now + ttl)
        purge = False
        with self._count_lock:
            self._counts["writes"] += 1
            if ttl is not None and now >= self._next_purge:
                self._next_purge, purge = now + ttl, True
        if purge:
            self._purge(now)

    def _purge(self, now: float) -> None:  # noqa: B027 - a store of one's own may expire nothing itself
        """Remove every entry expired at ``now``; the first write calls it, then one per ``ttl``.

        An expired entry used to go only when its own key was read again: a
        store with a ``ttl`` and no ``max_entries`` kept every key it ever
        held, however few were live. The first write of a store object does
        it too, as a process running one flow opens its store for that run
        only; after it, once per ``ttl`` keeps the cost (a table scan, a
        directory's entries read) to one pass per generation of entries.
        """

    def delete(self, key: str) -> None:
        """Remove the entry under ``key``, if there is one.

        The engine removes the entry of a call whose ``revert`` it runs: the
        revert undid what the call did, so its result no longer stands.

        Raises:
            NotImplementedError: the store cannot remove one entry (a store
                written before this method existed; the engine logs it).
        """
        self._delete(key)

    def _delete(self, key: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot remove an entry")

    def stats(self) -> CacheStats:
        """Entries held now (expired ones not counted) and this process's hits, misses, writes.

        The URL is given with its password masked: stats are printed and logged.
        """
        with self._count_lock:
            counts = dict(self._counts)
        return CacheStats(
            mask_url(self.url),
            self._entries(self.clock()),
            counts["hits"],
            counts["misses"],
            counts["writes"],
        )

    @abc.abstractmethod
    def clear(self) -> int:
        """Remove every entry; return how many there were."""

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to release
        """Release connections or files."""

    @abc.abstractmethod
    def _get(self, key: str, now: float) -> str | None: ...

    @abc.abstractmethod
    def _put(self, key: str, text: str, now: float, expires: float | None) -> None: ...

    @abc.abstractmethod
    def _entries(self, now: float) -> int: ...


class MemoryStore(CacheStore):
    """Entries in this process's memory, shared by every engine given the same store object.

    ``memory://NAME`` URLs with the same name share one store within a process.
    """

    def __init__(
        self, ttl: float | None = None, max_entries: int | None = None, clock: Clock = time.time
    ) -> None:
        super().__init__(ttl, max_entries, clock)
        # Least recently written first, so the size bound evicts from the front, as
        # every other store does (by write time; a read does not keep an entry).
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def _renew_locks(self) -> None:
        """New locks, in a forked child: those copied may be held by a thread the child lacks."""
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()

    def _get(self, key: str, now: float) -> str | None:
        with self._lock:
            found = self._data.get(key)
            if found is None:
                return None
            if not found.live(now):
                del self._data[key]
                return None
            return found.text

    def _put(self, key: str, text: str, now: float, expires: float | None) -> None:
        with self._lock:
            self._data[key] = _Entry(text, expires, now)
            self._data.move_to_end(key)
            if self.max_entries is not None:
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)

    def _delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def _purge(self, now: float) -> None:
        with self._lock:
            for key in [key for key, entry in self._data.items() if not entry.live(now)]:
                del self._data[key]

    def _entries(self, now: float) -> int:
        with self._lock:
            return sum(1 for entry in self._data.values() if entry.live(now))

    def clear(self) -> int:
        with self._lock:
            count = len(self._data)
            self._data.clear()
            return count


class DirStore(CacheStore):
    """One JSON file per entry in a directory; processes on one machine share it.

    Writes go to a temporary file renamed into place, so a reader never sees
    half an entry. An entry's file holds its expiry time on the first line.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        ttl: float | None = None,
        max_entries: int | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(ttl, max_entries, clock)
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise exc.quoting_cause(
                exc.StorageFailure(f"cannot use cache directory {self.path}: {err}")
            ) from err
        #: Entries in the directory as this process last counted them, plus the
        #: new keys it wrote since (None: not counted yet); see :meth:`_bound`.
        self._estimate: int | None = None
        #: New keys this process wrote since it last listed the directory.
        self._unlisted = 0
        self._bound_lock = threading.Lock()

    def _file(self, key: str) -> Path:
        return self.path / f"{key}.json"

    def _read(self, file: Path) -> _Entry:
        """The entry an entry file holds.

        Raises:
            FileNotFoundError: the entry is gone (another process may remove it at any time).
            ValueError: the file is not an entry (a stray or damaged file).
        """
        header, _, text = file.read_text(encoding="utf-8").partition("\n")
        expires, _, created = header.partition(" ")
        return _Entry(text, float(expires) if expires != "-" else None, float(created))

    def _get(self, key: str, now: float) -> str | None:
        try:
            entry = self._read(self._file(key))
        except (FileNotFoundError, ValueError):
            return None
        if not entry.live(now):
            with contextlib.suppress(FileNotFoundError):
                self._file(key).unlink()
            return None
        return entry.text

    def _put(self, key: str, text: str, now: float, expires: float | None) -> None:
        temporary = self.path / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        header = f"{'-' if expires is None else repr(expires)} {now!r}"
        file = self._file(key)
        new = self.max_entries is not None and not file.exists()
        temporary.write_text(f"{header}\n{text}", encoding="utf-8")
        os.replace(temporary, file)
        if new:
            self._bound()

    def _bound(self) -> None:
        """Drop the oldest entries once the directory holds more than ``max_entries``.

        Reading every entry's header at each write made ``n`` writes cost
        ``n**2 / 2`` file reads (2,000 writes: 100 s), under the bound as well
        as over it. The store counts instead: the entries once, then the new
        keys it writes, and only past the bound reads the directory's entries,
        dropping the oldest tenth of the bound more than needed so that the
        next such pass is that many writes away. Other processes' writes are
        not in that count, so the directory is also listed (names only) at
        least every tenth of the bound of new keys: six writers of one
        directory, each under its own count of eight, left twenty entries.
        """
        bound = self.max_entries
        assert bound is not None
        with self._bound_lock:
            if self._estimate is not None:
                self._estimate += 1
                self._unlisted += 1
                if self._estimate <= bound and self._unlisted < max(1, bound // 10):
                    return
            files = list(self.path.glob("*.json"))
            self._unlisted = 0
            if len(files) <= bound:
                self._estimate = len(files)
                return
            entries = []
            for file in files:
                with contextlib.suppress(FileNotFoundError, ValueError):
                    entries.append((self._read(file).created, file))
            entries.sort()
            drop = max(0, len(entries) - bound + bound // 10)
            for _created, old in entries[:drop]:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
            self._estimate = len(entries) - drop

    def _delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._file(key).unlink()

    def _purge(self, now: float) -> None:
        for file in self.path.glob("*.json"):
            with contextlib.suppress(FileNotFoundError, ValueError):
                if not self._read(file).live(now):
                    file.unlink()
        with self._bound_lock:
            self._estimate = None  # counted afresh at the next pass of the bound

    def _entries(self, now: float) -> int:
        count = 0
        for file in self.path.glob("*.json"):
            with contextlib.suppress(FileNotFoundError, ValueError):
                if self._read(file).live(now):
                    count += 1
        return count

    def clear(self) -> int:
        self._estimate = None
        count = 0
        for file in self.path.glob("*.json"):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
                count += 1
        return count


_MEMORY: dict[str, MemoryStore] = {}
_MEMORY_LOCK = threading.Lock()
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


class _Target:
    """A cache URL taken apart and checked (nothing opened yet)."""

    __slots__ = ("bare", "max_entries", "parts", "query", "scheme", "timeout", "ttl")

    def __init__(self, target: str) -> None:
        if "://" not in target:
            raise _not_a_target(target)
        self.parts = parts = urlsplit(target)
        self.scheme = scheme = parts.scheme.lower().partition("+")[0]
        self.query = query = dict(parse_qsl(parts.query))
        self.ttl: float | None = _number(target, query.pop("ttl", None), "ttl", float)
        self.max_entries: int | None = _number(target, query.pop("max_entries", None), "max_entries", int)
        self.bare = target.partition("?")[0]
        # Only the stores that wait for a server take a timeout: memory:// and
        # dir:// refuse it below as an unknown option rather than ignore it.
        self.timeout: float = TIMEOUT
        if scheme in _SQL_SCHEMES or scheme in ("redis", "rediss"):
            asked = _number(target, query.pop("timeout", None), "timeout", float)
            if asked is not None:
                self.timeout = asked
        if scheme in ("memory", "dir", "file"):
            if query:
                raise _bad(f"cache URL {mask_url(target)!r}: unknown option(s) {sorted(query)}")
            if scheme != "memory" and not parts.path:
                raise _bad(f"cache URL {mask_url(target)!r} names no directory (dir:///path)")
        elif scheme not in _SQL_SCHEMES and scheme not in ("redis", "rediss"):
            raise _bad(
                f"cache URL {mask_url(target)!r}: unknown scheme {parts.scheme!r}; "
                "use memory://, dir://, sqlite://, postgresql:// or redis://"
            )


def _not_a_target(target: Any) -> exc.InvalidEngineOption:
    shown = repr(mask_url(target)) if isinstance(target, str) else repr(target)
    return _bad(f"cache= takes a cache store or a URL such as memory:// or sqlite:///cache.db, not {shown}")


def check_target(target: Any) -> None:
    """Check a ``cache=`` option without opening anything (engines do it at load).

    So a misspelt scheme or a bad ``ttl`` fails ``engines.load``, as the
    documentation promises, rather than the first ``run``; a store that cannot
    be reached is still found out when the flow is compiled.

    Raises:
        InvalidEngineOption: as :func:`open_store`.
    """
    if target is None or isinstance(target, CacheStore):
        return
    if not isinstance(target, str):
        raise _not_a_target(target)
    url = _Target(target)
    if url.scheme == "memory":
        with _MEMORY_LOCK:
            store = _MEMORY.get(url.parts.netloc + url.parts.path)
            if store is not None:
                _check_same(target, store, url)


def open_store(target: str | CacheStore, clock: Clock = time.time) -> CacheStore:
    """The store a ``cache=`` option names: a store object, or a URL.

    URLs: ``memory://[NAME]``, ``dir:///path``, ``sqlite:///path.db``,
    ``postgresql://...``, ``redis://host:port/db``; each takes ``?ttl=SECONDS``
    and ``&max_entries=N``, and the SQL and Redis ones ``&timeout=SECONDS``
    (default :data:`TIMEOUT`): how long one lookup or write waits for the server.

    A process opens one store per SQL or Redis URL and hands it to every run
    naming that URL (as it keeps one ``memory://`` store per name), unless a
    ``clock`` of the caller's own is given: that store is the caller's alone.
    Closing a store releases its connection; its next use opens another.

    Raises:
        InvalidEngineOption: not a store or a URL of a known scheme, or bad
            ``ttl``/``max_entries``/``timeout`` values; the message names the URL.
    """
    if isinstance(target, CacheStore):
        return target
    if not isinstance(target, str):
        raise _not_a_target(target)
    url = _Target(target)
    ttl, max_entries, bare, parts = url.ttl, url.max_entries, url.bare, url.parts
    if url.scheme == "memory":
        name = parts.netloc + parts.path
        with _MEMORY_LOCK:
            store = _MEMORY.get(name)
            if store is None:
                store = _MEMORY[name] = MemoryStore(ttl, max_entries, clock)
                store.url = bare
            else:
                _check_same(target, store, url)
        return store
    if url.scheme in ("dir", "file"):
        dir_store = DirStore(parts.path, ttl, max_entries, clock)
        dir_store.url = bare
        return dir_store
    if clock is not time.time:
        return _connect(url, clock)
    # One store per URL in a process, as for memory:// above: each run made (and
    # never closed) its own, an SQLAlchemy engine with its connection and WAL files,
    # or a Redis client, which a long-lived process held until the cyclic collector
    # happened to free them (hundreds of files, and a connection per run).
    with _SHARED_LOCK:
        shared = _SHARED.get(target)
        if shared is None:
            shared = _SHARED[target] = _connect(url, clock)
        return shared


#: The SQL and Redis stores open in this process, by the URL that opened them.
_SHARED: dict[str, CacheStore] = {}
_SHARED_LOCK = threading.Lock()
#: Stores a parent process had open when it forked: the child keeps them, never
#: using or closing them (closing a PostgreSQL connection or a Redis socket the
#: parent still uses would end the parent's session), and opens its own.
_INHERITED: list[CacheStore] = []


def _forget_after_fork() -> None:
    """In a forked child: the parent's SQL and Redis stores set aside, every store lock new.

    A fork copies a lock as it is, held or not, and the thread that held it
    does not exist in the child: a child forked while another thread opened a
    store (an SQL store creates its table under the lock) or used a
    ``memory://`` store waited for ever on its first ``open_store`` or
    lookup. Nothing in the child holds a lock at this point, so new ones are
    right; the ``memory://`` stores themselves are the child's copies to use.
    """
    global _SHARED_LOCK, _MEMORY_LOCK  # noqa: PLW0603 - a lock another thread held at the fork stays held in the child
    _SHARED_LOCK = threading.Lock()
    _MEMORY_LOCK = threading.Lock()
    _INHERITED.extend(_SHARED.values())
    _SHARED.clear()
    for store in _MEMORY.values():
        store._renew_locks()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_after_fork)


def _connect(url: _Target, clock: Clock) -> CacheStore:
    """A new SQL or Redis store for ``url`` (a connection of its own)."""
    ttl, max_entries, bare, timeout = url.ttl, url.max_entries, url.bare, url.timeout
    # The rest of the query is the client's (socket_timeout=...).
    rest = "&".join(f"{k}={v}" for k, v in url.query.items())
    if url.scheme in _SQL_SCHEMES:
        from flowkit.cache._sql import SqlStore

        return SqlStore(f"{bare}?{rest}" if rest else bare, ttl, max_entries, clock, timeout=timeout)
    from flowkit.cache._redis import RedisStore

    redis_store = RedisStore(f"{bare}?{rest}" if rest else bare, ttl, max_entries, clock, timeout=timeout)
    redis_store.url = bare
    return redis_store


def _check_same(target: str, store: MemoryStore, url: _Target) -> None:
    """Refuse a URL asking a ``ttl`` or ``max_entries`` the open store of its name does not have.

    The process keeps one store per name: ``memory://c?ttl=60`` after
    ``memory://c`` used to be handed the first store, without a TTL and
    without a word. A URL without options shares the store as it is.
    """
    for option, asked, has in (
        ("ttl", url.ttl, store.ttl),
        ("max_entries", url.max_entries, store.max_entries),
    ):
        if asked is not None and asked != has:
            raise _bad(
                f"cache URL {target!r}: the memory store {store.url!r} is open in this process "
                f"with {option}={has}; a URL naming it may repeat its options or give none"
            )


def _number(url: str, text: str | None, name: str, kind: type) -> Any:
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise _bad(f"cache URL {mask_url(url)!r}: {name} must be a number, not {text!r}") from None
    if value <= 0:
        raise _bad(f"cache URL {mask_url(url)!r}: {name} must be above 0, not {text!r}")
    return value


def _bad(message: str) -> exc.InvalidEngineOption:
    return exc.InvalidEngineOption(message, option="cache")
