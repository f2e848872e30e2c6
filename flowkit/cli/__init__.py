"""The ``flowkit`` command line.

Each subcommand lives in its own module with a ``register(subparsers)`` function
that adds its parser and sets ``handler``; heavy imports (SQLAlchemy, redis) stay
inside the handlers so ``flowkit --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Iterator, Sequence

__all__ = ["main"]

#: subcommand name -> module defining ``register(subparsers)``.
_SUBCOMMANDS = {
    "cache": "flowkit.cli.cache",
    "conductor": "flowkit.cli.conductor",
    "db": "flowkit.cli.db",
    "run": "flowkit.cli.run",
    "flows": "flowkit.cli.flows",
    "graph": "flowkit.cli.graph",
    "monitor": "flowkit.cli.monitor",
    "jobs": "flowkit.cli.jobs",
    "worker": "flowkit.cli.worker",
    "workers": "flowkit.cli.workers",
}


def _leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers under ``parser`` that take a command's options (no subcommands of their own)."""
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        yield parser
    for action in subcommands:
        seen: set[int] = set()
        for sub in action.choices.values():
            if id(sub) not in seen:  # aliases share a parser
                seen.add(id(sub))
                yield from _leaf_parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    """The parser for every subcommand."""
    from flowkit.version import version_string

    parser = argparse.ArgumentParser(prog="flowkit", description="Run and look after flowkit flows.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeat for debug)")
    parser.add_argument("--version", action="version", version=f"flowkit {version_string()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _SUBCOMMANDS.values():
        importlib.import_module(module).register(subparsers)
    for leaf in _leaf_parsers(parser):
        # `flowkit run ... -v` is where a user adds it after a failure; it was "unrecognized
        # arguments: -v". SUPPRESS leaves the count made before the command as it is.
        leaf.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=argparse.SUPPRESS,
            help="log more (also before the command)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:  # the command that does not go through guarded(): db
        from flowkit.cli._common import stdout_closed

        return stdout_closed()
