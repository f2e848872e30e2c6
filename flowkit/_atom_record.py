"""The live record of one atom in one flow run, shared by storage and the engine.

Kept apart from :mod:`flowkit.storage` so that the code translating records to
and from persistence models can use it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowkit import states as st
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


class AtomRecord:
    """Everything stored about one atom in one flow."""

    __slots__ = (
        "_meta",
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
        "uuid",
        "version",
    )

    def __init__(self, name: str, atom_uuid: str, version: str, is_retry: bool) -> None:
        self.name = name
        self.uuid = atom_uuid
        self.version = version
        self.is_retry = is_retry
        self.state = st.PENDING
        self.intention = st.EXECUTE
        #: The last execute result; whether it stands is derived (:func:`holds_result`).
        self.result: Any = None
        #: The atom's provided name -> where it sits in ``result`` (shared, read-only).
        self.save_as: Mapping[str, int | str | None] = NO_PROVIDES
        self.progress = 0.0
        self.failure: Failure | None = None
        self.revert_result: Any = None
        self.revert_failure: Failure | None = None
        #: atom-specific injected arguments (symbol -> value), if any.
        self.injected: dict[str, Any] | None = None
        # Most atoms never get metadata: the dict is made on first write.
        self._meta: dict[str, Any] | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """Free-form metadata (listeners record durations here), with the progress."""
        if self._meta is None:
            self._meta = {}
        self._meta["progress"] = self.progress
        return self._meta


def holds_result(record: AtomRecord) -> bool:
    """Tell whether ``record.result`` is an execute result that still stands.

    Derived from the state and failure rather than kept beside them: an atom that
    executed successfully holds its result until it is reset (PENDING) or ignored.
    """
    return record.failure is None and record.state in RESULT_STATES
