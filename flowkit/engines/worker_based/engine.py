"""The worker-based engine: tasks run on remote workers, reached through Redis.

``engines.load(flow, engine="worker-based", url="redis://...", topics=["volumes"])``
runs ``flow`` with every task sent as a request to the workers serving the
topics (Python ``flowkit worker`` processes or Go workers); retries still decide
in the engine's own thread. ``transport="memory"`` (or ``url="memory://"``)
reaches workers of the same process instead, as TaskFlow's memory transport
does. Nothing here changes the run loop: the engine is the shared
:class:`~flowkit.engines._engine.ActionEngine` with a driver that speaks the
worker protocol (``doc/workers_protocol.rst``).

As in TaskFlow, an engine started before its workers still gets its work
done: a request whose task no live worker offers (on the given ``topics``, or,
given none, on the topics the workers announce) is held until some worker
offers it, and fails with :class:`~flowkit.exceptions.RequestTimeout` after
``transition_timeout``. ``worker_wait``, when given, is the stricter opt-in:
before any task runs the engine checks that some live worker offers every task
of the flow (waiting up to that many seconds for workers still starting), so a
flow that cannot finish fails at once with :class:`~flowkit.exceptions.NotFound`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from flowkit import exceptions as exc
from flowkit.engines import _compiler
from flowkit.engines._engine import ActionEngine
from flowkit.engines.worker_based import protocol
from flowkit.patterns import loop_flow

if TYPE_CHECKING:
    from flowkit.engines._protocols import Driver
    from flowkit.engines._timeouts import Timer
    from flowkit.engines.worker_based._clock import Clock

__all__ = ["OUTAGE_TIMEOUT", "SOCKET_TIMEOUT", "WorkerBasedActionEngine"]

LOG = logging.getLogger(__name__)

_KIND = "worker-based"
#: ``transition_timeout=None``: a year, as good as for ever (a request carries a finite deadline).
_NO_TIMEOUT = 365 * 24 * 3600.0
#: Default ``socket_timeout``: seconds a Redis command may wait for its answer.
SOCKET_TIMEOUT = 10.0
#: Default ``outage_timeout``: seconds Redis may stay unreachable before a run stops, in doubt.
OUTAGE_TIMEOUT = 60.0
#: TaskFlow's options for its kombu transport, read as their nearest meaning here.
_TASKFLOW = frozenset({"exchange", "transport", "transport_options", "worker_expiry"})


class WorkerBasedActionEngine(ActionEngine):
    """Runs each task on a remote worker (``engine="worker-based"``).

    Options (besides the common ones):

    * ``url``: the Redis URL (``redis://``, ``rediss://`` or ``unix://``), or
      ``memory://`` (``memory://NAME``) for workers in this process; required
      unless ``transport="memory"``.
    * ``transport``: ``"memory"`` for the in-process memory transport (engines
      and workers of one process find each other by ``exchange`` and topic),
      ``"redis"`` or None (the default: the URL decides). Kombu's other
      transports (AMQP...) are refused, naming them.
    * ``exchange``: on the memory transport, the namespace engines and workers
      meet in (default ``"default"``, as TaskFlow's); on Redis that is
      ``key_prefix``, and ``exchange`` is ignored, so engines keep finding
      workers started by ``flowkit worker``.
    * ``transport_options``: kombu's options (``polling_interval``...): accepted
      and ignored, nothing here polls.
    * ``worker_expiry``: seconds since a worker's last advertisement after which
      no request goes to it and its running requests count as orphaned (their
      ``transition_timeout`` starts); None, 0 or negative: only the advert's own
      expiry (three heartbeats) counts, the default.
    * ``topics``: topics to send tasks to, in routing order (a task goes to the
      first whose live workers offer it); ``topic`` names a single one. None or
      empty (TaskFlow's default): the topics the workers announce, in name
      order, found again while a request waits for a worker offering its
      task. A task whose ``worker_topic`` (class or instance attribute; a
      declarative spec's ``topic:``) is set goes to that topic only, listed
      here or not.
    * ``transition_timeout``: seconds a request may wait for a worker to start
      it, and a running request may outlive its worker's advertisement (default
      60; None, as in TaskFlow, for no limit: a year).
    * ``retry_options``: ``{"attempts": 5, "backoff": 0.1}``, how Redis commands
      are retried on connection errors.
    * ``socket_timeout``: seconds a Redis command may wait for its answer
      (default 10; also the connect timeout when smaller than 5 s). A Redis
      that stops answering without closing its connections (a frozen server,
      a network that drops packets) costs a command this long, not for ever;
      a timed-out command is not retried, the outage is. A
      ``?socket_timeout=`` in the URL wins over this option.
    * ``outage_timeout``: seconds Redis may stay unreachable during a run
      (every read of the replies failing) before the run stops (default 60).
      It stops with :class:`~flowkit.exceptions.ExecutionFailure` naming the
      Redis URL (password masked) and the atoms whose requests were out; those
      stay ``RUNNING`` (or ``REVERTING``) in storage, in doubt, and the flow's
      state is ``FAILURE``: loading it again (``flow_detail=``) once Redis is
      back resumes it and runs them again. While Redis is unreachable no
      request times out on its own: the outage decides.
    * ``key_prefix``: prefix of the Redis keys (default ``"flowkit"``; on the
      memory transport, the ``exchange``); the workers' ``--key-prefix`` must
      match. (``engines.load(namespace=)`` is the entry-point group engines are
      found in, not this.)
    * ``secret``: HMAC key to sign and check messages (default: the
      ``FLOWKIT_WORKER_SECRET`` environment variable; unset means no signing).
    * ``max_message_bytes``: largest message body sent or accepted (default 1 MiB).
    * ``worker_wait``: opt-in check before the run: seconds to wait for live
      workers offering every task before failing with ``NotFound``. None (the
      default, TaskFlow's way): no check; a request waits up to
      ``transition_timeout`` for a worker offering its task.
    * ``max_in_flight``: most requests out at once, sent to a topic and not yet
      answered (default: no limit). A request held for a worker is not out: it
      takes no room, so it does not hold back tasks that have workers; once a
      worker offers its task it takes the next free slot, ahead of newer
      requests, its ``transition_timeout`` still running. A request that waited
      for room is routed when it is sent, to a topic whose live workers offer
      its task then (held for a worker if none does).
    * ``clock``: what deadlines, timeouts and advert expiry are read from, an
      object with ``time()``, ``monotonic()`` and ``sleep(seconds)`` (default:
      the system clock); tests pass one they move by hand.
    """

    kind: ClassVar[str] = _KIND
    # Each request carries its atom's trace context to the worker (the driver).
    _calls_traced_here: ClassVar[bool] = False
    OPTIONS: ClassVar[frozenset[str]] = (
        ActionEngine.OPTIONS
        | _TASKFLOW
        | {
            "url",
            "topics",
            "topic",
            "transition_timeout",
            "retry_options",
            "key_prefix",
            "secret",
            "max_message_bytes",
            "worker_wait",
            "max_in_flight",
            "clock",
            "socket_timeout",
            "outage_timeout",
        }
    )

    def _check_options(self) -> None:
        # Loading without the redis client installed fails here, before anything
        # runs, with an ImportError that says which extra to install.
        from flowkit.engines.worker_based import _memory, _transport

        options = self._options
        self._url = _url(options.get("url"), options.get("transport"))
        self._memory = _memory.is_memory_url(self._url)
        transport_options = options.get("transport_options")
        if transport_options is not None and not isinstance(transport_options, Mapping):
            raise _bad(
                "transport_options",
                f"transport_options must be a dict, not {type(transport_options).__name__}",
            )
        self._topics = _topics(options.get("topic"), options.get("topics"))
        if "transition_timeout" in options and options["transition_timeout"] is None:
            self._transition_timeout = _NO_TIMEOUT  # TaskFlow's "wait for ever"
        else:
            self._transition_timeout = _number(options, "transition_timeout", 60.0, positive=True)
        self._worker_expiry = _expiry(options.get("worker_expiry"))
        self._attempts, self._backoff = _retry_options(options.get("retry_options"))
        self._socket_timeout = _number(options, "socket_timeout", SOCKET_TIMEOUT, positive=True)
        self._outage_timeout = _number(options, "outage_timeout", OUTAGE_TIMEOUT, positive=True)
        exchange = options.get("exchange")
        if exchange is not None and (not isinstance(exchange, str) or not exchange):
            raise _bad("exchange", f"exchange must be a non-empty str, not {exchange!r}")
        key_prefix = options.get("key_prefix", _transport.namespace(self._url, exchange))
        if not isinstance(key_prefix, str) or not key_prefix:
            raise _bad("key_prefix", f"key_prefix must be a non-empty str, not {key_prefix!r}")
        self._namespace = key_prefix
        secret = options.get("secret")
        if secret is not None and not isinstance(secret, str | bytes):
            raise _bad("secret", f"secret must be a str or bytes, not {type(secret).__name__}")
        self._secret = protocol.resolve_secret(secret)
        self._max_bytes = _count(options, "max_message_bytes", protocol.MAX_MESSAGE_BYTES)
        # TaskFlow's way: no check before the run (requests wait for workers) unless asked for.
        checked = options.get("worker_wait") is not None
        self._worker_wait = _number(options, "worker_wait", 0.0, positive=False) if checked else None
        self._max_in_flight = _count(options, "max_in_flight", None)
        self._clock = _clock(options.get("clock"))
        #: Functions ``(atom name) -> traceparent or None`` whose answer each request
        #: carries (the last one added wins); ``TracingListener`` adds itself here.
        self.trace_sources: list[Callable[[str], str | None]] = []
        #: Functions ``(atom name, worker id)`` told when a worker starts an atom's
        #: request; ``TracingListener`` adds itself here to name the worker on the span.
        self.start_watchers: list[Callable[[str, str], None]] = []

    def _timer(self, needed: bool) -> Timer | None:
        # Task timeouts are enforced by the driver's reply reader, on ``clock``
        # (which needs no call_later here); the in-process timer is never used.
        return None

    def _make_driver(self) -> Driver:
        from flowkit.engines.worker_based import _transport
        from flowkit.engines.worker_based._directory import Directory
        from flowkit.engines.worker_based._driver import BLOCK_MS, LOOK_EVERY, RedisDriver, Settings
        from flowkit.persistence.backends._urls import mask_url

        # Retries and loops' until tasks only decide: they run in the engine.
        tasks = [
            node
            for node in self._compiled().atoms
            if node.kind != _compiler.RETRY and type(node.atom) is not loop_flow.Until
        ]
        needed = {node.name: protocol.task_name(node.atom) for node in tasks}
        pinned = _pinned_topics(tasks)
        if self._secret is None and not self._memory:  # in one process, nobody else can write
            _warn_unsigned(mask_url(self._url), self._namespace)
        client = _transport.connect(
            self._url,
            attempts=self._attempts,
            backoff=self._backoff,
            # The reply reader's XREAD blocks up to BLOCK_MS on a server that answers.
            socket_timeout=self._socket_timeout + BLOCK_MS / 1000,
        )
        directory = Directory(
            self._topics,
            self._namespace,
            self._secret,
            self._max_bytes,
            self._clock,
            pinned=pinned,
            expiry=self._worker_expiry,
            # A short transition_timeout is checked more often than LOOK_EVERY.
            look_every=min(LOOK_EVERY, self._transition_timeout / 4),
        )
        try:
            if needed:
                # Before the first scan: a worker arriving after it wakes the reply reader.
                directory.watch_arrivals(client)
            if needed and self._worker_wait is not None:
                # Blocks on the arrivals stream between looks, as the reply reader will.
                directory.wait_for(client, needed, self._worker_wait, block_ms=BLOCK_MS)
            elif needed:
                directory.scan(client)  # requests of tasks nobody offers yet wait for a worker
        except _transport.errors() as err:
            client.close()
            raise exc.quoting_cause(
                exc.ExecutionFailure(
                    f"the worker-based engine cannot reach Redis at {mask_url(self._url)}: {err}"
                )
            ) from err
        except BaseException:
            client.close()
            raise
        settings = Settings(
            url=self._url,
            namespace=self._namespace,
            secret=self._secret,
            max_bytes=self._max_bytes,
            transition_timeout=self._transition_timeout,
            max_in_flight=self._max_in_flight,
            outage_timeout=self._outage_timeout,
            clock=self._clock,
            trace_sources=self.trace_sources,
            start_watchers=self.start_watchers,
        )
        return RedisDriver(client, directory, settings)


#: (masked URL, key prefix) pairs already warned about running unsigned in this process.
_WARNED_UNSIGNED: set[tuple[str, str]] = set()


def _warn_unsigned(url: str, key_prefix: str) -> None:
    """Say, once per Redis and key prefix in a process, that unsigned messages can be forged."""
    if (url, key_prefix) in _WARNED_UNSIGNED:
        return
    _WARNED_UNSIGNED.add((url, key_prefix))
    LOG.warning(
        "the worker-based engine runs without a signing secret on %s (key prefix %r): anyone who can"
        " write to this Redis can forge task results and advertise workers; set %s or secret= (the"
        " same on engines and workers) in production",
        url,
        key_prefix,
        protocol.SECRET_ENV,
    )


def _bad(option: str, message: str) -> exc.InvalidEngineOption:
    return exc.InvalidEngineOption(message, engine=_KIND, option=option)


def _url(url: Any, transport: Any) -> str:
    """The transport URL from TaskFlow's ``url`` and ``transport`` options (see ``choose_url``)."""
    from flowkit.engines.worker_based import _transport

    try:
        return _transport.choose_url(url, transport)
    except _transport.TransportOptionError as err:
        raise _bad(err.option, str(err)) from None


def _expiry(value: Any) -> float | None:
    """``worker_expiry`` in seconds, None for no limit beyond the advert's own (TaskFlow: <= 0 or None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise _bad("worker_expiry", f"worker_expiry must be a number of seconds or None, not {value!r}")
    return float(value) if 0 < value < math.inf else None


def _topics(topic: Any, topics: Any) -> tuple[str, ...]:
    found: list[str] = []
    if topic is not None:
        if not isinstance(topic, str) or not topic:
            raise _bad("topic", f"topic must be a non-empty str, not {topic!r}")
        found.append(topic)
    if topics is not None:
        if isinstance(topics, str):  # from an engine URI: "a,b"
            topics = [t.strip() for t in topics.split(",") if t.strip()]
        if not isinstance(topics, list | tuple) or not all(isinstance(t, str) and t for t in topics):
            raise _bad("topics", f"topics must be a list of non-empty str, not {topics!r}")
        found.extend(t for t in topics if t not in found)
    return tuple(found)  # empty: the workers' announced topics (TaskFlow's default)


def _pinned_topics(nodes: Any) -> dict[str, str]:
    """Atom name -> topic, for the tasks that name their own topic with ``worker_topic``.

    Raises:
        InvalidEngineOption: a ``worker_topic`` that is not a non-empty str
            (raised before anything is sent, naming the atom).
    """
    pinned: dict[str, str] = {}
    for node in nodes:
        topic = getattr(node.atom, "worker_topic", None)
        if topic is None:
            continue
        if not isinstance(topic, str) or not topic:
            raise _bad("topic", f"atom '{node.name}' has worker_topic {topic!r}: it must be a non-empty str")
        pinned[node.name] = topic
    return pinned


def _number(options: Mapping[str, Any], name: str, default: float, *, positive: bool) -> float:
    value = options.get(name, default)
    if isinstance(value, str):  # from an engine URI
        with contextlib.suppress(ValueError):
            value = float(value)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        kind = "a positive" if positive else "a non-negative"
        raise _bad(name, f"{name} must be {kind} number of seconds, not {value!r}")
    return float(value)


def _count(options: Mapping[str, Any], name: str, default: int | None) -> Any:
    value = options.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(name, f"{name} must be a positive int, not {value!r}")
    return value


def _clock(value: Any) -> Clock:
    from flowkit.engines.worker_based._clock import SYSTEM

    if value is None:
        return SYSTEM
    missing = [name for name in ("time", "monotonic", "sleep") if not callable(getattr(value, name, None))]
    if missing:
        raise _bad("clock", f"clock must have time(), monotonic() and sleep(); {value!r} lacks {missing}")
    clock: Clock = value
    return clock


def _retry_options(value: Any) -> tuple[int, float]:
    from flowkit.engines.worker_based import _transport

    try:
        return _transport.retry_settings(value)
    except _transport.TransportOptionError as err:
        raise _bad(err.option, str(err)) from None
