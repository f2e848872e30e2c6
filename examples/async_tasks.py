"""Async tasks: ``async def execute`` on the asyncio engine, and on any other.

A price comparison asks three shops for a quote. Each request is I/O: the task
awaits it instead of holding a thread. On the asyncio engine the three quotes
are in flight on one event loop at the same time; an ``asyncio.Event`` that
only the last request sets proves it without measuring time (one at a time,
the first request would wait forever and the flow would fail).

The same flow also runs unchanged on the serial engine, which simply awaits
each coroutine in turn; only the gate is left out there, since nothing overlaps.

Last, the flow runs from async code, as in a web request handler: ``await
engine.run_async()`` runs the coroutines on the handler's own loop. The first
request gives up after a deadline while one shop has not answered: cancelling
the await stops the run, the stalled request is cancelled, and the flow stays
``RUNNING``. A second request carries on from there: the two quotes already
in are not asked for again.
"""

from __future__ import annotations

import asyncio

from flowkit import engines, task
from flowkit.engines.asyncio import AsyncioEngine
from flowkit.patterns import graph_flow, unordered_flow

SHOPS = {"north": 12.5, "south": 11.0, "east": 13.25}


class AskForQuote(task.Task):
    """Ask one shop for its price; with a gate, wait until every shop was asked."""

    def __init__(self, shop: str, gate: Gate | None) -> None:
        super().__init__(name=f"quote_{shop}", provides=f"price_{shop}")
        self.shop = shop
        self.gate = gate

    async def execute(self) -> float:
        if self.gate is not None:
            await self.gate.arrive()
        await asyncio.sleep(0)  # stands in for the HTTP request
        return SHOPS[self.shop]


class Gate:
    """Opens once ``count`` coroutines have arrived at it."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.arrived = 0
        self.open: asyncio.Event | None = None

    async def arrive(self) -> None:
        if self.open is None:
            self.open = asyncio.Event()  # made on the engine's loop
        self.arrived += 1
        if self.arrived == self.count:
            self.open.set()
        await asyncio.wait_for(self.open.wait(), timeout=10)


class PickCheapest(task.Task):
    default_provides = "best"

    def execute(self, price_north: float, price_south: float, price_east: float) -> str:
        prices = {"north": price_north, "south": price_south, "east": price_east}
        return min(prices, key=prices.__getitem__)


def build_flow(gate: Gate | None) -> graph_flow.Flow:
    quotes = unordered_flow.Flow("quotes").add(*(AskForQuote(shop, gate) for shop in SHOPS))
    return graph_flow.Flow("compare").add(quotes, PickCheapest())


class SlowShop(task.Task):
    """A shop whose answer comes only once ``answered`` is set."""

    def __init__(self, shop: str, answered: asyncio.Event, asked: list[str]) -> None:
        super().__init__(name=f"quote_{shop}", provides=f"price_{shop}")
        self.shop = shop
        self.answered = answered
        self.asked = asked

    async def execute(self) -> float:
        self.asked.append(self.shop)
        if self.shop == "east":
            try:
                await self.answered.wait()
            except asyncio.CancelledError:
                print("  the request to east was cancelled")
                raise
        return SHOPS[self.shop]


async def handle_requests() -> None:
    """Two requests, as a web handler would serve them, for one run."""
    answered, asked = asyncio.Event(), list[str]()
    quotes = unordered_flow.Flow("quotes").add(*(SlowShop(shop, answered, asked) for shop in SHOPS))
    engine = engines.load(graph_flow.Flow("compare").add(quotes, PickCheapest()), engine="asyncio")
    assert isinstance(engine, AsyncioEngine)  # for type checkers: run_async() is the asyncio engine's
    try:
        await asyncio.wait_for(engine.run_async(), timeout=1.0)
    except TimeoutError:
        state = engine.storage.get_flow_state()
        print(f"first request: deadline passed, flow {state}, asked {sorted(asked)}")
    answered.set()
    asked.clear()
    await engine.run_async()
    print(f"second request: asked {asked} again, cheapest shop: {engine.storage.fetch('best')}")


def main() -> None:
    gate = Gate(len(SHOPS))
    engine = engines.load(build_flow(gate), engine="asyncio")
    engine.run()
    print(f"asyncio engine: {gate.arrived} quotes were in flight together")
    print(f"cheapest shop: {engine.storage.fetch('best')}")

    results = engines.run(build_flow(None), engine="serial")
    print(f"serial engine awaited each quote in turn; cheapest shop: {results['best']}")

    asyncio.run(handle_requests())


if __name__ == "__main__":
    main()
