"""The public surface: TaskFlow's module and names, under ``flowkit``.

Migrating from TaskFlow means changing the import root, so every public
module must exist, declare ``__all__``, and export the names TaskFlow users
call. Importing the engines must also stay cheap: no optional backend may be
imported until it is used.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each public module and the TaskFlow names it must export (in ``__all__``).
REQUIRED: dict[str, set[str]] = {
    "flowkit": {"__version__"},
    "flowkit.atom": {"Atom"},
    "flowkit.task": {
        "EVENT_UPDATE_PROGRESS",
        "FunctorTask",
        "MapFunctorTask",
        "REVERT_FLOW_FAILURES",
        "REVERT_RESULT",
        "ReduceFunctorTask",
        "Task",
    },
    "flowkit.retry": {
        "AlwaysRevert",
        "AlwaysRevertAll",
        "Decision",
        "EXECUTE_REVERT_HISTORY",
        "ForEach",
        "History",
        "ParameterizedForEach",
        "RETRY",
        "REVERT",
        "REVERT_ALL",
        "REVERT_FLOW_FAILURES",
        "Retry",
        "Times",
    },
    "flowkit.flow": {"Flow"},
    "flowkit.deciders": {"Depth", "pick_widest"},
    "flowkit.patterns.linear_flow": {"Flow"},
    "flowkit.patterns.unordered_flow": {"Flow"},
    "flowkit.patterns.graph_flow": {"Flow", "TargetedFlow"},
    "flowkit.patterns.loop_flow": {"Flow"},
    "flowkit.dynamic": {"Collect", "MAX_DEPTH", "MAX_SPAWNED", "Subflow", "subflow"},
    "flowkit.engines": {
        "flow_from_detail",
        "load",
        "load_from_detail",
        "load_from_factory",
        "run",
        "save_factory_details",
    },
    "flowkit.persistence.models": {"AtomDetail", "FlowDetail", "LogBook", "RetryDetail", "TaskDetail"},
    "flowkit.persistence.base": {"Backend", "Connection"},
    "flowkit.persistence.backends": {"backend", "fetch"},
    "flowkit.persistence.path_based": {"PathBasedBackend", "PathBasedConnection"},
    "flowkit.persistence.backends.impl_memory": {"Connection", "MemoryBackend"},
    "flowkit.persistence.backends.impl_dir": {"Connection", "DirBackend"},
    "flowkit.persistence.backends.impl_sqlalchemy": {"Connection", "SQLAlchemyBackend", "SQLITE_IN_MEMORY"},
    "flowkit.persistence.backends.impl_zookeeper": {"ZkBackend", "ZkConnection"},
    "flowkit.engines.worker_based.engine": {"WorkerBasedActionEngine"},
    "flowkit.engines.worker_based.worker": {"Worker"},
    "flowkit.storage": {"Storage"},
    "flowkit.states": {
        "ANALYZING",
        "FAILURE",
        "IGNORE",
        "PENDING",
        "RESUMING",
        "RETRY",
        "RETRYING",
        "REVERT",
        "REVERTED",
        "REVERTING",
        "REVERT_FAILURE",
        "RUNNING",
        "SCHEDULING",
        "SUCCESS",
        "SUSPENDED",
        "SUSPENDING",
        "WAITING",
        "check_flow_transition",
        "check_retry_transition",
        "check_task_transition",
    },
    "flowkit.exceptions": {
        "AmbiguousDependency",
        "CompilationFailure",
        "DependencyFailure",
        "Duplicate",
        "ExecutionFailure",
        "InvalidFormat",
        "InvalidState",
        "JobFailure",
        "MissingDependencies",
        "NotFound",
        "NotImplementedError",
        "RequestTimeout",
        "StorageFailure",
        "TaskFlowException",
        "UnclaimableJob",
        "WrappedFailure",
    },
    "flowkit.logging": {"BLATHER", "TRACE", "getLogger"},
    "flowkit.version": {"version_string", "version_string_with_package"},
    "flowkit.formatters": {"FailureFormatter"},
    "flowkit.types.tree": {"FrozenNode", "Node"},
    "flowkit.types.graph": {"DiGraph", "Graph", "OrderedDiGraph", "OrderedGraph", "merge_graphs"},
    "flowkit.types.timing": {"Timeout", "convert_to_timeout"},
    "flowkit.types.sets": {"OrderedSet"},
    "flowkit.types.entity": {"Entity"},
    "flowkit.types.latch": {"Latch"},
    "flowkit.engines.action_engine.engine": {"ActionEngine", "ParallelActionEngine", "SerialActionEngine"},
    "flowkit.engines.action_engine.executor": {
        "ParallelGreenThreadTaskExecutor",
        "ParallelTaskExecutor",
        "ParallelThreadTaskExecutor",
        "SerialRetryExecutor",
        "SerialTaskExecutor",
        "TaskExecutor",
    },
    "flowkit.declarative": {"FlowSpecError", "load_flow", "register", "schema"},
    "flowkit.typed": {"Contract", "check_compilation", "contract_of", "satisfies", "validator_for"},
    "flowkit.cache": {"CacheStore", "MemoryStore", "open_store"},
    "flowkit.types.failure": {"Failure"},
    "flowkit.types.notifier": {"Notifier", "RestrictedNotifier"},
    "flowkit.listeners.base": {"DEFAULT_LISTEN_FOR", "DumpingListener", "Listener"},
    "flowkit.listeners.logging": {"DynamicLoggingListener", "LoggingListener"},
    "flowkit.listeners.printing": {"PrintingListener"},
    "flowkit.listeners.timing": {"DurationListener", "EventTimeListener", "PrintingDurationListener"},
    "flowkit.listeners.capturing": {"CaptureListener"},
}

# Methods and properties of the objects users touch directly.
STORAGE_METHODS = {
    "fetch",
    "fetch_all",
    "fetch_mapped_args",
    "get_atom_state",
    "get_execute_result",
    "get_flow_state",
    "get_revert_result",
    "get_task_progress",
    "inject",
}
ENGINE_MEMBERS = {
    "atom_notifier",
    "compile",
    "notifier",
    "prepare",
    "reset",
    "run",
    "run_iter",
    "statistics",
    "storage",
    "suspend",
    "validate",
}

# Top-level packages of optional extras; the core must not pull them in.
OPTIONAL_PACKAGES = ("sqlalchemy", "alembic", "redis", "kazoo", "networkx")

# TaskFlow's helper modules: importing flowkit or its engines must not load them.
LAZY_MODULES = (
    "flowkit.formatters",
    "flowkit.logging",
    "flowkit.types.graph",
    "flowkit.types.tree",
    "flowkit.engines.action_engine",
)


def _import(name: str) -> ModuleType:
    return importlib.import_module(name)


@pytest.mark.parametrize("module_name", sorted(REQUIRED))
def test_public_module_declares_all_and_every_name_exists(module_name: str) -> None:
    module = _import(module_name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, (list, tuple)), f"{module_name} has no __all__ list"
    assert all(isinstance(name, str) for name in exported)
    duplicates = sorted({name for name in exported if list(exported).count(name) > 1})
    assert not duplicates, f"{module_name}.__all__ repeats {duplicates}"
    absent = sorted(name for name in exported if not hasattr(module, name))
    assert not absent, f"{module_name}.__all__ names missing attributes: {absent}"


def _engine_modules() -> list[str]:
    import pkgutil

    import flowkit.engines

    found = pkgutil.walk_packages(flowkit.engines.__path__, "flowkit.engines.")
    return sorted(info.name for info in found if not info.ispkg)


@pytest.mark.parametrize("module_name", _engine_modules())
def test_every_name_an_engine_module_exports_exists_when_it_runs(module_name: str) -> None:
    # A name imported for type checkers only (under TYPE_CHECKING) is absent at run
    # time: listed in __all__, it broke ``from module import *``.
    module = _import(module_name)
    absent = sorted(name for name in getattr(module, "__all__", ()) if not hasattr(module, name))
    assert not absent, f"{module_name}.__all__ names missing attributes: {absent}"


@pytest.mark.parametrize("module_name", sorted(REQUIRED))
def test_public_module_exports_taskflow_names(module_name: str) -> None:
    module = _import(module_name)
    missing = sorted(REQUIRED[module_name] - set(getattr(module, "__all__", ())))
    assert not missing, f"{module_name}.__all__ lacks {missing}"


def test_retry_decision_has_the_three_taskflow_members() -> None:
    retry = _import("flowkit.retry")
    assert {member.name for member in retry.Decision} >= {"RETRY", "REVERT", "REVERT_ALL"}
    assert retry.RETRY is retry.Decision.RETRY
    assert retry.REVERT is retry.Decision.REVERT
    assert retry.REVERT_ALL is retry.Decision.REVERT_ALL


def test_notifier_any_is_the_wildcard_event() -> None:
    notifier = _import("flowkit.types.notifier")
    assert notifier.Notifier.ANY == "*"


def test_storage_offers_the_taskflow_lookup_methods() -> None:
    storage = _import("flowkit.storage")
    missing = sorted(name for name in STORAGE_METHODS if not hasattr(storage.Storage, name))
    assert not missing, f"Storage lacks {missing}"


def test_loaded_engine_offers_the_taskflow_members() -> None:
    engines = _import("flowkit.engines")
    task = _import("flowkit.task")
    linear_flow = _import("flowkit.patterns.linear_flow")

    flow = linear_flow.Flow("one").add(task.FunctorTask(lambda: 1, name="one", provides="x"))
    engine = engines.load(flow)
    missing = sorted(name for name in ENGINE_MEMBERS if not hasattr(engine, name))
    assert not missing, f"engine lacks {missing}"
    engine.run()
    assert engine.storage.fetch("x") == 1


def test_run_returns_the_results_like_taskflow() -> None:
    engines = _import("flowkit.engines")
    task = _import("flowkit.task")
    linear_flow = _import("flowkit.patterns.linear_flow")

    flow = linear_flow.Flow("double").add(task.FunctorTask(lambda n: n * 2, name="double", provides="twice"))
    assert engines.run(flow, store={"n": 21}) == {"n": 21, "twice": 42}


@pytest.mark.parametrize("module_name", ["flowkit", "flowkit.engines"])
def test_import_does_not_load_optional_backends(module_name: str) -> None:
    code = (
        "import json, sys\n"
        f"import {module_name}\n"
        f"optional = {OPTIONAL_PACKAGES!r}\n"
        f"lazy = {LAZY_MODULES!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in optional or m in lazy)\n"
        "print(json.dumps(loaded))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"import {module_name} loaded optional packages: {loaded}"
