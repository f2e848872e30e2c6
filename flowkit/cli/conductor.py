"""``flowkit conductor``: claim jobs from a board and run their flows.

::

    flowkit conductor --board redis://127.0.0.1:6379/0 \\
        --connection postgresql+psycopg://user@db/flows --name host-a

The board is a URL (``redis://``, ``rediss://``, ``zookeeper://hosts/path``)
and ``--connection`` the persistence backend holding the jobs' flow details.
The current directory is importable (as with ``python -m``), so flow
factories next to where the conductor starts can be found. SIGTERM or SIGINT
stop it gracefully: running flows are suspended after the tasks running now
and their jobs abandoned for another conductor; a second signal exits at once,
its jobs' claims left to expire. Either way the exit status is 0, as for
``flowkit worker`` and ``flowkit monitor`` (doc/cli.rst, "Exit status"). Bad
arguments exit with status 2, runtime failures (an unreachable board) with 1.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from flowkit.cli._common import (
    FAILED,
    FROM_FILE,
    CliError,
    factory_name,
    guarded,
    importable_cwd,
    not_empty,
    not_negative,
    one_line,
    positive,
    url_value,
)

__all__ = ["register"]

LOG = logging.getLogger(__name__)

#: Poison jobs are set aside after this many failed attempts unless told otherwise.
DEFAULT_MAX_FAILURES = 5


def board_arguments(parser: argparse.ArgumentParser) -> None:
    """The options naming a board and a persistence backend (shared with ``flowkit jobs``)."""
    parser.add_argument(
        "--board",
        required=True,
        type=url_value,
        metavar="URL",
        help="jobboard URL: redis://host:6379/0 or zookeeper://host:2181/path" + FROM_FILE,
    )
    parser.add_argument(
        "--connection",
        type=url_value,
        metavar="URL",
        help="persistence backend URL of the jobs' flow details" + FROM_FILE,
    )
    parser.add_argument(
        "--board-name", default="flowkit", metavar="NAME", help="the board's name (default: flowkit)"
    )
    parser.add_argument(
        "--claim-expiry",
        type=positive(float),
        metavar="S",
        help=(
            "seconds a claim lasts unless its holder renews it (Redis) or the session timeout (ZooKeeper)"
            " (default: the board's own: 30 on Redis, a 10-second session on ZooKeeper)"
        ),
    )


def open_board(args: argparse.Namespace, persistence: Any) -> Any:
    """Make and connect the board ``args`` name."""
    from flowkit.jobs import backends

    conf: dict[str, Any] = {"board": args.board}
    if args.claim_expiry is not None:
        conf["claim_expiry"] = args.claim_expiry
        conf["timeout"] = args.claim_expiry
    board = backends.fetch(args.board_name, conf, persistence=persistence)
    board.connect()
    return board


def open_persistence(args: argparse.Namespace) -> Any:
    """Make the persistence backend ``--connection`` names (``None`` without one)."""
    if not args.connection:
        return None
    from flowkit.persistence import backends

    return backends.fetch(args.connection)


def register(subparsers: Any) -> None:
    """Add the ``conductor`` command to the ``flowkit`` parser."""
    parser = subparsers.add_parser(
        "conductor",
        help="claim jobs from a jobboard and run their flows",
        description="Run a conductor: claim jobs from the board, run their flows with the "
        "persistence backend, consume them when done. SIGTERM stops it gracefully.",
    )
    board_arguments(parser)
    parser.add_argument("--name", required=True, type=not_empty, help="the name jobs are claimed under")
    parser.add_argument(
        "--kind",
        choices=("blocking", "nonblocking"),
        default="blocking",
        help="conductor kind (default: %(default)s)",
    )
    parser.add_argument(
        "--engine",
        default="serial",
        type=url_value,
        help="engine kind or URI to run flows with (default: serial)" + FROM_FILE,
    )
    parser.add_argument(
        "--max-simultaneous-jobs",
        type=positive(int),
        metavar="N",
        help="jobs at once (nonblocking only; default: one more than the CPUs)",
    )
    parser.add_argument(
        "--max-failures",
        type=not_negative(int),
        default=DEFAULT_MAX_FAILURES,
        metavar="N",
        help=f"set a job aside after N failed attempts; 0 never does (default: {DEFAULT_MAX_FAILURES})",
    )
    parser.add_argument(
        "--max-dispatches",
        type=positive(int),
        metavar="N",
        help="exit after N jobs (default: run until stopped)",
    )
    parser.add_argument(
        "--allow-factory",
        action="append",
        type=factory_name,
        metavar="NAME",
        help="call only these flow factories (a dotted name, or a module prefix ending in '.'); repeatable."
        " Default: any a job's flow detail names, as TaskFlow",
    )
    parser.add_argument(
        "--wait-timeout",
        type=positive(float),
        default=0.5,
        metavar="S",
        help="seconds between idle polls (default: %(default)s)",
    )
    parser.set_defaults(handler=guarded("flowkit conductor", _run))


def _recording(kind: str, engine_kind: str) -> Any:
    """The conductor class of ``kind`` that records what ``flowkit run`` records of a run.

    Each job's causal event log: without it, ``flowkit flows why`` had nothing
    to say about any flow a conductor ran, and the monitor no events to show.
    And ``engine_kind``, the ``--engine`` it runs flows with: without it,
    ``flowkit flows resume`` of a job's flow (one a dead conductor left in
    doubt) ran it on the serial engine, its tasks in the operator's shell
    rather than on the workers of ``worker-based://...``. (The job itself
    every conductor records: :meth:`~flowkit.conductors.base.Conductor._job_metadata`.)
    """
    from flowkit.cli.run import ENGINE_KEY, masked_engine
    from flowkit.conductors.backends.impl_blocking import BlockingConductor
    from flowkit.conductors.backends.impl_nonblocking import NonBlockingConductor
    from flowkit.conductors.base import Conductor
    from flowkit.listeners.events import EventLogListener

    base = {"blocking": BlockingConductor, "nonblocking": NonBlockingConductor}[kind]

    recorded = masked_engine(engine_kind)  # no password in the database

    class RecordsEvents(Conductor):
        def _job_metadata(self, job: Any) -> dict[str, Any]:
            return {**super()._job_metadata(job), ENGINE_KEY: recorded}

        def _listeners_from_job(self, job: Any, engine: Any) -> list[Any]:
            return [*super()._listeners_from_job(job, engine), EventLogListener(engine)]

    return type(f"EventLogging{base.__name__}", (RecordsEvents, base), {})


def _check_engine(engine: str) -> None:
    """Make ``engine`` for an empty flow: what every job's load would refuse is refused now.

    Otherwise a misspelled kind or option was found only at each job's load,
    and the conductor gave every job it claimed back. Making an engine for an
    empty flow starts nothing and reaches no server (the worker-based engine
    connects at its first command).

    Raises:
        UnknownEngine: no engine of that kind.
        InvalidEngineOption: an option of the URI the engine refuses.
    """
    from flowkit import engines
    from flowkit.patterns import linear_flow

    engines.load(linear_flow.Flow("engine-check"), engine=engine)


def _run(args: argparse.Namespace) -> int:
    import signal  # only a running conductor needs it (``flowkit --help`` start-up)

    from flowkit import exceptions as exc
    from flowkit.cli._signals import StopSignals
    from flowkit.cli.run import engine_error
    from flowkit.persistence.backends._urls import mask_url

    importable_cwd()
    try:
        _check_engine(args.engine)
    except (exc.UnknownEngine, exc.InvalidEngineOption) as err:
        raise CliError(mask_url(str(engine_error(args.engine, err)))) from err
    conductor: Any = None

    def stop_gracefully(name: str) -> None:
        LOG.warning("%s received: stopping conductor %s gracefully", name, args.name)
        if conductor is not None:
            conductor.stop()
        # Else it is still starting up: it is stopped once made, before its loop starts.

    def stop_now(name: str) -> None:
        LOG.warning("%s received again: exiting now", name)
        # A stop someone asked for, twice: not a failure. Status 1 had a supervisor
        # (systemd's Restart=on-failure) mark the unit failed and start it again.
        os._exit(0)

    # In place from the start, and until the board and the backend are closed:
    # connecting to a board that is slow to answer (a ZooKeeper client waits for
    # its session) and closing one both take seconds, and a signal meanwhile
    # killed the process (status -15) or printed a KeyboardInterrupt traceback.
    on_signal = StopSignals(stop_gracefully, stop_now)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    persistence: Any = None
    board: Any = None
    try:
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
        options: dict[str, Any] = {
            "persistence": persistence,
            "engine": args.engine,
            "wait_timeout": args.wait_timeout,
            "max_failures": args.max_failures or None,
            "claim_expiry": args.claim_expiry,
        }
        if args.max_simultaneous_jobs is not None:
            options["max_simultaneous_jobs"] = args.max_simultaneous_jobs
        if args.allow_factory:
            options["factories"] = args.allow_factory
        conductor = _recording(args.kind, args.engine)(args.name, board, **options)
        if on_signal.count:
            # Asked to stop while starting up. run() does not forget a stop() made
            # before it, so a signal between this check and run() stops it too.
            return 0
        try:
            conductor.run(max_dispatches=args.max_dispatches)
        except Exception as err:
            raise CliError(mask_url(one_line(err)), status=FAILED) from err
    finally:
        try:
            if board is not None:
                board.close()
            if persistence is not None:
                persistence.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0
