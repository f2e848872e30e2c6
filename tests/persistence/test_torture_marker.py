"""The torture test's hold marker is never seen without the PID of the process that holds.

``test_a_conductor_killed_mid_job...[zookeeper-0]`` failed once in a loaded run
with "invalid literal for int() with base 10: ''": the marker was created
(``O_CREAT | O_EXCL``) and its PID written in a second call, and the test,
polling for the file, read it between the two. The interleaving is forced
here: at every write the holder makes, whoever looks at the marker must find
it absent or whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.persistence import _torture


def test_the_marker_appears_with_its_pid_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "held"
    seen: list[str | None] = []
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        # What the test's poll would read now, just before the holder's write lands.
        seen.append(marker.read_text() if marker.exists() else None)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    _torture.configure(None, "point#1", str(marker), "raise")
    try:
        with pytest.raises(KeyboardInterrupt):
            _torture.hold_if_chosen("point")
    finally:
        _torture.configure(None)
    assert seen, "the holder wrote nothing"
    assert all(text is None or text == f"{os.getpid()}\n" for text in seen), seen
    assert int(marker.read_text()) == os.getpid()
    assert [p.name for p in tmp_path.iterdir()] == ["held"]  # nothing of the publishing left behind


def test_only_the_first_process_to_reach_the_point_holds(tmp_path: Path) -> None:
    marker = tmp_path / "held"
    marker.write_text("12345\n")  # an earlier process held here and was killed
    _torture.configure(None, "point#1", str(marker), "raise")
    try:
        _torture.hold_if_chosen("point")  # carries on: no interrupt
    finally:
        _torture.configure(None)
    assert marker.read_text() == "12345\n"
    assert [p.name for p in tmp_path.iterdir()] == ["held"]
