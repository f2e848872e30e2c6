"""Flows and the run/kill machinery of the SIGKILL torture test (``test_sigkill_torture.py``).

A run passes *points*: the start and end of each task's ``execute`` and
``revert``, each atom and flow state change its engine announces, and the
moments just before and just after each write the engine makes
(``save_flow_progress``). Each point has a name that repeats across runs of
the same flow on the same engine: ``exec-done:t2#1`` is the first time task
``t2`` got past its side effect, ``write-after#5`` the fifth write committed.

A run given a point to *hold at* creates a marker file holding its PID
(whole, through a hard link: only the first process ever to reach the point
holds, and no reader finds it empty) when it gets there and then
waits to be SIGKILLed by the test, which polls for the marker. Holding
instead of killing itself lets the kill come from outside, as it does in
production, while the point stays deterministic.

Tasks log every ``execute`` and ``revert`` to a call log (``O_APPEND``, one
``os.write`` per line: nothing is buffered, so a kill loses nothing that was
logged): these are the side effects the test counts.

Run as ``python -m tests.persistence._torture URL BOOK MODE ENGINE FLOW POINT MARKER LOG``
(``POINT`` ``-`` for none; ``POINT!raise`` raises ``KeyboardInterrupt`` there instead
of holding, as a listener stopping the run would): ``start`` loads ``FLOW`` into logbook ``BOOK``,
``resume`` carries on that logbook's only flow detail. When the run ends the
child prints one JSON line (the flow state and ``storage.fetch_all()``).

``python -m tests.persistence._torture --conductor ARGS`` is ``flowkit ARGS``
with one more point, ``finish``, as each job's run ends (before it is
consumed). In conductor processes the point, marker and log come from the
``FLOWKIT_TORTURE_*`` environment variables.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from flowkit import engines, retry, states, task
from flowkit.patterns import graph_flow, linear_flow, loop_flow
from flowkit.persistence import backends, models
from flowkit.types.failure import Failure

__all__ = [
    "FLOWS",
    "PASSED",
    "PREDECESSORS",
    "RETRIED",
    "SUCCEEDED",
    "configure",
    "hold_if_chosen",
    "run",
]

#: Seconds a held process waits for its SIGKILL before giving up (a test that never killed it).
HOLD_TIMEOUT = 60.0
#: Exit status of a held process nobody killed.
NOT_KILLED = 70

_CONFIG: dict[str, str | None] = {}
_COUNTS: collections.Counter[str] = collections.Counter()
#: Every point this process passed, in order (the reference run reads it).
PASSED: list[str] = []
#: The result each task had when the engine announced its SUCCESS (the reference run reads it).
SUCCEEDED: dict[str, Any] = {}


def configure(
    log: str | None, point: str | None = None, marker: str | None = None, how: str | None = None
) -> None:
    """Set the call log, the point to hold at, its marker and what to do there (else the environment's).

    ``how``: None to hold until killed, ``"raise"`` to raise ``KeyboardInterrupt`` there.
    """
    _CONFIG.update(log=log, point=point, marker=marker, how=how)
    _COUNTS.clear()
    PASSED.clear()
    SUCCEEDED.clear()


def _setting(key: str) -> str | None:
    if key not in _CONFIG:
        _CONFIG[key] = os.environ.get(f"FLOWKIT_TORTURE_{key.upper()}") or None
    return _CONFIG[key]


def hold_if_chosen(key: str) -> None:
    """Pass point ``key``; if it is the chosen one, mark it and wait to be killed."""
    _COUNTS[key] += 1
    name = f"{key}#{_COUNTS[key]}"
    PASSED.append(name)
    if name != _setting("point"):
        return
    marker = _setting("marker")
    assert marker is not None, "a point to hold at needs a marker file"
    if not _publish(marker, f"{os.getpid()}\n"):
        return  # an earlier process held here and was killed: carry on
    if _setting("how") == "raise":
        # The other way a run stops at a point: from within (a listener's exception),
        # the run's last write storing what its records hold then.
        raise KeyboardInterrupt(name)
    deadline = time.monotonic() + HOLD_TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.05)
    os._exit(NOT_KILLED)


def _publish(path: str, text: str) -> bool:
    """Create ``path`` holding ``text``, whole or not at all; False if it exists already.

    The test polls for the marker and reads the holder's PID from it. Created
    empty (``O_EXCL``) and written in a second call, it could be read between
    the two under load ("invalid literal for int() with base 10: ''"). The
    text goes into a file of this process's own first, which a hard link then
    puts at ``path``: ``link`` fails if ``path`` exists, as ``O_EXCL`` did, so
    the first process to get there still holds alone.
    """
    draft = f"{path}.{os.getpid()}.draft"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    try:
        os.link(draft, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(draft)
    return True


def _log(action: str, atom: str) -> None:
    path = _setting("log")
    if path is None:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{action} {atom} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _number(value: Any) -> int:
    """The number a step computes from: the flow's injected int, or a step's result."""
    return int(value["n"]) if isinstance(value, dict) else int(value)


def _result(n: int, name: str) -> dict[str, Any]:
    """A step's result: nested containers, as real results are, so every write of one
    goes through the JSON encoder (a plain int is written without it)."""
    return {"n": n, "by": name, "trail": [n % 7, {"text": f"{name}:{n}", "half": n / 2}]}


class Step(task.Task):
    """Logs its execute and revert (the side effects), with points around each."""

    def execute(self, value: Any, other: Any = 0) -> dict[str, Any]:
        hold_if_chosen(f"exec-start:{self.name}")
        _log("execute", self.name)
        hold_if_chosen(f"exec-done:{self.name}")
        return _result(_number(value) * 3 + _number(other) + len(self.name), self.name)

    def revert(self, value: Any, **kwargs: Any) -> dict[str, Any]:
        hold_if_chosen(f"revert-start:{self.name}")
        _log("revert", self.name)
        hold_if_chosen(f"revert-done:{self.name}")
        return {"undone": self.name, "from": [_number(value)]}


class Boom(Step):
    """Fails after its side effect."""

    def execute(self, value: Any, other: Any = 0) -> dict[str, Any]:
        hold_if_chosen(f"exec-start:{self.name}")
        _log("execute", self.name)
        hold_if_chosen(f"exec-done:{self.name}")
        raise RuntimeError(f"{self.name} fails on purpose")


class Flaky(Step):
    """Fails on the retry's first two attempts (decided by the stored attempt number)."""

    def execute(self, value: Any, other: Any = 0, attempt: int = 1) -> dict[str, Any]:
        hold_if_chosen(f"exec-start:{self.name}")
        _log("execute", self.name)
        hold_if_chosen(f"exec-done:{self.name}")
        if attempt < 3:
            raise RuntimeError(f"{self.name} fails on attempt {attempt}")
        return _result(_number(value) * 3 + attempt, self.name)


def _chain(name: str, names: list[str], first: str = "value") -> linear_flow.Flow:
    flow = linear_flow.Flow(name)
    previous = first
    for atom in names:
        flow.add(Step(atom, provides=f"v_{atom}", rebind={"value": previous}))
        previous = f"v_{atom}"
    return flow


def linear_ok() -> linear_flow.Flow:
    """t0 -> t1 -> t2 -> t3 -> t4, each from the one before."""
    return _chain("linear-ok", ["t0", "t1", "t2", "t3", "t4"])


def linear_fails() -> linear_flow.Flow:
    """t0 -> ... -> t3 -> boom: boom fails, everything is reverted in reverse order."""
    return _chain("linear-fails", ["t0", "t1", "t2", "t3"]).add(Boom("boom", rebind={"value": "v_t3"}))


def graph_ok() -> graph_flow.Flow:
    """a -> (b, c) -> d: b and c run side by side on the parallel engine."""
    return graph_flow.Flow("graph-ok").add(
        Step("a", provides="v_a"),
        Step("b", provides="v_b", rebind={"value": "v_a"}),
        Step("c", provides="v_c", rebind={"value": "v_a"}),
        Step("d", provides="v_d", rebind={"value": "v_b", "other": "v_c"}),
    )


def graph_fails() -> graph_flow.Flow:
    """a -> (b, c) -> boom: b and c are reverted side by side, then a."""
    return graph_flow.Flow("graph-fails").add(
        Step("a", provides="v_a"),
        Step("b", provides="v_b", rebind={"value": "v_a"}),
        Step("c", provides="v_c", rebind={"value": "v_a"}),
        Boom("boom", rebind={"value": "v_b", "other": "v_c"}),
    )


def retried() -> linear_flow.Flow:
    """t0 -> [retry r: t1 -> flaky] -> t2: flaky fails twice, so t1 runs and is reverted thrice."""
    inner = linear_flow.Flow("retried", retry=retry.Times(3, name="r", provides="attempt"))
    inner.add(
        Step("t1", provides="v_t1", rebind={"value": "v_t0"}),
        Flaky("flaky", provides="v_flaky", rebind={"value": "v_t1"}),
    )
    return linear_flow.Flow("with-retry").add(
        Step("t0", provides="v_t0"), inner, Step("t2", provides="v_t2", rebind={"value": "v_flaky"})
    )


def _never(**_kwargs: Any) -> bool:
    """A loop's until that never holds: the loop runs ``max_iterations`` times, then is exhausted."""
    return False


def _loop(name: str, body: list[Any], delay: float = 0.0, max_iterations: int = 3) -> loop_flow.Flow:
    return loop_flow.Flow(
        name, *body, until=lambda v_p2: _never(v_p2=v_p2), max_iterations=max_iterations, delay=delay
    )


def _body() -> list[Any]:
    return [
        Step("p1", provides="v_p1", rebind={"value": "v_t0"}),
        Step("p2", provides="v_p2", rebind={"value": "v_p1"}),
    ]


def loop_exhausted() -> linear_flow.Flow:
    """t0 -> [loop lp: p1 -> p2, 3 times] -> t2: the loop is exhausted, everything is reverted."""
    return linear_flow.Flow("loop-exhausted").add(
        Step("t0", provides="v_t0"), _loop("lp", _body()), Step("t2", rebind={"value": "v_p2"})
    )


def loop_delayed() -> linear_flow.Flow:
    """As ``loop_exhausted``, with a delay (a timer, on the real clock) before each repeat."""
    return linear_flow.Flow("loop-delayed").add(
        Step("t0", provides="v_t0"), _loop("lp", _body(), delay=0.02), Step("t2", rebind={"value": "v_p2"})
    )


def loop_in_graph() -> graph_flow.Flow:
    """t0 -> ([loop lp: p1 -> p2, 3 times], c) -> d: c runs beside the loop, then all is reverted."""
    return graph_flow.Flow("loop-in-graph").add(
        Step("t0", provides="v_t0"),
        _loop("lp", _body()),
        Step("c", provides="v_c", rebind={"value": "v_t0"}),
        Step("d", rebind={"value": "v_p2", "other": "v_c"}),
    )


def loop_with_retry() -> linear_flow.Flow:
    """t0 -> [loop lp: [retry r: p1 -> flaky] -> p2, twice] -> t2: flaky fails twice each iteration."""
    inner = linear_flow.Flow("retried-body", retry=retry.Times(3, name="r", provides="attempt"))
    inner.add(
        Step("p1", provides="v_p1", rebind={"value": "v_t0"}),
        Flaky("flaky", provides="v_flaky", rebind={"value": "v_p1"}),
    )
    body = [inner, Step("p2", provides="v_p2", rebind={"value": "v_flaky"})]
    return linear_flow.Flow("loop-with-retry").add(
        Step("t0", provides="v_t0"), _loop("lp", body, max_iterations=2), Step("t2", rebind={"value": "v_p2"})
    )


FLOWS: dict[str, Callable[[], Any]] = {
    "linear_ok": linear_ok,
    "linear_fails": linear_fails,
    "graph_ok": graph_ok,
    "graph_fails": graph_fails,
    "retried": retried,
    "loop_exhausted": loop_exhausted,
    "loop_delayed": loop_delayed,
    "loop_in_graph": loop_in_graph,
    "loop_with_retry": loop_with_retry,
}
_LOOPED = {"t0": [], "p1": ["t0"], "p2": ["p1"], "lp^until": ["p2"], "t2": ["lp^until"]}
#: Each atom's predecessors (what must have succeeded before it may start), by flow.
PREDECESSORS: dict[str, dict[str, list[str]]] = {
    "linear_ok": {"t0": [], "t1": ["t0"], "t2": ["t1"], "t3": ["t2"], "t4": ["t3"]},
    "linear_fails": {"t0": [], "t1": ["t0"], "t2": ["t1"], "t3": ["t2"], "boom": ["t3"]},
    "graph_ok": {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]},
    "graph_fails": {"a": [], "b": ["a"], "c": ["a"], "boom": ["b", "c"]},
    "retried": {"t0": [], "r": ["t0"], "t1": ["r"], "flaky": ["t1"], "t2": ["flaky"]},
    "loop_exhausted": _LOOPED,
    "loop_delayed": _LOOPED,
    "loop_in_graph": {
        "t0": [], "p1": ["t0"], "p2": ["p1"], "lp^until": ["p2"], "c": ["t0"], "d": ["lp^until", "c"],
    },
    "loop_with_retry": {
        "t0": [], "r": ["t0"], "p1": ["r"], "flaky": ["p1"], "p2": ["flaky"], "lp^until": ["p2"],
        "t2": ["lp^until"],
    },
}  # fmt: skip
#: Flows whose atoms legitimately run more than once (a retry runs its subflow again, a loop its body).
RETRIED = {"retried", "loop_exhausted", "loop_delayed", "loop_in_graph", "loop_with_retry"}


def _watch(backend: Any) -> None:
    """Make each write of ``backend``'s connections pass a point before and after it."""
    get_connection = backend.get_connection

    def watched_connection(*args: Any, **kwargs: Any) -> Any:
        conn = get_connection(*args, **kwargs)
        save = conn.save_flow_progress

        def save_flow_progress(*a: Any, **kw: Any) -> Any:
            hold_if_chosen("write-before")
            result = save(*a, **kw)
            hold_if_chosen("write-after")
            return result

        conn.save_flow_progress = save_flow_progress
        return conn

    backend.get_connection = watched_connection


def _listen(engine: Any) -> None:
    """Make each atom and flow state change the engine announces a point."""

    def on_atom(state: str, details: dict[str, Any]) -> None:
        name = details.get("task_name") or details.get("retry_name")
        if state == states.SUCCESS and "task_name" in details:
            SUCCEEDED[name] = details.get("result")
        hold_if_chosen(f"atom:{name}:{state}")

    engine.atom_notifier.register(engine.atom_notifier.ANY, on_atom)
    engine.notifier.register(engine.notifier.ANY, lambda state, details: hold_if_chosen(f"flow:{state}"))


def run(
    backend: Any, book_uuid: str, mode: str, engine_kind: str, flow: str, listen: bool = True
) -> dict[str, Any]:
    """Start (``mode`` ``start``) or resume the flow of logbook ``book_uuid``; return its outcome.

    ``listen``: make state changes points (a listener changes which path the engine
    takes, so a run that need not hold at one has none, as most production runs).
    """
    _watch(backend)
    if mode == "start":
        book = models.LogBook("torture", uuid=book_uuid)
        engine = engines.load_from_factory(
            FLOWS[flow], store={"value": 1}, book=book, backend=backend, engine=engine_kind
        )
    else:
        with contextlib.closing(backend.get_connection()) as conn:
            (found,) = list(conn.get_flows_for_book(book_uuid, lazy=True))
            flow_detail = conn.get_flow_details(found.uuid)
        engine = engines.load_from_detail(flow_detail, backend=backend, engine=engine_kind)
    if listen:
        _listen(engine)
    error = None
    # A run found REVERTED has ended: run again it would start over (doc/persistence.rst).
    if mode == "start" or engine.storage.get_flow_state() != states.REVERTED:
        try:
            engine.run()
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
    results = {
        name: {"failure": list(value.exception_type_names)} if isinstance(value, Failure) else value
        for name, value in engine.storage.fetch_all().items()
    }
    return {"state": engine.storage.get_flow_state(), "results": results, "error": error}


def conductor_main(argv: list[str]) -> int:
    """``flowkit ARGV`` (a conductor) whose jobs pass point ``finish`` as their run ends.

    The point comes after the flow's last write and before the job is consumed
    (or given back): a conductor killed there leaves a finished flow on a job
    still claimed by nobody.
    """
    from flowkit.cli import main as cli_main
    from flowkit.conductors.backends import impl_executor

    finish = impl_executor.ExecutorConductor._finish

    def held_finish(self: Any, *args: Any, **kwargs: Any) -> None:
        hold_if_chosen("finish")
        finish(self, *args, **kwargs)

    impl_executor.ExecutorConductor._finish = held_finish  # type: ignore[method-assign]
    return int(cli_main(argv) or 0)


def main(argv: list[str]) -> int:
    url, book_uuid, mode, engine_kind, flow, point, marker, log = argv
    point, _, how = point.partition("!")
    configure(log, None if point == "-" else point, marker, how or None)
    with contextlib.closing(backends.fetch({"connection": url})) as backend:
        outcome = run(backend, book_uuid, mode, engine_kind, flow, point.startswith(("atom:", "flow:")))
    print(json.dumps(outcome, default=repr), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--conductor"]:
        sys.exit(conductor_main(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
