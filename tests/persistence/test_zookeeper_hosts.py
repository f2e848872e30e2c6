"""ZooKeeper ``host:port`` lists are read one way, by the persistence backend and the jobboard alike.

Each had its own reader: the backend took ``zk1:`` (an empty port) and
``zk1:٣`` (a digit kazoo cannot read) and split an unbracketed IPv6 address
at its last colon, where the board refused the first and took the others.
kazoo reads ``zk1:`` and ``zk1:0`` as port 2181 (so TaskFlow's backends take
them: flowkit does too, with a warning), fails on the others only when it
connects, and says ``bad hostname`` without naming the URL. Both now read the
list with :func:`flowkit.persistence.backends._urls.split_hosts`, and refuse a
bad host when they are made, naming the URL with its password masked.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit.jobs import backends as boards
from flowkit.persistence import backends
from flowkit.persistence.backends._urls import HostPort, Netloc, split_hosts, split_netloc
from flowkit.utils import kazoo_utils
from tests import services

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Each bad spelling, and what the error says is wrong with it. In a URL, Python's
# urlsplit refuses a few first: those errors name the URL too (URL_SAID).
BAD_HOSTS = [
    pytest.param(
        "zk1:abc", "the port of host 'zk1:abc' must be a number up to 65535, not 'abc'", id="word-port"
    ),
    pytest.param("zk1:65536", "not '65536'", id="port-too-big"),
    pytest.param("zk1:+5", "not '+5'", id="signed-port"),
    pytest.param("zk1:\u0663", "not '\u0663'", id="non-ascii-digit"),
    pytest.param("[::1]:x", "not 'x'", id="ipv6-word-port"),
    pytest.param("[::1", "'[::1' has no closing ']'", id="ipv6-unclosed"),
    pytest.param("[::1]x", "'[::1]x' has 'x' after its ']'", id="ipv6-trailing"),
    pytest.param("[]:2181", "'[]:2181' names no host", id="ipv6-empty"),
    pytest.param("[zk1]:2181", "'[zk1]:2181' has no IPv6 address in its brackets", id="ipv6-not-an-address"),
    pytest.param("::1", "an IPv6 address goes in brackets", id="ipv6-bare"),
    pytest.param(":2181", "':2181' names no host", id="no-host"),
    pytest.param("zk1:2181,", "an empty host", id="trailing-comma"),
    pytest.param("zk1:2181,,zk2", "an empty host", id="double-comma"),
]
URL_SAID = {
    "[::1": "Invalid IPv6 URL",
    "[]:2181": "does not appear to be an IPv4 or IPv6 address",
    "[zk1]:2181": "does not appear to be an IPv4 or IPv6 address",
}


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        ("zk1", (HostPort("zk1", None),)),
        ("zk1:2181", (HostPort("zk1", 2181),)),
        ("zk1:1,zk2:65535", (HostPort("zk1", 1), HostPort("zk2", 65535))),
        (" zk1:2181 , zk2 ", (HostPort("zk1", 2181), HostPort("zk2", None))),  # kazoo strips them too
        ("[::1]:2181,[fe80::1]", (HostPort("::1", 2181), HostPort("fe80::1", None))),
        ("zk1:2181,zk2/chroot/x", (HostPort("zk1", 2181), HostPort("zk2", None))),  # kazoo's chroot
        ("", ()),
    ],
)
def test_split_hosts_reads_what_kazoo_reads(hosts: str, expected: tuple[HostPort, ...]) -> None:
    assert split_hosts(hosts) == expected


@pytest.mark.parametrize("hosts", ["zk1:", "zk1:0", "zk1:00", "[::1]:"])
def test_no_port_is_the_default_port_as_kazoo_reads_it_with_a_warning(
    hosts: str, caplog: pytest.LogCaptureFixture
) -> None:
    # TaskFlow's backends hand such a list to kazoo, which connects to port 2181:
    # refusing it would reject a configuration that works there.
    services.require_module("kazoo", "kazoo")
    from kazoo.hosts import collect_hosts

    with caplog.at_level("WARNING", logger="flowkit"):
        (found,) = split_hosts(hosts)
    assert found.port is None
    assert collect_hosts(hosts)[0][0][1] == 2181
    assert [r.getMessage() for r in caplog.records] == [
        f"ZooKeeper host {hosts!r} gives no port: the default port is used, as kazoo does"
    ]


@pytest.mark.parametrize(("hosts", "said"), BAD_HOSTS)
def test_split_hosts_refuses_a_bad_host_saying_what_is_wrong(hosts: str, said: str) -> None:
    with pytest.raises(ValueError) as caught:
        split_hosts(hosts)
    assert said in str(caught.value)


@pytest.mark.parametrize(("hosts", "said"), BAD_HOSTS)
@pytest.mark.parametrize("spelled", ["url", "conf"])
def test_the_backend_refuses_a_bad_host_naming_its_url(hosts: str, said: str, spelled: str) -> None:
    services.require_module("kazoo", "kazoo")
    conf: dict[str, Any]
    if spelled == "url":
        conf = {"connection": f"zookeeper://bob:s3cret@{hosts}/flows"}
    else:
        conf = {"connection": "zookeeper://", "hosts": hosts, "path": "/flows"}
    with pytest.raises(exc.StorageFailure) as caught:
        backends.fetch(conf)
    said = URL_SAID.get(hosts, said) if spelled == "url" else said
    message = str(caught.value)
    assert said in message, message
    assert "zookeeper://" in message and "/flows" in message, message
    assert "s3cret" not in message, message
    assert message.count(said) == 1, message  # the cause is said once


@pytest.mark.parametrize(("hosts", "said"), BAD_HOSTS)
@pytest.mark.parametrize("spelled", ["url", "conf"])
def test_the_jobboard_refuses_a_bad_host_naming_its_url(hosts: str, said: str, spelled: str) -> None:
    services.require_module("kazoo", "kazoo")
    conf: dict[str, Any]
    if spelled == "url":
        conf = {"board": f"zookeeper://bob:s3cret@{hosts}/jobs"}
    else:
        conf = {"board": "zookeeper", "hosts": hosts, "path": "/jobs"}
    with pytest.raises(ValueError) as caught:
        boards.fetch("board-1", conf)
    said = URL_SAID.get(hosts, said) if spelled == "url" else said
    message = str(caught.value)
    assert said in message, message
    if said not in URL_SAID.values():  # urlsplit's refusal comes before the board is made
        assert "'board-1'" in message, message
    assert "zookeeper://" in message and "/jobs" in message, message
    assert "s3cret" not in message, message


@pytest.mark.parametrize(
    ("hosts", "read"),
    [
        ("zk1:2181,zk2", [("zk1", 2181), ("zk2", 2181)]),
        ("[::1]:2181,[fe80::1]", [("::1", 2181), ("fe80::1", 2181)]),  # the backend gave kazoo '::1:2181'
        ("bob:s3cret@zk1", [("zk1", 2181)]),
    ],
)
def test_good_hosts_reach_kazoo_as_written(hosts: str, read: list[tuple[str, int]]) -> None:
    services.require_module("kazoo", "kazoo")
    from kazoo.hosts import collect_hosts  # type: ignore[import-untyped]

    backend = backends.fetch({"connection": f"zookeeper://{hosts}/flows"})
    board = boards.fetch("b", {"board": f"zookeeper://{hosts}/jobs"})
    try:
        assert collect_hosts(backend._client_options["hosts"]) == (read, None)
        assert collect_hosts(board._client_options["hosts"]) == (read, None)
        assert "s3cret" not in repr(backend) and "s3cret" not in board.where
    finally:
        backend.close()
        board.close()


@pytest.mark.parametrize(
    "hosts",
    [
        "zk1:2181,zk2:2182",
        ["zk1:2181", "zk2:2182"],
        ("zk1:2181", "zk2:2182"),
        {"zk1": 2181, "zk2": 2182},  # kazoo_utils.make_client's host-to-port dict, as TaskFlow's
    ],
    ids=["text", "list", "tuple", "dict"],
)
def test_hosts_are_taken_in_every_form_taskflow_takes(hosts: Any) -> None:
    # A dict reached kazoo as the text "{'zk1': 2181, ...}" and the board refused it.
    services.require_module("kazoo", "kazoo")
    taskflow = pytest.importorskip("taskflow.persistence.backends")
    theirs = taskflow.fetch({"connection": "zookeeper://", "hosts": hosts})
    try:
        assert theirs._client.hosts == [("zk1", 2181), ("zk2", 2182)]
    finally:
        theirs.close()
    backend = backends.fetch({"connection": "zookeeper://", "hosts": hosts})
    board = boards.fetch("b", {"board": "zookeeper", "hosts": hosts})
    try:
        assert backend._client_options["hosts"] == "zk1:2181,zk2:2182"
        assert board.where == "zookeeper://zk1:2181,zk2:2182/flowkit/jobs"
    finally:
        backend.close()
        board.close()


@pytest.mark.parametrize(
    ("netloc", "expected", "auth"),
    [
        ("zk1:2181", Netloc(None, None, "zk1:2181"), []),
        ("bob:s3cret@zk1", Netloc("bob", "s3cret", "zk1"), [("digest", "bob:s3cret")]),
        ("bob@zk1", Netloc("bob", None, "zk1"), [("digest", "bob:")]),
        # A password without a user is still credentials: passed on, not dropped unseen.
        (":s3cret@zk1", Netloc("", "s3cret", "zk1"), [("digest", ":s3cret")]),
        ("b%40b:p%3Aw@zk1", Netloc("b@b", "p:w", "zk1"), [("digest", "b@b:p:w")]),
    ],
)
def test_a_urls_user_info_is_read_once_into_digest_credentials(
    netloc: str, expected: Netloc, auth: list[tuple[str, str]]
) -> None:
    found = split_netloc(netloc)
    assert found == expected
    assert kazoo_utils.digest_auth_data(found.username, found.password) == auth
