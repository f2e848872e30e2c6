"""``short_repr``: the one way error messages quote a value."""

from __future__ import annotations

from flowkit._utils.reprs import short_repr


class _BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr today")


def test_a_short_repr_is_left_whole() -> None:
    assert short_repr([1, 2]) == "[1, 2]"
    assert short_repr("x" * 78) == repr("x" * 78)  # 80 characters with the quotes


def test_a_long_repr_is_cut_to_the_limit_ending_in_dots() -> None:
    text = short_repr(list(range(100)))
    assert len(text) == 80
    assert text.startswith("[0, 1, 2") and text.endswith("...")
    assert len(short_repr(list(range(100)), 60)) == 60


def test_a_repr_that_raises_gives_the_default_form_instead_of_losing_the_message() -> None:
    assert short_repr(_BrokenRepr()).startswith("<tests.unit.test_reprs._BrokenRepr object at 0x")
