"""The Python worker: runs the tasks it offers for worker-based engines, over Redis.

(Or over the in-process memory transport, ``transport="memory"``, for engines
of the same process: the same loop runs on either, see ``_transport.connect``.)

A :class:`Worker` serves one topic. It reads requests from the topic's stream
as a member of the ``workers`` consumer group, runs each on a pool of threads
and answers on the engine's reply stream (``running``, ``progress``, then
``success`` or ``failure``). A request is acknowledged only in the same atomic
block that writes its final response, so a worker that dies mid-task leaves it
pending, and a live worker takes it over once it has been idle for the
visibility timeout. ``doc/workers_protocol.rst`` is the normative description.

Three kinds of thread share one Redis client (a pool of connections):

* the thread calling :meth:`Worker.run` reads requests, as many at a time as
  the pool has idle threads, checks them and hands them to the pool, whose
  threads each queue their request's ``running`` response, run the task and
  queue its answer;
* one writer thread sends every response and acknowledgement, batching all
  that is ready into one ``MULTI`` block, which is what makes thousands of
  small tasks a second possible; responses of one request keep their order
  because they all pass through this single queue;
* one heartbeat thread advertises the worker, keeps its in-flight requests
  claimed and takes over requests whose worker died.

Why the size: this module is the whole worker loop, kept in one place so it
reads top to bottom. Calling the user's task lives in ``_task_call`` and
finding task classes in ``_task_registry``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flowkit import dynamic
from flowkit import exceptions as exc
from flowkit._utils.text import log_safe
from flowkit.engines._threads import default_thread_count
from flowkit.engines.worker_based import _memory, _transport, _wakeable, protocol
from flowkit.engines.worker_based._clock import SYSTEM, WorkerClock
from flowkit.engines.worker_based._task_call import ProgressThrottle, call_task
from flowkit.engines.worker_based._task_registry import TaskClass, load_tasks
from flowkit.engines.worker_based._tracing import current_traceparent, request_span
from flowkit.persistence.backends._urls import mask_url
from flowkit.types.failure import Failure

__all__ = ["Worker", "current_traceparent"]

LOG = logging.getLogger(__name__)

#: Reply streams are trimmed to about this many entries.
REPLY_MAXLEN = 100_000
#: Every reply stream written to is set to expire this long after (the engine's own expiry).
REPLY_TTL_MS = int(protocol.REPLY_TTL * 1000)
#: Most responses and acknowledgements written in one MULTI block.
MAX_BATCH = 512
#: Longest single XREADGROUP block (seconds): how long a stop waits for the read when
#: Redis refuses to end it early (see ``_wakeable``).
MAX_BLOCK = 0.5
#: Seconds Redis may take to answer a command beyond the time it was asked to
#: block: past them the command fails (and is not retried by the client), so a
#: frozen Redis cannot hold a stopping worker for ever.
REDIS_TIMEOUT = 5.0


# (reply stream or None, envelope or None, entry id to acknowledge or None)
_Out = tuple[str | None, dict[str, bytes] | None, str | None]

_NOT_FOUND_NAMES = (
    "flowkit.exceptions.NotFound",
    "flowkit.exceptions.TaskFlowException",
    "builtins.Exception",
    "builtins.BaseException",
)
_TIMEOUT_NAMES = (
    "flowkit.exceptions.RequestTimeout",
    "flowkit.exceptions.ExecutionFailure",
    "flowkit.exceptions.TaskFlowException",
    "builtins.Exception",
    "builtins.BaseException",
)
_INCOMPATIBLE_NAMES = (
    "flowkit.exceptions.IncompatibleVersion",
    "flowkit.exceptions.TaskFlowException",
    "builtins.Exception",
    "builtins.BaseException",
)
_INVALID_FORMAT_NAMES = (
    "flowkit.exceptions.InvalidFormat",
    "flowkit.exceptions.TaskFlowException",
    "builtins.Exception",
    "builtins.BaseException",
)
_STOP = object()


def _named_failure(message: str, names: Iterable[str]) -> Failure:
    """A failure with the exact type names the protocol prescribes (shared with the Go worker)."""
    return Failure(exception_str=message, traceback_str="", exc_type_names=names, exc_args=[message])


class _Job:
    """One accepted request on its way through the pool."""

    __slots__ = ("entry_id", "message", "task_cls")

    def __init__(self, entry_id: str, message: dict[str, Any], task_cls: TaskClass) -> None:
        self.entry_id = entry_id
        self.message = message
        self.task_cls = task_cls


class Worker:
    """Serve the tasks in ``tasks`` to engines that send requests on ``topic``.

    The signature is TaskFlow's: ``Worker(exchange, topic, tasks, executor,
    threads_count, url, transport, transport_options, retry_options)`` in that
    order, so ``Worker("ex", "t", [...], transport="memory")`` serves engines
    of this process loaded with the same ``exchange`` and ``transport``, and
    ``Worker(None, "t", [...], url="redis://...")`` (or ``exchange=`` left out)
    serves engines on Redis. flowkit's own options come after, by keyword only.

    Args:
        exchange: on the memory transport, the namespace shared with the
            engines (their ``exchange``; default ``"default"``, as TaskFlow's);
            ignored on Redis, where ``key_prefix`` is that namespace.
        topic: the topic whose requests this worker takes.
        tasks: task classes, or strings naming them: ``"pkg.mod"`` for every
            task class defined in that module, ``"pkg.mod:Name,Other"`` for some.
        executor: accepted for TaskFlow's signature and ignored: tasks run on
            the worker's own ``threads_count`` threads.
        threads_count: how many tasks run at once (default: as many threads
            as the engines' pools have, see :ref:`their default <default-threads>`).
        url: the Redis URL (``redis://``, ``rediss://`` or ``unix://``), or
            ``memory://`` (``memory://NAME``) for engines in this process;
            may be left out with ``transport="memory"``.
        transport: ``"memory"``, ``"redis"`` or None (the URL decides), as the
            engine's option of that name.
        transport_options: kombu's options (``polling_interval``...), accepted
            and ignored: nothing here polls.
        retry_options: ``{"attempts": 5, "backoff": 0.1}`` (or kombu's
            ``max_retries``, ``interval_start``...), how Redis commands are
            retried on connection errors.
        key_prefix: prefix of every Redis key (the engines' ``key_prefix``
            option; default ``"flowkit"``; on the memory transport, ``exchange``).
        secret: HMAC key to sign and check messages with; defaults to the
            ``FLOWKIT_WORKER_SECRET`` environment variable (unset: no signing).
        heartbeat: seconds between advertisements and claim refreshes.
        visibility_timeout: seconds a request may sit unrefreshed before a live
            worker takes it over from its (presumed dead) worker.
        max_deliveries: deliveries after which a taken-over request is failed
            instead of run again.
        max_message_bytes: largest message body sent or accepted.
        worker_id: this worker's name (default: ``host-pid-random``).
        grace: seconds a graceful stop waits for running tasks.
        clock: what request deadlines are compared with, adverts are dated
            by, and the heartbeat, the grace period and the writer's retries
            are timed on: an object with ``time()``, ``monotonic()``,
            ``sleep(seconds)`` and ``wait(event, timeout)`` (default: the
            system clock); tests pass one they move by hand.
        tracer_provider: the OpenTelemetry tracer provider of the spans made
            for requests that carry a trace context (default: the global one);
            see :func:`current_traceparent`.

    Raises:
        NotFound: a task module or name cannot be found (the message names it).
        TypeError: something in ``tasks`` is not a task class.
        ValueError: a numeric option is out of range.
        InvalidFormat: ``url`` is not a Redis or memory URL (an ``amqp://`` one
            is told why), ``transport`` is not one of ours, or ``exchange``
            looks like a URL (flowkit's Worker used to take the URL first:
            pass it as ``url=``).
        Duplicate: two task classes share one task name.
    """

    def __init__(
        self,
        exchange: str | None = None,
        topic: str = "",
        tasks: Iterable[type | str] = (),
        executor: object = None,
        threads_count: int | None = None,
        url: str | None = None,
        transport: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
        retry_options: Mapping[str, Any] | None = None,
        *,
        key_prefix: str | None = None,
        secret: str | bytes | None = None,
        heartbeat: float = 1.0,
        visibility_timeout: float = 30.0,
        max_deliveries: int = 3,
        max_message_bytes: int = protocol.MAX_MESSAGE_BYTES,
        worker_id: str | None = None,
        grace: float = 30.0,
        clock: WorkerClock = SYSTEM,
        tracer_provider: Any = None,
    ) -> None:
        if threads_count is None:
            threads_count = default_thread_count()
        _check(threads_count >= 1, f"threads_count must be at least 1, not {threads_count}")
        _check(heartbeat > 0, f"heartbeat must be positive, not {heartbeat}")
        _check(
            visibility_timeout > heartbeat,
            f"visibility_timeout ({visibility_timeout}) must exceed heartbeat ({heartbeat}),"
            " or the worker would take over its own running requests",
        )
        _check(max_deliveries >= 1, f"max_deliveries must be at least 1, not {max_deliveries}")
        _check(max_message_bytes > 0, f"max_message_bytes must be positive, not {max_message_bytes}")
        _check(grace >= 0, f"grace must not be negative, not {grace}")
        _check(bool(topic), "topic must be a non-empty string")
        _check_exchange(exchange, url)
        url = _transport.choose_url(url, transport)
        attempts, backoff = _transport.retry_settings(retry_options)
        self._memory = _memory.is_memory_url(url)
        if key_prefix is None:
            key_prefix = _transport.namespace(url, exchange)
        self._registry = load_tasks(tasks)
        self._client = _transport.connect(
            url, attempts=attempts, backoff=backoff, socket_timeout=REDIS_TIMEOUT + MAX_BLOCK
        )
        self._url = url
        self._topic = topic
        self._namespace = key_prefix
        self._threads_count = threads_count
        self._secret = protocol.resolve_secret(secret)
        self._heartbeat = heartbeat
        self._visibility_timeout = visibility_timeout
        self._max_deliveries = max_deliveries
        self._max_bytes = max_message_bytes
        self._grace = grace
        self._clock = clock
        self._tracer_provider = tracer_provider
        self._worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stream = protocol.requests_key(key_prefix, topic)
        self._hash_key = protocol.worker_key(key_prefix, self._worker_id)
        self._zset_key = protocol.workers_key(key_prefix, topic)
        self._topics_key = protocol.topics_key(key_prefix)
        self._arrivals_key = protocol.arrivals_key(key_prefix)
        self._replies_prefix = protocol.replies_key(key_prefix, "")
        # Guards _busy and _in_flight; waited on for free slots and for draining.
        self._cond = threading.Condition()
        self._busy = 0  # accepted requests not yet finished by the pool
        self._in_flight: dict[str, None] = {}  # entry ids read and not yet acknowledged
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue[_Out | object] = queue.SimpleQueue()
        self._stopping = threading.Event()
        # Set by a stop with no grace: leave at once, giving Redis no more time.
        self._hurry = threading.Event()
        self._beat_stop = threading.Event()
        self._done = threading.Event()
        self._done.set()
        # Set once serving begins and again when the run ends, so wait() never
        # hangs on a worker that could not start.
        self._started = threading.Event()
        self._run_thread: threading.Thread | None = None
        #: This run's blocking reads, which a stop wakes (None: not reading yet).
        self._reader: _wakeable.Reader | None = None
        self._generation = 0
        self._grace_now = grace
        self._give_up_at = float("inf")  # when the writer stops retrying (set on stop)
        self._next_sweep = 0.0  # when the heartbeat next looks for dead workers' consumers
        #: When the last beat that wrote the advert began (monotonic; None: none yet this run).
        self._advertised_at: float | None = None
        #: Whether Redis refused an arrival entry this run (an ACL): said once, at WARNING.
        self._arrival_refused = False

    # -- public face ---------------------------------------------------------

    @property
    def worker_id(self) -> str:
        """This worker's id: its consumer name and the suffix of its advertisement key."""
        return self._worker_id

    @property
    def topic(self) -> str:
        """The topic served."""
        return self._topic

    @property
    def tasks(self) -> list[str]:
        """The task names offered, sorted."""
        return sorted(self._registry)

    def __repr__(self) -> str:
        return f"<Worker {self._worker_id} topic={self._topic!r} tasks={len(self._registry)}>"

    @property
    def banner(self) -> str:
        """A few lines saying what this worker serves and where (TaskFlow's ``banner``)."""
        return "\n".join(
            (
                f"flowkit worker {self._worker_id}",
                f"  transport: {mask_url(self._url)} (namespace {self._namespace!r})",
                f"  topic: {self._topic}",
                f"  threads: {self._threads_count}",
                f"  tasks: {', '.join(self.tasks)}",
            )
        )

    def run(
        self,
        display_banner: bool = True,
        banner_writer: Callable[[str], object] | None = None,
        *,
        burst: bool = False,
    ) -> None:
        """Serve requests until :meth:`stop` (or, with ``burst``, until idle); block meanwhile.

        The positional arguments are TaskFlow's (``run(display_banner, banner_writer)``).

        Args:
            display_banner: say what the worker serves once it starts (as
                TaskFlow's worker does): :attr:`banner` to ``banner_writer``, or
                one INFO log line without one.
            banner_writer: called with :attr:`banner` (``print``, say).
            burst: return once a read finds no request and none is in flight.

        Raises:
            RuntimeError: the worker is already running.
            ConnectionError: Redis cannot be reached at start (later outages are
                waited out).
        """
        self._begin()
        self._serve(burst, display_banner, banner_writer)

    def start(self) -> None:
        """Run the worker in a background thread; :meth:`stop` ends it, :meth:`join` waits for the end.

        Raises:
            RuntimeError: the worker is already running.
        """
        self._begin()
        thread = threading.Thread(target=self._serve_quietly, name=f"flowkit-worker-{self._worker_id}")
        self._run_thread = thread
        thread.start()

    def stop(self, grace: float | None = None) -> None:
        """Stop reading, let running tasks finish for ``grace`` seconds, and leave.

        Requests still running after the grace period are left unacknowledged
        for another worker to take over. Answers already made then get
        ``min(grace, 5)`` seconds (at least 1) to reach Redis, and the helper
        threads one more Redis timeout (:data:`REDIS_TIMEOUT`) to let go,
        before the worker leaves without them; so a stop ends in bounded time
        even when Redis stopped answering. ``grace=0`` (the command line's
        second signal) leaves at once: running tasks are abandoned and Redis
        gets half a second at most. Called from another thread, this waits
        until the worker has stopped; called from the thread running
        :meth:`run` (a signal handler), it only asks.

        Args:
            grace: overrides the ``grace`` given at construction.
        """
        if grace is not None:
            self._grace_now = grace
            if grace <= 0:
                self._hurry.set()
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        reader = self._reader
        if threading.current_thread() is not self._run_thread:
            if reader is not None:
                reader.wake()  # its read need not wait out its block
            self._done.wait()
        elif reader is not None:
            # A signal handler interrupting the reading thread, maybe inside the client's
            # pool lock, which the wake's own command would wait for: woken from a thread.
            threading.Thread(target=reader.wake, name="flowkit-worker-wake", daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the worker serves requests (as TaskFlow's ``wait``); return whether it does.

        Meant for a worker run in another thread: start it, ``wait()``, then
        load engines. Returns False when ``timeout`` passed first or the
        worker stopped (or could not start) meanwhile. :meth:`join` waits for
        the end instead.
        """
        return self._started.wait(timeout) and not self._done.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker has stopped; return whether it has."""
        return self._done.wait(timeout)

    # -- life cycle ------------------------------------------------------------

    def _begin(self) -> None:
        if not self._done.is_set():
            raise RuntimeError(f"worker {self._worker_id} is already running")
        self._done.clear()
        self._started.clear()
        self._stopping.clear()
        self._hurry.clear()
        self._beat_stop.clear()
        self._grace_now = self._grace
        self._give_up_at = float("inf")
        self._advertised_at = None  # a new run arrives again
        self._arrival_refused = False
        # Fresh queues and counters: pool threads a previous run abandoned (tasks
        # still running after its grace) keep the old ones and cannot disturb these.
        self._generation += 1
        self._busy = 0
        self._in_flight = {}
        self._jobs = queue.SimpleQueue()
        self._outbox = queue.SimpleQueue()
        self._run_thread = threading.current_thread()

    def _serve_quietly(self) -> None:
        try:
            self._serve(burst=False)
        except Exception:
            LOG.exception("worker %s stopped on an error", self._worker_id)

    def _serve(
        self, burst: bool, display_banner: bool = True, banner_writer: Callable[[str], object] | None = None
    ) -> None:
        helpers: list[threading.Thread] = []
        try:
            try:
                _transport.ensure_group(self._client, self._stream)
                self._reader = _wakeable.open_reader(self._client)
            except _transport.errors() as err:
                raise ConnectionError(f"cannot reach Redis at {mask_url(self._url)}: {err}") from err
            self._start_helpers(helpers)
            self._started.set()
            if display_banner and banner_writer is not None:
                banner_writer(self.banner)
            elif display_banner:
                LOG.info(
                    "worker %s serves topic %r with %d threads; tasks: %s",
                    self._worker_id,
                    self._topic,
                    self._threads_count,
                    ", ".join(self.tasks),
                )
            if self._secret is None and not self._memory:  # in one process, nobody else can write
                LOG.warning(
                    "worker %s runs without a signing secret: anyone who can write to this Redis can make"
                    " it run tasks and send their results anywhere; set %s (the same on engines and"
                    " workers) in production",
                    self._worker_id,
                    protocol.SECRET_ENV,
                )
            self._read_loop(burst)
            self._drain()
        finally:
            try:
                self._shut_down(helpers)
            finally:
                reader, self._reader = self._reader, None
                if reader is not None:
                    reader.close()
                self._done.set()
                self._started.set()

    def _start_helpers(self, started: list[threading.Thread]) -> None:
        """Start the pool, the writer and the heartbeat, adding each to ``started`` as it starts.

        Added one by one, not returned at the end: an exception raised into
        this thread meanwhile (the command line's stop signal, while the worker
        is not serving yet) leaves ``started`` holding the threads already
        running, so :meth:`_shut_down` still stops them and withdraws an
        advertisement the heartbeat may have written.
        """
        run = (self._generation, self._jobs, self._outbox)
        threads = [
            threading.Thread(target=self._pool_loop, args=run, name=f"flowkit-worker-pool-{i}", daemon=True)
            for i in range(self._threads_count)
        ]
        threads.append(threading.Thread(target=self._write_loop, name="flowkit-worker-writer", daemon=True))
        threads.append(threading.Thread(target=self._beat_loop, name="flowkit-worker-heartbeat", daemon=True))
        for thread in threads:
            thread.start()
            # After start() (join() refuses a thread never started): one started but
            # not added yet is not waited for, yet still told to stop like the others.
            started.append(thread)

    def _drain(self) -> None:
        """Wait up to the grace period for accepted requests to be answered and acknowledged."""
        began = self._clock.monotonic()
        with self._cond:
            while self._busy or self._in_flight:
                # Re-read each time: a second stop signal may shorten the grace.
                left = began + self._grace_now - self._clock.monotonic()
                if left <= 0:
                    LOG.warning(
                        "worker %s: %d request(s) still running after %.1fs; leaving them for another worker",
                        self._worker_id,
                        self._busy,
                        self._grace_now,
                    )
                    break
                self._clock.wait(self._cond, left)

    def _shut_down(self, helpers: list[threading.Thread]) -> None:
        """Let the writer flush and the heartbeat end, then withdraw the advertisement; in bounded time.

        Answers already computed still go out, unless Redis stays away too
        long: the writer stops retrying after the flush time, and a command
        Redis does not answer fails after :data:`REDIS_TIMEOUT`. A helper
        still waiting on Redis after that is left behind (it is a daemon
        thread), and so is the advertisement, which expires by itself three
        heartbeats later: a frozen Redis must not keep the worker from leaving.
        """
        self._stopping.set()
        self._beat_stop.set()
        if not helpers:  # Redis was unreachable at start: nothing was advertised
            return
        hurry = self._hurry.is_set()
        flush = 0.0 if hurry else max(1.0, min(self._grace_now, 5.0))
        now = self._clock.monotonic()
        self._give_up_at = now + flush
        for _ in range(self._threads_count):
            self._jobs.put(None)
        self._outbox.put(_STOP)
        # Real time: a test's clock moved by hand must not make these waits endless.
        until = time.monotonic() + (MAX_BLOCK if hurry else flush + REDIS_TIMEOUT)
        stuck = []
        for thread in helpers:
            if not thread.name.startswith("flowkit-worker-pool"):
                thread.join(max(0.0, until - time.monotonic()))
                if thread.is_alive():
                    stuck.append(thread.name)
        if not stuck:
            farewell = threading.Thread(target=self._farewell, name="flowkit-worker-farewell", daemon=True)
            farewell.start()
            farewell.join(max(0.0, until - time.monotonic()))
            if farewell.is_alive():
                stuck.append(farewell.name)
        if stuck:
            LOG.warning(
                "worker %s leaves without withdrawing its advertisement (it expires within %.1f s):"
                " Redis did not answer in time (%s still waiting)",
                self._worker_id,
                3 * self._heartbeat,
                ", ".join(stuck),
            )
            return
        LOG.info("worker %s stopped", self._worker_id)

    def _farewell(self) -> None:
        """Withdraw the advertisement and, holding nothing, the consumer (in a thread of its own).

        Every worker reads under a name of its own, so each restart would
        leave one more consumer in the group for ever. A consumer is removed
        only once it holds no entry: ``XGROUP DELCONSUMER`` drops its pending
        entries with it, and those of requests left running must stay for
        another worker to take over (then a live worker's sweep removes the
        name, see :meth:`_sweep_consumers`). Run in a thread of its own, so a
        frozen Redis cannot hold the stop.
        """
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.zrem(self._zset_key, self._worker_id)
            pipe.delete(self._hash_key)
            pipe.execute()
        except _transport.errors() as err:
            LOG.warning("worker %s could not remove its advertisement: %s", self._worker_id, err)
        try:
            held = self._client.xpending_range(
                self._stream, protocol.GROUP, min="-", max="+", count=1, consumername=self._worker_id
            )
            if not held:
                self._client.xgroup_delconsumer(self._stream, protocol.GROUP, self._worker_id)
        except _transport.errors() as err:
            LOG.warning("worker %s could not remove its consumer from the group: %s", self._worker_id, err)

    # -- reading -----------------------------------------------------------------

    def _read_loop(self, burst: bool) -> None:
        backoff = _transport.Backoff()
        block_ms = max(1, int(min(self._heartbeat, MAX_BLOCK) * 1000))
        streams: dict[Any, Any] = {self._stream: ">"}
        assert self._reader is not None  # opened by _serve before reading
        reading = self._reader.client
        while not self._stopping.is_set():
            free = self._free_slots()
            if not free:
                continue
            try:
                reply = reading.xreadgroup(
                    protocol.GROUP, self._worker_id, streams, count=free, block=block_ms
                )
            except _transport.errors() as err:
                self._redis_trouble("reading requests", err, backoff)
                continue
            backoff.reset()
            entries = _stream_entries(reply)
            if not entries:
                if burst:
                    with self._cond:
                        if not self._busy and not self._in_flight:
                            return
                continue
            while entries:
                # Each batch's replay claims carry the next (non-blocking) read:
                # under load, one round trip per batch instead of two.
                accepted, outs, now = self._screen(entries, None)
                fresh, entries, refused = self._first_sightings(
                    reading, accepted, now, outs, read_more=self._slots_after(len(accepted))
                )
                self._launch(fresh, outs)
                if refused is not None:
                    self._redis_trouble("reading requests", refused, backoff)
                    break

    def _slots_after(self, starting: int) -> int:
        """Pool threads still free once ``starting`` more jobs are queued (0 when stopping)."""
        with self._cond:
            if self._stopping.is_set():
                return 0
            return max(0, self._threads_count - self._busy - starting)

    def _free_slots(self) -> int:
        with self._cond:
            while self._busy >= self._threads_count and not self._stopping.is_set():
                self._cond.wait(MAX_BLOCK)
            return 0 if self._stopping.is_set() else self._threads_count - self._busy

    def _redis_trouble(self, doing: str, err: Exception, backoff: _transport.Backoff) -> None:
        delay = backoff.next()
        LOG.warning(
            "worker %s: Redis error while %s (retrying in %.1fs): %s", self._worker_id, doing, delay, err
        )
        if self._clock.wait(self._stopping, delay):
            return
        try:
            _transport.ensure_group(self._client, self._stream)
        except _transport.errors() as again:
            LOG.debug("worker %s: group not re-created yet: %s", self._worker_id, again)

    def _dispatch(self, entries: list[tuple[Any, Any]], deliveries: Mapping[str, int] | None) -> None:
        """Check each entry and queue its answer or its job; ``deliveries`` marks taken-over ones."""
        accepted, outs, now = self._screen(entries, deliveries)
        fresh, _, _ = self._first_sightings(self._client, accepted, now, outs)
        self._launch(fresh, outs)

    def _screen(
        self, entries: list[tuple[Any, Any]], deliveries: Mapping[str, int] | None
    ) -> tuple[list[_Job], list[_Out], float]:
        """Mark the entries in flight and check each: its runnable jobs, the answers to queue, and now.

        The jobs still have to pass the replay guard (:meth:`_first_sightings`).
        """
        outs: list[_Out] = []
        now = self._clock.time()
        with self._cond:
            fresh = []
            for raw_id, fields in entries:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                if entry_id in self._in_flight:  # already ours and running
                    continue
                self._in_flight[entry_id] = None
                fresh.append((entry_id, fields))
        accepted: list[_Job] = []
        for entry_id, fields in fresh:
            try:
                job = self._accept(entry_id, fields, now, deliveries, outs)
            except Exception as err:  # one odd entry must never stop the worker
                LOG.warning(
                    "worker %s drops entry %s, which it cannot handle: %s",
                    self._worker_id,
                    entry_id,
                    log_safe(err),
                )
                outs.append((None, None, entry_id))
                continue
            if job is not None:
                accepted.append(job)
        return accepted, outs, now

    def _launch(self, claimed: list[_Job], outs: list[_Out]) -> None:
        """Queue the answers (and acknowledgements) found while screening, then the claimed jobs.

        The ``running`` response of a job is not made here but by the pool thread
        that picks the job up (:meth:`_pool_loop`), just before it runs the task:
        this thread, the one every request passes through, is spared its
        encoding, and the response and the task's answer, queued by one thread
        moments apart, usually share the writer's next ``MULTI`` block instead
        of taking one each.
        """
        for out in outs:
            self._outbox.put(out)
        if claimed:
            with self._cond:
                self._busy += len(claimed)
            for job in claimed:
                self._jobs.put(job)

    def _first_sightings(
        self, client: _transport.Client, jobs: list[_Job], now: float, outs: list[_Out], read_more: int = 0
    ) -> tuple[list[_Job], list[tuple[Any, Any]], Exception | None]:
        """The jobs whose request id no other stream entry has carried: replays are refused.

        Each request id is claimed once, with ``SET {ns}:seen:{id} {entry id} NX``
        kept until its deadline has surely passed everywhere. A request read
        again from the same entry (taken over from a dead worker) finds its own
        entry id there and runs; a copy added as a new entry (a captured request
        replayed) finds another and is acknowledged unanswered, with a warning.
        When Redis cannot be asked, the jobs are left pending for a later delivery.

        Only a claim that fails is read back (``GET``, in a second round trip):
        a fresh request, nearly every one, costs one command, not two. (Redis
        6.2, which the protocol supports, cannot combine ``NX`` with ``GET`` in
        one ``SET``.)

        With ``read_more``, the same round trip also reads up to that many new
        entries without blocking (``XREADGROUP`` with no ``BLOCK``), returned
        second: a busy worker pays one round trip per batch, not one for its
        claims and another for its next read. The claims go first in the
        pipeline, so no job waits for the read. The read's own error (the
        group gone) is returned third, for the read loop's recovery.

        ``client``: the reading thread's own (its connection) or, from the
        heartbeat's take-overs, the worker's pool.
        """
        if not jobs:
            return jobs, [], None
        keys = [protocol.seen_key(self._namespace, job.message["id"]) for job in jobs]
        more: list[tuple[Any, Any]] = []
        refused: Exception | None = None
        try:
            pipe = client.pipeline(transaction=False)
            for job, key in zip(jobs, keys, strict=True):
                _transport.queue_claim(pipe, key, job.entry_id, _seen_for_ms(job.message["deadline"] - now))
            if read_more:
                pipe.xreadgroup(protocol.GROUP, self._worker_id, {self._stream: ">"}, count=read_more)
            replies = pipe.execute(raise_on_error=False)
            claimed = replies[: len(jobs)]
            for reply in claimed:
                if isinstance(reply, Exception):
                    raise reply
            if read_more:
                if isinstance(replies[-1], Exception):
                    refused = replies[-1]
                else:
                    more = _stream_entries(replies[-1])
            taken = [index for index, first in enumerate(claimed) if not first]
            holders: dict[int, Any] = {}
            if taken:
                pipe = client.pipeline(transaction=False)
                for index in taken:
                    pipe.get(keys[index])
                holders = dict(zip(taken, pipe.execute(), strict=True))
        except _transport.errors() as err:
            LOG.warning(
                "worker %s cannot check %d request(s) against replays, leaving them for a later delivery: %s",
                self._worker_id,
                len(jobs),
                err,
            )
            with self._cond:
                for job in jobs:
                    self._in_flight.pop(job.entry_id, None)
                self._cond.notify_all()
            # Entries the same round trip read are ours and pending: they run after
            # a later delivery, with the jobs whose claims failed.
            return [], [], None
        fresh = []
        for index, job in enumerate(jobs):
            holder = holders.get(index)
            # Claimed now, or the claim expired before the read, or claimed by this very entry.
            if index not in holders or holder is None or _text(holder) == job.entry_id:
                fresh.append(job)
                continue
            LOG.warning(
                "worker %s refuses entry %s: request %s (task %s) is a replay, first seen in entry %s",
                self._worker_id,
                job.entry_id,
                log_safe(job.message["id"]),
                log_safe(job.message["task"]),
                log_safe(_text(holder)),
            )
            outs.append((None, None, job.entry_id))
        return fresh, more, refused

    def _accept(
        self,
        entry_id: str,
        fields: Any,
        now: float,
        deliveries: Mapping[str, int] | None,
        outs: list[_Out],
    ) -> _Job | None:
        """Return the job for a runnable entry; otherwise queue its answer (if any) and ack."""
        if not fields:
            outs.append((None, None, entry_id))
            return None
        try:
            message = protocol.decode(fields, self._secret, self._max_bytes)
        except protocol.ProtocolError as err:
            LOG.warning(
                "worker %s rejects request entry %s: %s", self._worker_id, entry_id, log_safe(err.reason)
            )
            if err.message_id is not None and err.reply_to is not None and self._replies_here(err.reply_to):
                failure = _named_failure(err.reason, _INCOMPATIBLE_NAMES)
                outs.append((err.reply_to, self._failure_envelope(err.message_id, failure), entry_id))
            else:
                outs.append((None, None, entry_id))
            return None
        if message["type"] != "request":
            LOG.warning(
                "worker %s rejects entry %s: it is a %s message, not a request",
                self._worker_id,
                entry_id,
                log_safe(message["type"]),
            )
            outs.append((None, None, entry_id))
            return None
        request_id, reply_to, task = message["id"], message["reply_to"], message["task"]
        # The request's id and task name as logs and failures show them (the sender chose them).
        shown_id, shown_task = log_safe(request_id), log_safe(task)
        if not self._replies_here(reply_to):
            # Answering would write, with this worker's Redis rights, into any stream the
            # sender names (another application's queue, another topic's requests).
            LOG.warning(
                "worker %s rejects request %s (entry %s, task %s): its reply_to %r is not a reply"
                " stream of namespace %r (%s<engine id>)",
                self._worker_id,
                shown_id,
                entry_id,
                shown_task,
                reply_to,
                self._namespace,
                self._replies_prefix,
            )
            outs.append((None, None, entry_id))
            return None
        late = now - message["deadline"]
        if late > 0:
            LOG.warning(
                "worker %s drops request %s (entry %s, task %s): its deadline passed %.3fs ago",
                self._worker_id,
                shown_id,
                entry_id,
                shown_task,
                late,
            )
            outs.append((None, None, entry_id))
            return None
        count = deliveries.get(entry_id, 1) if deliveries is not None else 1
        if count > self._max_deliveries:
            # A poison request: name the atom and task at fault, not just an id.
            text = (
                f"the {message['action']} request {shown_id} of atom '{log_safe(message['name'])}'"
                f" (task {shown_task}) "
                f"was delivered {count} times and its workers died; "
                f"worker {self._worker_id} on topic {self._topic} gave up on it"
            )
            LOG.warning("worker %s fails entry %s: %s", self._worker_id, entry_id, text)
            failure = _named_failure(text, _TIMEOUT_NAMES)
            outs.append((reply_to, self._failure_envelope(request_id, failure), entry_id))
            return None
        task_cls = self._registry.get(task)
        if task_cls is None:
            text = f"worker {self._worker_id} on topic {self._topic} has no task named {shown_task}"
            LOG.warning("%s (request %s, entry %s)", text, shown_id, entry_id)
            failure = _named_failure(text, _NOT_FOUND_NAMES)
            outs.append((reply_to, self._failure_envelope(request_id, failure), entry_id))
            return None
        if deliveries is not None:
            LOG.info(
                "worker %s takes over request %s (entry %s, delivery %d)",
                self._worker_id,
                shown_id,
                entry_id,
                count,
            )
        return _Job(entry_id, message, task_cls)

    def _replies_here(self, reply_to: str) -> bool:
        """Whether ``reply_to`` is an engine's reply stream in this worker's namespace."""
        return reply_to.startswith(self._replies_prefix) and len(reply_to) > len(self._replies_prefix)

    # -- running -------------------------------------------------------------------

    def _pool_loop(
        self, generation: int, jobs: queue.SimpleQueue[_Job | None], outbox: queue.SimpleQueue[_Out | object]
    ) -> None:
        """Run jobs until told to stop: for each, queue ``running``, run the task, queue the answer.

        All of a request's responses are queued by this one thread, in order, on
        the one outbox the writer empties in order: ``running`` always goes out
        before the progress reports and the answer.
        """
        while True:
            job = jobs.get()
            if job is None:
                return
            settled = self._run_job(job, outbox)
            with self._cond:
                if generation == self._generation:
                    self._busy -= 1
                    if not settled:  # left pending: another worker (or we) will take it over
                        self._in_flight.pop(job.entry_id, None)
                    self._cond.notify_all()

    def _run_job(self, job: _Job, outbox: queue.SimpleQueue[_Out | object]) -> bool:
        """Queue the job's ``running`` response, run it, queue its answer; return whether it is settled.

        Settled: its entry's acknowledgement is queued (with its answer, or alone
        when not even its ``running`` response can be encoded). Not settled: a
        bug of ours stopped it, and the entry stays pending for a later delivery.
        """
        try:
            running = self._encode_response(job, protocol.RUNNING)
        except Exception as err:  # cannot happen to a decoded request; never stop for it
            LOG.warning("worker %s drops entry %s: %s", self._worker_id, job.entry_id, log_safe(err))
            outbox.put((None, None, job.entry_id))
            return True
        reply_to = job.message["reply_to"]
        outbox.put((reply_to, running, None))
        try:
            envelope = self._perform(job)
        except Exception:  # a bug of ours; keep the thread alive and the request pending
            LOG.exception("worker %s failed to handle entry %s", self._worker_id, job.entry_id)
            return False
        outbox.put((reply_to, envelope, job.entry_id))
        return True

    def _perform(self, job: _Job) -> dict[str, bytes]:
        """Run the job's task; return the encoded final response."""
        message = job.message
        throttle = ProgressThrottle(lambda value: self._send_progress(job, value), self._clock.monotonic)
        try:
            with request_span(message, self._worker_id, self._topic, self._tracer_provider):
                outcome = call_task(
                    job.task_cls,
                    message,
                    throttle.report,
                    lambda kind, details: self._send_event(job, kind, details),
                )
                # Inside the request's span: a result that cannot be sent fails the
                # request, and the span says so (it said the request went well).
                envelope = self._success_envelope(message, outcome)
        except BaseException as err:  # the task's failure, whatever it is, goes back to the engine
            throttle.flush()
            return self._failure_envelope(message["id"], Failure._of_any(err))
        throttle.flush()
        return envelope

    def _success_envelope(self, message: dict[str, Any], outcome: Any) -> dict[str, bytes]:
        """The encoded SUCCESS response carrying ``outcome``.

        Raises:
            InvalidFlowItem: a spawned sub-flow that cannot travel as JSON.
            InvalidFormat: a result the protocol cannot carry, naming the task and atom.
        """
        if type(outcome) is dynamic.Subflow:
            # A spawned sub-flow travels as JSON; the engine builds it again.
            outcome = outcome.to_record()
        try:
            return self._encode(
                protocol.response_message(message["id"], self._worker_id, protocol.SUCCESS, result=outcome)
            )
        except protocol.ProtocolError as err:
            text = (
                f"task {log_safe(message['task'])} (atom {log_safe(message['name'])})"
                f" returned a result it cannot send: {err.message}"
            )
            raise exc.quoting_cause(exc.InvalidFormat(text)) from err

    def _send_progress(self, job: _Job, progress: float) -> None:
        envelope = self._encode_response(job, protocol.PROGRESS, progress=progress)
        self._outbox.put((job.message["reply_to"], envelope, None))

    def _send_event(self, job: _Job, event_type: Any, details: Any) -> None:
        """Relay an event the task notified; one that cannot be sent is logged and dropped."""
        message = job.message
        try:
            if not isinstance(event_type, str) or not event_type:
                raise ValueError(f"its type {event_type!r} is not a non-empty string")
            envelope = self._encode(
                protocol.response_message(
                    message["id"],
                    self._worker_id,
                    protocol.NOTIFICATION,
                    event_type=event_type,
                    details=details,
                )
            )
        except (protocol.ProtocolError, ValueError, TypeError) as err:
            LOG.warning(
                "worker %s: task %s (atom %s) notified an event that cannot be sent, dropped: %s",
                self._worker_id,
                log_safe(message["task"]),
                log_safe(message["name"]),
                log_safe(getattr(err, "reason", err)),
            )
            return
        self._outbox.put((message["reply_to"], envelope, None))

    # -- encoding --------------------------------------------------------------------

    def _encode(self, message: Mapping[str, Any]) -> dict[str, bytes]:
        return protocol.encode(message, self._secret, self._max_bytes)

    def _encode_response(self, job: _Job, event: str, progress: float | None = None) -> dict[str, bytes]:
        return self._encode(
            protocol.response_message(job.message["id"], self._worker_id, event, progress=progress)
        )

    def _failure_envelope(self, request_id: str, failure: Failure) -> dict[str, bytes]:
        def encoded(record: Failure) -> dict[str, bytes]:
            return self._encode(
                protocol.response_message(request_id, self._worker_id, protocol.FAILURE, failure=record)
            )

        try:
            return encoded(failure)
        except protocol.ProtocolError as err:
            # A failure too large for the limit (or with odd arguments): send its gist.
            gist = failure.pformat()[:1000]
            short = _named_failure(
                f"{gist} (full failure record not sendable: {err.reason})",
                failure.exception_type_names or ("builtins.Exception", "builtins.BaseException"),
            )
        try:
            return encoded(short)
        except protocol.ProtocolError as err:
            # Its text is not Unicode that UTF-8 can carry (a lone surrogate): say so,
            # as the Go worker refuses text that is not UTF-8, rather than leave the
            # request unanswered, to be run again at every delivery.
            LOG.warning(
                "worker %s: the failure of request %s cannot be encoded, answering InvalidFormat: %s",
                self._worker_id,
                log_safe(request_id),
                log_safe(err.reason),
            )
            readable = gist.encode("utf-8", "backslashreplace").decode("utf-8")
            text = f"the failure could not be encoded ({err.reason}); its text, escaped: {readable}"
            said = _named_failure(text, _INVALID_FORMAT_NAMES)
        try:
            return encoded(said)
        except protocol.ProtocolError:  # only a tiny size limit gets here
            return encoded(_named_failure("failure record not sendable", _INVALID_FORMAT_NAMES))

    # -- writing -----------------------------------------------------------------------

    def _write_loop(self) -> None:
        outbox = self._outbox  # this run's; a later run makes its own
        while True:
            first = outbox.get()
            if first is _STOP:
                return
            batch: list[_Out] = [first]  # type: ignore[list-item]
            stop_after = False
            while len(batch) < MAX_BATCH:
                try:
                    item = outbox.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._write(batch)
            if stop_after:
                return

    def _write(self, batch: list[_Out]) -> None:
        """Send responses, then acknowledge and delete their entries, in one MULTI block.

        Only connection errors are retried (until the stop deadline). When Redis
        refuses the block (an ACL that denies a reply stream, a full memory, a
        value the client cannot encode), the items are written one by one so
        that only the refused ones are lost; each is logged, and the entry of a
        request whose answer was refused is still acknowledged, so no worker
        runs it again and later answers are not held up behind it.
        """
        refused = self._transact(batch)
        if refused is not None:
            LOG.warning(
                "worker %s: Redis refused a block of %d message(s) (%s); writing them one by one",
                self._worker_id,
                len(batch),
                refused,
            )
            for item in batch:
                self._write_one(item)
        acks = [entry_id for _, _, entry_id in batch if entry_id is not None]
        if acks:
            with self._cond:
                for entry_id in acks:
                    self._in_flight.pop(entry_id, None)
                self._cond.notify_all()

    def _write_one(self, item: _Out) -> None:
        reply_to, envelope, entry_id = item
        refused = self._transact([item])
        if refused is None:
            return
        what = f"entry {entry_id}" if entry_id is not None else "a progress report"
        LOG.warning(
            "worker %s: Redis refused the answer to %s on %r, dropped: %s",
            self._worker_id,
            _answer_of(envelope) or what,
            reply_to,
            refused,
        )
        if entry_id is not None and envelope is not None:
            refused = self._transact([(None, None, entry_id)])
            if refused is not None:
                LOG.error(
                    "worker %s: Redis refused to acknowledge entry %s: %s", self._worker_id, entry_id, refused
                )

    def _transact(self, items: list[_Out]) -> Exception | None:
        """Write ``items`` in one MULTI block; return what Redis (or the client) refused, if anything.

        Connection errors are retried with a backoff until the stop deadline, then
        the items are given up (logged). Errors of single commands inside an
        executed block are logged here and do not count as a refusal; what each
        command was is worked out only for those (:func:`_command_label`): the
        answer a label names is read back from its JSON body, which would cost
        every response a parse on the busiest thread for a line nearly never logged.
        """
        acks = [entry_id for _, _, entry_id in items if entry_id is not None]
        # What each queued command is, to name it if Redis refuses it: (reply stream or
        # None, envelope or None, entry id or number of entries acknowledged).
        commands: list[tuple[str | None, dict[str, bytes] | None, str | int | None]] = []
        backoff = _transport.Backoff()
        while True:
            pipe = self._client.pipeline(transaction=True)
            commands.clear()
            streams: dict[str, None] = {}
            for reply_to, envelope, entry_id in items:
                if envelope is not None and reply_to is not None:
                    pipe.xadd(reply_to, _transport.fields(envelope), maxlen=REPLY_MAXLEN, approximate=True)
                    commands.append((reply_to, envelope, entry_id))
                    streams[reply_to] = None
            for reply_to in streams:
                # An answer after the engine deleted its stream makes it again, read by
                # nobody: it must expire as the engine's own does, not stay for ever.
                pipe.pexpire(reply_to, REPLY_TTL_MS)
                commands.append((reply_to, None, None))
            if acks:
                pipe.xack(self._stream, protocol.GROUP, *acks)
                pipe.xdel(self._stream, *acks)
                commands += [(None, None, len(acks))] * 2
            try:
                results = pipe.execute(raise_on_error=False)
                break
            except Exception as err:  # sorted just below: retried, or refused
                if not _transport.is_transient(err):
                    return err
                if self._clock.monotonic() >= self._give_up_at:
                    LOG.error(
                        "worker %s gives up sending %d message(s): %s", self._worker_id, len(items), err
                    )
                    return None
                delay = backoff.next()
                LOG.warning(
                    "worker %s: Redis error while answering (retrying in %.1fs): %s",
                    self._worker_id,
                    delay,
                    err,
                )
                self._clock.sleep(delay)
        for command, result in zip(commands, results, strict=False):
            if isinstance(result, Exception):
                LOG.warning(
                    "worker %s: Redis refused %s: %s", self._worker_id, _command_label(*command), result
                )
        return None

    # -- heartbeat -------------------------------------------------------------------------

    def _beat_loop(self) -> None:
        """Beat every ``heartbeat`` seconds until stopped.

        A Redis outage fails every beat (refused while the server is away;
        after a restart without persistence, NOGROUP for the in-flight entries
        until the group is made again), at several beats a second: the first
        failure is a WARNING, the next ones DEBUG, and one more WARNING says when
        the heartbeat works again, so an outage is two lines, not one a beat.
        """
        failing_since: float | None = None
        failed = 0
        while True:
            try:
                self._beat()
            except _transport.errors() as err:
                failed += 1
                if failing_since is None:
                    failing_since = self._clock.monotonic()
                    LOG.warning(
                        "worker %s: Redis error during heartbeat: %s (said once until it works again)",
                        self._worker_id,
                        err,
                    )
                else:
                    LOG.debug("worker %s: Redis error during heartbeat: %s", self._worker_id, err)
            except Exception:
                LOG.exception("worker %s: heartbeat failed", self._worker_id)
            else:
                if failing_since is not None:
                    # At the failure's level: the worker command shows WARNING and up.
                    LOG.warning(
                        "worker %s: heartbeat works again after %d failed beat(s) in %.1f s",
                        self._worker_id,
                        failed,
                        self._clock.monotonic() - failing_since,
                    )
                    failing_since, failed = None, 0
            if self._clock.wait(self._beat_stop, self._heartbeat):
                return

    def _advert(self) -> dict[str, Any]:
        """This worker's ``notify`` message as of now, stating the largest request body it reads.

        The limit lets engines send a request too large for it elsewhere, or fail
        it at once, rather than have it dropped here unread and time out.
        """
        return protocol.notify_message(
            self._worker_id,
            self._topic,
            self.tasks,
            heartbeat=self._heartbeat,
            visibility_timeout=self._visibility_timeout,
            max_message_bytes=self._max_bytes,
            sent_at=self._clock.time(),
        )

    def _beat(self) -> None:
        """Advertise, refresh the claim on in-flight entries, and take over stale ones.

        A beat that makes the worker appear (the run's first, or the first since
        its advert may have lapsed: no beat wrote it for three heartbeats) also adds
        an arrival entry, after the advert in the same round trip: engines holding
        a request for its tasks wake on it and send the request at once, instead of
        at their next periodic look. Only then, not every beat, so an idle engine
        is not woken once a heartbeat per worker. Redis refusing the entry (an ACL
        that predates it) costs the engines that promptness, not the advert.
        """
        began = self._clock.monotonic()
        ttl_ms = int(self._heartbeat * 3000)
        arriving = self._advertised_at is None or began - self._advertised_at >= 3 * self._heartbeat
        notify = self._advert()
        with self._cond:
            in_flight: list[Any] = list(self._in_flight)
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(self._hash_key, mapping=self._encode(notify))  # type: ignore[arg-type]
        pipe.pexpire(self._hash_key, ttl_ms)
        expires_ms = int(self._clock.time() * 1000) + ttl_ms
        pipe.zadd(self._zset_key, {self._worker_id: expires_ms})
        # Engines given no topics find this one here (GT: never shorten another worker's).
        pipe.zadd(self._topics_key, {self._topic: expires_ms}, gt=True)
        if arriving:
            arrival = {"worker": self._worker_id.encode(), "topic": self._topic.encode()}
            pipe.xadd(
                self._arrivals_key,
                _transport.fields(arrival),
                maxlen=protocol.ARRIVALS_MAXLEN,
                approximate=True,
            )
        if in_flight:
            pipe.xclaim(self._stream, protocol.GROUP, self._worker_id, 0, in_flight, justid=True)
        results = pipe.execute(raise_on_error=False)
        if arriving:
            refused = results.pop(4)
            if isinstance(refused, Exception):
                self._say_arrival_refused(refused)
        failed = next((result for result in results if isinstance(result, Exception)), None)
        if failed is not None:
            raise failed
        self._advertised_at = began
        if self._stopping.is_set():
            return
        with self._cond:
            free = self._threads_count - self._busy
        if free > 0:
            self._take_over(free)
        now = self._clock.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self._visibility_timeout
            self._sweep_consumers()

    def _say_arrival_refused(self, error: Exception) -> None:
        """Log, once a run, that Redis refused the arrival entry (the advert itself was written)."""
        level = logging.DEBUG if self._arrival_refused else logging.WARNING
        self._arrival_refused = True
        LOG.log(
            level,
            "worker %s: Redis refused its arrival entry on %r: %s; engines holding requests for its"
            " tasks find it at their next periodic look instead of at once (let the worker's Redis"
            " user XADD to that key)",
            self._worker_id,
            self._arrivals_key,
            error,
        )

    def _sweep_consumers(self) -> None:
        """Remove the consumers of dead workers that hold no entry any more.

        A worker killed, or stopped while requests still ran, leaves its
        consumer name in the group; once its entries were taken over it holds
        nothing. A consumer is removed when it holds no entry, has been idle
        longer than the visibility timeout and its worker is not advertised
        (a live worker, even an idle one, is): removing a consumer that is
        read for at that moment would drop the entry it was just given from
        the pending list, which a dead worker cannot be.
        """
        idle_ms = int(self._visibility_timeout * 1000)
        rows = self._client.xinfo_consumers(self._stream, protocol.GROUP)
        candidates = [
            _text(row["name"])
            for row in rows
            if int(row["pending"]) == 0
            and int(row["idle"]) > idle_ms
            and _text(row["name"]) != self._worker_id
        ]
        if not candidates:
            return
        pipe = self._client.pipeline(transaction=False)
        for name in candidates:
            pipe.exists(protocol.worker_key(self._namespace, name))
        advertised = pipe.execute()
        for name, alive in zip(candidates, advertised, strict=True):
            if alive:
                continue
            self._client.xgroup_delconsumer(self._stream, protocol.GROUP, name)
            LOG.info(
                "worker %s removed the consumer of dead worker %s, which held nothing",
                self._worker_id,
                log_safe(name),
            )

    def _take_over(self, count: int) -> None:
        reply = self._client.xautoclaim(
            self._stream,
            protocol.GROUP,
            self._worker_id,
            int(self._visibility_timeout * 1000),
            start_id="0-0",
            count=count,
        )
        claimed = [entry for entry in reply[1] if entry is not None]
        if not claimed:
            return
        ids = [entry[0] for entry in claimed]
        pending = self._client.xpending_range(
            self._stream,
            protocol.GROUP,
            min=ids[0],
            max=ids[-1],
            count=len(ids) + 1000,
            consumername=self._worker_id,
        )
        deliveries: dict[str, int] = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        self._dispatch(claimed, deliveries)


def _seen_for_ms(left: float) -> int:
    """How long (ms) to remember a request id whose deadline is ``left`` seconds away.

    Until the deadline has surely passed everywhere (plus the clock skew
    allowed), at least 1 ms and at most ``protocol.MAX_SEEN``: a far deadline
    (``transition_timeout=1e10`` for "for ever") would otherwise ask Redis for
    an expiry it refuses ("value is not an integer or out of range"), and the
    request would never be answered. The Go worker caps it the same way.
    """
    keep = min(left + protocol.MAX_CLOCK_SKEW, protocol.MAX_SEEN)
    return max(1, int(keep * 1000))


def _command_label(
    reply_to: str | None, envelope: Mapping[str, bytes] | None, entry: str | int | None
) -> str:
    """What one command of a written block was, for the line saying Redis refused it.

    ``(reply_to, envelope, entry id)`` for an answer, ``(reply_to, None, None)``
    for its stream's expiry, ``(None, None, count)`` for the acknowledgement of
    ``count`` entries.
    """
    if envelope is not None:
        return f"the answer to {_answer_of(envelope) or entry} on {reply_to!r}"
    if reply_to is not None:
        return f"the expiry of {reply_to!r}"
    return f"the acknowledgement of {entry} entries"


def _answer_of(envelope: Mapping[str, bytes] | None) -> str | None:
    """ "request <id>" for a response envelope, for log lines (None when it cannot be read)."""
    if envelope is None:
        return None
    try:
        return f"request {json.loads(envelope['body'])['id']}"
    except (KeyError, TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    """A stream id as text (redis-py returns bytes unless responses are decoded)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _check(ok: bool, problem: str) -> None:
    if not ok:
        raise ValueError(problem)


def _check_exchange(exchange: object, url: object) -> None:
    """Refuse a URL passed where TaskFlow's signature puts the exchange.

    flowkit's ``Worker`` took the URL first before it took TaskFlow's order;
    such a call would otherwise serve the wrong broker without a word.

    Raises:
        InvalidFormat: ``exchange`` is not a string, or looks like a URL
            (the message shows it with its password masked).
    """
    if exchange is None:
        return
    if not isinstance(exchange, str):
        raise exc.InvalidFormat(f"exchange must be a string, not {type(exchange).__name__}")
    if "://" in exchange:
        hint = "" if url is None else f" (url is {mask_url(url)!r} already)"
        raise exc.InvalidFormat(
            f"exchange {mask_url(exchange)!r} looks like a URL{hint}: Worker's first argument is the"
            " exchange, as TaskFlow's; pass the broker as url=, e.g. Worker(topic=..., tasks=...,"
            " url='redis://...')"
        )


def _stream_entries(reply: Any) -> list[tuple[Any, Any]]:
    """The entries of a one-stream XREADGROUP reply (see :func:`_transport.stream_entries`)."""
    return [entry for _, entries in _transport.stream_entries(reply) for entry in entries]
