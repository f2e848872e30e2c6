"""TaskFlow 6.5 as an oracle for how ``engines.load`` reads its options.

Programs often take engine options from configuration files (oslo.config,
YAML, environment variables), where a flag is the text ``"false"`` and a
number is the text ``"4"``. TaskFlow reads every flag with oslo's
``bool_from_string`` and ``max_workers`` with ``int()``, and it takes a
missing engine kind (``None`` or ``""``) as the default engine. Each case
here loads the same flow with the same options on both libraries and
compares what the run did.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

LIBRARIES = ("taskflow", "flowkit")

# Importing taskflow pulls in oslo_utils.eventletutils, which warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:oslo_utils.eventletutils")


def _run(root: str, **options: Any) -> tuple[str, list[str], bool]:
    """Run ``a`` then a failing ``b`` under ``options``.

    Returns the flow state, the calls made into the tasks, and whether statistics were kept.
    """
    task = importlib.import_module(f"{root}.task")
    linear_flow = importlib.import_module(f"{root}.patterns.linear_flow")
    engines = importlib.import_module(f"{root}.engines")
    calls: list[str] = []

    class Undoable(task.Task):  # type: ignore[misc, name-defined]
        def execute(self) -> int:
            calls.append(f"execute {self.name}")
            return 1

        def revert(self, **kwargs: Any) -> None:
            calls.append(f"revert {self.name}")

    class Failing(Undoable):
        def execute(self) -> int:
            calls.append(f"execute {self.name}")
            raise ValueError("boom")

    engine = engines.load(linear_flow.Flow("f").add(Undoable("a"), Failing("b")), **options)
    with pytest.raises(ValueError, match="boom"):
        engine.run()
    return engine.storage.get_flow_state(), calls, bool(engine.statistics)


FLAG_TEXTS = ["false", "False", "no", "off", "0", "n", "f", "true", "YES", "on", "1", "t", "y", "maybe", ""]


@pytest.mark.parametrize("text", FLAG_TEXTS)
@pytest.mark.parametrize("option", ["never_resolve", "gather_statistics"])
def test_a_flag_given_as_text_means_what_it_means_to_taskflow(option: str, text: str) -> None:
    # never_resolve="false" from a configuration file left the flow unreverted.
    expected = _run("taskflow", **{option: text})
    assert _run("flowkit", **{option: text}) == expected


@pytest.mark.parametrize("value", [None, 2, 0, 1])
def test_a_flag_given_as_none_or_a_number_means_what_it_means_to_taskflow(value: Any) -> None:
    expected = _run("taskflow", never_resolve=value)
    assert _run("flowkit", never_resolve=value) == expected


@pytest.mark.parametrize("engine", [None, ""])
def test_a_missing_engine_kind_loads_the_default_engine_as_in_taskflow(engine: Any) -> None:
    # flowkit refused engine=None ("engine must be a name or URI string") and engine="".
    expected = _run("taskflow", engine=engine)
    assert (
        _run("flowkit", engine=engine)
        == expected
        == (
            "REVERTED",
            ["execute a", "execute b", "revert b", "revert a"],
            True,
        )
    )


@pytest.mark.parametrize("workers", ["3", " 2 "])
def test_max_workers_given_as_text_is_read_as_a_number_as_in_taskflow(workers: str) -> None:
    # flowkit refused it: "max_workers must be a positive int, not '3'".
    expected = _run("taskflow", engine="parallel", max_workers=workers)
    assert _run("flowkit", engine="parallel", max_workers=workers) == expected


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_max_workers_text_that_is_no_positive_number_is_refused_by_both(workers: str) -> None:
    # TaskFlow refuses it at load or when the run makes its pool; flowkit at load.
    for root in LIBRARIES:
        engines = importlib.import_module(f"{root}.engines")
        flow = importlib.import_module(f"{root}.patterns.linear_flow").Flow("f")
        with pytest.raises(ValueError):
            engines.load(flow, engine="parallel", max_workers=workers).run()


def test_the_parallel_engine_runs_as_many_tasks_at_once_as_taskflows_by_default() -> None:
    # TaskFlow's threads come from futurist, five per CPU by default; flowkit's
    # were min(32, cpus + 4): on two cores ten tasks that wait for each other met
    # under TaskFlow and broke their barrier under flowkit (six at a time).
    import os
    import threading

    meeting = (os.cpu_count() or 1) * 5
    for root in LIBRARIES:
        task = importlib.import_module(f"{root}.task")
        unordered_flow = importlib.import_module(f"{root}.patterns.unordered_flow")
        engines = importlib.import_module(f"{root}.engines")
        barrier = threading.Barrier(meeting, timeout=30)

        class Meet(task.Task):  # type: ignore[misc, name-defined]
            def execute(self, barrier: threading.Barrier = barrier) -> int:
                return barrier.wait()

        flow = unordered_flow.Flow("meet").add(*(Meet(f"m{i}", provides=f"m{i}") for i in range(meeting)))
        engine = engines.load(flow, engine="parallel")
        engine.run()
        assert sorted(engine.storage.fetch(f"m{i}") for i in range(meeting)) == list(range(meeting)), root


def test_the_nonblocking_conductor_runs_as_many_jobs_at_once_as_taskflows_by_default() -> None:
    ours = importlib.import_module("flowkit.conductors.backends.impl_nonblocking").NonBlockingConductor
    theirs = importlib.import_module("taskflow.conductors.backends.impl_nonblocking").NonBlockingConductor
    assert ours.MAX_SIMULTANEOUS_JOBS == theirs.MAX_SIMULTANEOUS_JOBS
