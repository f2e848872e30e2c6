"""The directory backend's file cache (TaskFlow's ``max_cache_size``): bounded, never stale."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from flowkit.persistence.backends._file_cache import FileCache, Signature
from flowkit.persistence.backends.impl_dir import DirBackend
from flowkit.persistence.models import LogBook


def _backend(path: Path, max_cache_size: object = None) -> DirBackend:
    conf = {"connection": "dir", "path": str(path)}
    if max_cache_size is not None:
        conf["max_cache_size"] = max_cache_size  # type: ignore[assignment]
    made = DirBackend(conf)
    with contextlib.closing(made.get_connection()) as conn:
        conn.upgrade()
    return made


@pytest.mark.parametrize("size", [0, -1, -1024, "0"])
def test_a_cache_size_below_one_is_refused(tmp_path: Path, size: object) -> None:
    with pytest.raises(ValueError, match="max_cache_size must be at least 1"):
        DirBackend({"connection": "dir", "path": str(tmp_path), "max_cache_size": size})


def test_without_max_cache_size_nothing_is_cached(tmp_path: Path) -> None:
    assert _backend(tmp_path).file_cache is None


def test_the_cache_never_holds_more_files_than_its_size(tmp_path: Path) -> None:
    backend = _backend(tmp_path, max_cache_size="3")  # a URL query gives text
    assert backend.file_cache is not None
    books = [LogBook(f"book-{n}") for n in range(8)]
    with contextlib.closing(backend.get_connection()) as conn:
        for book in books:
            conn.save_logbook(book)
            conn.get_logbook(book.uuid)
            assert backend.file_cache.currsize <= 3
        assert [conn.get_logbook(book.uuid).name for book in books] == [book.name for book in books]
    assert backend.file_cache.currsize == 3


def test_a_cached_file_rewritten_by_another_backend_is_read_again(tmp_path: Path) -> None:
    # Another backend object stands for another process: it shares the files, not the cache.
    reader = _backend(tmp_path, max_cache_size=16)
    writer = _backend(tmp_path)
    book = LogBook("book")
    mine, theirs = reader.get_connection(), writer.get_connection()
    with contextlib.closing(mine), contextlib.closing(theirs):
        theirs.save_logbook(book)
        # Same-size rewrites in quick succession: the cache must not mistake one for another.
        for n in range(50):
            book.meta = {"n": n % 10}
            theirs.save_logbook(book)
            assert mine.get_logbook(book.uuid).meta == {"n": n % 10}


def test_the_lru_keeps_the_most_recently_used_and_checks_signatures() -> None:
    cache = FileCache(2)
    one, two = Signature(1, 10, 100), Signature(2, 10, 100)
    cache.put("a", one, b"a")
    cache.put("b", one, b"b")
    assert cache.get("a", one) == b"a"  # "a" is now the most recent
    cache.put("c", one, b"c")
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert cache.get("a", two) is None  # another version of the file
    cache.discard("a")
    assert cache.currsize == 1
