#!/usr/bin/env python3
"""Measure flowkit's engines side by side with TaskFlow and with plain-Python floors.

Usage (from anywhere; the checkout's ``flowkit`` is put first on the path)::

    python tools/bench.py                       # everything, 3 repeats, TaskFlow if importable
    python tools/bench.py --quick --only linear,import
    python tools/bench.py --no-taskflow --json results.json

Every measurement runs in a fresh child interpreter (see ``_bench_workloads``) and is
repeated ``--repeat`` times; the best (lowest) figure of each kind is kept. A workload
that flowkit cannot run yet shows ``n/a`` with a numbered note saying why, and the other
columns are still measured. ``doc/benchmarks.rst`` explains each workload.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

from _child_env import child_env  # a sibling in tools/, on the path of a script run from there

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"

GROUPS = ("linear", "parallel", "dag", "sleep", "revert", "import", "memory", "floor")
SCALING_SIZES = (1_000, 10_000, 100_000)
QUICK_N = 200
FULL_N = 1_000
PARALLEL_WORKERS = 8
SLEEP_TASKS, SLEEP_WORKERS = 200, 32
MEMORY_LINEAR_N, MEMORY_PARALLEL_N = 100_000, 5_000
FLOOR_CALLS = 1_000_000
US = 1e-6
MB = 1024 * 1024

# The child imports the workloads as a module, not as __main__, so that task classes
# live in an importable module exactly like user code does.
CHILD_BOOT = "import sys, _bench_workloads as w; sys.exit(w.child_main(sys.argv[1:]))"


@dataclass
class Outcome:
    """All repeats of one (library, workload, size) measurement."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.samples)

    def best(self, key: str) -> float | None:
        """Lowest value over the repeats of one figure (``run`` means load + run)."""
        if not self.samples:
            return None
        getters: dict[str, Callable[[dict[str, Any]], float]] = {
            "build": lambda s: s["build_s"],
            "run": lambda s: s["load_s"] + s["run_s"],
            "total": lambda s: s["build_s"] + s["load_s"] + s["run_s"],
            "maxrss": lambda s: s["maxrss_kb"] * 1024.0,
            "warmup": lambda s: s.get("warmup_s", 0.0),
        }
        return min(getters[key](s) for s in self.samples)


@dataclass
class Row:
    """One line of the results table; values are in seconds, bytes or plain ratios."""

    workload: str
    metric: str
    unit: str  # "time", "per-task", "mem" or "ratio"
    flowkit: float | None = None
    taskflow: float | None = None
    floor: float | None = None
    flowkit_note: str = ""
    taskflow_note: str = ""
    target: str = ""
    passed: bool | None = None
    ratios: bool = True  # False where the cells are ratios already
    floor_ratio: bool = True  # False where the floor is a baseline, not the same work

    @property
    def tf_over_fk(self) -> float | None:
        if self.ratios and self.flowkit and self.taskflow is not None:
            return self.taskflow / self.flowkit
        return None

    @property
    def fk_over_floor(self) -> float | None:
        if self.ratios and self.floor_ratio and self.floor and self.flowkit is not None:
            return self.flowkit / self.floor
        return None


class Runner:
    """Starts child processes, caches their outcomes and remembers why things failed."""

    def __init__(self, args: argparse.Namespace, with_taskflow: bool) -> None:
        self.args = args
        self.with_taskflow = with_taskflow
        self.cache: dict[tuple[str, str, int, int], Outcome] = {}
        # (library, error) -> workloads it hit; one footnote per distinct error.
        self.notes: dict[tuple[str, str], list[str]] = {}
        # Imports are timed as users see them, with compiled bytecode cached. A private
        # cache directory keeps the checkout clean and treats both libraries alike.
        self.env = child_env()
        self.env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "flowkit-bench-pycache"))
        extra = [str(TOOLS), str(ROOT)]
        if self.env.get("PYTHONPATH"):
            extra.append(self.env["PYTHONPATH"])
        self.env["PYTHONPATH"] = os.pathsep.join(extra)

    def root(self, lib: str) -> str:
        """The module measured under the label ``lib`` (see ``--flowkit-root``)."""
        return self.args.flowkit_root if lib == "flowkit" else lib

    def note(self, lib: str, error: str, workload: str) -> str:
        """Record why ``lib`` has no figure for ``workload``; return the cell's marker."""
        workloads = self.notes.setdefault((lib, error), [])
        if workload not in workloads:
            workloads.append(workload)
        return f"n/a [{list(self.notes).index((lib, error)) + 1}]"

    def footnotes(self) -> list[str]:
        """The notes in marker order, worded for the reader of the table."""
        lines = []
        for (lib, error), workloads in self.notes.items():
            names = ", ".join(workloads)
            if lib == "flowkit":
                lines.append(f"flowkit cannot run {names} yet: {error}")
            else:
                lines.append(f"{lib} failed on {names}: {error}")
        return lines

    def measure(self, lib: str, kind: str, n: int, workers: int = 1, repeat: int | None = None) -> Outcome:
        """Run one workload ``repeat`` times, each in a fresh interpreter."""
        key = (lib, kind, n, workers)
        if key in self.cache:
            return self.cache[key]
        outcome = Outcome()
        for (c_lib, c_kind, c_n, c_workers), earlier in self.cache.items():
            # A size that failed or timed out will not do better with more tasks.
            if (c_lib, c_kind, c_workers) == (lib, kind, workers) and c_n < n and not earlier.ok:
                outcome.error = f"skipped, as {kind}-{c_n} already failed"
                self.cache[key] = outcome
                return outcome
        timeout = self.args.taskflow_timeout if lib == "taskflow" else self.args.timeout
        for i in range(repeat or self.args.repeat):
            label = f"{lib:8} {kind}-{n}" + (f" x{workers}" if workers > 1 else "")
            print(f"  {label} run {i + 1}/{repeat or self.args.repeat} ...", end=" ", file=sys.stderr)
            sys.stderr.flush()
            cmd = [sys.executable, "-c", CHILD_BOOT, self.root(lib), kind, str(n), str(workers)]
            cmd.append(str(self.args.memory_limit))
            try:
                proc = subprocess.run(
                    cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
                )
            except subprocess.TimeoutExpired:
                print("timeout", file=sys.stderr)
                outcome.error = f"did not finish within {timeout:g} s (timeout guard)"
                break
            result = _last_json(proc.stdout)
            if result is None:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                result = {"ok": False, "stage": "child", "error": f"exit {proc.returncode}: {tail}"}
            if not result["ok"]:
                print("failed", file=sys.stderr)
                outcome.error = f"{result['stage']}: {result['error']}"
                break
            print(f"{result['load_s'] + result['run_s']:.4f} s", file=sys.stderr)
            outcome.samples.append(result)
        self.cache[key] = outcome
        return outcome

    def cell(self, lib: str, outcome: Outcome | None, workload: str) -> str:
        """Explain a missing value: not measured, or why the measurement failed."""
        if outcome is None:
            return "-"
        if outcome.ok:
            return ""
        return self.note(lib, outcome.error or "unknown error", workload)


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "ok" in value:
            return value
    return None


def _triple(
    r: Runner, kind: str, n: int, workers: int = 1, taskflow: bool = True
) -> tuple[Outcome, Outcome | None, Outcome]:
    fk = r.measure("flowkit", kind, n, workers)
    tf = r.measure("taskflow", kind, n, workers) if taskflow and r.with_taskflow else None
    floor = r.measure("floor", kind, n, workers)
    return fk, tf, floor


def _best(outcome: Outcome | None, key: str, per: int = 1) -> float | None:
    value = outcome.best(key) if outcome is not None else None
    return None if value is None else value / per


def _standard_rows(
    r: Runner, workload: str, fk: Outcome, tf: Outcome | None, floor: Outcome | None, n: int, prefix: str = ""
) -> list[Row]:
    """Build / load+run / total rows for a workload measured on both libraries."""
    fk_note, tf_note = r.cell("flowkit", fk, workload), r.cell("taskflow", tf, workload)

    def row(metric: str, key: str, unit: str = "time", per: int = 1, with_floor: bool = True) -> Row:
        return Row(
            workload,
            prefix + metric,
            unit,
            _best(fk, key, per),
            _best(tf, key, per),
            _best(floor, "run", per) if with_floor else None,
            fk_note,
            tf_note,
        )

    return [
        row("build", "build", with_floor=False),
        row("load+run", "run"),
        row("build+load+run", "total"),
        row("load+run per task", "run", "per-task", per=n),
    ]


def _judge(row: Row, target: str, value: float | None, ok: Callable[[float], bool]) -> Row:
    row.target = target
    row.passed = None if value is None else ok(value)
    return row


def group_linear(r: Runner) -> list[Row]:
    n = QUICK_N if r.args.quick else FULL_N
    name = f"linear-{n}"
    fk, tf, floor = _triple(r, "linear", n)
    rows = _standard_rows(r, name, fk, tf, floor, n)
    _judge(rows[3], "< 10 us", rows[3].flowkit, lambda v: v < 10 * US)
    if n == FULL_N:
        _judge(rows[2], "TaskFlow >= 500x", rows[2].tf_over_fk, lambda v: v >= 500)
    # Scaling is flowkit only: TaskFlow's cost per task grows with the flow's size.
    per_task: list[float] = []
    for size in SCALING_SIZES:
        out = r.measure("flowkit", "linear", size)
        floor_out = r.measure("floor", "linear", size)
        note = r.cell("flowkit", out, f"linear-{size}")
        run = _best(out, "run", size)
        rows.append(Row("linear-scaling", f"{size} build per task", "per-task", _best(out, "build", size)))
        rows[-1].flowkit_note = note
        row = Row("linear-scaling", f"{size} load+run per task", "per-task", run, None, None, note)
        row.floor = _best(floor_out, "run", size)
        rows.append(_judge(row, "< 10 us", run, lambda v: v < 10 * US))
        if run is not None:
            per_task.append(run)
        if size == max(SCALING_SIZES):
            total = _best(out, "total", size)
            row = Row(
                "linear-scaling", f"{size} build+load+run per task", "per-task", total, None, None, note
            )
            rows.append(_judge(row, "< 15 us", total, lambda v: v < 15 * US))
    flat = max(per_task) / min(per_task) if len(per_task) == len(SCALING_SIZES) else None
    row = Row("linear-scaling", "max/min per task", "ratio", flat, ratios=False)
    rows.append(_judge(row, "<= 2.0 (flat)", flat, lambda v: v <= 2.0))
    return rows


def group_parallel(r: Runner) -> list[Row]:
    n = QUICK_N if r.args.quick else FULL_N
    fk, tf, floor = _triple(r, "parallel", n, PARALLEL_WORKERS)
    rows = _standard_rows(r, f"parallel-{n}", fk, tf, floor, n)
    _judge(rows[1], "<= 2x floor", rows[1].fk_over_floor, lambda v: v <= 2.0)
    return rows


def group_dag(r: Runner) -> list[Row]:
    n = QUICK_N if r.args.quick else FULL_N
    rows: list[Row] = []
    for kind, workers in (("dag-serial", 1), ("dag-parallel", PARALLEL_WORKERS)):
        fk, tf, floor = _triple(r, kind, n, workers)
        mode = kind.split("-")[1]
        rows += _standard_rows(r, f"dag-{n} {mode}", fk, tf, floor, n)[:3]
    return rows


def group_sleep(r: Runner) -> list[Row]:
    fk, tf, floor = _triple(r, "sleep", SLEEP_TASKS, SLEEP_WORKERS)
    rows = _standard_rows(r, f"sleep-{SLEEP_TASKS}", fk, tf, floor, SLEEP_TASKS)[:3]
    _judge(rows[1], "<= 1.2x floor (ideal 70 ms)", rows[1].fk_over_floor, lambda v: v <= 1.2)
    return rows


def group_revert(r: Runner) -> list[Row]:
    n = QUICK_N - 1 if r.args.quick else FULL_N - 1
    name = f"revert-{n}"
    # Per column (flowkit, taskflow, floor): the forward-only run and the failing one.
    columns = list(zip(_triple(r, "linear", n), _triple(r, "revert", n), strict=True))
    forward = [_best(fwd, "run") for fwd, _ in columns]
    failing = [_best(back, "run") for _, back in columns]
    part = [None if f is None or b is None else b - f for f, b in zip(forward, failing, strict=True)]
    share = [None if f is None or p is None else p / f for f, p in zip(forward, part, strict=True)]

    def note(lib: str, pair: tuple[Outcome | None, Outcome | None]) -> str:
        failed = next((o for o in pair if o is not None and not o.ok), None)
        return r.cell(lib, failed or pair[0], name)

    fk_note, tf_note = note("flowkit", columns[0]), note("taskflow", columns[1])

    def row(metric: str, unit: str, values: list[float | None]) -> Row:
        return Row(name, metric, unit, values[0], values[1], values[2], fk_note, tf_note)

    rows = [
        row(f"forward only, {n} tasks", "time", forward),
        row(f"fail + revert, {n + 1} tasks", "time", failing),
        row("revert part (difference)", "time", part),
        row("revert / forward", "ratio", share),
    ]
    rows[3].ratios = False
    _judge(rows[3], "<= 2.0", share[0], lambda v: v <= 2.0)
    return rows


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time_command(r: Runner, code: str) -> tuple[float | None, float | None, str]:
    """Wall and CPU time of ``python -c code`` in a fresh interpreter, or Nones and the error.

    The CPU time (user + system, from the finished child's rusage) moves far less
    than the wall time when other work shares the machine: the child is not
    charged for the time it waits for a core.
    """
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=r.env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    if proc.returncode == 0:
        return elapsed, cpu, ""
    return None, None, (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]


def group_import(r: Runner) -> list[Row]:
    runs = max(r.args.repeat, 5 if r.args.quick else 10)
    libs = ["flowkit", "taskflow"] if r.with_taskflow else ["flowkit"]
    # Touching ``load`` makes sure a half-written package (say an empty engines/
    # directory, which Python imports as a namespace package) does not pass as fast.
    codes = {"bare": "pass", **{lib: f"import {r.root(lib)}.engines as e; e.load" for lib in libs}}
    # Start-up as a program pays it: the import, then the first load (which imports
    # the engine's own modules) and run of a one-task flow.
    for lib in libs:
        codes[f"{lib} start-up"] = (
            f"import {r.root(lib)}.engines as e\n"
            f"from {r.root(lib)} import task\n"
            "class One(task.Task):\n"
            "    def execute(self):\n"
            "        return 1\n"
            "e.load(One('one')).run()\n"
        )
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    failed: dict[str, str] = {}
    print(f"  import: best of {runs} rounds of " + " / ".join(codes), file=sys.stderr)
    for i in range(runs + 1):  # interleaved, so drift in machine load hits every command alike
        for what, code in codes.items():
            if what in failed:
                continue
            took, cpu, error = _time_command(r, code)
            if took is None or cpu is None:
                failed[what] = f"`{code}` fails in a fresh interpreter: {error}"
            elif i > 0:  # round 0 only fills the bytecode cache
                best[what] = min(best.get(what, took), took)
                best_cpu[what] = min(best_cpu.get(what, cpu), cpu)
    bare = best.get("bare")
    over = {
        lib: best[lib] - bare if lib in best and lib not in failed and bare is not None else None
        for lib in libs
    }
    row = Row("import", "import <root>.engines", "time", over["flowkit"], over.get("taskflow"), bare)
    row.floor_ratio = False
    if "flowkit" in failed:
        row.flowkit_note = r.note("flowkit", failed["flowkit"], "import")
    if "taskflow" in failed:
        row.taskflow_note = r.note("taskflow", failed["taskflow"], "import")
    rows = [_judge(row, "< 60 ms (floor: bare start-up)", row.flowkit, lambda v: v < 0.060)]
    startup = {
        lib: best[f"{lib} start-up"] - bare
        if f"{lib} start-up" in best and f"{lib} start-up" not in failed and bare is not None
        else None
        for lib in libs
    }
    row = Row(
        "import",
        "start-up: import + load + 1-task run",
        "time",
        startup["flowkit"],
        startup.get("taskflow"),
        bare,
    )
    row.floor_ratio = False
    for lib in libs:
        if f"{lib} start-up" in failed:
            note = r.note(lib, failed[f"{lib} start-up"], "start-up")
            if lib == "flowkit":
                row.flowkit_note = note
            else:
                row.taskflow_note = note
    rows.append(_judge(row, "< 30 ms (floor: bare start-up)", row.flowkit, lambda v: v < 0.030))
    # The same in CPU time: what to read when the machine is busy (a wall-clock best
    # of a few rounds can still hold another process's time slices).
    bare_cpu = best_cpu.get("bare")
    startup_cpu = {
        lib: best_cpu[f"{lib} start-up"] - bare_cpu
        if f"{lib} start-up" in best_cpu and bare_cpu is not None
        else None
        for lib in libs
    }
    row = Row(
        "import",
        "start-up, CPU time",
        "time",
        startup_cpu["flowkit"],
        startup_cpu.get("taskflow"),
        bare_cpu,
    )
    row.floor_ratio = False
    rows.append(_judge(row, "< 30 ms (floor: bare start-up)", row.flowkit, lambda v: v < 0.030))
    # What the first flow of a process pays once after the import (plugin discovery,
    # lazy imports): kept out of every other row by each child's warm-up run.
    first = {lib: r.measure(lib, "linear", 1) for lib in libs}
    row = Row("import", "first 1-task flow after import", "time", _best(first["flowkit"], "warmup"))
    row.taskflow = _best(first.get("taskflow"), "warmup")
    row.flowkit_note = r.cell("flowkit", first["flowkit"], "first-flow")
    row.taskflow_note = r.cell("taskflow", first.get("taskflow"), "first-flow")
    rows.append(row)
    return rows


def group_memory(r: Runner) -> list[Row]:
    bare = r.measure("floor", "baseline", 0, repeat=1)
    lin = r.measure("flowkit", "linear", MEMORY_LINEAR_N, repeat=1)
    par = r.measure("flowkit", "parallel", MEMORY_PARALLEL_N, PARALLEL_WORKERS, repeat=1)
    tf_par = None
    tf_note = "-"
    if r.with_taskflow and r.args.with_taskflow_memory:
        tf_par = r.measure("taskflow", "parallel", MEMORY_PARALLEL_N, PARALLEL_WORKERS, repeat=1)
        tf_note = r.cell("taskflow", tf_par, f"parallel-{MEMORY_PARALLEL_N}")
    elif r.with_taskflow:
        tf_note = "(--with-taskflow-memory)"
    floor = bare.best("maxrss")
    row = Row("memory", f"linear-{MEMORY_LINEAR_N} peak RSS", "mem", lin.best("maxrss"), None, floor)
    row.flowkit_note, row.floor_ratio = r.cell("flowkit", lin, f"linear-{MEMORY_LINEAR_N}"), False
    rows = [_judge(row, "< 200 MB (floor: idle interpreter)", row.flowkit, lambda v: v < 200 * MB)]
    row = Row("memory", f"parallel-{MEMORY_PARALLEL_N} peak RSS", "mem", par.best("maxrss"), None, floor)
    row.taskflow = tf_par.best("maxrss") if tf_par is not None else None
    row.flowkit_note = r.cell("flowkit", par, f"parallel-{MEMORY_PARALLEL_N}")
    row.taskflow_note, row.floor_ratio = tf_note if row.taskflow is None else "", False
    rows.append(row)
    return rows


def group_floor(r: Runner) -> list[Row]:
    call = r.measure("floor", "call", FLOOR_CALLS)
    pool = r.measure("floor", "parallel", FULL_N, PARALLEL_WORKERS)
    return [
        Row("floor", "plain loop, per call", "per-task", floor=_best(call, "run", FLOOR_CALLS)),
        Row(
            "floor",
            f"thread pool x{PARALLEL_WORKERS}, per task",
            "per-task",
            floor=_best(pool, "run", FULL_N),
        ),
    ]


GROUP_FUNCS: dict[str, Callable[[Runner], list[Row]]] = {
    "linear": group_linear,
    "parallel": group_parallel,
    "dag": group_dag,
    "sleep": group_sleep,
    "revert": group_revert,
    "import": group_import,
    "memory": group_memory,
    "floor": group_floor,
}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "mem":
        return f"{value / MB:.0f} MB"
    if unit == "ratio":
        return f"{value:.2f}"
    if abs(value) < 1e-3:
        return f"{value / US:.2f} us"
    if abs(value) < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def _fmt_ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}x" if value >= 100 else f"{value:.2f}x"


def render(rows: list[Row]) -> str:
    header = ["workload", "metric", "flowkit", "taskflow", "tf/fk", "floor", "fk/floor", "target", "result"]
    table = [header]
    for row in rows:
        verdict = {True: "PASS", False: "FAIL", None: "-" if row.target else ""}[row.passed]
        table.append(
            [
                row.workload,
                row.metric,
                _fmt(row.flowkit, row.unit) or row.flowkit_note or "-",
                _fmt(row.taskflow, row.unit) or row.taskflow_note or "-",
                _fmt_ratio(row.tf_over_fk),
                _fmt(row.floor, row.unit),
                _fmt_ratio(row.fk_over_floor),
                row.target,
                verdict,
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    right = {2, 3, 4, 5, 6}
    lines = []
    for k, line in enumerate(table):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _version(r: Runner, root: str) -> str | None:
    code = (
        f"import importlib.metadata as m, {root}; "
        f"print(getattr({root}, '__version__', None) or m.version('{root}'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=r.env, capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated groups to run, from: {','.join(GROUPS)}")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_N}-task head-to-head workloads")
    parser.add_argument("--no-taskflow", action="store_true", help="do not run TaskFlow even if importable")
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process runs per figure (best kept)")
    parser.add_argument("--json", metavar="PATH", help="also write machine-readable results here")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per flowkit/floor child run")
    parser.add_argument(
        "--taskflow-timeout", type=float, default=120.0, help="seconds per TaskFlow child run"
    )
    parser.add_argument(
        "--with-taskflow-memory",
        action="store_true",
        help=f"also measure TaskFlow's parallel-{MEMORY_PARALLEL_N} memory (slow, GBs of RAM)",
    )
    parser.add_argument(
        "--memory-limit",
        type=int,
        default=8192,
        metavar="MB",
        help="address-space cap per child run, so a runaway workload cannot exhaust the machine (0: none)",
    )
    parser.add_argument(
        "--flowkit-root",
        default="flowkit",
        help="module measured in the flowkit column; 'taskflow' puts TaskFlow in both columns, "
        "a fairness check of the harness (ratios should come out near 1)",
    )
    args = parser.parse_args(argv)
    chosen = [g.strip() for g in (args.only or ",".join(GROUPS)).split(",") if g.strip()]
    unknown = [g for g in chosen if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.groups = [g for g in GROUPS if g in chosen]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Exit through SystemExit on SIGTERM so that subprocess.run kills the running child.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with_taskflow = not args.no_taskflow and importlib_util.find_spec("taskflow") is not None
    runner = Runner(args, with_taskflow)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "flowkit": _version(runner, args.flowkit_root),
        "flowkit_root": args.flowkit_root,
        "taskflow": _version(runner, "taskflow") if with_taskflow else None,
        "repeat": args.repeat,
        "quick": args.quick,
        "groups": args.groups,
    }
    print(
        f"flowkit {meta['flowkit']}, taskflow {meta['taskflow'] or 'not run'}, "
        f"python {meta['python']}, {meta['cpus']} cpus",
        file=sys.stderr,
    )
    rows: list[Row] = []
    for group in args.groups:
        print(f"[{group}]", file=sys.stderr)
        rows += GROUP_FUNCS[group](runner)
    print()
    print(render(rows))
    for i, text in enumerate(runner.footnotes(), 1):
        print(f"[{i}] {text}")
    if args.json:
        payload = {
            "meta": meta,
            "rows": [
                dict(asdict(row), tf_over_fk=row.tf_over_fk, fk_over_floor=row.fk_over_floor) for row in rows
            ],
            "notes": runner.footnotes(),
            "runs": [
                {
                    "lib": k[0],
                    "kind": k[1],
                    "n": k[2],
                    "workers": k[3],
                    "samples": o.samples,
                    "error": o.error,
                }
                for k, o in runner.cache.items()
            ],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
