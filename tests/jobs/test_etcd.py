"""What only the etcd board does: TaskFlow's key layout, leased claims, the lazy watch, its URL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.jobs import backends, base
from tests import services
from tests.conftest import wait_until
from tests.jobs.conftest import board_conf


@pytest.fixture
def conf(request: pytest.FixtureRequest) -> dict[str, Any]:
    services.require_module("etcd3gw", "etcd3gw")
    return board_conf("etcd", request)


def test_etcd_board_is_found_by_kind_and_url() -> None:
    from flowkit.jobs.backends.impl_etcd import EtcdJobBoard

    board = backends.fetch("b", "etcd://etcd.example:2390/octavia")
    assert isinstance(board, EtcdJobBoard)
    assert board.where == "http://etcd.example:2390/taskflow/jobs/octavia"
    assert board.root_path == "/taskflow/jobs/octavia"
    assert board.trash_path == "/taskflow/.trash/octavia"
    tls = backends.fetch("b", {"board": "etcd", "host": "h", "port": "2379", "protocol": "https"})
    assert tls.where == "https://h:2379/taskflow/jobs/jobboard"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="'port'.*'many'"):
        backends.fetch("b", {"board": "etcd", "port": "many"})


def test_unreachable_etcd_board_names_its_address() -> None:
    services.require_module("etcd3gw", "etcd3gw")
    port = services.free_port()
    board = backends.fetch("b", {"board": "etcd", "host": "127.0.0.1", "port": port, "timeout": 2})
    with pytest.raises(exc.JobFailure, match=f"'b' at http://127.0.0.1:{port}/taskflow/jobs/jobboard"):
        board.connect()
    assert not board.connected


def test_jobs_are_kept_under_taskflows_keys(conf: dict[str, Any]) -> None:
    with backends.backend("b", conf) as board:
        job = board.post("j", details={"x": 1})
        root = board.root_path  # type: ignore[attr-defined]
        assert job.key == f"{root}/job1"  # type: ignore[attr-defined]
        assert board.get_one(f"{root}/sequence") == b"1"  # type: ignore[attr-defined]
        posting = json.loads(board.get_data(job))  # type: ignore[attr-defined]
        assert (posting["uuid"], posting["name"], posting["sequence"], posting["priority"]) == (
            job.uuid,
            "j",
            1,
            "NORMAL",
        )
        board.claim(job, "a")
        assert board.get_owner_and_data(job)[0] == "a"  # type: ignore[attr-defined]
        assert job.last_modified is not None and job.last_modified >= job.created_on
        board.trash(job, "a", reason="poison")
        trashed = json.loads(board.get_one(f"{board.trash_path}/job1"))  # type: ignore[attr-defined]
        assert (trashed["uuid"], trashed["reason"]) == (job.uuid, "poison")


def test_claim_expiry_is_an_etcd_lease_that_can_be_extended_or_ended(conf: dict[str, Any]) -> None:
    with backends.backend("b", conf) as board:
        forever = board.post("forever")
        board.claim(forever, "a")
        assert forever.lease is None and forever.expires_in() == -1  # type: ignore[attr-defined]
        job = board.post("j")
        claim = board.claim(job, "a", expiry=30)
        assert job.lease is not None  # type: ignore[attr-defined]
        assert 0 < job.expires_in() <= 30  # type: ignore[attr-defined]
        lease = job.lease.id  # type: ignore[attr-defined]
        assert job.extend_expiry(30)  # type: ignore[attr-defined]
        assert job.lease.id == lease, "the same TTL again is a keep-alive of the claim's lease"  # type: ignore[attr-defined]
        assert job.extend_expiry(300)  # type: ignore[attr-defined]
        assert 30 < job.expires_in() <= 300  # type: ignore[attr-defined]
        assert job.lease.id != lease  # type: ignore[attr-defined]
        assert board.current_claim(job) == claim, "the claim outlives its first lease"
        assert job.extend_expiry(0)  # type: ignore[attr-defined]
        assert job.state == states.UNCLAIMED
        assert not job.extend_expiry(30)  # type: ignore[attr-defined]
        assert [a.end for a in board.attempts(job)] == [base.AttemptEnd.LOST]


def test_etcd_reads_a_zero_expiry_as_none_given(conf: dict[str, Any]) -> None:
    """As TaskFlow's etcd board (``expiry or ttl``): 0 takes the board's ``ttl``, or no lease."""
    with backends.backend("b", {**conf, "ttl": 60}) as board:
        job = board.post("j")
        board.claim(job, "a", expiry=0)
        assert 0 < job.expires_in() <= 60  # type: ignore[attr-defined]
    with backends.backend("b", conf) as board:
        job = board.post("k")
        board.claim(job, "a", expiry=0.0)
        assert job.lease is None and job.expires_in() == -1  # type: ignore[attr-defined]
    with backends.backend("b", conf) as board, pytest.raises(ValueError, match="expiry"):
        board.claim(board.post("n"), "a", expiry=-1)


def test_a_claim_whose_lease_runs_out_frees_the_job_for_another(conf: dict[str, Any]) -> None:
    with backends.backend("b", conf) as board, backends.backend("o", conf) as other:
        job = board.post("j")
        first = board.claim(job, "a", expiry=1)
        [seen] = list(other.iterjobs())
        with pytest.raises(exc.UnclaimableJob, match="'a'"):
            other.claim(seen, "b")
        wait_until(lambda: seen.state == states.UNCLAIMED, timeout=10)
        assert other.claim(seen, "b").token > first.token
        with pytest.raises(base.ClaimLost):
            board.consume(job, "a", claim=first)


def test_etcd_watch_runs_only_for_listeners_and_waiters(conf: dict[str, Any]) -> None:
    with backends.backend("b", conf) as board, backends.backend("o", conf) as other:
        board.post("j")
        assert board._watch_thread is None  # type: ignore[attr-defined]
        heard: list[str] = []
        board.notifier.register(base.POSTED, lambda _event, details: heard.append(details["job"].name))  # type: ignore[attr-defined]
        assert board._watch_thread is not None  # type: ignore[attr-defined]
        other.post("k")
        wait_until(lambda: heard == ["j", "k"], timeout=10)
    assert board._watch_thread is None  # type: ignore[attr-defined]


def test_boards_racing_for_jobs_claim_each_once_and_post_unique_numbers(conf: dict[str, Any]) -> None:
    """Four boards post and claim at once: every counter value and every job goes to one of them."""
    import threading

    boards = [backends.fetch(f"b{i}", conf) for i in range(4)]
    for board in boards:
        board.connect()
    try:
        won: list[tuple[str, str]] = []
        posted: list[Any] = []
        lock = threading.Lock()
        start = threading.Barrier(len(boards))

        def race(board: Any) -> None:
            start.wait()
            mine = [board.post(f"{board.name}-{n}") for n in range(5)]
            with lock:
                posted.extend(mine)
            start.wait()
            while (
                got := board.claim_first(list(board.iterjobs(only_unclaimed=True)), board.name)
            ) is not None:
                with lock:
                    won.append((got.job.uuid, board.name))

        threads = [threading.Thread(target=race, args=(b,)) for b in boards]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(j.sequence for j in posted) == list(range(1, 21))
        assert sorted(uuid for uuid, _ in won) == sorted(j.uuid for j in posted)
        for uuid, who in won:
            assert boards[0].claim_of(uuid) == base.Claim(who, 1)
    finally:
        for board in boards:
            board.close()


def test_etcd_watch_comes_back_after_etcd_restarts_and_reports_what_it_missed(
    conf: dict[str, Any], etcd_server: services.EtcdServer
) -> None:
    """The watch stream dies with etcd; changes made before it is opened again are still heard.

    The listener holds the watch thread while etcd restarts and the other
    board changes the jobs, so those changes happen while no stream is open:
    only a watch that re-reads the board on coming back can report them.
    """
    import threading

    with backends.backend("b", conf) as board, backends.backend("o", conf) as other:
        done = other.post("done")
        heard: list[tuple[str, str]] = []
        release = threading.Event()

        def listen(event: str, details: dict[str, Any]) -> None:
            heard.append((event, details["job"].name))
            if details["job"].name == "hold":
                release.wait(30)

        board.notifier.register(base.POSTED, listen)  # type: ignore[attr-defined]
        board.notifier.register(base.REMOVAL, listen)  # type: ignore[attr-defined]
        other.post("hold")
        wait_until(lambda: heard == [(base.POSTED, "done"), (base.POSTED, "hold")], timeout=10)
        etcd_server.stop()
        try:
            with pytest.raises(
                exc.JobFailure, match=f"'o' at {etcd_server.url}/taskflow/jobs/.*could not post"
            ):
                other.post("lost")
        finally:
            etcd_server.start()
        other.claim(done, "o")
        other.consume(done, "o")
        other.post("new")
        release.set()
        wait_until(lambda: heard[2:] == [(base.REMOVAL, "done"), (base.POSTED, "new")], timeout=20)
        other.post("later")
        wait_until(lambda: heard[4:] == [(base.POSTED, "later")], timeout=10)
        assert [job.name for job in board.wait(5)] == ["hold", "new", "later"]


def test_a_closed_board_stops_retrying_its_watch_while_etcd_is_down(
    conf: dict[str, Any], etcd_server: services.EtcdServer
) -> None:
    board = backends.fetch("b", {**conf, "timeout": 2})
    board.connect()
    try:
        board.notifier.register(base.POSTED, lambda _event, details: None)  # type: ignore[attr-defined]
        thread = board._watch_thread  # type: ignore[attr-defined]
        assert thread is not None and thread.is_alive()
        etcd_server.stop()
        try:
            board.close()
            assert not thread.is_alive(), "close() waits for the watch thread, which does not retry"
        finally:
            etcd_server.start()
    finally:
        board.close()


def test_a_leased_claim_outlives_an_etcd_restart_and_waiters_hear_of_the_outage(
    conf: dict[str, Any], etcd_server: services.EtcdServer
) -> None:
    """etcd restores leases with their full TTL when it comes back, so the holder keeps its claim."""
    with backends.backend("b", conf) as board:
        job = board.post("j")
        claim = board.claim(job, "a", expiry=30)
        etcd_server.stop()
        try:
            with pytest.raises(exc.JobFailure, match=f"'b' at {etcd_server.url}/taskflow/jobs/.*refused"):
                job.extend_expiry(30)  # type: ignore[attr-defined]
            with pytest.raises(exc.JobFailure, match=f"'b' at {etcd_server.url}/taskflow/jobs/"):
                board.wait(0.1)
        finally:
            etcd_server.start()
        assert board.current_claim(job) == claim
        assert job.extend_expiry(30)  # type: ignore[attr-defined]
        board.consume(job, "a", claim=claim)
        assert job.state == states.COMPLETE


def test_a_watch_etcd_cancels_says_why(conf: dict[str, Any]) -> None:
    """etcd cancels a watch from a compacted revision; the board says so (and its loop lists again)."""
    import threading

    with backends.backend("b", conf) as board:
        board.post("j")
        client = board._etcd()  # type: ignore[attr-defined]
        _, revision = board._range(board.root_path + "/", prefix=True)  # type: ignore[attr-defined]
        client.post(client.get_url("/kv/compaction"), json={"revision": revision})
        with pytest.raises(exc.JobFailure, match=r"\(watch from revision 1\): etcd cancelled .*compacted"):
            board._follow(threading.Event(), 0)  # type: ignore[attr-defined]


def test_a_claim_etcd_refuses_leaves_no_lease_behind(conf: dict[str, Any]) -> None:
    """The lease is granted before the claim's transaction; when etcd refuses that, it is revoked."""
    with backends.backend("b", conf) as board:
        client = board._etcd()  # type: ignore[attr-defined]

        def leases() -> set[str]:
            found = client.post(client.get_url("/lease/leases"), json={}).get("leases", [])
            return {lease["ID"] for lease in found}

        job = board.post("j")
        before = leases()
        with pytest.raises(exc.JobFailure, match=f"could not claim job {job.uuid}: .*larger than max"):
            board.claim(job, "x" * 3_000_000, expiry=600)  # over etcd's request size limit
        assert leases() - before == set()
        assert job.state == states.UNCLAIMED


def test_the_watch_tries_again_with_a_bounded_backoff_while_etcd_is_down(
    conf: dict[str, Any],
    etcd_server: services.EtcdServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import re

    from flowkit.jobs.backends import impl_etcd

    monkeypatch.setattr(impl_etcd, "WATCH_RETRY_FIRST", 0.01)
    monkeypatch.setattr(impl_etcd, "WATCH_RETRY_MAX", 0.08)
    caplog.set_level(logging.DEBUG, logger=impl_etcd.__name__)

    def delays() -> list[float]:
        found = (re.search(r"opening it again in ([\d.]+) s", r.getMessage()) for r in caplog.records)
        return [float(m.group(1)) for m in found if m]

    with backends.backend("b", conf) as board, backends.backend("o", conf) as other:
        heard: list[str] = []
        board.notifier.register(base.POSTED, lambda _event, details: heard.append(details["job"].name))  # type: ignore[attr-defined]
        wait_until(lambda: board._watch_stream is not None, timeout=10)  # type: ignore[attr-defined]
        etcd_server.stop()
        try:
            wait_until(lambda: len(delays()) >= 6, timeout=10)
        finally:
            etcd_server.start()
        assert delays()[:6] == [0.01, 0.02, 0.04, 0.08, 0.08, 0.08]
        other.post("back")
        wait_until(lambda: heard == ["back"], timeout=10)


@pytest.mark.parametrize("expiry", [None, 30], ids=["no-expiry", "leased"])
def test_a_claim_whose_reply_is_lost_is_undone(
    conf: dict[str, Any], etcd_server: services.EtcdServer, expiry: float | None
) -> None:
    """etcd makes the claim but the reply never arrives: the caller hears of a failure, so no claim stays.

    Left in place it would hold the job for the whole lease, or for ever
    without one, for a conductor that went on believing it had failed.
    """
    proxy = services.LossyProxy(etcd_server.port)
    try:
        with (
            backends.backend("direct", conf) as direct,
            backends.backend("b", {**conf, "port": proxy.port}) as board,
        ):
            job = board.post("j")
            proxy.lose_reply_to(b"/kv/txn")
            with pytest.raises(exc.JobFailure, match=f"could not claim job {job.uuid}"):
                board.claim(job, "a", expiry=expiry)
            [seen] = list(direct.iterjobs())
            assert seen.state == states.UNCLAIMED
            assert direct.claim(seen, "b").owner == "b"
    finally:
        proxy.close()


def test_job_count_and_wait_read_keys_not_postings(
    conf: dict[str, Any], etcd_server: services.EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting 30 jobs of 20 KB details moves their keys only, across pages, at one revision."""
    from flowkit.jobs.backends import impl_etcd

    monkeypatch.setattr(impl_etcd, "KEY_PAGE", 5)  # several pages, a claimed job's keys split between two
    proxy = services.LossyProxy(etcd_server.port)
    try:
        with (
            backends.backend("direct", conf) as direct,
            backends.backend("b", {**conf, "port": proxy.port}) as board,
        ):
            jobs = [direct.post(f"j{n}", details={"blob": "x" * 20_000}) for n in range(30)]
            for job in jobs[::3]:
                direct.claim(job, "a", expiry=60)
            postings = 30 * 20_000

            before = proxy.bytes_down
            assert board.job_count == 30
            counted = proxy.bytes_down - before
            assert counted < postings / 20, f"job_count read {counted} bytes for {postings} bytes of postings"

            board.wait(0)  # starts the watch, whose first listing does read the postings
            wait_until(lambda: board._watch_stream is not None, timeout=10)  # type: ignore[attr-defined]
            before = proxy.bytes_down
            board.wait(0)
            waited = proxy.bytes_down - before
            assert waited < 5_000, f"wait() read {waited} bytes to learn the board has a job"
            assert [job.name for job in board.wait(0)] == [f"j{n}" for n in range(30)]
    finally:
        proxy.close()


def _silence_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if "heard nothing" in r.getMessage() and r.levelno == level
    ]


def test_a_watch_whose_connection_goes_silent_is_opened_again_and_reports_what_it_missed(
    conf: dict[str, Any], etcd_server: services.EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The relay stops forwarding the watch's connections without closing them: no error, just silence.

    A quiet stream is opened again after ``watch_timeout`` as routine (DEBUG,
    nothing announced twice). Once the watch connections go silent, a
    posting is still announced, once: either the silent stream's check sees
    the key it missed, or opening the next watch times out and the jobs are
    listed; either way a WARNING names the board. When the relay forwards
    again the watch follows changes as before.
    """
    import logging

    caplog.set_level(logging.DEBUG, logger="flowkit.jobs.backends.impl_etcd")
    proxy = services.LossyProxy(etcd_server.port)
    try:
        with (
            backends.backend("direct", conf) as direct,
            backends.backend("b", {**conf, "port": proxy.port, "watch_timeout": 0.3}) as board,
        ):
            direct.post("before")
            heard: list[str] = []
            board.notifier.register(base.POSTED, lambda _event, details: heard.append(details["job"].name))  # type: ignore[attr-defined]
            wait_until(lambda: heard == ["before"], timeout=10)
            wait_until(lambda: _silence_records(caplog, logging.DEBUG), timeout=10)
            assert _silence_records(caplog, logging.WARNING) == []
            assert heard == ["before"]
            proxy.stall(b"/watch ", new_too=True)  # the open watch, and every one opened from now on
            direct.post("after")
            wait_until(lambda: heard == ["before", "after"], timeout=10)
            where = f"jobboard 'b' at http://127.0.0.1:{proxy.port}/taskflow/jobs/"
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert warnings and all(where in message for message in warnings), warnings
            proxy.unstall()
            direct.post("later")
            wait_until(lambda: heard[2:] == ["later"], timeout=10)
            assert heard == ["before", "after", "later"]
    finally:
        proxy.close()


def test_the_check_on_a_silent_watch_counts_the_job_keys_written_after_its_revision(
    conf: dict[str, Any],
) -> None:
    """What tells a dead stream from a quiet board: job keys written after the stream's last revision."""
    with backends.backend("b", conf) as board:
        job = board.post("j")
        _, revision = board._range(board.root_path + "/", prefix=True)  # type: ignore[attr-defined]
        assert board._changed_since(revision) == 0  # type: ignore[attr-defined]
        board.post("k")  # its posting (the counter is not a job key)
        board.claim(job, "a")  # its lock, attempts and last claim time
        assert board._changed_since(revision) == 4  # type: ignore[attr-defined]


def test_a_watch_cut_off_with_every_pooled_connection_lists_the_jobs_again(
    conf: dict[str, Any], etcd_server: services.EtcdServer
) -> None:
    """Every connection to etcd goes silent, the pooled ones too, and the client has no timeout.

    The check on etcd and the listing after it are bounded by the watch's
    deadline, so the watch thread is never stuck on a dead connection; the
    first fresh connection lists the jobs and announces what was posted.
    """
    proxy = services.LossyProxy(etcd_server.port)
    try:
        with (
            backends.backend("direct", conf) as direct,
            backends.backend("b", {**conf, "port": proxy.port, "watch_timeout": 0.3}) as board,
        ):
            assert board._client.timeout is None  # type: ignore[attr-defined]
            heard: list[str] = []
            board.notifier.register(base.POSTED, lambda _event, details: heard.append(details["job"].name))  # type: ignore[attr-defined]
            wait_until(lambda: board._watch_stream is not None, timeout=10)  # type: ignore[attr-defined]
            assert proxy.stall() >= 1
            direct.post("meanwhile")
            wait_until(lambda: heard == ["meanwhile"], timeout=20)
    finally:
        proxy.close()


@pytest.mark.parametrize("value", [0, -1, "soon", float("nan"), float("inf")])
def test_a_watch_timeout_that_is_no_positive_number_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match=f"etcd jobboard 'b': option 'watch_timeout' .* not {value!r}"):
        backends.fetch("b", {"board": "etcd", "watch_timeout": value})


def test_a_quiet_watch_kept_alive_by_etcd_progress_notifications_is_not_reopened(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An etcd that tells quiet watches its revision often enough keeps one stream open, no reopening.

    The board asks for progress notifications; their bytes, counted by the
    relay, pass several ``watch_timeout`` without the stream being given up.
    """
    import logging

    services.require_module("etcd3gw", "etcd3gw")
    caplog.set_level(logging.DEBUG, logger="flowkit.jobs.backends.impl_etcd")
    server = services.EtcdServer(progress_notify_interval="100ms")
    server.start()
    proxy = services.LossyProxy(server.port)
    try:
        conf = {"board": "etcd", "host": server.host, "port": proxy.port, "watch_timeout": 1.0}
        with backends.backend("b", conf) as board:
            board.notifier.register(base.POSTED, lambda _event, _details: None)  # type: ignore[attr-defined]
            stream = wait_until(lambda: board._watch_stream, timeout=10)  # type: ignore[attr-defined]
            start = proxy.bytes_down
            # A notification is about 130 bytes: 30 of them span several watch_timeouts.
            wait_until(lambda: proxy.bytes_down - start > 30 * 100, timeout=30)
            assert board._watch_stream is stream  # type: ignore[attr-defined]
            assert [r.getMessage() for r in caplog.records if "heard nothing" in r.getMessage()] == []
    finally:
        proxy.close()
        server.close()
