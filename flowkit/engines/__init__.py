"""Load and run flows: ``engines.load(flow, store={...}).run()``.

Engine kinds are found by name: ``serial`` (default), ``parallel``, ``asyncio``,
and any registered under the ``flowkit.engines`` entry-point group. A name may be
written as a URI whose query holds options, e.g. ``"parallel://?max_workers=4"``.
An unknown name is an error, raised before anything runs; an option the
kind does not take is kept in ``engine.options`` with a warning, as TaskFlow
keeps it silently, and refused only with ``strict=True``.
"""

from __future__ import annotations

from flowkit.engines.base import Engine
from flowkit.engines.helpers import (
    ENGINE_DEFAULT,
    ENTRY_POINT_GROUP,
    flow_from_detail,
    load,
    load_from_detail,
    load_from_factory,
    parse_engine,
    run,
    save_factory_details,
)

__all__ = [
    "ENGINE_DEFAULT",
    "ENTRY_POINT_GROUP",
    "Engine",
    "flow_from_detail",
    "load",
    "load_from_detail",
    "load_from_factory",
    "parse_engine",
    "run",
    "save_factory_details",
]
