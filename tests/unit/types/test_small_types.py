"""flowkit.types.{sets,timing,latch,entity}: TaskFlow's small helper types."""

from __future__ import annotations

import pickle
import threading

import pytest

from flowkit.types import entity, latch, sets, timing


def test_ordered_set_keeps_first_order_and_acts_like_a_frozenset() -> None:
    s = sets.OrderedSet([3, 1, 3, 2])
    assert list(s) == [3, 1, 2]
    assert len(s) == 3 and 1 in s and 4 not in s
    assert s == frozenset({1, 2, 3})
    assert hash(s) == hash(sets.OrderedSet([1, 2, 3]))
    assert list(s.union([5, 1], [4])) == [3, 1, 2, 5, 4]
    assert list(s.intersection([2, 3], {3, 2, 9})) == [3, 2]
    assert list(s.difference([1], {2})) == [3]
    assert s.issuperset([1, 2]) and not s.issuperset([7])
    assert s.issubset(range(5)) and not s.issubset([1])
    assert list(s | {7}) == [3, 1, 2, 7]
    assert list(s.copy()) == [3, 1, 2]
    assert list(pickle.loads(pickle.dumps(s))) == [3, 1, 2]
    assert repr(s) == "OrderedSet([3, 1, 2])"


class _FakeEvent:
    """Records the waits instead of blocking."""

    def __init__(self) -> None:
        self.flag = False
        self.waits: list[float | None] = []

    def set(self) -> None:
        self.flag = True

    def is_set(self) -> bool:
        return self.flag

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.flag

    def clear(self) -> None:
        self.flag = False


def test_timeout_waits_its_value_until_interrupted_and_resets() -> None:
    events: list[_FakeEvent] = []

    def factory() -> _FakeEvent:
        events.append(_FakeEvent())
        return events[-1]

    t = timing.Timeout(2.5, event_factory=factory)
    assert t.value == 2.5 and not t.is_stopped()
    t.wait()
    assert events[0].waits == [2.5]
    t.interrupt()
    assert t.is_stopped()
    t.reset()
    assert not t.is_stopped()
    with pytest.raises(ValueError, match="-1"):
        timing.Timeout(-1)


def test_convert_to_timeout_accepts_numbers_strings_and_timeouts() -> None:
    assert timing.convert_to_timeout(3).value == 3.0
    assert timing.convert_to_timeout("0.5").value == 0.5
    assert timing.convert_to_timeout(None, default_value=7).value == 7.0
    existing = timing.Timeout(1)
    assert timing.convert_to_timeout(existing) is existing
    with pytest.raises(ValueError, match="Invalid timeout"):
        timing.convert_to_timeout([1])  # type: ignore[arg-type]


def test_latch_releases_after_count_arrivals() -> None:
    gate = latch.Latch(2)
    assert gate.needed == 2
    assert gate.wait(timeout=0) is False
    gate.countdown()
    arrived = threading.Thread(target=gate.countdown)
    arrived.start()
    arrived.join()
    assert gate.wait() is True
    assert gate.needed == 0
    gate.countdown()
    assert gate.needed == 0
    with pytest.raises(ValueError, match="greater than zero"):
        latch.Latch(0)


def test_entity_to_dict() -> None:
    e = entity.Entity("conductor", "c-1", {"host": "a"})
    assert e.to_dict() == {"kind": "conductor", "name": "c-1", "metadata": {"host": "a"}}
    assert "c-1" in repr(e)
