"""Cache keys: which inputs share one, and which never do (doc/caching.rst, "Which inputs are equal")."""

from __future__ import annotations

import collections
import enum
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, task
from flowkit.cache import _keys

REPO = Path(__file__).resolve().parents[2]
_NAMES = itertools.count()
_IDENTITY = {"task": "tests.cache.test_keys.Shown", "version": [1, 0]}


class Colour(enum.IntEnum):
    RED = 1


class Word(enum.StrEnum):
    A = "a"


class Point(collections.namedtuple("Point", "x y")):
    pass


def key(value: Any) -> str:
    return _keys.call_key(_IDENTITY, {"x": value})


#: Pairs of inputs Python may call equal, or plain JSON writes alike, that a task can tell apart.
DISTINCT = [
    ({1, 2}, [1, 2]),
    ({1, 2}, (1, 2)),
    ((1, 2), [1, 2]),
    (frozenset({1}), {1}),
    ([{1, 2}], [[1, 2]]),
    (b"x", "x"),
    (1, 1.0),
    (1, True),
    (0, False),
    (-0.0, 0.0),
    ({1: "a"}, {"1": "a"}),
    ({True: "a"}, {"true": "a"}),
    ({1: "a"}, {True: "a"}),
    ({1: "a"}, {1.0: "a"}),
    ({None: "a"}, {"null": "a"}),
    ({(1, 2): "a"}, {"[1, 2]": "a"}),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    (Colour.RED, 1),
    (Word.A, "a"),
    (Point(1, 2), (1, 2)),
    (collections.OrderedDict(a=1), {"a": 1}),
    ({"@upstream": "k" * 64, "item": None}, _keys.UpstreamKey("k" * 64, None)),
    (_keys.UpstreamKey("k" * 64, 1), _keys.UpstreamKey("k" * 64, "1")),
    ({"@tuple": [1]}, (1,)),
    ({"@set": [1]}, {1}),
    (["l", 1], [1]),
    ("@x", "x"),
    (10**5000, 10**5000 + 1),
    (float("nan"), "NaN"),
    (float("inf"), float("-inf")),
]


def _ids(pairs: list[tuple[Any, Any]]) -> list[str]:
    return [f"{n}-{type(one).__name__}" for n, (one, _other) in enumerate(pairs)]


@pytest.mark.parametrize(("one", "other"), DISTINCT, ids=_ids(DISTINCT))
def test_inputs_a_task_can_tell_apart_have_different_keys(one: Any, other: Any) -> None:
    assert key(one) != key(other)
    assert key([one]) != key([other])  # nested too
    assert key({"k": one}) != key({"k": other})


def test_a_set_is_the_same_input_whatever_order_it_was_built_in() -> None:
    words = [f"w{i}" for i in range(50)]
    backwards: set[str] = set()
    for word in reversed(words):
        backwards.add(word)
    assert key(set(words)) == key(backwards)
    assert key(frozenset(words)) == key(frozenset(backwards))
    assert key({frozenset({"a", "b"}), frozenset({"c"})}) == key({frozenset({"c"}), frozenset({"b", "a"})})
    assert key(float("nan")) == key(float("nan"))  # one NaN as good as another


def test_a_key_of_sets_is_the_same_in_processes_of_other_hash_seeds() -> None:
    # Set items used to be sorted by repr, and a frozenset of strs shows its items
    # in an order that changes with the hash seed: each process had its own key.
    script = (
        "from flowkit.cache import _keys\n"
        "print(_keys.call_key({}, {'x': {frozenset({'a', 'd'}), frozenset({'b', 'c'})}}))\n"
    )
    texts = set()
    for seed in ("1", "2", "3", "4"):
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        texts.add(done.stdout)
    assert len(texts) == 1, texts


def test_a_cache_code_key_is_the_same_in_processes_of_other_hash_seeds() -> None:
    # ``word in {"alpha", ...}`` compiles to a frozenset constant, which was
    # hashed by its repr: its order, so the key, changed with the hash seed.
    script = (
        "from flowkit.cache import _keys\n"
        "from tests.cache import tasks\n"
        "print(_keys.task_identity(tasks.Member('m'))['code'])\n"
    )
    digests = set()
    for seed in ("1", "2", "3", "4", "5"):
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        digests.add(done.stdout)
    assert len(digests) == 1, digests


def test_equal_plain_values_share_a_key() -> None:
    assert key({"a": [1, 2.5, None, True, "é"]}) == key({"a": [1, 2.5, None, True, "é"]})
    assert key({1: "a", "b": 2}) == key({1: "a", "b": 2})  # mixed key types (JSON's sort_keys refused them)


class Shown(task.Task):
    """Returns what a task can see of its input: the types and the order too."""

    cache = True

    def execute(self, x: Any) -> str:
        return _show(x)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_show(k)}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, set | frozenset):
        return f"{type(value).__name__}({sorted(map(_show, value))})"
    if isinstance(value, list | tuple):
        return f"{type(value).__name__}({', '.join(map(_show, value))})"
    return f"{type(value).__name__}:{value!r}"


@pytest.mark.parametrize(("one", "other"), DISTINCT[:21], ids=_ids(DISTINCT[:21]))
def test_a_task_given_one_input_then_the_other_gets_its_own_result(one: Any, other: Any) -> None:
    # A set and a list of the same items used to share a key: the second run was
    # handed the first one's result ("list([1, 2])" for a set).
    url = f"memory://keys-test-{next(_NAMES)}"
    for value in (one, other, one):
        assert engines.run(Shown("show", provides="shown"), store={"x": value}, cache=url)["shown"] == _show(
            value
        )


def test_a_model_pydantic_cannot_dump_is_refused_as_any_input_no_key_represents() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Handle:
        pass

    class Holder(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        handle: Handle

    # It used to be pydantic's own serialization error, naming neither the cache nor the argument.
    with pytest.raises(
        _keys.Uncacheable, match="argument 'x': a .*Holder cannot be part of a cache key"
    ) as err:
        key(Holder(handle=Handle()))
    assert err.value.argument == "x"
