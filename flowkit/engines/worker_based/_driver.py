"""The worker-based engine's driver: requests out through Redis, responses back.

Two threads share one Redis client (a pool of connections):

* the engine thread turns each ready atom into a request, and at the end of a
  scheduling round adds all of them to the topics' streams in one pipeline;
* one reader thread blocks on the engine's reply stream, turns responses into
  completions (and progress into progress events), and every tick enforces the
  timeouts of the request lifecycle (``doc/workers_protocol.rst``).

A request whose task no live worker offers yet (on the given topics, or on
those the workers announce) is held by the engine (WAITING, as TaskFlow's
engine holds one its finder has no worker for): every tick scans the topics
again and sends it once some worker offers it, or fails it with
``RequestTimeout`` when ``transition_timeout`` passes first.

``max_in_flight`` bounds the requests *out* (PENDING or RUNNING: added to a
topic's stream), counted under the lock from the ledger of the requests'
states, the one record of it (:class:`_Ledger`, which keeps the held requests
in their own ordered structures: a send costs what it sends, not the number
of requests held or waiting). A held request was never sent and takes no room, so a task no
worker offers does not hold back the tasks that have workers. Either thread
may send (the engine thread new requests, the reader thread held ones a
worker now offers), so a slot is claimed, by moving the request to PENDING,
in the same lock hold as the count. A held request whose worker appears while
the window is full stays WAITING, first in line for the next free slot (ahead
of newer requests, in the order they were held), with its deadline running.

Under a limit a request's topic is chosen as it is claimed, from the
directory's last scan, not when it began to wait for room: the workers of the
topic it was routed to earlier may have left, and another topic's may have
come. One nobody offers then is held like any other (a held one keeps its
deadline). So that view is current when room frees, the reader's tick scans
all the topics while any request waits, held or for room (one ``live_workers``
read per topic, at most every tick). Without a limit nothing waits for room:
requests leave in the scheduling round that routed them.

A request Redis refuses to add to its topic's stream (a wrong type, an ACL, a
full memory) fails at once, as any task that fails; one whose add failed for
now (a lost connection) is held again (WAITING, its topic and deadline kept)
and the reader's tick tries it again, so the engine thread goes on with other
completions meanwhile; at its deadline it fails saying so, naming the stream
and the last error, not that no worker offered it. The commands of one
pipeline fail one by one: a request added beside a refused one is not added
again.

While the reader cannot reach Redis (each command bounded by the client's
socket timeout, so a frozen server fails it rather than holding it), no
request times out on its own: no worker could have answered. Past
``outage_timeout`` the reader ends the run (``Completions.put_fatal``) naming
the atoms whose requests were out or held; they stay ``RUNNING`` in storage,
in doubt, for a resume, and close() sends nothing more to Redis.

Every request reaches the completion queue exactly once: whoever moves it to
DONE first (a terminal response, a timeout, a send that gave up) reports it,
under one lock; responses that come later are ignored.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from flowkit import dynamic
from flowkit import exceptions as exc
from flowkit._utils.text import log_safe
from flowkit.engines import _scheduler as sch
from flowkit.engines._compiler import Node
from flowkit.engines._completions import Completion, Completions
from flowkit.engines._engine import DispatchingDriver
from flowkit.engines._runtime import Call, Runtime, call_outcome
from flowkit.engines.worker_based import _transport, _wakeable, protocol
from flowkit.engines.worker_based._alarm import Alarm
from flowkit.engines.worker_based._clock import SYSTEM, Clock, runs_in_real_time
from flowkit.engines.worker_based._directory import Directory
from flowkit.engines.worker_based._dues import Dues
from flowkit.patterns import loop_flow
from flowkit.persistence.backends._urls import mask_url
from flowkit.task import EVENT_UPDATE_PROGRESS
from flowkit.types.failure import Failure

__all__ = ["BLOCK_MS", "LOOK_EVERY", "RedisDriver", "Settings"]

LOG = logging.getLogger("flowkit.engines.worker_based.engine")

#: Longest XREAD block (ms): bounds how long close() waits, and on a test's clock (no
#: alarm) how late a deadline fires; Redis ends a block on its timer's tick, up to 100 ms later.
BLOCK_MS = 100
#: Most replies taken by one XREAD.
_READ_COUNT = 1000
#: Longest time (s) between two looks for workers and expired requests (shorter for a
#: short ``transition_timeout``). Workers that write an arrival entry are noticed at once.
LOOK_EVERY = 0.25
#: Seconds between two tidy-ups of the reply stream (expiry refreshed, read replies trimmed).
_TOUCH_EVERY = 10.0
_REPLY_TTL_MS = int(protocol.REPLY_TTL * 1000)

#: The field of the entry close() adds to its own reply stream to end the reader's wait.
_WAKE = b"flowkit-engine-closing"

WAITING, PENDING, RUNNING, DONE = "WAITING", "PENDING", "RUNNING", "DONE"

#: Seconds before a deadline within which the reader waits for it itself rather than block.
_ALARM_MARGIN = 0.002


class _Due(NamedTuple):
    """When the reply reader must act next (monotonic seconds; None: nothing pending)."""

    #: The earliest deadline of a request (the alarm wakes a blocked read for it).
    deadline: float | None
    #: That, or the next look for workers if sooner (checked after each read).
    at: float | None


#: Said once at INFO when Redis refuses the alarm's wake.
_ALARM_REFUSED = (
    "the worker-based engine (%(error)s): a request's timeout or expiry may fire up to 0.2 s late,"
    " when the reply reader's blocking read ends"
)


@dataclass(frozen=True)
class Settings:
    """The engine options the driver acts on (checked by the engine)."""

    url: str
    namespace: str
    secret: bytes | None
    max_bytes: int
    transition_timeout: float
    max_in_flight: int | None
    #: Seconds Redis may stay unreachable before the run stops, its requests in doubt.
    outage_timeout: float = 60.0
    #: What every deadline and timeout is read from (tests pass one they move).
    clock: Clock = SYSTEM
    #: Where a request's ``traceparent`` comes from (the engine's list, shared: a
    #: tracing listener may join it); empty: requests carry none.
    trace_sources: Sequence[Callable[[str], str | None]] = ()
    #: Told ``(atom name, worker id)`` when a worker starts a request (the
    #: engine's list, shared: a tracing listener may join it).
    start_watchers: Sequence[Callable[[str, str], None]] = ()


class _Request:
    """One request sent (or about to be) and not yet finished."""

    __slots__ = (
        "action",
        "deadline",
        "entry_id",
        "envelope",
        "gone_since",
        "held_order",
        "id",
        "node",
        "started_at",
        "state",
        "task",
        "timeout",
        "topic",
        "unsent",
        "worker",
    )

    def __init__(self, request_id: str, node: Node, action: int, task: str, topic: str) -> None:
        self.id = request_id
        self.node = node
        self.action = action
        self.task = task
        self.topic = topic
        self.state = PENDING  # written by _Ledger.move only, once the request is in the ledger
        self.held_order = -1  # its place among held requests, from when it was first held
        self.deadline = 0.0  # monotonic; set when sent
        self.entry_id: bytes | None = None
        self.envelope: dict[str, bytes] = {}  # kept while WAITING for a worker (or for room)
        self.worker: str | None = None
        self.gone_since: float | None = None  # when its worker was first seen without an advert
        self.timeout: float | None = None  # the task's own timeout, counted from RUNNING
        self.started_at = 0.0  # monotonic; when its worker said it started
        #: Why the last try to add it to a stream failed, while no try has succeeded ("" : none failed).
        self.unsent = ""

    def describe(self) -> str:
        verb = "revert" if self.action == sch.REVERT else "execute"
        where = f"topic {self.topic}" if self.topic else "no topic offers it"
        return f"the {verb} request of atom '{self.node.name}' (task {self.task}, {where})"

    def not_sent(self, namespace: str, error: Exception) -> None:
        """Remember that adding it to its topic's stream failed with ``error`` (for its failure's message)."""
        stream = protocol.requests_key(namespace, self.topic)
        self.unsent = f"adding it to stream '{stream}' (topic {self.topic}) failed: {_error_text(error)}"


#: A request with the envelope to add to its topic's stream.
_Envelope = tuple[_Request, dict[str, bytes]]


class _Ledger:
    """The requests not DONE and their states: the one record of both, changed by :meth:`move`.

    Besides every live request by id (a reply finds its own here), the WAITING ones
    are kept in their own ordered structures, oldest held first, split by whether a
    worker offered their task when they were last routed: ``for_room`` (routed to a
    topic, waiting for a slot) or ``for_worker`` (nobody offers it). A send then
    claims the held requests it sends without walking those nobody offers, and the
    requests out (PENDING or RUNNING) are counted from the structures' sizes, not
    walked nor kept in a counter beside the states. Use under the driver's lock.
    """

    def __init__(self) -> None:
        self.live: dict[str, _Request] = {}
        self.for_room: dict[str, _Request] = {}
        self.for_worker: dict[str, _Request] = {}
        #: ``Directory.scans`` when the held requests were last routed.
        self.routed_at = -1
        self._order = itertools.count()

    @property
    def out(self) -> int:
        """How many requests are out: PENDING or RUNNING, the live ones not held."""
        return len(self.live) - len(self.for_room) - len(self.for_worker)

    def move(self, request: _Request, state: str) -> None:
        """Put ``request`` in ``state``, and in the structures that go with it (DONE: in none)."""
        if request.state == WAITING:
            self.for_room.pop(request.id, None)
            self.for_worker.pop(request.id, None)
        request.state = state
        if state == DONE:
            self.live.pop(request.id, None)
            return
        self.live[request.id] = request  # one already there keeps its place
        if state == WAITING:
            if request.held_order < 0:
                request.held_order = next(self._order)
            _insert(self.for_room if request.topic else self.for_worker, request)

    def route(self, request: _Request, topic: str) -> None:
        """Set the topic of the WAITING ``request`` ("": nobody offers its task), moving it if need be."""
        if bool(topic) != bool(request.topic):
            (self.for_room if request.topic else self.for_worker).pop(request.id)
            _insert(self.for_room if topic else self.for_worker, request)
        request.topic = topic

    def route_all(self, route: Callable[[_Request], str], scans: int) -> None:
        """Route every held request again, after the directory's scan number ``scans``.

        Done once per scan, not per send: between two scans a task's route stays
        the same, so the split holds until the next one.
        """
        for_room: dict[str, _Request] = {}
        for_worker: dict[str, _Request] = {}
        for request in _oldest_first(self.for_room.values(), self.for_worker.values()):
            request.topic = route(request)
            (for_room if request.topic else for_worker)[request.id] = request
        self.for_room, self.for_worker, self.routed_at = for_room, for_worker, scans

    def clear(self) -> list[_Request]:
        """Forget every request (the driver is closing) and return them, states untouched."""
        left = list(self.live.values())
        self.live, self.for_room, self.for_worker = {}, {}, {}
        return left


def _held_order(request: _Request) -> int:
    return request.held_order


def _oldest_first(*held: Iterable[_Request]) -> Iterable[_Request]:
    """The requests of ordered structures of held requests, merged, oldest held first."""
    return heapq.merge(*held, key=_held_order)


def _insert(held: dict[str, _Request], request: _Request) -> None:
    """Add ``request`` to ``held`` in the order requests were first held.

    A new one goes at the end; one held again (its send failed for now) or moved
    between the structures may belong further up, and the structure is put in order
    again then (rare: a send that failed, a worker that came or went).
    """
    if held and _held_order(next(reversed(held.values()))) > request.held_order:
        ordered = sorted([*held.values(), request], key=_held_order)
        held.clear()
        held.update((r.id, r) for r in ordered)
    else:
        held[request.id] = request


class RedisDriver(DispatchingDriver):
    """Sends tasks to workers through Redis streams and hears back on a reply stream."""

    def __init__(self, client: _transport.Client, directory: Directory, settings: Settings) -> None:
        super().__init__()
        self._client = client
        self._directory = directory
        self._settings = settings
        self._lock = threading.Lock()
        self._ledger = _Ledger()  # the requests sent or held, while not DONE
        self._dues = Dues(frozenset((PENDING, WAITING)), RUNNING)  # their deadlines, for the alarm
        self._reading: _wakeable.Reader | None = None  # the reply reader's connection
        self._alarm: Alarm | None = None  # wakes its read at a deadline (real clock only)
        self._outgoing: deque[tuple[_Request, dict[str, Any]]] = deque()  # built, not yet sent
        self._closing = threading.Event()
        self._reader: threading.Thread | None = None
        self._runtime: Runtime | None = None
        self._reply_key = ""
        self._last_id = b"0-0"
        self._redis_down_since: float | None = None
        #: Set when Redis stayed unreachable past ``outage_timeout``: the run is over, close() sends nothing.
        self._lost = False

    # -- life cycle -----------------------------------------------------------

    def open(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._reply_key = protocol.replies_key(self._settings.namespace, uuid.uuid4().hex)
        try:
            # A stream exists only once it had an entry: add one, delete it, keep the empty stream.
            pipe = self._client.pipeline(transaction=True)
            pipe.xadd(self._reply_key, {"opened": b"1"})
            pipe.pexpire(self._reply_key, _REPLY_TTL_MS)
            first_id, _ = pipe.execute()
            self._client.xdel(self._reply_key, first_id)
            # The reader's own connection: the one just used, as the reader's first read took it before.
            reading = self._reading = _wakeable.open_reader(self._client, _ALARM_REFUSED, LOG, borrow=True)
        except _transport.errors() as err:
            raise exc.ExecutionFailure(
                f"the worker-based engine cannot open its reply stream {self._reply_key} on Redis at"
                f" {mask_url(self._settings.url)}: {_error_text(err)}; no atom was started",
                cause=err,
            ) from err
        self._last_id = first_id
        if runs_in_real_time(self._settings.clock):
            self._alarm = Alarm(reading.wake, self._settings.clock)
        self._reader = threading.Thread(target=self._read_loop, name="flowkit-replies", daemon=True)
        self._reader.start()

    def close(self) -> None:
        self._closing.set()
        if self._lost:
            # Every command would wait out its socket timeout: nothing is taken back. The
            # reply stream expires on its own; a request a worker reads later is answered
            # to nobody, and the resumed run sends its atom again.
            if self._reader is not None:
                self._reader.join()
            self._close_reading()
            with self._lock:
                self._ledger.clear()
                self._dues.clear()
            self._client.close()
            return
        if self._reader is not None:
            # Wake the reader from its blocking read rather than wait out the block.
            with contextlib.suppress(*_transport.errors()):
                self._client.xadd(self._reply_key, {_WAKE: b"1"})
            self._reader.join()
        self._close_reading()
        with self._lock:
            left = self._ledger.clear()
            self._dues.clear()
        try:
            # Requests no worker started yet are taken back, so nobody runs them for no one.
            self._forget([r for r in left if r.state == PENDING])
            if any(r.state == RUNNING for r in left):
                # Their workers will still answer; the stream keeps its expiry, so it goes.
                self._client.pexpire(self._reply_key, _REPLY_TTL_MS)
            else:
                self._client.delete(self._reply_key)
        except _transport.errors() as err:
            LOG.warning("could not clean up reply stream %s: %s", self._reply_key, err)
        finally:
            self._client.close()

    def _here(self) -> _transport.Client:
        """The client for the calling thread's commands: the reply reader's own on its thread.

        The reader's commands between two reads (looks for workers, take-backs,
        held requests' sends, tidy-ups) go on the connection it reads on, idle
        then: a pooled one beside it would make a run open one more connection.
        """
        reading = self._reading
        if reading is not None and threading.current_thread() is self._reader:
            return reading.client
        return self._client

    def _close_reading(self) -> None:
        """Stop the alarm and close the reply reader's connection (its thread has ended)."""
        if self._alarm is not None:
            self._alarm.close()
        if self._reading is not None:
            self._reading.close()

    # -- sending --------------------------------------------------------------

    def schedule(self, runtime: Runtime) -> None:
        super().schedule(runtime)
        self._send()

    def wait(self, timeout: float | None) -> list[Completion]:
        self._send()  # what a full window held back
        return super().wait(timeout)

    def dispatch_timed(self, runtime: Runtime, node: Node, action: int, call: Call, seconds: float) -> None:
        # The worker is not interrupted: past the timeout (counted from its RUNNING
        # response) the reader thread refuses the result, in _tick.
        request = self.dispatch(self._done, node, action, call)
        if request is not None:
            request.timeout = seconds

    def dispatch(self, done: Completions, node: Node, action: int, call: Call) -> _Request | None:
        if type(node.atom) is loop_flow.Until:
            # A loop's until only decides (and its predicate is code): run it here.
            done.put(node, action, *call_outcome(call))
            return None
        kwargs: dict[str, Any] = call.kwargs["kwargs"]
        task = protocol.task_name(call.kwargs["atom"])
        directory = self._directory
        # No live worker offers the task yet: no topic (""), and the request is held WAITING.
        topic = directory.route(node.name, task) or ""
        request = _Request(str(uuid.uuid4()), node, action, task, topic)
        sources = self._settings.trace_sources
        traceparent = sources[-1](node.name) if sources else None
        try:
            if action == sch.REVERT:
                arguments = dict(kwargs)
                result = arguments.pop("result", None)
                flow_failures = arguments.pop("flow_failures", None) or {}
                if isinstance(result, Failure):
                    extra: dict[str, Any] = {"failure": result}
                else:
                    extra = {"result": result}
                message = protocol.request_message(
                    request.id, self._reply_key, protocol.REVERT, task, node.name, arguments, 0.0,
                    flow_failures=flow_failures, traceparent=traceparent, **extra,
                )  # fmt: skip
            else:
                message = protocol.request_message(
                    request.id, self._reply_key, protocol.EXECUTE, task, node.name, kwargs, 0.0,
                    traceparent=traceparent,
                )  # fmt: skip
        except (ValueError, TypeError, exc.InvalidFormat) as err:
            done.put(node, action, False, _invalid(request, str(err)))
            return None
        self._outgoing.append((request, message))
        return request

    def _send(self) -> None:
        """Send what the in-flight window allows: held requests a worker offers first, then new ones.

        New requests leave in order; one a worker offers but the window has no
        room for stops the line (with those behind it), without a deadline yet.
        One no worker offers leaves at its turn all the same, to be held
        (WAITING takes no room). Encoding happens outside the lock; a request
        that cannot be encoded gives its slot back as it finishes.
        """
        limit = self._settings.max_in_flight
        if not self._outgoing and limit is None:  # no limit: a held request never waits for room
            return
        settings = self._settings
        now, now_mono = settings.clock.time(), settings.clock.monotonic()
        deadline = now_mono + settings.transition_timeout
        with self._lock:
            room = self._room()
            released: list[tuple[_Request, dict[str, bytes]]] = []
            if room is not None:  # unlimited, the reader sends a held request once a worker offers it
                released = self._claim_released(now_mono, room)
                room -= len(released)
            outgoing = self._outgoing
            batch = [outgoing.popleft() for _ in range(self._leaving(room))]
            for request, _ in batch:
                request.deadline = deadline
                self._dues.expires(request)
                if request.topic:  # PENDING from here: its slot is taken before the lock is let go
                    self._ledger.move(request, PENDING)
        if batch and self._alarm is not None:
            # The reader may be blocked towards a later deadline (or none): this one first.
            self._alarm.sooner(deadline)
        ready: list[tuple[_Request, dict[str, bytes]]] = []
        held: list[_Request] = []
        for request, message in batch:
            message["sent_at"] = now
            message["deadline"] = now + settings.transition_timeout
            try:
                envelope = protocol.encode(message, settings.secret, settings.max_bytes)
            except protocol.ProtocolError as err:
                self._finish(request, _invalid(request, err.reason))
                continue
            if request.topic:
                ready.append((request, envelope))
            else:  # no live worker offers its task yet: held until one does (see _release)
                request.envelope = envelope
                held.append(request)
        if held:
            first = held[0].describe()  # before the reader may route it again
            with self._lock:
                for request in held:
                    self._ledger.move(request, WAITING)
            # One line per batch (a wide flow with no workers yet would say it a thousand times),
            # said once they are held: from here the reader's next tick may send them, so
            # whoever reads the line (a test moving a fake clock, say) may count on that.
            LOG.info(
                "%d request(s) wait up to %g s for a live worker offering their task; the first: %s",
                len(held),
                settings.transition_timeout,
                first,
            )
        if released or ready:
            self._add(released + ready)

    def _room(self) -> int | None:
        """Free slots of the in-flight window (None: no limit); call with the lock held.

        Counted from the ledger, the one record of what is out (its structures'
        sizes: no walk over the requests, no counter of its own).
        """
        limit = self._settings.max_in_flight
        if limit is None:
            return None
        return max(limit - self._ledger.out, 0)

    def _claim_released(self, now: float, room: int | None) -> list[tuple[_Request, dict[str, bytes]]]:
        """Move held requests a worker now offers to PENDING, oldest first, up to ``room``.

        Call with the lock held, in the same hold as :meth:`_room`: the claim and
        the count are one step, so the two threads never both take the last slot.
        Each is routed again as it is claimed: one that found a worker while the
        window was full may have lost it since; nobody offering its task now, it
        stays held, its topic cleared and its deadline kept. One past its deadline
        is left for the reader's timeout check to fail.

        Only the held requests a worker offered at their last routing are walked
        (``_Ledger.for_room``); all of them are routed again first when the
        directory has scanned since, as a route changes only with a scan. So a
        claim costs what it sends, not the number of requests held.
        """
        claimed: list[tuple[_Request, dict[str, bytes]]] = []
        if room == 0:
            return claimed
        ledger = self._ledger
        if ledger.routed_at != self._directory.scans:
            ledger.route_all(self._route, self._directory.scans)
        lost: list[_Request] = []
        for request in ledger.for_room.values():
            if now >= request.deadline:
                continue
            topic = self._route(request)
            if not topic:  # its workers left in a scan made since the routing (by the other thread)
                lost.append(request)
                continue
            request.topic = topic
            claimed.append((request, request.envelope))
            if room is not None and len(claimed) == room:
                break
        for request in lost:  # moved once the walk is over
            ledger.route(request, "")
        for request, _ in claimed:
            ledger.move(request, PENDING)
        return claimed

    def _leaving(self, room: int | None) -> int:
        """How many outgoing requests, from the front, may leave: those a worker offers fit in ``room``.

        Under a limit each is routed again as it comes to leave (:meth:`_route`),
        as it may have waited for room since :meth:`dispatch` routed it; call with
        the lock held. Without one they all leave in the round that routed them.
        """
        if room is None:
            return len(self._outgoing)
        for index, (request, _) in enumerate(self._outgoing):
            request.topic = self._route(request)
            if request.topic:
                if room == 0:
                    return index
                room -= 1
        return len(self._outgoing)

    def _route(self, request: _Request) -> str:
        """The topic ``request`` goes to by the directory's last scan ("": nobody offers its task)."""
        return self._directory.route(request.node.name, request.task) or ""

    def _add(self, ready: list[_Envelope]) -> None:
        """XADD ``ready`` once; hold again those whose add failed for now, for the reader to retry.

        A refusal (a wrong type, an ACL, a full memory: see ``_transport.is_transient``)
        fails its request at once (:meth:`_try_add`): it would be refused the same way
        until the deadline. An add that failed for now (a lost connection) is not
        retried here, which would keep the engine thread from every other completion
        until Redis came back or the deadline passed: the request goes back to
        WAITING with its topic, envelope and deadline, and the reader's tick sends it
        again (:meth:`_release`) or fails it at its deadline saying why. Moving it
        there under the lock hands it over: only a claim (:meth:`_claim_released`)
        takes a WAITING request out again, once, so it is never sent by both threads.
        """
        ready = [item for item in ready if item[0].state != DONE]
        if not ready:
            return
        retry = self._try_add(ready)
        if not retry:
            return
        now, closing = self._settings.clock.monotonic(), self._closing.is_set()
        # Held requests sent late keep their earlier deadlines: each fails at its own.
        late = {request.id for request, _ in retry if closing or now >= request.deadline}
        for request, _ in retry:
            if request.id in late:
                self._finish(request, _timeout(self._unsent_why(request, closing=closing)))
        again = [(request, envelope) for request, envelope in retry if request.id not in late]
        if not again:
            return
        self._hold_again(again, "request(s), holding them for the next tries")

    def _hold_again(self, again: list[_Envelope], what: str) -> None:
        """Move requests whose add failed for now back to WAITING with their envelope, saying so.

        Shared by a first send (:meth:`_add`) and a held one's (:meth:`_release`):
        either way the reader's next tick sends them again, their topic kept until
        they are routed again.
        """
        LOG.warning(
            "could not send %d %s; the first: %s %s",
            len(again),
            what,
            again[0][0].describe(),
            again[0][0].unsent,
        )
        with self._lock:
            for request, envelope in again:
                # Not if it finished meanwhile, or started: an add whose reply was lost may
                # have reached Redis, and a worker already answered it.
                if request.state == PENDING:
                    request.envelope = envelope
                    self._ledger.move(request, WAITING)

    def _try_add(self, ready: list[_Envelope]) -> list[_Envelope]:
        """XADD ``ready`` once; return those whose add failed for now (to try again), still PENDING.

        Each request's own outcome counts (a pipeline's commands succeed or fail one
        by one): one added keeps its entry id (taken back if it finished meanwhile),
        one refused fails at once with what was refused and where. A failure of the
        whole round trip (a lost connection) is each request's failure. Every failed
        request remembers why (:meth:`_Request.not_sent`), which its timeout then says.
        A request too large for the workers of every topic offering its task fails at
        once, before any add (:meth:`_fitting`).
        """
        ready = self._fitting(ready)
        if not ready:
            return []
        try:
            results = self._xadd(ready)
        except _transport.errors() as err:  # the round trip failed: every add with it
            results = [err] * len(ready)
        retry: list[_Envelope] = []
        refused: list[_Request] = []
        late: list[_Request] = []
        namespace = self._settings.namespace
        with self._lock:
            for (request, envelope), result in zip(ready, results, strict=True):
                if not isinstance(result, Exception):
                    request.entry_id, request.envelope, request.unsent = result, {}, ""
                    if request.state == DONE:  # timed out while we were sending
                        late.append(request)
                    continue
                request.not_sent(namespace, result)
                if _transport.is_transient(result):
                    retry.append((request, envelope))
                else:
                    refused.append(request)
        for request in refused:
            why = f"{request.describe()} could not be sent: {request.unsent} (refused: not tried again)"
            self._finish(request, Failure.from_exception(exc.ExecutionFailure(why)))
        if late:
            try:
                self._forget(late)
            except _transport.errors() as err:
                LOG.debug("could not take back %d timed out request(s): %s", len(late), err)
        return retry

    def _fitting(self, ready: list[_Envelope]) -> list[_Envelope]:
        """The requests of ``ready`` whose topic's workers read a body that large, sent elsewhere if need be.

        Every request added goes through here (a first send, a held one's, a retry),
        routed by then. A worker drops a body over its ``max_message_bytes`` unread, so
        the engine would only learn of it at the deadline, as a timeout saying nobody
        started it: a request over its topic's stated limit goes instead to the next
        topic offering its task whose workers take it (:meth:`Directory.route_sized`),
        or, when none does, fails at once naming the atom, its size and the limits.
        One size check per request: a lookup and a comparison.
        """
        directory = self._directory
        fitting: list[_Envelope] = []
        for request, envelope in ready:
            size = len(envelope["body"])
            if not directory.fits(request.topic, size):
                topic = directory.route_sized(request.node.name, request.task, size)
                if topic is not None:
                    request.topic = topic  # PENDING and this thread's to send: no structure keys on it
                else:
                    limits = directory.limits_text(request.node.name, request.task)
                    # No limit to name: a scan in between saw those workers leave. Sent as before.
                    if limits:
                        self._finish(request, _too_large(request, size, limits))
                        continue
            fitting.append((request, envelope))
        return fitting

    def _unsent_why(self, request: _Request, *, closing: bool = False) -> str:
        """What a request whose adds all failed says as it times out (or as the engine closes)."""
        if closing:
            return f"{request.describe()} could not be sent before the engine closed: {request.unsent}"
        timeout = self._settings.transition_timeout
        return f"{request.describe()} could not be sent within {timeout:g} s: {request.unsent}"

    def _xadd(self, ready: list[_Envelope]) -> list[Any]:
        """Append each request's envelope to its topic's stream in one round trip.

        Returns, for each request, its entry id or the error its XADD was answered
        with (a refusal). Raises what the transport raises (``_transport.errors()``)
        when the round trip itself failed.
        """
        namespace = self._settings.namespace
        pipe = self._here().pipeline(transaction=False)
        for request, envelope in ready:
            pipe.xadd(protocol.requests_key(namespace, request.topic), _transport.fields(envelope))
        return list(pipe.execute(raise_on_error=False))

    def _forget(self, requests: list[_Request]) -> None:
        """Acknowledge and delete the stream entries of ``requests`` (timed out or abandoned)."""
        entries = [r for r in requests if r.entry_id is not None]
        if not entries:
            return
        pipe = self._here().pipeline(transaction=False)
        for request in entries:
            assert request.entry_id is not None
            key = protocol.requests_key(self._settings.namespace, request.topic)
            pipe.xack(key, protocol.GROUP, request.entry_id)
            pipe.xdel(key, request.entry_id)
        pipe.execute(raise_on_error=False)

    def _finish(self, request: _Request, failure: Failure | None = None, result: Any = None) -> bool:
        """Move ``request`` to DONE and report it, unless something already did."""
        with self._lock:
            if request.state == DONE:
                return False
            self._ledger.move(request, DONE)
        if failure is not None:
            self._done.put(request.node, request.action, False, failure)
        else:
            self._done.put(request.node, request.action, True, result)
        return True

    # -- the reader thread --------------------------------------------------------

    def _read_loop(self) -> None:
        key, clock, alarm = self._reply_key, self._settings.clock, self._alarm
        assert self._reading is not None  # opened before the thread starts
        client = self._reading.client
        backoff = _transport.Backoff()
        tick = self._directory.look_every
        next_tick = next_touch = clock.monotonic()
        directory = self._directory
        arrivals = directory.arrivals_key.encode()
        suspect: Exception | None = None  # why a read with the arrivals stream was refused
        while not self._closing.is_set():
            began = clock.monotonic()
            streams: dict[Any, Any] = {key: self._last_id}
            if directory.arrivals_seen is not None and suspect is None:  # one read waits on both
                streams[arrivals] = directory.arrivals_seen
            wake = self._due(next_tick)
            due = wake.at
            block: int | None = BLOCK_MS
            if alarm is not None:
                if due is not None and due - began <= _ALARM_MARGIN:
                    # Due (nearly): a ring could reach Redis before the read does, and
                    # miss it. Wait out the rest here, then read what came without blocking.
                    if due > began:
                        self._closing.wait(due - began)
                    block = None
                else:
                    alarm.reading(wake.deadline)
            try:
                reply = client.xread(streams, count=_READ_COUNT, block=block)
            except _transport.errors() as err:
                if not _transport.is_transient(err) and suspect is None and arrivals in streams:
                    # The arrivals stream may be what was refused (an ACL older than it):
                    # read the replies alone once to tell.
                    suspect = err
                    continue
                if not _transport.is_transient(err):
                    # Refused, not lost (the key holds something else than a stream, an
                    # ACL forbids reading it): asking again gets the same answer, and
                    # waiting outage_timeout to call Redis unreachable would mislead.
                    self._refused(err)
                    return
                # While Redis is unreachable no request times out on its own (no worker
                # could have answered): the outage decides, and past outage_timeout the
                # run stops with its requests in doubt.
                if self._redis_down_since is None:
                    self._redis_down_since = began
                    LOG.warning("lost contact with Redis at %s: %s", mask_url(self._settings.url), err)
                elif clock.monotonic() - self._redis_down_since >= self._settings.outage_timeout:
                    self._give_up(err, clock.monotonic() - self._redis_down_since)
                    return
                self._closing.wait(backoff.next())
                continue
            finally:
                if alarm is not None:
                    alarm.done_reading()
            if suspect is not None:  # the replies alone were read: the arrivals stream was refused
                directory.stop_watching_arrivals(suspect)
                suspect = None
            if self._redis_down_since is not None:
                LOG.warning("Redis at %s is reachable again", mask_url(self._settings.url))
                self._redis_down_since = None
                backoff.reset()
            arrived = False
            for stream, entries in _transport.stream_entries(reply):
                if stream == arrivals:
                    arrived = directory.take_arrivals(entries) or arrived
                    continue
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    try:
                        self._on_reply(entry_id, fields)
                    except Exception:  # a bug here must not silence the thread the run waits on
                        LOG.exception("could not handle reply %s on %s", _text(entry_id), key)
            now = clock.monotonic()
            if arrived:
                try:
                    self._on_arrival(now)
                except Exception:
                    LOG.exception("could not look for the workers that just arrived")
            if now >= next_tick or (due is not None and now >= due):
                # A deadline checked at once costs a look for workers too (rare: few requests
                # reach their deadline, and only tasks with a timeout have one running).
                next_tick = now + tick
                try:
                    self._tick()
                except Exception:
                    LOG.exception("could not check the timeouts of the requests in flight")
            if now >= next_touch:
                next_touch = now + _TOUCH_EVERY
                self._tidy()

    def _due(self, next_tick: float) -> _Due:
        """When the reader must next act: the earliest deadline of a request, or the next look.

        The look counts only while requests are in flight, held or queued for room:
        an idle engine's look does nothing, so its read is not woken for it. Nor
        does the alarm wake a read for the look alone (a ``CLIENT UNBLOCK`` four
        times a second while a long task runs): what it checks (a worker gone for
        ``transition_timeout``) may well be a read's block late.
        """
        with self._lock:
            deadline = self._dues.next()
            looks = bool(self._ledger.live or (self._settings.max_in_flight is not None and self._outgoing))
        at = deadline
        if looks:
            at = next_tick if at is None else min(at, next_tick)
        return _Due(deadline, at)

    def _give_up(self, error: Exception, down_for: float) -> None:
        """End the run: Redis has been unreachable past ``outage_timeout`` (reader thread).

        The engine thread raises the error from its wait. The atoms whose requests
        were out or held stay ``RUNNING`` (``REVERTING``) in storage, in doubt, as
        if the engine's process had died: whether a worker ran them cannot be told
        without Redis, and a resume runs them again.
        """
        requests = self._lose()
        settings = self._settings
        message = (
            f"the worker-based engine lost Redis at {mask_url(settings.url)}: unreachable for"
            f" {down_for:.1f} s (outage_timeout {settings.outage_timeout:g} s), last error"
            f" {_error_text(error)}; the run stopped with {_in_doubt(requests)}: resume the flow"
            " once Redis answers again to run them again"
        )
        self._stop_run(message)

    def _lose(self) -> list[_Request]:
        """Mark the run lost to Redis; the requests out or held, whose atoms stay in doubt."""
        self._lost = True
        with self._lock:
            requests = list(self._ledger.live.values())
            # dispatch appends without the lock; copy() takes the deque in one C call.
            requests.extend(request for request, _ in self._outgoing.copy())
        return requests

    def _stop_run(self, message: str) -> None:
        LOG.error("%s", message)
        self._done.put_fatal(exc.ExecutionFailure(message))

    def _refused(self, error: Exception) -> None:
        """End the run: Redis refused to read the replies stream (reader thread).

        As after an outage (:meth:`_give_up`), the atoms whose requests were out
        or held stay in doubt: their answers, if any, cannot be read.
        """
        requests = self._lose()
        message = (
            f"the worker-based engine cannot read its replies: Redis at {mask_url(self._settings.url)}"
            f" refused to read stream '{self._reply_key}': {_error_text(error)}; the run stopped with"
            f" {_in_doubt(requests)}: resume the flow once the stream can be read (nothing else may"
            " write to that key, and the engine's Redis user needs XREAD on it)"
        )
        self._stop_run(message)

    def _on_reply(self, entry_id: Any, fields: Any) -> None:
        if _WAKE in fields and self._closing.is_set():
            return
        settings = self._settings
        try:
            message = protocol.decode(fields, settings.secret, settings.max_bytes)
        except protocol.ProtocolError as err:
            # A final answer (or one of another protocol version) to a live request
            # that cannot be read: its worker may stay alive and advertised, so
            # waiting for a better one could last for ever. Other malformed replies
            # are ignored (an event added to the protocol later reads as one).
            final = err.message_id is not None or err.quoted_event in (protocol.SUCCESS, protocol.FAILURE)
            with self._lock:
                request = (
                    self._ledger.live.get(err.quoted_id) if final and err.quoted_id is not None else None
                )
            if request is None:
                LOG.warning(
                    "ignoring reply %s on %s: %s", _text(entry_id), self._reply_key, log_safe(err.reason)
                )
                return
            worker = f"worker {log_safe(request.worker)}" if request.worker else "a worker"
            why = log_safe(err.reason)
            text = f"{request.describe()}: {worker} sent a reply the engine cannot read: {why}"
            LOG.warning("%s (reply %s on %s)", text, _text(entry_id), self._reply_key)
            self._finish(request, Failure.from_exception(exc.InvalidFormat(text)))
            return
        if message["type"] != "response":
            LOG.warning(
                "ignoring reply %s on %s: a %s message", _text(entry_id), self._reply_key, message["type"]
            )
            return
        event = message["event"]
        with self._lock:
            request = self._ledger.live.get(message["id"])
            started = request is not None and event == protocol.RUNNING
            if request is not None and started:
                self._ledger.move(request, RUNNING)
                request.worker = message["worker"]
                request.gone_since = None
                request.started_at = settings.clock.monotonic()
                if request.timeout is not None:
                    self._dues.times_out(request, request.started_at + request.timeout)
        if request is not None and started:
            self._tell_started(request.node.name, str(message["worker"]))
            return
        if request is None:
            LOG.debug(
                "ignoring %s response %s for unknown or finished request %s",
                event,
                _text(entry_id),
                log_safe(message["id"]),
            )
        elif event == protocol.PROGRESS:
            self._on_progress(request, message["progress"], message.get("details"))
        elif event == protocol.NOTIFICATION:
            self._on_notification(request, message["event_type"], message.get("details"))
        elif event == protocol.SUCCESS:
            result = message["result"]
            if type(result) is dict and dynamic.RECORD_KEY in result:
                # A task that spawned a sub-flow on the worker (flowkit.dynamic).
                try:
                    result = dynamic.Subflow.from_record(
                        result, sender=f"worker {log_safe(message['worker'])} answering {request.describe()}"
                    )
                except Exception as err:
                    self._finish(request, failure=Failure.from_exception(err))
                    return
            self._finish(request, result=result)
        else:
            try:
                failure = Failure.from_dict(message["failure"])
            except (ValueError, exc.InvalidFormat) as err:
                failure = Failure.from_exception(
                    exc.InvalidFormat(f"{request.describe()} failed with an unreadable failure record: {err}")
                )
            self._finish(request, failure)

    def _tell_started(self, atom: str, worker: str) -> None:
        for watch in self._settings.start_watchers:
            try:
                watch(atom, worker)
            except Exception:  # an observer must not stop the replies being read
                LOG.warning("a start watcher failed for atom '%s'", atom, exc_info=True)

    def _on_progress(self, request: _Request, progress: float, details: dict[str, Any] | None) -> None:
        runtime = self._runtime
        if runtime is None or request.action == sch.REVERT:
            return
        # The task ran on the worker: its listeners here hear of its report as they
        # would had it run here (TaskFlow's engine passes remote events on to them).
        own = getattr(request.node.atom, "_own_notifier", None)
        if own is not None and own.has_listeners:
            try:
                own.tell_listeners(EVENT_UPDATE_PROGRESS, {"progress": progress})
            except Exception:  # a listener must not stop the replies being read
                LOG.warning("a progress listener of atom '%s' failed", request.node.name, exc_info=True)
        runtime.progress_by_name(request.node.name, progress, details or None)

    def _on_notification(self, request: _Request, event_type: str, details: dict[str, Any] | None) -> None:
        """Tell the listeners of the task's own notifier here of an event it notified on the worker."""
        own = getattr(request.node.atom, "_own_notifier", None)
        if own is None or not own.has_listeners:
            return
        try:
            own.tell_listeners(event_type, details)
        except Exception:  # a listener must not stop the replies being read
            LOG.warning(
                "a listener of atom '%s' failed on event %r", request.node.name, event_type, exc_info=True
            )

    def _tick(self) -> None:
        """Fail requests nobody started before their deadline, and those whose worker vanished."""
        now = self._settings.clock.monotonic()
        timeout = self._settings.transition_timeout
        with self._lock:
            live = self._ledger.live.values()
            expired = [r for r in live if r.state in (PENDING, WAITING) and now >= r.deadline]
            running = [r for r in live if r.state == RUNNING]
            waiting = any(r.state == WAITING and now < r.deadline for r in live)
            # New requests waiting for room are routed when it frees (_leaving): keep that view
            # current too. Only _send replaces the list, under this lock; dispatch appends to it.
            queued = self._settings.max_in_flight is not None and bool(self._outgoing)
        for request in expired:
            if request.unsent and request.entry_id is None:  # a worker offered it, but the sends failed
                why = self._unsent_why(request)
            elif request.state == WAITING and request.topic:
                why = (
                    f"{request.describe()} timed out: a worker offers its task, but the"
                    f" {self._settings.max_in_flight} request(s) out at once (max_in_flight)"
                    f" left no room for it within {timeout:g} s"
                )
            elif request.state == WAITING:
                why = (
                    f"{request.describe()} timed out: no live worker offered its task within {timeout:g} s"
                    f" (searched {self._directory.searched(request.node.name)}"
                    f" in namespace '{self._settings.namespace}')"
                )
            elif request.entry_id is None:
                why = f"{request.describe()} was not delivered to Redis within {timeout:g} s"
            else:
                why = f"{request.describe()} timed out: no worker started it within {timeout:g} s"
            self._finish(request, _timeout(why + self._outage()))
        if expired:
            try:
                self._forget(expired)
            except _transport.errors() as err:
                LOG.debug("could not take back %d timed out request(s): %s", len(expired), err)
        if waiting or queued:
            self._release(now)
        if running:
            running = self._check_task_timeouts(running, now)
        if running:
            self._check_workers(running, now, timeout)

    def _on_arrival(self, now: float) -> None:
        """A worker of our topics just advertised: send the requests held for a worker now.

        Not at the next tick, up to a tick and a read's block later: a held request
        goes out within a few milliseconds of the advert. Nothing held for a worker,
        nothing is read (an arrival costs an idle engine no command).
        """
        with self._lock:
            held = any(now < request.deadline for request in self._ledger.for_worker.values())
        if held:
            self._release(now)

    def _release(self, now: float) -> None:
        """Scan for workers, then send the held requests some live worker offers, as far as the window allows.

        One try (:meth:`_try_add`): one refused fails at once; on a send that failed
        for now (a lost connection) they are held again and the next tick retries,
        and at their deadline they fail saying so, not that no worker offered them.
        Those the window has no room for keep their topic and stay WAITING, first
        in line for the next slot (:meth:`_claim_released`, from either thread),
        which routes them again then, from the scans each tick makes meanwhile.
        """
        directory = self._directory
        try:
            directory.scan(self._here())
        except _transport.errors() as err:
            LOG.debug("could not look for workers for the requests waiting to be sent: %s", err)
            return
        with self._lock:
            # Looked up again, all of them (a worker may have come or gone), whatever the room.
            self._ledger.route_all(self._route, directory.scans)
            ready = self._claim_released(now, self._room())
        if not ready:
            return
        retry = self._try_add(ready)
        if retry:
            self._hold_again(retry, "request(s) that found a worker, retrying")
        LOG.debug("sent %d request(s) that waited for a worker", len(ready) - len(retry))

    def _check_task_timeouts(self, running: list[_Request], now: float) -> list[_Request]:
        """Fail running requests past their task's own timeout; return the others."""
        # Compared as the due the reader wakes at is (Dues), so a wake at it finds it late.
        late = [r for r in running if r.timeout is not None and now >= r.started_at + r.timeout]
        if not late:
            return running
        for request in late:
            assert request.timeout is not None
            error = exc.TaskTimeout(
                f"atom '{request.node.name}' did not finish within its timeout of {request.timeout:g} s "
                f"on worker {log_safe(request.worker)} (task {request.task}); its result will be refused",
                atom=request.node.name,
                timeout=request.timeout,
            )
            if self._finish(request, Failure.from_exception(error)):
                LOG.warning("%s ran past its timeout of %g s", request.describe(), request.timeout)
        with contextlib.suppress(*_transport.errors()):
            self._forget(late)
        return [r for r in running if r not in late]

    def _check_workers(self, running: list[_Request], now: float, timeout: float) -> None:
        directory = self._directory
        try:
            # Who is still listed is what counts here: known workers' adverts are not read again.
            directory.scan(self._here(), sorted({r.topic for r in running}), reuse=True)
            live: Callable[[str], frozenset[str]] = directory.live
        except _transport.errors():
            live = _nobody  # unreachable Redis counts as a vanished worker
        for request in running:
            if request.worker in live(request.topic):
                request.gone_since = None
                continue
            if request.gone_since is None:
                request.gone_since = now
            elif now - request.gone_since >= timeout:
                why = (
                    f"{request.describe()} timed out: its worker {log_safe(request.worker)} has not been "
                    f"advertised for {now - request.gone_since:.1f} s (limit {timeout:g} s)"
                )
                if self._finish(request, _timeout(why + self._outage())):
                    with contextlib.suppress(*_transport.errors()):
                        self._forget([request])

    def _outage(self) -> str:
        down = self._redis_down_since
        if down is None:
            return ""
        url = mask_url(self._settings.url)
        return f"; Redis at {url} has been unreachable for {self._settings.clock.monotonic() - down:.1f} s"

    def _tidy(self) -> None:
        """Keep the reply stream's expiry fresh and drop the replies already read."""
        try:
            pipe = self._here().pipeline(transaction=False)
            pipe.pexpire(self._reply_key, _REPLY_TTL_MS)
            pipe.xtrim(self._reply_key, minid=self._last_id, approximate=True)
            pipe.execute()
        except _transport.errors() as err:
            LOG.debug("could not tidy reply stream %s: %s", self._reply_key, err)


#: Most atoms named by an outage's error; the rest are counted.
_NAMED = 10


def _in_doubt(requests: Sequence[_Request]) -> str:
    """The atoms of ``requests``, by name (reverts marked), for the error that ends a run in doubt."""
    names = list(
        dict.fromkeys(
            f"'{request.node.name}'" + (" (revert)" if request.action == sch.REVERT else "")
            for request in requests
        )
    )
    if not names:
        return "no request out"
    shown = ", ".join(names[:_NAMED]) + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")
    return f"atom(s) {shown} in doubt (left RUNNING or REVERTING in storage)"


def _nobody(_topic: str) -> frozenset[str]:
    return frozenset()


def _timeout(message: str) -> Failure:
    return Failure.from_exception(exc.RequestTimeout(message))


def _invalid(request: _Request, reason: str) -> Failure:
    return Failure.from_exception(
        exc.InvalidFormat(f"{request.describe()} cannot be sent to a worker: {reason}")
    )


def _too_large(request: _Request, size: int, limits: str) -> Failure:
    """The failure of a request larger than every topic offering its task reads."""
    error = exc.InvalidFormat(
        f"{request.describe()} cannot be sent to a worker: its body is {size} bytes, more than the"
        f" live workers offering task {request.task} read ({limits}); a worker drops a larger body"
        " unread: send less (a reference to the data rather than the data), or raise the workers'"
        " max_message_bytes"
    )
    return Failure.from_exception(error)


def _error_text(error: Exception) -> str:
    """``error`` for a message: its type (a lost connection, a refusal) and what it said."""
    return f"{type(error).__name__}: {error}"


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
