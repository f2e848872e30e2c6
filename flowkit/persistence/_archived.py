"""Append-only lists in atom metadata, stored in sealed chunks so each write stays small.

A loop's body atoms keep the results of their earlier iterations in
``meta["iterations"]`` (:mod:`flowkit.engines._loops`), a list that grows by
one entry per iteration. Stored whole in the atom's record, it was written
again with every write of that record (three per iteration), so iteration k
wrote k entries and a loop of n iterations n**2/2 of them: 3,200 iterations
took half a minute on SQLite.

Stored form (what the engine writes, on every backend alike): every full
chunk of :data:`CHUNK` entries is an *archive*, an atom detail of its own
under the same flow detail, written once when the chunk fills and never
again. The owner's record keeps only the entries after the last full chunk,
and how many chunks there are::

    owner.meta = {"iterations": [<fewer than CHUNK entries>], "archived_chunks": {"iterations": 3}, ...}
    archive.meta = {"archive_of": {"atom": <owner uuid>, "key": "iterations", "chunk": 0}}
    archive.results = [<entries 0 .. CHUNK-1>]

An archive's uuid follows from its owner's, the key and the chunk number
(:func:`archive_uuid`), so writing a chunk again overwrites it. A list with
fewer than :data:`CHUNK` entries is stored as it always was (no marker, no
archive), and a record in that old form, whatever its length, is read as it
is: flows stored by earlier versions resume unchanged.

Readers never see the stored form: :class:`~flowkit.persistence.models.FlowDetail`
puts the chunks back in front of the owner's entries and leaves the archives
out of its atoms (:func:`fold`), and the backends' ``get_atom_details``
does the same for one atom (:func:`fold_one`). A detail that is written back
through the merging calls (``update_atom_details``, ``save_logbook``) is
written whole again, in the old form; its archives are then left unread.

The list is append-only: entries already in a chunk are not compared again.
A list whose entry at the end of the stored chunks is another object (a
replaced list, one cut short) has every chunk written again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from flowkit.persistence.models import _ARCHIVE_KEY, _CHUNKS_KEY, AtomDetail

__all__ = [
    "ARCHIVED_KEYS",
    "ARCHIVE_KEY",
    "CHUNK",
    "CHUNKS_KEY",
    "Chunker",
    "Mark",
    "archive_uuid",
    "fold",
    "fold_listed",
    "fold_one",
    "is_archive",
    "is_chunked",
    "needed_archives",
]

#: Metadata keys holding append-only lists that are stored in chunks: a loop's
#: history, and the event log's events of an atom (flowkit.listeners.events),
#: which grow by three each iteration of a loop the atom is in.
ARCHIVED_KEYS = ("iterations", "event_log")
#: Entries per archive. The owner's record then carries fewer than this many;
#: smaller chunks mean smaller writes of the owner and more archive records.
CHUNK = 32
#: Owner metadata (stored form only): key -> how many chunks of it are archived.
CHUNKS_KEY = _CHUNKS_KEY
#: Archive metadata: ``{"atom": owner uuid, "key": meta key, "chunk": number from 0}``.
ARCHIVE_KEY = _ARCHIVE_KEY

#: What a write hands over of one chunked list: ((owner uuid, key), chunks stored, their last entry).
Mark = tuple[tuple[str, str], int, Any]

_AD = TypeVar("_AD", bound=AtomDetail)

#: The longest atom name every backend stores (the SQL schema's name column).
_NAME_LENGTH = 255


def archive_uuid(owner: str, key: str, chunk: int) -> str:
    """The uuid of chunk ``chunk`` of ``owner``'s ``key`` list (a UUID-shaped digest of the three)."""
    import hashlib  # only when a list is long enough to be chunked

    digest = hashlib.blake2b(f"{owner}\0{key}\0{chunk}".encode(), digest_size=16).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def is_archive(meta: Mapping[str, Any] | None) -> bool:
    """Whether an atom detail with metadata ``meta`` is an archive (a chunk of another's list)."""
    return bool(meta) and ARCHIVE_KEY in meta  # type: ignore[operator]


def is_chunked(meta: Mapping[str, Any] | None) -> bool:
    """Whether an atom detail with metadata ``meta`` is part of a chunked history: an archive or an owner.

    Such a record cannot be read alone (an owner's lists are partly in its
    archives): a reader that skips building details builds these and folds them.
    """
    return bool(meta) and (ARCHIVE_KEY in meta or CHUNKS_KEY in meta)  # type: ignore[operator]


def needed_archives(meta: Mapping[str, Any] | None, owner: str) -> list[str]:
    """The uuids of the archives an owner with stored metadata ``meta`` needs (none: not chunked)."""
    counts = meta.get(CHUNKS_KEY) if meta else None
    if not isinstance(counts, dict):
        return []
    return [archive_uuid(owner, key, i) for key, count in counts.items() for i in range(int(count))]


def _folded_meta(
    owner: str, meta: Mapping[str, Any], find: Callable[[str], AtomDetail | None]
) -> dict[str, Any] | None:
    """``meta`` with each chunked list whole again (None: an archive is missing or damaged)."""
    whole = dict(meta)
    counts = whole.pop(CHUNKS_KEY)
    for key, count in counts.items():
        entries: list[Any] = []
        for chunk in range(int(count)):
            archive = find(archive_uuid(owner, key, chunk))
            if archive is None or not isinstance(archive.results, list):
                return None
            entries.extend(archive.results)
        entries.extend(whole.get(key) or ())
        whole[key] = entries
    return whole


def fold(atoms: Mapping[str, AtomDetail], archives: Mapping[str, AtomDetail]) -> None:
    """Make each chunked owner in ``atoms`` (uuid -> atom detail) whole, from ``archives`` (uuid -> archive).

    An owner whose archives are not all there is left in its stored form
    (its ``archived_chunks`` tells what is missing) rather than shown with a
    history that silently lacks entries.
    """
    for uuid, ad in atoms.items():
        meta = ad.meta
        if meta and isinstance(meta.get(CHUNKS_KEY), dict):
            whole = _folded_meta(uuid, meta, archives.get)
            if whole is not None:
                ad.meta = whole


def fold_listed(details: Iterable[_AD]) -> list[_AD]:
    """``details`` as read from a backend, chunked owners made whole and archives left out."""
    atoms: dict[str, _AD] = {}
    archives: dict[str, _AD] = {}
    for ad in details:
        (archives if is_archive(ad.meta) else atoms)[ad.uuid] = ad
    fold(atoms, archives)
    return list(atoms.values())


def fold_one(ad: _AD, read: Callable[[list[str]], Iterable[AtomDetail | None]]) -> _AD:
    """Make ``ad`` whole if it is chunked, reading its archives with ``read(uuids)``; return it."""
    needed = needed_archives(ad.meta, ad.uuid)
    if needed:
        found = {archive.uuid: archive for archive in read(needed) if archive is not None}
        fold({ad.uuid: ad}, found)
    return ad


class Chunker:
    """Turns a run's atom details into their stored form, remembering which chunks are written.

    One per run (:class:`~flowkit._run_state.RunState`): it knows, for each
    chunked list, how many of its chunks the backend holds and the entry
    object those end with, so each chunk is handed over once, when it fills.
    The list may be a new list object each time (the event log copies it on
    every event): what is compared is the entry at the boundary. A list whose
    entry there is another object (a run resumed from storage, a list a user
    replaced or cut short) has all its chunks written again, once.
    """

    __slots__ = ("_written",)

    def __init__(self) -> None:
        #: (owner uuid, key) -> (how many chunks are stored, the last entry they hold).
        self._written: dict[tuple[str, str], tuple[int, Any]] = {}

    def stored_form(self, details: Iterable[AtomDetail]) -> tuple[list[AtomDetail], list[Mark]]:
        """The details to hand the backend for ``details``, and what to :meth:`commit` once written.

        A detail with no list of :data:`CHUNK` entries or more is handed over
        as it is; any other as a copy with the list's tail only, preceded by
        the archives of the chunks the backend does not hold yet.
        """
        out: list[AtomDetail] = []
        marks: list[Mark] = []
        for ad in details:
            meta = ad.meta
            chunked: dict[str, Any] | None = None
            for key in ARCHIVED_KEYS:
                entries = meta.get(key) if meta else None
                if type(entries) is not list or len(entries) < CHUNK:
                    continue
                full = len(entries) // CHUNK
                if chunked is None:
                    chunked = dict(meta)
                    chunked[CHUNKS_KEY] = {}
                chunked[CHUNKS_KEY][key] = full
                chunked[key] = entries[full * CHUNK :]
                known = self._written.get((ad.uuid, key))
                start = 0
                if known is not None and 0 < known[0] <= full and entries[known[0] * CHUNK - 1] is known[1]:
                    start = known[0]  # the same entries up to there: those chunks are stored
                out.extend(_archive(ad, key, chunk, entries) for chunk in range(start, full))
                marks.append(((ad.uuid, key), full, entries[full * CHUNK - 1]))
            if chunked is None:
                out.append(ad)
            else:
                stored = ad.copy()
                stored.meta = chunked
                out.append(stored)
        return out, marks

    def commit(self, marks: Iterable[Mark]) -> None:
        """Note that the chunks :meth:`stored_form` handed over were written."""
        for where, full, last in marks:
            self._written[where] = (full, last)


def _archive(owner: AtomDetail, key: str, chunk: int, entries: list[Any]) -> AtomDetail:
    """The archive holding chunk ``chunk`` of ``owner``'s ``key`` list."""
    from flowkit import states
    from flowkit.persistence.models import TaskDetail

    suffix = f"^{key}#{chunk}"
    # Cut to the 255 characters a name column holds (the uuid, not the name, identifies it).
    name = owner.name[: _NAME_LENGTH - len(suffix)] + suffix
    archive = TaskDetail(name, archive_uuid(owner.uuid, key, chunk))
    archive.state = states.SUCCESS
    archive.version = owner.version
    archive.results = entries[chunk * CHUNK : (chunk + 1) * CHUNK]
    archive.meta = {ARCHIVE_KEY: {"atom": owner.uuid, "key": key, "chunk": chunk}}
    return archive
