"""In-doubt atoms: asking a task whether its interrupted run actually finished.

When a conductor dies while a task runs, the task's state stays ``RUNNING``
in the flow detail: it may have finished its work (and died before saying
so), or not. By default the conductor that takes the job over runs it again
(at-least-once, as TaskFlow does). A task can do better by defining
``check_done`` with the same arguments as ``execute``::

    class CreateVolume(task.Task):
        default_provides = "volume_id"

        def execute(self, request_id, size_gb):
            return api.create_volume(size_gb, idempotency_key=request_id)

        def check_done(self, request_id, size_gb):
            volume = api.find_volume(idempotency_key=request_id)
            return in_doubt.Done(volume.id) if volume is not None else None

It returns :class:`Done` with the result its run would have returned when
that run finished, and ``None`` when it did not (the task then runs again).
Only tasks found ``RUNNING`` on resume are asked, once, before the flow runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flowkit import states

__all__ = ["Done", "resolve"]

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Done:
    """What ``check_done`` returns when the interrupted run did finish: its result."""

    result: Any = None


def resolve(engine: Any) -> list[str]:
    """Ask every ``RUNNING`` atom with a ``check_done`` whether it finished; record those that did.

    Call between the engine's ``prepare()`` and its run.

    Returns:
        The names of the atoms recorded as ``SUCCESS``.

    Raises:
        TypeError: a ``check_done`` returned something other than ``Done`` or ``None``.
    """
    compilation = getattr(engine, "compilation", None)
    if compilation is None:
        return []
    storage = engine.storage
    resolved = []
    for node in compilation.atoms:
        atom = node.atom
        check = getattr(atom, "check_done", None)
        if check is None or storage.get_atom_state(atom.name) != states.RUNNING:
            continue
        arguments = storage.fetch_mapped_args(atom.rebind, atom_name=atom.name, optional_args=atom.optional)
        verdict = check(**arguments)
        if verdict is None:
            LOG.info("atom %r was in doubt and did not finish: it runs again", atom.name)
            continue
        if not isinstance(verdict, Done):
            raise TypeError(
                f"check_done of atom {atom.name!r} returned {verdict!r}; "
                "expected in_doubt.Done(result) or None"
            )
        LOG.info(
            "atom %r was in doubt and had finished: recorded as done without running it again", atom.name
        )
        storage.save(atom.name, verdict.result, states.SUCCESS)
        resolved.append(atom.name)
    return resolved
