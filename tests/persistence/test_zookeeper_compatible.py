"""The ZooKeeper persistence backend connects as TaskFlow's does: version check, default hosts.

TaskFlow's backend checks on connecting that the server is at least
``MIN_ZK_VERSION`` (``check_compatible``, yes by default), and takes
``{"connection": "zookeeper:"}`` without hosts as ``localhost:2181``. Each
behaviour is checked on TaskFlow's backend too, on the session's real
ZooKeeper; a second server that refuses the ``envi`` command shows the error
a user of ZooKeeper 3.5+ with the default four-letter-word list gets.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit.persistence import backends
from flowkit.persistence.backends import impl_zookeeper
from flowkit.utils import kazoo_utils
from tests import services

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _taskflow(module: str) -> Any:
    return pytest.importorskip(f"taskflow.{module}")


def test_min_zk_version_is_taskflows() -> None:
    theirs = _taskflow("persistence.backends.impl_zookeeper")
    assert impl_zookeeper.MIN_ZK_VERSION == theirs.MIN_ZK_VERSION == (3, 4, 0)


@pytest.mark.parametrize("connection", ["zookeeper:", "zookeeper://"])
def test_a_url_without_hosts_means_localhost_as_in_taskflow(connection: str) -> None:
    services.require_module("kazoo", "kazoo")
    theirs = _taskflow("persistence.backends").fetch({"connection": connection})
    made = backends.fetch({"connection": connection})
    try:
        assert isinstance(made, impl_zookeeper.ZkBackend)
        assert made._client_options["hosts"] == kazoo_utils.DEFAULT_HOSTS == "localhost:2181"
        assert theirs._client.hosts == [("localhost", 2181)]
    finally:
        made.close()
        theirs.close()


def test_the_server_version_is_read_on_connecting(zookeeper_server: services.ZooKeeperServer) -> None:
    services.require_module("kazoo", "kazoo")
    with zookeeper_server.client() as client:
        version = kazoo_utils.server_version(client)
        assert version == client.server_version()  # kazoo's own reading agrees
        kazoo_utils.check_compatible(client, impl_zookeeper.MIN_ZK_VERSION, version)
        with pytest.raises(exc.IncompatibleVersion, match=r">= 99\.0 required"):
            kazoo_utils.check_compatible(client, (99, 0))
        with pytest.raises(exc.IncompatibleVersion, match=r"<= 3\.0 required"):
            kazoo_utils.check_compatible(client, None, (3, 0))


@pytest.mark.parametrize("library", ["flowkit", "taskflow"])
def test_a_server_older_than_min_zk_version_is_refused_on_connecting(
    zookeeper_path_url: str, monkeypatch: pytest.MonkeyPatch, library: str
) -> None:
    services.require_module("kazoo", "kazoo")
    backend_module = (
        impl_zookeeper if library == "flowkit" else _taskflow("persistence.backends.impl_zookeeper")
    )
    root_exc = exc if library == "flowkit" else _taskflow("exceptions")
    monkeypatch.setattr(backend_module, "MIN_ZK_VERSION", (99, 0, 0))
    hosts, _, path = zookeeper_path_url.removeprefix("zookeeper://").partition("/")
    made = backend_module.ZkBackend({"hosts": hosts, "path": "/" + path})
    try:
        with pytest.raises(root_exc.StorageFailure, match="compatible version"):
            made.get_connection()
    finally:
        made.close()


@pytest.mark.parametrize("switch", [False, "false", "no", "0"])
def test_check_compatible_off_skips_the_check(
    zookeeper_path_url: str, monkeypatch: pytest.MonkeyPatch, switch: Any
) -> None:
    services.require_module("kazoo", "kazoo")
    monkeypatch.setattr(impl_zookeeper, "MIN_ZK_VERSION", (99, 0, 0))
    with (
        backends.backend({"connection": zookeeper_path_url, "check_compatible": switch}) as made,
        made.get_connection() as conn,
    ):
        conn.upgrade()
        assert list(conn.get_logbooks()) == []


def test_a_check_compatible_neither_yes_nor_no_is_refused_when_the_backend_is_made() -> None:
    with pytest.raises(exc.StorageFailure, match="'check_compatible' must be true or false, not 'maybe'"):
        backends.fetch({"connection": "zookeeper://127.0.0.1:1/x", "check_compatible": "maybe"})


def test_a_server_refusing_envi_is_named_with_the_way_out(
    zookeeper_without_envi: services.ZooKeeperServer,
) -> None:
    services.require_module("kazoo", "kazoo")
    url = zookeeper_without_envi.url_for(f"{zookeeper_without_envi.root}/envi")
    with (
        contextlib.closing(backends.fetch({"connection": url})) as made,
        pytest.raises(exc.StorageFailure, match="refuses the 'envi' command.*check_compatible"),
    ):
        made.get_connection()
    with (
        backends.backend({"connection": url, "check_compatible": False}) as made,
        made.get_connection() as conn,
    ):
        conn.upgrade()
        assert list(conn.get_logbooks()) == []
