"""Loading and running flows: the functions behind ``flowkit.engines.load``/``run``.

Kept in their own module, as in TaskFlow (``taskflow.engines.helpers``), so code
importing them from there keeps working; ``flowkit.engines`` re-exports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flowkit import exceptions as exc
from flowkit.engines.base import Engine

__all__ = ["ENGINE_DEFAULT", "ENTRY_POINT_GROUP", "load", "run"]

ENGINE_DEFAULT = "serial"

_BUILTIN = {
    "serial": "flowkit.engines.serial:SerialEngine",
    "default": "flowkit.engines.serial:SerialEngine",
    "parallel": "flowkit.engines.parallel:ParallelEngine",
    "asyncio": "flowkit.engines.asyncio:AsyncioEngine",
}
ENTRY_POINT_GROUP = "flowkit.engines"


def _engine_class(kind: str) -> type[Engine]:
    target = _BUILTIN.get(kind)
    if target is None:
        from importlib import metadata

        found = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        if kind not in found:
            raise exc.UnknownEngine(kind, set(_BUILTIN) | set(found))
        cls: type[Engine] = found[kind].load()
        return cls
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _parse_engine(engine: str) -> tuple[str, dict[str, Any]]:
    if "://" not in engine:
        return engine.lower(), {}
    parts = urlsplit(engine)
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query):
        options[key] = _coerce(value)
    return parts.scheme.lower(), options


def _coerce(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    try:
        return int(text)
    except ValueError:
        return text


def load(
    flow: Any,
    store: Mapping[str, Any] | None = None,
    flow_detail: Any = None,
    book: Any = None,
    backend: Any = None,
    namespace: str = ENTRY_POINT_GROUP,
    engine: str = ENGINE_DEFAULT,
    inject: Mapping[str, Mapping[str, Any]] | None = None,
    **options: Any,
) -> Engine:
    """Make an engine for ``flow``, ready to ``run()``.

    Args:
        flow: a flow, or a single atom.
        store: values visible to every atom (symbol -> value).
        flow_detail: stored details of an earlier run to resume.
        book: the logbook to record the run in (with ``backend``).
        backend: a persistence backend; None keeps everything in memory.
        namespace: the entry-point group engines are looked up in.
        engine: the engine kind (``serial``, ``parallel``, ``asyncio``...), or a URI.
        inject: per-atom values: ``{atom_name: {symbol: value}}``.
        options: engine options, for example ``executor=``, ``max_workers=``,
            ``defer_reverts=``, ``never_resolve=``.

    Raises:
        UnknownEngine: no engine kind by that name.
        InvalidEngineOption: an option the engine kind does not take.
        NotFound: ``inject`` names an atom that is not in the flow.
    """
    if not isinstance(engine, str):
        raise exc.InvalidEngineOption(f"engine must be a name or URI string, not {engine!r}", option="engine")
    kind, uri_options = _parse_engine(engine)
    merged = {**uri_options, **options}
    if namespace != ENTRY_POINT_GROUP:
        merged["namespace"] = namespace
    if flow_detail is not None or book is not None:
        raise exc.NotImplementedError("persistence (flow_detail=, book=) arrives with the storage backends")
    cls = _engine_class(kind)
    made = cls(flow, flow_detail, backend, merged)
    if store:
        made.storage.inject(store)
    if inject:
        made.compile()
        made.prepare()
        for atom_name, pairs in inject.items():
            made.storage.inject_atom_args(atom_name, pairs)
    return made


def run(flow: Any, store: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Load and run ``flow``; return every value it produced (``storage.fetch_all()``)."""
    engine = load(flow, store=store, **kwargs)
    engine.run()
    return engine.storage.fetch_all()
