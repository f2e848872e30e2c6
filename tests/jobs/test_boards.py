"""Board behaviour that differs by kind: claim liveness, stray documents, configuration errors."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize("kind", ["redis", "zookeeper"])
def test_claim_of_a_holder_that_went_away_is_lost(kind: str, request: pytest.FixtureRequest) -> None:
    conf = board_conf(kind, request)
    holder = backends.fetch("holder", {**conf, "claim_expiry": 1.0, "timeout": 1.0})
    other = backends.fetch("other", conf)
    holder.connect()
    other.connect()
    try:
        job = holder.post("j")
        first = holder.claim(job, "a")
        [seen] = list(other.iterjobs())
        assert seen.state == states.CLAIMED
        holder.close()  # ...and lost once it is gone (ZooKeeper: session closed; Redis: key expires)
        wait_until(lambda: seen.state == states.UNCLAIMED, timeout=5)
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
        key = holder._owner_key(job.uuid)  # type: ignore[attr-defined]
        ttls: list[int] = []

        def renewed_three_times() -> bool:
            ttls.append(int(holder._redis().pttl(key)))  # type: ignore[attr-defined]
            return sum(1 for before, after in zip(ttls, ttls[1:], strict=False) if after > before) >= 3

        # The server would drop the key 1 s after the last renewal; the holder renews it.
        wait_until(renewed_three_times, timeout=10)
        [seen] = list(other.iterjobs())
        other.check_claim(seen, claim)


def test_redis_claim_with_a_shorter_expiry_than_the_others_kept_is_renewed_at_its_own_pace(
    request: pytest.FixtureRequest,
) -> None:
    """A keeper pacing itself on a 30 s claim must not let a 1 s claim made meanwhile lapse."""
    conf = board_conf("redis", request)
    with backends.backend("h", {**conf, "claim_expiry": 30}) as holder, backends.backend("o", conf) as other:
        holder.claim(holder.post("long"), "a")
        job = holder.post("short")
        claim = holder.claim(job, "a", expiry=1.0)
        key = holder._owner_key(job.uuid)  # type: ignore[attr-defined]
        ttls: list[int] = []

        def renewed_three_times() -> bool:
            ttls.append(int(holder._redis().pttl(key)))  # type: ignore[attr-defined]
            return sum(1 for before, after in zip(ttls, ttls[1:], strict=False) if after > before) >= 3

        wait_until(renewed_three_times, timeout=10)
        [seen] = [j for j in other.iterjobs() if j.uuid == job.uuid]
        other.check_claim(seen, claim)


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
        holder._renewed_at[job.uuid] -= 15.01  # type: ignore[attr-defined]
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
    else:
        board._zk().create(f"{board.path}/job", raw, sequence=True)


@pytest.mark.parametrize("kind", ["redis", "zookeeper"])
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
    board = backends.fetch("b", {**conf, "claim_expiry": "none"})
    other = backends.fetch("o", conf)
    board.connect()
    other.connect()
    try:
        job = board.post("j")
        claim = board.claim(job, "a", expiry=5)
        claimed_at = job.last_modified
        with pytest.raises(exc.UnclaimableJob, match="claimed by 'a'"):
            other.claim(job, "b", expiry=600)  # another owner's claim changes nothing
        assert job.expires_in() <= 5
        with pytest.raises(exc.UnclaimableJob, match="claimed by 'a'"):
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
