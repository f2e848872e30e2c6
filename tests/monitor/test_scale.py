"""The monitor over big flows: what a list read or a live poll costs, counted (never timed).

Each test counts what the monitor reads from a real SQLite backend (the atom
records its connection hands out) or what it sends, so that a cost growing with
the whole flow, or with every flow, shows as a number.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit.monitor import _data, create_app
from flowkit.monitor.app import READ_SHARE, Closing
from flowkit.persistence import backends, models
from flowkit.persistence.base import EVENT_LOG_KEY, READY_CAUSE

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's test client prefers another HTTP client; httpx works
    from starlette.testclient import TestClient


class _CountingConnection:
    """A real connection that counts the atom records in what it reads, and the atom states apart."""

    def __init__(self, conn: Any, counter: _CountingBackend) -> None:
        self._conn = conn
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def close(self) -> None:
        self._conn.close()

    def get_logbooks(self, lazy: bool = False) -> Iterator[Any]:
        books = list(self._conn.get_logbooks(lazy=lazy))
        self._counter.atoms += sum(len(flow) for book in books for flow in book)
        return iter(books)

    def get_logbook(self, uuid: str, lazy: bool = False) -> Any:
        book = self._conn.get_logbook(uuid, lazy=lazy)
        self._counter.atoms += sum(len(flow) for flow in book)
        return book

    def get_flows_for_book(self, uuid: str, lazy: bool = False) -> Iterator[Any]:
        flows = list(self._conn.get_flows_for_book(uuid, lazy=lazy))
        self._counter.atoms += sum(len(flow) for flow in flows)
        return iter(flows)

    def get_flow_details(self, uuid: str, lazy: bool = False) -> Any:
        flow = self._conn.get_flow_details(uuid, lazy=lazy)
        self._counter.atoms += len(flow)
        return flow

    def get_atoms_for_flow(self, uuid: str) -> Iterator[Any]:
        atoms = list(self._conn.get_atoms_for_flow(uuid))
        self._counter.atoms += len(atoms)
        return iter(atoms)

    def get_atom_states(self, uuid: str) -> dict[str, Any]:
        found = self._conn.get_atom_states(uuid)
        self._counter.states += len(found)
        return found


class _CountingBackend:
    """A real backend whose connections count the atom records read through them.

    ``atoms`` counts whole atom details, ``states`` the atoms read by
    ``get_atom_states`` (on SQLite, a few columns of each: no detail is built).
    """

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.atoms = 0
        self.states = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def get_connection(self) -> _CountingConnection:
        return _CountingConnection(self._backend.get_connection(), self)


def _big_flows(url: str, count: int, atoms: int) -> list[str]:
    """``count`` flows of ``atoms`` atoms each, one logbook each (records, nothing run): their uuids."""
    uuids = []
    with backends.backend(url) as backend, contextlib.closing(backend.get_connection()) as conn:
        for i in range(count):
            book = models.LogBook(f"book-{i}")
            flow = models.FlowDetail(f"big-{i}", uuid=f"big-{i:03d}")
            flow.state = "RUNNING"
            for a in range(atoms):
                detail = models.TaskDetail(f"atom-{a}", uuid=f"big-{i:03d}-{a}")
                detail.state = "SUCCESS" if a < atoms // 2 else "PENDING"
                flow.add(detail)
            book.add(flow)
            conn.save_logbook(book)
            uuids.append(flow.uuid)
    return uuids


def test_a_page_of_the_list_reads_the_atom_states_of_its_own_flows_only(tmp_path: Path) -> None:
    # Every list read (each open list page, every 2 s) read every atom of every flow,
    # though it summarises only the page's flows: 3 x 200 atom records for a page of one.
    # Then the page's flows were read whole, results and all, only to count their states.
    url = f"sqlite:///{tmp_path}/big.db"
    uuids = _big_flows(url, count=3, atoms=200)
    with backends.backend(url) as backend:
        counting = _CountingBackend(backend)
        with TestClient(create_app(counting)) as client:
            response = client.get("/api/flows", params={"limit": 1})
            assert response.status_code == 200
            (row,) = response.json()
            assert row["uuid"] == uuids[-1] and row["total"] == 200
            assert row["atoms"] == {"PENDING": 100, "SUCCESS": 100}
            assert response.headers["X-Total-Count"] == "3"
            assert (counting.atoms, counting.states) == (0, 200)
            # Filtered by state or name: still only the page's flow's atoms are read.
            counting.states = 0
            named = client.get("/api/flows", params={"limit": 1, "name": "big-1", "state": "RUNNING"})
            assert [r["uuid"] for r in named.json()] == [uuids[1]]
            assert (counting.atoms, counting.states) == (0, 200)


def test_a_poll_reads_the_atoms_states_not_their_details(tmp_path: Path) -> None:
    # Each poll of the live stream read the flow whole (results, failures, event logs) to
    # send states: 0.39 s a poll for 10,000 atoms on SQLite, most of it building details.
    url = f"sqlite:///{tmp_path}/big.db"
    (uuid,) = _big_flows(url, count=1, atoms=200)
    with backends.backend(url) as backend:
        counting = _CountingBackend(backend)
        reader = _data.Reader(counting)
        snapshot = reader.states(uuid)
        assert snapshot is not None
        assert (counting.atoms, counting.states) == (0, 200)
        assert snapshot["state"] == "RUNNING" and len(snapshot["atoms"]) == 200
        assert snapshot["atoms"]["atom-0"] == "SUCCESS" and snapshot["atoms"]["atom-199"] == "PENDING"
        # The graph's version the stream sends is the one the graph is drawn at.
        drawn = reader.graph(uuid)
        assert drawn is not None and drawn["version"] == snapshot["graph"]
        assert reader.states("no-such-flow") is None


def test_a_poll_where_one_atom_changed_sends_that_atom_only() -> None:
    # The stream sent the state of all 10,000 atoms at every change (over 250 kB a poll).
    names = [f"atom-{i}" for i in range(10_000)]
    before = {"state": "RUNNING", "atoms": dict.fromkeys(names, "PENDING"), "graph": "10000.0"}
    after = {**before, "atoms": {**before["atoms"], "atom-5000": "RUNNING"}}
    sent = _data.changes(before, after)
    assert sent["atoms"] == {"atom-5000": "RUNNING"} and sent["changes"] is True
    assert (sent["state"], sent["graph"]) == ("RUNNING", "10000.0")
    assert len(json.dumps(sent)) < 100
    # An atom new since (a spawned sub-flow) is a change; nothing changed sends no atom.
    grown = {**after, "atoms": {**after["atoms"], "spawned": "PENDING"}}
    assert _data.changes(after, grown)["atoms"] == {"spawned": "PENDING"}
    assert _data.changes(after, after)["atoms"] == {}


class _Waits(Closing):
    """Records how long each stream waits between two reads, and stops it at the second wait."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []

    async def wait(self, seconds: float) -> bool:
        self.asked.append(seconds)
        return len(self.asked) >= 2


def test_a_stream_waits_longer_between_polls_of_a_flow_slow_to_read(tmp_path: Path) -> None:
    # A read of a 10,000-atom flow took longer than the 0.5 s between two polls: the stream
    # read it without pause and a run writing the same SQLite file took twice as long.
    url = f"sqlite:///{tmp_path}/big.db"
    (uuid,) = _big_flows(url, count=1, atoms=10)
    ticks = itertools.count(0.0, 1.5)  # each reading of the clock 1.5 s later: a read "takes" 1.5 s
    waits = _Waits()
    app = create_app(url, poll_interval=0.5, closing=waits, clock=lambda: next(ticks))
    with TestClient(app) as client:
        text = client.get(f"/api/flows/{uuid}/stream").text
    assert text.count('data: {"state"') == 1 and ": still here" in text and "event: closing" in text
    assert waits.asked == [READ_SHARE * 1.5, READ_SHARE * 1.5]
    # A read quicker than the poll interval leaves the interval as it is.
    quick = _Waits()
    with TestClient(create_app(url, poll_interval=0.5, closing=quick, clock=lambda: 0.0)) as client:
        client.get(f"/api/flows/{uuid}/stream")
    assert quick.asked == [0.5, 0.5]


def test_a_graph_asked_for_again_reads_the_atoms_states_not_the_whole_flow(tmp_path: Path) -> None:
    # Each read of /graph read the flow whole (every atom's result, failure and event log)
    # only to learn that its version had not moved and answer the drawing it had cached.
    url = f"sqlite:///{tmp_path}/big.db"
    (uuid,) = _big_flows(url, count=1, atoms=200)
    with backends.backend(url) as backend:
        counting = _CountingBackend(backend)
        reader = _data.Reader(counting)
        first = reader.graph(uuid)
        assert first is not None and len(first["nodes"]) == 200
        assert counting.atoms == 200  # drawn once from the flow whole
        counting.atoms = counting.states = 0
        assert reader.graph(uuid) == first
        assert (counting.atoms, counting.states) == (0, 200)
        # The flow moved on (an atom joined): drawn again from the flow whole.
        with contextlib.closing(backend.get_connection()) as conn:
            flow = conn.get_flow_details(uuid)
            flow.add(models.TaskDetail("joined", uuid=f"{uuid}-joined"))
            conn.update_flow_details(flow)
        counting.atoms = counting.states = 0
        grown = reader.graph(uuid)
        assert grown is not None and len(grown["nodes"]) == 201 and grown["version"] != first["version"]
        assert counting.atoms == 201
        assert reader.graph("no-such-flow") is None


def test_a_graph_learned_from_the_event_log_is_sent_again_only_when_its_summary_changed(
    tmp_path: Path,
) -> None:
    # A graph learned from the event log gains a link each time an atom starts, so its version
    # moved at almost every poll, and the page fetched the whole summary again each time (134 kB
    # at 10,000 atoms) though its groups and their links changed a few times in the run. The page
    # says which drawing it has (``drawing=``): the same one is answered in a few bytes.
    from flowkit import engines
    from flowkit.listeners.events import EventLogListener
    from flowkit.patterns import linear_flow
    from tests.cli._flows import Step

    url = f"sqlite:///{tmp_path}/events.db"
    flow = linear_flow.Flow("big").add(*(Step(f"step-{i:04d}") for i in range(2100)))
    asked = whole = small = 0
    sizes: list[int] = []
    drawings: set[str] = set()
    reader = _data.Reader(url)
    with TestClient(create_app(url)) as client, backends.backend(url) as backend:
        engine = engines.load(flow, backend=backend)
        uuid = engine.storage.flow_uuid
        drawn: dict[str, Any] = {}  # what the page draws: the last whole answer
        version = None  # the version of what it draws
        with EventLogListener(engine):
            for step, _ in enumerate(engine.run_iter()):
                if step % 150:
                    continue
                snapshot = reader.states(uuid)  # what the live stream says
                assert snapshot is not None
                if snapshot["graph"] == version:
                    continue
                params = {"summary": "1"}
                if "drawing" in drawn:
                    params["drawing"] = drawn["drawing"]
                answer = client.get(f"/api/flows/{uuid}/graph", params=params)
                asked += 1
                got = answer.json()
                version = got["version"]
                if "groups" in got:
                    whole += 1
                    sizes.append(len(answer.content))
                    drawn = got
                    drawings.add(
                        json.dumps({k: v for k, v in got.items() if k not in ("version", "drawing")})
                    )
                else:
                    assert got == {"version": version, "drawing": drawn["drawing"], "unchanged": True}
                    small += len(answer.content)
    reader.close()
    assert drawn["summary"] is True and drawn["drawn_from"] == "events"
    assert asked > 3 * len(drawings)  # the version moved far more often than the summary
    # Each summary sent once: 9 groups linked as the run went (and drawn_from "atoms" until a first link).
    assert whole == len(drawings) <= 11
    assert small < 100 * (asked - whole) < min(sizes)


@pytest.mark.parametrize("kind", ["stored", "factory"])
def test_a_graph_of_a_fixed_shape_is_not_read_again_while_its_atoms_run(tmp_path: Path, kind: str) -> None:
    # The graph's version counts the event log's "ready" events, so it moved each time an atom
    # started; each move read the flow whole and laid it out again (a full read and rebuild per
    # poll at 10,000 atoms), though a stored or factory-built shape cannot change as atoms run.
    from flowkit import engines
    from flowkit.listeners.events import EventLogListener
    from flowkit.monitor._layout import shape_of
    from tests.monitor import _factories

    url = f"sqlite:///{tmp_path}/fixed.db"
    with backends.backend(url) as backend:
        counting = _CountingBackend(backend)
        app = create_app(counting, factories=["tests.monitor._factories.make_steps"])
        reader = _data.Reader(counting)  # what the live stream reads
        engine = engines.load_from_factory(_factories.make_steps, backend=backend)
        if kind == "stored":
            engine.storage.update_flow_metadata({_data.GRAPH_KEY: shape_of(engine).to_dict()})
        uuid = engine.storage.flow_uuid
        drawn: dict[str, Any] = {}
        versions: list[str] = []
        with TestClient(app) as client, EventLogListener(engine):
            for step, _ in enumerate(engine.run_iter()):
                if step % 40:
                    continue
                snapshot = reader.states(uuid)
                assert snapshot is not None
                counting.atoms = counting.states = 0
                params = {"drawing": drawn["drawing"]} if drawn else {}
                answer = client.get(f"/api/flows/{uuid}/graph", params=params)
                got = answer.json()
                # The version the page compares is still the live stream's.
                assert got["version"] == snapshot["graph"]
                versions.append(got["version"])
                if not drawn:
                    drawn = got
                    assert got["drawn_from"] == kind and len(got["nodes"]) == _factories.STEPS
                    continue
                # The atoms' states alone were read, and the drawing the page has answered briefly.
                assert (counting.atoms, counting.states) == (0, _factories.STEPS)
                assert got == {"version": got["version"], "drawing": drawn["drawing"], "unchanged": True}
                assert len(answer.content) < 100
                # Asked whole, it is the same drawing, at the version of now.
                whole = client.get(f"/api/flows/{uuid}/graph").json()
                assert whole == {**drawn, "version": got["version"]}
        reader.close()
    assert len(set(versions)) > 5  # the version moved as atoms started, the drawing did not


def test_a_graph_learned_from_the_event_log_made_again_the_same_is_not_laid_out_again(
    tmp_path: Path,
) -> None:
    # A link learned again (a flow run again, a retried atom made ready once more) moves the
    # version: the graph read whole found the same shape, but laid it out and summarised it again.
    from tests.monitor import _factories

    url = f"sqlite:///{tmp_path}/fan.db"
    uuid = _factories.run_fan(url)
    with backends.backend(url) as backend:
        counting = _CountingBackend(backend)
        reader = _data.Reader(counting)
        first = reader.graph(uuid)
        assert first is not None
        with contextlib.closing(backend.get_connection()) as conn:
            flow = conn.get_flow_details(uuid)
            detail = next(d for d in flow if d.name == "d")  # made ready by b and c
            events = list(detail.meta[EVENT_LOG_KEY])
            ready = next(e for e in events if e["cause"]["kind"] == READY_CAUSE)
            detail.meta[EVENT_LOG_KEY] = [*events, ready]  # the same link learned once more
            conn.update_atom_details(detail)
        counting.atoms = 0
        again = reader.graph(uuid)
        assert again is not None and again["version"] != first["version"]
        assert counting.atoms == len(flow)  # the version moved: read whole, as it may have grown
        assert {**again, "version": None} == {**first, "version": None}
        assert again["nodes"] is first["nodes"]  # the same drawing, not laid out again
