"""Flows that change while they run: wait in a loop, then fan out over what was found.

A backup of a server whose volumes are only known once it is ready:

1. ``wait-ready`` is a loop (``loop_flow``): it asks for the server's status
   until it says ``ready``, pausing between asks, at most five times.
2. ``snapshot-all`` lists the volumes and *spawns* one snapshot task per
   volume (``dynamic.subflow``); the engine splices them in after it, and
   their results, in order, become its result.
3. ``report`` reads that list.

The second run finds a volume that cannot be snapshotted: the spawned
snapshots are reverted newest first, then the task that spawned them.
The clock is one the example moves itself, so the output is the same on every
run and nothing really sleeps.
"""

from __future__ import annotations

from typing import Any

from flowkit import dynamic, engines, task
from flowkit.patterns import linear_flow, loop_flow, unordered_flow


class Clock:
    """Time that passes only when the engine waits (it waits out the loop's delay)."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class CheckStatus(task.Task):
    """The server boots: ``building`` twice, then ``ready``."""

    default_provides = "status"

    def __init__(self, clock: Clock) -> None:
        super().__init__("check-status")
        self.clock = clock
        self.asked = 0

    def execute(self) -> str:
        self.asked += 1
        status = "ready" if self.asked == 3 else "building"
        print(f"  [{self.name}] at t={self.clock.now:.0f}s the server is {status}")
        return status


class Snapshot(task.Task):
    def execute(self, volume: str) -> str:
        if volume == "broken":
            raise RuntimeError(f"volume {volume} cannot be snapshotted")
        print(f"  [{self.name}] snapshot of {volume}")
        return f"snap-{volume}"

    def revert(self, volume: str, result: Any, **kwargs: Any) -> None:
        if isinstance(result, str):
            print(f"  [{self.name}] deleted {result}")


class SnapshotAll(task.Task):
    """Finds the volumes and spawns one Snapshot per volume."""

    default_provides = "snapshots"

    def execute(self, volumes: list[str]) -> Any:
        print(f"  [{self.name}] found volumes {volumes}: spawning one snapshot each")
        per_volume = unordered_flow.Flow("per-volume").add(
            *[Snapshot(name=f"snapshot-{v}", inject={"volume": v}) for v in volumes]
        )
        return dynamic.subflow(per_volume)

    def revert(self, result: Any, **kwargs: Any) -> None:
        print(f"  [{self.name}] undone after its snapshots")


class Report(task.Task):
    def execute(self, snapshots: list[str]) -> None:
        print(f"  [{self.name}] backed up: {', '.join(snapshots)}")


def backup(clock: Clock) -> linear_flow.Flow:
    wait = loop_flow.Flow(
        "wait-ready",
        CheckStatus(clock),
        until=lambda status: status == "ready",
        max_iterations=5,
        delay=10.0,
    )
    return linear_flow.Flow("backup").add(wait, SnapshotAll("snapshot-all"), Report("report"))


def main() -> None:
    print("backing up a server with volumes root and data")
    clock = Clock()
    engine = engines.load(backup(clock), store={"volumes": ["root", "data"]}, clock=clock)
    engine.run()
    print(f"snapshot-all's result: {engine.storage.get('snapshot-all')}")
    print(
        f"check-status ran in iteration {engine.storage.run_state.records['check-status'].meta['iteration']}"
    )

    print("backing up a server with a broken volume")
    clock = Clock()
    engine = engines.load(
        backup(clock), store={"volumes": ["root", "data", "broken"]}, engine="serial", clock=clock
    )
    try:
        engine.run()
    except RuntimeError as err:
        print(f"backup failed: {err}")
    print(f"final flow state: {engine.storage.get_flow_state()}")


if __name__ == "__main__":
    main()
