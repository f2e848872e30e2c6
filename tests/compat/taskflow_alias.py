"""A pytest plugin that makes ``import taskflow.X`` give flowkit's ``flowkit.X``.

TaskFlow 6.5 ships its unit tests in its wheel. Loaded with ``-p
tests.compat.taskflow_alias`` in a separate pytest process (never in the main test
session, where the real TaskFlow serves as an oracle), this plugin installs an import
finder first on ``sys.meta_path`` so that those tests run against flowkit:

* ``taskflow`` itself is a small stand-in package whose attributes come from
  ``flowkit``;
* ``taskflow.test``, ``taskflow.tests.*`` and ``taskflow.utils.*`` (TaskFlow's test
  base classes and private helpers, which its tests use and which are not public API)
  load from the real TaskFlow files; their own ``from taskflow import ...`` lines then
  come back through this finder;
* every other ``taskflow.X`` is the very module object ``flowkit.X``, and a module
  flowkit lacks is an ``ImportError`` (so a gap shows as a failing test module, never
  as TaskFlow's own code quietly standing in).

When ``FLOWKIT_COMPAT_RESULTS`` names a file, the outcome of every case (``passed``,
``failed``, ``skipped``) is written there as JSON (``{"outcomes": {...}, "messages":
{...}}``, the messages being each failure's or skip's one-line cause), keyed by a test
id relative to ``taskflow/tests/unit``
(``test_engines.py::SerialEngineTest::test_run_empty_flow``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import runpy
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

ALIAS = "taskflow"
TARGET = "flowkit"

# TaskFlow's own files that its tests need: test base classes and private helpers.
REAL_PREFIXES = ("taskflow.test", "taskflow.tests", "taskflow.utils")
RESULTS_ENV = "FLOWKIT_COMPAT_RESULTS"
UNIT_MARKER = "taskflow/tests/unit/"


def real_taskflow_dir() -> Path:
    """Return the directory of the installed TaskFlow package, without importing it."""
    spec = importlib.machinery.PathFinder.find_spec(ALIAS)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("taskflow is not installed; it is part of flowkit's 'test' extra")
    return Path(next(iter(spec.submodule_search_locations)))


def is_real(fullname: str) -> bool:
    """Tell whether ``fullname`` loads from TaskFlow's own files rather than flowkit."""
    return any(fullname == prefix or fullname.startswith(prefix + ".") for prefix in REAL_PREFIXES)


class _AliasLoader(importlib.abc.Loader):
    """Put the flowkit module itself in ``sys.modules`` under the TaskFlow name.

    The import system returns whatever ``sys.modules`` holds once ``exec_module`` is
    done, so ``taskflow.X is flowkit.X`` and the flowkit module keeps its own name
    and spec.
    """

    def __init__(self, target: types.ModuleType) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return types.ModuleType(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        sys.modules[module.__name__] = self.target


class _RootLoader(importlib.abc.Loader):
    """Make the ``taskflow`` package: a stand-in that reads missing names from flowkit."""

    def __init__(self, real_dir: Path) -> None:
        self.real_dir = real_dir

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return types.ModuleType(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        flowkit = importlib.import_module(TARGET)
        module.__path__ = [str(self.real_dir)]
        module.__file__ = flowkit.__file__

        def __getattr__(name: str) -> object:
            return getattr(flowkit, name)

        module.__getattr__ = __getattr__  # type: ignore[method-assign]


class AliasFinder(importlib.abc.MetaPathFinder):
    """Resolve ``taskflow`` names as the module docstring describes."""

    def __init__(self) -> None:
        self.real_dir = real_taskflow_dir()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == ALIAS:
            return importlib.machinery.ModuleSpec(fullname, _RootLoader(self.real_dir), is_package=True)
        if not fullname.startswith(ALIAS + "."):
            return None
        relative = fullname.split(".")[1:]
        if is_real(fullname):
            return self._real_spec(fullname, relative)
        flowkit_name = ".".join([TARGET, *relative])
        try:
            module = importlib.import_module(flowkit_name)
        except ModuleNotFoundError as exc:
            if exc.name != flowkit_name:
                raise
            message = f"flowkit has no module {flowkit_name} (for {fullname})"
            raise ModuleNotFoundError(message, name=fullname) from None
        is_package = hasattr(module, "__path__")
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(module), is_package=is_package)

    def _real_spec(self, fullname: str, relative: list[str]) -> importlib.machinery.ModuleSpec | None:
        base = self.real_dir.joinpath(*relative)
        if (base / "__init__.py").is_file():
            return importlib.util.spec_from_file_location(
                fullname, base / "__init__.py", submodule_search_locations=[str(base)]
            )
        if base.with_suffix(".py").is_file():
            return importlib.util.spec_from_file_location(fullname, base.with_suffix(".py"))
        return None


def install() -> AliasFinder:
    """Put the finder first on ``sys.meta_path``; TaskFlow must not be imported yet."""
    clash = [name for name in sys.modules if name == ALIAS or name.startswith(ALIAS + ".")]
    if clash:
        raise RuntimeError(f"the real taskflow is already imported ({clash[:3]}); alias in a fresh process")
    finder = AliasFinder()
    sys.meta_path.insert(0, finder)
    return finder


def pytest_configure(config: pytest.Config) -> None:
    """Install the finder when pytest loads this module as a plugin (not on import)."""
    install()


def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> list[pytest.Item | pytest.Collector] | None:
    """Expand a testscenarios class into one class per scenario, as TaskFlow's runner does.

    pytest does not know testscenarios: it would run such a class once, without any
    scenario's attributes, and every case would fail in ``setUp``. Each scenario
    becomes a subclass with its attributes set, collected as ``Class[scenario]``.
    """
    scenarios = getattr(obj, "scenarios", None)
    if not (isinstance(obj, type) and scenarios and isinstance(collector, pytest.Module)):
        return None
    from _pytest.unittest import UnitTestCase

    expanded: list[pytest.Item | pytest.Collector] = []
    for label, attributes in scenarios:
        variant = type(obj)(f"{name}[{label}]", (obj,), {**attributes, "scenarios": None})
        variant.__module__ = obj.__module__
        setattr(collector.obj, variant.__name__, variant)
        expanded.append(UnitTestCase.from_parent(collector, name=variant.__name__, obj=variant))
    return expanded


def short_id(nodeid: str) -> str:
    """Return ``nodeid`` relative to TaskFlow's ``tests/unit`` directory."""
    _, marker, rest = nodeid.replace(os.sep, "/").rpartition(UNIT_MARKER)
    return rest if marker else nodeid


_outcomes: dict[str, str] = {}
_messages: dict[str, str] = {}


def _last_error_line(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The last line of a failure's text that names an exception: its one-line cause."""
    lines = [line.strip() for line in str(report.longrepr).splitlines() if line.strip()]
    named = [line for line in lines if any(word in line.split(":", 1)[0] for word in ("Error", "Exception"))]
    return (named or lines or [""])[-1][:300]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record one outcome per case: a failure in any phase makes the case fail."""
    case = short_id(report.nodeid)
    if report.failed:
        _outcomes[case] = "failed"
        _messages.setdefault(case, _last_error_line(report))
    elif report.skipped:
        _outcomes.setdefault(case, "skipped")
        if isinstance(report.longrepr, tuple):
            _messages.setdefault(case, str(report.longrepr[2]))
    elif report.when == "call":
        _outcomes.setdefault(case, "passed")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A module that cannot be imported counts as one failed case, named after it."""
    if report.failed:
        case = short_id(report.nodeid) or report.nodeid
        _outcomes[case] = "failed"
        _messages[case] = _last_error_line(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the outcomes (and each failure's one-line cause) where the parent asked."""
    destination = os.environ.get(RESULTS_ENV)
    if destination:
        results = {"outcomes": _outcomes, "messages": _messages}
        Path(destination).write_text(json.dumps(results, indent=0, sort_keys=True), encoding="utf-8")


def run_script(path: str, *args: str) -> None:
    """Run the script at ``path`` as ``__main__`` with the alias installed."""
    install()
    sys.argv = [path, *args]
    sys.path.insert(0, str(Path(path).resolve().parent))
    runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    # python -m tests.compat.taskflow_alias SCRIPT [ARGS...]: run a TaskFlow script on flowkit.
    run_script(*sys.argv[1:])
