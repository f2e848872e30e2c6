"""Bad flows and bad options are refused before any task runs."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any

import pytest

from flowkit import engines, exceptions, states, task
from flowkit.patterns import graph_flow, linear_flow, unordered_flow

from ._tasks import Recorder, Step


def test_a_missing_requirement_raises_missing_dependencies_before_anything_runs(
    engine_kind: str, rec: Recorder
) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), Step("needy", rec, requires=["nowhere"]))
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(exceptions.MissingDependencies) as info:
        engine.run()
    assert info.value.atom == "needy"
    assert info.value.missing == ["nowhere"]
    assert rec.executed() == []


def test_validate_reports_missing_dependencies_without_running(rec: Recorder) -> None:
    engine = engines.load(Step("needy", rec, requires=["x", "y"]), store={"y": 1})
    with pytest.raises(exceptions.MissingDependencies) as info:
        engine.validate()
    assert info.value.missing == ["x"]
    assert rec.executed() == []


def test_a_requirement_provided_only_by_a_later_task_is_missing(rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("early", rec, requires=["x"]), Step("late", rec, provides="x"))
    with pytest.raises(exceptions.MissingDependencies) as info:
        engines.run(flow)
    assert info.value.atom == "early"
    assert rec.executed() == []


def _two_unordered_providers(rec: Recorder) -> linear_flow.Flow:
    return linear_flow.Flow("f").add(
        unordered_flow.Flow("u").add(Step("p1", rec, provides="x"), Step("p2", rec, provides="x")),
        Step("consumer", rec, requires=["x"]),
    )


def test_of_two_unordered_providers_the_one_added_last_is_read_as_in_taskflow(
    engine_kind: str, rec: Recorder
) -> None:
    engines.run(_two_unordered_providers(rec), engine=engine_kind)
    assert rec.details("execute", "consumer") == [{"x": "p2"}]


def test_two_unordered_providers_of_a_required_symbol_are_ambiguous_when_strict(rec: Recorder) -> None:
    engine = engines.load(_two_unordered_providers(rec), strict=True)
    with pytest.raises(exceptions.AmbiguousDependency) as info:
        engine.run()
    assert info.value.symbol == "x"
    assert info.value.atom == "consumer"
    assert sorted(info.value.providers) == ["p1", "p2"]
    assert rec.executed() == []


def test_a_cycle_in_a_graph_flow_is_refused_before_anything_runs(rec: Recorder) -> None:
    a, b, c = Step("a", rec), Step("b", rec), Step("c", rec)
    flow = graph_flow.Flow("g").add(a, b, c).link(a, b).link(b, c)
    with pytest.raises(exceptions.DependencyFailure):
        flow.link(c, a)
    engines.run(flow)
    assert rec.executed() == ["a", "b", "c"]


def test_a_symbol_cycle_in_a_graph_flow_is_a_dependency_failure(rec: Recorder) -> None:
    flow = graph_flow.Flow("g")
    with pytest.raises(exceptions.DependencyFailure):
        flow.add(
            Step("a", rec, requires=["y"], provides="x"),
            Step("b", rec, requires=["x"], provides="y"),
        )
    assert rec.executed() == []


def test_duplicate_atom_names_are_refused_before_anything_runs(rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(
        Step("first", rec), Step("same", rec), linear_flow.Flow("inner").add(Step("same", rec))
    )
    engine = engines.load(flow)
    with pytest.raises(exceptions.Duplicate) as info:
        engine.run()
    assert list(info.value.names) == ["same"]
    assert rec.executed() == []


def test_something_that_is_not_an_atom_cannot_be_added_to_a_flow() -> None:
    with pytest.raises(exceptions.InvalidFlowItem):
        linear_flow.Flow("f").add(lambda: None)  # type: ignore[arg-type]


def test_something_that_is_not_a_flow_or_atom_cannot_be_run() -> None:
    with pytest.raises(exceptions.InvalidFlowItem):
        engines.run(object())


def test_an_unknown_engine_name_is_refused() -> None:
    with pytest.raises(exceptions.UnknownEngine) as info:
        engines.load(linear_flow.Flow("f"), engine="warp-drive")
    assert info.value.engine == "warp-drive"
    assert "serial" in info.value.known


def test_an_unknown_engine_option_is_refused_when_strict(engine_kind: str) -> None:
    with pytest.raises(exceptions.InvalidEngineOption) as info:
        engines.load(linear_flow.Flow("f"), engine=engine_kind, turbo=True, strict=True)
    assert info.value.option == "turbo"


def test_an_unknown_option_in_an_engine_uri_is_refused_when_strict() -> None:
    with pytest.raises(exceptions.InvalidEngineOption):
        engines.load(linear_flow.Flow("f"), engine="parallel://?turbo=yes&strict=true")


@pytest.mark.parametrize(("given", "strict"), [("yes", True), ("1", True), ("no", False), ("false", False)])
def test_strict_given_as_text_is_read_as_a_yes_no_word_by_load_and_compile(
    given: str, strict: bool, rec: Recorder
) -> None:
    # The same reading decides both of strict's checks: the unknown option at
    # load and the ambiguous providers at compile.
    if strict:
        with pytest.raises(exceptions.InvalidEngineOption):
            engines.load(linear_flow.Flow("f"), turbo=True, strict=given)
    else:
        engines.load(linear_flow.Flow("f"), turbo=True, strict=given)
    engine = engines.load(_two_unordered_providers(rec), strict=given)
    if strict:
        with pytest.raises(exceptions.AmbiguousDependency):
            engine.compile()
    else:
        engine.run()
        assert rec.details("execute", "consumer") == [{"x": "p2"}]


def test_a_strict_that_is_no_yes_no_word_is_false_and_named_once(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="flowkit.engines._engine"):
        engine = engines.load(_two_unordered_providers(rec), strict="maybe", turbo=True)
        engine.run()
    assert rec.details("execute", "consumer") == [{"x": "p2"}]
    said = [r.getMessage() for r in caplog.records if "not a yes/no word" in r.getMessage()]
    assert said == ["engine option strict='maybe' is not a yes/no word: false, as TaskFlow takes it"]


def test_an_unknown_engine_option_is_passed_through_as_in_taskflow(
    engine_kind: str, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    # Programs pass options of their own; a warning still catches a misspelt one.
    with caplog.at_level("WARNING", logger="flowkit.engines._engine"):
        engine = engines.load(Step("a", rec), engine=engine_kind, pass_1=1, max_worker=4)
    assert engine.options["pass_1"] == 1
    assert "['max_worker', 'pass_1']" in caplog.text
    engine.run()
    assert rec.executed() == ["a"]


def test_engine_options_can_be_given_in_a_uri(rec: Recorder) -> None:
    engine = engines.load(Step("a", rec), engine="parallel://?max_workers=3")
    engine.run()
    assert engine.options["max_workers"] == 3
    assert rec.executed() == ["a"]


def test_a_uri_option_with_a_fraction_is_a_float_as_in_code() -> None:
    # "default_timeout=2.5" stayed the text '2.5', which the option refuses.
    engine = engines.load(
        linear_flow.Flow("f"), engine="serial://?default_timeout=2.5&own=1e3&tag=v1.5&x=inf"
    )
    assert engine.options["default_timeout"] == 2.5
    assert engine.options["own"] == 1000.0
    assert engine.options["tag"] == "v1.5" and engine.options["x"] == "inf"


class Keyed(task.Task):
    """Provides its own name as ``<name>_out``."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, provides=f"{name}_out", **kwargs)

    def execute(self) -> str:
        return self.name


def test_concurrency_limits_in_a_uri_are_key_count_pairs() -> None:
    # The command line gives engine options as a URI only: a flow whose tasks
    # carry a concurrency_key could not run from it.
    flow = unordered_flow.Flow("f").add(Keyed("a", concurrency_key="db"), Keyed("b", concurrency_key="api"))
    engine = engines.load(flow, engine="parallel://?concurrency_limits=db:2, api:4&max_workers=3")
    assert engine.options["concurrency_limits"] == {"db": 2, "api": 4}
    engine.run()
    assert engine.storage.fetch_all() == {"a_out": "a", "b_out": "b"}


@pytest.mark.parametrize("text", ["db", "db:2,", ":2", "db:two", "db:2,api:1,db:3"], ids=repr)
def test_a_bad_concurrency_limits_in_a_uri_is_refused_naming_it(text: str) -> None:
    with pytest.raises(exceptions.InvalidEngineOption) as info:
        engines.load(linear_flow.Flow("f"), engine=f"parallel://?concurrency_limits={text}")
    assert info.value.option == "concurrency_limits"


@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
@pytest.mark.parametrize("workers", [0, -2, "four", 2.5, True], ids=repr)
def test_bad_max_workers_values_are_refused(kind: str, workers: Any) -> None:
    with pytest.raises(exceptions.InvalidEngineOption) as info:
        engines.load(linear_flow.Flow("f"), engine=kind, max_workers=workers)
    assert info.value.option == "max_workers"


@pytest.mark.parametrize("executor", ["fibers", 42, object()], ids=["unknown-name", "int", "object"])
def test_bad_executor_values_are_refused(executor: Any) -> None:
    with pytest.raises(exceptions.InvalidEngineOption) as info:
        engines.load(linear_flow.Flow("f"), engine="parallel", executor=executor)
    assert info.value.option == "executor"


@pytest.mark.parametrize(
    "options",
    [
        {"executor": None},
        {"max_workers": None},
        {"executor": "threads", "max_workers": 8},
        {"max_workers": 0},
    ],
    ids=repr,
)
def test_the_serial_engine_takes_and_ignores_executor_and_max_workers(
    options: dict[str, Any], rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    # As TaskFlow's does: Glance, Octavia and Karbor pass both whatever engine they run.
    with caplog.at_level("DEBUG", logger="flowkit.engines.serial"):
        engines.load(Step("a", rec), engine="serial", **options).run()
    assert rec.executed() == ["a"]
    assert "ignores option(s)" in caplog.text


def test_the_serial_engine_ignores_an_executor_object(rec: Recorder) -> None:
    with cf.ThreadPoolExecutor(1) as pool:
        engines.load(Step("a", rec), executor=pool).run()
    assert rec.executed() == ["a"]


@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
def test_max_workers_above_the_ceiling_is_refused_naming_it(kind: str) -> None:
    from flowkit.engines._engine import MAX_WORKERS

    with pytest.raises(exceptions.InvalidEngineOption) as info:
        engines.load(linear_flow.Flow("f"), engine=kind, max_workers=10**9)
    assert info.value.option == "max_workers"
    assert str(MAX_WORKERS) in str(info.value)


def test_max_workers_is_a_limit_threads_start_as_work_arrives(rec: Recorder) -> None:
    from flowkit.engines import _threads

    engines.run(
        unordered_flow.Flow("u").add(Step("a", rec), Step("b", rec)), engine="parallel", max_workers=1000
    )
    pools = [pool for pool in _threads._idle if pool.size == 1000]
    assert pools and all(pool.started <= 2 for pool in pools)
    assert sorted(rec.executed()) == ["a", "b"]


def test_a_namespace_selects_the_entry_point_group_engines_are_found_in() -> None:
    with pytest.raises(exceptions.UnknownEngine) as info:
        engines.load(linear_flow.Flow("f"), engine="serial", namespace="no.such.group")
    assert "serial" not in info.value.known
    # The default group holds the built-in kinds; it is not passed on as an option.
    engine = engines.load(linear_flow.Flow("f"), namespace=engines.ENTRY_POINT_GROUP)
    assert "namespace" not in engine.options


def test_a_tuple_store_key_of_a_persisted_run_is_refused_at_load_before_any_write() -> None:
    from flowkit.persistence.backends import impl_memory

    backend = impl_memory.MemoryBackend({})
    # It read "... is a tuple"; for an int key, "is a int".
    with pytest.raises(
        exceptions.InvalidFormat, match=r"store key \('a', 'b'\) of flow 'f' is of type tuple;"
    ):
        engines.load(linear_flow.Flow("f"), store={("a", "b"): 1}, backend=backend)  # type: ignore[dict-item]
    with backend.get_connection() as conn:
        assert list(conn.get_logbooks()) == []


def test_an_int_inject_key_of_a_persisted_run_is_refused_naming_its_type() -> None:
    from flowkit.persistence.backends import impl_memory

    backend = impl_memory.MemoryBackend({})
    flow = linear_flow.Flow("f").add(task.FunctorTask(lambda: None, name="t"))
    with pytest.raises(exceptions.InvalidFormat, match=r"inject= key 1 for atom 't' is of type int;"):
        engines.load(flow, inject={"t": {1: "x"}}, backend=backend)  # type: ignore[dict-item]


def test_an_unstorable_value_given_to_a_persisted_run_is_refused_naming_where_it_went() -> None:
    from flowkit.persistence.backends import impl_memory

    backend = impl_memory.MemoryBackend({})
    flow = linear_flow.Flow("f").add(task.FunctorTask(lambda: None, name="t"))
    with pytest.raises(
        exceptions.InvalidFormat, match=r"value injected as 'x' into atom 't' cannot be stored as JSON"
    ):
        engines.load(flow, inject={"t": {"x": object()}}, backend=backend)
    with pytest.raises(
        exceptions.InvalidFormat, match=r"value injected as 'x' into flow 'f' cannot be stored as JSON"
    ):
        engines.load(flow, store={"x": object()}, backend=backend)
    with backend.get_connection() as conn:
        assert list(conn.get_logbooks()) == []


def test_a_refused_option_of_a_persisted_run_leaves_nothing_in_the_backend() -> None:
    from flowkit.persistence.backends import impl_memory

    backend = impl_memory.MemoryBackend({})
    with pytest.raises(exceptions.InvalidEngineOption):
        engines.load(linear_flow.Flow("f"), engine="parallel", backend=backend, max_workers=-1)
    with pytest.raises(exceptions.NotFound):
        engines.load(linear_flow.Flow("f"), backend=backend, inject={"ghost": {"x": 1}})
    with backend.get_connection() as conn:
        assert list(conn.get_logbooks()) == []


def test_a_tuple_store_key_in_memory_is_kept_as_taskflow_keeps_it(rec: Recorder) -> None:
    engine = engines.load(Step("a", rec), store={("a", "b"): 1})  # type: ignore[dict-item]
    engine.run()
    assert engine.storage.fetch(("a", "b")) == 1  # type: ignore[arg-type]


def test_a_positional_only_execute_argument_is_refused_when_the_task_is_made() -> None:
    from flowkit import task

    class PositionalOnly(task.Task):
        def execute(self, size, /):  # type: ignore[no-untyped-def]
            return size

    with pytest.raises(ValueError, match=r"Positional-only.*'size'") as info:
        PositionalOnly("resize")
    assert "resize" in str(info.value)


def test_an_optional_positional_only_argument_is_left_to_its_default(rec: Recorder) -> None:
    from flowkit import task

    class Defaulted(task.Task):
        def execute(self, size=3, /):  # type: ignore[no-untyped-def]
            return size

    assert engines.run(Defaulted("d", provides="out"), store={"size": 9}) == {"size": 9, "out": 3}


def test_a_refused_run_leaves_the_flow_unstarted(rec: Recorder) -> None:
    engine = engines.load(Step("needy", rec, requires=["x"]))
    with pytest.raises(exceptions.MissingDependencies):
        engine.run()
    assert engine.storage.get_atom_state("needy") == states.PENDING
    engine.storage.inject({"x": 1})
    engine.run()
    assert rec.details("execute", "needy") == [{"x": 1}]


def test_engine_class_names_the_class_of_a_kind_or_uri_and_refuses_an_unknown_kind() -> None:
    from flowkit.engines.helpers import engine_class
    from flowkit.engines.parallel import ParallelEngine

    assert engine_class("parallel://?max_workers=2") is ParallelEngine
    with pytest.raises(exceptions.UnknownEngine, match="^Could not find engine 'paralel' \\(known engines: "):
        engine_class("paralel")
