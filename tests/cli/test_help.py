"""Every ``flowkit ... --help`` page: plain text a shell user can read, naming what the command takes."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from flowkit.cli import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield " ".join(("flowkit", *path)), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if sub.prog.endswith(" " + name):  # aliases share a parser: visit it once
                    yield from _parsers(sub, (*path, name))


PARSERS = dict(_parsers(build_parser()))


def _subcommands(parser: argparse.ArgumentParser) -> bool:
    return any(isinstance(action, argparse._SubParsersAction) for action in parser._actions)


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_help_is_plain_text_with_a_description(command: str) -> None:
    parser = PARSERS[command]
    text = parser.format_help()
    # reST markup from a module docstring reads as noise in a terminal.
    assert "``" not in text, text
    assert ":mod:" not in text and ":func:" not in text, text
    assert parser.description, f"{command} --help says nothing about what it does"


def test_run_and_graph_say_they_take_spec_files() -> None:
    for command in ("flowkit run", "flowkit graph"):
        assert "spec file" in (PARSERS[command].description or ""), command


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_argument_says_what_it_is(command: str) -> None:
    # `flowkit jobs show --help` listed a bare "uuid" with nothing beside it.
    bare = [
        action.option_strings or action.dest
        for action in PARSERS[command]._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert bare == [], f"{command} --help: no words for {bare}"


def test_version_prints_flowkits_version(capsys: pytest.CaptureFixture[str]) -> None:
    # It said "the following arguments are required: COMMAND".
    from flowkit.version import version_string

    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"flowkit {version_string()}\n"


@pytest.mark.parametrize("command", sorted(c for c in PARSERS if not _subcommands(PARSERS[c])))
def test_verbose_is_taken_after_the_command_too(command: str) -> None:
    # "flowkit run TARGET -v" was "unrecognized arguments: -v"; only "flowkit -v run" worked.
    option_strings = {s for action in PARSERS[command]._actions for s in action.option_strings}
    assert {"-v", "--verbose"} <= option_strings, command


def test_verbose_before_and_after_the_command_counts() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "m:f", "-v"]).verbose == 1
    assert parser.parse_args(["-v", "-v", "run", "m:f"]).verbose == 2
    assert parser.parse_args(["run", "m:f"]).verbose == 0
