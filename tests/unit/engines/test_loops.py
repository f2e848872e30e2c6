"""Bounded loops (loop_flow): repeat a body until a predicate holds, durable and never blocking."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from flowkit import dynamic, engines, retry, task
from flowkit import exceptions as exc
from flowkit import states as st
from flowkit.patterns import graph_flow, linear_flow, loop_flow, unordered_flow
from flowkit.persistence import backends
from flowkit.types.notifier import Notifier
from tests.manual_clock import ManualClock

#: (what, atom name, fake time) of every call the module's tasks make.
EVENTS: list[tuple[str, str, float]] = []


CLOCK = ManualClock(0.0)


class Poll(task.Task):
    """Provides ``status``: "ready" once it has run ``READY_AT`` times in all."""

    default_provides = "status"
    READY_AT = 3
    calls = 0

    def execute(self) -> str:
        Poll.calls += 1
        EVENTS.append(("execute", self.name, CLOCK.now))
        return "ready" if Poll.calls >= Poll.READY_AT else f"wait-{Poll.calls}"

    def revert(self, **kwargs: Any) -> None:
        EVENTS.append(("revert", self.name, CLOCK.now))


class Side(task.Task):
    def execute(self) -> None:
        EVENTS.append(("execute", self.name, CLOCK.now))

    def revert(self, **kwargs: Any) -> None:
        EVENTS.append(("revert", self.name, CLOCK.now))


class Use(task.Task):
    def execute(self, status: str) -> str:
        EVENTS.append(("execute", self.name, CLOCK.now))
        return status


class Stop(task.Task):
    """Interrupts the run once (a crash stand-in) after ``Poll`` ran twice."""

    armed = True

    def execute(self, status: str) -> None:
        if Stop.armed and Poll.calls == 2:
            Stop.armed = False
            raise KeyboardInterrupt


@pytest.fixture(autouse=True)
def _reset() -> None:
    EVENTS.clear()
    Poll.calls = 0
    Poll.READY_AT = 3
    Stop.armed = True
    CLOCK.now = 0.0
    CLOCK.slept = []


def _poll_loop(delay: float = 0.0, max_iterations: int = 5) -> loop_flow.Flow:
    return loop_flow.Flow(
        "wait-ready",
        Poll("poll"),
        until=lambda status: status == "ready",
        max_iterations=max_iterations,
        delay=delay,
    )


def test_the_body_repeats_until_the_predicate_holds(engine_kind: str) -> None:
    flow = linear_flow.Flow("f").add(_poll_loop(), Use("use"))
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    assert [name for _w, name, _t in EVENTS] == ["poll", "poll", "poll", "use"]
    assert engine.storage.get("use") == "ready"
    record = engine.storage.run_state.records["poll"]
    assert record.meta["iteration"] == 3
    assert record.meta["iterations"] == [
        {"iteration": 1, "result": "wait-1"},
        {"iteration": 2, "result": "wait-2"},
    ]
    assert engine.storage.get_flow_state() == st.SUCCESS


def test_notifications_carry_the_iteration() -> None:
    engine = engines.load(linear_flow.Flow("f").add(_poll_loop()))
    seen: list[tuple[str, str, Any]] = []
    engine.atom_notifier.register(
        Notifier.ANY,
        lambda state, details: seen.append((details["task_name"], state, details.get("iteration"))),
    )
    engine.run()
    assert [(state, it) for name, state, it in seen if name == "poll" and state == st.SUCCESS] == [
        (st.SUCCESS, 1),
        (st.SUCCESS, 2),
        (st.SUCCESS, 3),
    ]


def test_a_loop_that_never_ends_fails_with_loop_exhausted_and_reverts_once(engine_kind: str) -> None:
    Poll.READY_AT = 100
    flow = linear_flow.Flow("f").add(Side("before"), _poll_loop(max_iterations=4))
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(exc.LoopExhausted, match="wait-ready") as raised:
        engine.run()
    assert raised.value.loop == "wait-ready"
    assert raised.value.iterations == 4
    assert [name for what, name, _t in EVENTS if what == "execute"] == ["before"] + ["poll"] * 4
    assert [name for what, name, _t in EVENTS if what == "revert"] == ["poll", "before"]
    assert engine.storage.get_flow_state() == st.REVERTED


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_max_iterations_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_iterations must be a positive int"):
        loop_flow.Flow("l", Poll("p"), until=lambda status: True, max_iterations=bad)


def test_bad_delay_and_until_are_refused() -> None:
    with pytest.raises(ValueError, match="delay"):
        loop_flow.Flow("l", Poll("p"), until=lambda status: True, max_iterations=2, delay=-1)
    with pytest.raises(TypeError, match="until must be callable"):
        loop_flow.Flow("l", Poll("p"), until="ready", max_iterations=2)  # type: ignore[arg-type]


def test_an_until_whose_parameters_cannot_be_read_is_refused_naming_the_loop() -> None:
    # It said only "no signature found for builtin <class 'type'>", from inspect.
    with pytest.raises(ValueError, match="^loop 'l': cannot read the parameters of until") as refused:
        loop_flow.Flow("l", Poll("p"), until=type, max_iterations=2)
    assert "<class 'type'>" in str(refused.value)
    assert isinstance(refused.value.__cause__, ValueError)


class NoTruth:
    """A value ``bool()`` refuses, as numpy's arrays of more than one element do."""

    def __bool__(self) -> bool:
        raise ValueError("the truth value of an array with more than one element is ambiguous")

    def __repr__(self) -> str:
        return "<NoTruth>"


def test_an_until_value_without_a_truth_value_names_the_loop() -> None:
    # It raised only the value's own "truth value ... is ambiguous".
    loop = loop_flow.Flow("l", Poll("p"), until=lambda status: NoTruth(), max_iterations=2)
    engine = engines.load(linear_flow.Flow("f").add(loop))
    with pytest.raises(ValueError) as refused:  # the kind bool() raised, for code that catches it
        engine.run()
    assert str(refused.value) == (
        "loop 'l': until returned NoTruth <NoTruth>, which is neither true nor false (bool() raised "
        "ValueError: the truth value of an array with more than one element is ambiguous); return a bool"
    )
    assert isinstance(refused.value.__cause__, ValueError)
    assert engine.storage.get_flow_state() == st.REVERTED


#: What a loop whose until reads ``nowhere`` is refused with, naming the loop (not 'l^until').
UNTIL_NEEDS = (
    "loop 'l': its until predicate requires ['nowhere'] but no other entity produces said requirements"
)


def test_an_until_reading_a_symbol_nothing_provides_fails_validation_naming_the_loop() -> None:
    # It named the hidden task: '"l^until==1.0"' requires ['nowhere'] ... (atoms: 'l^until' ...).
    loop = loop_flow.Flow("l", Side("s"), until=lambda nowhere: True, max_iterations=2)
    with pytest.raises(exc.MissingDependencies) as refused:
        engines.load(linear_flow.Flow("f").add(loop)).run()
    error = refused.value
    assert str(error) == (
        "'\"linear_flow.Flow: f(len=1)\"' requires ['nowhere'] but no other entity produces said "
        "requirements (atoms: the until predicate of loop 'l' needs symbols ['nowhere'])\n"
        f"  MissingDependencies: {UNTIL_NEEDS}"
    )
    assert (error.atom, error.missing) == ("l", ["nowhere"])
    cause = error.__cause__
    assert isinstance(cause, exc.MissingDependencies)
    assert (cause.message, cause.atom, cause.who, cause.missing) == (UNTIL_NEEDS, "l", loop, ["nowhere"])


def test_a_loop_loaded_on_its_own_names_itself_for_its_untils_missing_symbol() -> None:
    loop = loop_flow.Flow("l", Side("s"), until=lambda nowhere: True, max_iterations=2)
    with pytest.raises(exc.MissingDependencies) as refused:
        engines.load(loop).validate()
    assert "l^until" not in str(refused.value)
    assert isinstance(refused.value.__cause__, exc.MissingDependencies)
    assert refused.value.__cause__.message == UNTIL_NEEDS


def test_a_spawned_loop_whose_until_reads_a_symbol_nothing_provides_names_the_loop() -> None:
    class Spawn(task.Task):
        def execute(self) -> Any:
            return dynamic.subflow(
                loop_flow.Flow("l", Side("s"), until=lambda nowhere: True, max_iterations=2)
            )

    engine = engines.load(linear_flow.Flow("f").add(Spawn("spawn")))
    with pytest.raises(exc.MissingDependencies) as refused:
        engine.run()
    # As the same loop loaded on its own says it (it said only its cause's sentence).
    assert str(refused.value) == (
        "'\"loop_flow.Flow: l(len=2)\"' requires ['nowhere'] but no other entity produces said requirements"
        " (atoms: the until predicate of loop 'l' needs symbols ['nowhere'])\n"
        f"  MissingDependencies: {UNTIL_NEEDS}"
    )
    assert refused.value.atom == "l"
    assert isinstance(refused.value.__cause__, exc.MissingDependencies)
    assert refused.value.__cause__.message == UNTIL_NEEDS


def test_an_until_whose_provider_was_skipped_names_the_loop() -> None:
    # Its provider 'status' was skipped by a link decider (only that atom): the
    # until's argument cannot be fetched when it runs.
    flow = graph_flow.Flow("g")
    first, poll = Side("first"), Poll("poll")
    flow.add(first, poll, loop_flow.Flow("l", Side("s"), until=lambda status: True, max_iterations=2))
    flow.link(first, poll, decider=lambda history: False, decider_depth="atom")
    with pytest.raises(exc.NotFound) as refused:
        engines.load(flow).run()
    assert str(refused.value) == (
        "loop 'l': its until predicate needs 'status' (argument 'status'), but no value was injected "
        "and no atom visible to it produced one"
    )


def test_a_loop_whose_until_could_not_run_is_reverted_whole() -> None:
    # The until task's failure (its provider skipped) reverted the flow, then its own
    # revert asked for the same missing value: REVERT_FAILURE, the flow FAILURE, and
    # the loop's body left SUCCESS, where a task failing alike was simply reverted.
    flow = graph_flow.Flow("g")
    first, poll = Side("first"), Poll("poll")
    flow.add(first, poll, loop_flow.Flow("l", Side("s"), until=lambda status: True, max_iterations=2))
    flow.link(first, poll, decider=lambda history: False, decider_depth="atom")
    engine = engines.load(flow)
    with pytest.raises(exc.NotFound):
        engine.run()
    states = {name: engine.storage.get_atom_state(name) for name in ("first", "poll", "s", "l^until")}
    assert states == {"first": st.REVERTED, "poll": st.IGNORE, "s": st.REVERTED, "l^until": st.REVERTED}
    assert engine.storage.get_flow_state() == st.REVERTED
    assert ("revert", "s", 0.0) in EVENTS


@pytest.mark.parametrize("kind", ["serial", "parallel", "asyncio"])
def test_a_delay_does_not_block_other_branches(kind: str) -> None:
    others = linear_flow.Flow("others").add(*[Side(f"side-{i}") for i in range(4)])
    flow = unordered_flow.Flow("u").add(_poll_loop(delay=10.0), others)
    engine = engines.load(flow, engine=kind, clock=CLOCK, max_workers=1)
    engine.run()
    sides = [t for _w, name, t in EVENTS if name.startswith("side-")]
    polls = [t for _w, name, t in EVENTS if name == "poll"]
    assert sides == [0.0] * 4  # every other atom ran before the first delay was waited out
    assert polls == [0.0, 10.0, 20.0]
    assert CLOCK.slept == [10.0, 10.0]


def test_a_spawner_in_a_loop_spawns_afresh_each_iteration() -> None:
    class Child(task.Task):
        def execute(self, value: int) -> int:
            EVENTS.append(("execute", self.name, CLOCK.now))
            return value

    class Fan(task.Task):
        default_provides = "fanned"

        def execute(self) -> Any:
            return dynamic.subflow(
                unordered_flow.Flow("kids").add(Child(name="kid", inject={"value": Poll.calls}))
            )

    loop = loop_flow.Flow(
        "l", Poll("poll"), Fan("fan"), until=lambda status: status == "ready", max_iterations=5
    )
    engine = engines.load(linear_flow.Flow("f").add(loop))
    engine.run()
    assert [name for _w, name, _t in EVENTS] == ["poll", "kid"] * 3
    assert engine.storage.get("fan") == [3]


def _sqlite(tmp_path: Path) -> Any:
    backend = backends.fetch({"connection": f"sqlite:///{tmp_path / 'runs.db'}"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    return backend


def poll_then_stop() -> linear_flow.Flow:
    """A loop whose body is interrupted in its second iteration (after Poll ran twice)."""
    loop = loop_flow.Flow(
        "wait-ready", Poll("poll"), Stop("stop"), until=lambda status: status == "ready", max_iterations=5
    )
    return linear_flow.Flow("resumable").add(loop, Use("use"))


def test_a_resumed_loop_carries_on_in_the_iteration_it_was_in(tmp_path: Path) -> None:
    backend = _sqlite(tmp_path)
    try:
        engine = engines.load_from_factory(poll_then_stop, backend=backend)
        with pytest.raises(KeyboardInterrupt):
            engine.run()
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        stored = {ad.name: ad for ad in detail}
        assert stored["poll"].state == st.SUCCESS
        assert stored["poll"].meta["iteration"] == 2
        EVENTS.clear()
        resumed = engines.load_from_detail(detail, backend=backend)
        resumed.run()
        # poll (SUCCESS in iteration 2) is not run again in iteration 2; iteration 3 runs it.
        assert [name for _w, name, _t in EVENTS] == ["poll", "use"]
        assert resumed.storage.run_state.records["poll"].meta["iteration"] == 3
        assert resumed.storage.get_flow_state() == st.SUCCESS
    finally:
        backend.close()


def test_the_next_iteration_is_written_before_a_delay_is_waited_out(tmp_path: Path) -> None:
    # It was written with the next call, after the delay: a run killed during
    # the delay ran until again on resume, and waited the whole delay again.
    backend = _sqlite(tmp_path)

    class Peek(ManualClock):
        """Reads what the database holds when the engine starts waiting out a delay."""

        stored: dict[str, tuple[str, Any]] = {}

        def sleep(self, seconds: float) -> None:
            with contextlib.closing(backend.get_connection()) as conn:
                detail = conn.get_flow_details(engine.storage.flow_uuid)
            Peek.stored = {ad.name: (ad.state, ad.meta.get("iteration")) for ad in detail}
            super().sleep(seconds)

    try:
        engine = engines.load(
            linear_flow.Flow("f").add(_poll_loop(delay=30.0)), backend=backend, clock=Peek()
        )
        engine.run()
        assert Peek.stored["poll"] == (st.PENDING, 3)
        assert Peek.stored["wait-ready^until"][0] == st.PENDING
    finally:
        backend.close()


def test_a_loop_in_a_loop_starts_over_in_each_outer_iteration() -> None:
    counts, Count = _counting("inner", "outer")

    engine = engines.load(linear_flow.Flow("f").add(_nested_loops(Count, outer_runs=3)))
    engine.run()
    assert counts == {"outer": 3, "inner": 6}  # two inner iterations in each of three outer ones
    records = engine.storage.run_state.records
    assert records["outer"].meta["iteration"] == 3
    assert records["inner"].meta["iteration"] == 2
    assert [it["iteration"] for it in records["inner"].meta["iterations"]] == [1, 2, 1, 2, 1]


class FailsOnceAt(task.Task):
    """Passes ``n`` through, except that it fails the first time ``n`` is ``AT``."""

    AT = 3
    failed = False

    def execute(self, n: int) -> int:
        if n == FailsOnceAt.AT and not FailsOnceAt.failed:
            FailsOnceAt.failed = True
            raise RuntimeError(f"failing once at {n}")
        return n


class Counts(task.Task):
    """Provides ``n``: how many times a ``Counts`` ran since ``runs`` was reset."""

    default_provides = "n"
    runs = 0

    def execute(self) -> int:
        Counts.runs += 1
        return Counts.runs


def test_a_retry_runs_a_loop_in_its_scope_again_from_its_first_iteration(engine_kind: str) -> None:
    # The loop kept counting across the retry: the second attempt had one
    # iteration left of max_iterations, and failed with LoopExhausted.
    FailsOnceAt.failed = False
    Counts.runs = 0
    loop = loop_flow.Flow(
        "count", Counts("count"), FailsOnceAt("check"), until=lambda n: n >= 6, max_iterations=3
    )
    flow = linear_flow.Flow("f", retry=retry.Times(2, "r")).add(loop)
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    assert Counts.runs == 6  # 3 iterations, then a fresh loop: iterations 1, 2, 3 again (n 4, 5, 6)
    records = engine.storage.run_state.records
    assert records["count"].meta["iteration"] == 3
    assert [it["iteration"] for it in records["count"].meta["iterations"]] == [1, 2, 1, 2]


class FailsOncePolled(task.Task):
    """Fails, 5 seconds in, the first time it runs after ``Poll`` did (while the loop waits)."""

    failed = False

    def execute(self) -> None:
        EVENTS.append(("execute", self.name, CLOCK.now))
        if Poll.calls and not FailsOncePolled.failed:
            FailsOncePolled.failed = True
            CLOCK.advance(5.0)
            raise RuntimeError("failing once, after a poll")


@pytest.mark.parametrize("kind", ["serial", "parallel", "asyncio"])
def test_a_retry_drops_the_delay_its_loop_was_waiting_out(kind: str) -> None:
    # The first attempt's loop had set a delay (due at 10) when the other branch
    # failed at 5; the retry starts the loop afresh, which sets its own delay (due
    # at 15): the old one must not wake it early.
    FailsOncePolled.failed = False
    branch = linear_flow.Flow("branch").add(Side("side"), FailsOncePolled("fails"))
    flow = unordered_flow.Flow("f", retry=retry.Times(2, "r")).add(_poll_loop(delay=10.0), branch)
    engine = engines.load(flow, engine=kind, clock=CLOCK, max_workers=1)
    engine.run()
    assert FailsOncePolled.failed
    assert [t for _w, name, t in EVENTS if name == "poll"] == [0.0, 5.0, 15.0]
    assert CLOCK.slept == [10.0]
    assert engine.storage.run_state.records["poll"].meta["iteration"] == 2


class Runaway(BaseException):
    """Stops a run that went on past any bound the test set (not a failure a retry sees)."""


class PollsBounded(Poll):
    """A Poll that stops the run past 20 calls, so a loop run without end fails the test."""

    def execute(self) -> str:
        if Poll.calls >= 20:
            raise Runaway(f"{self.name} ran {Poll.calls} times")
        return super().execute()


def test_a_loops_own_retry_keeps_counting_its_attempts_across_iterations(engine_kind: str) -> None:
    # Each iteration cleared the history of the loop's own retry as if it sat in
    # the body: Times(2) never saw a second failure and retried for ever.
    Poll.READY_AT = 100
    loop = loop_flow.Flow(
        "wait-ready",
        PollsBounded("poll"),
        until=lambda status: status == "ready",
        max_iterations=2,
        retry=retry.Times(2, "r"),
    )
    engine = engines.load(linear_flow.Flow("f").add(loop), engine=engine_kind)
    with pytest.raises(exc.LoopExhausted):
        engine.run()
    assert Poll.calls == 4  # two attempts of two iterations
    assert engine.storage.get_flow_state() == st.REVERTED


def test_a_loops_own_retry_is_not_run_again_with_each_iteration(engine_kind: str) -> None:
    # Run again with the body, ForEach gave its first value in every attempt.
    seen: list[int] = []

    class Uses(task.Task):
        default_provides = "status"

        def execute(self, x: int) -> str:
            seen.append(x)
            if len(seen) > 20:
                raise Runaway("ran past any bound")
            return "busy"

    loop = loop_flow.Flow(
        "wait-ready",
        Uses("use"),
        until=lambda status: status == "ready",
        max_iterations=2,
        delay=0.5,
        retry=retry.ForEach([10, 20], "r", provides="x"),
    )
    engine = engines.load(linear_flow.Flow("f").add(loop), engine=engine_kind, clock=CLOCK)
    with pytest.raises(exc.LoopExhausted):
        engine.run()
    assert seen == [10, 10, 20, 20]
    assert CLOCK.slept == [0.5, 0.5]


def test_a_retry_in_a_loops_body_has_all_its_attempts_in_each_iteration() -> None:
    # Its history kept every iteration's attempt: Times(2) in iteration 3 had none left.
    FailsOnceAt.failed = False
    Counts.runs = 0
    body = linear_flow.Flow("body", retry=retry.Times(2, "r")).add(FailsOnceAt("check", rebind={"n": "n"}))
    loop = loop_flow.Flow("count", Counts("count"), body, until=lambda n: n >= 4, max_iterations=4)
    engine = engines.load(loop)
    engine.run()
    assert Counts.runs == 4
    assert engine.storage.run_state.records["count"].meta["iteration"] == 4


def test_a_loop_verdict_returned_by_an_ordinary_task_is_an_ordinary_value() -> None:
    class Returns(task.Task):
        default_provides = "v"

        def execute(self) -> Any:
            return loop_flow.LoopVerdict(True, "x")

    engine = engines.load(linear_flow.Flow("f").add(Returns("r")))
    engine.run()
    assert isinstance(engine.storage.fetch("v"), loop_flow.LoopVerdict)


def test_the_event_log_says_a_loop_runs_again_and_who_spawned_an_atom() -> None:
    from flowkit.listeners.events import EventLogListener

    class Kid(task.Task):
        def execute(self) -> int:
            return 1

    class Fan(task.Task):
        def execute(self) -> Any:
            return dynamic.subflow(linear_flow.Flow("kids").add(Kid("kid")))

    flow = linear_flow.Flow("f").add(_poll_loop(), Fan("fan"))
    engine = engines.load(flow)
    with EventLogListener(engine) as listener:
        engine.run()
    events = listener.log.events
    resets = [e.cause.text for e in events if e.name == "poll" and e.state == st.PENDING]
    assert resets == ["its loop runs again: iteration 2", "its loop runs again: iteration 3"]
    (kid_started,) = [e for e in events if e.name == "kid" and e.state == st.RUNNING]
    assert kid_started.cause.atoms == ("fan",)


def test_a_reset_tells_each_atom_the_iteration_it_runs_in_next() -> None:
    # The inner loop's atoms went back to PENDING announcing the inner loop's
    # old iteration (2) while their records, and their next run, said 1.
    counts, Count = _counting("inner", "outer")

    engine = engines.load(linear_flow.Flow("f").add(_nested_loops(Count, outer_runs=2)))
    told = _pending_notices(engine)
    engine.run()
    # Each notice says what the stored record says: the iteration run next.
    assert [(name, it) for name, it, _stored in told] == [
        ("inner", 2),  # the inner loop's reset
        ("inner-loop^until", 2),
        ("outer", 2),  # the outer loop's: the inner loop starts over at 1
        ("inner", 1),
        ("inner-loop^until", 1),
        ("outer-loop^until", 2),
        ("inner", 2),
        ("inner-loop^until", 2),
    ]
    assert [(name, stored) for name, _it, stored in told] == [(name, it) for name, it, _s in told]


def test_a_reset_tells_a_loop_spawned_in_the_body_the_iteration_it_runs_in_next() -> None:
    # A loop in a sub-flow spawned in the body was set back to 1 only after its
    # atoms' PENDING notices went out, announcing its old iteration (2).
    counts, Count = _counting("inner", "outer")

    class Spawn(task.Task):
        def execute(self) -> Any:
            return dynamic.subflow(_inner_loop(Count))

    outer = loop_flow.Flow(
        "outer-loop", Count("outer", provides="o"), Spawn("spawn"), until=lambda o: o == 2, max_iterations=2
    )
    engine = engines.load(linear_flow.Flow("f").add(outer))
    told = _pending_notices(engine)
    engine.run()
    assert [(name, it) for name, it, _stored in told] == [
        ("inner", 2),
        ("inner-loop^until", 2),
        ("outer", 2),  # the outer loop's reset: the spawned loop starts over at 1
        ("spawn", 2),
        ("inner", 1),
        ("inner-loop^until", 1),
        ("outer-loop^until", 2),
        ("inner", 2),
        ("inner-loop^until", 2),
    ]
    assert [(name, stored) for name, _it, stored in told] == [(name, it) for name, it, _s in told]


def _inner_loop(count: type[task.Task]) -> loop_flow.Flow:
    """A loop of one counting atom ``inner``, run twice (its count is even every second run)."""
    return loop_flow.Flow(
        "inner-loop", count("inner", provides="i"), until=lambda i: i % 2 == 0, max_iterations=2
    )


def _nested_loops(count: type[task.Task], outer_runs: int) -> loop_flow.Flow:
    """:func:`_inner_loop` inside a loop with a counting atom ``outer``, run ``outer_runs`` times."""
    return loop_flow.Flow(
        "outer-loop",
        count("outer", provides="o"),
        _inner_loop(count),
        until=lambda o: o == outer_runs,
        max_iterations=outer_runs,
    )


def _counting(*names: str) -> tuple[dict[str, int], type[task.Task]]:
    """A task class whose atoms count their executions, by atom name, in the dict returned with it."""
    counts = dict.fromkeys(names, 0)

    class Count(task.Task):
        def execute(self) -> int:
            counts[self.name] += 1
            return counts[self.name]

    return counts, Count


def _pending_notices(engine: Any) -> list[tuple[str, Any, Any]]:
    """Each reset's PENDING notice as it comes: atom, iteration told, iteration its record then holds."""
    records = engine.storage.run_state.records
    told: list[tuple[str, Any, Any]] = []

    def on_pending(state: str, details: dict[str, Any]) -> None:
        if state == st.PENDING and details.get("old_state") is not None:
            name = details.get("task_name") or details["retry_name"]
            told.append((name, details.get("iteration"), records[name].meta.get("iteration")))

    engine.atom_notifier.register(Notifier.ANY, on_pending)
    return told


class Opaque:
    """A value JSON cannot store; the repr is the test's to match."""

    def __repr__(self) -> str:
        return "<Opaque>"


def _poll_until(until: Any) -> linear_flow.Flow:
    """A flow whose loop's predicate is ``until`` (Poll is ready at once), then Use."""
    Poll.READY_AT = 1
    return linear_flow.Flow("opaque").add(
        loop_flow.Flow("wait-ready", Poll("poll"), until=until, max_iterations=3), Use("use")
    )


def test_an_until_value_json_cannot_store_names_the_loop_and_the_run_resumes(tmp_path: Path) -> None:
    backend = _sqlite(tmp_path)
    try:
        engine = engines.load(_poll_until(lambda status: Opaque()), backend=backend)
        with pytest.raises(exc.InvalidFormat) as info:
            engine.run()
        # The encoder's words once, in the message (not again as a cause line below it).
        assert str(info.value) == (
            "loop 'wait-ready': its until held, but the value it returned (Opaque <Opaque>), the "
            "result of its hidden task 'wait-ready^until', cannot be stored as JSON: Object of type "
            "Opaque is not JSON serializable; return a bool or another JSON value"
        )
        assert isinstance(info.value.__cause__, TypeError)
        # What the database holds is whole: the failure recorded, the flow reverted.
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        stored = {ad.name: ad for ad in detail}
        assert detail.state == st.REVERTED
        assert stored["poll"].state == st.REVERTED
        assert stored["wait-ready^until"].state == st.REVERTED
        assert stored["wait-ready^until"].failure.exception_str.startswith(
            "loop 'wait-ready': its until held"
        )
        assert stored["use"].state == st.PENDING
        # The same flow detail runs again with a predicate that returns a bool.
        Poll.calls = 0
        resumed = engines.load(
            _poll_until(lambda status: status == "ready"), backend=backend, flow_detail=detail
        )
        resumed.run()
        assert resumed.storage.get_flow_state() == st.SUCCESS
        assert resumed.storage.get("use") == "ready"
    finally:
        backend.close()


def test_an_unstorable_until_value_left_unresolved_can_be_reverted_later(tmp_path: Path) -> None:
    backend = _sqlite(tmp_path)
    try:
        engine = engines.load(_poll_until(lambda status: Opaque()), backend=backend, never_resolve=True)
        with pytest.raises(exc.InvalidFormat, match="^loop 'wait-ready': its until held"):
            engine.run()
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        assert detail.state == st.FAILURE
        assert {ad.name: ad.state for ad in detail}["wait-ready^until"] == st.FAILURE
        # Loaded again (resolving this time), the run reverts what the failed one left.
        EVENTS.clear()
        again = engines.load(_poll_until(lambda status: Opaque()), backend=backend, flow_detail=detail)
        with pytest.raises(exc.WrappedFailure) as info:  # the failure read back, not a live one
            again.run()
        (failure,) = list(info.value)
        assert failure.check(exc.InvalidFormat)
        assert failure.exception_str.startswith("loop 'wait-ready': its until held")
        assert ("revert", "poll", 0.0) in EVENTS
        assert again.storage.get_flow_state() == st.REVERTED
    finally:
        backend.close()


def _suspended_between_iterations(backend: Any = None) -> Any:
    """A run of ``_poll_loop`` suspended as its loop resets ``poll`` for iteration 2, under an event log."""
    import itertools

    from flowkit.listeners.events import EventLogListener

    ticks = itertools.count()
    engine = engines.load(linear_flow.Flow("f").add(_poll_loop(), Use("use")), backend=backend)

    def suspend(state: str, details: dict[str, Any]) -> None:
        if details["task_name"] == "poll" and state == st.PENDING and details.get("iteration") == 2:
            engine.suspend()

    engine.atom_notifier.register(Notifier.ANY, suspend)
    with EventLogListener(engine, clock=lambda: float(next(ticks))):
        engine.run()
    return engine


def test_an_atom_reset_for_its_next_iteration_says_its_time_was_the_earlier_ones() -> None:
    # The report said "poll  PENDING  1.000s": the time of iteration 1, read as this one's.
    from flowkit.report import ExecutionReport

    engine = _suspended_between_iterations()
    report = ExecutionReport.from_engine(engine)
    (poll,) = [a for a in report.atoms if a.name == "poll"]
    assert (poll.state, poll.duration) == (st.PENDING, 1.0)  # the JSON's figure: every attempt's
    (line,) = [x for x in report.to_text().splitlines() if x.split()[0] == "poll"]
    assert line.endswith("PENDING         1.000s in earlier attempts"), line
    assert poll.took() == "1.000s in earlier attempts"
    (use,) = [a for a in report.atoms if a.name == "use"]
    assert use.took() == ""  # never ran: no time to say
