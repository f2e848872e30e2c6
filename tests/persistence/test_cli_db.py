"""``flowkit db``, run the way users run it: ``python -m flowkit db ...`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import flowkit
from flowkit.persistence import backends
from flowkit.persistence.backends.sqlalchemy import HEAD
from tests import services

_SOURCE_ROOT = str(Path(flowkit.__file__).resolve().parent.parent)


def _flowkit(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SOURCE_ROOT, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "flowkit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/flows.db"


def test_db_upgrade_creates_the_schema_and_current_prints_its_revision(sqlite_url: str) -> None:
    upgraded = _flowkit("db", "upgrade", "--connection", sqlite_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert HEAD in upgraded.stdout
    current = _flowkit("db", "current", "--connection", sqlite_url)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == HEAD
    backend = backends.fetch(sqlite_url)
    with backend.get_connection() as conn:
        conn.validate()
    backend.close()


def test_db_upgrade_twice_succeeds_both_times(sqlite_url: str) -> None:
    for _ in range(2):
        result = _flowkit("db", "upgrade", "--connection", sqlite_url)
        assert result.returncode == 0, result.stderr


def test_db_current_of_a_never_upgraded_database_prints_none(sqlite_url: str) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    path.touch()  # a database file nothing wrote to yet
    result = _flowkit("db", "current", "--connection", sqlite_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"
    assert path.stat().st_size == 0


def test_db_current_of_a_missing_sqlite_file_says_so_and_creates_nothing(sqlite_url: str) -> None:
    # It created an empty database there and printed "none", as for one never upgraded.
    path = sqlite_url.removeprefix("sqlite:///")
    result = _flowkit("db", "current", "--connection", sqlite_url)
    assert result.returncode == 1
    assert f"no SQLite database at '{path}': the file does not exist" in result.stderr, result.stderr
    assert not Path(path).exists()


def test_db_version_is_another_name_for_current(sqlite_url: str) -> None:
    assert _flowkit("db", "upgrade", "--connection", sqlite_url).returncode == 0
    result = _flowkit("db", "version", "--connection", sqlite_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == HEAD


def test_db_upgrade_of_an_unreachable_server_prints_one_masked_line_and_exits_1() -> None:
    url = f"postgresql://flowkit:hunter2@127.0.0.1:{services.free_port()}/flows"
    result = _flowkit("db", "upgrade", "--connection", url)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("flowkit db upgrade: error: ")
    assert "postgresql://flowkit:***@127.0.0.1" in lines[0]
    assert "hunter2" not in result.stderr


def test_db_upgrade_refuses_a_database_written_by_a_newer_flowkit(sqlite_url: str) -> None:
    assert _flowkit("db", "upgrade", "--connection", sqlite_url).returncode == 0
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as raw:
        raw.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    result = _flowkit("db", "upgrade", "--connection", sqlite_url)
    assert result.returncode == 1
    assert "schema revision 9999 is newer than this flowkit" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_current_of_a_store_without_revisions_is_a_usage_error() -> None:
    result = _flowkit("db", "current", "--connection", "memory://")
    assert result.returncode == 2  # bad usage, as the other commands' (it was 1)
    assert "only SQL databases" in result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "flowkit db current: error: memory:// (MemoryBackend) has no schema revisions; only SQL databases do"
    ]


def test_db_current_of_a_zookeeper_url_says_so_without_connecting() -> None:
    services.require_module("kazoo", "kazoo")
    url = f"zookeeper://flowkit:hunter2@127.0.0.1:{services.free_port()}/flows?timeout=30"
    result = _flowkit("db", "current", "--connection", url)
    # Nothing listens there: an attempt to connect would fail (exit 1) after the timeout.
    assert result.returncode == 2, result.stderr
    assert "(ZkBackend) has no schema revisions; only SQL databases do" in result.stderr
    assert "hunter2" not in result.stderr


def test_db_without_a_subcommand_prints_usage_and_exits_2() -> None:
    result = _flowkit("db")
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_db_upgrade_and_current_on_postgresql(postgresql_db_url: str) -> None:
    plain = postgresql_db_url.replace("+psycopg", "")  # the CLI picks psycopg 3 itself
    upgraded = _flowkit("db", "upgrade", "--connection", plain)
    assert upgraded.returncode == 0, upgraded.stderr
    current = _flowkit("db", "current", "--connection", plain)
    assert current.stdout.strip() == HEAD


def test_db_current_of_an_unreachable_server_says_it_once_and_v_adds_the_traceback() -> None:
    # The line went on with the whole cause again: the driver's message, SQLAlchemy's
    # class name and its "Background on this error" link.
    where = f"127.0.0.1:{services.free_port()}/flows"
    result = _flowkit("db", "current", "--connection", f"postgresql://flowkit:hunter2@{where}")
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and "hunter2" not in line
    assert line.startswith(
        f"flowkit db current: error: cannot connect to database postgresql://flowkit:***@{where}"
    )
    assert line.count("Connection refused") == 1 and "sqlalche.me" not in line, line
    verbose = _flowkit("-v", "db", "current", "--connection", f"postgresql://flowkit:hunter2@{where}")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_db_with_a_url_no_backend_takes_is_bad_usage() -> None:
    for command in ("upgrade", "current"):
        result = _flowkit("db", command, "--connection", "nosuch://somewhere")
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().endswith(
            "known schemes: dir, file, memory, mysql, postgres, postgresql, sqlite, zookeeper)"
        )
        assert "Could not find backend nosuch: No 'flowkit.persistence' driver found" in result.stderr


def test_a_sqlite_file_path_given_as_the_url_is_told_the_url_to_write() -> None:
    # It said only "no persistence backend for scheme 'flows.db'".
    result = _flowkit("db", "upgrade", "--connection", "flows.db")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().endswith("zookeeper); for a SQLite file, sqlite:///flows.db"), result.stderr
    absolute = _flowkit("db", "upgrade", "--connection", "/var/lib/app/flows.sqlite")
    assert absolute.stderr.strip().endswith("for a SQLite file, sqlite:////var/lib/app/flows.sqlite")
