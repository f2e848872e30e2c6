"""The engine writing through a persistence backend, and resuming from it.

These run in one process against the memory and SQLite backends; the tests
that kill processes and use PostgreSQL live in test_resume.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, exceptions, retry, states, task
from flowkit.patterns import linear_flow, unordered_flow
from flowkit.persistence import backends, models

# -- flows used below ------------------------------------------------------------

CALLS: list[tuple[str, str]] = []


class Step(task.Task):
    """Adds one to ``value`` and provides it under its own name."""

    def execute(self, value: int) -> int:
        CALLS.append((self.name, "execute"))
        return value + 1

    def revert(self, value: int, **kwargs: Any) -> None:
        CALLS.append((self.name, "revert"))


class Interrupt(task.Task):
    """Stops the run as a dying process would (KeyboardInterrupt), once."""

    fired = False

    def execute(self, value: int) -> int:
        CALLS.append((self.name, "execute"))
        if not Interrupt.fired:
            Interrupt.fired = True
            raise KeyboardInterrupt
        return value + 1


class Boom(task.Task):
    def execute(self, value: int) -> None:
        CALLS.append((self.name, "execute"))
        raise RuntimeError("boom")


class MakesASet(task.Task):
    default_provides = "tags"

    def execute(self) -> set[str]:
        return {"a", "b"}


def chain(name: str, count: int, last: task.Task | None = None) -> linear_flow.Flow:
    """``count`` Steps where each one's result is the next one's ``value``."""
    flow = linear_flow.Flow(name)
    for i in range(count):
        rebind = {"value": "value" if i == 0 else f"s{i - 1}"}
        flow.add(Step(f"s{i}", provides=f"s{i}", rebind=rebind))
    if last is not None:
        flow.add(last)
    return flow


def chain_factory(count: int) -> linear_flow.Flow:
    """A module-level factory, so a flow detail can name it."""
    return chain("chain", count)


def interrupted_factory() -> linear_flow.Flow:
    return chain("interrupted", 2, Interrupt("halt", rebind={"value": "s1"}, provides="halt")).add(
        Step("after", provides="after", rebind={"value": "halt"})
    )


@pytest.fixture(autouse=True)
def _reset_calls() -> Iterator[None]:
    CALLS.clear()
    Interrupt.fired = False
    yield


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'flows.db'}"
    made = backends.fetch({"connection": url})
    with contextlib.closing(made.get_connection()) as conn:
        conn.upgrade()
    yield made
    made.close()


def stored_flow(backend: Any, flow_uuid: str) -> models.FlowDetail:
    with contextlib.closing(backend.get_connection()) as conn:
        return conn.get_flow_details(flow_uuid)


def stored_states(backend: Any, flow_uuid: str) -> dict[str, str | None]:
    return {atom.name: atom.state for atom in stored_flow(backend, flow_uuid)}


# -- writing ----------------------------------------------------------------------------


def test_a_run_with_a_backend_and_book_is_saved_with_its_results(backend: Any) -> None:
    book = models.LogBook("book")
    engine = engines.load(chain("saved", 3), store={"value": 1}, backend=backend, book=book)
    engine.run()

    with contextlib.closing(backend.get_connection()) as conn:
        (flow_detail,) = conn.get_logbook(book.uuid)
    assert flow_detail.state == states.SUCCESS
    assert {ad.name: (ad.state, ad.results) for ad in flow_detail} == {
        "s0": (states.SUCCESS, 2),
        "s1": (states.SUCCESS, 3),
        "s2": (states.SUCCESS, 4),
    }
    assert flow_detail.meta["store"] == {"value": 1}


def test_a_backend_without_a_book_files_the_run_in_a_new_logbook(backend: Any) -> None:
    engine = engines.load(chain("bookless", 1), store={"value": 1}, backend=backend)
    engine.run()
    with contextlib.closing(backend.get_connection()) as conn:
        books = list(conn.get_logbooks())
    assert [[fd.uuid for fd in book] for book in books] == [[engine.storage.flow_uuid]]


def test_an_atom_is_stored_running_before_it_executes_and_its_inputs_are_stored_done(
    backend: Any,
) -> None:
    seen: dict[str, Any] = {}

    class Peek(task.Task):
        def execute(self, s0: int) -> None:
            flow_detail = stored_flow(backend, flow_uuid)
            seen.update({ad.name: (ad.state, ad.results) for ad in flow_detail})

    flow = chain("peek", 1).add(Peek("peek"))
    engine = engines.load(flow, store={"value": 1}, backend=backend)
    flow_uuid = engine.storage.flow_uuid
    engine.run()
    assert seen == {"s0": (states.SUCCESS, 2), "peek": (states.RUNNING, None)}


def test_the_parallel_engine_stores_every_started_atom_running_before_calling_it(backend: Any) -> None:
    seen: dict[str, str | None] = {}

    class Peek(task.Task):
        def execute(self) -> None:
            seen[self.name] = stored_states(backend, flow_uuid)[self.name]

    flow = unordered_flow.Flow("wide").add(*(Peek(f"p{i}") for i in range(8)))
    engine = engines.load(flow, backend=backend, engine="parallel", max_workers=4)
    flow_uuid = engine.storage.flow_uuid
    engine.run()
    assert seen == {f"p{i}": states.RUNNING for i in range(8)}
    assert set(stored_states(backend, flow_uuid).values()) == {states.SUCCESS}


def test_reverts_are_stored_with_the_failure_that_caused_them(backend: Any) -> None:
    engine = engines.load(
        chain("reverted", 2, Boom("boom", rebind={"value": "s1"})), store={"value": 1}, backend=backend
    )
    with pytest.raises(RuntimeError, match="boom"):
        engine.run()
    flow_detail = stored_flow(backend, engine.storage.flow_uuid)
    assert flow_detail.state == states.REVERTED
    details = {ad.name: ad for ad in flow_detail}
    assert {name: ad.state for name, ad in details.items()} == {
        "s0": states.REVERTED,
        "s1": states.REVERTED,
        "boom": states.REVERTED,
    }
    failure = details["boom"].failure
    assert failure is not None and failure.check(RuntimeError) and failure.exception_str == "boom"


def test_a_result_json_cannot_hold_fails_its_atom_by_name_and_the_flow_reverts(backend: Any) -> None:
    flow = chain("unstorable", 1).add(MakesASet("tagger"))
    engine = engines.load(flow, store={"value": 1}, backend=backend)
    with pytest.raises(exceptions.InvalidFormat, match="result of atom 'tagger' cannot be stored as JSON"):
        engine.run()
    assert stored_states(backend, engine.storage.flow_uuid) == {
        "s0": states.REVERTED,
        "tagger": states.REVERTED,
    }


def test_injecting_a_value_json_cannot_hold_fails_before_anything_runs(backend: Any) -> None:
    with pytest.raises(exceptions.InvalidFormat, match="'value'"):
        engines.load(chain("bad-store", 1), store={"value": object()}, backend=backend)
    assert CALLS == []


@pytest.mark.parametrize("timeout", [-1, 0, "soon"])
def test_a_bad_default_timeout_is_refused_at_load_before_a_run_is_written(backend: Any, timeout: Any) -> None:
    with pytest.raises(exceptions.InvalidEngineOption, match="default_timeout"):
        engines.load(chain("bad-timeout", 1), store={"value": 1}, backend=backend, default_timeout=timeout)
    with contextlib.closing(backend.get_connection()) as conn:
        assert list(conn.get_logbooks()) == []
    assert CALLS == []


def test_one_write_per_task_on_a_linear_flow(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engines.load(chain("counted", 50), store={"value": 0}, backend=backend)
    engine.prepare()
    connection_class = type(backend.get_connection())
    save = connection_class.save_flow_progress
    writes: list[int] = []

    def counting(self: Any, flow_detail: Any, atom_details: Any, flow_changed: bool = True) -> None:
        writes.append(len(atom_details))
        save(self, flow_detail, atom_details, flow_changed)

    monkeypatch.setattr(connection_class, "save_flow_progress", counting)
    engine.run()
    # One write before each task (carrying the previous task's result with it),
    # plus the flow's RUNNING state and the final one.
    assert len(writes) <= 50 + 2
    assert stored_flow(backend, engine.storage.flow_uuid).state == states.SUCCESS


# -- resuming ---------------------------------------------------------------------------------


def test_an_interrupted_run_resumes_without_redoing_what_succeeded(backend: Any) -> None:
    engine = engines.load_from_factory(interrupted_factory, store={"value": 1}, backend=backend)
    flow_uuid = engine.storage.flow_uuid
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    assert stored_states(backend, flow_uuid) == {
        "s0": states.SUCCESS,
        "s1": states.SUCCESS,
        "halt": states.RUNNING,
        "after": states.PENDING,
    }
    CALLS.clear()

    resumed = engines.load_from_detail(stored_flow(backend, flow_uuid), backend=backend)
    resumed.run()
    assert CALLS == [("halt", "execute"), ("after", "execute")]
    assert resumed.storage.fetch_all() == {"value": 1, "s0": 2, "s1": 3, "halt": 4, "after": 5}
    assert stored_flow(backend, flow_uuid).state == states.SUCCESS


def test_values_load_injects_into_one_atom_are_kept_for_a_resumed_run(backend: Any) -> None:
    # interrupted_factory's "halt" takes its value from s1; inject= overrides s1 for
    # that atom only, and a run resumed from the stored flow detail must still have it.
    engine = engines.load_from_factory(
        interrupted_factory, store={"value": 1}, backend=backend, inject={"halt": {"s1": 40}}
    )
    flow_uuid = engine.storage.flow_uuid
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    resumed = engines.load_from_detail(stored_flow(backend, flow_uuid), backend=backend)
    resumed.run()
    assert resumed.storage.fetch("halt") == 41


def test_a_value_inject_cannot_store_is_refused_before_a_run_is_written(backend: Any) -> None:
    with pytest.raises(exceptions.InvalidFormat, match="'value' into atom 's0'"):
        engines.load(chain("bad-inject", 1), backend=backend, inject={"s0": {"value": object()}})
    with contextlib.closing(backend.get_connection()) as conn:
        assert list(conn.get_logbooks()) == []


def test_a_resumed_run_of_a_finished_flow_runs_nothing(backend: Any) -> None:
    engine = engines.load_from_factory(chain_factory, factory_args=[3], store={"value": 1}, backend=backend)
    engine.run()
    CALLS.clear()
    resumed = engines.load_from_detail(stored_flow(backend, engine.storage.flow_uuid), backend=backend)
    resumed.run()
    assert CALLS == []
    assert resumed.storage.fetch("s2") == 4


def test_retry_history_survives_a_resume(backend: Any) -> None:
    attempts = {"n": 0}

    class Flaky(task.Task):
        def execute(self) -> str:
            attempts["n"] += 1
            if attempts["n"] < 3:
                raise ValueError(f"attempt {attempts['n']}")
            return "ok"

    flow = linear_flow.Flow("flaky", retry=retry.Times(5, name="times")).add(Flaky("flaky", provides="out"))
    engine = engines.load(flow, backend=backend)
    engine.run()
    flow_detail = stored_flow(backend, engine.storage.flow_uuid)
    history = {ad.name: ad for ad in flow_detail}["times"]
    assert isinstance(history, models.RetryDetail)
    assert len(history.results) == 3
    assert [sorted(failures) for _, failures in history.results] == [["flaky"], ["flaky"], []]

    resumed = engines.load(flow, flow_detail=flow_detail, backend=backend)
    assert len(resumed.storage.get_retry_history("times")) == 3


def test_flow_from_detail_needs_a_recorded_factory(backend: Any) -> None:
    engine = engines.load(chain("plain", 1), store={"value": 1}, backend=backend)
    engine.run()
    # TaskFlow's sentence, which names the flow unquoted.
    with pytest.raises(ValueError, match="^Cannot reconstruct flow plain .*: no factory information saved.$"):
        engines.flow_from_detail(stored_flow(backend, engine.storage.flow_uuid))


def test_load_from_factory_refuses_a_factory_that_cannot_be_found_again(backend: Any) -> None:
    with pytest.raises(ValueError, match="lambda"):
        engines.load_from_factory(lambda: chain("anon", 1), backend=backend)


def test_save_factory_details_records_the_factory_in_the_stored_flow(backend: Any) -> None:
    engine = engines.load(chain("later", 2), store={"value": 1}, backend=backend)
    engines.save_factory_details(engine.storage.flow_detail, chain_factory, [2], {}, backend=backend)
    rebuilt = engines.flow_from_detail(stored_flow(backend, engine.storage.flow_uuid))
    assert [atom.name for atom in rebuilt] == ["s0", "s1"]


def test_in_memory_runs_write_nothing_and_still_show_a_flow_detail() -> None:
    engine = engines.load(chain("memory", 2), store={"value": 1})
    engine.run()
    snapshot = engine.storage.flow_detail
    assert snapshot.state == states.SUCCESS
    assert {ad.name: ad.results for ad in snapshot} == {"s0": 2, "s1": 3}


def test_an_engine_made_directly_with_a_backend_files_its_run_too(backend: Any) -> None:
    from flowkit.engines.serial import SerialEngine

    engine = SerialEngine(chain("direct", 1), None, backend, {})
    engine.storage.inject({"value": 1})
    engine.run()
    assert stored_flow(backend, engine.storage.flow_uuid).state == states.SUCCESS


def test_a_book_without_a_backend_holds_the_run_kept_up_to_date_in_memory() -> None:
    book = models.LogBook("in memory")
    engine = engines.load(chain("booked", 2), store={"value": 1}, book=book)
    engine.run()
    (flow_detail,) = book
    assert flow_detail.uuid == engine.storage.flow_uuid
    assert flow_detail.state == states.SUCCESS
    assert {ad.name: (ad.state, ad.results) for ad in flow_detail} == {
        "s0": (states.SUCCESS, 2),
        "s1": (states.SUCCESS, 3),
    }
