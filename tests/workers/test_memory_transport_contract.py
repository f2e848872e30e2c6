"""The transport contract: every command the engine and workers send, on a real Redis and in memory.

The worker-based engine and the Python worker talk to their transport with the
Redis commands they need (streams with a consumer group, hashes, sorted sets,
strings with expiry). The in-process memory transport answers the same
commands; each test here runs once against the session's real Redis server and
once against a fresh memory broker, so the two agree on what the driver and
the worker rely on: the replies' shapes (bytes everywhere), delivery to a group,
the pending entries and their take-over, expiry, and pipelines.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowkit.engines.worker_based import _transport, protocol

pytestmark = pytest.mark.timeout(30)

KINDS = ("redis", "memory")


@pytest.fixture(params=KINDS)
def client(request: pytest.FixtureRequest) -> Iterator[_transport.Client]:
    """A client of a real Redis (emptied) or of a memory broker of its own."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_flushed_url")
    else:
        url = f"memory://contract-{uuid.uuid4().hex}"
    connection = _transport.connect(url)
    yield connection
    connection.close()


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of a one-stream XREAD/XREADGROUP reply (empty when it timed out)."""
    if not reply:
        return []
    assert len(reply) == 1
    name, items = reply[0]
    assert name == b"s"
    return [(entry_id, fields) for entry_id, fields in items]


def test_xadd_gives_increasing_byte_ids_and_xread_reads_after_an_id(client: _transport.Client) -> None:
    first = client.xadd("s", {"body": b"one", "n": 1})
    second = client.xadd("s", {"body": "two"})
    assert isinstance(first, bytes) and isinstance(second, bytes)
    assert tuple(map(int, first.split(b"-"))) < tuple(map(int, second.split(b"-")))

    assert _entries(client.xread({"s": "0-0"}, count=10)) == [
        (first, {b"body": b"one", b"n": b"1"}),
        (second, {b"body": b"two"}),
    ]
    assert _entries(client.xread({"s": first}, count=10)) == [(second, {b"body": b"two"})]
    assert _entries(client.xread({"s": first}, count=1, block=10)) == [(second, {b"body": b"two"})]


def test_xread_of_nothing_new_returns_an_empty_reply_after_blocking(client: _transport.Client) -> None:
    last = client.xadd("s", {"x": b"1"})
    assert not client.xread({"s": last}, count=10, block=20)
    assert not client.xread({"missing": "0-0"}, count=10)


def test_xrevrange_gives_the_newest_entry_and_nothing_for_a_missing_stream(client: _transport.Client) -> None:
    # The engine notes where the arrivals stream ends this way before its first scan.
    assert client.xrevrange("s", "+", "-", count=1) == []
    client.xadd("s", {"n": 1})
    last = client.xadd("s", {"n": 2})
    assert client.xrevrange("s", "+", "-", count=1) == [(last, {b"n": b"2"})]
    assert [entry_id for entry_id, _ in client.xrevrange("s", "+", "-")][0] == last


def test_one_blocking_xread_returns_the_entries_of_the_stream_that_got_one(client: _transport.Client) -> None:
    # The engine's reply reader waits on its replies and on the arrivals stream at once.
    first = client.xadd("a", {"n": 1})
    reply = client.xread({"a": first, "b": "0-0"}, count=10, block=10)
    assert not reply
    added = client.xadd("b", {"topic": "t"})
    reply = client.xread({"a": first, "b": "0-0"}, count=10, block=10)
    assert [(name, [entry_id for entry_id, _ in items]) for name, items in reply] == [(b"b", [added])]


def test_xdel_xtrim_and_maxlen_drop_entries(client: _transport.Client) -> None:
    ids = [client.xadd("s", {"n": i}) for i in range(5)]
    assert client.xdel("s", ids[0], b"0-1") == 1
    assert client.xtrim("s", minid=ids[2], approximate=False) == 1
    assert [entry_id for entry_id, _ in _entries(client.xread({"s": "0-0"}))] == ids[2:]
    client.xadd("s", {"n": 5}, maxlen=2, approximate=False)
    assert [fields[b"n"] for _, fields in _entries(client.xread({"s": "0-0"}))] == [b"4", b"5"]


def test_ensure_group_creates_the_stream_once_and_delivers_older_entries(client: _transport.Client) -> None:
    client.xadd("s", {"body": b"early"})
    _transport.ensure_group(client, "s")
    _transport.ensure_group(client, "s")
    _transport.ensure_group(client, "fresh")
    assert client.exists("fresh") == 1
    entries = _entries(client.xreadgroup(protocol.GROUP, "c1", {"s": ">"}, count=10))
    assert [fields for _, fields in entries] == [{b"body": b"early"}]


def test_reading_a_group_that_does_not_exist_is_a_response_error(client: _transport.Client) -> None:
    client.xadd("s", {"x": b"1"})
    with pytest.raises(_transport.refusals(), match="NOGROUP"):
        client.xreadgroup(protocol.GROUP, "c1", {"s": ">"}, count=1)


def test_a_group_delivers_each_entry_once_and_keeps_it_pending_until_acked(client: _transport.Client) -> None:
    _transport.ensure_group(client, "s")
    ids = [client.xadd("s", {"n": i}) for i in range(3)]
    got_1 = _entries(client.xreadgroup(protocol.GROUP, "c1", {"s": ">"}, count=2))
    got_2 = _entries(client.xreadgroup(protocol.GROUP, "c2", {"s": ">"}, count=10, block=10))
    assert [i for i, _ in got_1] == ids[:2] and [i for i, _ in got_2] == ids[2:]
    assert not client.xreadgroup(protocol.GROUP, "c1", {"s": ">"}, count=10, block=10)

    pending = client.xpending_range("s", protocol.GROUP, min="-", max="+", count=10, consumername="c1")
    assert [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pending] == [
        (ids[0], b"c1", 1),
        (ids[1], b"c1", 1),
    ]
    assert all(isinstance(p["time_since_delivered"], int) for p in pending)
    assert client.xack("s", protocol.GROUP, ids[0], ids[2]) == 2
    left = client.xpending_range("s", protocol.GROUP, min="-", max="+", count=10)
    assert [p["message_id"] for p in left] == [ids[1]]


def test_xautoclaim_takes_over_idle_entries_and_counts_the_delivery(client: _transport.Client) -> None:
    _transport.ensure_group(client, "s")
    ids = [client.xadd("s", {"n": i}) for i in range(3)]
    client.xreadgroup(protocol.GROUP, "dead", {"s": ">"}, count=10)
    client.xdel("s", ids[1])

    too_fresh = client.xautoclaim("s", protocol.GROUP, "live", 60_000, start_id="0-0", count=10)
    assert too_fresh[1:] == [[], [ids[1]]]  # a deleted entry leaves the pending list when scanned
    reply = client.xautoclaim("s", protocol.GROUP, "live", 0, start_id="0-0", count=10)
    assert [entry for entry in reply[1] if entry is not None] == [
        (ids[0], {b"n": b"0"}),
        (ids[2], {b"n": b"2"}),
    ]
    assert reply[2] == []
    pending = client.xpending_range("s", protocol.GROUP, min=ids[0], max=ids[-1], count=10)
    assert [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pending] == [
        (ids[0], b"live", 2),
        (ids[2], b"live", 2),
    ]


def test_xclaim_justid_moves_ownership_without_counting_a_delivery(client: _transport.Client) -> None:
    _transport.ensure_group(client, "s")
    entry_id = client.xadd("s", {"n": 1})
    client.xreadgroup(protocol.GROUP, "c1", {"s": ">"}, count=1)
    assert client.xclaim("s", protocol.GROUP, "c2", 0, [entry_id], justid=True) == [entry_id]
    (pending,) = client.xpending_range("s", protocol.GROUP, min="-", max="+", count=10)
    assert (pending["consumer"], pending["times_delivered"]) == (b"c2", 1)


def test_strings_set_nx_once_and_hashes_and_sorted_sets_answer_in_bytes(client: _transport.Client) -> None:
    assert client.set("k", "é", nx=True, px=60_000)
    assert client.set("k", "other", nx=True, px=60_000) is None
    assert client.get("k") == "é".encode()
    assert client.get("nothing") is None

    assert client.hset("h", mapping={"body": b"x", "sig": "y"}) == 2
    assert client.hgetall("h") == {b"body": b"x", b"sig": b"y"}
    assert client.hgetall("no-hash") == {}

    assert client.zadd("z", {"b": 20, "a": 20, "c": 10}) == 3
    assert client.zrange("z", 0, -1) == [b"c", b"a", b"b"]
    assert client.zremrangebyscore("z", "-inf", "(20") == 1
    assert client.zrem("z", "a", "nope") == 1
    assert client.zrange("z", 0, -1) == [b"b"]
    assert client.delete("k", "h", "z", "gone") == 3


def test_zadd_gt_only_raises_an_existing_score_and_adds_new_members(client: _transport.Client) -> None:
    client.zadd("z", {"a": 20})

    assert client.zadd("z", {"a": 10, "b": 5}, gt=True) == 1
    assert client.zrange("z", 0, -1) == [b"b", b"a"]
    client.zadd("z", {"b": 30}, gt=True)
    assert client.zrange("z", 0, -1) == [b"a", b"b"]
    assert client.zremrangebyscore("z", "-inf", "(30") == 1


def test_a_key_with_an_expiry_goes_away(client: _transport.Client, wait_until: Callable[..., object]) -> None:
    client.hset("h", mapping={"a": b"1"})
    assert client.pexpire("h", 1)
    assert not client.pexpire("missing", 1000)
    wait_until(lambda: client.exists("h") == 0)
    assert client.hgetall("h") == {}


def test_a_pipeline_returns_every_reply_and_can_leave_errors_in_place(client: _transport.Client) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.set("str", "v")
    pipe.hset("h", mapping={"f": b"1"})
    pipe.get("str")
    assert pipe.execute() == [True, 1, b"v"]

    pipe = client.pipeline(transaction=False)
    pipe.hgetall("str")  # the wrong type
    pipe.get("str")
    wrong, value = pipe.execute(raise_on_error=False)
    assert isinstance(wrong, _transport.refusals()) and "WRONGTYPE" in str(wrong)
    assert value == b"v"


def test_live_workers_reads_the_adverts_the_worker_writes(client: _transport.Client) -> None:
    now = 1_000_000.0
    for worker_id, expires_in in (("alive", 3.0), ("gone", -1.0)):
        advert = protocol.notify_message(
            worker_id, "t", ["a.Task"], heartbeat=1.0, visibility_timeout=30.0, sent_at=now
        )
        client.hset(protocol.worker_key("ns", worker_id), mapping=protocol.encode(advert, None))  # type: ignore[arg-type]
        client.zadd(protocol.workers_key("ns", "t"), {worker_id: int((now + expires_in) * 1000)})

    adverts = _transport.live_workers(client, "ns", "t", None, now=now)

    assert list(adverts) == ["alive"]
    assert adverts["alive"]["tasks"] == ["a.Task"]
    assert client.zrange(protocol.workers_key("ns", "t"), 0, -1) == [b"alive"]
