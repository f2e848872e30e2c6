"""Describe a flow as JSON and build it again: how a spawned sub-flow survives a crash.

A task that spawns a sub-flow (:mod:`flowkit.dynamic`) must not run again when
its run is resumed, so the sub-flow has to be rebuilt from what was stored.
When no factory made it, this module writes down its shape: the pattern of
each flow, and for each atom its importable class, name, ``provides``,
``rebind`` and ``inject``. :func:`describe` checks its own work by building
every atom again and comparing what the engine reads from it, so an atom that
takes other constructor arguments is refused when it is spawned (naming it),
not discovered missing after a crash.

Only the stock patterns are described: a graph flow's explicit links are kept
when they carry no decider (a decider is code, which JSON cannot hold).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from flowkit import exceptions as exc
from flowkit.atom import Atom
from flowkit.flow import LINK_DECIDER, LINK_MANUAL, Flow
from flowkit.patterns import graph_flow, linear_flow, unordered_flow

__all__ = ["callable_path", "describe", "import_path", "rebuild"]

_PATTERNS: dict[type, str] = {
    linear_flow.Flow: "linear",
    unordered_flow.Flow: "unordered",
    graph_flow.Flow: "graph",
}
_BY_KIND: dict[str, type] = {kind: cls for cls, kind in _PATTERNS.items()}


def callable_path(target: Callable[..., Any] | type) -> str:
    """``module.Qualified.name`` of a module-level function or class.

    Raises:
        ValueError: it cannot be imported again by that name (a lambda, a closure).
    """
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ValueError(
            f"{target!r} cannot be imported again by name ({module}.{qualname}): use a "
            "module-level function or class"
        )
    return f"{module}.{qualname}"


def import_path(name: str, *, imported_only: bool = False) -> Any:
    """Import ``pkg.module.Qual.name``: the longest importable module prefix, then attributes.

    With ``imported_only``, nothing is imported: the name is looked up in the
    modules this process has imported already. A name from another process
    (a worker's spawn record) is resolved so: importing a module runs its
    top-level code, so importing whatever such a record names would let
    whoever can write it run any installed module's import side effects
    before any check of what the name is.

    Raises:
        ImportError: nothing by that name can be imported (or, with
            ``imported_only``, is imported already).
    """
    parts = name.split(".")
    modules = sys.modules
    # Why the shortest prefix tried was no module: said when nothing is found.
    not_found: ImportError | None = None
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if imported_only:
            target: Any = modules.get(module)
            if target is None:
                continue
        else:
            try:
                target = importlib.import_module(module)
            except ModuleNotFoundError as err:
                missing = err.name
                if missing is not None and missing != module and not module.startswith(missing + "."):
                    # The module is there; one it imports is not: that is the answer.
                    raise ImportError(f"'{name}': importing {module} failed: {err}") from err
                not_found = err  # this prefix is no module: a shorter one may be
                continue
            except ImportError as err:  # the module's own code failed to import something
                raise ImportError(f"'{name}': importing {module} failed: {err}") from err
        try:
            for attr in parts[cut:]:
                target = getattr(target, attr)
        except AttributeError:
            break
        return target
    if imported_only:
        raise ImportError(f"'{name}' is in no module this process has imported")
    if not_found is not None:
        raise ImportError(f"'{name}' cannot be imported ({not_found})")
    raise ImportError(f"'{name}' cannot be imported")


def describe(flow: Flow) -> dict[str, Any]:
    """A JSON-able description of ``flow`` that :func:`rebuild` turns back into it.

    Raises:
        InvalidFlowItem: something in it cannot be described (naming it, and
            saying to spawn through a factory instead).
    """
    kind = _PATTERNS.get(type(flow))
    if kind is None or flow.retry is not None:
        cls = type(flow)
        what = (
            "has a retry"
            if kind is not None
            else f"is a {cls.__module__}.{cls.__qualname__} "
            "(only linear, unordered and graph flows are described)"
        )
        raise _cannot(flow.name, f"flow '{flow.name}', which {what},", flow)
    items: list[dict[str, Any]] = []
    position: dict[int, int] = {}
    for pos, item in enumerate(flow):
        position[id(item)] = pos
        if isinstance(item, Flow):
            items.append({"flow": describe(item)})
        else:
            items.append({"atom": _describe_atom(item)})
    out: dict[str, Any] = {"pattern": kind, "name": flow.name, "items": items}
    if kind == "graph":
        links = []
        for u, v, meta in flow.iter_links():
            if meta and meta.get(LINK_DECIDER) is not None:
                raise _cannot(flow.name, f"a link of graph flow '{flow.name}' has a decider", flow)
            if meta and meta.get(LINK_MANUAL):
                links.append([position[id(u)], position[id(v)]])
        out["links"] = links
    return out


def rebuild(description: dict[str, Any], *, imported_only: bool = False) -> Flow:
    """Build the flow :func:`describe` described.

    ``imported_only``: find its atom classes among the modules imported
    already, importing none (see :func:`import_path`).

    Raises:
        InvalidFormat: the description is damaged or names something gone.
    """
    try:
        return _rebuild(description, imported_only)
    except (KeyError, TypeError, ValueError, ImportError, AttributeError) as err:
        raise exc.quoting_cause(
            exc.InvalidFormat(f"a stored sub-flow description cannot be rebuilt: {type(err).__name__}: {err}")
        ) from err


def _rebuild(description: dict[str, Any], imported_only: bool) -> Flow:
    cls = _BY_KIND[description["pattern"]]
    flow: Flow = cls(description["name"])
    built: list[Any] = []
    for item in description["items"]:
        if "flow" in item:
            built.append(_rebuild(item["flow"], imported_only))
        else:
            built.append(_make_atom(item["atom"], imported_only))
    flow.add(*built)
    for u, v in description.get("links", ()):
        flow.link(built[u], built[v])  # type: ignore[attr-defined]
    return flow


def _describe_atom(atom: Atom) -> dict[str, Any]:
    try:
        path = callable_path(type(atom))
    except ValueError:
        cls = type(atom)
        raise _cannot(
            atom.name,
            f"atom '{atom.name}', whose class {cls.__module__}.{cls.__qualname__} cannot be imported "
            "again by name (it is not defined at module level)",
            atom,
        ) from None
    failed: Exception | None = None
    # The atom's own rebind is recorded only when it differs from what its
    # signature gives (passing it would change what revert is given, too).
    for rebind in (None, dict(atom.rebind)):
        spec = {
            "class": path,
            "name": atom.name,
            "provides": _provides_spec(atom),
            "rebind": rebind,
            "inject": atom.inject,
        }
        try:
            again = _make_atom(spec)
        except Exception as err:  # any constructor error means "cannot describe"
            failed = err
            continue
        if (
            type(again) is type(atom)
            and dict(again.save_as) == dict(atom.save_as)
            and dict(again.rebind) == dict(atom.rebind)
            and again.optional == atom.optional
            and dict(again.revert_rebind) == dict(atom.revert_rebind)
        ):
            return spec
    why = f" ({type(failed).__name__}: {failed})" if failed is not None else ""
    raise _cannot(
        atom.name,
        f"atom '{atom.name}', which is not made again the same from its name, provides, rebind "
        f"and inject{why}",
        atom,
    )


def _provides_spec(atom: Atom) -> Any:
    save_as = atom.save_as
    keys = list(save_as.values())
    if not keys:
        return None
    if all(k is None for k in keys):
        return next(iter(save_as)) if len(keys) == 1 else sorted(save_as)
    if all(isinstance(k, int) for k in keys):
        positions = {name: int(key) for name, key in save_as.items()}  # type: ignore[arg-type]
        return sorted(positions, key=positions.__getitem__)
    return {"set": sorted(save_as)}


def _make_atom(spec: dict[str, Any], imported_only: bool = False) -> Atom:
    cls = import_path(spec["class"], imported_only=imported_only)
    # Checked before the call: a description may come from a worker's answer,
    # and calling whatever it names (a function, any class) would run that.
    if not isinstance(cls, type) or not issubclass(cls, Atom):
        raise TypeError(f"'{spec['class']}' is not an atom class")
    provides = spec["provides"]
    if isinstance(provides, dict):
        provides = set(provides["set"])
    atom: Atom = cls(
        name=spec["name"], provides=provides, rebind=spec["rebind"] or None, inject=spec["inject"]
    )
    return atom


def _cannot(name: str, why: str, item: Any) -> exc.InvalidFlowItem:
    return exc.InvalidFlowItem(
        f"cannot record spawned {why.rstrip(',')}, so a resumed run could not rebuild it; spawn it with a "
        "factory instead: dynamic.subflow(make_flow, *json_args)",
        item=item,
    )
