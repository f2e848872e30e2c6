"""The flow: a named structure of atoms and nested flows, and how they relate.

A flow only describes: which children it has (:meth:`Flow.__iter__`,
:meth:`Flow.iter_nodes`), which must run before which (:meth:`Flow.iter_links`,
each link carrying a metadata dict keyed by the ``LINK_*`` constants below),
and what symbols it needs from outside and gives back (:attr:`Flow.requires`,
:attr:`Flow.provides`). The patterns in ``flowkit.patterns`` decide the
links; the engine's compiler turns the tree into one execution graph.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any, Self, TypeAlias, cast

from flowkit import exceptions as exc
from flowkit._utils import reflection
from flowkit._utils.class_caches import make_room
from flowkit.atom import Atom
from flowkit.retry import Retry

if TYPE_CHECKING:
    import weakref

__all__ = [
    "LINK_DECIDER",
    "LINK_DECIDER_DEPTH",
    "LINK_INVARIANT",
    "LINK_MANUAL",
    "LINK_REASONS",
    "LINK_RETRY",
    "Flow",
    "FlowItem",
]

#: Link metadata key: the link keeps the pattern's order (always ``True``).
LINK_INVARIANT = "invariant"
#: Link metadata key: the user made the link (``graph_flow.Flow.link``).
LINK_MANUAL = "manual"
#: Link metadata key: the compiler made the link to put a retry first.
LINK_RETRY = "retry"
#: Link metadata key: the set of symbols the target needs from the source.
LINK_REASONS = "reasons"
#: Link metadata key: callable deciding at run time whether the target runs.
LINK_DECIDER = "decider"
#: Link metadata key: the :class:`~flowkit.deciders.Depth` a decider's "no" reaches.
LINK_DECIDER_DEPTH = "decider_depth"

_PATTERNS_PREFIX = "flowkit.patterns."

#: Classes whose instances may be flow items, remembered: the ABC isinstance
#: check otherwise costs about a microsecond per item added.
_ITEM_CLASSES: set[type] = set()

#: Flow classes whose symbols (``provides``, ``requires``) change only through
#: their own methods, each of which tells the flows containing the changed one
#: (:meth:`Flow._touched`). A graph flow indexes nested flows of these classes
#: once and re-reads one only when told it changed; a nested flow of any other
#: class (a user's subclass may compute its symbols as it likes) is re-read at
#: every add, as TaskFlow re-reads every item. Exact classes, not subclasses.
_TRACKED: set[type] = set()

#: Item class -> whether it is a flow class (an ABC isinstance check costs more).
_IS_FLOW: dict[type, bool] = {}

FlowItem: TypeAlias = "Atom | Flow"
"""What a flow may contain: atoms (tasks, not retries) and other flows."""


class Flow(abc.ABC):
    """Base of the flow patterns: a named, ordered collection of atoms and flows.

    Args:
        name: a human-readable name (not required to be unique).
        retry: the :class:`~flowkit.retry.Retry` that decides what happens when
            something in this flow fails; an unnamed retry is renamed
            ``<name>_retry``.

    Raises:
        flowkit.exceptions.InvalidFlowItem: ``retry`` is not an atom. An atom that is
            not a :class:`~flowkit.retry.Retry` is accepted here, as TaskFlow does (its
            ``requires`` and ``provides`` count as the flow's), and refused when the flow
            is compiled, before anything runs.
    """

    #: The flows this one was added to (weakly: a child keeps no parent alive), told
    #: when it changes; None until it is added somewhere (most flows never are).
    _parents: list[weakref.ref[Flow]] | None = None

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        self._name = str(name)
        if retry is not None:
            if not isinstance(retry, Atom):
                raise exc.InvalidFlowItem(
                    f"the retry of flow '{self._name}' must be a flowkit.retry.Retry, not {retry!r}",
                    flow=self._name,
                    item=retry,
                )
            if isinstance(retry, Retry):
                retry._adopt_flow_name(self._name)
        self._retry = retry

    @property
    def name(self) -> str:
        """The flow's name."""
        return self._name

    @property
    def retry(self) -> Retry | None:
        """The retry controlling this flow, or ``None``."""
        return self._retry

    @abc.abstractmethod
    def add(self, *items: FlowItem) -> Self:
        """Add atoms and flows to this flow; returns the flow, for chaining."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """How many direct children the flow has."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[FlowItem]:
        """Yield the direct children."""

    @abc.abstractmethod
    def iter_nodes(self) -> Iterator[tuple[FlowItem, dict[str, Any]]]:
        """Yield ``(child, metadata)`` for each direct child."""

    @abc.abstractmethod
    def iter_links(self) -> Iterator[tuple[FlowItem, FlowItem, dict[str, Any]]]:
        """Yield ``(u, v, metadata)``: child ``v`` runs after child ``u`` (and reverts before it)."""

    @property
    @abc.abstractmethod
    def requires(self) -> frozenset[str]:
        """Symbols the flow needs that nothing inside it provides first."""

    @property
    def provides(self) -> frozenset[str]:
        """Every symbol the flow's retry and children provide."""
        provided: set[str] = set()
        if self._retry is not None:
            provided.update(self._retry.provides)
        for item in self:
            provided.update(item.provides)
        return frozenset(provided)

    def _check_item(self, item: object) -> None:
        """Raise unless ``item`` may be added as a child of this flow.

        A retry is accepted here, as TaskFlow does, and refused when the flow is
        compiled (retries are given as ``retry=``).

        An item may provide what the flow's retry provides or requires, as in
        TaskFlow: validation reports a retry requirement nobody outside gives.

        Raises:
            flowkit.exceptions.InvalidFlowItem: not an atom or flow, or this flow itself.
        """
        cls = type(item)
        if cls not in _ITEM_CLASSES:
            if not isinstance(item, (Atom, Flow)):
                raise self._not_an_item(item)
            make_room(_ITEM_CLASSES)
            _ITEM_CLASSES.add(cls)
        if item is self:
            message = f"flow '{self._name}' cannot contain itself"
            raise exc.InvalidFlowItem(message, flow=self._name, item=item)

    def _not_an_item(self, item: object) -> exc.InvalidFlowItem:
        """The error for adding ``item``, neither an atom nor a flow.

        Worded as TaskFlow's, which accepts the item and fails when the flow is
        compiled; flowkit refuses it at once and then says which flow it was.
        """
        return exc.InvalidFlowItem(
            f"Unknown object '{item}' ({type(item)}) requested to compile "
            f"(flow '{self._name}' can only contain atoms and flows)",
            flow=self._name,
            item=item,
        )

    def _check_items(self, items: Collection[object]) -> None:
        """Raise as :meth:`_check_item` would for the first bad one of ``items``.

        Items of classes already seen need no call each: one pass over their classes
        tells (a fan-out adds a thousand items of one class at once).
        """
        if self in items or not _ITEM_CLASSES.issuperset(map(type, items)):
            for item in items:
                self._check_item(item)

    def _adopt(self, child: FlowItem) -> None:
        """Note that ``child`` was added to this flow: if it is a flow, it tells this one when it changes."""
        cls = type(child)
        is_flow = _IS_FLOW.get(cls)
        if is_flow is None:
            make_room(_IS_FLOW)
            is_flow = _IS_FLOW[cls] = issubclass(cls, Flow)
        if is_flow:
            import weakref  # only once flows are nested (a one-task run never imports it)

            nested = cast("Flow", child)
            parents = nested._parents
            if parents is None:
                parents = nested._parents = []
            elif any(ref() is self for ref in parents):
                return
            parents.append(weakref.ref(self))

    def __getstate__(self) -> dict[str, Any]:
        """The flow's state for pickle and copy, without its parents (weak references).

        A copy's parents are the copies of its parents, which adopt it again as
        they are restored (see :meth:`__setstate__`).
        """
        state = self.__dict__.copy()
        state.pop("_parents", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for child in self._children():
            self._adopt(child)

    def _touched(self) -> None:
        """Tell every flow containing this one (at any depth) that its symbols may have changed.

        Called after each change of this flow's children, links or visible items.
        Each containing flow is told once, even if flows were nested in a loop.
        """
        if self._parents is None:
            return
        told: set[int] = {id(self)}
        pending: list[Flow] = [self]
        while pending:
            changed = pending.pop()
            for ref in changed._parents or ():
                parent = ref()
                if parent is not None and id(parent) not in told:
                    told.add(id(parent))
                    parent._child_changed(changed)
                    pending.append(parent)

    def _child_changed(self, child: Flow) -> None:  # noqa: B027 - a hook, empty by default
        """Hook: ``child``, a flow directly in this one, changed (graph flows re-read it)."""

    def _children(self) -> Collection[FlowItem]:
        """Every direct child, in no particular order (for :func:`fully_tracked`)."""
        return list(self)

    def _display_class(self) -> str:
        name = reflection.get_class_name(self)
        return name.removeprefix(_PATTERNS_PREFIX)

    def __str__(self) -> str:
        return f'"{self._display_class()}: {self._name}(len={len(self)})"'

    def __repr__(self) -> str:
        retry = f" retry={self._retry.name!r}" if self._retry is not None else ""
        return f"<{self._display_class()} {self._name!r} len={len(self)}{retry}>"


class _OrderedItems(Flow):
    """Shared body of the linear and unordered patterns: an insertion-ordered item set.

    Subclasses say how the items are ordered (:meth:`iter_links`) and what the flow
    needs from outside (:attr:`requires`). Adding an item twice does nothing.
    """

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        super().__init__(name, retry)
        # An insertion-ordered set (items carry no metadata of their own).
        self._items: dict[FlowItem, None] = {}

    def add(self, *items: FlowItem) -> Self:
        """Add items (all are checked first: on an error nothing is added).

        Raises:
            flowkit.exceptions.InvalidFlowItem: an item is not an atom or flow.
        """
        for item in items:
            self._check_item(item)
        known = self._items
        size = len(known)
        is_flow = _IS_FLOW.get
        for item in items:
            if item not in known:
                known[item] = None
                if is_flow(type(item)) is not False:  # a flow, or a class not seen yet
                    self._adopt(item)
        if self._parents is not None and len(known) != size:
            self._touched()
        return self

    def _children(self) -> Collection[FlowItem]:
        return self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[FlowItem]:
        return iter(self._items)

    def iter_nodes(self) -> Iterator[tuple[FlowItem, dict[str, Any]]]:
        for item in self._items:
            yield item, {}


def fully_tracked(item: Flow) -> bool:
    """Tell whether ``item`` and every flow nested in it are of a tracked class.

    Only then does every change of its symbols reach the flows containing it
    through :meth:`Flow._touched` (see ``_TRACKED``).
    """
    pending: list[Flow] = [item]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if type(current) not in _TRACKED:
            return False
        seen.add(id(current))
        for child in current._children():
            if isinstance(child, Flow) and id(child) not in seen:
                pending.append(child)
    return True
