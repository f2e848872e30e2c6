"""Dynamic sub-flows: a task returns dynamic.subflow(...) and the engine splices it in."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import pytest

from flowkit import dynamic, engines, task
from flowkit import exceptions as exc
from flowkit import states as st
from flowkit.patterns import graph_flow, linear_flow, loop_flow, unordered_flow
from flowkit.persistence import backends
from flowkit.retry import Times

#: What the module-level tasks did, in order (tests clear it; engines here are serial or joined).
EVENTS: list[tuple[str, str]] = []


class Child(task.Task):
    """Returns ten times ``value``; logs execute and revert."""

    def execute(self, value: int) -> int:
        EVENTS.append(("execute", self.name))
        return value * 10

    def revert(self, **kwargs: Any) -> None:
        EVENTS.append(("revert", self.name))


class Stop(task.Task):
    """Interrupts the run the first time (a crash stand-in), succeeds after."""

    armed = True

    def execute(self, value: int) -> int:
        if Stop.armed:
            Stop.armed = False
            raise KeyboardInterrupt
        EVENTS.append(("execute", self.name))
        return value


class Spawner(task.Task):
    """Spawns one Child per id (names ``<prefix>-<id>``), unordered."""

    default_provides = "spawned"

    def __init__(
        self, name: str = "spawner", prefix: str = "c", collect: str = "list", **kwargs: Any
    ) -> None:
        super().__init__(name, **kwargs)
        self.prefix = prefix
        self.collect = collect

    def execute(self, ids: list[int]) -> Any:
        EVENTS.append(("execute", self.name))
        children = [Child(name=f"{self.prefix}-{i}", inject={"value": i}) for i in ids]
        return dynamic.subflow(unordered_flow.Flow(f"{self.prefix}-fan").add(*children), collect=self.collect)

    def revert(self, result: Any, **kwargs: Any) -> None:
        EVENTS.append(("revert", self.name))


class Total(task.Task):
    default_provides = "total"

    def execute(self, spawned: list[int]) -> int:
        EVENTS.append(("execute", self.name))
        return sum(spawned)


class Fails(task.Task):
    def execute(self, spawned: Any) -> None:
        EVENTS.append(("execute", self.name))
        raise ValueError("late failure")


class Returns(task.Task):
    """Returns (spawns) whatever it was given."""

    def __init__(self, name: str, what: Any) -> None:
        super().__init__(name)
        self.what = what

    def execute(self) -> Any:
        return self.what


class Nested(task.Task):
    """Spawns a linear flow holding another Nested, ``levels`` deep; each level returns its list."""

    def __init__(self, name: str, levels: int) -> None:
        super().__init__(name)
        self.levels = levels

    def execute(self) -> Any:
        EVENTS.append(("execute", self.name))
        if self.levels == 0:
            return self.name
        return dynamic.subflow(
            linear_flow.Flow(f"{self.name}-sub").add(Nested(f"{self.name}.n", self.levels - 1))
        )


def make_children(ids: list[int], prefix: str) -> linear_flow.Flow:
    """A sub-flow factory (module level: importable by name, arguments stored as JSON)."""
    return linear_flow.Flow(f"{prefix}-made").add(
        *[Child(name=f"{prefix}-{i}", inject={"value": i}) for i in ids]
    )


class FactorySpawner(task.Task):
    default_provides = "spawned"

    def execute(self, ids: list[int]) -> Any:
        EVENTS.append(("execute", self.name))
        return dynamic.subflow(make_children, ids, prefix="m")


@pytest.fixture(autouse=True)
def _clear() -> None:
    EVENTS.clear()
    Stop.armed = True


def _fan(kind: str, ids: list[int], then: task.Task | None = None) -> Any:
    flow = linear_flow.Flow("fan").add(Spawner(), then if then is not None else Total())
    return engines.load(flow, store={"ids": ids}, engine=kind)


def test_children_run_after_the_spawner_and_their_results_become_its_result(engine_kind: str) -> None:
    engine = _fan(engine_kind, [3, 1, 2])
    engine.run()
    assert engine.storage.fetch("spawned") == [30, 10, 20]  # in the order the children were added
    assert engine.storage.fetch("total") == 60
    executed = [name for what, name in EVENTS if what == "execute"]
    assert executed[0] == "spawner"
    assert executed[-1] == "__main__.Total" or executed[-1].endswith("Total")
    assert sorted(executed[1:-1]) == ["c-1", "c-2", "c-3"]
    assert engine.storage.get_atom_state("c-1") == st.SUCCESS


def test_a_process_pool_brings_the_sub_flow_back_to_the_engine() -> None:
    flow = linear_flow.Flow("fan").add(Spawner(), Total())
    engine = engines.load(flow, store={"ids": [1, 2]}, engine="parallel", executor="processes", max_workers=2)
    engine.run()
    assert engine.storage.fetch("total") == 30


def test_a_late_failure_reverts_children_newest_first_then_the_spawner(engine_kind: str) -> None:
    engine = _fan(engine_kind, [1, 2, 3], then=Fails("late"))
    with pytest.raises(ValueError, match="late failure"):
        engine.run()
    executed = [name for what, name in EVENTS if what == "execute" and name.startswith("c-")]
    reverted = [name for what, name in EVENTS if what == "revert"]
    assert reverted[-1] == "spawner"
    assert sorted(reverted[:-1]) == ["c-1", "c-2", "c-3"]
    if engine_kind == "serial":
        assert reverted[:-1] == list(reversed(executed))
    assert engine.storage.get_flow_state() == st.REVERTED


@pytest.mark.parametrize(("collect", "want"), [("dict", {"c-1": 10, "c-2": 20}), ("none", None)])
def test_collect_says_what_the_spawner_result_becomes(collect: str, want: Any) -> None:
    flow = linear_flow.Flow("f").add(Spawner(collect=collect))
    engine = engines.load(flow, store={"ids": [1, 2]})
    engine.run()
    assert engine.storage.fetch("spawned") == want


def test_an_unknown_collect_is_refused_naming_the_parameter_and_the_choices() -> None:
    # It said only "'bogus' is not a valid Collect": no parameter, no choices.
    flow = linear_flow.Flow("child")
    with pytest.raises(ValueError, match=r"collect='bogus'; it must be one of 'list', 'dict', 'none'"):
        dynamic.subflow(flow, collect="bogus")


def test_spawned_atoms_read_what_the_spawner_sees() -> None:
    class Reads(task.Task):
        def execute(self, base: int, value: int) -> int:
            return base + value

    class Spawns(task.Task):
        default_provides = "out"

        def execute(self) -> Any:
            return dynamic.subflow(linear_flow.Flow("s").add(Reads(name="r", inject={"value": 1})))

    flow = linear_flow.Flow("f").add(task.FunctorTask(lambda: 100, name="b", provides="base"), Spawns())
    engine = engines.load(flow)
    engine.run()
    assert engine.storage.fetch("out") == [101]


def test_nested_spawning_collects_nested_lists(engine_kind: str) -> None:
    engine = engines.load(linear_flow.Flow("f").add(Nested("top", 3)), engine=engine_kind)
    engine.run()
    assert engine.storage.get("top") == [[["top.n.n.n"]]]


def test_spawning_past_the_depth_bound_fails_the_spawner_and_reverts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynamic, "MAX_DEPTH", 2)
    engine = engines.load(linear_flow.Flow("f").add(Nested("top", 5)))
    with pytest.raises(exc.SpawnLimitExceeded, match="MAX_DEPTH") as raised:
        engine.run()
    assert raised.value.atom == "top.n.n"
    assert raised.value.limit == 2
    assert engine.storage.get_flow_state() == st.REVERTED
    assert engine.storage.get_atom_state("top") == st.REVERTED


def test_spawning_past_the_size_bound_fails_the_spawner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynamic, "MAX_SPAWNED", 3)
    engine = _fan("serial", [1, 2, 3, 4])
    with pytest.raises(exc.SpawnLimitExceeded, match="MAX_SPAWNED"):
        engine.run()
    assert not [name for what, name in EVENTS if name.startswith("c-")]


def test_spawning_something_that_is_not_a_flow_is_refused() -> None:
    with pytest.raises(exc.InvalidFlowItem, match="needs a flow or a factory"):
        dynamic.subflow(42)  # type: ignore[arg-type]
    with pytest.raises(exc.InvalidFlowItem, match="not a flow"):
        dynamic.subflow(lambda: 42)  # type: ignore[arg-type, return-value]

    class Bad(task.Task):
        def execute(self) -> Any:
            return dynamic.subflow("not a flow")  # a string names a factory that is not there

    engine = engines.load(linear_flow.Flow("f").add(Bad("bad")))
    with pytest.raises(ImportError):
        engine.run()
    assert engine.storage.get_flow_state() == st.REVERTED


def test_a_spawned_flow_with_a_missing_dependency_fails_the_spawner_with_the_compile_error() -> None:
    class Spawns(task.Task):
        def execute(self) -> Any:
            return dynamic.subflow(linear_flow.Flow("s").add(Child(name="needs-value")))

    engine = engines.load(linear_flow.Flow("f").add(Child(name="first", inject={"value": 1}), Spawns("sp")))
    with pytest.raises(exc.MissingDependencies) as raised:
        engine.run()
    assert raised.value.atom == "needs-value"
    assert list(raised.value.missing) == ["value"]
    assert engine.storage.get_atom_state("sp") == st.REVERTED
    assert ("revert", "first") in EVENTS
    assert ("execute", "needs-value") not in EVENTS


class UndoesWith(task.Task):
    """Needs ``undo`` only to revert: a gap in one method alone."""

    def execute(self) -> int:
        return 1

    def revert(self, undo: int, **kwargs: Any) -> None:
        pass


def _missing_chain(error: BaseException | None) -> list[tuple[str, str, list[str], str | None, str]]:
    """Each MissingDependencies down ``error``'s causes: its text, atom, missing, method and who's type."""
    chain = []
    while isinstance(error, exc.MissingDependencies):
        chain.append((str(error), error.atom, error.missing, error.method, type(error.who).__name__))
        error = error.__cause__
    return chain


def test_a_spawned_flows_missing_symbols_are_reported_as_the_same_flow_loaded_reports_them() -> None:
    # The spawn named the node ("'needs-value' requires ...", not the atom's
    # '"needs-value==1.0"'), never the method, and only the first atom at fault.
    def needy() -> linear_flow.Flow:
        return linear_flow.Flow("s").add(Child(name="needs-value"), UndoesWith(name="half"))

    with pytest.raises(exc.MissingDependencies) as loaded:
        engines.load(needy()).validate()

    class Spawns(task.Task):
        def execute(self) -> Any:
            return dynamic.subflow(needy())

    engine = engines.load(linear_flow.Flow("f").add(Spawns("sp")))
    with pytest.raises(exc.MissingDependencies) as spawned:
        engine.run()
    assert _missing_chain(spawned.value) == _missing_chain(loaded.value)
    assert _missing_chain(spawned.value) == [
        (
            "'\"linear_flow.Flow: s(len=2)\"' requires ['undo', 'value'] but no other entity produces said"
            " requirements (atoms: 'needs-value' needs symbols ['value']; 'half' needs symbols ['undo'])\n"
            "  MissingDependencies: 'revert' method on '\"half==1.0\"' requires ['undo'] but no other entity"
            " produces said requirements\n"
            "    MissingDependencies: 'execute' method on '\"needs-value==1.0\"' requires ['value'] but no"
            " other entity produces said requirements",
            "needs-value",
            ["undo", "value"],
            None,
            "Flow",
        ),
        (
            "'revert' method on '\"half==1.0\"' requires ['undo'] but no other entity produces said"
            " requirements\n"
            "  MissingDependencies: 'execute' method on '\"needs-value==1.0\"' requires ['value'] but no"
            " other entity produces said requirements",
            "half",
            ["undo"],
            "revert",
            "UndoesWith",
        ),
        (
            "'execute' method on '\"needs-value==1.0\"' requires ['value'] but no other entity produces"
            " said requirements",
            "needs-value",
            ["value"],
            "execute",
            "Child",
        ),
    ]
    assert engine.storage.get_atom_state("sp") == st.REVERTED


def test_spawned_names_must_not_clash_with_atoms_in_the_flow() -> None:
    flow = linear_flow.Flow("f").add(Child(name="c-1", inject={"value": 0}), Spawner())
    engine = engines.load(flow, store={"ids": [1]})
    with pytest.raises(exc.Duplicate, match="c-1"):
        engine.run()


def test_a_retry_around_the_spawner_spawns_afresh_each_attempt() -> None:
    class Flaky(task.Task):
        fails = 1

        def execute(self, spawned: list[int]) -> int:
            if Flaky.fails:
                Flaky.fails -= 1
                raise ValueError("once")
            return len(spawned)

    flow = linear_flow.Flow("f", retry=Times(3)).add(Spawner(), Flaky("flaky", provides="n"))
    engine = engines.load(flow, store={"ids": [1, 2]})
    engine.run()
    assert engine.storage.fetch("n") == 2
    children = [(what, name) for what, name in EVENTS if name.startswith("c-")]
    assert sorted(children) == sorted(
        [("execute", "c-1"), ("execute", "c-2"), ("revert", "c-1"), ("revert", "c-2")] * 1
        + [("execute", "c-1"), ("execute", "c-2")]
    )


class _Shrinking(task.Task):
    """Spawns c-1 and c-2 on its first call, c-1 alone after."""

    default_provides = "spawned"
    calls = 0

    def execute(self) -> Any:
        _Shrinking.calls += 1
        ids = [1, 2] if _Shrinking.calls == 1 else [1]
        return dynamic.subflow(
            linear_flow.Flow("kids").add(*[Child(name=f"c-{i}", inject={"value": i}) for i in ids])
        )


def test_an_atom_a_respawn_leaves_out_is_ignored_not_left_pending(tmp_path: Path) -> None:
    class FailsOnce(task.Task):
        fails = 1

        def execute(self, spawned: list[int]) -> list[int]:
            if FailsOnce.fails:
                FailsOnce.fails -= 1
                raise ValueError("once")
            return spawned

    _Shrinking.calls = 0
    backend = _sqlite(tmp_path)
    try:
        flow = linear_flow.Flow("f", retry=Times(3)).add(_Shrinking("fan"), FailsOnce("use", provides="used"))
        engine = engines.load(flow, backend=backend)
        engine.run()
        assert engine.storage.fetch("used") == [10]
        with contextlib.closing(backend.get_connection()) as conn:
            stored = {
                ad.name: (ad.state, ad.results) for ad in conn.get_flow_details(engine.storage.flow_uuid)
            }
        # c-2 used to stay PENDING (with its first attempt's result) in a flow that ended SUCCESS.
        assert stored["c-2"] == (st.IGNORE, None)
        assert stored["c-1"] == (st.SUCCESS, 10)
        assert engine.storage.get_flow_state() == st.SUCCESS
    finally:
        backend.close()


def test_a_loop_spawning_fewer_atoms_in_a_later_iteration_ignores_the_rest() -> None:
    _Shrinking.calls = 0
    loop = loop_flow.Flow(
        "again", _Shrinking("fan"), until=lambda spawned: len(spawned) == 1, max_iterations=3
    )
    engine = engines.load(linear_flow.Flow("f").add(loop))
    engine.run()
    assert engine.storage.get_atom_state("c-2") == st.IGNORE
    assert engine.storage.get_atom_state("c-1") == st.SUCCESS


def test_the_spawners_revert_gets_the_list_only_if_its_sub_flow_finished() -> None:
    # What doc/dynamic.rst says: the collected list after a late failure, None
    # after a failure inside the sub-flow (nothing was collected).
    got: list[Any] = []

    class Keeps(Spawner):
        def revert(self, result: Any, **kwargs: Any) -> None:
            got.append(result)

    class FailsInside(task.Task):
        def execute(self) -> Any:
            return dynamic.subflow(
                linear_flow.Flow("inner").add(
                    Child(name="ok", inject={"value": 1}), Fails("bad", inject={"spawned": 0})
                )
            )

        def revert(self, result: Any, **kwargs: Any) -> None:
            got.append(result)

    with pytest.raises(ValueError, match="late failure"):
        engines.run(linear_flow.Flow("late").add(Keeps(), Fails("fails")), store={"ids": [1, 2]})
    with pytest.raises(ValueError, match="late failure"):
        engines.run(FailsInside("inside"))
    assert got == [[10, 20], None]


def test_a_graph_flow_spawned_with_links_runs_in_link_order() -> None:
    class Spawns(task.Task):
        def execute(self) -> Any:
            a, b = Child(name="ga", inject={"value": 1}), Child(name="gb", inject={"value": 2})
            return dynamic.subflow(graph_flow.Flow("g").add(a, b).link(b, a))

    engine = engines.load(linear_flow.Flow("f").add(Spawns("sp")))
    engine.run()
    assert [name for _what, name in EVENTS] == ["gb", "ga"]


# -- durability ------------------------------------------------------------------------


def _sqlite(tmp_path: Path) -> Any:
    backend = backends.fetch({"connection": f"sqlite:///{tmp_path / 'runs.db'}"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    return backend


def fan_then_stop() -> linear_flow.Flow:
    """Spawn three children, then a task that interrupts the first run."""
    return linear_flow.Flow("fan-stop").add(Spawner(), Stop("stop", rebind={"value": "spawned"}))


def factory_fan_then_stop() -> linear_flow.Flow:
    return linear_flow.Flow("factory-fan-stop").add(
        FactorySpawner("fs"), Stop("stop", rebind={"value": "spawned"})
    )


@pytest.mark.parametrize("factory", [fan_then_stop, factory_fan_then_stop])
def test_a_resumed_run_rebuilds_the_spawn_without_running_the_spawner_again(
    tmp_path: Path, factory: Any
) -> None:
    backend = _sqlite(tmp_path)
    try:
        engine = engines.load_from_factory(factory, store={"ids": [1, 2]}, backend=backend)
        with pytest.raises(KeyboardInterrupt):
            engine.run()
        first = list(EVENTS)
        EVENTS.clear()
        with contextlib.closing(backend.get_connection()) as conn:
            detail = conn.get_flow_details(engine.storage.flow_uuid)
        spawner = next(ad for ad in detail if ad.name in ("spawner", "fs"))
        assert spawner.state == st.SUCCESS
        assert spawner.meta[dynamic_meta_key()]["depth"] == 1
        children = [ad for ad in detail if ad.name not in (spawner.name, "stop")]
        assert {ad.meta["spawned_by"] for ad in children} == {spawner.name}
        resumed = engines.load_from_detail(detail, backend=backend)
        resumed.run()
        assert len(first) == 3  # spawner and two children
        assert EVENTS == [("execute", "stop")]  # nothing that succeeded ran again
        assert resumed.storage.fetch("spawned") == [10, 20]
        assert resumed.storage.get_flow_state() == st.SUCCESS
    finally:
        backend.close()


def dynamic_meta_key() -> str:
    from flowkit.engines import _splice

    return _splice.META_KEY


def test_a_durable_spawn_of_an_atom_that_cannot_be_described_says_to_use_a_factory(tmp_path: Path) -> None:
    class Local(task.Task):  # not importable by name
        def execute(self) -> int:
            return 1

    class Spawns(task.Task):
        def execute(self) -> Any:
            return dynamic.subflow(linear_flow.Flow("s").add(Local("local")))

    backend = _sqlite(tmp_path)
    try:
        engine = engines.load(linear_flow.Flow("f").add(Spawns("sp")), backend=backend)
        with pytest.raises(exc.InvalidFlowItem, match="factory") as err:
            engine.run()
    finally:
        backend.close()
    # It read "...: use a module-level function or class, so a resumed run could not rebuild it".
    assert str(err.value).startswith(
        "cannot record spawned atom 'local', whose class "
        f"{__name__}.test_a_durable_spawn_of_an_atom_that_cannot_be_described_says_to_use_a_factory"
        ".<locals>.Local cannot be imported again by name (it is not defined at module level), "
        "so a resumed run could not rebuild it; spawn it with a factory instead"
    )


def test_a_durable_spawn_of_a_loop_says_which_flows_can_be_recorded(tmp_path: Path) -> None:
    # It read "cannot record spawned flow 'poll' is a Flow, so ...".
    class Spawns(task.Task):
        def execute(self) -> Any:
            return dynamic.subflow(
                loop_flow.Flow("poll", Child("c", inject={"value": 1}), until=lambda: True, max_iterations=2)
            )

    backend = _sqlite(tmp_path)
    try:
        engine = engines.load(linear_flow.Flow("f").add(Spawns("sp")), backend=backend)
        with pytest.raises(exc.InvalidFlowItem) as err:
            engine.run()
    finally:
        backend.close()
    assert str(err.value).startswith(
        "cannot record spawned flow 'poll', which is a flowkit.patterns.loop_flow.Flow "
        "(only linear, unordered and graph flows are described), so a resumed run could not rebuild it"
    )


@pytest.mark.parametrize(("collect", "want"), [("list", [10, 20]), ("dict", {"first": 10, "second": 20})])
def test_a_spawned_loop_collects_its_tasks_results_not_its_hidden_until(
    engine_kind: str, collect: str, want: Any
) -> None:
    # ``until`` runs in a hidden task of the loop's own: the user added two tasks.
    class SpawnsLoop(task.Task):
        default_provides = "got"

        def execute(self) -> Any:
            body = [Child("first", inject={"value": 1}), Child("second", inject={"value": 2})]
            loop = loop_flow.Flow("poll", *body, until=lambda: "yes", max_iterations=2)
            return dynamic.subflow(linear_flow.Flow("s").add(loop), collect=collect)

    engine = engines.load(linear_flow.Flow("f").add(SpawnsLoop("sp")), engine=engine_kind)
    engine.run()
    assert engine.storage.fetch("got") == want
    assert engine.storage.get_atom_state("poll^until") == st.SUCCESS


def test_a_spawned_flow_with_its_own_retry_retries_inside_the_sub_flow() -> None:
    attempts = {"flaky": 0}

    class Flaky(task.Task):
        def execute(self) -> str:
            attempts["flaky"] += 1
            if attempts["flaky"] < 3:
                raise ValueError("not yet")
            return "ok"

    class Spawns(task.Task):
        default_provides = "got"

        def execute(self) -> Any:
            return dynamic.subflow(
                linear_flow.Flow("s", retry=Times(5)).add(
                    Child(name="steady", inject={"value": 1}), Flaky("flaky")
                )
            )

    engine = engines.load(linear_flow.Flow("f").add(Spawns("sp")))
    engine.run()
    assert engine.storage.fetch("got") == [10, "ok"]
    assert attempts["flaky"] == 3
    # The retry's scope is the sub-flow: its atoms run again, the spawner does not.
    assert EVENTS == [("execute", "steady"), ("revert", "steady")] * 2 + [("execute", "steady")]


def test_a_decider_in_a_spawned_graph_flow_can_skip_a_child() -> None:
    class Spawns(task.Task):
        def execute(self) -> Any:
            a, b = Child(name="da", inject={"value": 1}), Child(name="db", inject={"value": 2})
            return dynamic.subflow(graph_flow.Flow("g").add(a, b).link(a, b, decider=lambda history: False))

    engine = engines.load(linear_flow.Flow("f").add(Spawns("sp")))
    engine.run()
    assert engine.storage.get_atom_state("db") == st.IGNORE
    assert engine.storage.get("sp") == [10, None]


def test_a_retry_cannot_spawn() -> None:
    class Spawning(Times):
        def execute(self, history: Any, *args: Any, **kwargs: Any) -> Any:
            return dynamic.subflow(linear_flow.Flow("s"))

    flow = linear_flow.Flow("f", retry=Spawning(2, name="r")).add(Child(name="c", inject={"value": 1}))
    with pytest.raises(exc.InvalidFlowItem, match="only tasks may spawn"):
        engines.load(flow).run()


# -- a spawn record from another process names only what is imported already ---------


def _side_effect_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    """A module on the path whose import (and nothing else) leaves a mark."""
    mark = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(mark)!r}).write_text('imported')\n"
        "from flowkit import task\n"
        "def make():\n"
        "    raise AssertionError('called')\n"
        "class Anything(task.Task):\n"
        "    def execute(self):\n"
        "        return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return mark


@pytest.mark.parametrize("kind", ["factory", "described atom"])
def test_a_workers_spawn_record_imports_no_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # Importing a module runs its top level: a record naming any installed
    # module ran that code in the engine before the spawnable check refused it.
    module = f"flowkit_test_forged_{kind.replace(' ', '_')}"
    mark = _side_effect_module(tmp_path, monkeypatch, module)
    if kind == "factory":
        record: dict[str, Any] = {
            dynamic.RECORD_KEY: 1,
            "factory": f"{module}.make",
            "args": [],
            "kwargs": {},
        }
    else:
        atom = {"class": f"{module}.Anything", "name": "a", "provides": None, "rebind": None, "inject": None}
        record = {
            dynamic.RECORD_KEY: 1,
            "factory": None,
            "flow": {"pattern": "linear", "name": "f", "items": [{"atom": atom}]},
        }
    with pytest.raises(
        exc.InvalidFormat, match=f"worker w sent a sub-flow, but .*{module}.*imported"
    ) as raised:
        dynamic.Subflow.from_record(record, sender="worker w")
    assert not mark.exists(), "the engine imported a module a worker named"
    assert module not in sys.modules
    if kind == "factory":
        assert "import the module defining it in the engine's process" in str(raised.value)


def test_a_spawn_record_from_this_process_still_imports_its_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A resume from the user's own persistence is trusted, as TaskFlow trusts flow factories.
    module = "flowkit_test_trusted_factory"
    mark = _side_effect_module(tmp_path, monkeypatch, module)
    with pytest.raises(AssertionError, match="called"):
        dynamic.Subflow.from_record(
            {dynamic.RECORD_KEY: 1, "factory": f"{module}.make", "args": [], "kwargs": {}}
        )
    assert mark.exists()
    monkeypatch.delitem(sys.modules, module)


_GONE = "flowkit_test_no_such_module_zz"


@pytest.mark.parametrize(
    ("record", "sender", "said"),
    [
        (
            {"factory": f"{_GONE}.make"},
            None,
            f"sub-flow factory '{_GONE}.make' cannot be imported (No module named '{_GONE}')",
        ),
        (
            {"factory": f"{_GONE}.make"},
            "worker w",
            f"worker w sent a sub-flow, but sub-flow factory '{_GONE}.make' is in no module this "
            "process has imported (the engine imports no module a worker names: import the module "
            "defining it in the engine's process, as the flow's own task modules are)",
        ),
        (
            {"factory": None, "flow": {"pattern": "spiral", "name": "f", "items": []}},
            None,
            "a stored sub-flow description cannot be rebuilt: KeyError: 'spiral'",
        ),
        (
            {"factory": None, "flow": {"pattern": "spiral", "name": "f", "items": []}},
            "worker w",
            "worker w sent a sub-flow, but its description cannot be built: KeyError: 'spiral'",
        ),
    ],
    ids=["factory", "a worker's factory", "description", "a worker's description"],
)
def test_a_spawn_record_that_cannot_be_rebuilt_says_why_once(
    record: dict[str, Any], sender: str | None, said: str
) -> None:
    # The import's words were said twice or three times: quoted in each message
    # of the chain and again as the cause's line ("... cannot be imported:
    # '....make' cannot be imported (...)\n  ImportError: '....make' cannot be ...").
    with pytest.raises(exc.InvalidFormat) as raised:
        dynamic.Subflow.from_record({dynamic.RECORD_KEY: 1, **record}, sender=sender)
    assert str(raised.value) == said
    assert raised.value.__cause__ is not None  # the chain is kept, for the traceback
