"""The flowkit_cache table comes with the SQL schema: Alembic revision 0002, on real SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

sa = pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from alembic import command  # noqa: E402 - optional extra
from alembic.config import Config  # noqa: E402

from flowkit.cache import open_store  # noqa: E402
from flowkit.persistence import backends  # noqa: E402
from flowkit.persistence.backends.sqlalchemy import ALEMBIC_INI, HEAD  # noqa: E402


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flows.db'}"
    return str(request.getfixturevalue("postgresql_db_url"))


@contextlib.contextmanager
def raw(url: str) -> Iterator[sa.Connection]:
    """A SQLAlchemy connection in a transaction that commits on exit."""
    scheme, _, rest = url.partition("://")
    engine = sa.create_engine(f"{'postgresql+psycopg' if scheme == 'postgresql' else scheme}://{rest}")
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def migrate(url: str, action: str, revision: str) -> None:
    with raw(url) as conn:
        config = Config(str(ALEMBIC_INI))
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)


def upgrade_to_head(url: str) -> None:
    backend = backends.fetch({"connection": url})
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
            assert conn.current_revision() == HEAD
    finally:
        backend.close()


def cache_shape(url: str) -> tuple[set[str], set[str]]:
    with raw(url) as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table("flowkit_cache"):
            return set(), set()
        columns = {column["name"] for column in inspector.get_columns("flowkit_cache")}
        indexes = {index["name"] for index in inspector.get_indexes("flowkit_cache")}
    return columns, indexes


def test_upgrading_from_the_first_schema_adds_the_cache_table_and_keeps_the_flows(db_url: str) -> None:
    migrate(db_url, "upgrade", "0001")
    with raw(db_url) as conn:
        conn.execute(sa.text("INSERT INTO logbooks (uuid, name) VALUES ('b1', 'kept')"))
    assert cache_shape(db_url) == (set(), set())

    upgrade_to_head(db_url)

    assert cache_shape(db_url) == ({"key", "value", "created", "expires"}, {"ix_flowkit_cache_created"})
    backend = backends.fetch({"connection": db_url})
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            assert conn.get_logbook("b1").name == "kept"
    finally:
        backend.close()
    store = open_store(db_url)
    try:
        store.put("k" * 64, '{"v": 1}')
        assert store.get("k" * 64) == '{"v": 1}'
    finally:
        store.close()


def test_a_table_the_cache_store_made_first_is_kept_by_the_upgrade(db_url: str) -> None:
    store = open_store(db_url)
    try:
        store.put("k" * 64, "42")
    finally:
        store.close()

    upgrade_to_head(db_url)

    store = open_store(db_url)
    try:
        assert store.get("k" * 64) == "42"
    finally:
        store.close()


def test_downgrading_to_the_first_schema_drops_only_the_cache_table(db_url: str) -> None:
    upgrade_to_head(db_url)
    migrate(db_url, "downgrade", "0001")
    assert cache_shape(db_url) == (set(), set())
    with raw(db_url) as conn:
        assert sa.inspect(conn).has_table("logbooks")
    migrate(db_url, "upgrade", "head")
    assert cache_shape(db_url)[0] == {"key", "value", "created", "expires"}
