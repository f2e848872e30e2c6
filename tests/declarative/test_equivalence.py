"""A spec and the graph flow one would write by hand run alike, on every engine.

Generated DAGs of tasks whose inputs are constants and whole references, with
``after:`` links and sometimes a failing task: the spec's flow and the
hand-built one give the same results, the same state sequence for every atom
and the same flow states, on the serial, parallel and asyncio engines, and on
the worker-based engine with a Python worker over a real Redis.

A second generator draws every other form a spec may take (sub-flows of the
three kinds, rebind/requires/inject/provides, the five retry controllers and
``retry: N`` on tasks, engine options, decided links, sub-flows named like
other items): each spec is run against the flow built by hand from it in the
same way, the retries' own state sequences included.

Failing flows are compared on the serial engine only: on a concurrent engine an
atom independent of the failing one may or may not have started when the
failure is seen, so even one flow run twice can differ there.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit import declarative, retry
from flowkit.patterns import graph_flow, linear_flow
from tests.declarative.helpers import run
from tests.declarative.tasks import Gated, Step

STEP = "tests.declarative.tasks:Step"


@st.composite
def dags(draw: st.DrawFn, may_fail: bool = True) -> dict[str, Any]:
    count = draw(st.integers(1, 7))
    tasks: dict[str, Any] = {}
    failing = draw(st.one_of(st.none(), st.integers(0, count - 1))) if may_fail else None
    for i in range(count):
        earlier = [f"t{j}" for j in range(i)]
        inputs: dict[str, Any] = {}
        for arg in ("x", "y", "z"):
            if arg != "x" and draw(st.booleans()):
                continue
            if earlier and draw(st.booleans()):
                inputs[arg] = "${" + draw(st.sampled_from(earlier)) + "}"
            else:
                inputs[arg] = draw(st.integers(-5, 5))
        if failing == i:
            inputs["fail"] = True
        body: dict[str, Any] = {"task": STEP, "inputs": inputs}
        if earlier and draw(st.booleans()):
            body["after"] = sorted(set(draw(st.lists(st.sampled_from(earlier), max_size=2))))
        tasks[f"t{i}"] = body
    return {"name": "generated", "tasks": tasks}


def by_hand(spec: dict[str, Any]) -> graph_flow.Flow:
    flow = graph_flow.Flow(spec["name"])
    made = {}
    for key, body in spec["tasks"].items():
        rebind = {a: v[2:-1] for a, v in body["inputs"].items() if isinstance(v, str)}
        inject = {a: v for a, v in body["inputs"].items() if not isinstance(v, str)}
        made[key] = Step(name=key, provides=key, rebind=rebind or None, inject=inject or None)
    flow.add(*made.values())
    for key, body in spec["tasks"].items():
        for before in body.get("after", []):
            flow.link(made[before], made[key])
    return flow


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=dags())
def test_spec_and_hand_built_flow_run_alike_on_the_serial_engine(spec: dict[str, Any]) -> None:
    assert run(declarative.load_flow(spec), "serial") == run(by_hand(spec), "serial")


@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=dags(may_fail=False))
def test_spec_and_hand_built_flow_run_alike_on_concurrent_engines(kind: str, spec: dict[str, Any]) -> None:
    assert run(declarative.load_flow(spec), kind) == run(by_hand(spec), kind)


@pytest.fixture(scope="module")
def worker_topic(redis_url: str) -> Any:
    """A Python worker in this process serving the generated flows' task, on a topic of its own."""
    pytest.importorskip("redis")
    import uuid

    from flowkit.engines.worker_based.worker import Worker

    topic = f"spec-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        topic=topic, tasks=[STEP], url=redis_url, heartbeat=0.2, visibility_timeout=2.0, grace=1.0
    )
    worker.start()
    try:
        yield redis_url, topic
    finally:
        worker.stop(grace=0.5)
        assert worker.join(10)


@pytest.mark.timeout(300)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(spec=dags(may_fail=False))
def test_spec_and_hand_built_flow_run_alike_on_the_worker_based_engine(
    worker_topic: tuple[str, str], spec: dict[str, Any]
) -> None:
    url, topic = worker_topic
    options = {"url": url, "topics": [topic], "transition_timeout": 30.0}
    assert run(declarative.load_flow(spec), "worker-based", **options) == run(
        by_hand(spec), "worker-based", **options
    )


# Specs using every form a spec may take: sub-flows of the three kinds to depth
# two, bindings (rebind as a list or a mapping, requires, inject, provides), the
# five retry controllers on flows and ``retry: N`` on tasks, engine options,
# and decided links. A task only reads a task written before it that it may
# read (never a sibling item of an unordered flow), so every spec drawn is
# valid; the flow built by hand from it is what a Python author would write.

GATED = "tests.declarative.tasks:Gated"
HERE = "tests.declarative.test_equivalence"
#: The parameter argument ``z`` may read, and the one a parameterized_for_each retry tries.
EXTRA, VALUES = "z", "vals"
DEPTHS = (None, "all", "flow", "neighbors", "atom")


def even(history: dict[str, Any]) -> bool:
    """The decider of generated links: go on only when every decided predecessor gave an even number."""
    return all(isinstance(value, int) and value % 2 == 0 for value in history.values())


class _Draft:
    """What the drawing of one spec knows so far: the tasks written, where, and the symbols."""

    def __init__(self, draw: st.DrawFn, may_fail: bool, parameters: list[str]) -> None:
        self.draw = draw
        self.may_fail = may_fail
        self.parameters = parameters
        self.count = 0
        self.order: list[str] = []  # task keys, in the spec's order
        self.chain: dict[str, tuple[str | None, ...]] = {}  # task key -> its flows, outermost first
        self.kinds: dict[str | None, str] = {}
        self.symbol: dict[str, str] = {}  # task key -> the symbol of its result
        self.retry_symbol: dict[str | None, str] = {}  # flow -> the symbol its retry provides

    def fresh(self) -> int:
        self.count += 1
        return self.count

    def readable(self, chain: tuple[str | None, ...], provider: str) -> bool:
        """Whether a task in ``chain`` may read ``provider``: not across the items of an unordered flow."""
        theirs = self.chain[provider]
        common = 0
        while common < min(len(chain), len(theirs)) and chain[common] == theirs[common]:
            common += 1
        return self.kinds[chain[common - 1]] != "unordered"


def _retry(d: _Draft, flow: str | None, flow_name: str, kind: str) -> Any:
    """A ``retry:`` for a flow, or None; records the symbol it provides."""
    draw = d.draw
    controller = draw(
        st.sampled_from(
            [
                None,
                None,
                None,
                "number",
                "times",
                "for_each",
                "parameterized_for_each",
                "always_revert",
                "always_revert_all",
            ]
        )
    )
    if controller is None:
        return None
    # A flow named like another item has a retry named apart from its default (<flow name>_retry).
    named_apart = flow_name != (flow or "generated")
    if controller == "number":
        if not named_apart:
            return draw(st.integers(1, 3))
        controller = "times"
    if controller.startswith("always") and not named_apart and draw(st.booleans()):
        return controller
    retry: dict[str, Any] = {"controller": controller}
    if controller == "times":
        retry["attempts"] = draw(st.integers(1, 3))
    elif controller == "for_each":
        retry["values"] = draw(st.lists(st.booleans(), min_size=1, max_size=3))
    elif controller == "parameterized_for_each":
        retry["values"] = "${" + VALUES + "}"
        if VALUES not in d.parameters:
            d.parameters.append(VALUES)
    if not controller.startswith("always"):
        if draw(st.booleans()):
            retry["revert_all"] = draw(st.booleans())
        if d.may_fail and draw(st.integers(0, 3)):
            retry["provides"] = symbol = f"r{d.fresh()}"
            d.retry_symbol[flow] = symbol
    if named_apart or draw(st.booleans()):
        retry["name"] = f"R{d.fresh()}"
    return retry


def _binding(d: _Draft, body: dict[str, Any], arg: str, symbol: str) -> None:
    """Bind ``arg`` to ``symbol`` in one of the ways a spec can say it."""
    how = d.draw(st.sampled_from(["inputs", "rebind", "list"] + (["requires"] if arg == symbol else [])))
    if how == "list" and arg == "x" and "rebind" not in body:
        body["rebind"] = [symbol]  # by position: x is Gated's only required argument
    elif how == "requires":
        body.setdefault("requires", []).append(symbol)
    elif how in ("rebind", "list") and not isinstance(body.get("rebind", {}), list):
        body.setdefault("rebind", {})[arg] = symbol
    else:
        body.setdefault("inputs", {})[arg] = "${" + symbol + "}"


def _constant(d: _Draft, body: dict[str, Any], arg: str, value: Any) -> None:
    where = "inject" if d.draw(st.booleans()) else "inputs"
    body.setdefault(where, {})[arg] = value


def _task(
    d: _Draft, chain: tuple[str | None, ...], siblings: list[str], kind: str
) -> tuple[str, dict[str, Any]]:
    draw = d.draw
    key = f"t{d.fresh()}"
    body: dict[str, Any] = {"task": GATED}
    readable = [p for p in d.order if d.readable(chain, p)]
    for arg in ("x", "y"):
        if arg == "y" and draw(st.booleans()):
            continue
        if readable and draw(st.booleans()):
            _binding(d, body, arg, d.symbol[draw(st.sampled_from(readable))])
        else:
            _constant(d, body, arg, draw(st.integers(-3, 5)))
    choice = draw(st.sampled_from(["none", "constant", "parameter"]))
    if choice == "constant":
        _constant(d, body, EXTRA, draw(st.integers(-3, 5)))
    elif choice == "parameter":
        if EXTRA not in d.parameters:
            d.parameters.append(EXTRA)
        _binding(d, body, EXTRA, EXTRA)
    if d.may_fail:
        tried = [d.retry_symbol[f] for f in chain if f in d.retry_symbol]
        if tried and draw(st.booleans()):
            _binding(d, body, "fail", draw(st.sampled_from(tried)))
        elif draw(st.integers(0, 5)) == 0:
            _constant(d, body, "fail", draw(st.booleans()))
    if draw(st.integers(0, 3)) == 0:
        body["provides"] = f"s{d.fresh()}"
    if draw(st.integers(0, 3)) == 0:
        body["name"] = f"n{d.fresh()}"
    if draw(st.integers(0, 4)) == 0:
        body["retry"] = draw(st.integers(1, 3))
    _after(d, body, siblings, kind)
    d.order.append(key)
    d.chain[key] = chain
    d.symbol[key] = body.get("provides", key)
    return key, body


def _after(d: _Draft, body: dict[str, Any], siblings: list[str], kind: str) -> None:
    """``after:`` links to items written before, some decided, in a graph flow only."""
    if kind != "graph" or not siblings or not d.draw(st.booleans()):
        return
    links: list[Any] = []
    for item in sorted(set(d.draw(st.lists(st.sampled_from(siblings), min_size=1, max_size=2)))):
        if d.draw(st.booleans()):
            links.append(item)
            continue
        link: dict[str, Any] = {"item": item, "decider": f"{HERE}:even"}
        depth = d.draw(st.sampled_from(DEPTHS))
        if depth is not None:
            link["depth"] = depth
        links.append(link)
    body["after"] = links


def _items(d: _Draft, chain: tuple[str | None, ...], kind: str) -> dict[str, Any]:
    """The items of one flow (chain ends with it): tasks, and sub-flows while shallow enough."""
    items: dict[str, Any] = {}
    for _ in range(d.draw(st.integers(1, 3))):
        if len(chain) < 3 and d.draw(st.integers(0, 2)) == 0:
            key = f"f{d.fresh()}"
            sub_kind = d.draw(st.sampled_from(list(declarative.FLOW_KINDS)))
            # Names need not be unique, as in TaskFlow: a sub-flow may be named like a task or a flow.
            name = d.draw(st.sampled_from([None, f"flow{d.count}", *d.order[-1:], "generated"]))
            body: dict[str, Any] = {"flow": sub_kind}
            if name is not None:
                body["name"] = name
            d.kinds[key] = sub_kind
            retry = _retry(d, key, name or key, sub_kind)
            if retry is not None:
                body["retry"] = retry
            _after(d, body, list(items), kind)
            body["tasks"] = _items(d, (*chain, key), sub_kind)
            items[key] = body
        else:
            key, body = _task(d, chain, list(items), kind)
            items[key] = body
    return items


@st.composite
def specs(draw: st.DrawFn, may_fail: bool = True) -> dict[str, Any]:
    """A valid spec using sub-flows, bindings, retries, engine options and decided links."""
    d = _Draft(draw, may_fail, [])
    kind = draw(st.sampled_from(list(declarative.FLOW_KINDS)))
    d.kinds[None] = kind
    spec: dict[str, Any] = {"name": "generated"}
    if kind != "graph" or draw(st.booleans()):
        spec["flow"] = kind
    retry = _retry(d, None, "generated", kind)
    if retry is not None:
        spec["retry"] = retry
    spec["tasks"] = _items(d, (None,), kind)
    if d.parameters:
        spec["parameters"] = sorted(d.parameters)
    if may_fail:
        engine = draw(st.sampled_from([None, "serial", "options"]))
        if engine == "serial":
            spec["engine"] = "serial"
        elif engine == "options":
            spec["engine"] = {
                "name": "serial",
                **{o: draw(st.booleans()) for o in ("never_resolve", "defer_reverts") if draw(st.booleans())},
            }
    return spec


def _hand_retry(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, int):
        return retry.Times(value)
    if isinstance(value, str):
        return retry.AlwaysRevert() if value == "always_revert" else retry.AlwaysRevertAll()
    options = {k: v for k, v in value.items() if k in ("name", "provides", "revert_all")}
    controller = value["controller"]
    if controller == "times":
        return retry.Times(value.get("attempts", 1), **options)
    if controller == "for_each":
        return retry.ForEach(value["values"], **options)
    if controller == "parameterized_for_each":
        return retry.ParameterizedForEach(rebind={"values": VALUES}, **options)
    return (retry.AlwaysRevert if controller == "always_revert" else retry.AlwaysRevertAll)(**options)


def _hand_task(key: str, body: dict[str, Any]) -> Any:
    name = body.get("name", key)
    rebind: dict[str, str] = {}
    inject: dict[str, Any] = dict(body.get("inject", {}))
    for arg, value in body.get("inputs", {}).items():
        if isinstance(value, str):
            rebind[arg] = value[2:-1]
        else:
            inject[arg] = value
    bound = body.get("rebind", {})
    rebind.update({"x": bound[0]} if isinstance(bound, list) else bound)
    rebind.update({symbol: symbol for symbol in body.get("requires", [])})
    atom = Gated(name=name, provides=body.get("provides", key), rebind=rebind or None, inject=inject or None)
    if "retry" not in body:
        return atom
    return linear_flow.Flow(f"{name}-retry", retry=retry.Times(body["retry"], name=f"{name}-retry")).add(atom)


def _hand_flow(name: str, kind: str, value: Any, items: dict[str, Any]) -> Any:
    flow = declarative.FLOW_KINDS[kind](name, retry=_hand_retry(value))
    made: dict[str, Any] = {}
    for key, body in items.items():
        if "flow" in body:
            made[key] = _hand_flow(body.get("name", key), body["flow"], body.get("retry"), body["tasks"])
        else:
            made[key] = _hand_task(key, body)
    flow.add(*made.values())
    for key, body in items.items():
        for link in body.get("after", []):
            if isinstance(link, str):
                flow.link(made[link], made[key])
            else:
                flow.link(made[link["item"]], made[key], decider=even, decider_depth=link.get("depth"))
    return flow


def by_hand_nested(spec: dict[str, Any]) -> Any:
    """The flow a Python author would write for a spec drawn by :func:`specs`."""
    return _hand_flow(spec["name"], spec.get("flow", "graph"), spec.get("retry"), spec["tasks"])


def engine_of(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The engine kind and options a drawn spec's ``engine:`` names, read as its author meant them."""
    engine = spec.get("engine")
    if isinstance(engine, dict):
        options = dict(engine)
        return options.pop("name"), options
    return engine or "serial", {}


STORE = {EXTRA: 7, VALUES: [True, False]}
#: Every spec drawn loads, so the shipped JSON Schema must take it too.
SCHEMA = jsonschema.Draft202012Validator(declarative.schema())


def shape(item: Any) -> Any:
    """What a flow is made of, for comparing two: kinds, names, retries, atoms' symbols, links.

    Flow names and kinds do not show in a run (only atoms report states), so the
    runs alone would not tell a sub-flow built with the wrong name or pattern.
    """
    if not hasattr(item, "iter_nodes"):
        return (type(item).__name__, item.name, sorted(item.provides), sorted(item.requires))
    retry_ = item.retry
    children = [shape(child) for child, _meta in item.iter_nodes()]
    links = sorted(
        (u.name, v.name, getattr(meta.get("decider"), "__name__", ""), str(meta.get("decider_depth")))
        for u, v, meta in item.iter_links()
    )
    if not isinstance(item, linear_flow.Flow):
        children.sort(key=repr)
    return (
        type(item).__module__,
        item.name,
        None if retry_ is None else (type(retry_).__name__, retry_.name, sorted(retry_.provides)),
        children,
        links,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs())
def test_every_spec_form_runs_as_the_flow_built_in_python_on_the_serial_engine(spec: dict[str, Any]) -> None:
    SCHEMA.validate(spec)
    loaded = declarative.load_spec(spec)
    kwargs = loaded.engine_kwargs()
    store = {k: v for k, v in STORE.items() if k in spec.get("parameters", [])}
    kind, options = engine_of(spec)
    assert kwargs == {"engine": kind, **options}
    assert shape(loaded.flow) == shape(by_hand_nested(spec))
    assert run(loaded.flow, kwargs.pop("engine"), store=store, **kwargs) == run(
        by_hand_nested(spec), kind, store=store, **options
    )


@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(may_fail=False))
def test_every_spec_form_runs_as_the_flow_built_in_python_on_concurrent_engines(
    kind: str, spec: dict[str, Any]
) -> None:
    store = {k: v for k, v in STORE.items() if k in spec.get("parameters", [])}
    assert run(declarative.load_flow(spec), kind, store=store) == run(by_hand_nested(spec), kind, store=store)
