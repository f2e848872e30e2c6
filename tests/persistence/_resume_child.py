"""A process that starts or resumes one flow, for the crash-and-resume tests.

Run as ``python _resume_child.py URL MODE IDS LOG``:

- ``URL``: the persistence backend (its schema already made by the test).
- ``MODE``: ``start`` builds the flow with ``engines.load_from_factory`` into a
  new logbook; ``resume`` finds the logbook's only flow detail through the
  backend and carries it on with ``engines.load_from_detail``.
- ``IDS``: JSON: ``book`` (the logbook uuid, chosen by the test), ``engine``
  (engine kind, default ``serial``), ``options`` (engine options); for
  ``start`` also ``factory`` (a name in :mod:`tests.persistence._resume_flows`),
  ``args`` (its JSON arguments) and ``value`` (the first task's input); and
  optionally ``barrier``: a path prefix; the child creates ``<barrier>.<pid>``
  once its engine is loaded and waits (at most 30 s) for ``<barrier>.go``
  before running, so the test can start several runs at the same moment.
- ``LOG``: the call log the tasks append to (put in the store on ``start``;
  a resumed run takes it from the stored flow detail).

If the run ends, the child prints one JSON line: the final flow state, the
flow's results (``storage.fetch_all()``) and what ``engine.run()`` raised
(null if nothing), then exits with status 0. A task may kill it first.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script: make the repository importable (tests.persistence._resume_flows).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowkit import engines, exceptions  # noqa: E402
from flowkit.engines.base import Engine  # noqa: E402
from flowkit.persistence import backends, models  # noqa: E402
from flowkit.types.failure import Failure  # noqa: E402
from tests.persistence import _resume_flows  # noqa: E402

BARRIER_TIMEOUT = 30.0


def _describe(err: BaseException) -> dict[str, Any]:
    """What a run raised, as JSON: its type, message and any wrapped failures."""
    wrapped = []
    if isinstance(err, exceptions.WrappedFailure):
        wrapped = [{"types": list(f.exception_type_names), "message": f.exception_str} for f in err]
    return {"type": type(err).__name__, "message": str(err), "wrapped": wrapped}


def _start(backend: Any, ids: dict[str, Any], log_path: str) -> Engine:
    factory = getattr(_resume_flows, ids["factory"])
    book = models.LogBook(f"resume-{ids['factory']}", uuid=ids["book"])
    return engines.load_from_factory(
        factory,
        factory_args=ids.get("args", []),
        store={"value": ids.get("value", "v"), _resume_flows.LOG_SYMBOL: log_path},
        book=book,
        backend=backend,
        engine=ids.get("engine", "serial"),
        **ids.get("options", {}),
    )


def _resume(backend: Any, ids: dict[str, Any]) -> Engine:
    with contextlib.closing(backend.get_connection()) as conn:
        (found,) = list(conn.get_flows_for_book(ids["book"], lazy=True))
        flow_detail = conn.get_flow_details(found.uuid)
    return engines.load_from_detail(
        flow_detail, backend=backend, engine=ids.get("engine", "serial"), **ids.get("options", {})
    )


def _await_barrier(prefix: str) -> None:
    Path(f"{prefix}.{os.getpid()}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT
    go = Path(f"{prefix}.go")
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no {go} after {BARRIER_TIMEOUT} s")
        time.sleep(0.005)


def main(argv: list[str]) -> int:
    url, mode, ids_text, log_path = argv
    ids = json.loads(ids_text)
    with contextlib.closing(backends.fetch({"connection": url})) as backend:
        engine = _start(backend, ids, log_path) if mode == "start" else _resume(backend, ids)
        if ids.get("barrier"):
            _await_barrier(ids["barrier"])
        error = None
        try:
            engine.run()
        except Exception as err:
            error = _describe(err)
        report = {
            "state": engine.storage.get_flow_state(),
            # A failed atom's Failure (what TaskFlow's lookups give too) as its type names.
            "results": {
                name: {"failure": list(value.exception_type_names)} if isinstance(value, Failure) else value
                for name, value in engine.storage.fetch_all().items()
            },
            "error": error,
        }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
