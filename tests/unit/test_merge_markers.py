"""No file of the repository holds a merge's conflict markers.

A conflict resolved by keeping both sides' text with the markers left in
still parses when it sits in a docstring or a comment: no test failed, and
``flowkit.cache._redis``'s module docstring read ``<<<<<<< HEAD`` for one
merge. This looks at every tracked text file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: A line that opens, splits or closes a conflict (7 markers: git's own width).
_MARKER = re.compile(rb"^(<{7} |={7}$|>{7} )", re.MULTILINE)
#: Suffixes of files where a line of seven ``=`` is markup (reStructuredText rules, tables).
_MARKUP = (".rst", ".md", ".txt")


def _tracked() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def test_no_tracked_file_holds_conflict_markers() -> None:
    found = []
    for path in _tracked():
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # a binary file
            continue
        for match in _MARKER.finditer(data):
            if match.group().startswith(b"=") and path.suffix in _MARKUP:
                continue
            line = data.count(b"\n", 0, match.start()) + 1
            found.append(f"{path.relative_to(ROOT)}:{line}: {match.group().decode().strip()}")
    assert not found, f"conflict markers left by a merge: {found}"
