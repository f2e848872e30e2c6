"""Failure behaviours TaskFlow code relies on: pickling, and a clear error for unknown fields."""

from __future__ import annotations

import pickle

import pytest

from flowkit.types.failure import Failure


def _chained_failure() -> Failure:
    try:
        try:
            raise ValueError("inner")
        except ValueError as err:
            raise RuntimeError("outer") from err
    except RuntimeError:
        return Failure()


def test_a_pickled_failure_keeps_its_record_and_causes_but_not_the_live_exception() -> None:
    original = _chained_failure()
    restored = pickle.loads(pickle.dumps(original))
    assert restored.exc_info is None
    assert restored.exception_str == "outer"
    assert restored.traceback_str == original.traceback_str
    assert [cause.exception_str for cause in restored.causes] == ["inner"]
    assert restored.matches(original)
    assert original.exc_info is not None  # pickling does not touch the original


def test_unknown_record_fields_are_named_in_the_error() -> None:
    with pytest.raises(TypeError, match=r"^Failure.__init__ got unexpected keyword argument\(s\): hi$"):
        Failure(exception_str="Woot!", traceback_str=None, exc_type_names=["Exception"], hi="there")  # type: ignore[call-arg]
