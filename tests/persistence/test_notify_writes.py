"""How many writes a durable run makes, by who listens.

TaskFlow writes every change before it notifies. flowkit batches a run's writes
(one transaction per atom) and writes ahead of a notification only while a
listener of the user's is registered, which may read the backend when told;
flowkit's own listeners read only the engine's storage, so they must not double
the writes of every ``flowkit run`` (event log) and conductor (logging).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from flowkit import engines, task
from flowkit.listeners.events import EventLogListener
from flowkit.listeners.logging import DynamicLoggingListener, LoggingListener
from flowkit.listeners.timing import DurationListener
from flowkit.patterns import linear_flow
from flowkit.persistence import models
from flowkit.types.notifier import Notifier
from tests.persistence._upgraded import upgraded_backend

ATOMS = 12


class Step(task.Task):
    def execute(self, x: int) -> int:
        return x + 1


class AuditingLogger(LoggingListener):
    """A user's subclass of a flowkit listener: it may read the backend when told."""


def _flow() -> linear_flow.Flow:
    return linear_flow.Flow("steps").add(
        *(Step(name=f"s{i}", provides=f"x{i + 1}", rebind={"x": f"x{i}"}) for i in range(ATOMS))
    )


def _commits_of_a_run(path: Path, attach: Any) -> int:
    with upgraded_backend(f"sqlite:///{path}") as backend:
        commits = [0]

        def count(_conn: Any) -> None:
            commits[0] += 1

        engine = engines.load(_flow(), store={"x0": 0}, backend=backend, book=models.LogBook("b"))
        event.listen(backend.engine, "commit", count)  # type: ignore[attr-defined]
        with contextlib.ExitStack() as stack:
            attach(engine, stack)
            engine.run()
        assert engine.storage.fetch(f"x{ATOMS}") == ATOMS
        return commits[0]


def _user_callback(engine: Any, stack: contextlib.ExitStack) -> None:
    engine.atom_notifier.register(Notifier.ANY, lambda state, details: None)


def _flowkit_listeners(engine: Any, stack: contextlib.ExitStack) -> None:
    stack.enter_context(EventLogListener(engine))
    stack.enter_context(LoggingListener(engine, level=logging.DEBUG))
    stack.enter_context(DynamicLoggingListener(engine))
    stack.enter_context(DurationListener(engine))


def test_flowkits_own_listeners_add_no_write_per_atom(tmp_path: Path) -> None:
    alone = _commits_of_a_run(tmp_path / "alone.db", lambda engine, stack: None)
    heard = _commits_of_a_run(tmp_path / "heard.db", _flowkit_listeners)
    # The flow's own transitions are still written before they are told (a few per run).
    assert heard <= alone + 4, (alone, heard)


@pytest.mark.parametrize(
    "attach",
    [
        _user_callback,
        lambda engine, stack: stack.enter_context(AuditingLogger(engine, level=logging.DEBUG)),
    ],
    ids=["callback", "listener-subclass"],
)
def test_a_users_listener_gets_each_change_written_before_it_hears_of_it(tmp_path: Path, attach: Any) -> None:
    alone = _commits_of_a_run(tmp_path / "alone.db", lambda engine, stack: None)
    heard = _commits_of_a_run(tmp_path / "heard.db", attach)
    # A write ahead of each atom's notice (the last one's is the run's final write anyway).
    assert heard >= alone + ATOMS - 1, (alone, heard)


def test_notifier_tells_flowkits_listeners_from_the_users() -> None:
    engine = engines.load(_flow(), store={"x0": 0})
    notifier = engine.atom_notifier
    with LoggingListener(engine), EventLogListener(engine):
        assert notifier.has_listeners and not notifier.has_user_listeners
        with AuditingLogger(engine):
            assert notifier.has_user_listeners
        assert not notifier.has_user_listeners

        def mine(state: str, details: dict[str, Any]) -> None:
            pass

        notifier.register(Notifier.ANY, mine, weak=True)
        assert notifier.has_user_listeners
        del mine
        import gc

        gc.collect()
        notifier.register(Notifier.ANY, print)  # a builtin is not flowkit's either
        notifier.deregister(Notifier.ANY, print)
        assert not notifier.has_user_listeners
    assert not notifier.has_listeners and not notifier.has_user_listeners
