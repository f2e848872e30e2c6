"""Per-class caches forget classes made at run time once they hold enough of them.

A flow factory that defines its task classes inside itself (a closure over the
job's settings, a test's helper) makes new classes for every flow it builds. The
caches flowkit keeps per class (is it a flow, what kind of item, its contract,
whether it reverts) held each of them for ever: a conductor building such a flow
per job kept every job's classes, some 44 kB each, growing without bound.
"""

from __future__ import annotations

import gc
import itertools
import weakref
from typing import Any

import pytest

from flowkit import engines, task
from flowkit._utils import class_caches
from flowkit.patterns import graph_flow, linear_flow

_NAMES = itertools.count()


def _flow_of_new_classes(pattern: Any, refs: list[weakref.ref[type]]) -> Any:
    """A flow of two task classes made just now, remembered weakly in ``refs``."""

    class Step(task.Task):
        default_provides = "y"
        cache = True

        def execute(self, x: int) -> int:
            return x + 1

        def revert(self, x: int, result: Any, **kwargs: Any) -> None:
            return None

    class Last(task.Task):
        def execute(self, y: int) -> int:
            return y

    refs.extend((weakref.ref(Step), weakref.ref(Last)))
    return pattern.Flow("f").add(Step("step", rebind={"x": "x0"}), Last("last"))


@pytest.mark.parametrize("pattern", [linear_flow, graph_flow], ids=["linear", "graph"])
def test_classes_made_per_flow_are_let_go_once_the_caches_are_full(
    pattern: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(class_caches, "MAX_CLASSES", 8)
    refs: list[weakref.ref[type]] = []
    cache = f"memory://class-caches-{next(_NAMES)}"
    for _ in range(100):
        engines.run(_flow_of_new_classes(pattern, refs), store={"x0": 1}, cache=cache)
    gc.collect()
    alive = sum(ref() is not None for ref in refs)
    # Each cache keeps at most the classes it met since it was last emptied; a cache
    # that meets only one of a flow's two classes keeps them from twice as many flows.
    assert alive <= 2 * class_caches.MAX_CLASSES, f"{alive} of {len(refs)} classes made per flow still alive"


def test_make_room_empties_a_full_cache_only() -> None:
    cache: dict[type, int] = {int: 1}
    class_caches.make_room(cache)
    assert cache == {int: 1}
    full = {type(f"C{i}", (), {}): i for i in range(class_caches.MAX_CLASSES)}
    class_caches.make_room(full)
    assert full == {}
