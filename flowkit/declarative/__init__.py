"""Flows as data: a dict, YAML or JSON spec compiled to an ordinary graph flow.

.. code-block:: yaml

    name: pricing
    tasks:
      fetch:  {task: myapp.tasks:FetchPrices, inputs: {symbol: AAPL}}
      fx:     {task: myapp.tasks:FetchRate,   inputs: {currency: EUR}}
      price:  {task: myapp.tasks:Convert,     inputs: {amount: "${fetch.close}", rate: "${fx}"}}
      notify: {task: myapp.tasks:Notify,      inputs: {text: "price is ${price}"}, after: [fx]}

``load_flow("pricing.yaml")`` returns a :class:`~flowkit.patterns.graph_flow.Flow`
(or the linear or unordered flow its ``flow:`` names, with sub-flows to any depth)
that any engine runs, persists and resumes. Every mistake in a spec is a
:class:`~flowkit.exceptions.FlowSpecError` raised by :func:`load_flow`, before
anything runs, naming the file, line, task and key. The format is described by a
JSON Schema shipped in the package (:func:`schema`, :data:`SCHEMA_PATH`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkit._utils.factories import FactoryNames
from flowkit.declarative._build import FLOW_KINDS, RETRY_CONTROLLERS, TASK_OPTIONS, build_flow, engine_options
from flowkit.declarative._registry import register, registered, unregister
from flowkit.declarative._source import TOO_DEEP, Source, read_spec
from flowkit.exceptions import FlowSpecError
from flowkit.flow import Flow

__all__ = [
    "FLOW_KINDS",
    "RETRY_CONTROLLERS",
    "SCHEMA_PATH",
    "TASK_OPTIONS",
    "FlowSpecError",
    "LoadedSpec",
    "is_spec_path",
    "load_flow",
    "load_spec",
    "register",
    "registered",
    "schema",
    "unregister",
]

#: The JSON Schema of the spec format, shipped as package data.
SCHEMA_PATH = Path(__file__).with_name("flow-spec.schema.json")

_SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def load_flow(spec: Any, *, tasks: Iterable[str] | None = None) -> Flow:
    """Build the flow a spec describes.

    Args:
        spec: a mapping, or the path (str or path-like) of a ``.yaml``/``.yml``
            or ``.json`` file (YAML needs ``pip install 'flowkit[declarative]'``).
        tasks: for a spec you did not write, the only import paths its tasks
            may name: dotted names (``"myapp.tasks.Fetch"``) or module prefixes
            ending in a dot (``"myapp.tasks."``), as a conductor's factories.
            Registered names are always allowed; ``[]`` allows only them. The
            default, None, lets a spec import and call anything.

    Returns:
        An ordinary flow: a graph flow unless the spec's ``flow:`` says
        ``linear`` or ``unordered``, one atom per spec task, named after the
        task, and one flow per sub-flow.

    Raises:
        FlowSpecError: the spec cannot be read or is wrong, or names a task
            ``tasks`` does not allow (refused before its module is imported);
            nothing has run.
        TypeError: ``tasks`` is a single string or holds something else than
            non-empty strings.
    """
    allowed = None if tasks is None else FactoryNames(tasks)
    source = read_spec(spec)
    try:
        return build_flow(source, allowed)
    except RecursionError:  # a value nested a few hundred levels deep, read but not walkable
        raise source.error(TOO_DEEP) from None


@dataclass(frozen=True, slots=True)
class LoadedSpec:
    """A spec's flow and the engine it asks for (its ``engine:`` key).

    Attributes:
        flow: what :func:`load_flow` returns.
        engine: the engine name or URI the spec names, or None.
        engine_options: the other keys of ``engine:`` (``max_workers``...).
    """

    flow: Flow
    engine: str | None = None
    engine_options: dict[str, Any] = field(default_factory=dict)
    #: Where the spec was read from, for :meth:`error`.
    source: Source | None = field(default=None, repr=False, compare=False)

    def error(self, message: str, key: str = "engine") -> FlowSpecError:
        """A :class:`~flowkit.exceptions.FlowSpecError` naming the spec's file and the line of ``key``.

        For a setting found wrong only once used: an engine the spec names that
        does not exist, or an option its engine refuses, is the spec's mistake
        and is reported at the spec's line, as load errors are.
        """
        if self.source is None:
            return FlowSpecError(message, key=key)
        return self.source.error(message, key=key)

    def engine_kwargs(self, engine: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for :func:`flowkit.engines.load`: the spec's, under the caller's.

        ``engine`` (else the spec's, else ``"serial"``) and ``overrides`` win over
        what the spec says, so the code running a spec keeps the last word.
        """
        return {"engine": engine or self.engine or "serial", **self.engine_options, **overrides}


def load_spec(spec: Any, *, tasks: Iterable[str] | None = None) -> LoadedSpec:
    """Build a spec's flow and read the engine it asks for; see :func:`load_flow`.

    Use it to run a spec as its author meant::

        loaded = declarative.load_spec("nightly.yaml")
        engines.load(loaded.flow, **loaded.engine_kwargs(max_workers=8)).run()
    """
    allowed = None if tasks is None else FactoryNames(tasks)
    source = read_spec(spec)
    try:
        flow = build_flow(source, allowed)
    except RecursionError:
        raise source.error(TOO_DEEP) from None
    name, options = engine_options(source)
    return LoadedSpec(flow, name, options, source)


def is_spec_path(target: str) -> bool:
    """Whether a command-line TARGET names a spec file (by its suffix) rather than a factory."""
    return target.lower().endswith(_SPEC_SUFFIXES)


def schema() -> dict[str, Any]:
    """The JSON Schema of the spec format, as a dict."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded
