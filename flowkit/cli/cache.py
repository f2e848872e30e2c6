"""``flowkit cache``: look at or empty a result cache.

::

    flowkit cache stats --cache sqlite:///cache.db
    flowkit cache clear --cache redis://localhost:6379/0

``stats`` prints the number of live entries; ``clear`` removes every entry and
prints how many there were. Errors are one line on stderr, with exit status 2
for a URL that names no store (an unknown scheme, a bad option) and 1 for a
store that cannot be reached.
"""

from __future__ import annotations

import argparse
from typing import Any

from flowkit.cli._common import FAILED, FROM_FILE, USAGE, CliError, guarded, one_line, url_value

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``cache`` command and its subcommands to the ``flowkit`` parser."""
    cache = subparsers.add_parser(
        "cache",
        help="look at or empty a result cache",
        description="Look at or empty the cache of results of tasks marked cache=True.",
    )
    commands = cache.add_subparsers(dest="cache_command", required=True, metavar="SUBCOMMAND")
    stats = commands.add_parser(
        "stats",
        help="print how many entries the cache holds",
        description="Print how many entries the cache holds.",
    )
    clear = commands.add_parser(
        "clear", help="remove every entry", description="Remove every entry of the cache."
    )
    for parser in (stats, clear):
        parser.add_argument(
            "--cache",
            required=True,
            type=url_value,
            metavar="URL",
            help="the cache store: memory://, dir:///path, sqlite:///path, postgresql://..., redis://..."
            + FROM_FILE,
        )
    stats.set_defaults(handler=guarded("flowkit cache stats", _stats))
    clear.set_defaults(handler=guarded("flowkit cache clear", _clear))


def _open(args: argparse.Namespace) -> Any:
    from flowkit.cache import open_store

    return open_store(args.cache)


def _stats(args: argparse.Namespace) -> int:
    return _run(args, lambda store: f"entries: {store.stats().entries}")


def _clear(args: argparse.Namespace) -> int:
    return _run(args, lambda store: f"cleared: {store.clear()}")


def _run(args: argparse.Namespace, action: Any) -> int:
    from flowkit import exceptions

    try:
        store = _open(args)
    except exceptions.InvalidEngineOption as err:  # the URL itself is wrong: bad usage
        raise CliError(one_line(err), status=USAGE) from err
    except exceptions.TaskFlowException as err:
        raise CliError(one_line(err), status=FAILED) from err
    try:
        print(action(store))
    except exceptions.TaskFlowException as err:
        raise CliError(one_line(err), status=FAILED) from err
    finally:
        store.close()
    return 0
