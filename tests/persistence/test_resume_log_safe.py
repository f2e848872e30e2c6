"""A flow resumed from a database shows the flow detail's stored name escaped in log lines.

The name is read back from a database another process wrote (the process that
saved the run, or whoever can write to that database): a newline in it forged
a line of the logging listeners' output, an ESC rewrote a terminal. What is
stored stays as it was written; only its showing is escaped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, task
from flowkit.listeners.logging import DynamicLoggingListener, LoggingListener
from flowkit.patterns import linear_flow
from flowkit.persistence import backends, models

HOSTILE = "nightly\n2026-12-06 ERROR forged line\x1b[2J\u2028\u202eend"
SHOWN = "nightly\\n2026-12-06 ERROR forged line\\x1b[2J\\u2028\\u202eend"


class Echo(task.Task):
    def execute(self) -> int:
        return 1


def _flow() -> linear_flow.Flow:
    return linear_flow.Flow("nightly").add(Echo("echo"))


def _one_line(message: str) -> bool:
    return not any(c in message for c in ("\n", "\r", "\x1b", "\u2028", "\u202e"))


@pytest.mark.parametrize(
    ("listener", "flow_line"),
    [
        (LoggingListener, "has moved flow '{}'"),
        (DynamicLoggingListener, "Flow '{}' (fd-1) transitioned"),
    ],
    ids=["LoggingListener", "DynamicLoggingListener"],
)
def test_a_hostile_flow_name_read_from_sqlite_stays_on_one_line(
    listener: Callable[..., Any], flow_line: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    # Another process wrote the run's flow detail, under a name of its choosing.
    writer = backends.fetch(url)
    with writer.get_connection() as conn:
        conn.upgrade()
        book = models.LogBook("book")
        book.add(models.FlowDetail(HOSTILE, "fd-1"))
        conn.save_logbook(book)
    writer.close()

    backend = backends.fetch(url)
    try:
        with backend.get_connection() as conn:
            stored = conn.get_flow_details("fd-1")
        engine = engines.load(_flow(), flow_detail=stored, backend=backend, engine="serial")
        caplog.set_level(logging.DEBUG, logger="flowkit")
        with listener(engine):
            engine.run()
        with backend.get_connection() as conn:
            assert conn.get_flow_details("fd-1").name == HOSTILE  # stored as written
    finally:
        backend.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any(flow_line.format(SHOWN) in m for m in messages), messages
    assert all(map(_one_line, messages)), [m for m in messages if not _one_line(m)]
