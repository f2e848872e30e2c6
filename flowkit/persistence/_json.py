"""The one JSON encoding every backend stores values in (see :mod:`flowkit.persistence.base`).

A leaf module of its own so that checking a result is storable does not import
the backend interfaces and the persistence models with it: a flow run in memory
needs the encoder (for results that are not plain scalars) and nothing else of
persistence.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple, TypeVar, overload

from flowkit import exceptions as exc

__all__ = ["MODEL_KEY", "Encoded", "encode_json", "model_dump", "model_name", "unstorable"]

_Error = TypeVar("_Error", bound=exc.TaskFlowException)


def model_dump(value: Any) -> Any:
    """JSON for what the encoder does not know: pydantic models (``model_dump``), nothing else."""
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: The atom detail ``meta`` key naming the pydantic model a result was (see :func:`model_name`).
MODEL_KEY = "result_model"

#: Types that are never a model: checked first, so a plain result costs one set lookup.
_PLAIN = frozenset({type(None), str, int, float, bool, list, dict, tuple})


def model_name(value: Any) -> str | None:
    """The class name of ``value`` if it is a pydantic model (stored as its JSON object), else None.

    A model is stored as the mapping :func:`model_dump` makes of it: read back
    without the flow's code (``flowkit flows show``, the monitor), nothing said
    it was a model. Its atom detail keeps this name under :data:`MODEL_KEY`, so a
    report made from the store alone names it as one made from the engine does
    (:func:`flowkit.report.summarize`).
    """
    if type(value) in _PLAIN:
        return None
    dump = getattr(value, "model_dump", None)
    return type(value).__name__ if callable(dump) and not isinstance(value, type) else None


#: The JSON text every backend stores values as (compact, ASCII, NaN allowed).
encode_json = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, allow_nan=True, default=model_dump
).encode


@overload
def unstorable(subject: str, err: BaseException, *, hint: str = "") -> exc.InvalidFormat: ...


@overload
def unstorable(subject: str, err: BaseException, *, hint: str = "", error: type[_Error]) -> _Error: ...


def unstorable(
    subject: str,
    err: BaseException,
    *,
    hint: str = "",
    error: type[exc.TaskFlowException] = exc.InvalidFormat,
) -> exc.TaskFlowException:
    """The error for ``subject`` (what and whose) that the JSON encoding refused with ``err``.

    One sentence for every such refusal: ``<subject> cannot be stored as JSON:
    <the encoder's words>`` (they name the type it has no form for, or say why
    a value is refused: a circular reference, a NaN where it is not allowed),
    then ``hint``. The caller chains ``err`` (``raise unstorable(...) from
    err``); since the message quotes it already, ``str()`` of the error does
    not repeat it below the message as it does for other causes.

    Args:
        subject: what could not be stored and whose, for example ``"result of
            atom 'x'"``.
        err: the encoder's error.
        hint: text to end the message with (what to do instead).
        error: the class to make (its constructor takes the message alone).
    """
    return exc.quoting_cause(error(f"{subject} cannot be stored as JSON: {err}{hint}"))


class Encoded(NamedTuple):
    """A value and the JSON text made of it, kept for the write that follows.

    Why: the engine encodes a result as it arrives (to fail that one atom if
    no backend could store it), and the SQL backend's write of the same result
    a moment later would encode it again: the same text
    (:func:`~flowkit.persistence.base.encode_json`'s), at the same cost
    (0.2 ms for an 8 KB nested result). The engine hands this to that one
    write (:func:`flowkit.persistence.models.attach_encoded`), which stores
    ``text`` instead of encoding ``value`` again. ``value`` is the object
    itself, so a write of any other object (the result was replaced) encodes
    as before; it is never kept past that write, since an object changed in
    place after it would not match its text any more.
    """

    value: Any
    text: str
