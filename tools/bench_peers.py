"""flowkit end to end against its peers: TaskFlow, Hamilton, Dask, Prefect and two floors.

Every figure is one fresh interpreter running one workload on one library
(``tools/_bench_peers_child.py``), timed from the first line that builds the
flow to the end of the run: building, loading/compiling and running, with the
process's first-use costs included. Imports are timed apart (the start-up
row). Prefect's children use one API server that the benchmark starts first
(``tools/_bench_prefect_server.py``): its start is timed and reported, and left
out of Prefect's figures, and after each Prefect run the benchmark waits until
that server has recorded it. Rounds are interleaved (every library once per
workload, then the next round, with the order of libraries rotated), the
median of the rounds is kept, and every run's result is checked against plain
Python; a wrong result is a failure, never a time.

    python tools/bench_peers.py                # 3 rounds (Prefect 1), scaling to 100,000 nodes
    python tools/bench_peers.py --quick        # 1 round, scaling to 10,000 nodes
    python tools/bench_peers.py --only flowkit,dask-graph --out /tmp/peers

Peers are optional (``pip install -e '.[bench]'``): one that is not installed
is shown as missing. Results go to ``--out`` (default ``doc/_static``):
``bench_peers.json`` (every sample, versions, options), two charts and
``bench_peers_tables.inc``, the tables that ``doc/benchmarks.rst`` includes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

from _bench_peers_child import expected  # noqa: E402 (a sibling script, not a package)
from _bench_peers_run import CHILD_ENV, ROOT, run_child  # noqa: E402
from _bench_prefect_server import PrefectServer, ServerStartError  # noqa: E402
from _child_env import child_env  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Workload:
    """One row of the main table: a workload kind at a size, serial (threads 0) or threaded."""

    key: str
    kind: str
    n: int
    threads: int
    title: str
    short: str


@dataclasses.dataclass(frozen=True)
class Library:
    """One column: the child's library name, its label, and the module that must be importable."""

    name: str
    label: str
    module: str | None
    distribution: str | None


WORKLOADS = [
    Workload("linear-1000", "linear", 1_000, 0, "linear chain of 1,000", "linear\n1,000"),
    Workload("linear-10000", "linear", 10_000, 0, "linear chain of 10,000", "linear\n10,000"),
    Workload(
        "fanout-1000", "fanout", 1_000, 0, "fan-out of 1,000 then a sum, serial", "fan-out 1,000\nserial"
    ),
    Workload("fanout-1000-t8", "fanout", 1_000, 8, "same on 8 threads", "fan-out 1,000\n8 threads"),
    Workload(
        "sleep-200-t32",
        "sleep",
        200,
        32,
        "200 tasks sleeping 10 ms on 32 threads",
        "sleep 10 ms x 200\n32 threads",
    ),
    Workload("dag-1000", "dag", 1_000, 0, "random DAG of 1,000 nodes, serial", "random DAG\n1,000"),
    Workload(
        "sqlite-1000", "sqlite", 1_000, 0, "linear chain of 1,000 saved to SQLite", "SQLite linear\n1,000"
    ),
]

LIBRARIES = [
    Library("flowkit", "flowkit", "flowkit", None),
    Library("taskflow", "TaskFlow", "taskflow", "taskflow"),
    Library("hamilton", "Hamilton", "hamilton", "sf-hamilton"),
    Library("dask-graph", "Dask graph", "dask", "dask"),
    Library("dask-delayed", "Dask delayed", "dask", "dask"),
    Library("prefect", "Prefect", "prefect", "prefect"),
    Library("floor-loop", "plain loop", None, None),
    Library("floor-graphlib-pool", "graphlib + pool", None, None),
]

#: Rounds for Prefect unless --prefect-rounds says otherwise: each of its runs leaves its
#: server a minute or more of recording to wait out, so three rounds would double a full run.
PREFECT_ROUNDS = 1

#: Libraries whose cost per node grows with the flow or whose 10,000-node runs take
#: minutes: they appear in the scaling chart at the sizes of the main table only.
NOT_SCALED = frozenset({"taskflow", "prefect"})
SCALING_KINDS = ("linear", "fanout")
COMPILE_SHAPES = ("linear", "fanout", "fanin", "dag")


def warm_up(libraries: list[Library], servers: Mapping[str, PrefectServer]) -> None:
    """Run each library once, untimed, so that its bytecode is cached before the rounds."""
    env = child_env({**os.environ, **CHILD_ENV})
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "flowkit")], env=env, check=False)
    for lib in libraries:
        server = servers.get(lib.name)
        for kind in ("linear", "fanout", "dag", "sqlite"):
            run_child([lib.name, kind, "10", "0"], 300, server.extra_env() if server else None)
        if server:
            server.settle()


@dataclasses.dataclass
class Cell:
    """Every sample of one (library, workload kind, size, threads)."""

    samples: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    status: str = "ok"  # ok | missing | not applicable | timeout | failed
    note: str = ""

    def e2e(self) -> float | None:
        times = [s["e2e_s"] for s in self.samples if s.get("ok")]
        return statistics.median(times) if times and self.status == "ok" else None

    def median_of(self, field: str) -> float | None:
        values = [s[field] for s in self.samples if s.get("ok") and field in s]
        return statistics.median(values) if values else None


def measure(
    libraries: list[Library],
    points: list[tuple[str, int, int]],
    rounds: int,
    timeout: float,
    servers: Mapping[str, PrefectServer] | None = None,
    unavailable: Mapping[str, str] | None = None,
    rounds_of: Mapping[str, int] | None = None,
) -> dict[tuple[str, str, int, int], Cell]:
    """Run every (library, point) *rounds* times, interleaved, checking every result.

    A library in *servers* runs against that server (and waits for it to be idle
    after each run); one in *unavailable* is shown as failed with that reason; one
    in *rounds_of* takes part in that many rounds only (the first ones).
    """
    servers = servers or {}
    unavailable = unavailable or {}
    rounds_of = rounds_of or {}
    cells: dict[tuple[str, str, int, int], Cell] = {}
    for lib in libraries:
        missing = lib.module is not None and importlib.util.find_spec(lib.module) is None
        for kind, n, threads in points:
            cell = cells[lib.name, kind, n, threads] = Cell()
            if missing:
                cell.status, cell.note = "missing", f"{lib.module} is not installed"
            elif lib.name in unavailable:
                cell.status, cell.note = "failed", unavailable[lib.name]
    total = len(points) * sum(min(rounds, rounds_of.get(lib.name, rounds)) for lib in libraries)
    done = 0
    for round_no in range(rounds if libraries else 0):
        shift = round_no % len(libraries)
        order = libraries[shift:] + libraries[:shift]
        for kind, n, threads in points:
            for lib in order:
                if round_no >= rounds_of.get(lib.name, rounds):
                    continue
                done += 1
                cell = cells[lib.name, kind, n, threads]
                if cell.status != "ok":
                    continue  # missing, not applicable, or already timed out / failed
                server = servers.get(lib.name)
                result = run_child(
                    [lib.name, kind, str(n), str(threads)], timeout, server.extra_env() if server else None
                )
                settled = ""
                if server:  # its backlog must not run during the next measurement
                    waited = server.settle()
                    settled = (
                        f" (then {waited:.0f} s until its server was idle)"
                        if waited is not None
                        else " (its server still busy at the limit)"
                    )
                label = f"[{done}/{total}] {lib.name} {kind}-{n}" + (
                    f" on {threads} threads" if threads else ""
                )
                if result.get("ok"):
                    want = expected(kind, n)
                    if result["value"] != want:
                        cell.status, cell.note = "failed", f"wrong result {str(result['value'])[:60]}"
                    elif result["e2e_s"] > timeout:
                        cell.status, cell.note = "timeout", f"over {timeout:.0f} s"
                    else:
                        result.pop("value")
                        cell.samples.append(result)
                elif result.get("not_applicable"):
                    cell.status, cell.note = "not applicable", result["error"]
                elif result.get("missing"):
                    cell.status, cell.note = "missing", result["error"]
                elif result.get("timeout"):
                    cell.status, cell.note = "timeout", result["error"]
                else:
                    cell.status, cell.note = "failed", result.get("error", "?")
                shown = f"{result['e2e_s'] * 1e6 / n:.1f} µs/node" if cell.status == "ok" else cell.status
                print(f"{label}: {shown}{settled}", file=sys.stderr, flush=True)
    return cells


def measure_compile(sizes: list[int], rounds: int, timeout: float) -> dict[tuple[str, int], dict[str, Any]]:
    """flowkit's build, compile and prepare time per node, by shape and size."""
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {(s, n): [] for s in COMPILE_SHAPES for n in sizes}
    failed: dict[tuple[str, int], str] = {}
    for _ in range(rounds):
        for n in sizes:
            for shape in COMPILE_SHAPES:
                if (shape, n) in failed:
                    continue
                result = run_child(["flowkit-compile", shape, str(n), "0"], timeout)
                if result.get("ok"):
                    samples[shape, n].append(result)
                else:
                    failed[shape, n] = result.get("error", "failed")
                shown = (
                    f"{result['compile_s'] * 1e6 / n:.1f} µs/node" if result.get("ok") else failed[shape, n]
                )
                print(f"compile {shape}-{n}: {shown}", file=sys.stderr, flush=True)
    table: dict[tuple[str, int], dict[str, Any]] = {}
    for key, runs in samples.items():
        if key in failed:
            table[key] = {"status": failed[key], "samples": runs}
        else:
            table[key] = {
                "status": "ok",
                **{
                    field: statistics.median(r[field] for r in runs)
                    for field in ("build_s", "load_s", "compile_s", "prepare_s")
                },
                "samples": runs,
            }
    return table


def versions(libraries: Iterable[Library]) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for lib in libraries:
        dist = lib.distribution or lib.module
        if dist is None:
            continue
        try:
            found[lib.name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[lib.name] = "missing"
    import flowkit

    found["flowkit"] = flowkit.__version__
    return found


# --- Output --------------------------------------------------------------------------


def per_node(cell: Cell, n: int) -> str:
    e2e = cell.e2e()
    if e2e is None:
        return cell.status if cell.status != "not applicable" else "n/a"
    value = e2e * 1e6 / n
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def process_ms(cell: Cell) -> str:
    """A short-lived process's whole cost: importing the library, then the run, median per sample."""
    if cell.e2e() is None:
        return cell.status if cell.status != "not applicable" else "n/a"
    # Summed sample by sample (the same process), not as the sum of two medians.
    totals = [s.get("import_s", 0.0) + s["e2e_s"] for s in cell.samples if s.get("ok")]
    value = statistics.median(totals) * 1e3
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def prefect_note(server: Mapping[str, Any]) -> str:
    """The line under the table that reports Prefect's API server, started once and not counted."""
    text = (
        f"* Prefect's API server, started once for all of Prefect's runs and left out of its "
        f"figures, took {server['start_s']:.1f} s to start."
    )
    waits = [w for w in server["settle_s"] if w is not None]
    if waits:
        text += (
            f" After each Prefect run the benchmark waited for it to finish recording that run "
            f"(median {statistics.median(waits):.0f} s, at most {max(waits):.0f} s) before measuring "
            f"anything else."
        )
    still_busy = len(server["settle_s"]) - len(waits)
    if still_busy:
        text += f" It was still busy after {still_busy} of them at the limit."
    rounds, of_rounds = server.get("rounds", 1), server.get("of_rounds", 1)
    if rounds < of_rounds:
        text += (
            f" To keep the run short, Prefect's figures are of {rounds} round{'s' if rounds > 1 else ''}"
            f" (``--prefect-rounds``), not the median of {of_rounds}."
        )
    return text


def rst_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(lines) + "\n"


def tables(
    libraries: list[Library],
    cells: dict[tuple[str, str, int, int], Cell],
    compile_table: dict[tuple[str, int], dict[str, Any]],
    sizes: list[int],
    prefect_server: Mapping[str, Any] | None = None,
) -> str:
    header = ["µs per node, end to end", *(lib.label for lib in libraries)]
    rows = [
        [w.title, *(per_node(cells[lib.name, w.kind, w.n, w.threads], w.n) for lib in libraries)]
        for w in WORKLOADS
    ]
    # Start-up: the import, median over every run of that library.
    startup = ["start-up (import), ms"]
    for lib in libraries:
        imports = [
            s["import_s"]
            for (name, *_), cell in cells.items()
            if name == lib.name
            for s in cell.samples
            if s.get("ok")
        ]
        startup.append(f"{statistics.median(imports) * 1e3:,.0f}" if imports and lib.module else "")
    rows.append(startup)
    text = rst_table(header, rows)
    notes = []
    for lib in libraries:
        for w in WORKLOADS:
            cell = cells[lib.name, w.kind, w.n, w.threads]
            if cell.status in ("failed", "timeout") and cell.note:
                notes.append(f"* {lib.label}, {w.title}: {cell.status} ({cell.note}).")
    if prefect_server:
        notes.append(prefect_note(prefect_server))
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    # The same runs again, import included: what a program that runs one flow and exits pays.
    process_header = ["import + end to end, ms (a fresh process)", *(lib.label for lib in libraries)]
    process_rows = [
        [w.title, *(process_ms(cells[lib.name, w.kind, w.n, w.threads]) for lib in libraries)]
        for w in WORKLOADS
    ]
    text += "\n.. _process-cost-table:\n\n" + rst_table(process_header, process_rows)
    compile_header = [
        "flowkit ``engine.compile()``, µs per node",
        *(f"{n:,} nodes" for n in sizes),
        "max/min",
    ]
    compile_rows = []
    for shape in COMPILE_SHAPES:
        row = [shape]
        values = []
        for n in sizes:
            entry = compile_table[shape, n]
            if entry["status"] == "ok":
                value = entry["compile_s"] * 1e6 / n
                values.append(value)
                row.append(f"{value:,.1f}")
            else:
                row.append(entry["status"])
        row.append(f"{max(values) / min(values):.2f}" if len(values) == len(sizes) else "")
        compile_rows.append(row)
    return text + "\n.. _compile-cost-table:\n\n" + rst_table(compile_header, compile_rows)


def charts(
    out: Path,
    libraries: list[Library],
    cells: dict[tuple[str, str, int, int], Cell],
    sizes: list[int],
) -> list[Path]:
    try:
        # By name: matplotlib (the bench extra) is optional, and this module
        # type-checks the same with or without it (its attributes are Any).
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        print("matplotlib is not installed: no charts (pip install -e '.[bench]')", file=sys.stderr)
        return []
    made = []
    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / len(libraries)
    for j, lib in enumerate(libraries):
        xs, ys = [], []
        for i, w in enumerate(WORKLOADS):
            e2e = cells[lib.name, w.kind, w.n, w.threads].e2e()
            if e2e is not None:
                xs.append(i + (j - (len(libraries) - 1) / 2) * width)
                ys.append(e2e * 1e6 / w.n)
        ax.bar(xs, ys, width, label=lib.label)
    ax.set_yscale("log")
    ax.set_ylabel("µs per node, end to end (log scale)")
    ax.set_xticks(range(len(WORKLOADS)), [w.short for w in WORKLOADS], fontsize=8)
    ax.set_title("Cost per node by workload and library (lower is better; no bar: missing, n/a or timed out)")
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.legend(loc="lower center", ncols=len(libraries), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    made.append(out / "bench_peers_workloads.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(SCALING_KINDS), figsize=(11, 4.5), sharey=True)
    for ax, kind in zip(axes, SCALING_KINDS, strict=True):
        for lib in libraries:
            points = []
            for n in sizes:
                cell = cells.get((lib.name, kind, n, 0))
                e2e = cell.e2e() if cell else None
                if e2e is not None:
                    points.append((n, e2e * 1e6 / n))
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=lib.label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes")
        ax.set_title({"linear": "linear chain", "fanout": "fan-out then a sum"}[kind] + ", serial")
        ax.grid(which="major", alpha=0.3)
    axes[0].set_ylabel("µs per node, end to end (log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    made.append(out / "bench_peers_scaling.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)
    return made


def report(record: dict[str, Any], out: Path) -> None:
    """Write the tables and charts of a run (just measured, or read back with ``--from-json``)."""
    names = list(dict.fromkeys(r["library"] for r in record["results"]))
    libraries = [lib for lib in LIBRARIES if lib.name in names]
    cells = {
        (r["library"], r["kind"], r["n"], r["threads"]): Cell(r["samples"], r["status"], r["note"])
        for r in record["results"]
    }
    compile_table = {(c["shape"], c["n"]): c for c in record["compile"]}
    sizes = record["options"]["sizes"]
    text = tables(libraries, cells, compile_table, sizes, record.get("prefect_server"))
    (out / "bench_peers_tables.inc").write_text(text)
    made = charts(out, libraries, cells, sizes)
    print(text)
    print(f"wrote {out / 'bench_peers_tables.inc'}", *made, sep="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1 round, sizes up to 10,000, 60 s time-out")
    parser.add_argument("--rounds", type=int, help="rounds per figure, median kept (default 3, quick 1)")
    parser.add_argument(
        "--prefect-rounds",
        type=int,
        default=PREFECT_ROUNDS,
        help=f"rounds for Prefect, at most --rounds (default {PREFECT_ROUNDS}: after each of its runs its "
        "server records that run for up to minutes, which the benchmark waits out)",
    )
    parser.add_argument("--timeout", type=float, help="seconds one run may take (default 120, quick 60)")
    parser.add_argument(
        "--only", help="comma-separated libraries: " + ",".join(lib.name for lib in LIBRARIES)
    )
    parser.add_argument("--out", type=Path, default=ROOT / "doc" / "_static", help="where results go")
    parser.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: redraw the tables and charts of a saved bench_peers.json",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        report(json.loads(args.from_json.read_text()), args.out)
        return 0
    rounds = args.rounds or (1 if args.quick else 3)
    prefect_rounds = max(1, min(rounds, args.prefect_rounds))
    timeout = args.timeout or (60.0 if args.quick else 120.0)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    libraries = LIBRARIES
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {lib.name for lib in LIBRARIES}
        if unknown:
            parser.error(f"unknown libraries: {', '.join(sorted(unknown))}")
        libraries = [lib for lib in LIBRARIES if lib.name in wanted]

    started = time.monotonic()
    load_before = os.getloadavg()
    points = [(w.kind, w.n, w.threads) for w in WORKLOADS]
    points += [(kind, n, 0) for kind in SCALING_KINDS for n in sizes if (kind, n, 0) not in points]
    # The scaling sizes beyond the main table are for the libraries that scale.
    main_points = {(w.kind, w.n, w.threads) for w in WORKLOADS}
    # SIGTERM ends the run as Ctrl-C does: through the finally that stops the server.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    servers: dict[str, PrefectServer] = {}
    unavailable: dict[str, str] = {}
    prefect_server: dict[str, Any] | None = None
    try:
        if any(lib.name == "prefect" for lib in libraries) and importlib.util.find_spec("prefect"):
            print("starting Prefect's API server...", file=sys.stderr, flush=True)
            try:
                servers["prefect"] = PrefectServer.start()
                print(
                    f"Prefect's API server answers at {servers['prefect'].url} after "
                    f"{servers['prefect'].start_s:.1f} s (not counted)",
                    file=sys.stderr,
                    flush=True,
                )
            except ServerStartError as exc:
                unavailable["prefect"] = str(exc)
                print(exc, file=sys.stderr, flush=True)
        warm_up([lib for lib in libraries if lib.name not in unavailable], servers)
        if "prefect" in servers:
            servers["prefect"].settle_s.clear()  # the warm-up's wait is not reported
        if prefect_rounds < rounds and any(lib.name == "prefect" for lib in libraries):
            print(
                f"Prefect: {prefect_rounds} of the {rounds} rounds (--prefect-rounds)",
                file=sys.stderr,
                flush=True,
            )
        cells = measure(
            libraries,
            [p for p in points if p in main_points],
            rounds,
            timeout,
            servers,
            unavailable,
            {"prefect": prefect_rounds},
        )
        scaled = [lib for lib in libraries if lib.name not in NOT_SCALED]
        cells.update(measure(scaled, [p for p in points if p not in main_points], rounds, timeout))
    finally:
        for server in servers.values():
            server.stop()
    if "prefect" in servers:
        prefect_server = {
            "start_s": servers["prefect"].start_s,
            "settle_s": servers["prefect"].settle_s,
            "rounds": prefect_rounds,
            "of_rounds": rounds,
        }
    compile_table = measure_compile(sizes, rounds, timeout)

    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            # Other work on the machine slows every library; say how busy it was.
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "versions": versions(libraries),
        "prefect_server": prefect_server,
        "options": {
            "rounds": rounds,
            "prefect_rounds": prefect_rounds,
            "timeout_s": timeout,
            "sizes": sizes,
            "quick": args.quick,
        },
        "command": " ".join(
            ["python", "tools/bench_peers.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "results": [
            {
                "library": name,
                "kind": kind,
                "n": n,
                "threads": threads,
                "status": cell.status,
                "note": cell.note,
                "e2e_s": cell.e2e(),
                "import_s": cell.median_of("import_s"),
                "setup_s": cell.median_of("setup_s"),
                "samples": cell.samples,
            }
            for (name, kind, n, threads), cell in cells.items()
        ],
        "compile": [{"shape": shape, "n": n, **entry} for (shape, n), entry in compile_table.items()],
        "duration_s": round(time.monotonic() - started, 1),
    }
    (args.out / "bench_peers.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out / 'bench_peers.json'}")
    report(record, args.out)
    print(f"took {record['duration_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
