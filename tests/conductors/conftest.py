"""Helpers to post flows as jobs for the conductor tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines
from flowkit.jobs.base import Job, JobBoard
from flowkit.persistence import backends as persistence_backends
from flowkit.persistence import models
from flowkit.persistence.base import Backend
from tests import services


@pytest.fixture(scope="session")
def redis_aof_server() -> Iterator[services.RedisServer]:
    """A Redis server with an append-only file fsynced on every write (survives SIGKILL).

    This is the configuration the jobs documentation asks of a Redis jobboard
    that must not lose jobs (``appendonly yes``, ``appendfsync always``).
    """
    server = services.RedisServer(appendonly=True)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def persistence(tmp_path: Path) -> Iterator[Backend]:
    """A SQLite persistence backend in this test's directory, schema ready."""
    backend = persistence_backends.fetch(f"sqlite:///{tmp_path / 'flows.db'}")
    with backend.get_connection() as conn:
        conn.upgrade()
    try:
        yield backend
    finally:
        backend.close()


def post_flow(
    board: JobBoard,
    persistence: Backend,
    factory: Any,
    factory_args: list[Any] | None = None,
    meta_store: dict[str, Any] | None = None,
    job_store: dict[str, Any] | None = None,
    name: str = "job",
) -> tuple[Job, models.FlowDetail]:
    """Save a logbook with one flow detail built by ``factory`` and post it as a job."""
    book = models.LogBook(f"{name}-book")
    flow_detail = models.FlowDetail(name, f"fd-{name}-{book.uuid[:8]}")
    if meta_store is not None:
        flow_detail.meta["store"] = meta_store
    book.add(flow_detail)
    engines.save_factory_details(flow_detail, factory, factory_args, None)
    with persistence.get_connection() as conn:
        conn.save_logbook(book)
    details: dict[str, Any] = {}
    if job_store is not None:
        details["store"] = job_store
    return board.post(name, book=book, details=details), flow_detail


def flow_state(persistence: Backend, flow_detail: models.FlowDetail) -> tuple[str, dict[str, str]]:
    """The stored flow state and the state of each atom, by name."""
    with persistence.get_connection() as conn:
        stored = conn.get_flow_details(flow_detail.uuid)
    return str(stored.state), {ad.name: str(ad.state) for ad in stored}


def stored_results(persistence: Backend, flow_detail: models.FlowDetail) -> dict[str, Any]:
    """The stored result of each atom, by name."""
    with persistence.get_connection() as conn:
        stored = conn.get_flow_details(flow_detail.uuid)
    return {ad.name: ad.results for ad in stored}
