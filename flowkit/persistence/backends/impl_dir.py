"""A backend that keeps one JSON file per record under a directory.

Layout under the root directory::

    books/<uuid>.json   flows/<uuid>.json   atoms/<uuid>.json
    members/<flow uuid>/<atom uuid>
                        an empty file per atom of a flow (its link), made
                        when the atom is first saved; listed only to load a flow
    .lock               held (fasteners file lock + a thread lock) by every step;
                        a backend not writable takes it shared to read, opened for
                        reading, and make no lock file where there is none
    journal.json        present only while a multi-file write is being applied

Files are written to a temporary name and renamed over the old one
(``os.replace``), so a reader never sees half a file, and with conf
``fsync: true`` the data and the directory entry are flushed to disk first
(surviving power loss, not just the death of the process).

A step that changes several files (``save_flow_progress`` with a few atoms
or a new one, ``save_logbook``, ``destroy_logbook``) is made all-or-nothing
with a journal: the full set of changes is first written, atomically, to
``journal.json``; then each file is replaced; then the journal is removed.
Whoever takes the lock next and finds a journal (the writer died part-way)
applies it again before doing anything else; every entry is a whole-file write,
a delete, or the making or removing of a link, so applying it twice is
harmless. Single-file changes skip the journal: the rename already makes them
atomic.

Two processes (or two backends in one process) on the same directory never
lose or corrupt each other's writes: every read-modify-write runs under the
lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import unquote, urlsplit

from flowkit import exceptions as exc
from flowkit._utils.records import Record
from flowkit.persistence.backends._file_cache import FileCache, Signature, fine, signature_of
from flowkit.persistence.backends._missing import never_upgraded
from flowkit.persistence.backends._path_based import (
    ATOMS,
    FLOWS,
    KINDS,
    MEMBERS,
    Batch,
    DocumentConnection,
    DocumentStore,
    KnownAtom,
    Members,
    Read,
)
from flowkit.persistence.backends._urls import conf_bool, conf_float, mask_url, parse_url
from flowkit.persistence.base import Backend

__all__ = ["Connection", "DirBackend"]

_SUFFIX = ".json"
_JOURNAL = "journal.json"
_JOURNAL_VERSION = 2  # 2 added "links"; a version 1 journal (no links) is still applied
_JOURNAL_VERSIONS = (1, 2)
#: How many atoms' states a directory backend keeps between states reads (five flows of
#: 10,000 atoms; a few hundred bytes each).
KNOWN_ATOMS = 50_000


class _Write(Record):
    """A document to replace or delete: one entry of a commit (and of its journal)."""

    kind: str
    key: str
    data: bytes | None  # None: delete the document


class _Link(Record):
    """An atom to link to or unlink from a flow: one entry of a commit (and of its journal)."""

    flow: str
    atom: str
    add: bool  # False: unlink


# One lock per directory for the whole process: POSIX file locks belong to the
# process, so they keep out other processes but not our own threads (and
# closing any handle on the lock file drops them). Sharing one file lock object
# per directory behind a thread lock covers both. Keyed by the directory's real
# path: backends naming it through a symbolic link share the lock too.
_registry_lock = threading.Lock()
_path_locks: dict[str, _PathLock] = {}


class _PathLock:
    def __init__(self, root: str) -> None:
        import fasteners

        self.threads = threading.Lock()
        self.file = fasteners.InterProcessLock(os.path.join(root, ".lock"))


def _path_lock(root: str) -> _PathLock:
    root = os.path.realpath(root)
    with _registry_lock:
        lock = _path_locks.get(root)
        if lock is None:
            lock = _path_locks[root] = _PathLock(root)
        return lock


class _DirStore(DocumentStore):
    """A directory as a locking document store (layout and journal: see the module docstring)."""

    def __init__(
        self,
        root: str,
        fsync: bool,
        lock_timeout: float,
        cache: FileCache[bytes] | None = None,
        writable: bool = True,
    ) -> None:
        self._root = root
        self._fsync = fsync
        self._lock_timeout = lock_timeout
        self._cache = cache
        self._lock = _path_lock(root)
        self._ensured = False
        # Reads then take the lock shared, on a lock file only if one exists (see reading()).
        self._writable = writable
        # What states reads took from atom files, by uuid, while each file keeps its signature.
        self._known: FileCache[KnownAtom] = FileCache(KNOWN_ATOMS)
        self._atoms_dir = os.path.join(root, ATOMS, "")

    def describe(self) -> str:
        return f"dir://{self._root}"

    @staticmethod
    def _name(key: str) -> str:
        if os.sep in key or key.startswith(".") or not key:
            raise exc.StorageFailure(f"{key!r} cannot be used as a file name")
        return key

    def _file(self, kind: str, key: str) -> str:
        return os.path.join(self._root, kind, self._name(key) + _SUFFIX)

    def _members_dir(self, flow: str) -> str:
        return os.path.join(self._root, MEMBERS, self._name(flow))

    def read(self, kind: str, key: str) -> Read | None:
        path = self._file(kind, key)
        cache = self._cache
        try:
            if cache is not None:
                cached = cache.get(path, signature_of(os.stat(path)))
                if cached is not None:
                    return Read(cached, None)
            with open(path, "rb") as handle:
                # The signature of the very file read (fstat), not of whatever the path names now.
                signature = signature_of(os.fstat(handle.fileno())) if cache is not None else None
                data = handle.read()
        except FileNotFoundError:
            return None
        if cache is not None and signature is not None:
            cache.put(path, signature, data)
        return Read(data, None)

    def _signature(self, path: str) -> Signature | None:
        """The file's signature, if it is one to trust (:func:`fine`); None too when there is no file."""
        try:
            signature = signature_of(os.stat(path))
        except FileNotFoundError:
            return None
        return signature if fine(signature) else None

    def _atom_file(self, key: str) -> str:
        """:meth:`_file` of an atom, made without joining paths (a states read makes 10,000)."""
        return self._atoms_dir + self._name(key) + _SUFFIX

    def known_atoms(self, keys: Sequence[str]) -> list[KnownAtom | None]:
        # A stat per atom instead of an open, a read and a JSON decode: a file rewritten
        # since is a new file with a new nanosecond stamp (see _write_file).
        known = self._known
        if not len(known):  # nothing to tell unchanged: spare the stats (learn_atoms makes them)
            return [None] * len(keys)
        found: list[KnownAtom | None] = []
        for key in keys:
            signature = self._signature(self._atom_file(key))
            found.append(known.get(key, signature) if signature is not None else None)
        return found

    def learn_atoms(self, found: Mapping[str, KnownAtom]) -> None:
        # Under the lock the states read holds, so no writer replaced a file since it was read.
        signed = [(key, self._signature(self._atom_file(key)), atom) for key, atom in found.items()]
        self._known.put_many(
            (key, signature, atom) for key, signature, atom in signed if signature is not None
        )

    def linked_many(self, flow: str, atoms: Sequence[str]) -> list[bool]:
        directory = self._members_dir(flow)
        return [os.path.exists(os.path.join(directory, self._name(atom))) for atom in atoms]

    def members(self, flow: str) -> Members:
        try:
            return Members(os.listdir(self._members_dir(flow)), None)
        except FileNotFoundError:
            return Members([], None)

    def keys(self, kind: str) -> list[str]:
        try:
            names = os.listdir(os.path.join(self._root, kind))
        except FileNotFoundError:
            return []
        return [name[: -len(_SUFFIX)] for name in names if name.endswith(_SUFFIX)]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock.threads:
            if not self._lock.file.acquire(delay=0.0005, max_delay=0.002, timeout=self._lock_timeout):
                raise exc.StorageFailure(
                    f"could not lock {self.describe()} within {self._lock_timeout} seconds"
                )
            try:
                self._recover()
                yield
            finally:
                self._lock.file.release()

    def writing(self) -> AbstractContextManager[None]:
        return self._locked()

    def reading(self) -> AbstractContextManager[None]:
        return self._locked() if self._writable else self._shared()

    @contextlib.contextmanager
    def _shared(self) -> Iterator[None]:
        """A read-only reader's view: the lock taken shared, creating and writing nothing.

        Writers hold ``.lock`` exclusively (fasteners' ``lockf``), opened for
        appending, which creates it and needs write access. A read-only
        reader opens it for reading only, when it exists (when it does not,
        no writer ever locked this directory), and takes it shared, so a
        multi-file write is never seen half done. A journal left by a writer
        that died cannot be finished without writing: the read is refused,
        and the next writer finishes it. The thread lock is held too: closing
        any handle on the file drops every lock this process holds on it, a
        writer's in another thread included.
        """
        with self._lock.threads:
            try:
                fd = os.open(os.path.join(self._root, ".lock"), os.O_RDONLY)
            except FileNotFoundError:
                fd = None
            try:
                if fd is not None:
                    self._lock_shared(fd)
                if os.path.exists(os.path.join(self._root, _JOURNAL)):
                    raise exc.StorageFailure(
                        f"{self.describe()} holds the journal of a write a process left unfinished; "
                        "a backend configured writable=False cannot finish it: any writer does"
                    )
                yield
            finally:
                if fd is not None:
                    os.close(fd)  # drops the shared lock

    def _lock_shared(self, fd: int) -> None:
        deadline = time.monotonic() + self._lock_timeout
        delay = 0.0005
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise exc.StorageFailure(
                        f"could not lock {self.describe()} within {self._lock_timeout} seconds"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.002)

    def _write_file(self, path: str, data: bytes) -> None:
        tmp = f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
            if self._fsync:
                handle.flush()
                os.fsync(handle.fileno())
        # A nanosecond stamp, so that a file cache (_file_cache) in any process never takes
        # this version for one it read within the same tick of the file system's clock.
        now = time.time_ns()
        os.utime(tmp, ns=(now, now))
        os.replace(tmp, path)
        if self._cache is not None:
            self._cache.discard(path)

    def _sync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _apply(self, writes: list[_Write], links: list[_Link]) -> None:
        """Write the documents, then the links; each step may be repeated harmlessly."""
        touched: set[str] = set()
        for kind, key, data in writes:
            path = self._file(kind, key)
            if data is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                if self._cache is not None:
                    self._cache.discard(path)
                if kind == FLOWS:
                    shutil.rmtree(self._members_dir(key), ignore_errors=True)
                    touched.add(os.path.join(self._root, MEMBERS))
            else:
                self._write_file(path, data)
            touched.add(os.path.dirname(path))
        for flow, atom, add in links:
            directory = self._members_dir(flow)
            path = os.path.join(directory, self._name(atom))
            if add:
                if not os.path.isdir(directory):
                    os.makedirs(directory, exist_ok=True)
                    touched.add(os.path.dirname(directory))
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            touched.add(directory)
        if self._fsync:
            for directory in touched:
                with contextlib.suppress(FileNotFoundError):  # a removed members/<flow>
                    self._sync_dir(directory)

    def commit(self, batch: Batch) -> None:
        if not self._ensured:
            self.ensure()
        writes = [_Write(kind, key, data) for (kind, key), data in batch.writes.items()]
        links = [_Link(flow, atom, add) for (flow, atom), add in batch.links.items()]
        if len(writes) + len(links) == 1:
            self._apply(writes, links)
            return
        journal = os.path.join(self._root, _JOURNAL)
        record = {
            "version": _JOURNAL_VERSION,
            "writes": [[kind, key, None if data is None else data.decode()] for kind, key, data in writes],
            "links": [[flow, atom, add] for flow, atom, add in links],
        }
        self._write_file(journal, json.dumps(record, separators=(",", ":")).encode())
        if self._fsync:
            self._sync_dir(self._root)
        self._apply(writes, links)
        os.unlink(journal)

    def _recover(self) -> None:
        """Finish the multi-file write a dead writer left behind, if any."""
        journal = os.path.join(self._root, _JOURNAL)
        try:
            with open(journal, "rb") as handle:
                record = json.loads(handle.read())
        except FileNotFoundError:
            return
        except ValueError as err:
            raise exc.StorageFailure(f"unreadable journal {journal}; inspect or remove it") from err
        if record.get("version") not in _JOURNAL_VERSIONS:
            raise exc.StorageFailure(f"journal {journal} has unknown version {record.get('version')!r}")
        self._apply(
            [
                _Write(kind, key, None if text is None else text.encode())
                for kind, key, text in record["writes"]
            ],
            [_Link(flow, atom, bool(add)) for flow, atom, add in record.get("links", [])],
        )
        os.unlink(journal)

    def ensure(self) -> None:
        for kind in (*KINDS, MEMBERS):
            os.makedirs(os.path.join(self._root, kind), exist_ok=True)
        self._ensured = True

    def clear(self) -> None:
        with self._locked():
            for kind in (*KINDS, MEMBERS):
                shutil.rmtree(os.path.join(self._root, kind), ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._root, _JOURNAL))
            if self._cache is not None:
                self._cache.clear()
            self._known.clear()
            self.ensure()

    def validate(self) -> None:
        for kind in KINDS:
            path = os.path.join(self._root, kind)
            if not os.path.isdir(path):
                raise exc.StoreNotUpgraded(
                    f"{self.describe()} is missing {kind}/; run upgrade() first", self.describe()
                )
        if not os.access(self._root, os.W_OK):
            raise exc.StorageFailure(f"{self.describe()} is not writable")

    def validate_readable(self) -> None:
        """Check the directory and its collections exist and can be listed; ask no write access.

        A read-only backend's reads take the lock shared, opened for reading
        only, so an operator who may only read the directory reads as well
        as its owner; :meth:`validate` refused them for lacking write access.
        """
        if not os.path.isdir(self._root):
            raise exc.StoreMissing(f"{self.describe()}: no such directory {self._root!r}", self.describe())
        for kind in KINDS:
            path = os.path.join(self._root, kind)
            if not os.path.isdir(path):
                raise never_upgraded(self.describe())
            if not os.access(path, os.R_OK | os.X_OK):
                raise exc.StorageFailure(f"{self.describe()}: {path!r} cannot be read")


def _root_from(conf: Mapping[str, Any]) -> str:
    path = conf.get("path")
    connection = str(conf.get("connection", ""))
    if not path and "://" in connection:
        parsed = parse_url(connection)
        if parsed.hosts:
            raise exc.StorageFailure(
                f"dir URL {mask_url(connection)!r} must hold an absolute path: dir:///abs/path"
            )
        path = parsed.path
    elif not path and ":" in connection:  # dir:/abs/path, a URL without an authority
        path = unquote(urlsplit(connection).path)
    if not path:
        raise exc.StorageFailure(
            f"dir backend needs a directory: 'dir:///abs/path' or conf 'path' (got {mask_url(connection)!r})"
        )
    return os.path.abspath(str(path))


class Connection(DocumentConnection):
    """A connection to a :class:`DirBackend` (TaskFlow's name for the directory backend's connection class).

    Every method is the shared document connection's; the class exists so that
    code naming it, in ``isinstance`` checks or type hints, keeps working.
    """


class DirBackend(Backend):
    """Keeps logbooks as JSON files under a directory, safe across processes.

    Args:
        conf: ``{"connection": "dir:///abs/path"}`` (or ``file://``), or
            ``{"connection": "dir", "path": "/abs/path"}``. Options:
            ``fsync`` (default false) flushes every write to disk;
            ``lock_timeout`` (seconds, default 60) bounds the wait for the lock;
            ``max_cache_size`` (TaskFlow's option) keeps the contents of that
            many files read, reused while a file is unchanged (default: no
            cache, where TaskFlow's default is an unbounded one);
            ``writable`` (default true): false to create, lock for writing and
            write nothing; reads then take the lock shared (see
            ``Backend.writable``).

    Raises:
        StorageFailure: no directory given, or the URL is malformed.
        ValueError: ``max_cache_size`` is not a whole number of at least one.
    """

    def __init__(self, conf: Mapping[str, Any] | None) -> None:
        super().__init__(conf)
        self._root = _root_from(self._conf)
        max_cache_size = self._conf.get("max_cache_size")
        #: The cache of file contents (TaskFlow's attribute), or None without ``max_cache_size``.
        self.file_cache: FileCache[bytes] | None = (
            FileCache(int(max_cache_size)) if max_cache_size is not None else None
        )
        self._store = _DirStore(
            self._root,
            conf_bool(self._conf, "fsync"),
            conf_float(self._conf, "lock_timeout", 60.0),
            self.file_cache,
            writable=self.writable,
        )

    @property
    def path(self) -> str:
        """The root directory."""
        return self._root

    def get_connection(self) -> Connection:
        return Connection(self, self._store)

    def close(self) -> None:
        """Nothing to release: files are opened only for the length of one step."""
