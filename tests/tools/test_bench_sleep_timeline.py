"""tools/bench_sleep_timeline.py: the breakdown's arithmetic, and a real (tiny) run per library kind.

Sizes are tiny and nothing here checks a speed: only that the tool measures
what its docstring says (the critical thread, its sleeps back to back).
"""

from __future__ import annotations

import pytest

from tests.tools._load import load_tool

tool = load_tool("bench_sleep_timeline")
Sleep = tool.Sleep


def test_the_critical_thread_is_the_one_whose_last_sleep_ends_last() -> None:
    # Thread 1 starts first but runs one sleep; thread 2 starts later and runs two.
    sleeps = [
        Sleep(1, 1.0, 1.5),
        Sleep(2, 2.0, 2.5),
        Sleep(2, 2.5, 3.25),
    ]
    got = tool.timeline(0.5, 3.5, sleeps)
    assert got.critical_start == pytest.approx(1.5)
    assert got.waves == pytest.approx(1.25)
    assert got.tasks == 2
    assert got.mean_sleep == pytest.approx((0.5 + 0.5 + 0.75) / 3)
    assert got.after == pytest.approx(0.25)
    assert got.total == pytest.approx(3.0)


def test_a_run_without_sleeps_is_an_error_not_a_figure() -> None:
    with pytest.raises(ValueError, match="no sleeps"):
        tool.timeline(0.0, 1.0, [])


@pytest.mark.parametrize("library", ["flowkit", "floor-graphlib-pool"])
def test_a_real_run_puts_its_sleeps_on_the_timeline(library: str) -> None:
    # 6 sleeps on 3 threads: usually 2 per thread, but a thread late to start on
    # a busy machine leaves more to the others, so only the arithmetic is pinned.
    got = tool.measure(library, 6, 3)
    assert 1 <= got.tasks <= 6
    assert got.mean_sleep >= 0.010
    assert got.waves >= got.tasks * 0.010
    assert 0 < got.critical_start < got.critical_start + got.waves + got.after <= got.total * 1.0001


def test_the_report_has_a_row_per_library(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--runs", "1", "--n", "4", "--threads", "2", "--only", "flowkit,floor-graphlib-pool"]
    assert tool.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("4 tasks sleeping 10 ms on 2 threads")
    assert [line.split()[0] for line in lines[2:]] == ["flowkit", "floor-graphlib-pool"]
