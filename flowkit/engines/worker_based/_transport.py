"""Redis plumbing shared by the worker-based engine and the Python worker.

This is the only module of the package that imports redis, and it is imported
only when an engine or worker actually starts, so ``import flowkit.engines``
never pays for (or needs) the redis client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, TypeAlias

try:
    import redis
except ImportError as missing:  # the client is an extra: say which
    raise ImportError(
        "the worker-based engine and 'flowkit worker' need the redis client: pip install 'flowkit[workers]'"
    ) from missing
from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterDownError, ReadOnlyError, RedisError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from flowkit import exceptions as exc
from flowkit.engines.worker_based import protocol
from flowkit.persistence.backends._urls import mask_url

__all__ = [
    "Backoff",
    "Client",
    "RedisError",
    "ResponseError",
    "connect",
    "ensure_group",
    "fields",
    "is_transient",
    "live_workers",
]

#: The client type (replies are bytes: connections never decode responses).
Client: TypeAlias = redis.Redis

LOG = logging.getLogger(__name__)


def fields(envelope: Mapping[str, bytes]) -> dict[Any, Any]:
    """An envelope as the field mapping redis-py's stream commands are typed to take."""
    return dict(envelope)


# How often an idle pooled connection is pinged before reuse (seconds): catches
# connections a server or a NAT dropped while the engine was quiet.
HEALTH_CHECK_INTERVAL = 30
CONNECT_TIMEOUT = 5.0
_SCHEMES = ("redis://", "rediss://", "unix://")


def connect(url: str, *, attempts: int = 5, backoff: float = 0.1) -> Client:
    """Make a client for ``url`` that retries dropped connections.

    The client returns raw ``bytes`` (the protocol checks bodies byte for byte)
    and retries each command on connection errors and timeouts, ``attempts``
    times in all, waiting ``backoff`` seconds doubled each time up to 2 s.
    Nothing is sent until the first command.

    Args:
        url: ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL, with an
            optional ``user:password@`` and ``/db`` number.
        attempts: tries per command before its error is raised (at least 1).
        backoff: first wait between tries, in seconds.

    Raises:
        InvalidFormat: the URL is not a Redis URL (the message shows it with
            the password masked).
    """
    if not isinstance(url, str) or not url.startswith(_SCHEMES):
        raise exc.InvalidFormat(
            f"malformed Redis URL {_masked(url)!r}: expected redis://, rediss:// or unix://"
        )
    retry = Retry(
        ExponentialBackoff(cap=2.0, base=max(backoff, 0.0)),
        retries=max(attempts - 1, 0),
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )
    options: dict[str, Any] = {
        "decode_responses": False,
        "retry": retry,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
    }
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # redis-py < 7 has no maintenance notifications to turn off
        pass
    else:
        # Only managed Redis Enterprise servers send them; asking costs every new
        # connection a round trip that fails on plain Redis.
        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    try:
        return redis.Redis.from_url(url, **options)
    except (ValueError, TypeError) as err:
        raise exc.InvalidFormat(f"malformed Redis URL {_masked(url)!r}: {_masked(err)}") from None


def _masked(text: object) -> str:
    """``mask_url``, also hiding ``user:password@`` when the scheme is missing."""
    masked = mask_url(text)
    if "://" not in masked and "@" in masked:
        user, colon, _ = masked.rpartition("@")[0].partition(":")
        if colon:
            masked = f"{user}:***@{masked.rpartition('@')[2]}"
    return masked


def ensure_group(client: Client, stream_key: str) -> None:
    """Create the ``workers`` consumer group (and the stream) unless it exists.

    Engines and workers both call this before their first read or write, so
    whichever starts first creates it; the group starts at id ``0`` so requests
    added before any worker existed are still delivered.
    """
    try:
        client.xgroup_create(stream_key, protocol.GROUP, id="0", mkstream=True)
    except ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise


#: Errors that mean "not now" rather than "never": the connection dropped or timed
#: out, the server is loading or a replica, a cluster is reconfiguring.
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, TryAgainError, ClusterDownError)


def is_transient(err: BaseException) -> bool:
    """Whether a command that raised ``err`` may succeed if simply tried again later.

    Everything else (an ACL's NOPERM, EXECABORT, OOM, a wrong type, a value the
    client cannot encode) is a refusal: retrying would fail the same way forever.
    """
    return isinstance(err, _TRANSIENT)


class Backoff:
    """Waits between reconnection tries: 0.1 s, doubling, at most 2.0 s."""

    __slots__ = ("_current", "cap", "initial")

    def __init__(self, initial: float = 0.1, cap: float = 2.0) -> None:
        self.initial = initial
        self.cap = cap
        self._current = initial

    def next(self) -> float:
        """The delay to wait now; the following call returns twice as much (capped)."""
        delay = self._current
        self._current = min(self._current * 2, self.cap)
        return delay

    def reset(self) -> None:
        """Start again from the initial delay, after a success."""
        self._current = self.initial


def live_workers(
    client: Client,
    namespace: str,
    topic: str,
    secret: bytes | None,
    max_bytes: int = protocol.MAX_MESSAGE_BYTES,
    *,
    now: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Read the live advertisements of ``topic``: worker id -> its ``notify`` message.

    Members whose expiry score has passed are removed from the set. An advert
    whose hash is gone, does not decode (bad signature, malformed), is not a
    ``notify``, names another topic or is stale (its ``sent_at`` more than
    three heartbeats plus :data:`~protocol.MAX_CLOCK_SKEW` before ``now``: a
    dead worker's advert written back) is left out and the reason logged.

    Args:
        now: the current unix time (default: the real time).
    """
    if now is None:
        now = time.time()
    key = protocol.workers_key(namespace, topic)
    now_ms = int(now * 1000)
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(key, "-inf", f"({now_ms}")
    pipe.zrange(key, 0, -1)
    _, members = pipe.execute()
    if not members:
        return {}
    ids = [m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m) for m in members]
    pipe = client.pipeline(transaction=False)
    for worker_id in ids:
        pipe.hgetall(protocol.worker_key(namespace, worker_id))
    adverts: dict[str, dict[str, Any]] = {}
    for worker_id, fields in zip(ids, pipe.execute(), strict=True):
        message = _advert(worker_id, topic, fields, secret, max_bytes, now)
        if message is not None:
            adverts[worker_id] = message
    return adverts


#: Stale adverts already reported, so a replay repeated at every scan logs once.
_REPORTED_STALE: dict[tuple[str, float], None] = {}


def _advert(
    worker_id: str, topic: str, fields: Mapping[Any, Any], secret: bytes | None, max_bytes: int, now: float
) -> dict[str, Any] | None:
    if not fields:
        LOG.debug("worker %s of topic %r has no advertisement (expired or stopped)", worker_id, topic)
        return None
    try:
        message = protocol.decode(fields, secret, max_bytes)
    except protocol.ProtocolError as err:
        LOG.warning("ignoring the advertisement of worker %s of topic %r: %s", worker_id, topic, err.reason)
        return None
    if message["type"] != "notify":
        kind = message["type"]
        LOG.warning("ignoring worker %s of topic %r: its hash holds a %s message", worker_id, topic, kind)
        return None
    if message["topic"] != topic or message["worker"] != worker_id:
        LOG.warning(
            "ignoring worker %s of topic %r: its advertisement is for worker %s of topic %r",
            worker_id,
            topic,
            message["worker"],
            message["topic"],
        )
        return None
    age = now - message["sent_at"]
    if age > 3 * message["heartbeat"] + protocol.MAX_CLOCK_SKEW:
        seen = (worker_id, message["sent_at"])
        if seen not in _REPORTED_STALE:
            if len(_REPORTED_STALE) >= 1000:
                _REPORTED_STALE.clear()
            _REPORTED_STALE[seen] = None
            LOG.warning(
                "ignoring the advertisement of worker %s of topic %r: it is stale, written %.1f s ago"
                " (beyond three heartbeats of %g s and %g s of clock skew): a dead worker's advert"
                " written back, or clocks that disagree",
                worker_id,
                topic,
                age,
                message["heartbeat"],
                protocol.MAX_CLOCK_SKEW,
            )
        return None
    return message
