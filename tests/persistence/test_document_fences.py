"""Write fences on an optimistic document store: a fence moved mid-write fails the write's commit.

The locking stores (memory, dir) hold their lock from the fence check to the
write, so nobody can move the fence in between. ZooKeeper holds no lock: the
fenced write's commit checks the version of the flow document it read the
fence from. Here the fence is moved by another backend on the same path just
before the paused write's commit goes out; the commit must fail, the step run
again on fresh reads, and the write be refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from flowkit import states
from flowkit.persistence import backends
from flowkit.persistence.backends._path_based import Batch, DocumentStore
from flowkit.persistence.base import FenceRefused, WriteFence
from flowkit.persistence.models import FlowDetail, LogBook, TaskDetail


def _task(name: str) -> TaskDetail:
    detail = TaskDetail(name, str(uuid.uuid4()))
    detail.state = states.SUCCESS
    return detail


@pytest.mark.parametrize("flow_changed", [True, False])
def test_a_fence_moved_before_a_fenced_commit_refuses_it_on_zookeeper(
    zookeeper_path_url: str, monkeypatch: pytest.MonkeyPatch, flow_changed: bool
) -> None:
    writer = backends.fetch({"connection": zookeeper_path_url})
    other = backends.fetch({"connection": zookeeper_path_url})
    try:
        conn, other_conn = writer.get_connection(), other.get_connection()
        conn.upgrade()
        book, fd = LogBook("book"), FlowDetail("flow", str(uuid.uuid4()))
        book.add(fd)
        conn.save_logbook(book)
        old, new = WriteFence("job-1", 1), WriteFence("job-1", 2)
        conn.fence_flow(fd.uuid, old)

        store: DocumentStore = writer._store  # type: ignore[attr-defined]
        commit = store.commit
        pending: list[Callable[[], object]] = [lambda: other_conn.fence_flow(fd.uuid, new)]
        commits: list[Batch] = []

        def paused_commit(batch: Batch) -> None:
            commits.append(batch)
            while pending:  # the fenced write is past its check: the fence moves now
                pending.pop()()
            commit(batch)

        monkeypatch.setattr(store, "commit", paused_commit)
        fd.state = states.FAILURE
        with pytest.raises(FenceRefused) as refused:
            conn.save_flow_progress_fenced(fd, [_task("late")], flow_changed, old)
        assert refused.value.current == new
        assert len(commits) == 1, "the write's step was not run again after its commit failed"
        stored = other_conn.get_flow_details(fd.uuid)
        assert stored.state != states.FAILURE and len(stored) == 0, "the stale write landed"
    finally:
        writer.close()
        other.close()
