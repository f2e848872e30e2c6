"""Fixtures for listener tests (the fakes live in :mod:`._fakes`)."""

from __future__ import annotations

import pytest

from tests.manual_clock import ManualClock

from ._fakes import FakeEngine


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
