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
