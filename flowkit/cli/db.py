"""``flowkit db``: create or migrate a persistence database, and show its revision.

::

    flowkit db upgrade --connection sqlite:///flows.db
    flowkit db current --connection postgresql://flowkit@db.example/flowkit
    flowkit db import-taskflow --from postgresql://tf@db.example/taskflow \
        --connection postgresql://flowkit@db.example/flowkit

``upgrade`` works for every backend (document stores just create their root);
``current`` (alias ``version``) prints the schema revision of a SQL database,
or ``none`` when it was never upgraded. ``import-taskflow`` copies every
logbook of a TaskFlow SQL database into a flowkit backend, leaving the
TaskFlow database as it was. Errors are one line on stderr and exit status
1, or 2 for bad usage (a URL no backend takes, ``current`` of a backend that
is not a SQL database); passwords in URLs are masked wherever they are
shown; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any

from flowkit.cli._common import (
    FAILED,
    FROM_FILE,
    CliError,
    is_sql_backend,
    missing_store,
    one_line,
    url_value,
)

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``db`` command and its subcommands to the ``flowkit`` parser."""
    db = subparsers.add_parser(
        "db",
        help="create or migrate a persistence database",
        description="Create or migrate the schema of a persistence backend.",
    )
    commands = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    upgrade = commands.add_parser(
        "upgrade",
        help="create the schema or migrate it to this flowkit's newest revision",
        description="Create the schema, or migrate it to the newest revision this flowkit knows.",
    )
    current = commands.add_parser(
        "current",
        aliases=["version"],
        help="print the schema revision of a SQL database",
        description="Print the schema revision of a SQL database ('none' if never upgraded).",
    )
    imports = commands.add_parser(
        "import-taskflow",
        help="copy a TaskFlow SQL database's logbooks into a flowkit backend",
        description=(
            "Copy every logbook, flow detail and atom detail of a TaskFlow SQL database into a "
            "flowkit backend (created or upgraded first). The TaskFlow database is only read; "
            "stop the TaskFlow processes using it first, or their later writes are not copied."
        ),
    )
    imports.add_argument(
        "--from",
        dest="source",
        required=True,
        type=url_value,
        metavar="URL",
        help="the TaskFlow database, as TaskFlow's 'connection' option names it" + FROM_FILE,
    )
    for parser in (upgrade, current, imports):
        parser.add_argument(
            "--connection",
            required=True,
            type=url_value,
            metavar="URL",
            help="the backend URL, for example sqlite:///flows.db or postgresql://user:pw@host/db"
            + FROM_FILE,
        )
    upgrade.set_defaults(handler=_upgrade)
    current.set_defaults(handler=_current)
    imports.set_defaults(handler=_import_taskflow)


def _fail(args: argparse.Namespace, err: BaseException, status: int = FAILED) -> int:
    from flowkit.persistence.backends._urls import mask_url

    command = f"flowkit db {args.db_command}"
    # one_line: a flowkit error's str() appends its causes, which repeat the message.
    message = one_line(err) or type(err).__name__
    if getattr(args, "verbose", 0):
        traceback.print_exception(err, file=sys.stderr)
    # A message may quote the URL unmasked (a driver echoing its DSN): mask it again.
    for url in (args.connection, getattr(args, "source", None)):
        if url:
            message = message.replace(url, mask_url(url))
    print(f"{command}: error: {message}", file=sys.stderr)
    return status


def _fetch(args: argparse.Namespace, *, writable: bool = True) -> Any:
    """The backend ``--connection`` names (not ``writable``: it creates and writes nothing).

    Raises:
        CliError: no backend has that URL's scheme (bad usage, status 2, as
            for every other command).
    """
    from flowkit import exceptions as exc
    from flowkit.persistence import backends

    conf = {"connection": args.connection, "writable": writable}
    try:
        return backends.fetch(conf)
    except (exc.NotFound, ValueError) as err:
        raise CliError(one_line(err)) from err


def _upgrade(args: argparse.Namespace) -> int:
    from flowkit.persistence.backends._urls import mask_url

    try:
        backend = _fetch(args)
        try:
            with backend.get_connection() as conn:
                conn.upgrade()
                revision = _revision_of(conn)
        finally:
            backend.close()
    except CliError as err:
        return _fail(args, err, err.status)
    except Exception as err:  # every other failure becomes one line and status 1
        return _fail(args, err)
    where = mask_url(args.connection)
    print(f"{where}: schema at revision {revision}" if revision else f"{where}: up to date")
    return 0


def _current(args: argparse.Namespace) -> int:
    from flowkit import exceptions as exc
    from flowkit.persistence.backends._urls import mask_url

    try:
        backend = _fetch(args, writable=False)
        try:
            if not is_sql_backend(backend):
                # The user's words are wrong, not the store: said before any connection is
                # tried (a ZooKeeper server out of reach would hide it behind a timeout).
                where = mask_url(args.connection)
                raise CliError(
                    f"{where} ({type(backend).__name__}) has no schema revisions; only SQL databases do"
                )
            try:
                with backend.get_connection() as conn:
                    revision = _revision_of(conn)
            except exc.StoreMissing as err:
                raise missing_store(args.connection, err) from err
        finally:
            backend.close()
    except CliError as err:
        return _fail(args, err, err.status)
    except Exception as err:  # every other failure becomes one line and status 1
        return _fail(args, err)
    print(revision or "none")
    return 0


def _import_taskflow(args: argparse.Namespace) -> int:
    from flowkit.persistence.backends.sqlalchemy.from_taskflow import import_taskflow

    try:
        summary = import_taskflow(args.source, args.connection)
    except Exception as err:  # every failure becomes one line and status 1
        return _fail(args, err)
    print(
        f"{summary.source} -> {summary.target}: copied {summary.logbooks} logbook(s), "
        f"{summary.flow_details} flow detail(s), {summary.atom_details} atom detail(s)"
    )
    if summary.orphans:
        print(f"skipped {summary.orphans} flow detail(s) that belong to no logbook", file=sys.stderr)
    return 0


def _revision_of(conn: Any) -> str | None:
    reader = getattr(conn, "current_revision", None)
    return None if reader is None else reader()
