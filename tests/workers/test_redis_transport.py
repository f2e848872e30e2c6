"""The Redis plumbing the engine and the Python worker share, against a real server."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import pytest

from flowkit import exceptions as exc
from flowkit.engines.worker_based import _transport, protocol


@pytest.fixture
def client(redis_flushed_url: str) -> Iterator[_transport.Client]:
    connection = _transport.connect(redis_flushed_url)
    yield connection
    connection.close()


def test_connect_gives_a_bytes_client(client: _transport.Client) -> None:
    client.set("k", "é")
    assert client.get("k") == "é".encode()


def test_connect_logs_in_with_the_password_in_the_url(client: _transport.Client, redis_url: str) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    client.acl_setuser(user, enabled=True, passwords=["+p@ss:w0rd"], commands=["+ping"], keys=[])
    try:
        url = redis_url.replace("redis://", f"redis://{user}:p%40ss%3Aw0rd@")
        assert _transport.connect(url).ping()
        bad = _transport.connect(redis_url.replace("redis://", f"redis://{user}:wrong@"), attempts=1)
        with pytest.raises(Exception, match="(?i)invalid|WRONGPASS|auth"):
            bad.ping()
    finally:
        client.acl_deluser(user)


def test_connect_accepts_tls_urls_without_connecting() -> None:
    tls = _transport.connect("rediss://:secret@example.invalid:6380/2")
    assert tls.connection_pool.connection_class.__name__ == "SSLConnection"
    assert tls.connection_pool.connection_kwargs["password"] == "secret"


@pytest.mark.parametrize(
    "url",
    ["http://user:hunter2@localhost", "user:hunter2@localhost:6379", "redis://user:hunter2@localhost:port"],
)
def test_connect_refuses_a_malformed_url_without_showing_its_password(url: str) -> None:
    with pytest.raises(exc.InvalidFormat, match="malformed Redis URL") as caught:
        _transport.connect(url)
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)


@pytest.mark.parametrize("url", ["redis://:hunter2@127.0.0.1:6379/orders", "rediss://:hunter2@localhost/0x"])
def test_connect_refuses_a_database_that_is_no_number(url: str) -> None:
    # redis-py reads /orders as no database at all, so the worker served database 0
    # while its operator meant another one.
    with pytest.raises(exc.InvalidFormat, match="must be a number") as caught:
        _transport.connect(url)
    assert "hunter2" not in str(caught.value) and ":***@" in str(caught.value)


def test_connect_takes_a_database_number_or_none() -> None:
    for url in (
        "redis://localhost",
        "redis://localhost/",
        "redis://localhost/3",
        "unix:///run/redis.sock?db=2",
    ):
        _transport.connect(url).close()


def test_ensure_group_raises_other_redis_errors(client: _transport.Client) -> None:
    client.set("not-a-stream", "x")
    with pytest.raises(Exception, match="WRONGTYPE"):
        _transport.ensure_group(client, "not-a-stream")


def test_backoff_doubles_up_to_two_seconds_and_resets() -> None:
    backoff = _transport.Backoff()
    assert [backoff.next() for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    backoff.reset()
    assert backoff.next() == 0.1


def _advertise(
    client: _transport.Client, worker: str, topic: str, secret: bytes | None, expires_in: float = 3.0
) -> None:
    message = protocol.notify_message(worker, topic, ["a.B"], heartbeat=1.0, visibility_timeout=30.0)
    client.hset(protocol.worker_key("ns", worker), mapping=protocol.encode(message, secret))  # type: ignore[arg-type]
    client.zadd(protocol.workers_key("ns", topic), {worker: int((time.time() + expires_in) * 1000)})


def test_live_workers_returns_the_decoded_adverts_of_live_workers(client: _transport.Client) -> None:
    _advertise(client, "w1", "t", b"k")
    _advertise(client, "w2", "t", b"k")
    _advertise(client, "other", "u", b"k")
    adverts = _transport.live_workers(client, "ns", "t", b"k", protocol.MAX_MESSAGE_BYTES)
    assert sorted(adverts) == ["w1", "w2"]
    assert adverts["w1"]["tasks"] == ["a.B"]


def test_live_workers_drops_expired_members(client: _transport.Client) -> None:
    _advertise(client, "gone", "t", None, expires_in=-1.0)
    _advertise(client, "live", "t", None)
    assert list(_transport.live_workers(client, "ns", "t", None)) == ["live"]
    assert client.zrange(protocol.workers_key("ns", "t"), 0, -1) == [b"live"]


def test_live_workers_skips_adverts_that_are_missing_or_do_not_decode(
    client: _transport.Client, caplog: pytest.LogCaptureFixture
) -> None:
    _advertise(client, "signed", "t", b"k")
    _advertise(client, "forged", "t", b"other")
    _advertise(client, "mislabelled", "u", b"k")
    client.zadd(protocol.workers_key("ns", "t"), {"mislabelled": int(time.time() * 1000) + 3000})
    client.zadd(protocol.workers_key("ns", "t"), {"no-hash": int(time.time() * 1000) + 3000})
    with caplog.at_level(logging.DEBUG, logger="flowkit.engines.worker_based._transport"):
        adverts = _transport.live_workers(client, "ns", "t", b"k")
    assert list(adverts) == ["signed"]
    text = caplog.text
    assert "forged" in text and "signature does not match" in text
    assert "mislabelled" in text
    assert "no-hash" in text


def test_live_workers_of_an_unknown_topic_is_empty(client: _transport.Client) -> None:
    assert _transport.live_workers(client, "ns", "nobody", None) == {}


def test_an_advert_goes_stale_three_heartbeats_plus_the_clock_skew_after_it_was_written(
    client: _transport.Client, caplog: pytest.LogCaptureFixture
) -> None:
    _advertise(client, "w", "t", None, expires_in=3600.0)  # its expiry score is no help: only sent_at tells
    (advert,) = _transport.live_workers(client, "ns", "t", None).values()
    stale_at = advert["sent_at"] + 3 * advert["heartbeat"] + protocol.MAX_CLOCK_SKEW

    assert list(_transport.live_workers(client, "ns", "t", None, now=stale_at - 0.01)) == ["w"]
    with caplog.at_level(logging.WARNING, logger="flowkit.engines.worker_based._transport"):
        assert _transport.live_workers(client, "ns", "t", None, now=stale_at + 0.01) == {}
        assert _transport.live_workers(client, "ns", "t", None, now=stale_at + 5) == {}
    stale = [r.getMessage() for r in caplog.records if "stale" in r.getMessage()]
    assert len(stale) == 1, stale  # said once, not at every scan
    assert "worker w of topic 't'" in stale[0]
