"""Behaviour of :class:`flowkit.types.failure.Failure`."""

from __future__ import annotations

import json
import traceback
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit.types.failure import Failure


class AppError(Exception):
    """A user-defined error with a small hierarchy above it."""


class DeepAppError(AppError):
    pass


def _capture(error: BaseException) -> Failure:
    try:
        raise error
    except BaseException:
        return Failure()


def _round_trip(failure: Failure, include_args: bool = True) -> Failure:
    return Failure.from_dict(json.loads(json.dumps(failure.to_dict(include_args=include_args))))


def _chained() -> Failure:
    def inner() -> None:
        raise KeyError("missing")

    try:
        try:
            inner()
        except KeyError as error:
            raise AppError("wrapped") from error
    except AppError:
        return Failure()
    raise AssertionError("unreachable")


def _valid_record() -> dict[str, Any]:
    return _capture(ValueError("boom")).to_dict()


# -- capturing -----------------------------------------------------------------


def test_failure_captures_the_exception_being_handled() -> None:
    error = ValueError("boom")
    failure = _capture(error)
    assert failure.exception is error
    assert failure.exc_info is not None
    assert failure.exc_info[0] is ValueError
    assert failure.exc_info[1] is error
    assert failure.exc_info[2] is error.__traceback__
    assert failure.exception_str == "boom"
    assert failure.exception_args == ("boom",)
    assert "_capture" in failure.traceback_str
    assert "raise error" in failure.traceback_str


def test_failure_without_an_active_exception_raises_type_error() -> None:
    # TaskFlow raises TypeError here; callers catch that.
    with pytest.raises(TypeError, match=r"^Invalid exception type 'None' .*except block"):
        Failure()
    with pytest.raises(TypeError, match=r"^Invalid exception type .*must hold an exception"):
        Failure((ValueError, "not an exception", None))


def test_failure_rejects_exc_info_that_is_not_a_triple() -> None:
    with pytest.raises(ValueError, match="triple"):
        Failure((ValueError, ValueError("x")))


def test_record_fields_without_exception_str_are_refused() -> None:
    with pytest.raises(TypeError, match="exception_str"):
        Failure(traceback_str="tb")


def test_from_exception_uses_the_exceptions_own_traceback() -> None:
    try:
        raise AppError("raised")
    except AppError as error:
        caught = error
    failure = Failure.from_exception(caught)
    assert failure.exception is caught
    assert failure.exc_info is not None
    assert failure.exc_info[2] is caught.__traceback__
    assert "raise AppError" in failure.traceback_str


def test_from_exception_of_a_never_raised_exception_has_empty_traceback() -> None:
    failure = Failure.from_exception(AppError("never raised"))
    assert failure.traceback_str == ""
    assert failure.exception_str == "never raised"
    assert "Traceback not available." in failure.pformat(traceback=True)


def test_failure_survives_an_exception_whose_str_raises() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    failure = Failure.from_exception(Unprintable())
    assert "unprintable Unprintable" in failure.exception_str


# -- type names and check ------------------------------------------------------


def test_type_names_are_taskflows_up_to_exception_by_default() -> None:
    failure = _capture(DeepAppError("x"))
    module = __name__
    assert list(failure) == [f"{module}.DeepAppError", f"{module}.AppError", "Exception"]
    assert failure.exception_type_names == tuple(failure)


def test_type_names_of_builtin_exceptions_are_bare_by_default() -> None:
    # What TaskFlow services read from list(failure) and from stored records.
    assert list(_capture(KeyError("k"))) == ["KeyError", "LookupError", "Exception"]
    assert list(Failure.from_exception(RuntimeError("r"))) == ["RuntimeError", "Exception"]


def test_type_names_leave_out_bases_that_are_no_exception_like_taskflow() -> None:
    class Mixin:
        pass

    class Mixed(Mixin, KeyError):
        pass

    names = list(_capture(Mixed("k")))
    assert names[0].endswith(".Mixed") and "." in names[0]
    assert names[1:] == ["KeyError", "LookupError", "Exception"]


def test_nested_classes_are_named_module_dot_name_by_default() -> None:
    class Local(Exception):
        pass

    failure = _capture(Local())
    assert failure.exception_type_names[0] == f"{__name__}.Local"
    assert failure.check(Local) is Local


def test_qualified_names_run_down_to_base_exception_on_request() -> None:
    class Local(DeepAppError):
        pass

    try:
        raise Local("x")
    except Local:
        failure = Failure(qualified=True)
    module = __name__
    assert failure.exception_type_names == (
        f"{module}.test_qualified_names_run_down_to_base_exception_on_request.<locals>.Local",
        f"{module}.DeepAppError",
        f"{module}.AppError",
        "builtins.Exception",
        "builtins.BaseException",
    )
    assert list(Failure.from_exception(KeyError("k"), qualified=True)) == [
        "builtins.KeyError",
        "builtins.LookupError",
        "builtins.Exception",
        "builtins.BaseException",
    ]
    assert failure.check(Local, "Exception") is Local


def test_causes_are_named_in_the_form_of_their_failure() -> None:
    try:
        try:
            raise KeyError("k")
        except KeyError as error:
            raise AppError("wrapped") from error
    except AppError as error:
        plain, qualified = Failure.from_exception(error), Failure.from_exception(error, qualified=True)
    assert [list(c) for c in plain.causes] == [["KeyError", "LookupError", "Exception"]]
    assert [c.exception_type_names[0] for c in qualified.causes] == ["builtins.KeyError"]
    assert qualified.causes[0].exception_type_names[-1] == "builtins.BaseException"


def test_interrupts_are_refused_with_type_error_like_taskflow() -> None:
    for interrupt in (KeyboardInterrupt(), SystemExit(3)):
        try:
            raise interrupt
        except BaseException:
            with pytest.raises(TypeError, match=r"^Invalid exception type .*qualified=True"):
                Failure()
        with pytest.raises(TypeError, match="Invalid exception type"):
            Failure.from_exception(interrupt)


def test_interrupts_are_recorded_with_qualified_names_on_request() -> None:
    try:
        raise KeyboardInterrupt
    except BaseException:
        failure = Failure(qualified=True)
    assert failure.exception_type_names == ("builtins.KeyboardInterrupt", "builtins.BaseException")
    assert failure.check(KeyboardInterrupt) is KeyboardInterrupt


def test_flowkits_own_capture_of_any_exception_keeps_taskflows_spelling() -> None:
    # The engines hand a task's own CancelledError on as a failure, and a worker a
    # task's SystemExit: named down to BaseException, a record TaskFlow reads.
    import asyncio

    failure = Failure._of_any(asyncio.CancelledError("stop"))
    assert list(failure) == ["asyncio.exceptions.CancelledError", "BaseException"]
    Failure.validate(failure.to_dict())
    assert list(Failure._of_any(SystemExit(2))) == ["SystemExit", "BaseException"]
    assert list(Failure._of_any(KeyError("k"))) == list(_capture(KeyError("k")))


def test_records_of_the_qualified_form_still_load_and_check() -> None:
    # Records earlier flowkit releases and Go workers stored use the qualified form.
    record = {
        "version": 1,
        "exception_str": "'k'",
        "traceback_str": "",
        "exc_type_names": [
            "builtins.KeyError",
            "builtins.LookupError",
            "builtins.Exception",
            "builtins.BaseException",
        ],
        "exc_args": ["k"],
        "causes": [],
    }
    failure = Failure.from_dict(record)
    assert failure.check(LookupError) is LookupError
    assert failure.check("LookupError", "builtins.KeyError") == "LookupError"
    assert failure.pformat() == "Failure: KeyError: 'k'"
    assert failure.to_dict()["exc_type_names"] == record["exc_type_names"]


def test_check_returns_the_first_matching_class() -> None:
    failure = _capture(DeepAppError("x"))
    assert failure.check(KeyError, AppError, Exception) is AppError
    assert failure.check(DeepAppError) is DeepAppError
    assert failure.check(KeyError, TypeError) is None


def test_check_accepts_fully_qualified_names() -> None:
    failure = _capture(DeepAppError("x"))
    name = f"{__name__}.AppError"
    assert failure.check("nope.Error", name) == name
    assert failure.check("builtins.Exception") == "builtins.Exception"
    assert failure.check("Exception") == "Exception"
    assert failure.check("AppError") is None


def test_check_accepts_bare_builtin_names_like_taskflow() -> None:
    failure = _capture(KeyError("k"))
    assert failure.check("LookupError") == "LookupError"
    assert failure.check("ValueError") is None


def test_check_works_after_deserialization() -> None:
    failure = _round_trip(_capture(DeepAppError("x")))
    assert failure.exception is None
    assert failure.check(ValueError, AppError) is AppError


# -- reraise ---------------------------------------------------------------------


def test_reraise_raises_the_same_exception_with_its_original_traceback() -> None:
    error = AppError("boom")
    failure = _capture(error)
    original_frames = traceback.extract_tb(error.__traceback__)
    with pytest.raises(AppError) as info:
        failure.reraise()
    assert info.value is error
    raised_frames = traceback.extract_tb(info.value.__traceback__)
    assert [frame.name for frame in raised_frames][-len(original_frames) :] == [
        frame.name for frame in original_frames
    ]
    assert raised_frames[-1].name == "_capture"


def test_reraise_of_a_deserialized_failure_raises_wrapped_failure() -> None:
    failure = _round_trip(_capture(AppError("boom")))
    with pytest.raises(exc.WrappedFailure) as info:
        failure.reraise()
    assert list(info.value) == [failure]
    assert info.value.check(AppError) is AppError


def test_reraise_if_any_does_nothing_without_failures() -> None:
    Failure.reraise_if_any([])
    Failure.reraise_if_any(iter(()))


def test_reraise_if_any_reraises_a_single_failure_itself() -> None:
    error = AppError("only")
    with pytest.raises(AppError) as info:
        Failure.reraise_if_any(iter([_capture(error)]))
    assert info.value is error


def test_reraise_if_any_wraps_several_failures() -> None:
    failures = [_capture(AppError("one")), _capture(KeyError("two"))]
    with pytest.raises(exc.WrappedFailure) as info:
        Failure.reraise_if_any(failures)
    assert list(info.value) == failures
    assert info.value.check(KeyError) is KeyError


# -- records -------------------------------------------------------------------


def test_to_dict_is_json_and_versioned() -> None:
    record = _capture(ValueError("boom", 3)).to_dict()
    assert json.loads(json.dumps(record)) == {**record, "exc_args": list(record["exc_args"])}
    assert record["version"] == 1
    assert record["exception_str"] == "('boom', 3)"
    assert record["exc_type_names"] == ["ValueError", "Exception"]
    assert record["exc_args"] == ("boom", 3)  # a tuple, as TaskFlow's dict has it
    assert record["causes"] == []


def test_to_dict_writes_exc_args_as_a_json_array() -> None:
    record = _capture(ValueError("boom", 3)).to_dict()
    assert json.loads(json.dumps(record))["exc_args"] == ["boom", 3]


def test_json_round_trip_matches_but_is_not_equal_to_the_live_failure() -> None:
    original = _capture(DeepAppError("boom", {"k": [1, 2.5, None, True]}))
    restored = _round_trip(original)
    assert restored.matches(original)
    assert original.matches(restored)
    # TaskFlow's ==: the live exception is part of it, and the round trip lost it.
    assert restored != original
    assert restored == _round_trip(original)
    assert restored.exception is None
    assert restored.exc_info is None
    assert restored.exception_type_names == original.exception_type_names
    assert restored.exception_args == original.exception_args
    assert restored.traceback_str == original.traceback_str
    assert str(restored) == str(original)


def test_to_dict_can_leave_the_arguments_out() -> None:
    failure = _capture(ValueError("secret"))
    assert failure.to_dict(include_args=False)["exc_args"] == ()
    restored = _round_trip(failure, include_args=False)
    assert restored.exception_args == ()
    assert not restored.matches(failure)  # the arguments are part of the record


def test_non_json_exception_args_are_kept_live_and_dropped_from_the_record() -> None:
    marker = object()
    args = ("kept", 1, marker, {1: "int key"}, [marker], float("nan"), (1, "a"), {"ok": (2,)})
    failure = _capture(ValueError(*args))
    assert failure.exception_args == args  # TaskFlow's: the arguments as given
    assert failure.to_dict()["exc_args"] == ("kept", 1, [1, "a"], {"ok": [2]})
    restored = _round_trip(failure)
    assert restored.exception_args == ("kept", 1, [1, "a"], {"ok": [2]})
    assert restored.matches(failure) and failure.matches(restored)


def test_record_fields_keep_the_arguments_given() -> None:
    captured = _capture(Exception(Exception("not JSON")))
    rebuilt = Failure(
        exception_str=captured.exception_str,
        traceback_str=captured.traceback_str,
        exc_type_names=list(captured),
        exc_args=list(captured.exception_args),
    )
    assert rebuilt.exception_args == captured.exception_args
    assert rebuilt.to_dict()["exc_args"] == ()
    assert rebuilt.to_dict(include_args=False)["exc_args"] == ()


def test_self_referencing_exception_args_are_dropped_from_the_record() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert Failure.from_exception(ValueError(loop, "x")).to_dict()["exc_args"] == ("x",)


def test_from_dict_rejects_an_unknown_version() -> None:
    record = _valid_record()
    record["version"] = 2
    with pytest.raises(ValueError, match="version"):
        Failure.from_dict(record)
    del record["version"]
    with pytest.raises(ValueError, match="version"):
        Failure.from_dict(record)


def test_from_dict_of_something_else_raises_taskflows_value_error() -> None:
    # No version: TaskFlow's ValueError, before any field is looked at.
    with pytest.raises(ValueError, match=r"^Invalid dict version of failure object: None"):
        Failure.from_dict({"a": 1})


def test_validate_accepts_records_from_to_dict() -> None:
    Failure.validate(_chained().to_dict())
    Failure.validate(json.loads(json.dumps(_chained().to_dict())))


def test_validate_accepts_taskflow_style_records() -> None:
    Failure.validate(
        {
            "exception_str": "boom",
            "traceback_str": "",
            "exc_type_names": ["ValueError", "StandardError", "Exception"],
            "version": 1,
        }
    )


def test_a_version_written_as_an_integral_float_is_an_integer_as_taskflow_reads_it() -> None:
    # JSON has one number type: a worker whose JSON library writes 1.0 sends the
    # same record, and the protocol's decoder accepts it. TaskFlow's schema
    # (type integer) and from_dict take it too; refusing it turned the worker's
    # failure into an "unreadable failure record".
    record = _chained().to_dict()
    record["version"] = 1.0
    record["causes"][0]["version"] = 1.0
    Failure.validate(record)
    restored = Failure.from_dict(record)
    assert restored.exception_str == record["exception_str"]
    assert [c.exception_str for c in restored.causes] == [c["exception_str"] for c in record["causes"]]
    for odd in (True, 1.5, -1.0, float("inf")):
        record["causes"][0]["version"] = odd
        with pytest.raises(exc.InvalidFormat, match=r"'causes\[0\]\.version'"):
            Failure.validate(record)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("exception_str"), "exception_str"),
        (lambda r: r.__setitem__("exception_str", 5), "exception_str"),
        (lambda r: r.pop("traceback_str"), "traceback_str"),
        (lambda r: r.__setitem__("traceback_str", None), "traceback_str"),
        (lambda r: r.pop("exc_type_names"), "exc_type_names"),
        (lambda r: r.__setitem__("exc_type_names", []), "exc_type_names"),
        (lambda r: r.__setitem__("exc_type_names", "builtins.ValueError"), "exc_type_names"),
        (lambda r: r.__setitem__("exc_type_names", ["a.B", 3]), "exc_type_names"),
        (lambda r: r.__setitem__("exc_type_names", ["a.B", "a.Base"]), "exc_type_names"),
        (lambda r: r.__setitem__("version", -1), "version"),
        (lambda r: r.__setitem__("version", "1"), "version"),
        (lambda r: r.__setitem__("exc_args", "boom"), "exc_args"),
        (lambda r: r.__setitem__("causes", {}), "causes"),
    ],
)
def test_validate_rejects_malformed_records_naming_the_field(change: Any, field: str) -> None:
    record = _valid_record()
    change(record)
    with pytest.raises(exc.InvalidFormat, match=f"'{field}'"):
        Failure.validate(record)
    # from_dict checks the version first, with TaskFlow's ValueError.
    expected = ValueError if field == "version" else exc.InvalidFormat
    with pytest.raises(expected, match="version" if field == "version" else f"'{field}'"):
        Failure.from_dict(record)


def test_validate_names_the_path_of_a_bad_nested_cause() -> None:
    record = _chained().to_dict()
    del record["causes"][0]["traceback_str"]
    with pytest.raises(exc.InvalidFormat, match=r"'causes\[0\]\.traceback_str'"):
        Failure.validate(record)


def test_validate_rejects_a_record_that_is_not_a_mapping() -> None:
    with pytest.raises(exc.InvalidFormat, match="mapping"):
        Failure.validate(["not", "a", "dict"])
    record = _valid_record()
    record["causes"] = ["oops"]
    with pytest.raises(exc.InvalidFormat, match=r"causes\[0\]"):
        Failure.validate(record)


# -- causes ------------------------------------------------------------------------


def test_causes_follow_explicit_chaining() -> None:
    failure = _chained()
    assert [cause.exception_str for cause in failure.causes] == ["'missing'"]
    (cause,) = failure.causes
    assert isinstance(cause.exception, KeyError)
    assert cause.check(KeyError) is KeyError
    assert "inner" in cause.traceback_str


def test_causes_follow_implicit_context_and_nest() -> None:
    try:
        try:
            try:
                raise KeyError("first")
            except KeyError:
                raise TypeError("second") from None
        except TypeError:
            raise AppError("third")  # noqa: B904 - the implicit context is the point
    except AppError:
        failure = Failure()
    # ``from None`` suppresses the KeyError context, so the chain stops at TypeError.
    assert [c.exception_str for c in failure.causes] == ["second"]

    try:
        try:
            try:
                raise KeyError("first")
            except KeyError:
                raise TypeError("second")  # noqa: B904
        except TypeError:
            raise AppError("third")  # noqa: B904
    except AppError:
        failure = Failure()
    assert [c.exception_str for c in failure.causes] == ["second", "'first'"]
    assert [c.exception_str for c in failure.causes[0].causes] == ["'first'"]


def test_causes_survive_the_json_round_trip() -> None:
    failure = _chained()
    restored = _round_trip(failure)
    assert restored.matches(failure)
    assert failure.matches(restored)  # causes too, which TaskFlow's matches() does not manage
    assert [c.to_dict() for c in restored.causes] == [c.to_dict() for c in failure.causes]
    assert restored.causes[0].exception is None


def test_cause_cycles_do_not_loop_forever() -> None:
    first, second = KeyError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    failure = Failure.from_exception(first)
    assert [c.exception_str for c in failure.causes] == ["b"]
    # The cause's own causes stop there too: walked again from its exception, they
    # led back to "a", then "b"... and recording the failure recursed for ever.
    assert failure.causes[0].causes == ()
    assert [c["exception_str"] for c in failure.to_dict()["causes"]] == ["b"]
    assert "b" in failure.pformat(traceback=True)


def _raise_chain(depth: int) -> None:
    """Raise a ValueError caused by one caused by another... ``depth`` causes deep."""
    if depth == 0:
        raise ValueError("level 0")
    try:
        _raise_chain(depth - 1)
    except ValueError as err:
        raise ValueError(f"level {depth}") from err


@pytest.mark.timeout(30)
def test_a_long_cause_chain_is_recorded_compared_and_read_back_in_linear_time() -> None:
    # Every cause carries the rest of the chain as its causes: written (and
    # compared) cause by cause, the work doubled with each link, and a chain of
    # 30 never finished, hanging the worker or engine that recorded it.
    try:
        _raise_chain(40)
    except ValueError as err:
        failure = Failure.from_exception(err)
    body = json.dumps(failure.to_dict())
    assert len(body) < 40 * 2000, len(body)
    restored = Failure.from_dict(json.loads(body))
    assert [c.exception_str for c in restored.causes] == [f"level {n}" for n in range(39, -1, -1)]
    assert [c.exception_str for c in restored.causes[0].causes] == [f"level {n}" for n in range(38, -1, -1)]
    assert restored.causes[-1].causes == ()
    assert restored.matches(failure) and failure.matches(restored)
    assert failure == failure.copy() and restored == Failure.from_dict(json.loads(body))


# -- equality, copies, display ---------------------------------------------------


def test_equality_compares_types_message_and_traceback() -> None:
    failure = _capture(AppError("boom"))
    assert failure == failure.copy()
    assert failure.matches(failure.copy())
    assert failure != _capture(AppError("other message"))
    assert failure != _capture(ValueError("boom"))
    # Same type and message, raised from another line: another traceback.
    try:
        raise AppError("boom")
    except AppError:
        elsewhere = Failure()
    assert failure != elsewhere
    assert not failure.matches(elsewhere)


def test_equality_and_matching_compare_arguments_and_causes() -> None:
    failure = _capture(ValueError("boom", 1))
    record = failure.to_dict()
    record["exc_args"] = ["boom", 2]
    assert not Failure.from_dict(record).matches(failure)
    record["exc_args"] = ["boom", 1]
    assert Failure.from_dict(record).matches(failure)
    chained, plain = _chained().to_dict(), _chained().to_dict()
    plain["causes"] = []
    assert not Failure.from_dict(chained).matches(Failure.from_dict(plain))
    assert Failure.from_dict(chained) != Failure.from_dict(plain)


def test_two_captures_of_one_error_are_equal() -> None:
    def capture() -> Failure:
        try:
            raise AppError("boom")
        except AppError:
            return Failure()

    first, second = capture(), capture()
    assert first.exception is not second.exception
    assert first == second
    assert first.matches(second)


def test_failure_is_not_equal_to_other_objects_and_is_unhashable() -> None:
    failure = _capture(AppError("boom"))
    assert failure != "boom"
    assert not failure.matches("boom")
    with pytest.raises(TypeError):
        hash(failure)


def test_copy_keeps_the_live_exception() -> None:
    error = AppError("boom")
    copied = _capture(error).copy()
    assert copied.exception is error
    assert copied.exception_args == ("boom",)


def test_pformat_shows_type_message_and_optionally_traceback() -> None:
    failure = _capture(ValueError("boom"))
    assert failure.pformat() == "Failure: ValueError: boom"
    assert str(failure) == "Failure: ValueError: boom"
    assert _capture(AppError("x")).pformat() == f"Failure: {__name__}.AppError: x"
    detailed = failure.pformat(traceback=True)
    assert detailed.startswith("Failure: ValueError: boom\nTraceback (most recent call last):\n")
    assert "raise error" in detailed


def test_repr_is_the_default_one_as_in_taskflow() -> None:
    # TaskFlow's Failure keeps object's repr, which shows in its listeners' log lines.
    failure = _capture(ValueError("boom"))
    assert repr(failure) == f"<flowkit.types.failure.Failure object at {id(failure):#x}>"
