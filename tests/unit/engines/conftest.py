"""Fixtures for the engine behaviour tests."""

from __future__ import annotations

import pytest

from ._tasks import Recorder

ENGINE_KINDS = ("serial", "parallel", "asyncio")


@pytest.fixture(params=ENGINE_KINDS)
def engine_kind(request: pytest.FixtureRequest) -> str:
    """Each engine kind in turn."""
    return str(request.param)


@pytest.fixture
def rec() -> Recorder:
    """A fresh event log for the tasks of one test."""
    return Recorder()
