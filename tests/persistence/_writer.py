"""A separate process that writes flow progress, for the concurrency tests.

Run as ``python _writer.py MODE CONNECTION JSON_ARGS``. The process connects,
prints ``ready`` and waits for a line on stdin before writing, so the test can
release several writers at the same moment. It prints ``done`` when finished;
any error ends it with a traceback on stderr and a non-zero status.

Modes:
    ``books``: save a logbook of its own (uuids given by the test), then move
        every atom of every flow through many states with ``save_flow_progress``
        (batches and single atoms), ``update_atom_details`` and
        ``update_flow_details``. The final records are what
        :func:`expected_atom` says.
    ``batches``: take an existing flow and rewrite all its atoms (and the
        flow's meta) in single ``save_flow_progress`` calls, each batch
        stamping one increasing counter on everything it writes: at least
        ``batches`` times, and on until a ``stop`` line comes on stdin (so the
        test's reads overlap the writes however the machine schedules the
        two processes). Prints the last counter written before ``done``.
"""

from __future__ import annotations

import json
import select
import sys
from typing import Any

from flowkit import states
from flowkit.persistence import backends, models


def expected_atom(book: str, flow: int, atom: int, rounds: int) -> dict[str, Any]:
    """The results the ``books`` mode leaves in atom ``atom`` of flow ``flow``."""
    return {"book": book, "flow": flow, "atom": atom, "round": rounds - 1}


def _atom_uuid(flow_uuid: str, index: int) -> str:
    return f"{flow_uuid[:-4]}{index:04d}"


def _write_books(conn: Any, args: dict[str, Any]) -> None:
    book = models.LogBook(args["name"], uuid=args["book_uuid"])
    flows: list[models.FlowDetail] = []
    for f, flow_uuid in enumerate(args["flow_uuids"]):
        fd = models.FlowDetail(f"flow-{f}", flow_uuid)
        fd.state = states.PENDING
        for a in range(args["atoms"]):
            ad = models.TaskDetail(f"atom-{a}", _atom_uuid(flow_uuid, a))
            ad.state = states.PENDING
            fd.add(ad)
        book.add(fd)
        flows.append(fd)
    conn.save_logbook(book)
    rounds = args["rounds"]
    for r in range(rounds):
        for f, fd in enumerate(flows):
            fd.state = states.RUNNING
            fd.meta["round"] = r
            atoms = list(fd)
            # The whole flow in one batch: every atom starts running.
            for ad in atoms:
                ad.state = states.RUNNING
                ad.results = None
            conn.save_flow_progress(fd, atoms, flow_changed=True)
            # Then atom by atom, as an engine does when each one finishes.
            for a, ad in enumerate(atoms):
                ad.state = states.SUCCESS
                ad.results = expected_atom(args["name"], f, a, r + 1)
                conn.save_flow_progress(fd, [ad], flow_changed=False)
    for fd in flows:
        fd.state = states.SUCCESS
        conn.update_flow_details(fd)
        first = next(iter(fd))
        first.meta["touched"] = True
        conn.update_atom_details(first)


def _write_batches(conn: Any, args: dict[str, Any]) -> None:
    fd = conn.get_flow_details(args["flow_uuid"])
    atoms = list(fd)
    counter = 0
    stopped = False
    while not (stopped and counter >= args["batches"]):
        counter += 1
        fd.meta["counter"] = counter
        for ad in atoms:
            ad.results = counter
            ad.meta["counter"] = counter
        conn.save_flow_progress(fd, atoms, flow_changed=True)
        if not stopped and select.select([sys.stdin], [], [], 0)[0]:
            stopped = sys.stdin.readline().strip() == "stop"
    print(counter, flush=True)


def main(argv: list[str]) -> int:
    mode, connection, raw = argv
    args = json.loads(raw)
    backend = backends.fetch({"connection": connection})
    try:
        with backend.get_connection() as conn:
            print("ready", flush=True)
            if sys.stdin.readline().strip() != "go":
                return 2
            if mode == "books":
                _write_books(conn, args)
            elif mode == "batches":
                _write_batches(conn, args)
            else:
                raise SystemExit(f"unknown mode {mode!r}")
    finally:
        backend.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
