"""``@PATH`` for every URL option: a URL read from a file never shows in ``ps``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit.cli import build_parser
from flowkit.cli._common import url_value
from tests.cli.conftest import flowkit_cmd, flowkit_json


def _commands(
    parser: argparse.ArgumentParser, prog: str = "flowkit"
) -> Iterator[tuple[str, argparse.Action]]:
    """Every option of every (sub)command, with the command's name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prog} {name}")
        elif action.option_strings:
            yield prog, action


def _takes_a_url(action: argparse.Action) -> bool:
    return action.metavar == "URL" or action.dest == "engine"  # an engine URI holds its Redis URL


def test_every_url_option_of_every_command_takes_at_path() -> None:
    url_options = [(prog, action) for prog, action in _commands(build_parser()) if _takes_a_url(action)]
    found = {f"{prog} {action.option_strings[0]}" for prog, action in url_options}
    # The commands that take URLs, so that a new one cannot be missed by this test's walk.
    for expected in (
        "flowkit run --connection",
        "flowkit run --engine",
        "flowkit flows list --connection",
        "flowkit flows resume --engine",
        "flowkit db import-taskflow --from",
        "flowkit cache stats --cache",
        "flowkit worker --redis",
        "flowkit workers --redis",
        "flowkit jobs --board",
        "flowkit conductor --board",
        "flowkit conductor --connection",
        "flowkit monitor --connection",
    ):
        assert expected in found, sorted(found)
    missing = sorted(
        f"{prog} {action.option_strings[0]}" for prog, action in url_options if action.type is not url_value
    )
    assert not missing, f"URL options that do not take @PATH: {missing}"


def test_a_url_is_read_from_its_file_stripped(tmp_path: Path) -> None:
    path = tmp_path / "url"
    path.write_text("  postgresql://user:pw@host/db\n")
    assert url_value(f"@{path}") == "postgresql://user:pw@host/db"
    assert url_value("sqlite:///plain.db") == "sqlite:///plain.db"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot read the URL from file"), ("", "is empty"), ("a://\nb://", "more than one line")],
)
def test_a_bad_url_file_is_named_and_exits_2(tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "url"
    if content is not None:
        path.write_text(content)
    done = flowkit_cmd("flows", "list", "--connection", f"@{path}")
    assert done.returncode == 2, done.stderr
    assert reason in done.stderr and str(path) in done.stderr, done.stderr


def test_run_and_list_with_the_connection_from_a_file(tmp_path: Path) -> None:
    url_file = tmp_path / "db-url"
    url_file.write_text(f"sqlite:///{tmp_path}/flows.db\n")
    done = flowkit_cmd(
        "run", "tests.cli._flows:make_shop", "--store", "amount=5", "--connection", f"@{url_file}"
    )
    assert done.returncode == 0, done.stderr
    flows = flowkit_json("flows", "list", "--connection", f"@{url_file}")
    assert [flow["name"] for flow in flows] == ["shop"], flows


def test_workers_lists_with_the_redis_url_from_a_file(tmp_path: Path, redis_flushed_url: str) -> None:
    url_file = tmp_path / "redis-url"
    url_file.write_text(redis_flushed_url)
    assert flowkit_json("workers", "--redis", f"@{url_file}") == []
