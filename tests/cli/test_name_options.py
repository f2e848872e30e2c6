"""Name options: an empty name is refused naming the option, before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import flowkit_cmd


@pytest.mark.parametrize("name", ["", "  "])
def test_a_conductor_with_an_empty_name_is_refused_naming_the_option(tmp_path: Path, name: str) -> None:
    # It connected to the board, then said "job applicant must be a non-empty string" (status 1).
    db = tmp_path / "flows.db"
    done = flowkit_cmd(
        "conductor", f"--name={name}", "--board", "redis://127.0.0.1:1/0", "--connection", f"sqlite:///{db}"
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith("flowkit conductor: error: argument --name: must not be empty\n"), done.stderr
    assert not db.exists()
