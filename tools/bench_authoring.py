"""What the authoring layers cost per task: the compile-time type check and spec loading.

    python tools/bench_authoring.py            # 1,000 and 100,000 tasks
    python tools/bench_authoring.py --quick    # 1,000 only
    python tools/bench_authoring.py --build    # building flows and reading specs only

``--build`` rows (best of a few runs, seconds and microseconds per item), each
of which grew faster than its size before it was made linear:

* ``graph add N sub-flows``: a graph flow given N one-task linear flows one
  ``add`` at a time (each reads the one before), then the same N tasks alone.
* ``spec graph|linear flat|subflows/10 N dict|json|yaml``: ``load_flow`` of an
  N-task chain, as one flow or as sub-flows of 10 tasks, from a dict, a JSON
  file and a YAML file (YAML at 1,000 and 5,000 only).
* ``spec linear of 2 unordered N``: a linear flow of two unordered sub-flows of
  N/2 tasks each (every task of the second follows every task of the first).

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
import functools
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _best_time import best

from flowkit import declarative, engines, task
from flowkit.patterns import graph_flow, linear_flow


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


def _spec(n: int, kind: str, group: int) -> dict[str, Any]:
    """An n-task chain spec (each reads the one before), flat or in linear sub-flows of ``group``."""
    path = f"{__name__}:Untyped"

    def one(i: int) -> dict[str, Any]:
        return {"task": path, "inputs": {"value": f"${{t{i - 1}}}" if i else 1}}

    if not group:
        return {"name": "bench", "flow": kind, "tasks": {f"t{i}": one(i) for i in range(n)}}
    subs = {
        f"s{g}": {"flow": "linear", "tasks": {f"t{i}": one(i) for i in range(g * group, (g + 1) * group)}}
        for g in range(n // group)
    }
    return {"name": "bench", "flow": kind, "tasks": subs}


def build_rows() -> None:
    """The ``--build`` rows (see the module docstring)."""
    for n in (1_000, 5_000):

        def add_subflows(n: int = n) -> None:
            flow = graph_flow.Flow("g")
            for i in range(n):
                step = Untyped(f"t{i}", provides=f"v{i}", rebind={"value": f"v{i - 1}" if i else "v"})
                flow.add(linear_flow.Flow(f"s{i}").add(step))

        def add_tasks(n: int = n) -> None:
            flow = graph_flow.Flow("g")
            for i in range(n):
                flow.add(Untyped(f"t{i}", provides=f"v{i}", rebind={"value": f"v{i - 1}" if i else "v"}))

        for label, fn in (("sub-flows", add_subflows), ("tasks", add_tasks)):
            spent = best(fn, 3)
            print(f"graph add {n:<6} {label:9} one at a time {spent:7.3f} s {spent / n * 1e6:7.1f} us/item")
    with tempfile.TemporaryDirectory(prefix="bench-authoring-") as folder:
        _load_rows(folder)


def _load_rows(folder: str) -> None:
    """The spec-loading rows, their JSON and YAML files written in ``folder``."""
    import json

    for n in (1_000, 5_000, 20_000):
        for kind in ("graph", "linear"):
            for group in (0, 10):
                spec = _spec(n, kind, group)
                sources: list[tuple[str, Any]] = [("dict", spec)]
                with open(f"{folder}/spec.json", "w", encoding="utf-8") as out:
                    json.dump(spec, out)
                sources.append(("json", f"{folder}/spec.json"))
                if n <= 5_000:
                    try:
                        import yaml
                    except ImportError:
                        pass
                    else:
                        with open(f"{folder}/spec.yaml", "w", encoding="utf-8") as out:
                            yaml.safe_dump(spec, out, sort_keys=False)
                        sources.append(("yaml", f"{folder}/spec.yaml"))
                for label, source in sources:
                    spent = best(functools.partial(declarative.load_flow, source), 3 if n <= 5_000 else 1)
                    shape = "subflows/10" if group else "flat"
                    row = f"spec {kind:6} {shape:11} {n:<6} {label:4}"
                    print(f"{row} {spent:7.3f} s {spent / n * 1e6:7.1f} us/task")
        halves = {
            f"s{s}": {
                "flow": "unordered",
                "tasks": {
                    f"t{s}_{i}": {"task": f"{__name__}:Untyped", "inputs": {"value": i}}
                    for i in range(n // 2)
                },
            }
            for s in range(2)
        }
        pair = {"name": "pair", "flow": "linear", "tasks": halves}
        spent = best(functools.partial(declarative.load_flow, pair), 3 if n <= 5_000 else 1)
        print(f"spec linear of 2 unordered {n:<6} dict {spent:7.3f} s {spent / n * 1e6:7.1f} us/task")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 tasks only")
    parser.add_argument("--build", action="store_true", help="building flows and reading specs only")
    args = parser.parse_args()
    if args.build:
        build_rows()
        return
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
        with tempfile.TemporaryDirectory(prefix="bench-authoring-") as folder:
            for url in (f"memory://bench-{n}", f"sqlite:///{folder}/cache.db"):
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
