"""A job's name is whatever its poster wrote: a conductor's log lines show it escaped, on one line.

Any process that can post to a board names its jobs (and the flow details
they point at): a name holding a newline forged a log line of the conductor
that ran it ("Job completed successfully: ..." followed by a line of the
poster's choosing), an ESC rewrote the terminal of whoever tailed the log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from flowkit import conductors, states
from flowkit.jobs import backends as board_backends
from flowkit.persistence.base import Backend
from tests import services
from tests.conductors import flows
from tests.conductors.conftest import post_flow
from tests.jobs.conftest import board_conf

#: A name as a hostile poster writes it: a forged line, a terminal escape, a
#: line separator and a bidi override.
HOSTILE = "evil\n2026-12-06 ERROR forged line\x1b[2J\u2028\u202eend"
SHOWN = "evil\\n2026-12-06 ERROR forged line\\x1b[2J\\u2028\\u202eend"

_MODULES = {"redis": "redis", "zookeeper": "kazoo", "etcd": "etcd3gw"}


def _one_line(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(c in message for c in ("\n", "\r", "\x1b", "\u2028", "\u202e"))


@pytest.mark.parametrize("kind", ["redis", "zookeeper", "etcd"])
def test_a_hostile_job_name_stays_on_its_log_line(
    kind: str,
    persistence: Backend,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    services.require_module(_MODULES[kind], _MODULES[kind])
    conf: dict[str, Any] = board_conf(kind, request)
    poster = board_backends.fetch("poster", conf, persistence=persistence)
    board = board_backends.fetch("conductor-board", conf, persistence=persistence)
    poster.connect()
    board.connect()
    try:
        job, _ = post_flow(
            poster,
            persistence,
            flows.chain,
            [1],
            job_store={"v0": 1, "calls": str(tmp_path / "calls")},
            name=HOSTILE,
        )
        conductor = conductors.backends.fetch(
            "blocking", "c", board, persistence=persistence, engine="serial"
        )
        caplog.set_level(logging.DEBUG, logger="flowkit")
        conductor.run(max_dispatches=1)
        assert poster.find_owner(job) is None and job.state == states.COMPLETE
    finally:
        board.close()
        poster.close()
    naming = [r for r in caplog.records if SHOWN in r.getMessage()]
    shown = {r.getMessage().split(":", 1)[0] for r in naming}
    # The conductor's own lines, and its logging listener's line of the flow (the flow
    # detail's name, read from the database the poster wrote).
    assert {"Trying to claim job", "Job completed successfully"} <= shown, shown
    assert any(f"has moved flow '{SHOWN}'" in r.getMessage() for r in naming), [
        r.getMessage() for r in naming
    ]
    broken = [r.getMessage() for r in caplog.records if not _one_line(r)]
    assert not broken, broken
