"""Tasks: progress notifications and the functor adapters."""

from __future__ import annotations

import logging
import operator
from typing import Any

import pytest

from flowkit import task
from flowkit.types import notifier


class Work(task.Task):
    def execute(self, x):
        return x


def double(x):
    return x * 2


def undo_double(x, result, flow_failures):
    return ("undone", x, result)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event_type: str, details: dict[str, Any]) -> None:
        self.events.append((event_type, details))


# -- the task classes ------------------------------------------------------------


def test_task_is_a_base_task_and_an_atom() -> None:
    assert issubclass(task.Task, task.BaseTask)
    assert isinstance(Work(), task.BaseTask)


def test_module_constants_have_taskflow_values() -> None:
    assert task.EVENT_UPDATE_PROGRESS == "update_progress"
    assert task.REVERT_RESULT == "result"
    assert task.REVERT_FLOW_FAILURES == "flow_failures"
    assert task.Task.TASK_EVENTS == ("update_progress",)


def test_task_name_defaults_to_module_and_class() -> None:
    assert Work().name == f"{__name__}.Work"


# -- the notifier and progress -------------------------------------------------


def test_notifier_is_created_only_when_first_used() -> None:
    t = Work()
    assert "_own_notifier" not in vars(t)
    first = t.notifier
    assert isinstance(first, notifier.RestrictedNotifier)
    assert t.notifier is first


def test_notifier_accepts_progress_listeners_only() -> None:
    t = Work()
    t.notifier.register(task.EVENT_UPDATE_PROGRESS, Recorder())
    with pytest.raises(ValueError):
        t.notifier.register("something_else", Recorder())


def test_update_progress_notifies_listeners_with_the_progress() -> None:
    t = Work()
    seen = Recorder()
    t.notifier.register(task.EVENT_UPDATE_PROGRESS, seen)
    t.update_progress(0.5)
    assert seen.events == [("update_progress", {"progress": 0.5})]


@pytest.mark.parametrize(("given", "sent"), [(1.5, 1.0), (-0.2, 0.0), (7, 1.0), (float("nan"), 0.0)])
def test_update_progress_clamps_out_of_range_values_with_a_warning(
    given: float, sent: float, caplog: pytest.LogCaptureFixture
) -> None:
    # NaN passed through (and was stored); the warning did not say which task.
    t = Work("resize")
    seen = Recorder()
    t.notifier.register(task.EVENT_UPDATE_PROGRESS, seen)
    with caplog.at_level(logging.WARNING, logger="flowkit.task"):
        t.update_progress(given)
    assert seen.events == [("update_progress", {"progress": sent})]
    [record] = caplog.records
    assert str(given) in record.getMessage() and "task 'resize'" in record.getMessage()


def test_update_progress_in_range_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowkit.task"):
        Work().update_progress(1.0)
        Work().update_progress(0.0)
    assert caplog.records == []


def test_update_progress_without_listeners_does_not_create_a_notifier() -> None:
    t = Work()
    t.update_progress(0.3)
    assert "_own_notifier" not in vars(t)


def test_copy_keeps_listeners_independently_or_drops_them() -> None:
    t = Work()
    seen = Recorder()
    t.notifier.register(task.EVENT_UPDATE_PROGRESS, seen)
    kept = t.copy()
    dropped = t.copy(retain_listeners=False)
    assert kept is not t
    assert kept.notifier is not t.notifier
    kept.update_progress(0.1)
    dropped.update_progress(0.2)
    assert seen.events == [("update_progress", {"progress": 0.1})]
    kept.notifier.reset()
    t.update_progress(0.3)
    assert seen.events[-1] == ("update_progress", {"progress": 0.3})


# -- FunctorTask -----------------------------------------------------------------


def test_functor_task_requires_its_function_arguments_and_runs_it() -> None:
    t = task.FunctorTask(double, provides="doubled")
    assert t.requires == frozenset({"x"})
    assert t.execute(x=4) == 8
    assert t.save_as == {"doubled": None}


def test_functor_task_name_defaults_to_the_function_path() -> None:
    assert task.FunctorTask(double).name == f"{__name__}.double"
    assert task.FunctorTask(lambda: 1).name == (
        f"{__name__}.test_functor_task_name_defaults_to_the_function_path.<locals>.<lambda>"
    )
    assert task.FunctorTask(Work().execute).name == f"{__name__}.Work.execute"


def test_functor_task_revert_calls_the_revert_function() -> None:
    t = task.FunctorTask(double, revert=undo_double)
    assert t.revert(x=2, result=4, flow_failures={}) == ("undone", 2, 4)
    # result and flow_failures are filled by the engine, never required.
    assert t.requires == frozenset({"x"})
    assert t.revert_rebind == {"x": "x"}


def test_functor_task_without_revert_reverts_to_nothing() -> None:
    t = task.FunctorTask(double)
    assert t.revert(x=1, result=2, flow_failures={}) is None
    assert t.revert_rebind == t.rebind


def test_functor_task_revert_function_adds_its_own_requirements() -> None:
    def undo(x, extra, **kwargs):
        return None

    assert task.FunctorTask(double, revert=undo).requires == frozenset({"x", "extra"})


def test_functor_task_accepts_rebind_inject_and_version() -> None:
    t = task.FunctorTask(double, rebind={"x": "value"}, version=(3, 1), inject={"value": 1})
    assert t.rebind == {"x": "value"}
    assert t.requires == frozenset()
    assert t.version == (3, 1)


def test_functor_task_with_requires_passes_them_as_keywords() -> None:
    t = task.FunctorTask(lambda **kwargs: sorted(kwargs), requires=["a", "b"])
    assert t.requires == frozenset({"a", "b"})
    assert t.execute(a=1, b=2) == ["a", "b"]


def test_functor_task_rejects_non_callables() -> None:
    with pytest.raises(ValueError, match="executing"):
        task.FunctorTask("not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reverting"):
        task.FunctorTask(double, revert=3)  # type: ignore[arg-type]


# -- MapFunctorTask and ReduceFunctorTask ----------------------------------------


def test_map_functor_task_maps_each_required_value_in_order() -> None:
    t = task.MapFunctorTask(double, requires=["b", "a", "c"], provides=["b2", "a2", "c2"])
    assert t.requires == frozenset({"a", "b", "c"})
    assert t.execute(a=1, b=10, c=100) == [20, 2, 200]
    assert t.save_as == {"b2": 0, "a2": 1, "c2": 2}


def test_map_functor_task_reads_rebound_values_by_argument_name() -> None:
    t = task.MapFunctorTask(double, requires=["a", "b"], rebind={"a": "alpha"})
    assert t.requires == frozenset({"alpha", "b"})
    assert t.execute(a=1, b=2) == [2, 4]


def test_map_functor_task_name_defaults_to_the_functor_path() -> None:
    assert task.MapFunctorTask(double, ["a"]).name == f"{__name__}.double"


def test_map_functor_task_checks_its_functor_and_requires() -> None:
    with pytest.raises(ValueError, match="callable"):
        task.MapFunctorTask(None, ["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly 1"):
        task.MapFunctorTask(operator.add, ["a"])
    with pytest.raises(TypeError, match="requires"):
        task.MapFunctorTask(double, "a")
    with pytest.raises(TypeError, match="requires"):
        task.MapFunctorTask(double, 5)  # type: ignore[arg-type]


def test_map_functor_task_may_have_a_revert_function() -> None:
    calls: list[dict[str, Any]] = []
    t = task.MapFunctorTask(double, ["a"], revert=lambda **kw: calls.append(kw))
    t.revert(a=1, result=[2], flow_failures={})
    assert calls == [{"a": 1, "result": [2], "flow_failures": {}}]
    assert task.MapFunctorTask(double, ["a"]).revert(a=1) is None


def test_reduce_functor_task_folds_the_required_values_in_order() -> None:
    t = task.ReduceFunctorTask(lambda acc, item: acc + item, requires=["a", "b", "c"], provides="joined")
    assert t.execute(a="x", b="y", c="z") == "xyz"
    assert t.save_as == {"joined": None}


def test_reduce_functor_task_needs_two_requirements_and_a_two_argument_functor() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        task.ReduceFunctorTask(operator.add, ["a"])
    with pytest.raises(ValueError, match="exactly 2"):
        task.ReduceFunctorTask(double, ["a", "b"])
    with pytest.raises(TypeError):
        task.ReduceFunctorTask(operator.add, "ab")


def test_reduce_functor_task_name_defaults_to_the_functor_path() -> None:
    def add(x, y):
        return x + y

    t = task.ReduceFunctorTask(add, ["a", "b"])
    assert t.name == f"{__name__}.test_reduce_functor_task_name_defaults_to_the_functor_path.<locals>.add"


def test_update_progress_reports_to_an_engine_sink_first() -> None:
    t = Work()
    heard: list[tuple[object, float]] = []
    t._progress_sink = lambda who, progress: heard.append((who, progress))
    t.update_progress(2.0)
    assert heard == [(t, 1.0)]
    assert "_own_notifier" not in vars(t)
