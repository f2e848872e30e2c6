"""What a short-lived process pays for: the modules a first run imports.

Every CLI run, conductor job and script imports flowkit and runs one flow; the
standard library modules below cost milliseconds each to import (``inspect``
brings ``ast`` and ``dis``; ``dataclasses`` brings ``inspect``; ``uuid`` brings
``platform``) and the optional ones far more. None is needed to run a flow in
memory, so none may be imported on the way (import them where they are used).
"""

from __future__ import annotations

import json
import subprocess
import sys

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
