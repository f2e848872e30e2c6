"""Typed task inputs and outputs, and results cached by input hash.

A shop quotes shipping costs. Looking up where an address is takes a call to
a slow, paid geocoding service, so that task is marked ``cache = True`` and
the engine is given a cache store (a SQLite file here): a second quote for
the same addresses takes both locations from the cache instead of calling the
service, and a quote for a new destination calls it only for that one.

The tasks' annotations are their contract. ``Location`` is a pydantic model:
a cached location is stored as JSON and comes back as a ``Location`` all the
same. And a flow wired wrongly, a task that returns an address's text where
a ``Location`` is wanted, is refused with ``TypeMismatch`` when it is
compiled (the engine is asked to with ``check_types=True``; by default it
warns and runs the flow, as TaskFlow would), naming both tasks, before any
paid call is made.

Needs pydantic (``pip install 'flowkit[typed]'``). Run it with::

    python examples/typed_and_cached.py
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

try:
    from pydantic import BaseModel
except ImportError:  # the base install has no pydantic: say which extra, not a traceback
    raise SystemExit("typed_and_cached.py needs pydantic: pip install -e '.[typed]'") from None

from flowkit import engines, exceptions, states, task
from flowkit.patterns import graph_flow

# Where the pretend geocoding service places each address (latitude, longitude).
PLACES = {
    "1 Quay St, Dublin": (53.35, -6.26),
    "8 Rue Lepic, Paris": (48.88, 2.33),
    "3 Via Roma, Turin": (45.07, 7.69),
}


class Location(BaseModel):
    address: str
    lat: float
    lon: float


class Quote(BaseModel):
    kilometres: int
    euros: float


class Geocode(task.Task):
    """Ask the (slow, paid) geocoding service where an address is."""

    cache = True  # same address, same answer: call the service once

    def __init__(self, name: str, address_from: str, provides: str) -> None:
        super().__init__(name, provides=provides, rebind={"address": address_from})

    def execute(self, address: str) -> Location:
        print(f"  [{self.name}] asked the geocoding service about {address!r}")
        lat, lon = PLACES[address]
        return Location(address=address, lat=lat, lon=lon)


class Distance(task.Task):
    """Great-circle distance between two locations, in whole kilometres."""

    default_provides = "kilometres"

    def execute(self, origin: Location, destination: Location) -> int:
        lat1, lon1, lat2, lon2 = map(math.radians, (origin.lat, origin.lon, destination.lat, destination.lon))
        cos_angle = math.sin(lat1) * math.sin(lat2) + math.cos(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
        return round(6371 * math.acos(cos_angle))


class Price(task.Task):
    """Ten euros, plus two cents a kilometre."""

    default_provides = "quote"

    def execute(self, kilometres: int) -> Quote:
        return Quote(kilometres=kilometres, euros=round(10 + 0.02 * kilometres, 2))


class ReadAddress(task.Task):
    """A task that hands on the address's text, not its location: a wiring mistake."""

    def execute(self, to_address: str) -> str:
        return to_address


def build_flow() -> graph_flow.Flow:
    return graph_flow.Flow("shipping-quote").add(
        Geocode("geocode_origin", "from_address", provides="origin"),
        Geocode("geocode_destination", "to_address", provides="destination"),
        Distance("distance"),
        Price("price"),
    )


def quote(cache_url: str, to_address: str) -> None:
    """Quote shipping from Dublin to ``to_address`` with the shared cache."""
    print(f"quote from Dublin to {to_address}")
    engine = engines.load(
        build_flow(), store={"from_address": "1 Quay St, Dublin", "to_address": to_address}, cache=cache_url
    )
    cached: list[str] = []

    def note_hit(state: str, details: dict[str, Any]) -> None:
        if details.get("cache_hit"):
            cached.append(details["task_name"])

    engine.atom_notifier.register(states.SUCCESS, note_hit)
    engine.run()
    result: Quote = engine.storage.fetch("quote")
    destination = engine.storage.fetch("destination")
    print(f"  from the cache: {', '.join(sorted(cached)) or 'nothing'}")
    print(f"  destination is a {type(destination).__name__}: {destination.lat}, {destination.lon}")
    print(f"  {result.kilometres} km: {result.euros:.2f} EUR")


def wire_wrongly() -> None:
    """Feed an address's text where a Location is wanted: refused before anything runs.

    ``check_types=True`` asks for the refusal; by default the mismatch is only
    logged as a warning and the flow runs, as TaskFlow (which reads no
    annotations) would run it.
    """
    flow = graph_flow.Flow("miswired").add(
        Geocode("geocode_origin", "from_address", provides="origin"),
        ReadAddress("read_address", provides="destination"),
        Distance("distance"),
    )
    engine = engines.load(
        flow, store={"from_address": "1 Quay St, Dublin", "to_address": "Paris"}, check_types=True
    )
    try:
        engine.compile()
    except exceptions.TypeMismatch as err:
        print(f"refused: {err}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache_url = f"sqlite:///{Path(tmp) / 'cache.db'}"
        quote(cache_url, "8 Rue Lepic, Paris")
        quote(cache_url, "8 Rue Lepic, Paris")
        quote(cache_url, "3 Via Roma, Turin")
    print("a flow that feeds text where a Location is wanted:")
    wire_wrongly()


if __name__ == "__main__":
    main()
