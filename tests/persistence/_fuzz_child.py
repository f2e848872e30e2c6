"""One segment of a crash-fuzzed run: start or resume a flow, dying at a chosen point.

Run as ``python _fuzz_child.py URL BOOK MODE ENGINE FLOW DIE_AT LOG``:

- ``MODE``: ``start`` loads ``FLOW`` (a factory below) into logbook ``BOOK``;
  ``resume`` finds that logbook's only flow detail and carries it on.
- ``DIE_AT``: the process SIGKILLs itself at its ``DIE_AT``-th *kill point*
  (0: never). Kill points are: before and after each ``execute`` and ``revert``
  does its work, and before and after each write the engine makes
  (``save_flow_progress``), so kills land in tasks, in reverts, and between a
  write and the next.
- ``LOG``: every task appends ``start``/``done`` lines for ``execute`` and
  ``revert`` to it, with ``os.write`` on an ``O_APPEND`` descriptor (nothing
  buffered, so a kill loses nothing logged).

When the run ends the child prints the final flow state and exits 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowkit import engines, task  # noqa: E402
from flowkit.patterns import graph_flow, linear_flow  # noqa: E402
from flowkit.persistence import backends, models  # noqa: E402

_POINTS = {"count": 0, "die_at": 0}
_LOG: dict[str, int] = {}


def kill_point() -> None:
    """Count one kill point; SIGKILL this process at the chosen one."""
    _POINTS["count"] += 1
    if _POINTS["count"] == _POINTS["die_at"]:
        os.kill(os.getpid(), signal.SIGKILL)


def log(line: str) -> None:
    os.write(_LOG["fd"], (line + "\n").encode())


class Work(task.Task):
    """Logs its execute and revert, with kill points around the work."""

    def execute(self, value: int, other: int = 0) -> int:
        kill_point()
        log(f"execute start {self.name}")
        kill_point()
        log(f"execute done {self.name}")
        return value + other + 1

    def revert(self, value: int, **kwargs: Any) -> None:
        kill_point()
        log(f"revert start {self.name}")
        kill_point()
        log(f"revert done {self.name}")


class Fails(Work):
    def execute(self, value: int, other: int = 0) -> int:
        kill_point()
        log(f"execute start {self.name}")
        raise RuntimeError(f"{self.name} fails on purpose")


def linear_ok() -> linear_flow.Flow:
    flow = linear_flow.Flow("linear-ok")
    for i in range(5):
        flow.add(Work(f"t{i}", provides=f"v{i}", rebind={"value": "value" if i == 0 else f"v{i - 1}"}))
    return flow


def linear_fails() -> linear_flow.Flow:
    return linear_ok().add(Fails("boom", rebind={"value": "v4"}))


def graph_ok() -> graph_flow.Flow:
    """a -> (b, c) -> d: two atoms run side by side on the parallel engine."""
    return graph_flow.Flow("graph-ok").add(
        Work("a", provides="va"),
        Work("b", provides="vb", rebind={"value": "va"}),
        Work("c", provides="vc", rebind={"value": "va"}),
        Work("d", provides="vd", rebind={"value": "vb", "other": "vc"}),
    )


def graph_fails() -> graph_flow.Flow:
    """a -> (b, boom): boom fails while b may still run; everything is reverted."""
    return graph_flow.Flow("graph-fails").add(
        Work("a", provides="va"),
        Work("b", provides="vb", rebind={"value": "va"}),
        Fails("boom", rebind={"value": "va"}),
    )


def _watch_writes(backend: Any) -> None:
    conn_type = type(backend.get_connection())
    original = conn_type.save_flow_progress

    def save_flow_progress(self: Any, *args: Any, **kwargs: Any) -> Any:
        kill_point()
        result = original(self, *args, **kwargs)
        kill_point()
        return result

    conn_type.save_flow_progress = save_flow_progress  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    url, book_uuid, mode, engine_kind, flow_name, die_at, log_path = argv
    _POINTS["die_at"] = int(die_at)
    _LOG["fd"] = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with contextlib.closing(backends.fetch({"connection": url})) as backend:
        _watch_writes(backend)
        if mode == "start":
            book = models.LogBook("fuzz", uuid=book_uuid)
            engine = engines.load_from_factory(
                globals()[flow_name], store={"value": 1}, book=book, backend=backend, engine=engine_kind
            )
        else:
            with contextlib.closing(backend.get_connection()) as conn:
                (found,) = list(conn.get_flows_for_book(book_uuid, lazy=True))
                flow_detail = conn.get_flow_details(found.uuid)
            engine = engines.load_from_detail(flow_detail, backend=backend, engine=engine_kind)
        with contextlib.suppress(Exception):
            engine.run()
        print(engine.storage.get_flow_state(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
