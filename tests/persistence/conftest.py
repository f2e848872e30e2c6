"""Fixtures for the persistence contract suite: one URL per backend, and a connection.

``backend_url`` is parametrised over every backend; the PostgreSQL and
ZooKeeper URLs come from the service fixtures in ``tests/conftest.py``, looked
up only for their own parameter, so a missing server affects only its tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit.persistence import backends
from flowkit.persistence.base import Backend, Connection

BACKENDS = ["memory", "dir", "sqlite", "postgresql", "zookeeper"]


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "dir":
        return f"dir://{tmp_path}/store"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/flows.db"
    if kind == "postgresql":
        return str(request.getfixturevalue("postgresql_db_url"))
    return str(request.getfixturevalue("zookeeper_path_url"))


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
