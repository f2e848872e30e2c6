"""Every cache store keeps the same contract, against real servers for Redis and PostgreSQL."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, exceptions, states, task
from flowkit.cache import CacheStore, DirStore, open_store
from flowkit.types.notifier import Notifier
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


def test_a_second_store_on_the_same_url_shares_the_entries(opened: tuple[str, Clock]) -> None:
    url, clock = opened
    first = store_for(url, clock)
    second = store_for(url, clock)
    try:
        first.put("k", "v")
        assert second.get("k") == "v"
        assert second.stats().url == first.stats().url
    finally:
        first.close()
        second.close()
        first.close()  # closing twice is harmless


def test_delete_removes_one_entry(opened: tuple[str, Clock]) -> None:
    url, clock = opened
    store = store_for(url, clock)
    try:
        store.put("a" * 64, "1")
        store.put("b" * 64, "2")
        store.delete("a" * 64)
        store.delete("c" * 64)  # nothing there: nothing to do
        assert store.get("a" * 64) is None
        assert store.get("b" * 64) == "2"
        assert store.stats().entries == 1
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


def test_the_size_bound_drops_the_oldest_written_even_if_read_since(opened: tuple[str, Clock]) -> None:
    # "The oldest entries are dropped" (doc/caching.rst): by when they were written, not read.
    url, clock = opened
    store = store_for(url, clock, "max_entries=2")
    try:
        for key in ("k1", "k2"):
            clock.now += 1
            store.put(key, key)
        clock.now += 1
        assert store.get("k1") == "k1"
        clock.now += 1
        store.put("k3", "k3")
        assert (store.get("k1"), store.get("k2"), store.get("k3")) == (None, "k2", "k3")
    finally:
        store.close()


def test_entries_expire_after_their_ttl(opened: tuple[str, Clock]) -> None:
    # By the injected clock on every store: the Redis store used to follow only
    # the server's clock, so its expiry could be tested only by waiting.
    url, clock = opened
    store = store_for(url, clock, "ttl=10")
    try:
        store.put("k", "v")
        clock.now += 9
        assert store.get("k") == "v"
        assert store.stats().entries == 1
        clock.now += 2
        assert store.get("k") is None
        assert store.stats().entries == 0
    finally:
        store.close()


def test_expired_entries_never_read_again_do_not_pile_up(opened: tuple[str, Clock]) -> None:
    # An expired entry went only when its own key was read again: a cache with a
    # ttl and no max_entries grew by every key it ever held (a table, a
    # directory, a process's memory), however little of it was live.
    url, clock = opened
    store = store_for(url, clock, "ttl=10")
    try:
        for i in range(30):
            store.put(f"{i:064d}", "v2:1")
        clock.now += 11
        store.put("n" * 64, "v2:new")
        assert store.stats().entries == 1
        assert store.clear() == 1  # what the store held: the live entry only
    finally:
        store.close()
    # A process running one flow opens the store for that run: its first write purges.
    for i in range(3):
        store = store_for(url, clock, "ttl=10")
        store.put(f"{i:064d}", "v2:1")
        store.close()
        clock.now += 11
    store = store_for(url, clock, "ttl=10")
    try:
        store.put("n" * 64, "v2:new")
        assert store.clear() == 1
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


def test_a_redis_store_whose_server_is_down_fails_naming_it_then_recovers(redis_server: Any) -> None:
    # As the SQL store below: StorageFailure naming the store and what failed, not redis-py's error.
    redis_server.start()
    redis_server.flushall()
    store = store_for(redis_server.url, Clock())
    try:
        store.put("a" * 64, "1")
        redis_server.stop()
        try:
            for action, call in (
                ("read an entry", lambda: store.get("a" * 64)),
                ("write an entry", lambda: store.put("b" * 64, "2")),
                ("count entries", store.stats),
                ("clear", store.clear),
            ):
                with pytest.raises(
                    exceptions.StorageFailure, match=f"store redis://.*: cannot {action}"
                ) as err:
                    call()
                # redis-py's words end the message and are not said again below it.
                words = str(err.value.__cause__)
                assert words in err.value.message and str(err.value).count(words) == 1, str(err.value)
        finally:
            redis_server.start()
        assert store.get("a" * 64) is None  # the server keeps nothing across a restart here
        store.put("a" * 64, "3")
        assert store.get("a" * 64) == "3"
    finally:
        store.close()


def test_a_frozen_redis_store_fails_within_the_urls_socket_timeout_then_recovers(own_redis: Any) -> None:
    # A frozen server keeps its connections open and never answers: only a socket timeout ends the wait.
    store = open_store(f"{own_redis.url}?ttl=60&socket_timeout=0.3")
    try:
        store.put("a" * 64, "1")
        own_redis.freeze()
        try:
            for action, call in (
                ("read an entry", lambda: store.get("a" * 64)),
                ("write an entry", lambda: store.put("b" * 64, "2")),
            ):
                began = time.monotonic()
                with pytest.raises(exceptions.StorageFailure, match=f"store redis://.*: cannot {action}"):
                    call()
                assert time.monotonic() - began < 2.0, f"{action} waited past the URL's socket_timeout"
        finally:
            own_redis.thaw()
        assert store.get("a" * 64) == "1"
    finally:
        store.close()


def test_a_redis_store_times_out_by_default(redis_flushed_url: str) -> None:
    from flowkit.cache._redis import SOCKET_TIMEOUT

    store: Any = open_store(redis_flushed_url)
    try:  # not left to the client's own default, which is "for ever" in redis-py before 8
        assert store._client.connection_pool.connection_kwargs["socket_timeout"] == SOCKET_TIMEOUT
    finally:
        store.close()


def test_a_redis_stores_timeout_option_sets_its_socket_timeouts_and_redis_own_options_win(
    redis_flushed_url: str,
) -> None:
    # ?timeout= is the one name every SQL and Redis store takes; redis-py's own options still apply.
    store: Any = open_store(f"{redis_flushed_url}?timeout=0.5")
    mixed: Any = open_store(f"{redis_flushed_url}?timeout=0.5&socket_timeout=2")
    try:
        assert store.timeout == 0.5
        kwargs = store._client.connection_pool.connection_kwargs
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.5, 0.5)
        kwargs = mixed._client.connection_pool.connection_kwargs
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.0, 0.5)
    finally:
        store.close()
        mixed.close()


def test_a_sql_store_whose_connection_dies_reconnects_at_once(postgresql_db_url: str) -> None:
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
        # The kept connection is dead (as after a database restart): the lookup is tried
        # again on a new one rather than failing, once, for a database that answers.
        assert store.get("a" * 64) == "1"
    finally:
        store.close()


def test_a_redis_store_whose_server_went_away_fails_naming_the_store_then_recovers() -> None:
    from tests.services import RedisServer

    server = RedisServer()
    server.start()
    try:
        store = open_store(server.url)
        store.put("a" * 64, "1")
        server.stop()
        # It used to be the client's own ConnectionError, naming neither the cache nor the URL.
        for call in (lambda: store.get("a" * 64), lambda: store.put("b" * 64, "2"), store.stats, store.clear):
            with pytest.raises(exceptions.StorageFailure, match=f"cache store {server.url}: cannot "):
                call()
        server.start()
        store.put("b" * 64, "2")
        assert store.get("b" * 64) == "2"  # the client reconnected by itself
        store.close()
    finally:
        server.close()


def _wait_for_a_lock_wait(engine: Any, what: str) -> None:
    """Poll until a session of the database waits for a lock.

    A new connection per look: PostgreSQL shows one transaction the same
    ``pg_stat_activity`` snapshot throughout, so polling in one could never
    see the wait begin.
    """
    import sqlalchemy as sa

    def waiting() -> int:
        with engine.connect() as watcher:
            query = (
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return int(watcher.execute(sa.text(query)).scalar())

    wait_until(waiting, timeout=10, message=what)


def test_two_writers_of_one_key_on_postgresql_the_last_write_wins(postgresql_db_url: str) -> None:
    import threading

    import sqlalchemy as sa

    store = store_for(postgresql_db_url, Clock())
    other = sa.create_engine(postgresql_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    outcome: list[BaseException | None] = []

    def second_writer() -> None:
        try:
            store.put("k" * 64, '"second"')
            outcome.append(None)
        except BaseException as err:  # reported below
            outcome.append(err)

    try:
        with other.connect() as first:
            # The first run's write of the key, not yet committed when the second one writes it.
            pending = first.begin()
            first.execute(
                sa.text("INSERT INTO flowkit_cache (key, value, created, expires) VALUES (:k, :v, 0, NULL)"),
                {"k": "k" * 64, "v": '"first"'},
            )
            writer = threading.Thread(target=second_writer)
            writer.start()
            _wait_for_a_lock_wait(other, "the second writer to wait for the first one's row")
            pending.commit()
            writer.join(10)
        # The second writer's insert used to fail on the key (a logged failed write) and keep "first".
        assert outcome == [None]
        assert store.get("k" * 64) == '"second"'
    finally:
        other.dispose()
        store.close()


def test_a_redis_entry_also_expires_by_the_servers_own_clock(redis_flushed_url: str) -> None:
    # Redis still drops expired entries itself: nothing to clean up, nor to count.
    store = store_for(redis_flushed_url, Clock(), "ttl=0.2")
    try:
        store.put("k", "v")
        assert store.get("k") == "v"
        wait_until(lambda: store.stats().entries == 0, timeout=5, message="Redis to drop the expired entry")
    finally:
        store.close()


def test_a_redis_entry_an_earlier_flowkit_wrote_without_its_expiry_is_a_miss(redis_flushed_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_flushed_url)
    store = store_for(redis_flushed_url, Clock())
    try:
        client.set("flowkit:cache:" + "k" * 64, '{"1": "a"}')  # as the store wrote entries before
        assert store.get("k" * 64) is None
        assert store.stats().entries == 0
        store.put("k" * 64, "v2:1")
        assert store.get("k" * 64) == "v2:1"
    finally:
        client.close()
        store.close()


def test_a_redis_entry_that_is_not_utf8_is_a_miss_not_an_error(redis_flushed_url: str) -> None:
    # Something else wrote under the prefix: the read used to raise UnicodeDecodeError,
    # failing the flow, where every other store's damaged entry is a logged miss.
    import redis

    client = redis.Redis.from_url(redis_flushed_url)
    store = store_for(redis_flushed_url, Clock())
    try:
        client.set("flowkit:cache:" + "k" * 64, b"-\n\xff\xfe")
        assert store.get("k" * 64) is None
        assert store.stats().entries == 0
    finally:
        client.close()
        store.close()


def test_a_redis_store_with_a_ttl_keeps_no_index_member_of_an_expired_entry(redis_flushed_url: str) -> None:
    import redis

    clock = Clock()
    store = store_for(redis_flushed_url, clock, "ttl=10")
    client = redis.Redis.from_url(redis_flushed_url)
    try:
        for key in ("k1", "k2", "k3"):
            store.put(key, "1")
        clock.now += 11  # all three have expired (Redis's own clock is not waited for)
        store.put("k4", "1")
        # The index used to keep a member per key ever written: a leak without bound.
        assert client.zrange("flowkit:cache:@index", 0, -1) == [b"k4"]
    finally:
        client.close()
        store.close()


class _CountingDirStore(DirStore):
    """A dir store that counts the entry files it reads."""

    reads = 0

    def _read(self, file: Path) -> Any:
        self.reads += 1
        return super()._read(file)


def test_a_bounded_dir_store_does_not_read_every_entry_at_each_write(tmp_path: Path) -> None:
    clock = Clock()
    store = _CountingDirStore(tmp_path / "cache", max_entries=100, clock=clock)
    for i in range(300):
        clock.now += 1
        store.put(f"{i:064d}", str(i))
    # Every write used to read every entry's header: some 25,000 reads here. Now
    # a pass past the bound reads them and drops a tenth more: ~10 per write.
    assert store.reads < 3_000
    kept = {int(file.stem) for file in (tmp_path / "cache").glob("*.json")}
    assert len(kept) <= 100
    assert max(kept) == 299 and min(kept) > 299 - 100  # the newest stay, the oldest went


def test_two_processes_opening_a_postgresql_cache_without_its_table_both_open_it(
    postgresql_db_url: str,
) -> None:
    import threading

    import sqlalchemy as sa

    from flowkit.cache._sql import TABLE

    other = sa.create_engine(postgresql_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    outcome: list[BaseException | CacheStore] = []

    def second_opener() -> None:
        try:
            outcome.append(open_store(postgresql_db_url))
        except BaseException as err:  # reported below
            outcome.append(err)

    try:
        with other.connect() as first:
            pending = first.begin()
            TABLE.create(first)  # the first process's CREATE TABLE, not yet committed
            opener = threading.Thread(target=second_opener)
            opener.start()
            _wait_for_a_lock_wait(other, "the second CREATE TABLE to wait for the first")
            pending.commit()
            opener.join(10)
        # The second one's CREATE TABLE used to fail on the catalog: "cannot open cache store".
        (store,) = outcome
        assert isinstance(store, CacheStore), store
        store.put("k" * 64, "1")
        assert store.get("k" * 64) == "1"
        store.close()
    finally:
        other.dispose()


def test_stats_name_the_store_with_its_password_masked(postgresql_db_url: str) -> None:
    # What stats() hands out ends up printed and logged: the password must not be in it.
    with_password = postgresql_db_url.replace("://flowkit@", "://flowkit:s3cret@")
    assert "s3cret" in with_password
    for url in ("memory://user:s3cret@stats-mask", with_password):
        store = open_store(url)
        try:
            stats = store.stats()
        finally:
            store.close()
        assert "s3cret" not in stats.url and ":***@" in stats.url, stats.url


class _Shapes(task.Task):
    """Returns what JSON alone gives back in another form: an int-keyed mapping and a tuple."""

    cache = True
    runs = 0

    def execute(self, n: int) -> Any:
        _Shapes.runs += 1
        return {n: "a", "pair": (n, n)}


def test_an_entry_written_in_the_old_json_form_is_a_miss_and_rewritten(
    opened: tuple[str, Clock],
) -> None:
    # Entries written before results were tagged hold the plain JSON form:
    # {1: "a"} as {"1": "a"}, tuples as lists. Decoded as they stand, a hit handed
    # the next run that form (m[1] failing downstream) until cache_version was bumped.
    url, clock = opened
    keys: list[str] = []

    def listen(state: str, details: dict[str, Any]) -> None:
        if state == states.SUCCESS:
            keys.append(details["cache_key"])

    def run() -> Any:
        engine = engines.load(_Shapes("shapes", provides="out"), store={"n": 1}, cache=store)
        engine.atom_notifier.register(Notifier.ANY, listen)
        engine.run()
        return engine.storage.fetch("out")

    store = store_for(url, clock)
    try:
        _Shapes.runs = 0
        expected = {1: "a", "pair": (1, 1)}
        assert run() == expected
        (key,) = set(keys)
        store.put(key, json.dumps({"1": "a", "pair": [1, 1]}))  # as the old encoder wrote it
        out = run()
        assert out == expected and repr(out) == repr(expected)
        assert _Shapes.runs == 2  # a miss: run again...
        assert run() == expected
        assert _Shapes.runs == 2  # ...and stored again in the form that comes back as it was
        assert set(keys) == {key}
    finally:
        store.close()


def test_a_dir_store_sees_the_entries_other_processes_wrote_at_its_next_new_key(tmp_path: Path) -> None:
    # Each process counted only the keys it wrote itself: two stores of one
    # directory, each under its own count of eight, left nine entries for good.
    url = f"dir://{tmp_path / 'cache'}"
    clock = Clock()
    first, second = store_for(url, clock, "max_entries=8"), store_for(url, clock, "max_entries=8")
    try:
        for i in range(3):
            clock.now += 1
            first.put(f"{i:064d}", f"v2:{i}")
        for i in range(3, 9):
            clock.now += 1
            second.put(f"{i:064d}", f"v2:{i}")
        clock.now += 1
        first.put(f"{9:064d}", "v2:9")
        assert first.stats().entries <= 8
        assert first.get(f"{9:064d}") == "v2:9"  # the oldest went, not the newest
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("kind", ["dir", "sqlite", "postgresql", "redis"])
def test_processes_filling_one_bounded_store_at_once_all_succeed(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Each filler has its own store object (its own connection), as separate
    # processes do: runs missing the same keys at once both write them, and
    # writes past the bound evict concurrently.
    import threading

    url = make_url(kind, request, tmp_path)
    clock = Clock()
    fillers = [store_for(url, clock, "max_entries=8") for _ in range(6)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(fillers))

    def fill(store: CacheStore, worker: int) -> None:
        try:
            start.wait(10)
            for i in range(100):
                key = f"{(i * 7 + worker) % 20:064d}"
                store.put(key, f"v2:{i}")
                store.get(key)  # gone already (evicted by another) or some filler's value
        except BaseException as err:  # reported below, with the thread's failure
            errors.append(err)

    try:
        threads = [threading.Thread(target=fill, args=(store, n)) for n, store in enumerate(fillers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        # Writers at once may leave a few entries past the bound, until the next
        # write (a dir store that counted only its own keys left 20 of 8 for good).
        clock.now += 1  # the newest entry, which no eviction picks
        fillers[0].put("f" * 64, "v2:last")
        assert 1 <= fillers[0].stats().entries <= 8
        assert fillers[1].get("f" * 64) == "v2:last"
    finally:
        for store in fillers:
            store.close()


def test_a_bounded_postgresql_write_does_not_wait_for_a_row_another_writer_holds(
    postgresql_db_url: str,
) -> None:
    # The eviction waited for the oldest row while another transaction held it
    # (that writer's upsert of the same key, or its own eviction); when that one
    # then waited for this write's new row, PostgreSQL killed one as a deadlock.
    import threading

    import sqlalchemy as sa

    clock = Clock()
    store = store_for(postgresql_db_url, clock, "max_entries=1")
    other = sa.create_engine(postgresql_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            store.put("n" * 64, "v2:new")
            outcome.append(None)
        except BaseException as err:  # reported below
            outcome.append(err)

    try:
        store.put("o" * 64, "v2:old")
        clock.now += 1
        with other.connect() as holder:
            pending = holder.begin()
            holder.execute(
                sa.text("UPDATE flowkit_cache SET value = 'v2:other' WHERE key = :k"), {"k": "o" * 64}
            )
            writer = threading.Thread(target=write)
            writer.start()
            writer.join(20)
            finished = not writer.is_alive()
            pending.rollback()
            writer.join(20)
        assert finished, "the write waited for the row the other transaction holds"
        assert outcome == [None]
        assert store.get("n" * 64) == "v2:new"
    finally:
        other.dispose()
        store.close()


@pytest.mark.parametrize("shared_kind", ["sqlite", "postgresql", "redis"])
def test_the_store_a_url_shares_serves_runs_again_after_it_was_closed(
    shared_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Runs naming one URL share its store; ``flowkit cache stats`` closes the one it opened,
    which must leave the next run of that process a store that reconnects, not a dead one."""
    url = make_url(shared_kind, request, tmp_path)
    store = open_store(url)
    store.put("a" * 64, "1")
    store.close()
    assert open_store(url) is store
    assert store.get("a" * 64) == "1"
    store.put("b" * 64, "2")
    assert store.stats().entries == 2
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_a_forked_child_opens_a_store_of_its_own_and_leaves_its_parents_alone(tmp_path: Path) -> None:
    """The child must not use (or close) the connection its parent goes on using."""
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    parent = open_store(url)
    parent.put("a" * 64, "1")
    pid = os.fork()
    if pid == 0:  # the child: say through its exit status what it found
        status = 1
        try:
            child = open_store(url)
            status = 0 if child is not parent and child.get("a" * 64) == "1" else 2
            child.put("b" * 64, "2")
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert open_store(url) is parent
    assert parent.get("b" * 64) == "2"
    parent.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_a_child_forked_while_another_thread_opens_a_store_opens_its_own(kind: str, tmp_path: Path) -> None:
    """A fork copies the store tables' locks as they are, held ones included.

    The thread that held one (opening a store: an SQL store creates its table
    under the lock) does not exist in the child, so the child's first
    ``open_store`` waited for ever. Forced here: the lock is held by another
    thread at the fork; the child is given 10 s (SIGALRM) before it counts as hung.
    """
    import signal
    import threading

    from flowkit.cache import _stores

    url = f"sqlite:///{tmp_path / 'cache.db'}" if kind == "sqlite" else f"memory://fork-{tmp_path.name}"
    lock = _stores._SHARED_LOCK if kind == "sqlite" else _stores._MEMORY_LOCK
    held, release = threading.Event(), threading.Event()

    def opening() -> None:
        with lock:
            held.set()
            release.wait(60)

    opener = threading.Thread(target=opening)
    opener.start()
    try:
        assert held.wait(30)
        pid = os.fork()
        if pid == 0:  # the child: say through its exit status what it found
            status = 1
            try:
                signal.alarm(10)
                store = open_store(url)
                store.put("a" * 64, "1")
                status = 0 if store.get("a" * 64) == "1" else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        opener.join()
    assert os.waitstatus_to_exitcode(status) == 0, "the child hung on a lock held at the fork"
