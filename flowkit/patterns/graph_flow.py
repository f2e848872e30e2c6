"""Graph flow: items run in the order their symbols and explicit links demand.

When an item is added, its requirements are matched to the symbols other items
provide, and a link is made from each provider to the item that needs it (and
from the new item to earlier items that were still waiting for what it
provides). :meth:`Flow.link` adds links by hand, optionally with a decider.
Cycles are refused and leave the flow as it was.

The graph is kept in plain dicts (successors and predecessors per node) rather
than networkx, so importing flowkit stays cheap. Atoms' provided and required
symbols are indexed, so adding to a large graph does not rescan every node.
An atom's symbols may be set by hand after it was added: TaskFlow, which reads
every item at each add, sees that at the next add, and so does a graph flow,
from the edits noted in :mod:`flowkit.atom` (it moves an edited atom of its own in
its indexes). Nested flows may still grow after being added: those of flowkit's
own patterns (all the way down) are indexed too and re-read only when they tell
the graph they changed or an atom was edited; any other nested flow is re-read
at every add.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from array import array
from collections import deque
from collections.abc import Collection, Iterable, Iterator
from typing import Any, NamedTuple, Self

from flowkit import atom as atom_mod
from flowkit import deciders, flow
from flowkit import exceptions as exc
from flowkit._utils.class_caches import make_room
from flowkit._utils.gc_pause import gc_paused
from flowkit.atom import Atom, _result_names
from flowkit.flow import FlowItem
from flowkit.retry import Retry

__all__ = ["Flow", "TargetedFlow"]

Meta = dict[str, Any]
#: What a graph flow keeps for a link: its metadata, or, for a link made for one
#: symbol and nothing else yet, that symbol alone (its metadata would be
#: ``{LINK_REASONS: {symbol}}``: a dict and a set, about 400 bytes a link, made
#: only when the link gets a second reason, is linked by hand or handed out).
LinkData = Meta | str

#: From this many items in one add, the cyclic garbage collector is paused meanwhile.
_BULK = 1000


class _ItemKind(enum.Enum):
    """How :meth:`Flow._index` reads an item of some class."""

    FLOW = "flow"
    ATOM = "atom"  # an atom whose class overrides ``provides``
    STOCK_ATOM = "stock atom"  # an atom of the stock ``provides`` (read from ``save_as``)


#: Item class -> its kind (ABC isinstance checks are slow; classes are few).
_ITEM_KINDS: dict[type, _ItemKind] = {}
#: Read as module globals in the hot path (an enum class's attribute costs more).
_FLOW_ITEM, _STOCK_ATOM = _ItemKind.FLOW, _ItemKind.STOCK_ATOM


def _item_kind(cls: type) -> _ItemKind:
    if not issubclass(cls, Atom):
        return _ItemKind.FLOW
    return _ItemKind.STOCK_ATOM if cls.provides is Atom.provides else _ItemKind.ATOM


class _NumberedLinks(NamedTuple):
    """A graph flow's links as numbers, for the compiler (see ``Flow._numbered_links``)."""

    #: Link ``k`` goes from the item at position ``sources[k]`` ...
    sources: array[int]
    #: ... to the one at ``targets[k]``.
    targets: array[int]
    #: The symbol link ``k`` was made for (the first, when its target needs
    #: several from its source), or None for a link made by hand.
    symbols: list[str | None]
    #: Every item is an atom whose provided symbols are its ``save_as`` names, so
    #: a link made for a symbol comes from the item whose ``save_as`` has it.
    plain: bool


def _copy_meta(meta: LinkData) -> Meta:
    if isinstance(meta, str):
        return {flow.LINK_REASONS: {meta}}
    copied = dict(meta)
    reasons = copied.get(flow.LINK_REASONS)
    if reasons is not None:
        copied[flow.LINK_REASONS] = set(reasons)
    return copied


class Flow(flow.Flow):
    """Run items in an order that respects symbol dependencies and explicit links.

    A link ``u -> v`` means ``v`` runs after ``u`` and is reverted before it.

    Args:
        name: the flow's name.
        retry: an optional :class:`~flowkit.retry.Retry` for this flow.
    """

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        super().__init__(name, retry)
        # Every item, with its insertion number: the flow's one record of membership.
        self._order: dict[FlowItem, int] = {}
        # Items' metadata, made when iter_nodes first hands it out: no item carries an
        # empty dict it never shows (64 bytes and a dict entry per atom in a big flow).
        # Kept once made, so a caller's changes stay with that item, as in TaskFlow.
        self._node_meta: dict[FlowItem, Meta] = {}
        # Links both ways: each link's data (see LinkData) is one object, under both ends.
        self._succ: dict[FlowItem, dict[FlowItem, LinkData]] = {}
        self._pred: dict[FlowItem, dict[FlowItem, LinkData]] = {}
        # Items by insertion number (the values of _order, as positions); its length
        # is the number the next item gets.
        self._items: list[FlowItem] = []
        # Symbol indexes over atom children only (nested flows are re-read). A symbol's
        # providers are kept as insertion numbers (the ints _order holds: no new ones),
        # the first one alone in _providers: linking an item from its provider then
        # reads the number the numbered link needs from the one entry it looks up,
        # not from a list and then _order (each a cache miss in a big flow), and a
        # symbol costs no list. The rare further providers of a symbol (legal while
        # nothing requires it) wait in _also_provided, in insertion order.
        self._providers: dict[str, int] = {}
        self._also_provided: dict[str, list[int]] = {}
        # Atoms that may still wait for a symbol, by the symbols they require: those
        # added with a requirement no provider then in the flow met (or with links
        # from providers not asked for). An atom whose every requirement was linked
        # from its provider as it was added waits for nothing ever after (links and
        # providers stay, so those providers stay its ancestors), so a flow built
        # providers first keeps no list per symbol here.
        self._requirers: dict[str, list[FlowItem]] = {}
        # Nested flows, in insertion order. Those fully tracked (see flow.fully_tracked)
        # are indexed by symbol like atoms, from the symbols read when they were added
        # or last changed (_sub_symbols); each tells this flow when it changes (it is
        # then in _stale until re-read at the next add). The others (_opaque) are read
        # afresh at every add, as TaskFlow reads every item.
        self._subflows: dict[FlowItem, None] = {}
        self._sub_symbols: dict[FlowItem, tuple[frozenset[str], frozenset[str]]] = {}
        self._sub_providers: dict[str, dict[FlowItem, None]] = {}
        self._sub_requirers: dict[str, dict[FlowItem, None]] = {}
        self._opaque: dict[FlowItem, None] = {}
        self._stale: dict[FlowItem, None] = {}
        # How many atoms' symbols had been set by hand (atom._symbol_edits) when this
        # flow last caught up with such edits (see _catch_up).
        self._edits_seen = atom_mod._symbol_edits.count
        # Every link again as two numbers (its ends' insertion numbers, in the order
        # the links were made), in flat arrays: what the compiler reads to wire a big
        # graph without looking each item up, visiting memory in order instead of
        # hopping between scattered dicts (a random DAG of 100,000 items otherwise
        # spends most of its compile time waiting on cache misses). 4-byte numbers:
        # a flow of 2**31 items is out of reach anyway. And the symbol each link was
        # made for (None for a hand link), which the compiler trusts for flows of
        # plain atoms (see _NumberedLinks.plain).
        self._link_from = array("i")
        self._link_to = array("i")
        self._link_symbol: list[str | None] = []
        # Whether every item ever added is an atom of the stock ``provides``.
        self._plain = True
        # Whether every link goes from an item added earlier to one added later
        # (the usual case: providers first). Insertion order is then already a
        # dependency order, and iter_nodes need not sort. Never set back once a
        # link went backwards (a removed link leaves it False: sorting is safe).
        self._forward = True
        # Whether a link was ever given a decider (the compiler reads no link's
        # metadata while none was: a big graph's links are many).
        self._decided = False

    # -- building --------------------------------------------------------------

    def _not_an_item(self, item: object) -> exc.InvalidFlowItem:
        """TaskFlow's graph flow fails reading the item's ``requires``: an AttributeError."""
        return exc.InvalidGraphFlowItem(
            f"'{type(item).__name__}' object has no attribute 'requires' "
            f"(flow '{self.name}' can only contain atoms and flows, not {item!r})",
            flow=self.name,
            item=item,
        )

    def add(self, *nodes: FlowItem, resolve_requires: bool = True, resolve_existing: bool = True) -> Self:
        """Add items, linking them to the items they share symbols with.

        Args:
            nodes: atoms or flows; ones already in the flow are skipped.
            resolve_requires: link each new item from the item that provides
                each symbol it requires.
            resolve_existing: link each new item to items already here that
                still wait for a symbol it provides.

        Raises:
            flowkit.exceptions.InvalidFlowItem: an item is not an atom or flow.
            flowkit.exceptions.AmbiguousDependency: several items provide a
                symbol a new item requires.
            flowkit.exceptions.DependencyFailure: the links would form a cycle.
            In every case the flow is left unchanged.
        """
        fresh = dict.fromkeys(nodes)
        self._check_items(fresh)
        known = self._order
        if known and not known.keys().isdisjoint(fresh):
            fresh = {node: None for node in fresh if node not in known}
        if not fresh:
            return self
        if len(fresh) < _BULK:
            return self._add_fresh(fresh, resolve_requires, resolve_existing)
        # A big batch builds a big long-lived graph: the collector would only walk
        # it again and again while it grows (nothing in it is garbage).
        with gc_paused():
            return self._add_fresh(fresh, resolve_requires, resolve_existing)

    def _add_fresh(self, fresh: dict[FlowItem, None], resolve_requires: bool, resolve_existing: bool) -> Self:
        """Add items not in the flow yet (see :meth:`add`)."""
        from_retry = self._retry.provides if self._retry is not None else frozenset()
        if self._edits_seen != atom_mod._symbol_edits.count:
            self._catch_up()
        if self._stale:
            self._reread_subflows()
        waiting = self._still_waiting(fresh, from_retry) if resolve_existing else {}
        order, succ, pred = self._order, self._succ, self._pred
        counter = started = len(self._items)
        links_before = len(self._link_from)
        subflows_before = len(self._subflows)
        self._items.extend(fresh)
        try:
            for node in fresh:
                order[node] = counter
                succ[node] = {}
                pred[node] = {}
                # Whether it can never wait for a symbol (see _requirers).
                met = not node.requires or (
                    resolve_requires and self._resolve_requires(node, counter, from_retry, waiting)
                )
                # Indexed at once (after its own requirements were resolved), so the
                # items after it in this add find it as they find earlier ones.
                self._index(node, counter, met)
                counter += 1
                if resolve_existing and waiting:
                    self._resolve_existing(node, waiting)
            # As in TaskFlow, cycles are looked for once everything is linked (so
            # an ambiguity found on the way is what gets reported). The graph was
            # acyclic before, so any cycle goes through a new node: one walk over
            # what the new nodes reach tells, and only then is the cycle traced.
            # No walk at all while every link points forward in insertion order:
            # such links cannot close a cycle.
            if not self._forward and self._has_cycle_from(fresh):
                for node in fresh:
                    self._check_no_cycle(node)
        except BaseException:
            for node in fresh:
                self._remove_node(node)
            # Numbers stay dense (an item's number is its place in insertion order)
            # and the numbered links stay those of the dicts.
            del self._items[started:]
            del self._link_from[links_before:]
            del self._link_to[links_before:]
            del self._link_symbol[links_before:]
            raise
        if len(self._subflows) != subflows_before:
            # The nested flows just added (the last ones _index entered) will tell this one of changes.
            for sub in itertools.islice(self._subflows, subflows_before, None):
                self._adopt(sub)
        self._changed()
        if self._parents is not None:
            self._touched()
        return self

    def _still_waiting(
        self, fresh: Iterable[FlowItem], from_retry: frozenset[str]
    ) -> dict[str, list[FlowItem]]:
        """Map each symbol the new items offer to the existing items still missing it."""
        if not self._requirers and not self._subflows:
            return {}  # no existing item requires anything (a first add, say)
        offered: set[str] = set()
        for node in fresh:
            offered.update(node.provides)
        offered.difference_update(from_retry)
        if not offered:
            return {}
        candidates: dict[FlowItem, None] = {}
        sub_requirers = self._sub_requirers
        for value in offered:
            candidates.update(dict.fromkeys(self._requirers.get(value, ())))
            subs = sub_requirers.get(value)
            if subs:
                candidates.update(subs)
        candidates.update(dict.fromkeys(sub for sub in self._opaque if sub.requires & offered))
        waiting: dict[str, list[FlowItem]] = {}
        for node in sorted(candidates, key=self._order.__getitem__):
            for value in sorted(self._unsatisfied(node, from_retry, node.requires & offered)):
                waiting.setdefault(value, []).append(node)
        return waiting

    def _resolve_requires(
        self, node: FlowItem, at: int, from_retry: frozenset[str], waiting: dict[str, list[FlowItem]]
    ) -> bool:
        """Link ``node`` (numbered ``at``) from the items providing what it requires.

        Returns:
            Whether a provider was found for every symbol ``node`` requires
            (from outside its retry's).
        """
        requires = node.requires
        met = True
        own, also, items = self._providers, self._also_provided, self._items
        sub_providers, opaque = self._sub_providers, self._opaque
        succ, node_pred = self._succ, self._pred[node]
        if from_retry:
            requires = requires.difference(from_retry)
        for value in sorted(requires) if len(requires) > 1 else requires:
            # Atoms only, one provider at most (the usual flow): one look-up answers.
            if not opaque and not (also and value in also) and not (sub_providers and value in sub_providers):
                number = own.get(value)
            else:
                providers = self._providers_of(value)
                if len(providers) > 1:
                    names = sorted(items[number].name for number in providers)
                    raise exc.AmbiguousDependency(
                        f"cannot add '{node.name}' to flow '{self._name}': symbol '{value}' it requires "
                        f"is provided by several items {names}",
                        symbol=value,
                        providers=names,
                        atom=node.name,
                    )
                number = providers[0] if providers else None
                if number is not None and opaque and items[number] in opaque:
                    # A nested flow read afresh at every add may stop providing the
                    # symbol unseen: the atom stays a candidate (see _linked_for).
                    met = False
            if number is not None:
                # _add_edge(provider, node, reason=value), inline: the provider was
                # added before the node, so the link points forward.
                provider = items[number]
                outs = succ[provider]
                if node not in outs:
                    outs[node] = node_pred[provider] = value
                    self._link_from.append(number)
                    self._link_to.append(at)
                    self._link_symbol.append(value)
                else:
                    self._link_meta(provider, node).setdefault(flow.LINK_REASONS, set()).add(value)
            else:
                waiting.setdefault(value, []).append(node)
                met = False
        return met

    def _resolve_existing(self, node: FlowItem, waiting: dict[str, list[FlowItem]]) -> None:
        for value in node.provides:
            requirers = waiting.get(value)
            if not requirers:
                continue
            for requirer in list(requirers):
                if requirer is not node:
                    self._add_edge(node, requirer, reason=value, check=False)
                    requirers.remove(requirer)

    def _providers_of(self, value: str) -> list[int]:
        """The insertion numbers of the atoms and nested flows providing ``value``."""
        first = self._providers.get(value)
        found = [] if first is None else [first, *self._also_provided.get(value, ())]
        order = self._order
        subs = [*self._sub_providers.get(value, ()), *(sub for sub in self._opaque if value in sub.provides)]
        # Nested flows in insertion order, as they were added.
        found.extend(sorted(order[sub] for sub in subs))
        return found

    def _index_subflow(self, sub: FlowItem) -> None:
        """Enter the nested flow ``sub`` in the nested-flow indexes (see ``_subflows``)."""
        if not flow.fully_tracked(sub):  # type: ignore[arg-type]
            self._opaque[sub] = None
            return
        provides, requires = sub.provides, sub.requires
        self._sub_symbols[sub] = (provides, requires)
        for value in provides:
            self._sub_providers.setdefault(value, {})[sub] = None
        for value in requires:
            self._sub_requirers.setdefault(value, {})[sub] = None

    def _unindex_subflow(self, sub: FlowItem) -> None:
        """Take the nested flow ``sub`` out of the nested-flow indexes."""
        self._opaque.pop(sub, None)
        self._stale.pop(sub, None)
        symbols = self._sub_symbols.pop(sub, None)
        if symbols is None:
            return
        for value, index in zip(symbols, (self._sub_providers, self._sub_requirers), strict=True):
            for symbol in value:
                subs = index[symbol]
                del subs[sub]
                if not subs:
                    del index[symbol]

    def _reread_subflows(self) -> None:
        """Re-read the symbols of the indexed nested flows that changed since last read.

        A nested flow that no longer provides a symbol may leave an atom linked from
        it for that symbol waiting again (see :meth:`_provider_lost`).
        """
        for sub in list(self._stale):
            before = self._sub_symbols.get(sub)
            self._unindex_subflow(sub)
            self._index_subflow(sub)
            after = self._sub_symbols.get(sub)
            if before is not None:
                self._provider_lost(sub, before[0].difference(after[0]) if after is not None else before[0])
        self._stale.clear()

    def _catch_up(self) -> None:
        """Re-read what changed since atoms' symbols were last set by hand (see ``atom._SymbolEdits``).

        TaskFlow reads every item's current ``provides`` and ``requires`` at each add;
        this flow indexed its atoms' symbols once, so an atom of its own edited since
        has its index entries moved from the symbols it had (noted with the edit) to
        those it has now, and the nested flows that may hold an edited atom are
        re-read (see :meth:`_may_hold`). The links already made stay, as in TaskFlow.
        When the edits are too many to have been kept, every nested flow is re-read
        and, as when the retry was edited, all atoms are re-indexed.
        """
        log = atom_mod._symbol_edits
        edits = log.since(self._edits_seen)
        self._edits_seen = log.count
        if edits is None:
            self._stale.update(dict.fromkeys(self._sub_symbols))
            self._plain = False
            self._reindex_atoms()
            return
        # Per atom, its symbols before its first edit since: what this flow, and the
        # nested flows it indexed, read last.
        before: dict[FlowItem, list[frozenset[str] | None]] = {}
        for edit in edits:
            old = before.setdefault(edit.atom, [None, None])
            if old[0] is None:
                old[0] = edit.old_provides
            if old[1] is None:
                old[1] = edit.old_requires
        order, retry = self._order, self._retry
        own = False
        for atom, (old_provides, _old_requires) in before.items():
            if self._sub_symbols:
                had = frozenset(atom.provides if old_provides is None else old_provides)
                self._stale.update(dict.fromkeys(self._may_hold(had)))
            if atom is retry:
                self._plain = False
                self._reindex_atoms()
                return
            if atom in order:
                # Links made for a symbol may no longer name what their source's save_as
                # holds (and they stay): the compiler must not trust them from now on.
                self._plain = False
                own = True
        if own:
            for atom, (old_provides, old_requires) in before.items():
                if atom in order:
                    self._reindex_atom(atom, old_provides, old_requires)

    def _may_hold(self, provided: frozenset[str]) -> Collection[FlowItem]:
        """The indexed nested flows that may hold an atom that provided ``provided`` when they were read.

        A flow of flowkit's patterns provides what each item in it provides (its
        retry included, at any depth), so one holding such an atom was indexed under
        each of those symbols: the nested flows indexed under the rarest one are
        enough. An atom that provided nothing may be in any of them. (A flow the atom
        was added to since was told, and is re-read anyway.)
        """
        if not provided:
            return self._sub_symbols
        index = self._sub_providers
        return min((index.get(value, {}) for value in provided), key=len)

    def _reindex_atom(
        self, atom: FlowItem, old_provides: frozenset[str] | None, old_requires: frozenset[str] | None
    ) -> None:
        """Move ``atom`` in the indexes from the symbols it had (None: unchanged) to its current ones."""
        at = self._order[atom]
        # As sets, whatever a caller assigned (code written for TaskFlow may assign lists).
        if old_provides is not None:
            had, provides = frozenset(old_provides), frozenset(atom.provides)
            lost = had.difference(provides)
            self._unindex_provider(at, lost)
            self._enter_provider(at, provides.difference(had))
            self._provider_lost(atom, lost)
        if old_requires is not None:
            had, requires = frozenset(old_requires), frozenset(atom.requires)
            for value in had.difference(requires):
                self._unindex_requirer(atom, value)
            for value in requires.difference(had):
                self._enter_requirer(atom, value)

    def _enter_provider(self, at: int, symbols: Iterable[str]) -> None:
        """Enter the item numbered ``at`` as a provider of ``symbols``, after those entered before."""
        providers, also = self._providers, self._also_provided
        for value in symbols:
            if providers.setdefault(value, at) != at:
                also.setdefault(value, []).append(at)

    def _unindex_provider(self, at: int, symbols: Iterable[str]) -> None:
        """Take the atom numbered ``at`` out of the providers of ``symbols``."""
        providers, also = self._providers, self._also_provided
        for value in symbols:
            more = also.get(value)
            if providers.get(value) == at:
                if more:
                    providers[value] = more.pop(0)
                else:
                    del providers[value]
            elif more is not None and at in more:
                more.remove(at)
            if more is not None and not more:
                del also[value]

    def _enter_requirer(self, node: FlowItem, value: str) -> None:
        """Enter ``node`` as an item that may wait for ``value`` (once)."""
        found = self._requirers.setdefault(value, [])
        if node not in found:
            found.append(node)

    def _unindex_requirer(self, node: FlowItem, value: str) -> None:
        """Take ``node`` out of the items that may wait for ``value``."""
        kept = [item for item in self._requirers.get(value, ()) if item is not node]
        if kept:
            self._requirers[value] = kept
        else:
            self._requirers.pop(value, None)

    def _provider_lost(self, provider: FlowItem, symbols: Collection[str]) -> None:
        """``provider`` stopped providing ``symbols``: the items linked from it for one may wait again.

        An item whose requirements were all met as it was added is no requirer (see
        ``_requirers``); one linked from ``provider`` for a lost symbol is entered
        again, and the next item providing that symbol is linked to it, as in TaskFlow.
        """
        if not symbols:
            return
        for after, data in self._succ[provider].items():
            reasons = (data,) if isinstance(data, str) else data.get(flow.LINK_REASONS, ())
            if after in self._subflows:
                continue  # nested flows are requirers of all they require anyway
            for value in reasons:
                if value in symbols:
                    self._enter_requirer(after, value)

    def _reindex_atoms(self) -> None:
        """Rebuild the atoms' symbol indexes from their current symbols (see ``_providers``).

        An atom is entered as a requirer unless each symbol it requires (less what
        the retry provides) comes over a link made for that symbol from an item that
        still provides it: only those can never wait again.
        """
        from_retry = self._retry.provides if self._retry is not None else frozenset()
        self._providers, self._also_provided = {}, {}
        requirers: dict[str, list[FlowItem]] = {}
        subflows = self._subflows
        for node, at in self._order.items():
            if node in subflows:
                continue
            self._enter_provider(at, node.provides)
            needed = node.requires.difference(from_retry)
            if needed and not needed <= self._linked_for(node):
                for value in node.requires:
                    requirers.setdefault(value, []).append(node)
        self._requirers = requirers

    def _linked_for(self, node: FlowItem) -> set[str]:
        """The symbols ``node`` is linked for from items that provide them now."""
        found: set[str] = set()
        for before, data in self._pred[node].items():
            reasons = (data,) if isinstance(data, str) else data.get(flow.LINK_REASONS, ())
            if not reasons:
                continue
            if before in self._subflows:
                symbols = self._sub_symbols.get(before)
                if symbols is None:
                    continue  # re-read at every add: it may shrink unseen, so it vouches for nothing
                offered = symbols[0]
            else:
                offered = before.provides
            found.update(value for value in reasons if value in offered)
        return found

    def _child_changed(self, child: flow.Flow) -> None:
        if child in self._sub_symbols:
            self._stale[child] = None

    def _children(self) -> Collection[FlowItem]:
        return self._order

    def link(
        self,
        u: FlowItem,
        v: FlowItem,
        decider: deciders.Decider | None = None,
        decider_depth: deciders.Depth | str | None = None,
    ) -> Self:
        """Make ``v`` run after ``u`` (both already in the flow).

        Args:
            u: the item that runs first.
            v: the item that runs after it.
            decider: called once ``u`` (and any other decided predecessors of
                ``v``) finished, with ``history`` (their results by name); a
                falsy answer skips ``v``.
            decider_depth: which successors of ``v`` are skipped with it (a
                :class:`~flowkit.deciders.Depth` or its name); defaults to
                ``Depth.ALL`` when a decider is given.

        Raises:
            ValueError: ``u`` or ``v`` is not in the flow, ``decider`` is not
                callable, or a depth is given without a decider.
            flowkit.exceptions.DependencyFailure: the link would close a cycle
                (the flow is left unchanged).
        """
        if u not in self._order:
            raise ValueError(f"Node '{u}' not found to link from: it is not in flow '{self._name}'")
        if v not in self._order:
            raise ValueError(f"Node '{v}' not found to link to: it is not in flow '{self._name}'")
        if decider is not None and not callable(decider):
            # TaskFlow's sentence first (programs match it), then what was given.
            raise ValueError(f"Decider boolean callback must be callable, not {decider!r}")
        depth: deciders.Depth | None = None
        if decider_depth is not None:
            if decider is None:
                raise ValueError("a decider depth needs a decider to go with it")
            depth = deciders.Depth.translate(decider_depth)
        elif decider is not None:
            depth = deciders.Depth.ALL
        self._add_edge(u, v)
        meta = self._link_meta(u, v)
        meta[flow.LINK_MANUAL] = True
        if decider is not None:
            meta[flow.LINK_DECIDER] = decider
            meta[flow.LINK_DECIDER_DEPTH] = depth
            self._decided = True
        self._changed()
        if self._parents is not None:
            self._touched()
        return self

    # -- the graph itself --------------------------------------------------------

    def _remove_node(self, node: FlowItem) -> None:
        """Take back an item of an add that failed: its links and its index entries."""
        if node not in self._order:
            return
        for after in self._succ.pop(node):
            self._pred[after].pop(node, None)
        for before in self._pred.pop(node):
            self._succ[before].pop(node, None)
        self._node_meta.pop(node, None)
        at = self._order.pop(node)
        if not isinstance(node, Atom):
            if node in self._subflows:
                del self._subflows[node]
                self._unindex_subflow(node)
            return
        self._unindex_provider(at, node.provides)
        for value in node.requires:
            self._unindex_requirer(node, value)

    def _index(self, node: FlowItem, at: int, met: bool) -> None:
        """Enter ``node`` (numbered ``at``) in the symbol indexes.

        ``met`` tells that every symbol it requires was linked from a provider:
        it is then not entered as a requirer (see ``_requirers``).
        """
        cls = type(node)
        kind = _ITEM_KINDS.get(cls)
        if kind is None:
            make_room(_ITEM_KINDS)
            kind = _ITEM_KINDS[cls] = _item_kind(cls)
        if kind is _FLOW_ITEM:
            self._plain = False
            self._subflows[node] = None
            self._index_subflow(node)
            return
        providers, requirers = self._providers, self._requirers
        # A stock atom's symbols read from its save_as, no set made and kept on it: a
        # set costs a set, and an attribute added after the atom was made (CPython
        # then gives every such atom its own dict once the run adds another one).
        if kind is _STOCK_ATOM:
            saved = _result_names(node.save_as)  # type: ignore[union-attr]
            provided = node._provides  # type: ignore[union-attr]
            if provided is None:
                provided = saved
            elif self._plain:
                # Set by hand (or kept by a read): the compiler may rely on links
                # made for a symbol only if they name what save_as holds.
                self._plain = provided == frozenset(saved)
        else:
            provided = node.provides
            self._plain = False
        for value in provided:  # _enter_provider, inline: once per atom added
            if providers.setdefault(value, at) != at:
                self._also_provided.setdefault(value, []).append(at)
        if met:
            return
        for value in node.requires:
            found = requirers.get(value)
            if found is None:
                requirers[value] = [node]
            else:
                found.append(node)

    def _add_edge(self, u: FlowItem, v: FlowItem, reason: str | None = None, check: bool = True) -> None:
        """Add (or reuse) the edge ``u -> v``, made for the symbol ``reason`` if given.

        Raises:
            flowkit.exceptions.DependencyFailure: ``check`` is set and the edge
                would close a cycle (nothing is changed then).
        """
        if v not in self._succ[u]:
            if check:
                self._raise_if_path((v,), u)
            self._succ[u][v] = self._pred[v][u] = {} if reason is None else reason
            order = self._order
            self._link_from.append(order[u])
            self._link_to.append(order[v])
            self._link_symbol.append(reason)
            if self._forward and order[u] > order[v]:
                self._forward = False
        elif reason is not None:
            self._link_meta(u, v).setdefault(flow.LINK_REASONS, set()).add(reason)

    def _link_meta(self, u: FlowItem, v: FlowItem) -> Meta:
        """The metadata of the link ``u -> v``, made now if the link kept only its symbol."""
        data = self._succ[u][v]
        if isinstance(data, str):
            data = self._succ[u][v] = self._pred[v][u] = {flow.LINK_REASONS: {data}}
        return data

    def _raise_if_path(self, starts: Iterable[FlowItem], goal: FlowItem) -> None:
        """Raise if ``goal`` is reachable from one of ``starts`` (so ``goal -> start`` closes a cycle)."""
        path = self._path(starts, goal)
        if path is not None:
            cycle = " -> ".join(f"'{node.name}'" for node in [goal, *path])
            raise exc.DependencyFailure(
                f"No path through the node(s) in the graph produces an ordering that will allow for "
                f"logical edge traversal: linking '{goal.name}' to '{path[0].name}' in flow "
                f"'{self._name}' would create the cycle {cycle}"
            )

    def _has_cycle_from(self, starts: Iterable[FlowItem]) -> bool:
        """Tell whether a cycle is reachable from ``starts``, in one walk (time linear in what they reach)."""
        succ = self._succ
        # Absent: not visited; True: on the current path; False: finished.
        on_path: dict[FlowItem, bool] = {}
        for start in starts:
            if start in on_path:
                continue
            on_path[start] = True
            stack = [(start, iter(succ[start]))]
            while stack:
                node, after = stack[-1]
                for nxt in after:
                    state = on_path.get(nxt)
                    if state is None:
                        on_path[nxt] = True
                        stack.append((nxt, iter(succ[nxt])))
                        break
                    if state:
                        return True
                else:
                    on_path[node] = False
                    stack.pop()
        return False

    def _check_no_cycle(self, node: FlowItem) -> None:
        """Raise if ``node`` lies on a cycle."""
        self._raise_if_path(self._succ[node], node)

    def _path(self, starts: Iterable[FlowItem], goal: FlowItem) -> list[FlowItem] | None:
        """Return the nodes of a path ``start -> ... -> goal`` from one of ``starts``, or None."""
        parents: dict[FlowItem, FlowItem | None] = {}
        stack: list[FlowItem] = []
        for start in starts:
            if start not in parents:
                parents[start] = None
                stack.append(start)
        while stack:
            node = stack.pop()
            if node is goal:
                path = [node]
                parent = parents[node]
                while parent is not None:
                    path.append(parent)
                    parent = parents[parent]
                path.reverse()
                return path
            for after in self._succ[node]:
                if after not in parents:
                    parents[after] = node
                    stack.append(after)
        return None

    def _ancestors(self, node: FlowItem) -> Iterator[FlowItem]:
        """Yield every item ``node`` transitively depends on, nearest first."""
        seen = {node}
        queue = deque(self._pred[node])
        seen.update(queue)
        while queue:
            before = queue.popleft()
            yield before
            for further in self._pred[before]:
                if further not in seen:
                    seen.add(further)
                    queue.append(further)

    def _unsatisfied(
        self, node: FlowItem, from_retry: Collection[str], requires: Iterable[str] | None = None
    ) -> set[str]:
        """Return what ``node`` requires that neither the retry nor its ancestors provide."""
        missing = set(node.requires if requires is None else requires)
        missing.difference_update(from_retry)
        if missing:
            for before in self._ancestors(node):
                missing.difference_update(before.provides)
                if not missing:
                    break
        return missing

    def _changed(self) -> None:
        """Hook called after the graph changed (targeted flows drop their cache)."""

    def __getstate__(self) -> dict[str, Any]:
        """The flow's state for pickle and copy, caught up with atoms edited since the last add.

        A copy holds copies of the atoms, which the edits noted so far do not name.
        """
        if self._edits_seen != atom_mod._symbol_edits.count:
            self._catch_up()
        return super().__getstate__()

    def _visible(self) -> Collection[FlowItem] | None:
        """The nodes this flow shows, or None for all of them."""
        return None

    # -- reading -----------------------------------------------------------------

    def __len__(self) -> int:
        visible = self._visible()
        return len(self._order) if visible is None else len(visible)

    def __iter__(self) -> Iterator[FlowItem]:
        """Yield the items in dependency order (insertion order among equals), as :meth:`iter_nodes`."""
        visible = self._visible()
        nodes = self._order if visible is None else visible
        if self._forward:
            # Every link points forward: insertion order is the answer (the sort
            # below would give the same, at O(n log n)).
            yield from nodes
            return
        order = self._order
        indegree = {node: sum(1 for before in self._pred[node] if before in nodes) for node in nodes}
        ready = [(order[node], node) for node, count in indegree.items() if count == 0]
        heapq.heapify(ready)
        while ready:
            _index, node = heapq.heappop(ready)
            yield node
            for after in self._succ[node]:
                if after in indegree:
                    indegree[after] -= 1
                    if indegree[after] == 0:
                        heapq.heappush(ready, (order[after], after))

    def iter_nodes(self) -> Iterator[tuple[FlowItem, Meta]]:
        """Yield ``(item, metadata)`` in dependency order (insertion order among equals).

        Each item has its own metadata dict (made the first time it is handed
        out, then kept): changing one item's changes no other's.
        """
        metas = self._node_meta
        for node in self:
            meta = metas.get(node)
            if meta is None:
                meta = metas[node] = {}
            yield node, meta

    def iter_links(self) -> Iterator[tuple[FlowItem, FlowItem, Meta]]:
        """Yield ``(u, v, metadata)`` for every link (copies; changing them changes nothing)."""
        for u, v, meta in self._links():
            yield u, v, _copy_meta(meta)

    def _links(self) -> Iterator[tuple[FlowItem, FlowItem, LinkData]]:
        """Yield every link with its own data (see LinkData), not a copy."""
        visible = self._visible()
        for u in self._order if visible is None else visible:
            for v, meta in self._succ[u].items():
                if visible is None or v in visible:
                    yield u, v, meta

    def _numbered_links(self) -> _NumberedLinks | None:
        """Every link as numbers, for the compiler, or None.

        Positions are those of :meth:`iter_nodes`; links from one item come in the
        order they were made. None when positions are not insertion numbers (a
        link points backwards, or a target hides items) or when some link has a
        decider (its metadata must then be read anyway).
        """
        if self._edits_seen != atom_mod._symbol_edits.count:
            self._catch_up()  # an atom edited since the last add may make _plain wrong
        if (
            not self._forward
            or self._decided
            or self._visible() is not None
            or len(self._items) != len(self._order)
        ):
            return None
        return _NumberedLinks(self._link_from, self._link_to, self._link_symbol, self._plain)

    def _links_by_source(self) -> Iterator[tuple[FlowItem, dict[FlowItem, LinkData]]]:
        """Yield each item with its links out (target -> own data, not a copy): for the compiler.

        A link's data is its metadata, or a str (the one symbol it was made for:
        such a link has no decider); see LinkData.
        """
        visible = self._visible()
        succ = self._succ
        if visible is None:
            yield from succ.items()
            return
        for u in visible:
            yield u, {v: meta for v, meta in succ[u].items() if v in visible}

    @property
    def requires(self) -> frozenset[str]:
        needed: set[str] = set()
        from_retry: frozenset[str] = frozenset()
        if self._retry is not None:
            needed.update(self._retry.requires)
            from_retry = self._retry.provides
        visible = self._visible()
        nodes = self._order if visible is None else visible
        # A symbol no item here provides is needed from outside whoever requires it:
        # only the others send a walk up the requirer's ancestors (else a chain of
        # items that each need one outside symbol walks every chain before each).
        # Ancestors of a shown item are shown, so the shown items' symbols suffice.
        here: set[str] = set()
        for node in nodes:
            here.update(node.provides)
        for node in nodes:
            missing = node.requires.difference(from_retry)
            if not missing:
                continue
            inside = missing.intersection(here)
            if len(inside) != len(missing):
                needed.update(missing.difference(inside))
            if inside:
                needed.update(self._unsatisfied(node, from_retry, inside))
        return frozenset(needed)


class TargetedFlow(Flow):
    """A graph flow that can be cut down to one target and what it depends on.

    With a target set, the flow shows (and so runs) only the target and its
    ancestors; :meth:`reset_target` shows everything again.
    """

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        super().__init__(name, retry)
        self._target: FlowItem | None = None
        self._subset: dict[FlowItem, None] | None = None

    @property
    def target(self) -> FlowItem | None:
        """The current target, or ``None``."""
        return self._target

    def set_target(self, target_node: FlowItem) -> None:
        """Show only ``target_node`` and the items it (transitively) depends on.

        Raises:
            ValueError: ``target_node`` is not in the flow.
        """
        if target_node not in self._order:
            raise ValueError(f"Node '{target_node}' not found: it is not in flow '{self._name}'")
        self._target = target_node
        self._subset = None
        self._touched()

    def reset_target(self) -> None:
        """Show every item again."""
        self._target = None
        self._subset = None
        self._touched()

    def _changed(self) -> None:
        self._subset = None

    def _visible(self) -> Collection[FlowItem] | None:
        if self._target is None:
            return None
        if self._subset is None:
            wanted = {self._target, *self._ancestors(self._target)}
            # Keep insertion order so iteration stays deterministic.
            self._subset = {node: None for node in self._order if node in wanted}
        return self._subset


flow._TRACKED.update((Flow, TargetedFlow))
