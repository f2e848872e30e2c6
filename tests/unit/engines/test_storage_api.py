"""What ``engine.storage`` answers after a run, and the engine's statistics."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, exceptions, retry, states, task
from flowkit.patterns import linear_flow
from flowkit.persistence.backends.impl_memory import MemoryBackend
from flowkit.persistence.models import FlowDetail
from flowkit.storage import Storage
from flowkit.types.failure import Failure
from flowkit.types.notifier import Notifier

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


def test_a_failed_atoms_failure_is_what_lookups_give_for_its_names(engine_kind: str, rec: Recorder) -> None:
    # TaskFlow 6.5: fetch and fetch_all give a failed atom's Failure for a name it
    # provides whole (and its revert does not take it away); before, flowkit said
    # NotFound and left the name out.
    flow = linear_flow.Flow("f").add(
        Step("a", rec, value=1, provides="x"),
        Boom("b", rec, provides="y"),
        Boom("c", rec, provides=("p", "q")),
    )
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(ValueError, match="b failed"):
        engine.run()
    storage = engine.storage
    failed = storage.fetch("y")
    assert isinstance(failed, Failure) and failed.exception_str == "b failed"
    assert storage.fetch_all() == {"y": failed}
    with pytest.raises(exceptions.NotFound):  # c never ran: nothing for its names
        storage.fetch("p")


def test_a_retried_atoms_failure_gives_way_to_its_result(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f", retry=retry.Times(2, "r")).add(FailTimes("a", rec, 1, value=7, provides="x"))
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    assert engine.storage.fetch("x") == 7
    assert engine.storage.fetch_all() == {"x": 7}


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


# -- TaskFlow's Storage semantics, used directly ------------------------------------


class _Noop(task.Task):
    def execute(self) -> None:
        return None


class _NoopRetry(retry.Retry):
    def on_failure(self, history: Any, **kwargs: Any) -> Any:
        return retry.REVERT

    def execute(self, history: Any, **kwargs: Any) -> None:
        return None


def test_save_then_fetch_returns_the_saved_value() -> None:
    storage = Storage("f")
    storage.ensure_atom(_Noop("t", provides="out"))
    storage.save("t", 5)
    assert storage.fetch("out") == 5
    assert storage.fetch_all() == {"out": 5}
    assert storage.get("t") == 5


def test_a_result_too_short_for_a_provided_name_is_not_found() -> None:
    storage = Storage("f")
    storage.ensure_atom(_Noop("t", provides=["a", "b"]))
    storage.save("t", ["only"])
    assert storage.fetch("a") == "only"
    with pytest.raises(exceptions.NotFound):
        storage.fetch("b")


def test_ensure_atom_raises_duplicate_for_a_task_and_a_retry_of_one_name() -> None:
    storage = Storage("f")
    storage.ensure_atom(_Noop("same"))
    with pytest.raises(exceptions.Duplicate):
        storage.ensure_atom(_NoopRetry("same"))


def test_storage_names_the_injector_record_as_taskflow_does() -> None:
    assert Storage.injector_name == "_TaskFlow_INJECTOR"
    storage = Storage("f")
    storage.reset(Storage.injector_name)  # a no-op, as in TaskFlow


def test_transient_values_are_fetched_but_not_restored_with_the_flow_detail() -> None:
    detail = FlowDetail("f", "11111111-2222-3333-4444-555555555555")
    storage = Storage(detail)
    storage.inject({"a": "b"}, transient=True)
    storage.inject({"b": "c"})
    assert storage.fetch_all() == {"a": "b", "b": "c"}
    assert storage.fetch_mapped_args({"y": "a", "z": "b"}) == {"y": "b", "z": "c"}
    assert Storage(detail).fetch_all() == {"b": "c"}


def test_transient_atom_arguments_win_over_saved_ones() -> None:
    storage = Storage("f")
    t = _Noop("t")
    storage.ensure_atom(t)
    storage.inject_atom_args("t", {"x": 2}, transient=False)
    storage.inject_atom_args("t", {"x": 3}, transient=True)
    assert storage.fetch_mapped_args({"x": "x"}, atom_name="t") == {"x": 3}


def test_an_engine_without_a_backend_shows_a_memory_backend_holding_the_run() -> None:
    flow = linear_flow.Flow("shown").add(_Noop("a"), _Noop("b"))
    engine = engines.load(flow)
    engine.compile()
    engine.prepare()
    backend = engine.storage.backend
    assert isinstance(backend, MemoryBackend)
    engine.run()
    with backend.get_connection() as conn:
        stored = conn.get_flow_details(engine.storage.flow_uuid)
    assert {ad.name: ad.state for ad in stored} == {"a": states.SUCCESS, "b": states.SUCCESS}
    assert stored.state == states.SUCCESS


def test_a_resumed_in_doubt_atom_is_not_announced_running_twice() -> None:
    flow = linear_flow.Flow("doubt").add(_Noop("a"))
    detail = FlowDetail("doubt", "11111111-2222-3333-4444-666666666666")
    first = engines.load(flow, flow_detail=detail)
    first.compile()
    first.prepare()
    first.storage.set_atom_state("a", states.RUNNING)
    first.storage.set_flow_state(states.RUNNING)
    seen: list[tuple[str, str]] = []
    resumed = engines.load(flow, flow_detail=detail)
    resumed.atom_notifier.register(
        Notifier.ANY, lambda state, details: seen.append((details["old_state"], state))
    )
    resumed.run()
    assert seen == [(states.RUNNING, states.SUCCESS)]


def test_taskflows_private_flowdetail_name_resumes_in_a_second_engine(
    engine_kind: str, rec: Recorder
) -> None:
    engine = _succeeded(engine_kind, rec)
    detail = engine.storage._flowdetail
    assert detail.uuid == engine.storage.flow_uuid
    assert {ad.name: ad.state for ad in detail} == {"a": states.SUCCESS, "b": states.SUCCESS}
    again = engines.load(
        linear_flow.Flow("f").add(
            Step("a", rec, value=1, provides="x"), Step("b", rec, value=(2, 3), provides=("y", "z"))
        ),
        flow_detail=detail,
        engine=engine_kind,
    )
    events = len(rec.events)
    again.run()
    assert len(rec.events) == events, "a finished run resumed from _flowdetail runs nothing again"
    assert again.storage.fetch("z") == 3


def test_fetch_mapped_args_for_an_atom_reads_what_that_atom_saw(engine_kind: str, rec: Recorder) -> None:
    # Three atoms provide "value", each from the one before it: TaskFlow's scoping.
    flow = linear_flow.Flow("f").add(
        Step("a", rec, value=1, provides="value", rebind={"value": "source"}),
        Step("b", rec, value=2, provides="value", requires=["value"]),
        Step("c", rec, value=3, provides="value", requires=["value"]),
    )
    engine = engines.load(flow, store={"source": 0}, engine=engine_kind)
    engine.run()
    storage = engine.storage
    assert storage.fetch_mapped_args({"value": "source"}, atom_name="a") == {"value": 0}
    assert storage.fetch_mapped_args({"value": "value"}, atom_name="b") == {"value": 1}
    assert storage.fetch_mapped_args({"value": "value"}, atom_name="c") == {"value": 2}
    assert storage.fetch_mapped_args({"value": "value"}) == {"value": 1}  # no atom: the first
    with pytest.raises(exceptions.NotFound):
        storage.fetch_mapped_args({"value": "value"}, atom_name="a")  # nothing before "a"


def test_progress_details_are_kept_erased_or_left_as_taskflow_does() -> None:
    storage = Storage("f")
    storage.ensure_atom(_Noop("t"))
    storage.set_task_progress("t", 0.5, {"step": 1})
    assert storage.get_task_progress_details("t") == {"at_progress": 0.5, "details": {"step": 1}}
    storage.set_task_progress("t", 0.9)  # no details: the last ones stay
    assert (storage.get_task_progress("t"), storage.get_task_progress_details("t")) == (
        0.9,
        {"at_progress": 0.5, "details": {"step": 1}},
    )
    storage.set_task_progress("t", 0.95, {})  # empty details erase them
    assert storage.get_task_progress_details("t") is None


class _ReportsDetails(task.Task):
    def execute(self) -> None:
        self.update_progress(0.25)
        self.notifier.notify(task.EVENT_UPDATE_PROGRESS, {"progress": 0.5, "phase": "copy"})


class _ReportsPlainly(task.Task):
    def execute(self) -> None:
        self.update_progress(0.25)


def test_progress_a_task_notifies_itself_reaches_storage_with_its_details(engine_kind: str) -> None:
    # TaskFlow's engines listen on the task's notifier, so tasks notify it directly.
    heard: list[float] = []
    reporter = _ReportsDetails("t")
    reporter.notifier.register(
        task.EVENT_UPDATE_PROGRESS, lambda event_type, details: heard.append(details["progress"])
    )
    engine = engines.load(reporter, backend=MemoryBackend({}), engine=engine_kind)
    engine.run()
    assert engine.storage.get_task_progress("t") == 1.0
    assert engine.storage.get_task_progress_details("t") == {"at_progress": 0.5, "details": {"phase": "copy"}}
    assert heard == [0.0, 0.25, 0.5, 1.0]
    # A plain report carries no details: the atom detail says so, as TaskFlow's does.
    plain = engines.load(_ReportsPlainly("p"), engine=engine_kind)
    plain.run()
    (atom_detail,) = list(plain.storage.flow_detail)
    assert atom_detail.meta["progress"] == 1.0 and atom_detail.meta["progress_details"] is None


def test_saving_under_the_injector_name_replaces_the_injected_values() -> None:
    detail = FlowDetail("f", "11111111-2222-3333-4444-555555555555")
    storage = Storage(detail)
    storage.inject({"a": 1, "b": 2})
    storage.inject({"t": "transient"}, transient=True)
    storage.save(Storage.injector_name, {"b": 3})
    assert storage.fetch_all() == {"t": "transient", "b": 3}
    assert Storage(detail).fetch_all() == {"b": 3}


def test_the_injector_name_reads_the_saved_injected_values_as_taskflow() -> None:
    # TaskFlow keeps them as an atom detail by that name, which get() and the state
    # lookups answer for; flowkit keeps them in the flow detail's meta, and answers alike.
    detail = FlowDetail("f", "11111111-2222-3333-4444-555555555555")
    storage = Storage(detail)
    name = storage.injector_name
    with pytest.raises(exceptions.NotFound, match="_TaskFlow_INJECTOR"):
        storage.get(name)  # nothing injected yet: no such record
    storage.inject({"t": "transient"}, transient=True)
    with pytest.raises(exceptions.NotFound):
        storage.get_atom_state(name)  # transient values are never recorded
    storage.inject({"a": 1})
    storage.inject({"b": 2})
    assert storage.get(name) == {"a": 1, "b": 2}
    assert storage.get_atom_state(name) == states.SUCCESS
    assert storage.get_atoms_states([name]) == {name: (states.SUCCESS, states.EXECUTE)}
    storage.save(name, {"c": 3})
    assert Storage(detail).get(name) == {"c": 3}
    assert list(detail) == []  # still no pseudo-atom in the flow detail


def test_an_engine_rechecks_injected_values_on_every_run(rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec, requires=["x"]))
    engine = engines.load(flow, store={"x": 1})
    engine.run()
    engine.storage.save(engine.storage.injector_name, {})
    engine.reset()
    with pytest.raises(exceptions.MissingDependencies):
        engine.run()


def test_fetching_a_name_nothing_provides_says_so() -> None:
    storage = Storage("f")
    storage.ensure_atom(_Noop("t", provides="out"))
    with pytest.raises(exceptions.NotFound, match="^Name 'xxx' is not mapped"):
        storage.fetch("xxx")
    # As TaskFlow: the provider is known, but has no result to read yet.
    with pytest.raises(
        exceptions.NotFound,
        match="^Expected to be able to find output 'out' produced by <Provider 't'> but was unable to get at",
    ):
        storage.fetch("out")


_ATOM_STATES = (
    states.PENDING,
    states.RUNNING,
    states.SUCCESS,
    states.FAILURE,
    states.REVERTING,
    states.REVERTED,
    states.REVERT_FAILURE,
    states.RETRYING,
    states.IGNORE,
)


@pytest.mark.parametrize("state", _ATOM_STATES)
@pytest.mark.parametrize("failed", [False, True])
def test_fetch_of_one_providers_result_answers_as_the_general_lookup(state: str, failed: bool) -> None:
    # fetch answers a name one atom provides whole without building the list of
    # values; a many_handler takes the general path. Both must agree in every state.
    storage = Storage("f")
    storage.ensure_atom(_Noop("t", provides="out"))
    if failed:
        storage.save("t", Failure.from_exception(ValueError("boom")), states.FAILURE)
    else:
        storage.save("t", 5)
    storage.set_atom_state("t", state)

    def answer(**kwargs: Any) -> Any:
        try:
            return storage.fetch("out", **kwargs)
        except exceptions.NotFound as error:
            return ("NotFound", str(error))

    assert answer() == answer(many_handler=lambda values: values[0])
