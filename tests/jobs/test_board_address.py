"""What identifies a jobboard, read from its URL (``flowkit.jobs.backends._address``)."""

from __future__ import annotations

import pytest

from flowkit.jobs.backends._address import BoardAddress, board_address


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # Redis: database 0 by default, from the path or ?db=; the default port; host case;
        # a trailing slash; the password or user given or not; query order.
        ("redis://h:6379/0", "redis://h:6379"),
        ("redis://h:6379/0", "redis://h/"),
        ("redis://h:6379/2", "redis://H:6379/2/"),
        ("redis://:***@h:6379/0", "redis://h:6379/0"),
        ("redis://user:***@h/0", "redis://other:secret@h/0"),
        ("redis://h/0?namespace=ns&db=3", "redis://h/?db=3&namespace=ns"),
        ("redis://h/0", "redis://h/0?namespace=flowkit"),
        ("redis://h/?db=1&db=2", "redis://h/1"),  # redis-py reads the first ?db=
        ("redis://h/0", "rediss://h/0"),
        # No namespace (the board's ``namespace: None``): any yes word, any place in the query.
        ("redis://h/0?no_namespace=true", "redis://h/?db=0&no_namespace=1"),
        ("redis://h/0?no_namespace=false", "redis://h/0"),
        # ZooKeeper: the default port and path, host order and case, trailing slashes.
        ("zookeeper://a:2181,b:2181/flowkit/jobs", "zk://B,a/flowkit/jobs/"),
        ("zookeeper://a", "zookeeper://a:2181/flowkit/jobs"),
        ("zookeeper://[::1]:2181/p", "zookeeper://[::1]/p/"),
        # etcd: the default port and path.
        ("etcd://h", "etcd://h:2379/jobboard"),
    ],
)
def test_two_spellings_of_one_board_have_one_address(one: str, other: str) -> None:
    assert board_address(one) == board_address(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("redis://h/0", "redis://h/1"),
        ("redis://h/0", "redis://h/0?db=1"),  # redis-py reads ?db= before the path
        ("redis://h:6379/0", "redis://h:6380/0"),
        ("redis://h/0", "redis://g/0"),
        ("redis://h/0?namespace=a", "redis://h/0?namespace=b"),
        # No namespace at all is neither the default one nor the empty one (keys ``:listings``).
        ("redis://h/0?no_namespace=true", "redis://h/0"),
        ("redis://h/0?no_namespace=true", "redis://h/0?namespace="),
        ("zookeeper://a/p", "zookeeper://a/q"),
        ("zookeeper://a,b/p", "zookeeper://a/p"),
        ("etcd://h/p", "etcd://h/q"),
        ("redis://h/0", "zookeeper://h/0"),
        ("custom://h/x", "custom://h/y"),
    ],
)
def test_different_boards_have_different_addresses(one: str, other: str) -> None:
    assert board_address(one) != board_address(other)


def test_an_address_names_its_parts() -> None:
    assert board_address("redis://:***@H/3?namespace=ns") == BoardAddress(
        kind="redis", servers=frozenset({"h:6379"}), database=3, prefix="ns"
    )
    assert board_address("zk://b:2182,A") == BoardAddress(
        kind="zookeeper", servers=frozenset({"a:2181", "b:2182"}), database=None, prefix="/flowkit/jobs"
    )
    # A kind flowkit does not know: its URL's text, less any user and password, is all there is.
    assert board_address("custom://u:***@h/x?y=1") == BoardAddress(
        kind="custom", servers=frozenset({"h"}), database=None, prefix="/x?y=1"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "redis://:pw@h/orders",
            "jobboard URL 'redis://:***@h/orders': the URL's database must be a number (/0), not '/orders'",
        ),
        ("redis://h/0?db=x", "jobboard URL 'redis://h/0?db=x': the URL's database must be a number, not 'x'"),
        (
            "redis://h/0?namespace=a&no_namespace=true",
            "jobboard URL 'redis://h/0?namespace=a&no_namespace=true': the URL names namespace 'a' and"
            " no_namespace=true: give one",
        ),
        (
            "redis://h/0?no_namespace=maybe",
            "jobboard URL 'redis://h/0?no_namespace=maybe': no_namespace must be true or false, not 'maybe'",
        ),
        (
            "zookeeper://h:port/p",
            "jobboard URL 'zookeeper://h:port/p': Port could not be cast to integer value as 'port'",
        ),
    ],
)
def test_a_url_naming_no_board_is_refused_naming_it(url: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        board_address(url)
    assert str(raised.value) == message


def test_the_differences_of_two_addresses_are_said_part_by_part() -> None:
    zk, other = board_address("zk://a/p"), board_address("zookeeper://a:2182,b/q")
    assert zk.differences(other) == "servers a:2181, not a:2182,b:2181; path '/p', not '/q'"
    assert board_address("redis://h/0").differences(zk) == (
        "kind redis, not zookeeper; servers h:6379, not a:2181; database 0, not None;"
        " namespace 'flowkit', not '/p'"
    )
    assert zk.differences(board_address("zookeeper://A:2181/p/")) == ""
    assert board_address("redis://h/0?no_namespace=yes").differences(board_address("redis://h/0")) == (
        "namespace none, not 'flowkit'"
    )
