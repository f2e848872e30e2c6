"""``flowkit jobs``: post, list, show and trash jobs on a jobboard (operator commands).

::

    flowkit jobs --board redis://127.0.0.1:6379/0 --connection sqlite:///flows.db \\
        post boot-vm-42 --factory myservice.flows.boot --args '[42]' --store '{"vm_id": 42}'
    flowkit jobs --board redis://127.0.0.1:6379/0 list [--json]
    flowkit jobs --board redis://127.0.0.1:6379/0 show JOB_UUID
    flowkit jobs --board redis://127.0.0.1:6379/0 trash JOB_UUID --reason "operator: bad input"
    flowkit jobs --board redis://127.0.0.1:6379/0 conductors [--json]

``post`` saves a logbook holding one flow detail that records the flow
factory (so any conductor can rebuild the flow) and posts a job naming it.
``trash`` claims the job as ``flowkit-cli`` and sets it aside with the reason;
a job someone holds cannot be trashed. Bad arguments exit with status 2,
runtime failures with 1.

What the text listings show of a job or a conductor (its name, claimant,
trash reason, host) is any string a process on the board wrote: control
characters, line separators and bidi controls are escaped (:func:`log_safe`),
so that none repaints the terminal or forges a row; ``--json`` escapes them itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any

from flowkit._utils.text import log_safe
from flowkit.cli._common import FAILED, CliError, file_path_hint, guarded, one_line
from flowkit.cli.conductor import board_arguments, open_board, open_persistence

__all__ = ["register"]

#: The name ``flowkit jobs trash`` claims jobs under.
CLI_OWNER = "flowkit-cli"


def _json_of(kind: type[list[Any]] | type[dict[str, Any]]) -> Callable[[str], Any]:
    """An argparse ``type=`` reading JSON of one kind: a list (``--args``) or an object.

    Checked as the option is read, so the message names the option at fault and
    what it got, before the board is connected (an unreachable board hid the
    mistake behind status 1).
    """
    wanted = "a JSON list" if kind is list else "a JSON object"

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"not JSON: {err}{_key_value_hint(text, kind)}") from None
        if not isinstance(value, kind):
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {_json_kind(value)}: {shown}")
        _check_finite(value)
        return value

    parse.__name__ = wanted  # argparse names the type so in its own messages
    return parse


def _check_finite(value: list[Any] | dict[str, Any]) -> None:
    """Refuse NaN, an infinity or ``1e400`` in a JSON option, naming its key or item, as specs do.

    Python's :mod:`json` reads them though no JSON document holds them, and the
    job was posted with them (see :mod:`flowkit.declarative._numbers`).
    """
    from flowkit.declarative._numbers import NO_JSON_FORM, first_non_finite

    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        number = first_non_finite(item)
        if number is not None:
            where = f"key '{key}'" if isinstance(value, dict) else f"item {key}"
            raise argparse.ArgumentTypeError(f"{where}: {number} {NO_JSON_FORM}, in which a job is posted")


def _key_value_hint(text: str, kind: type[list[Any]] | type[dict[str, Any]]) -> str:
    """For an object option given ``KEY=VALUE`` (``flowkit run --store``'s form): the JSON to give.

    "not JSON: Expecting value: line 1 column 1" alone left the user to guess.
    Read as ``flowkit run`` reads it (:func:`~flowkit.cli._store_types.parse_item`),
    and only for what that form can be: a name, ``=``, a value (not a broken
    JSON object that happens to hold an ``=``).
    """
    from flowkit.cli._store_types import parse_item

    if kind is not dict:
        return ""
    try:
        item = parse_item(text)
    except CliError:
        return ""
    if not item.key.isidentifier():
        return ""
    example = json.dumps({item.key: item.value})
    return f"; give a JSON object, such as '{example}' (not KEY=VALUE, as flowkit run takes it)"


def _json_kind(value: Any) -> str:
    """JSON's name for the kind of ``value`` (as ``json.loads`` made it)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _priority(text: str) -> Any:
    """An argparse ``type=`` reading a job priority by name, in any case (the valid ones listed if not)."""
    from flowkit.jobs.base import JobPriority

    try:
        return JobPriority.convert(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(subparsers: Any) -> None:
    """Add the ``jobs`` command to the ``flowkit`` parser."""
    parser = subparsers.add_parser(
        "jobs",
        help="post, list, show and trash jobs on a jobboard; list its conductors",
        description=(
            "Post, list, show and trash the jobs on a jobboard (conductors claim and run them);"
            " list the conductors alive on it."
        ),
    )
    board_arguments(parser)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    post = actions.add_parser(
        "post",
        help="save a flow detail for a flow factory and post a job for it",
        description="Save a flow detail for a flow factory in the backend and post a job for it.",
    )
    post.add_argument("name", help="the job's name")
    post.add_argument(
        "--factory",
        required=True,
        metavar="MODULE.FUNCTION",
        help="the flow factory, as conductors import it (MODULE:FUNCTION works too)",
    )
    post.add_argument(
        "--args",
        type=_json_of(list),
        default=[],
        metavar="JSON",
        help="factory arguments (a list; default: [])",
    )
    post.add_argument(
        "--kwargs",
        type=_json_of(dict),
        default={},
        metavar="JSON",
        help="factory keyword arguments (an object; default: {})",
    )
    post.add_argument(
        "--store",
        type=_json_of(dict),
        default={},
        metavar="JSON",
        help="the job's store (an object; default: {})",
    )
    post.add_argument(
        "--priority",
        type=_priority,
        default="NORMAL",
        help="VERY_HIGH, HIGH, NORMAL, LOW or VERY_LOW (default: %(default)s)",
    )

    listing = actions.add_parser(
        "list", help="list the jobs on the board", description="List the jobs on the board."
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--trashed", action="store_true", help="list the jobs set aside instead")

    show = actions.add_parser(
        "show",
        help="show one job, its claim and its attempts",
        description="Show one job, who holds its claim, and its attempts.",
    )
    show.add_argument("uuid", metavar="JOB_UUID", help="the job's uuid (as jobs list prints it)")

    conductors = actions.add_parser(
        "conductors",
        help="list the conductors alive on the board",
        description=(
            "List the conductors registered on the board now: a conductor whose process died"
            " drops out when its entry expires (Redis) or its session ends (ZooKeeper)."
        ),
    )
    conductors.add_argument("--json", action="store_true", help="a JSON array, one object per conductor")

    trash = actions.add_parser(
        "trash",
        help="set an unclaimed job aside",
        description="Set an unclaimed job aside, with a reason (list --trashed shows it).",
    )
    trash.add_argument("uuid", metavar="JOB_UUID", help="the job's uuid (as jobs list prints it)")
    trash.add_argument(
        "--reason", default="trashed by an operator", help="why (kept with the job; default: %(default)r)"
    )
    for name, action in actions.choices.items():
        action.set_defaults(handler=guarded(f"flowkit jobs {name}", _run))


def _describe(board: Any, job: Any) -> dict[str, Any]:
    claim = board.current_claim(job)
    return {
        "uuid": job.uuid,
        "name": job.name,
        "state": job.state,
        "priority": job.priority.value,
        "created_on": job.created_on.isoformat() if job.created_on else None,
        "owner": None if claim is None else claim.owner,
        "token": None if claim is None else claim.token,
        "book": job.book_uuid,
        "details": job.details,
    }


def _find(board: Any, uuid: str) -> Any:
    from flowkit import exceptions as exc

    job = board.find_job(uuid)
    if job is not None:
        return job
    # A finished job is consumed, gone from the board: where to look instead.
    raise exc.NotFound(
        f"no job {uuid} on board {board.url} (a job is removed once done; its flow stays in the"
        " persistence backend: flowkit flows list)"
    )


def _post(args: argparse.Namespace, board: Any, persistence: Any) -> int:
    from flowkit import engines
    from flowkit._utils.uuids import random_uuid
    from flowkit.jobs.base import JobPriority
    from flowkit.persistence import models

    if persistence is None:
        raise CliError("--connection is needed: the flow detail must be saved where conductors read it")
    # MODULE:NAME, as flowkit run spells its target, names the same factory; left
    # as it was, conductors could not import it and trashed the job.
    path_module, colon, path_name = args.factory.partition(":")
    hint = file_path_hint(path_module, path_name) if colon else file_path_hint(args.factory, "")
    if hint:
        # Never importable: conductors would trash the job. Said now, before anything is saved.
        raise CliError(f"--factory {args.factory!r} {hint}")
    factory = args.factory.replace(":", ".", 1)
    module, dot, name = factory.rpartition(".")
    if not module or not dot or not name:
        raise CliError(
            f"--factory {args.factory!r} must be MODULE.FUNCTION, for example myapp.flows.make_flow"
        )
    # Read as the option was (see _priority), before anything is saved: a refused post
    # left its logbook behind, listed by `flowkit flows list` as a PENDING flow no job would run.
    priority: JobPriority = args.priority
    book = models.LogBook(args.name)
    flow_detail = models.FlowDetail(args.name, random_uuid())
    book.add(flow_detail)
    engines.save_factory_details(flow_detail, factory, args.args, args.kwargs)
    with persistence.get_connection() as conn:
        conn.upgrade()
        conn.save_logbook(book)
    try:
        job = board.post(args.name, book=book, details={"store": args.store}, priority=priority)
    except Exception:
        # The board refused it (or went away): take the logbook back, keeping the board's error.
        with contextlib.suppress(Exception), persistence.get_connection() as conn:
            conn.destroy_logbook(book.uuid)
        raise
    print(job.uuid)
    return 0


def _list(args: argparse.Namespace, board: Any) -> int:
    if args.trashed:
        for doc in board.trashed():
            if args.json:
                print(json.dumps(doc, sort_keys=True, default=str))
            else:
                reason = log_safe(" ".join(str(doc.get("reason") or "").split()))
                priority = log_safe(doc.get("priority") or "")
                uuid, name = log_safe(doc.get("uuid")), log_safe(doc.get("name"))
                print(f"{uuid}  {'TRASHED':<9} {priority:<9} {name}: {reason}")
        return 0
    for job in board.iterjobs():
        row = _describe(board, job)
        if args.json:
            print(json.dumps(row, sort_keys=True, default=str))
        else:
            owner = f" owner={log_safe(row['owner'])}" if row["owner"] else ""
            uuid, name = log_safe(row["uuid"]), log_safe(row["name"])
            print(f"{uuid}  {row['state']:<9} {row['priority']:<9} {name}{owner}")
    return 0


def _show(args: argparse.Namespace, board: Any) -> int:
    job = _find(board, args.uuid)
    row = _describe(board, job)
    row["attempts"] = [a.to_dict() for a in board.attempts(job)]
    print(json.dumps(row, indent=2, sort_keys=True, default=str))
    return 0


def _conductors(args: argparse.Namespace, board: Any) -> int:
    from flowkit.cli._common import columns, utc_seconds

    found = board.entities("conductor")
    if args.json:
        print(json.dumps(found, indent=2, sort_keys=True, default=str))
        return 0
    if not found:
        print("no conductors alive")
        return 0
    table = [("NAME", "HOST", "PID", "SINCE (UTC)")]
    for entity in found:
        # Whatever the registering process wrote: a field of another type is shown, not fatal.
        meta = entity.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        since = entity.get("registered_at")
        try:
            when = utc_seconds(since) if since else "-"
        except (TypeError, ValueError, OverflowError, OSError):
            when = log_safe(since)
        table.append(
            (
                log_safe(entity.get("name")),
                log_safe(meta.get("hostname", "-")),
                log_safe(meta.get("pid", "-")),
                when,
            )
        )
    print(columns(table))
    return 0


def _trash(args: argparse.Namespace, board: Any) -> int:
    job = _find(board, args.uuid)
    board.claim(job, CLI_OWNER)
    board.trash(job, CLI_OWNER, reason=args.reason)
    print(f"trashed {job.uuid}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from flowkit import exceptions as exc
    from flowkit.persistence.backends._urls import mask_url

    try:
        persistence = open_persistence(args)
    except exc.TaskFlowException as err:
        raise CliError(mask_url(one_line(err))) from err
    try:
        board = open_board(args, persistence)
    except (exc.NotFound, ValueError) as err:  # no such kind; an option that does not convert
        raise CliError(one_line(err)) from err
    except exc.JobFailure as err:
        raise CliError(one_line(err), status=FAILED) from err
    try:
        if args.action == "post":
            return _post(args, board, persistence)
        if args.action == "list":
            return _list(args, board)
        if args.action == "show":
            return _show(args, board)
        if args.action == "conductors":
            return _conductors(args, board)
        return _trash(args, board)
    except (exc.NotFound, exc.InvalidFormat, ValueError) as err:
        raise CliError(one_line(err)) from err
    except exc.TaskFlowException as err:
        raise CliError(mask_url(one_line(err)), status=FAILED) from err
    finally:
        board.close()
        if persistence is not None:
            persistence.close()
        sys.stdout.flush()
