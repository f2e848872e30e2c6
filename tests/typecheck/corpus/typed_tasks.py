"""flowkit's own typed-task API and declarative loading, as its users write them.

Type-checked with ``mypy --strict`` by tests/typing/test_user_code.py and never
run: every statement here is a correct program that a type checker must accept.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, Literal, assert_type

from pydantic import BaseModel

from flowkit import deciders, declarative, engines, exceptions, task, typed
from flowkit.flow import Flow
from flowkit.patterns import graph_flow


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Location(BaseModel):
    address: str
    lat: float
    lon: float


class Geocode(task.Task):
    """A cacheable task whose result is a pydantic model."""

    cache = True
    cache_version = 2
    validate_types = True

    def __init__(self, name: str, address_from: str, provides: str) -> None:
        super().__init__(name, provides=provides, rebind={"address": address_from})

    def execute(self, address: str) -> Location:
        return Location(address=address, lat=0.0, lon=0.0)

    def cache_key(self, inputs: Mapping[str, Any]) -> str | None:
        return str(inputs["address"]).lower()


class Distance(task.Task):
    default_provides = "kilometres"

    def execute(self, origin: Location, destination: Location) -> float:
        return abs(origin.lat - destination.lat) * 111.0


class Classify(task.Task):
    default_provides = ("level", "label")

    def execute(self, kilometres: float, thresholds: Sequence[int] = (10, 100)) -> tuple[Level, str]:
        return (Level.HIGH, "far") if kilometres > thresholds[-1] else (Level.LOW, "near")

    def revert(self, result: tuple[Level, str] | None, **kwargs: Any) -> None:
        pass


class Pick(task.Task):
    def execute(self, mode: Literal["fast", "cheap"], level: Level | None = None) -> dict[str, int]:
        return {mode: 1 if level is Level.HIGH else 0}


@declarative.register("quote")
def quote(kilometres: float, rate: float = 0.5) -> float:
    """A plain function that specs may name as ``task: quote``."""
    return kilometres * rate


@declarative.register("classify")
class RegisteredClassify(Classify):
    """A registered class keeps its own type."""


def build() -> graph_flow.Flow:
    origin = Geocode("origin", "from_address", "origin")
    destination = Geocode("destination", "to_address", "destination")
    destination.cache = False
    destination.cache_strict = True
    destination.worker_topic = "geo"
    distance = Distance()
    distance.validate_types = None
    flow = graph_flow.Flow("quote").add(origin, destination, distance, RegisteredClassify())
    flow.add(task.FunctorTask(quote, provides="euros"))

    def only_far(history: dict[str, Any]) -> bool:
        return bool(history["classify"] == Level.HIGH)

    flow.link(distance, flow_item := Pick(inject={"mode": "fast"}), decider=only_far)
    flow.add(flow_item)
    flow.link(origin, distance, decider=lambda history: history["origin"] is not None)
    decide: deciders.Decider = only_far
    flow.link(destination, distance, decider=decide, decider_depth=deciders.Depth.ATOM)
    return flow


def run_typed() -> float:
    engine = engines.load(
        build(),
        store={"from_address": "a", "to_address": "b"},
        check_types=True,
        validate_types=False,
        cache="sqlite:////tmp/cache.db",
    )
    try:
        engine.run()
    except exceptions.TypeMismatch as mismatch:
        raise SystemExit(str(mismatch)) from None
    except exceptions.InvalidResult:
        raise
    contract = typed.contract_of(Distance())
    assert contract.typed
    assert typed.satisfies(int, float)
    euros: float = engine.storage.fetch("euros")
    return euros


def run_spec(path: str) -> dict[str, Any]:
    flow = declarative.load_flow(path, tasks=["myapp.tasks."])
    loaded = declarative.load_spec({"name": "quote", "tasks": {"q": {"task": "quote"}}})
    engines.load(loaded.flow, **loaded.engine_kwargs(max_workers=2)).run()
    try:
        return engines.run(flow, store={"kilometres": 3.0})
    except declarative.FlowSpecError as error:
        raise SystemExit(str(error)) from None
    finally:
        declarative.unregister("quote")
        known: list[str] = sorted(declarative.registered())
        assert known is not None


def what_the_checker_sees() -> None:
    """Registering keeps a class or function's own type; loading a spec gives a flow."""
    assert_type(quote(1.0, rate=2.0), float)
    assert_type(RegisteredClassify, type[RegisteredClassify])
    assert_type(declarative.register("q2", quote)(1.0), float)
    assert_type(declarative.load_flow({"name": "x", "tasks": {}}), Flow)
    assert_type(declarative.load_spec({"name": "x", "tasks": {}}).flow, Flow)
    assert_type(typed.contract_of(Distance()), typed.Contract)
