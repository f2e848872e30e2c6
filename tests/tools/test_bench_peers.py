"""tools/bench_peers.py stays runnable: flowkit and the floors compute every workload right.

The peers themselves are optional (the ``bench`` extra) and not installed for
the tests; the benchmark shows them as missing. Sizes here are tiny: this checks
the harness and the workloads' answers, never a speed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.tools._load import load_tool

child = load_tool("_bench_peers_child")
peers = load_tool("bench_peers")

CASES = [
    ("linear", 30, 0),
    ("fanout", 30, 0),
    ("fanout", 30, 4),
    ("dag", 60, 0),
    ("sleep", 4, 4),
    ("sqlite", 10, 0),
]


@pytest.mark.parametrize("library", ["flowkit", "floor-loop", "floor-graphlib-pool"])
@pytest.mark.parametrize(("workload", "n", "threads"), CASES)
def test_each_workload_computes_the_expected_result(
    library: str, workload: str, n: int, threads: int, tmp_path: Path
) -> None:
    setup = child.Setup(workload, n, threads, tmp_path)
    runner = child.LIBRARIES[library]()
    try:
        runner.setup(setup)
    except child.NotApplicable:
        assert library.startswith("floor")  # flowkit runs every workload
        return
    assert runner.run(setup) == child.expected(workload, n)


def test_the_dag_has_several_sinks_and_shared_predecessors() -> None:
    # Otherwise "every sink's value" would check little and culling peers would skip work.
    preds = child.dag_predecessors(200)
    assert len(child.dag_sinks(preds)) > 5
    assert any(len(ps) > 1 for ps in preds)


@pytest.mark.parametrize("shape", peers.COMPILE_SHAPES)
def test_compile_cost_measures_every_shape(shape: str) -> None:
    result = child.compile_cost(shape, 50)
    assert result["ok"] and result["compile_s"] > 0


def test_a_child_process_reports_a_checked_figure_and_a_missing_peer() -> None:
    result = peers.run_child(["flowkit", "linear", "20", "0"], timeout=120)
    assert result["ok"] and result["value"] == 20 and result["e2e_s"] > 0
    cells = peers.measure(
        [peers.Library("absent", "Absent", "no_such_module_for_bench", None)], [("linear", 20, 0)], 1, 60
    )
    assert cells["absent", "linear", 20, 0].status == "missing"


@pytest.mark.parametrize("workload", ["sqlite", "linear"])
def test_a_child_removes_its_temporary_folder(
    workload: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A peer run starts hundreds of children: each one's folder (with its SQLite
    # file) was left behind in the system's temporary folder.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    assert child.main(["flowkit", workload, "5", "0"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["value"] == 5
    assert [entry.name for entry in tmp_path.iterdir()] == []


def test_tables_show_statuses_and_the_compile_cost() -> None:
    libs = [peers.LIBRARIES[0], peers.LIBRARIES[1]]
    cells = {}
    for w in peers.WORKLOADS:
        cells["flowkit", w.kind, w.n, w.threads] = peers.Cell(
            [{"ok": True, "e2e_s": w.n * 2e-6, "import_s": 0.05}]
        )
        cells["taskflow", w.kind, w.n, w.threads] = peers.Cell([], "timeout", "over 60 s")
    compile_table = {
        (s, n): {"status": "ok", "compile_s": n * 3e-6} for s in peers.COMPILE_SHAPES for n in (10, 20)
    }
    text = peers.tables(libs, cells, compile_table, [10, 20])
    assert "     - 2.00\n     - timeout" in text
    assert "TaskFlow, linear chain of 1,000: timeout (over 60 s)." in text
    assert "     - 3.0\n     - 3.0\n     - 1.00" in text


def test_the_process_table_sums_import_and_run_sample_by_sample() -> None:
    libs = [peers.LIBRARIES[0], peers.LIBRARIES[1]]
    cells = {}
    for w in peers.WORKLOADS:
        # Medians of each part would be import 0.02 + run 0.03 = 50 ms; the samples' own
        # sums are 60, 31 and 40 ms, whose median is 40.
        cells["flowkit", w.kind, w.n, w.threads] = peers.Cell(
            [
                {"ok": True, "import_s": 0.03, "e2e_s": 0.03},
                {"ok": True, "import_s": 0.001, "e2e_s": 0.03},
                {"ok": True, "import_s": 0.02, "e2e_s": 0.02},
                {"ok": False, "error": "boom"},
            ]
        )
        cells["taskflow", w.kind, w.n, w.threads] = peers.Cell([], "not applicable", "no durable mode")
    compile_table = {
        (s, n): {"status": "ok", "compile_s": n * 3e-6} for s in peers.COMPILE_SHAPES for n in (10,)
    }
    text = peers.tables(libs, cells, compile_table, [10])
    process = text.split(".. _process-cost-table:")[1].split(".. _compile-cost-table:")[0]
    assert "import + end to end, ms (a fresh process)" in process
    assert process.count("     - 40.0\n     - n/a") == len(peers.WORKLOADS)
