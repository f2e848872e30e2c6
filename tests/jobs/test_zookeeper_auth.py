"""The ZooKeeper jobboard authenticates with the ``user:password@`` of its URL, and never shows the password.

Each test makes a node on the session's ZooKeeper whose ACL lets only the
digest user ``bob`` in, and puts a board below it. TaskFlow's board reads no
credentials (its ``make_client`` has no such option), so a URL's were
silently dropped and the board failed later on an authorization error; the
board now hands them to kazoo as digest ``auth_data``, as the ZooKeeper
persistence backend does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from flowkit import exceptions as exc
from flowkit.jobs import backends
from flowkit.persistence.backends import impl_zookeeper as zk_persistence
from tests import services

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

USER = "bob"
PASSWORD = "s3cret-Pw"


@pytest.fixture
def protected_path(zookeeper_server: services.ZooKeeperServer) -> Iterator[str]:
    """A node only digest user ``bob`` may read, write, create in or delete (deleted afterwards)."""
    services.require_module("kazoo", "kazoo")
    from kazoo.security import make_digest_acl  # type: ignore[import-untyped]  # kazoo has no types

    path = f"{zookeeper_server.root}/{uuid.uuid4().hex}"
    with zookeeper_server.client() as admin:
        admin.create(path, acl=[make_digest_acl(USER, PASSWORD, all=True)])
        try:
            yield path
        finally:
            admin.add_auth("digest", f"{USER}:{PASSWORD}")
            admin.delete(path, recursive=True)


def _url(server: services.ZooKeeperServer, userinfo: str, path: str) -> str:
    return f"zookeeper://{userinfo}{server.hosts}{path}/jobs"


def test_credentials_in_the_url_let_the_board_post_and_claim_on_a_protected_path(
    zookeeper_server: services.ZooKeeperServer, protected_path: str
) -> None:
    board = backends.fetch("guarded", _url(zookeeper_server, f"{USER}:{PASSWORD}@", protected_path))
    try:
        board.connect()
        job = board.post("build", details={"size": 1})
        claim = board.claim(job, "conductor-1")
        assert board.current_claim(job) == claim
        board.consume(job, "conductor-1", claim=claim)
        assert board.job_count == 0
    finally:
        board.close()


def test_credentials_on_an_open_path_change_nothing(request: pytest.FixtureRequest) -> None:
    """Adding digest credentials never fails by itself: a board on an open path works as without."""
    server: services.ZooKeeperServer = request.getfixturevalue("zookeeper_server")
    path = f"{server.root}/{uuid.uuid4().hex}"
    board = backends.fetch("open", _url(server, f"{USER}:{PASSWORD}@", path))
    try:
        board.connect()
        board.claim(board.post("build"), "conductor-1")
    finally:
        board.close()
        server.delete_tree(path)


@pytest.mark.parametrize("userinfo", [f"{USER}:wrong-pw@", "", "mallory:s3cret-Pw@"])
def test_wrong_or_missing_credentials_fail_naming_the_board_with_the_password_masked(
    zookeeper_server: services.ZooKeeperServer, protected_path: str, userinfo: str
) -> None:
    url = _url(zookeeper_server, userinfo, protected_path)
    board = backends.fetch("guarded", url)
    try:
        with pytest.raises(exc.JobFailure) as caught:
            board.connect()
    finally:
        board.close()
    message = str(caught.value)
    shown_user = userinfo.partition(":")[0]
    named = f"zookeeper://{shown_user}:***@" if userinfo else "zookeeper://"
    assert f"{named}{zookeeper_server.hosts}{protected_path}/jobs" in message
    assert "not authorized" in message
    assert "wrong-pw" not in message and PASSWORD not in message


def test_the_password_is_in_no_log_repr_or_where(
    zookeeper_server: services.ZooKeeperServer, protected_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    board = backends.fetch("guarded", _url(zookeeper_server, f"{USER}:{PASSWORD}@", protected_path))
    caplog.set_level(1)  # kazoo's own chatter too (it logs each request it sends at DEBUG and below)
    try:
        board.connect()
        board.claim(board.post("build"), "conductor-1")
        shown = [board.where, repr(board), str(board)]
    finally:
        board.close()
    assert board.where == f"zookeeper://{USER}:***@{zookeeper_server.hosts}{protected_path}/jobs"
    assert "Auth(" in caplog.text  # kazoo logged the authentication request, its credential masked
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in text for text in shown)


def test_the_persistence_backend_logs_no_password_either(
    zookeeper_server: services.ZooKeeperServer, protected_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = zk_persistence.ZkBackend(
        {"connection": f"zookeeper://{USER}:{PASSWORD}@{zookeeper_server.hosts}{protected_path}/books"}
    )
    caplog.set_level(1)
    try:
        with backend.get_connection() as connection:
            connection.upgrade()
    finally:
        backend.close()
    assert "Auth(" in caplog.text
    assert PASSWORD not in caplog.text
