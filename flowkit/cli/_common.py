"""What the ``flowkit`` subcommands share.

Exit statuses: 0 when all went well, 1 when the flow failed or something
outside the user's words broke (a database that cannot be reached), 2 for bad
usage (an unknown target or flow, a bad ``--store``). Errors are one line on
stderr naming the thing at fault; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from flowkit._utils.records import Record
from flowkit._utils.text import cells, log_safe, pad

__all__ = [
    "CLOSED_PIPE",
    "FAILED",
    "FROM_FILE",
    "USAGE",
    "CliError",
    "FlowRef",
    "add_connection",
    "build_flow",
    "columns",
    "factory_name",
    "file_path_hint",
    "find_flow",
    "guarded",
    "import_target",
    "importable_cwd",
    "is_sql_backend",
    "list_flows",
    "missing_store",
    "not_empty",
    "not_negative",
    "one_line",
    "open_backend",
    "port_number",
    "positive",
    "quoted_names",
    "spec_error",
    "stdout_closed",
    "url_value",
    "utc_seconds",
]

LOG = logging.getLogger(__name__)

#: Exit status for bad usage (argparse's own).
USAGE = 2
#: Exit status for a failed flow or a runtime error.
FAILED = 1


def spec_error(target: str, err: BaseException) -> CliError:
    """The error of a spec file that cannot be read: bad usage, unless an extra is missing.

    A spec with a mistake is the user's to fix (status 2); a YAML spec on an
    install without PyYAML is the environment's, as the monitor without its
    extra is (status 1).
    """
    status = FAILED if isinstance(err.__cause__, ImportError) else USAGE
    return CliError(f"target '{target}': {one_line(err)}", status=status)


class CliError(Exception):
    """An error to show as one line, with the exit status to leave with."""

    def __init__(self, message: str, status: int = USAGE) -> None:
        super().__init__(message)
        self.status = status


def positive(kind: type[float] | type[int]) -> Callable[[str], float | int]:
    """An argparse ``type=`` that accepts only a positive (finite) number of ``kind``.

    The worker and conductor commands share it so their options fail alike.
    """
    return _bounded(kind, lambda value: value > 0, "must be positive")


def not_negative(kind: type[float] | type[int]) -> Callable[[str], float | int]:
    """An argparse ``type=`` that accepts only a (finite) number of ``kind`` of 0 or more."""
    return _bounded(kind, lambda value: value >= 0, "must not be negative")


def port_number(text: str) -> int:
    """An argparse ``type=`` for a TCP port to listen on, 0 to 65535 (0 picks a free one).

    ``getaddrinfo`` takes a port modulo 65536: ``--port 99999`` served on 34463
    and 65536 on a free port, without a word, and -1 was said to be a host that
    cannot be resolved.
    """
    return int(_PORT(text))


def _bounded(
    kind: type[float] | type[int], fits: Callable[[float], bool], should: str
) -> Callable[[str], float | int]:
    """An argparse ``type=`` reading a ``kind`` that ``fits``; else ``should``, with the text given.

    NaN and the infinities are refused whatever ``fits`` says: no wait, count or
    expiry is one (``nan > 0`` is false but ``nan <= 0`` is too, so a NaN passed
    a check written either way, and an endless wait never polls again).
    """

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if not fits(value):
            raise argparse.ArgumentTypeError(f"{should}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


_PORT = _bounded(
    int, lambda value: 0 <= value <= 65535, "must be a port number, 0 to 65535 (0 picks a free one)"
)


def not_empty(text: str) -> str:
    """An argparse ``type=`` for a name: any text but an empty or blank one.

    ``flowkit conductor --name ''`` connected to the board, then failed with
    "job applicant must be a non-empty string", naming no option (status 1).
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def factory_name(text: str) -> str:
    """An argparse ``type=`` for ``--allow-factory``: a dotted factory name, or a module prefix ending in '.'.

    A flow detail records its factory by dotted name (``pkg.flows.make_order``),
    and only such a name, or a prefix of its module, can allow it: an empty name
    made the conductor fail with a traceback after connecting, and one that is
    no dotted name (``pkg..make``, ``pkg/flows.py``) allowed nothing, so every
    job's factory was refused. ``MODULE:NAME``, as ``flowkit run`` and
    ``flowkit jobs post`` take a factory, is read as the ``MODULE.NAME`` it means.
    """
    module, colon, attr = text.strip().partition(":")
    name = f"{module}.{attr}" if colon else module
    body = name[:-1] if name.endswith(".") else name
    if not all(part.isidentifier() for part in body.split(".")):
        raise argparse.ArgumentTypeError(
            f"{text!r} is no dotted factory name nor a module prefix ending in '.'"
            " (pkg.flows.make_order, pkg.flows.)"
        )
    return name


#: What every URL option's help ends with: how to keep a password out of the process list.
FROM_FILE = "; @PATH reads it from the file PATH"


def url_value(text: str) -> str:
    """An argparse ``type=`` for every option taking a URL: ``@PATH`` reads the URL from a file.

    A URL on the command line, password and all, shows in ``ps`` to every user of
    the machine; ``--connection @/run/secrets/db`` (or ``@<(printenv DB_URL)`` in
    a shell) keeps it out. The file's text is taken whole, surrounding blank
    space removed. No URL starts with ``@``, so nothing else changes meaning.

    Raises:
        argparse.ArgumentTypeError: the file cannot be read, is empty or holds
            more than one line (the message names the file, never its text).
    """
    if not text.startswith("@"):
        return text
    path = text[1:]
    if not path:
        raise argparse.ArgumentTypeError("'@' must be followed by the path of a file holding the URL")
    try:
        with open(path, encoding="utf-8") as stream:
            value = stream.read().strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise argparse.ArgumentTypeError(f"cannot read the URL from file {path!r}: {reason}") from None
    if not value:
        raise argparse.ArgumentTypeError(f"the URL file {path!r} is empty")
    if "\n" in value or "\r" in value:
        raise argparse.ArgumentTypeError(f"the URL file {path!r} holds more than one line")
    return value


def add_connection(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """Add ``--connection URL`` (required unless there is a default)."""
    parser.add_argument(
        "--connection",
        required=default is None,
        default=default,
        type=url_value,
        metavar="URL",
        help="the persistence backend, for example sqlite:///flows.db or postgresql://user:pw@host/db"
        + (f" (default: {default})" if default else "")
        + FROM_FILE,
    )


def guarded(prog: str, handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command's handler so every error leaves as one line and a status."""

    def run(args: argparse.Namespace) -> int:
        from flowkit.persistence.backends._urls import mask_url

        try:
            return handler(args)
        except CliError as err:
            error: BaseException = err
            message, status = one_line(err), err.status
        except KeyboardInterrupt as err:
            # A run says what it left behind (flowkit.cli.run): the flow and its resume.
            said = f": {log_safe(one_line(err))}" if err.args else ""
            print(f"{prog}: interrupted{said}", file=sys.stderr)
            return 130
        except BrokenPipeError:
            return stdout_closed()
        except Exception as err:  # every other failure becomes one line and status 1
            error = err
            message = f"{type(err).__name__}: {one_line(err)}".rstrip(": ")
            status = FAILED
        if getattr(args, "verbose", 0):
            traceback.print_exception(error, file=sys.stderr)
        connection = getattr(args, "connection", None)
        if connection:
            message = message.replace(connection, mask_url(connection))
        # A name in the message may be another process's (a flow or atom from the database):
        # escaped, so that it cannot repaint the terminal (one_line made it one line already).
        print(f"{prog}: error: {log_safe(message)}", file=sys.stderr)
        return status

    return run


#: Exit status of a command whose reader went away, as for a process killed by SIGPIPE.
CLOSED_PIPE = 128 + 13


def stdout_closed() -> int:
    """Leave quietly when standard output's reader went away (``flowkit flows list | head``).

    What a Unix tool does there: no error line, status 141 as if killed by
    SIGPIPE. Standard output is pointed at /dev/null so that Python's own
    flush at exit does not fail again on the closed pipe.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return CLOSED_PIPE


# A quoted name: an opening quote at the start or after a space or an opening bracket,
# the shortest text up to a closing quote that ends the text or comes before a space or
# punctuation. An apostrophe inside a word ("can't", "flow's") is neither.
_SPACES = re.compile(r"\s+")
_QUOTED = re.compile(r"(?:(?<=^)|(?<=[\s(\[{=:,]))'((?:[^']|'(?=\w))*?)'(?=$|[\s).,;:!?\]}])", re.DOTALL)


def one_line(err: BaseException) -> str:
    """``err``'s message on one line, without the chain of causes flowkit errors print.

    A flowkit error's ``str()`` appends each cause on a line of its own, which
    mostly repeats the message; ``-v`` prints the whole chain as a traceback.

    The message's own line breaks and indentation (a multi-line exception's
    structure) become single spaces. A name quoted in it (``'name'``, as
    flowkit's and TaskFlow's messages quote names) is another process's text
    (a flow or atom from the database) or the user's, not structure: it keeps
    its spaces and its control characters are escaped (``\\n``) by
    :func:`~flowkit._utils.text.log_safe`, so a hostile name reads the same
    here as in ``flowkit flows list``. Names Python quoted with ``repr`` are
    escaped already, and pass unchanged.
    """
    from flowkit.exceptions import TaskFlowException

    text = err.message if isinstance(err, TaskFlowException) else str(err)
    parts: list[str] = []
    start = 0
    for quoted in _QUOTED.finditer(text):
        parts.append(_SPACES.sub(" ", text[start : quoted.start()]))
        parts.append(f"'{log_safe(quoted.group(1))}'")
        start = quoted.end()
    parts.append(_SPACES.sub(" ", text[start:]))
    return "".join(parts).strip()


def importable_cwd() -> None:
    """Let modules in the current directory be imported, as ``python -m`` does."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def file_path_hint(module_name: str, attr: str) -> str:
    """What to write instead, when a target's module part is a file path (or ``""``).

    A newcomer who has just run ``python examples/quickstart.py`` types the same
    path as a target. Python's own answer ("No module named 'examples/quickstart'")
    does not say that a module name was wanted, nor which one.
    """
    is_file = module_name.endswith(".py")
    if not is_file and "/" not in module_name and os.sep not in module_name:
        return ""
    name = attr or "NAME"
    stem = module_name[: -len(".py")] if is_file else module_name
    parts = [part for part in stem.replace(os.sep, "/").split("/") if part not in ("", ".")]
    if os.path.isabs(stem) or ".." in parts or not parts:
        return (
            "is a file path, not a module: run from the directory the module is imported from "
            f"and give MODULE:{name}, for example myapp.flows:make_flow"
        )
    return f"is a file path, not a module: give its module's dotted name, '{'.'.join(parts)}:{name}'"


def import_target(text: str) -> Any:
    """Import ``module:attribute`` (the current directory is importable, as with ``python -m``).

    Raises:
        CliError: the text is not ``module:attribute``, or either part is missing.
    """
    module_name, sep, attr = text.partition(":")
    path_hint = file_path_hint(module_name, attr)
    if path_hint:
        raise CliError(f"target '{text}' {path_hint}")
    if not sep or not module_name or not attr:
        raise CliError(f"target '{text}' must be MODULE:NAME, for example myapp.flows:make_flow")
    importable_cwd()
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CliError(f"target '{text}': cannot import module '{module_name}': {err}") from err
    except Exception as err:  # the user's module failed as it ran: name it, not just the error
        raise CliError(
            f"target '{text}': importing module '{module_name}' raised {type(err).__name__}:"
            f" {one_line(err)} (-v shows the traceback)",
            status=FAILED,
        ) from err
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(f"target '{text}': module '{module_name}' has no attribute '{attr}'") from None
    return target


def build_flow(text: str, factory: Callable[[], Any]) -> Any:
    """Call the ``module:callable`` target ``text`` names, with no arguments, for its flow.

    A bare ``TypeError`` or the factory's own exception named neither the
    target nor that a target is called with no arguments.

    Raises:
        CliError: the callable needs arguments (bad usage), or raised (status 1).
    """
    import inspect

    try:
        inspect.signature(factory).bind()
    except TypeError as err:
        raise CliError(
            f"target '{text}' is called with no arguments to build its flow, but it needs some"
            f" ({err}): give a callable that takes none, or a flow object"
        ) from err
    except ValueError:  # no signature to read (a builtin): the call says
        pass
    try:
        return factory()
    except Exception as err:
        raise CliError(
            f"target '{text}' raised {type(err).__name__}: {one_line(err)} when called to build"
            " its flow (-v shows the traceback)",
            status=FAILED,
        ) from err


#: What a reading command adds when there is no store at its URL: who makes one.
_CREATES_NONE = (
    "(a command that only reads creates none; flowkit run, flowkit flows resume and flowkit db upgrade do)"
)


def is_sql_backend(backend: Any) -> bool:
    """Whether ``backend`` is a SQL database, the only kind with a schema to migrate (no I/O).

    The SQL backend's module is loaded whenever one of its backends exists, so a
    document store is told apart without importing it (and SQLAlchemy with it).
    """
    sql = sys.modules.get("flowkit.persistence.backends.impl_sqlalchemy")
    return sql is not None and isinstance(backend, sql.SQLAlchemyBackend)


def missing_store(url: str, err: BaseException) -> CliError:
    """The error of a reading command whose ``--connection`` names no store (status 1).

    The backend's message names what is missing (the SQLite file, the
    directory, the ZooKeeper path); this adds the URL and which commands make
    a store, since the reading one made none.
    """
    from flowkit.persistence.backends._urls import mask_url

    masked = mask_url(url)
    detail = one_line(err).replace(url, masked)
    if masked not in detail:
        detail = f"--connection {masked}: {detail}"
    return CliError(f"{detail} {_CREATES_NONE}", status=FAILED)


@contextlib.contextmanager
def open_backend(url: str, *, writable: bool = True, create_missing: bool = False) -> Iterator[Any]:
    """Fetch the backend at ``url``, make it ready (``upgrade()``), yield it, close it.

    Args:
        writable: false for a command that only reads: the backend is
            configured ``writable=False`` (see
            :attr:`flowkit.persistence.base.Backend.writable`), so it creates,
            migrates and writes nothing, and its store must exist with this
            flowkit's layout (``flowkit db upgrade`` makes it).
        create_missing: (not ``writable``) a store not made yet is made first,
            for a reader started before the first run (the monitor); see
            :func:`flowkit.persistence.backends.ready_for_reading`.

    Raises:
        CliError: the URL names no known backend (status 2), or it cannot be
            reached, or (not ``writable``) there is no store there or it lacks
            flowkit's layout (status 1).
    """
    from flowkit import exceptions as exc
    from flowkit.persistence import backends
    from flowkit.persistence.backends._urls import mask_url

    masked = mask_url(url)
    try:
        backend = backends.fetch(url if writable else {"connection": url, "writable": False})
    except (exc.NotFound, ValueError) as err:
        raise CliError(f"--connection {masked}: {one_line(err)}") from err
    try:
        try:
            backends.ready_for_reading(backend, create_missing=create_missing)
        except exc.StoreMissing as err:
            raise missing_store(url, err) from err
        except Exception as err:
            detail = one_line(err).replace(url, masked)
            if masked not in detail:  # flowkit's own errors name the URL already
                detail = f"cannot use database {masked}: {detail}"
            raise CliError(detail, status=FAILED) from err
        yield backend
    finally:
        backend.close()


def columns(table: Sequence[Sequence[str]]) -> str:
    """Rows of cells as aligned columns, each as wide as its longest cell (long names included)."""
    widths = [max(cells(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        padded = [pad(cell, width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]))
    return "\n".join(lines)


def utc_seconds(seconds: float) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM:SS`` in UTC, as the commands' tables and lines show times."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


class FlowRef(Record):
    """A flow detail and the logbook that holds it."""

    book: Any
    flow: Any


def list_flows(backend: Any) -> list[FlowRef]:
    """Every flow detail in the backend, oldest logbook first."""
    with contextlib.closing(backend.get_connection()) as conn:
        books = list(conn.get_logbooks())
    books.sort(key=lambda b: (b.created_at is None, b.created_at))
    return [FlowRef(book, flow) for book in books for flow in book]


#: At most this many other uuids are named when a flow name matches several flows.
_OTHERS_NAMED = 3


#: At most this many names (of flows, of atoms) are listed when none matches the one given.
_NAMES_LISTED = 5


def quoted_names(names: Iterable[str], near: str | None = None) -> str:
    """A few of ``names`` for an error line: ``'a', 'b' and 3 more``, those nearest ``near`` first.

    Quoted, as the message's other names are: :func:`one_line` then escapes
    them as the listings do and keeps their spaces, and a name holding ", "
    reads as one name. A few, not all: a flow of 10,000 atoms made a 69 kB
    line. The names most like the one given (a typo's intended name) come
    first, then the others in order.
    """
    ordered = sorted(set(names))
    if near is not None and len(ordered) > _NAMES_LISTED:
        first = _nearest(near, ordered)
        ordered = first + [name for name in ordered if name not in set(first)]
    shown = ", ".join(f"'{name}'" for name in ordered[:_NAMES_LISTED])
    more = len(ordered) - _NAMES_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _nearest(near: str, names: Sequence[str], cutoff: float = 0.6) -> list[str]:
    """The names (at most :data:`_NAMES_LISTED`) most like ``near``, the closest first, then by name."""
    import difflib

    matcher = difflib.SequenceMatcher(b=near)
    scored: list[tuple[float, str]] = []
    for name in names:
        matcher.set_seq1(name)
        if matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff:
            ratio = matcher.ratio()
            if ratio >= cutoff:
                scored.append((-ratio, name))
    return [name for _, name in sorted(scored)[:_NAMES_LISTED]]


def _backend_contents(backend: Any, flows: Sequence[FlowRef], ref: str | None = None) -> str:
    """The backend by its URL (password masked), and the flow names it holds.

    "No flow 'x' in this backend" left a reader to guess which was wrong: the
    name (a typo among the names listed) or the URL (another database than
    the one meant, which may hold no flows).
    """
    from flowkit.persistence.backends._urls import mask_url

    connection = (getattr(backend, "conf", None) or {}).get("connection")
    where = f"the backend {mask_url(connection)}" if isinstance(connection, str) else "this backend"
    if not flows:
        return f"{where}, which holds no flows"
    return f"{where} (its flows: {quoted_names((f.flow.name for f in flows), near=ref)})"


def find_flow(backend: Any, ref: str, prog: str = "flowkit") -> FlowRef:
    """The flow detail whose uuid is ``ref`` or, failing that, the newest named ``ref``.

    Names are not unique (each run of a flow records one more under the same
    name). When several match, the newest is taken as before, but a one-line
    note on stderr says so, how many others match and which uuids to give
    instead: taken in silence, an operator could read, explain or resume
    another run than the one meant. Standard output is left alone, so that
    ``--json`` stays parsable.

    Raises:
        CliError: no flow detail has that uuid or name.
    """
    flows = list_flows(backend)
    found = [f for f in flows if f.flow.uuid == ref]
    if not found:
        found = [f for f in flows if f.flow.name == ref]
    if not found:
        raise CliError(f"no flow with uuid or name '{ref}' in {_backend_contents(backend, flows, ref)}")
    chosen = found[-1]
    if len(found) > 1:
        others = [log_safe(f.flow.uuid) for f in reversed(found[:-1])]
        shown = ", ".join(others[:_OTHERS_NAMED])
        if len(others) > _OTHERS_NAMED:
            shown += f" and {len(others) - _OTHERS_NAMED} more ('flowkit flows list' shows them)"
        print(
            f"{prog}: note: {len(found)} flows are named '{log_safe(ref)}'; this is the newest, "
            f"{log_safe(chosen.flow.uuid)}; "
            f"{len(others)} other{'s' if len(others) > 1 else ''}: {shown}: give a uuid instead of the "
            "name to choose one",
            file=sys.stderr,
        )
    return chosen
