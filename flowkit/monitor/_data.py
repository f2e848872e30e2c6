"""What the monitor reads from the backend, as JSON-safe dicts (no web code here)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit._utils.factories import FactoryNames
from flowkit._utils.text import LogSafe
from flowkit.monitor._layout import GraphShape, column, layout, shape_of
from flowkit.monitor._summary import SUMMARY_NODES, Summary, summarize

if TYPE_CHECKING:
    from flowkit.persistence.base import AtomStatus

__all__ = [
    "GRAPH_CACHE_SIZE",
    "GRAPH_KEY",
    "FlowPage",
    "Reader",
    "UnknownCursor",
    "UnknownGroup",
    "changes",
    "drawing_id",
    "unchanged",
]

LOG = logging.getLogger(__name__)

#: Flow detail metadata key where ``flowkit run`` keeps the flow's drawable shape,
#: so the monitor can draw a flow whose code it cannot import.
GRAPH_KEY = "graph"

#: How many drawn graphs a :class:`Reader` keeps, least recently asked for dropped
#: first. A monitor left running over a busy backend is asked for many flows'
#: graphs; an unbounded cache would grow with every one. People look at a few
#: flows at a time, and a dropped graph is simply drawn again when asked for.
GRAPH_CACHE_SIZE = 256


class UnknownCursor(LookupError):
    """A page asked for before or after a flow that is not in the backend."""


class UnknownGroup(LookupError):
    """A part of a big graph asked for by a group id that is none of its groups (any more)."""


@dataclass(frozen=True, slots=True)
class FlowPage:
    """One page of the flow list.

    Attributes:
        rows: the flows' summaries, oldest first.
        older: the uuid to list ``before`` for the next older page, or None (none older).
        newer: the uuid to list ``after`` for the next newer page, or None (none newer).
        total: how many flows the filters keep, on every page.
    """

    rows: list[dict[str, Any]]
    older: str | None
    newer: str | None
    total: int


class Reader:
    """Reads flows from one backend for the monitor (thread-safe: calls run in threads)."""

    def __init__(
        self,
        connection: str | Any,
        factories: Iterable[str] = (),
        *,
        graph_cache_size: int = GRAPH_CACHE_SIZE,
    ) -> None:
        from flowkit.persistence import backends

        if graph_cache_size < 1:
            raise ValueError(f"graph_cache_size must be at least 1, not {graph_cache_size!r}")
        self._graph_cache_size = graph_cache_size

        self._factories = FactoryNames(factories)

        self._owned = isinstance(connection, str)
        self._backend = (
            backends.fetch({"connection": connection, "writable": False})
            if isinstance(connection, str)
            else connection
        )
        if self._owned:
            # The monitor only reads; a store not made yet is made, as the monitor is
            # often started before the first run (ready_for_reading says what is not).
            try:
                backends.ready_for_reading(self._backend, create_missing=True)
            except BaseException:
                self._backend.close()
                raise
        # Drawn graphs by flow uuid, least recently used first (bounded: see GRAPH_CACHE_SIZE).
        self._graphs: OrderedDict[str, _Drawn] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._owned:
            self._backend.close()

    def _flow(self, uuid: str) -> Any:
        with contextlib.closing(self._backend.get_connection()) as conn:
            try:
                return conn.get_flow_details(uuid)
            except exc.NotFound:
                return None

    def _refs(self) -> list[tuple[Any, Any]]:
        """Every (logbook, flow detail without its atoms), oldest logbook first.

        Read lazily: the list filters and pages by the flows' own records (name,
        state), and only the page's flows' atom states are then read
        (:meth:`page`). Reading every atom of every flow every 2 s, for each
        open list page, made one 10,000-atom flow cost every list read.
        """
        with contextlib.closing(self._backend.get_connection()) as conn:
            books = list(conn.get_logbooks(lazy=True))
            books.sort(key=lambda b: (b.created_at is None, b.created_at))
            refs: list[tuple[Any, Any]] = []
            for book in books:
                with contextlib.suppress(exc.NotFound):  # destroyed since it was listed
                    refs.extend((book, flow) for flow in conn.get_flows_for_book(book.uuid, lazy=True))
        return refs

    def _summaries(self, refs: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
        """The list's summary of each of ``refs``, a flow deleted meanwhile left out.

        The flows' own records are those :meth:`_refs` read; of their atoms
        only the states are read (to count them), not their details.
        """
        from flowkit.report import flow_summary

        with contextlib.closing(self._backend.get_connection()) as conn:
            rows: list[dict[str, Any]] = []
            for book, flow in refs:
                with contextlib.suppress(exc.NotFound):
                    atoms = conn.get_atom_states(flow.uuid)
                    rows.append(flow_summary(book, flow, [status.state for status in atoms.values()]))
        return rows

    def page(
        self,
        limit: int | None = None,
        before: str | None = None,
        after: str | None = None,
        state: str | None = None,
        name: str | None = None,
    ) -> FlowPage:
        """The flows in ``state`` whose name holds ``name``, ``limit`` at a time, oldest first.

        Without a cursor, the newest ``limit``; with ``before`` (a flow's
        uuid), the newest ``limit`` older than it; with ``after``, the oldest
        ``limit`` newer than it (topped up with older ones when fewer are
        newer, so a page is full whenever there are enough flows). Cursors are
        flows, not offsets: new flows arriving do not shift an older page, and
        a cursor flow whose state changed since (out of the filter now) still
        marks its place. Only the page's flows are summarised.

        Raises:
            UnknownCursor: ``before`` or ``after`` is no flow's uuid (the message names it).
        """
        refs = self._refs()
        wanted = state.upper() if state else None
        kept = [
            index
            for index, (_book, flow) in enumerate(refs)
            if (wanted is None or (flow.state or "PENDING") == wanted) and (not name or name in flow.name)
        ]
        start, end = 0, len(kept)
        if limit is not None:
            cursor = before if before is not None else after
            if cursor is None:
                start = max(0, end - limit)
            else:
                at = next((i for i, (_book, flow) in enumerate(refs) if flow.uuid == cursor), None)
                if at is None:
                    which = "before" if before is not None else "after"
                    raise UnknownCursor(f"{which}={cursor!r} is no flow's uuid in this backend")
                if before is not None:
                    end = sum(1 for index in kept if index < at)
                    start = max(0, end - limit)
                else:
                    start = sum(1 for index in kept if index <= at)
                    end = min(len(kept), start + limit)
                    start = max(0, min(start, end - limit))
        chosen = [refs[index] for index in kept[start:end]]
        return FlowPage(
            rows=self._summaries(chosen),
            older=chosen[0][1].uuid if chosen and start > 0 else None,
            newer=chosen[-1][1].uuid if chosen and end < len(kept) else None,
            total=len(kept),
        )

    def report(self, uuid: str) -> dict[str, Any] | None:
        """One flow's execution report (``to_dict()``, with ``took`` and ``event_tree``), or None."""
        from flowkit.report import ExecutionReport

        flow = self._flow(uuid)
        if flow is None:
            return None
        report = ExecutionReport.from_flow_detail(flow)
        data = report.to_dict()
        # The event log's tree of causes, as the flow page draws it.
        # How long, in the words of the text report's summary (over how many runs).
        data["took"] = report.took()
        for row, atom in zip(data["atoms"], report.atoms, strict=True):
            row["took"] = atom.took()  # an atom's too: a reset atom's time is its earlier attempts'
        data["event_tree"] = [{"seq": row.event.seq, "depth": row.depth} for row in report.events.tree()]
        return data

    def states(self, uuid: str) -> dict[str, Any] | None:
        """The flow's state, each atom's, and its graph's version: what the live view updates by.

        A flow not run yet has no state recorded: ``PENDING``, as the list and
        the report say. ``graph`` changes when the drawn graph may have (see
        :func:`_version`): the page then asks for the graph again.

        Read narrowly (the live stream asks at every poll): the flow's own
        record, then its atoms' states alone
        (:meth:`~flowkit.persistence.base.Connection.get_atom_states`), not
        their results and metadata. In that order: atoms written before the
        flow's final state are then read with it, so the snapshot that ends a
        stream never shows an atom still running.
        """
        with contextlib.closing(self._backend.get_connection()) as conn:
            try:
                flow = conn.get_flow_details(uuid, lazy=True)
                atoms = conn.get_atom_states(uuid)
            except exc.NotFound:
                return None
        return {
            "state": flow.state or "PENDING",
            "atoms": {name: status.state or "PENDING" for name, status in atoms.items()},
            "graph": _version(atoms),
        }

    def graph(self, uuid: str) -> dict[str, Any] | None:
        """The flow's graph with node positions, as it stands now, or None (no such flow)."""
        found = self._drawing(uuid)
        return None if found is None else found.answer(found.entry.drawn())

    def graph_summary(self, uuid: str) -> dict[str, Any] | None:
        """What the flow page draws: the whole graph up to ``SUMMARY_NODES`` nodes, else its summary.

        The summary (see :mod:`flowkit.monitor._summary`) is made from the
        same cached shape as :meth:`graph`, and carries its ``drawn_from``
        and ``version``; the whole graph is then never laid out.
        """
        found = self._drawing(uuid)
        if found is None:
            return None
        entry = found.entry
        return found.answer(
            entry.drawn() if len(entry.shape.nodes) <= SUMMARY_NODES else entry.summary_dict()
        )

    def graph_part(self, uuid: str, group: str) -> dict[str, Any] | None:
        """One group of the flow's summary, placed as a graph of its own, or None (no such flow).

        Raises:
            UnknownGroup: no group of the flow's summary has that id (the message names it).
        """
        found = self._drawing(uuid)
        if found is None:
            return None
        part = found.entry.summary().part(group)
        if part is None:
            raise UnknownGroup(f"flow {uuid} has no group {group!r} (its graph may have changed: ask again)")
        part["drawing"] = drawing_id(part)
        return found.answer(part)

    def _drawing(self, uuid: str) -> _Found | None:
        """The flow's shape as it stands, from the cache while what it is drawn from holds.

        A running flow's graph grows: a task spawns a sub-flow (its atoms join
        the flow detail), and a graph learned from the event log gains a link
        each time an atom starts. Each poll reads the atoms' states alone
        (:meth:`~flowkit.persistence.base.Connection.get_atom_states`: the
        answer's ``version`` is the live stream's, see :func:`_version`)
        and from them the cached shape's :func:`_structure`: for a flow whose
        own shape is stored or rebuilt by an allowed factory, it moves only
        when an atom joins that the shape lacks; for one learned from the event
        log, with each ``ready`` event. Only when it moved is the flow read
        whole (results, failures, event logs) and the shape made again; a
        shape made again equal to the cached one keeps the cached drawing and
        summary (laid out once). Shapes are cached by uuid for the
        ``graph_cache_size`` flows most recently asked for; the flow's own
        shape (the costly part) is kept across versions.
        """
        with contextlib.closing(self._backend.get_connection()) as conn:
            try:
                atoms = conn.get_atom_states(uuid)
            except exc.NotFound:
                return None
        with self._lock:
            cached = self._graphs.get(uuid)
            if cached is not None:
                self._graphs.move_to_end(uuid)
        if cached is not None and cached.structure == _structure(cached.base_ids, atoms):
            return _Found(cached, _version(atoms))
        flow = self._flow(uuid)
        if flow is None:
            return None
        if cached is not None:
            base, source = cached.base, cached.source
        else:
            base, source = self._base_shape(flow)
        if base is not None:
            shape = _grown(base, flow)
        else:
            shape = _recorded_shape(flow)
            source = "events" if shape.edges else "atoms"
        # What was read whole: an atom may have joined since the states were read.
        statuses = _statuses(flow)
        if cached is not None and cached.shape == shape and cached.source == source:
            entry = cached  # the same drawing: laid out and summarised once, not again
            structure = _structure(entry.base_ids, statuses)
            with self._lock:
                entry.structure = structure
        else:
            entry = _Drawn(base, source, shape, statuses)
        with self._lock:
            self._graphs[uuid] = entry
            self._graphs.move_to_end(uuid)
            while len(self._graphs) > self._graph_cache_size:
                self._graphs.popitem(last=False)
        return _Found(entry, _version(statuses))

    def _base_shape(self, flow: Any) -> tuple[GraphShape | None, str]:
        """The flow's own shape and where it came from; None when only its event log can tell.

        In order: the shape ``flowkit run`` stored; the flow rebuilt by its
        recorded factory, only if that factory is in ``factories`` (the name is
        checked before anything is imported: whoever can write a flow detail
        can write any name there, and the monitor must not become a way to run
        code); else None (:func:`_recorded_shape` draws the atoms, linked as
        the event log recorded each one made ready by others).
        """
        stored = (flow.meta or {}).get(GRAPH_KEY)
        if isinstance(stored, dict):
            return GraphShape.from_dict(stored), "stored"
        from flowkit import engines
        from flowkit._flow_codec import import_path
        from flowkit.engines.helpers import recorded_factory

        name = recorded_factory(flow)
        if (
            name is not None
            and self._factories.allows(name)
            and self._factories.disallowed_target(name, import_path) is None
        ):
            try:
                return shape_of(engines.flow_from_detail(flow)), "factory"
            except Exception:  # its code is not importable here, or it failed
                LOG.debug("cannot rebuild flow %s with %s", LogSafe(flow.uuid), LogSafe(name), exc_info=True)
        return None, "events"


@dataclass(frozen=True, slots=True)
class _Found:
    """A cached drawing, and the version of the flow it is answered at.

    Attributes:
        entry: the drawing (its answers carry no version: one drawing serves many).
        version: the :func:`_version` of the atoms just read, which the
            live stream sends too: the page asks again when they differ.
    """

    entry: _Drawn
    version: str

    def answer(self, drawn: Mapping[str, Any]) -> dict[str, Any]:
        """``drawn`` (one of ``entry``'s answers) at ``version``: a shallow copy, never the cached dict."""
        return {**drawn, "version": self.version}


class _Drawn:
    """A cached shape of one flow, what it holds while, and what is made from it when first asked for.

    Attributes:
        base: the flow's own shape (None: learned from its event log).
        base_ids: the ids of ``base``'s nodes (None: no base), for :func:`_structure`.
        source: where the shape came from (the answer's ``drawn_from``).
        shape: what is drawn: ``base`` grown by the run, or the recorded shape.
        structure: the :func:`_structure` of the atoms it was made from: while
            the atoms read give the same, the shape holds.
    """

    __slots__ = ("_drawn", "_summary", "_summary_dict", "base", "base_ids", "shape", "source", "structure")

    def __init__(
        self,
        base: GraphShape | None,
        source: str,
        shape: GraphShape,
        atoms: Mapping[str, AtomStatus],
    ) -> None:
        self.base, self.source, self.shape = base, source, shape
        self.base_ids = None if base is None else frozenset(node["id"] for node in base.nodes)
        self.structure = _structure(self.base_ids, atoms)
        self._drawn: dict[str, Any] | None = None
        self._summary: Summary | None = None
        self._summary_dict: dict[str, Any] | None = None

    def summary(self) -> Summary:
        """The shape's groups (:func:`~flowkit.monitor._summary.summarize`), made once."""
        if self._summary is None:
            self._summary = summarize(self.shape)
        return self._summary

    def summary_dict(self) -> dict[str, Any]:
        """The summary as ``?summary=1`` answers it past ``SUMMARY_NODES`` nodes, laid out once."""
        if self._summary_dict is None:
            drawn = self.summary().to_dict()
            drawn["drawn_from"] = self.source
            drawn["drawing"] = drawing_id(drawn)
            self._summary_dict = drawn
        return self._summary_dict

    def drawn(self) -> dict[str, Any]:
        """The whole graph with node positions (``GET /api/flows/{uuid}/graph``), laid out once."""
        if self._drawn is None:
            shape = self.shape
            placed = layout(shape) if self.base is not None or shape.edges else column(shape)
            drawn = placed.to_dict(shape)
            drawn["drawn_from"] = self.source
            drawn["drawing"] = drawing_id(drawn)
            self._drawn = drawn  # two threads may both lay it out: the same answer, kept once
        return self._drawn


def drawing_id(answer: Mapping[str, Any]) -> str:
    """What a graph answer draws, as a short digest: the same for the same drawing, whatever its version.

    The version moves when the drawing *may* have changed (an atom started
    because others completed: a link the event log may have learned); a
    summary's groups and their links change far more rarely. A page gives
    the ``drawing`` it has, and is answered in a few bytes while it holds
    (``/graph?drawing=``): a graph learned from the event log sent its
    whole summary again at almost every poll of a run.
    """
    drawn = {key: value for key, value in answer.items() if key not in ("version", "drawing")}
    text = json.dumps(drawn, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def unchanged(answer: Mapping[str, Any], drawing: str | None) -> dict[str, Any] | None:
    """The short answer for a client that already has ``answer``'s drawing (``drawing=``), else None."""
    if drawing is None or answer.get("drawing") != drawing:
        return None
    return {"version": answer["version"], "drawing": drawing, "unchanged": True}


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The snapshot ``after`` (as :meth:`Reader.states`) with only the atoms changed since ``before``.

    What the live stream sends with ``?changes=1`` once its first, whole,
    snapshot is sent: the flow's ``state`` and ``graph`` as they are, and in
    ``atoms`` each atom whose state differs from ``before`` (an atom new since
    is one). ``"changes": true`` says it is a difference to apply.
    """
    was = before["atoms"]
    moved = {name: state for name, state in after["atoms"].items() if was.get(name) != state}
    return {"state": after["state"], "atoms": moved, "graph": after["graph"], "changes": True}


def _statuses(flow: Any) -> dict[str, AtomStatus]:
    """Each atom of ``flow`` (read whole) by name, as ``Connection.get_atom_states`` would read it."""
    from flowkit.persistence.base import AtomStatus

    return {detail.name: AtomStatus.of(detail) for detail in flow}


def _version(atoms: Mapping[str, AtomStatus]) -> str:
    """When the drawn graph may have changed, cheaply: the atom count and the ``ready`` events recorded.

    ``atoms`` by name, as ``Connection.get_atom_states`` reads them. An atom
    joins (a spawned sub-flow) or an atom starts because others completed (a
    link the event log learns): either may change the drawing. The live
    stream computes the same from the atoms' states alone
    (:meth:`Reader.states`), so the two agree for one flow as stored. It is
    the same for every kind of graph, so a page compares it without knowing
    the kind; the server knows, and redraws only when the kind's own
    :func:`_structure` moved.
    """
    return f"{len(atoms)}.{sum(status.ready for status in atoms.values())}"


#: :func:`_structure` of a flow whose atoms are all in its own shape: that shape, drawn as it is.
_FIXED = "fixed"


def _structure(base_ids: frozenset[str] | None, atoms: Mapping[str, AtomStatus]) -> str:
    """What a drawing of ``atoms`` depends on, for a shape with own node ids ``base_ids``.

    A flow's own shape (stored, or rebuilt by a factory: ``base_ids``) is
    drawn as it is while every atom is one of its nodes (:func:`_grown` adds
    nothing): the atoms' states and ``ready`` events change nothing drawn.
    Atoms it lacks (a spawned sub-flow) are drawn with the links the event
    log learns, as a shape learned from the event log alone (``base_ids``
    None) is: then any atom joining or ``ready`` event may add a link, and
    the structure is the :func:`_version`.
    """
    if base_ids is not None and all(name in base_ids for name in atoms):
        return _FIXED
    return _version(atoms)


def _recorded_shape(flow: Any) -> GraphShape:
    """The flow's atoms, in its order, with the links its event log recorded.

    An atom started because others completed (cause ``ready``, naming them):
    each of those is drawn as an edge to it. Only what ran is known, so an atom
    not reached has no edge; nothing is imported or called.
    """
    nodes = _atom_nodes(flow)
    names = {n["id"] for n in nodes}
    return GraphShape(nodes, tuple((u, v, None) for u, v in _ready_links(flow, names)))


def _atom_nodes(flow: Any) -> tuple[dict[str, Any], ...]:
    from flowkit.persistence.models import RetryDetail

    return tuple(
        {"id": d.name, "kind": "retry" if isinstance(d, RetryDetail) else "task", "flow": flow.name}
        for d in flow
    )


def _ready_links(flow: Any, names: set[str]) -> list[tuple[str, str]]:
    """(source, atom) for each atom of ``names`` made ready by the completion of another, in order."""
    from flowkit.listeners.events import CauseKind, EventLog

    try:
        events = list(EventLog.from_flow_detail(flow))
    except Exception:  # a log it cannot read: the atoms alone
        LOG.debug("cannot read the event log of flow %s", LogSafe(flow.uuid), exc_info=True)
        events = []
    edges: dict[tuple[str, str], None] = {}
    for event in events:
        # A start that waited for a concurrency slot was made ready by its ``atoms`` too.
        if event.name in names and event.cause.kind in (CauseKind.READY, CauseKind.WAITED):
            for source in event.cause.atoms:
                if source in names and source != event.name:
                    edges[(source, event.name)] = None
    return list(edges)


def _grown(base: GraphShape, flow: Any) -> GraphShape:
    """``base`` (the flow's shape before it ran) with the atoms the run added since.

    A task that spawns a sub-flow adds its atoms to the flow detail; they are
    drawn with the links the event log recorded for them, and a link of
    ``base`` they now stand in (the spawner to what ran after it, which runs
    after the whole sub-flow now) is dropped once the added links join its
    ends. Atoms ``base`` has are drawn as it says.
    """
    known = {n["id"] for n in base.nodes}
    added = tuple(n for n in _atom_nodes(flow) if n["id"] not in known)
    if not added:
        return base
    new = {n["id"] for n in added}
    links = [(u, v) for u, v in _ready_links(flow, known | new) if u in new or v in new]
    onward: dict[str, list[str]] = {}
    for u, v in links:
        onward.setdefault(u, []).append(v)

    def bypassed(source: str, target: str) -> bool:
        seen, todo = {source}, list(onward.get(source, ()))
        while todo:
            node = todo.pop()
            if node == target:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(onward.get(node, ()))
        return False

    kept = tuple(e for e in base.edges if e[0] not in onward or not bypassed(e[0], e[1]))
    return GraphShape(base.nodes + added, kept + tuple((u, v, None) for u, v in links))
