"""The monitor's JSON API and its token check (Starlette's test client, a real SQLite file)."""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowkit import dynamic, engines, task
from flowkit.listeners.events import EventLogListener
from flowkit.monitor import create_app
from flowkit.patterns import linear_flow
from flowkit.persistence import backends, models
from tests.cli._flows import Step, make_shop, run_logged
from tests.monitor import _factories

with warnings.catch_warnings():
    # Starlette's test client now prefers another HTTP client than httpx; httpx still works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _run_shop(url: str, amount: int) -> str:
    return run_logged(url, make_shop, {"amount": amount})


@pytest.fixture
def flows(tmp_path: Path) -> tuple[str, str, str]:
    url = f"sqlite:///{tmp_path}/monitor.db"
    return url, _run_shop(url, 5), _run_shop(url, 500)


@pytest.fixture
def client(flows: tuple[str, str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(flows[0])) as test_client:
        yield test_client


def test_api_lists_every_flow_with_the_documented_keys(
    client: TestClient, flows: tuple[str, str, str]
) -> None:
    response = client.get("/api/flows")
    assert response.status_code == 200
    listed: list[dict[str, Any]] = response.json()
    assert [f["uuid"] for f in listed] == [flows[1], flows[2]]
    assert [f["state"] for f in listed] == ["SUCCESS", "REVERTED"]
    assert {"uuid", "name", "state", "atoms", "total", "started_at", "ended_at"} <= set(listed[0])
    only = client.get("/api/flows", params={"state": "reverted"}).json()
    assert [f["uuid"] for f in only] == [flows[2]]


def test_api_gives_one_flow_with_its_atoms_and_events(
    client: TestClient, flows: tuple[str, str, str]
) -> None:
    shown = client.get(f"/api/flows/{flows[2]}").json()
    assert shown["uuid"] == flows[2] and shown["state"] == "REVERTED"
    atoms = {a["name"]: a for a in shown["atoms"]}
    assert (
        atoms["charge"]["attempts"] == 2 and atoms["charge"]["failure"]["message"] == "card declined for 500"
    )
    assert shown["events"][0]["kind"] == "flow"
    # The event tree: every event once, the reverts under the failure that caused them.
    tree = shown["event_tree"]
    assert sorted(row["seq"] for row in tree) == [e["seq"] for e in shown["events"]]
    by_seq = {e["seq"]: e for e in shown["events"]}
    reverting = [row for row in tree if by_seq[row["seq"]]["state"] == "REVERTING"]
    assert reverting and all(row["depth"] == 1 for row in reverting)
    missing = client.get("/api/flows/no-such-uuid")
    assert missing.status_code == 404 and "no-such-uuid" in missing.json()["error"]


def test_api_says_how_long_a_flow_took_as_the_text_report_does(tmp_path: Path) -> None:
    # The page said "in 0.004s" of a flow run twice: the time over both runs, as if it were one.
    from flowkit.report import ExecutionReport

    url = f"sqlite:///{tmp_path}/twice.db"
    uuid = _factories.run_twice(url)
    with TestClient(create_app(url)) as test_client:
        report = test_client.get(f"/api/flows/{uuid}").json()
    assert report["runs"] == 2 and report["state"] == "SUCCESS"
    assert report["took"].startswith(f" in {report['duration']:.3f}s over 2 runs (the last "), report["took"]
    with backends.backend(url) as backend, backend.get_connection() as conn:
        (flow,) = [f for book in conn.get_logbooks() for f in book]
        text = ExecutionReport.from_flow_detail(flow).to_text().splitlines()[0]
    assert text.endswith(f"SUCCESS{report['took']}; 1 SUCCESS"), text


def test_api_graph_places_every_atom(client: TestClient, flows: tuple[str, str, str]) -> None:
    graph = client.get(f"/api/flows/{flows[1]}/graph").json()
    ids = {n["id"] for n in graph["nodes"] if n["kind"] != "barrier"}
    assert ids == {"reserve", "r1", "charge", "ship"}
    edges = {(u, v) for u, v, _ in graph["edges"]}
    assert ("reserve", "r1") in edges and ("r1", "charge") in edges and ("charge", "ship") in edges
    y = {n["id"]: n["y"] for n in graph["nodes"]}
    assert y["reserve"] < y["r1"] < y["charge"] < y["ship"]


def test_a_small_graph_asked_for_its_summary_is_the_whole_graph(
    client: TestClient, flows: tuple[str, str, str]
) -> None:
    whole = client.get(f"/api/flows/{flows[1]}/graph")
    assert client.get(f"/api/flows/{flows[1]}/graph", params={"summary": "1"}).json() == whole.json()
    assert "summary" not in whole.json()


def test_a_big_graph_is_summarised_by_sub_flow_and_a_group_is_given_alone(tmp_path: Path) -> None:
    # A flow of 10,000 atoms answered 10,000 placed nodes, which the page took seconds to draw.
    from flowkit.monitor._summary import SUMMARY_NODES

    url = f"sqlite:///{tmp_path}/big.db"
    uuid = _factories.run_big(url, 500)
    atoms = _factories.BIG_PARTS * _factories.BIG_SIZE
    assert atoms > SUMMARY_NODES
    with TestClient(create_app(url, factories=["tests.monitor._factories.make_big"])) as client:
        whole = client.get(f"/api/flows/{uuid}/graph").json()  # unchanged: every node, placed
        assert len(whole["nodes"]) == atoms and "summary" not in whole
        summary = client.get(f"/api/flows/{uuid}/graph", params={"summary": "1"}).json()
        assert summary["summary"] is True and summary["nodes"] == atoms
        assert (summary["drawn_from"], summary["version"]) == ("factory", whole["version"])
        groups = summary["groups"]
        # Each sub-flow in pieces of at most 250 nodes, named after it, in the flow's order.
        assert [g["label"] for g in groups] == [
            f"part-{k} ({i}/2)" for k in range(_factories.BIG_PARTS) for i in (1, 2)
        ]
        assert [len(g["atoms"]) for g in groups] == [225] * 10
        assert sum((g["atoms"] for g in groups), []) == [n["id"] for n in whole["nodes"]]
        assert [g["id"] for g in groups] == [g["atoms"][0] for g in groups]
        # Linked as their atoms are, one link per pair, and placed in that order.
        ids = [g["id"] for g in groups]
        assert summary["edges"] == [[u, v] for u, v in itertools.pairwise(ids)]
        assert [g["y"] for g in groups] == sorted(g["y"] for g in groups)
        # One group alone: its atoms placed from (0, 0), and every edge that touches them.
        failed = next(g for g in groups if "p2-119" in g["atoms"])
        part = client.get(f"/api/flows/{uuid}/graph", params={"group": failed["id"]}).json()
        assert part["group"] == failed["id"] and part["version"] == whole["version"]
        assert [n["id"] for n in part["nodes"]] == failed["atoms"]
        assert min(n["y"] for n in part["nodes"]) < 70 and part["height"] == 70 * len(failed["atoms"])
        edges = {(u, v) for u, v, _ in part["edges"]}
        assert ("p2-118", "p2-119") in edges and ("p2-119", "p2-120") in edges
        assert ("p1-449", "p2-000") in edges and ("p2-224", "p2-225") in edges  # to the groups around
        assert len(edges) == len(failed["atoms"]) + 1
        # Asked again with the drawing it has (the page's polls), each answers in a few bytes.
        for params, answer in (({}, whole), ({"summary": "1"}, summary), ({"group": failed["id"]}, part)):
            again = client.get(f"/api/flows/{uuid}/graph", params={**params, "drawing": answer["drawing"]})
            assert again.json() == {
                "version": whole["version"],
                "drawing": answer["drawing"],
                "unchanged": True,
            }
        assert len({whole["drawing"], summary["drawing"], part["drawing"]}) == 3
        unknown = client.get(f"/api/flows/{uuid}/graph", params={"group": "p2-001"})
        assert unknown.status_code == 404 and "'p2-001'" in unknown.json()["error"]
        assert client.get("/api/flows/nope/graph", params={"summary": "1"}).status_code == 404
        assert client.get("/api/flows/nope/graph", params={"group": "p2-000"}).status_code == 404


def test_two_adjacent_sub_flows_of_one_name_are_two_groups(tmp_path: Path) -> None:
    # Groups went by the flows' names: two sub-flows named "part" side by side made one group
    # of both, opened and counted as one flow.
    url = f"sqlite:///{tmp_path}/twins.db"
    uuid = run_logged(url, _factories.make_twins, {})
    size = _factories.TWIN_SIZE
    with TestClient(create_app(url, factories=["tests.monitor._factories.make_twins"])) as client:
        summary = client.get(f"/api/flows/{uuid}/graph", params={"summary": "1"}).json()
        assert summary["summary"] is True and summary["drawn_from"] == "factory"
        first, second = summary["groups"][:2]
        assert (first["label"], second["label"]) == ("part", "part")
        assert first["atoms"] == [f"a-{i:03d}" for i in range(size)]
        assert second["atoms"] == [f"b-{i:03d}" for i in range(size)]
        assert [first["id"], second["id"]] in summary["edges"]
        part = client.get(f"/api/flows/{uuid}/graph", params={"group": second["id"]}).json()
        assert [n["id"] for n in part["nodes"]] == second["atoms"]


def test_pages_and_assets_are_served_from_the_package(
    client: TestClient, flows: tuple[str, str, str]
) -> None:
    assert "flowkit monitor" in client.get("/").text
    page = client.get(f"/flows/{flows[1]}")
    assert page.status_code == 200 and "/static/monitor.js" in page.text
    script = client.get("/static/monitor.js")
    assert script.status_code == 200 and "EventSource" in script.text
    assert "http" not in script.text  # nothing from a CDN
    assert '<script src="/static/summary.js">' in page.text  # a big graph's summary
    summary = client.get("/static/summary.js")
    assert summary.status_code == 200 and "flowkitSummary" in summary.text and "http" not in summary.text
    # The graph renderer, Cytoscape.js, is vendored in the package with its licence.
    assert '<script src="/static/vendor/cytoscape.min.js">' in page.text
    assert 'src="http' not in page.text and 'href="http' not in page.text
    renderer = client.get("/static/vendor/cytoscape.min.js")
    assert renderer.status_code == 200 and "The Cytoscape Consortium" in renderer.text
    assert "Permission is hereby granted" in client.get("/static/vendor/cytoscape.LICENSE").text


def test_with_a_token_requests_without_it_get_401(flows: tuple[str, str, str]) -> None:
    with TestClient(create_app(flows[0], token="s3cret")) as client:
        for path in ("/", "/api/flows", f"/api/flows/{flows[1]}", "/static/monitor.js"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/api/flows", headers={"Authorization": "Bearer wrong"}).status_code == 401
        allowed = client.get("/api/flows", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200 and len(allowed.json()) == 2
        # A browser opens /?token=... once; the cookie carries it afterwards.
        assert client.get("/", params={"token": "s3cret"}).status_code == 200
        assert client.get("/api/flows").status_code == 200


def test_a_refusal_for_want_of_a_token_says_how_a_browser_gives_it(flows: tuple[str, str, str]) -> None:
    # It said only "send 'Authorization: Bearer TOKEN'", which a browser opening the
    # monitor's address cannot do: the way in for a browser, ?token=, went unsaid.
    with TestClient(create_app(flows[0], token="s3cret")) as client:
        refused = client.get("/")
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "a token is required: send 'Authorization: Bearer TOKEN', or, in a browser,"
        " open /?token=TOKEN once (a cookie keeps it)"
    }


def test_the_graph_is_drawn_without_calling_a_factory_that_is_not_allowed(tmp_path: Path) -> None:
    # It imported and called whatever factory a flow detail named: any writer of the database
    # could make the monitor run any function it can import.
    url = f"sqlite:///{tmp_path}/fan.db"
    uuid = _factories.run_fan(url)
    _factories.CALLS.clear()
    with TestClient(create_app(url)) as client:
        graph = client.get(f"/api/flows/{uuid}/graph").json()
    assert _factories.CALLS == []
    assert graph["drawn_from"] == "events"
    assert [n["id"] for n in graph["nodes"]] == ["a", "b", "c", "d"]
    # The links the event log recorded: each atom after those that made it ready.
    edges = {(u, v) for u, v, _ in graph["edges"]}
    assert {("a", "b"), ("a", "c")} <= edges and edges & {("b", "d"), ("c", "d")}
    y = {n["id"]: n["y"] for n in graph["nodes"]}
    assert y["a"] < y["b"] == y["c"] < y["d"]


def test_an_allowed_factory_is_called_to_draw_the_graph(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fan.db"
    uuid = _factories.run_fan(url)
    _factories.CALLS.clear()
    for allowed in (["tests.monitor._factories.make_fan"], ["tests.monitor."]):
        with TestClient(create_app(url, factories=allowed)) as client:
            graph = client.get(f"/api/flows/{uuid}/graph").json()
        assert graph["drawn_from"] == "factory"
        assert {("b", "d"), ("c", "d")} <= {(u, v) for u, v, _ in graph["edges"]}
    assert _factories.CALLS == ["make_fan", "make_fan"]
    # A name not listed is not called, nor one a listed name without its final dot starts.
    with TestClient(create_app(url, factories=["tests.monitor._factories.other", "tests.mon"])) as client:
        assert client.get(f"/api/flows/{uuid}/graph").json()["drawn_from"] == "events"
    assert len(_factories.CALLS) == 2
    with pytest.raises(TypeError, match="not the string"):
        create_app(url, factories="tests.monitor.")  # type: ignore[arg-type]


def _many_flows(url: str, count: int) -> list[str]:
    """``count`` flows, one logbook each, a second apart: their uuids, oldest first.

    Written as records (nothing run): the list reads only the details.
    """
    uuids = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with backends.backend(url) as backend, contextlib.closing(backend.get_connection()) as conn:
        for i in range(count):
            book = models.LogBook(f"book-{i}")
            book.created_at = start + timedelta(seconds=i)
            flow = models.FlowDetail(f"flow-{i}", uuid=f"flow-uuid-{i:05d}")
            flow.state = "SUCCESS" if i % 3 else "FAILURE"
            book.add(flow)
            conn.save_logbook(book)
            uuids.append(flow.uuid)
    return uuids


def _next(response: Any, rel: str) -> str | None:
    """The URL of the ``rel`` link of a response's ``Link`` header, or None."""
    for part in response.headers.get("link", "").split(","):
        target, _, params = part.partition(";")
        if params.strip() == f'rel="{rel}"':
            return target.strip().strip("<>")
    return None


def test_the_list_comes_in_pages_that_walk_every_flow_once(tmp_path: Path) -> None:
    # It had no paging: every flow in every answer, re-read by each open list page every 2 s.
    url = f"sqlite:///{tmp_path}/many.db"
    uuids = _many_flows(url, 1_500)
    with TestClient(create_app(url)) as client:
        first = client.get("/api/flows", params={"limit": 100})
        assert first.status_code == 200
        assert [f["uuid"] for f in first.json()] == uuids[-100:]  # the newest, oldest first as ever
        assert first.headers["x-total-count"] == "1500" and _next(first, "prev") is None
        # Older pages, by the Link header, down to the oldest flow: each flow once.
        seen: list[str] = []
        page: str | None = "/api/flows?limit=100"
        pages = 0
        while page is not None:
            response = client.get(page)
            seen[:0] = [f["uuid"] for f in response.json()]
            page, pages = _next(response, "next"), pages + 1
        assert seen == uuids and pages == 15
        # And back: the page after a flow holds the ones newer than it.
        newer = client.get("/api/flows", params={"limit": 10, "after": uuids[1000]})
        assert [f["uuid"] for f in newer.json()] == uuids[1001:1011]
        assert _next(newer, "prev") is not None and _next(newer, "next") is not None
        # Filters apply before paging, and the cursor keeps its place though filtered out.
        failed = client.get("/api/flows", params={"limit": 5, "state": "failure", "before": uuids[301]})
        assert [f["uuid"] for f in failed.json()] == [uuids[i] for i in (288, 291, 294, 297, 300)]
        assert failed.headers["x-total-count"] == "500"
        assert "state=failure" in (_next(failed, "next") or "")
        named = client.get("/api/flows", params={"limit": 3, "name": "flow-24"})
        assert [f["name"] for f in named.json()] == ["flow-247", "flow-248", "flow-249"]
        # Without limit= the API answers as before: every flow.
        assert len(client.get("/api/flows").json()) == 1_500
        for params, words in (
            ({"limit": 0}, "limit='0'"),
            ({"limit": "ten"}, "limit='ten'"),
            ({"limit": 5_000}, "from 1 to 1000"),
            ({"before": "nobody"}, "before='nobody' is no flow"),
            ({"before": uuids[1], "after": uuids[2]}, "not both"),
        ):
            refused = client.get("/api/flows", params=params)
            assert refused.status_code == 400 and words in refused.json()["error"], params


def test_an_allowed_module_does_not_lend_the_monitor_what_it_imports(tmp_path: Path) -> None:
    # factories=["tests.monitor."] was checked on the recorded name only: a detail
    # naming 'tests.monitor._factories.CALLS.append' (or any function the module
    # imports) had the monitor call it with the detail's arguments.
    import contextlib

    from flowkit.persistence import backends

    url = f"sqlite:///{tmp_path}/fan.db"
    uuid = _factories.run_fan(url)
    with backends.backend(url) as backend, contextlib.closing(backend.get_connection()) as conn:
        detail = conn.get_flow_details(uuid)
        detail.meta["factory"] = {
            "name": "tests.monitor._factories.CALLS.append",
            "args": ["leak"],
            "kwargs": {},
        }
        conn.update_flow_details(detail)
    _factories.CALLS.clear()
    with TestClient(create_app(url, factories=["tests.monitor."])) as client:
        assert client.get(f"/api/flows/{uuid}/graph").json()["drawn_from"] == "events"
    assert _factories.CALLS == []


def test_the_graph_cache_keeps_only_the_most_recently_asked_for(tmp_path: Path) -> None:
    # It kept every graph ever drawn: a monitor left running over a busy backend grew forever.
    from flowkit.monitor._data import GRAPH_CACHE_SIZE, Reader

    url = f"sqlite:///{tmp_path}/fan.db"
    first, second, third = (_factories.run_fan(url) for _ in range(3))
    _factories.CALLS.clear()
    reader = Reader(url, factories=["tests.monitor."], graph_cache_size=2)
    try:
        for uuid in (first, second, first):  # the second ask for `first` is cached
            assert reader.graph(uuid) is not None
        assert len(_factories.CALLS) == 2
        reader.graph(third)  # drops `second`, the least recently asked for
        assert len(_factories.CALLS) == 3
        reader.graph(first)
        assert len(_factories.CALLS) == 3
        reader.graph(second)  # drawn again
        assert len(_factories.CALLS) == 4
    finally:
        reader.close()
    assert GRAPH_CACHE_SIZE >= 1
    with pytest.raises(ValueError, match="graph_cache_size"):
        Reader(url, graph_cache_size=0)


class _Spawns(task.Task):
    """Adds ``s1`` then ``s2`` to the running flow."""

    def execute(self) -> Any:
        return dynamic.subflow(linear_flow.Flow("sub").add(Step("s1"), Step("s2")))


@pytest.mark.parametrize("stored", [True, False], ids=["stored-shape", "event-log"])
def test_the_graph_of_a_running_flow_is_drawn_again_as_the_flow_grows(tmp_path: Path, stored: bool) -> None:
    # The reader cached a flow's first drawing for good ("a flow's shape does not change"):
    # atoms spawned at run time, and links the event log learned later, were never drawn.
    from flowkit.monitor._data import GRAPH_KEY, Reader
    from flowkit.monitor._layout import shape_of

    url = f"sqlite:///{tmp_path}/grows.db"
    flow = linear_flow.Flow("grows").add(Step("one"), _Spawns("spawner"), Step("last"))
    drawings: list[tuple[list[str], set[tuple[str, str]], str]] = []
    versions: list[tuple[str | None, str | None]] = []
    reader = Reader(url)
    try:
        with backends.backend(url) as backend:
            engine = engines.load(flow, backend=backend)
            if stored:
                engine.storage.update_flow_metadata({GRAPH_KEY: shape_of(engine).to_dict()})
            uuid = engine.storage.flow_uuid
            with EventLogListener(engine):
                for _ in engine.run_iter():  # the reader looks after each step of the engine
                    graph = reader.graph(uuid)
                    states = reader.states(uuid)
                    assert graph is not None and states is not None
                    drawings.append(
                        (
                            [n["id"] for n in graph["nodes"]],
                            {(u, v) for u, v, _ in graph["edges"]},
                            graph["drawn_from"],
                        )
                    )
                    versions.append((states.get("graph"), graph.get("version")))
    finally:
        reader.close()
    first_nodes, _, _ = drawings[0]
    nodes, edges, source = drawings[-1]
    assert first_nodes == ["one", "spawner", "last"]
    assert nodes == ["one", "spawner", "last", "s1", "s2"]
    # Each atom below what made it ready; the spawner's link to `last` went to the sub-flow.
    assert edges == {("one", "spawner"), ("spawner", "s1"), ("s1", "s2"), ("s2", "last")}
    assert source == ("stored" if stored else "events")
    # The live stream's snapshots carry the version the page compares to ask for the graph again.
    assert all(seen == drawn is not None for seen, drawn in versions)
    assert len(set(versions)) > 2


def test_the_monitor_makes_a_missing_store_and_reads_through_a_backend_not_writable(tmp_path: Path) -> None:
    # Started before the first run, it makes the database (as documented), and from
    # then on only reads: its backend refuses every write.
    from flowkit import exceptions as exc
    from flowkit.monitor._data import Reader

    url = f"sqlite:///{tmp_path}/later.db"
    reader = Reader(url)
    try:
        assert reader.page().rows == []
        run = _run_shop(url, 5)
        assert [row["uuid"] for row in reader.page().rows] == [run]
        with contextlib.closing(reader._backend.get_connection()) as conn, pytest.raises(exc.StoreReadOnly):
            conn.destroy_logbook("any")
    finally:
        reader.close()


def test_the_monitor_migrates_no_older_schema_and_names_the_command_that_does(tmp_path: Path) -> None:
    # It ran the migrations on start: a newer monitor pointed at a database that older
    # engines still write changed its schema under them.
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from flowkit import exceptions as exc
    from flowkit.monitor._data import Reader
    from flowkit.persistence.backends.sqlalchemy import ALEMBIC_INI

    url = f"sqlite:///{tmp_path}/old.db"
    _run_shop(url, 5)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as db:
            config = Config(str(ALEMBIC_INI))
            config.attributes["connection"] = db
            command.downgrade(config, "0002")
        with pytest.raises(exc.StorageFailure, match=r"older than this flowkit needs .*`flowkit db upgrade"):
            Reader(url)
        with engine.connect() as db:
            assert db.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    finally:
        engine.dispose()


def test_api_says_an_atom_reset_for_its_next_iteration_took_its_time_in_earlier_attempts(
    tmp_path: Path,
) -> None:
    # The table said "1.000s" of a PENDING atom a loop had reset: iteration 1's time.
    from tests.unit.engines.test_loops import _suspended_between_iterations

    url = f"sqlite:///{tmp_path}/loop.db"
    with backends.backend(url) as backend:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        uuid = _suspended_between_iterations(backend).storage.flow_uuid
    with TestClient(create_app(url)) as test_client:
        report = test_client.get(f"/api/flows/{uuid}").json()
    took = {atom["name"]: (atom["state"], atom["took"]) for atom in report["atoms"]}
    assert took["poll"] == ("PENDING", "1.000s in earlier attempts")
    assert took["use"] == ("PENDING", "")
