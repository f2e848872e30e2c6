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


def _takes_a_value(action: argparse.Action) -> bool:
    """An option given a value (not a flag, ``-v``, ``--help`` or a repeatable one, whose default is none)."""
    return (
        bool(action.option_strings)
        and action.nargs != 0
        and not isinstance(action, argparse._AppendAction)
        and action.default is not argparse.SUPPRESS
    )


@pytest.mark.parametrize("command", sorted(c for c in PARSERS if not _subcommands(PARSERS[c])))
def test_every_option_with_a_default_says_it_in_help(command: str) -> None:
    # `flowkit worker --help` said "seconds between heartbeats", not what it is unless given.
    silent = [
        action.option_strings[0]
        for action in PARSERS[command]._actions
        if _takes_a_value(action)
        and action.default is not None
        and "default" not in (action.help or "") % {**vars(action), "prog": command}
    ]
    assert silent == [], f"{command} --help: no default said for {silent}"


#: Options without a value of their own whose help must still say what is done without them.
UNSET_DEFAULTS = [
    ("flowkit worker", "--threads"),
    ("flowkit conductor", "--claim-expiry"),
    ("flowkit conductor", "--max-simultaneous-jobs"),
    ("flowkit conductor", "--max-dispatches"),
    ("flowkit jobs", "--claim-expiry"),
    ("flowkit flows list", "--state"),
]


@pytest.mark.parametrize(("command", "option"), UNSET_DEFAULTS)
def test_an_option_left_unset_says_what_is_done_without_it(command: str, option: str) -> None:
    # `flowkit worker --help` showed no default for --threads (five threads per CPU).
    [action] = [a for a in PARSERS[command]._actions if option in a.option_strings]
    assert "default" in (action.help or ""), f"{command} {option}: {action.help}"


def test_worker_help_shows_the_threads_and_heartbeat_defaults() -> None:
    text = " ".join(PARSERS["flowkit worker"].format_help().split())
    assert "tasks run at once (default: five per CPU, as the engines' thread pools;" in text, text
    assert "seconds between heartbeats (default: 1.0)" in text, text
