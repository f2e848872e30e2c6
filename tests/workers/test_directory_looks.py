"""The engine's periodic looks for workers read only the adverts they do not know yet (real Redis).

A look (``worker_wait``'s between arrivals, the reply reader's tick) is there
to find workers that write no arrival entry. The workers it already knows
stay listed in their topic's set while they beat, and what their adverts say
does not change, so a look reads the members and only the adverts of new
workers, or of known ones whose advert would no longer count (too old, or
past ``worker_expiry``). Counted with ``INFO commandstats``, on a clock the
test moves: no sleeping, no timing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from flowkit import engines, task
from flowkit import exceptions as exc
from flowkit.engines.worker_based import protocol
from flowkit.engines.worker_based._directory import Directory
from flowkit.patterns import linear_flow
from tests.workers.fake_clock import FakeClock

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.timeout(60)

NS = protocol.DEFAULT_NAMESPACE


class Offered(task.Task):
    """Stub of a remote task the hand-written adverts offer."""

    def execute(self) -> None:
        raise AssertionError("runs on a worker")


class Unoffered(task.Task):
    """Stub of a remote task nobody offers: the wait runs out."""

    def execute(self) -> None:
        raise AssertionError("runs on a worker")


@pytest.fixture
def client(redis_flushed_url: str) -> Iterator[Any]:
    connection = redis.Redis.from_url(redis_flushed_url)
    yield connection
    connection.close()


def advertise(client: Any, topic: str, worker: str, clock: FakeClock, heartbeat: float = 60.0) -> None:
    """Write ``worker``'s advert offering Offered, dated now on ``clock``, listed for a long while."""
    notify = protocol.notify_message(
        worker,
        topic,
        [protocol.task_name(Offered)],
        heartbeat=heartbeat,
        visibility_timeout=2 * heartbeat,
        sent_at=clock.time(),
    )
    client.hset(protocol.worker_key(NS, worker), mapping=protocol.encode(notify, None))
    client.zadd(protocol.workers_key(NS, topic), {worker: int((clock.time() + 3600) * 1000)})


def calls(client: Any, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_worker_wait_reads_each_known_workers_advert_once_not_at_every_look(
    redis_flushed_url: str, client: Any
) -> None:
    # 20 workers that write no arrival entry offer one task of the flow, nobody the other:
    # the wait looks 21 times over its 5 s and read all 20 adverts at each (420 HGETALL).
    topic = f"t-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()  # its sleep moves it on: the looks cost no real time
    for i in range(20):
        advertise(client, topic, f"w{i}", clock)
    flow = linear_flow.Flow("f").add(Offered(name="offered"), Unoffered(name="lonely"))
    engine = engines.load(
        flow, engine="worker-based", url=redis_flushed_url, topics=[topic], worker_wait=5.0, clock=clock
    )
    client.config_resetstat()

    with pytest.raises(exc.NotFound, match="'lonely'"):
        engine.run()

    looks = calls(client, "zrange")
    assert looks == 21  # the first scan, then one per LOOK_EVERY of the 5 s
    assert calls(client, "hgetall") == 20  # each advert read once, by the first scan


def test_a_look_reads_a_new_workers_advert_and_drops_a_worker_no_longer_listed(
    redis_flushed_url: str, client: Any
) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    advertise(client, topic, "old", clock)
    directory = Directory([topic], NS, None, protocol.MAX_MESSAGE_BYTES, clock, look_every=0.25)
    directory.scan(client)
    advertise(client, topic, "new", clock)  # no arrival entry
    client.zrem(protocol.workers_key(NS, topic), "old")  # it stopped
    client.config_resetstat()

    directory.scan(client, reuse=True)

    assert directory.live(topic) == {"new"}
    assert directory.route("a", protocol.task_name(Offered)) == topic
    assert calls(client, "hgetall") == 1


@pytest.mark.parametrize("why", ["three heartbeats old", "worker_expiry"])
def test_a_look_reads_again_a_known_advert_its_worker_has_rewritten_since(
    redis_flushed_url: str, client: Any, why: str
) -> None:
    # A kept advert stands for a read for three heartbeats, as long as it lives in Redis
    # unrewritten, and not past worker_expiry: then it is read again, and counts only if
    # its worker wrote a newer one meanwhile.
    topic = f"t-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    advertise(client, topic, "beating", clock, heartbeat=10.0)
    advertise(client, topic, "silent", clock, heartbeat=10.0)
    expiry = 2.0 if why == "worker_expiry" else None
    directory = Directory(
        [topic], NS, None, protocol.MAX_MESSAGE_BYTES, clock, expiry=expiry, look_every=0.25
    )
    directory.scan(client)
    assert directory.live(topic) == {"beating", "silent"}
    client.config_resetstat()

    clock.advance(1.0)
    directory.scan(client, reuse=True)  # nothing due yet: nothing read
    assert calls(client, "hgetall") == 0
    clock.advance(2.0 if why == "worker_expiry" else 30.0)
    advertise(client, topic, "beating", clock, heartbeat=10.0)  # its beat; "silent" wrote nothing
    directory.scan(client, reuse=True)

    assert calls(client, "hgetall") == 2
    assert directory.live(topic) == ({"beating"} if why == "worker_expiry" else {"beating", "silent"})


def test_a_look_sees_a_known_workers_new_tasks_within_three_heartbeats(
    redis_flushed_url: str, client: Any
) -> None:
    # A worker of a release without arrival entries, restarted under its id with a task more.
    topic = f"t-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    advertise(client, topic, "w", clock, heartbeat=1.0)
    directory = Directory([topic], NS, None, protocol.MAX_MESSAGE_BYTES, clock, look_every=0.25)
    directory.scan(client)
    clock.advance(3.5)
    notify = protocol.notify_message(
        "w",
        topic,
        [protocol.task_name(Offered), protocol.task_name(Unoffered)],
        heartbeat=1.0,
        visibility_timeout=2.0,
        sent_at=clock.time(),
    )
    client.hset(protocol.worker_key(NS, "w"), mapping=protocol.encode(notify, None))

    directory.scan(client, reuse=True)

    assert directory.route("lonely", protocol.task_name(Unoffered)) == topic
