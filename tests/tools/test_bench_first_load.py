"""tools/bench_first_load.py: a real (tiny) pair of runs; nothing here checks a speed."""

from __future__ import annotations

import pytest

from tests.tools._load import load_tool

tool = load_tool("bench_first_load")


def test_the_engine_modules_imported_before_the_timer_are_all_that_the_first_load_imports() -> None:
    # The second row's meaning: with them imported first, engines.load imports no module.
    as_a_program_does = tool._measure(4, 2, preimport=False)
    imported_first = tool._measure(4, 2, preimport=True)
    assert any(name.startswith("flowkit.engines.") for name in as_a_program_does["imported"])
    assert imported_first["imported"] == []
    for row in (as_a_program_does, imported_first):
        assert 0 < row["build"] < row["first_call"] < row["total"]


def test_the_report_has_both_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert tool.main(["--pairs", "1", "--n", "4", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "imported by engines.load" in out
    assert "imported before the timer" in out
    assert "(0 modules)" in out
