"""Board behaviour that differs by kind: claim liveness, stray documents, configuration errors."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.jobs import backends, base
from flowkit.jobs.backends.impl_memory import MemoryJobBoard
from flowkit.types.entity import Entity
from tests import services
from tests.conftest import wait_until
from tests.jobs.conftest import board_conf
from tests.manual_clock import ManualClock


@pytest.mark.parametrize("expiry", [float("nan"), 0, -1, float("inf")])
def test_memory_board_refuses_a_claim_expiry_option_every_claim_would_refuse(expiry: float) -> None:
    # A NaN default made every claim last for ever (every comparison with it is False).
    with pytest.raises(ValueError, match=rf"'m'.*{expiry!r}"):
        MemoryJobBoard("m", {"claim_expiry": expiry})


def test_memory_renew_takes_what_redis_extend_expiry_takes() -> None:
    """No time left ends the claim now (TaskFlow's extend_expiry); NaN, which never expired, is refused."""
    board = MemoryJobBoard("m", clock=ManualClock())
    job = board.post("j")
    claim = board.claim(job, "a")
    with pytest.raises(ValueError, match=rf"job {job.uuid}.*nan"):
        board.renew(job, claim, float("nan"))
    assert board.current_claim(job) == claim
    assert board.renew(job, claim, 0)
    assert board.current_claim(job) is None and job.state == states.UNCLAIMED


def test_memory_claim_expires_on_the_boards_clock() -> None:
    clock = ManualClock()
    board = MemoryJobBoard("m", {"claim_expiry": 5}, clock=clock)
    job = board.post("j")
    claim = board.claim(job, "a")
    clock.now += 4.9
    assert board.renew(job, claim, 5)
    clock.now += 4.9
    assert job.state == states.CLAIMED
    clock.now += 0.2
    assert job.state == states.UNCLAIMED
    assert not board.renew(job, claim, 5)
    board.claim(job, "b")
    assert [(a.owner, a.end) for a in job.attempts] == [
        ("a", base.AttemptEnd.LOST),
        ("b", base.AttemptEnd.OPEN),
    ]


def renewed(board: Any, *keys: str, times: int = 1) -> Callable[[], bool]:
    """A ``wait_until`` condition: each Redis key's TTL, read at every call, went up ``times`` times.

    Only a renewal raises a TTL (the server only counts it down), so this watches the
    board's renewing thread from outside, whatever its pace.
    """
    ttls: dict[str, list[int]] = {key: [] for key in keys}

    def check() -> bool:
        for key, seen in ttls.items():
            seen.append(int(board._redis().pttl(key)))
        return all(
            sum(1 for a, b in zip(seen, seen[1:], strict=False) if b > a) >= times for seen in ttls.values()
        )

    return check


@pytest.mark.parametrize("kind", ["redis", "zookeeper", "etcd"])
def test_claim_of_a_holder_that_went_away_is_lost(kind: str, request: pytest.FixtureRequest) -> None:
    conf = board_conf(kind, request)
    # etcd: the claim's lease (TaskFlow's ``ttl``) runs out, holder or not.
    extra = {"ttl": 1} if kind == "etcd" else {"claim_expiry": 1.0, "timeout": 1.0}
    holder = backends.fetch("holder", {**conf, **extra})
    other = backends.fetch("other", conf)
    holder.connect()
    other.connect()
    try:
        job = holder.post("j")
        first = holder.claim(job, "a")
        [seen] = list(other.iterjobs())
        assert seen.state == states.CLAIMED
        holder.close()  # ...and lost once it is gone (ZooKeeper: session closed; Redis: key expires)
        wait_until(lambda: seen.state == states.UNCLAIMED, timeout=10)
        second = other.claim(seen, "b")
        assert second.token > first.token
        assert [a.end for a in other.attempts(seen)] == [base.AttemptEnd.LOST, base.AttemptEnd.OPEN]
    finally:
        holder.close()
        other.close()


def test_redis_claim_is_kept_alive_past_its_expiry(request: pytest.FixtureRequest) -> None:
    conf = board_conf("redis", request)
    # Renewed every third of the expiry: a 1 s expiry leaves the renewing thread 2/3 s of
    # slack on a busy machine (0.3 s left it 0.2 s, and a late renewal loses the claim).
    with backends.backend("h", {**conf, "claim_expiry": 1.0}) as holder, backends.backend("o", conf) as other:
        job = holder.post("j")
        claim = holder.claim(job, "a")
        # The server would drop the key 1 s after the last renewal; the holder renews it.
        wait_until(renewed(holder, holder._owner_key(job.uuid), times=3), timeout=10)  # type: ignore[attr-defined]
        [seen] = list(other.iterjobs())
        other.check_claim(seen, claim)


def test_redis_claim_with_a_shorter_expiry_than_the_others_kept_is_renewed_at_its_own_pace(
    request: pytest.FixtureRequest,
) -> None:
    """A keeper pacing itself on a 30 s claim must not let a 1 s claim made meanwhile lapse."""
    conf = board_conf("redis", request)
    keeping = {**conf, "claim_expiry": 30, "renew_given_expiry": True}  # expiry= claims renewed too
    with backends.backend("h", keeping) as holder, backends.backend("o", conf) as other:
        holder.claim(holder.post("long"), "a")
        job = holder.post("short")
        claim = holder.claim(job, "a", expiry=1.0)
        wait_until(renewed(holder, holder._owner_key(job.uuid), times=3), timeout=10)  # type: ignore[attr-defined]
        [seen] = [j for j in other.iterjobs() if j.uuid == job.uuid]
        other.check_claim(seen, claim)


def test_redis_claim_with_an_expiry_lapses_then_unless_extended_as_taskflows(
    request: pytest.FixtureRequest,
) -> None:
    """TaskFlow's claim(expiry=N): the claim ends N seconds after it was made, its holder alive or not."""
    conf = board_conf("redis", request)
    with backends.backend("h", {**conf, "claim_expiry": 30}) as holder, backends.backend("o", conf) as other:
        job = holder.post("j")
        claim = holder.claim(job, "a", expiry=0.5)
        assert not holder.holds_locally(job, claim)  # not kept: the board cannot vouch for it
        [seen] = list(other.iterjobs())
        assert seen.state == states.CLAIMED
        wait_until(lambda: seen.state == states.UNCLAIMED, timeout=10)
        assert [j.uuid for j in other.iterjobs(only_unclaimed=True)] == [job.uuid]
        # Claimed again with one: extend_expiry keeps it going, as a TaskFlow holder does.
        again = other.claim(seen, "b", expiry=0.5)
        assert seen.extend_expiry(600)
        assert seen.expires_in() > 60
        assert other.current_claim(seen) == again


def test_redis_claims_without_an_expiry_and_claim_first_claims_are_kept_alive(
    request: pytest.FixtureRequest,
) -> None:
    """Only claim(expiry=N) lapses as TaskFlow's: the board's own and the conductors' claims are renewed."""
    conf = board_conf("redis", request)
    with backends.backend("h", {**conf, "claim_expiry": 1.0}) as holder:
        by_default = holder.post("default")
        holder.claim(by_default, "a")
        first = holder.claim_first([holder.post("first")], "a", expiry=1.0)
        assert first is not None
        keys = [holder._owner_key(job.uuid) for job in (by_default, first.job)]  # type: ignore[attr-defined]
        wait_until(renewed(holder, *keys), timeout=10)


def test_redis_renew_given_expiry_must_be_a_switch(request: pytest.FixtureRequest) -> None:
    conf = board_conf("redis", request)
    with pytest.raises(ValueError, match="'renew_given_expiry' must be true or false"):
        backends.fetch("b", {**conf, "renew_given_expiry": "sometimes"})


def test_redis_board_vouches_locally_only_for_claims_it_recently_made_or_renewed(
    request: pytest.FixtureRequest,
) -> None:
    conf = board_conf("redis", request)
    with backends.backend("h", {**conf, "claim_expiry": 30}) as holder, backends.backend("o", conf) as other:
        job = holder.post("j")
        claim = holder.claim(job, "a")
        assert holder.holds_locally(job, claim)
        [seen] = list(other.iterjobs())
        assert not other.holds_locally(seen, claim), "a board vouched for a claim it never made"
        assert not holder.holds_locally(job, base.Claim("a", claim.token + 1))
        # Half the expiry after the claim was sent, the board asks again.
        holder._kept[job.uuid].renewed_at -= 15.01  # type: ignore[attr-defined]
        assert not holder.holds_locally(job, claim)
        holder.abandon(job, "a", claim=claim)
        assert not holder.holds_locally(job, claim)
    memory = MemoryJobBoard("m")
    job = memory.post("j")
    assert not memory.holds_locally(job, memory.claim(job, "a")), "the memory board asks: it costs nothing"


def test_zookeeper_board_vouches_locally_only_within_its_session_and_lease(
    request: pytest.FixtureRequest,
) -> None:
    services.require_module("kazoo", "kazoo")
    conf = board_conf("zookeeper", request)
    with backends.backend("h", conf) as holder, backends.backend("o", conf) as other:
        job = holder.post("j")
        claim = holder.claim(job, "a")
        assert holder.holds_locally(job, claim)
        [seen] = list(other.iterjobs())
        assert not other.holds_locally(seen, claim), "a board vouched for a claim it never made"
        assert not holder.holds_locally(job, base.Claim("a", claim.token + 1))
        lease = holder._leases[job.uuid]  # type: ignore[attr-defined]
        holder._leases[job.uuid] = type(lease)(lease.token, lease.session, lease.sent_at - 1.01)  # type: ignore[attr-defined]
        assert not holder.holds_locally(job, claim), "a confirmation older than the lease was trusted"
        holder.check_claim(job, claim)  # asking the server renews the lease
        assert holder.holds_locally(job, claim)
        holder._leases[job.uuid] = type(lease)(lease.token, ("another", b"session"), lease.sent_at)  # type: ignore[attr-defined]
        assert not holder.holds_locally(job, claim), "a claim of another session was trusted"
        holder.consume(job, "a", claim=claim)
        assert not holder.holds_locally(job, claim)


class _LostReplies:
    """A real started KazooClient whose next ``n`` transaction commits end in ``ConnectionLoss``.

    As when the connection drops with a transaction on its way: ``applied``,
    the server made the change and the answer was lost (the session
    surviving a reconnect, an ephemeral node made by it stands); not, the
    request was lost before the server saw it.
    """

    def __init__(self, hosts: str, n: int = 1, applied: bool = True) -> None:
        from kazoo.client import KazooClient  # type: ignore[import-untyped]

        self.client = KazooClient(hosts=hosts, timeout=10.0)
        self.client.start(timeout=30)
        self.left = n
        transaction = self.client.transaction
        replies = self

        def lossy_transaction() -> Any:
            from kazoo.exceptions import ConnectionLoss  # type: ignore[import-untyped]

            txn = transaction()
            commit = txn.commit

            def commit_then_lose_the_reply() -> Any:
                if replies.left > 0:
                    replies.left -= 1
                    if applied:
                        commit()
                    raise ConnectionLoss()
                return commit()

            txn.commit = commit_then_lose_the_reply
            return txn

        self.client.transaction = lossy_transaction

    def close(self) -> None:
        self.client.stop()
        self.client.close()


def test_zookeeper_claim_whose_reply_was_lost_is_known_to_be_held(request: pytest.FixtureRequest) -> None:
    """A claim the server made though its answer was lost is the board's, not a job stuck claimed.

    Its ephemeral lock lives as long as the claimant's session, so a
    conductor told "could not claim" would hold the job for as long as it
    runs, and nobody would ever run it.
    """
    services.require_module("kazoo", "kazoo")
    from flowkit.jobs.backends.impl_zookeeper import ZookeeperJobBoard

    conf = board_conf("zookeeper", request)
    replies = _LostReplies(conf["hosts"])
    holder = ZookeeperJobBoard("h", {"path": conf["path"]}, client=replies.client)
    other = backends.fetch("o", conf)
    try:
        holder.connect()
        other.connect()
        job = holder.post("j")
        claim = holder.claim(job, "a")
        assert replies.left == 0, "no reply was lost"
        assert holder.current_claim(job) == claim
        assert holder.holds_locally(job, claim)
        holder.abandon(job, "a", claim=claim)
        [seen] = list(other.iterjobs(only_unclaimed=True))
        assert other.claim(seen, "b").token > claim.token
    finally:
        holder.close()
        other.close()
        replies.close()


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
@pytest.mark.parametrize("action", ["abandon", "consume", "trash"])
def test_zookeeper_give_back_whose_reply_was_lost_is_done(
    action: str, applied: bool, request: pytest.FixtureRequest
) -> None:
    """A give-back whose answer was lost is done: seen done on the server, or sent again.

    Reported a failure instead, one never applied left the claim with the
    conductor's live session: the job stayed claimed, and unrun, for as long
    as the conductor ran.
    """
    services.require_module("kazoo", "kazoo")
    from flowkit.jobs.backends.impl_zookeeper import ZookeeperJobBoard

    conf = board_conf("zookeeper", request)
    replies = _LostReplies(conf["hosts"], n=0, applied=applied)
    holder = ZookeeperJobBoard("h", {"path": conf["path"]}, client=replies.client)
    try:
        holder.connect()
        job = holder.post("j")
        claim = holder.claim(job, "a")
        replies.left = 1
        getattr(holder, action)(job, "a", claim=claim)
        assert replies.left == 0, "no reply was lost"
        assert holder.current_claim(job) is None
        ends = [a.end for a in holder.attempts(job)]
        assert ends == ([base.AttemptEnd.ABANDONED] if action == "abandon" else [])
    finally:
        holder.close()
        replies.close()


@pytest.mark.parametrize("action", ["abandon", "consume", "trash"])
def test_zookeeper_stale_give_back_racing_a_takeover_leaves_the_new_claim(
    action: str, request: pytest.FixtureRequest
) -> None:
    """The old holder's give-back, sent after its claim lapsed and was taken over, changes nothing.

    Between its read of the claim and its transaction, the holder's lock goes
    (as when its session expires) and another conductor claims the job. The
    lock the transaction deletes is then the new holder's, at the same node
    version 0; what refuses it is the attempts node's version, which every
    claim moves. Safe by design: this pins it.
    """
    services.require_module("kazoo", "kazoo")
    from kazoo.client import KazooClient  # type: ignore[import-untyped]

    from flowkit.jobs.backends.impl_zookeeper import ZookeeperJobBoard

    conf = board_conf("zookeeper", request)
    client = KazooClient(hosts=conf["hosts"], timeout=10.0)
    client.start(timeout=30)
    holder = ZookeeperJobBoard("h", {"path": conf["path"]}, client=client)
    other = backends.fetch("o", conf)
    taken: list[base.Claim] = []
    transaction = client.transaction

    def taken_over_before_commit() -> Any:
        txn = transaction()
        commit = txn.commit

        def commit_after_takeover() -> Any:
            if not taken:
                client.delete(job.lock_path)  # type: ignore[attr-defined]  # as on session expiry
                [seen] = list(other.iterjobs())
                taken.append(other.claim(seen, "b"))
            return commit()

        txn.commit = commit_after_takeover
        return txn

    try:
        holder.connect()
        other.connect()
        job = holder.post("j")
        claim = holder.claim(job, "a")
        client.transaction = taken_over_before_commit
        with pytest.raises(base.ClaimLost):
            getattr(holder, action)(job, "a", claim=claim)
        assert taken, "the takeover was not forced"
        assert other.current_claim(job) == taken[0]
        assert job.state == states.CLAIMED
    finally:
        holder.close()
        other.close()
        client.stop()
        client.close()


def test_zookeeper_children_watch_runs_only_for_listeners_and_waiters(request: pytest.FixtureRequest) -> None:
    services.require_module("kazoo", "kazoo")
    conf = board_conf("zookeeper", request)
    with backends.backend("c", conf) as conductor_like, backends.backend("p", conf) as poster:
        job = poster.post("j")
        [seen] = list(conductor_like.iterjobs())
        claim = conductor_like.claim(seen, "a")
        conductor_like.consume(seen, "a", claim=claim)
        # Listing every job on every change is what the watch costs: nobody asked for it here.
        assert conductor_like._watched_client is None  # type: ignore[attr-defined]
        events: list[str] = []
        conductor_like.notifier.register(base.POSTED, lambda event_type, details: events.append(event_type))
        assert conductor_like._watched_client is not None  # type: ignore[attr-defined]
        poster.post("k")
        wait_until(lambda: events == [base.POSTED], timeout=10)
        assert job.state == states.COMPLETE
        assert [j.name for j in poster.wait(timeout=5)] == ["k"]


def test_zookeeper_listener_registered_after_a_wait_hears_of_removals(request: pytest.FixtureRequest) -> None:
    """A job first seen by wait() (no listener yet) is announced as removed to a later listener."""
    services.require_module("kazoo", "kazoo")
    conf = board_conf("zookeeper", request)
    with backends.backend("w", conf) as watcher, backends.backend("p", conf) as poster:
        job = poster.post("j")
        assert [j.name for j in watcher.wait(timeout=5)] == ["j"]
        events: list[tuple[str, str]] = []
        watcher.notifier.register(
            base.REMOVAL, lambda event_type, details: events.append((event_type, details["job"].name))
        )
        claim = poster.claim(job, "a")
        poster.consume(job, "a", claim=claim)
        wait_until(lambda: events == [(base.REMOVAL, "j")], timeout=10)


def test_zookeeper_board_not_connected_lists_no_jobs_as_taskflows(request: pytest.FixtureRequest) -> None:
    # TaskFlow's ZooKeeper board: iterjobs() of a closed board is empty and its
    # job_count 0; a fresh listing (ensure_fresh) fails. flowkit raised JobFailure.
    services.require_module("kazoo", "kazoo")
    conf = board_conf("zookeeper", request)
    board = backends.fetch("z", conf)
    assert list(board.iterjobs()) == []  # never connected
    assert board.job_count == 0
    board.connect()
    board.post("j")
    assert board.job_count == 1
    board.close()
    assert list(board.iterjobs()) == []
    assert list(board.iterjobs(only_unclaimed=True)) == []
    assert board.job_count == 0
    with pytest.raises(exc.JobFailure, match="not connected"):
        list(board.iterjobs(ensure_fresh=True))
    with backends.backend("again", conf) as again:
        assert [j.name for j in again.iterjobs()] == ["j"]


def test_zookeeper_board_registers_entities_not_plain_names(request: pytest.FixtureRequest) -> None:
    services.require_module("kazoo", "kazoo")
    with backends.backend("z", board_conf("zookeeper", request)) as board:
        with pytest.raises(TypeError, match="register_entity takes an entity .* not str 'conductor-1'"):
            board.register_entity("conductor-1")
        board.register_entity(Entity("conductor", "conductor-1", {"pid": 1}))
        # Where TaskFlow's board keeps it: .entities/conductor/<name>, next to the board's path.
        parent = board.path.rsplit("/", 1)[0]  # type: ignore[attr-defined]
        assert board.entity_path == f"{parent}/.entities"  # type: ignore[attr-defined]
        raw, _ = board._zk().get(f"{parent}/.entities/conductor/conductor-1")  # type: ignore[attr-defined]
        assert json.loads(raw) == {"kind": "conductor", "name": "conductor-1", "metadata": {"pid": 1}}
        board.register_entity(Entity("worker", "w-1", {}))  # TaskFlow's raises NotImplementedError
        assert board._zk().exists(f"{parent}/.entities/worker/w-1")  # type: ignore[attr-defined]


def test_zookeeper_board_takes_taskflows_arguments_and_node_names(request: pytest.FixtureRequest) -> None:
    """TaskFlow's order ``(name, conf, client, persistence, emit_notifications)`` and public names."""
    services.require_module("kazoo", "kazoo")
    from kazoo.client import KazooClient

    from flowkit.jobs.backends.impl_zookeeper import ZookeeperJob, ZookeeperJobBoard
    from flowkit.persistence import backends as persistence_backends

    conf = board_conf("zookeeper", request)
    path = conf["path"]
    persistence = persistence_backends.fetch("memory://")
    with pytest.raises(TypeError, match=r"persistence backend .* was given as the client.*persistence="):
        ZookeeperJobBoard("z", conf, persistence)
    with pytest.raises(ValueError, match="'z': the path must name a node below the root, not '/'"):
        ZookeeperJobBoard("z", {"path": "/"})
    client = KazooClient(hosts=conf["hosts"], timeout=10.0)
    board = ZookeeperJobBoard("z", {"path": path}, client, persistence)
    try:
        assert not board.connected and board.job_count == 0
        board.connect(timeout=10.0)
        assert board.connected
        assert (board.path, board.trash_path, board.entity_path) == (
            path,
            f"{path}/.trash",
            f"{path.rsplit('/', 1)[0]}/.entities",
        )
        assert (board.LOCK_POSTFIX, board.TRASH_FOLDER, board.ENTITY_FOLDER, board.JOB_PREFIX) == (
            ".lock",
            ".trash",
            ".entities",
            "job",
        )
        assert board.DEFAULT_PATH == "/flowkit/jobs" and board.MIN_ZK_VERSION == (3, 4, 0)
        job: Any = board.post("j")
        assert isinstance(job, ZookeeperJob)  # TaskFlow's class name
        node = job.path.rsplit("/", 1)[1]
        assert (job.root, node, job.lock_path) == (f"{path}/", f"job{job.sequence:010d}", job.path + ".lock")
        assert board.job_count == 1
        assert client.exists(job.path) and not client.exists(job.lock_path)
        board.claim(job, "a")
        assert json.loads(client.get(job.lock_path)[0])["owner"] == "a"
        board.trash(job, "a")
        assert client.exists(f"{board.trash_path}/{node}")
    finally:
        board.close()
    assert client.connected  # a client handed in is the caller's to stop
    client.stop()
    client.close()


def test_zookeeper_board_without_notifications_sends_none(request: pytest.FixtureRequest) -> None:
    """``emit_notifications=False`` (TaskFlow's argument): listeners hear nothing, the board works."""
    services.require_module("kazoo", "kazoo")
    conf = board_conf("zookeeper", request)
    heard: dict[str, list[str]] = {"quiet": [], "loud": []}
    with (
        backends.backend("quiet", conf, emit_notifications=False) as quiet,
        backends.backend("loud", conf) as loud,
    ):
        for name, board in (("quiet", quiet), ("loud", loud)):
            board.notifier.register(  # type: ignore[attr-defined]
                base.POSTED, lambda _event, details, name=name: heard[name].append(details["job"].uuid)
            )
        job = loud.post("j")
        node = job.path.rsplit("/", 1)[1]  # type: ignore[attr-defined]
        wait_until(lambda: heard["loud"] == [job.uuid], 10)
        wait_until(lambda: node in quiet._known, 10)  # type: ignore[attr-defined]  # its watch saw the job
        assert heard["quiet"] == []
        assert [j.uuid for j in quiet.iterjobs()] == [job.uuid]


def test_redis_board_lists_an_entity_while_connected_with_an_expiry(request: pytest.FixtureRequest) -> None:
    """Renewed while the board is connected, deleted by close(), gone on its own if the holder died."""
    services.require_module("redis", "redis")
    import redis

    conf = board_conf("redis", request)
    client = redis.Redis(host=conf["host"], port=conf["port"])
    key = f"{conf['namespace']}:entity:conductor-1"
    board = backends.fetch("b", conf)
    try:
        board.connect()
        board.ENTITY_EXPIRY = 0.3  # type: ignore[attr-defined]
        board.register_entity(Entity("conductor", "conductor-1", {"pid": 1}))
        record = json.loads(client.get(key))
        assert (record["kind"], record["name"], record["metadata"]) == (
            "conductor",
            "conductor-1",
            {"pid": 1},
        )
        assert 0 < client.pttl(key) <= 300  # expires unless renewed
        # Renewed in the background: its time to live goes up again, and it stays listed.
        seen = [client.pttl(key)]

        def renewed() -> bool:
            left = client.pttl(key)
            went_up, seen[0] = left > seen[0], left
            return went_up

        wait_until(renewed, 5)
        assert client.exists(key)
        board.close()
        assert not client.exists(key)
    finally:
        board.close()
        client.close()


def test_redis_register_entity_never_fails_and_writes_once_redis_answers(
    request: pytest.FixtureRequest,
) -> None:
    """TaskFlow's Redis board registers nothing, so it cannot fail: flowkit's logs and retries."""
    services.require_module("redis", "redis")
    import redis

    conf = board_conf("redis", request)
    server: services.RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis(host=conf["host"], port=conf["port"])
    key = f"{conf['namespace']}:entity:c"
    board = backends.fetch("b", conf)
    try:
        board.register_entity(Entity("conductor", "c", {}))  # not connected yet: written by connect()
        assert not client.exists(key)
        board.connect()
        assert client.exists(key)
        board.ENTITY_EXPIRY = 0.3  # type: ignore[attr-defined]
        server.stop()
        try:
            board.register_entity(Entity("conductor", "c2", {}))  # Redis down: no error
        finally:
            server.start()
        # Written again by the board once Redis is back (the restart emptied it).
        wait_until(lambda: client.exists(key) and client.exists(f"{conf['namespace']}:entity:c2"), 10)
    finally:
        board.close()
        client.close()


def _write_stray_document(kind: str, board: Any, raw: bytes) -> None:
    if kind == "redis":
        board._redis().hset(board._listings, "not-a-job", raw)
    elif kind == "etcd":
        board._etcd().put(f"{board.root_path}/job999.data", raw)
    else:
        board._zk().create(f"{board.path}/job", raw, sequence=True)


@pytest.mark.parametrize("kind", ["redis", "zookeeper", "etcd"])
@pytest.mark.parametrize(
    "raw", [b"\x80 not json", b"[1, 2]", json.dumps({"uuid": "u", "name": "n"}).encode()]
)
def test_malformed_job_document_is_set_aside(kind: str, raw: bytes, request: pytest.FixtureRequest) -> None:
    conf = board_conf(kind, request)
    with backends.backend("b", conf) as board:
        good = board.post("good")
        _write_stray_document(kind, board, raw)
        assert [j.uuid for j in board.iterjobs()] == [good.uuid]
        [aside] = board.trashed()
        assert "job document" in aside["reason"] and aside["raw"] == raw.decode("utf-8", "replace")
        assert board.job_count == 1


def test_unknown_board_kind_names_the_known_ones() -> None:
    with pytest.raises(exc.NotFound, match="'carrier-pigeon'.*memory, redis"):
        backends.fetch("b", {"board": "carrier-pigeon"})
    with pytest.raises(exc.NotFound, match="no 'board' kind"):
        backends.fetch("b", {"host": "x"})


def test_unreachable_redis_board_names_the_masked_url() -> None:
    port = services.free_port()
    board = backends.fetch("b", f"redis://:hunter2@127.0.0.1:{port}/0")
    with pytest.raises(exc.JobFailure) as failure:
        board.connect()
    message = str(failure.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in message and "hunter2" not in message
    # redis-py's words end the message and are not said again on the cause's line.
    assert message.count("Connection refused") == 1, message


def test_a_frozen_redis_fails_a_board_call_within_its_socket_timeout(own_redis: services.RedisServer) -> None:
    # A frozen server keeps the connection open and never answers: the board's
    # socket timeout (10 s by default, 0.5 s here) bounds the wait, and the error names the board.
    services.require_module("redis", "redis")
    board = backends.fetch("b", {"board": "redis", "url": own_redis.url, "socket_timeout": 0.5})
    board.connect()
    try:
        own_redis.freeze()
        began = time.monotonic()
        with pytest.raises(exc.JobFailure, match=f"{own_redis.url}: could not post job 'j'"):
            board.post("j", details={})
        assert time.monotonic() - began < 5.0
    finally:
        own_redis.thaw()
        board.close()


def test_unreachable_zookeeper_board_names_its_address() -> None:
    services.require_module("kazoo", "kazoo")
    port = services.free_port()
    conf = {"board": "zookeeper", "hosts": f"127.0.0.1:{port}", "timeout": 0.5, "connect_timeout": 0.5}
    board = backends.fetch("b", conf)
    with pytest.raises(exc.JobFailure, match=f"zookeeper://127.0.0.1:{port}/flowkit/jobs"):
        board.connect()


def test_boards_are_found_by_url() -> None:
    board = backends.fetch("b", "zookeeper://h1:2181,h2:2181/my/jobs")
    assert board.where == "zookeeper://h1:2181,h2:2181/my/jobs"  # type: ignore[attr-defined]
    assert type(backends.fetch("b", "memory://")).__name__ == "MemoryJobBoard"


def test_a_redis_board_without_host_names_the_server_redis_py_connects_to() -> None:
    """redis-py connects to ``localhost`` when no host is given: the board's messages say so."""
    services.require_module("redis", "redis")
    import redis

    board = backends.fetch("b", {"board": "redis"})
    default_host = redis.Redis().connection_pool.connection_kwargs["host"]
    assert board.where == f"redis://{default_host}:6379"  # type: ignore[attr-defined]
    assert board.url == f"redis://{default_host}:6379/0?namespace=flowkit"


def test_redis_options_given_as_text_are_converted(request: pytest.FixtureRequest) -> None:
    """As a configuration file gives them: ``"false"`` turns TLS off rather than on."""
    services.require_module("redis", "redis")
    conf = board_conf("redis", request)
    text = {
        "port": str(conf["port"]),
        "db": "0",
        "ssl": "false",
        "socket_keepalive": "no",
        "retry_on_timeout": "true",
        "health_check_interval": "30",
        "socket_connect_timeout": "2",
        "claim_expiry": "5",
    }
    board = backends.fetch("b", {**conf, **text})
    board.connect()
    try:
        job = board.post("j")
        assert [j.uuid for j in board.iterjobs()] == [job.uuid]
    finally:
        board.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("port", "six"),
        ("db", "zero"),
        ("socket_timeout", "slow"),
        ("ssl", "maybe"),
        ("health_check_interval", "often"),
        ("claim_expiry", "soon"),
        ("claim_expiry", "-5"),
        ("sentinel_fallbacks", ["nohost"]),
    ],
)
def test_redis_option_that_does_not_convert_is_named_when_the_board_is_made(option: str, value: Any) -> None:
    conf = {"board": "redis://:hunter2@127.0.0.1:6379/0", option: value}
    with pytest.raises(ValueError, match=f"option '{option}' must be") as failure:
        backends.fetch("b", conf)
    message = str(failure.value)
    assert "redis://:***@127.0.0.1:6379/0" in message and "hunter2" not in message


def test_redis_board_on_a_unix_socket_names_the_socket(tmp_path: Any) -> None:
    services.require_module("redis", "redis")
    path = tmp_path / "no-redis.sock"
    board = backends.fetch("b", {"board": "redis", "unix_socket_path": str(path)})
    with pytest.raises(exc.JobFailure, match=f"unix://{path}.*No such file"):
        board.connect()


def test_redis_job_reports_and_extends_its_claims_expiry_as_taskflows(request: pytest.FixtureRequest) -> None:
    services.require_module("redis", "redis")
    from flowkit.jobs.backends.impl_redis import RedisJob, UnknownExpire

    conf = board_conf("redis", request)
    board = backends.fetch("b", {**conf, "claim_expiry": "none"})
    other = backends.fetch("o", conf)
    board.connect()
    other.connect()
    try:
        job = board.post("j")
        assert isinstance(job, RedisJob)
        assert job.expires_in() == UnknownExpire.KEY_NOT_FOUND
        assert not job.extend_expiry(10)
        board.claim(job, "a")
        assert job.expires_in() == UnknownExpire.DOES_NOT_EXPIRE
        assert job.extend_expiry(10)
        assert 0 < job.expires_in() <= 10

        # A claim the board keeps alive is renewed with the extended expiry from then on.
        kept = other.post("k")
        other.claim(kept, "b")  # the board's default expiry, 30 seconds
        assert kept.extend_expiry(600)
        assert kept.expires_in() > 30
        assert other.holds_locally(kept, other.current_claim(kept))  # type: ignore[arg-type]
    finally:
        board.close()
        other.close()


@pytest.mark.parametrize("expiry", [0, -5, 0.0004])
def test_redis_extend_expiry_to_none_left_ends_the_claim_as_taskflows_and_stops_vouching_for_it(
    request: pytest.FixtureRequest, expiry: float
) -> None:
    """TaskFlow's ``extend_expiry`` of no time left (0, negative, under a millisecond) expires the claim now.

    Kept as TaskFlow does it; but the board that kept the claim alive went on
    vouching for it locally (``holds_locally``) for half its old expiry, so
    a conductor would have gone on writing on a claim that no longer existed.
    """
    services.require_module("redis", "redis")
    conf = board_conf("redis", request)
    board = backends.fetch("b", conf)
    board.connect()
    try:
        job = board.post("j")
        claim = board.claim(job, "a")  # the board's 30 seconds, kept alive by it
        assert board.holds_locally(job, claim)
        assert job.extend_expiry(expiry)  # type: ignore[attr-defined]
        assert board.current_claim(job) is None and job.state == states.UNCLAIMED
        assert not board.holds_locally(job, claim), "the board vouched for a claim that expired"
        assert board.claim(job, "b").owner == "b"
    finally:
        board.close()


@pytest.mark.parametrize("expiry", [float("nan"), float("inf"), float("-inf")])
def test_redis_extend_expiry_refuses_what_taskflow_cannot_convert_before_touching_the_claim(
    request: pytest.FixtureRequest, expiry: float
) -> None:
    """TaskFlow fails converting NaN and infinities to milliseconds; here a clear error, claim untouched."""
    services.require_module("redis", "redis")
    conf = board_conf("redis", request)
    board = backends.fetch("b", {**conf, "claim_expiry": "none"})
    board.connect()
    try:
        job = board.post("j")
        claim = board.claim(job, "a")
        with pytest.raises(ValueError, match=rf"job {job.uuid}.*{expiry!r}"):
            job.extend_expiry(expiry)  # type: ignore[attr-defined]
        assert board.current_claim(job) == claim
        assert job.expires_in() == -1  # type: ignore[attr-defined]  # still never expires
    finally:
        board.close()


class _Interleaving:
    """Runs ``then`` once, right after the first command naming ``key`` once armed.

    Handed to a real redis-py client by :func:`_hooked_redis`, it forces an
    interleaving: whatever ``then`` does to the server lands between that
    command and the board's next one (none, if the board did it all at once).
    """

    def __init__(self, then: Callable[[], None]) -> None:
        self.then = then
        self.key: str | None = None  # armed once set
        self.fired = False

    def before(self, args: tuple[Any, ...]) -> None:
        pass

    def after(self, args: tuple[Any, ...]) -> None:
        if self.fired or self.key is None:
            return
        if self.key in (arg.decode() if isinstance(arg, bytes) else str(arg) for arg in args[1:]):
            self.fired = True
            self.then()


def _hooked_redis(interleaving: Any, **options: Any) -> Any:
    """A real redis-py client (to the real server) telling ``interleaving`` of each command it sends.

    ``interleaving.before(args)`` is called before the command goes out, ``after(args)`` once answered.
    """
    import redis

    class Hooked(redis.Redis):
        def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            interleaving.before(args)
            result = super().execute_command(*args, **kwargs)
            interleaving.after(args)
            return result

    return Hooked(**options)


def test_redis_extend_expiry_never_changes_a_claim_taken_over_meanwhile(
    request: pytest.FixtureRequest,
) -> None:
    """The old holder's extend, racing a takeover, leaves the new holder's expiry alone.

    The claim lapses and another conductor claims the job right after the old
    holder's board first touches the claim key (a read of it, or a script
    doing it all at once). Extending in two steps (GET, then PEXPIRE) gave the new
    claim the old holder's expiry, here a second, so it would lapse long
    before its own board renews it, ten seconds in, and a third conductor
    could take the job while the second runs it.
    """
    services.require_module("redis", "redis")
    from flowkit.jobs.backends.impl_redis import RedisJobBoard

    conf = board_conf("redis", request)
    taker = backends.fetch("taker", conf)
    taker.connect()
    taken: list[base.Claim] = []

    def lapse_and_take_over() -> None:
        assert interleaving.key is not None
        taker._redis().delete(interleaving.key)  # type: ignore[attr-defined]  # as when it expires
        [seen] = list(taker.iterjobs())
        taken.append(taker.claim(seen, "b"))  # 30 seconds, renewed every 10

    interleaving = _Interleaving(lapse_and_take_over)
    client = _hooked_redis(interleaving, host=conf["host"], port=conf["port"])
    holder = RedisJobBoard("holder", {"namespace": conf["namespace"]}, client=client)
    holder.connect()
    try:
        job = holder.post("j")
        holder.claim(job, "a")
        interleaving.key = holder._owner_key(job.uuid)
        extended = job.extend_expiry(1)
        assert extended  # the old holder's own claim, before it lapsed
        assert interleaving.fired, "the interleaving was not forced: nothing sent on the claim"
        assert taker.current_claim(job) == taken[0]
        assert job.expires_in() > 20, "the new holder's claim got the old holder's expiry"
        assert not job.extend_expiry(1), "the old holder extended a claim it no longer holds"
        assert job.expires_in() > 20
    finally:
        holder.close()
        taker.close()
        client.close()


class _RenewalRacingExtend:
    """Right before the keeper's renewal of a claim goes out, ``extend`` runs on a thread of its own.

    The renewal is let go once ``extend`` is done, or waits for the board's
    send lock (the lock is swapped for one that says so): either way the
    extend was asked for while the renewal, with the expiry read before it,
    was on its way.
    """

    def __init__(self, extend: Callable[[], bool]) -> None:
        self.extend = extend
        self.renew_sha: str | None = None  # armed once set
        self.settled = threading.Event()
        self.results: list[bool] = []
        self.thread: threading.Thread | None = None

    def before(self, args: tuple[Any, ...]) -> None:
        if self.thread is not None or self.renew_sha is None or args[:2] != ("EVALSHA", self.renew_sha):
            return
        thread = threading.Thread(target=self._extend, daemon=True)
        thread.start()
        self.thread = thread  # once started: the test joins it when it sees it
        assert self.settled.wait(10), "the extend neither finished nor waited"

    def after(self, args: tuple[Any, ...]) -> None:
        pass

    def _extend(self) -> None:
        try:
            self.results.append(self.extend())
        finally:
            self.settled.set()

    def lock(self) -> Any:
        """A lock that, when it must be waited for, tells the renewal to go on."""
        settled, inner = self.settled, threading.Lock()

        class Announcing:
            def __enter__(self) -> None:
                if not inner.acquire(blocking=False):
                    settled.set()
                    inner.acquire()

            def __exit__(self, *exc_info: object) -> None:
                inner.release()

        return Announcing()


def test_redis_renewal_in_flight_never_undoes_an_extend_expiry(request: pytest.FixtureRequest) -> None:
    """A renewal sent with the expiry read before an extend_expiry must not land after it.

    It did: the keeper read (token, 3 s) when the claim fell due, the extend
    set 600 s and put the next renewal off to 200 s later, and then the
    renewal set 3 s, so the claim lapsed while its board vouched for it.
    """
    services.require_module("redis", "redis")
    from flowkit.jobs.backends.impl_redis import RedisJob, RedisJobBoard

    conf = board_conf("redis", request)
    race = _RenewalRacingExtend(lambda: job.extend_expiry(600))
    client = _hooked_redis(race, host=conf["host"], port=conf["port"])
    board = RedisJobBoard(
        "holder", {"namespace": conf["namespace"], "renew_given_expiry": True}, client=client
    )
    board.connect()
    board._send_lock = race.lock()  # type: ignore[assignment]
    try:
        job = board.post("j")
        assert isinstance(job, RedisJob)
        # Renewed every second: a busy machine may delay the renewal, not let the claim lapse.
        claim = board.claim(job, "a", expiry=3)
        race.renew_sha = board._scripts["renew"].sha
        wait_until(lambda: race.thread is not None, timeout=10)
        assert race.thread is not None
        race.thread.join(10)
        assert race.results == [True]
        assert job.expires_in() > 60, "the renewal in flight undid the extend"
        assert board.current_claim(job) == claim
    finally:
        board.close()
        client.close()


def test_redis_renewal_in_flight_answered_lost_keeps_renewing_a_claim_made_meanwhile(
    request: pytest.FixtureRequest,
) -> None:
    """The job given back and claimed again while a renewal of the old claim was on its way.

    The renewal's "lost" answer is about the old claim: the board used to stop
    renewing the job altogether, so the new claim lapsed a claim expiry later.
    """
    services.require_module("redis", "redis")
    from flowkit.jobs.backends.impl_redis import RedisJobBoard

    conf = board_conf("redis", request)
    claims: list[base.Claim] = []

    class GiveBackAndClaimAgain:
        renew_sha: str | None = None  # armed once set

        def before(self, args: tuple[Any, ...]) -> None:
            if claims[1:] or self.renew_sha is None or args[:2] != ("EVALSHA", self.renew_sha):
                return
            board.abandon(job, "a", claim=claims[0])
            claims.append(board.claim(job, "a", expiry=3))

        def after(self, args: tuple[Any, ...]) -> None:
            pass

    race = GiveBackAndClaimAgain()
    client = _hooked_redis(race, host=conf["host"], port=conf["port"])
    board = RedisJobBoard(
        "holder", {"namespace": conf["namespace"], "renew_given_expiry": True}, client=client
    )
    board.connect()
    try:
        job = board.post("j")
        claims.append(board.claim(job, "a", expiry=3))  # due for renewal a second later
        race.renew_sha = board._scripts["renew"].sha
        wait_until(lambda: claims[1:], timeout=10)
        first, second = claims
        assert second.token > first.token
        assert board.current_claim(job) == second
        ttls: list[float] = []

        def renewed() -> bool:
            ttls.append(float(job.expires_in()))  # type: ignore[attr-defined]
            return any(after > before for before, after in zip(ttls, ttls[1:], strict=False))

        # Renewed a second after it was made, unless the board stopped renewing the job.
        wait_until(renewed, timeout=5)
        assert board.holds_locally(job, second)
    finally:
        board.close()
        client.close()


class _LostScriptReply:
    """Loses the reply to the next run of the armed script: redis-py sends it again, as it does.

    A connection class for a real redis-py client: the script runs on the
    real server, its answer is read and dropped, and ``TimeoutError`` is
    raised, which redis-py's own retry answers by sending the command again
    on a new connection. So a script runs twice for one call.
    """

    def __init__(self) -> None:
        self.sha: str | None = None  # armed once set

    def client(self, **options: Any) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        lose = self

        class LossyConnection(redis.connection.Connection):
            sent: tuple[Any, ...] = ()

            def send_command(self, *args: Any, **kwargs: Any) -> None:
                self.sent = args
                super().send_command(*args, **kwargs)

            def read_response(self, *args: Any, **kwargs: Any) -> Any:
                response = super().read_response(*args, **kwargs)
                if lose.sha is not None and self.sent[:2] == ("EVALSHA", lose.sha):
                    lose.sha = None
                    raise redis.exceptions.TimeoutError("the reply was lost (forced by the test)")
                return response

        pool = redis.ConnectionPool(connection_class=LossyConnection, retry=Retry(NoBackoff(), 3), **options)
        return redis.Redis(connection_pool=pool)


@pytest.mark.parametrize("how", ["claim", "claim_first"])
def test_redis_claim_sent_again_after_a_lost_reply_is_the_same_claim(
    how: str, request: pytest.FixtureRequest
) -> None:
    """A claim script run twice for one call (its reply lost, redis-py sent it again) claims once.

    The second run found the job claimed by the claimant itself: ``claim``
    said it could not claim it, and ``claim_first`` went on to claim the next
    job too. Either way a claim nobody knew of was left to expire, and its
    job to wait for that, its attempt ending "lost".
    """
    services.require_module("redis", "redis")
    from flowkit.jobs.backends.impl_redis import RedisJobBoard

    conf = board_conf("redis", request)
    lose = _LostScriptReply()
    client = lose.client(host=conf["host"], port=conf["port"])
    board = RedisJobBoard("holder", {"namespace": conf["namespace"]}, client=client)
    board.connect()
    try:
        first, second = board.post("first"), board.post("second")
        lose.sha = board._scripts[how].sha
        if how == "claim":
            claimed, claim = first, board.claim(first, "a")
        else:
            got = board.claim_first([first, second], "a")
            assert got is not None
            claimed, claim = got
        assert lose.sha is None, "no reply was lost"
        assert claimed is first
        assert board.current_claim(first) == claim
        assert board.current_claim(second) is None, "a second job was claimed for nothing"
        assert board.holds_locally(first, claim)
        assert [(a.owner, a.end) for a in board.attempts(first)] == [("a", base.AttemptEnd.OPEN)]
    finally:
        board.close()
        client.close()


@pytest.mark.parametrize("action", ["abandon", "consume", "trash"])
def test_redis_give_back_sent_again_after_a_lost_reply_is_done(
    action: str, request: pytest.FixtureRequest
) -> None:
    """A release script run twice for one call (its reply lost, redis-py sent it again) is done.

    The second run found the job unclaimed, or gone: the call said the claim
    was lost (or the job not found) although it had done what was asked.
    """
    services.require_module("redis", "redis")
    from flowkit.jobs.backends.impl_redis import RedisJobBoard

    conf = board_conf("redis", request)
    lose = _LostScriptReply()
    client = lose.client(host=conf["host"], port=conf["port"])
    board = RedisJobBoard("holder", {"namespace": conf["namespace"]}, client=client)
    board.connect()
    try:
        job = board.post("j")
        claim = board.claim(job, "a")
        lose.sha = board._scripts["release"].sha
        getattr(board, action)(job, "a", claim=claim)
        assert lose.sha is None, "no reply was lost"
        assert board.current_claim(job) is None
        assert job.state == (states.UNCLAIMED if action == "abandon" else states.COMPLETE)
    finally:
        board.close()
        client.close()


def test_redis_board_has_taskflows_public_names_naming_its_own_keys(request: pytest.FixtureRequest) -> None:
    """TaskFlow's class attributes, key names and join(), true for flowkit's own layout."""
    services.require_module("redis", "redis")
    import redis

    from flowkit.jobs.backends.impl_redis import RedisJobBoard

    assert RedisJobBoard.DEFAULT_NAMESPACE == b"flowkit"
    assert RedisJobBoard.MIN_REDIS_VERSION >= (2, 6)
    assert (RedisJobBoard.NAMESPACE_SEP, RedisJobBoard.KEY_PIECE_SEP) == (b":", b":")
    assert ("port", int) in RedisJobBoard.CLIENT_CONF_TRANSFERS
    assert all(callable(convert) for _, convert in RedisJobBoard.CLIENT_CONF_TRANSFERS)
    assert backends.fetch("d", {"board": "redis"}).namespace == b"flowkit"  # type: ignore[attr-defined]

    conf = board_conf("redis", request)
    client = redis.Redis(host=conf["host"], port=conf["port"])
    # TaskFlow's positional order: name, conf, client, persistence.
    board = RedisJobBoard("b", {"namespace": conf["namespace"]}, client, None)
    try:
        board.connect()
        ns = conf["namespace"].encode()
        assert board.namespace == conf["namespace"]
        assert board.join("owner", "u1") == board.join(b"owner", b"u1") == ns + b":owner:u1"
        assert (board.listings_key, board.trash_key, board.sequence_key) == (
            ns + b":listings",
            ns + b":trash",
            ns + b":sequence",
        )
        job = board.post("j")
        assert client.hlen(board.listings_key) == board.job_count == 1
        assert client.hexists(board.listings_key, job.key)  # type: ignore[attr-defined]
        assert int(client.get(board.sequence_key)) == job.sequence  # type: ignore[attr-defined]
        assert not client.exists(job.owner_key)  # type: ignore[attr-defined]
        board.claim(job, "a")
        assert json.loads(client.get(job.owner_key))["owner"] == "a"  # type: ignore[attr-defined]
        board.trash(job, "a")
        assert client.hexists(board.trash_key, job.key)  # type: ignore[attr-defined]
    finally:
        board.close()
        client.close()


def test_redis_board_without_a_namespace_uses_unprefixed_keys(request: pytest.FixtureRequest) -> None:
    """``namespace: None`` is no namespace, as in TaskFlow, never the text ``None``."""
    services.require_module("redis", "redis")
    import redis

    conf = {**board_conf("redis", request), "namespace": None, "db": 9}
    client = redis.Redis(host=conf["host"], port=conf["port"], db=9)
    client.flushdb()  # a database of this test's own: unprefixed keys share it with nothing else
    board, other = backends.fetch("b", conf), backends.fetch("o", conf)
    try:
        board.connect()
        other.connect()
        assert board.namespace is None  # type: ignore[attr-defined]
        assert board.listings_key == b"listings"  # type: ignore[attr-defined]
        assert board.join("owner", "u1") == b"owner:u1"  # type: ignore[attr-defined]
        job = board.post("j")
        board.claim(job, "a")
        board.register_entity(Entity("conductor", "c1", {}))
        [seen] = list(other.iterjobs())
        assert (seen.uuid, other.find_owner(seen)) == (job.uuid, "a")
        keys = sorted(k.decode() for k in client.scan_iter())
        assert keys == sorted(
            ["listings", "sequence", "tokens", f"owner:{job.uuid}", f"attempts:{job.uuid}", "entity:c1"]
        )
    finally:
        board.close()
        other.close()
        client.flushdb()
        client.close()


def test_redis_board_refuses_a_server_older_than_its_min_version(request: pytest.FixtureRequest) -> None:
    """As TaskFlow's, connect() raises IncompatibleVersion (the least version set above the server's)."""
    services.require_module("redis", "redis")
    from flowkit.jobs.backends.impl_redis import RedisJobBoard

    class Demanding(RedisJobBoard):
        MIN_REDIS_VERSION = (999, 0)

    board = Demanding("b", board_conf("redis", request))
    try:
        with pytest.raises(
            exc.IncompatibleVersion, match=r"Redis 999\.0 or newer is needed, the server is \d"
        ):
            board.connect()
        assert not board.connected
    finally:
        board.close()


def test_redis_claim_expiry_under_a_millisecond_is_refused_as_taskflows(
    request: pytest.FixtureRequest,
) -> None:
    services.require_module("redis", "redis")
    conf = board_conf("redis", request)
    with pytest.raises(ValueError, match="claim_expiry"):
        backends.fetch("b", {**conf, "claim_expiry": 0.0005})
    board = backends.fetch("b", conf)
    board.connect()
    try:
        job = board.post("j")
        for expiry in (0.0005, 0.0009999, -1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="at least a millisecond"):
                board.claim(job, "a", expiry=expiry)
            with pytest.raises(ValueError, match="at least a millisecond"):
                board.claim_first([job], "a", expiry=expiry)
        assert job.state == states.UNCLAIMED
        board.claim(job, "a", expiry=0.001)  # one millisecond is the least Redis keeps
    finally:
        board.close()


def test_redis_claim_of_ones_own_job_refreshes_its_expiry_as_taskflows(
    request: pytest.FixtureRequest,
) -> None:
    """Refused all the same (UnclaimableJob), but given the expiry asked for and a later last_modified."""
    services.require_module("redis", "redis")
    conf = board_conf("redis", request)
    board = backends.fetch("b", {**conf, "claim_expiry": "none", "renew_given_expiry": "true"})
    other = backends.fetch("o", conf)
    board.connect()
    other.connect()
    try:
        job = board.post("j")
        claim = board.claim(job, "a", expiry=5)
        claimed_at = job.last_modified
        with pytest.raises(exc.UnclaimableJob, match=r"^Job \S+ already claimed by a$"):
            other.claim(job, "b", expiry=600)  # another owner's claim changes nothing
        assert job.expires_in() <= 5
        with pytest.raises(exc.UnclaimableJob, match=r"^Job \S+ already claimed by a$"):
            other.claim(job, "a", expiry=600)  # the owner's name, from any board
        assert job.expires_in() > 5
        assert job.last_modified > claimed_at
        with pytest.raises(exc.UnclaimableJob):
            board.claim(job, "a")  # no expiry asked for (claim_expiry none): left as it is
        assert job.expires_in() > 5
        # The board keeping the claim alive renews it with the new expiry from then on.
        with pytest.raises(exc.UnclaimableJob):
            board.claim(job, "a", expiry=900)
        assert job.expires_in() > 600
        assert board.current_claim(job) == claim
        assert board.holds_locally(job, claim)  # type: ignore[attr-defined]
    finally:
        board.close()
        other.close()


def test_redis_job_last_modified_is_its_last_claim_or_give_back(request: pytest.FixtureRequest) -> None:
    services.require_module("redis", "redis")
    conf = board_conf("redis", request)
    board = backends.fetch("b", conf)
    board.connect()
    try:
        job = board.post("j")
        assert job.last_modified == job.created_on
        board.claim(job, "a")
        claimed = job.last_modified
        assert claimed > job.created_on
        board.abandon(job, "a")
        abandoned = job.last_modified
        assert abandoned >= claimed
        assert [j.last_modified for j in board.iterjobs()] == [abandoned]
    finally:
        board.close()


def test_redis_board_on_a_client_handed_in_is_connected_only_between_connect_and_close(
    request: pytest.FixtureRequest,
) -> None:
    """As TaskFlow's: a conductor connects such a board, and a closed one refuses work."""
    services.require_module("redis", "redis")
    import redis

    from flowkit.conductors import backends as conductor_backends

    conf = board_conf("redis", request)
    client = redis.Redis(host=conf["host"], port=conf["port"])
    try:
        board = backends.fetch("b", {"board": "redis", "namespace": conf["namespace"]}, client=client)
        assert not board.connected
        conductor_backends.fetch("blocking", "c", board).connect()
        assert board.connected
        board.post("j")
        board.close()
        assert not board.connected
        with pytest.raises(exc.JobFailure, match="not connected"):
            board.post("k")
        assert client.ping()  # the client is its owner's to close
        board.connect()
        assert board.job_count == 1
        board.close()
    finally:
        client.close()


def test_redis_namespace_given_as_bytes_is_the_same_namespace(request: pytest.FixtureRequest) -> None:
    """TaskFlow's Redis namespaces are bytes; b"x" and "x" name one set of jobs."""
    services.require_module("redis", "redis")
    conf = board_conf("redis", request)
    text = backends.fetch("t", conf)
    raw = backends.fetch("r", {**conf, "namespace": conf["namespace"].encode()})
    text.connect()
    raw.connect()
    try:
        job = raw.post("j")
        assert [j.uuid for j in text.iterjobs()] == [job.uuid]
    finally:
        text.close()
        raw.close()


def test_zookeeper_board_on_a_started_client_is_connected_only_between_connect_and_close(
    request: pytest.FixtureRequest,
) -> None:
    """As TaskFlow's: a conductor connects such a board (its nodes made, its watch set up)."""
    services.require_module("kazoo", "kazoo")
    from kazoo.client import KazooClient  # type: ignore[import-untyped]

    from flowkit.conductors import backends as conductor_backends

    conf = board_conf("zookeeper", request)
    client = KazooClient(hosts=conf["hosts"], timeout=10.0)
    client.start(timeout=30)
    try:
        board = backends.fetch("b", conf, client=client)
        assert not board.connected
        conductor_backends.fetch("blocking", "c", board).connect()
        assert board.connected
        assert client.exists(f"{conf['path']}/.trash")
        board.close()
        assert not board.connected
        assert client.connected  # the client is its owner's to stop
        # Closed, it refuses work as a board on its own client does (it served on before).
        with pytest.raises(exc.JobFailure, match="'b'.* not connected"):
            board.post("k")
        with pytest.raises(exc.JobFailure, match="'b'.* not connected"):
            list(board.iterjobs(ensure_fresh=True))
        board.connect()
        assert board.job_count == 0
        board.close()
    finally:
        client.stop()
        client.close()


def test_redis_board_works_on_a_client_that_decodes_responses(request: pytest.FixtureRequest) -> None:
    """A client handed in may be made with ``decode_responses=True`` (answers as str, not bytes)."""
    services.require_module("redis", "redis")
    import redis

    conf = board_conf("redis", request)
    client = redis.Redis(host=conf["host"], port=conf["port"], decode_responses=True)
    board = backends.fetch("b", {"board": "redis", "namespace": conf["namespace"]}, client=client)
    board.connect()
    try:
        job = board.post("j")
        client.hset(f"{conf['namespace']}:listings", "stray", "not json")
        assert [j.uuid for j in board.iterjobs()] == [job.uuid]
        claim = board.claim(job, "a")
        board.consume(job, "a", claim=claim)
        assert ["not JSON" in t["reason"] for t in board.trashed()] == [True]  # the stray, set aside
        assert board.job_count == 0
    finally:
        board.close()
        client.close()


@pytest.mark.parametrize("kind", ["redis", "zookeeper"])
def test_entities_lists_the_conductors_registered_while_their_board_is_open(
    kind: str, request: pytest.FixtureRequest
) -> None:
    services.require_module("kazoo" if kind == "zookeeper" else "redis", kind)
    conf = board_conf(kind, request)
    with backends.backend("operator", conf) as operator:
        assert operator.entities() == []
        with backends.backend("c", conf) as conductor:
            conductor.register_entity(Entity("conductor", "c-1@host:7", {"hostname": "host", "pid": 7}))
            conductor.register_entity(Entity("worker", "w-1", {}))
            listed = wait_until(operator.entities)
            assert [(e["name"], e["metadata"]) for e in listed] == [
                ("c-1@host:7", {"hostname": "host", "pid": 7})
            ]
            assert [e["name"] for e in operator.entities("worker")] == ["w-1"]
        # Closed (a conductor that stopped): no longer listed.
        wait_until(lambda: operator.entities() == [])
    assert MemoryJobBoard("m", {}).entities() == []


@pytest.mark.parametrize("kind", ["redis", "etcd"])
def test_a_malformed_document_under_a_hostile_key_is_logged_on_one_line(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    # Whoever can write to the board names the key (a Redis listing's field, an etcd key):
    # the line saying it is set aside showed it raw, so a newline in it forged a log line.
    conf = board_conf(kind, request)
    hostile = "job9\n2026-12-06 ERROR forged line\x1b[2J"  # ASCII: etcd3gw sends keys as Latin-1
    with backends.backend("b", conf) as board:
        if kind == "redis":
            board._redis().hset(board._listings, hostile, b"[1, 2]")
        else:
            board._etcd().put(f"{board.root_path}/{hostile}.data", b"[1, 2]")
        caplog.set_level(logging.WARNING, logger="flowkit.jobs")
        assert list(board.iterjobs()) == []
        assert len(board.trashed()) == 1
    [line] = [r.getMessage() for r in caplog.records if "malformed job document" in r.getMessage()]
    assert "job9\\n2026-12-06 ERROR forged line\\x1b[2J" in line, line
    assert not any(c in line for c in "\n\x1b"), line
