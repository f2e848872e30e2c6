"""Loading and running flows: the functions behind ``flowkit.engines.load``/``run``.

Kept in their own module, as in TaskFlow (``taskflow.engines.helpers``), so code
importing them from there keeps working; ``flowkit.engines`` re-exports them.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit._utils.gc_pause import gc_paused
from flowkit.engines.base import Engine
from flowkit.storage import store_meta

if TYPE_CHECKING:  # annotations only: loading an engine must not import more than it needs
    from flowkit.flow import FlowItem
    from flowkit.persistence.base import Backend
    from flowkit.persistence.models import FlowDetail, LogBook

__all__ = [
    "ENGINE_DEFAULT",
    "ENTRY_POINT_GROUP",
    "engine_class",
    "flow_from_detail",
    "load",
    "load_from_detail",
    "load_from_factory",
    "load_prebuilt",
    "parse_engine",
    "run",
    "save_factory_details",
]

ENGINE_DEFAULT = "serial"

_BUILTIN = {
    "serial": "flowkit.engines.serial:SerialEngine",
    "default": "flowkit.engines.serial:SerialEngine",
    "parallel": "flowkit.engines.parallel:ParallelEngine",
    "asyncio": "flowkit.engines.asyncio:AsyncioEngine",
}
ENTRY_POINT_GROUP = "flowkit.engines"
#: Where a flow detail records the factory that builds its flow.
_FACTORY_KEY = "factory"


def _engine_class(kind: str, namespace: str = ENTRY_POINT_GROUP) -> type[Engine]:
    """The engine class called ``kind`` in entry-point group ``namespace``.

    The built-in kinds belong to flowkit's own group; another group holds only
    what is registered in it (as TaskFlow's ``namespace`` selects a stevedore group).
    """
    builtin = namespace == ENTRY_POINT_GROUP
    target = _BUILTIN.get(kind) if builtin else None
    if target is None:
        from importlib import metadata

        found = {ep.name: ep for ep in metadata.entry_points(group=namespace)}
        if kind not in found:
            known = (set(_BUILTIN) if builtin else set()) | set(found)
            raise exc.UnknownEngine(kind, known)
        cls: type[Engine] = found[kind].load()
        return cls
    module, _, name = target.partition(":")
    # A module another thread is still importing is in sys.modules already, without its
    # classes yet: only a module that has the class is taken as it is; otherwise
    # import_module waits for that other import to finish.
    engine_class: Any = getattr(sys.modules.get(module), name, None)
    if engine_class is None:
        # The first load of a process imports the engine's own modules: a burst of
        # long-lived objects (classes, functions, code) that the cyclic collector
        # would walk for nothing, about a sixth of that first load.
        with gc_paused():
            engine_class = getattr(importlib.import_module(module), name)
    return engine_class  # type: ignore[no-any-return]


def engine_class(engine: str, namespace: str = ENTRY_POINT_GROUP) -> type[Engine]:
    """The engine class an engine kind or URI selects, without making an engine.

    For tools that take an ``engine=`` but do not load a flow with it (``flowkit
    flows resume --dry-run`` plans a resume and runs nothing): a misspelled kind
    is refused there as :func:`load` would refuse it, instead of passing unseen
    until the real run.

    Raises:
        UnknownEngine: no engine kind by that name in ``namespace``.
        InvalidEngineOption: the URI's query is malformed.
    """
    return _engine_class(parse_engine(engine)[0], namespace)


def parse_engine(engine: str) -> tuple[str, dict[str, Any]]:
    """The engine kind and options an engine name or URI stands for, as :func:`load` reads it.

    ``"parallel://?max_workers=4"`` is ``("parallel", {"max_workers": 4})``; a
    bare name has no options. Public so that a tool can tell what a URI given
    by a user means (``flowkit flows resume --dry-run`` plans with its
    ``never_resolve``) without building an engine. The kind is not looked up
    here: an unknown one is an error of :func:`load`.

    Raises:
        InvalidEngineOption: a ``concurrency_limits`` value that is not ``key:n`` pairs.
    """
    if "://" not in engine:
        return engine.lower(), {}
    from urllib.parse import parse_qsl, urlsplit  # only engine URIs need it (start-up time)

    parts = urlsplit(engine)
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query):
        options[key] = _limits(value, engine) if key == "concurrency_limits" else _coerce(value)
    return parts.scheme.lower(), options


def _limits(text: str, uri: str) -> dict[str, Any]:
    """``concurrency_limits`` in an engine URI: ``key:n`` pairs joined by commas, as a dict.

    A URI is how the command line and configuration files give engine options,
    and a flow whose tasks carry a ``concurrency_key`` cannot run without its
    limits; the counts are then checked as in code (ints from 1).

    Raises:
        InvalidEngineOption: a pair that is not ``key:n``, or a key given twice, naming
            it and the URI.
    """
    limits: dict[str, Any] = {}
    for pair in text.split(","):
        key, colon, count = pair.strip().rpartition(":")
        if not colon or not key.strip():
            raise exc.InvalidEngineOption(
                f"concurrency_limits in engine URI {uri!r} must be key:n pairs joined by commas "
                f"(db:2,api:4), not {pair!r}",
                option="concurrency_limits",
            )
        key = key.strip()
        if key in limits:
            # Two counts for one key: which one was meant cannot be told.
            raise exc.InvalidEngineOption(
                f"concurrency_limits in engine URI {uri!r} gives key {key!r} twice",
                option="concurrency_limits",
            )
        limits[key] = _coerce(count.strip())
    return limits


def _coerce(text: str) -> Any:
    """An engine URI's query value as the option would be written in code: bool, int, float or text."""
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    try:
        return int(text)
    except ValueError:
        pass
    # Seconds are often fractions (default_timeout=2.5, worker_wait=0.5); words
    # float() would also take ("inf", "nan") stay text.
    if any(c.isdigit() for c in text) and not any(c.isalpha() and c not in "eE" for c in text):
        try:
            return float(text)
        except ValueError:
            pass
    return text


def load(
    flow: FlowItem,
    store: Mapping[str, Any] | None = None,
    flow_detail: FlowDetail | None = None,
    book: LogBook | None = None,
    backend: Backend | Mapping[str, Any] | None = None,
    namespace: str = ENTRY_POINT_GROUP,
    engine: str | None = ENGINE_DEFAULT,
    inject: Mapping[str, Mapping[str, Any]] | None = None,
    **options: Any,
) -> Engine:
    """Make an engine for ``flow``, ready to ``run()``.

    Args:
        flow: a flow, or a single atom.
        store: values visible to every atom (symbol -> value).
        flow_detail: the flow detail to keep the run in; one left by an earlier
            run resumes it (what succeeded is not run again).
        book: the logbook to add a new flow detail to (saved to ``backend``).
        backend: a persistence backend, or the configuration dict that
            :func:`flowkit.persistence.backends.fetch` makes one from (as TaskFlow);
            with neither ``backend`` nor ``book`` everything stays in memory. With a
            backend but no book, a logbook is made for the run.
        namespace: the entry-point group engines are looked up in.
        engine: the engine kind (``serial``, ``parallel``, ``asyncio``...), or a URI;
            None or ``""`` is the default (serial), as in TaskFlow.
        inject: per-atom values: ``{atom_name: {symbol: value}}``; with a
            ``backend`` they are saved with the atoms' records, so a resumed run
            has them too.
        options: engine options, for example ``executor=``, ``max_workers=``,
            ``defer_reverts=``, ``never_resolve=``.

    Everything that can be checked before the run (the engine kind, its options,
    the ``store`` keys and values, the atoms ``inject`` names) is checked before
    anything is written to ``backend``, so a refused load leaves no run behind.

    Raises:
        UnknownEngine: no engine kind by that name in ``namespace``.
        InvalidEngineOption: an option the engine kind does not take.
        InvalidFormat: a ``store`` or ``inject`` key is not a string, or a value
            cannot be stored as JSON, while the run is persisted.
        NotFound: ``inject`` names an atom that is not in the flow.
        TypeError: ``backend`` is neither a backend nor a dict (a URL string, say).
    """
    kind = _engine_kind(engine)
    return _load(flow, store, flow_detail, book, backend, namespace, kind, inject, options, None)


def _engine_kind(engine: str | None) -> str:
    """The engine name or URI ``engine`` stands for: :data:`ENGINE_DEFAULT` when it is missing.

    TaskFlow loads its default engine for ``engine=None`` or ``""`` (what a
    configuration file with the setting left empty gives), so flowkit does too.

    Raises:
        InvalidEngineOption: ``engine`` is something else that is not a string.
    """
    if not engine:
        return ENGINE_DEFAULT
    if not isinstance(engine, str):
        raise exc.InvalidEngineOption(f"engine must be a name or URI string, not {engine!r}", option="engine")
    return engine


def _resolve_backend(backend: Any) -> Any:
    """The persistence backend ``backend`` names, as TaskFlow's loading functions take it.

    TaskFlow accepts a backend or the configuration dict
    :func:`flowkit.persistence.backends.fetch` makes one from, and code written
    for it passes either. Anything else (a URL string is the usual slip) would
    only fail later, deep inside the first save, as "'str' object has no
    attribute 'get_connection'"; it is refused here, naming what was given.
    """
    if backend is None or hasattr(backend, "get_connection"):
        return backend
    if isinstance(backend, Mapping):
        from flowkit.persistence import backends

        return backends.fetch(backend)
    from flowkit.persistence.backends._urls import mask_url

    shown = repr(mask_url(backend)) if isinstance(backend, str) else repr(backend)
    hint = (
        f"; for a URL pass {{'connection': {shown}}}, or backends.fetch() of it"
        if isinstance(backend, str)
        else ""
    )
    raise TypeError(
        f"backend must be a persistence backend or its configuration dict, "
        f"not the {type(backend).__name__} {shown}{hint}"
    )


def _load(
    flow: Any,
    store: Mapping[str, Any] | None,
    flow_detail: Any,
    book: Any,
    backend: Any,
    namespace: str,
    engine: str,
    inject: Mapping[str, Mapping[str, Any]] | None,
    options: Mapping[str, Any],
    new_meta: Mapping[str, Any] | None,
) -> Engine:
    """:func:`load`; ``new_meta`` goes into the flow detail made for the run (with a factory's record)."""
    # A backend made from a configuration dict is the engine's alone: it closes it
    # after each run, and a load that fails closes it here.
    made_backend = isinstance(backend, Mapping)
    backend = _resolve_backend(backend)
    try:
        made = _load_on(flow, store, flow_detail, book, backend, namespace, engine, inject, options, new_meta)
    except BaseException:
        if made_backend:
            backend.close()
        raise
    if made_backend:
        made._closes_backend = True
    return made


def _load_on(
    flow: Any,
    store: Mapping[str, Any] | None,
    flow_detail: Any,
    book: Any,
    backend: Any,
    namespace: str,
    engine: str,
    inject: Mapping[str, Mapping[str, Any]] | None,
    options: Mapping[str, Any],
    new_meta: Mapping[str, Any] | None,
) -> Engine:
    """:func:`_load` with ``backend`` resolved to a backend object (or None)."""
    kind, uri_options = parse_engine(engine)
    merged = {**uri_options, **options}
    cls = _engine_class(kind, namespace)
    unsaved_book = None
    if flow_detail is None and (book is not None or backend is not None or new_meta):
        # Made now, saved once the engine took its options and inject= was checked;
        # the store goes into that first write (a run whose record exists always has
        # its inputs too: no crash window between two writes).
        meta = {**(new_meta or {}), **store_meta(store, _flow_name(flow))}
        flow_detail, unsaved_book = _make_flow_detail(flow, book, meta)
        store = None
    made = cls(flow, flow_detail, backend, merged)
    if store:
        # Before the compile below: the type check skips what injected values replace.
        made.storage.inject(store)
    if inject:
        made.expect_inject(inject)
        made.compile()
        _check_inject(made, inject, durable=backend is not None)
    if unsaved_book is not None and backend is not None:
        _save_book(unsaved_book, backend)
    if inject:
        made.prepare()
        # A persisted run keeps them with the atoms' records, as it keeps store=:
        # a run resumed elsewhere (load_from_detail, a conductor) has its inputs.
        for atom_name, pairs in inject.items():
            made.storage.inject_atom_args(atom_name, pairs, transient=backend is None)
    return made


def _check_inject(engine: Engine, inject: Mapping[str, Mapping[str, Any]], durable: bool = False) -> None:
    """Refuse ``inject=`` entries for atoms the (compiled) flow does not have.

    For a ``durable`` run (one with a backend, which keeps the values) also refuse
    a symbol that is not a string or a value the backend cannot write, before
    anything is written: the run state's check, the one ``store=`` goes through.
    """
    compilation = getattr(engine, "compilation", None)
    if compilation is None:
        return
    names = {node.name for node in compilation.atoms}
    unknown = sorted(str(name) for name in inject if name not in names)
    if unknown:
        raise exc.NotFound(
            f"inject= names atom(s) {unknown}, which flow '{engine.storage.flow_name}' does not have"
        )
    if not durable:
        return
    run_state = engine.storage.run_state
    for atom_name, pairs in inject.items():
        for symbol, value in pairs.items():
            run_state.check_injectable(symbol, value, atom=atom_name)


def run(flow: FlowItem, store: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Load and run ``flow``; return every value it produced (``storage.fetch_all()``)."""
    engine = load(flow, store=store, **kwargs)
    engine.run()
    return engine.storage.fetch_all()


def _flow_name(flow: Any) -> str:
    """The name of a run of ``flow``: its name as text (a lone atom's may be any value)."""
    name = getattr(flow, "name", None)
    if name is None or name == "":
        return type(flow).__name__
    return name if isinstance(name, str) else str(name)


def _new_flow_detail(flow: Any, book: Any, backend: Any, meta: Mapping[str, Any] | None = None) -> Any:
    """Make the flow detail of a new run, add it to ``book`` and save that to ``backend``."""
    flow_detail, book = _make_flow_detail(flow, book, meta)
    if backend is not None:
        _save_book(book, backend)
    return flow_detail


def _make_flow_detail(flow: Any, book: Any, meta: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """Make the flow detail of a new run in ``book`` (a new logbook if None); write nothing."""
    import uuid

    from flowkit.persistence import models

    name = _flow_name(flow)
    flow_detail = models.FlowDetail(name, str(uuid.uuid4()))
    if meta:
        flow_detail.meta.update(meta)
    if book is None:
        book = models.LogBook(f"{name} run")
    book.add(flow_detail)
    return flow_detail, book


def _save_book(book: Any, backend: Any) -> None:
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)


def _factory_name(factory: Callable[..., Any]) -> str:
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ValueError(
            f"Flow factory {factory!r} is not reimportable by name {module}.{qualname}: use a "
            "module-level function or class (not a lambda, closure or nested function)"
        )
    return f"{module}.{qualname}"


def _factory_meta(
    factory: Callable[..., Any] | str,
    factory_args: Sequence[Any] | None,
    factory_kwargs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    from flowkit._detail_sync import check_storable  # only factory flows need it (start-up time)

    name = factory if isinstance(factory, str) else _factory_name(factory)
    meta = {"name": name, "args": list(factory_args or ()), "kwargs": dict(factory_kwargs or {})}
    try:
        check_storable(meta)
    except (TypeError, ValueError) as err:
        from flowkit.persistence._json import unstorable  # loaded already by the check

        raise unstorable(f"arguments of flow factory '{name}'", err) from err
    return meta


def save_factory_details(
    flow_detail: FlowDetail,
    flow_factory: Callable[..., Any] | str,
    factory_args: Sequence[Any] | None,
    factory_kwargs: Mapping[str, Any] | None,
    backend: Backend | Mapping[str, Any] | None = None,
) -> None:
    """Record in ``flow_detail`` how to rebuild its flow (see :func:`flow_from_detail`).

    Raises:
        ValueError: the factory cannot be found again by name (a lambda, a closure).
        InvalidFormat: its arguments cannot be stored as JSON.
    """
    flow_detail.meta[_FACTORY_KEY] = _factory_meta(flow_factory, factory_args, factory_kwargs)
    made_backend = isinstance(backend, Mapping)
    resolved = _resolve_backend(backend)
    if resolved is not None:
        try:
            with contextlib.closing(resolved.get_connection()) as conn:
                conn.update_flow_details(flow_detail)
        finally:
            if made_backend:  # made for this one write: its pool would outlive it
                resolved.close()


def load_from_factory(
    flow_factory: Callable[..., Any] | str,
    factory_args: Sequence[Any] | None = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    store: Mapping[str, Any] | None = None,
    book: LogBook | None = None,
    backend: Backend | Mapping[str, Any] | None = None,
    namespace: str = ENTRY_POINT_GROUP,
    engine: str | None = ENGINE_DEFAULT,
    **kwargs: Any,
) -> Engine:
    """Build a flow by calling ``flow_factory`` and load it, recording the factory.

    Another process can then rebuild the same flow from the flow detail alone
    (:func:`flow_from_detail`, :func:`load_from_detail`), which is how a run is
    resumed after its process died.

    Raises:
        ValueError: the factory cannot be found again by name (a lambda, a closure).
        ImportError: ``flow_factory`` is a name that cannot be imported.
        InvalidFormat: its arguments cannot be stored as JSON.
    """
    meta = {_FACTORY_KEY: _factory_meta(flow_factory, factory_args, factory_kwargs)}
    # As in TaskFlow, the factory may be given by its dotted name.
    factory = _import_by_name(flow_factory) if isinstance(flow_factory, str) else flow_factory
    flow = factory(*(factory_args or ()), **(factory_kwargs or {}))
    return _load_recorded(flow, meta, store, book, backend, namespace, engine, kwargs)


def load_prebuilt(
    flow: Any,
    flow_factory: Callable[..., Any] | str,
    factory_args: Sequence[Any] | None = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    store: Mapping[str, Any] | None = None,
    book: LogBook | None = None,
    backend: Backend | Mapping[str, Any] | None = None,
    namespace: str = ENTRY_POINT_GROUP,
    engine: str | None = ENGINE_DEFAULT,
    **kwargs: Any,
) -> Engine:
    """:func:`load_from_factory` for a ``flow`` the caller already built with ``flow_factory``.

    The factory is recorded for a resume elsewhere, as :func:`load_from_factory`
    records it, without being called again: ``flowkit run spec.yaml`` reads the
    spec once, for its flow and for the engine it asks for, and a second call
    would read a file that may have changed in between.

    Raises:
        ValueError: the factory cannot be found again by name (a lambda, a closure).
        InvalidFormat: its arguments cannot be stored as JSON.
    """
    meta = {_FACTORY_KEY: _factory_meta(flow_factory, factory_args, factory_kwargs)}
    return _load_recorded(flow, meta, store, book, backend, namespace, engine, kwargs)


def _load_recorded(
    flow: Any,
    meta: Mapping[str, Any],
    store: Mapping[str, Any] | None,
    book: Any,
    backend: Any,
    namespace: str,
    engine: str | None,
    kwargs: dict[str, Any],
) -> Engine:
    """Load ``flow`` with the factory record ``meta``: what both ways of getting a factory's flow share."""
    inject = kwargs.pop("inject", None)
    # Factory, store and flow detail in one write, after every check (see load()).
    return _load(flow, store, None, book, backend, namespace, _engine_kind(engine), inject, kwargs, meta)


def recorded_factory(flow_detail: Any) -> str | None:
    """The dotted name of the flow factory ``flow_detail`` records, or None (nothing is imported)."""
    factory_data = (flow_detail.meta or {}).get(_FACTORY_KEY)
    if isinstance(factory_data, Mapping) and isinstance(factory_data.get("name"), str):
        name: str = factory_data["name"]
        return name
    return None


def flow_from_detail(flow_detail: FlowDetail) -> FlowItem:
    """Rebuild the flow of ``flow_detail`` with the factory recorded in it.

    Raises:
        ValueError: the flow detail records no factory (it was not loaded with
            :func:`load_from_factory`).
        ImportError: the recorded factory cannot be imported (also a ValueError,
            which earlier flowkit releases raised).
    """
    name = recorded_factory(flow_detail)
    if name is None:
        # TaskFlow's sentence, whole: programs match both its start and its end
        # (TaskFlow's own tests: '^Cannot .* no factory information saved.$').
        raise ValueError(
            f"Cannot reconstruct flow {flow_detail.name} {flow_detail.uuid}: no factory information saved."
        )
    factory_data = flow_detail.meta[_FACTORY_KEY]
    try:
        factory = _import_by_name(name)
    except ImportError as err:
        raise _FactoryImportError(
            f"Could not import factory for flow {flow_detail.name} {flow_detail.uuid}"
            f" (flow {flow_detail.name!r}): {err}"
        ) from err
    # A flow factory returns a flow (or an atom): what the engine is then loaded with.
    built: FlowItem = factory(*factory_data.get("args", ()), **factory_data.get("kwargs", {}))
    return built


class _FactoryImportError(ImportError, ValueError):
    """A recorded flow factory that cannot be imported: TaskFlow's ImportError, flowkit's ValueError."""


def _import_by_name(name: str) -> Any:
    """Import ``pkg.module.Qual.Name`` (see :func:`flowkit._flow_codec.import_path`)."""
    from flowkit._flow_codec import import_path  # only resumes of factory flows need it

    try:
        return import_path(name)
    except ImportError as err:
        # TaskFlow's words first, which programs and log scrapers match.
        raise _FactoryImportError(f"Could not import factory {name!r}: {err}") from None


def load_from_detail(
    flow_detail: FlowDetail,
    store: Mapping[str, Any] | None = None,
    backend: Backend | Mapping[str, Any] | None = None,
    namespace: str = ENTRY_POINT_GROUP,
    engine: str | None = ENGINE_DEFAULT,
    **kwargs: Any,
) -> Engine:
    """Rebuild the flow of ``flow_detail`` and load it to carry on from where it stopped."""
    flow = flow_from_detail(flow_detail)
    return load(
        flow,
        store=store,
        flow_detail=flow_detail,
        backend=backend,
        namespace=namespace,
        engine=engine,
        **kwargs,
    )
