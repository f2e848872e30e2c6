"""The live record of one atom in one flow run, shared by storage and the engine.

Kept apart from :mod:`flowkit.storage` so that the code translating records to
and from persistence models can use it without an import cycle.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

from flowkit import states as st
from flowkit._utils.uuids import random_uuid
from flowkit.types.failure import Failure

__all__ = ["ATOM_STATES", "NO_PROVIDES", "RESULT_STATES", "AtomRecord", "holds_result"]

NO_PROVIDES: Mapping[str, int | str | None] = {}
#: States in which an atom that executed successfully still holds that result.
RESULT_STATES = frozenset({st.SUCCESS, st.REVERTING, st.REVERTED, st.REVERT_FAILURE, st.RETRYING})
#: Every state an atom can be in (a stored record in any other is damaged).
ATOM_STATES = frozenset(
    {
        st.PENDING,
        st.RUNNING,
        st.SUCCESS,
        st.FAILURE,
        st.REVERTING,
        st.REVERTED,
        st.REVERT_FAILURE,
        st.RETRYING,
        st.IGNORE,
    }
)


class _UuidSource:
    """Where the uuids of new atoms come from: random high bits drawn once per
    process (again in a forked child) and a counter in the low 48 bits, so they
    are unique within the process and random across processes."""

    __slots__ = ("prefix", "serials")

    def __init__(self) -> None:
        self.prefix = ""
        self.serials = itertools.count(1)
        self.redraw()

    def redraw(self) -> None:
        self.prefix = random_uuid()[:24]
        self.serials = itertools.count(1)


_SOURCE = _UuidSource()
if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_SOURCE.redraw)


class AtomRecord:
    """Everything stored about one atom in one flow.

    Args:
        name: the atom's name.
        atom_uuid: its uuid as stored, or None for a new atom: one is made, and
            written out as text only when first asked for (most in-memory runs
            never ask, and 100,000 uuid strings weigh 8 MB).
        version: the atom's version as text.
        is_retry: whether the atom is a retry.
    """

    __slots__ = (
        "_meta",
        "_uuid",
        "failure",
        "injected",
        "intention",
        "is_retry",
        "name",
        "progress",
        "result",
        "revert_failure",
        "revert_result",
        "save_as",
        "state",
        "version",
    )

    def __init__(self, name: str, atom_uuid: str | None, version: str, is_retry: bool) -> None:
        self.name = name
        # The text, or (new atoms) the serial number it is made from on first use.
        self._uuid: str | int = next(_SOURCE.serials) if atom_uuid is None else atom_uuid
        self.version = version
        self.is_retry = is_retry
        self.state = st.PENDING
        self.intention = st.EXECUTE
        #: The last execute result; whether it stands is derived (:func:`holds_result`).
        self.result: Any = None
        #: The atom's provided name -> where it sits in ``result`` (shared, read-only).
        self.save_as: Mapping[str, int | str | None] = NO_PROVIDES
        # A task's progress, None until it is first set (a start, a reset, a report):
        # as in TaskFlow, only then does its metadata hold ``progress``; never a retry's.
        self.progress: float | None = None
        self.failure: Failure | None = None
        self.revert_result: Any = None
        self.revert_failure: Failure | None = None
        #: atom-specific injected arguments (symbol -> value), if any.
        self.injected: dict[str, Any] | None = None
        # Most atoms never get metadata: the dict is made on first write.
        self._meta: dict[str, Any] | None = None

    @property
    def uuid(self) -> str:
        """The atom's uuid (a version-4 UUID string)."""
        value = self._uuid
        if type(value) is str:
            return value
        text = self._uuid = f"{_SOURCE.prefix}{value:012x}"
        return text

    @property
    def meta(self) -> dict[str, Any]:
        """Free-form metadata (listeners record durations here), with the progress once it was set."""
        meta = self._meta
        if meta is None:
            meta = self._meta = {}
        if self.progress is not None:
            meta["progress"] = self.progress
        return meta


def holds_result(record: AtomRecord) -> bool:
    """Tell whether ``record.result`` is an execute result that still stands.

    Derived from the state and failure rather than kept beside them: an atom that
    executed successfully holds its result until it is reset (PENDING) or ignored.
    """
    return record.failure is None and record.state in RESULT_STATES
