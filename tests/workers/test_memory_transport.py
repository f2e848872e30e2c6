"""The worker-based engine and the Python worker in one process, on the memory transport.

This is how TaskFlow's users (and TaskFlow's own tests) run the worker-based
engine: ``Worker(exchange=..., topic=..., tasks=[...], transport="memory")`` in
a thread, and ``engines.load(..., engine="worker-based", exchange=...,
transport="memory", topics=[...])`` beside it. Timing logic runs on a
:class:`~tests.workers.fake_clock.FakeClock` the test moves; nothing sleeps.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from flowkit import engines, task
from flowkit import exceptions as exc
from flowkit import states as st
from flowkit.engines.worker_based import _memory, _task_call, protocol
from flowkit.engines.worker_based.worker import Worker
from flowkit.patterns import linear_flow
from tests import services
from tests.conftest import wait_until
from tests.workers.conftest import WaitScans
from tests.workers.fake_clock import FakeClock

pytestmark = pytest.mark.timeout(60)

#: What the tasks below did, in order (they run in this process, on the worker's threads).
JOURNAL: list[str] = []


class Reserve(task.Task):
    default_provides = "reservation"

    def execute(self, size: int) -> str:
        JOURNAL.append(f"reserve {size}")
        return f"r-{size}"

    def revert(self, size: int, result: Any, **kwargs: Any) -> None:
        JOURNAL.append(f"release {result}")


class Fail(task.Task):
    def execute(self, reservation: str) -> None:
        raise RuntimeError(f"cannot use {reservation}")


class Chatty(task.Task):
    """Reports progress a few times in a row, as TaskFlow's own test tasks do."""

    def execute(self) -> None:
        for value in (0.2, 0.5, 0.8):
            self.update_progress(value)


class Announcer(task.Task):
    """Notifies events of its own on its notifier, as TaskFlow's wbe_event_sender example does."""

    def execute(self) -> None:
        self.notifier.notify("A", {"leftover": ("A", "B")})
        self.update_progress(0.5)
        self.notifier.notify("disk-full", None)
        self.notifier.notify("odd", {"value": object()})  # not JSON: dropped, logged
        self.notifier.notify(7, {})  # not a string: dropped, logged
        self.notifier.notify("B", {"leftover": ("B",)})


TASKS = [Reserve, Fail, Chatty, Announcer]


class _BackgroundRun:
    """``engine.run()`` on a daemon thread; what it raised is kept in ``outcome`` for the test."""

    def __init__(self, engine: Any) -> None:
        self.outcome: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(engine,), daemon=True)
        self.thread.start()

    def _run(self, engine: Any) -> None:
        try:
            engine.run()
        except BaseException as err:  # handed to the test thread
            self.outcome.append(err)


@pytest.fixture
def exchange() -> str:
    """An exchange of this test's own, so tests cannot see each other's workers."""
    return f"ex-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def start_worker() -> Iterator[Callable[..., Worker]]:
    """Start workers in threads, TaskFlow's way (``run`` in a thread, then ``wait``); stop them after."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(**options: Any) -> Worker:
        options.setdefault("tasks", TASKS)
        worker = Worker(transport="memory", **options)
        runner = threading.Thread(target=worker.run, daemon=True)
        runner.start()
        assert worker.wait(10)
        started.append((worker, runner))
        return worker

    yield start
    for worker, runner in started:
        worker.stop()
        runner.join(10)
        assert worker.join(0)


def load(flow: Any, exchange: str, **options: Any) -> Any:
    options.setdefault("topics", ["t"])
    return engines.load(flow, engine="worker-based", exchange=exchange, transport="memory", **options)


def test_an_engine_runs_a_flow_on_a_worker_of_its_process(
    start_worker: Callable[..., Worker], exchange: str
) -> None:
    start_worker(exchange=exchange, topic="t", transport_options={"polling_interval": 0.01})
    engine = load(linear_flow.Flow("f").add(Reserve()), exchange, store={"size": 3})

    engine.run()

    assert engine.storage.fetch("reservation") == "r-3"
    assert engine.storage.get_flow_state() == st.SUCCESS


def test_a_remote_failure_reverts_the_flow_on_the_worker(
    start_worker: Callable[..., Worker], exchange: str
) -> None:
    start_worker(exchange=exchange, topic="t")
    engine = load(linear_flow.Flow("f").add(Reserve(), Fail()), exchange, store={"size": 7})
    JOURNAL.clear()

    with pytest.raises(exc.WrappedFailure, match="cannot use r-7"):
        engine.run()

    assert JOURNAL == ["reserve 7", "release r-7"]
    assert engine.storage.get_atom_state(Reserve().name) == st.REVERTED
    assert engine.storage.get_flow_state() == st.REVERTED


def test_every_progress_report_of_a_short_burst_reaches_the_engine(
    start_worker: Callable[..., Worker], exchange: str
) -> None:
    start_worker(exchange=exchange, topic="t")
    chatty = Chatty()
    seen: list[float] = []
    chatty.notifier.register(
        task.EVENT_UPDATE_PROGRESS, lambda event_type, details: seen.append(details["progress"])
    )

    load(linear_flow.Flow("f").add(chatty), exchange).run()

    assert seen == [0.0, 0.2, 0.5, 0.8, 1.0]


def test_events_a_remote_task_notifies_reach_its_listeners_in_the_engine_in_order(
    start_worker: Callable[..., Worker], exchange: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flowkit.engines.worker_based.worker")
    start_worker(exchange=exchange, topic="t")
    announcer = Announcer()
    heard: list[tuple[Any, Any]] = []
    announcer.notifier.register(
        announcer.notifier.ANY, lambda event_type, details: heard.append((event_type, details))
    )

    load(linear_flow.Flow("f").add(announcer), exchange).run()

    assert heard == [
        (task.EVENT_UPDATE_PROGRESS, {"progress": 0.0}),
        ("A", {"leftover": ["A", "B"]}),  # through JSON, as on TaskFlow
        (task.EVENT_UPDATE_PROGRESS, {"progress": 0.5}),
        ("disk-full", {}),
        ("B", {"leftover": ["B"]}),
        (task.EVENT_UPDATE_PROGRESS, {"progress": 1.0}),
    ]
    dropped = [r.getMessage() for r in caplog.records if "cannot be sent" in r.getMessage()]
    assert len(dropped) == 2 and all(protocol.task_name(Announcer) in line for line in dropped)


def test_a_progress_flood_is_cut_to_a_burst_then_one_report_per_interval() -> None:
    now = [0.0]
    sent: list[float] = []
    throttle = _task_call.ProgressThrottle(sent.append, monotonic=lambda: now[0])
    for i in range(_task_call.PROGRESS_BURST + 5):
        throttle.report(Chatty(), i / 100)
    assert sent == [i / 100 for i in range(_task_call.PROGRESS_BURST)]

    now[0] += _task_call.PROGRESS_INTERVAL
    throttle.report(Chatty(), 0.5)
    throttle.report(Chatty(), 0.6)
    throttle.flush()
    assert sent[_task_call.PROGRESS_BURST :] == [0.5, 0.6]


class Quiet(task.Task):
    def execute(self) -> bool:
        return self._own_notifier is None


class Talker(task.Task):
    """Notifies events with a listener of its own on its notifier."""

    heard: ClassVar[list[tuple[str, Any]]] = []

    def execute(self) -> None:
        self.notifier.register(
            self.notifier.ANY, lambda event_type, details: self.heard.append((event_type, details))
        )
        self.notifier.notify("A", {"leftover": ["A"]})
        self.update_progress(0.5)
        self.notifier.notify("disk-full", None)


def test_a_task_call_relays_notified_events_without_a_notifier_per_request() -> None:
    relayed: list[tuple[str, Any]] = []
    progress: list[float] = []

    def call(task_cls: type[task.Task]) -> Any:
        request = {"name": "x", "arguments": {}, "action": protocol.EXECUTE}
        return _task_call.call_task(
            task_cls, request, lambda _t, value: progress.append(value), lambda *event: relayed.append(event)
        )

    assert call(Quiet) is True  # a task that notifies nothing never gets a notifier
    assert relayed == []

    call(Talker)

    assert relayed == [("A", {"leftover": ["A"]}), ("disk-full", {})]  # progress goes its own way
    assert progress == [0.5]
    assert Talker.heard == [
        ("A", {"leftover": ["A"]}),
        ("update_progress", {"progress": 0.5}),
        ("disk-full", {}),
    ]


class Hooked(task.Task):
    """Records its hooks; ``fail_in`` names the step that raises."""

    calls: ClassVar[list[str]] = []
    fail_in: ClassVar[str] = ""

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_in:
            raise RuntimeError(f"{name} failed")

    def pre_execute(self) -> None:
        self._step("pre_execute")

    def execute(self) -> str:
        self._step("execute")
        return "done"

    def post_execute(self) -> None:
        self._step("post_execute")

    def pre_revert(self) -> None:
        self._step("pre_revert")

    def revert(self, **kwargs: Any) -> None:
        self._step("revert")

    def post_revert(self) -> None:
        self._step("post_revert")


@pytest.mark.parametrize(
    ("action", "fail_in", "expected"),
    [
        (protocol.EXECUTE, "", ["pre_execute", "execute", "post_execute"]),
        (protocol.EXECUTE, "pre_execute", ["pre_execute", "post_execute"]),
        (protocol.EXECUTE, "execute", ["pre_execute", "execute", "post_execute"]),
        (protocol.REVERT, "", ["pre_revert", "revert", "post_revert"]),
        (protocol.REVERT, "pre_revert", ["pre_revert", "post_revert"]),
    ],
)
def test_a_task_call_runs_the_hooks_around_it_as_an_engine_does(
    action: str, fail_in: str, expected: list[str]
) -> None:
    """TaskFlow's workers call the hooks through the same executor as its engines."""
    Hooked.calls, Hooked.fail_in = [], fail_in
    request: dict[str, Any] = {"name": "x", "arguments": {}, "action": action}
    if action == protocol.REVERT:
        request.update(result=None, flow_failures={})
    if fail_in:
        with pytest.raises(RuntimeError, match=f"{fail_in} failed"):
            _task_call.call_task(Hooked, request)
    else:
        _task_call.call_task(Hooked, request)
    assert Hooked.calls == expected


def test_engines_and_workers_meet_by_exchange_and_topic(
    start_worker: Callable[..., Worker], exchange: str
) -> None:
    start_worker(exchange=exchange, topic="t")
    clock = FakeClock()  # the availability check's wait costs no real time
    flow = linear_flow.Flow("f").add(Reserve())

    for elsewhere in ({"exchange": f"{exchange}-other"}, {"topics": ["other-topic"]}):
        options = {
            "exchange": exchange,
            "store": {"size": 1},
            "worker_wait": 1.0,
            "clock": clock,
            **elsewhere,
        }
        with pytest.raises(exc.NotFound, match="no live worker offers"):
            load(flow, **options).run()

    engine = load(flow, exchange, store={"size": 1}, url="memory://")
    engine.run()
    assert engine.storage.fetch("reservation") == "r-1"


def test_worker_wait_ends_as_a_worker_of_the_process_arrives(
    start_worker: Callable[..., Worker], exchange: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the system clock the wait blocks on the memory broker's arrivals stream as on
    # Redis's: the periodic look pushed past the test, an arrival about another topic
    # is read and waited past, and the worker's own ends the wait with a second scan.
    from flowkit.engines.worker_based import _driver

    monkeypatch.setattr(_driver, "LOOK_EVERY", 600.0)
    scans = WaitScans(monkeypatch)
    engine = load(linear_flow.Flow("f").add(Reserve()), exchange, store={"size": 5}, worker_wait=600.0)
    run = _BackgroundRun(engine)
    scans.wait_scan()
    (directory,) = scans.directories
    elsewhere = _memory.connect().xadd(protocol.arrivals_key(exchange), {"worker": "w", "topic": "elsewhere"})
    services.wait_until(
        lambda: directory.arrivals_seen == elsewhere, 10.0, message="the wait reading the arrivals stream"
    )

    start_worker(exchange=exchange, topic="t")
    run.thread.join(10.0)

    assert not run.thread.is_alive() and run.outcome == []
    assert scans.during_wait == [2]
    assert engine.storage.fetch("reservation") == "r-5"


def test_without_an_exchange_both_sides_use_taskflows_default_one(
    start_worker: Callable[..., Worker],
) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    start_worker(topic=topic)
    engine = engines.load(
        linear_flow.Flow("f").add(Reserve()),
        engine="worker-based",
        transport="memory",
        exchange="default",
        topics=[topic],
        store={"size": 4},
        transition_timeout=None,  # TaskFlow's "no limit"
    )
    engine.run()
    assert engine.storage.fetch("reservation") == "r-4"


def test_a_named_memory_url_is_a_separate_broker(start_worker: Callable[..., Worker], exchange: str) -> None:
    start_worker(exchange=exchange, topic="t", url=f"memory://{exchange}")
    flow = linear_flow.Flow("f").add(Reserve())

    with pytest.raises(exc.NotFound):
        load(flow, exchange, store={"size": 1}, worker_wait=1.0, clock=FakeClock()).run()
    engine = load(flow, exchange, store={"size": 2}, url=f"memory://{exchange}")
    engine.run()
    assert engine.storage.fetch("reservation") == "r-2"


def test_worker_expiry_stops_sending_to_a_worker_not_heard_from(
    start_worker: Callable[..., Worker], exchange: str
) -> None:
    clock = FakeClock()
    # A heartbeat far away: the advert itself stays valid for 3000 s of the clock.
    start_worker(exchange=exchange, topic="t", clock=clock, heartbeat=1000.0, visibility_timeout=2000.0)
    flow = linear_flow.Flow("f").add(Reserve())
    clock.advance(31.0)

    with pytest.raises(exc.NotFound, match="no live worker offers"):
        load(flow, exchange, store={"size": 1}, worker_expiry=30, worker_wait=1.0, clock=clock).run()

    for no_limit in (None, 0, -1):
        engine = load(flow, exchange, store={"size": 1}, worker_expiry=no_limit, clock=clock)
        engine.run()
        assert engine.storage.fetch("reservation") == "r-1"


def _silent_worker(exchange: str, clock: FakeClock) -> None:
    """Advertise, in the memory broker, a worker of topic ``t`` that never reads a request."""
    client = _memory.connect()
    advert = protocol.notify_message(
        "silent", "t", [protocol.task_name(Reserve)], heartbeat=1000.0, visibility_timeout=2000.0,
        sent_at=clock.time(),
    )  # fmt: skip
    client.hset(protocol.worker_key(exchange, "silent"), mapping=protocol.encode(advert, None))
    client.zadd(protocol.workers_key(exchange, "t"), {"silent": int((clock.time() + 3000) * 1000)})


def test_a_request_no_worker_starts_times_out_after_the_transition_timeout(
    exchange: str, wait_until: Callable[..., object]
) -> None:
    clock = FakeClock()
    _silent_worker(exchange, clock)
    engine = load(
        linear_flow.Flow("f").add(Reserve()), exchange, store={"size": 1}, transition_timeout=5.0, clock=clock
    )
    runner = _BackgroundRun(engine)
    client = _memory.connect()
    stream = protocol.requests_key(exchange, "t")
    wait_until(lambda: client.exists(stream) and client.xread({stream: "0-0"}))
    clock.advance(4.0)
    assert runner.thread.is_alive()
    clock.advance(1.5)
    # The failed atom's revert request is not started either: it times out in turn.
    wait_until(lambda: clock.advance(0.5) or not runner.thread.is_alive())

    assert len(runner.outcome) == 1
    assert isinstance(runner.outcome[0], exc.RequestTimeout)
    message = str(runner.outcome[0])
    assert "revert request" in message and "no worker started it within 5 s" in message
    assert engine.storage.get_atom_state(Reserve().name) == st.REVERT_FAILURE
    assert isinstance(engine.storage.get_execute_failures()[Reserve().name].exception, exc.RequestTimeout)


def test_an_engine_given_no_topics_finds_the_workers_of_its_exchange(
    start_worker: Callable[..., Worker], exchange: str
) -> None:
    start_worker(exchange=exchange, topic="reserving", tasks=[Reserve])
    start_worker(exchange=exchange, topic="failing", tasks=[Fail])
    start_worker(exchange=f"{exchange}-other", topic="elsewhere")
    engine = engines.load(
        linear_flow.Flow("f").add(Reserve(), Fail()),
        engine="worker-based",
        exchange=exchange,
        transport="memory",
        store={"size": 5},
    )
    JOURNAL.clear()

    with pytest.raises(exc.WrappedFailure, match="cannot use r-5"):
        engine.run()

    assert JOURNAL == ["reserve 5", "release r-5"]


class Unserved(task.Task):
    """A task no worker of these tests registers."""

    def execute(self) -> None:
        raise AssertionError("never runs")


@pytest.mark.parametrize("topics", [["t"], None], ids=["given-topics", "no-topics"])
def test_a_request_no_worker_offers_times_out_after_the_transition_timeout(
    start_worker: Callable[..., Worker],
    exchange: str,
    wait_until: Callable[..., object],
    topics: list[str] | None,
) -> None:
    start_worker(exchange=exchange, topic="t")
    clock = FakeClock()
    engine = engines.load(
        linear_flow.Flow("f").add(Unserved()),
        engine="worker-based",
        exchange=exchange,
        transport="memory",
        topics=topics,
        transition_timeout=5.0,
        clock=clock,
    )  # no NotFound up front, with topics or without: TaskFlow's engine waits too
    runner = _BackgroundRun(engine)
    wait_until(lambda: engine.storage.get_atom_state(Unserved().name) == st.RUNNING)
    wait_until(lambda: clock.advance(0.5) or not runner.thread.is_alive())

    assert len(runner.outcome) == 1 and isinstance(runner.outcome[0], exc.RequestTimeout)
    assert "no live worker offered its task within 5 s" in str(runner.outcome[0])
    assert "revert request" in str(runner.outcome[0])  # the revert waited for a worker in turn
    failure = engine.storage.get_execute_failures()[Unserved().name]
    assert failure.check(exc.RequestTimeout) and "execute request" in str(failure.exception)
    assert engine.storage.get_atom_state(Unserved().name) == st.REVERT_FAILURE


@pytest.mark.parametrize("topics", [["t"], None], ids=["given-topics", "no-topics"])
def test_an_engine_started_before_its_worker_gets_the_work_done(
    start_worker: Callable[..., Worker],
    exchange: str,
    wait_until: Callable[..., object],
    topics: list[str] | None,
) -> None:
    clock = FakeClock()
    engine = engines.load(
        linear_flow.Flow("f").add(Reserve()),
        engine="worker-based",
        exchange=exchange,
        transport="memory",
        topics=topics,
        store={"size": 3},
        transition_timeout=30.0,
        clock=clock,
    )
    runner = _BackgroundRun(engine)
    wait_until(lambda: engine.storage.get_atom_state(Reserve().name) == st.RUNNING)
    clock.advance(0.5)
    assert runner.thread.is_alive()
    JOURNAL.clear()

    start_worker(exchange=exchange, topic="t")
    # Each poll moves the engine's clock about as fast as real time (the worker's adverts
    # run on real time), so the engine's reader keeps looking for workers.
    wait_until(lambda: clock.advance(0.01) or not runner.thread.is_alive(), 10.0)

    assert runner.outcome == []
    assert engine.storage.fetch("reservation") == "r-3"
    assert JOURNAL == ["reserve 3"]


def test_taskflows_positional_call_serves_the_exchange_it_names(exchange: str) -> None:
    # TaskFlow's order: exchange, topic, tasks, executor, threads_count, url, transport.
    worker = Worker(exchange, "t", TASKS, None, 2, None, "memory")
    worker.start()
    try:
        assert worker.wait(10)
        engine = load(linear_flow.Flow("f").add(Reserve()), exchange, store={"size": 5})
        engine.run()
    finally:
        worker.stop()
    assert engine.storage.fetch("reservation") == "r-5"
    assert f"namespace '{exchange}'" in worker.banner and "threads: 2" in worker.banner


def test_a_url_where_the_exchange_goes_is_refused_saying_to_pass_url() -> None:
    # flowkit's Worker once took the URL first; such a call must not serve the wrong broker quietly.
    with pytest.raises(exc.InvalidFormat) as refused:
        Worker("redis://user:hunter2@localhost:6379/0", "t", TASKS)

    text = str(refused.value)
    assert "redis://user:***@localhost:6379/0" in text and "hunter2" not in text
    assert "exchange" in text and "url=" in text
    with pytest.raises(exc.InvalidFormat, match="exchange must be a string"):
        Worker(42, "t", TASKS, transport="memory")  # type: ignore[arg-type]


def test_an_amqp_url_is_refused_naming_it_without_its_password() -> None:
    flow = linear_flow.Flow("f").add(Reserve())
    url = "amqp://guest:hunter2@rabbit:5672//"

    with pytest.raises(exc.InvalidEngineOption) as raised:
        engines.load(flow, engine="worker-based", url=url, topics=["t"], exchange="x")
    with pytest.raises(exc.InvalidFormat) as refused:
        Worker(exchange="x", topic="t", tasks=TASKS, url=url)

    for error in (raised.value, refused.value):
        text = str(error)
        assert "amqp://guest:***@rabbit:5672//" in text and "hunter2" not in text
        assert "Redis" in text and "memory" in text
    assert raised.value.option == "url"


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        ({"transport": "amqp"}, "transport", "transport 'amqp' is not supported"),
        ({"transport": "memory", "url": "redis://localhost"}, "transport", "does not match"),
        ({"transport": "redis"}, "url", "url is missing"),
        ({}, "url", "url is missing"),
        ({"transport": "memory", "transport_options": 3}, "transport_options", "must be a dict"),
        ({"transport": "memory", "worker_expiry": "soon"}, "worker_expiry", "worker_expiry"),
        ({"transport": "memory", "exchange": ""}, "exchange", "exchange"),
    ],
)
def test_bad_transport_options_are_refused_before_anything_runs(
    options: dict[str, Any], option: str, words: str
) -> None:
    with pytest.raises(exc.InvalidEngineOption, match=words) as raised:
        engines.load(linear_flow.Flow("f").add(Reserve()), engine="worker-based", topics=["t"], **options)
    assert raised.value.option == option


def test_taskflow_options_are_accepted_on_redis_too() -> None:
    engine = engines.load(
        linear_flow.Flow("f").add(Reserve()),
        store={"size": 1},
        engine="worker-based",
        url="redis://localhost:1/0",
        topics=["t"],
        exchange="test",
        transport="redis",
        transport_options={"polling_interval": 0.1},
        worker_expiry=60,
        retry_options={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.1, "interval_max": 1},
    )
    assert engine.options["exchange"] == "test"


def test_interrupt_ends_a_blocking_read_at_once_whether_it_began_yet_or_not(exchange: str) -> None:
    client = _memory.connect(f"memory://{exchange}")
    client.xgroup_create("s", protocol.GROUP, id="0", mkstream=True)
    replies: list[Any] = []

    def read() -> None:
        replies.append(client.xreadgroup(protocol.GROUP, "c", {"s": ">"}, block=600_000))

    for _ in range(2):
        reader = threading.Thread(target=read)
        reader.start()
        client.interrupt()  # before or during the read: either way it ends now, not in ten minutes
        reader.join(10)
        assert not reader.is_alive()
    assert replies == [[], []]


def test_wait_returns_false_for_a_worker_that_stopped_and_join_waits_for_the_end(exchange: str) -> None:
    worker = Worker(exchange=exchange, topic="t", tasks=TASKS, transport="memory")
    assert worker.join(0)  # not running
    worker.start()
    assert worker.wait(10)
    assert not worker.join(0)
    worker.stop()
    assert worker.join(0)
    assert not worker.wait(0)


def test_run_takes_taskflows_banner_arguments(exchange: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowkit.engines.worker_based.worker")
    written: list[str] = []
    workers = []
    for arguments in ((True, written.append), (False,)):  # TaskFlow's positional order
        worker = Worker(exchange=exchange, topic="t", tasks=TASKS, transport="memory")
        runner = threading.Thread(target=worker.run, args=arguments)
        runner.start()
        assert worker.wait(10)
        worker.stop()
        runner.join(10)
        workers.append(worker)

    assert written == [workers[0].banner]
    assert written[0].splitlines()[0] == f"flowkit worker {workers[0].worker_id}"
    assert f"namespace '{exchange}'" in written[0] and protocol.task_name(Fail) in written[0]
    assert not [r for r in caplog.records if "serves topic" in r.getMessage()]  # neither run logged it


def test_nothing_warns_about_signing_in_one_process(
    start_worker: Callable[..., Worker], exchange: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    start_worker(exchange=exchange, topic="t")
    load(linear_flow.Flow("f").add(Reserve()), exchange, store={"size": 1}).run()
    assert not [r for r in caplog.records if "signing secret" in r.getMessage()]


#: Makes ``import redis`` fail in a child process, as on a plain ``pip install flowkit``.
_NO_REDIS = """
import sys


class NoRedis:
    def find_spec(self, name, path=None, target=None):
        if name == "redis" or name.startswith("redis."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoRedis())
"""


def test_the_memory_transport_runs_without_the_redis_client_and_redis_urls_say_what_to_install() -> None:
    script = _NO_REDIS + textwrap.dedent(
        """
        from flowkit import engines, task
        from flowkit.engines.worker_based.worker import Worker
        from flowkit.patterns import linear_flow


        class Double(task.Task):
            default_provides = "doubled"

            def execute(self, x):
                return 2 * x


        worker = Worker("no-redis", "t", [Double], transport="memory")
        worker.start()
        assert worker.wait(10)
        engine = engines.load(
            linear_flow.Flow("f").add(Double()), store={"x": 21},
            engine="worker-based", exchange="no-redis", transport="memory", topics=["t"],
        )
        engine.run()
        worker.stop()
        print("doubled", engine.storage.fetch("doubled"))
        print("redis imported:", "redis" in sys.modules)
        for attempt in (
            lambda: Worker(topic="t", tasks=[Double], url="redis://localhost:6379/0"),
            lambda: engines.load(linear_flow.Flow("g").add(Double()), engine="worker-based",
                                 url="redis://localhost:6379/0", topics=["t"]),
        ):
            try:
                attempt()
            except ImportError as err:
                print("refused:", err)

        from flowkit.cli import main

        print("cli exit", main(["worker", "--redis", "redis://localhost:6379/0", "--topic", "t",
                                "--tasks", "tests.workers.behaviour_tasks"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["doubled 42", "redis imported: False"]
    refusals = lines[2:4]
    assert len(refusals) == 2
    assert all("pip install 'flowkit[workers]'" in line for line in refusals)
    assert lines[4:] == ["cli exit 1"]
    assert "flowkit worker: error:" in done.stderr and "pip install 'flowkit[workers]'" in done.stderr


def test_expired_keys_nobody_reads_again_are_dropped_from_the_memory_broker() -> None:
    """A worker marks each request it takes with a key that expires (``seen:<id>``) and
    is never read again. The broker dropped an expired key only when it was read, so
    an in-process worker kept one key per request it ever served, for as long as it ran.
    """
    from flowkit.engines.worker_based._memory import MemoryBroker

    clock = FakeClock()
    broker = MemoryBroker(clock=clock)
    for number in range(1000):
        broker.run([(MemoryBroker.set, (f"seen:{number}", b"1"), {"px": 1000})])
    broker.run([(MemoryBroker.set, ("kept", b"1"), {})])
    clock.advance(2.0)  # every seen: key has expired; nothing reads them
    for number in range(1000, 1100):
        broker.run([(MemoryBroker.set, (f"seen:{number}", b"1"), {"px": 1000})])
    held = len(broker._values)
    assert held <= 200, f"{held} keys held, 1,000 of them expired"
    assert broker.run([(MemoryBroker.get, ("kept",), {})]) == [b"1"]
    assert broker.run([(MemoryBroker.get, ("seen:1099",), {})]) == [b"1"]


class _Interrupted(BaseException):
    """What the command line's stop signal raises into a worker that does not serve yet."""


def test_an_exception_while_the_helpers_start_still_stops_those_already_started(
    exchange: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run() learnt which helper threads it had started only once all were: an
    # exception raised meanwhile (``flowkit worker``'s stop signal, which leaves
    # a worker not serving yet at once) left the pool threads and the writer
    # already running without their stop, waiting on their queues for good.
    worker = Worker(exchange, "t", TASKS, None, 2, None, "memory")
    real_start = threading.Thread.start
    started: list[threading.Thread] = []

    def start(thread: threading.Thread) -> None:
        if thread.name == "flowkit-worker-heartbeat":  # the last one started
            raise _Interrupted
        real_start(thread)
        started.append(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(_Interrupted):
        worker.run(display_banner=False)
    monkeypatch.undo()
    # The pool and the writer, then the shut-down's farewell (which withdraws the advert).
    names = [t.name for t in started]
    pool_and_writer = ["flowkit-worker-pool-0", "flowkit-worker-pool-1", "flowkit-worker-writer"]
    assert names == [*pool_and_writer, "flowkit-worker-farewell"]
    wait_until(lambda: not any(t.is_alive() for t in started), timeout=30)
    assert worker.join(0)


def test_a_result_the_worker_cannot_send_says_why_once(
    start_worker: Callable[..., Worker], exchange: str
) -> None:
    # The encoder's words came four times: quoted in the worker's message and in
    # its cause's (the protocol's), and again on each cause's line below them.
    from tests.workers.worker_tasks import Unsendable

    start_worker(exchange=exchange, topic="t", tasks=["tests.workers.worker_tasks:Unsendable"])
    engine = load(Unsendable("unsendable"), exchange)
    with pytest.raises(exc.WrappedFailure) as raised:
        engine.run()
    [failure] = list(raised.value)
    assert failure.exception_str == (
        "task tests.workers.worker_tasks.Unsendable (atom unsendable) returned a result it cannot "
        "send: message is not JSON-encodable at result: TypeError: Object of type object is not "
        "JSON serializable"
    )
