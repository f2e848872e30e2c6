"""Behaviour of :mod:`flowkit.listeners.logging`: what is logged, at which level."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flowkit.listeners import logging as logging_listeners
from flowkit.types.failure import Failure

from ._fakes import FakeEngine

LOGGER_NAME = "tests.listeners.logging"


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    return logging.getLogger(LOGGER_NAME)


def _raise_failure() -> Failure:
    try:
        raise ValueError("boom")
    except ValueError:
        return Failure()


def _levels_and_messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(record.levelno, record.getMessage()) for record in caplog.records if record.name == LOGGER_NAME]


# -- LoggingListener -----------------------------------------------------------------


def test_logging_listener_logs_flow_and_task_changes_at_its_level(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with logging_listeners.LoggingListener(engine, log=log, level=logging.INFO):
        engine.flow("RUNNING", "PENDING")
        engine.task("a", "SUCCESS", "RUNNING", result=3)
    logged = _levels_and_messages(caplog)
    assert [level for level, _ in logged] == [logging.INFO, logging.INFO]
    assert "flow 'flow-1'" in logged[0][1]
    assert "task 'a'" in logged[1][1]
    assert "result '3'" in logged[1][1]


def test_logging_listener_defaults_to_debug_on_its_module_logger(
    engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="flowkit.listeners.logging")
    with logging_listeners.LoggingListener(engine):
        engine.flow("RUNNING", "PENDING")
    (record,) = [r for r in caplog.records if r.name == "flowkit.listeners.logging"]
    assert record.levelno == logging.DEBUG


def test_logging_listener_uses_a_class_logger_when_none_is_given(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    class Mine(logging_listeners.LoggingListener):
        _LOGGER = log

    with Mine(engine):
        engine.flow("RUNNING", "PENDING")
    assert len(_levels_and_messages(caplog)) == 1


def test_logging_listener_attaches_a_live_failures_traceback(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    failure = _raise_failure()
    with logging_listeners.LoggingListener(engine, log=log):
        engine.task("a", "FAILURE", "RUNNING", result=failure)
    (record,) = caplog.records
    assert record.exc_info is not None
    assert record.exc_info[1] is failure.exception


def test_logging_listener_stops_logging_after_deregister(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    listener = logging_listeners.LoggingListener(engine, log=log)
    listener.register()
    listener.deregister()
    engine.flow("RUNNING", "PENDING")
    assert caplog.records == []
    assert not engine.has_listeners


# -- DynamicLoggingListener: levels ---------------------------------------------------


@pytest.mark.parametrize(
    ("state", "old_state", "expected"),
    [
        ("RUNNING", "PENDING", logging.DEBUG),
        ("SUCCESS", "RUNNING", logging.DEBUG),
        ("REVERTED", "RUNNING", logging.WARNING),
        ("FAILURE", "RUNNING", logging.WARNING),
        ("SUSPENDED", "SUSPENDING", logging.DEBUG),
    ],
)
def test_dynamic_listener_logs_flow_trouble_at_failure_level(
    engine: FakeEngine,
    log: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    state: str,
    old_state: str,
    expected: int,
) -> None:
    with logging_listeners.DynamicLoggingListener(engine, log=log):
        engine.flow(state, old_state)
    ((level, message),) = _levels_and_messages(caplog)
    assert level == expected
    assert (
        f"Flow 'flow-1' (flow-uuid-1) transitioned into state '{state}' from state '{old_state}'" == message
    )


@pytest.mark.parametrize(
    ("state", "old_state", "expected"),
    [
        ("RUNNING", "PENDING", logging.DEBUG),
        ("REVERTING", "SUCCESS", logging.DEBUG),
        ("REVERTED", "REVERTING", logging.WARNING),
        ("REVERT_FAILURE", "REVERTING", logging.WARNING),
        ("RETRYING", "SUCCESS", logging.WARNING),
    ],
)
def test_dynamic_listener_logs_task_trouble_at_failure_level(
    engine: FakeEngine,
    log: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    state: str,
    old_state: str,
    expected: int,
) -> None:
    with logging_listeners.DynamicLoggingListener(engine, log=log):
        engine.task("a", state, old_state)
    ((level, message),) = _levels_and_messages(caplog)
    assert level == expected
    assert message == f"Task 'a' (a-uuid) transitioned into state '{state}' from state '{old_state}'"


def test_dynamic_listener_levels_are_configurable(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    listener = logging_listeners.DynamicLoggingListener(
        engine, log=log, level=logging.INFO, failure_level=logging.ERROR
    )
    with listener:
        engine.task("a", "RUNNING", "PENDING")
        engine.task("a", "FAILURE", "RUNNING", result=_raise_failure())
        engine.flow("REVERTED", "RUNNING")
    assert [level for level, _ in _levels_and_messages(caplog)] == [
        logging.INFO,
        logging.ERROR,
        logging.ERROR,
    ]


# -- DynamicLoggingListener: results and failures -----------------------------------


def test_dynamic_listener_shows_a_successful_result(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with logging_listeners.DynamicLoggingListener(engine, log=log):
        engine.task("a", "SUCCESS", "RUNNING", result={"id": 7})
    ((level, message),) = _levels_and_messages(caplog)
    assert level == logging.DEBUG
    assert message.endswith("with result '{'id': 7}'")


def test_dynamic_listener_hides_results_of_named_tasks(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with logging_listeners.DynamicLoggingListener(engine, log=log, hide_inputs_outputs_of=["secret"]):
        engine.task("secret", "SUCCESS", "RUNNING", result="password")
        engine.task("public", "SUCCESS", "RUNNING", result="hello")
    messages = [message for _, message in _levels_and_messages(caplog)]
    assert "password" not in messages[0]
    assert "into state 'SUCCESS'" in messages[0]
    assert "hello" in messages[1]


def test_dynamic_listener_leaves_results_out_when_its_level_is_disabled(
    engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    result = _FormatSpy()
    with logging_listeners.DynamicLoggingListener(engine, log=logging.getLogger(LOGGER_NAME)):
        engine.task("a", "REVERTED", "REVERTING", result=result)
    ((level, message),) = _levels_and_messages(caplog)
    assert level == logging.WARNING
    assert "result" not in message
    assert result.formatted == 0


class _FormatSpy:
    """A result that counts how often it is turned into text."""

    def __init__(self) -> None:
        self.formatted = 0

    def __str__(self) -> str:
        self.formatted += 1
        return "spy"


def test_dynamic_listener_logs_a_live_failure_with_its_exc_info(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    failure = _raise_failure()
    with logging_listeners.DynamicLoggingListener(engine, log=log):
        engine.task("a", "FAILURE", "RUNNING", result=failure)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "Task 'a' (a-uuid) transitioned into state 'FAILURE' from state 'RUNNING'"
    assert record.exc_info is not None
    assert record.exc_info[1] is failure.exception
    assert "ValueError: boom" in caplog.text


def test_dynamic_listener_logs_a_deserialized_failures_recorded_traceback(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    failure = Failure.from_dict(_raise_failure().to_dict())
    with logging_listeners.DynamicLoggingListener(engine, log=log):
        engine.task("a", "FAILURE", "RUNNING", result=failure)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert not record.exc_info
    message = record.getMessage()
    assert message.startswith("Task 'a' (a-uuid) transitioned into state 'FAILURE' from state 'RUNNING'")
    assert "Failure: ValueError: boom" in message
    assert "Traceback (most recent call last)" in message
    assert "_raise_failure" in message


def test_dynamic_listener_logs_revert_failure_at_failure_level_even_when_raised_low(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with logging_listeners.DynamicLoggingListener(engine, log=log, failure_level=logging.CRITICAL):
        engine.task("a", "REVERT_FAILURE", "REVERTING", result=_raise_failure())
    (record,) = caplog.records
    assert record.levelno == logging.CRITICAL


def test_dynamic_listener_uses_a_given_failure_formatter(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[Failure, bool, bool]] = []

    class Formatter:
        def format(self, fail: Failure, atom_matcher: Any) -> tuple[Any, str]:
            named_a = type("Atom", (), {"name": "a"})()
            named_b = type("Atom", (), {"name": "b"})()
            seen.append((fail, atom_matcher(named_a), atom_matcher(named_b)))
            return None, "extra context"

    failure = _raise_failure()
    with logging_listeners.DynamicLoggingListener(engine, log=log, fail_formatter=Formatter()):
        engine.task("a", "FAILURE", "RUNNING", result=failure)
    assert seen == [(failure, True, False)]
    (record,) = caplog.records
    assert record.getMessage().endswith("extra context")
    assert not record.exc_info


def test_dynamic_listener_ignores_retries(
    engine: FakeEngine, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with logging_listeners.DynamicLoggingListener(engine, log=log):
        engine.retry("r", "RETRYING", "SUCCESS")
    assert caplog.records == []
