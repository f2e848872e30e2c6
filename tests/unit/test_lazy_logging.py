"""A module logger fetched on first use behaves as the named logger."""

from __future__ import annotations

import logging
from unittest import mock

import pytest

from flowkit._utils.lazy_logging import module_logger


def test_records_go_to_the_named_logger(caplog: pytest.LogCaptureFixture) -> None:
    log = module_logger("flowkit.tests.lazy")
    with caplog.at_level(logging.WARNING, logger="flowkit.tests.lazy"):
        log.warning("clamped %s", 2)
        log.debug("not shown")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("flowkit.tests.lazy", logging.WARNING, "clamped 2")
    ]
    assert log.isEnabledFor(logging.WARNING) is logging.getLogger("flowkit.tests.lazy").isEnabledFor(
        logging.WARNING
    )


def test_patching_an_attribute_patches_the_logger_and_is_undone() -> None:
    # TaskFlow's own tests patch ``task.LOG.warning``; the module logs through the patch.
    log = module_logger("flowkit.tests.lazy.patched")
    real = logging.getLogger("flowkit.tests.lazy.patched")
    with mock.patch.object(log, "warning") as warning:
        log.warning("x")
        assert real.warning is warning
    warning.assert_called_once_with("x")
    assert "warning" not in vars(real)
    assert log.warning == real.warning
