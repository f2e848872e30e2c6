"""Tasks that spec tests name by import path (``tests.declarative.tasks:Name``)."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from pathlib import Path
from typing import Any, NamedTuple

from flowkit import dynamic, task
from flowkit.patterns import unordered_flow

#: Every execute call, in order: (task name, kwargs). Tests clear it.
CALLS: list[tuple[str, dict[str, Any]]] = []


class FetchPrices(task.Task):
    def execute(self, symbol: str) -> dict[str, float]:
        CALLS.append((self.name, {"symbol": symbol}))
        return {"close": 10.0, "open": 9.5}


class FetchRate(task.Task):
    def execute(self, currency: str) -> float:
        CALLS.append((self.name, {"currency": currency}))
        return 2.0


class Convert(task.Task):
    def execute(self, amount: float, rate: float) -> float:
        CALLS.append((self.name, {"amount": amount, "rate": rate}))
        return amount * rate


class Notify(task.Task):
    def execute(self, text: str) -> str:
        CALLS.append((self.name, {"text": text}))
        return text


class Count(task.Task):
    def execute(self, n: int) -> int:
        return n


class Untyped(task.Task):
    def execute(self, value, extra=None):  # type: ignore[no-untyped-def]
        CALLS.append((self.name, {"value": value}))
        return value


class Boom(task.Task):
    def execute(self, value: Any = None) -> None:
        raise RuntimeError("boom")


class Recorded(task.Task):
    """Records executes and reverts, for revert tests."""

    def execute(self, value: Any = None) -> Any:
        CALLS.append((self.name, {"value": value}))
        return value

    def revert(self, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        CALLS.append((self.name + ".revert", {"result": result}))


class Limited(task.Task):
    """A task whose class sets the run options the engine reads."""

    timeout = 30.0
    concurrency_key = "db"
    cache = True

    def execute(self, value: float) -> float:
        CALLS.append((self.name, {"value": value}))
        return value


class Keyed(task.Task):
    """A cached task whose own ``cache_key`` decides: it records what it saw and refuses to cache."""

    cache = True

    def cache_key(self, inputs: dict[str, Any]) -> str | None:
        CALLS.append((self.name + ".cache_key", dict(inputs)))
        return None

    def execute(self, value: float) -> float:
        CALLS.append((self.name, {"value": value}))
        return value


def add(a: int, b: int = 0) -> int:
    return a + b


def options(**given: Any) -> dict[str, Any]:
    """Returns what it was given (a function taking only ``**kwargs``)."""
    return given


def total(**counts: int) -> int:
    """Sums what it is given (a fan-in: every input is an ``int`` by its ``**counts``)."""
    return sum(counts.values())


NOT_CALLABLE = 42


@dataclasses.dataclass
class Point:
    x: int


def point() -> Point:
    return Point(1)


try:
    import pydantic
except ImportError:  # the typed extra is optional; tests that need it skip
    pydantic = None  # type: ignore[assignment]

if pydantic is not None:

    class Quote(pydantic.BaseModel):
        close: float

    def quote() -> Quote:
        return Quote(close=4.0)

    def described(q: Quote, label: str = "") -> str:
        """Says what it was given: a ``Quote`` (made from a mapping where one arrived), or not."""
        return f"{type(q).__name__} {q.close}{label}"


def nested_quote() -> dict[str, Any]:
    """A quote as JSON inside a bigger result, read as ``${n.quote}``."""
    return {"quote": {"close": 5.0}, "label": "!"}


class Step(task.Task):
    """A task for generated flows: adds its inputs, fails when asked, records reverts."""

    def execute(self, x: int, y: int = 0, z: int = 0, fail: bool = False) -> int:
        if fail:
            raise RuntimeError(f"{self.name} fails")
        return x + y + z

    def revert(self, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        CALLS.append((self.name + ".revert", {"result": result}))


#: What a hostile spec would like to read through a result's attributes.
SECRET = "s3cret-token"


class Holder:
    """A plain object with an ``__init__`` of this module (whose globals hold SECRET)."""

    def __init__(self) -> None:
        self.value = 1
        self._private = "hidden"


def holder():  # type: ignore[no-untyped-def]  # untyped: fields are not checked at load
    return Holder()


def keyed():  # type: ignore[no-untyped-def]
    return {"_id": 7}


class Gated(Step):
    """Step whose ``fail`` may be a retry's value: True, or a ``times`` retry's first attempt, fails.

    So a generated flow whose task reads ``${r}`` from a ``times`` retry fails
    once and passes on the second attempt, and one reading a ``for_each``
    retry's booleans fails while the value tried is true.
    """

    def execute(self, x: int, y: int = 0, z: int = 0, fail: Any = False) -> int:
        if fail is True or (type(fail) is int and fail < 2):
            raise RuntimeError(f"{self.name} fails with fail={fail!r}")
        return x + y + z


def low_high() -> tuple[int, str]:
    """A result whose items differ in type: ``provides: [low, high]`` takes them apart."""
    return 1, "high"


def counts() -> dict[str, int]:
    return {"rows": 3}


def labels() -> list[str]:
    """A list result: ``${p.0}`` is a ``str``, as ``provides: [a, b]`` reads it."""
    return ["first", "second"]


class Span(NamedTuple):
    low: int
    high: str


def span() -> Span:
    """A named tuple: ``${s.0}`` and ``${s.low}`` are its first item, an ``int``."""
    return Span(1, "high")


class Spawns(task.Task):
    """Spawns one ``Step`` per item of ``xs``; its result becomes their results (a list of ints)."""

    def execute(self, xs: list[int]) -> dynamic.Subflow:
        return dynamic.subflow(
            unordered_flow.Flow("each").add(*[Step(f"each-{i}", inject={"x": x}) for i, x in enumerate(xs)])
        )


def total_of(values: list[int]) -> int:
    return sum(values)


class Colour(enum.Enum):
    RED = "red"


def opened(path: Path, colour: Colour, size: tuple[int, int], when: datetime.date) -> str:
    """Takes types no JSON value is (a spec gives text, a list): it makes its own of them."""
    return f"{Path(path).name} {Colour(colour).name} {tuple(size)} {when}"
