"""``backend=`` of the loading functions takes a configuration dict, as in TaskFlow.

TaskFlow's ``engines.load``, ``load_from_factory`` and ``save_factory_details``
pass a dict ``backend`` to ``persistence.backends.fetch``; flowkit took only a
backend object and failed inside the first save with "'dict' object has no
attribute 'get_connection'". A URL string (the usual slip) is refused up front,
naming what was given.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from pathlib import Path

import pytest

from flowkit import engines, task
from flowkit.patterns import linear_flow
from flowkit.persistence import backends, models


class AddOne(task.Task):
    """Provides ``total``: ``number`` plus one."""

    default_provides = "total"

    def execute(self, number: int) -> int:
        return number + 1


def make_flow() -> linear_flow.Flow:
    """A one-task flow, importable by name for ``load_from_factory``."""
    return linear_flow.Flow("add").add(AddOne("add_one"))


@pytest.fixture
def conf(tmp_path: Path) -> dict[str, str]:
    """The configuration dict of a fresh, upgraded SQLite database."""
    conf = {"connection": f"sqlite:///{tmp_path}/flows.db"}
    with contextlib.closing(backends.fetch(conf).get_connection()) as conn:
        conn.upgrade()
    return conf


def _saved_states(conf: dict[str, str]) -> list[str]:
    """The states of the flow details saved in the database ``conf`` names, read back afresh."""
    with contextlib.closing(backends.fetch(conf).get_connection()) as conn:
        return [fd.state for book in conn.get_logbooks() for fd in book]


def test_load_takes_a_configuration_dict_and_saves_the_run_there(conf: dict[str, str]) -> None:
    engine = engines.load(make_flow(), store={"number": 1}, backend=conf)
    engine.run()
    assert engine.storage.fetch("total") == 2
    assert _saved_states(conf) == ["SUCCESS"]


def test_load_from_factory_takes_a_configuration_dict(conf: dict[str, str]) -> None:
    engine = engines.load_from_factory(make_flow, store={"number": 4}, backend=conf, book=models.LogBook("b"))
    engine.run()
    assert engine.storage.fetch("total") == 5
    assert _saved_states(conf) == ["SUCCESS"]


def test_a_url_string_is_refused_naming_it_with_its_password_masked() -> None:
    with pytest.raises(TypeError) as caught:
        engines.load(make_flow(), store={"number": 1}, backend="postgresql://app:s3cret@db.internal/flows")
    message = str(caught.value)
    assert "not the str 'postgresql://app:***@db.internal/flows'" in message
    assert "{'connection': 'postgresql://app:***@db.internal/flows'}" in message
    assert "s3cret" not in message


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts this process's open files in /proc")
def test_runs_given_a_configuration_dict_leave_no_database_files_open(conf: dict[str, str]) -> None:
    """A backend made from the dict is the engine's: each run left its SQLAlchemy
    engine with a pooled connection open until the cyclic collector freed it, so a
    long-lived process held one more file per run (hundreds between two collections).
    Counted with the collector off: only the engine's own closing gives them back."""
    engines.load(make_flow(), store={"number": 0}, backend=conf).run()
    gc.collect()
    gc.disable()
    try:
        before = _open_fds()
        for number in range(20):
            engine = engines.load(make_flow(), store={"number": number}, backend=conf)
            engine.run()
            assert engine.storage.fetch("total") == number + 1
        grown = _open_fds() - before
    finally:
        gc.enable()
    assert grown <= 0, f"20 runs left {grown} more files open"
    assert _saved_states(conf) == ["SUCCESS"] * 21


def test_an_engine_given_a_configuration_dict_can_run_again_after_its_run_closed_it(
    conf: dict[str, str],
) -> None:
    """Closing the backend it made releases its connections; a later use reopens them."""
    engine = engines.load(make_flow(), store={"number": 1}, backend=conf)
    engine.run()
    engine.reset()
    engine.run()
    assert engine.storage.fetch("total") == 2
    assert _saved_states(conf) == ["SUCCESS"]


def test_save_factory_details_closes_the_backend_it_made_from_a_dict(conf: dict[str, str]) -> None:
    book = models.LogBook("b")
    flow_detail = models.FlowDetail("add", "fd-add")
    book.add(flow_detail)
    with contextlib.closing(backends.fetch(conf).get_connection()) as conn:
        conn.save_logbook(book)
    gc.collect()
    gc.disable()
    try:
        before = _open_fds()
        for _ in range(10):
            engines.save_factory_details(flow_detail, make_flow, [], {}, backend=conf)
        grown = _open_fds() - before
    finally:
        gc.enable()
    assert grown <= 0, f"10 saves left {grown} more files open"


def test_runs_given_a_zookeeper_configuration_dict_leave_no_client_threads(zookeeper_path_url: str) -> None:
    """Each run started a ZooKeeper client (its threads and its session) and never stopped it."""
    pytest.importorskip("kazoo")
    conf = {"connection": zookeeper_path_url}
    with contextlib.closing(backends.fetch(conf)) as made, contextlib.closing(made.get_connection()) as conn:
        conn.upgrade()
    engines.load(make_flow(), store={"number": 0}, backend=conf).run()
    before = threading.active_count()
    for number in range(5):
        engines.load(make_flow(), store={"number": number}, backend=conf).run()
    assert threading.active_count() <= before, threading.enumerate()
