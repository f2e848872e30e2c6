"""flowkit.engines.action_engine: TaskFlow's engine and executor class names."""

from __future__ import annotations

import concurrent.futures as cf
import sys
import threading

import pytest

from flowkit import engines, exceptions, task
from flowkit.engines.action_engine import engine as eng
from flowkit.engines.action_engine import executor
from flowkit.patterns import unordered_flow


class _Where(task.Task):
    def execute(self) -> str:
        return threading.current_thread().name


def _flow() -> unordered_flow.Flow:
    return unordered_flow.Flow("f").add(_Where("a", provides="a"), _Where("b", provides="b"))


def test_loaded_engines_are_instances_of_taskflows_names() -> None:
    serial = engines.load(_flow())
    parallel = engines.load(_flow(), engine="parallel")
    assert isinstance(serial, eng.SerialActionEngine) and isinstance(serial, eng.ActionEngine)
    assert isinstance(parallel, eng.ParallelActionEngine) and isinstance(parallel, eng.ActionEngine)


def test_parallel_thread_task_executor_runs_the_parallel_engine_on_its_own_pool() -> None:
    pool = executor.ParallelThreadTaskExecutor(max_workers=2)
    assert pool.max_workers == 2
    try:
        engine = engines.load(_flow(), engine="parallel", executor=pool)
        engine.run()
        names = {engine.storage.fetch("a"), engine.storage.fetch("b")}
        assert all(name.startswith("flowkit-task") for name in names)
    finally:
        pool.stop()


def test_parallel_task_executor_uses_the_executor_it_was_given() -> None:
    with cf.ThreadPoolExecutor(1, thread_name_prefix="mine") as given:
        wrapper = executor.ParallelThreadTaskExecutor(executor=given)
        assert wrapper.submit(lambda: threading.current_thread().name).result().startswith("mine")
        wrapper.stop()  # does not shut down what it was given
        assert given.submit(lambda: 1).result() == 1


def test_serial_task_executor_runs_inline_and_keeps_exceptions_in_the_future() -> None:
    inline = executor.SerialTaskExecutor()
    inline.start()
    assert inline.submit(threading.current_thread).result() is threading.current_thread()
    failed = inline.submit(lambda: 1 / 0)
    assert isinstance(failed.exception(), ZeroDivisionError)
    engine = engines.load(_flow(), engine="parallel", executor=inline)
    engine.run()
    assert engine.storage.fetch("a") == threading.current_thread().name
    assert isinstance(executor.SerialRetryExecutor(), executor.SerialTaskExecutor)


def test_green_thread_executor_names_what_to_install_when_eventlet_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert issubclass(executor.ParallelGreenThreadTaskExecutor, executor.ParallelThreadTaskExecutor)
    monkeypatch.setitem(sys.modules, "eventlet", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install eventlet"):
        executor.ParallelGreenThreadTaskExecutor()
    with pytest.raises(exceptions.InvalidEngineOption, match="pip install eventlet"):
        engines.load(_flow(), engine="parallel", executor="greenthreads")


def test_bad_pool_size_is_refused() -> None:
    with pytest.raises(ValueError, match="max_workers"):
        executor.ParallelThreadTaskExecutor(max_workers=0)
