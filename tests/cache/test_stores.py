"""Every cache store keeps the same contract, against real servers for Redis and PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit import exceptions
from flowkit.cache import CacheStore, open_store
from tests.services import wait_until

KINDS = ["memory", "dir", "sqlite", "postgresql", "redis"]
_NAMES = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "memory":
        return f"memory://store-test-{next(_NAMES)}"
    if kind == "dir":
        return f"dir://{tmp_path / 'cache'}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'cache.db'}"
    if kind == "postgresql":
        return str(request.getfixturevalue("postgresql_db_url"))
    return str(request.getfixturevalue("redis_flushed_url"))


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opened(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Clock]]:
    yield make_url(kind, request, tmp_path), Clock()


def store_for(url: str, clock: Clock, query: str = "") -> CacheStore:
    sep = "&" if "?" in url else "?"
    return open_store(url + (sep + query if query else ""), clock=clock)


def test_put_get_and_clear(opened: tuple[str, Clock]) -> None:
    url, clock = opened
    store = store_for(url, clock)
    try:
        assert store.get("a" * 64) is None
        store.put("a" * 64, '{"x": 1}')
        store.put("b" * 64, "2")
        store.put("b" * 64, "3")
        assert store.get("a" * 64) == '{"x": 1}'
        assert store.get("b" * 64) == "3"
        stats = store.stats()
        assert (stats.entries, stats.hits, stats.misses, stats.writes) == (2, 2, 1, 3)
        assert store.clear() == 2
        assert store.get("a" * 64) is None
        assert store.stats().entries == 0
    finally:
        store.close()


def test_size_bound_drops_the_oldest(opened: tuple[str, Clock]) -> None:
    url, clock = opened
    store = store_for(url, clock, "max_entries=2")
    try:
        for i, key in enumerate(("k1", "k2", "k3")):
            clock.now += 1
            store.put(key, str(i))
        assert store.get("k1") is None
        assert store.get("k3") == "2"
        assert store.stats().entries == 2
    finally:
        store.close()


def test_entries_expire_after_their_ttl(kind: str, opened: tuple[str, Clock]) -> None:
    url, clock = opened
    if kind == "redis":
        # Redis expires keys by its own clock: a short TTL, polled for.
        store = store_for(url, clock, "ttl=0.2")
        store.put("k", "v")
        assert store.get("k") == "v"
        wait_until(lambda: store.get("k") is None, timeout=5, message="the Redis entry to expire")
        store.close()
        return
    store = store_for(url, clock, "ttl=10")
    try:
        store.put("k", "v")
        clock.now += 9
        assert store.get("k") == "v"
        clock.now += 2
        assert store.get("k") is None
        assert store.stats().entries == 0
    finally:
        store.close()


def test_unreachable_stores_fail_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(exceptions.StorageFailure, match="cannot use cache directory"):
        open_store(f"dir://{blocker}/sub")
    with pytest.raises(exceptions.StorageFailure, match="cannot reach cache store redis://127.0.0.1:1/0"):
        open_store("redis://127.0.0.1:1/0")


@pytest.mark.parametrize(
    "url", ["redis://user:s3cret@127.0.0.1:1/0", "postgresql://user:s3cret@127.0.0.1:1/db"]
)
def test_an_unreachable_store_is_named_with_its_password_masked(url: str) -> None:
    with pytest.raises(exceptions.StorageFailure) as err:
        open_store(url)
    assert "s3cret" not in str(err.value)
    assert "user:***@127.0.0.1:1" in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:s3cret@127.0.0.1:1/0?ttl=soon",
        "redis://user:s3cret@127.0.0.1:1/0?max_entries=0",
        "memory://user:s3cret@here?colour=red",
        "dir://user:s3cret@here",
        "amqp://user:s3cret@127.0.0.1:1/",
        "user:s3cret@127.0.0.1:1/0",
    ],
)
def test_a_refused_cache_url_is_named_with_its_password_masked(url: str) -> None:
    with pytest.raises(exceptions.TaskFlowException) as err:
        open_store(url)
    assert "s3cret" not in str(err.value)
    assert "user:***@" in str(err.value)


@pytest.mark.parametrize("kind", ["memory", "dir", "sqlite", "postgresql", "redis"])
def test_threads_share_one_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    import threading

    store = store_for(make_url(kind, request, tmp_path), Clock())
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(25):
                key = f"{worker:02d}{i:02d}".ljust(64, "0")
                store.put(key, str(i))
                assert store.get(key) == str(i)
        except BaseException as err:  # reported below, with the thread's failure
            errors.append(err)

    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        assert store.stats().entries == 150
    finally:
        store.close()


def test_a_sql_store_whose_connection_dies_fails_once_then_reconnects(postgresql_db_url: str) -> None:
    import sqlalchemy as sa

    store = store_for(postgresql_db_url, Clock())
    try:
        store.put("a" * 64, "1")
        # Another session ends every other connection to this database: the store's among them.
        admin = sa.create_engine(postgresql_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        admin.dispose()
        with pytest.raises(exceptions.StorageFailure, match="cache store .*: cannot read an entry"):
            store.get("a" * 64)
        assert store.get("a" * 64) == "1"  # a new connection, the same entry
    finally:
        store.close()
