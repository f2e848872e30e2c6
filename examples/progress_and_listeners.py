"""Listeners and progress: watch a flow from the outside.

A photo import copies files, then builds thumbnails. Three observers watch it
without the tasks knowing about any of them:

* ``StateReporter``, a listener of our own: subclass ``Listener`` and
  override the receivers for the events you care about. It prints every flow
  and task state change while it is attached (the ``with`` block).
* a progress callback on each task's notifier: tasks call
  ``self.update_progress(fraction)`` as they go, and whoever registered for
  ``task.EVENT_UPDATE_PROGRESS`` hears about it.
* the built-in ``CaptureListener``, which records every transition so it can
  be inspected after the run (handy in tests).
"""

from __future__ import annotations

import functools
from typing import Any

from flowkit import engines, task
from flowkit.listeners import base, capturing
from flowkit.patterns import linear_flow


class StateReporter(base.Listener):
    """Print flow and task state changes as they happen."""

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        print(f"flow {details['flow_name']}: {details['old_state']} -> {state}")

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        print(f"  task {details['task_name']}: {details['old_state']} -> {state}")


class CopyPhotos(task.Task):
    """Copy each photo, reporting progress after every one."""

    default_provides = "copied"

    def execute(self, photos: list[str]) -> list[str]:
        copied = []
        for photo in photos:
            copied.append(f"library/{photo}")
            self.update_progress(len(copied) / len(photos))
        return copied


class MakeThumbnails(task.Task):
    """Make one thumbnail per copied photo, halfway progress in the middle."""

    def execute(self, copied: list[str]) -> int:
        half = len(copied) // 2
        self.update_progress(half / len(copied))
        return len(copied)


def show_progress(task_name: str, event_type: str, details: dict[str, Any]) -> None:
    """Print a task's progress as a percentage."""
    print(f"    {task_name} progress: {details['progress']:.0%}")


def main() -> None:
    """Run the import with all three observers attached."""
    copy = CopyPhotos("copy_photos")
    thumbnails = MakeThumbnails("make_thumbnails")
    for atom in (copy, thumbnails):
        atom.notifier.register(task.EVENT_UPDATE_PROGRESS, functools.partial(show_progress, atom.name))

    flow = linear_flow.Flow("import-photos").add(copy, thumbnails)
    engine = engines.load(flow, store={"photos": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]})

    with StateReporter(engine), capturing.CaptureListener(engine) as capture:
        engine.run()

    kinds: dict[str, int] = {}
    for kind, _state, _details in capture.values:
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"captured {kinds.get('flow', 0)} flow and {kinds.get('task', 0)} task transitions")
    for name in ("copy_photos", "make_thumbnails"):
        print(f"final progress of {name}: {engine.storage.get_task_progress(name):.0%}")


if __name__ == "__main__":
    main()
