"""The monitor as an operator uses it over PostgreSQL: large flows, flows it cannot rebuild."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from flowkit import engines, task
from flowkit.monitor import create_app
from flowkit.monitor._data import GRAPH_KEY
from flowkit.patterns import linear_flow
from flowkit.persistence import backends
from tests.cli._flows import LONG
from tests.cli.conftest import flowkit_cmd, flowkit_json

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's test client prefers another HTTP client; httpx works
    from starlette.testclient import TestClient


class _Step(task.Task):
    def execute(self) -> str:
        return self.name


@pytest.fixture
def client(postgresql_db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(postgresql_db_url)) as test_client:
        yield test_client


def _flow_detail(url: str, uuid: str) -> Any:
    with backends.backend(url) as backend, backend.get_connection() as conn:
        return conn.get_flow_details(uuid)


def test_a_flow_of_2000_atoms_run_by_the_cli_keeps_its_shape(postgresql_db_url: str) -> None:
    run = ("run", "tests.cli._flows:make_long", "--no-progress", "--report", "none")
    done = flowkit_cmd(*run, "--connection", postgresql_db_url)
    assert done.returncode == 0, done.stderr
    (uuid,) = [row["uuid"] for row in flowkit_json("flows", "list", "--connection", postgresql_db_url)]
    # Kept for the monitor, which may not be able to import the flow's code.
    stored = _flow_detail(postgresql_db_url, uuid).meta[GRAPH_KEY]
    assert len([n for n in stored["nodes"] if n["kind"] == "task"]) == LONG
    assert len(stored["edges"]) == LONG - 1


def test_a_flow_it_cannot_rebuild_is_drawn_as_a_column(postgresql_db_url: str, client: TestClient) -> None:
    # Run without a factory: the monitor knows its atoms, not its edges.
    names = [f"step-{i}" for i in range(30)]
    with backends.backend(postgresql_db_url) as backend:
        engine = engines.load(linear_flow.Flow("unbuildable").add(*map(_Step, names)), backend=backend)
        engine.run()
        uuid = engine.storage.flow_uuid
    graph = client.get(f"/api/flows/{uuid}/graph").json()
    assert [n["id"] for n in graph["nodes"]] == names and graph["edges"] == []
    assert len({n["x"] for n in graph["nodes"]}) == 1
    ys = [n["y"] for n in graph["nodes"]]
    assert ys == sorted(ys) and len(set(ys)) == len(ys)
    assert graph["width"] < graph["height"]


def test_a_state_that_is_no_flow_state_is_refused_not_an_empty_list(client: TestClient) -> None:
    refused = client.get("/api/flows", params={"state": "FAILED"})
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("state 'FAILED' is no flow state; use one of FAILURE, ")
    assert client.get("/api/flows", params={"state": "failure"}).json() == []
