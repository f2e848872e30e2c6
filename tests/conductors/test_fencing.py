"""The fencing window, forced: a conductor pauses after its claim check passed and before its write.

The pause is forced by a pass-through backend that runs a hook just before a
write reaches the real store (SQLite, memory, directory or ZooKeeper). In the hook the
paused conductor's claim expires on the board, another conductor claims the
job, takes over the flow detail and writes; then the paused write goes on.
The store's write fence refuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.conductors._fencing import ClaimFence, FencedBackend
from flowkit.jobs.backends.impl_memory import MemoryJobBoard
from flowkit.jobs.base import ClaimLost
from flowkit.persistence import backends as persistence_backends
from flowkit.persistence import models
from flowkit.persistence.base import Backend, Connection, WriteFence
from tests.conductors import flows
from tests.conductors.conftest import post_flow
from tests.manual_clock import ManualClock

EXPIRY = 10.0


class _PausingConnection:
    """Passes everything to ``inner``; runs ``pause`` once, just before the first progress write.

    With ``fences=False`` it says it has no write fences, as a third-party backend may.
    """

    def __init__(self, inner: Connection, pause: list[Callable[[], None]], fences: bool) -> None:
        self._inner = inner
        self._pause = pause
        self.supports_fences = fences and inner.supports_fences

    def _before_write(self) -> None:
        while self._pause:
            self._pause.pop()()

    def save_flow_progress(self, *args: Any, **kwargs: Any) -> None:
        self._before_write()
        self._inner.save_flow_progress(*args, **kwargs)

    def save_flow_progress_fenced(self, *args: Any, **kwargs: Any) -> None:
        self._before_write()
        self._inner.save_flow_progress_fenced(*args, **kwargs)

    def __enter__(self) -> _PausingConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _PausingBackend(Backend):
    def __init__(self, inner: Backend, fences: bool = True) -> None:
        super().__init__(inner.conf)
        self.inner = inner
        self.fences = fences
        self.pause: list[Callable[[], None]] = []

    def get_connection(self) -> Connection:
        inner = self.inner.get_connection()
        return _PausingConnection(inner, self.pause, self.fences)  # type: ignore[return-value]

    def close(self) -> None:
        self.inner.close()


def _race(
    store: Backend, tmp_path: Path, fences: bool = True
) -> tuple[models.FlowDetail, Callable[[], None]]:
    """Set up the interleaving; return the flow detail and the paused conductor's write.

    ``fences=False``: both conductors see a store without write fences.
    """
    clock = ManualClock(0.0)
    board = MemoryJobBoard("board", {"claim_expiry": EXPIRY}, persistence=store, clock=clock)
    job, fd = post_flow(board, store, flows.chain, [1], job_store={"v0": 0, "calls": str(tmp_path / "c")})
    paused = _PausingBackend(store, fences)
    claim_a = board.claim(job, "a")
    backend_a = FencedBackend(paused, ClaimFence(board, job, claim_a, EXPIRY, clock=clock))
    flow_a = backend_a.take(fd.uuid)

    def take_over() -> None:
        # a is frozen: its claim expires, b claims the job, reads the flow and writes.
        clock.now += EXPIRY + 1
        claim_b = board.claim(job, "b")
        backend_b = FencedBackend(paused, ClaimFence(board, job, claim_b, EXPIRY, clock=clock))
        flow_b = backend_b.take(fd.uuid)
        flow_b.state = states.RUNNING
        with backend_b.get_connection() as conn:
            conn.save_flow_progress(flow_b, [_atom("written-by-b")], True)

    paused.pause.append(take_over)

    def write_of_a() -> None:
        flow_a.state = states.FAILURE
        with backend_a.get_connection() as conn:
            conn.save_flow_progress(flow_a, [_atom("written-by-a")], True)

    return fd, write_of_a


def _atom(name: str) -> models.TaskDetail:
    detail = models.TaskDetail(name, f"uuid-{name}")
    detail.state = states.SUCCESS
    return detail


def _stored(store: Backend, fd: models.FlowDetail) -> tuple[str, set[str]]:
    with store.get_connection() as conn:
        stored = conn.get_flow_details(fd.uuid)
    return str(stored.state), {ad.name for ad in stored}


def test_with_store_fences_a_write_paused_after_its_claim_check_is_refused(
    persistence: Backend, tmp_path: Path
) -> None:
    fd, write_of_a = _race(persistence, tmp_path)
    with pytest.raises(ClaimLost, match="refused"):
        write_of_a()
    state, atoms = _stored(persistence, fd)
    assert state == states.RUNNING and "written-by-b" in atoms
    assert "written-by-a" not in atoms, "the paused conductor's write landed after the take-over"


@pytest.mark.parametrize("kind", ["memory", "dir", "zookeeper"])
def test_document_stores_refuse_a_write_paused_after_its_claim_check(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The document backends keep the fence in the flow's document (see ``_path_based``)."""
    urls = {"memory": "memory://", "dir": f"dir://{tmp_path / 'store'}"}
    url = urls[kind] if kind in urls else str(request.getfixturevalue("zookeeper_path_url"))
    store = persistence_backends.fetch(url)
    with store.get_connection() as conn:
        conn.upgrade()
    fd, write_of_a = _race(store, tmp_path)
    with pytest.raises(ClaimLost, match="refused"):
        write_of_a()
    state, atoms = _stored(store, fd)
    assert state == states.RUNNING and "written-by-b" in atoms
    assert "written-by-a" not in atoms, "the paused conductor's write landed after the take-over"
    store.close()


def test_without_store_fences_a_write_paused_after_its_claim_check_still_lands(tmp_path: Path) -> None:
    """What remains on a backend without write fences (none bundled; a third-party one may be)."""
    store = persistence_backends.fetch("memory://")
    fd, write_of_a = _race(store, tmp_path, fences=False)
    write_of_a()
    state, atoms = _stored(store, fd)
    assert state == states.FAILURE and {"written-by-a", "written-by-b"} <= atoms


def _two_jobs_for_one_flow(
    store: Backend, tmp_path: Path
) -> tuple[MemoryJobBoard, Any, Any, models.FlowDetail]:
    """A board with two jobs posted for one flow detail (the second, say, posted again by an operator)."""
    board = MemoryJobBoard("board", persistence=store)
    first, fd = post_flow(board, store, flows.chain, [1], job_store={"v0": 0, "calls": str(tmp_path / "c")})
    second = board.post("again", book=first.book, details=first.details)
    return board, first, second, fd


def test_a_second_job_for_a_flow_detail_a_live_job_holds_does_not_take_its_fence(
    persistence: Backend, tmp_path: Path
) -> None:
    """Another job's fence was taken over whatever its token, so a second job stole the flow detail.

    The first job's conductor, its claim alive, then had every write refused
    (counted as a lost claim) while the second ran the same flow's tasks.
    """
    board, first, second, fd = _two_jobs_for_one_flow(persistence, tmp_path)
    claim_a = board.claim(first, "a")
    backend_a = FencedBackend(persistence, ClaimFence(board, first, claim_a))
    flow_a = backend_a.take(fd.uuid)
    claim_b = board.claim(second, "b")
    backend_b = FencedBackend(persistence, ClaimFence(board, second, claim_b))
    with pytest.raises(exc.UnclaimableJob, match=rf"{fd.uuid}.*job {first.uuid}.*'a'") as held:
        backend_b.take(fd.uuid)
    assert second.uuid in str(held.value)
    flow_a.state = states.RUNNING
    with backend_a.get_connection() as conn:  # the first job's run goes on undisturbed
        conn.save_flow_progress(flow_a, [_atom("written-by-a")], True)
    assert _stored(persistence, fd) == (states.RUNNING, {"written-by-a"})


@pytest.mark.parametrize("ended", ["consumed", "abandoned", "trashed"])
def test_a_second_job_takes_the_fence_of_a_job_no_longer_claimed(
    persistence: Backend, tmp_path: Path, ended: str
) -> None:
    """A flow detail whose job was done, given back or set aside may be run under another job."""
    board, first, second, fd = _two_jobs_for_one_flow(persistence, tmp_path)
    claim_a = board.claim(first, "a")
    FencedBackend(persistence, ClaimFence(board, first, claim_a)).take(fd.uuid)
    {"consumed": board.consume, "abandoned": board.abandon, "trashed": board.trash}[ended](first, "a")
    claim_b = board.claim(second, "b")
    backend_b = FencedBackend(persistence, ClaimFence(board, second, claim_b))
    flow_b = backend_b.take(fd.uuid)
    with backend_b.get_connection() as conn:
        conn.save_flow_progress(flow_b, [_atom("written-by-b")], True)
    assert "written-by-b" in _stored(persistence, fd)[1]


def test_a_conductor_sets_aside_a_second_job_for_a_flow_detail_a_live_job_runs(
    persistence: Backend, tmp_path: Path
) -> None:
    """Set aside with the reason, not run: the first job's conductor keeps the flow detail."""
    from flowkit.conductors import backends as conductor_backends

    board, first, second, fd = _two_jobs_for_one_flow(persistence, tmp_path)
    claim_a = board.claim(first, "a")
    FencedBackend(persistence, ClaimFence(board, first, claim_a)).take(fd.uuid)
    conductor = conductor_backends.fetch("blocking", "b", board, persistence=persistence, engine="serial")
    conductor.run(max_dispatches=1)
    [trashed] = board.trashed()
    assert trashed["uuid"] == second.uuid
    assert fd.uuid in trashed["reason"] and first.uuid in trashed["reason"]
    assert board.current_claim(first) == claim_a
    assert flows.read_calls(tmp_path / "c") == [], "the second job ran the flow's tasks"


def test_a_fence_claimed_and_taken_anew_after_its_job_was_found_unclaimed_is_not_taken_over(
    persistence: Backend, tmp_path: Path
) -> None:
    """The board's answer and the take-over are two steps: the store compares the very fence judged.

    Between the board saying the first job is unclaimed and the second job
    taking its fence, the first job is claimed again and its new claim takes
    the fence. Taking over "another job's fence, whatever it is" would steal
    that live run's flow detail after all.
    """
    board, first, second, fd = _two_jobs_for_one_flow(persistence, tmp_path)
    claim_a = board.claim(first, "a")
    FencedBackend(persistence, ClaimFence(board, first, claim_a)).take(fd.uuid)
    board.abandon(first, "a", claim=claim_a)
    retaken: list[Any] = []
    asked = board.claim_of

    def claim_of_then_first_job_retaken(job_uuid: str) -> Any:
        answer = asked(job_uuid)
        if not retaken:  # right after the board's answer, before the take-over
            claim_c = board.claim(first, "c")
            FencedBackend(persistence, ClaimFence(board, first, claim_c)).take(fd.uuid)
            retaken.append(claim_c)
        return answer

    board.claim_of = claim_of_then_first_job_retaken  # type: ignore[method-assign]
    claim_b = board.claim(second, "b")
    backend_b = FencedBackend(persistence, ClaimFence(board, second, claim_b))
    with pytest.raises(exc.UnclaimableJob, match=rf"job {first.uuid}.*'c'"):
        backend_b.take(fd.uuid)
    with persistence.get_connection() as conn:  # the first job's new run still holds the flow detail
        flow_c = conn.get_flow_details(fd.uuid)
        fence_c = WriteFence(first.uuid, retaken[0].token)
        conn.save_flow_progress_fenced(flow_c, [_atom("written-by-c")], True, fence_c)


class _BackendWithoutTakeOver(_PausingBackend):
    """A third-party store written before ``fence_flow(take_over=)``: its fence_flow takes two arguments."""

    def get_connection(self) -> Connection:
        inner = self.inner.get_connection()

        class Older(_PausingConnection):
            def fence_flow(self, fd_uuid: str, fence: WriteFence) -> models.FlowDetail:
                return inner.fence_flow(fd_uuid, fence)

        return Older(inner, self.pause, True)  # type: ignore[return-value]


def test_a_store_whose_fence_flow_predates_take_over_is_fenced_as_before(
    persistence: Backend, tmp_path: Path
) -> None:
    """Not broken by the new argument: another job's fence is taken over, as every store's was."""
    board, first, second, fd = _two_jobs_for_one_flow(persistence, tmp_path)
    store = _BackendWithoutTakeOver(persistence)
    FencedBackend(store, ClaimFence(board, first, board.claim(first, "a"))).take(fd.uuid)
    backend_b = FencedBackend(store, ClaimFence(board, second, board.claim(second, "b")))
    flow_b = backend_b.take(fd.uuid)
    with backend_b.get_connection() as conn:
        conn.save_flow_progress(flow_b, [_atom("written-by-b")], True)
    assert "written-by-b" in _stored(persistence, fd)[1]


def _statements_of(store: Backend, action: Callable[[], object]) -> list[str]:
    """The statements ``action`` sends to ``store`` (a SQLAlchemy backend): "VERB table", and COMMITs."""
    import re

    from sqlalchemy import event

    engine = store.engine  # type: ignore[attr-defined]
    sent: list[str] = []

    def statement(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        found = re.match(r"\s*(UPDATE)\s+(\w+)|\s*(\w+)\b.*?\b(?:FROM|INTO)\s+(\w+)", sql, re.S | re.I)
        words = [w for w in found.groups() if w] if found else [sql.strip()]
        sent.append(" ".join(words).upper())

    def commit(_conn: Any) -> None:
        sent.append("COMMIT")

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
    return sent


def test_taking_a_jobs_flow_reads_the_fence_it_replaces_in_the_transaction_that_takes_it(
    persistence: Backend, tmp_path: Path
) -> None:
    # take() first read the fence in a transaction of its own (to tell whether an earlier
    # claim of the job ran the flow), then took the fence in a second one.
    board = MemoryJobBoard("board", persistence=persistence)
    calls = str(tmp_path / "c")
    job, fd = post_flow(board, persistence, flows.chain, [1], job_store={"v0": 0, "calls": calls})
    first = FencedBackend(persistence, ClaimFence(board, job, board.claim(job, "a")))
    sent = _statements_of(persistence, lambda: first.take(fd.uuid))
    # One transaction: the flow's row (its fence with it), the fence taken, the atoms.
    assert sent == ["SELECT FLOWDETAILS", "UPDATE FLOWDETAILS", "SELECT ATOMDETAILS", "COMMIT"], sent
    assert fd.uuid not in first.run_before
    # Taken again by the same claim (a flow read anew after its in-doubt atoms were settled):
    # its own fence is no earlier claim's.
    first.take(fd.uuid)
    assert fd.uuid not in first.run_before
    board.abandon(job, "a")
    later = FencedBackend(persistence, ClaimFence(board, job, board.claim(job, "b")))
    later.take(fd.uuid)
    assert fd.uuid in later.run_before
