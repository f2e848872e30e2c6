"""A value JSON cannot store is refused with its reason said once, naming what and where.

Every such error quotes the encoder's words (which name the offending type)
in its own message and chains the encoder's error. ``str()`` of a flowkit
error is TaskFlow's: the message, then each cause indented below it; so the
message and the cause line said the same thing twice, and a traceback's last
line did too. These tests read what a user reads: ``str(error)``, and the
last exception of the formatted traceback.
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, task
from flowkit import exceptions as exc
from flowkit.jobs.backends.impl_memory import MemoryJobBoard
from flowkit.patterns import linear_flow
from flowkit.persistence import backends, models
from flowkit.persistence.backends import impl_memory

#: The encoder's words for the object every test here hands it.
REASON = "Object of type Opaque is not JSON serializable"


class Opaque:
    """A value JSON has no form for."""


class Returns(task.Task):
    """Returns the value it was made with."""

    def __init__(self, value: Any, name: str) -> None:
        super().__init__(name=name, provides=name)
        self._value = value

    def execute(self) -> Any:
        return self._value


def flow_of(count: int) -> linear_flow.Flow:
    """A module-level factory, so a flow detail can name it."""
    return linear_flow.Flow("made").add(*(Returns(i, f"r{i}") for i in range(count)))


def said_once(error: BaseException, message: str) -> None:
    """``error`` reads ``message``, which quotes its cause's words once, in str() and a traceback."""
    assert str(error) == message
    assert isinstance(error.__cause__, TypeError) and str(error.__cause__) == REASON
    # The last exception of the traceback (after the chained cause's own block).
    text = "".join(traceback.format_exception(error))
    last = text.rpartition("The above exception was the direct cause of the following exception:")[2]
    assert last.count(REASON) == 1, last


def _memory() -> impl_memory.MemoryBackend:
    return impl_memory.MemoryBackend({})


def test_a_result_json_cannot_store_says_why_once_naming_its_atom() -> None:
    flow = linear_flow.Flow("f").add(Returns({"when": Opaque()}, name="opaque"))
    with pytest.raises(exc.InvalidFormat) as raised:
        engines.run(flow, backend=_memory())
    said_once(raised.value, f"result of atom 'opaque' cannot be stored as JSON: {REASON}")


def test_an_injected_value_json_cannot_store_says_why_once_naming_the_symbol_and_where() -> None:
    flow = linear_flow.Flow("f").add(Returns(1, name="t"))
    with pytest.raises(exc.InvalidFormat) as raised:
        engines.load(flow, store={"x": Opaque()}, backend=_memory())
    said_once(raised.value, f"value injected as 'x' into flow 'f' cannot be stored as JSON: {REASON}")
    with pytest.raises(exc.InvalidFormat) as raised:
        engines.load(flow, inject={"t": {"y": [Opaque()]}}, backend=_memory())
    said_once(raised.value, f"value injected as 'y' into atom 't' cannot be stored as JSON: {REASON}")


def test_factory_arguments_json_cannot_store_say_why_once_naming_the_factory() -> None:
    name = f"{__name__}.flow_of"
    with pytest.raises(exc.InvalidFormat) as raised:
        engines.load_from_factory(flow_of, factory_kwargs={"count": Opaque()}, backend=_memory())
    said_once(raised.value, f"arguments of flow factory '{name}' cannot be stored as JSON: {REASON}")


def test_job_details_json_cannot_store_say_why_once_naming_the_job() -> None:
    board = MemoryJobBoard("board")
    with pytest.raises(exc.InvalidFormat) as raised:
        board.post("nightly", details={"store": {"when": Opaque()}})
    said_once(raised.value, f"details of job 'nightly' cannot be stored as JSON: {REASON}")
    assert board.job_count == 0


def _unstorable_detail() -> tuple[models.LogBook, models.FlowDetail, models.TaskDetail]:
    book = models.LogBook("book", "book-1")
    flow_detail = models.FlowDetail("flow", "flow-1")
    book.add(flow_detail)
    atom = models.TaskDetail("opaque", "atom-1")
    flow_detail.add(atom)
    return book, flow_detail, atom


@pytest.mark.parametrize("kind", ["sqlite", "dir"])
def test_a_backend_writing_data_json_cannot_store_says_why_once_naming_the_atom(
    kind: str, tmp_path: Path
) -> None:
    # What the engine's check catches first, written directly through a connection.
    url = f"sqlite:///{tmp_path / 'runs.db'}" if kind == "sqlite" else f"dir://{tmp_path / 'runs'}"
    backend = backends.fetch({"connection": url})
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
            book, _, atom = _unstorable_detail()
            conn.save_logbook(book)
            atom.results = {"when": Opaque()}
            with pytest.raises(exc.StorageFailure) as raised:
                conn.update_atom_details(atom)
    finally:
        backend.close()
    said_once(raised.value, f"data of atom 'opaque' (atom-1) cannot be stored as JSON: {REASON}")
