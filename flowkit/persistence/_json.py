"""The one JSON encoding every backend stores values in (see :mod:`flowkit.persistence.base`).

A leaf module of its own so that checking a result is storable does not import
the backend interfaces and the persistence models with it: a flow run in memory
needs the encoder (for results that are not plain scalars) and nothing else of
persistence.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["encode_json", "model_dump"]


def model_dump(value: Any) -> Any:
    """JSON for what the encoder does not know: pydantic models (``model_dump``), nothing else."""
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: The JSON text every backend stores values as (compact, ASCII, NaN allowed).
encode_json = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, allow_nan=True, default=model_dump
).encode
