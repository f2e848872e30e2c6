"""Finding backends by URL: flowkit.persistence.backends.fetch and backend(), and URL masking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit.persistence import backends
from flowkit.persistence.backends import _urls
from flowkit.persistence.backends.impl_dir import DirBackend
from flowkit.persistence.backends.impl_memory import MemoryBackend
from flowkit.persistence.backends.impl_zookeeper import ZkBackend
from flowkit.persistence.models import FlowDetail, LogBook


def test_fetch_accepts_a_plain_url_or_a_conf_dict() -> None:
    assert isinstance(backends.fetch("memory://"), MemoryBackend)
    assert isinstance(backends.fetch({"connection": "memory://"}), MemoryBackend)
    assert isinstance(backends.fetch({"connection": "memory"}), MemoryBackend)


def test_fetch_dir_by_url_or_by_path_option(tmp_path: Path) -> None:
    by_url = backends.fetch(f"dir://{tmp_path}")
    by_file_url = backends.fetch(f"file://{tmp_path}")
    by_conf = backends.fetch({"connection": "dir", "path": str(tmp_path)})
    for made in (by_url, by_file_url, by_conf):
        assert isinstance(made, DirBackend) and made.path == str(tmp_path)
    assert not list(tmp_path.iterdir())  # fetch does no I/O


def test_urls_without_an_authority_name_their_backend_as_in_taskflow(tmp_path: Path) -> None:
    # TaskFlow's users write {"connection": "memory:"} and {"connection": "dir:", "path": ...}.
    assert isinstance(backends.fetch({"connection": "memory:"}), MemoryBackend)
    assert backends.fetch("memory:?a=b").conf["a"] == "b"
    for scheme in ("dir:", "file:"):
        made = backends.fetch({"connection": scheme, "path": str(tmp_path)})
        assert isinstance(made, DirBackend) and made.path == str(tmp_path)
    by_path_url = backends.fetch(f"dir:{tmp_path}")
    assert isinstance(by_path_url, DirBackend) and by_path_url.path == str(tmp_path)


def test_fetch_merges_url_query_options_without_overriding_the_dict(tmp_path: Path) -> None:
    made = backends.fetch({"connection": f"dir://{tmp_path}?fsync=true&lock_timeout=5", "lock_timeout": "9"})
    assert made.conf["fsync"] == "true" and made.conf["lock_timeout"] == "9"


def test_backend_conf_is_read_only() -> None:
    made = backends.fetch("memory://")
    with pytest.raises(TypeError):
        made.conf["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize("conf", [["memory://"], None, 3])
def test_a_conf_that_is_neither_a_url_nor_a_mapping_is_a_type_error(conf: Any) -> None:
    with pytest.raises(TypeError, match="URL or a mapping"):
        backends.fetch(conf)


def test_dialect_driver_schemes_select_the_sqlalchemy_backend() -> None:
    pytest.importorskip("sqlalchemy")
    from flowkit.persistence.backends.impl_sqlalchemy import SQLAlchemyBackend

    for url in ("sqlite://", "postgresql+psycopg://u:pw@127.0.0.1:1/db", "mysql+pymysql://u@127.0.0.1:1/db"):
        made = backends.fetch(url)
        try:
            assert isinstance(made, SQLAlchemyBackend)
        finally:
            made.close()


def test_unknown_scheme_raises_not_found_listing_known_ones_with_password_masked() -> None:
    with pytest.raises(exc.NotFound) as caught:
        backends.fetch("nosuch+driver://user:hunter2@host/db")
    message = str(caught.value)
    assert "'nosuch'" in message and "memory" in message and "zookeeper" in message
    assert "hunter2" not in message and "***" in message


def test_malformed_url_raises_storage_failure_with_password_masked() -> None:
    with pytest.raises(exc.StorageFailure) as caught:
        backends.fetch("zookeeper://user:hunter2@host:notaport/path")
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
    with pytest.raises(exc.StorageFailure):
        backends.fetch({"connection": "9bad://x"})
    with pytest.raises(exc.StorageFailure):
        backends.fetch({"path": "/x"})


def test_dir_url_with_a_host_part_is_refused() -> None:
    with pytest.raises(exc.StorageFailure, match="absolute path"):
        backends.fetch("dir://relative/path")


def test_backend_context_manager_upgrades_and_closes(tmp_path: Path) -> None:
    with backends.backend(f"dir://{tmp_path}/store") as made:
        assert (tmp_path / "store" / "books").is_dir()
        with made.get_connection() as conn:
            conn.validate()


def test_zookeeper_conf_keys_and_url_parts() -> None:
    made = backends.fetch("zookeeper://u:pw@h1:2181,h2:2182/some/root?timeout=3")
    assert isinstance(made, ZkBackend) and made.path == "/some/root"
    by_keys = backends.fetch({"connection": "zookeeper", "hosts": ["h1:1", "h2:2"]})
    assert isinstance(by_keys, ZkBackend) and by_keys.path == "/flowkit"


def test_unreachable_zookeeper_raises_storage_failure_naming_the_masked_url() -> None:
    pytest.importorskip("kazoo")
    made = backends.fetch("zookeeper://u:hunter2@127.0.0.1:9/x?timeout=0.2")
    try:
        with pytest.raises(exc.StorageFailure) as caught:
            made.get_connection()
    finally:
        made.close()
    assert "127.0.0.1:9" in str(caught.value) and "hunter2" not in str(caught.value)


def test_dir_backends_in_two_objects_share_one_store(tmp_path: Path) -> None:
    book = LogBook("b")
    book.add(FlowDetail("f", "fu"))
    with backends.backend(f"dir://{tmp_path}") as first, first.get_connection() as conn:
        conn.save_logbook(book)
    with backends.backend(f"dir://{tmp_path}") as second, second.get_connection() as conn:
        assert len(conn.get_logbook(book.uuid)) == 1


def test_dir_recovers_a_multi_file_write_left_half_done(tmp_path: Path) -> None:
    from flowkit.persistence.models import TaskDetail

    made = backends.fetch(f"dir://{tmp_path}")
    conn = made.get_connection()
    conn.upgrade()
    fd = FlowDetail("f", "fu")
    book = LogBook("b")
    book.add(fd)
    conn.save_logbook(book)
    # Simulate a writer killed after writing its journal but before applying it.
    ads = [TaskDetail(f"t{i}", f"a{i}") for i in range(3)]
    journal_doc = {
        "version": 1,
        "writes": [
            [
                "atoms",
                ad.uuid,
                f'{{"type":"TaskDetail","atom":{{"name":"{ad.name}","uuid":"{ad.uuid}"}},"flow":"fu"}}',
            ]
            for ad in ads
        ]
        + [
            [
                "flows",
                "fu",
                '{"flow":{"name":"f","uuid":"fu"},"book":"' + book.uuid + '","atoms":["a0","a1","a2"]}',
            ]
        ],
    }
    import json

    (tmp_path / "journal.json").write_text(json.dumps(journal_doc))
    got = conn.get_flow_details("fu")
    assert {ad.uuid for ad in got} == {"a0", "a1", "a2"}
    assert not (tmp_path / "journal.json").exists()


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://bob:s3cret@db:5432/x", "postgresql://bob:***@db:5432/x"),
        ("postgresql+psycopg://bob:p@ss@db/x", "postgresql+psycopg://bob:***@db/x"),
        ("mysql://bob@db/x?password=s3cret&a=1", "mysql://bob@db/x?password=***&a=1"),
        ("zookeeper://h1:1,h2:2/root", "zookeeper://h1:1,h2:2/root"),
        ("not a url :pw@", "not a url :***@"),
        # Malformed ones end up in error messages most of all.
        ("bob:s3cret@db/x", "bob:***@db/x"),
        ("postgresql:/bob:s3cret@db/x", "postgresql:/bob:***@db/x"),
        ("host=db password=s3cret dbname=x", "host=db password=*** dbname=x"),
        ("host=db password='s3 cret' dbname=x", "host=db password=*** dbname=x"),
        # A raw '#' or '?' in a password: drivers take these URLs, so they reach errors.
        ("postgresql://bob:s3#cret@db/x", "postgresql://bob:***@db/x"),
        ("redis://:s3?cret@db:6379/0", "redis://:***@db:6379/0"),
        ("mysql://bob:a?b#c@db/x?charset=utf8", "mysql://bob:***@db/x?charset=utf8"),
        # An '@' only in the query is no user info.
        ("sqlite:///x.db?owner=a@b", "sqlite:///x.db?owner=a@b"),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert _urls.mask_url(url) == masked


@pytest.mark.parametrize(
    "conf",
    ["bob:s3cret@db/x", "host=db password=s3cret dbname=x", {"connection": "postgresql:/bob:s3cret@db/x"}],
)
def test_a_malformed_connection_is_refused_without_its_password(conf: Any) -> None:
    with pytest.raises(exc.TaskFlowException) as caught:
        backends.fetch(conf)
    assert "s3cret" not in str(caught.value)


def test_parse_url_splits_multiple_hosts() -> None:
    parsed = _urls.parse_url("zookeeper://u:p%40ss@h1:1,[::1]:2,h3/chroot")
    assert parsed.hosts == (("h1", 1), ("::1", 2), ("h3", None))
    assert (parsed.username, parsed.password, parsed.path) == ("u", "p@ss", "/chroot")


def test_a_zookeeper_path_never_upgraded_says_so_on_the_first_write(zookeeper_path_url: str) -> None:
    # Its missing nodes failed each write's transaction as a race would, so a save
    # was tried 20 times and reported "too much contention, gave up": it is the path
    # that was never made (engines.load(backend={"connection": URL}) does not upgrade).
    backend = backends.fetch(zookeeper_path_url)
    try:
        with backend.get_connection() as conn, pytest.raises(exc.StorageFailure) as failed:
            conn.save_logbook(LogBook("book"))
    finally:
        backend.close()
    message = str(failed.value)
    assert "contention" not in message, message
    assert "is missing" in message and "run upgrade() first" in message, message
