"""Who serves what: the live workers of an engine's topics, read from their adverts.

The engine asks the directory: which topic does a task go to (None: nobody
offers it yet, so its request waits), and is the worker running a request
still alive? When asked to (``worker_wait``), it also checks before a run that
some live worker offers every task of the flow, waiting a little for workers
still starting. Every answer comes from the same scan of the topics'
advertisements (:func:`_transport.live_workers`), so the engine never keeps a
second notion of liveness beside the workers' own.

An engine given no topics *discovers* them, as TaskFlow's worker finder learns
them from the workers' notifications: every full scan first reads the topics
the workers announce (:func:`_transport.live_topics`), then their adverts. A
discovered task goes to the first of those topics, by name, whose live workers
offer it.

A worker that (re)appears also adds an entry to the arrivals stream
(:func:`protocol.arrivals_key`). The directory keeps the engine's place in it
(:meth:`Directory.watch_arrivals`, read before the run's first scan) and says
which entries are about its topics (:meth:`Directory.concerns`): the engine's
reply reader blocks on that stream beside its replies, and scans again at once
when a worker arrives, instead of at its next periodic look. The wait for
workers before a run (:meth:`Directory.wait_for`) blocks on the same stream
between its own periodic scans. An entry is only a hint: what the engine sends
still follows the adverts a scan reads and checks, and a worker that writes no
entry (an older one) is found at the next periodic look, as before.

A worker states in its advert the largest request body it reads
(``max_message_bytes``): it drops a larger one unread, as it cannot trust it,
and its engine would only learn of it at ``transition_timeout``, as a
``RequestTimeout`` saying no worker started it. The directory keeps the
smallest limit stated on each topic (:class:`SizeLimit`: any worker of the
topic may read a request from its stream), so the engine sends a request only
to a topic whose workers all read it (:meth:`Directory.fits`,
:meth:`Directory.route_sized`), and fails it at once, naming the limits
(:meth:`Directory.limits_text`), when none does. A worker that states no limit
(one written before the field) is trusted to read anything, as before.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from flowkit import exceptions as exc
from flowkit._utils.text import log_safe
from flowkit.engines.worker_based import _transport, protocol
from flowkit.engines.worker_based._clock import SYSTEM, Clock, runs_in_real_time

__all__ = ["Directory", "SizeLimit"]

LOG = logging.getLogger("flowkit.engines.worker_based.engine")

#: Most arrival entries taken by one read while waiting for workers.
_ARRIVALS_READ = 100


@dataclass(frozen=True)
class SizeLimit:
    """The smallest request body limit the live workers of one topic state, and whose it is."""

    #: The largest request body (bytes) every worker stating a limit reads.
    max_bytes: int
    #: The id of a worker stating that limit, for messages.
    worker: str


class Directory:
    """The live workers of some topics and the tasks they offer, as last scanned.

    Args:
        topics: topics in routing order (a task goes to the first that offers
            it); empty: the topics the workers announce, found at each full scan.
        namespace: prefix of the Redis keys.
        secret: HMAC key adverts must be signed with (None: no signing).
        max_bytes: largest advert body accepted.
        clock: what expiry, staleness and waiting are measured with.
        pinned: atom name -> topic, for atoms whose task names its own topic
            (``worker_topic``): they go there and nowhere else.
        look_every: seconds between the engine's periodic looks for workers
            (its reply reader's, and :meth:`wait_for`'s between arrivals): what
            finds a worker that writes no arrival entry.
        expiry: seconds after its ``sent_at`` an advert stops counting, even
            when it has not expired yet (TaskFlow's ``worker_expiry``); None:
            only the advert's own expiry counts.
    """

    def __init__(
        self,
        topics: Sequence[str],
        namespace: str,
        secret: bytes | None,
        max_bytes: int,
        clock: Clock = SYSTEM,
        pinned: Mapping[str, str] | None = None,
        expiry: float | None = None,
        *,
        look_every: float,
    ) -> None:
        self.topics = tuple(topics)
        self.look_every = look_every
        #: No topics given: the routing topics are those the workers announce.
        self.discovers = not self.topics
        self.pinned: dict[str, str] = dict(pinned or {})
        #: The topics tasks are routed to, in order: the given ones, or the discovered ones.
        self._routing = self.topics
        #: Every topic scanned: the routing ones, then the pinned ones not among them.
        self._scanned = self._with_pinned(self._routing)
        self._clock = clock
        self._expiry = expiry
        self.namespace = namespace
        self._secret = secret
        self._max_bytes = max_bytes
        # All replaced whole by scan(), so readers in other threads see one scan or the next.
        #: topic -> worker id -> its advert, as the last scan read or kept it.
        self._adverts: dict[str, dict[str, dict[str, Any]]] = {}
        self._offers: dict[str, frozenset[str]] = {topic: frozenset() for topic in self._scanned}
        self._live: dict[str, frozenset[str]] = {topic: frozenset() for topic in self._scanned}
        #: topic -> the smallest ``max_message_bytes`` its live workers state (absent: none states one).
        self._limits: dict[str, SizeLimit] = {}
        self._routes: dict[str, str] = {}
        #: How many scans were made: a task's route changes only when this does.
        self.scans = 0
        #: The arrivals stream (:func:`protocol.arrivals_key`) of the namespace.
        self.arrivals_key = protocol.arrivals_key(namespace)
        #: The id of the last arrival seen (None: arrivals are not watched).
        self.arrivals_seen: bytes | None = None
        self._topic_names = frozenset(topic.encode() for topic in self._scanned)

    def scan(
        self, client: _transport.Client, topics: Sequence[str] | None = None, *, reuse: bool = False
    ) -> None:
        """Read the adverts of ``topics`` (default: all) and remember who offers what.

        With ``reuse`` (a periodic look, made to find workers that write no
        arrival entry, or a check that running requests' workers still live),
        the members of each topic are read, and only the adverts of workers
        the last scan did not keep, or whose kept advert is three heartbeats
        old (see :meth:`_still_counts`): a look over many known workers then
        costs one round trip, not two and a read of every advert. A read would
        return the same advert but for its ``sent_at`` (a worker's tasks,
        topic and limit are fixed for its life), and the member's score, which
        the same beats extend, says the worker lives. A worker that restarts
        under the same id with other tasks writes an arrival entry, whose scan
        reads everything; one that writes none (an older release) is read
        again within three heartbeats, as its kept advert comes due.

        Raises:
            redis.RedisError: Redis could not be asked (a ``_transport.errors()`` one).
        """
        if topics is None and self.discovers:
            # A full scan starts afresh: topics whose workers all left drop out.
            routing = tuple(_transport.live_topics(client, self.namespace, now=self._clock.time()))
            scanned = self._with_pinned(routing)
            offers: dict[str, frozenset[str]] = {}
            live: dict[str, frozenset[str]] = {}
            limits: dict[str, SizeLimit] = {}
            known: dict[str, dict[str, dict[str, Any]]] = {}
        else:
            routing, scanned = self._routing, self._scanned
            offers, live, limits = dict(self._offers), dict(self._live), dict(self._limits)
            known = dict(self._adverts)
        for topic in scanned if topics is None else topics:
            now = self._clock.time()
            if reuse:
                adverts = self._reread(client, topic, now)
            else:
                adverts = _transport.live_workers(
                    client, self.namespace, topic, self._secret, self._max_bytes, now=now
                )
            if self._expiry is not None:
                adverts = {
                    worker: advert
                    for worker, advert in adverts.items()
                    if now - advert["sent_at"] <= self._expiry
                }
            known[topic] = adverts
            live[topic] = frozenset(adverts)
            offers[topic] = frozenset(name for advert in adverts.values() for name in _names(advert))
            limit = _smallest_limit(adverts)
            if limit is None:
                limits.pop(topic, None)
            else:
                limits[topic] = limit
        self._adverts, self._offers, self._live, self._limits = known, offers, live, limits
        self._routing, self._scanned = routing, scanned
        self._routes = {}
        self.scans += 1

    def _reread(self, client: _transport.Client, topic: str, now: float) -> dict[str, dict[str, Any]]:
        """The adverts of ``topic``'s members: those the last scan kept that still count, the others read."""
        members = _transport.live_members(client, self.namespace, topic, now=now)
        previous = self._adverts.get(topic, {})
        kept = {worker: previous[worker] for worker in members if worker in previous}
        kept = {worker: advert for worker, advert in kept.items() if self._still_counts(advert, now)}
        unread = [worker for worker in members if worker not in kept]
        read = _transport.read_adverts(
            client, self.namespace, topic, unread, self._secret, self._max_bytes, now=now
        )
        adverts: dict[str, dict[str, Any]] = {}
        for worker in members:  # in the members' order, as a full read gives them
            advert = kept.get(worker) or read.get(worker)
            if advert is not None:
                adverts[worker] = advert
        return adverts

    def _still_counts(self, advert: Mapping[str, Any], now: float) -> bool:
        """Whether an advert read earlier may stand for a read at ``now``.

        For three of its heartbeats after its ``sent_at``: as long as the
        advert's own expiry in Redis, short of the staleness a read refuses
        (three heartbeats and the clock skew allowed). ``worker_expiry`` is
        checked as a read checks it. Past either, the advert is read again.
        """
        age = now - advert["sent_at"]
        return age <= 3 * advert["heartbeat"] and (self._expiry is None or age <= self._expiry)

    def watch_arrivals(self, client: _transport.Client) -> None:
        """Remember where the arrivals stream ends now: the arrivals after it are news.

        Call it before the scan the run starts from: a worker that arrives after
        that scan then always leaves an entry past this mark, so no arrival falls
        between the two unseen (one seen twice costs a scan, not a mistake).

        Raises:
            redis.RedisError: Redis could not be asked (a ``_transport.errors()`` one).
        """
        try:
            last = client.xrevrange(self.arrivals_key, "+", "-", count=1)
        except _transport.refusals() as err:
            self.stop_watching_arrivals(err)
            return
        self.arrivals_seen = _transport.as_bytes(last[0][0]) if last else b"0-0"

    def stop_watching_arrivals(self, error: Exception) -> None:
        """Give up on the arrivals stream Redis refused to read (an ACL older than it), saying so.

        The engine still finds new workers at its periodic look, as it did before
        workers wrote arrivals: refusing the stream must cost promptness, not the run.
        """
        self.arrivals_seen = None
        LOG.warning(
            "the worker-based engine cannot read the arrivals stream '%s' (%s: %s): requests held for"
            " a worker go out at its next periodic look for workers (every %g s), not as the worker"
            " arrives (and worker_wait sees a worker only at such a look); let the engine's Redis user"
            " read that key",
            self.arrivals_key,
            type(error).__name__,
            error,
            self.look_every,
        )

    def concerns(self, fields: Mapping[Any, Any]) -> bool:
        """Whether an arrival entry's worker may serve a topic this directory routes to.

        An engine that discovers its topics cares about every arrival; one given
        topics only about its own (and its pinned ones). An entry that names no
        topic counts: a needless scan is cheaper than a missed worker.
        """
        topic = fields.get(b"topic")
        return self.discovers or not isinstance(topic, bytes) or topic in self._topic_names

    def take_arrivals(self, entries: Sequence[tuple[Any, Any]]) -> bool:
        """Note ``entries`` (read from the arrivals stream) as seen; whether one :meth:`concerns` us.

        The one place the engine's mark in the stream moves, whoever read the
        entries (the reply reader, the wait for workers), so the next read
        starts right after them and no arrival is read twice or skipped.
        """
        if not entries:
            return False
        self.arrivals_seen = _transport.as_bytes(entries[-1][0])
        return any(self.concerns(fields) for _, fields in entries)

    def _with_pinned(self, routing: tuple[str, ...]) -> tuple[str, ...]:
        return routing + tuple(sorted(set(self.pinned.values()) - set(routing)))

    def topic_of(self, task: str) -> str | None:
        """The first topic whose live workers offered ``task`` at the last scan, if any."""
        topic = self._routes.get(task)
        if topic is None:
            offers = self._offers
            topic = next((t for t in self._routing if task in offers.get(t, ())), None)
            if topic is not None:
                self._routes[task] = topic
        return topic

    def route(self, atom: str, task: str) -> str | None:
        """The topic a request of ``atom`` (running ``task``) goes to, or None when nobody offers it.

        A pinned atom goes to its own topic, when that topic's workers offer
        the task; any other atom goes to the first routing topic that does.
        """
        topic = self.pinned.get(atom)
        if topic is None:
            return self.topic_of(task)
        return topic if task in self._offers.get(topic, frozenset()) else None

    def fits(self, topic: str, size: int) -> bool:
        """Whether every live worker of ``topic`` at the last scan reads a request body of ``size`` bytes.

        A topic whose workers state no limit (older workers) takes any size, as
        it did before workers stated one.
        """
        limit = self._limits.get(topic)
        return limit is None or size <= limit.max_bytes

    def route_sized(self, atom: str, task: str, size: int) -> str | None:
        """The topic a request of ``size`` bytes for ``atom`` goes to, or None when none takes it.

        As :meth:`route`, but past topics whose workers would drop a body that
        large unread: the first routing topic (the pinned one only, for a pinned
        atom) that offers the task and :meth:`fits` the size. Not cached: it is
        asked only for a request too large for the topic :meth:`route` chose.
        """
        return next((topic for topic in self._offering(atom, task) if self.fits(topic, size)), None)

    def limits_text(self, atom: str, task: str) -> str:
        """The size limits of the topics offering ``task`` to ``atom``: the error of a request none takes."""
        parts = []
        for topic in self._offering(atom, task):
            limit = self._limits.get(topic)
            if limit is not None:
                parts.append(
                    f"topic '{topic}' reads at most {limit.max_bytes} bytes"
                    f" (the max_message_bytes of worker {log_safe(limit.worker)})"
                )
        return "; ".join(parts)

    def _offering(self, atom: str, task: str) -> list[str]:
        """The topics ``atom`` may go to whose workers offer ``task``, in routing order
        (its own topic only, for a pinned atom)."""
        pinned = self.pinned.get(atom)
        candidates = self._routing if pinned is None else (pinned,)
        offers = self._offers
        return [topic for topic in candidates if task in offers.get(topic, ())]

    def live(self, topic: str) -> frozenset[str]:
        """Ids of the workers of ``topic`` that were advertised at the last scan."""
        return self._live.get(topic, frozenset())

    def wait_for(
        self,
        client: _transport.Client,
        needed: Mapping[str, str],
        wait: float,
        *,
        block_ms: int,
    ) -> None:
        """Wait up to ``wait`` seconds until every task in ``needed`` is offered somewhere.

        It scans the adverts at once, then each time a worker of its topics
        arrives (an entry on the arrivals stream, read by a blocking read as the
        reply reader reads it), and every :attr:`look_every` seconds for the workers
        that write no entry (older ones, or those Redis refuses it to), and a
        last time as ``wait`` runs out. Waiting thus costs a blocking read per
        ``block_ms`` and a scan per :attr:`look_every`, not a scan every few
        milliseconds, and a worker that arrives is seen within milliseconds.

        The arrivals are read only on the system clock: a blocking read waits in
        real time, which another clock (a test's, moved by hand) need not
        follow, so with one the waits between scans are that clock's
        ``sleep(look_every)``. So they are too when Redis refuses the arrivals
        stream (said once, at WARNING) or :meth:`watch_arrivals` was not called.

        Args:
            client: the Redis client to scan with.
            needed: atom name -> task name.
            wait: seconds to keep scanning before giving up.
            block_ms: longest block of one read of the arrivals stream (the
                engine's ``BLOCK_MS``: the client's socket timeout allows it).

        Raises:
            NotFound: some tasks are still not offered; the message names each
                missing atom with its task, and the topics searched.
            redis.RedisError: Redis could not be asked (a ``_transport.errors()`` one).
        """
        clock = self._clock
        deadline = clock.monotonic() + wait
        # How late Redis may end a block: on its timer's tick, every 100 ms at its default hz
        # of 10, so about a block late. Raised to the lateness seen; see _await_arrival.
        late = block_ms / 1000
        arrived = True  # the first scan reads every advert, as a worker's arrival does
        while True:
            self.scan(client, reuse=not arrived)
            missing = {atom: task for atom, task in needed.items() if self.route(atom, task) is None}
            now = clock.monotonic()
            if not missing or now >= deadline:
                break
            awaited = self._await_arrival(
                client, min(now + self.look_every, deadline), deadline, block_ms, late
            )
            arrived, late = awaited.arrived, awaited.late
        if missing:
            listed = ", ".join(
                f"atom '{atom}' (task {task}{self._pin_text(atom)})" for atom, task in sorted(missing.items())
            )
            searched = f"topic(s) {list(self._scanned)}" if self._scanned else "the topics workers announce"
            raise exc.NotFound(
                f"no live worker offers the task(s) of {listed}; searched {searched}"
                f" in namespace '{self.namespace}' for {wait:g} s"
            )

    def _await_arrival(
        self, client: _transport.Client, until: float, deadline: float, block_ms: int, late: float
    ) -> _Awaited:
        """Return once a worker of our topics arrives, or at ``until`` (monotonic, on the clock).

        Blocks on the arrivals stream, in reads of at most ``block_ms``; an
        arrival about other topics is noted and waited past. A read is begun
        only if it ends before ``deadline`` even ``late`` seconds after its time
        (Redis ends a block on its timer's tick, not at once), so a wait is not
        drawn out past its ``worker_wait``: the last stretch before it, and every
        wait without the stream (another clock, a refused or unwatched stream),
        is a sleep on the clock, a worker arriving meanwhile then found by the
        scan that follows it.

        Returns:
            whether a worker arrived (not the time running out), and ``late``
            raised to how late this wait's reads ended, if later.

        Raises:
            redis.RedisError: Redis could not be reached (a transient
                ``_transport.errors()`` one; a refusal only ends the watching).
        """
        clock = self._clock
        while True:
            now = clock.monotonic()
            left = until - now
            if left <= 0:
                return _Awaited(arrived=False, late=late)
            # At least 1 ms: a block of 0 would wait for ever.
            block = max(1, min(block_ms, math.ceil(left * 1000)))
            seen = self.arrivals_seen
            if seen is None or not runs_in_real_time(clock) or deadline - now < block / 1000 + late:
                clock.sleep(left)  # looked at again: a sleep that ended a hair early sleeps the rest
                continue
            try:
                reply = client.xread({self.arrivals_key: seen}, count=_ARRIVALS_READ, block=block)
            except _transport.errors() as err:
                if _transport.is_transient(err):
                    raise
                self.stop_watching_arrivals(err)  # refused (an ACL, a key of another type): sleep instead
                continue
            late = max(late, clock.monotonic() - now - block / 1000)
            for _stream, entries in _transport.stream_entries(reply):
                if self.take_arrivals(entries):
                    return _Awaited(arrived=True, late=late)

    def searched(self, atom: str) -> str:
        """Where a task of ``atom`` is looked for, for messages (its pinned topic, or the routing ones)."""
        topic = self.pinned.get(atom)
        if topic is not None:
            return f"pinned topic '{topic}'"
        if self.discovers:
            return "the topics workers announce"
        return f"topic(s) {list(self.topics)}"

    def _pin_text(self, atom: str) -> str:
        topic = self.pinned.get(atom)
        return "" if topic is None else f", pinned to topic '{topic}'"


class _Awaited(NamedTuple):
    """How a wait between two looks of :meth:`Directory.wait_for` ended."""

    #: A worker of our topics arrived (its scan reads every advert); False: the time ran out.
    arrived: bool
    #: How late Redis ended a blocking read, at most, so far.
    late: float


def _smallest_limit(adverts: Mapping[str, Mapping[str, Any]]) -> SizeLimit | None:
    """The smallest ``max_message_bytes`` among ``adverts`` (worker id -> advert); None: none states one."""
    stated = [
        SizeLimit(int(advert["max_message_bytes"]), worker)
        for worker, advert in adverts.items()
        if "max_message_bytes" in advert
    ]
    return min(stated, key=_max_bytes) if stated else None


def _max_bytes(limit: SizeLimit) -> int:
    return limit.max_bytes


def _names(advert: Mapping[str, Any]) -> list[str]:
    tasks = advert.get("tasks")
    return [name for name in tasks if isinstance(name, str)] if isinstance(tasks, list) else []
