"""What ``engine.storage`` answers after a run, and the engine's statistics."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, exceptions, retry, states, task
from flowkit.patterns import linear_flow
from flowkit.types.failure import Failure

from ._tasks import Boom, FailTimes, Recorder, Step


def _succeeded(engine_kind: str, rec: Recorder) -> Any:
    flow = linear_flow.Flow("f").add(
        Step("a", rec, value=1, provides="x"), Step("b", rec, value=(2, 3), provides=("y", "z"))
    )
    engine = engines.load(flow, store={"s": "stored"}, engine=engine_kind)
    engine.run()
    return engine


def _reverted(engine_kind: str, rec: Recorder) -> Any:
    flow = linear_flow.Flow("f").add(Step("a", rec, value=1, provides="x"), Boom("b", rec), Step("c", rec))
    engine = engines.load(flow, store={"s": "stored"}, engine=engine_kind)
    with pytest.raises(ValueError, match="b failed"):
        engine.run()
    return engine


def test_states_after_a_successful_run(engine_kind: str, rec: Recorder) -> None:
    storage = _succeeded(engine_kind, rec).storage
    assert storage.get_flow_state() == states.SUCCESS
    assert storage.get_atom_state("a") == states.SUCCESS
    assert storage.get_atom_state("b") == states.SUCCESS


def test_fetch_and_fetch_all_after_a_successful_run(engine_kind: str, rec: Recorder) -> None:
    storage = _succeeded(engine_kind, rec).storage
    assert storage.fetch("x") == 1
    assert storage.fetch("z") == 3
    assert storage.fetch("s") == "stored"
    assert storage.fetch_all() == {"x": 1, "y": 2, "z": 3, "s": "stored"}
    with pytest.raises(exceptions.NotFound):
        storage.fetch("never-provided")


def test_fetch_mapped_args_resolves_arguments_to_values(engine_kind: str, rec: Recorder) -> None:
    storage = _succeeded(engine_kind, rec).storage
    assert storage.fetch_mapped_args({"first": "x", "other": "s"}) == {"first": 1, "other": "stored"}
    assert storage.fetch_mapped_args({"maybe": "nothing"}, optional_args=["maybe"]) == {}
    with pytest.raises(exceptions.NotFound):
        storage.fetch_mapped_args({"needed": "nothing"})


def test_fetch_mapped_args_prefers_an_atoms_injected_values(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec, requires=["x"], inject={"x": "for a"}))
    engine = engines.load(flow, store={"x": "shared"}, engine=engine_kind)
    engine.run()
    assert engine.storage.fetch_mapped_args({"x": "x"}, atom_name="a") == {"x": "for a"}
    assert engine.storage.fetch_mapped_args({"x": "x"}) == {"x": "shared"}


def test_execute_results_after_a_successful_run(engine_kind: str, rec: Recorder) -> None:
    storage = _succeeded(engine_kind, rec).storage
    assert storage.get_execute_result("a") == 1
    assert storage.get_execute_result("b") == (2, 3)
    assert storage.get_execute_failures() == {}
    assert storage.get_revert_failures() == {}
    with pytest.raises(exceptions.NotFound):
        storage.get_revert_result("a")


def test_unknown_atom_names_are_not_found(engine_kind: str, rec: Recorder) -> None:
    storage = _succeeded(engine_kind, rec).storage
    with pytest.raises(exceptions.NotFound):
        storage.get_atom_state("ghost")
    with pytest.raises(exceptions.NotFound):
        storage.get_execute_result("ghost")


def test_failures_and_revert_results_after_a_reverted_run(engine_kind: str, rec: Recorder) -> None:
    storage = _reverted(engine_kind, rec).storage
    assert storage.get_flow_state() == states.REVERTED
    failures = storage.get_execute_failures()
    assert set(failures) == {"b"}
    assert failures["b"].check(ValueError)
    failed = storage.get_execute_result("b")
    assert isinstance(failed, Failure)
    assert failed.exception_str == "b failed"
    assert storage.get_revert_result("a") == "undid a"
    assert storage.get_revert_result("b") == "undid b"
    assert storage.get_revert_failures() == {}
    assert storage.get_atom_state("c") == states.PENDING


def test_a_reverted_atoms_result_is_no_longer_available(engine_kind: str, rec: Recorder) -> None:
    # TaskFlow 6.5: once reverted, an atom's execute result is gone from lookups.
    storage = _reverted(engine_kind, rec).storage
    with pytest.raises(exceptions.NotFound):
        storage.get_execute_result("a")
    with pytest.raises(exceptions.NotFound):
        storage.fetch("x")
    assert storage.fetch_all() == {"s": "stored"}


def test_retry_history_after_a_run(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f", retry=retry.Times(3, "r", provides="n")).add(FailTimes("t", rec, times=2))
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    history = engine.storage.get_retry_history("r")
    assert len(history) == 3
    assert list(history.provided_iter()) == [1, 2, 3]
    assert [(name, f.exception_str) for name, f in history.outcomes_iter()] == [
        ("t", "t failed (call 1)"),
        ("t", "t failed (call 2)"),
    ]
    assert history.failure is None
    assert engine.storage.fetch("n") == 3


def test_statistics_has_active_for_and_completed(engine_kind: str, rec: Recorder) -> None:
    engine = _succeeded(engine_kind, rec)
    stats = engine.statistics
    assert {"active_for", "completed"} <= set(stats)
    assert stats["active_for"] >= 0


def test_statistics_count_completed_atoms(engine_kind: str) -> None:
    flow = linear_flow.Flow("f").add(*(task.FunctorTask(lambda: None, name=f"t{i}") for i in range(3)))
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    assert engine.statistics["completed"] == 3
