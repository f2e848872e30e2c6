"""Find and make a conductor by kind: ``blocking`` or ``nonblocking``.

Built-in kinds resolve from a table here; others come from the
``flowkit.conductors`` entry-point group (name = kind, value = a
:class:`~flowkit.conductors.base.Conductor` class).
"""

from __future__ import annotations

import importlib
from typing import Any

from flowkit import exceptions as exc
from flowkit.conductors.base import Conductor
from flowkit.jobs.base import JobBoard

__all__ = ["CONDUCTOR_NAMESPACE", "fetch"]

CONDUCTOR_NAMESPACE = "flowkit.conductors"
"""The entry-point group conductor kinds are registered in."""

_BUILTIN = {
    "blocking": "flowkit.conductors.backends.impl_blocking:BlockingConductor",
    "nonblocking": "flowkit.conductors.backends.impl_nonblocking:NonBlockingConductor",
}


def fetch(
    kind: str, name: str, jobboard: JobBoard, namespace: str = CONDUCTOR_NAMESPACE, **kwargs: Any
) -> Conductor:
    """Make a conductor of ``kind`` named ``name`` over ``jobboard``.

    Args:
        kind: ``blocking`` or ``nonblocking`` (or an entry point's name).
        name: the name it claims jobs under.
        jobboard: the board it takes jobs from.
        namespace: the entry-point group to look kinds up in.
        kwargs: the conductor's options (``persistence=``, ``engine=``, ...).

    Raises:
        NotFound: no conductor of that kind (the known kinds are listed).
    """
    target = _BUILTIN.get(kind) if namespace == CONDUCTOR_NAMESPACE else None
    if target is not None:
        module, _, attr = target.partition(":")
        cls: type[Conductor] = getattr(importlib.import_module(module), attr)
        return cls(name, jobboard, **kwargs)
    from importlib import metadata

    found = {ep.name: ep for ep in metadata.entry_points(group=namespace)}
    if kind not in found:
        known = sorted(set(found) | (set(_BUILTIN) if namespace == CONDUCTOR_NAMESPACE else set()))
        raise exc.NotFound(f"Could not find conductor {kind} (known kinds: {', '.join(known)})")
    made: Conductor = found[kind].load()(name, jobboard, **kwargs)
    return made
