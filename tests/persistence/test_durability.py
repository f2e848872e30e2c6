"""Crash windows, connections and values a backend cannot hold (issue 9's durability items).

Each test here reproduced a defect before it was fixed: a run made unresumable by
a kill between two writes at load, connections left open after a run, results
that wedged an atom in RUNNING, a re-run that rewrote a failed revert as
REVERTED, a resumed parallel revert that skipped an in-doubt atom.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, exceptions, states, task
from flowkit.patterns import graph_flow, linear_flow
from flowkit.persistence import backends, models
from flowkit.types.failure import Failure

CALLS: list[tuple[str, str]] = []


class Step(task.Task):
    def execute(self, value: int) -> int:
        CALLS.append((self.name, "execute"))
        return value + 1

    def revert(self, value: int, **kwargs: Any) -> None:
        CALLS.append((self.name, "revert"))


class Returns(task.Task):
    """Returns what its ``made`` argument builds (a value some backend cannot store)."""

    def execute(self, value: int) -> Any:
        CALLS.append((self.name, "execute"))
        return MAKERS[self.name]()


class Boom(task.Task):
    def execute(self, value: int) -> None:
        CALLS.append((self.name, "execute"))
        raise RuntimeError("boom")


class BadRevert(task.Task):
    def execute(self, value: int) -> int:
        CALLS.append((self.name, "execute"))
        return value

    def revert(self, value: int, **kwargs: Any) -> None:
        CALLS.append((self.name, "revert"))
        raise RuntimeError("cannot undo")


def _deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


MAKERS: dict[str, Any] = {
    "nan": lambda: [math.nan, math.inf],
    "surrogate": lambda: "a\ud800b",
    "deep": lambda: _deep(100_000),
    "object": object,
}


def chain_factory(count: int) -> linear_flow.Flow:
    flow = linear_flow.Flow("chain")
    for i in range(count):
        flow.add(Step(f"s{i}", provides=f"s{i}", rebind={"value": "value" if i == 0 else f"s{i - 1}"}))
    return flow


class Killed(BaseException):
    """What a SIGKILL looks like to the code after it: nothing more happens."""


@pytest.fixture(autouse=True)
def _reset_calls() -> Iterator[None]:
    CALLS.clear()
    yield


@pytest.fixture(params=["memory", "sqlite", "dir"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path / 'flows.db'}",
        "dir": f"dir://{tmp_path / 'store'}",
    }[request.param]
    made = backends.fetch({"connection": url})
    with contextlib.closing(made.get_connection()) as conn:
        conn.upgrade()
    yield made
    made.close()


def only_flow(backend: Any) -> models.FlowDetail:
    with contextlib.closing(backend.get_connection()) as conn:
        (book,) = list(conn.get_logbooks())
        (fd,) = list(book)
        return conn.get_flow_details(fd.uuid)


# -- 1. the writes that start a run ------------------------------------------------------


def test_a_kill_right_after_the_first_write_at_load_leaves_a_resumable_run(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_type = type(backend.get_connection())

    def killed(*args: Any, **kwargs: Any) -> None:
        raise Killed

    # Every write after the logbook's first save is where the process dies.
    monkeypatch.setattr(conn_type, "save_flow_progress", killed)
    monkeypatch.setattr(conn_type, "update_flow_details", killed)
    with contextlib.suppress(Killed):
        engines.load_from_factory(chain_factory, factory_args=[2], store={"value": 1}, backend=backend)
    monkeypatch.undo()

    engine = engines.load_from_detail(only_flow(backend), backend=backend)
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert engine.storage.fetch("s1") == 3


def test_load_writes_the_run_and_its_store_in_one_write(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_type = type(backend.get_connection())
    writes: list[str] = []
    for name in ("save_logbook", "update_flow_details", "save_flow_progress", "update_atom_details"):
        original = getattr(conn_type, name)

        def counting(self: Any, *args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            writes.append(_name)
            return _original(self, *args, **kw)

        monkeypatch.setattr(conn_type, name, counting)
    engines.load(chain_factory(1), store={"value": 1}, backend=backend)
    assert writes == ["save_logbook"]
    assert only_flow(backend).meta["store"] == {"value": 1}


def test_a_store_key_that_is_not_a_string_is_refused_at_load_naming_it(backend: Any) -> None:
    with pytest.raises(exceptions.InvalidFormat, match=r"\(1, 2\)"):
        engines.load(chain_factory(1), store={"value": 1, (1, 2): "x"}, backend=backend)
    with contextlib.closing(backend.get_connection()) as conn:
        assert list(conn.get_logbooks()) == []


def test_an_atom_name_that_is_not_a_string_is_refused_before_a_persisted_run_runs(backend: Any) -> None:
    # A stored name is text: resumed, atom 7 would not find its record "7" and run again
    # (TaskFlow re-runs it, or fails with KeyError). In memory any name runs, as in TaskFlow.
    flow = linear_flow.Flow("f").add(Step("first"), Step(7))
    engine = engines.load(flow, store={"value": 1}, backend=backend)
    with pytest.raises(exceptions.InvalidFormat, match=r"^atom 7 of flow 'f' has a name of type int"):
        engine.run()
    assert CALLS == []
    assert engines.run(linear_flow.Flow("f").add(Step("first"), Step(7)), store={"value": 1}) == {"value": 1}
    assert CALLS == [("first", "execute"), (7, "execute")]


# -- 6. connections ---------------------------------------------------------------------------


def _open_files_under(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(path)):
                count += 1
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_runs_leave_no_sqlite_descriptor_open_after_the_backend_is_closed(tmp_path: Path) -> None:
    made = backends.fetch({"connection": f"sqlite:///{tmp_path / 'flows.db'}"})
    with contextlib.closing(made.get_connection()) as conn:
        conn.upgrade()
    for _ in range(10):
        engines.load(chain_factory(2), store={"value": 1}, backend=made).run()
    made.close()
    assert _open_files_under(tmp_path) == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_a_finished_run_gives_its_connection_back_while_its_engine_lives(tmp_path: Path) -> None:
    # An engine that kept its connection until it was collected would make the
    # next run open another one (more descriptors), with both engines alive.
    made = backends.fetch({"connection": f"sqlite:///{tmp_path / 'flows.db'}"})
    with contextlib.closing(made.get_connection()) as conn:
        conn.upgrade()
    idle = _open_files_under(tmp_path)  # the pool's one idle connection
    alive = []
    gc.disable()  # nothing is collected behind the test's back
    try:
        for _ in range(3):
            engine = engines.load(chain_factory(2), store={"value": 1}, backend=made)
            engine.run()
            alive.append(engine)
            assert _open_files_under(tmp_path) == idle
            engine.storage.set_flow_state(states.SUCCESS)  # a write after the run
            assert _open_files_under(tmp_path) == idle
    finally:
        gc.enable()
        made.close()
    assert len(alive) == 3


def test_runs_leave_no_postgresql_connection_open_after_the_backend_is_closed(postgresql_db_url: str) -> None:
    import sqlalchemy

    made = backends.fetch({"connection": postgresql_db_url})
    with contextlib.closing(made.get_connection()) as conn:
        conn.upgrade()
    for _ in range(10):
        engines.load(chain_factory(2), store={"value": 1}, backend=made).run()
    made.close()
    database = postgresql_db_url.rsplit("/", 1)[1]
    counter = sqlalchemy.create_engine(postgresql_db_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with counter.connect() as conn:
            others = conn.execute(
                sqlalchemy.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            ).scalar()
    finally:
        counter.dispose()
    assert others == 0


# -- 4. results the backend cannot store ----------------------------------------------------


@pytest.mark.parametrize("kind", ["deep", "object"])
def test_a_result_the_backend_cannot_store_fails_its_atom_and_the_flow_reverts(
    backend: Any, kind: str
) -> None:
    flow = linear_flow.Flow("unstorable").add(
        Step("first", provides="first"),
        Returns(kind, provides="made", rebind={"value": "first"}),
    )
    engine = engines.load(flow, store={"value": 1}, backend=backend)
    with pytest.raises(exceptions.InvalidFormat, match=kind):
        engine.run()
    assert engine.storage.get_flow_state() == states.REVERTED
    assert engine.storage.get_atom_state(kind) == states.REVERTED
    assert ("first", "revert") in CALLS
    stored = {ad.name: ad.state for ad in only_flow(backend)}
    assert stored == {"first": states.REVERTED, kind: states.REVERTED}


def test_nan_infinity_and_lone_surrogates_are_stored_and_read_back_on_every_backend(
    backend: Any,
) -> None:
    flow = linear_flow.Flow("odd").add(
        Returns("nan", provides="floats"), Returns("surrogate", provides="text")
    )
    engine = engines.load(flow, store={"value": 1}, backend=backend)
    engine.run()
    stored = {ad.name: ad.results for ad in only_flow(backend)}
    assert math.isnan(stored["nan"][0]) and stored["nan"][1] == math.inf
    assert stored["surrogate"] == "a\ud800b"


def test_the_sqlite_and_postgresql_encoding_holds_a_lone_surrogate(postgresql_db_url: str) -> None:
    made = backends.fetch({"connection": postgresql_db_url})
    try:
        with contextlib.closing(made.get_connection()) as conn:
            conn.upgrade()
        flow = linear_flow.Flow("odd").add(Returns("surrogate", provides="text"))
        engines.load(flow, store={"value": 1}, backend=made).run()
        assert [ad.results for ad in only_flow(made)] == ["a\ud800b"]
    finally:
        made.close()


# -- 3. a failed revert stays failed ------------------------------------------------------------


def test_rerunning_a_flow_whose_revert_failed_keeps_it_failed(backend: Any) -> None:
    flow = linear_flow.Flow("halted").add(
        Step("a", provides="a"),
        BadRevert("b", provides="b", rebind={"value": "a"}),
        Boom("c", rebind={"value": "b"}),
    )
    engine = engines.load(flow, store={"value": 1}, backend=backend)
    with pytest.raises(RuntimeError, match="cannot undo"):  # the revert's own, as TaskFlow
        engine.run()
    assert engine.storage.get_flow_state() == states.FAILURE
    fd = only_flow(backend)
    CALLS.clear()

    again = engines.load(flow, flow_detail=fd, backend=backend)
    with pytest.raises(exceptions.WrappedFailure, match="cannot undo"):
        again.run()
    assert again.storage.get_flow_state() == states.FAILURE
    assert again.storage.get_atom_state("a") == states.SUCCESS
    assert again.storage.get_atom_state("b") == states.REVERT_FAILURE
    assert CALLS == []


# -- 2. a resumed parallel revert -----------------------------------------------------------------


def test_a_resumed_revert_reverts_an_atom_that_was_running_when_the_process_died(backend: Any) -> None:
    def build() -> graph_flow.Flow:
        flow = graph_flow.Flow("revert-resume")
        a = Step("a", provides="a")
        fail = Boom("fail", rebind={"value": "a"})
        slow = Step("slow", provides="slow", rebind={"value": "a"})
        flow.add(a, fail, slow)
        return flow

    # The state a kill left: 'fail' was being reverted while 'slow' still ran.
    engine = engines.load(build(), store={"value": 1}, backend=backend)
    engine.compile()
    engine.prepare()
    storage = engine.storage
    storage.save("a", 2)
    storage.set_atom_intention("a", states.REVERT)
    storage.save("fail", Failure.from_exception(RuntimeError("boom")), states.FAILURE)
    storage.set_atom_state("fail", states.REVERTING)
    storage.set_atom_intention("fail", states.REVERT)
    storage.set_atom_state("slow", states.RUNNING)
    storage.set_atom_intention("slow", states.REVERT)
    storage.set_flow_state(states.RUNNING)
    fd = only_flow(backend)

    resumed = engines.load(build(), flow_detail=fd, backend=backend, engine="parallel")
    with pytest.raises(exceptions.WrappedFailure, match="boom"):
        resumed.run()
    final = {name: resumed.storage.get_atom_state(name) for name in ("a", "fail", "slow")}
    assert final == {"a": states.REVERTED, "fail": states.REVERTED, "slow": states.REVERTED}
    assert resumed.storage.get_flow_state() == states.REVERTED
    assert sorted(CALLS) == [("a", "revert"), ("slow", "revert")]


# -- 5. damaged records ------------------------------------------------------------------


def _finished_run(backend: Any) -> models.FlowDetail:
    engines.load(chain_factory(2), store={"value": 1}, backend=backend).run()
    return only_flow(backend)


def _sql(url: str, statement: str, **params: Any) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(statement), params)
    finally:
        engine.dispose()


def test_invalid_json_in_a_sql_column_is_a_storage_failure_naming_the_record(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    made = backends.fetch({"connection": url})
    try:
        with contextlib.closing(made.get_connection()) as conn:
            conn.upgrade()
        fd = _finished_run(made)
        _sql(url, "UPDATE atomdetails SET results = '{not json' WHERE name = 's0'")
        with (
            contextlib.closing(made.get_connection()) as conn,
            pytest.raises(exceptions.StorageFailure, match=r"'results' of atom detail 's0'"),
        ):
            conn.get_flow_details(fd.uuid)
    finally:
        made.close()


@pytest.mark.parametrize("column", ["state", "intention"])
def test_an_unknown_state_in_a_stored_atom_is_refused_at_load_naming_it(tmp_path: Path, column: str) -> None:
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    made = backends.fetch({"connection": url})
    try:
        with contextlib.closing(made.get_connection()) as conn:
            conn.upgrade()
        _finished_run(made)
        _sql(url, f"UPDATE atomdetails SET {column} = 'BOGUS' WHERE name = 's1'")
        with pytest.raises(exceptions.StorageFailure, match=r"'s1'.*BOGUS"):
            engines.load(chain_factory(2), flow_detail=only_flow(made), backend=made)
    finally:
        made.close()


def test_an_unknown_flow_state_is_refused_at_load(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    made = backends.fetch({"connection": url})
    try:
        with contextlib.closing(made.get_connection()) as conn:
            conn.upgrade()
        _finished_run(made)
        _sql(url, "UPDATE flowdetails SET state = 'BOGUS'")
        with pytest.raises(exceptions.StorageFailure, match=r"'chain'.*BOGUS"):
            engines.load(chain_factory(2), flow_detail=only_flow(made), backend=made)
    finally:
        made.close()


def test_a_deleted_dir_atom_file_is_a_storage_failure_not_a_silent_rerun(tmp_path: Path) -> None:
    made = backends.fetch({"connection": f"dir://{tmp_path / 'store'}"})
    fd = _finished_run(made)
    victim = next(ad for ad in fd if ad.name == "s0")
    (tmp_path / "store" / "atoms" / f"{victim.uuid}.json").unlink()
    with (
        contextlib.closing(made.get_connection()) as conn,
        pytest.raises(exceptions.StorageFailure, match=victim.uuid),
    ):
        conn.get_flow_details(fd.uuid)
