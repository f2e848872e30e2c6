"""Names other processes sent, made safe to log: nothing they hold starts a new line."""

from __future__ import annotations

import logging

import pytest

from flowkit._utils.text import LogSafe, log_safe


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


class _Counted:
    """A name whose showing is counted: what a log call that is not emitted must not pay for."""

    def __init__(self, text: str) -> None:
        self.text, self.shown = text, 0

    def __str__(self) -> str:
        self.shown += 1
        return self.text


def test_log_safe_wrapper_escapes_only_a_record_that_is_emitted(caplog: pytest.LogCaptureFixture) -> None:
    name = _Counted("job\nforged")
    log = logging.getLogger("tests.unit.test_text.lazy")
    caplog.set_level(logging.INFO, logger=log.name)
    log.debug("claiming %s", LogSafe(name))
    assert name.shown == 0 and not caplog.records
    log.info("claiming %s", LogSafe(name))
    assert [r.getMessage() for r in caplog.records] == ["claiming job\\nforged"]
    assert name.shown >= 1  # once per handler that formats it
    assert repr(LogSafe("a\u2028b")) == "'a\\u2028b'"


def test_logging_listener_escapes_nothing_when_its_level_is_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flowkit import engines, task
    from flowkit.listeners import base
    from flowkit.listeners import logging as logging_listeners
    from flowkit.patterns import linear_flow

    class Echo(task.Task):
        def execute(self) -> int:
            return 1

    calls: list[object] = []

    def counting(value: object) -> str:
        calls.append(value)
        return log_safe(value)

    monkeypatch.setattr(base, "log_safe", counting)
    monkeypatch.setattr(logging_listeners, "log_safe", counting)
    caplog.set_level(logging.INFO, logger="flowkit")  # both listeners log transitions at DEBUG
    engine = engines.load(linear_flow.Flow("f").add(Echo("echo")), engine="serial")
    with logging_listeners.LoggingListener(engine), logging_listeners.DynamicLoggingListener(engine):
        engine.run()
    assert calls == []
    caplog.set_level(logging.DEBUG, logger="flowkit")
    engine.reset()
    with logging_listeners.LoggingListener(engine):
        engine.run()
    assert "echo" in calls and "f" in calls
