"""Translation between the engine's atom records and persistence models.

The engine works on :class:`~flowkit._atom_record.AtomRecord` objects (slotted,
mutated in place on the hot path); backends store
:class:`~flowkit.persistence.models.AtomDetail` objects. Storage translates a
record into its detail when it writes a batch, and a detail back into a record
when it resumes a flow detail from an earlier run.
"""

from __future__ import annotations

from typing import Any

from flowkit import exceptions as exc
from flowkit import states as st
from flowkit._atom_record import ATOM_STATES, AtomRecord
from flowkit.persistence._json import MODEL_KEY, encode_json, model_name
from flowkit.persistence.models import AtomDetail, RetryDetail, TaskDetail
from flowkit.persistence.models import RetryHistory as History

__all__ = ["check_storable", "fill_detail", "has_long_lists", "new_detail", "record_from_detail"]


# Meta keys the record keeps in attributes of its own.
_PROGRESS = "progress"
_INJECTED = "injected"


def check_storable(value: Any) -> None:
    """Raise TypeError/ValueError/RecursionError if no backend could store ``value``.

    Every backend encodes with :func:`~flowkit.persistence.base.encode_json`;
    checking with it before anything is written (a factory's arguments, a result
    as it arrives) fails that one thing with a clear message instead of the write
    that carries a whole batch.
    """
    if value is None or type(value) in (str, int, float, bool):
        return
    encode_json(value)


def has_long_lists(meta: dict[str, Any]) -> bool:
    """Whether ``meta`` holds an append-only list long enough to be stored in chunks."""
    from flowkit.persistence._archived import ARCHIVED_KEYS, CHUNK

    return any(type(meta.get(key)) is list and len(meta[key]) >= CHUNK for key in ARCHIVED_KEYS)


def new_detail(record: AtomRecord) -> AtomDetail:
    """A fresh, empty detail for ``record`` (a RetryDetail for a retry)."""
    cls = RetryDetail if record.is_retry else TaskDetail
    return cls(record.name, record.uuid)


def fill_detail(detail: AtomDetail, record: AtomRecord, history: History | None) -> AtomDetail:
    """Copy everything ``record`` knows into ``detail`` and return it.

    For a retry, ``history`` (its attempts so far) becomes the detail's results.
    """
    detail.state = record.state
    detail.intention = record.intention
    detail.version = record.version
    model = None
    if record.is_retry:
        detail.results = list(history or ())
    else:
        # Derived from the result at each write, never kept on the record: the
        # result is the one source of truth, and a run that replaced it drops the name.
        model = model_name(record.result)
        detail.results = record.result
    detail.failure = record.failure
    detail.revert_results = record.revert_result
    detail.revert_failure = record.revert_failure
    meta = dict(record._meta) if record._meta else {}
    if record.progress is not None:  # as TaskFlow: only once set (never a retry's)
        meta[_PROGRESS] = record.progress
    if model is not None:
        meta[MODEL_KEY] = model
    detail.meta = meta
    return detail


def record_from_detail(detail: AtomDetail, flow_name: str = "?") -> tuple[AtomRecord, History | None]:
    """Rebuild the engine's record (and a retry's history) from a stored detail.

    Raises:
        StorageFailure: the detail holds a state or intention flowkit does not
            know (a damaged record: resuming from it would mean guessing what ran).
    """
    is_retry = isinstance(detail, RetryDetail)
    record = AtomRecord(detail.name, detail.uuid, detail.version or "1.0", is_retry)
    record.state = detail.state or st.PENDING
    record.intention = detail.intention or st.EXECUTE
    if record.state not in ATOM_STATES or record.intention not in st.INTENTIONS:
        raise exc.StorageFailure(
            f"atom detail '{detail.name}' ({detail.uuid}) of flow '{flow_name}' holds unknown "
            f"state {record.state!r} / intention {record.intention!r}; refusing to guess what ran"
        )
    record.failure = detail.failure
    record.revert_result = detail.revert_results
    record.revert_failure = detail.revert_failure
    history: History | None = None
    if is_retry:
        history = [(value, dict(failures)) for value, failures in (detail.results or ())]
        record.result = history[-1][0] if history else None
    else:
        record.result = detail.results
    meta = dict(detail.meta or {})
    progress = meta.pop(_PROGRESS, None)
    meta.pop(MODEL_KEY, None)  # said again by fill_detail from the (revived) result
    if isinstance(progress, (int, float)):
        record.progress = float(progress)
    injected = meta.get(_INJECTED)
    if isinstance(injected, dict):
        record.injected = dict(injected)
    if meta:
        record._meta = meta
    return record, history
