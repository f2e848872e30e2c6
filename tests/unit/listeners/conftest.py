"""Fixtures for listener tests (the fakes live in :mod:`._fakes`)."""

from __future__ import annotations

import pytest

from ._fakes import FakeClock, FakeEngine


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
