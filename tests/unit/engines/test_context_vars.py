"""Tasks see the context variables of the code that runs the engine, on every engine."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from flowkit import engines, task
from flowkit.patterns import linear_flow
from tests.unit.engines._fresh_python import run_python

REQUEST = contextvars.ContextVar("REQUEST", default="none")

TIMING = pytest.mark.parametrize("options", [{}, {"default_timeout": 60}], ids=["untimed", "timed"])


class Plain(task.Task):
    """Returns the request it sees, then sets one of its own."""

    def execute(self) -> str:
        seen = REQUEST.get()
        REQUEST.set(f"set by {self.name}")
        return seen


class Async(task.Task):
    async def execute(self) -> str:
        await asyncio.sleep(0)
        seen = REQUEST.get()
        REQUEST.set(f"set by {self.name}")
        return seen


def _run_for(request: str, flow: Any, **options: Any) -> tuple[dict[str, Any], str]:
    """Run ``flow`` from a context where REQUEST is ``request``; the results, and REQUEST after."""

    def in_context() -> tuple[dict[str, Any], str]:
        REQUEST.set(request)
        return engines.run(flow, **options), REQUEST.get()

    return contextvars.copy_context().run(in_context)


@TIMING
def test_tasks_see_the_context_of_the_code_that_runs_them(engine_kind: str, options: dict[str, Any]) -> None:
    # The parallel engine's pool threads ran calls in their own context: tasks
    # saw none of the caller's variables (a request id for the logs).
    for task_class in (Plain, Async):
        results, _ = _run_for("request 1", task_class("t", provides="seen"), engine=engine_kind, **options)
        assert results["seen"] == "request 1"


@TIMING
@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
def test_what_a_task_sets_stays_in_its_call(kind: str, options: dict[str, Any]) -> None:
    # On the parallel engine a task's variables stayed set on its pool thread,
    # which outlives the run: a later call there, in this run or any other, saw
    # the previous request's id.
    def flow() -> linear_flow.Flow:
        return linear_flow.Flow("f").add(
            Plain("p1", provides="p1"), Async("a", provides="a"), Plain("p2", provides="p2")
        )

    for request in ("request 1", "request 2"):
        results, after = _run_for(request, flow(), engine=kind, **options)
        assert (results["p1"], results["a"], results["p2"]) == (request, request, request)
        assert after == request


_FRESH_PROCESS_RUN = """
import json, sys
{prelude}
from flowkit import engines, task

class Seen(task.Task):
    def execute(self):
        decimal = sys.modules.get("decimal")
        return decimal.getcontext().prec if decimal is not None else None

results = engines.run(Seen("t", provides="seen"), engine="parallel", max_workers=2)
print(json.dumps({{"seen": results["seen"], "loaded": "_contextvars" in sys.modules}}))
"""


def _fresh_process_run(prelude: str) -> dict[str, Any]:
    import json

    out = run_python(_FRESH_PROCESS_RUN.format(prelude=prelude), no_site=True, check=True)
    outcome: dict[str, Any] = json.loads(out.stdout)
    return outcome


def test_a_process_without_context_variables_does_not_load_them_for_a_parallel_run() -> None:
    # No context variable can exist until the _contextvars extension (or decimal's
    # C one) is loaded: loading it to copy an empty context cost a fresh process's
    # first parallel run about 0.3 ms.
    assert _fresh_process_run("") == {"seen": None, "loaded": False}


def test_decimals_context_made_in_c_still_reaches_pool_threads() -> None:
    # decimal's context is a context variable made by its C extension, without
    # the contextvars module: the caller's precision still reaches the task.
    prelude = "import decimal\ndecimal.getcontext().prec = 7"
    assert _fresh_process_run(prelude)["seen"] == 7
