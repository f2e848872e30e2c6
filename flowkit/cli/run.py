"""``flowkit run``: load a flow from a module, run it, report what happened.

::

    flowkit run myapp.flows:make_flow --store vm_id=42 --connection sqlite:///flows.db

``TARGET`` is ``module:callable`` (called with no arguments, it returns the
flow), ``module:name`` of a flow object, or the path of a declarative spec
(``.yaml``, ``.yml``, ``.json``; see :mod:`flowkit.declarative`). The run records how to rebuild
its flow (as :func:`flowkit.engines.load_from_factory` does), so
``flowkit flows resume`` can pick it up in another process with nothing but
the URL. The causal event log is recorded (``flowkit flows why`` reads it).

Exit status: 0 the flow succeeded; 1 it failed (after reverting: the failure,
the atom and the revert outcome go to stderr) or the database could not be
used; 2 bad usage (unknown target, bad ``--store``, a value the flow needs
that was not given).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from flowkit._utils.masking import MASK
from flowkit._utils.text import log_safe
from flowkit.cli._common import (
    FAILED,
    FROM_FILE,
    USAGE,
    CliError,
    add_connection,
    build_flow,
    guarded,
    import_target,
    importable_cwd,
    one_line,
    spec_error,
    url_value,
)

__all__ = ["backend_lost", "flow_at", "register", "run_engine", "spec_flow"]

#: Flow detail metadata key holding the engine kind a run used (resume reuses it).
ENGINE_KEY = "engine"
#: Flow detail metadata key holding the engine options a spec file asked for (resume reuses them).
ENGINE_OPTIONS_KEY = "engine_options"
#: Flows up to this many atoms keep their shape in their metadata, so the
#: monitor can draw them without importing their code. Atoms, not graph nodes:
#: the compiled graph adds two nodes per flow, so a flow of 2,000 atoms has more.
_GRAPH_LIMIT = 2000
#: The logger the engine logs under: TaskFlow's engine module's, which log configurations name.
_ENGINE_LOGGER = "flowkit.engines.action_engine.engine"


def register(subparsers: Any) -> None:
    """Add the ``run`` command to the ``flowkit`` parser."""
    parser = subparsers.add_parser(
        "run",
        help="run a flow from a module",
        description=(
            "Load a flow (MODULE:CALLABLE returning one, MODULE:NAME of one, or a declarative"
            " spec file), run it, report."
        ),
    )
    parser.add_argument(
        "target", metavar="TARGET", help="MODULE:CALLABLE, MODULE:FLOW or a spec file (.yaml, .yml, .json)"
    )
    parser.add_argument(
        "--store",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a value the flow can read (VALUE is JSON when it parses, else text); repeatable",
    )
    parser.add_argument(
        "--engine",
        default=None,
        type=url_value,
        help="engine kind or URI (default: a spec file's engine:, else serial)" + FROM_FILE,
    )
    add_connection(parser, default="memory://")
    add_run_options(parser)
    parser.set_defaults(handler=guarded("flowkit run", _run), prog_name="flowkit run")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``flows resume`` share."""
    parser.add_argument("--no-progress", action="store_true", help="do not draw progress bars")
    parser.add_argument(
        "--report",
        choices=("text", "json", "none"),
        default="text",
        help="print the execution report at the end as text (default), JSON, or not at all",
    )


def flow_at(target: str) -> Any:
    """The flow object named by ``module:name`` (the factory recorded for flow objects)."""
    return import_target(target)


def _is_flow(obj: Any) -> bool:
    from flowkit.atom import Atom
    from flowkit.flow import Flow

    return isinstance(obj, (Flow, Atom))


def _run(args: argparse.Namespace) -> int:
    from flowkit import declarative
    from flowkit import exceptions as exc

    factory: Any
    kind: str = args.engine or "serial"
    options: dict[str, Any] = {}
    built: Any = None  # a spec file's flow, read once (for the flow and its engine: key)
    if declarative.is_spec_path(args.target):
        # A declarative spec file: its flow is rebuilt from the file on resume.
        target: Any = None
        factory, factory_args = spec_flow, [os.path.abspath(args.target)]
        importable_cwd()
        try:
            loaded = declarative.load_spec(factory_args[0])
        except exc.FlowSpecError as err:
            raise spec_error(args.target, err) from err
        built = loaded.flow
        options = loaded.engine_kwargs(args.engine)
        kind = options.pop("engine")
    else:
        target = import_target(args.target)
    from flowkit.cli._store_types import parse_item, typed_store

    items = [parse_item(item) for item in args.store]
    store = {item.key: item.value for item in items}
    if target is not None:
        if _is_flow(target):
            built, factory, factory_args = target, flow_at, [args.target]
        elif callable(target):
            # Built once, here, before the database is opened: its inputs are checked
            # below, and the factory is recorded for a resume without a second call.
            built = build_flow(args.target, target)
            if _named_again(target):
                factory, factory_args = target, []
            else:
                # A callable that cannot be imported again by its own name (a lambda
                # bound to a module name): the target is recorded instead.
                factory, factory_args = _called, [args.target]
        else:
            raise CliError(f"target '{args.target}' is neither a flow nor a callable returning one")
    missing = sorted(set(getattr(built, "requires", ())) - set(store))
    if missing:
        # Said before the database is opened: at run time a PENDING run nobody
        # could finish was left behind (and a spec's message named no file).
        # A misspelled --store key is the usual cause: name the keys given that nothing reads.
        unread = sorted(set(store) - set(getattr(built, "requires", ())))
        if target is None:
            reason = f"parameter(s) {missing} not given: give them with --store NAME=VALUE"
            also = f" (--store gave {unread}, which no task of the spec reads)" if unread else ""
            raise CliError(f"target '{args.target}': {one_line(loaded.error(reason, 'parameters'))}{also}")
        also = f" (--store gave {unread}, which the flow does not require)" if unread else ""
        raise CliError(
            f"target '{args.target}': flow '{built.name}' needs {missing}, not given:"
            f" give them with --store NAME=VALUE{also}"
        )
    # Read as the flow's atoms declare what they take (postcode=12345 for a str stays text),
    # and refused here, before the database is opened, when no reading fits.
    try:
        store = typed_store(items, built)
    except CliError as err:
        raise CliError(f"target '{args.target}': {err}") from err
    from flowkit.cli._common import open_backend

    with open_backend(args.connection) as backend:
        try:
            from flowkit.engines.helpers import load_prebuilt

            engine = load_prebuilt(
                built,
                factory,
                factory_args=factory_args,
                store=store,
                backend=backend,
                engine=kind,
                **options,
            )
        except (exc.UnknownEngine, exc.InvalidEngineOption) as err:
            key = None if target is not None else _spec_engine_key(loaded, err, args.engine)
            if key is not None:
                raise CliError(
                    f"target '{args.target}': {one_line(loaded.error(one_line(err), key))}"
                ) from err
            raise engine_error(kind, err) from err
        except ValueError as err:
            raise CliError(f"target '{args.target}': {one_line(err)}") from err
        _check_flow(engine, args.target)
        meta: dict[str, Any] = {ENGINE_KEY: masked_engine(kind)}
        if options:
            meta[ENGINE_OPTIONS_KEY] = options
        compiled: Any = engine  # an ActionEngine: it exposes its compiled graph
        if len(compiled.compilation.atoms) <= _GRAPH_LIMIT:
            from flowkit.monitor._data import GRAPH_KEY
            from flowkit.monitor._layout import shape_of

            meta[GRAPH_KEY] = shape_of(engine).to_dict()
        engine.storage.update_flow_metadata(meta)
        return run_engine(engine, args)


def _spec_engine_key(loaded: Any, err: Exception, flag: str | None) -> str | None:
    """The key of the spec's ``engine:`` setting ``err`` is about, or None when ``--engine`` gave it.

    A spec's engine is its author's mistake, reported at the spec's line: the
    message once named ``--engine`` of a run given no such flag.
    """
    from flowkit import exceptions as exc
    from flowkit.engines import parse_engine

    if isinstance(err, exc.UnknownEngine):
        return "engine" if flag is None else None
    option = getattr(err, "option", None)
    given = {} if flag is None else parse_engine(flag)[1]
    if option is not None and option in loaded.engine_options and option not in given:
        return f"engine.{option}"
    return None


def engine_error(engine: str, err: Exception) -> CliError:
    """Bad usage naming ``--engine``: an unknown kind, or an option of its URI it refuses."""
    kind, mark, options = engine.partition("?")
    hint = ""
    if mark and "://" not in kind:
        # ``parallel?max_workers=2``: options without the URI's ``://``, taken for a kind's name.
        hint = f"; an engine URI is KIND://?OPTIONS: '{masked_engine(f'{kind}://?{options}')}'"
    return CliError(f"--engine '{masked_engine(engine)}': {one_line(err)}{hint}")


def masked_engine(engine: str) -> str:
    """``engine`` (a kind or URI) with any password in a URL its query holds masked.

    As shown in messages and recorded in a flow's metadata for ``flowkit flows
    resume`` (``worker-based://?url=redis://:***@...``): a database is no place
    for a Redis password, and a resume is given the engine again instead
    (:func:`unrecorded_password`).
    """
    from flowkit.persistence.backends._urls import mask_url

    kind, mark, query = engine.partition("?")
    options = "&".join(
        f"{key}{eq}{mask_url(value)}" for key, eq, value in (item.partition("=") for item in query.split("&"))
    )
    return f"{kind}{mark}{options}"


def unrecorded_password(recorded: str) -> bool:
    """Whether an engine recorded by :func:`masked_engine` lost a password to the masking."""
    return MASK in recorded.partition("?")[2]


def spec_flow(path: str) -> Any:
    """The flow of a declarative spec file (the factory recorded for ``flowkit run spec.yaml``).

    The spec's ``module:Name`` tasks import from the current directory, as a
    ``module:callable`` target does: a console script's ``sys.path`` starts with
    its own directory, not the shell's.
    """
    from flowkit import declarative

    importable_cwd()
    return declarative.load_flow(path)


def _named_again(target: Any) -> bool:
    """Tell whether ``target`` can be recorded as a factory by its own dotted name.

    The test once read the words of load_from_factory's error, and stopped
    matching when that error took TaskFlow's wording.
    """
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    return bool(module) and isinstance(qualname, str) and "<" not in qualname


def _called(target: str) -> Any:
    """The flow returned by calling ``module:callable`` (the factory recorded for lambdas)."""
    return build_flow(target, import_target(target))


def _check_flow(engine: Any, target: str) -> None:
    try:
        engine.compile()
    except Exception as err:
        if not _is_flow(getattr(engine, "_flow", None)):
            raise CliError(f"target '{target}' did not give a flow: {one_line(err)}") from err
        # A flow that cannot run (a type mismatch, a cycle...): "did not give a flow" misled.
        raise CliError(f"the flow of target '{target}' cannot run: {one_line(err)}") from err


def run_engine(engine: Any, args: argparse.Namespace) -> int:
    """Run ``engine`` with the event log and progress display; print the report.

    Returns:
        0 when the flow succeeded, 1 when it failed, 2 when it could not start
        for want of a value (``MissingDependencies``).
    """
    from flowkit import exceptions as exc
    from flowkit import states as st
    from flowkit.listeners.events import EventLogListener
    from flowkit.report import ExecutionReport

    with contextlib.ExitStack() as stack:
        if args.report == "json":
            stack.enter_context(_stdout_to_stderr())
        if getattr(args, "verbose", 0) == 0:
            stack.enter_context(_engine_tracebacks_left_to_v())
            stack.enter_context(_waits_for_workers_said())
        stack.enter_context(EventLogListener(engine))
        if not args.no_progress:
            progress = _progress(engine)
            if progress is not None:
                stack.enter_context(progress)
        try:
            engine.run()
            error: BaseException | None = None
        except exc.MissingDependencies as err:
            raise CliError(f"{one_line(err)} (give it with --store KEY=VALUE)", status=USAGE) from err
        except KeyboardInterrupt as err:
            raise KeyboardInterrupt(_left_behind(engine, args)) from err
        except Exception as err:  # the flow failed: its report says how
            error = err
    state = engine.storage.get_flow_state()
    try:
        report = ExecutionReport.from_engine(engine)
    except exc.StorageFailure:
        if error is None:
            raise
        # The backend the run lost is still away: reading the report back fails
        # too, and that second error used to be the one reported.
        raise backend_lost(engine, error) from error
    verbose = getattr(args, "verbose", 0) > 0
    if args.report == "json":
        print(json.dumps(report.to_dict(), indent=2))
    elif args.report == "text":
        print(report.to_text(verbose=verbose))
    if error is None and state == st.SUCCESS:
        return 0
    if error is not None and not report.failures:
        if isinstance(error, exc.StorageFailure):
            raise backend_lost(engine, error) from error
        raise error
    # Names and failure messages may be another process's (a remote worker's, a resumed
    # flow's from the database): escaped, so that none repaints the terminal.
    print(f"{args.prog_name}: error: {log_safe(_failure_line(report))}", file=sys.stderr)
    return FAILED


def _left_behind(engine: Any, args: argparse.Namespace) -> str:
    """What a run stopped by Ctrl-C leaves, for the ``interrupted`` line: the flow, and its resume.

    "interrupted" alone did not say that the flow was kept, half done, nor how to
    carry it on. A store that lived in the process (``memory://``, an in-memory
    SQLite database) kept nothing to resume; a conductor's job resumes with its
    ``--board``, or the resume is refused.
    """
    storage = engine.storage
    settings = getattr(storage.backend, "settings", None)
    if args.connection.partition(":")[0] == "memory" or getattr(settings, "is_memory", False):
        return (
            f"flow '{storage.flow_name}' is lost with the process (run it with --connection URL"
            " of a database file or server to keep it for 'flowkit flows resume')"
        )
    board = getattr(args, "board", None)
    if board:
        from flowkit.persistence.backends._urls import mask_url

        board = mask_url(board)
    also = f" --board {board}" if board else ""
    return (
        f"flow '{storage.flow_name}' ({storage.flow_uuid}) is left {storage.get_flow_state()};"
        f" 'flowkit flows resume {storage.flow_uuid}{also}' with the same --connection carries it on"
    )


def backend_lost(engine: Any, error: BaseException) -> CliError:
    """The one line of a run its persistence backend failed under (a database restarting).

    Not a failure of the flow: the backend keeps the state of its last write,
    which ``flowkit flows resume`` continues once the database answers again,
    so the line names the flow detail to resume rather than only the error.
    """
    storage = engine.storage
    return CliError(
        f"flow '{storage.flow_name}' stopped: its persistence backend failed: {one_line(error)}; "
        f"the backend holds the flow as of its last write: once it answers again, "
        f"'flowkit flows resume {storage.flow_uuid}' with the same --connection continues it",
        status=FAILED,
    )


#: The worker-based engine's logger: its one INFO line says that requests wait for a worker.
_WORKER_ENGINE_LOG = "flowkit.engines.worker_based.engine"


@contextlib.contextmanager
def _waits_for_workers_said() -> Iterator[None]:
    """Show, without ``-v``, the worker-based engine's line that requests wait for a worker.

    Logged at INFO (a library's program decides what it shows), it was hidden at
    the command's default level: a run whose tasks no worker offered waited out
    ``transition_timeout`` without a word, like a command that hung. That logger
    says only one other thing at INFO, once: that Redis refuses the ``CLIENT
    UNBLOCK`` that makes deadlines fire on time (worth seeing too).
    """
    logger = logging.getLogger(_WORKER_ENGINE_LOG)
    before = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(before)


def _without_traceback(record: logging.LogRecord) -> bool:
    """Keep the engine's records that carry no traceback (a filter of its logger)."""
    return record.exc_info is None


@contextlib.contextmanager
def _engine_tracebacks_left_to_v() -> Iterator[None]:
    """Leave out the engine's logged tracebacks while the flow runs, for ``-v`` to show.

    A run whose revert failed made the engine log, as TaskFlow's does, an
    ERROR with the revert's traceback ("Engine execution has failed, something
    bad must have happened ..."): 20 lines before the one error line that says
    the same (``reverting 'b' failed with ...``), where the CLI promises that
    line alone unless ``-v`` asks for the traceback.
    """
    engine_log = logging.getLogger(_ENGINE_LOGGER)
    engine_log.addFilter(_without_traceback)
    try:
        yield
    finally:
        engine_log.removeFilter(_without_traceback)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what the run writes to standard output to standard error, until the block ends.

    With a JSON report standard output is for the JSON alone: a task that
    printed (the quickstart's do) put its lines before it, and ``| jq`` refused
    the whole. File descriptor 1 is redirected too, for what a C library or a
    child process (a process pool's worker) writes there.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()  # what a handler holding the real stdout wrote meanwhile
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _failure_line(report: Any) -> str:
    failed = [a for a in report.atoms if a.failure is not None]
    revert_failed = [a for a in report.atoms if a.revert_failure is not None]
    parts = [f"flow '{report.flow_name}' ended {report.state}"]
    if failed:
        # Parallel branches may fail at once: each failure is named, not the first alone.
        parts.append(
            ("atom " if len(failed) == 1 else "atoms ")
            + " and ".join(f"'{atom.name}' failed with {atom.failure.one_line()}" for atom in failed)
            if len(failed) <= 3
            else f"{len(failed)} atoms failed, first '{failed[0].name}' with {failed[0].failure.one_line()}"
        )
    if revert_failed:
        atom = revert_failed[0]
        parts.append(f"reverting '{atom.name}' failed with {atom.revert_failure.one_line()}")
    else:
        # Reverted is what an atom was left as, not what an earlier attempt of it came to:
        # one reverted and run again (a retry) keeps its new work, as an atom a retry's
        # scoped REVERT did not reach keeps its own. Work left done is said, not hidden.
        reverted = sum(1 for a in report.atoms if a.state == "REVERTED")
        kept = sum(1 for a in report.atoms if a.state == "SUCCESS")
        if reverted:
            parts.append(f"reverted {reverted} atom(s)" + (f", {kept} left in SUCCESS" if kept else ""))
        else:
            # never_resolve (or a stop before any revert) leaves done work as it is: say so.
            parts.append(
                f"nothing was reverted ({kept} atom(s) left in SUCCESS)" if kept else "nothing was reverted"
            )
    return "; ".join(parts)


def _progress(engine: Any) -> Any:
    """A progress listener, or None when rich is missing or stdout is not a terminal."""
    try:
        from flowkit.listeners.progress import ProgressListener

        listener = ProgressListener(engine)
    except ImportError:
        return None
    return listener if listener.enabled else None
