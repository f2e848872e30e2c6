"""The value codecs' contract: one table of values, the same answer from every codec.

flowkit turns task results and job details into text in five places, each with
its own encoder and error: persistence (``encode_json``, shared by every
backend), the SQL backend's column codec, the result cache, the worker wire
protocol and job postings. A value one of them stores must come back from each
in the same JSON form (tuples as lists, keys as text, models as their JSON
dump), and a value JSON cannot hold must be refused by each with its own error,
not with whatever the ``json`` module raised. Where they differ on purpose
(NaN, lone surrogates, sets) the tables say so. The cache is stricter than
JSON by design: a hit must give back what the call returned, so it returns
tuples, sets and non-text keys as they were (``EXACT``).

Dask moves values as pickles, not JSON: it is not one of these.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from flowkit import exceptions as exc
from flowkit.cache import _keys
from flowkit.engines.worker_based import protocol
from flowkit.jobs import _posting
from flowkit.persistence._json import encode_json
from flowkit.persistence.backends.sqlalchemy import _codec


def _persistence(value: Any) -> Any:
    return json.loads(encode_json(value))


def _sql(value: Any) -> Any:
    # As an atom detail's results column is written and read.
    return _codec.loads(_codec.dumps(value), "results", "atom detail", "contract", "uuid-1")


def _cache(value: Any) -> Any:
    return _keys.decode_value(_keys.encode_value(value))


def _wire(value: Any) -> Any:
    fields = protocol.encode(protocol.response_message("r-1", "w-1", protocol.SUCCESS, result=value), None)
    return protocol.decode(fields, None)["result"]


def _job(value: Any) -> Any:
    posting = _posting.Posting.make("u-1", "job", 1, None, {"value": value}, "NORMAL")
    return _posting.loads(_posting.dumps(posting), "test").details["value"]


#: codec name -> (round trip, the error it refuses a value with).
CODECS: dict[str, tuple[Callable[[Any], Any], type[BaseException] | tuple[type[BaseException], ...]]] = {
    # encode_json raises the json module's errors, documented (Backend.check_storable);
    # each backend turns them into StorageFailure naming the atom.
    "persistence": (_persistence, (TypeError, ValueError, RecursionError)),
    "sql": (_sql, (TypeError, ValueError, RecursionError)),
    "cache": (_cache, _keys.Uncacheable),
    "wire": (_wire, protocol.ProtocolError),
    "job": (_job, exc.InvalidFormat),
}


#: Codecs that give a value back as it was, not in its JSON form.
EXACT = frozenset({"cache"})


@pytest.fixture(params=sorted(CODECS))
def codec(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Point(pydantic.BaseModel):
    x: int
    at: datetime


def _deep(levels: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(levels):
        nested = [nested]
    return nested


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (2**70, 2**70),
        (1.5, 1.5),
        ("é☃", "é☃"),
        ((1, (2, [3])), [1, [2, [3]]]),
        ({"a": {"b": (1,)}}, {"a": {"b": [1]}}),
        (
            {2: "int", 1.5: "float", True: "bool", None: "none"},
            {"2": "int", "1.5": "float", "true": "bool", "null": "none"},
        ),
        (Point(x=1, at=datetime(2020, 1, 2)), {"x": 1, "at": "2020-01-02T00:00:00"}),
    ],
    ids=["none", "bool", "big-int", "float", "unicode", "tuples", "nested", "keys", "pydantic-model"],
)
def test_a_json_value_comes_back_in_the_same_json_form(codec: str, value: Any, expected: Any) -> None:
    round_trip, _refusal = CODECS[codec]
    back = round_trip(value)
    if codec in EXACT and not isinstance(value, pydantic.BaseModel):
        assert back == value
        assert repr(back) == repr(value)  # types too: a tuple is not a list here
    else:
        assert back == expected


@pytest.mark.parametrize(
    "value",
    [object(), b"bytes", datetime(2020, 1, 2), Decimal("1.5"), _deep(5000)],
    ids=["object", "bytes", "datetime", "decimal", "too-deep"],
)
def test_a_value_json_cannot_hold_is_refused_with_the_codecs_own_error(codec: str, value: Any) -> None:
    round_trip, refusal = CODECS[codec]
    with pytest.raises(refusal):
        round_trip(value)


#: Differences on purpose: persistence keeps NaN and infinities (as TaskFlow stores them);
#: the others speak strict JSON. The wire refuses lone surrogates (no UTF-8 text holds one).
#: The cache keeps sets and tuple keys (see ``EXACT``).
@pytest.mark.parametrize(
    ("value", "kept_by"),
    [
        (float("nan"), {"persistence", "sql"}),
        (float("inf"), {"persistence", "sql"}),
        ("\ud800", {"persistence", "sql", "cache", "job"}),
        ({1, 2}, {"cache"}),
        ({(1, 2): "tuple key"}, {"cache"}),
    ],
    ids=["nan", "infinity", "lone-surrogate", "set", "tuple-key"],
)
def test_values_only_some_codecs_keep(codec: str, value: Any, kept_by: set[str]) -> None:
    round_trip, refusal = CODECS[codec]
    if codec not in kept_by:
        with pytest.raises(refusal):
            round_trip(value)
        return
    back = round_trip(value)
    assert back == value or (back != back and value != value)  # NaN is not equal to itself
