"""``backend=`` of the loading functions takes a configuration dict, as in TaskFlow.

TaskFlow's ``engines.load``, ``load_from_factory`` and ``save_factory_details``
pass a dict ``backend`` to ``persistence.backends.fetch``; flowkit took only a
backend object and failed inside the first save with "'dict' object has no
attribute 'get_connection'". A URL string (the usual slip) is refused up front,
naming what was given.
"""

from __future__ import annotations

import contextlib
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
