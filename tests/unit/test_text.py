"""Names other processes sent, made safe to log: nothing they hold starts a new line."""

from __future__ import annotations

import pytest

from flowkit._utils.text import log_safe


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("echo", "echo"),
        ("tâche 日本語 ⚙", "tâche 日本語 ⚙"),
        ("a\u00a0b", "a\u00a0b"),  # a no-break space is no line break: kept
        ("C:\\tasks\\n", "C:\\tasks\\n"),  # backslashes as written
        ("ok\n2026-12-06 ERROR forged", "ok\\n2026-12-06 ERROR forged"),
        ("a\rb\tc", "a\\rb\\tc"),
        ("\x1b[2J\x00\x7f\x85", "\\x1b[2J\\x00\\x7f\\x85"),
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("safe\u202eexe.txt", "safe\\u202eexe.txt"),
        ("\ud800", "\\ud800"),
    ],
)
def test_log_safe_escapes_what_breaks_a_line_and_keeps_printable_text(name: str, shown: str) -> None:
    assert log_safe(name) == shown


def test_log_safe_takes_any_value() -> None:
    assert log_safe(42) == "42"
    assert log_safe(b"w\n") == "b'w\\n'"
