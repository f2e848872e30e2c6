"""Cache keys: which inputs share one, and which never do (doc/caching.rst, "Which inputs are equal")."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import itertools
import os
import pathlib
import random
import subprocess
import sys
import tracemalloc
import uuid
import zoneinfo
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, states, task
from flowkit.cache import _keys
from flowkit.types.notifier import Notifier

REPO = Path(__file__).resolve().parents[2]
_NAMES = itertools.count()
_IDENTITY = {"task": "tests.cache.test_keys.Shown", "version": [1, 0]}


class Colour(enum.IntEnum):
    RED = 1


class Word(enum.StrEnum):
    A = "a"


class Point(collections.namedtuple("Point", "x y")):
    pass


class Level(enum.Enum):
    LOW = 1


class Shade(enum.Enum):
    DARK = (1, 2)


class Perm(enum.IntFlag, boundary=enum.KEEP):
    R = 1


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


def _outputs_under_hash_seeds(script: str, seeds: tuple[str, ...]) -> set[str]:
    """What ``script`` prints in a fresh interpreter per ``PYTHONHASHSEED`` value, as a set."""
    outputs = set()
    for seed in seeds:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outputs.add(done.stdout)
    return outputs


def test_a_key_of_sets_is_the_same_in_processes_of_other_hash_seeds() -> None:
    # Set items used to be sorted by repr, and a frozenset of strs shows its items
    # in an order that changes with the hash seed: each process had its own key.
    script = (
        "import datetime\n"
        "from flowkit.cache import _keys\n"
        "print(_keys.call_key({}, {'x': {frozenset({'a', 'd'}), frozenset({'b', 'c'})}}))\n"
        "print(_keys.call_key({}, {'x': {1, 'a', b'b', (2, 'c'), frozenset({'d', 'e'}), None}}))\n"
        "print(_keys.call_key({}, {'x': {'f', 'g', datetime.date(2020, 1, 1), frozenset({'h', 'i'})}}))\n"
    )
    texts = _outputs_under_hash_seeds(script, ("1", "2", "3", "4"))
    assert len(texts) == 1, texts


def test_a_cache_code_key_is_the_same_in_processes_of_other_hash_seeds() -> None:
    # ``word in {"alpha", ...}`` compiles to a frozenset constant, which was
    # hashed by its repr: its order, so the key, changed with the hash seed.
    script = (
        "from flowkit.cache import _keys\n"
        "from tests.cache import tasks\n"
        "print(_keys.task_identity(tasks.Member('m'))['code'])\n"
    )
    digests = _outputs_under_hash_seeds(script, ("1", "2", "3", "4", "5"))
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


def test_a_model_whose_dump_hides_a_field_is_refused_rather_than_keyed_without_it() -> None:
    pytest.importorskip("pydantic")
    from tests.cache.tasks import Credentials

    right = Credentials(user="ops", password="hunter2")  # type: ignore[arg-type]
    wrong = Credentials(user="ops", password="guess")  # type: ignore[arg-type]
    # Both dump as {"user": "ops", "password": "**********"}: they shared a key, so a
    # cached login with the right password answered the call with the wrong one.
    for value in (right, wrong, [right]):
        with pytest.raises(_keys.Uncacheable, match="argument 'x': .*Credentials.*does not show"):
            key(value)


UTC = datetime.UTC
PLUS_ONE = datetime.timezone(datetime.timedelta(hours=1))
try:
    PARIS: datetime.tzinfo = zoneinfo.ZoneInfo("Europe/Paris")
except zoneinfo.ZoneInfoNotFoundError:  # no time zone data here: a zone of that name will do
    PARIS = datetime.timezone(datetime.timedelta(hours=1), "Europe/Paris")

#: Pairs of inputs of the standard types a key represents, that a task can tell apart.
STANDARD = [
    (datetime.datetime(2020, 1, 2, 3, 4, 5), datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)),
    (datetime.datetime(2020, 1, 2, 12, tzinfo=PLUS_ONE), datetime.datetime(2020, 1, 2, 11, tzinfo=UTC)),
    (datetime.datetime(2020, 1, 2, 12, tzinfo=PLUS_ONE), datetime.datetime(2020, 1, 2, 12, tzinfo=PARIS)),
    (datetime.datetime(2020, 1, 2, 3, 4, 5, 6), datetime.datetime(2020, 1, 2, 3, 4, 5, 7)),
    (datetime.datetime(2021, 10, 31, 2, 30, fold=0), datetime.datetime(2021, 10, 31, 2, 30, fold=1)),
    (datetime.datetime(2020, 1, 2), datetime.date(2020, 1, 2)),
    (datetime.date(2020, 1, 2), (2020, 1, 2)),
    (datetime.date(2020, 1, 2), datetime.date(2020, 1, 3)),
    (datetime.time(3, 4), datetime.time(3, 4, tzinfo=UTC)),
    (datetime.time(3, 4), datetime.timedelta(hours=3, minutes=4)),
    (datetime.timedelta(days=1), datetime.timedelta(seconds=86401)),
    (decimal.Decimal("1.0"), decimal.Decimal("1.00")),
    (decimal.Decimal("1"), 1),
    (decimal.Decimal("0.5"), 0.5),
    (decimal.Decimal("NaN"), float("nan")),
    (uuid.UUID(int=1), uuid.UUID(int=2)),
    (uuid.UUID(int=1), str(uuid.UUID(int=1))),
    (pathlib.PurePosixPath("a/b"), pathlib.PureWindowsPath("a/b")),
    (pathlib.PurePosixPath("a/b"), "a/b"),
    (pathlib.PurePosixPath("a/b"), pathlib.PurePosixPath("a/c")),
    (bytearray(b"x"), b"x"),
    (bytearray(b"x"), bytearray(b"y")),
    (Perm(2), Perm(4)),  # no name (None), told apart by value: they shared a key
    (Perm.R, 1),
    (Shade.DARK, (1, 2)),
    (Level.LOW, Colour.RED),  # one value, two classes
    (complex(1, 2), complex(1, -2)),
    (complex(1, 0), 1.0),
]


@pytest.mark.parametrize(("one", "other"), STANDARD, ids=_ids(STANDARD))
def test_standard_inputs_a_task_can_tell_apart_have_different_keys(one: Any, other: Any) -> None:
    assert key(one) != key(other)
    assert key([one]) != key([other])
    assert key({"k": one}) != key({"k": other})
    if isinstance(one, Hashable) and isinstance(other, Hashable):
        assert key({one}) != key({other})


def test_equal_standard_inputs_share_a_key() -> None:
    # Each built twice, apart, so that nothing but the value is shared.
    def make() -> list[Any]:
        return [
            datetime.datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=PARIS),
            datetime.datetime.fromisoformat("2020-01-02T03:04:05+01:00"),
            datetime.date(2020, 1, 2),
            datetime.time(3, 4, 5, tzinfo=UTC),
            datetime.timedelta(minutes=90),
            decimal.Decimal("1.50"),
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            pathlib.PurePosixPath("a") / "b",
            pathlib.PureWindowsPath("C:/x"),
            bytearray(b"abc"),
            Perm.R | Perm(4),
            Shade.DARK,
            {datetime.date(2020, 1, 1), datetime.date(2021, 1, 1)},
        ]

    assert key(make()) == key(make())
    assert key(uuid.UUID(int=5)) == key(uuid.UUID(str(uuid.UUID(int=5))))
    assert key(pathlib.PurePosixPath("a//b")) == key(pathlib.PurePosixPath("a/b"))  # one path


def test_a_task_given_a_datetime_is_cached() -> None:
    # It used to fail the atom (Uncacheable) before its call.
    url = f"memory://keys-test-{next(_NAMES)}"
    when = datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    seen: list[bool] = []

    def listen(state: str, details: dict[str, Any]) -> None:
        if state == states.SUCCESS:
            seen.append(details["cache_hit"])

    for _ in range(2):
        engine = engines.load(Shown("show"), store={"x": [when, decimal.Decimal("2.50")]}, cache=url)
        engine.atom_notifier.register(Notifier.ANY, listen)
        engine.run()
    assert seen == [False, True]


def test_numpy_values_have_keys_by_dtype_shape_and_contents() -> None:
    numpy = pytest.importorskip("numpy")
    grid = numpy.arange(12, dtype=numpy.int64).reshape(3, 4)
    assert key(grid) == key(numpy.arange(12, dtype=numpy.int64).reshape(3, 4))
    assert key(grid[:, ::2]) == key(numpy.ascontiguousarray(grid[:, ::2]))  # a view as its items
    assert key(grid) != key(grid.reshape(4, 3))
    assert key(grid) != key(grid.astype(numpy.int32))
    assert key(grid) != key(grid.tolist())
    assert key(grid.astype(object)) == key(grid.astype(object).copy())  # by its items, not their addresses
    assert key(grid.astype(object)) != key(grid)
    assert key(numpy.float64(1.0)) != key(1.0)
    assert key(numpy.int64(1)) != key(numpy.int32(1))
    assert key(numpy.int64(1)) != key(1)
    assert key(numpy.int64(1)) == key(numpy.int64(1))
    assert key(numpy.str_("a")) != key("a")
    points = numpy.zeros(2, dtype=[("x", "<i4"), ("y", "<f8")])
    assert key(points) != key(numpy.zeros(2, dtype=[("x", "<i4"), ("z", "<f8")]))


def test_keys_never_import_numpy() -> None:
    script = (
        "import sys, datetime\n"
        "from flowkit.cache import _keys\n"
        "class Odd: pass\n"
        "_keys.call_key({}, {'x': [1.5, {2}, datetime.date(2020, 1, 1), b'x']})\n"
        "try:\n"
        "    _keys.call_key({}, {'x': Odd()})\n"
        "except _keys.Uncacheable:\n"
        "    pass\n"
        "print('numpy' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_keying_many_tuples_calls_no_python_function_per_item() -> None:
    # Every tuple went through a Python function per item (and per tuple): a
    # list of 10,000 pairs took 15 to 45 ms, where plain JSON took 2 to 8.
    pairs = [(i, f"s{i}") for i in range(10_000)]
    nested = {f"k{i}": [(i, [i, (i,)]), {"a": b"x"}] for i in range(1_000)}
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        key(pairs)
        key(nested)
    finally:
        sys.setprofile(None)
    assert calls < 100


def test_a_large_plain_input_is_keyed_without_a_copy_of_it() -> None:
    # The check that a plain input held no tuple decoded its JSON again: for a
    # moment the input was in memory twice.
    numbers = list(range(100_000))
    size = sys.getsizeof(numbers) + sum(map(sys.getsizeof, numbers))
    key(numbers)  # imports, caches
    tracemalloc.start()
    try:
        key(numbers)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size / 2


def _random_value(rng: random.Random, depth: int) -> Any:
    """A value of the types keys write as they are, or tag, small enough to collide by chance."""
    scalars: list[Any] = [
        0, 1, -1, True, False, None, 0.0, -0.0, 1.0, "", "a", "1", b"", b"a", bytearray(b"a"),
        2**40, decimal.Decimal("1"), decimal.Decimal("1.0"), datetime.date(2020, 1, 1),
    ]  # fmt: skip
    if depth == 0 or rng.random() < 0.4:
        return rng.choice(scalars)
    size = rng.randrange(3)
    kind = rng.choice(["list", "tuple", "dict", "set", "frozenset"])
    if kind == "list":
        return [_random_value(rng, depth - 1) for _ in range(size)]
    if kind == "tuple":
        return tuple(_random_value(rng, depth - 1) for _ in range(size))
    hashable = [
        value for value in (_random_value(rng, 0) for _ in range(size)) if type(value) is not bytearray
    ]
    if kind == "dict":
        return {key: _random_value(rng, depth - 1) for key in hashable}
    return set(hashable) if kind == "set" else frozenset(hashable)


def test_random_inputs_share_a_key_exactly_when_a_task_sees_the_same_value() -> None:
    # Plain parts are written by marshal as they are, others tagged: whichever
    # way, one value is one key and two values two keys.
    rng = random.Random(1234)
    by_shown: dict[str, str] = {}
    by_key: dict[str, str] = {}
    for _ in range(3000):
        value = _random_value(rng, 3)
        shown, made = _show(value), key(value)
        assert by_shown.setdefault(shown, made) == made, shown
        assert by_key.setdefault(made, shown) == shown, (shown, by_key[made])
    assert len(by_shown) > 500


def test_a_cache_key_hooks_set_is_the_same_key_in_processes_of_other_hash_seeds(
    tmp_path: pathlib.Path,
) -> None:
    # The hook's value went into the key as str(value): a set of strs shows its
    # items in an order that changes with the hash seed, so another process (a
    # worker, the next run of a script) missed every entry the first one stored.
    script = (
        "from flowkit import engines\n"
        "from tests.cache import tasks\n"
        "tags = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta']\n"
        f"engines.run(tasks.Tagged('tagged'), store={{'tags': tags}}, cache={f'dir://{tmp_path}'!r})\n"
        "print('ran' if tasks.CALLS else 'hit')\n"
    )
    outputs = [_outputs_under_hash_seeds(script, (seed,)) for seed in ("1", "2", "3", "4")]
    assert outputs == [{"ran\n"}, {"hit\n"}, {"hit\n"}, {"hit\n"}]
