"""Stand-ins for listener tests: two notifiers, a storage and ``suspend``.

Listeners only touch an engine's notifiers, its storage's metadata methods and
``suspend()``, so tests drive notifications by hand through :class:`FakeEngine`
instead of running flows.
"""

from __future__ import annotations

from typing import Any

from flowkit import exceptions as exc
from flowkit.types.notifier import Notifier

FLOW_NAME = "flow-1"
FLOW_UUID = "flow-uuid-1"


class FakeStorage:
    """Keeps metadata updates in dicts; can be told to fail like a broken backend."""

    def __init__(self) -> None:
        self.flow_name = FLOW_NAME
        self.flow_uuid = FLOW_UUID
        self.atom_meta: dict[str, dict[str, Any]] = {}
        self.flow_meta: dict[str, Any] = {}
        self.broken = False

    def update_atom_metadata(self, atom_name: str, update_with: dict[str, Any]) -> None:
        if self.broken:
            raise exc.StorageFailure("backend is down")
        self.atom_meta.setdefault(atom_name, {}).update(update_with)

    def update_flow_metadata(self, update_with: dict[str, Any]) -> None:
        if self.broken:
            raise exc.StorageFailure("backend is down")
        self.flow_meta.update(update_with)


class FakeEngine:
    """Just enough engine for listeners, plus helpers that emit notifications."""

    def __init__(self) -> None:
        self.notifier = Notifier()
        self.atom_notifier = Notifier()
        self.storage = FakeStorage()
        self.suspended = 0

    def suspend(self) -> None:
        self.suspended += 1

    @property
    def has_listeners(self) -> bool:
        return self.notifier.has_listeners or self.atom_notifier.has_listeners

    def flow(self, state: str, old_state: str) -> None:
        self.notifier.notify(
            state,
            {"engine": self, "flow_name": FLOW_NAME, "flow_uuid": FLOW_UUID, "old_state": old_state},
        )

    def task(self, name: str, state: str, old_state: str, **extra: Any) -> None:
        details = {"task_name": name, "task_uuid": f"{name}-uuid", "old_state": old_state, **extra}
        self.atom_notifier.notify(state, details)

    def retry(self, name: str, state: str, old_state: str, **extra: Any) -> None:
        details = {"retry_name": name, "retry_uuid": f"{name}-uuid", "old_state": old_state, **extra}
        self.atom_notifier.notify(state, details)

    def progress(self, name: str, progress: float, **extra: Any) -> None:
        details = {"task_name": name, "task_uuid": f"{name}-uuid", "progress": progress, **extra}
        self.atom_notifier.notify("update_progress", details)

    def __repr__(self) -> str:
        return "<FakeEngine>"
