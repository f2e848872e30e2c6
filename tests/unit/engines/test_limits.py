"""Concurrency limits: never more calls of one key at once than the engine allows.

Tasks count themselves in and out under a lock, so the peak is exact; where a test
must also show that the limit is *reached* (not merely that nothing ran), tasks
meet at a barrier sized to the limit, which only passes when that many run at
once. Nothing sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from flowkit import dynamic, engines, states, task
from flowkit import exceptions as exc
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from flowkit.retry import Times

WAIT = 30.0


class Meter:
    """Counts calls in flight per key; remembers the most seen at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.calls: list[str] = []

    def enter(self, key: str, name: str) -> None:
        with self._lock:
            self.now[key] = self.now.get(key, 0) + 1
            self.peak[key] = max(self.peak.get(key, 0), self.now[key])
            self.calls.append(name)

    def leave(self, key: str) -> None:
        with self._lock:
            self.now[key] -= 1


class Metered(task.Task):
    """Counts itself in, optionally waits at a barrier, counts itself out."""

    def __init__(
        self, name: str, meter: Meter, key: str | None, barrier: threading.Barrier | None = None, **kw: Any
    ) -> None:
        super().__init__(name, concurrency_key=key, **kw)
        self.meter = meter
        self.barrier = barrier
        self.fail = False

    def execute(self) -> str:
        key = self.concurrency_key or "-"
        self.meter.enter(key, self.name)
        try:
            if self.barrier is not None:
                self.barrier.wait(WAIT)
            if self.fail:
                raise RuntimeError(f"{self.name} fails")
            return self.name
        finally:
            self.meter.leave(key)

    def revert(self, **kwargs: Any) -> None:
        key = self.concurrency_key or "-"
        self.meter.enter(key, "revert:" + self.name)
        self.meter.leave(key)


def test_limit_of_two_holds_for_200_tasks_on_16_threads() -> None:
    meter = Meter()
    pairs = threading.Barrier(2)  # passes only when two run at once
    flow = unordered_flow.Flow("many").add(*[Metered(f"t{i}", meter, "api", pairs) for i in range(200)])
    engine = engines.load(flow, engine="parallel", max_workers=16, concurrency_limits={"api": 2})
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert len(meter.calls) == 200
    assert meter.peak["api"] == 2


def test_keys_are_independent_and_unkeyed_tasks_are_not_limited() -> None:
    meter = Meter()
    four = threading.Barrier(4)  # the four unkeyed tasks must all run at once
    flow = unordered_flow.Flow("mixed").add(
        *[Metered(f"a{i}", meter, "a") for i in range(20)],
        *[Metered(f"b{i}", meter, "b") for i in range(20)],
        *[Metered(f"free{i}", meter, None, four) for i in range(4)],
    )
    engine = engines.load(flow, engine="parallel", max_workers=16, concurrency_limits={"a": 1, "b": 3})
    engine.run()
    assert meter.peak["a"] == 1
    assert meter.peak["b"] <= 3
    assert meter.peak["-"] == 4
    assert len(meter.calls) == 44


def test_limit_holds_across_nested_flows() -> None:
    meter = Meter()
    inner = [unordered_flow.Flow(f"inner{j}").add(*[Metered(f"n{j}-{i}", meter, "db") for i in range(10)])
             for j in range(4)]  # fmt: skip
    flow = unordered_flow.Flow("outer").add(
        *inner, linear_flow.Flow("line").add(*[Metered(f"l{i}", meter, "db") for i in range(5)])
    )
    engine = engines.load(flow, engine="parallel", max_workers=16, concurrency_limits={"db": 1})
    engine.run()
    assert meter.peak["db"] == 1
    assert len(meter.calls) == 45


def test_limit_on_the_asyncio_engine() -> None:
    meter = Meter()

    class AsyncMetered(task.Task):
        async def execute(self) -> None:
            meter.enter("api", self.name)
            try:
                await asyncio.sleep(0)
            finally:
                meter.leave("api")

    flow = unordered_flow.Flow("many").add(*[AsyncMetered(f"t{i}", concurrency_key="api") for i in range(50)])
    engine = engines.load(flow, engine="asyncio", concurrency_limits={"api": 3})
    engine.run()
    assert len(meter.calls) == 50
    assert meter.peak["api"] <= 3


def test_reverts_count_against_the_limit_and_parked_tasks_never_start_after_a_failure() -> None:
    meter = Meter()
    tasks = [Metered(f"t{i}", meter, "api") for i in range(30)]
    tasks[3].fail = True
    flow = unordered_flow.Flow("many").add(*tasks)
    engine = engines.load(flow, engine="parallel", max_workers=8, concurrency_limits={"api": 2})
    with pytest.raises(RuntimeError, match="t3 fails"):
        engine.run()
    assert meter.peak["api"] <= 2
    storage = engine.storage
    executed = [name for name in meter.calls if not name.startswith("revert:")]
    reverted = [name[len("revert:") :] for name in meter.calls if name.startswith("revert:")]
    # Everything that ran was reverted exactly once; what waited for a slot never ran.
    assert sorted(reverted) == sorted(executed)
    for t in tasks:
        state = storage.get_atom_state(t.name)
        assert state in (states.REVERTED, states.PENDING), (t.name, state)
        assert (state == states.REVERTED) == (t.name in executed)
    assert storage.get_flow_state() == states.REVERTED


def test_parked_task_in_a_retried_scope_runs_after_its_predecessors() -> None:
    meter = Meter()

    class FailsOnce(task.Task):
        def execute(self) -> None:
            meter.enter("api", self.name)
            meter.leave("api")
            if meter.calls.count(self.name) == 1:
                raise RuntimeError("first attempt fails")

    first = FailsOnce("first", concurrency_key="api")
    others = [Metered(f"t{i}", meter, "api") for i in range(6)]
    flow = graph_flow.Flow("g", retry=Times(3)).add(first, *others)
    for other in others[3:]:
        flow.link(first, other)  # these wait for 'first', whichever attempt
    engine = engines.load(flow, engine="parallel", max_workers=8, concurrency_limits={"api": 1})
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert meter.peak["api"] == 1
    calls = meter.calls
    last_first = len(calls) - 1 - calls[::-1].index("first")
    for other in others[3:]:
        # Waiting for a slot never let a linked task jump ahead of the retried 'first'.
        assert calls.index(other.name) > calls.index("first")
        last_run = len(calls) - 1 - calls[::-1].index(other.name)
        assert last_run > last_first
        assert engine.storage.get_atom_state(other.name) == states.SUCCESS


def test_serial_engine_accepts_keys() -> None:
    meter = Meter()
    flow = linear_flow.Flow("l").add(*[Metered(f"t{i}", meter, "api") for i in range(5)])
    engines.run(flow, engine="serial", concurrency_limits={"api": 1})
    assert meter.peak["api"] == 1
    assert len(meter.calls) == 5


# -- bad input -----------------------------------------------------------------


def test_unknown_key_fails_at_load_naming_task_and_key() -> None:
    flow = linear_flow.Flow("l").add(Metered("caller", Meter(), "apii"))
    with pytest.raises(exc.InvalidAtomOption) as caught:
        engines.load(flow, engine="parallel", concurrency_limits={"api": 2})
    assert caught.value.atom == "caller"
    assert caught.value.value == "apii"
    assert "'caller'" in str(caught.value) and "'apii'" in str(caught.value)


def test_key_without_any_limits_fails_before_anything_runs() -> None:
    meter = Meter()
    flow = linear_flow.Flow("l").add(Metered("first", meter, None), Metered("caller", meter, "api"))
    engine = engines.load(flow, engine="parallel")
    with pytest.raises(exc.InvalidAtomOption, match="concurrency_limits is not set"):
        engine.run()
    assert meter.calls == []


@pytest.mark.parametrize(
    "bad", [{"api": 0}, {"api": -1}, {"api": "2"}, {"api": True}, {"": 2}, {3: 2}, ["api"]]
)
def test_bad_limits_are_refused(bad: Any) -> None:
    with pytest.raises(exc.InvalidEngineOption) as caught:
        engines.load(Metered("t", Meter(), None), engine="parallel", concurrency_limits=bad)
    assert caught.value.option == "concurrency_limits"


@pytest.mark.parametrize("bad", ["", 3, ["api"]])
def test_bad_key_is_refused_naming_the_task(bad: Any) -> None:
    with pytest.raises(exc.InvalidAtomOption) as caught:
        Metered("named", Meter(), bad)
    assert caught.value.atom == "named"
    assert caught.value.option == "concurrency_key"


# -- spawned sub-flows -------------------------------------------------------------


class Spawner(task.Task):
    """Spawns keyed Metered children; keyed itself, with the same key."""

    def __init__(self, name: str, meter: Meter, count: int, child_key: str | None, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.meter = meter
        self.count = count
        self.child_key = child_key

    def execute(self) -> Any:
        from flowkit import dynamic

        children = [Metered(f"{self.name}-c{i}", self.meter, self.child_key) for i in range(self.count)]
        return dynamic.subflow(unordered_flow.Flow(f"{self.name}-children").add(*children))


@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
def test_a_limit_of_one_does_not_deadlock_a_spawner_and_holds_for_its_children(kind: str) -> None:
    meter = Meter()
    flow = unordered_flow.Flow("spawning").add(
        *[Spawner(f"s{i}", meter, 5, "api", concurrency_key="api") for i in range(3)]
    )
    engine = engines.load(flow, engine=kind, max_workers=8, concurrency_limits={"api": 1})
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert meter.peak["api"] == 1
    assert len(meter.calls) == 15
    assert engine.storage.get("s0")[0] == "s0-c0"


def test_spawned_children_with_a_key_the_limits_do_not_name_fail_the_spawner() -> None:
    meter = Meter()
    flow = linear_flow.Flow("l").add(Spawner("spawner", meter, 2, "nope"))
    engine = engines.load(flow, engine="parallel", concurrency_limits={"api": 1})
    with pytest.raises(exc.InvalidAtomOption, match="'nope'"):
        engine.run()
    assert meter.calls == []
    assert engine.storage.get_atom_state("spawner") == states.REVERTED


class Quick(task.Task):
    def execute(self) -> int:
        return 1


class _KeyedTimes(Times):
    """A retry with run options of its own, which a retry cannot use."""

    timeout = 5.0
    concurrency_key = "db"


def test_a_retrys_timeout_and_key_are_ignored_with_a_warning_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Not refused: a TaskFlow retry may keep a ``timeout`` of its own (TaskFlow's
    # Retry gives the name no meaning). But flowkit must say it does not apply
    # them: retries only decide, in the engine.
    flow = linear_flow.Flow("f", retry=_KeyedTimes(2, name="careful")).add(Quick("a"))
    with caplog.at_level("WARNING", logger="flowkit.engines.options"):
        engine = engines.load(flow, concurrency_limits={"other": 1})
        engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    warned = [r.getMessage() for r in caplog.records if r.name == "flowkit.engines.options"]
    assert len(warned) == 1, warned
    assert "retry 'careful'" in warned[0]
    assert "timeout=5.0" in warned[0] and "concurrency_key='db'" in warned[0]
    assert "neither timed nor limited" in warned[0]


def test_a_retry_without_run_options_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    flow = linear_flow.Flow("f", retry=Times(2, name="plain")).add(Quick("a"))
    with caplog.at_level("WARNING", logger="flowkit.engines.options"):
        engines.run(flow, default_timeout=30)
    assert not [r for r in caplog.records if r.name == "flowkit.engines.options"]


class _SpawnsKeyedRetry(task.Task):
    """Spawns, at run time, a sub-flow whose retry has run options of its own."""

    def execute(self) -> Any:
        return dynamic.subflow(
            linear_flow.Flow("sub", retry=_KeyedTimes(2, name="spawned-careful")).add(Quick("s"))
        )


@pytest.mark.parametrize("engine", ["serial", "parallel"])
def test_a_spawned_retrys_ignored_options_are_warned_of_once(
    caplog: pytest.LogCaptureFixture, engine: str
) -> None:
    # A spawned sub-flow's options are checked before it is spliced in and read
    # again as it is adopted: the warning must come from only one of the two.
    flow = linear_flow.Flow("f").add(_SpawnsKeyedRetry("spawner"))
    with caplog.at_level("WARNING", logger="flowkit.engines.options"):
        runner = engines.load(flow, engine=engine, concurrency_limits={"other": 1})
        runner.run()
    assert runner.storage.get_flow_state() == states.SUCCESS
    warned = [r.getMessage() for r in caplog.records if r.name == "flowkit.engines.options"]
    assert len(warned) == 1, warned
    assert "retry 'spawned-careful'" in warned[0]


class _Held(task.Task):
    """Waits at its own gate (by name) until the test lets it go; records the order of starts."""

    def __init__(self, name: str, gates: dict[str, threading.Event], started: list[str], **kw: Any) -> None:
        super().__init__(name, concurrency_key="db", **kw)
        self.gates = gates
        self.started = started
        self.inside = threading.Event()
        self.first_inside = gates["first in"]

    def execute(self) -> None:
        self.started.append(self.name)
        self.inside.set()
        self.first_inside.set()
        if not self.gates[self.name].wait(WAIT):
            raise TimeoutError(f"the test never let {self.name} go")


def test_a_wait_no_start_notice_told_is_not_told_with_a_later_notice() -> None:
    # Nobody listens as the waiting task starts; a receiver attached while it runs hears its
    # end, which must not carry that wait (only a start's notice says its wait).
    gates = {"a": threading.Event(), "b": threading.Event(), "first in": threading.Event()}
    started: list[str] = []
    tasks = {name: _Held(name, gates, started) for name in ("a", "b")}
    engine = engines.load(
        unordered_flow.Flow("f").add(*tasks.values()),
        engine="parallel",
        max_workers=4,
        concurrency_limits={"db": 1},
    )
    runner = threading.Thread(target=engine.run)
    runner.start()
    try:
        assert gates["first in"].wait(WAIT)
        first = started[0]
        second = "b" if first == "a" else "a"
        gates[first].set()  # the other one got its slot after waiting, unheard
        assert tasks[second].inside.wait(WAIT)
        heard: list[tuple[str, dict[str, Any]]] = []
        engine.atom_notifier.register("SUCCESS", lambda state, details: heard.append((state, dict(details))))
    finally:
        for gate in gates.values():
            gate.set()
        runner.join(WAIT)
    assert not runner.is_alive()
    assert [(state, details["task_name"]) for state, details in heard] == [("SUCCESS", second)]
    assert "slot_wait" not in heard[0][1]
