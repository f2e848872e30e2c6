"""One behaviour suite for every jobboard: memory, Redis and ZooKeeper (real servers)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.jobs import base
from flowkit.persistence import backends as persistence_backends
from flowkit.persistence import models
from tests.conftest import wait_until
from tests.jobs.conftest import MakeBoard


def test_posted_job_is_listed_with_its_posting(make_board: MakeBoard) -> None:
    board = make_board()
    job = board.post("boot-vm-42", details={"store": {"vm_id": 42}}, priority="high")
    [listed] = list(make_board().iterjobs())
    assert (listed.uuid, listed.name, listed.details) == (job.uuid, "boot-vm-42", {"store": {"vm_id": 42}})
    assert listed.priority is base.JobPriority.HIGH
    assert listed.created_on is not None and listed.created_on == job.created_on
    assert listed.state == states.UNCLAIMED
    assert board.job_count == 1


def test_poster_holds_the_details_every_reader_gets(make_board: MakeBoard) -> None:
    """Tuples come back as lists and keys as text; the caller's dict is not the job's."""
    board = make_board()
    details: dict[Any, Any] = {"pair": (1, 2), 7: "seven", "store": {"x": [1]}}
    job = board.post("j", details=details)
    details["store"]["x"].append(2)
    [listed] = list(make_board().iterjobs())
    assert job.details == listed.details == {"pair": [1, 2], "7": "seven", "store": {"x": [1]}}


def test_a_pydantic_model_in_the_details_is_posted_as_its_json_dump(make_board: MakeBoard) -> None:
    # As storage, the cache and the worker wire hold one; a typed task validates it back.
    pydantic = pytest.importorskip("pydantic")
    point = pydantic.create_model("Point", x=(int, ...))(x=3)
    board = make_board()
    job = board.post("j", details={"store": {"point": point}})
    [listed] = list(make_board().iterjobs())
    assert job.details == listed.details == {"store": {"point": {"x": 3}}}
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(exc.InvalidFormat, match="'too-deep'"):
        board.post("too-deep", details={"deep": deep})
    assert board.job_count == 1


def test_claim_is_exclusive_and_names_its_owner(make_board: MakeBoard) -> None:
    board, other = make_board(), make_board()
    job = board.post("j")
    claim = board.claim(job, "host-a")
    assert claim.owner == "host-a"
    [seen] = list(other.iterjobs())
    assert seen.state == states.CLAIMED
    assert other.find_owner(seen) == "host-a"
    with pytest.raises(exc.UnclaimableJob, match="host-a"):
        other.claim(seen, "host-b")
    assert list(other.iterjobs(only_unclaimed=True)) == []


def test_candidates_are_the_listing_in_order_with_states_left_to_the_claim(make_board: MakeBoard) -> None:
    board = make_board()
    first, second = board.post("a"), board.post("b")
    board.claim(first, "x")
    listing = make_board().iterjobs(only_unclaimed=True)
    candidates = list(listing.candidates())
    assert [j.uuid for j in candidates] == [first.uuid, second.uuid]
    with pytest.raises(exc.UnclaimableJob, match=r"^Job \S+ already claimed by '?x'?$"):
        board.claim(candidates[0], "y")
    assert board.claim(candidates[1], "y").owner == "y"
    assert list(listing) == [], "candidates and the iterator share one position"


def test_claim_first_claims_the_first_claimable_job_in_order(make_board: MakeBoard) -> None:
    board, other = make_board(), make_board()
    first, second, third = board.post("a"), board.post("b"), board.post("c")
    board.claim(first, "x")
    board.claim(board.post("gone"), "x")
    listed = list(other.iterjobs())
    gone = listed[3]
    board.consume(gone, "x")
    claimed = other.claim_first([gone, listed[0], listed[1], listed[2]], "y")
    assert claimed is not None and claimed.job.uuid == second.uuid
    assert claimed.claim.owner == "y" and other.current_claim(listed[1]) == claimed.claim
    assert other.claim_first([listed[0], listed[1]], "z") is None
    again = board.claim_first([first, second, third], "z")
    assert again is not None and (again.job, again.claim.owner) == (third, "z")
    with pytest.raises(ValueError, match="non-empty"):
        board.claim_first([], "")


def test_every_claim_has_a_larger_token(make_board: MakeBoard) -> None:
    board, other = make_board(), make_board()
    job = board.post("j")
    first = board.claim(job, "a")
    board.abandon(job, "a")
    [seen] = list(other.iterjobs())
    second = other.claim(seen, "b")
    assert second.token > first.token
    other.check_claim(seen, second)
    with pytest.raises(base.ClaimLost) as lost:
        board.check_claim(job, first)
    assert (lost.value.claim, lost.value.current, lost.value.job) == (first, second, job.uuid)


def test_consume_completes_the_job_for_its_claimant_only(make_board: MakeBoard) -> None:
    board = make_board()
    job = board.post("j")
    # As TaskFlow's boards: a job nobody holds has no owner to be found (NotFound),
    # in the words of TaskFlow's board of that kind (etcd's says no owner).
    unclaimed = r"(which we can not determine the owner of|which is not owned by a \(it is not claimed\))$"
    with pytest.raises(exc.NotFound, match=rf"^Can ?not consume (a )?job {job.uuid} {unclaimed}"):
        board.consume(job, "a")
    with pytest.raises(exc.NotFound, match=rf"^Can ?not abandon (a )?job {job.uuid} {unclaimed}"):
        board.abandon(job, "a")
    with pytest.raises(exc.NotFound, match=rf"^Can ?not trash (a )?job {job.uuid} {unclaimed}"):
        board.trash(job, "a")
    board.claim(job, "a")
    with pytest.raises(
        exc.JobFailure, match=rf"^Can ?not consume (a )?job {job.uuid} which is not owned by b \(it is"
    ):
        board.consume(job, "b")
    board.consume(job, "a")
    assert job.state == states.COMPLETE
    assert job.wait(timeout=0)
    assert list(board.iterjobs()) == [] and board.job_count == 0
    with pytest.raises(exc.NotFound):
        board.consume(job, "a")
    with pytest.raises(exc.NotFound):
        board.claim(job, "a")


def test_releases_naming_a_claim_compare_its_token_not_just_the_owner_name(make_board: MakeBoard) -> None:
    board, other = make_board(), make_board()
    job = board.post("j")
    first = board.claim(job, "host-a")
    board.abandon(job, "host-a", claim=first)
    [seen] = list(other.iterjobs())
    # The same name claims again (a restarted conductor): the old claim must not end the new one.
    second = other.claim(seen, "host-a")
    for release in (
        lambda: board.consume(job, "host-a", claim=first),
        lambda: board.abandon(job, "host-a", reason="late", claim=first),
        lambda: board.trash(job, "host-a", reason="late", claim=first),
    ):
        with pytest.raises(base.ClaimLost) as lost:
            release()
        assert (lost.value.claim, lost.value.current) == (first, second)
    assert other.current_claim(seen) == second
    other.consume(seen, "host-a", claim=second)
    assert seen.state == states.COMPLETE
    with pytest.raises(exc.NotFound):
        other.consume(seen, "host-a", claim=second)


def test_abandoned_job_can_be_claimed_by_another(make_board: MakeBoard) -> None:
    board, other = make_board(), make_board()
    job = board.post("j")
    board.claim(job, "a")
    with pytest.raises(exc.JobFailure):
        board.abandon(job, "b")
    board.abandon(job, "a", reason="shutting down")
    [seen] = list(other.iterjobs(only_unclaimed=True))
    other.claim(seen, "b")
    assert other.find_owner(seen) == "b"
    ends = [(a.owner, a.end, a.reason) for a in other.attempts(seen)]
    assert ends == [("a", base.AttemptEnd.ABANDONED, "shutting down"), ("b", base.AttemptEnd.OPEN, None)]


def test_failed_abandons_count_as_failures(make_board: MakeBoard) -> None:
    board = make_board()
    job = board.post("j")
    for who in ("a", "b"):
        board.claim(job, who)
        board.abandon(job, who, reason=f"{who} crashed", failed=True)
    assert [a.counts_as_failure for a in job.attempts] == [True, True]
    assert [a.reason for a in job.attempts] == ["a crashed", "b crashed"]


def test_trashed_job_is_kept_aside_with_its_reason(make_board: MakeBoard) -> None:
    board = make_board()
    job = board.post("poison", details={"x": 1})
    board.claim(job, "a")
    board.trash(job, "a", reason="flow factory cannot be imported")
    assert job.state == states.COMPLETE
    assert list(board.iterjobs()) == []
    [doc] = make_board().trashed()
    assert (doc["uuid"], doc["name"], doc["details"]) == (job.uuid, "poison", {"x": 1})
    assert doc["reason"] == "flow factory cannot be imported"
    assert [a["owner"] for a in doc["attempts"]] == ["a"]


def test_jobs_come_most_urgent_then_oldest_first(make_board: MakeBoard) -> None:
    board = make_board()
    names = [("low", "LOW"), ("n1", "NORMAL"), ("vh", "VERY_HIGH"), ("n2", "normal")]
    for name, priority in names:
        board.post(name, priority=priority)
    assert [j.name for j in make_board().iterjobs()] == ["vh", "n1", "n2", "low"]


def test_wait_returns_once_a_job_is_posted(make_board: MakeBoard) -> None:
    board, other = make_board(), make_board()
    with pytest.raises(exc.NotFound, match="no job appeared"):
        board.wait(timeout=0.05)
    timer = threading.Timer(0.1, other.post, args=("late",))
    timer.start()
    try:
        jobs = list(board.wait(timeout=10))
    finally:
        timer.join()
    assert [j.name for j in jobs] == ["late"]


def test_board_notifies_posted_and_removed_jobs(make_board: MakeBoard) -> None:
    board = make_board()
    assert isinstance(board, base.NotifyingJobBoard)
    events: list[tuple[str, Any]] = []
    board.notifier.register(base.POSTED, lambda event_type, details: events.append((event_type, details)))
    board.notifier.register(base.REMOVAL, lambda event_type, details: events.append((event_type, details)))
    job = board.post("j")
    wait_until(lambda: [e for e, _ in events] == [base.POSTED], timeout=10)
    assert events[0][1]["job"].uuid == job.uuid
    board.claim(job, "a")
    board.consume(job, "a")
    wait_until(lambda: [e for e, _ in events] == [base.POSTED, base.REMOVAL], timeout=10)


def test_job_book_is_loaded_from_persistence(make_board: MakeBoard, tmp_path: Any) -> None:
    persistence = persistence_backends.fetch(f"sqlite:///{tmp_path / 'p.db'}")
    with persistence.get_connection() as conn:
        conn.upgrade()
        book = models.LogBook("the-book")
        book.add(models.FlowDetail("flow", "fd-1"))
        conn.save_logbook(book)
    board = make_board(persistence=persistence)
    board.post("j", book=book)
    reader = make_board(persistence=persistence)
    [job] = list(reader.iterjobs())
    assert (job.book_uuid, job.book_name) == (book.uuid, "the-book")
    # Known from the posting alone, before the book is loaded.
    assert job.posted_flow_uuids == ("fd-1",)
    assert job.book is not None and [fd.uuid for fd in job.book] == ["fd-1"]
    persistence.close()


def test_bad_arguments_fail_before_writing(make_board: MakeBoard) -> None:
    board = make_board()
    with pytest.raises(exc.InvalidFormat, match="'j'"):
        board.post("j", details={"not json": object()})
    with pytest.raises(ValueError, match="priority"):
        board.post("j", priority="urgent")
    assert board.job_count == 0
    job = board.post("j")
    with pytest.raises(ValueError, match="non-empty"):
        board.claim(job, "")
    with pytest.raises(TypeError):
        board.claim(job, None)  # type: ignore[arg-type]
    assert board.find_owner(job) is None


@pytest.mark.parametrize("expiry", [0, -1, float("nan"), 0.0004, float("inf")])
def test_every_board_refuses_a_claim_expiry_taskflow_refuses(
    make_board: MakeBoard, board_kind: str, expiry: float
) -> None:
    """One rule on every board (ZooKeeper's claims never expire, yet it checks too).

    TaskFlow's Redis board counts an expiry in whole milliseconds and refuses
    one that comes to none; NaN (which every comparison answers ``False``,
    so a ``<= 0`` check let it through and the claim never expired) and an
    infinite one it cannot convert at all. The error names the job and the
    value, and nothing is claimed.
    """
    board = make_board()
    job = board.post("j")
    if expiry == 0 and board_kind == "etcd":
        # TaskFlow's etcd board reads 0 as "none given" (test_etcd: its ttl applies).
        assert board.claim(job, "a", expiry=expiry).owner == "a"
        return
    with pytest.raises(ValueError, match=rf"expiry.*job {job.uuid}.*{expiry!r}"):
        board.claim(job, "a", expiry=expiry)
    with pytest.raises(ValueError, match=rf"expiry.*{expiry!r}"):
        board.claim_first([job], "a", expiry=expiry)
    assert board.find_owner(job) is None and board.attempts(job) == []
    assert board.claim(job, "a", expiry=0.001).owner == "a"  # a millisecond is enough


def test_every_board_refuses_a_claim_expiry_that_is_no_number(make_board: MakeBoard) -> None:
    board = make_board()
    job = board.post("j")
    for expiry in ("5", True):
        with pytest.raises(TypeError, match=rf"job {job.uuid}.*{expiry!r}"):
            board.claim(job, "a", expiry=expiry)  # type: ignore[arg-type]
    assert board.find_owner(job) is None


class _VanishedJob:
    """A job a third-party board listed that is gone by the time its state is read."""

    uuid = "vanished"

    @property
    def state(self) -> str:
        raise exc.NotFound("job vanished is gone")


def test_iterator_takes_taskflows_arguments(make_board: MakeBoard) -> None:
    """A board written for TaskFlow builds its iterator with TaskFlow's arguments, unchanged."""
    board = make_board()
    kept = board.post("kept")
    taken = board.post("taken")
    board.claim(taken, "someone")
    vanished = _VanishedJob()
    asked: list[bool] = []

    def fetch(*, ensure_fresh: bool) -> list[Any]:  # TaskFlow passes it by keyword
        asked.append(ensure_fresh)
        return [*board.iterjobs(), vanished]

    removed: list[Any] = []
    listing = base.JobBoardIterator(
        board,
        logging.getLogger("third-party-board"),
        board_fetch_func=fetch,
        board_removal_func=removed.append,
        only_unclaimed=True,
        ensure_fresh=True,
    )
    assert [job.uuid for job in listing] == [kept.uuid]
    assert asked == [True]
    assert removed == [vanished]
    assert listing.board is board
    assert list(base.JobBoardIterator(board, logging.getLogger("x"))) == []  # no fetch function: no jobs
    # flowkit's earlier form, the fetch function second, still works.
    assert [j.uuid for j in base.JobBoardIterator(board, lambda fresh: list(board.iterjobs()))] == [
        kept.uuid,
        taken.uuid,
    ]


def test_iterating_every_job_hands_out_one_completed_since_the_listing(make_board: MakeBoard) -> None:
    """As TaskFlow's iterator: without ``only_unclaimed`` the listing is handed out as fetched."""
    board = make_board()
    first, second = board.post("a"), board.post("b")
    listing = make_board().iterjobs()
    assert next(listing).uuid == first.uuid  # the listing is fetched now
    board.claim(second, "x")
    board.consume(second, "x")
    done = next(listing)
    assert (done.uuid, done.state) == (second.uuid, states.COMPLETE)
    assert list(listing) == []


def test_a_closed_board_refuses_writes_and_reads_naming_itself_and_connects_again(
    make_board: MakeBoard,
) -> None:
    """The memory board too: it served on after close(), unlike every other board."""
    board = make_board()
    job = board.post("j")
    claimed = board.post("claimed")
    claim = board.claim(claimed, "a")
    board.close()
    assert not board.connected
    for write in (
        lambda: board.post("k"),
        lambda: board.claim(job, "a"),
        lambda: board.claim_first([job], "a"),
        lambda: board.consume(claimed, "a", claim=claim),
        lambda: board.abandon(claimed, "a"),
        lambda: board.trash(claimed, "a"),
        # Reads too. (A ZooKeeper board lists no jobs when not connected, as TaskFlow's;
        # asked for a fresh listing it refuses, as the others do for any listing.)
        lambda: list(board.iterjobs(ensure_fresh=True)),
        lambda: board.current_claim(claimed),
        lambda: board.attempts(claimed),
        board.trashed,
    ):
        with pytest.raises(exc.JobFailure, match=f"'{board.name}'.* not connected"):
            write()
    board.close()  # closing twice is harmless
    board.connect()
    assert board.connected
    # The jobs are still there (a ZooKeeper claim, held by the closed session, is not).
    assert {j.name for j in board.iterjobs()} == {"j", "claimed"}


def test_a_job_gone_from_the_board_has_no_owner_claim_or_attempts(make_board: MakeBoard) -> None:
    # As TaskFlow's boards: asking who holds a job that is gone answers "nobody", not NotFound.
    board = make_board()
    job = board.post("j")
    board.claim(job, "a")
    board.consume(job, "a")
    assert (board.find_owner(job), board.current_claim(job), board.attempts(job)) == (None, None, [])
    assert job.state == states.COMPLETE
    with pytest.raises(exc.NotFound, match=job.uuid):
        board.abandon(job, "a")
    assert board.claim_first([job], "a") is None


def test_a_board_never_vouches_locally_for_a_claim_given_back_or_made_elsewhere(
    make_board: MakeBoard,
) -> None:
    # holds_locally() may answer True only for a claim it made and still holds (False means "ask").
    board, other = make_board(), make_board()
    job = board.post("j")
    first = board.claim(job, "a")
    board.abandon(job, "a", claim=first)
    assert not board.holds_locally(job, first)
    [seen] = list(other.iterjobs())
    second = other.claim(seen, "b")
    assert not board.holds_locally(job, second) or board is other  # memory: one board object
    other.consume(seen, "b", claim=second)
    assert not other.holds_locally(seen, second)
    trashed = board.post("k")
    claim = board.claim(trashed, "a")
    board.trash(trashed, "a", claim=claim)
    assert not board.holds_locally(trashed, claim)


def test_find_job_finds_a_job_by_its_uuid_alone_and_says_when_its_state_cannot_be_read(
    make_board: MakeBoard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `flowkit jobs show` and `flowkit flows resume` ask of a job they know by its uuid.
    # A listing skips a job whose state it cannot read; a job guarding a flow must not be
    # taken for a job gone (the resume would then run without holding it).
    board, other = make_board(), make_board()
    job, idle = board.post("j"), board.post("idle")
    claim = board.claim(job, "a")
    found = other.find_job(job.uuid)
    assert found is not None and found.uuid == job.uuid and found.state == states.CLAIMED
    assert other.find_job("no-such-job") is None

    def unreadable(_job: Any) -> str:
        raise exc.JobFailure("the board did not answer")

    monkeypatch.setattr(type(found), "state", property(unreadable))
    with pytest.raises(exc.JobFailure, match="did not answer"):
        other.find_job(job.uuid)
    monkeypatch.undo()
    board.consume(job, "a", claim=claim)
    assert other.find_job(job.uuid) is None
    assert other.find_job(idle.uuid) is not None


def test_claim_of_finds_a_jobs_claim_by_its_uuid_alone(make_board: MakeBoard) -> None:
    # What a conductor asks of a job it knows only as the holder of a flow detail's fence.
    board, other = make_board(), make_board()
    job, idle = board.post("j"), board.post("idle")
    claim = board.claim(job, "a")
    assert other.claim_of(job.uuid) == claim
    assert other.claim_of(idle.uuid) is None
    assert other.claim_of("no-such-job") is None
    board.consume(job, "a", claim=claim)
    assert other.claim_of(job.uuid) is None
