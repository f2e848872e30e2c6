"""Describe a failed atom for a log: its traceback and what led up to it.

:class:`FailureFormatter` is what :class:`~flowkit.listeners.logging.DynamicLoggingListener`
uses to turn a task's :class:`~flowkit.types.failure.Failure` into log text. When the
atom failed while executing, the text lists the atoms that ran before it (its
predecessors in the execution graph, most recent first) with their state, the
arguments they were given and the results they produced, so a log reader sees the
inputs that led to the failure without opening the persistence backend::

    2 predecessors (most recent first):
      Atom 'fetch' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {'url': ...}, 'provides': ...}
      |__Flow 'boot'

Inputs and outputs can be large or secret: ``hide_inputs_outputs_of`` leaves them
out for the atoms named, and ``mask_inputs_keys``/``mask_outputs_keys`` replace the
values of those keys (at any depth of dicts and lists) with ``'***'``. Subclass and
override :meth:`FailureFormatter.format` to change what is logged for some
failures (Cinder, for one, logs expected errors without a traceback).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterable
from typing import Any

from flowkit import exceptions as exc
from flowkit import states
from flowkit._utils.masking import MASK
from flowkit.engines import _compiler
from flowkit.engines.base import Engine
from flowkit.types import tree
from flowkit.types.failure import Failure

__all__ = ["FailureFormatter"]

#: What :meth:`FailureFormatter.format` returns as ``exc_info``: looser than
#: :data:`flowkit.types.failure.ExcInfo`, so that a formatter of the user's may return
#: any ``(type, value, traceback)`` tuple it has (the logging module takes any).
ExcInfo = tuple[Any, ...]
#: Values looked up once per format call, per kind then atom name: ``(value, found)``.
_Cache = dict[str, dict[str, tuple[Any, bool]]]


def _cached(cache: _Cache, kind: str, atom_name: str, fetch: Callable[[], Any]) -> tuple[Any, bool]:
    """Return ``(value, found)`` for ``kind`` of ``atom_name``, fetching it at most once."""
    per_kind = cache.setdefault(kind, {})
    if atom_name not in per_kind:
        try:
            per_kind[atom_name] = (fetch(), True)
        except (exc.StorageFailure, exc.NotFound):
            per_kind[atom_name] = (None, False)
    return per_kind[atom_name]


def _kind_name(node: _compiler.Node) -> str:
    if node.kind == _compiler.RETRY:
        return "retry"
    if node.kind == _compiler.TASK:
        return "task"
    return "flow"


def _hierarchy(compilation: _compiler.Compilation) -> tree.Node:
    """The flow tree as :class:`~flowkit.types.tree.Node` objects (items: flows and atoms)."""
    nodes = compilation.nodes

    def build(scope: _compiler.FlowScope) -> tree.Node:
        here = tree.Node(scope.flow, kind="flow")
        if scope.retry >= 0:
            here.add(tree.Node(nodes[scope.retry].atom, kind="retry"))
        for child in scope.children:
            if isinstance(child, int):
                if child != scope.retry:
                    here.add(tree.Node(nodes[child].atom, kind=_kind_name(nodes[child])))
            else:
                here.add(build(child))
        return here

    return build(compilation.root)


def _predecessor_tree(compilation: _compiler.Compilation, atom: Any) -> tree.Node:
    """A tree rooted at ``atom`` whose children are what ran right before it, recursively.

    A flow's end is not shown (it is not a step anyone ran); its own predecessors
    are. A flow's start is shown as the flow.
    """
    nodes = compilation.nodes
    index = next(node.index for node in compilation.atoms if node.atom is atom)
    root = tree.Node(atom, kind=_kind_name(nodes[index]))
    stack: list[tuple[tree.Node, int]] = [(root, index)]
    while stack:
        parent, at = stack.pop()
        for pred in nodes[at].pred:
            node = nodes[pred]
            if node.kind == _compiler.FLOW_END:
                stack.extend((parent, p) for p in node.pred)
                continue
            item = node.atom if node.atom is not None else node.scope.flow
            child = tree.Node(item, kind=_kind_name(node))
            parent.add(child)
            stack.append((child, pred))
    return root


class FailureFormatter:
    """Formats a failure together with what the engine knows about the failed atom.

    Args:
        engine: The engine that ran the atom (its storage and compiled graph are read).
        hide_inputs_outputs_of: Names of atoms whose arguments and results are never shown.
        mask_inputs_keys: Keys whose values are masked in the arguments shown.
        mask_outputs_keys: Keys whose values are masked in the results shown.
    """

    def __init__(
        self,
        engine: Engine,
        hide_inputs_outputs_of: Iterable[str] = (),
        mask_inputs_keys: Iterable[str] = (),
        mask_outputs_keys: Iterable[str] = (),
    ) -> None:
        self._engine = engine
        self._hide_inputs_outputs_of = frozenset(hide_inputs_outputs_of)
        self._mask_inputs_keys = frozenset(mask_inputs_keys)
        self._mask_outputs_keys = frozenset(mask_outputs_keys)

    def _mask_keys(self, data: Any, mask_keys: Iterable[str]) -> Any:
        """Return ``data`` with the value of every key in ``mask_keys`` replaced by ``'***'``."""
        keys = mask_keys if isinstance(mask_keys, (set, frozenset)) else frozenset(mask_keys)
        if isinstance(data, dict):
            return {k: MASK if k in keys else self._mask_keys(v, keys) for k, v in data.items()}
        if isinstance(data, list):
            return [self._mask_keys(item, keys) for item in data]
        return data

    def _format_node(self, storage: Any, cache: _Cache, node: tree.Node) -> str:
        """Return one line about a node of the predecessor tree: a flow or an atom."""
        kind = node.metadata.get("kind")
        if kind == "flow":
            return f"Flow '{node.item.name}'"
        if kind not in ("task", "retry"):
            raise TypeError(f"Unable to format node, unknown node kind '{kind}' encountered")
        atom = node.item
        name = atom.name
        attrs: dict[str, Any] = {}
        intention, found = _cached(cache, "intentions", name, lambda: storage.get_atom_intention(name))
        if found:
            attrs["intention"] = intention
        state, found = _cached(cache, "states", name, lambda: storage.get_atom_state(name))
        if found:
            attrs["state"] = state
        if name not in self._hide_inputs_outputs_of:
            fetch_args = functools.partial(
                storage.fetch_mapped_args, atom.rebind, atom_name=name, optional_args=atom.optional
            )
            requires, found = _cached(cache, "requires", name, fetch_args)
            if found:
                attrs["requires"] = self._mask_keys(requires, self._mask_inputs_keys)
            provides, found = _cached(cache, "provides", name, lambda: storage.get_execute_result(name))
            if found:
                attrs["provides"] = self._mask_keys(provides, self._mask_outputs_keys)
        return f"Atom '{name}' {attrs}" if attrs else f"Atom '{name}'"

    def format(self, fail: Failure, atom_matcher: Callable[[tree.Node], bool]) -> tuple[ExcInfo | None, str]:
        """Return ``(exc_info, details)`` for logging ``fail``.

        Args:
            fail: The failure to describe.
            atom_matcher: Given a :class:`~flowkit.types.tree.Node` of the flow tree
                (``node.item`` is a flow or an atom), tells whether it is the atom
                that failed.

        Returns:
            The failure's ``exc_info`` tuple (None when the exception is not live,
            for example one raised on a remote worker: its recorded traceback is
            then part of ``details``), and text about the failed atom's
            predecessors when it failed while executing (else empty).
        """
        buff = io.StringIO()
        exc_info = tuple(fail.exc_info) if fail.exc_info is not None else None
        if exc_info is None:
            buff.write(fail.pformat(traceback=True) + "\n")
        storage = getattr(self._engine, "storage", None)
        compilation = getattr(self._engine, "compilation", None)
        if storage is None or compilation is None:
            return exc_info, buff.getvalue()
        found = _hierarchy(compilation).find_first_match(atom_matcher)
        if found is None or found.metadata.get("kind") == "flow":
            return exc_info, buff.getvalue()
        atom = found.item
        try:
            intention = storage.get_atom_intention(atom.name)
        except (exc.StorageFailure, exc.NotFound):
            intention = None
        if intention != states.EXECUTE:
            return exc_info, buff.getvalue()
        rooted = _predecessor_tree(compilation, atom)
        buff.write(f"{rooted.child_count(only_direct=False)} predecessors (most recent first):\n")
        cache: _Cache = {}
        label = functools.partial(self._format_node, storage, cache)
        buff.write("\n".join(child.pformat(stringify_node=label, starting_prefix="  ") for child in rooted))
        return exc_info, buff.getvalue()
