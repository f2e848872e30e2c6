"""``read_only`` on the ZooKeeper persistence backend is TaskFlow's: its kazoo client's.

TaskFlow hands the ZooKeeper backend's conf (URL query included) to kazoo,
whose ``read_only`` lets the client connect to a server in read-only mode;
writes still go to a writable server. A TaskFlow program that sets it must
keep writing through flowkit: flowkit's own "write nothing" is
``writable=False``, a name TaskFlow does not use. Real ZooKeeper of the session.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit.persistence import backends
from flowkit.persistence.base import Backend
from flowkit.persistence.models import FlowDetail, LogBook
from tests import services


def _kazoo_read_only(conn: Any) -> bool:
    """The ``read_only`` the backend's kazoo client was made with."""
    return bool(conn._store._client.read_only)


def _book() -> LogBook:
    book = LogBook("book")
    book.add(FlowDetail("flow", str(uuid.uuid4())))
    return book


@pytest.mark.parametrize("form", ["conf", "url"])
def test_read_only_goes_to_kazoo_and_the_backend_still_writes_as_in_taskflow(
    zookeeper_path_url: str, form: str
) -> None:
    services.require_module("kazoo", "kazoo")
    conf: Any = (
        {"connection": zookeeper_path_url, "read_only": True}
        if form == "conf"
        else f"{zookeeper_path_url}?read_only=true"
    )
    made = backends.fetch(conf)
    book = _book()
    try:
        with made.get_connection() as conn:
            conn.upgrade()  # creates the store, as a writable backend does
            conn.save_logbook(book)
            assert _kazoo_read_only(conn)  # may connect to a server in read-only mode
        assert made.writable
    finally:
        made.close()
    with backends.backend({"connection": zookeeper_path_url}) as plain, plain.get_connection() as conn:
        assert [fd.name for fd in conn.get_logbook(book.uuid)] == ["flow"]


def test_writable_false_refuses_writes_and_its_client_may_use_read_only_servers(
    zookeeper_path_url: str,
) -> None:
    services.require_module("kazoo", "kazoo")
    with backends.backend({"connection": zookeeper_path_url}) as plain, plain.get_connection() as conn:
        assert not _kazoo_read_only(conn)  # TaskFlow's default
    reader: Backend = backends.fetch(f"{zookeeper_path_url}?writable=false")
    try:
        with reader.get_connection() as conn:
            assert _kazoo_read_only(conn)  # it only reads: a read-only server serves it
            with pytest.raises(exc.StoreReadOnly):
                conn.save_logbook(_book())
    finally:
        reader.close()


def test_a_read_only_neither_true_nor_false_is_refused_naming_it(zookeeper_path_url: str) -> None:
    with pytest.raises(exc.StorageFailure, match="'read_only' must be true or false, not 'perhaps'"):
        backends.fetch({"connection": zookeeper_path_url, "read_only": "perhaps"})


@pytest.mark.parametrize("form", ["conf", "url"])
def test_the_kazoo_client_gets_every_client_option_taskflow_hands_it(
    zookeeper_path_url: str, form: str
) -> None:
    # TaskFlow makes the backend's client from its whole conf (kazoo_utils.make_client):
    # host order, retries and TLS settings too, not just hosts, timeout and read_only.
    services.require_module("kazoo", "kazoo")
    options = {"randomize_hosts": "true", "verify_certs": "false"}
    conf: Any = (
        {"connection": zookeeper_path_url, **options, "connection_retry": {"max_tries": 3}}
        if form == "conf"
        else f"{zookeeper_path_url}?randomize_hosts=true&verify_certs=false"
    )
    made = backends.fetch(conf)
    try:
        with made.get_connection() as conn:
            conn.upgrade()
            client = conn._store._client
            assert client.randomize_hosts is True
            assert client.verify_certs is False
            if form == "conf":
                assert client._conn_retry.max_tries == 3
    finally:
        made.close()


def test_a_client_option_that_is_no_yes_or_no_is_refused_when_the_backend_is_made(
    zookeeper_path_url: str,
) -> None:
    with pytest.raises(exc.StorageFailure, match="use_ssl"):
        backends.fetch({"connection": zookeeper_path_url, "use_ssl": "perhaps"})
