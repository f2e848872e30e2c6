"""The directory backend's lock: one per directory in a process, however the directory is named.

POSIX file locks belong to the process: a second lock object on the same
lock file, in the same process, is granted at once (and closing it drops the
first one's lock). So every backend of one process on one directory must
share one lock object, also when they name the directory by different
paths (a symbolic link, as ``/tmp`` is on some systems).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from flowkit.persistence.backends._path_based import Batch
from flowkit.persistence.backends.impl_dir import DirBackend
from flowkit.persistence.models import LogBook


def test_backends_naming_one_directory_by_two_paths_keep_each_other_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "store"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    one = DirBackend({"connection": "dir", "path": str(real)})
    other = DirBackend({"connection": "dir", "path": str(link)})
    with contextlib.closing(one.get_connection()) as conn:
        conn.upgrade()
    store, other_store = one._store, other._store  # type: ignore[attr-defined]
    commit = store.commit
    others_got_in: list[bool] = []

    def commit_probing(batch: Batch) -> None:
        # ``one`` holds the directory's lock here; ``other``, on the same directory, must wait.
        got = other_store._lock.threads.acquire(blocking=False)
        if got:
            other_store._lock.threads.release()
        others_got_in.append(got)
        commit(batch)

    monkeypatch.setattr(store, "commit", commit_probing)
    with contextlib.closing(one.get_connection()) as conn:
        conn.save_logbook(LogBook("book"))
    assert others_got_in == [False], "a second backend of the process got the directory's lock"
