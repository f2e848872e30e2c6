"""The engine's code for features a successful run never uses is imported with the feature.

The runtime's reverting, retrying, deciders, resets, progress reports,
coroutines, time limits, guards, loops and spawns, concurrency limits, calls
that raise on a pool and results that do not unpack; the scheduler's failure
resolution, decider skips and suspend bookkeeping; the engine's persisted-run
checks and executor driver; the compiler's atom options, lone atoms, graph
ordering and scoped queries, the reading of timeouts and concurrency keys
live in modules of their own, imported on first
use (the first load's cost: doc/benchmarks.rst);
``tests/unit/test_startup_imports.py`` checks that a plain run imports none of
them. Here each feature runs in a fresh interpreter, where nothing has imported
its module yet: the module is not loaded before the feature's run, is loaded
after it, and the run does what it did when the code lived in the runtime.
"""

from __future__ import annotations

import pytest

from ._fresh_python import run_python

PRELUDE = """
import sys
from flowkit import engines, exceptions, retry, task
from flowkit.patterns import graph_flow, linear_flow, loop_flow, unordered_flow

class Quick(task.Task):
    def execute(self):
        return 1

class Add(task.Task):
    def execute(self, x):
        return x + 1

class Boom(task.Task):
    def execute(self):
        raise RuntimeError("boom")

def run_failing(engine, error_type):
    # Run engine, which must raise error_type; return the error.
    try:
        engine.run()
    except error_type as err:
        return err
    raise AssertionError("the run did not fail")
"""

#: feature -> (the modules its run imports, the set-up, the run and its checks).
CASES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "revert": (
        ("_reverting",),
        """
undone = []
class Undo(Quick):
    def revert(self, **kwargs):
        undone.append(self.name)
engine = engines.load(linear_flow.Flow("f").add(Undo("a"), Boom("b")))
""",
        """
err = run_failing(engine, RuntimeError)
assert str(err) == "boom", err
assert undone == ["a"], undone
assert engine.storage.get_atom_state("a") == "REVERTED"
assert engine.revert_cause("a").failed == "b"
""",
    ),
    "retry": (
        ("_retrying", "_held_notices"),
        """
calls = []
class Flaky(task.Task):
    def execute(self):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("once")
        return len(calls)
engine = engines.load(linear_flow.Flow("f", retry=retry.Times(3)).add(Flaky("t", provides="x")))
""",
        """
engine.run()
assert engine.storage.fetch("x") == 2
""",
    ),
    "decider": (
        ("_deciding",),
        """
first, second = Quick("a", provides="x"), Quick("b")
flow = graph_flow.Flow("g").add(first, second)
flow.link(first, second, decider=lambda history: False)
engine = engines.load(flow)
""",
        """
engine.run()
assert engine.storage.get_atom_state("b") == "IGNORE"
assert engine.ignore_cause("b").sources == ("a",)
""",
    ),
    "reset": (
        ("_resetting",),
        """
engine = engines.load(linear_flow.Flow("f").add(Quick("q", provides="x")))
engine.run()
""",
        """
engine.reset()
assert engine.storage.get_atom_state("q") == "PENDING"
engine.run()
assert engine.storage.fetch("x") == 1
""",
    ),
    "progress": (
        ("_progress_reports",),
        """
class Reports(task.Task):
    def execute(self):
        self.update_progress(0.5)
seen = []
engine = engines.load(linear_flow.Flow("f").add(Reports("r")))
engine.atom_notifier.register("update_progress", lambda _event, details: seen.append(details["progress"]))
""",
        """
engine.run()
assert seen == [0.0, 0.5, 1.0], seen
""",
    ),
    "coroutine": (
        ("_bridges",),
        """
class Coro(task.Task):
    async def execute(self):
        return 2
engine = engines.load(linear_flow.Flow("f").add(Coro("c", provides="x")))
""",
        """
engine.run()
assert engine.storage.fetch("x") == 2
""",
    ),
    "time limit": (
        ("_inline_waits",),
        """
engine = engines.load(linear_flow.Flow("f").add(Quick("q", provides="x", timeout=30)))
""",
        """
engine.run()
assert engine.storage.fetch("x") == 1
assert "flowkit.engines._bridges" not in sys.modules  # a timed call needs no event loop
""",
    ),
    "type guard": (
        ("_guarding",),
        """
class Typed(task.Task):
    def execute(self) -> int:
        return "not a number"
engine = engines.load(linear_flow.Flow("f").add(Typed("t", provides="x")), validate_types=True)
""",
        """
try:
    engine.run()
except exceptions.InvalidResult as err:
    assert err.atom == "t", err
else:
    raise AssertionError("the wrong type passed")
""",
    ),
    "loop": (
        ("_steer", "_held_notices"),
        """
counted = []
class Count(task.Task):
    def execute(self):
        counted.append(1)
        return len(counted)
flow = loop_flow.Flow("loop", Count("c", provides="n"), until=lambda n: n >= 3, max_iterations=5)
engine = engines.load(flow)
""",
        """
engine.run()
assert engine.storage.fetch("n") == 3
""",
    ),
    "concurrency limit": (
        ("_limits",),
        """
flow = unordered_flow.Flow("u").add(*(Quick(f"q{i}", concurrency_key="api") for i in range(4)))
engine = engines.load(flow, engine="parallel", max_workers=4, concurrency_limits={"api": 1})
""",
        """
engine.run()
assert all(engine.storage.get_atom_state(f"q{i}") == "SUCCESS" for i in range(4))
""",
    ),
    "raise on a pool": (
        ("_raised_calls",),
        """
engine = engines.load(linear_flow.Flow("f").add(Boom("b")), engine="parallel")
""",
        """
err = run_failing(engine, RuntimeError)
assert str(err) == "boom", err
""",
    ),
    "result that does not unpack": (
        ("_result_errors",),
        """
engine = engines.load(linear_flow.Flow("f").add(Quick("p", provides=("a", "b"))))
""",
        """
err = run_failing(engine, exceptions.ResultUnpackError)
assert err.atom == "p", err
assert "has no item 0 for provided name 'a'" in str(err), err
""",
    ),
    # The scheduler's, engine's and compiler's code, as the runtime's above.
    "failure under a retry": (
        ("_resolving",),
        """
reverted = []
class FailsOnce(task.Task):
    failures = 1
    def execute(self):
        if FailsOnce.failures:
            FailsOnce.failures -= 1
            raise RuntimeError("boom")
    def revert(self, **kwargs):
        reverted.append(self.name)
flow = linear_flow.Flow("f", retry=retry.Times(2, "r")).add(Add("a", provides="y"), FailsOnce("b"))
engine = engines.load(flow, store={"x": 1})
""",
        """
engine.run()
found = {name: engine.storage.get_atom_state(name) for name in ("r", "a", "b")}
assert found == {"r": "SUCCESS", "a": "SUCCESS", "b": "SUCCESS"}, found
assert "b" in reverted, reverted  # the failed atom was undone before the retry ran it again
""",
    ),
    "decider skip": (
        ("_skipping",),
        """
a, b = Add("a", provides="y"), Add("b", rebind={"x": "y"}, provides="z")
flow = graph_flow.Flow("g").add(a, b).link(a, b, decider=lambda history: False)
engine = engines.load(flow, store={"x": 1})
""",
        """
engine.run()
found = {name: engine.storage.get_atom_state(name) for name in ("a", "b")}
assert found == {"a": "SUCCESS", "b": "IGNORE"}, found
""",
    ),
    "suspend": (
        ("_suspending",),
        """
flow = linear_flow.Flow("f").add(Add("a", provides="y"), Add("b", rebind={"x": "y"}))
engine = engines.load(flow, store={"x": 1})
""",
        """
for state in engine.run_iter():
    if state == "WAITING":
        engine.suspend()
assert engine.storage.get_flow_state() == "SUSPENDED"
found = {name: engine.storage.get_atom_state(name) for name in ("a", "b")}
assert found == {"a": "SUCCESS", "b": "PENDING"}, found
""",
    ),
    "persisted run": (
        ("_validating",),
        """
from flowkit.persistence import backends
backend = backends.fetch({"connection": "memory://"})
engine = engines.load(linear_flow.Flow("f").add(Add("a", provides="y")), store={"x": 1}, backend=backend)
""",
        """
engine.run()
assert engine.storage.get_atom_state("a") == "SUCCESS"
""",
    ),
    "caller's executor": (
        ("_executor_driver",),
        """
import concurrent.futures as cf
pool = cf.ThreadPoolExecutor(2)
engine = engines.load(linear_flow.Flow("f").add(Add("a", provides="y")), store={"x": 1},
                      engine="parallel", executor=pool)
""",
        """
with pool:
    engine.run()
assert engine.storage.get_atom_state("a") == "SUCCESS"
""",
    ),
    "atom options": (
        ("_task_options", "_atom_options"),
        """
flow = linear_flow.Flow("f").add(Add("a", provides="y", timeout=30))
""",
        """
assert engines.run(flow, store={"x": 1})["y"] == 2
""",
    ),
    "engine's default timeout": (
        ("_task_options",),
        """
flow = linear_flow.Flow("f").add(Add("a", provides="y"))
""",
        """
assert engines.run(flow, store={"x": 1}, default_timeout=30)["y"] == 2
""",
    ),
    "engine's concurrency limits": (
        ("_task_options",),
        """
flow = linear_flow.Flow("f").add(Add("a", provides="y"))
""",
        """
assert engines.run(flow, store={"x": 1}, concurrency_limits={"db": 1})["y"] == 2
""",
    ),
    "atom on its own": (
        ("_implicit_flows",),
        """
lone = Add("a", provides="y", retry=2)
""",
        """
assert engines.run(lone, store={"x": 1})["y"] == 2
""",
    ),
    "reader linked only through another": (
        ("_graph_order",),
        """
# d reads what a provides, linked to it only through b (c stands apart).
a, b = Add("a", provides="y"), Add("b", rebind={"x": "y"}, provides="z")
c, d = Add("c", provides="v"), Add("d", rebind={"x": "y"}, provides="w")
flow = graph_flow.Flow("g").add(a, b, c, d, resolve_requires=False).link(a, b).link(b, d)
""",
        """
assert engines.run(flow, store={"x": 0})["w"] == 2
""",
    ),
    "scoped fetch": (
        ("_compilation_queries",),
        """
flow = linear_flow.Flow("f").add(Add("a", provides="y"), Add("b", rebind={"x": "y"}))
engine = engines.load(flow, store={"x": 1})
engine.run()
""",
        """
assert engine.storage.fetch_mapped_args({"v": "y"}, atom_name="b")["v"] == 2
""",
    ),
}


@pytest.mark.parametrize("feature", sorted(CASES))
def test_a_feature_imports_its_module_on_first_use_and_works(feature: str) -> None:
    modules, setup, run = CASES[feature]
    names = [f"flowkit.engines.{module}" for module in modules]
    code = (
        f"{PRELUDE}\n{setup}\n"
        f"names = {names!r}\n"
        "early = [name for name in names if name in sys.modules]\n"
        "assert not early, f'loaded before the feature ran: {early}'\n"
        f"{run}\n"
        "missing = [name for name in names if name not in sys.modules]\n"
        "assert not missing, f'not loaded by the feature: {missing}'\n"
        "print('ok')\n"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
