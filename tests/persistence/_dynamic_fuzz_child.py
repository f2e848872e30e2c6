"""One segment of a crash-fuzzed dynamic run: a spawned fan-out or a loop, dying at a chosen point.

Run as ``python _dynamic_fuzz_child.py URL BOOK MODE ENGINE FLOW DIE_AT LOG``,
like ``_fuzz_child.py`` (whose kill points and task log it reuses), with flows
that spawn sub-flows and loop. A listener logs ``running <atom> <iteration>``
whenever an atom is announced RUNNING, so the test can tell a new iteration's
run from a SUCCESS atom running again.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowkit import dynamic, engines, retry, states  # noqa: E402
from flowkit.patterns import linear_flow, loop_flow, unordered_flow  # noqa: E402
from flowkit.persistence import backends, models  # noqa: E402
from flowkit.types.notifier import Notifier  # noqa: E402
from tests.persistence import _fuzz_child as base  # noqa: E402

Work = base.Work
Fails = base.Fails
CHILDREN = 5


class FanOut(base.Work):
    """Spawns CHILDREN Work tasks (unordered), each given its own value."""

    def execute(self, value: int, other: int = 0) -> Any:
        base.kill_point()
        base.log(f"execute start {self.name}")
        base.kill_point()
        base.log(f"execute done {self.name}")
        children = [Work(name=f"c{i}", inject={"value": i}) for i in range(CHILDREN)]
        return dynamic.subflow(unordered_flow.Flow("fan").add(*children))


class SubFan(base.Work):
    """A spawned spawner: spawns two Work tasks of its own (nested spawning)."""

    def execute(self, value: int, other: int = 0) -> Any:
        base.kill_point()
        base.log(f"execute start {self.name}")
        base.kill_point()
        base.log(f"execute done {self.name}")
        children = [Work(name=f"{self.name}.{i}", inject={"value": value + i}) for i in range(2)]
        return dynamic.subflow(linear_flow.Flow(f"{self.name}-fan").add(*children))


class NestedFanOut(base.Work):
    """Spawns three SubFan spawners (unordered)."""

    def execute(self, value: int, other: int = 0) -> Any:
        base.kill_point()
        base.log(f"execute start {self.name}")
        base.kill_point()
        base.log(f"execute done {self.name}")
        spawners = [SubFan(name=f"s{i}", inject={"value": i}) for i in range(3)]
        return dynamic.subflow(unordered_flow.Flow("subfans").add(*spawners))


class Count(base.Work):
    """Reads any result (a nested list here) and returns its length."""

    def execute(self, value: Any, other: int = 0) -> int:
        base.kill_point()
        base.log(f"execute start {self.name}")
        base.kill_point()
        base.log(f"execute done {self.name}")
        return len(value)


class Total(base.Work):
    """Reads the fan-out's list of results."""

    def execute(self, value: list[int], other: int = 0) -> int:  # type: ignore[override]
        base.kill_point()
        base.log(f"execute start {self.name}")
        base.kill_point()
        base.log(f"execute done {self.name}")
        return sum(value)


class Poll(base.Work):
    """Provides how many times it has finished so far (from the log), plus one."""

    def execute(self, value: int, other: int = 0) -> int:
        base.kill_point()
        base.log(f"execute start {self.name}")
        done = Path(_LOG_PATH[0]).read_text().count(f"execute done {self.name}\n")
        base.kill_point()
        base.log(f"execute done {self.name}")
        return done + 1


_LOG_PATH: list[str] = []


def fanout_ok() -> linear_flow.Flow:
    return linear_flow.Flow("fanout-ok").add(
        Work("t0", provides="v0"),
        FanOut("fan", provides="fanned", rebind={"value": "v0"}),
        Total("total", rebind={"value": "fanned"}),
    )


def fanout_fails() -> linear_flow.Flow:
    return fanout_ok().add(Fails("boom", rebind={"value": "v0"}))


def nested_ok() -> linear_flow.Flow:
    """A spawner whose spawned tasks spawn in turn."""
    return linear_flow.Flow("nested-ok").add(
        Work("t0", provides="v0"),
        NestedFanOut("fan", provides="fanned", rebind={"value": "v0"}),
        Count("total", rebind={"value": "fanned"}),
    )


def loop_spawn_ok() -> linear_flow.Flow:
    """A loop whose body spawns a fan-out afresh in each iteration."""
    body = loop_flow.Flow(
        "poll-loop",
        Poll("poll", provides="polled"),
        FanOut("fan", provides="fanned", rebind={"value": "polled"}),
        until=lambda polled: polled >= 2,
        max_iterations=4,
    )
    return linear_flow.Flow("loop-spawn-ok").add(body, Count("total", rebind={"value": "fanned"}))


def loop_ok() -> linear_flow.Flow:
    body = loop_flow.Flow(
        "poll-loop",
        Poll("poll", provides="polled"),
        Work("step", rebind={"value": "polled"}),
        until=lambda polled: polled >= 3,
        max_iterations=6,
    )
    return linear_flow.Flow("loop-ok").add(
        Work("t0", provides="v0"), body, Work("tail", rebind={"value": "v0"})
    )


def loop_fails() -> linear_flow.Flow:
    body = loop_flow.Flow(
        "poll-loop",
        Poll("poll", provides="polled"),
        Work("step", rebind={"value": "polled"}),
        until=lambda polled: polled < 0,
        max_iterations=3,
    )
    return linear_flow.Flow("loop-fails").add(Work("t0", provides="v0"), body)


def loop_retry_fails() -> linear_flow.Flow:
    """A loop whose own retry runs it twice; its until never holds, so it is exhausted twice."""
    body = loop_flow.Flow(
        "poll-loop",
        Poll("poll", provides="polled"),
        Work("step", rebind={"value": "polled"}),
        until=lambda polled: polled < 0,
        max_iterations=2,
        retry=retry.Times(2, "again"),
    )
    # Nothing before the loop: its retry reverts only its own scope (REVERT, as in
    # TaskFlow), which would leave an atom before it SUCCESS in a REVERTED flow.
    return linear_flow.Flow("loop-retry-fails").add(body)


def main(argv: list[str]) -> int:
    url, book_uuid, mode, engine_kind, flow_name, die_at, log_path = argv
    base._POINTS["die_at"] = int(die_at)
    base._LOG["fd"] = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _LOG_PATH.append(log_path)
    with contextlib.closing(backends.fetch({"connection": url})) as backend:
        base._watch_writes(backend)
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

        def announce(state: str, details: dict[str, Any]) -> None:
            if state == states.RUNNING:
                base.log(f"running {details['task_name']} {details.get('iteration', 0)}")

        engine.atom_notifier.register(Notifier.ANY, announce)
        with contextlib.suppress(Exception):
            engine.run()
        print(engine.storage.get_flow_state(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
