"""The transport seam shared by the worker-based engine and the Python worker.

:func:`connect` turns a URL into a client: a Redis client for ``redis://``,
``rediss://`` and ``unix://``, or, for ``memory://``, a client of the
in-process memory transport (:mod:`._memory`), which answers the same commands
so the driver and the worker run unchanged on either.

Only the Redis path imports redis (:func:`choose_url` and :func:`connect` for a
Redis URL): the memory transport runs on a plain ``pip install flowkit``
without the redis client, and ``import flowkit.engines`` never pays for it.
So the errors a command may raise are not one class: :func:`errors` and
:func:`refusals` give what to catch, the memory transport's classes plus
redis-py's once it is loaded (no Redis command can have failed before).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

from flowkit import exceptions as exc
from flowkit._utils.masking import MASK
from flowkit._utils.redis_urls import bad_database
from flowkit._utils.text import log_safe
from flowkit.engines.worker_based import _memory, protocol
from flowkit.persistence.backends._urls import mask_url

if TYPE_CHECKING:
    import redis

__all__ = [
    "Backoff",
    "Client",
    "TransportOptionError",
    "as_bytes",
    "bad_url",
    "choose_url",
    "connect",
    "ensure_group",
    "errors",
    "fields",
    "is_transient",
    "live_members",
    "live_topics",
    "live_workers",
    "namespace",
    "queue_claim",
    "read_adverts",
    "refusals",
    "retry_settings",
    "stream_entries",
]

#: The client types (replies are bytes: connections never decode responses).
Client: TypeAlias = "redis.Redis | _memory.MemoryClient"

LOG = logging.getLogger(__name__)

#: Said when a Redis URL is used without the redis client installed.
_MISSING_REDIS = (
    "the worker-based engine and 'flowkit worker' need the redis client for a Redis URL:"
    " pip install 'flowkit[workers]' (transport='memory' needs nothing more)"
)


def _redis() -> ModuleType:
    """The redis package, imported on the Redis path only.

    Raises:
        ImportError: the redis client is not installed (the message says
            which extra installs it).
    """
    try:
        import redis
    except ImportError as missing:  # the client is an extra: say which
        raise ImportError(_MISSING_REDIS) from missing
    return redis


def errors() -> tuple[type[Exception], ...]:
    """What a failed command raises, to catch: the memory transport's error, and redis-py's if loaded."""
    loaded = sys.modules.get("redis.exceptions")
    if loaded is None:
        return (_memory.TransportError,)
    return (_memory.TransportError, loaded.RedisError)


def refusals() -> tuple[type[Exception], ...]:
    """What a command the server refused raises (``BUSYGROUP``, ``NOGROUP``...), to catch."""
    loaded = sys.modules.get("redis.exceptions")
    if loaded is None:
        return (_memory.CommandError,)
    return (_memory.CommandError, loaded.ResponseError)


def stream_entries(reply: Any) -> list[tuple[bytes, list[tuple[Any, Any]]]]:
    """``(stream key, its entries)`` of an XREAD reply, for the streams that have entries.

    Whoever reads a stream (the engine's reply reader, its wait for workers,
    a worker's XREADGROUP) reads the reply through this one function: redis-py
    answers XREAD and XREADGROUP as a list of pairs under RESP2 and as a map
    under RESP3 (each value the entries, wrapped in a list or not), and the
    memory transport as the former; an empty or None reply (the block ran out)
    is no stream.
    """
    if not reply:
        return []
    if isinstance(reply, dict):
        pairs = [
            (key, value[0] if value and isinstance(value[0], list) else value) for key, value in reply.items()
        ]
    else:
        pairs = [(key, entries) for key, entries in reply]
    return [(as_bytes(key), list(entries)) for key, entries in pairs if entries]


def as_bytes(value: Any) -> bytes:
    """A stream key or entry id as bytes, whichever way the client answered it."""
    return value if isinstance(value, bytes) else str(value).encode()


def fields(envelope: Mapping[str, bytes]) -> dict[Any, Any]:
    """An envelope as the field mapping redis-py's stream commands are typed to take."""
    return dict(envelope)


def queue_claim(pipe: Any, key: str, value: str, ms: int) -> None:
    """Queue ``SET key value NX PX ms`` on ``pipe``: the replay guard's claim, as the protocol words it.

    On redis-py the command is queued as it goes on the wire: its ``set()``
    helper first sorts out a dozen keyword options, which costs the worker's
    reading thread (the one every request passes through) about 4 µs a
    request, more than packing the command itself. The memory transport's
    pipeline takes the keywords.
    """
    if isinstance(pipe, _memory.MemoryPipeline):
        pipe.set(key, value, nx=True, px=ms)
    else:
        pipe.execute_command("SET", key, value, "NX", "PX", ms)


# How often an idle pooled connection is pinged before reuse (seconds): catches
# connections a server or a NAT dropped while the engine was quiet.
HEALTH_CHECK_INTERVAL = 30
CONNECT_TIMEOUT = 5.0
_SCHEMES = ("redis://", "rediss://", "unix://")


def connect(
    url: str, *, attempts: int = 5, backoff: float = 0.1, socket_timeout: float | None = None
) -> Client:
    """Make a client for ``url`` that retries dropped connections.

    The client returns raw ``bytes`` (the protocol checks bodies byte for byte)
    and retries each command on connection errors and timeouts, ``attempts``
    times in all, waiting ``backoff`` seconds doubled each time up to 2 s.
    Nothing is sent until the first command.

    With ``socket_timeout``, a command whose answer takes longer than that
    raises ``TimeoutError`` and is not retried: a server that stopped
    answering (frozen, or a network that drops packets) costs the caller one
    timeout, not ``attempts`` of them, and the caller's own loop decides
    whether to try again. Without it a read waits for as long as the
    connection lives.

    A ``memory://`` URL gives a client of the in-process memory transport
    instead (``attempts`` and ``backoff`` do not apply: it cannot drop).

    Args:
        url: ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL, with an
            optional ``user:password@`` and ``/db`` number; or ``memory://``
            (``memory://NAME`` for a separate in-process broker).
        attempts: tries per command before its error is raised (at least 1).
        backoff: first wait between tries, in seconds.

    Raises:
        InvalidFormat: the URL is not a Redis or memory URL (the message shows
            it with the password masked; an ``amqp://`` URL is told that
            flowkit's workers speak Redis or memory, not AMQP).
    """
    if _memory.is_memory_url(url):
        return _memory.connect(url)
    if not isinstance(url, str) or not url.startswith(_SCHEMES):
        raise exc.InvalidFormat(bad_url(url))
    try:
        database = bad_database(url)
    except ValueError as err:
        raise exc.InvalidFormat(f"malformed Redis URL {_masked(url)!r}: {err}") from None
    if database is not None:
        raise exc.InvalidFormat(
            f"malformed Redis URL {_masked(url)!r}: its database must be a number (/0), not {database!r}"
        )
    module = _redis()
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry

    retry = Retry(
        ExponentialBackoff(cap=2.0, base=max(backoff, 0.0)),
        retries=max(attempts - 1, 0),
        supported_errors=(RedisConnectionError,)
        if socket_timeout is not None
        else (RedisConnectionError, RedisTimeoutError),
    )
    options: dict[str, Any] = {
        "decode_responses": False,
        "retry": retry,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "socket_connect_timeout": min(CONNECT_TIMEOUT, socket_timeout or CONNECT_TIMEOUT),
    }
    if not url.startswith("unix://"):
        # A TCP option: redis-py's Unix socket connection refuses it, and a local
        # socket has no silent peer for keep-alive probes to find anyway.
        options["socket_keepalive"] = True
    if socket_timeout is not None:
        options["socket_timeout"] = socket_timeout
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # redis-py < 7 has no maintenance notifications to turn off
        pass
    else:
        # Only managed Redis Enterprise servers send them; asking costs every new
        # connection a round trip that fails on plain Redis.
        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    try:
        client: redis.Redis = module.Redis.from_url(url, **options)
    except (ValueError, TypeError) as err:
        raise exc.InvalidFormat(f"malformed Redis URL {_masked(url)!r}: {_masked(err)}") from None
    return client


#: ``transport=`` values: the memory transport, or Redis (the URL says where).
MEMORY, REDIS = "memory", "redis"


class TransportOptionError(exc.InvalidFormat):
    """A ``url`` or ``transport`` option that cannot be used.

    Attributes:
        option: which of the two (``"url"`` or ``"transport"``).
    """

    def __init__(self, message: str, *, option: str) -> None:
        super().__init__(message)
        self.option = option


def choose_url(url: Any, transport: Any) -> str:
    """The URL to :func:`connect` to, from TaskFlow's ``url`` and ``transport`` options.

    ``transport="memory"`` without a URL means ``memory://``; otherwise the URL
    says which transport it is, and a ``transport`` given must agree with it.

    Raises:
        TransportOptionError: no usable URL, a transport other than memory or
            Redis (AMQP...), or a URL of another transport than ``transport``;
            the message names them (the URL with its password masked).
    """
    if transport is not None and transport not in (MEMORY, REDIS):
        raise TransportOptionError(
            f"transport {transport!r} is not supported: flowkit's workers speak Redis (transport='redis'"
            " with a redis:// URL) or the in-process memory transport (transport='memory'), not kombu's"
            " other transports (doc/migrating.rst)",
            option="transport",
        )
    if url is None and transport == MEMORY:
        return _memory.SCHEME
    if url is None:
        raise TransportOptionError(
            "url is missing: the Redis URL the engine and its workers share is needed"
            " (or transport='memory' for an engine and workers in one process)",
            option="url",
        )
    if _memory.is_memory_url(url):
        kind = MEMORY
    elif isinstance(url, str) and url.startswith(_SCHEMES):
        kind = REDIS
        _redis()  # say now, before anything runs, that the client is missing
    else:
        raise TransportOptionError(f"url is not usable: {bad_url(url)}", option="url")
    if transport is not None and transport != kind:
        raise TransportOptionError(
            f"transport {transport!r} does not match the {kind} URL {_masked(url)!r}", option="transport"
        )
    chosen: str = url
    return chosen


#: The exchange TaskFlow's engines use when given none.
DEFAULT_EXCHANGE = "default"


def namespace(url: str, exchange: str | None) -> str:
    """The key prefix engines and workers meet under when no ``key_prefix`` is given.

    On the memory transport it is the ``exchange`` (TaskFlow's ``"default"``
    when none is given), as engines and workers find each other by exchange on
    TaskFlow's; on Redis it stays ``"flowkit"`` whatever the exchange, so
    engines keep finding workers started by ``flowkit worker``.
    """
    if _memory.is_memory_url(url):
        return exchange or DEFAULT_EXCHANGE
    return protocol.DEFAULT_NAMESPACE


#: TaskFlow's (kombu's) retry option names, read as the nearest of ours.
_KOMBU_RETRY = frozenset({"max_retries", "interval_start", "interval_step", "interval_max"})


def retry_settings(value: Any) -> tuple[int, float]:
    """``(attempts, backoff)`` for :func:`connect` from a ``retry_options`` dict (default 5, 0.1 s).

    Takes ours (``attempts``, ``backoff``) and kombu's as TaskFlow passes them
    (``max_retries`` retries after the first try, ``interval_start`` the first
    wait; ``interval_step`` and ``interval_max`` are accepted: the backoff
    doubles up to 2 s).

    Raises:
        TransportOptionError: not a dict, an unknown key or a bad value.
    """
    if value is None:
        return 5, 0.1
    if not isinstance(value, Mapping):
        raise TransportOptionError(
            f"retry_options must be a dict, not {type(value).__name__}", option="retry_options"
        )
    unknown = sorted(set(value) - {"attempts", "backoff"} - _KOMBU_RETRY)
    if unknown:
        raise TransportOptionError(
            f"retry_options has unknown key(s) {unknown}; it takes 'attempts', 'backoff'",
            option="retry_options",
        )
    attempts = value.get("attempts")
    if attempts is None and value.get("max_retries") is not None:
        attempts = value["max_retries"] + 1 if isinstance(value["max_retries"], int) else value["max_retries"]
    if attempts is None:
        attempts = 5
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise TransportOptionError(
            f"retry_options['attempts'] must be a positive int, not {attempts!r}", option="retry_options"
        )
    backoff = value.get("backoff", value.get("interval_start", 0.1))
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not 0 <= backoff < math.inf:
        raise TransportOptionError(
            f"retry_options['backoff'] must be a non-negative number, not {backoff!r}", option="retry_options"
        )
    return attempts, float(backoff)


def bad_url(url: object) -> str:
    """What to say about a URL that is neither Redis nor memory, password masked (AMQP gets a why)."""
    if isinstance(url, str) and url.split("://", 1)[0].lower() in _AMQP_SCHEMES:
        return (
            f"unsupported worker transport URL {_masked(url)!r}: flowkit's workers speak Redis"
            " (redis://, rediss://, unix://) or the in-process memory transport (memory://), not"
            " AMQP (doc/migrating.rst)"
        )
    return f"malformed Redis URL {_masked(url)!r}: expected redis://, rediss://, unix:// or memory://"


#: Kombu's AMQP transports, refused with a word on why.
_AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp", "librabbitmq", "qpid"})


def _masked(text: object) -> str:
    """``mask_url``, also hiding ``user:password@`` when the scheme is missing."""
    masked = mask_url(text)
    if "://" not in masked and "@" in masked:
        user, colon, _ = masked.rpartition("@")[0].partition(":")
        if colon:
            masked = f"{user}:{MASK}@{masked.rpartition('@')[2]}"
    return masked


def ensure_group(client: Client, stream_key: str) -> None:
    """Create the ``workers`` consumer group (and the stream) unless it exists.

    Engines and workers both call this before their first read or write, so
    whichever starts first creates it; the group starts at id ``0`` so requests
    added before any worker existed are still delivered.
    """
    try:
        client.xgroup_create(stream_key, protocol.GROUP, id="0", mkstream=True)
    except refusals() as err:
        if "BUSYGROUP" not in str(err):
            raise


def is_transient(err: BaseException) -> bool:
    """Whether a command that raised ``err`` may succeed if simply tried again later.

    "Not now" is a dropped or timed-out connection, a server loading or a
    replica, a cluster reconfiguring. Everything else (an ACL's NOPERM,
    EXECABORT, OOM, a wrong type, a value the client cannot encode) is a
    refusal: retrying would fail the same way forever. The memory transport
    cannot drop, so its errors are never transient.
    """
    loaded = sys.modules.get("redis.exceptions")
    if loaded is None:
        return False
    transient = (
        loaded.ConnectionError,
        loaded.TimeoutError,
        loaded.ReadOnlyError,
        loaded.TryAgainError,
        loaded.ClusterDownError,
    )
    return isinstance(err, transient)


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

    :func:`live_members`, then :func:`read_adverts` of them all: two round trips.

    Args:
        now: the current unix time (default: the real time).
    """
    if now is None:
        now = time.time()
    members = live_members(client, namespace, topic, now=now)
    return read_adverts(client, namespace, topic, members, secret, max_bytes, now=now)


def live_members(client: Client, namespace: str, topic: str, *, now: float | None = None) -> list[str]:
    """The ids of the workers listed for ``topic`` whose expiry score has not passed, in one round trip.

    Members whose score has passed are removed from the set. Listed is not yet
    live: only an advert :func:`read_adverts` accepts says who is.

    Args:
        now: the current unix time (default: the real time).
    """
    if now is None:
        now = time.time()
    key = protocol.workers_key(namespace, topic)
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(key, "-inf", f"({int(now * 1000)}")
    pipe.zrange(key, 0, -1)
    _, members = pipe.execute()
    return [m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m) for m in members]


def read_adverts(
    client: Client,
    namespace: str,
    topic: str,
    workers: list[str],
    secret: bytes | None,
    max_bytes: int = protocol.MAX_MESSAGE_BYTES,
    *,
    now: float | None = None,
) -> dict[str, dict[str, Any]]:
    """The usable adverts of ``workers`` of ``topic``, in one round trip (none for no worker).

    An advert whose hash is gone, does not decode (bad signature, malformed),
    is not a ``notify``, names another topic or is stale (its ``sent_at`` more
    than three heartbeats plus :data:`~protocol.MAX_CLOCK_SKEW` before ``now``:
    a dead worker's advert written back) is left out and the reason logged.

    Args:
        now: the current unix time (default: the real time).
    """
    if not workers:
        return {}
    if now is None:
        now = time.time()
    pipe = client.pipeline(transaction=False)
    for worker_id in workers:
        pipe.hgetall(protocol.worker_key(namespace, worker_id))
    adverts: dict[str, dict[str, Any]] = {}
    for worker_id, fields in zip(workers, pipe.execute(), strict=True):
        message = _advert(worker_id, topic, fields, secret, max_bytes, now)
        if message is not None:
            adverts[worker_id] = message
    return adverts


def live_topics(client: Client, namespace: str, *, now: float | None = None) -> list[str]:
    """The topics some worker advertised for recently, by name; expired ones are removed.

    A topic listed here may have no live worker left (its last one stopped
    cleanly less than three heartbeats ago): :func:`live_workers` is what says
    who is alive.

    Args:
        now: the current unix time (default: the real time).
    """
    if now is None:
        now = time.time()
    key = protocol.topics_key(namespace)
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(key, "-inf", f"({int(now * 1000)}")
    pipe.zrange(key, 0, -1)
    _, members = pipe.execute()
    return sorted(m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m) for m in members)


#: Adverts already reported as unusable, by (worker, topic, why): engines scan
#: for workers at every tick (a quarter of a second while requests run), and a
#: worker of another protocol version, or a replay of a dead one, would be
#: reported at each. Reported once at WARNING, then at DEBUG while it lasts.
_REPORTED: dict[tuple[str, str, str], None] = {}
#: How many reports are remembered before the memory starts afresh.
_REPORTED_MAX = 1000


def _report_once(worker_id: str, topic: str, why: str, text: str, *args: Any) -> None:
    """Log ``text % args`` at WARNING the first time ``why`` is seen for this worker, else at DEBUG."""
    seen = (worker_id, topic, why)
    if seen in _REPORTED:
        LOG.debug(text, *args)
        return
    if len(_REPORTED) >= _REPORTED_MAX:
        _REPORTED.clear()
    _REPORTED[seen] = None
    LOG.warning(text, *args)


def _advert(
    worker_id: str, topic: str, fields: Mapping[Any, Any], secret: bytes | None, max_bytes: int, now: float
) -> dict[str, Any] | None:
    if not fields:
        LOG.debug(
            "worker %s of topic %r has no advertisement (expired or stopped)", log_safe(worker_id), topic
        )
        return None
    try:
        message = protocol.decode(fields, secret, max_bytes)
    except protocol.ProtocolError as err:
        _report_once(
            worker_id,
            topic,
            err.reason,
            "ignoring the advertisement of worker %s of topic %r: %s",
            log_safe(worker_id),
            topic,
            log_safe(err.reason),
        )
        return None
    if message["type"] != "notify":
        kind = message["type"]
        _report_once(
            worker_id,
            topic,
            f"type {kind}",
            "ignoring worker %s of topic %r: its hash holds a %s message",
            log_safe(worker_id),
            topic,
            kind,
        )
        return None
    if message["topic"] != topic or message["worker"] != worker_id:
        _report_once(
            worker_id,
            topic,
            f"for {message['worker']} of {message['topic']}",
            "ignoring worker %s of topic %r: its advertisement is for worker %s of topic %r",
            log_safe(worker_id),
            topic,
            log_safe(message["worker"]),
            message["topic"],
        )
        return None
    age = now - message["sent_at"]
    if age > 3 * message["heartbeat"] + protocol.MAX_CLOCK_SKEW:
        _report_once(
            worker_id,
            topic,
            f"stale since {message['sent_at']!r}",
            "ignoring the advertisement of worker %s of topic %r: it is stale, written %.1f s ago"
            " (beyond three heartbeats of %g s and %g s of clock skew): a dead worker's advert"
            " written back, or clocks that disagree",
            log_safe(worker_id),
            topic,
            age,
            message["heartbeat"],
            protocol.MAX_CLOCK_SKEW,
        )
        return None
    return message
