"""From spec data to an ordinary graph flow, checking everything on the way.

Each spec task becomes one atom named after its key (or its ``name:``) whose
result is stored under the symbol of its key, so ``${fetch}`` is simply the
symbol ``fetch``. Constants become the atom's ``inject`` values, whole
references ``rebind`` entries, and inputs with fields or text go through a
:class:`~flowkit.declarative._spec_task.SpecTask` adapter. A ``retry:`` puts the
atom in a one-item linear flow with a :class:`~flowkit.retry.Times` controller;
``after:`` is a graph link. An item with a ``flow:`` key is a sub-flow of that
pattern, whose tasks share the spec's one namespace of keys. Nothing here is an
engine feature: the result is the flow one would have written by hand, so it
persists and resumes like any other.

Checks, all before the flow exists, each naming the file, line, task and key:
the shape of every key (the JSON Schema says the same), unknown task, unknown
and missing inputs, references to unknown tasks, parameters or fields, cycles
through references and ``after:``, and constant inputs or references whose
declared type cannot fit the argument's annotation.
"""

from __future__ import annotations

import dataclasses
import difflib
import graphlib
import heapq
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from flowkit import exceptions as exc
from flowkit import typed
from flowkit._utils import reflection
from flowkit._utils.factories import FactoryNames
from flowkit._utils.gc_pause import gc_paused
from flowkit._utils.json_types import json_representable
from flowkit._utils.reprs import short_repr
from flowkit.atom import Atom
from flowkit.deciders import Depth
from flowkit.declarative import _refs
from flowkit.declarative._numbers import NOT_FINITE, find_non_finite
from flowkit.declarative._registry import TaskNotAllowed, UnknownTask, registered, resolve_task
from flowkit.declarative._source import Source
from flowkit.declarative._spec_task import SpecTask
from flowkit.flow import Flow, FlowItem
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from flowkit.retry import AlwaysRevert, AlwaysRevertAll, ForEach, ParameterizedForEach, Retry, Times
from flowkit.task import BaseTask, FunctorTask

__all__ = ["FLOW_KINDS", "RETRY_CONTROLLERS", "TASK_OPTIONS", "build_flow", "engine_options"]

_TOP_KEYS = ("name", "description", "parameters", "flow", "retry", "engine", "tasks")
#: The kinds of flow a spec or sub-flow may be (``flow:``), and what each is.
FLOW_KINDS: dict[str, type[Flow]] = {
    "graph": graph_flow.Flow,
    "linear": linear_flow.Flow,
    "unordered": unordered_flow.Flow,
}
#: The keys of a sub-flow (an item of ``tasks`` with a ``flow`` key).
_FLOW_KEYS = ("flow", "tasks", "name", "after", "retry")
#: The retry controllers a flow's ``retry:`` may name, and the options each takes.
RETRY_CONTROLLERS: dict[str, tuple[str, ...]] = {
    "times": ("attempts", "revert_all", "provides", "name"),
    "for_each": ("values", "revert_all", "provides", "name"),
    "parameterized_for_each": ("values", "revert_all", "provides", "name"),
    "always_revert": ("name",),
    "always_revert_all": ("name",),
}
#: The keys a task may have besides ``task`` and ``inputs``.
TASK_OPTIONS = (
    "after",
    "retry",
    "timeout",
    "cache",
    "topic",
    "name",
    "requires",
    "rebind",
    "inject",
    "provides",
)
_TASK_KEYS = ("task", "inputs", *TASK_OPTIONS)


class _Provider(NamedTuple):
    """What a symbol a consumer reads is: ``atom``'s result (a task's or a retry's), or its item ``item``."""

    #: Its words in errors: ``task 'p' result``, ``the value of the retry of sub-flow 's'``.
    what: str
    atom: Atom
    #: The position ``provides: [a, b]`` gave the symbol, None for the whole result.
    item: int | None = None


class _Tried(NamedTuple):
    """A symbol a ``for_each`` retry provides: the spec's constants ``values``, one per try."""

    flow: str | None  # the key of the flow the retry controls (None: the spec's flow)
    values: tuple[Any, ...]

    def owner(self) -> str:
        return _flow_words(self.flow)


class _Iterated(NamedTuple):
    """A symbol a ``parameterized_for_each`` retry provides: an item of the symbol ``values``, one per try.

    Typed once ``values``'s provider is made (it runs before the retry's flow,
    so before every reader): an item of its declared result, or untyped for a
    parameter.
    """

    flow: str | None  # the key of the flow the retry controls (None: the spec's flow)
    values: str

    def what(self) -> str:
        return f"the value of the retry of {_flow_words(self.flow)}"


def _flow_words(flow: str | None) -> str:
    """A flow of the spec in errors: ``the spec's flow``, or ``sub-flow 'key'``."""
    return "the spec's flow" if flow is None else f"sub-flow {flow!r}"


#: What a symbol a reader takes comes from: a task or retry, a for_each retry's constants, an item of values.
_SymbolSource = _Provider | _Tried | _Iterated


def _retry_providers(parsed: _Parsed) -> dict[str, _SymbolSource]:
    """The symbols retries provide, typed for their readers as a task's result is.

    A ``for_each`` retry's are its constants, each checked as one; a
    ``parameterized_for_each`` retry's an item of its values (see
    :class:`_Iterated`); any other (a ``times`` retry's attempt number) by what
    its controller's ``execute`` declares, as the engine's check reads it.
    """
    providers: dict[str, _SymbolSource] = {}
    for flow, retry in parsed.retries.items():
        if retry.provides is None:
            continue
        if retry.controller == "for_each":
            providers[retry.provides] = _Tried(flow, tuple(retry.values))
        elif retry.controller == "parameterized_for_each":
            providers[retry.provides] = _Iterated(flow, retry.values)
        else:
            providers[retry.provides] = _Provider(
                f"the value of the retry of {_flow_words(flow)}", retry.make()
            )
    return providers


@dataclass(slots=True)
class _Task:
    key: str
    name: str
    path: str
    target: Callable[..., Any]
    inputs: dict[str, _refs.Value]
    after: list[str]
    #: The decider (and depth) of each ``after`` link that has one, by the item it follows.
    deciders: dict[str, tuple[Callable[..., Any], str | None]]
    retry: int | None
    timeout: float | None
    cache: bool | None
    topic: str | None
    parent: str | None = None
    #: Task's ``provides``: None stores the result under the task's key.
    provides: str | list[str] | None = None
    #: Where an input not given under ``inputs`` came from (``rebind.x``, ``requires``, ``inject.x``).
    origin: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Task keys that must run first because a retry's ``values`` reads them.
    before: set[str] = dataclasses.field(default_factory=set)
    #: Items (task or sub-flow keys, not expanded) whose every task must run first,
    #: by ``after:`` (the task's or an enclosing sub-flow's) or a linear flow's order.
    #: Kept unexpanded: a linear flow of two sub-flows of k tasks each would otherwise
    #: give each of the second's tasks all k of the first's (k**2 in all).
    after_items: list[str] = dataclasses.field(default_factory=list)


@dataclass(slots=True)
class _SubFlow:
    key: str
    name: str
    kind: str
    children: list[str]
    after: list[str]
    deciders: dict[str, tuple[Callable[..., Any], str | None]]
    parent: str | None
    retry: Any = None  # as written; checked once every symbol is known


@dataclass(slots=True)
class _Retry:
    controller: str
    attempts: int = 1
    values: Any = None  # a list for for_each, a symbol for parameterized_for_each
    revert_all: bool = False
    provides: str | None = None
    name: str | None = None

    def make(self) -> Retry:
        """The retry controller, named after its flow unless ``name`` says otherwise."""
        kw: dict[str, Any] = {"name": self.name}
        if self.controller in ("times", "for_each", "parameterized_for_each"):
            kw.update(provides=self.provides, revert_all=self.revert_all)
        if self.controller == "times":
            return Times(self.attempts, **kw)
        if self.controller == "for_each":
            return ForEach(list(self.values), **kw)
        if self.controller == "parameterized_for_each":
            return ParameterizedForEach(rebind={"values": self.values}, **kw)
        return AlwaysRevert(**kw) if self.controller == "always_revert" else AlwaysRevertAll(**kw)


@dataclass(slots=True)
class _Parsed:
    """Every task and sub-flow of a spec, keyed alike (keys are unique across the whole spec)."""

    tasks: list[_Task] = dataclasses.field(default_factory=list)
    #: The same tasks by key, so finding one costs O(1) in a spec of thousands.
    by_key: dict[str, _Task] = dataclasses.field(default_factory=dict)
    flows: dict[str, _SubFlow] = dataclasses.field(default_factory=dict)
    top: list[str] = dataclasses.field(default_factory=list)
    #: Every symbol a task stores its result (or a part of it) under -> that task's key.
    symbols: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The retry of each flow that has one (None: the spec's own flow).
    retries: dict[str | None, _Retry] = dataclasses.field(default_factory=dict)
    #: The symbol of each retry that provides one -> its flow's key (None: the spec's flow).
    retry_symbols: dict[str, str | None] = dataclasses.field(default_factory=dict)
    #: The leaves of each sub-flow, once asked for (the spec no longer changes then).
    leaves_of: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def inside(self, task: str, flow: str | None) -> bool:
        """Whether ``task`` is (at any depth) in flow ``flow`` (None: the spec's flow)."""
        parent = _task(self, task).parent
        while parent is not None:
            if parent == flow:
                return True
            parent = self.flows[parent].parent
        return flow is None

    def leaves(self, key: str) -> list[str]:
        """The task keys inside item ``key`` (itself for a task)."""
        flow = self.flows.get(key)
        if flow is None:
            return [key]
        found = self.leaves_of.get(key)
        if found is None:
            found = self.leaves_of[key] = [leaf for child in flow.children for leaf in self.leaves(child)]
        return found


#: From this many tasks and sub-flows in a spec, the cyclic garbage collector is
#: paused while it is built (see :func:`flowkit._utils.gc_pause.gc_paused`): a
#: 20,000-task spec otherwise spent 40% of its load in collections that found
#: nothing (everything made is kept, or freed by reference counting).
_BULK = 1000


def build_flow(source: Source, allowed: FactoryNames | None = None) -> Flow:
    """Check ``source`` and build its flow.

    Args:
        source: the spec read.
        allowed: when given, the only import paths its tasks may name.

    Raises:
        FlowSpecError: the first problem found.
    """
    if not _is_big(source.data):
        return _build_flow(source, allowed)
    with gc_paused():
        return _build_flow(source, allowed)


def _is_big(data: Any) -> bool:
    """Whether a spec holds at least ``_BULK`` tasks and sub-flows (counted until there)."""
    pending = [data.get("tasks")] if isinstance(data, Mapping) else []
    count = 0
    while pending:
        tasks = pending.pop()
        if not isinstance(tasks, Mapping):
            continue
        count += len(tasks)
        if count >= _BULK:
            return True
        pending.extend(
            body.get("tasks") for body in tasks.values() if isinstance(body, Mapping) and "flow" in body
        )
    return False


def _build_flow(source: Source, allowed: FactoryNames | None) -> Flow:
    data = source.data
    if not isinstance(data, Mapping):
        raise source.error(f"a flow spec is a mapping with a 'tasks' key, not {type(data).__name__}")
    unfit = find_non_finite(data)
    if unfit is not None:
        raise source.error(f"{unfit.value} {NOT_FINITE}", task=unfit.task, key=unfit.key)
    for key in data:
        if key not in _TOP_KEYS:
            raise source.error(
                f"unknown key {key!r}{_near(key, _TOP_KEYS)}; a spec has {list(_TOP_KEYS)}", key=str(key)
            )
    name = data.get("name")
    if name is None:
        name = Path(source.path).stem if source.path else "declarative"
    if not isinstance(name, str) or not name:
        raise source.error(f"the flow name must be a non-empty string, not {name!r}", key="name")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise source.error(f"'description' must be text, not {type(description).__name__}", key="description")
    engine_options(source)
    kind = data.get("flow", "graph")
    if not _one_of(kind, FLOW_KINDS):
        raise source.error(f"'flow' must be one of {list(FLOW_KINDS)}, not {kind!r}", key="flow")
    parameters = _parameters(source, data.get("parameters", []))
    tasks = data.get("tasks")
    if not isinstance(tasks, Mapping) or not tasks:
        raise source.error("'tasks' must be a non-empty mapping of task name -> task", key="tasks")
    parsed = _Parsed()
    parsed.top = _parse_items(source, tasks, None, kind, allowed, parsed)
    specs = parsed.tasks
    keys = {spec.key for spec in specs}
    for clash in sorted((keys | set(parsed.flows)) & parameters):
        raise source.error(f"{clash!r} is both a task and a parameter", task=clash)
    claimed = _check_names(source, specs)
    _collect_symbols(source, parsed, parameters)
    _parse_retry(source, parsed, parameters, None, data.get("retry"))
    for flow in parsed.flows.values():
        _parse_retry(source, parsed, parameters, flow.key, flow.retry)
    _check_retry_names(source, parsed, name, claimed)
    _check_references(source, specs, set(parsed.symbols) | set(parsed.retry_symbols) | parameters, parsed)
    _order_items(parsed, parsed.top, kind)
    for flow in parsed.flows.values():
        _order_items(parsed, flow.children, flow.kind)
    _check_flow_dependencies(source, parsed, None, parsed.top, kind)
    for flow in parsed.flows.values():
        _check_flow_dependencies(source, parsed, flow.key, flow.children, flow.kind)
    order = _check_cycles(source, parsed, kind)
    by_key = {spec.key: spec for spec in specs}
    atoms: dict[str, BaseTask] = {}
    # symbol -> the task or retry whose result (or item) it is, or the for_each retry whose values it takes
    providers = _retry_providers(parsed)
    # Providers first (not the file's order): checking a consumer reads the atoms
    # of the tasks it references, which must exist by then.
    for key in order:
        spec = by_key[key]
        atoms[key] = _make_atom(source, spec, by_key, providers)
        if isinstance(spec.provides, list):
            for i, symbol in enumerate(spec.provides):
                providers[symbol] = _Provider(f"task {key!r} result", atoms[key], i)
        else:
            providers[spec.provides or key] = _Provider(f"task {key!r} result", atoms[key])
    if parsed.flows or kind != "graph" or parsed.retries:
        position = {key: i for i, key in enumerate(order)}
        return _assemble(source, parsed, None, name, kind, parsed.top, atoms, position)
    top = graph_flow.Flow(name)
    items: dict[str, Any] = {}
    # One item at a time, providers first: then a new item has no successors yet, so
    # graph_flow's cycle check is O(1) per item instead of a walk of the whole graph,
    # and no earlier item can be waiting for it (resolve_existing would scan them all).
    for key in order:
        spec = by_key[key]
        item = _with_retry(spec, atoms[key])
        items[key] = item
        top.add(item, resolve_existing=False)
        for before in spec.after:
            top.link(items[before], item, *spec.deciders.get(before, (None, None)))
    return top


def engine_options(source: Source) -> tuple[str | None, dict[str, Any]]:
    """The engine a spec asks for (``engine:``), and its options: ``(name or None, options)``.

    The spec only suggests: whoever runs it (``flowkit run``, or code calling
    :func:`flowkit.engines.load`) applies them under its own choices. The
    engine's own checks (a kind it does not know, an option it does not take)
    happen when it is made, as for any engine.
    """
    data = source.data
    value = data.get("engine") if isinstance(data, Mapping) else None
    if value is None:
        return None, {}
    if isinstance(value, str) and value:
        return value, {}
    if not isinstance(value, Mapping):
        raise source.error(
            f"'engine' must be an engine name or URI, or a mapping of options with an optional 'name', "
            f"not {value!r}",
            key="engine",
        )
    options: dict[str, Any] = {}
    name = None
    for option, setting in value.items():
        if not isinstance(option, str) or not option.isidentifier():
            raise source.error(f"engine option {option!r} is not a keyword name", key=f"engine.{option}")
        if option == "name":
            if not isinstance(setting, str) or not setting:
                raise source.error(
                    f"the engine 'name' must be a non-empty string, not {setting!r}", key="engine.name"
                )
            name = setting
        elif option in _CALLER_ONLY:
            raise source.error(
                f"engine option {option!r} is for the code running the flow, not for a spec",
                key=f"engine.{option}",
            )
        else:
            options[option] = setting
    return name, options


#: Options of engines.load a spec may not set: they hand the engine objects or a run's records.
_CALLER_ONLY = frozenset(
    {"store", "flow_detail", "book", "backend", "namespace", "inject", "executor", "clock"}
)


def _parse_retry(source: Source, parsed: _Parsed, parameters: set[str], flow: str | None, value: Any) -> None:
    """Check the ``retry:`` of flow ``flow`` (None: the spec's) and record it in ``parsed``."""
    if value is None:
        return
    written = value
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"controller": "times", "attempts": value}
    if isinstance(value, str):
        value = {"controller": value}
    if not isinstance(value, Mapping) or not _one_of(value.get("controller"), RETRY_CONTROLLERS):
        raise source.error(
            f"'retry' must be a number of attempts, a controller name or a mapping with 'controller' "
            f"one of {list(RETRY_CONTROLLERS)}, not {written!r}",
            task=flow,
            key="retry.controller" if isinstance(written, Mapping) else "retry",
        )
    controller = value["controller"]
    takes = RETRY_CONTROLLERS[controller]
    for option in value:
        if option != "controller" and option not in takes:
            raise source.error(
                f"unknown option {option!r}{_near(option, takes)} of a {controller} retry; "
                f"it takes {list(takes)}",
                task=flow,
                key=f"retry.{option}",
            )
    retry = _Retry(controller)
    for option, kind in (("attempts", int), ("revert_all", bool), ("provides", str), ("name", str)):
        if option in value:
            ok = isinstance(value[option], kind) and (kind is bool or not isinstance(value[option], bool))
            if not ok or (kind is int and value[option] < 0) or (kind is str and not value[option]):
                wanted = {int: "a whole number, 0 or more", bool: "true or false", str: "a non-empty string"}
                raise source.error(
                    f"retry option {option!r} must be {wanted[kind]}, not {value[option]!r}",
                    task=flow,
                    key=f"retry.{option}",
                )
            setattr(retry, option, value[option])
    if controller in ("for_each", "parameterized_for_each"):
        values = value.get("values")
        if controller == "for_each":
            if not isinstance(values, list) or not values:
                # An empty list has nothing to try: the retry failed with NotFound at run time.
                raise source.error(
                    "a for_each retry's 'values' must be the list of values to try, at least one",
                    task=flow,
                    key="retry.values",
                )
        else:
            try:
                ref = _refs.parse_value(values)
            except _refs.RefSyntaxError as err:
                raise exc.quoting_cause(source.error(str(err), task=flow, key="retry.values")) from err
            if not isinstance(ref, _refs.Ref) or ref.path:
                raise source.error(
                    "a parameterized_for_each retry's 'values' must be a whole reference ${name} "
                    "to a task's result or a parameter holding the values to try",
                    task=flow,
                    key="retry.values",
                )
            provider = parsed.symbols.get(ref.name)
            if provider is None and ref.name not in parameters:
                raise source.error(f"{ref.text} names no task or parameter", task=flow, key="retry.values")
            if provider is not None:
                if parsed.inside(provider, flow):
                    raise source.error(
                        f"{ref.text} is a result of task {provider!r}, inside the flow the retry controls",
                        task=flow,
                        key="retry.values",
                    )
                for leaf in parsed.leaves(flow) if flow is not None else []:
                    _task(parsed, leaf).before.add(provider)
            values = ref.name
        retry.values = values
    if retry.provides is not None:
        clash = _symbol_clash(parsed, parameters, retry.provides)
        if clash is not None:
            raise source.error(
                f"retry symbol {retry.provides!r} cannot be provided: {clash}",
                task=flow,
                key="retry.provides",
            )
        parsed.retry_symbols[retry.provides] = flow
    parsed.retries[flow] = retry


def _symbol_clash(parsed: _Parsed, parameters: set[str], symbol: str) -> str | None:
    """Why a retry cannot provide ``symbol``, as :func:`_collect_symbols` says it for a task; None if it can.

    A task key is refused even when that task stores its result under other
    symbols: ``${key}`` would read the retry's value where a reader meant the task.
    """
    task = parsed.symbols.get(symbol)
    if "." in symbol:
        return "it has a '.' (${a.b} reads field b of a)"
    if task is not None:
        return f"task {task!r} stores its result under it"
    if symbol in parsed.by_key:
        return f"it is the key of task {symbol!r}"
    if symbol in parameters:
        return "it is a parameter"
    if symbol in parsed.flows:
        return "it is the key of a sub-flow"
    if symbol in parsed.retry_symbols:
        return f"the retry of {_flow_words(parsed.retry_symbols[symbol])} provides it too"
    return None


def _one_of(value: Any, choices: Mapping[str, Any]) -> bool:
    """Whether ``value`` names one of ``choices``: a list or mapping written there names none.

    ``value in choices`` raised TypeError (unhashable type) for those, naming no file or key.
    """
    return isinstance(value, str) and value in choices


def _near(word: Any, known: tuple[str, ...]) -> str:
    """`` (did you mean 'inputs'?)`` for a key a typo away from a known one, else nothing."""
    close = difflib.get_close_matches(str(word), known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _with_retry(spec: _Task, atom: BaseTask) -> FlowItem:
    if spec.retry is None:
        return atom
    retry = Times(spec.retry, name=f"{spec.name}-retry")
    return linear_flow.Flow(f"{spec.name}-retry", retry=retry).add(atom)


def _parse_items(
    source: Source,
    items: Mapping[Any, Any],
    parent: str | None,
    kind: str,
    allowed: FactoryNames | None,
    parsed: _Parsed,
) -> list[str]:
    """Parse the tasks and sub-flows of one flow into ``parsed``; return their keys in spec order."""
    keys: list[str] = []
    for raw_key, body in items.items():
        key = str(raw_key)
        if not isinstance(raw_key, str):
            # YAML reads `yes:`, `off:`, `~:` and `12:` as True, False, None and 12: the task
            # became "True", which no ${yes} could name.
            raise source.error(
                f"task key {raw_key!r} is a {type(raw_key).__name__}, not a string "
                "(YAML reads yes/no/on/off, ~ and numbers as such): quote it",
                task=key,
            )
        _check_symbol(source, key, task=key)
        if key in parsed.flows or key in parsed.by_key:
            raise source.error(
                f"key {key!r} is used twice in the spec: tasks and sub-flows share one namespace, "
                "since references name them by key",
                task=key,
                sub_flow=isinstance(body, Mapping) and "flow" in body,
            )
        if isinstance(body, Mapping) and "flow" in body:
            source.flows.add(key)
            sub = _parse_flow(source, key, body, parent, allowed, parsed)
            after = sub.after
        else:
            spec = _parse_task(source, key, body, allowed)
            spec.parent = parent
            parsed.tasks.append(spec)
            parsed.by_key[key] = spec
            after = spec.after
        if after and kind != "graph":
            raise source.error(
                f"'after' orders items of a graph flow; this item is in a {kind} flow "
                + ("(its order is the spec's)" if kind == "linear" else "(its items run independently)"),
                task=key,
                key="after",
            )
        keys.append(key)
    for key in keys:
        after = parsed.flows[key].after if key in parsed.flows else _task(parsed, key).after
        for before in after:
            if before not in keys:
                raise source.error(
                    f"'after' names no task or sub-flow of the same flow: {before!r}", task=key, key="after"
                )
    return keys


def _task(parsed: _Parsed, key: str) -> _Task:
    return parsed.by_key[key]


def _parse_flow(
    source: Source,
    key: str,
    body: Mapping[str, Any],
    parent: str | None,
    allowed: FactoryNames | None,
    parsed: _Parsed,
) -> _SubFlow:
    for option in body:
        if option not in _FLOW_KEYS:
            raise source.error(
                f"unknown key {option!r}{_near(option, _FLOW_KEYS)}; a sub-flow has {list(_FLOW_KEYS)}",
                task=key,
                key=str(option),
            )
    kind = body["flow"]
    if not _one_of(kind, FLOW_KINDS):
        raise source.error(f"'flow' must be one of {list(FLOW_KINDS)}, not {kind!r}", task=key, key="flow")
    tasks = body.get("tasks")
    if not isinstance(tasks, Mapping) or not tasks:
        raise source.error(
            "a sub-flow's 'tasks' must be a non-empty mapping of key -> task or sub-flow",
            task=key,
            key="tasks",
        )
    after, deciders = _parse_after(source, key, body.get("after", []), allowed)
    sub = _SubFlow(
        key=key,
        name=_option(source, key, body, "name", str, key),
        kind=kind,
        children=[],
        after=after,
        deciders=deciders,
        parent=parent,
        retry=body.get("retry"),
    )
    parsed.flows[key] = sub  # before its items, so one reusing its key is refused
    sub.children = _parse_items(source, tasks, key, kind, allowed, parsed)
    return sub


def _order_items(parsed: _Parsed, children: list[str], kind: str) -> None:
    """Record, on each task, the items that must run first: by ``after:`` and a linear flow's order."""
    for i, child in enumerate(children):
        after = parsed.flows[child].after if child in parsed.flows else _task(parsed, child).after
        first = list(after)
        if kind == "linear" and i:
            first.append(children[i - 1])
        if first:
            for leaf in parsed.leaves(child):
                _task(parsed, leaf).after_items.extend(first)


def _expanded_before(parsed: _Parsed, kind: str) -> dict[str, set[str]]:
    """Each task's ``before`` with its ``after_items`` expanded to their tasks.

    Built in the same steps as before ``after_items`` existed (a set per task,
    flows' items expanded level by level), so that a cycle is traced through
    the same tasks and reported alike. Only a spec with a cycle needs it.
    """
    before = {spec.key: set(spec.before) for spec in parsed.tasks}
    levels = [(parsed.top, kind)] + [(flow.children, flow.kind) for flow in parsed.flows.values()]
    for children, level_kind in levels:
        for i, child in enumerate(children):
            after = parsed.flows[child].after if child in parsed.flows else _task(parsed, child).after
            first = {leaf for item in after for leaf in parsed.leaves(item)}
            if level_kind == "linear" and i:
                first.update(parsed.leaves(children[i - 1]))
            for leaf in parsed.leaves(child):
                before[leaf].update(first)
    return before


def _check_flow_dependencies(
    source: Source, parsed: _Parsed, flow: str | None, children: list[str], kind: str
) -> None:
    """Refuse what a linear or unordered flow cannot run: an item reading a later or a sibling item.

    An item reads through its tasks' inputs, and through the ``values`` of a
    ``parameterized_for_each`` retry on it or on a sub-flow inside it.

    Inside a linear flow an item runs after the ones before it only; inside an
    unordered one, its items run independently. A reference against that would
    otherwise surface as a cycle, or as a missing requirement when the engine
    compiles the flow, naming no file or line.
    """
    if kind == "graph":
        return
    where = f"{kind} flow {flow!r}" if flow is not None else f"the {kind} flow of the spec"
    owner = {leaf: child for child in children for leaf in parsed.leaves(child)}
    position = {child: i for i, child in enumerate(children)}
    for i, child in enumerate(children):
        for leaf in parsed.leaves(child):
            spec = _task(parsed, leaf)
            for arg, value in spec.inputs.items():
                for ref in _refs.refs_in(value):
                    other = owner.get(parsed.symbols.get(ref.name, ""))
                    if other is None or other == child:
                        continue
                    if kind == "unordered":
                        problem = f"{ref.text} reads another item of {where}, whose items run independently"
                    elif position[other] > i:
                        problem = f"{ref.text} reads an item that runs later in {where}"
                    else:
                        continue
                    raise source.error(problem, task=leaf, key=_where(spec, arg))
        # A parameterized_for_each retry reads its values before its flow runs,
        # so the item it reads is bound by the same order as a task's inputs.
        for sub in _flows_in(parsed, child):
            retry = parsed.retries.get(sub)
            if retry is None or retry.controller != "parameterized_for_each":
                continue
            other = owner.get(parsed.symbols.get(retry.values, ""))
            if other is None or other == child:
                continue
            text = "${" + retry.values + "}"
            if kind == "unordered":
                problem = f"{text} reads another item of {where}, whose items run independently"
            elif position[other] > i:
                problem = f"{text} reads an item that runs later in {where}"
            else:
                continue
            raise source.error(f"retry values: {problem}", task=sub, key="retry.values")


def _flows_in(parsed: _Parsed, key: str) -> list[str]:
    """The sub-flow ``key`` (none for a task) and every sub-flow inside it, at any depth."""
    flow = parsed.flows.get(key)
    if flow is None:
        return []
    return [key] + [inner for child in flow.children for inner in _flows_in(parsed, child)]


def _assemble(
    source: Source,
    parsed: _Parsed,
    key: str | None,
    name: str,
    kind: str,
    children: list[str],
    atoms: Mapping[str, BaseTask],
    position: Mapping[str, int],
) -> Flow:
    """Build one flow of a spec with sub-flows, its items first."""
    items: dict[str, FlowItem] = {}
    for child in children:
        sub = parsed.flows.get(child)
        if sub is None:
            items[child] = _with_retry(_task(parsed, child), atoms[child])
        else:
            items[child] = _assemble(source, parsed, child, sub.name, sub.kind, sub.children, atoms, position)
    retry = parsed.retries.get(key)
    flow = FLOW_KINDS[kind](name, retry=None if retry is None else retry.make())
    if kind != "graph":
        flow.add(*items.values())
        return flow
    assert isinstance(flow, graph_flow.Flow)
    ranked = sorted(children, key=lambda c: min(position[leaf] for leaf in parsed.leaves(c)))
    try:
        # One add, the items providers first: links made as they come, one cycle check.
        flow.add(*(items[child] for child in ranked))
        ranked = []
    except exc.DependencyFailure:
        pass  # the flow is left unchanged: added again one at a time, to name the item at fault
    for child in ranked:
        try:
            flow.add(items[child])
        except exc.DependencyFailure as err:
            where = f"sub-flow {key!r}" if key is not None else "the spec's graph flow"
            raise exc.quoting_cause(
                source.error(
                    f"item {child!r} cannot be placed in {where}: {err} (a sub-flow both reads from and "
                    "feeds another item of its graph flow; move the tasks so data flows one way)",
                    task=child,
                )
            ) from err
    for child in children:
        owner: _Task | _SubFlow = parsed.flows[child] if child in parsed.flows else _task(parsed, child)
        for before in owner.after:
            flow.link(items[before], items[child], *owner.deciders.get(before, (None, None)))
    return flow


def _parameters(source: Source, value: Any) -> set[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise source.error(
            "'parameters' must be a list of names given at run time (store=)", key="parameters"
        )
    for i, name in enumerate(value):
        _check_symbol(source, name, key="parameters")
        if name in value[:i]:
            raise source.error(f"parameter {name!r} is listed twice", key="parameters")
    return set(value)


def _check_symbol(source: Source, name: str, task: str | None = None, key: str | None = None) -> None:
    """Refuse a task key or parameter that ``${...}`` could not name.

    A ``.`` in ``${a.b}`` reads field ``b`` of ``a``: a task keyed ``a.b``
    could never be referenced, and a reference meant for it would silently
    read a field of task ``a``.
    """
    if not name or "." in name:
        what = "task key" if task is not None else "parameter"
        raise source.error(
            f"{what} {name!r} cannot be named by a reference: it must be non-empty, without '.'"
            " (${a.b} reads field b of a)",
            task=task,
            key=key,
        )


def _parse_task(source: Source, key: str, body: Any, allowed: FactoryNames | None) -> _Task:
    if not isinstance(body, Mapping):
        raise source.error(f"a task is a mapping with a 'task' key, not {type(body).__name__}", task=key)
    if "tasks" in body and "task" not in body:
        raise source.error(
            f"an item with 'tasks' is a sub-flow: give it 'flow' (one of {list(FLOW_KINDS)})",
            task=key,
            key="tasks",
            sub_flow=True,
        )
    for option in body:
        if option not in _TASK_KEYS:
            raise source.error(
                f"unknown key {option!r}{_near(option, _TASK_KEYS)}; a task has {list(_TASK_KEYS)}",
                task=key,
                key=str(option),
            )
    path = body.get("task")
    if not isinstance(path, str) or not path:
        raise source.error(
            "'task' must name a registered task or an import path module:Name", task=key, key="task"
        )
    try:
        target = resolve_task(path, allowed)
    except UnknownTask as err:
        raise exc.quoting_cause(source.error(f"unknown task: {err}", task=key, key="task")) from err
    except TaskNotAllowed as err:
        raise exc.quoting_cause(source.error(str(err), task=key, key="task")) from err
    raw_inputs = body.get("inputs", {})
    if not isinstance(raw_inputs, Mapping):
        raise source.error("'inputs' must be a mapping of argument -> value", task=key, key="inputs")
    inputs: dict[str, _refs.Value] = {}
    for arg, value in raw_inputs.items():
        try:
            inputs[str(arg)] = _refs.parse_value(value)
        except _refs.RefSyntaxError as err:
            raise exc.quoting_cause(source.error(str(err), task=key, key=f"inputs.{arg}")) from err
    after, deciders = _parse_after(source, key, body.get("after", []), allowed)
    spec = _Task(
        key=key,
        name=_option(source, key, body, "name", str, key),
        path=path,
        target=target,
        inputs=inputs,
        after=after,
        deciders=deciders,
        retry=_option(source, key, body, "retry", int, None),
        timeout=_option(source, key, body, "timeout", float, None),
        cache=_option(source, key, body, "cache", bool, None),
        topic=_option(source, key, body, "topic", str, None),
    )
    provides = body.get("provides")
    if provides is not None:
        names = [provides] if isinstance(provides, str) else provides
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n and "." not in n for n in names)
            or len(set(names)) != len(names)
        ):
            raise source.error(
                "'provides' must be a symbol or a list of distinct symbols (stored by position), "
                "each non-empty and without '.'",
                task=key,
                key="provides",
            )
        spec.provides = provides
    if any(option in body for option in ("requires", "rebind", "inject")):
        _fold_bindings(source, spec, body)
    return spec


def _fold_bindings(source: Source, spec: _Task, body: Mapping[str, Any]) -> None:
    """Turn ``requires``, ``rebind`` and ``inject`` (as Task takes them) into inputs.

    They say with symbols what ``inputs`` says with ``${...}``: ``rebind`` maps
    an argument to the symbol that feeds it (a list pairs up with the required
    arguments in order, extra names feed the arguments so named), ``requires``
    names symbols passed as keyword arguments of the same name, and ``inject``
    gives constants keyed by symbol, as Task's ``inject`` is: a constant for
    the symbol an argument reads. Folded into inputs, they go through every
    check and build the atom an equivalent ``inputs`` would.
    """
    key = spec.key
    try:
        probe = _factory(spec)()
    except (TypeError, ValueError) as err:
        raise exc.quoting_cause(
            source.error(f"cannot make task {spec.path}: {err}", task=key, key="task")
        ) from err
    shape = reflection.inspect_callable(probe._arg_sources()[0])
    bound: dict[str, tuple[str, str]] = {}  # argument -> (symbol, where it was given)

    def bind(arg: Any, symbol: Any, where: str) -> None:
        if not isinstance(arg, str) or not arg or not isinstance(symbol, str) or not symbol:
            raise source.error(
                f"names must be non-empty strings, not {arg!r} -> {symbol!r}", task=key, key=where
            )
        if arg in spec.inputs or arg in bound:
            given = f"inputs.{arg}" if arg in spec.inputs else bound[arg][1]
            raise source.error(f"argument {arg!r} is already given by {given!r}", task=key, key=where)
        bound[arg] = (symbol, where)

    rebind = body.get("rebind")
    if isinstance(rebind, list):
        required = list(shape.required)
        for i, symbol in enumerate(rebind):
            bind(required[i] if i < len(required) else symbol, symbol, "rebind")
    elif isinstance(rebind, Mapping):
        for arg, symbol in rebind.items():
            bind(arg, symbol, f"rebind.{arg}")
    elif rebind is not None:
        raise source.error(
            "'rebind' must be a list of symbols (for the required arguments, in order) "
            "or a mapping of argument -> symbol",
            task=key,
            key="rebind",
        )
    requires = body.get("requires", [])
    if isinstance(requires, str):
        requires = [requires]
    if not isinstance(requires, list):
        raise source.error("'requires' must be a symbol or a list of them", task=key, key="requires")
    for symbol in requires:
        bind(symbol, symbol, "requires")
    inject = body.get("inject", {})
    if not isinstance(inject, Mapping):
        raise source.error("'inject' must be a mapping of symbol -> constant", task=key, key="inject")
    used: set[str] = set()
    for arg in shape.all:  # arguments no one binds read the symbol of their own name
        if arg not in spec.inputs and arg not in bound and arg in inject:
            bound[arg] = (arg, f"inject.{arg}")
    for arg, (symbol, where) in bound.items():
        if symbol in inject:
            spec.inputs[arg] = _refs.Constant(inject[symbol])
            spec.origin[arg] = f"inject.{symbol}"
            used.add(symbol)
        else:
            spec.inputs[arg] = _refs.Ref(symbol, ())
            spec.origin[arg] = where
    for symbol in inject:
        if symbol not in used and symbol in spec.inputs and symbol not in spec.origin:
            raise source.error(
                f"argument {symbol!r} is already given by 'inputs.{symbol}'", task=key, key=f"inject.{symbol}"
            )
        if symbol not in used:
            raise source.error(
                f"no argument of {spec.path} reads symbol {symbol!r} (it takes {list(shape.all)})",
                task=key,
                key=f"inject.{symbol}",
            )


def _parse_after(
    source: Source, key: str, value: Any, allowed: FactoryNames | None
) -> tuple[list[str], dict[str, tuple[Callable[..., Any], str | None]]]:
    """Read ``after:``: item keys, or ``{item: key, decider: module:function, depth: ...}`` links.

    A decider is code the spec makes flowkit import and call, so it is named by
    an import path checked against the same allow-list as tasks (``tasks=``),
    before its module is imported; registered task names are not deciders.
    """
    entries = [value] if isinstance(value, str | Mapping) else value
    if not isinstance(entries, list):
        raise source.error("'after' must be an item key, a link, or a list of them", task=key, key="after")
    after: list[str] = []
    deciders: dict[str, tuple[Callable[..., Any], str | None]] = {}
    for entry in entries:
        if isinstance(entry, str):
            after.append(entry)
            continue
        if not isinstance(entry, Mapping) or not isinstance(entry.get("item"), str):
            raise source.error(
                "an 'after' entry is an item key or a mapping "
                "{item: key, decider: module:function, depth: ...}",
                task=key,
                key="after",
            )
        unknown = [k for k in entry if k not in ("item", "decider", "depth")]
        if unknown:
            raise source.error(
                f"unknown key {unknown[0]!r} in a link; it has ['item', 'decider', 'depth']",
                task=key,
                key="after",
            )
        item = entry["item"]
        after.append(item)
        path = entry.get("decider")
        depth = entry.get("depth")
        if path is None:
            if depth is not None:
                raise source.error("a link's 'depth' needs a 'decider'", task=key, key="after")
            continue
        if not isinstance(path, str) or not path or path in registered():
            raise source.error(
                f"a decider is named by an import path module:function, not {path!r}", task=key, key="after"
            )
        try:
            decider = resolve_task(path, allowed)
        except (UnknownTask, TaskNotAllowed) as err:
            raise exc.quoting_cause(source.error(f"decider: {err}", task=key, key="after")) from err
        if isinstance(decider, type):
            raise source.error(f"decider {path!r} is a class, not a function", task=key, key="after")
        try:
            inspect.signature(decider).bind(history={})
        except TypeError as err:  # else it failed at run time, once the items before it had run
            raise exc.quoting_cause(
                source.error(
                    f"decider {path!r} cannot be called as decider(history=...): {err}", task=key, key="after"
                )
            ) from err
        except ValueError:  # no signature to read (some builtins): left to the run
            pass
        if depth is not None:
            try:
                Depth.translate(depth)
            except (TypeError, ValueError) as err:
                raise source.error(
                    f"a link's 'depth' must be one of {[d.value.lower() for d in Depth]}, not {depth!r}",
                    task=key,
                    key="after",
                ) from err
        deciders[item] = (decider, depth)
    return after, deciders


def _symbols_of(spec: _Task) -> list[str]:
    """The symbols ``spec``'s result is stored under."""
    if spec.provides is None:
        return [spec.key]
    return [spec.provides] if isinstance(spec.provides, str) else list(spec.provides)


def _collect_symbols(source: Source, parsed: _Parsed, parameters: set[str]) -> None:
    """Map every provided symbol to its task, refusing one two things would claim."""
    keys = {spec.key for spec in parsed.tasks}
    for spec in parsed.tasks:
        for symbol in _symbols_of(spec):
            other = parsed.symbols.get(symbol)
            if other is not None:
                clash = f"task {other!r} stores its result under it too"
            elif symbol in parameters:
                clash = "it is a parameter"
            elif symbol in parsed.flows:
                clash = "it is the key of a sub-flow"
            elif symbol != spec.key and symbol in keys:
                clash = "it is the key of another task"
            else:
                parsed.symbols[symbol] = spec.key
                continue
            raise source.error(
                f"symbol {symbol!r} cannot be provided: {clash}",
                task=spec.key,
                key="provides" if spec.provides is not None else None,
            )


def _where(spec: _Task, arg: str) -> str:
    """The key of the spec giving argument ``arg``, for errors."""
    return spec.origin.get(arg, f"inputs.{arg}")


def _option(source: Source, task: str, body: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = body.get(key, default)
    if value is default:
        return value
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    elif kind is int:
        ok = ok and value >= 0
    elif kind is str:
        ok = ok and bool(value)
    if not ok:
        wanted = {
            int: "a whole number of attempts (the first run included), 0 or more",
            float: "a number of seconds above 0",
            bool: "true or false",
            str: "a non-empty string",
        }[kind]
        raise source.error(f"{key!r} must be {wanted}, not {value!r}", task=task, key=key)
    return float(value) if kind is float else value


def _check_names(source: Source, specs: list[_Task]) -> dict[str, str]:
    """Refuse two tasks claiming one name, a ``retry:``'s ``<name>-retry`` included.

    The engine would refuse such a flow too, but with a bare Duplicate naming
    no file, line or task. Returns each atom name claimed -> who claims it, for
    :func:`_check_retry_names`.
    """
    seen: dict[str, str] = {}
    for spec in specs:
        claims = [(spec.name, "name", f"task {spec.key!r}")]
        if spec.retry is not None:
            claims.append((f"{spec.name}-retry", "retry", f"the retry of task {spec.key!r}"))
        for name, key, _owner in claims:
            other = seen.get(name)
            if other is not None:
                raise source.error(f"atom name {name!r} is also used by {other}", task=spec.key, key=key)
        for name, _key, owner in claims:
            seen[name] = owner
    return seen


def _check_retry_names(source: Source, parsed: _Parsed, spec_name: str, claimed: dict[str, str]) -> None:
    """Refuse a flow's retry whose name is already an atom's, the default ``<flow name>_retry`` included.

    An unnamed retry takes its name from its flow only when the flow is built, so
    without this a clash surfaced as the engine's bare Duplicate, naming no file or line.
    """
    seen = dict(claimed)
    for flow, retry in parsed.retries.items():
        flow_name = spec_name if flow is None else parsed.flows[flow].name
        name = retry.name if retry.name is not None else f"{flow_name}_retry"
        owner = "the retry of the spec's flow" if flow is None else f"the retry of flow {flow!r}"
        other = seen.get(name)
        if other is not None:
            how = (
                "its name"
                if retry.name is not None
                else f"its default name (flow name {flow_name!r} + '_retry')"
            )
            raise source.error(
                f"atom name {name!r} of {owner}, {how}, is also used by {other}; give the retry a 'name'",
                task=flow,
                key="retry.name" if retry.name is not None else "retry",
            )
        seen[name] = owner


def _check_references(source: Source, specs: list[_Task], known: set[str], parsed: _Parsed) -> None:
    for spec in specs:
        for arg, value in spec.inputs.items():
            for ref in _refs.refs_in(value):
                if ref.name in parsed.retry_symbols:
                    flow = parsed.retry_symbols[ref.name]
                    if not parsed.inside(spec.key, flow):
                        raise source.error(
                            f"{ref.text} is provided by the retry of flow {flow!r}, "
                            "which only its own tasks can read",
                            task=spec.key,
                            key=_where(spec, arg),
                        )
                    continue
                if ref.name in parsed.flows:
                    raise source.error(
                        f"{ref.text} names a sub-flow, which has no result; name one of its tasks",
                        task=spec.key,
                        key=_where(spec, arg),
                    )
                if ref.name not in known and any(s.key == ref.name for s in specs):
                    stored = _symbols_of(_task(parsed, ref.name))
                    raise source.error(
                        f"{ref.text}: task {ref.name!r} stores its result under {stored} (its provides); "
                        "reference " + ", ".join("${" + s + "}" for s in stored),
                        task=spec.key,
                        key=_where(spec, arg),
                    )
                if ref.name not in known:
                    listed = ", ".join(sorted(known))
                    raise source.error(
                        f"{ref.text} names no task or parameter (known: {listed})",
                        task=spec.key,
                        key=_where(spec, arg),
                    )
                if parsed.symbols.get(ref.name) == spec.key:
                    raise source.error(
                        f"{ref.text} refers to the task itself", task=spec.key, key=_where(spec, arg)
                    )


def _read_keys(spec: _Task, symbols: Mapping[str, str]) -> set[str]:
    """The keys of the tasks whose results ``spec``'s inputs read."""
    return {
        symbols[ref.name]
        for value in spec.inputs.values()
        for ref in _refs.refs_in(value)
        if ref.name in symbols
    }


def _check_cycles(source: Source, parsed: _Parsed, kind: str) -> list[str]:
    """Return the task keys providers first (spec order where free), or raise on a cycle."""
    specs, symbols = parsed.tasks, parsed.symbols
    order = _stable_order(parsed)
    if len(order) == len(specs):
        return order
    # Some tasks never became ready: a cycle, traced as it always was (graphlib over
    # every task's dependencies, flows expanded) so the message names the same one.
    before = _expanded_before(parsed, kind)
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for spec in specs:
        sorter.add(spec.key, *_read_keys(spec, symbols), *before[spec.key])
    try:
        sorter.prepare()
        raise AssertionError("a spec's tasks found in a cycle and in none")  # pragma: no cover
    except graphlib.CycleError as err:
        cycle: list[str] = list(err.args[1])
        path = " -> ".join(reversed(cycle))
        first = cycle[-1]
        spec = next(s for s in specs if s.key == first)
        nxt = cycle[-2]
        key = _input_naming(spec, nxt, symbols) if _reads(spec, nxt, symbols) else "after"
        raise source.error(f"the tasks form a cycle: {path}", task=first, key=key) from None


def _stable_order(parsed: _Parsed) -> list[str]:
    """A topological order of the tasks that keeps the spec's order wherever it can.

    Tasks in a cycle are left out. A sub-flow that tasks must follow stands in the
    graph as one node (a tuple, ``("flow", key)``) waiting on its tasks: done when
    its last task is, then releasing its followers at once, as edges from each of
    its tasks would, at a cost linear in the spec rather than in its tasks times
    their followers.
    """
    specs, symbols = parsed.tasks, parsed.symbols
    position = {spec.key: i for i, spec in enumerate(specs)}
    waiting_on: dict[str | tuple[str, str], set[Any]] = {}
    users: dict[str | tuple[str, str], list[str | tuple[str, str]]] = {}
    for spec in specs:
        deps: set[Any] = _read_keys(spec, symbols)
        deps.update(spec.before)
        for item in spec.after_items:
            if item in parsed.flows:
                barrier = ("flow", item)
                if barrier not in waiting_on:
                    leaves = waiting_on[barrier] = set(parsed.leaves(item))
                    for leaf in leaves:
                        users.setdefault(leaf, []).append(barrier)
                deps.add(barrier)
            else:
                deps.add(item)
        waiting_on[spec.key] = deps
        for dep in deps:
            users.setdefault(dep, []).append(spec.key)
    ready = [position[spec.key] for spec in specs if not waiting_on[spec.key]]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        key = specs[heapq.heappop(ready)].key
        order.append(key)
        finished: list[str | tuple[str, str]] = [key]
        while finished:
            node = finished.pop()
            for user in users.get(node, ()):
                waiting = waiting_on[user]
                waiting.discard(node)
                if not waiting:
                    if isinstance(user, tuple):
                        finished.append(user)  # a sub-flow done: its followers are released now
                    else:
                        heapq.heappush(ready, position[user])
    return order


def _reads(spec: _Task, name: str, symbols: Mapping[str, str]) -> bool:
    return any(
        symbols.get(ref.name) == name for value in spec.inputs.values() for ref in _refs.refs_in(value)
    )


def _input_naming(spec: _Task, name: str, symbols: Mapping[str, str]) -> str:
    for arg, value in spec.inputs.items():
        if any(symbols.get(ref.name) == name for ref in _refs.refs_in(value)):
            return _where(spec, arg)
    return "inputs"


def _factory(spec: _Task) -> Callable[..., BaseTask]:
    target = spec.target
    if isinstance(target, type):
        if issubclass(target, BaseTask):
            return lambda **kw: target(name=spec.name, **kw)
        if issubclass(target, Atom):
            raise TypeError(f"{spec.path} is an atom but not a task (retries cannot be spec tasks)")
    return lambda **kw: FunctorTask(target, name=spec.name, **kw)


def _make_atom(
    source: Source, spec: _Task, by_key: Mapping[str, _Task], made: Mapping[str, _SymbolSource]
) -> BaseTask:
    try:
        make = _factory(spec)
        probe = make()
    except (TypeError, ValueError) as err:
        raise exc.quoting_cause(
            source.error(f"cannot make task {spec.path}: {err}", task=spec.key, key="task")
        ) from err
    shape = reflection.inspect_callable(probe._arg_sources()[0])
    for arg in spec.inputs:
        if arg not in shape.all and not shape.accepts_kwargs:
            raise source.error(
                f"{spec.path} takes no argument {arg!r} (it takes {list(shape.all)})",
                task=spec.key,
                key=_where(spec, arg),
            )
    missing = [arg for arg in shape.required if arg not in spec.inputs]
    if missing:
        raise source.error(
            f"missing input(s) {missing} that {spec.path} requires", task=spec.key, key="inputs"
        )
    contract = typed.contract_of(probe)
    for arg, value in spec.inputs.items():
        _check_type(source, spec, arg, value, contract.input_type(arg), made)
    plain = all(
        isinstance(v, _refs.Constant) or (isinstance(v, _refs.Ref) and not v.path)
        for v in spec.inputs.values()
    )
    if plain:
        rebind = {a: v.name for a, v in spec.inputs.items() if isinstance(v, _refs.Ref)}
        inject = _constants(spec, shape.all, set(rebind.values()), rebind)
        atom = make(provides=_provides(spec), rebind=rebind or None, inject=inject or None)
    else:
        if spec.topic is not None:
            raise source.error(
                "a task sent to workers (topic) takes constants and whole references (${task}) only, "
                "since a worker runs the task itself",
                task=spec.key,
                key="topic",
            )
        symbols = sorted({ref.name for v in spec.inputs.values() for ref in _refs.refs_in(v)})
        atom = SpecTask(probe, spec.inputs, symbols, provides=_provides(spec))
    # Options other features read from the atom: timeouts (issue 13), caching, workers.
    if spec.timeout is not None:
        atom.timeout = spec.timeout
    if spec.cache is not None:
        atom.cache = spec.cache
    if spec.topic is not None:
        atom.worker_topic = spec.topic
    return atom


def _provides(spec: _Task) -> str | tuple[str, ...]:
    if spec.provides is None:
        return spec.key
    return spec.provides if isinstance(spec.provides, str) else tuple(spec.provides)


def _constants(spec: _Task, named: Any, referenced: set[str], rebind: dict[str, str]) -> dict[str, Any]:
    """The ``inject`` of a plain task's constants (adding to ``rebind`` where needed).

    ``inject`` is keyed by symbol, and a symbol an argument is rebound to is
    looked up there first: a constant for argument ``x`` next to another
    argument taking ``${x}`` would be handed to both. Such a constant goes
    under a symbol of its own (``<task key>:<argument>``), bound to its
    argument. So does a constant for an argument only ``**kwargs`` takes, which
    is no requirement of the task unless bound.
    """
    inject: dict[str, Any] = {}
    for arg, value in spec.inputs.items():
        if not isinstance(value, _refs.Constant):
            continue
        symbol = arg
        if arg in referenced:
            symbol = f"{spec.key}:{arg}"
            while symbol in referenced:
                symbol += "'"
            rebind[arg] = symbol
        elif arg not in named:
            rebind[arg] = symbol
        inject[symbol] = value.value
    return inject


def _check_type(
    source: Source,
    spec: _Task,
    arg: str,
    value: _refs.Value,
    wanted: Any,
    made: Mapping[str, _SymbolSource],
) -> None:
    key = _where(spec, arg)
    if isinstance(value, _refs.Constant):
        _check_constant(source, spec, key, value.value, wanted, "wrong type: ")
        return
    if isinstance(value, _refs.Interpolation):
        if not typed.satisfies(str, wanted):
            raise source.error(f"text is not {typed.type_name(wanted)}", task=spec.key, key=key)
        refs: list[_refs.Ref] = [p for p in value.parts if isinstance(p, _refs.Ref)]
    elif isinstance(value, _refs.Ref):
        refs = [value]
    else:
        refs = list(_refs.refs_in(value))
    for ref in refs:
        provider = made.get(ref.name)
        if provider is None:  # a parameter
            continue
        if isinstance(provider, _Tried):  # the values are constants: each is read as the task will
            owner = provider.owner()
            said = f"wrong type: {ref.text} takes the for_each values of the retry of {owner}, and "
            for tried in provider.values:
                found = _tried_field(source, spec, key, ref, tried, owner)
                if isinstance(value, _refs.Ref):
                    _check_constant(source, spec, key, found, wanted, said)
            continue
        what, declared = _declared(provider, made)
        for field in ref.path:
            holder, declared = declared, _field_type(declared, field)
            if declared is _NO_FIELD:
                length = _length(holder, field)
                raise source.error(
                    f"{ref.text}: {what} has no field {field!r}{length}",
                    task=spec.key,
                    key=key,
                )
        if isinstance(value, _refs.Ref) and not typed.satisfies(declared, wanted):
            raise source.error(
                f"wrong type: {ref.text} is {typed.type_name(declared)}, "
                f"argument {arg!r} wants {typed.type_name(wanted)}",
                task=spec.key,
                key=key,
            )


def _declared(provider: _Provider | _Iterated, made: Mapping[str, _SymbolSource]) -> tuple[str, Any]:
    """The words for what ``provider`` gives its readers, and its declared type (UNTYPED if unknown)."""
    if isinstance(provider, _Iterated):
        values = made.get(provider.values)  # None: a parameter, whose type is not known at load
        if not isinstance(values, _Provider):
            return provider.what(), typed.UNTYPED
        return provider.what(), typed.element_type(typed.provided_type(values.atom, values.item))
    # As the engine's check reads it: a spawner's declared Subflow says nothing of its result.
    return provider.what, typed.provided_type(provider.atom, provider.item)


def _tried_field(source: Source, spec: _Task, key: str, ref: _refs.Ref, tried: Any, owner: str) -> Any:
    """What ``ref`` reads from a for_each value ``tried``, or an error naming the field it lacks."""
    found = tried
    for field in ref.path:
        try:
            found = _refs.get_field(found, field)
        except LookupError:
            raise source.error(
                f"{ref.text}: the for_each value {short_repr(tried, 60)} of the retry of {owner} "
                f"has no field {field!r}",
                task=spec.key,
                key=key,
            ) from None
    return found


def _check_constant(source: Source, spec: _Task, key: str, value: Any, wanted: Any, said: str) -> None:
    """Refuse a constant of the spec that is no ``wanted``, its error prefixed with ``said``.

    A type no JSON or YAML value is (a ``Path``, an enum, a tuple) is not
    checked: the task makes its own of what the spec gives, as ``flowkit run
    --store`` leaves it (:mod:`flowkit._utils.json_types`).
    """
    if wanted is typed.UNTYPED or not json_representable(wanted):
        return
    try:
        # A spec is YAML or JSON data, where ``true`` is no number: a bool for an
        # ``int`` is a slip, refused as ``flowkit run --store`` does.
        typed.coerce_value(value, wanted, bool_is_number=False)
    except TypeError as err:
        raise exc.quoting_cause(source.error(f"{said}{err}", task=spec.key, key=key)) from err


def _length(declared: Any, field: str | int) -> str:
    """`` (tuple[int, str] has 2 items)`` when ``field`` is a position past a fixed tuple's end."""
    positions = typed.tuple_items(declared) if isinstance(field, int) else None
    return "" if positions is None else f" ({typed.type_name(declared)} has {len(positions)} items)"


_NO_FIELD = object()
_SCALARS = frozenset({int, float, complex, bool, str, bytes, type(None)})


def _field_type(declared: Any, field: str | int) -> Any:
    """The declared type of ``declared``'s field, UNTYPED when unknown, _NO_FIELD when absent."""
    if declared is typed.UNTYPED:
        return typed.UNTYPED
    if isinstance(field, int):
        positions = typed.tuple_items(declared)
        if positions is not None:  # tuple[int, str] or a named tuple: its length is declared
            return positions[field] if field < len(positions) else _NO_FIELD
    if not isinstance(declared, type):
        return typed.item_type(declared, field)  # a sequence's item, a mapping's value
    if declared in _SCALARS:  # no keys, no items, only the (public) attributes of the class
        readable = isinstance(field, str) and not field.startswith("_") and hasattr(declared, field)
        return typed.UNTYPED if readable else _NO_FIELD
    fields: Mapping[str, Any] | None = None
    model_fields = getattr(declared, "model_fields", None)
    if isinstance(model_fields, Mapping):  # pydantic
        fields = {name: info.annotation for name, info in model_fields.items()}
    elif dataclasses.is_dataclass(declared) or typing.is_typeddict(declared) or hasattr(declared, "_fields"):
        try:
            fields = typing.get_type_hints(declared)
        except Exception:
            return typed.UNTYPED
    if fields is None:
        return typed.UNTYPED
    if not isinstance(field, str) or field not in fields:
        return _NO_FIELD
    return fields[field]
