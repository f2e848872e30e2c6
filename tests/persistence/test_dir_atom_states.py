"""The directory backend's states read: an atom file unchanged since the last read is not read again.

The monitor polls a running flow's states (``Connection.get_atom_states``);
between two polls most atoms did not move. The backend keeps what it took from
each atom file while the file keeps its signature (inode, size, nanosecond
time), and trusts only a time that kept its nanoseconds: a file system with
coarse times could give two versions of a file one signature.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.persistence.backends import impl_dir
from flowkit.persistence.backends._path_based import ATOMS
from flowkit.persistence.base import AtomStatus, Connection
from flowkit.persistence.models import FlowDetail, LogBook, TaskDetail


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Connection]:
    backend = impl_dir.DirBackend({"connection": f"dir://{tmp_path}"})
    with contextlib.closing(backend.get_connection()) as connection:
        connection.upgrade()
        yield connection
    backend.close()


def _saved(conn: Connection, *names: str) -> tuple[FlowDetail, list[TaskDetail]]:
    book, fd = LogBook("book"), FlowDetail("flow", str(uuid.uuid4()))
    atoms = []
    for name in names:
        ad = TaskDetail(name, str(uuid.uuid4()))
        ad.state = states.PENDING
        fd.add(ad)
        atoms.append(ad)
    book.add(fd)
    conn.save_logbook(book)
    return fd, atoms


def _full(conn: Connection, fd_uuid: str) -> dict[str, AtomStatus]:
    return {ad.name: AtomStatus.of(ad) for ad in conn.get_flow_details(fd_uuid)}


@pytest.fixture
def atom_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The atom files the directory store reads from now on, by uuid."""
    read = impl_dir._DirStore.read
    seen: list[str] = []

    def counted(self: impl_dir._DirStore, kind: str, key: str) -> object:
        if kind == ATOMS:
            seen.append(key)
        return read(self, kind, key)

    monkeypatch.setattr(impl_dir._DirStore, "read", counted)
    return seen


def test_a_states_read_reads_only_the_atom_files_written_since_the_last(
    conn: Connection, atom_reads: list[str]
) -> None:
    fd, atoms = _saved(conn, *(f"a{i}" for i in range(20)))
    first = conn.get_atom_states(fd.uuid)
    assert first == _full(conn, fd.uuid)
    atom_reads.clear()
    assert conn.get_atom_states(fd.uuid) == first
    # Each file's time keeps its nanoseconds but for one in a thousand, which is read again.
    assert len(atom_reads) <= 1
    moved = atoms[7]
    moved.state = states.RUNNING
    conn.save_flow_progress(fd, [moved], False)
    atom_reads.clear()
    after = conn.get_atom_states(fd.uuid)
    read = list(atom_reads)
    assert moved.uuid in read and len(read) <= 2
    assert after == _full(conn, fd.uuid) and after["a7"].state == states.RUNNING


def test_a_file_whose_time_lost_its_nanoseconds_is_read_every_time(tmp_path: Path, conn: Connection) -> None:
    # A coarse file system: a file rewritten in place, as long as before, in the same second.
    fd, (atom,) = _saved(conn, "coarse")
    path = tmp_path / "atoms" / f"{atom.uuid}.json"
    second = 1_700_000_000 * 10**9
    os.utime(path, ns=(second, second))
    assert conn.get_atom_states(fd.uuid)["coarse"].state == states.PENDING
    text = path.read_text()
    assert text.count('"PENDING"') == 1
    with open(path, "r+") as handle:  # the same inode, the same size
        handle.write(text.replace('"PENDING"', '"RUNNING"'))
    os.utime(path, ns=(second, second))
    assert (
        conn.get_atom_states(fd.uuid)["coarse"].state
        == states.RUNNING
        == _full(conn, fd.uuid)["coarse"].state
    )


def test_an_atom_file_gone_since_the_last_read_is_damage_as_the_full_read_says(
    tmp_path: Path, conn: Connection
) -> None:
    fd, (gone, _kept) = _saved(conn, "gone", "kept")
    conn.get_atom_states(fd.uuid)  # both known now
    (tmp_path / "atoms" / f"{gone.uuid}.json").unlink()
    with pytest.raises(exc.StorageFailure, match=f"atom {gone.uuid} .* is linked but its record is missing"):
        conn.get_flow_details(fd.uuid)
    with pytest.raises(exc.StorageFailure, match=f"atom {gone.uuid} .* is linked but its record is missing"):
        conn.get_atom_states(fd.uuid)


def test_what_a_states_read_keeps_is_bounded(
    conn: Connection, monkeypatch: pytest.MonkeyPatch, atom_reads: list[str]
) -> None:
    store = conn._store  # type: ignore[attr-defined]
    monkeypatch.setattr(store._known, "maxsize", 5)
    fd, _atoms = _saved(conn, *(f"a{i}" for i in range(8)))
    expected = _full(conn, fd.uuid)
    assert conn.get_atom_states(fd.uuid) == expected
    assert len(store._known) == 5
    atom_reads.clear()
    assert conn.get_atom_states(fd.uuid) == expected
    assert len(atom_reads) >= 3  # those it let go are read again
