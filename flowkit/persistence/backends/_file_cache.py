"""A bounded cache of file contents for the directory backend, checked by ``stat``.

TaskFlow's directory backend keeps the files it reads in ``file_cache`` (its
``max_cache_size`` option bounds it). flowkit's does too when that option is
given, but it must stay right when other processes write the same directory,
so an entry is used only while the file still has the identity it was read
with: the same inode, size and modification time (nanoseconds). Every write of
the directory backend makes a new file, renamed over the old one, and stamps
it with a nanosecond time, so a file rewritten since it was cached never
matches. (On a file system that keeps coarse times the stamp is rounded; leave
the cache off there, which is the default.)

The same cache, holding what was made of a file rather than its bytes, keeps
the atom states the directory backend read (``get_atom_states``, which the
monitor asks at every poll): that one is on by default, so it trusts only a
signature whose time kept its nanoseconds (:func:`fine`), which a coarse file
system's rounded one does not.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, NamedTuple, TypeVar

__all__ = ["FileCache", "Signature", "fine", "signature_of"]

_V = TypeVar("_V")


class Signature(NamedTuple):
    """What identifies one version of a file."""

    inode: int
    size: int
    mtime_ns: int


def signature_of(stat: os.stat_result) -> Signature:
    """The signature of the file ``stat`` describes."""
    return Signature(stat.st_ino, stat.st_size, stat.st_mtime_ns)


def fine(signature: Signature) -> bool:
    """Whether ``signature``'s time kept the nanoseconds the backend stamped it with.

    Every write of the directory backend stamps its file with ``time.time_ns()``;
    a file system keeping coarser times (seconds, microseconds) rounds it to a
    whole number of microseconds at least, and two writes in one such tick could
    then look alike. A whole microsecond by chance (one stamp in a thousand) is
    only not trusted.
    """
    return signature.mtime_ns % 1000 != 0


class _Cached(NamedTuple, Generic[_V]):
    """What was made of a file (its contents, or what was read from them) and the version it was made from."""

    signature: Signature
    data: _V


class FileCache(Generic[_V]):
    """Least-recently-used file contents (or what was made of them), at most ``maxsize`` files (thread-safe).

    Args:
        maxsize: how many files to keep, at least one.

    Raises:
        ValueError: ``maxsize`` is below one.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"the directory backend's max_cache_size must be at least 1, not {maxsize}")
        self.maxsize = maxsize
        self._entries: OrderedDict[str, _Cached[_V]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def currsize(self) -> int:
        """How many files are cached now (TaskFlow's ``file_cache.currsize``)."""
        return len(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def get(self, path: str, signature: Signature) -> _V | None:
        """What is cached of ``path`` if it was made from this version of it."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or entry.signature != signature:
                return None
            self._entries.move_to_end(path)
            return entry.data

    def put(self, path: str, signature: Signature, data: _V) -> None:
        """Remember ``data`` as what this version of ``path`` holds; evict the oldest."""
        with self._lock:
            self._entries[path] = _Cached(signature, data)
            self._entries.move_to_end(path)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def put_many(self, items: Iterable[tuple[str, Signature, _V]]) -> None:
        """:meth:`put` each ``(path, signature, data)``, taking the lock once (for thousands at a time)."""
        with self._lock:
            entries = self._entries
            for path, signature, data in items:
                entries[path] = _Cached(signature, data)
                entries.move_to_end(path)
            while len(entries) > self.maxsize:
                entries.popitem(last=False)

    def discard(self, path: str) -> None:
        """Forget ``path`` (it was just rewritten or removed here)."""
        with self._lock:
            self._entries.pop(path, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
