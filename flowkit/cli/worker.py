"""``flowkit worker``: serve tasks to worker-based engines through Redis.

::

    flowkit worker --redis redis://localhost:6379/0 --topic volumes \\
        --tasks myservice.tasks --tasks other.mod:Resize,Attach

``--tasks`` names a module (every task class defined in it) or a module with
a comma-separated list of class names; the current directory is importable, as
with ``python -m``. The signing secret comes from ``FLOWKIT_WORKER_SECRET`` so
it never shows in a process listing. SIGTERM or SIGINT stop the worker
gracefully (running tasks get ``--grace`` seconds; a Redis that stopped
answering delays the exit by a bounded time, see doc/workers.rst); a second
signal stops it at once, leaving running tasks for another worker. A stop
before it serves (while it still reaches Redis) leaves at once, without
serving. Either way the exit status is 0. Bad arguments exit with status 2,
runtime failures with 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from flowkit.cli._common import (
    FAILED,
    FROM_FILE,
    CliError,
    guarded,
    not_negative,
    one_line,
    positive,
    url_value,
)

__all__ = ["register"]

LOG = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``worker`` command to the ``flowkit`` parser."""
    parser = subparsers.add_parser(
        "worker",
        help="serve tasks to worker-based engines through Redis",
        description="Run a worker that executes the given tasks for worker-based engines. "
        "The signing secret, if any, is read from FLOWKIT_WORKER_SECRET.",
    )
    parser.add_argument(
        "--redis",
        required=True,
        type=url_value,
        metavar="URL",
        help="Redis URL, e.g. redis://host:6379/0" + FROM_FILE,
    )
    parser.add_argument("--topic", required=True, help="the topic whose requests to serve")
    parser.add_argument(
        "--tasks",
        required=True,
        action="append",
        metavar="MODULE[:Name,...]",
        help="a module whose task classes to offer, optionally with the class names (repeatable)",
    )
    parser.add_argument(
        "--key-prefix",
        "--namespace",
        dest="key_prefix",
        default="flowkit",
        help="prefix of the Redis keys, the engines' key_prefix (default: flowkit; also --namespace)",
    )
    parser.add_argument(
        "--threads",
        "--concurrency",
        dest="threads",
        type=positive(int),
        metavar="N",
        help=(
            "tasks run at once (default: five per CPU, as the engines' thread pools;"
            " --concurrency, as the Go worker spells it, works too)"
        ),
    )
    parser.add_argument(
        "--max-message-bytes",
        type=positive(int),
        default=1 << 20,
        metavar="N",
        help=(
            "largest message body accepted or sent, stated in the advert so engines"
            " send no larger request (default: 1048576)"
        ),
    )
    parser.add_argument(
        "--heartbeat",
        type=positive(float),
        default=1.0,
        metavar="S",
        help="seconds between heartbeats (default: %(default)s)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=positive(float),
        default=30.0,
        metavar="S",
        help="seconds before a dead worker's request is taken over (default: 30)",
    )
    parser.add_argument(
        "--max-deliveries",
        type=positive(int),
        default=3,
        metavar="N",
        help="deliveries after which a taken-over request fails (default: 3)",
    )
    parser.add_argument(
        "--grace",
        type=not_negative(float),
        default=30.0,
        metavar="S",
        help="seconds running tasks may finish after a stop signal (default: 30)",
    )
    parser.add_argument("--burst", action="store_true", help="exit once no request is waiting or running")
    parser.add_argument("--worker-id", metavar="ID", help="this worker's id (default: host-pid-random)")
    parser.set_defaults(handler=guarded("flowkit worker", _run))


class _StopNow(BaseException):
    """Raised by a second stop signal into the worker's thread, to leave whatever it waits on."""


def _import_tasks(tasks: list[str]) -> None:
    """Import each ``--tasks`` module, naming the first that raises as it runs.

    The worker said only the exception's message ("settings missing"). Imported
    here, the modules are in ``sys.modules`` for the worker's own loading, which
    keeps the words of a module that is not there (an ``ImportError``).

    Raises:
        CliError: a module raised as it was imported (status 1; ``-v`` shows its traceback).
    """
    import importlib

    for spec in tasks:
        module_name = spec.strip().partition(":")[0]
        if not all(part.isidentifier() for part in module_name.split(".")):
            continue  # no module name (':Foo', './tasks.py'): the worker refuses it as bad usage
        try:
            importlib.import_module(module_name)
        except ImportError:
            continue  # the worker says it, with the dotted name for a file path
        except Exception as err:
            raise CliError(
                f"importing task module {module_name!r} raised {type(err).__name__}: {one_line(err)}"
                " (-v shows the traceback)",
                status=FAILED,
            ) from err


def _run(args: argparse.Namespace) -> int:
    import signal  # only a running worker needs it (``flowkit --help`` start-up)

    from flowkit import exceptions as exc
    from flowkit.cli._signals import StopSignals
    from flowkit.persistence.backends._urls import mask_url

    worker: Any = None
    # Whether a forced stop raises _StopNow to leave what the main thread waits on
    # (a task module's import, a Redis read); not once the worker has returned.
    interruptible = True

    def who() -> str:
        return str(worker.worker_id) if worker is not None else (args.worker_id or "(starting)")

    def stop_gracefully(name: str) -> None:
        LOG.warning("%s received: stopping worker %s gracefully", name, who())
        if worker is None:
            return  # its task modules are still being imported: it stops once they are
        worker.stop()
        if interruptible and not worker.wait(0):
            # Made but not serving yet: between the start-up check below and run(),
            # whose start forgets a stop() made before it (as TaskFlow's worker
            # does, for a library user who stops and runs it again), or inside run()
            # while it reaches Redis, which waits out a connect timeout when Redis
            # does not answer and then failed with status 1. Nothing is being
            # served, so nothing is cut short: leave at once.
            raise _StopNow

    def stop_now(name: str) -> None:
        LOG.warning("%s received again: stopping worker %s now", name, who())
        if worker is not None:
            worker.stop(grace=0)
        if interruptible:
            # Out of whatever the worker waits on, a Redis read included: "now" means now.
            raise _StopNow

    # In place before the task modules are imported: one that takes its time (a
    # large library, a model loaded at import) left a SIGTERM meanwhile to kill
    # the process (status -15) and a Ctrl-C to print a KeyboardInterrupt traceback.
    on_signal = StopSignals(stop_gracefully, stop_now)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            from flowkit.engines.worker_based.worker import Worker
        except ImportError as err:
            raise CliError(one_line(err), status=FAILED) from err

        # Like ``python -m``: modules next to where the worker was started are importable.
        here = os.getcwd()
        if here not in sys.path and "" not in sys.path:
            sys.path.insert(0, here)
        _import_tasks(args.tasks)
        try:
            worker = Worker(
                topic=args.topic,
                tasks=args.tasks,
                url=args.redis,
                key_prefix=args.key_prefix,
                threads_count=args.threads,
                heartbeat=args.heartbeat,
                visibility_timeout=args.visibility_timeout,
                max_deliveries=args.max_deliveries,
                max_message_bytes=args.max_message_bytes,
                worker_id=args.worker_id,
                grace=args.grace,
            )
        except ImportError as err:  # a Redis URL without the redis client: the message says what to install
            raise CliError(one_line(err), status=FAILED) from err
        except (exc.NotFound, exc.InvalidFormat, exc.Duplicate, TypeError, ValueError) as err:
            raise CliError(mask_url(one_line(err)).replace(args.redis, mask_url(args.redis))) from err
        if on_signal.count:
            return 0  # asked to stop while it started: it never serves
        worker.run(burst=args.burst)
    except _StopNow:
        pass
    except CliError:
        raise
    except Exception as err:
        raise CliError(one_line(err).replace(args.redis, mask_url(args.redis)), status=FAILED) from err
    finally:
        interruptible = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
