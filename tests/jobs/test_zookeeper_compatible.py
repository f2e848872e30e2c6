"""The ZooKeeper jobboard checks the server's version on connecting, as TaskFlow's does.

``check_compatible`` (yes by default) makes ``connect()`` refuse a server
older than the board's ``MIN_ZK_VERSION`` with ``IncompatibleVersion``, on
flowkit's board as on TaskFlow's (checked side by side on the session's
ZooKeeper); the check is the one :mod:`flowkit.utils.kazoo_utils` also runs
for the persistence backend.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit.jobs import backends
from flowkit.utils import kazoo_utils
from tests import services
from tests.jobs.conftest import board_conf

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _board(library: str, conf: dict[str, Any]) -> Any:
    if library == "flowkit":
        return backends.fetch("z", conf)
    return pytest.importorskip("taskflow.jobs.backends").fetch("z", conf)


@pytest.mark.parametrize("library", ["flowkit", "taskflow"])
def test_a_server_older_than_min_zk_version_is_refused_on_connect(
    request: pytest.FixtureRequest, library: str
) -> None:
    services.require_module("kazoo", "kazoo")
    errors = exc if library == "flowkit" else pytest.importorskip("taskflow.exceptions")
    board = _board(library, board_conf("zookeeper", request))
    board.MIN_ZK_VERSION = (99, 0, 0)
    try:
        with pytest.raises(errors.IncompatibleVersion, match=r"zookeeper >= 99\.0\.0 required"):
            board.connect()
        assert not board.connected
    finally:
        board.close()


@pytest.mark.parametrize("switch", [False, "no"])
def test_check_compatible_off_connects_to_any_version(request: pytest.FixtureRequest, switch: Any) -> None:
    services.require_module("kazoo", "kazoo")
    board = backends.fetch("z", {**board_conf("zookeeper", request), "check_compatible": switch})
    board.MIN_ZK_VERSION = (99, 0, 0)  # type: ignore[attr-defined]
    try:
        board.connect()
        assert board.connected and board.job_count == 0
    finally:
        board.close()


def test_a_check_compatible_neither_yes_nor_no_is_refused_when_the_board_is_made() -> None:
    with pytest.raises(ValueError, match="'check_compatible' must be true or false, not 'maybe'"):
        backends.fetch("z", {"board": "zookeeper", "check_compatible": "maybe"})


def test_a_server_refusing_envi_is_named_with_the_way_out(
    zookeeper_without_envi: services.ZooKeeperServer,
) -> None:
    services.require_module("kazoo", "kazoo")
    conf = {"board": "zookeeper", "hosts": zookeeper_without_envi.hosts, "path": "/envi/jobs"}
    board = backends.fetch("z", conf)
    try:
        with pytest.raises(
            exc.IncompatibleVersion, match=r"zookeeper://127\.0\.0\.1:\d+/envi/jobs: .*'envi'"
        ):
            board.connect()
    finally:
        board.close()
    board = backends.fetch("z", {**conf, "check_compatible": False})
    try:
        board.connect()
        assert board.connected
    finally:
        board.close()


@pytest.mark.parametrize(
    "conf", [{"board": "zookeeper"}, {"board": "zookeeper", "url": "zookeeper:///jobs"}], ids=["conf", "url"]
)
def test_a_board_without_hosts_means_localhost_as_in_taskflow(conf: dict[str, Any]) -> None:
    services.require_module("kazoo", "kazoo")
    theirs = pytest.importorskip("taskflow.jobs.backends").fetch("z", {"board": "zookeeper"})
    board = backends.fetch("z", conf)
    try:
        # One default for the board and the persistence backend, and it is TaskFlow's.
        assert board._client_options["hosts"] == kazoo_utils.DEFAULT_HOSTS == "localhost:2181"
        assert board.where.startswith("zookeeper://localhost:2181/")
        assert theirs._client.hosts == [("localhost", 2181)]
    finally:
        board.close()
        theirs.close()
