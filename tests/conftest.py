"""Helpers shared by every test directory."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which flowkit is under test, so a stale install is easy to spot."""
    try:
        import flowkit
    except ImportError as exc:
        return [f"flowkit: not importable ({exc})"]
    return [f"flowkit {flowkit.__version__} from {flowkit.__path__[0]} on Python {sys.version.split()[0]}"]


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Functional tests use this instead of fixed sleeps: it returns as soon as
    the condition holds, and fails loudly instead of hanging when it never
    does.

    Args:
        predicate: called with no arguments until its result is truthy.
        timeout: seconds to keep trying before giving up.
        interval: seconds to sleep between two calls.

    Returns:
        The first truthy value ``predicate`` returned.

    Raises:
        AssertionError: if ``predicate`` stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{predicate!r} still false after {timeout:.2f}s (last result: {value!r})")
        time.sleep(interval)


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., object]:
    """Give tests the :func:`wait_until` poller without importing conftest."""
    return wait_until
