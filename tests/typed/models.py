"""Tasks with pydantic models for the run-time validation tests (pydantic is optional)."""

from __future__ import annotations

import enum
from typing import Any

import pydantic

from flowkit import task


class Price(pydantic.BaseModel):
    amount: float
    currency: str


class MakePrice(task.Task):
    default_provides = "price"

    def execute(self, raw: Any) -> Price:
        return raw  # type: ignore[no-any-return]  # whatever the test hands in


class UsePrice(task.Task):
    default_provides = "seen"

    def execute(self, price: Price) -> str:
        return f"{type(price).__name__} {price.amount} {price.currency}"


def amount_of(price: Price) -> float:
    """A function task's function taking a model."""
    return price.amount


class CachedPrice(MakePrice):
    cache = True
    calls = 0

    def execute(self, raw: Any) -> Price:
        CachedPrice.calls += 1
        return Price(**raw)


class KillIfAsked(task.Task):
    """Passes the price on, or SIGKILLs its own process when ``$FLOWKIT_TEST_KILL`` is set (a crash)."""

    default_provides = "checked"

    def execute(self, price: Price) -> str:
        import os
        import signal

        if os.environ.get("FLOWKIT_TEST_KILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        return type(price).__name__


class PriceKinds(task.Task):
    """Takes any number of prices through ``**prices`` (a fan-in given them by ``requires``)."""

    default_provides = "kinds"

    def execute(self, **prices: Price) -> dict[str, str]:
        return {name: type(price).__name__ for name, price in prices.items()}


class Level(enum.StrEnum):
    LOW = "low"
    HIGH = "high"


class Grades(task.Task):
    """Results that are no JSON object, with models and enum members inside (or an enum alone)."""

    def execute(self) -> tuple[Level, list[Level], list[Price], tuple[Price, int]]:
        price = Price(amount=1, currency="EUR")
        return Level.HIGH, [Level.LOW], [price], (price, 2)
