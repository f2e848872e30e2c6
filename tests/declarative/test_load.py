"""Loading specs: what they compile to, how they run, and every error naming file, task and key."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from flowkit import declarative, engines, exceptions
from flowkit.patterns import graph_flow
from tests.declarative import tasks
from tests.declarative.helpers import error_of

T = "tests.declarative.tasks"

PRICING = f"""\
name: pricing
tasks:
  fetch:  {{task: {T}:FetchPrices, inputs: {{symbol: AAPL}}}}
  fx:     {{task: {T}:FetchRate,   inputs: {{currency: EUR}}}}
  price:  {{task: {T}:Convert,     inputs: {{amount: "${{fetch.close}}", rate: "${{fx}}"}}}}
  notify: {{task: {T}:Notify,      inputs: {{text: "price is ${{price}}"}}, after: [fx]}}
"""


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    tasks.CALLS.clear()


def write(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def spec(**tasks_: Any) -> dict[str, Any]:
    return {"name": "f", "tasks": tasks_}


def test_the_issue_example_runs_from_yaml(tmp_path: Path) -> None:
    flow = declarative.load_flow(write(tmp_path, PRICING, "pricing.yaml"))
    assert isinstance(flow, graph_flow.Flow)
    assert flow.name == "pricing"
    engine = engines.load(flow)
    engine.run()
    results = engine.storage.fetch_all()
    assert results == {
        "fetch": {"close": 10.0, "open": 9.5},
        "fx": 2.0,
        "price": 20.0,
        "notify": "price is 20.0",
    }


def test_json_and_dict_specs_give_the_same_flow(tmp_path: Path) -> None:
    data = {
        "name": "pricing",
        "tasks": {
            "fx": {"task": f"{T}:FetchRate", "inputs": {"currency": "EUR"}},
            "price": {"task": f"{T}:Convert", "inputs": {"amount": 3.0, "rate": "${fx}"}},
        },
    }
    path = write(tmp_path, json.dumps(data), "pricing.json")
    for source in (data, path, str(path)):
        assert engines.run(declarative.load_flow(source)) == {"fx": 2.0, "price": 6.0}


def test_after_orders_without_passing_data() -> None:
    flow = declarative.load_flow(
        spec(
            first={"task": f"{T}:Recorded", "inputs": {"value": 1}},
            second={"task": f"{T}:Recorded", "inputs": {"value": 2}, "after": "first"},
        )
    )
    engines.run(flow, engine="parallel")
    assert [name for name, _ in tasks.CALLS] == ["first", "second"]


def test_registered_function_and_class() -> None:
    declarative.register("spec-test-add", tasks.add)
    declarative.register("spec-test-count", tasks.Count)
    try:
        flow = declarative.load_flow(
            spec(
                one={"task": "spec-test-count", "inputs": {"n": 1}},
                two={"task": "spec-test-add", "inputs": {"a": "${one}", "b": 2}},
            )
        )
        assert engines.run(flow) == {"one": 1, "two": 3}
    finally:
        declarative.unregister("spec-test-add")
        declarative.unregister("spec-test-count")


def test_register_refuses_a_second_target_under_one_name() -> None:
    declarative.register("spec-test-dup", tasks.add)
    try:
        declarative.register("spec-test-dup", tasks.add)  # the same one again is fine
        with pytest.raises(exceptions.Duplicate):
            declarative.register("spec-test-dup", tasks.Count)
    finally:
        declarative.unregister("spec-test-dup")


def test_register_as_decorator() -> None:
    @declarative.register("spec-test-deco")
    def double(x: int) -> int:
        return 2 * x

    try:
        assert engines.run(declarative.load_flow(spec(d={"task": "spec-test-deco", "inputs": {"x": 4}}))) == {
            "d": 8
        }
    finally:
        declarative.unregister("spec-test-deco")


def test_fields_of_mappings_sequences_and_objects() -> None:
    declarative.register("spec-test-obj", type("O", (), {"attr": {"k": [5, 6]}}))
    try:
        flow = declarative.load_flow(
            spec(
                obj={"task": "spec-test-obj"},
                use={"task": f"{T}:Untyped", "inputs": {"value": "${obj.attr.k.1}"}},
                nested={
                    "task": f"{T}:Untyped",
                    "inputs": {"value": {"list": ["${use}", "x ${use} $${literal}"]}},
                },
            )
        )
        results = engines.run(flow)
    finally:
        declarative.unregister("spec-test-obj")
    assert results["use"] == 6
    assert results["nested"] == {"list": [6, "x 6 ${literal}"]}


def test_pydantic_model_fields() -> None:
    pytest.importorskip("pydantic")
    flow = declarative.load_flow(
        spec(
            q={"task": f"{T}:quote"},
            p={"task": f"{T}:Convert", "inputs": {"amount": "${q.close}", "rate": 2}},
        )
    )
    assert engines.run(flow)["p"] == 8.0
    err = load_error(
        spec(
            q={"task": f"{T}:quote"}, p={"task": f"{T}:Convert", "inputs": {"amount": "${q.high}", "rate": 2}}
        )
    )
    assert (err.task, err.key) == ("p", "inputs.amount")
    assert "no field 'high'" in str(err)


@pytest.mark.parametrize("consumer_first", [False, True])
def test_references_are_checked_whatever_order_the_tasks_are_written_in(consumer_first: bool) -> None:
    # The checks read the provider's declared result: a consumer written above
    # its provider must be checked all the same, not waved through.
    provider = ("p", {"task": f"{T}:point"})
    for value, problem in (("${p.y}", "no field 'y'"), ("${p}", "wrong type")):
        consumer = ("q", {"task": f"{T}:Count", "inputs": {"n": value}})
        order = [consumer, provider] if consumer_first else [provider, consumer]
        err = load_error(spec(**dict(order)))
        assert (err.task, err.key) == ("q", "inputs.n")
        assert problem in str(err)


def test_inputs_a_task_takes_through_kwargs_are_checked_against_its_annotation() -> None:
    # ``total(**counts: int)``: each input is an int, whatever its name.
    good = spec(
        n={"task": f"{T}:Count", "inputs": {"n": 2}},
        t={"task": f"{T}:total", "inputs": {"a": 1, "b": "${n}"}},
    )
    assert engines.run(declarative.load_flow(good))["t"] == 3
    err = load_error(spec(t={"task": f"{T}:total", "inputs": {"a": 1, "b": "two"}}))
    assert (err.task, err.key) == ("t", "inputs.b")
    assert "wrong type: 'two' (str) is not int" in str(err)
    err = load_error(
        spec(
            n={"task": f"{T}:Notify", "inputs": {"text": "x"}},
            t={"task": f"{T}:total", "inputs": {"a": "${n}"}},
        )
    )
    assert (err.task, err.key) == ("t", "inputs.a")
    assert "wrong type" in str(err)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"task": f"{T}:Count", "inputs": {"n": True}}, "inputs.n"),
        ({"task": f"{T}:Convert", "inputs": {"amount": False, "rate": 2}}, "inputs.amount"),
        ({"task": f"{T}:Count", "inject": {"n": True}}, "inject.n"),
        ({"task": f"{T}:total", "inputs": {"a": 1, "b": True}}, "inputs.b"),
    ],
    ids=["int", "float", "inject", "kwargs"],
)
def test_a_true_or_false_constant_is_no_number(body: dict[str, Any], key: str) -> None:
    # A spec is YAML or JSON, where ``true`` is no number: ``copies: true`` for
    # an ``int`` is a slip, refused as ``flowkit run --store copies=true`` is,
    # though Python's bool is an int.
    err = load_error(spec(a=body))
    assert (err.task, err.key) == ("a", key)
    assert "wrong type: " in err.reason and "(bool) is not " in err.reason


def test_numbers_and_booleans_still_fit_their_own_types() -> None:
    # The other way round stays as it was: a whole number is a float, a bool is a bool.
    good = spec(
        c={"task": f"{T}:Convert", "inputs": {"amount": 3, "rate": 2}},
        s={"task": f"{T}:Step", "inputs": {"x": 1, "fail": False}},
    )
    assert engines.run(declarative.load_flow(good)) == {"c": 6, "s": 1}
    err = load_error(spec(s={"task": f"{T}:Step", "inputs": {"x": 1, "fail": 1}}))
    assert (err.task, err.key) == ("s", "inputs.fail")


def test_an_item_taken_apart_by_provides_is_checked_by_its_position() -> None:
    # ``provides: [low, high]`` of a ``-> tuple[int, str]``: ${high} feeding an
    # int loaded (the engine only warned when it ran), while ${key} of the wrong
    # type was refused at load, naming the key.
    parts = {"task": f"{T}:low_high", "provides": ["low", "high"]}
    err = load_error(spec(p=parts, c={"task": f"{T}:Count", "inputs": {"n": "${high}"}}))
    assert (err.task, err.key) == ("c", "inputs.n")
    assert "wrong type: ${high} is str, argument 'n' wants int" in str(err)
    good = spec(p=parts, c={"task": f"{T}:Count", "inputs": {"n": "${low}"}})
    assert engines.run(declarative.load_flow(good), check_types=True)["c"] == 1


def test_fields_of_a_tuple_or_mapping_result_are_checked_as_their_items_are() -> None:
    for provider, ref in ((f"{T}:low_high", "${p.1}"), (f"{T}:counts", "${p.rows}")):
        wrong = {"task": f"{T}:Count" if ref == "${p.1}" else f"{T}:Notify"}
        wrong["inputs"] = {"n" if ref == "${p.1}" else "text": ref}
        err = load_error(spec(p={"task": provider}, c=wrong))
        assert err.task == "c"
        assert f"wrong type: {ref} is " in str(err)
    fits = spec(p={"task": f"{T}:counts"}, c={"task": f"{T}:Count", "inputs": {"n": "${p.rows}"}})
    assert engines.run(declarative.load_flow(fits))["c"] == 3


@pytest.mark.parametrize(
    ("provider", "ref", "reason"),
    [
        # ``-> list[str]``: an item is a str, by index as ``provides: [a, b]`` reads it.
        ("labels", "${p.0}", "wrong type: ${p.0} is str, argument 'n' wants int"),
        ("span", "${p.1}", "wrong type: ${p.1} is str, argument 'n' wants int"),
        ("span", "${p.high}", "wrong type: ${p.high} is str, argument 'n' wants int"),
        ("low_high", "${p.2}", "${p.2}: task 'p' result has no field 2 (tuple[int, str] has 2 items)"),
        ("span", "${p.2}", f"${{p.2}}: task 'p' result has no field 2 ({T}.Span has 2 items)"),
    ],
)
def test_an_item_of_a_list_or_tuple_result_is_checked_by_its_index(
    provider: str, ref: str, reason: str
) -> None:
    # ${p.0} of a ``-> list[str]`` fed an int argument unchecked (only tuples and
    # mappings were typed), and ${p.2} of a two-item tuple failed only at run time.
    err = load_error(spec(p={"task": f"{T}:{provider}"}, c={"task": f"{T}:Count", "inputs": {"n": ref}}))
    assert (err.task, err.key, err.reason) == ("c", "inputs.n", reason)


def test_items_of_a_list_or_named_tuple_that_fit_their_argument_run() -> None:
    # A named tuple is a tuple: ${s.0} was refused as a field it has not.
    fits = spec(
        p={"task": f"{T}:labels"},
        s={"task": f"{T}:span"},
        c={"task": f"{T}:Count", "inputs": {"n": "${s.0}"}},
        d={"task": f"{T}:Count", "inputs": {"n": "${s.low}"}},
        t={"task": f"{T}:Notify", "inputs": {"text": "${p.1}"}},
    )
    results = engines.run(declarative.load_flow(fits), check_types=True)
    assert (results["c"], results["d"], results["t"]) == (1, 1, "second")


def test_provides_taking_a_list_apart_types_each_symbol_as_its_item() -> None:
    parts = {"task": f"{T}:labels", "provides": ["first", "second"]}
    err = load_error(spec(p=parts, c={"task": f"{T}:Count", "inputs": {"n": "${second}"}}))
    assert err.reason == "wrong type: ${second} is str, argument 'n' wants int"


def test_a_field_read_through_a_provided_symbol_names_the_task_providing_it() -> None:
    err = load_error(
        spec(p={"task": f"{T}:point", "provides": "pt"}, c={"task": f"{T}:Count", "inputs": {"n": "${pt.y}"}})
    )
    assert "${pt.y}: task 'p' result has no field 'y'" in str(err)


def test_a_spawners_result_feeds_a_typed_argument_as_in_a_flow_built_in_python() -> None:
    # A spawner is declared ``-> dynamic.Subflow``; what it provides is its
    # sub-flow's results, which that says nothing of. The engine does not check
    # its consumers (doc/dynamic.rst); the loader refused them as "wrong type".
    flow = declarative.load_flow(
        spec(
            s={"task": f"{T}:Spawns", "inputs": {"xs": [1, 2, 3]}},
            t={"task": f"{T}:total_of", "inputs": {"values": "${s}"}},
        )
    )
    assert engines.run(flow, check_types=True)["t"] == 6


def test_a_mapping_computed_for_a_model_argument_becomes_the_model() -> None:
    # A plain spec task's model argument is made from a mapping by the engine
    # (doc/typed.rst); a task whose inputs need the adapter (a field, text) got
    # the mapping itself, and failed on ``q.close``.
    pytest.importorskip("pydantic")
    field = spec(n={"task": f"{T}:nested_quote"}, d={"task": f"{T}:described", "inputs": {"q": "${n.quote}"}})
    assert engines.run(declarative.load_flow(field))["d"] == "Quote 5.0"
    # On a process pool too, where the adapter travels pickled.
    pooled = engines.run(declarative.load_flow(field), engine="parallel", executor="processes")
    assert pooled["d"] == "Quote 5.0"
    beside_text = spec(
        n={"task": f"{T}:nested_quote"},
        d={"task": f"{T}:described", "inputs": {"q": {"close": 6}, "label": " (${n.label})"}},
    )
    assert engines.run(declarative.load_flow(beside_text))["d"] == "Quote 6.0 (!)"
    wrong = spec(n={"task": f"{T}:nested_quote"}, d={"task": f"{T}:described", "inputs": {"q": "${n.label}"}})
    with pytest.raises(exceptions.InvalidResult, match="argument 'q'"):
        engines.run(declarative.load_flow(wrong))


def test_a_constant_for_a_type_no_spec_can_write_is_left_to_the_task(tmp_path: Path) -> None:
    # A spec is JSON or YAML: it has no Path, enum member, tuple or (in JSON) date.
    # Such an argument refused every constant ("'/data/in.csv' (str) is not
    # pathlib.Path"), so a spec could not give one at all, while a Python flow's
    # inject and ``flowkit run --store`` hand the text to the task, which makes
    # its own of it. The check now stands aside for them, as --store does.
    inputs = {"path": "/data/in.csv", "colour": "red", "size": [2, 3], "when": "2026-05-01"}
    text = json.dumps({"name": "f", "tasks": {"o": {"task": f"{T}:opened", "inputs": inputs}}})
    assert (
        engines.run(declarative.load_flow(write(tmp_path, text, "f.json")))["o"]
        == "in.csv RED (2, 3) 2026-05-01"
    )
    # Types a spec can write are still checked.
    err = load_error(spec(c={"task": f"{T}:Count", "inputs": {"n": "/data"}}))
    assert (err.task, err.key) == ("c", "inputs.n")


def test_a_missing_field_at_run_time_fails_the_atom_and_reverts() -> None:
    flow = declarative.load_flow(
        spec(
            a={"task": f"{T}:Recorded", "inputs": {"value": {"x": 1}}},
            b={"task": f"{T}:Untyped", "inputs": {"value": "${a.y}"}},
        )
    )
    with pytest.raises(exceptions.NotFound, match=r"task 'b', key 'inputs.value'.*no field 'y'") as err:
        engines.run(flow)
    assert ("a.revert", {"result": {"x": 1}}) in tasks.CALLS
    # Said once: the cause's words end the message, not again on a line below it.
    assert "\n" not in str(err.value) and str(err.value.__cause__) in str(err.value)


def test_parameters_come_from_the_store() -> None:
    flow = declarative.load_flow(
        {
            "parameters": ["currency"],
            "tasks": {"fx": {"task": f"{T}:FetchRate", "inputs": {"currency": "${currency}"}}},
        }
    )
    assert engines.run(flow, store={"currency": "USD"})["fx"] == 2.0
    assert tasks.CALLS == [("fx", {"currency": "USD"})]


def test_a_constant_named_like_a_symbol_another_argument_takes_goes_to_its_own_argument() -> None:
    # inject is keyed by symbol: the constant for `b` was handed to `a` too.
    from_task = spec(
        b={"task": f"{T}:add", "inputs": {"a": 1}}, s={"task": f"{T}:add", "inputs": {"a": 10, "b": "${b}"}}
    )
    assert engines.run(declarative.load_flow(from_task))["s"] == 11
    from_parameter = {
        "parameters": ["a"],
        "tasks": {"s": {"task": f"{T}:add", "inputs": {"a": 5, "b": "${a}"}}},
    }
    assert engines.run(declarative.load_flow(from_parameter), store={"a": 100})["s"] == 105


def test_constants_reach_a_function_taking_kwargs() -> None:
    flow = declarative.load_flow(
        spec(
            b={"task": f"{T}:add", "inputs": {"a": 2}},
            o={"task": f"{T}:options", "inputs": {"p": 1, "q": "${b}"}},
        )
    )
    assert engines.run(flow)["o"] == {"p": 1, "q": 2}


def test_cached_spec_tasks_reading_fields_do_not_share_entries() -> None:
    # Both run in the same adapter class with the same results read: their
    # cache keys were equal, and the second run gave `double` triple's result.
    calls: list[str] = []

    def double(x: float) -> float:
        calls.append("double")
        return 2 * x

    def triple(x: float) -> float:
        calls.append("triple")
        return 3 * x

    declarative.register("spec-test-double", double)
    declarative.register("spec-test-triple", triple)
    try:
        flow = spec(
            p={"task": f"{T}:FetchPrices", "inputs": {"symbol": "X"}},
            d={"task": "spec-test-double", "inputs": {"x": "${p.close}"}, "cache": True},
            t={"task": "spec-test-triple", "inputs": {"x": "${p.close}"}, "cache": True},
        )
        for _ in range(2):
            results = engines.run(declarative.load_flow(flow), cache="memory://spec-fields")
            assert (results["d"], results["t"]) == (20.0, 30.0)
        assert sorted(calls) == ["double", "triple"]  # the second run hit both
    finally:
        declarative.unregister("spec-test-double")
        declarative.unregister("spec-test-triple")


@pytest.mark.parametrize("value", [1.5, "${p.close}"], ids=["plain", "adapter"])
def test_the_run_options_of_a_task_class_hold_however_its_inputs_are_written(value: Any) -> None:
    # The adapter (for ${p.close}) dropped the class's timeout, key and cache.
    flow = declarative.load_flow(
        spec(
            p={"task": f"{T}:FetchPrices", "inputs": {"symbol": "X"}},
            q={"task": f"{T}:Limited", "inputs": {"value": value}},
        )
    )
    (atom,) = [a for a in flow if a.name == "q"]
    assert (atom.timeout, atom.concurrency_key) == (30.0, "db")
    with pytest.raises(exceptions.InvalidAtomOption, match="concurrency_key='db'"):
        engines.load(flow, concurrency_limits={"other": 1})
    for _ in range(2):
        engines.run(flow, concurrency_limits={"db": 1}, cache="memory://spec-run-options-" + str(value))
    assert [name for name, _ in tasks.CALLS].count("q") == 1  # cached: run once


@pytest.mark.parametrize("value", [10.0, "${p.close}"], ids=["plain", "adapter"])
def test_a_task_class_cache_key_holds_however_its_inputs_are_written(value: Any) -> None:
    # The adapter (for ${p.close}) ignored the class's cache_key: cached by input hash instead.
    flow = declarative.load_flow(
        spec(
            p={"task": f"{T}:FetchPrices", "inputs": {"symbol": "X"}},
            k={"task": f"{T}:Keyed", "inputs": {"value": value}},
        )
    )
    for _ in range(2):
        assert engines.run(flow, cache="memory://spec-cache-key-" + str(value))["k"] == 10.0
    # The hook saw the task's own arguments each time, and its None kept both calls uncached.
    assert [call for call in tasks.CALLS if call[0].startswith("k")] == [
        ("k.cache_key", {"value": 10.0}),
        ("k", {"value": 10.0}),
    ] * 2


def test_options_are_kept_on_the_atoms() -> None:
    flow = declarative.load_flow(
        spec(
            a={
                "task": f"{T}:Untyped",
                "inputs": {"value": 1},
                "timeout": 2.5,
                "cache": True,
                "topic": "t",
                "name": "A",
            },
        )
    )
    (atom,) = list(flow)
    assert (atom.name, atom.timeout, atom.cache, atom.worker_topic) == ("A", 2.5, True, "t")
    assert engines.run(flow) == {"a": 1}


def test_a_spec_timeout_times_the_task_out_and_the_flow_reverts() -> None:
    import concurrent.futures as cf

    from flowkit import states
    from tests.unit.engines import _timeout_tasks as tt
    from tests.unit.engines._manual_timer import ManualTimer

    tt.GATES.clear()
    flow = declarative.load_flow(
        spec(
            before={"task": "tests.unit.engines._timeout_tasks:Quick"},
            slow={"task": "tests.unit.engines._timeout_tasks:Blocking", "timeout": 5, "after": ["before"]},
        )
    )
    timer = ManualTimer()
    engine = engines.load(flow, clock=timer)
    try:
        with cf.ThreadPoolExecutor(1) as runner:
            running = runner.submit(engine.run)
            timer.wait_armed(1)
            timer.advance(5.0)
            with pytest.raises(exceptions.TaskTimeout) as caught:
                running.result(30)
    finally:
        tt.gate("slow").release.set()  # let the abandoned call end
    assert (caught.value.atom, caught.value.timeout) == ("slow", 5.0)
    assert engine.storage.get_flow_state() == states.REVERTED
    assert engine.storage.get_atom_state("before") == states.REVERTED


def test_retry_wraps_the_task_in_a_times_controller() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return "ok"

    declarative.register("spec-test-flaky", flaky)
    try:
        flow = declarative.load_flow(spec(f={"task": "spec-test-flaky", "retry": 3}))
        assert engines.run(flow)["f"] == "ok"
        assert len(attempts) == 3
    finally:
        declarative.unregister("spec-test-flaky")


# -- errors ------------------------------------------------------------------------------


def load_error(source: Any) -> exceptions.FlowSpecError:
    with pytest.raises(exceptions.FlowSpecError) as err:
        declarative.load_flow(source)
    assert isinstance(err.value, exceptions.TaskFlowException)
    return err.value


BAD_SPECS = {
    "unknown task": (
        {"a": {"task": "no.such.module:Thing"}},
        "a",
        "task",
        "cannot import module 'no.such.module'",
    ),
    "unknown registered name": (
        {"a": {"task": "nothing-registered-so"}},
        "a",
        "task",
        "no task is registered",
    ),
    "missing input": ({"a": {"task": f"{T}:Convert", "inputs": {"amount": 1.0}}}, "a", "inputs", "['rate']"),
    "unknown input": (
        {"a": {"task": f"{T}:Count", "inputs": {"n": 1, "m": 2}}},
        "a",
        "inputs.m",
        "no argument 'm'",
    ),
    "unknown reference": (
        {"a": {"task": f"{T}:Untyped", "inputs": {"value": "${nobody}"}}},
        "a",
        "inputs.value",
        "${nobody} names no task",
    ),
    "unknown field": (
        {
            "a": {"task": f"{T}:Count", "inputs": {"n": 1}},
            "b": {"task": f"{T}:Count", "inputs": {"n": "${a.x}"}},
        },
        "b",
        "inputs.n",
        None,
    ),
    "cycle": (
        {
            "a": {"task": f"{T}:Untyped", "inputs": {"value": "${b}"}},
            "b": {"task": f"{T}:Untyped", "inputs": {"value": "${a}"}},
        },
        "a",
        "inputs.value",
        "cycle",
    ),
    "cycle through after": (
        {
            "a": {"task": f"{T}:Untyped", "inputs": {"value": 1}, "after": ["b"]},
            "b": {"task": f"{T}:Untyped", "inputs": {"value": "${a}"}},
        },
        None,
        None,
        "cycle",
    ),
    "wrong constant type": (
        {"a": {"task": f"{T}:Count", "inputs": {"n": "three"}}},
        "a",
        "inputs.n",
        "wrong type",
    ),
    "wrong reference type": (
        {
            "a": {"task": f"{T}:Notify", "inputs": {"text": "x"}},
            "b": {"task": f"{T}:Count", "inputs": {"n": "${a}"}},
        },
        "b",
        "inputs.n",
        "wrong type",
    ),
    "text for a number": (
        {
            "a": {"task": f"{T}:Count", "inputs": {"n": 1}},
            "b": {"task": f"{T}:Count", "inputs": {"n": "x${a}"}},
        },
        "b",
        "inputs.n",
        "text is not int",
    ),
    "unknown task key": (
        {"a": {"task": f"{T}:Count", "inputs": {"n": 1}, "retries": 2}},
        "a",
        "retries",
        "unknown key",
    ),
    "bad retry": ({"a": {"task": f"{T}:Count", "inputs": {"n": 1}, "retry": -1}}, "a", "retry", "0 or more"),
    "bad timeout": (
        {"a": {"task": f"{T}:Count", "inputs": {"n": 1}, "timeout": "soon"}},
        "a",
        "timeout",
        "seconds",
    ),
    "bad cache": (
        {"a": {"task": f"{T}:Count", "inputs": {"n": 1}, "cache": "yes"}},
        "a",
        "cache",
        "true or false",
    ),
    "after names nobody": (
        {"a": {"task": f"{T}:Count", "inputs": {"n": 1}, "after": ["z"]}},
        "a",
        "after",
        "'z'",
    ),
    "bad reference syntax": (
        {"a": {"task": f"{T}:Untyped", "inputs": {"value": "${a b}"}}},
        "a",
        "inputs.value",
        "not a reference",
    ),
    # An unclosed ${ went to the task as text, without a word.
    "unclosed reference": (
        {"a": {"task": f"{T}:Untyped", "inputs": {"value": "price is ${price"}}},
        "a",
        "inputs.value",
        "'${' is not closed",
    ),
    "unclosed reference after a reference": (
        {
            "p": {"task": f"{T}:Untyped", "inputs": {"value": 1}},
            "a": {"task": f"{T}:Untyped", "inputs": {"value": ["${p} and ${p"]}},
        },
        "a",
        "inputs.value",
        "'${' is not closed",
    ),
    # It said "no argument of ... reads symbol 'value'", of the argument given twice.
    "inject for an argument inputs gives": (
        {"a": {"task": f"{T}:Untyped", "inputs": {"value": 1}, "inject": {"value": 2}}},
        "a",
        "inject.value",
        "argument 'value' is already given by 'inputs.value'",
    ),
    # A decider that cannot take history= failed with a TypeError at run time.
    "decider without history": (
        {
            "a": {"task": f"{T}:Count", "inputs": {"n": 1}},
            "b": {"task": f"{T}:Count", "inputs": {"n": 1}, "after": [{"item": "a", "decider": f"{T}:add"}]},
        },
        "b",
        "after",
        "decider 'tests.declarative.tasks:add' cannot be called as decider(history=...)",
    ),
    "misspelt key": (
        {"a": {"task": f"{T}:Count", "input": {"n": 1}}},
        "a",
        "input",
        "unknown key 'input' (did you mean 'inputs'?)",
    ),
    # These escaped as ValueError ("Empty module name") and TypeError (a relative import).
    "empty module": ({"a": {"task": ":Count"}}, "a", "task", "':Count' is not an import path"),
    "empty module before a dot": ({"a": {"task": ".Count"}}, "a", "task", "'.Count' is not an import path"),
    "relative module": (
        {"a": {"task": "..tasks:Count"}},
        "a",
        "task",
        "'..tasks:Count' is not an import path",
    ),
    "empty attribute": ({"a": {"task": f"{T}:"}}, "a", "task", "is not an import path"),
    "not callable": ({"a": {"task": f"{T}:NOT_CALLABLE"}}, "a", "task", "not a task class"),
    "fields on workers": (
        {
            "a": {"task": f"{T}:Count", "inputs": {"n": 1}},
            "b": {"task": f"{T}:Untyped", "inputs": {"value": "n=${a}"}, "topic": "w"},
        },
        "b",
        "topic",
        "constants and whole references",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_spec_errors_name_the_task_and_key(case: str) -> None:
    body, task, key, text = BAD_SPECS[case]
    err = load_error({"name": "f", "tasks": body})
    if task is not None:
        assert (err.task, err.key) == (task, key)
        assert f"task '{task}', key '{key}'" in str(err)
    if text is not None:
        assert text in str(err)


def test_a_sub_flow_without_flow_is_told_to_give_it(tmp_path: Path) -> None:
    # It was read as a task: "unknown key 'tasks'; a task has [...]".
    text = f"tasks:\n  s:\n    tasks:\n      a: {{task: {T}:Count, inputs: {{n: 1}}}}\n"
    err = load_error(write(tmp_path, text))
    assert str(err) == (
        f"{tmp_path / 'flow.yaml'}, line 3, sub-flow 's', key 'tasks': an item with 'tasks' is a sub-flow: "
        "give it 'flow' (one of ['graph', 'linear', 'unordered'])"
    )


def test_unknown_field_of_a_typed_dataclass_result() -> None:
    err = load_error(spec(p={"task": f"{T}:point"}, q={"task": f"{T}:Count", "inputs": {"n": "${p.y}"}}))
    assert (err.task, err.key) == ("q", "inputs.n")
    ok = declarative.load_flow(
        spec(p={"task": f"{T}:point"}, q={"task": f"{T}:Count", "inputs": {"n": "${p.x}"}})
    )
    assert engines.run(ok)["q"] == 1


def test_errors_in_a_file_name_the_file_and_line(tmp_path: Path) -> None:
    text = PRICING.replace("${fx}", "${fxx}")
    path = write(tmp_path, text, "pricing.yaml")
    err = load_error(path)
    assert err.source == str(path)
    assert err.line == 5
    assert str(err).startswith(f"{path}, line 5, task 'price', key 'inputs.rate': ")
    # What is wrong, without where: for callers that show the place their own way.
    assert str(err) == f"{path}, line 5, task 'price', key 'inputs.rate': {err.reason}"
    assert err.reason.startswith("${fxx} names no task or parameter")


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ntasks:\n  a: {task: [unclosed\n  b: 1\n")
    err = load_error(path)
    assert err.source == str(path)
    assert err.line is not None and err.line >= 3
    assert "invalid YAML" in str(err)


def test_json_syntax_error_has_its_line(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, '{"tasks":\n  {"a": }\n}', "f.json"))
    assert err.line == 2


#: What a spec says for a number JSON cannot hold, whatever its format.
NOT_FINITE = "is not a finite number"

JSON_SPEC = """\
{
  "tasks": {
    "a": {"task": "tests.declarative.tasks:Untyped",
          "inputs": {"value": [1, %s]}}
  }
}
"""


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1.5e999"])
def test_a_number_json_cannot_hold_is_refused_in_a_json_spec(tmp_path: Path, number: str) -> None:
    # Python's json reads them (1e400 as inf), though they are not JSON: the
    # spec loaded, and its constant reached the task (or failed where stored
    # or sent to a worker as JSON, once the flow ran).
    pytest.importorskip("yaml")  # for the line
    err = load_error(write(tmp_path, JSON_SPEC % number, "flow.json"))
    assert (err.source, err.line, err.task, err.key) == (str(tmp_path / "flow.json"), 4, "a", "inputs.value")
    assert NOT_FINITE in err.reason, str(err)


@pytest.mark.parametrize(
    ("text", "line", "task", "key"),
    [
        (
            "tasks:\n  a: {task: tests.declarative.tasks:Untyped, inputs: {value: .nan}}\n",
            2,
            "a",
            "inputs.value",
        ),
        (
            "tasks:\n  a:\n    task: tests.declarative.tasks:Untyped\n    inputs:\n      value: [-.inf]\n",
            5,
            "a",
            "inputs.value",
        ),
        (
            "tasks:\n  a: {task: tests.declarative.tasks:Untyped, inputs: {value: {k: 1.0e+400}}}\n",
            2,
            "a",
            "inputs.value",
        ),
        (
            "tasks:\n  a: {task: tests.declarative.tasks:Untyped, inject: {value: !!float nan}}\n",
            2,
            "a",
            "inject.value",
        ),
        ("tasks:\n  a: {task: tests.declarative.tasks:Untyped, timeout: .inf}\n", 2, "a", "timeout"),
        (
            "engine: {name: parallel, max_workers: .inf}\n"
            "tasks:\n  a: {task: tests.declarative.tasks:Untyped}\n",
            1,
            None,
            "engine.max_workers",
        ),
        (
            "tasks:\n  s:\n    flow: linear\n    retry: {controller: for_each, values: [1, .nan]}\n"
            "    tasks:\n      a: {task: tests.declarative.tasks:Untyped}\n",
            4,
            "s",
            "retry.values",
        ),
    ],
)
def test_a_number_json_cannot_hold_is_refused_in_a_yaml_spec(
    tmp_path: Path, text: str, line: int, task: str | None, key: str
) -> None:
    # YAML has .nan and .inf (and 1.0e+400 is inf), but a spec's values are
    # stored and sent as JSON, which has no such numbers.
    err = error_of(tmp_path, text)
    assert (err.line, err.task, err.key) == (line, task, key), str(err)
    assert NOT_FINITE in err.reason, str(err)


def test_a_number_json_cannot_hold_is_refused_in_a_dict_spec() -> None:
    err = load_error(spec(a={"task": f"{T}:Untyped", "inputs": {"value": {"x": [float("nan")]}}}))
    assert (err.task, err.key) == ("a", "inputs.value")
    assert err.reason == (
        "nan is not a finite number: NaN, Infinity and numbers past the float range (1e400) "
        "have no JSON form, in which a spec's values are stored"
    )
    fine = spec(a={"task": f"{T}:Untyped", "inputs": {"value": [1.5e308, -0.0, 1e-400]}})
    assert engines.run(declarative.load_flow(fine))["a"] == [1.5e308, -0.0, 0.0]


@pytest.mark.parametrize("name", ["flow.json", "flow.yaml"])
def test_a_number_too_long_to_read_is_a_spec_error_with_its_line(tmp_path: Path, name: str) -> None:
    # It escaped as Python's bare ValueError ("Exceeds the limit (4300 digits)
    # for integer string conversion"), naming no file.
    if name.endswith("yaml"):
        pytest.importorskip("yaml")
    digits = "9" * (sys.get_int_max_str_digits() + 1)
    err = load_error(write(tmp_path, JSON_SPEC % digits, name))
    assert (err.source, err.line) == (str(tmp_path / name), 4)
    assert f"a number of {len(digits)} digits" in err.reason, str(err)


def test_a_key_given_twice_is_refused_not_silently_dropped(tmp_path: Path) -> None:
    # A task pasted twice under one name: the parsers keep the last one only.
    twice = PRICING + "  fx:     {task: " + T + ":FetchRate,   inputs: {currency: USD}}\n"
    err = load_error(write(tmp_path, twice, "pricing.yaml"))
    assert (err.line, err.key) == (7, "fx")
    assert "duplicate key 'fx' (first on line 4)" in str(err)
    inline = write(tmp_path, f"tasks: {{a: {{task: '{T}:add', inputs: {{a: 1, a: 2}}}}}}\n", "inline.yaml")
    assert "duplicate key 'a'" in str(load_error(inline))
    one = {"task": f"{T}:add", "inputs": {"a": 1}}
    as_json = f'{{"tasks": {{"a": {json.dumps(one)}, "a": {json.dumps(one)}}}}}'
    assert "duplicate key 'a'" in str(load_error(write(tmp_path, as_json, "f.json")))


def test_a_key_given_twice_in_a_json_file_names_both_lines(tmp_path: Path) -> None:
    # Other errors of a JSON spec name their line; this one named only the key,
    # in a file where that key is the one written twice.
    pytest.importorskip("yaml")
    text = json.dumps({"name": "pricing", "tasks": {"fx": {"task": f"{T}:FetchRate"}}}, indent=2)
    text = text.replace('"tasks": {', '"tasks": {\n    "fx": {"task": "x:Y"},', 1)
    lines = text.splitlines()
    first, second = (i for i, line in enumerate(lines, 1) if '"fx"' in line)
    err = load_error(write(tmp_path, text, "pricing.json"))
    assert (err.line, err.key) == (second, "fx")
    assert str(err).startswith(f"{tmp_path / 'pricing.json'}, line {second}, key 'fx': ")
    assert f"duplicate key 'fx' (first on line {first})" in str(err)


def _alias_bomb(levels: int) -> str:
    """YAML of a few hundred bytes whose aliases expand to 9**levels strings."""
    lines = ['l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{','.join([f'*l{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\ntasks: {}\n"


@pytest.mark.timeout(60)
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    # Aliases share nodes; walking them as a tree took 9**9 steps: 'flowkit run' hung.
    err = load_error(write(tmp_path, _alias_bomb(9), "bomb.yaml"))
    assert "aliases" in str(err) and "bomb.yaml" in str(err)


@pytest.mark.parametrize("depth", [900, 100_000])
@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_a_value_nested_too_deeply_is_a_spec_error_naming_the_file(
    tmp_path: Path, depth: int, suffix: str
) -> None:
    # It was a bare RecursionError: "flowkit run" printed no file name.
    nested = "[" * depth + "]" * depth
    text = f'{{"tasks": {{"a": {{"task": "{T}:add", "inputs": {{"a": 1, "b": {nested}}}}}}}}}'
    path = write(tmp_path, text, f"deep.{suffix}")
    err = load_error(path)
    assert err.source == str(path) and "nested too deeply" in str(err)


def test_yaml_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = (
        "tasks:\n"
        "  one: &d {task: '" + T + ":add', inputs: {a: 1, b: 2}}\n"
        "  two: {<<: *d, inputs: {a: 3, b: 4}}\n"
        "  three: *d\n"
    )
    flow = declarative.load_flow(write(tmp_path, text, "anchors.yaml"))
    assert sorted(atom.name for atom in flow) == ["one", "three", "two"]


def test_a_yaml_spec_is_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It was composed (for the lines) and then parsed again by safe_load (for the
    # data): 5,000 tasks took 4.9 s to read instead of 2.
    yaml = pytest.importorskip("yaml")
    parsed: list[object] = []
    compose = yaml.compose  # by libyaml's parser or PyYAML's own: one parse either way

    def counted(text: str, Loader: object) -> object:  # noqa: N803 - PyYAML's name
        parsed.append(Loader)
        return compose(text, Loader=Loader)

    monkeypatch.setattr(yaml, "compose", counted)
    text = "tasks:\n  one: &d {task: '" + T + ":add', inputs: {a: 1, b: 2}}\n  two: *d\n"
    flow = declarative.load_flow(write(tmp_path, text))
    assert sorted(atom.name for atom in flow) == ["one", "two"]
    assert len(parsed) == 1
    # still refused before anything is built: a bad tag, with its line
    err = load_error(write(tmp_path, "tasks:\n  a: !!python/object:os.system {}\n"))
    assert err.line == 2 and "invalid YAML" in err.reason


def test_missing_file_and_bad_shapes(tmp_path: Path) -> None:
    assert "cannot read" in str(load_error(tmp_path / "nope.yaml"))
    assert "mapping" in str(load_error(write(tmp_path, "- a\n- b\n")))
    assert load_error({"tasks": {}}).key == "tasks"
    assert load_error({"tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}, "extra": 1}).key == "extra"
    assert "mapping" in str(load_error(42))


def test_flow_spec_error_is_a_value_error_under_the_root() -> None:
    assert issubclass(exceptions.FlowSpecError, exceptions.TaskFlowException)
    assert issubclass(exceptions.FlowSpecError, ValueError)


def test_is_spec_path() -> None:
    assert declarative.is_spec_path("a/pricing.yaml")
    assert declarative.is_spec_path("P.JSON")
    assert not declarative.is_spec_path("myapp.flows:make")


def test_a_task_named_like_another_tasks_retry_is_refused_at_load(tmp_path: Path) -> None:
    # `retry:` names its controller (and the flow around the task) `<name>-retry`:
    # a task of that name loaded, and the engine then refused the flow with a bare
    # Duplicate naming no file, line or task.
    text = (
        "tasks:\n"
        f"  a: {{task: {T}:Count, inputs: {{n: 1}}, retry: 2}}\n"
        f"  a-retry: {{task: {T}:Count, inputs: {{n: 2}}}}\n"
    )
    err = load_error(write(tmp_path, text))
    assert (err.line, err.task, err.key) == (3, "a-retry", "name")
    assert "the retry of task 'a'" in str(err)
    reverse = spec(b={"task": f"{T}:Count", "inputs": {"n": 1}, "name": "a-retry"})
    reverse["tasks"]["a"] = {"task": f"{T}:Count", "inputs": {"n": 1}, "retry": 2}
    err = load_error(reverse)
    assert (err.task, err.key) == ("a", "retry")
    assert "is also used by task 'b'" in str(err)


def test_a_spec_from_elsewhere_imports_only_the_tasks_allowed(tmp_path: Path) -> None:
    # A spec is data, but `task: os:system` made load_flow import a module (running
    # its code) and the run call it: a spec someone else wrote could do anything.
    # `tasks=` limits it, as a conductor's factories do, before any import.
    hostile = "tasks:\n  a:\n    task: tests.declarative.planted:Marker\n"
    err = load_error_with(write(tmp_path, hostile), tasks=[f"{T}."])
    assert (err.line, err.task, err.key) == (3, "a", "task")
    assert "'tests.declarative.planted:Marker' is not an allowed task" in str(err)
    assert "tests.declarative.planted" not in sys.modules
    shell = spec(a={"task": "os:system", "inputs": {"command": "true"}})
    assert "not an allowed task" in str(load_error_with(shell, tasks=[]))
    # Allowed by module prefix or exact name, in either spelling; registered names always.
    flow = declarative.load_flow(
        spec(
            a={"task": f"{T}:Count", "inputs": {"n": 1}},
            b={"task": f"{T}.FetchRate", "inputs": {"currency": "EUR"}},
        ),
        tasks=[f"{T}.Count", f"{T}.FetchRate"],
    )
    assert engines.run(flow)["a"] == 1
    assert "not an allowed task" in str(
        load_error_with(spec(a={"task": f"{T}:Count", "inputs": {"n": 1}}), tasks=[f"{T}.Coun"])
    )
    declarative.register("qa-count", tasks.Count)
    try:
        assert (
            engines.run(declarative.load_flow(spec(a={"task": "qa-count", "inputs": {"n": 3}}), tasks=[]))[
                "a"
            ]
            == 3
        )
    finally:
        declarative.unregister("qa-count")
    with pytest.raises(TypeError):
        declarative.load_flow(spec(a={"task": f"{T}:Count", "inputs": {"n": 1}}), tasks=f"{T}.")


def load_error_with(source: Any, **options: Any) -> exceptions.FlowSpecError:
    with pytest.raises(exceptions.FlowSpecError) as err:
        declarative.load_flow(source, **options)
    return err.value


def test_errors_in_a_json_file_name_the_line_too(tmp_path: Path) -> None:
    # Only JSON syntax errors had a line: a wrong reference in a JSON spec said
    # the file, task and key, and left the reader to search the file for them.
    pytest.importorskip("yaml")
    text = json.dumps(
        {
            "name": "pricing",
            "tasks": {
                "fetch": {"task": f"{T}:FetchPrices", "inputs": {"symbol": "AAPL"}},
                "fx": {"task": f"{T}:FetchRate", "inputs": {"currency": "EUR"}},
                "price": {"task": f"{T}:Convert", "inputs": {"amount": "${fetch.close}", "rate": "${fxx}"}},
            },
        },
        indent=2,
    )
    path = write(tmp_path, text, "pricing.json")
    err = load_error(path)
    wanted = next(i for i, line in enumerate(text.splitlines(), 1) if '"rate"' in line)
    assert (err.line, err.task, err.key) == (wanted, "price", "inputs.rate")
    assert str(err).startswith(f"{path}, line {wanted}, task 'price', key 'inputs.rate': ")


def test_references_do_not_reach_private_or_dunder_attributes() -> None:
    # `${r.__class__.__init__.__globals__.SECRET}` walked from a result into its
    # module's globals (and from there to os.environ...): a spec could copy any of
    # it into a task's inputs, a message sent out for instance.
    text = "${h.__class__.__init__.__globals__.SECRET}"
    flow = declarative.load_flow(
        spec(h={"task": f"{T}:holder"}, n={"task": f"{T}:Notify", "inputs": {"text": f"leak {text}"}})
    )
    with pytest.raises(exceptions.NotFound, match="'__class__'") as err:
        engines.run(flow)
    assert "task 'n', key 'inputs.text'" in str(err.value)
    assert not [c for c in tasks.CALLS if c[0] == "n"]
    private = declarative.load_flow(
        spec(h={"task": f"{T}:holder"}, u={"task": f"{T}:Untyped", "inputs": {"value": "${h._private}"}})
    )
    with pytest.raises(exceptions.NotFound, match="'_private'"):
        engines.run(private)
    # Public attributes, and mapping keys with underscores, are read as before.
    ok = spec(
        h={"task": f"{T}:holder"},
        k={"task": f"{T}:keyed"},
        u={"task": f"{T}:Untyped", "inputs": {"value": "${h.value}", "extra": "${k._id}"}},
    )
    assert engines.run(declarative.load_flow(ok))["u"] == 1
    assert ("u", {"value": 1}) in tasks.CALLS


def test_an_allowed_module_does_not_lend_what_it_imports() -> None:
    # The allow-list was checked on the name written: a module allowed by prefix
    # let a spec reach every module it imports (`allowed.mod:os.system`).
    err = load_error_with(spec(a={"task": f"{T}:dataclasses.replace", "inputs": {"obj": 1}}), tasks=[f"{T}."])
    assert (err.task, err.key) == ("a", "task")
    assert "is dataclasses.replace, which is not an allowed task" in str(err)
    # What the module itself defines is still allowed by its prefix.
    assert (
        engines.run(
            declarative.load_flow(spec(a={"task": f"{T}:Count", "inputs": {"n": 2}}), tasks=[f"{T}."])
        )["a"]
        == 2
    )


def test_a_task_key_with_a_dot_is_refused_since_a_reference_would_read_a_field(tmp_path: Path) -> None:
    # Keys and parameters are what ${...} names, but a key "a.b" loaded: ${a.b}
    # then read field b of task a, and task "a.b" could not be referenced at all.
    text = f"tasks:\n  a: {{task: {T}:keyed}}\n  a.b: {{task: {T}:Count, inputs: {{n: 1}}}}\n"
    err = load_error(write(tmp_path, text))
    assert (err.line, err.task) == (3, "a.b")
    assert "'a.b' cannot be named by a reference" in str(err)
    assert "cannot be named by a reference" in str(
        load_error({"tasks": {"": {"task": f"{T}:Count", "inputs": {"n": 1}}}})
    )
    err = load_error({"parameters": ["p.q"], "tasks": {"a": {"task": f"{T}:Count", "inputs": {"n": 1}}}})
    assert err.key == "parameters" and "'p.q'" in str(err)


@pytest.mark.parametrize(("written", "read"), [("yes", True), ("off", False), ("~", None), ("12", 12)])
def test_a_task_key_yaml_reads_as_another_type_is_refused_naming_its_line(
    tmp_path: Path, written: str, read: Any
) -> None:
    # YAML reads `yes:` as True: the task silently became "True" (and `${yes}` named no task).
    text = (
        f"tasks:\n  a: {{task: {T}:Count, inputs: {{n: 1}}}}\n"
        f"  {written}: {{task: {T}:Count, inputs: {{n: 2}}}}\n"
    )
    err = load_error(write(tmp_path, text))
    assert (err.line, err.task) == (3, str(read))
    assert f"task key {read!r} is a {type(read).__name__}, not a string" in err.reason
    assert "quote it" in err.reason
    # a sub-flow's key too, and a dict's
    nested = {"tasks": {"s": {"flow": "linear", "tasks": {read: {"task": f"{T}:Count", "inputs": {"n": 1}}}}}}
    assert load_error(nested).task == str(read)


def test_yaml_the_c_parser_refuses_is_reported_in_pyyamls_own_words(tmp_path: Path) -> None:
    # Parsed by libyaml when PyYAML has it; a refusal is parsed again by PyYAML's
    # Python parser, whose message (and line) errors have always quoted.
    yaml = pytest.importorskip("yaml")
    text = "tasks:\n  one: {task: x\n  two: [\n"
    with pytest.raises(yaml.YAMLError) as python_said:
        yaml.compose(text, Loader=yaml.SafeLoader)
    with pytest.raises(exceptions.FlowSpecError) as err:
        declarative.load_flow(write(tmp_path, text))
    mark = python_said.value.problem_mark  # type: ignore[attr-defined]
    assert f"invalid YAML: {python_said.value.problem}" in str(err.value)  # type: ignore[attr-defined]
    assert err.value.line == mark.line + 1


def test_a_large_yaml_spec_is_parsed_by_libyaml_when_pyyaml_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yaml = pytest.importorskip("yaml")
    if not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("PyYAML built without libyaml")
    used: list[object] = []
    compose = yaml.compose

    def counted(text: str, Loader: object) -> object:  # noqa: N803 - PyYAML's name
        used.append(Loader)
        return compose(text, Loader=Loader)

    monkeypatch.setattr(yaml, "compose", counted)
    declarative.load_flow(write(tmp_path, "tasks:\n  one: {task: '" + T + ":add', inputs: {a: 1, b: 2}}\n"))
    assert used == [yaml.CSafeLoader]


_BAD_SPECS: dict[str, tuple[dict[str, Any], list[str] | None]] = {
    "unknown task": ({"task": "flowkit_test_no_such_module_zz:T"}, None),
    "task not allowed": ({"task": "tests.declarative.tasks:FetchPrices"}, ["other.module:*"]),
    "task that cannot be made": ({"task": "flowkit.task:Task"}, None),
    "task with bindings that cannot be made": ({"task": "flowkit.task:Task", "rebind": {"x": "y"}}, None),
    "reference syntax": (
        {"task": "tests.declarative.tasks:FetchPrices", "inputs": {"symbol": "${open"}},
        None,
    ),
    "constant of the wrong type": (
        {"task": "tests.declarative.tasks:FetchPrices", "inputs": {"symbol": 5}},
        None,
    ),
}


@pytest.mark.parametrize("case", list(_BAD_SPECS))
def test_a_spec_error_says_the_error_it_comes_from_once(case: str) -> None:
    # The cause's words were the message's last words and then its own line below it.
    body, allowed = _BAD_SPECS[case]
    with pytest.raises(exceptions.FlowSpecError) as refused:
        declarative.load_flow({"name": "f", "tasks": {"a": body}}, tasks=allowed)
    error = refused.value
    words = str(error.__cause__).splitlines()[0]
    assert words in error.message
    assert str(error).count(words) == 1, str(error)
    assert str(error).startswith("task 'a', key '")
