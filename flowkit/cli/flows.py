"""``flowkit flows``: list, show, resume and explain the flows in a backend.

::

    flowkit flows list --connection sqlite:///flows.db [--state FAILURE] [--json]
    flowkit flows show FLOW --connection URL [--json]
    flowkit flows resume FLOW --connection URL [--dry-run] [--json] [--board URL] [--force]
    flowkit flows why FLOW [ATOM] --connection URL [--json]

``FLOW`` is a flow detail's uuid or a flow name (the newest flow of that
name; when others share it, a note on stderr names them). The JSON
documents' keys are listed in ``doc/cli.rst`` and stay stable. A flow a
conductor runs for a job is resumed while the resume holds the job's claim
(``--board``), or with ``--force`` (:mod:`flowkit.cli._held`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from flowkit._utils.text import log_safe
from flowkit.cli._common import (
    FROM_FILE,
    USAGE,
    CliError,
    add_connection,
    columns,
    find_flow,
    guarded,
    list_flows,
    open_backend,
    quoted_names,
    url_value,
    utc_seconds,
)

__all__ = ["register"]

#: How a flow gets the event log that ``show --events`` and ``why`` read.
_NO_LOG_HINT = "run it with 'flowkit run' or attach flowkit.listeners.events.EventLogListener"


def register(subparsers: Any) -> None:
    """Add the ``flows`` command and its subcommands to the ``flowkit`` parser."""
    from flowkit.cli.run import add_run_options

    flows = subparsers.add_parser(
        "flows",
        help="list, show, resume and explain persisted flows",
        description="List, show, resume and explain the flows kept in a persistence backend.",
    )
    commands = flows.add_subparsers(dest="flows_command", required=True, metavar="SUBCOMMAND")

    lister = commands.add_parser("list", help="every flow in the backend", description="List every flow.")
    lister.add_argument(
        "--state", help="only flows in this state (for example FAILURE; default: every state)"
    )
    lister.set_defaults(handler=guarded("flowkit flows list", _list))

    show = commands.add_parser("show", help="one flow, atom by atom", description="Show one flow's report.")
    show.add_argument("flow", metavar="FLOW", help="flow detail uuid or flow name")
    show.add_argument("--events", action="store_true", help="also print the event log as a tree of causes")
    show.set_defaults(handler=guarded("flowkit flows show", _show))

    resume = commands.add_parser(
        "resume",
        help="carry on a stopped flow (or print the plan with --dry-run)",
        description="Rebuild a flow from its recorded factory and run it from where it stopped.",
    )
    resume.add_argument("flow", metavar="FLOW", help="flow detail uuid or flow name")
    resume.add_argument("--dry-run", action="store_true", help="print what resuming would do; run nothing")
    resume.add_argument(
        "--engine",
        type=url_value,
        help="engine kind or URI (default: the one the run used); --dry-run plans with it" + FROM_FILE,
    )
    resume.add_argument(
        "--board",
        type=url_value,
        metavar="URL",
        help="for a flow a conductor ran for a job: the job's board, where the resume claims the job"
        " (refused while a conductor holds it) and holds it while it runs" + FROM_FILE,
    )
    resume.add_argument(
        "--force",
        action="store_true",
        help="resume a job's flow without claiming the job: nothing keeps a conductor from running it at"
        " the same time (its tasks then run twice)",
    )
    add_run_options(resume)
    resume.set_defaults(handler=guarded("flowkit flows resume", _resume), prog_name="flowkit flows resume")

    why = commands.add_parser(
        "why",
        help="the chain of causes behind an atom's state, or how the flow ended",
        description="Explain why an atom is in its state, or (no ATOM, or the flow's own name)"
        " why the flow ended as it did, from the flow's causal event log.",
    )
    why.add_argument("flow", metavar="FLOW", help="flow detail uuid or flow name")
    why.add_argument(
        "atom", metavar="ATOM", nargs="?", default=None, help="atom name (default: explain the flow itself)"
    )
    why.set_defaults(handler=guarded("flowkit flows why", _why))

    for parser in (lister, show, resume, why):
        add_connection(parser)
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")


# -- list ---------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    from flowkit import states
    from flowkit.report import flow_summary

    if args.state and args.state.upper() not in states.FLOW_STATES:
        # A misspelt state (FAILED) would otherwise list nothing, as if no flow had failed.
        raise CliError(f"--state '{args.state}' is no flow state; use one of {sorted(states.FLOW_STATES)}")
    with open_backend(args.connection, writable=False) as backend:
        rows = [flow_summary(ref.book, ref.flow) for ref in list_flows(backend)]
    if args.state:
        rows = [r for r in rows if r["state"] == args.state.upper()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no flows" + (f" in state {args.state.upper()}" if args.state else ""))
        return 0
    table: list[tuple[str, ...]] = [("UUID", "NAME", "STATE", "CREATED (UTC)", "ATOMS")]
    for row in rows:
        counts = ", ".join(f"{n} {log_safe(s)}" for s, n in row["atoms"].items()) or "no atoms"
        # The names and states are the writing process's (columns of the database):
        # escaped, so that none forges a row or repaints the terminal.
        table.append(
            (
                log_safe(row["uuid"]),
                log_safe(row["name"]),
                log_safe(row["state"]),
                _utc(row["created_at"]),
                counts,
            )
        )
    print(columns(table))
    return 0


def _utc(iso: str | None) -> str:
    """An ISO 8601 time as ``YYYY-MM-DD HH:MM:SS`` in UTC (microseconds and offset only made it long)."""
    from datetime import UTC, datetime

    if not iso:
        return "-"
    when = datetime.fromisoformat(iso)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S")


# -- show -------------------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    from flowkit.report import ExecutionReport

    with open_backend(args.connection, writable=False) as backend:
        ref = find_flow(backend, args.flow, "flowkit flows show")
    report = ExecutionReport.from_flow_detail(ref.flow)
    if args.json:
        data = report.to_dict()
        data["book"] = {"uuid": ref.book.uuid, "name": ref.book.name}
        print(json.dumps(data, indent=2))
        return 0
    print(report.to_text(verbose=args.verbose > 0))
    if args.events:
        if not report.events:
            # Nothing printed read as a run without transitions: say there is no log.
            print(f"  no event log: {_NO_LOG_HINT}")
        # The causal tree: an event under the one that caused it (chains stay level).
        for row in report.events.tree():
            print(f"  {'  ' * min(row.depth, 12)}#{row.event.seq} {log_safe(row.event.describe())}")
    return 0


# -- resume ------------------------------------------------------------------------------


def _reach(flow: Any, every_atom: bool = False) -> dict[str, frozenset[str]]:
    """Retry (or, with ``every_atom``, atom) name -> every atom reachable after it in the compiled graph.

    A retry's RETRY resets those; any atom's revert waits for theirs, which
    matters only once some revert failed (``every_atom``: it costs a walk per atom).
    """
    from flowkit.export import to_networkx_data

    nodes, edges = to_networkx_data(flow)
    succ: dict[str, list[str]] = {}
    for source, target, _decider in edges:
        succ.setdefault(source, []).append(target)
    atoms = {n["id"] for n in nodes if n["kind"] in ("task", "retry")}
    reach: dict[str, frozenset[str]] = {}
    for atom in atoms if every_atom else (n["id"] for n in nodes if n["kind"] == "retry"):
        seen: set[str] = set()
        stack = list(succ.get(atom, ()))
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(succ.get(node, ()))
        reach[atom] = frozenset(seen & atoms)
    return reach


def _rebuild(ref: Any) -> Any:
    from flowkit import engines
    from flowkit.cli._common import importable_cwd, one_line

    importable_cwd()
    try:
        return engines.flow_from_detail(ref.flow)
    except (ValueError, CliError) as err:
        # The library keeps TaskFlow's sentence; the command says what to do about it.
        if engines.helpers.recorded_factory(ref.flow) is None:
            why = " (it records no flow factory: only runs loaded with load_from_factory() can be rebuilt)"
        elif isinstance(err, ImportError):
            why = (
                " (resume it where its modules import: in the directory the run started in,"
                " or with them on PYTHONPATH)"
            )
        else:
            why = ""

        # A factory that ran and raised is a failure (status 1), as a named factory's
        # is; what cannot be rebuilt at all (no factory, a module gone) is bad usage.
        status = err.status if isinstance(err, CliError) else USAGE
        raise CliError(
            f"flow '{ref.flow.name}' ({ref.flow.uuid}) cannot be rebuilt: {one_line(err)}{why}", status=status
        ) from err


def _resume(args: argparse.Namespace) -> int:
    from flowkit.cli._held import JobRecord, hold_job

    # A dry run only reads: it creates, migrates and writes nothing, as flows show.
    with open_backend(args.connection, writable=not args.dry_run) as backend:
        ref = find_flow(backend, args.flow, "flowkit flows resume")
        job = JobRecord.from_meta(ref.flow.meta)
        if job is None or args.dry_run or args.force:
            return _resume_flow(args, ref, job, backend, None)
        # Before anything is rebuilt or run: the job is claimed and its flow detail fenced
        # for the resume, or the resume refuses; the job ends with the run (_held).
        with hold_job(ref.flow, job, args.board, backend) as held:
            return _resume_flow(args, ref, job, backend, held)


def _resume_flow(args: argparse.Namespace, ref: Any, job: Any, backend: Any, held: Any) -> int:
    """Plan (``--dry-run``) or run the resume of ``ref``'s flow, through ``held``'s fenced backend if any."""
    from flowkit import engines, states
    from flowkit import exceptions as exc
    from flowkit._utils.switches import read_switch
    from flowkit.cli._plan import plan_resume
    from flowkit.cli.run import ENGINE_KEY, ENGINE_OPTIONS_KEY, engine_error, run_engine, unrecorded_password
    from flowkit.engines.helpers import engine_class

    flow = _rebuild(ref)
    kind = args.engine or (ref.flow.meta or {}).get(ENGINE_KEY) or "serial"
    # A spec file's engine options (max_workers...) hold again, unless --engine picks another.
    recorded = (ref.flow.meta or {}).get(ENGINE_OPTIONS_KEY)
    engine_options = dict(recorded) if isinstance(recorded, dict) and not args.engine else {}
    if args.dry_run:
        # The plan is that of the engine the resume would use (--engine, else the run's).
        try:
            # The kind is looked up too: a misspelled --engine passed a dry run unseen.
            engine_class(kind)
            # As engines.load merges them for the resume below: the recorded options win.
            options = {**engines.parse_engine(kind)[1], **engine_options}
        except (exc.UnknownEngine, exc.InvalidEngineOption) as err:
            raise engine_error(kind, err) from err
        reverts_failed = any(d.state == states.REVERT_FAILURE for d in ref.flow)
        reach = _reach(flow, every_atom=reverts_failed)
        # Read as the engine reads a flag: a yes/no word or bool, anything else false.
        never_resolve = bool(read_switch(options.get("never_resolve", False)))
        plan = plan_resume(ref.flow, reach, never_resolve=never_resolve)
        if args.json:
            shown = plan.to_dict()
            if job is not None:
                shown["job"] = job.to_dict()
            print(json.dumps(shown, indent=2))
            return 0
        if job is not None:
            print(
                f"flow '{log_safe(ref.flow.name)}' belongs to {log_safe(job.describe())}: a resume holds"
                " the job's claim while it runs (--board URL) or is told to go on without it (--force)"
            )
        print(plan.to_text())
        return 0
    if not args.engine and unrecorded_password(kind):
        raise CliError(
            f"flow '{ref.flow.name}' ran on engine '{kind}', whose password is not stored; pass the "
            "engine again with --engine (or --engine @PATH to read it from a file)"
        )
    # A held job's flow detail as read under its fence, written through the fenced backend.
    flow_detail, writes_to = (ref.flow, backend) if held is None else (held.flow, held.backend)
    try:
        engine = engines.load(flow, flow_detail=flow_detail, backend=writes_to, engine=kind, **engine_options)
    except (exc.UnknownEngine, exc.InvalidEngineOption) as err:
        raise engine_error(kind, err) from err
    if held is not None:
        held.engine = engine  # the job ends by the state the run leaves the flow in
    if args.json:
        args.report = "json"
    return run_engine(engine, args)


# -- why ------------------------------------------------------------------------------------


def _why(args: argparse.Namespace) -> int:
    from flowkit import states
    from flowkit.listeners.events import EventLog

    with open_backend(args.connection, writable=False) as backend:
        ref = find_flow(backend, args.flow, "flowkit flows why")
    detail = next((d for d in ref.flow if d.name == args.atom), None)
    # The flow itself: no atom named, or the flow's name where no atom bears it.
    of_flow = args.atom is None or (detail is None and args.atom == ref.flow.name)
    if detail is None and not of_flow:
        names = quoted_names((d.name for d in ref.flow), near=args.atom) or "none"
        raise CliError(
            f"flow '{ref.flow.name}' has no atom '{args.atom}' (its atoms: {names};"
            " give no ATOM to explain the flow itself)"
        )
    log = EventLog.from_flow_detail(ref.flow)
    if not log:
        raise CliError(
            f"flow '{ref.flow.name}' ({ref.flow.uuid}) has no event log: {_NO_LOG_HINT}",
            status=1,
        )
    if of_flow or detail is None:
        return _why_flow(ref.flow, log, args.json, args.flow)
    chain = log.why(args.atom, flow=False)
    waiting: list[Any] = []
    if not chain and ref.flow.state in (states.RUNNING, states.RESUMING):
        # It has not run and the flow has not ended: the atoms under way are what it
        # waits behind (a killed run's too: they say since when).
        busy = [d.name for d in ref.flow if d.state in (states.RUNNING, states.REVERTING)]
        waiting = [own[-1] for own in (log.of(name, flow=False) for name in busy) if own]
        chain = waiting
    elif not chain:
        # It never ran: what ended the flow before it is the answer.
        chain = log.why(ref.flow.name, flow=True)
    if args.json:
        print(
            json.dumps(
                {"atom": args.atom, "state": detail.state, "chain": [e.to_dict() for e in chain]},
                indent=2,
            )
        )
        return 0
    print(f"{log_safe(args.atom)} is {log_safe(detail.state or 'PENDING')}:")
    if waiting:
        print(f"  it has not run yet; the flow is {log_safe(ref.flow.state)} with these under way:")
        for event in waiting:
            print(f"  {log_safe(event.describe())}; since {utc_seconds(event.at)} UTC")
        return 0
    if not log.of(args.atom, flow=False):
        print(
            f"  it has not run yet; the flow is {log_safe(ref.flow.state)}, with no atom under way:"
            if ref.flow.state in (states.RUNNING, states.RESUMING)
            else "  it never ran; the flow:"
        )
    _print_chain(chain, log, args.flow)
    return 0


def _print_chain(chain: list[Any], log: Any, flow_ref: str) -> None:
    """Print ``chain`` (newest first, each cause under its effect), saying when it goes on.

    :meth:`EventLog.why` stops after a dozen events: the last line printed
    then named a cause ("'step-13' completed") with nothing after it, as if
    the chain ended there. It says where the rest is instead.
    """
    import shlex

    for depth, event in enumerate(chain):
        print(f"  {'  ' * min(depth, 8)}{'<- ' if depth else ''}{log_safe(event.describe())}")
    before = chain[-1].cause.event if chain else None
    if before is not None and log.get(before) is not None and all(e.seq != before for e in chain):
        command = f"flowkit flows show {shlex.quote(flow_ref)} --events"
        print(log_safe(f"  ... earlier causes from #{before} back: '{command}' lists every event"))


def _why_flow(flow: Any, log: Any, as_json: bool, flow_ref: str) -> int:
    """Explain how ``flow`` ended: its last event and the chain of causes behind it.

    A flow that reverted names the failure that made it revert; one that has
    not ended names the atoms under way, as for an atom waiting behind them.
    """
    from flowkit import states

    state = flow.state or states.PENDING
    chain = log.why(flow.name, flow=True)
    waiting: list[Any] = []
    if state in (states.RUNNING, states.RESUMING):
        busy = [d.name for d in flow if d.state in (states.RUNNING, states.REVERTING)]
        waiting = [own[-1] for own in (log.of(name, flow=False) for name in busy) if own]
    if as_json:
        shown = waiting or chain
        print(
            json.dumps({"flow": flow.name, "state": state, "chain": [e.to_dict() for e in shown]}, indent=2)
        )
        return 0
    print(f"flow '{log_safe(flow.name)}' is {log_safe(state)}:")
    if state in (states.RUNNING, states.RESUMING):
        print("  it has not ended; under way:" if waiting else "  it has not ended, with no atom under way")
        for event in waiting:
            print(f"  {log_safe(event.describe())}; since {utc_seconds(event.at)} UTC")
        return 0
    _print_chain(chain, log, flow_ref)
    return 0
