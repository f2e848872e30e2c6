"""flowkit._utils.gc_pause: no collections while big structures are built; they then skip young ones."""

from __future__ import annotations

import gc

from flowkit._utils.gc_pause import gc_paused


class _Node:
    """A tracked object, as the compiler and the run state make by the thousand."""


def test_the_collector_is_off_inside_and_back_on_after() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_the_program_turned_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_the_block_built_goes_to_the_oldest_generation() -> None:
    with gc_paused():
        built = [_Node() for _ in range(1000)]
    oldest = {id(obj) for obj in gc.get_objects(generation=2)}
    assert all(id(node) in oldest for node in built)
    assert gc.get_count()[0] < 100  # no collection is owed for them


def test_objects_the_program_froze_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_paused():
            built = [_Node() for _ in range(100)]
        assert gc.get_freeze_count() == frozen
        oldest = {id(obj) for obj in gc.get_objects(generation=2)}
        assert not any(id(node) in oldest for node in built)
    finally:
        gc.unfreeze()
