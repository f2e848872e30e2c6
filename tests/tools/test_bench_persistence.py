"""tools/bench_persistence.py --read: a real (tiny) read-back on each backend it names.

Nothing here checks a speed: only that each row reads what it says (the whole
big logbook, every listed logbook) and that a figure comes out for each.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools._load import TOOLS, load_tool


def test_read_rows_time_each_backend_reading_the_big_logbook_and_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(TOOLS))  # the tool imports _best_time beside it, as a script does
    tool = load_tool("bench_persistence")
    rows = tool._read_rows(5, 1, tmp_path)
    assert [name for name, _ in rows] == [
        "SQLite, 1 book of 5 atoms",
        "SQLite, 6 books",
        "directory, 1 book of 5 atoms",
        "directory, 6 books",
    ]
    assert all(seconds > 0 for _, seconds in rows)


def test_read_mode_prints_a_row_per_reading(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(TOOLS))
    tool = load_tool("bench_persistence")
    assert tool.main(["--read", "3", "--repeat", "1"]) == 0
    printed = capsys.readouterr().out
    assert "SQLite, 1 book of 3 atoms" in printed and "directory, 4 books" in printed, printed
