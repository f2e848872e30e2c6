"""Caching through the engine: what runs again, what does not, and what listeners see."""

from __future__ import annotations

import collections
import enum
import gc
import itertools
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from flowkit import engines, exceptions, states, task
from flowkit.cache import MemoryStore, Uncacheable, open_store
from flowkit.patterns import linear_flow
from flowkit.types.notifier import Notifier
from tests.cache import tasks

REPO = Path(__file__).resolve().parents[2]
_NAMES = itertools.count()


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    tasks.CALLS.clear()
    tasks.REVERTS.clear()
    yield


@pytest.fixture
def url() -> str:
    """A memory store of this test's own."""
    return f"memory://engine-test-{next(_NAMES)}"


def test_a_second_run_of_an_unchanged_100_task_flow_executes_nothing(url: str) -> None:
    first = engines.run(tasks.chain(100), store={"start": 0}, cache=url)
    assert len(tasks.CALLS) == 100
    tasks.CALLS.clear()
    second = engines.run(tasks.chain(100), store={"start": 0}, cache=url)
    assert tasks.CALLS == []
    assert second == first
    assert second["v99"] == 100


def test_changing_one_input_in_the_middle_reruns_exactly_its_downstream(url: str) -> None:
    engines.run(tasks.chain(100), store={"start": 0}, cache=url)
    tasks.CALLS.clear()
    results = engines.run(tasks.chain(100, ks={50: 2}), store={"start": 0}, cache=url)
    downstream = [f"add{i}" for i in range(50, 100)]
    assert downstream == tasks.CALLS
    assert results["v99"] == 101


def test_a_change_upstream_invalidates_downstream_even_when_values_coincide(url: str) -> None:
    # add1 gets value 1 either way (0+1 or ... ) but its key names add0's key, not the value.
    engines.run(tasks.chain(3), store={"start": 0}, cache=url)
    tasks.CALLS.clear()
    engines.run(tasks.chain(3, ks={0: 2}), store={"start": -1}, cache=url)
    assert tasks.CALLS == ["add0", "add1", "add2"]


class AddKept(tasks.Add):
    """An Add that undoes nothing (so a downstream key names its key alone, not its value)."""

    revert = task.Task.revert


@pytest.mark.parametrize("given_by", ["the atom's inject", "load's inject=", "store="])
def test_an_input_an_injected_value_gives_counts_by_its_value_not_by_the_provider_it_replaces(
    url: str, given_by: str
) -> None:
    # add1's value comes from the injected one, which wins over add0's result:
    # two runs injecting different values must not share add1's entry.
    results = []
    for injected in (5, 6):
        flow = linear_flow.Flow("chain").add(
            AddKept("add0", provides="v0", rebind={"value": "start"}, inject={"k": 1}),
            AddKept(
                "add1",
                provides="v1",
                rebind={"value": "v0"},
                inject={"k": 1, "v0": injected} if given_by == "the atom's inject" else {"k": 1},
            ),
        )
        kwargs: dict[str, Any] = {"store": {"start": 0}}
        if given_by == "load's inject=":
            kwargs["inject"] = {"add1": {"v0": injected}}
        elif given_by == "store=":
            kwargs["store"] = {"start": 0, "v0": injected}
        results.append(engines.run(flow, cache=url, **kwargs)["v1"])
    assert results == [6, 7]
    assert tasks.CALLS == ["add0", "add1", "add1"]


def test_without_a_cache_option_cacheable_tasks_just_run() -> None:
    engines.run(tasks.chain(3), store={"start": 0})
    engines.run(tasks.chain(3), store={"start": 0})
    assert len(tasks.CALLS) == 6


def test_a_hit_is_visible_in_the_success_notification(url: str) -> None:
    seen: list[tuple[str, Any]] = []

    def listen(state: str, details: dict[str, Any]) -> None:
        if state == states.SUCCESS:
            seen.append((details["task_name"], details["cache_hit"]))

    for _ in range(2):
        engine = engines.load(tasks.chain(2), store={"start": 0}, cache=url)
        engine.atom_notifier.register(Notifier.ANY, listen)
        engine.run()
    assert seen == [("add0", False), ("add1", False), ("add0", True), ("add1", True)]


def test_a_hit_is_visible_in_the_event_log_and_the_report(url: str) -> None:
    from flowkit.listeners.events import CauseKind, EventLogListener
    from flowkit.report import ExecutionReport

    reports = []
    for _ in range(2):
        engine = engines.load(tasks.chain(2), store={"start": 0}, cache=url)
        with EventLogListener(engine) as events:
            engine.run()
        reports.append(ExecutionReport.from_engine(engine))
    outcome = [e for e in events.log if e.state == states.SUCCESS and e.kind == "task"]
    assert [(e.name, e.cause.kind) for e in outcome] == [
        ("add0", CauseKind.CACHED),
        ("add1", CauseKind.CACHED),
    ]
    assert "from the cache" in outcome[0].cause.text
    assert [a.cached for a in reports[0].atoms] == [False, False]
    assert [a.cached for a in reports[1].atoms] == [True, True]
    assert reports[1].to_dict()["atoms"][0]["cached"] is True
    assert "(from the cache)" in reports[1].to_text()


def test_revert_is_not_called_for_results_taken_from_the_cache(url: str) -> None:
    def failing() -> linear_flow.Flow:
        return tasks.chain(2).add(tasks.Fail("fail", rebind={"value": "v1"}))

    engines.run(tasks.chain(2), store={"start": 0}, cache=url)  # add0 and add1 are cached
    tasks.CALLS.clear()
    engine = engines.load(failing(), store={"start": 0}, cache=url)
    with pytest.raises(RuntimeError):
        engine.run()
    assert tasks.CALLS == []
    assert tasks.REVERTS == []
    assert engine.storage.get_atom_state("add0") == states.REVERTED
    # Their entries stay: the run that made them owns what it did.
    engines.run(tasks.chain(2), store={"start": 0}, cache=url)
    assert tasks.CALLS == []


def test_the_entry_of_a_call_whose_revert_ran_is_removed(url: str) -> None:
    def failing() -> linear_flow.Flow:
        return tasks.chain(2).add(tasks.Fail("fail", rebind={"value": "v1"}))

    with pytest.raises(RuntimeError):
        engines.run(failing(), store={"start": 0}, cache=url)
    assert tasks.REVERTS == ["add1", "add0"]
    tasks.CALLS.clear()
    # The reverts undid what the calls did: their results used to be served again.
    engines.run(tasks.chain(2), store={"start": 0}, cache=url)
    assert tasks.CALLS == ["add0", "add1"]


class _StopsOnceThenFails(task.Task):
    """Interrupted the first time (a crash stand-in: it stays RUNNING), then it fails."""

    armed = True

    def execute(self, value: int) -> None:
        if _StopsOnceThenFails.armed:
            _StopsOnceThenFails.armed = False
            raise KeyboardInterrupt
        raise RuntimeError("fails on purpose")


def _crash_then_resume(url: str, tmp_path: Path) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``chain(2)`` then a stop on a directory backend; resume it as a new process would.

    Gives the resumed engine and its REVERTED notifications' details.
    """
    from flowkit.persistence import backends

    _StopsOnceThenFails.armed = True
    backend = backends.fetch({"connection": "dir", "path": str(tmp_path / "flows")})

    def flow() -> linear_flow.Flow:
        return tasks.chain(2).add(_StopsOnceThenFails("stop", rebind={"value": "v1"}))

    crashed = engines.load(flow(), store={"start": 0}, cache=url, backend=backend)
    with pytest.raises(KeyboardInterrupt):
        crashed.run()
    with backend.get_connection() as conn:
        detail = conn.get_flow_details(crashed.storage.flow_uuid)
    resumed = engines.load(flow(), flow_detail=detail, cache=url, backend=backend)
    reverted: list[dict[str, Any]] = []
    resumed.atom_notifier.register(states.REVERTED, lambda state, details: reverted.append(details))
    with pytest.raises(RuntimeError, match="fails on purpose"):
        resumed.run()
    backend.close()
    return resumed, reverted


def test_a_resumed_run_does_not_revert_results_the_first_run_took_from_the_cache(
    url: str, tmp_path: Path
) -> None:
    engines.run(tasks.chain(2), store={"start": 0}, cache=url)  # add0 and add1 are cached
    tasks.CALLS.clear()
    _resumed, reverted = _crash_then_resume(url, tmp_path)
    assert tasks.CALLS == []  # both were hits in the run that crashed
    # The resumed run called their reverts, undoing what another run's calls did.
    assert tasks.REVERTS == []
    assert [(d["task_name"], d["cache_hit"]) for d in reverted if "cache_hit" in d] == [
        ("add1", True),
        ("add0", True),
    ]
    engines.run(tasks.chain(2), store={"start": 0}, cache=url)
    assert tasks.CALLS == []  # their entries stay


def test_a_resumed_run_removes_the_entries_of_calls_the_first_run_made_when_it_reverts_them(
    url: str, tmp_path: Path
) -> None:
    _crash_then_resume(url, tmp_path)
    assert tasks.CALLS == ["add0", "add1"]
    assert tasks.REVERTS == ["add1", "add0"]
    tasks.CALLS.clear()
    # The reverts undid the calls: their entries went (a resumed run left them, and the
    # next run was handed results whose work had been undone).
    engines.run(tasks.chain(2), store={"start": 0}, cache=url)
    assert tasks.CALLS == ["add0", "add1"]


class _CreateVolume(task.Task):
    cache = True
    default_provides = "volume"
    existing: ClassVar[set[str]] = set()
    made = 0

    def execute(self, size: int) -> str:
        _CreateVolume.made += 1
        volume = f"volume-{_CreateVolume.made}"
        self.existing.add(volume)
        return volume

    def revert(self, result: Any, **kwargs: Any) -> None:
        if isinstance(result, str):
            self.existing.discard(result)


class _AttachOnSecondTry(task.Task):
    tries = 0

    def execute(self, volume: str) -> str:
        _AttachOnSecondTry.tries += 1
        if _AttachOnSecondTry.tries == 1:
            raise RuntimeError("transient")
        assert volume in _CreateVolume.existing, f"{volume} was deleted by its revert"
        return volume


def test_a_retried_scope_executes_again_a_cached_task_its_revert_undid(url: str) -> None:
    from flowkit import retry

    _CreateVolume.existing.clear()
    _CreateVolume.made = _AttachOnSecondTry.tries = 0
    flow = linear_flow.Flow("f", retry=retry.Times(3)).add(
        _CreateVolume("create"), _AttachOnSecondTry("attach", provides="attached")
    )
    # The retry reverted 'create' (deleting volume-1), then took volume-1 from the cache.
    results = engines.run(flow, store={"size": 1}, cache=url)
    assert results["attached"] == "volume-2"
    assert _CreateVolume.existing == {"volume-2"}


class _Snapshot(task.Task):
    """Cacheable without a revert: what it returns is made from the volume it is given."""

    cache = True

    def execute(self, volume: str) -> str:
        tasks.CALLS.append(self.name)
        return f"snapshot-of-{volume}"


class _FailOnce(task.Task):
    fails = True

    def execute(self, snapshot: str) -> None:
        if _FailOnce.fails:
            raise RuntimeError("fails on purpose")


def test_a_downstream_entry_made_from_a_reverted_result_is_not_served_for_the_new_one(url: str) -> None:
    _CreateVolume.existing.clear()
    _CreateVolume.made = 0
    _FailOnce.fails = True

    def flow() -> linear_flow.Flow:
        return linear_flow.Flow("f").add(
            _CreateVolume("create"), _Snapshot("snap", provides="snapshot"), _FailOnce("use")
        )

    with pytest.raises(RuntimeError):
        engines.run(flow(), store={"size": 1}, cache=url)  # volume-1 made, snapshotted, deleted
    _FailOnce.fails = False
    results = engines.run(flow(), store={"size": 1}, cache=url)
    assert results["volume"] == "volume-2"
    # 'snap' was keyed by the key of 'create' alone, which the new volume shares:
    # the entry made from the deleted volume-1 was served for volume-2.
    assert results["snapshot"] == "snapshot-of-volume-2"
    assert tasks.CALLS == ["snap", "snap"]
    # Both results stand now: a third run takes them from the cache.
    tasks.CALLS.clear()
    assert engines.run(flow(), store={"size": 1}, cache=url)["snapshot"] == "snapshot-of-volume-2"
    assert tasks.CALLS == []


def test_a_task_without_a_revert_of_its_own_keeps_its_entry_when_reverted(url: str) -> None:
    class Pure(task.Task):
        cache = True

        def execute(self, value: int) -> int:
            tasks.CALLS.append(self.name)
            return value * 2

    def flow(failing: bool) -> linear_flow.Flow:
        made = linear_flow.Flow("f").add(Pure("pure", provides="twice"))
        return made.add(tasks.Fail("fail", rebind={"value": "twice"})) if failing else made

    with pytest.raises(RuntimeError):
        engines.run(flow(True), store={"value": 2}, cache=url)
    # Fixing the late failure and running again reuses what nothing undid.
    assert engines.run(flow(False), store={"value": 2}, cache=url)["twice"] == 4
    assert tasks.CALLS == ["pure"]


def test_the_event_log_does_not_say_a_cached_atoms_revert_ran(url: str) -> None:
    from flowkit.listeners.events import CauseKind, EventLogListener

    def failing() -> linear_flow.Flow:
        return tasks.chain(1).add(tasks.Fail("fail", rebind={"value": "v0"}))

    engines.run(tasks.chain(1), store={"start": 0}, cache=url)
    engine = engines.load(failing(), store={"start": 0}, cache=url)
    with EventLogListener(engine) as events, pytest.raises(RuntimeError):
        engine.run()
    (reverted,) = [e for e in events.log if e.name == "add0" and e.state == states.REVERTED]
    # It used to read "revert returned", for a revert that was never called.
    assert reverted.cause.kind == CauseKind.CACHED
    assert "revert was not called" in reverted.describe()


def test_ttl_expiry_with_an_injected_clock() -> None:
    now = [1000.0]
    store = MemoryStore(ttl=10, clock=lambda: now[0])
    engines.run(tasks.chain(1), store={"start": 0}, cache=store)
    now[0] += 9
    engines.run(tasks.chain(1), store={"start": 0}, cache=store)
    assert tasks.CALLS == ["add0"]
    now[0] += 2
    engines.run(tasks.chain(1), store={"start": 0}, cache=store)
    assert tasks.CALLS == ["add0", "add0"]


@pytest.mark.parametrize("option", ["cache", "cache_strict", "cache_code"])
@pytest.mark.parametrize("bad", ["yes", 1, "false"])
def test_a_cache_switch_that_is_not_a_bool_is_refused_naming_the_atom_before_it_runs(
    url: str, option: str, bad: Any
) -> None:
    # Read as ``is True``, cache = 1 (or "yes") ran uncached without a word, and
    # cache_strict = "yes" was not strict.
    made = tasks.Add("add0", provides="v0", rebind={"value": "start"}, inject={"k": 1})
    setattr(made, option, bad)
    if option != "cache":
        made.cache = True
    engine = engines.load(linear_flow.Flow("f").add(made), store={"start": 0}, cache=url)
    with pytest.raises(exceptions.InvalidAtomOption, match="add0") as err:
        engine.run()
    assert (err.value.atom, err.value.option, err.value.value) == ("add0", option, bad)
    assert tasks.CALLS == []


def test_the_cache_key_hook_can_widen_or_refuse_sharing(url: str) -> None:
    class Rounded(task.Task):
        cache = True

        def cache_key(self, inputs: dict[str, Any]) -> str | None:
            return None if inputs["x"] < 0 else str(round(inputs["x"]))

        def execute(self, x: float) -> float:
            tasks.CALLS.append(self.name)
            return x

    for x in (1.1, 0.9, -1.0, -1.0):
        engines.run(Rounded("r"), store={"x": x}, cache=url)
    assert tasks.CALLS == ["r", "r", "r"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("nowhere://x", "unknown scheme 'nowhere'"),
        ("memory://x?ttl=soon", "ttl must be a number"),
        ("memory://x?max_entries=0", "max_entries must be above 0"),
        ("redis://127.0.0.1:1/0?timeout=soon", "timeout must be a number"),
        ("sqlite:///never.db?timeout=0", "timeout must be above 0"),
        # Only the stores that wait for a server take a timeout; memory:// does not ignore one.
        ("memory://x?timeout=5", "unknown option"),
        ("not a url", "cache= takes a cache store or a URL"),
        (42, "not 42"),
    ],
)
def test_a_bad_cache_option_is_a_clear_error_before_anything_runs(value: Any, words: str) -> None:
    with pytest.raises(exceptions.InvalidEngineOption, match=words) as err:
        engines.run(tasks.chain(1), store={"start": 0}, cache=value)
    assert err.value.option == "cache"
    assert tasks.CALLS == []


@pytest.mark.parametrize(
    "value",
    ["nowhere://x", "memory://x?ttl=soon", "dir://?ttl=5", "sqlite:///never.db?timeout=-1", "not a url", 42],
)
def test_a_bad_cache_option_fails_engines_load(value: Any) -> None:
    # As doc/caching.rst says: engines.load refuses it, not the first run.
    with pytest.raises(exceptions.InvalidEngineOption) as err:
        engines.load(tasks.chain(1), store={"start": 0}, cache=value)
    assert err.value.option == "cache"


def test_a_sqlite_cache_is_shared_by_two_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    script = textwrap.dedent(
        f"""
        from flowkit import engines
        from tests.cache import tasks
        engines.run(tasks.chain(5), store={{"start": 0}}, cache={url!r})
        print(len(tasks.CALLS))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "5"
    assert engines.run(tasks.chain(5), store={"start": 0}, cache=url)["v4"] == 5
    assert tasks.CALLS == []


def test_a_cached_pydantic_result_comes_back_as_the_model(url: str) -> None:
    pytest.importorskip("pydantic")
    from tests.typed import models

    models.CachedPrice.calls = 0
    raw = {"amount": 3, "currency": "USD"}
    for _ in range(2):
        flow = linear_flow.Flow("f").add(models.CachedPrice("make"), models.UsePrice("use"))
        results = engines.run(flow, store={"raw": raw}, cache=url)
        assert isinstance(results["price"], models.Price)
        assert results["seen"] == "Price 3.0 USD"
    assert models.CachedPrice.calls == 1


def _deep(levels: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(levels):
        nested = [nested]
    return nested


class Depth(task.Task):
    cache = True

    def execute(self, nested: Any) -> int:
        tasks.CALLS.append(self.name)
        depth = 0
        while nested:
            nested, depth = nested[0], depth + 1
        return depth


class _StrictDepth(Depth):
    cache_strict = True


class _Opaque:
    """An input no cache key can represent."""


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (_Opaque(), "a tests.cache.test_engine_cache._Opaque cannot be part of a cache key"),
        ([1, {"when": _Opaque()}], "a tests.cache.test_engine_cache._Opaque cannot be part of a cache key"),
        (_deep(5000), "nested deeper than a cache key goes"),
    ],
    ids=["object", "nested-object", "too-deep"],
)
def test_a_strict_task_given_an_input_no_key_represents_fails_naming_it_before_it_runs(
    url: str, value: Any, words: str
) -> None:
    with pytest.raises(Uncacheable, match=words) as err:
        engines.run(_StrictDepth("depth", provides="depth"), store={"nested": value}, cache=url)
    assert str(err.value).startswith("atom 'depth' is cacheable, but its argument 'nested': ")
    assert "cache_key" in str(err.value)
    assert (err.value.atom, err.value.argument) == ("depth", "nested")
    assert tasks.CALLS == []


class _Named(task.Task):
    cache = True

    def execute(self, thing: Any) -> str:
        tasks.CALLS.append(self.name)
        return type(thing).__name__


class _FailsFirst(task.Task):
    tries = 0

    def execute(self, said: str) -> None:
        _FailsFirst.tries += 1
        if _FailsFirst.tries == 1:
            raise RuntimeError("transient")


def _uncached_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "uncached" in r.getMessage()
    ]


def test_an_input_no_key_represents_runs_uncached_with_one_warning_per_run(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # It failed the atom before its call: too strict a default for what only saves time.
    from flowkit import retry

    _FailsFirst.tries = 0
    flow = linear_flow.Flow("f", retry=retry.Times(3)).add(
        _Named("named", provides="said"), _FailsFirst("after")
    )
    with caplog.at_level(logging.WARNING):
        assert engines.run(flow, store={"thing": [1, _Opaque()]}, cache=url)["said"] == "list"
    # The retry ran it twice in that run, and said so once.
    assert tasks.CALLS == ["named", "named"]
    (said,) = _uncached_warnings(caplog)
    assert said.startswith("atom 'named' is cacheable, but its argument 'thing': a ")
    assert "_Opaque cannot be part of a cache key; it runs uncached" in said
    assert "cache_key(inputs)" in said and "cache_strict = True" in said
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        engines.run(_Named("named", provides="said"), store={"thing": _Opaque()}, cache=url)
    assert len(_uncached_warnings(caplog)) == 1  # a new run says it again
    assert tasks.CALLS == ["named"] * 3  # and nothing was stored


def test_an_engine_run_again_says_again_that_an_atom_runs_uncached(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engines.load(_Named("named", provides="said"), store={"thing": _Opaque()}, cache=url)
    with caplog.at_level(logging.WARNING):
        engine.run()
        engine.reset()
        engine.run()
    assert tasks.CALLS == ["named", "named"]
    assert len(_uncached_warnings(caplog)) == 2


class _Described(task.Task):
    cache = True

    def cache_key(self, inputs: dict[str, Any]) -> str:
        return "always the same"

    def execute(self, thing: Any) -> str:
        tasks.CALLS.append(self.name)
        return type(thing).__name__


def test_a_cache_key_hook_lets_an_input_no_key_represents_through(url: str) -> None:
    for _ in range(2):
        results = engines.run(_Described("d", provides="said"), store={"thing": _Opaque()}, cache=url)
        assert results["said"] == "_Opaque"
    assert tasks.CALLS == ["d"]


class _MakeShapes(task.Task):
    """Returns what plain JSON would not give back as it was: int keys, tuples, sets."""

    cache = True
    validate_types = True

    def execute(self, n: int) -> tuple[dict[int, str], tuple[int, int], frozenset[str]]:
        tasks.CALLS.append(self.name)
        return {n: "one"}, (n, n), frozenset({"a"})


class _UseShapes(task.Task):
    def execute(self, names: dict[int, str], pair: tuple[int, int], tags: frozenset[str]) -> str:
        return f"{names[1]} {pair!r} {sorted(tags)} {type(tags).__name__}"


def test_a_hit_gives_the_same_value_as_the_call_that_filled_the_entry(url: str) -> None:
    # A mapping with int keys used to come back from the cache with str keys (the
    # consumer's names[1] failed on the second run only) and a tuple as a list
    # (the result validation of a "-> tuple[...]" task refused its own hit).
    outputs = []
    for _ in range(2):
        flow = linear_flow.Flow("f").add(
            _MakeShapes("make", provides=("names", "pair", "tags")), _UseShapes("use", provides="out")
        )
        outputs.append(engines.run(flow, store={"n": 1}, cache=url))
    assert tasks.CALLS == ["make"]
    assert outputs[1] == outputs[0]
    assert outputs[1]["out"] == "one (1, 1) ['a'] frozenset"


@pytest.mark.parametrize(
    "value",
    [
        {1: "a", "1": "b"},
        {"@tuple": [1]},
        {(1, 2): {3}},
        [(1, [2, (3,)]), {True: None, None: 1.5}],
        'a "@tuple" in a string',
    ],
)
def test_stored_results_round_trip_exactly(value: Any) -> None:
    from flowkit.cache import _keys

    back = _keys.decode_value(_keys.encode_value(value))
    assert back == value
    assert repr(back) == repr(value)  # types too: a tuple is not a list here


def test_a_result_holding_an_int_too_long_for_str_round_trips() -> None:
    from flowkit.cache import _keys

    value = [10**5000, -(10**5000) - 1, {"@int": "0x1"}, (7,)]  # str() refuses such ints: it was Uncacheable
    back = _keys.decode_value(_keys.encode_value(value))
    assert back == value
    assert [type(item) for item in back] == [int, int, dict, tuple]


def test_a_damaged_entry_is_a_miss_that_the_call_repairs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"dir://{tmp_path / 'cache'}"
    engines.run(tasks.chain(2), store={"start": 0}, cache=url)
    for entry in (tmp_path / "cache").glob("*.json"):
        header = entry.read_text().partition("\n")[0]
        entry.write_text(header + "\n{not json")
    tasks.CALLS.clear()
    # It used to fail the flow with a bare JSONDecodeError naming neither the atom nor the cache.
    assert engines.run(tasks.chain(2), store={"start": 0}, cache=url)["v1"] == 2
    assert tasks.CALLS == ["add0", "add1"]
    assert "atom 'add0': the entry of key" in caplog.text
    assert f"in cache store {url} is not readable" in caplog.text
    tasks.CALLS.clear()
    engines.run(tasks.chain(2), store={"start": 0}, cache=url)
    assert tasks.CALLS == []  # the calls wrote the entries again


class _Snap(task.Task):
    suffix = ""

    def execute(self, volume: str) -> str:
        tasks.CALLS.append(self.name)
        return f"snap-of-{volume}{self.suffix}"


class _CachedFanOut(task.Task):
    cache = True
    default_provides = "snapshots"

    def execute(self, volumes: list[str]) -> Any:
        from flowkit import dynamic

        tasks.CALLS.append(self.name)
        return dynamic.subflow(
            linear_flow.Flow("per").add(*[_Snap(f"snap-{v}", inject={"volume": v}) for v in volumes])
        )


class _Plain(task.Task):
    def execute(self, snapshots: list[str]) -> list[str]:
        return snapshots


def test_a_cacheable_spawner_spawns_again_rather_than_hit_the_none_it_held(url: str) -> None:
    # The None a spawner holds while its sub-flow runs used to be cached under its
    # key: the next run hit it, spawned nothing, and 'snapshots' was None.
    for _ in range(2):
        tasks.CALLS.clear()
        flow = linear_flow.Flow("f").add(_CachedFanOut("fan"), _Plain("use", provides="used"))
        results = engines.run(flow, store={"volumes": ["a", "b"]}, cache=url)
        assert results["snapshots"] == results["used"] == ["snap-of-a", "snap-of-b"]
        assert tasks.CALLS == ["fan", "snap-a", "snap-b"]


def test_a_key_downstream_of_a_spawner_counts_what_was_spawned(url: str) -> None:
    # The spawned tasks change what they return; the spawner's code and inputs do
    # not. A downstream key built on the spawner's key would hit the stale value.
    outputs = []
    try:
        for suffix in ("", " v2"):
            _Snap.suffix = suffix
            flow = linear_flow.Flow("f").add(
                _CachedFanOut("fan"), tasks.Add("add", provides="added", rebind={"value": "snapshots"})
            )
            outputs.append(engines.run(flow, store={"volumes": ["a"], "k": ["!"]}, cache=url)["added"])
    finally:
        _Snap.suffix = ""
    assert outputs == [["snap-of-a", "!"], ["snap-of-a v2", "!"]]


def test_a_cache_code_key_is_the_same_in_another_process(tmp_path: Path) -> None:
    # The repr of the generator expression's code object holds its address: the
    # key differed in every process, so such a task never hit across runs.
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    script = textwrap.dedent(
        f"""
        from flowkit import engines
        from tests.cache import tasks
        engines.run(tasks.Doubled("d", provides="sum"), store={{"values": [1, 2]}}, cache={url!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=120, check=True)
    assert engines.run(tasks.Doubled("d", provides="sum"), store={"values": [1, 2]}, cache=url)["sum"] == 6
    assert tasks.CALLS == []


def test_a_cache_code_key_sees_which_names_the_code_loads() -> None:
    import math

    from flowkit.cache import task_identity

    def version(rounding: Any) -> task.Task:
        """The same task class (module and name) as deployed before and after an edit."""

        namespace = {"execute": rounding, "cache": True, "cache_code": True, "__qualname__": "Rounded"}
        return type("Rounded", (task.Task,), namespace)("r")  # type: ignore[no-any-return]

    def floor(self: Any, x: float) -> int:
        return math.floor(x)

    def ceil(self: Any, x: float) -> int:
        return math.ceil(x)

    # The same byte code and constants; only co_names tells them apart.
    assert floor.__code__.co_code == ceil.__code__.co_code
    assert task_identity(version(floor)) != task_identity(version(ceil))


def _adder(k: int) -> Any:
    def add(x: int) -> int:
        return x + k

    return add


def _cached(function: Any, name: str) -> task.FunctorTask:
    made = task.FunctorTask(function, name=name, provides="y")
    made.cache = True  # type: ignore[attr-defined]
    return made


def test_two_lambdas_or_closures_of_one_name_do_not_share_entries(url: str) -> None:
    # Every lambda is named "<lambda>" and every _adder(k) function
    # "_adder.<locals>.add": the second of each pair used to get the first's result.
    pairs = [
        (lambda x: x + 1, lambda x: x * 10, [2, 10]),
        (_adder(1), _adder(100), [2, 101]),
    ]
    for first, second, expected in pairs:
        got = [engines.run(_cached(f, "f"), store={"x": 1}, cache=url)["y"] for f in (first, second)]
        assert got == expected
    # The same closure again is a hit.
    assert engines.run(_cached(_adder(100), "f"), store={"x": 1}, cache=url)["y"] == 101


def test_a_closure_over_mutable_state_is_keyed_by_its_type_not_its_contents(url: str) -> None:
    seen: list[int] = []

    def record(x: int) -> int:
        seen.append(x)
        return x

    for _ in range(2):
        assert engines.run(_cached(record, "f"), store={"x": 1}, cache=url)["y"] == 1
    assert seen == [1]  # the list grew, and the second run still hit


def test_a_memory_url_asking_other_options_than_its_open_store_is_refused_at_load(url: str) -> None:
    engines.run(tasks.chain(1), store={"start": 0}, cache=url)
    # It used to be handed the open store, without a TTL and without a word.
    with pytest.raises(exceptions.InvalidEngineOption, match="is open in this process with ttl=None"):
        engines.load(tasks.chain(1), store={"start": 0}, cache=f"{url}?ttl=60")
    engines.run(tasks.chain(1), store={"start": 0}, cache=url)  # the same options (none): shared
    assert tasks.CALLS == ["add0"]


class _Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class _Grade(task.Task):
    cache = True
    validate_types = True

    def execute(self, score: int) -> _Level:
        tasks.CALLS.append(self.name)
        return _Level.HIGH if score > 5 else _Level.LOW


def test_an_enum_result_comes_back_from_the_cache_as_its_member(url: str) -> None:
    # JSON keeps an IntEnum member as its int: the hit failed its own "-> _Level" validation.
    got = [
        engines.run(_Grade("grade", provides="level"), store={"score": 9}, cache=url)["level"]
        for _ in range(2)
    ]
    assert got == [_Level.HIGH, _Level.HIGH]
    assert type(got[1]) is _Level
    assert tasks.CALLS == ["grade"]


class _Colour(enum.Enum):
    """A plain enum: its members are neither strs nor ints, so JSON alone cannot hold them."""

    RED = "red"
    BLUE = "blue"


class _Paint(task.Task):
    cache = True
    validate_types = True

    def execute(self, score: int) -> _Colour:
        tasks.CALLS.append(self.name)
        return _Colour.RED if score > 5 else _Colour.BLUE


def test_a_plain_enum_result_is_cached_and_comes_back_as_its_member(url: str) -> None:
    # Only str and int enums were stored: a plain Enum member was "not JSON", so
    # the task ran at every run with a WARNING.
    got = [
        engines.run(_Paint("paint", provides="colour"), store={"score": 9}, cache=url)["colour"]
        for _ in range(2)
    ]
    assert got == [_Colour.RED, _Colour.RED]
    assert tasks.CALLS == ["paint"]


class _Grades(task.Task):
    cache = True
    validate_types = True

    def execute(self, scores: list[int]) -> tuple[list[_Level], _Level | None, dict[str, _Colour]]:
        tasks.CALLS.append(self.name)
        levels = [_Level.HIGH if score > 5 else _Level.LOW for score in scores]
        return levels, (levels[0] if levels else None), {"first": _Colour.RED}


def test_enum_members_inside_a_declared_result_come_back_as_members(url: str) -> None:
    # Only a result declared as the enum itself was revived: the hit of a
    # "-> list[_Level]" gave [2], which its own validation refused on the second run.
    got = [
        engines.run(_Grades("grades", provides="out"), store={"scores": [9, 1]}, cache=url)["out"]
        for _ in range(2)
    ]
    assert got[1] == got[0] == ([_Level.HIGH, _Level.LOW], _Level.HIGH, {"first": _Colour.RED})
    assert [type(level) for level in got[1][0]] == [_Level, _Level]
    assert type(got[1][1]) is _Level
    assert tasks.CALLS == ["grades"]


def _double(value: int) -> int:
    tasks.CALLS.append("double")
    return value * 2


def _undo_double(**kwargs: Any) -> None:
    tasks.REVERTS.append("double")


@pytest.mark.parametrize(("revert", "calls"), [(None, ["double"]), (_undo_double, ["double", "double"])])
def test_a_function_task_loses_its_entry_on_revert_only_with_a_revert_function(
    url: str, revert: Any, calls: list[str]
) -> None:
    def flow(failing: bool) -> linear_flow.Flow:
        made = task.FunctorTask(_double, name="double", provides="twice", revert=revert)
        made.cache = True  # type: ignore[attr-defined]
        out = linear_flow.Flow("f").add(made)
        return out.add(tasks.Fail("fail", rebind={"value": "twice"})) if failing else out

    with pytest.raises(RuntimeError):
        engines.run(flow(True), store={"value": 2}, cache=url)
    engines.run(flow(False), store={"value": 2}, cache=url)
    assert calls == tasks.CALLS


def test_a_result_the_cache_could_not_give_back_is_not_stored_and_says_so(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Tag(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(frozen=True)
        name: str

    class Tags(task.Task):
        cache = True

        def execute(self, n: int) -> Any:
            tasks.CALLS.append(self.name)
            return {Tag(name="a")}

    # A set of models was stored as a set of mappings, which no set can hold: each
    # later run found an entry it could not read, warned, ran, and stored it again.
    for _ in range(2):
        results = engines.run(Tags("tags", provides="tags"), store={"n": 1}, cache=url)
        assert results["tags"] == {Tag(name="a")}
    assert tasks.CALLS == ["tags", "tags"]
    assert "not readable" not in caplog.text
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2 and all("result of atom 'tags' is not cached: " in w for w in warned), warned
    assert all("cannot be given back" in w for w in warned), warned


_Pair = collections.namedtuple("_Pair", "x y")


class _MakeSubclassed(task.Task):
    cache = True
    default_provides = "made"

    def execute(self, kind: str) -> Any:
        tasks.CALLS.append(self.name)
        if kind == "namedtuple":
            return _Pair(1, 2)
        if kind == "defaultdict":
            return collections.defaultdict(list, a=[1])
        return [collections.OrderedDict(a=1)]


class _UseSubclassed(task.Task):
    def execute(self, made: Any, kind: str) -> str:
        if kind == "namedtuple":
            return str(made.x)
        if kind == "defaultdict":
            return str(made["missing"])
        made[0].move_to_end("a")
        return "moved"


@pytest.mark.parametrize("kind", ["namedtuple", "defaultdict", "ordereddict"])
def test_a_result_of_a_container_subclass_is_not_stored_to_come_back_plain(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A named tuple came back from the cache as a plain tuple (made.x failed on
    # the second run only), a defaultdict as a dict (made["missing"] a KeyError).
    outputs = []
    for _ in range(2):
        flow = linear_flow.Flow("f").add(_MakeSubclassed("make"), _UseSubclassed("use", provides="out"))
        outputs.append(engines.run(flow, store={"kind": kind}, cache=f"memory://subclassed-{kind}")["out"])
    assert outputs[1] == outputs[0]
    assert tasks.CALLS == ["make", "make"]
    assert "result of atom 'make' is not cached" in caplog.text
    assert "would come back from the cache as a plain" in caplog.text


class _Tone(enum.StrEnum):
    LOW = "low"


def test_a_result_holding_an_enum_member_is_still_stored() -> None:
    from flowkit.cache import _keys

    # Documented: an enum member is stored as its value (a declared result revives it).
    assert _keys.decode_value(_keys.encode_value([_Tone.LOW, {"a": (1,)}])) == ["low", {"a": (1,)}]


class _PaintUndeclared(task.Task):
    cache = True

    def execute(self) -> Any:
        tasks.CALLS.append(self.name)
        return [_Colour.RED]


class _PaintHalfDeclared(task.Task):
    cache = True

    def execute(self) -> tuple[_Colour, Any]:
        tasks.CALLS.append(self.name)
        return _Colour.RED, _Colour.BLUE


@pytest.mark.parametrize("maker", [_PaintUndeclared, _PaintHalfDeclared])
def test_a_plain_enum_member_no_annotation_declares_is_not_stored(
    maker: type, caplog: pytest.LogCaptureFixture
) -> None:
    # Stored as its value, it would come back as "red", which is not _Colour.RED.
    url = f"memory://undeclared-{maker.__name__}"
    got = [engines.run(maker("paint", provides="colour"), cache=url)["colour"] for _ in range(2)]
    assert got[0] == got[1]
    assert tasks.CALLS == ["paint", "paint"]
    assert "result of atom 'paint' is not cached" in caplog.text


def test_a_model_whose_dump_hides_a_secret_is_not_stored(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("pydantic")
    from tests.cache.tasks import Login

    url = "memory://secret-model"
    got = [engines.run(Login("login", provides="creds"), cache=url)["creds"] for _ in range(2)]
    # The model's JSON dump writes a SecretStr as "**********": the hit handed that on as the password.
    assert [creds.password.get_secret_value() for creds in got] == ["hunter2", "hunter2"]
    assert tasks.CALLS == ["login", "login"]
    assert "result of atom 'login' is not cached" in caplog.text
    assert "SecretStr" in caplog.text


class _Relabelled(task.Task):
    """Declared ``-> str``; what it returns is set by the test (an int, as an older version did)."""

    cache = True
    answer: Any = 1

    def execute(self) -> str:
        tasks.CALLS.append(self.name)
        return _Relabelled.answer  # type: ignore[no-any-return]


def test_an_entry_its_atoms_validation_refuses_is_a_miss_that_the_call_replaces(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An entry stored before the task's result type changed (or unvalidated) failed the
    # atom with "returned a result that is not str" at every run, for a value it never
    # returned: only clearing the cache got the flow going again.
    url = "memory://relabelled"
    _Relabelled.answer = 1
    engines.run(_Relabelled("answer", provides="out"), cache=url, validate_types=False)
    _Relabelled.answer = "one"
    for _ in range(2):
        got = engines.run(_Relabelled("answer", provides="out"), cache=url, validate_types=True)
        assert got["out"] == "one"
    assert tasks.CALLS == ["answer", "answer"]  # the second validated run took the new entry
    assert "atom 'answer': the entry of key" in caplog.text
    assert "is not str" in caplog.text


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts this process's open files in /proc")
def test_runs_naming_one_sqlite_cache_url_share_one_store_and_its_files(tmp_path: Path) -> None:
    """Each run opened a store of its own (an SQLAlchemy engine, a connection and its
    WAL files) and never closed it: a process running flows for weeks held three more
    files per run until the cyclic collector happened to free them. Counted with the
    collector off, so nothing but the stores' own closing can give the files back."""
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    engines.run(tasks.chain(2), store={"start": 0}, cache=url)
    gc.collect()
    gc.disable()
    try:
        before = _open_fds()
        for start in range(40):
            engines.run(tasks.chain(2), store={"start": start % 4}, cache=url)
        grown = _open_fds() - before
    finally:
        gc.enable()
    assert grown <= 0, f"40 runs left {grown} more files open"
    assert open_store(url) is open_store(url)


def test_runs_naming_one_redis_cache_url_share_one_connection(redis_flushed_url: str) -> None:
    """One client per URL in a process: a run each made (and connected) its own."""
    redis = pytest.importorskip("redis")
    admin = redis.Redis.from_url(redis_flushed_url)
    engines.run(tasks.chain(2), store={"start": 0}, cache=redis_flushed_url)
    gc.collect()
    gc.disable()
    try:
        before = len(admin.client_list())
        for start in range(40):
            engines.run(tasks.chain(2), store={"start": start % 4}, cache=redis_flushed_url)
        grown = len(admin.client_list()) - before
    finally:
        gc.enable()
        admin.close()
    assert grown <= 0, f"40 runs left {grown} more connections to Redis"
    assert open_store(redis_flushed_url) is open_store(redis_flushed_url)
