"""Several processes sharing one store: no write is lost, no batch is read torn.

Writers are real processes (``_writer.py`` run with this interpreter) so
SQLite file locks, the directory backend's inter-process lock and separate
database sessions are all exercised, as when two engines share a store.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import states
from flowkit.persistence import backends, models
from tests.persistence import _writer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
WRITER = Path(_writer.__file__).resolve()
#: Bounds on waiting for a writer, generous for a loaded 2-core machine.
READY_TIMEOUT = 30.0
FINISH_TIMEOUT = 180.0

SHARED_STORES = ["sqlite", "postgresql", "dir", "zookeeper"]


@pytest.fixture(params=SHARED_STORES)
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store several processes can open at once, with its layout created."""
    kind = request.param
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    elif kind == "dir":
        url = f"dir://{tmp_path / 'shared-dir'}"
    elif kind == "postgresql":
        url = request.getfixturevalue("postgresql_db_url")
    else:
        url = request.getfixturevalue("zookeeper_path_url")
    with backends.backend({"connection": url}):
        pass  # entering runs upgrade(): tables, directories or root znodes
    yield url


def _spawn(mode: str, url: str, args: dict[str, Any]) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, str(WRITER), mode, url, json.dumps(args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _await_line(proc: subprocess.Popen[str], want: str, timeout: float) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().strip() if ready else ""
    if line != want:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"writer said {line!r} instead of {want!r} (exit {proc.returncode}):\n{err}")


def _release(procs: list[subprocess.Popen[str]]) -> None:
    """Wait until every writer is connected, then let them all write at once."""
    for proc in procs:
        _await_line(proc, "ready", READY_TIMEOUT)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def _finish(proc: subprocess.Popen[str], timeout: float = FINISH_TIMEOUT) -> list[str]:
    """Wait for a writer to end well; return what it printed before ``done``."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"writer still running after {timeout:.0f}s:\n{err}") from None
    assert proc.returncode == 0, f"writer failed with {proc.returncode}:\n{err}"
    *said, last = out.strip().splitlines() or [""]
    assert last == "done", out
    return said


def _kill_all(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


# -- no lost writes ----------------------------------------------------------


WRITERS = 2
FLOWS = 2
ATOMS = 8
ROUNDS = 6


def test_writers_of_different_books_lose_no_atom_update(shared_url: str) -> None:
    plans = [
        {
            "name": f"writer-{w}",
            "book_uuid": str(uuid.uuid4()),
            "flow_uuids": [str(uuid.uuid4()) for _ in range(FLOWS)],
            "atoms": ATOMS,
            "rounds": ROUNDS,
        }
        for w in range(WRITERS)
    ]
    procs = [_spawn("books", shared_url, plan) for plan in plans]
    try:
        _release(procs)
        for proc in procs:
            _finish(proc)
    finally:
        _kill_all(procs)

    backend = backends.fetch({"connection": shared_url})
    try:
        with backend.get_connection() as conn:
            assert {book.uuid for book in conn.get_logbooks()} == {plan["book_uuid"] for plan in plans}
            for plan in plans:
                _check_book(conn.get_logbook(plan["book_uuid"]), plan)
    finally:
        backend.close()


def _check_book(book: models.LogBook, plan: dict[str, Any]) -> None:
    assert book.name == plan["name"]
    assert [fd.uuid for fd in book] == plan["flow_uuids"] or {fd.uuid for fd in book} == set(
        plan["flow_uuids"]
    )
    for f, flow_uuid in enumerate(plan["flow_uuids"]):
        fd = book.find(flow_uuid)
        assert fd is not None, f"{plan['name']}: flow {f} lost"
        assert fd.state == states.SUCCESS, f"{plan['name']}: flow {f} is {fd.state}"
        assert fd.meta.get("round") == ROUNDS - 1, f"{plan['name']}: flow {f} meta {fd.meta}"
        assert len(fd) == ATOMS, f"{plan['name']}: flow {f} has {len(fd)} atoms"
        for a in range(ATOMS):
            ad = fd.find(_writer._atom_uuid(flow_uuid, a))
            where = f"{plan['name']}: flow {f} atom {a}"
            assert ad is not None, f"{where} lost"
            assert (ad.state, ad.results) == (
                states.SUCCESS,
                _writer.expected_atom(plan["name"], f, a, ROUNDS),
            ), where
        first = fd.find(_writer._atom_uuid(flow_uuid, 0))
        assert first is not None and first.meta.get("touched") is True, f"{plan['name']}: flow {f}"


# -- no torn batches ---------------------------------------------------------


BATCH_ATOMS = 8
#: The fewest batches the writer writes; it goes on until told to stop.
BATCHES = 300
#: How many different counters the reader must see mid-run before it tells the writer to stop.
MID_READS = 3


def _counters(fd: models.FlowDetail) -> tuple[Any, list[Any], list[Any]]:
    atoms = sorted(fd, key=lambda ad: ad.name)
    return fd.meta.get("counter"), [ad.results for ad in atoms], [ad.meta.get("counter") for ad in atoms]


def test_reader_never_sees_half_of_a_progress_batch(shared_url: str) -> None:
    book = models.LogBook("torn-batches")
    fd = models.FlowDetail("flow", str(uuid.uuid4()))
    fd.meta["counter"] = 0
    for a in range(BATCH_ATOMS):
        ad = models.TaskDetail(f"atom-{a}", str(uuid.uuid4()))
        ad.state = states.SUCCESS
        ad.results = 0
        ad.meta["counter"] = 0
        fd.add(ad)
    book.add(fd)

    backend = backends.fetch({"connection": shared_url})
    try:
        with backend.get_connection() as conn:
            conn.save_logbook(book)
            proc = _spawn("batches", shared_url, {"flow_uuid": fd.uuid, "batches": BATCHES})
            try:
                _release([proc])
                seen = _read_while_writing(conn, proc, book.uuid, fd.uuid)
                (written,) = _finish(proc)
            finally:
                _kill_all([proc])
            last = int(written)
            final = conn.get_logbook(book.uuid).find(fd.uuid)
            assert final is not None
            assert _counters(final) == (last, [last] * BATCH_ATOMS, [last] * BATCH_ATOMS)
    finally:
        backend.close()
    # The reads overlapped the writes (the writer went on until they had), or this test proved nothing.
    mid = sorted(c for c in seen if 0 < c < last)
    assert len(mid) >= MID_READS, f"too few reads during the writes: {mid} of {last} batches"


def _read_while_writing(conn: Any, proc: subprocess.Popen[str], book_uuid: str, flow_uuid: str) -> set[int]:
    """Read the flow over and over until the writer exits; return the counters seen.

    The writer writes until told to stop: it is told once :data:`MID_READS`
    different counters were read while it wrote (or at the deadline, and the
    test then fails saying so).
    """
    seen: set[int] = set()
    last = 0
    deadline = time.monotonic() + FINISH_TIMEOUT
    reads = 0
    told = False
    while proc.poll() is None and time.monotonic() < deadline:
        if not told and (len(seen - {0}) >= MID_READS or time.monotonic() > deadline - 30):
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            told = True
        for how in ("get_logbook", "get_flow_details"):
            if how == "get_logbook":
                found = conn.get_logbook(book_uuid).find(flow_uuid)
            else:
                found = conn.get_flow_details(flow_uuid)
            assert found is not None, f"read {reads} ({how}): flow missing"
            assert len(found) == BATCH_ATOMS, f"read {reads} ({how}): {len(found)} atoms"
            flow_counter, results, meta_counters = _counters(found)
            assert len(set(results)) == 1, f"read {reads} ({how}): torn batch, atom results {results}"
            assert results == meta_counters, (
                f"read {reads} ({how}): results {results} vs meta {meta_counters}"
            )
            assert flow_counter == results[0], (
                f"read {reads} ({how}): flow meta counter {flow_counter} but atoms at {results[0]}"
            )
            assert flow_counter >= last, f"read {reads} ({how}): went back from {last} to {flow_counter}"
            last = flow_counter
            seen.add(flow_counter)
            reads += 1
    return seen
