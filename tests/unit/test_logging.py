"""flowkit.logging: TaskFlow's logger helper with a level below DEBUG."""

from __future__ import annotations

import logging

import pytest

from flowkit import logging as fk_logging


def test_trace_logs_below_debug(caplog: pytest.LogCaptureFixture) -> None:
    log = fk_logging.getLogger("flowkit.tests.trace")
    with caplog.at_level(fk_logging.TRACE, logger="flowkit.tests.trace"):
        log.trace("deep %s", "detail")
        log.blather("deeper")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (fk_logging.TRACE, "deep detail"),
        (fk_logging.BLATHER, "deeper"),
    ]
    assert fk_logging.TRACE < logging.DEBUG
    assert logging.getLevelName(fk_logging.TRACE) == "TRACE"


def test_trace_is_dropped_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    log = fk_logging.getLogger("flowkit.tests.quiet")
    with caplog.at_level(logging.DEBUG, logger="flowkit.tests.quiet"):
        log.trace("not shown")
        log.warn("shown")
    assert [r.getMessage() for r in caplog.records] == ["shown"]


def test_a_logger_without_handlers_gets_a_null_handler() -> None:
    log = fk_logging.getLogger("flowkit.tests.fresh")
    assert any(isinstance(h, logging.NullHandler) for h in log.logger.handlers)
    assert fk_logging.getLogger().logger.name == "flowkit"


def test_extra_context_reaches_the_record(caplog: pytest.LogCaptureFixture) -> None:
    log = fk_logging.getLogger("flowkit.tests.extra", extra={"flow": "boot"})
    with caplog.at_level(logging.INFO, logger="flowkit.tests.extra"):
        log.info("hello")
    assert caplog.records[0].flow == "boot"
