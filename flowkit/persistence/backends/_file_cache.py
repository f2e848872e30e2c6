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
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import NamedTuple

__all__ = ["FileCache", "Signature", "signature_of"]


class Signature(NamedTuple):
    """What identifies one version of a file."""

    inode: int
    size: int
    mtime_ns: int


def signature_of(stat: os.stat_result) -> Signature:
    """The signature of the file ``stat`` describes."""
    return Signature(stat.st_ino, stat.st_size, stat.st_mtime_ns)


class _Cached(NamedTuple):
    """A file's contents and the version of the file they were read from."""

    signature: Signature
    data: bytes


class FileCache:
    """Least-recently-used file contents, at most ``maxsize`` files (thread-safe).

    Args:
        maxsize: how many files to keep, at least one.

    Raises:
        ValueError: ``maxsize`` is below one.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"the directory backend's max_cache_size must be at least 1, not {maxsize}")
        self.maxsize = maxsize
        self._entries: OrderedDict[str, _Cached] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def currsize(self) -> int:
        """How many files are cached now (TaskFlow's ``file_cache.currsize``)."""
        return len(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def get(self, path: str, signature: Signature) -> bytes | None:
        """The cached contents of ``path`` if they were read from this version of it."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or entry.signature != signature:
                return None
            self._entries.move_to_end(path)
            return entry.data

    def put(self, path: str, signature: Signature, data: bytes) -> None:
        """Remember ``data`` as the contents of this version of ``path``; evict the oldest."""
        with self._lock:
            self._entries[path] = _Cached(signature, data)
            self._entries.move_to_end(path)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def discard(self, path: str) -> None:
        """Forget ``path`` (it was just rewritten or removed here)."""
        with self._lock:
            self._entries.pop(path, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
