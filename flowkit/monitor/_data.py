"""What the monitor reads from the backend, as JSON-safe dicts (no web code here)."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from flowkit.monitor._layout import GraphShape, column, layout, shape_of

__all__ = ["GRAPH_KEY", "Reader"]

LOG = logging.getLogger(__name__)

#: Flow detail metadata key where ``flowkit run`` keeps the flow's drawable shape,
#: so the monitor can draw a flow whose code it cannot import.
GRAPH_KEY = "graph"


class Reader:
    """Reads flows from one backend for the monitor (thread-safe: calls run in threads)."""

    def __init__(self, connection: str | Any) -> None:
        from flowkit.persistence import backends

        self._owned = isinstance(connection, str)
        self._backend = (
            backends.fetch({"connection": connection}) if isinstance(connection, str) else connection
        )
        if self._owned:
            with contextlib.closing(self._backend.get_connection()) as conn:
                conn.upgrade()
        self._graphs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._owned:
            self._backend.close()

    def _flow(self, uuid: str) -> Any:
        from flowkit import exceptions as exc

        with contextlib.closing(self._backend.get_connection()) as conn:
            try:
                return conn.get_flow_details(uuid)
            except exc.NotFound:
                return None

    def flows(self) -> list[dict[str, Any]]:
        """Every flow, as ``flowkit flows list --json`` prints it, newest last."""
        from flowkit.report import flow_summary

        with contextlib.closing(self._backend.get_connection()) as conn:
            books = list(conn.get_logbooks())
        books.sort(key=lambda b: (b.created_at is None, b.created_at))
        return [flow_summary(book, flow) for book in books for flow in book]

    def report(self, uuid: str) -> dict[str, Any] | None:
        """One flow's execution report (``to_dict()``, with ``event_tree``), or None if none has ``uuid``."""
        from flowkit.report import ExecutionReport

        flow = self._flow(uuid)
        if flow is None:
            return None
        report = ExecutionReport.from_flow_detail(flow)
        data = report.to_dict()
        # The event log's tree of causes, as the flow page draws it.
        data["event_tree"] = [{"seq": row.event.seq, "depth": row.depth} for row in report.events.tree()]
        return data

    def states(self, uuid: str) -> dict[str, Any] | None:
        """The flow's state and each atom's: what the live view recolours by.

        A flow not run yet has no state recorded: ``PENDING``, as the list and the report say.
        """
        flow = self._flow(uuid)
        if flow is None:
            return None
        return {"state": flow.state or "PENDING", "atoms": {d.name: d.state or "PENDING" for d in flow}}

    def graph(self, uuid: str) -> dict[str, Any] | None:
        """The flow's graph with node positions (cached: a flow's shape does not change)."""
        with self._lock:
            if uuid in self._graphs:
                return self._graphs[uuid]
        flow = self._flow(uuid)
        if flow is None:
            return None
        shape, known = self._shape(flow)
        drawn = (layout(shape) if known else column(shape)).to_dict(shape)
        with self._lock:
            self._graphs[uuid] = drawn
        return drawn

    @staticmethod
    def _shape(flow: Any) -> tuple[GraphShape, bool]:
        """The flow's shape, and whether it is known (False: its atoms and no edges)."""
        stored = (flow.meta or {}).get(GRAPH_KEY)
        if isinstance(stored, dict):
            return GraphShape.from_dict(stored), True
        from flowkit import engines

        try:
            return shape_of(engines.flow_from_detail(flow)), True
        except Exception:  # no factory, or its code is not importable here
            LOG.debug("cannot rebuild flow %s; drawing its atoms in a column", flow.uuid, exc_info=True)
        # Without the flow's shape, its atoms in a column and no edges (none is known).
        return GraphShape(tuple({"id": d.name, "kind": "task", "flow": flow.name} for d in flow), ()), False
