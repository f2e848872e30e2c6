"""TaskFlow 6.5 as an oracle for persistence records and modules: what one writes, the other reads."""

from __future__ import annotations

import importlib
import types
from datetime import UTC, datetime

import pytest

from flowkit.persistence import models

tf_models = pytest.importorskip("taskflow.persistence.models")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_taskflow_reads_the_times_flowkit_marshals() -> None:
    book = models.LogBook("b")
    book.created_at = datetime(2026, 12, 6, 9, 30, 1, 250, tzinfo=UTC)
    book.updated_at = datetime(2026, 12, 6, 9, 31, 2, 999999, tzinfo=UTC)
    theirs = tf_models.LogBook.from_dict(book.to_dict(marshal_time=True), unmarshal_time=True)
    assert (theirs.name, theirs.uuid) == ("b", book.uuid)
    assert (theirs.created_at, theirs.updated_at) == (book.created_at, book.updated_at)


def test_flowkit_reads_the_times_taskflow_marshals() -> None:
    book = tf_models.LogBook("b")
    book.updated_at = datetime(2026, 12, 6, 9, 31, 2, 17, tzinfo=UTC)
    ours = models.LogBook.from_dict(book.to_dict(marshal_time=True), unmarshal_time=True)
    assert ours.created_at == book.created_at.replace(tzinfo=UTC)  # TaskFlow's utcnow() is naive UTC
    assert ours.updated_at == book.updated_at


# TaskFlow's public names that flowkit leaves out on purpose: its private helpers
# (the memory backend's fake file system), and the SQL error codes and isolation
# levels its own retry and engine set-up read (flowkit classifies errors and sets
# up the engine its own way, so such constants would describe nothing it does).
_NOT_MIRRORED = {
    "impl_memory": {"FakeFilesystem", "FakeInode"},
    "impl_sqlalchemy": {
        "DEFAULT_TXN_ISOLATION_LEVELS",
        "MY_SQL_CONN_ERRORS",
        "MY_SQL_GONE_WAY_AWAY_ERRORS",
        "POSTGRES_CONN_ERRORS",
        "POSTGRES_GONE_WAY_AWAY_ERRORS",
    },
}


@pytest.mark.parametrize("module", ["impl_dir", "impl_memory", "impl_sqlalchemy", "impl_zookeeper"])
def test_backend_modules_have_taskflows_public_classes_and_constants(module: str) -> None:
    theirs = importlib.import_module(f"taskflow.persistence.backends.{module}")
    ours = importlib.import_module(f"flowkit.persistence.backends.{module}")
    public = {
        name
        for name, value in vars(theirs).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "LOG"
    }
    missing = sorted(public - _NOT_MIRRORED.get(module, set()) - set(ours.__all__))
    assert not missing, f"flowkit.persistence.backends.{module} lacks {missing}"


def test_sqlite_in_memory_urls_are_taskflows() -> None:
    from flowkit.persistence.backends import impl_sqlalchemy

    theirs = importlib.import_module("taskflow.persistence.backends.impl_sqlalchemy")
    assert impl_sqlalchemy.SQLITE_IN_MEMORY == theirs.SQLITE_IN_MEMORY
    assert impl_sqlalchemy.Connection is impl_sqlalchemy.SQLAlchemyConnection


def test_zookeeper_default_path_is_flowkits_own_as_listed() -> None:
    # A listed difference (doc/migrating.rst): the node layouts differ, so the defaults do.
    from tests.compat.test_taskflow_suite import load_known_differences

    assert "defaults::zookeeper_persistence_path" in load_known_differences()
    paths = []
    for root in ("taskflow", "flowkit"):
        backends = importlib.import_module(f"{root}.persistence.backends")
        backend = backends.fetch({"connection": "zookeeper", "hosts": "127.0.0.1:2181"})
        try:
            paths.append((backend.path, type(backend).DEFAULT_PATH))
        finally:
            backend.close()
    assert paths == [("/taskflow", "/taskflow"), ("/flowkit", "/flowkit")]
