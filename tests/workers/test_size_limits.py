"""A request larger than its workers read fails at once, or goes where it is read.

A worker drops a request body over its ``max_message_bytes`` unread (it cannot
trust it), so the engine used to learn of it only at ``transition_timeout``, as a
``RequestTimeout`` saying no worker started it. Workers now state their limit in
their adverts; the engine sends a request only to a topic whose workers all read
it, and fails it at once, naming the atom, its size and the limit, when no topic
offering its task does. Every test runs on the session's real Redis against both
workers (Python and Go), started as in ``test_parity``; an older worker, whose
advert states no limit, is served as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from flowkit import engines
from flowkit import exceptions as exc
from flowkit.engines.worker_based.worker import Worker
from flowkit.patterns import linear_flow
from tests import services
from tests.workers.behaviour_tasks import Echo
from tests.workers.conftest import (
    TASKS_MODULE,
    BackgroundRun,
    WorkerFactory,
    fresh_topic,
    live_adverts,
    load_engine,
    requests_added,
)

# Generous: the first Go test also pays for the session's `go build`.
pytestmark = pytest.mark.timeout(300)

#: The workers' limit in these tests: far below the engine's own (1 MiB).
SMALL = 4096
#: An argument that makes a request body larger than ``SMALL`` bytes.
LARGE_VALUE = "x" * (2 * SMALL)
#: Long enough that the old wait (a timeout) cannot pass for the new failure.
TRANSITION_TIMEOUT = 5.0


class SizedEcho(Echo):
    """Echo whose revert takes ``value`` too: its revert request is as large as its execute.

    So a flow whose execute request is refused for its size sends nothing at
    all (Echo's own revert takes no argument, and its request would fit).
    """

    def revert(self, value: Any, **kwargs: Any) -> None:
        return None


def _flow(value: Any) -> Any:
    return linear_flow.Flow("sized").add(SizedEcho("big", inject={"value": value}, provides="echoed"))


def test_a_worker_advertises_the_largest_request_it_reads(spawn_worker: WorkerFactory) -> None:
    worker = spawn_worker(fresh_topic(), max_message_bytes=SMALL)
    assert worker.wait_advertised()["max_message_bytes"] == SMALL


def test_a_request_over_every_workers_limit_fails_at_once_naming_atom_size_and_limit(
    spawn_worker: WorkerFactory, redis_flushed_url: str, redis_client: Any
) -> None:
    topic = fresh_topic()
    worker = spawn_worker(topic, max_message_bytes=SMALL)
    engine = load_engine(_flow(LARGE_VALUE), redis_flushed_url, topic, transition_timeout=TRANSITION_TIMEOUT)

    with pytest.raises(exc.InvalidFormat) as raised:
        engine.run()

    text = str(raised.value)
    assert "atom 'big'" in text
    assert f"reads at most {SMALL} bytes" in text
    assert f"worker {worker.worker_id}" in text
    size = int(text.split("its body is ", 1)[1].split(" bytes", 1)[0])
    assert size > SMALL
    # Never added to the stream: no worker was left to drop it unread.
    assert requests_added(redis_client, topic) == 0


def test_a_request_under_the_workers_limit_runs_as_before(
    spawn_worker: WorkerFactory, redis_flushed_url: str
) -> None:
    topic = fresh_topic()
    spawn_worker(topic, max_message_bytes=SMALL)
    engine = load_engine(_flow("small"), redis_flushed_url, topic, transition_timeout=TRANSITION_TIMEOUT)

    engine.run()

    assert engine.storage.fetch("echoed") == "small"


def test_a_request_too_large_for_one_topic_goes_to_the_next_topic_that_reads_it(
    spawn_worker: WorkerFactory, redis_flushed_url: str, redis_client: Any
) -> None:
    small, large = fresh_topic(), fresh_topic()
    spawn_worker(small, max_message_bytes=SMALL)
    spawn_worker(large)
    engine = engines.load(
        _flow(LARGE_VALUE),
        engine="worker-based",
        url=redis_flushed_url,
        topics=[small, large],
        transition_timeout=TRANSITION_TIMEOUT,
    )

    engine.run()

    assert engine.storage.fetch("echoed") == LARGE_VALUE
    assert (requests_added(redis_client, small), requests_added(redis_client, large)) == (0, 1)


def test_one_worker_with_a_small_limit_keeps_large_requests_off_its_whole_topic(
    spawn_worker: WorkerFactory, redis_flushed_url: str, redis_client: Any
) -> None:
    # Any worker of a topic may read a request from its stream: the smallest limit counts.
    topic = fresh_topic()
    spawn_worker(topic)
    small = spawn_worker(topic, max_message_bytes=SMALL)
    engine = load_engine(_flow(LARGE_VALUE), redis_flushed_url, topic, transition_timeout=TRANSITION_TIMEOUT)

    with pytest.raises(exc.InvalidFormat, match=f"at most {SMALL} bytes") as raised:
        engine.run()

    assert f"worker {small.worker_id}" in str(raised.value)
    assert requests_added(redis_client, topic) == 0


def test_a_held_request_fails_at_once_when_its_worker_arrives_with_a_smaller_limit(
    spawn_worker: WorkerFactory, redis_flushed_url: str, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Held for a worker first (nobody offers its task), then sent by the reader as the worker arrives.
    topic = fresh_topic()
    engine = load_engine(_flow(LARGE_VALUE), redis_flushed_url, topic, transition_timeout=TRANSITION_TIMEOUT)
    with caplog.at_level(logging.INFO, logger="flowkit.engines.worker_based.engine"):
        run = BackgroundRun(engine)
        services.wait_until(
            lambda: "wait up to" in caplog.text, 30.0, message="the request held for a worker"
        )
        worker = spawn_worker(topic, max_message_bytes=SMALL)
        error = run.join(60.0)

    assert isinstance(error, exc.InvalidFormat), error
    assert f"reads at most {SMALL} bytes (the max_message_bytes of worker {worker.worker_id})" in str(error)
    assert requests_added(redis_client, topic) == 0


# -- an older worker: its advert states no limit -------------------------------------------------


class _WorkerBeforeLimits(Worker):
    """A Python worker writing the advert of workers older than ``max_message_bytes``."""

    def _advert(self) -> dict[str, Any]:
        advert = super()._advert()
        del advert["max_message_bytes"]
        return advert


@pytest.fixture
def older_worker(redis_flushed_url: str) -> Iterator[Worker]:
    """An older-style worker reading at most ``SMALL`` bytes, on a fresh topic, running in a thread."""
    worker = _WorkerBeforeLimits(
        topic=fresh_topic(),
        tasks=[TASKS_MODULE],
        url=redis_flushed_url,
        heartbeat=0.1,
        max_message_bytes=SMALL,
    )
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        yield worker
    finally:
        worker.stop(grace=0.5)
        runner.join(10)


def _wait_advertised(client: Any, topic: str) -> dict[str, Any]:
    adverts = services.wait_until(
        lambda: live_adverts(client, topic), 30.0, message=f"a worker advertising on {topic}"
    )
    return next(iter(adverts.values()))


def test_an_older_workers_advert_without_a_limit_is_served_as_before(
    older_worker: Worker, redis_flushed_url: str, redis_client: Any
) -> None:
    topic = older_worker.topic
    assert "max_message_bytes" not in _wait_advertised(redis_client, topic)

    small = load_engine(_flow("small"), redis_flushed_url, topic, transition_timeout=TRANSITION_TIMEOUT)
    small.run()
    assert small.storage.fetch("echoed") == "small"

    # Its limit unknown, a large request is sent as before: the worker drops it, the atom times out.
    large = load_engine(_flow(LARGE_VALUE), redis_flushed_url, topic, transition_timeout=1.0)
    with pytest.raises(exc.RequestTimeout, match="no worker started it"):
        large.run()
    # The small run's request, then the large one's execute and its revert (as large): all sent.
    assert requests_added(redis_client, topic) == 3


def test_an_older_worker_beside_one_stating_a_limit_leaves_that_limit_in_force(
    older_worker: Worker, spawn_worker: WorkerFactory, redis_flushed_url: str, redis_client: Any
) -> None:
    topic = older_worker.topic
    _wait_advertised(redis_client, topic)
    spawn_worker(topic, max_message_bytes=SMALL)
    engine = load_engine(_flow(LARGE_VALUE), redis_flushed_url, topic, transition_timeout=TRANSITION_TIMEOUT)

    with pytest.raises(exc.InvalidFormat, match=f"at most {SMALL} bytes"):
        engine.run()
    assert requests_added(redis_client, topic) == 0
