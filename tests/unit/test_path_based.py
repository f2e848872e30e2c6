"""flowkit.persistence.path_based: a backend written TaskFlow's way, over a dict of paths."""

from __future__ import annotations

import contextlib
import posixpath
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from flowkit import engines, exceptions, states, task
from flowkit.patterns import linear_flow
from flowkit.persistence import models, path_based


class DictBackend(path_based.PathBasedBackend):
    """A file system in a dict: path -> value, and path -> child names."""

    DEFAULT_PATH = "/taskflow"

    def __init__(self, conf: Mapping[str, Any] | None = None) -> None:
        super().__init__(conf or {})
        self.items: dict[str, str] = {}
        self.children: dict[str, dict[str, None]] = {}
        self.transactions = 0

    def get_connection(self) -> DictConnection:
        return DictConnection(self)

    def close(self) -> None:
        pass


class DictConnection(path_based.PathBasedConnection):
    backend: DictBackend

    def _join_path(self, *parts: str) -> str:
        return posixpath.join(*parts)

    def _add_child(self, path: str) -> None:
        parent, name = posixpath.split(path)
        self.backend.children.setdefault(parent, {})[name] = None

    def _get_item(self, path: str) -> str:
        try:
            return self.backend.items[path]
        except KeyError:
            raise exceptions.NotFound(f"no item at {path}") from None

    def _set_item(self, path: str, value: str, transaction: Any) -> None:
        self.backend.items[path] = value
        self._add_child(path)

    def _del_tree(self, path: str, transaction: Any) -> None:
        for name in list(self.backend.children.pop(path, {})):
            self._del_tree(posixpath.join(path, name), transaction)
        self.backend.items.pop(path, None)
        parent, name = posixpath.split(path)
        self.backend.children.get(parent, {}).pop(name, None)

    def _get_children(self, path: str) -> list[str]:
        return list(self.backend.children.get(path, {}))

    def _ensure_path(self, path: str) -> None:
        self.backend.children.setdefault(path, {})

    def _create_link(self, src_path: str, dest_path: str, transaction: Any) -> None:
        self.backend.items[dest_path] = src_path
        self._add_child(dest_path)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.backend.transactions += 1
        yield


def _book() -> tuple[models.LogBook, models.FlowDetail, models.TaskDetail]:
    book = models.LogBook("book")
    flow = models.FlowDetail("flow", str(uuid.uuid4()))
    atom = models.TaskDetail("atom", str(uuid.uuid4()))
    atom.state = states.SUCCESS
    atom.results = {"n": 1}
    flow.add(atom)
    book.add(flow)
    return book, flow, atom


def test_the_path_comes_from_the_configuration_or_the_default() -> None:
    assert DictBackend({"path": "/elsewhere"}).path == "/elsewhere"
    backend = DictBackend()
    assert backend.path == "/taskflow"
    conn = backend.get_connection()
    assert (conn.book_path, conn.flow_path, conn.atom_path) == (
        "/taskflow/books",
        "/taskflow/flow_details",
        "/taskflow/atom_details",
    )


def test_logbooks_round_trip_under_taskflows_layout() -> None:
    backend = DictBackend()
    book, flow, atom = _book()
    with backend.get_connection() as conn:
        conn.upgrade()
        conn.save_logbook(book)
        assert backend.children["/taskflow/books"] == {book.uuid: None}
        assert list(backend.children[f"/taskflow/flow_details/{flow.uuid}"]) == [atom.uuid]
        loaded = conn.get_logbook(book.uuid)
        assert [fd.uuid for fd in loaded] == [flow.uuid]
        assert loaded.find(flow.uuid).find(atom.uuid).results == {"n": 1}  # type: ignore[union-attr]
        atom.results = {"n": 2}
        conn.update_atom_details(atom)
        assert conn.get_atom_details(atom.uuid).results == {"n": 2}
        assert [ad.uuid for ad in conn.get_atoms_for_flow(flow.uuid)] == [atom.uuid]
        conn.destroy_logbook(book.uuid)
        with pytest.raises(exceptions.NotFound):
            conn.get_logbook(book.uuid)
        assert not [k for k in backend.items if flow.uuid in k or atom.uuid in k]
        conn.save_logbook(_book()[0])
        conn.clear_all()
        assert list(conn.get_logbooks()) == []
    assert backend.transactions > 0


def test_a_path_based_backend_not_writable_reads_and_refuses_every_write_before_touching_a_path() -> None:
    # A backend written TaskFlow's way gets the writable option of every backend.
    backend = DictBackend({"writable": False})
    book, flow, atom = _book()
    with backend.get_connection() as conn:
        conn.upgrade()  # checks: nothing to create
        assert list(conn.get_logbooks()) == []
        for write in (
            lambda: conn.save_logbook(book),
            lambda: conn.update_atom_details(atom),
            lambda: conn.save_flow_progress(flow, [atom]),
            conn.clear_all,
        ):
            with pytest.raises(exceptions.StoreReadOnly):
                write()
    assert backend.items == {} and backend.children == {} and backend.transactions == 0


def test_update_with_ignore_missing_writes_details_alone_as_taskflows_path_based_connection() -> None:
    backend = DictBackend()
    _, flow, atom = _book()
    with backend.get_connection() as conn:
        conn.upgrade()
        with pytest.raises(exceptions.NotFound):
            conn.update_atom_details(atom)
        assert conn.update_atom_details(atom, ignore_missing=True).results == {"n": 1}
        assert f"/taskflow/atom_details/{atom.uuid}" in backend.items
        assert conn.update_flow_details(flow, ignore_missing=True).find(atom.uuid) is not None
        assert list(backend.children[f"/taskflow/flow_details/{flow.uuid}"]) == [atom.uuid]
        assert list(conn.get_logbooks()) == []


def test_an_engine_runs_on_it_and_its_progress_is_saved() -> None:
    class Add(task.Task):
        def execute(self, x: int) -> int:
            return x + 1

    backend = DictBackend()
    with backend.get_connection() as conn:
        conn.upgrade()
    engine = engines.load(
        linear_flow.Flow("f").add(Add("add", provides="y")), store={"x": 1}, backend=backend
    )
    engine.run()
    with backend.get_connection() as conn:
        (book,) = list(conn.get_logbooks())
        (flow,) = list(book)
        assert flow.state == states.SUCCESS
        assert {ad.name: ad.results for ad in flow if ad.name == "add"} == {"add": 2}
