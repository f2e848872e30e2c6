"""A cache store whose server (PostgreSQL, Redis) stops in the middle of a run, then comes back.

A cache is there to save time: the run goes on uncached, with one WARNING
naming the atom and the store (password masked), rather than failing the
atom and reverting the whole flow as a lookup failure once did. Once the
server is back, the next run uses the store again.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, exceptions, states, task
from flowkit.cache import TIMEOUT, open_store
from flowkit.patterns import linear_flow
from tests import services
from tests.gate import Gate, held

__all__: list[str] = []

#: Bounded wait for the gated atom and for a run thread.
RUN_TIMEOUT = 60.0


GATE = Gate(RUN_TIMEOUT)


class Gated(task.Task):
    """Runs first; waits (bounded) for the test to stop the store's server and let it go."""

    def execute(self) -> int:
        GATE.enter()
        return 1


class Double(task.Task):
    cache = True
    default_provides = "y"

    def execute(self, x: int) -> int:
        GATE.calls.append(x)
        return x * 2


class Last(task.Task):
    default_provides = "z"

    def execute(self, y: int) -> int:
        return y + 1


def make_flow() -> linear_flow.Flow:
    return linear_flow.Flow("cached").add(Gated("gated"), Double("double"), Last("last"))


@pytest.fixture
def gate() -> Iterator[Gate]:
    yield from held(GATE)


def _run(url: str, x: int) -> Any:
    GATE.go.set()
    engine = engines.load(make_flow(), store={"x": x}, cache=url)
    engine.run()
    return engine


def _run_through_an_outage(server: Any, url: str, x: int) -> tuple[Any, list[BaseException | None]]:
    """Run the flow, stopping ``server`` while the first atom runs; start it again once the run ended."""
    engine = engines.load(make_flow(), store={"x": x}, cache=url)
    thread, outcome = services.start_run(engine)
    assert GATE.inside.wait(RUN_TIMEOUT), "the gated atom never ran"
    server.stop()
    try:
        GATE.go.set()
        thread.join(RUN_TIMEOUT)
        assert outcome, "the run hung while the cache store was away"
    finally:
        server.start()
    return engine, outcome


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_a_run_goes_on_uncached_while_its_store_restarts_and_the_next_run_uses_it_again(
    kind: str, request: pytest.FixtureRequest, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "flowkit")
    if kind == "postgresql":
        server: Any = request.getfixturevalue("postgresql_server")
        # A password in the URL (trust auth ignores it): the warning must mask it.
        url = str(request.getfixturevalue("postgresql_db_url")).replace("flowkit@", "flowkit:s3cret@")
        shown = url.replace("s3cret", "***")
    else:
        server = request.getfixturevalue("redis_server")
        url = shown = str(request.getfixturevalue("redis_flushed_url"))
    _run(url, 5)  # the store is open and holds x=5's entry
    gate.go.clear()
    gate.inside.clear()
    gate.calls.clear()
    engine, outcome = _run_through_an_outage(server, url, 7)
    assert outcome == [None], f"the run failed with its cache store away: {outcome!r}"
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert engine.storage.fetch("z") == 15
    assert gate.calls == [7]  # run, uncached
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    said = [m for m in warnings if "atom 'double'" in m and "runs uncached" in m]
    assert len(said) == 1, warnings
    assert shown in said[0], said[0]
    assert "s3cret" not in " ".join(warnings)
    # Back: the next runs use the store again (a stored entry is a hit).
    gate.calls.clear()
    _run(url, 9)
    _run(url, 9)
    assert gate.calls == [9]


def test_a_sql_store_whose_database_restarted_since_its_last_call_serves_the_next_one(
    postgresql_server: Any, postgresql_db_url: str
) -> None:
    # The store keeps one connection, which the restart ends: the next call used to fail
    # on it (in a run: a WARNING and the call run uncached) although the database was back.
    store = open_store(postgresql_db_url)
    try:
        store.put("a" * 64, "1")
        postgresql_server.stop()
        postgresql_server.start()
        assert store.get("a" * 64) == "1"
        store.put("b" * 64, "2")
        assert store.get("b" * 64) == "2"
    finally:
        store.close()


#: The ``?timeout=`` of the stores in the hung-server tests: short, so that they pass quickly.
BOUND = 1.0
#: How long a call or a run through a hung store may take in those tests: its
#: bound (the default's 5 s, with no ``?timeout=``), a reconnect as long, and
#: room for a loaded machine.
#: Before stores had a bound, a lookup on a frozen PostgreSQL waited for ever,
#: and a write on a locked SQLite file 60 s (30 s busy timeout, tried twice).
HUNG_LIMIT = 20.0


class _Hang:
    """A store's server made to hang (``begin``) and let go (``end``), and the store's URL."""

    def __init__(self, url: str, bound: float, begin: Callable[[], None], end: Callable[[], None]) -> None:
        #: The store's URL, and the seconds it waits for its server (its ``?timeout=`` or the default).
        self.url, self.bound = url, bound
        self.begin, self.end = begin, end


class _SqliteHolder:
    """Another process that takes a SQLite file's write lock and holds it until :meth:`unlock`."""

    SCRIPT = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "db.execute('ROLLBACK')\n"
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process: subprocess.Popen[str] | None = None

    def lock(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        # Bounded: the child either prints or exits (and readline then returns "").
        assert self.process.stdout.readline() == "locked\n", "the other process could not lock the file"

    def unlock(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.communicate("\n", timeout=RUN_TIMEOUT)


@pytest.fixture(params=["postgresql", "postgresql?timeout", "redis", "sqlite"])
def hang(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Hang]:
    """PostgreSQL or Redis stopped (SIGSTOP: there, never answering), or a SQLite file locked elsewhere.

    SQLite's case is another process holding the file's write lock until told
    to let go. ``postgresql`` is a store with the default bound (5 s), which
    the others' ``?timeout=`` shortens.
    """
    if request.param == "sqlite":
        path = tmp_path / "cache.db"
        holder = _SqliteHolder(path)
        try:
            yield _Hang(f"sqlite:///{path}?timeout={BOUND}", BOUND, holder.lock, holder.unlock)
        finally:
            holder.unlock()
        return
    if request.param.startswith("postgresql"):
        server: Any = request.getfixturevalue("postgresql_server")
        url = str(request.getfixturevalue("postgresql_db_url"))
    else:
        server = request.getfixturevalue("own_redis")
        url = server.url
    try:
        if request.param == "postgresql":
            yield _Hang(url, TIMEOUT, server.freeze, server.thaw)
        else:
            yield _Hang(f"{url}?timeout={BOUND}", BOUND, server.freeze, server.thaw)
    finally:
        server.thaw()


def _bounded(call: Callable[[], Any], seconds: float) -> tuple[Any, BaseException | None]:
    """What ``call()`` returned or raised, in a thread of its own.

    The test fails if it is still waiting after ``seconds``.
    """
    outcome: list[tuple[Any, BaseException | None]] = []

    def run() -> None:
        try:
            outcome.append((call(), None))
        except BaseException as err:
            outcome.append((None, err))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"the call was still waiting for its hung store after {seconds} s"
    return outcome[0]


def test_a_run_goes_on_uncached_while_its_store_hangs_and_the_next_run_uses_it_again(
    hang: _Hang, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "flowkit")
    _run(hang.url, 5)  # the store is open and holds x=5's entry
    gate.go.clear()
    gate.inside.clear()
    gate.calls.clear()
    engine = engines.load(make_flow(), store={"x": 7}, cache=hang.url)
    thread, outcome = services.start_run(engine)
    assert GATE.inside.wait(RUN_TIMEOUT), "the gated atom never ran"
    hang.begin()
    try:
        GATE.go.set()
        thread.join(HUNG_LIMIT)
        assert outcome, f"the run still waited for its hung cache store after {HUNG_LIMIT} s"
    finally:
        hang.end()
    assert outcome == [None], f"the run failed with its cache store hung: {outcome!r}"
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert engine.storage.fetch("z") == 15
    assert gate.calls == [7]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    shown = hang.url.partition("?")[0]
    if hang.url.startswith("sqlite"):
        # Reading goes on beside a writer (WAL): the lookup was a miss; the write timed out.
        said = [m for m in warnings if "could not cache the result of atom 'double'" in m]
        assert len(said) == 1, warnings
        failure = next(r for r in caplog.records if r.getMessage() in said).exc_info
        assert failure is not None and f"stayed locked for {hang.bound:g} s" in str(failure[1]), failure
    else:
        said = [m for m in warnings if "atom 'double'" in m and "runs uncached" in m]
        assert len(said) == 1, warnings
        assert shown.partition("://")[2] in said[0], said[0]
        if hang.url.startswith("postgresql"):
            assert f"no answer within {hang.bound:g} s (the store URL's ?timeout=)" in said[0], said[0]
    # Answering again: the connection that timed out is not reused, the next runs use the store.
    gate.calls.clear()
    _run(hang.url, 9)
    _run(hang.url, 9)
    assert gate.calls == [9]


def test_a_lookup_and_a_write_on_a_hung_store_fail_within_its_timeout_then_it_serves_again(
    hang: _Hang,
) -> None:
    store = open_store(hang.url)
    store.put("a" * 64, "1")
    hang.begin()
    try:
        if not hang.url.startswith("sqlite"):  # SQLite reads beside the writer holding its lock
            _found, err = _bounded(lambda: store.get("a" * 64), HUNG_LIMIT)
            assert isinstance(err, exceptions.StorageFailure), err
            assert "cannot read an entry" in str(err), err
        _done, err = _bounded(lambda: store.put("b" * 64, "2"), HUNG_LIMIT)
        assert isinstance(err, exceptions.StorageFailure), err
        assert "cannot write an entry" in str(err), err
        assert hang.url.partition("?")[0].partition("://")[2] in str(err), err
    finally:
        hang.end()
    assert _bounded(lambda: store.get("a" * 64), HUNG_LIMIT) == ("1", None)
    store.put("b" * 64, "2")
    assert store.get("b" * 64) == "2"


def test_a_postgresql_store_closed_and_used_again_is_still_bounded(
    postgresql_server: Any, postgresql_db_url: str
) -> None:
    # Closing a store ends its watchdog; its next call (a closed store serves again) must start another.
    store = open_store(f"{postgresql_db_url}?timeout={BOUND}")
    store.put("a" * 64, "1")
    store.close()
    assert store.get("a" * 64) == "1"
    postgresql_server.freeze()
    try:
        _found, err = _bounded(lambda: store.get("a" * 64), HUNG_LIMIT)
    finally:
        postgresql_server.thaw()
    assert isinstance(err, exceptions.StorageFailure), err
    assert _bounded(lambda: store.get("a" * 64), HUNG_LIMIT) == ("1", None)
    store.close()


def test_threads_sharing_a_hung_postgresql_store_each_wait_at_most_its_timeout(
    postgresql_server: Any, postgresql_db_url: str
) -> None:
    # A parallel engine's threads take turns with the store's one connection:
    # the second waits for the first's call, and that wait is bounded too.
    store = open_store(f"{postgresql_db_url}?timeout={BOUND}")
    store.put("a" * 64, "1")
    outcomes: list[tuple[Any, BaseException | None]] = []
    postgresql_server.freeze()
    try:
        threads = [
            threading.Thread(
                target=lambda: outcomes.append(_bounded(lambda: store.get("a" * 64), HUNG_LIMIT))
            )
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HUNG_LIMIT * 2)
        assert len(outcomes) == 3, f"lookups still waiting for the hung store: {3 - len(outcomes)}"
    finally:
        postgresql_server.thaw()
    assert all(isinstance(err, exceptions.StorageFailure) for _found, err in outcomes), outcomes
    assert _bounded(lambda: store.get("a" * 64), HUNG_LIMIT) == ("1", None)


def test_a_postgresql_lookup_bounded_behind_a_table_lock_while_clear_waits_it_out(
    postgresql_server: Any, postgresql_db_url: str
) -> None:
    # A migration or a person holding the table locked: a lookup gives up after
    # the store's timeout, while `flowkit cache clear`, which goes over the
    # whole table and may take longer than that on a large one, waits its turn.
    store = open_store(f"{postgresql_db_url}?timeout={BOUND}")
    store.put("a" * 64, "1")
    dbname = postgresql_db_url.rpartition("/")[2]
    holder = postgresql_server.connect(dbname)
    try:
        holder.execute("LOCK TABLE flowkit_cache IN ACCESS EXCLUSIVE MODE")
        _found, err = _bounded(lambda: store.get("a" * 64), HUNG_LIMIT)
        assert isinstance(err, exceptions.StorageFailure), err
        assert f"no answer within {BOUND:g} s" in str(err), err
        cleared: list[int] = []
        clearing = threading.Thread(target=lambda: cleared.append(store.clear()), daemon=True)
        clearing.start()

        def clear_waits() -> bool:
            # Asked outside the holder's transaction, which sees one snapshot of the activity.
            with postgresql_server.connect(dbname, autocommit=True) as looker:
                row = looker.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM flowkit_cache%'"
                ).fetchone()
            return bool(row and row[0])

        services.wait_until(clear_waits, HUNG_LIMIT, message="the clear waiting for the table lock")
        clearing.join(BOUND * 2)
        assert clearing.is_alive() and not cleared, "clear gave up behind the lock"
    finally:
        holder.rollback()
        holder.close()
    clearing.join(HUNG_LIMIT)
    assert cleared == [1]
    assert _bounded(lambda: store.get("a" * 64), HUNG_LIMIT) == (None, None)
    store.close()
