"""Fixtures for the persistence contract suite: a connection per backend.

The URLs come from ``backend_url`` in ``tests/conftest.py``, parametrised over
every backend (the event-log tests of the CLI use it too).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowkit.persistence import backends
from flowkit.persistence.base import Backend, Connection


@pytest.fixture
def backend(backend_url: str) -> Iterator[Backend]:
    made = backends.fetch({"connection": backend_url})
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def conn(backend: Backend) -> Iterator[Connection]:
    connection = backend.get_connection()
    connection.upgrade()
    try:
        yield connection
    finally:
        connection.close()
