"""A SQL backend that is not writable is read-only on the database's side too.

flowkit refuses every write of such a backend before any I/O (see
``test_contract_read_only.py``); these tests check the second fence: the
engine flowkit makes for it is read-only on the server (PostgreSQL's default
of read-only transactions, SQLite's ``query_only``), so a write made through
its engine or its connection by hand, standing in for a path flowkit forgot,
is refused by the database. And every read the monitor and the reading CLI
commands make still works through it, on real SQLite files and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from flowkit.persistence import backends
from flowkit.persistence.backends.impl_sqlalchemy import SQLAlchemyBackend
from tests.cli._flows import make_shop, run_logged
from tests.cli.conftest import flowkit_cmd

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's test client prefers another HTTP client than httpx
    from starlette.testclient import TestClient

#: What each database says when a read-only session or file is written to.
_REFUSED = ("read-only transaction", "readonly database")


@pytest.fixture(params=["sqlite file", "sqlite URI opened rw", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database a writable backend may write: the URL a reader is given (``writable=false`` added by it)."""
    if request.param == "sqlite file":
        return f"sqlite:///{tmp_path}/flows.db"
    if request.param == "sqlite URI opened rw":
        # A URL in URI form chooses its own mode: flowkit does not make it mode=ro.
        (tmp_path / "flows.db").touch()
        return f"sqlite:///file:{tmp_path}/flows.db?uri=true&mode=rw"
    found: str = request.getfixturevalue("postgresql_db_url")
    return found


def _run_shop(url: str, amount: int) -> str:
    return run_logged(url, make_shop, {"amount": amount})


def _rows(url: str) -> dict[str, list[str]]:
    """Every row of flowkit's tables, read through a writable backend."""
    with backends.backend(url) as backend:
        assert isinstance(backend, SQLAlchemyBackend)
        with backend.engine.connect() as db:
            return {
                table: sorted(map(repr, db.execute(sa.text(f"SELECT * FROM {table}")).all()))
                for table in ("logbooks", "flowdetails", "atomdetails")
            }


@pytest.fixture
def reader(url: str) -> Iterator[SQLAlchemyBackend]:
    made = backends.fetch({"connection": url, "writable": False})
    assert isinstance(made, SQLAlchemyBackend)
    try:
        yield made
    finally:
        made.close()


def _refused(write: Any) -> None:
    with pytest.raises(sa_exc.DBAPIError) as refused:
        write()
    assert any(words in str(refused.value) for words in _REFUSED), refused.value


def test_a_write_by_hand_on_the_engine_of_a_backend_not_writable_is_refused_by_the_database(
    url: str, reader: SQLAlchemyBackend
) -> None:
    _run_shop(url, 5)
    before = _rows(url)

    def delete_all() -> None:
        with reader.engine.connect() as raw:
            raw.execute(sa.text("DELETE FROM atomdetails"))
            raw.commit()

    _refused(delete_all)

    def after_a_rollback() -> None:
        # A session default set inside the first transaction would be undone by its rollback.
        with reader.engine.connect() as raw:
            raw.execute(sa.text("SELECT 1"))
            raw.rollback()
            raw.execute(sa.text("UPDATE logbooks SET name = 'changed'"))
            raw.commit()

    _refused(after_a_rollback)
    _refused(delete_all)  # on a connection the pool hands out again
    assert _rows(url) == before


def test_a_write_by_hand_on_the_connection_of_a_backend_not_writable_is_refused_by_the_database(
    url: str, reader: SQLAlchemyBackend
) -> None:
    _run_shop(url, 5)
    before = _rows(url)
    with contextlib.closing(reader.get_connection()) as conn:
        assert [book.name for book in conn.get_logbooks()]  # a read first: its transaction ended
        held = conn.connect()  # the database connection it keeps checked out

        def update() -> None:
            with held.begin():
                held.execute(sa.text("UPDATE flowdetails SET state = 'SUCCESS'"))

        _refused(update)
        assert [book.name for book in conn.get_logbooks()]  # and it still reads
    assert _rows(url) == before


def test_the_monitor_reads_everything_through_a_backend_not_writable(url: str) -> None:
    from flowkit.monitor import create_app
    from flowkit.monitor._data import Reader

    done, declined = _run_shop(url, 5), _run_shop(url, 500)
    before = _rows(url)
    with TestClient(create_app(url)) as client:
        listed = client.get("/api/flows")
        assert listed.status_code == 200, listed.text
        assert [(f["uuid"], f["state"]) for f in listed.json()] == [(done, "SUCCESS"), (declined, "REVERTED")]
        paged = client.get("/api/flows", params={"limit": 1})
        assert paged.status_code == 200, paged.text
        shown = client.get(f"/api/flows/{declined}")
        assert shown.status_code == 200, shown.text
        assert shown.json()["events"], "the event log is read"
        graph = client.get(f"/api/flows/{done}/graph")
        assert graph.status_code == 200, graph.text
        assert {n["id"] for n in graph.json()["nodes"]} >= {"reserve", "charge", "ship"}
        for page in ("/", f"/flows/{done}"):
            assert client.get(page).status_code == 200, page
    reader = Reader(url)
    try:
        states = reader.states(declined)  # what the live stream polls
        assert states is not None
    finally:
        reader.close()
    assert _rows(url) == before


def test_every_reading_command_works_through_a_backend_not_writable(url: str) -> None:
    done, declined = _run_shop(url, 5), _run_shop(url, 500)
    before = _rows(url)

    def ok(*args: str) -> str:
        ran = flowkit_cmd(*args, "--connection", url)
        assert ran.returncode == 0, (args, ran.stderr)
        return ran.stdout

    listed = json.loads(ok("flows", "list", "--json"))
    assert {row["uuid"] for row in listed} == {done, declined}
    assert json.loads(ok("flows", "show", declined, "--json"))["uuid"] == declined
    assert "charge" in ok("flows", "why", declined, "charge")
    assert ok("flows", "resume", declined, "--dry-run").startswith("resume plan for flow 'shop'")
    ok("db", "current")
    assert _rows(url) == before
