"""A feature's calls after its first import nothing more: no ``import`` per atom or per report.

The code a successful run never calls lives in modules imported on first use
(``test_cold_modules.py``). A method that stands in for such code and imports
its module at each call costs about a microsecond a call (the import system's
``fromlist`` handling runs in Python): nothing for a retry asked once, but a
third more for a task that reports progress, where it is paid per report. Here
each feature runs twice in one process with its module already loaded, once
small and once large: the number of ``import`` statements of flowkit's
modules executed must not grow with the number of atoms or reports (or, for
the compiler's ordering of a graph flow's providers, with its readers).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowkit import engines, task
from flowkit.patterns import graph_flow, linear_flow


class _Undoable(task.Task):
    def execute(self) -> int:
        return 1

    def revert(self, **kwargs: Any) -> None:
        pass


class _Boom(task.Task):
    def execute(self) -> None:
        raise RuntimeError("boom")


class _Reporting(task.Task):
    def __init__(self, name: str, reports: int) -> None:
        super().__init__(name=name)
        self.reports = reports

    def execute(self) -> None:
        for step in range(self.reports):
            self.update_progress(step / self.reports)


def _imports_during(run: Callable[[], None]) -> int:
    """How many ``import`` statements of flowkit's modules ``run`` executes.

    Each calls ``builtins.__import__``, which is replaced while ``run`` runs.
    """
    count = 0
    real = builtins.__import__

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        if name.startswith("flowkit"):
            count += 1
        return real(name, *args, **kwargs)

    builtins.__import__ = counting
    try:
        run()
    finally:
        builtins.__import__ = real
    return count


def _revert_run(size: int, engine: str) -> Callable[[], None]:
    flow = linear_flow.Flow("undo").add(*[_Undoable(f"t{i}") for i in range(size)], _Boom("boom"))
    loaded = engines.load(flow, engine=engine)
    loaded.compile()
    loaded.prepare()

    def run() -> None:
        with pytest.raises(RuntimeError, match="boom"):
            loaded.run()

    return run


def _progress_run(size: int, engine: str) -> Callable[[], None]:
    flow = linear_flow.Flow("reports").add(*[_Reporting(f"p{i}", size) for i in range(3)])
    loaded = engines.load(flow, engine=engine)
    loaded.compile()
    loaded.prepare()
    return loaded.run


def _decider_run(size: int, engine: str) -> Callable[[], None]:
    root = _Undoable("root")
    targets = [_Undoable(f"t{i}") for i in range(size)]
    flow = graph_flow.Flow("skips").add(root, *targets)
    for target in targets:
        flow.link(root, target, decider=lambda history: False)
    loaded = engines.load(flow, engine=engine)
    loaded.compile()
    loaded.prepare()
    return loaded.run


class _Providing(task.Task):
    default_provides = "x"

    def execute(self) -> int:
        return 1


class _Reading(task.Task):
    def execute(self, x: int) -> int:
        return x


def _ordered_providers_compile(size: int, engine: str) -> Callable[[], None]:
    """A graph flow's readers of a symbol that several linked items provide: the compiler orders them."""
    providers = [_Providing(f"p{i}") for i in range(3)]
    readers = [_Reading(f"r{i}") for i in range(size)]
    flow = graph_flow.Flow("providers").add(*providers)
    for before, after in zip(providers, providers[1:], strict=False):
        flow.link(before, after)
    flow.add(*readers, resolve_requires=False)
    for reader in readers:
        flow.link(providers[-1], reader)

    def run() -> None:
        engines.load(flow, engine=engine).compile()

    return run


FEATURES: dict[str, Callable[[int, str], Callable[[], None]]] = {
    "ordered providers": _ordered_providers_compile,
    "revert": _revert_run,
    "progress": _progress_run,
    "decider says no": _decider_run,
}


@pytest.fixture(params=["serial", "parallel"])
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_a_feature_imports_no_more_for_more_atoms_or_reports(feature: str, engine: str) -> None:
    make = FEATURES[feature]
    make(2, engine)()  # loads the feature's modules (and anything a first run imports)
    small, large = make(2, engine), make(40, engine)
    assert _imports_during(large) == _imports_during(small), (
        f"{feature} on the {engine} engine: an import statement runs per atom or per report"
    )
