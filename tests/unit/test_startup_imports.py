"""What a short-lived process pays for: the modules a first run imports.

Every CLI run, conductor job and script imports flowkit and runs one flow; the
standard library modules below cost milliseconds each to import (``inspect``
brings ``ast`` and ``dis``; ``dataclasses`` brings ``inspect``; ``uuid`` brings
``platform``) and the optional ones far more. None is needed to run a flow in
memory, so none may be imported on the way (import them where they are used).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

AVOIDED = (
    "inspect",
    "dataclasses",
    "uuid",
    "platform",
    "concurrent.futures",
    "asyncio",
    "hashlib",
    "pydantic",
)

FIRST_RUN = """
import json, sys
from flowkit import engines, task
from flowkit.patterns import graph_flow, linear_flow

class Add(task.Task):
    def execute(self, x: int) -> int:
        return x + 1

class Sum(task.Task):
    def execute(self, **values: int) -> int:
        return sum(values.values())

flow = linear_flow.Flow("f").add(
    Add("a", provides="y"),
    graph_flow.Flow("g").add(
        Add("b", rebind={"x": "y"}, provides="z"), Sum("s", requires=["y", "z"], provides="total")
    ),
)
assert engines.run(flow, store={"x": 1})["total"] == 5
print(json.dumps(sorted(sys.modules)))
"""


def test_a_first_run_in_memory_imports_none_of_the_costly_modules() -> None:
    out = subprocess.run([sys.executable, "-c", FIRST_RUN], check=True, capture_output=True, text=True)
    loaded = set(json.loads(out.stdout))
    assert not loaded & set(AVOIDED), f"a first run imported {sorted(loaded & set(AVOIDED))}"


# A one-task linear flow in memory, the smallest program: what it must not import.
# Each of these is either costly (milliseconds: ``logging`` brings ``traceback``,
# ``linecache``, ``tokenize`` and ``string``) or only needed off this path (a backend,
# a graph flow, a failure's traceback, a parallel engine, a thread).
NOT_IN_ONE_TASK_RUN = (
    *AVOIDED,
    "logging",
    "traceback",
    "linecache",
    "tokenize",
    "textwrap",
    "string",
    "json",
    "datetime",
    "copy",
    "pathlib",
    "fnmatch",
    "urllib.parse",
    "weakref",
    "bisect",
    "importlib.metadata",
    "sqlalchemy",
    "redis",
    "kazoo",
    "networkx",
    "flowkit.persistence.base",
    "flowkit.persistence.models",
    "flowkit._detail_sync",
    "flowkit.patterns.graph_flow",
    "flowkit.listeners",
    # The serial engine runs atoms in the caller's thread: no threads, no queue
    # (not even the C one that the other engines' completion queue is).
    "threading",
    "queue",
    "_queue",
    "flowkit.engines._completions",
    # A flow without loops keeps no loop book-keeping.
    "flowkit.engines._loops",
    # The scheduler's heap is _heapq's C functions, loaded only once a ready atom must
    # go before one already queued (a dlopen: ~0.2 ms); deciders are imported where one runs.
    "heapq",
    "_heapq",
    "flowkit.deciders",
    # The engine's code a successful run never calls, imported on first use (the
    # first-load cost, doc/benchmarks.rst; tests/unit/engines/test_cold_modules.py runs each one):
    "flowkit.engines._protocols",  # Hooks and Driver: for type checkers only
    "flowkit.engines._resolving",  # a failure's resolution into reverts, a retry's scope
    "flowkit.engines._skipping",  # what a decider that says no skips
    "flowkit.engines._growing",  # dynamic sub-flows spliced in, loop iterations
    "flowkit.engines._suspending",  # what a suspended run left
    "flowkit.engines._validating",  # a persisted run's atom names, the type check's injected values
    "flowkit.engines._executor_driver",  # the parallel engine's executor= option
    # Nor, when no atom declares a type (this one has no annotation), type checks
    # and guards (an annotated first run imports them: see FIRST_RUN above).
    "flowkit.typed",
    "flowkit._guards",
    "flowkit._utils.asyncio_bridge",
    # Engine options given as bools (the defaults) are read without the text switch reader.
    "flowkit._utils.switches",
    # The runtime's code for what a successful run never does, imported with the feature
    # (tests/unit/engines/test_cold_modules.py runs each one):
    "flowkit.engines._reverting",  # reverting
    "flowkit.engines._retrying",  # asking a retry, restarting its scope
    "flowkit.engines._held_notices",  # a retry's or loop's reset of many atoms at once
    "flowkit.engines._deciding",  # link deciders
    "flowkit.engines._resetting",  # engine.reset()
    "flowkit.engines._progress_reports",  # a task's update_progress
    "flowkit.engines._bridges",  # coroutines' loop threads
    "flowkit.engines._inline_waits",  # the serial engine's coroutine or timed call, waited for
    "flowkit.engines._guarding",  # type validation and the result cache
    "flowkit.engines._steer",  # spawned sub-flows and loops' answers
    "flowkit.engines._limits",  # concurrency limits
    "flowkit.engines._raised_calls",  # a call that raised on a pool or loop thread
    "flowkit.engines._result_errors",  # a result without a name its atom provides
    # The compiler's and the task options' code for what this flow does not use
    # (imported on first use: each is run below by a flow that needs it).
    "flowkit.engines._task_options",  # reading the atoms' timeouts and concurrency keys
    "flowkit.engines._atom_options",  # an atom's timeout or concurrency key
    "flowkit.engines._implicit_flows",  # an atom on its own, a task's own retry=
    "flowkit.engines._graph_order",  # graph readers not linked to their providers, flows out of order
    "flowkit.engines._compilation_queries",  # execution_graph, storage's scoped fetch
)

# ``import flowkit.engines`` defers the engine's own modules to the first ``load``.
NOT_AT_ENGINES_IMPORT = (
    *NOT_IN_ONE_TASK_RUN,
    "flowkit.engines._engine",
    "flowkit.engines._compiler",
    "flowkit.engines._runtime",
    "flowkit.engines._scheduler",
    "flowkit.engines.serial",
)

ONE_TASK_RUN = """
import builtins, sys
compiled = []
real_compile = builtins.compile

def compile(source, *args, **kwargs):
    if isinstance(source, str):  # the import system compiles sources as bytes
        compiled.append(source)
    return real_compile(source, *args, **kwargs)

builtins.compile = compile
before = set(sys.modules)
from flowkit import engines
after_import = set(sys.modules) - before
from flowkit import task
from flowkit.patterns import linear_flow

class One(task.Task):
    def execute(self):
        return 1

engine = engines.load(linear_flow.Flow("f").add(One("one", provides="x")))
engine.run()
assert engine.storage.fetch("x") == 1
loaded = set(sys.modules) - before
import json  # only now, so that it is not counted as flowkit's
print(json.dumps({"import": sorted(after_import), "run": sorted(loaded), "compiled": compiled}))
"""


@functools.cache
def _one_task_run() -> dict[str, list[str]]:
    # -S: no site, so nothing the interpreter's set-up imports (an editable install's
    # path finder imports pathlib, a sitecustomize may import logging) hides what
    # flowkit imports; modules loaded before flowkit's import are not counted either.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-S", "-c", ONE_TASK_RUN], check=True, capture_output=True, text=True, env=env
    )
    found: dict[str, list[str]] = json.loads(out.stdout)
    return found


def test_import_engines_defers_the_engine_and_everything_costly() -> None:
    loaded = set(_one_task_run()["import"])
    assert "flowkit.engines" in loaded  # the probe does measure the import
    assert not loaded & set(NOT_AT_ENGINES_IMPORT), sorted(loaded & set(NOT_AT_ENGINES_IMPORT))


def test_a_one_task_run_in_memory_imports_only_what_it_uses() -> None:
    loaded = set(_one_task_run()["run"])
    assert "flowkit.engines.serial" in loaded  # the probe does run a flow
    assert not loaded & set(NOT_IN_ONE_TASK_RUN), sorted(loaded & set(NOT_IN_ONE_TASK_RUN))


# The parallel engine's first run: threads, but only its own (not the green-thread
# or process-pool support, nor a queue module: not even the C one, an extension to load),
# started with _thread: threading is imported by the program if at all.
_PARALLEL_NEEDS = {"flowkit.engines._completions"}
NOT_IN_ONE_TASK_PARALLEL_RUN = (
    *(name for name in NOT_IN_ONE_TASK_RUN if name not in _PARALLEL_NEEDS),
    "multiprocessing",
    "flowkit.engines._green",
    "flowkit.engines._process_progress",
)


def test_a_one_task_parallel_run_imports_only_what_it_uses() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    probe = ONE_TASK_RUN.replace('provides="x")))', 'provides="x")), engine="parallel")')
    assert probe != ONE_TASK_RUN
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe], check=True, capture_output=True, text=True, env=env
    )
    loaded = set(json.loads(out.stdout)["run"])
    assert "flowkit.engines.parallel" in loaded  # the probe does run the parallel engine
    assert not loaded & set(NOT_IN_ONE_TASK_PARALLEL_RUN), sorted(loaded & set(NOT_IN_ONE_TASK_PARALLEL_RUN))


def test_a_one_task_run_compiles_no_source_text() -> None:
    # The first compile() of a process builds the interpreter's AST classes (about
    # 1 ms), and typing.NamedTuple compiles each field's annotation string: records
    # on this path derive from flowkit._utils.records.Record instead.
    assert _one_task_run()["compiled"] == []


ANNOTATED_RUN = """
from __future__ import annotations
import builtins, json
compiled = []
real_compile = builtins.compile

def compile(source, *args, **kwargs):
    if isinstance(source, str):
        compiled.append(source)
    return real_compile(source, *args, **kwargs)

builtins.compile = compile
import sys
from flowkit import engines, task
from flowkit.patterns import linear_flow

class Add(task.Task):
    def execute(self, x: int) -> int:
        return x + 1

class Total(task.Task):
    def execute(self, **values: int) -> int:
        return sum(values.values())

class Halve(task.Task):
    def execute(self, x: int) -> float:
        return x / 2

# Both take only the store's x: an annotated argument and an annotated **values fed by no atom.
flow = linear_flow.Flow("f").add(Add("a", provides="y"), Total("t", requires=["x"], provides="total"))
fed = "{fed}"
if fed == "int":  # an annotated argument fed by another atom, every annotation int
    flow.add(Add("b", rebind={"x": "y"}, provides="z"))
elif fed == "int and float":  # the same, in a flow that also speaks float: typed compares
    flow.add(Halve("b", rebind={"x": "y"}, provides="z"))
assert engines.run(flow, store={"x": 1})["total"] == 1
print(json.dumps({"compiled": compiled, "typed": "flowkit.typed" in sys.modules,
                  "guards": "flowkit._guards" in sys.modules,
                  "validating": "flowkit.engines._validating" in sys.modules}))
"""


def _annotated_run(fed: str | None) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-S", "-c", ANNOTATED_RUN.replace("{fed}", str(fed))]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    found: dict[str, Any] = json.loads(out.stdout)
    return found


def test_a_run_of_tasks_annotated_with_plain_names_compiles_no_source_text() -> None:
    # Under ``from __future__ import annotations`` every annotation is a string;
    # typing.get_type_hints would compile() each one (and, the first time, build the
    # AST classes): flowkit.typed looks plain class names up instead.
    found = _annotated_run(fed="int and float")
    assert found["typed"]  # the probe does check the annotations
    assert found["compiled"] == []


def test_annotated_edges_that_match_do_not_load_the_injected_value_check() -> None:
    # Whether an injected value replaces a provider's result matters only for an
    # edge whose types do not match: a flow that checks clean never asks it.
    found = _annotated_run(fed="int and float")
    assert found["typed"]
    assert not found["validating"]


def test_annotations_with_nothing_to_compare_or_validate_import_neither_typed_nor_guards() -> None:
    # Results annotated, arguments (named, or through **values) annotated but fed by
    # the store: no edge for typed to compare, no result to validate.
    found = _annotated_run(fed=None)
    assert not found["typed"]
    assert not found["guards"]


def test_a_flow_annotated_with_one_class_throughout_does_not_import_typed() -> None:
    # Every annotation names int: each edge gives what it reads, none can mismatch.
    found = _annotated_run(fed="int")
    assert not found["typed"]
    assert found["compiled"] == []


# ``flowkit --help`` (and every subcommand's parser) answers without these: the
# subcommands import them where they run.
NOT_FOR_CLI_PARSER = (
    "inspect",
    "dataclasses",
    "uuid",
    "platform",
    "signal",
    "asyncio",
    "concurrent.futures",
    "sqlalchemy",
    "redis",
    "kazoo",
    "flowkit.engines",
    "flowkit.persistence.models",
)

CLI_PARSER = """
import sys
before = set(sys.modules)
from flowkit.cli import build_parser
build_parser()
loaded = set(sys.modules) - before
import json
print(json.dumps(sorted(loaded)))
"""


def test_the_command_line_parser_imports_none_of_the_costly_modules() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-S", "-c", CLI_PARSER], check=True, capture_output=True, text=True, env=env
    )
    loaded = set(json.loads(out.stdout))
    assert "flowkit.cli.run" in loaded  # the probe does build every subcommand's parser
    assert not loaded & set(NOT_FOR_CLI_PARSER), sorted(loaded & set(NOT_FOR_CLI_PARSER))


def test_a_parallel_run_of_an_unordered_flow_does_not_import_the_linear_pattern() -> None:
    # The compiler knows the stock linear flow by class once one comes, instead of
    # importing the pattern for its table (about 0.15 ms of a fresh process's first load).
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    probe = ONE_TASK_RUN.replace("linear_flow", "unordered_flow").replace(
        'provides="x")))', 'provides="x")), engine="parallel")'
    )
    assert "unordered_flow.Flow(" in probe and 'engine="parallel"' in probe
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe], check=True, capture_output=True, text=True, env=env
    )
    loaded = set(json.loads(out.stdout)["run"])
    assert "flowkit.engines.parallel" in loaded  # the probe does run the parallel engine
    assert "flowkit.patterns.linear_flow" not in loaded
