"""What the authoring layers cost per task: the compile-time type check and spec loading.

    python tools/bench_authoring.py            # 1,000 and 100,000 tasks
    python tools/bench_authoring.py --quick    # 1,000 only

Rows (best of a few runs, microseconds per task, in-memory serial engine):

* ``untyped linear-N load+run``: the hot path of untyped flows, with the type
  check on (the default) and off (``check_types=False``); the difference is what
  the check costs a flow that declares nothing.
* ``typed linear-N load+run``: every task annotated, so every edge is compared;
  ``validated`` adds the run-time check of every result (``validate_types=True``).
* ``pydantic linear-N load+run``: every task takes and returns a pydantic model,
  validated by default (result validated, argument made into the model).
* ``spec linear-N load_flow``: building the same chain from a dict spec.
* ``cached linear-N``: every task ``cache = True``; a first run (miss and
  store) and a second run (all hits) against ``memory://`` and SQLite, so the
  per-task cost of a lookup is the second run minus the untyped run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _best_time import best

from flowkit import declarative, engines, task
from flowkit.patterns import linear_flow


class Untyped(task.Task):
    def execute(self, value):  # type: ignore[no-untyped-def]
        return value


class Cached(task.Task):
    cache = True

    def execute(self, value):  # type: ignore[no-untyped-def]
        return value


class Typed(task.Task):
    def execute(self, value: int) -> int:
        return value


try:
    import pydantic
except ImportError:  # the typed extra is optional: its row is left out
    HAVE_PYDANTIC = False
else:
    HAVE_PYDANTIC = True

if HAVE_PYDANTIC:

    class Money(pydantic.BaseModel):
        amount: float
        currency: str

    class Modelled(task.Task):
        def execute(self, value: Money) -> Money:
            return value


def chain(cls: type[task.Task], n: int) -> linear_flow.Flow:
    flow = linear_flow.Flow("chain")
    for i in range(n):
        flow.add(
            cls(
                f"t{i}",
                provides="value" if i == 0 else f"v{i}",
                rebind={"value": "value" if i < 2 else f"v{i - 1}"},
            )
        )
    return flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 tasks only")
    args = parser.parse_args()
    sizes = (1_000,) if args.quick else (1_000, 100_000)
    spec_task = {"task": f"{__name__}:Untyped"}
    for n in sizes:
        repeat = 7 if n <= 1_000 else 2
        flows = {name: chain(cls, n) for name, cls in (("untyped", Untyped), ("typed", Typed))}

        def run(
            name: str, flows: dict[str, linear_flow.Flow] = flows, value: Any = 1, **options: Any
        ) -> Callable[[], Any]:
            return lambda: engines.load(flows[name], store={"value": value}, **options).run()

        rows = [
            ("untyped", "check on", run("untyped")),
            ("untyped", "check off", run("untyped", check_types=False)),
            ("typed", "check on", run("typed")),
            ("typed", "check off", run("typed", check_types=False)),
            ("typed", "validated", run("typed", validate_types=True)),
        ]
        if HAVE_PYDANTIC:
            flows["pydantic"] = chain(Modelled, n)
            rows.append(("pydantic", "validated", run("pydantic", value=Money(amount=1.0, currency="EUR"))))
        for name, label, fn in rows:
            print(f"{name:8} linear-{n:<7} load+run {label:9} {best(fn, repeat) / n * 1e6:7.2f} us/task")
        spec = {
            "parameters": ["seed"],
            "tasks": {
                f"t{i}": {**spec_task, "inputs": {"value": "${seed}" if i == 0 else f"${{t{i - 1}}}"}}
                for i in range(n)
            },
        }
        for url in (f"memory://bench-{n}", f"sqlite:///{tempfile.mkdtemp()}/cache.db"):
            cached = chain(Cached, n)
            for label in ("miss+store", "hit"):
                started = time.perf_counter()
                engines.load(cached, store={"value": 1}, cache=url).run()
                spent = time.perf_counter() - started
                shown = url.split(":")[0]
                print(f"cached   linear-{n:<7} {shown:6} {label:11} {spent / n * 1e6:7.2f} us/task")

        def load_spec(spec: dict[str, Any] = spec) -> Any:
            return declarative.load_flow(spec)

        spent = best(load_spec, repeat)
        print(f"spec     linear-{n:<7} load_flow          {spent / n * 1e6:7.2f} us/task")


if __name__ == "__main__":
    main()
