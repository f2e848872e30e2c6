"""The reads of a read-only (``writable=False``) directory backend: the lock taken shared, nothing made.

Writers hold the directory's ``.lock`` exclusively (opened for appending,
which creates it); a backend not writable opens it for reading only and takes
it shared, so it never sees a multi-file write half done, and cannot finish
one a dead writer left in its journal (that would be a write).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowkit import exceptions as exc
from flowkit.persistence import backends
from flowkit.persistence.models import FlowDetail, LogBook

_HOLDER = """
import sys, fasteners
lock = fasteners.InterProcessLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""


def _store(tmp_path: Path) -> tuple[str, FlowDetail]:
    url = f"dir://{tmp_path}/store"
    book = LogBook("book")
    fd = FlowDetail("flow", "f-1")
    book.add(fd)
    with backends.backend(url) as writer, contextlib.closing(writer.get_connection()) as conn:
        conn.save_logbook(book)
    return url, fd


def test_a_read_through_a_backend_not_writable_waits_for_a_writer_of_another_process(tmp_path: Path) -> None:
    url, fd = _store(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "store" / ".lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    reader = backends.fetch({"connection": url, "writable": False, "lock_timeout": 0.05})
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with contextlib.closing(reader.get_connection()) as conn:
            # The other process writes (holds the lock): a read would see its files half written.
            with pytest.raises(exc.StorageFailure, match=r"could not lock dir://.* within 0.05 seconds"):
                conn.get_flow_details(fd.uuid)
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(timeout=30) == 0
            assert conn.get_flow_details(fd.uuid).name == "flow"
    finally:
        reader.close()
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_read_through_a_backend_not_writable_refuses_an_unfinished_journal_and_leaves_it(
    tmp_path: Path,
) -> None:
    url, fd = _store(tmp_path)
    journal = tmp_path / "store" / "journal.json"
    renamed = {"book": LogBook("renamed", uuid="b-2").to_dict(marshal_time=True), "flows": []}
    journal.write_text(
        json.dumps({"version": 2, "writes": [["books", "b-2", json.dumps(renamed)]], "links": []})
    )
    reader = backends.fetch({"connection": url, "writable": False})
    try:
        with (
            contextlib.closing(reader.get_connection()) as conn,
            pytest.raises(exc.StorageFailure, match="unfinished; a backend configured writable=False cannot"),
        ):
            conn.get_flow_details(fd.uuid)
    finally:
        reader.close()
    assert journal.exists()
    assert not (tmp_path / "store" / "books" / "b-2.json").exists()
    # The next writer (any reader that may write) finishes it.
    with backends.backend(url) as writer, contextlib.closing(writer.get_connection()) as conn:
        assert conn.get_logbook("b-2").name == "renamed"
    assert not journal.exists()
