"""flowkit._utils.reflection: reading a function's arguments from its code object
says exactly what :func:`inspect.signature` says."""

from __future__ import annotations

import functools
import itertools
from typing import Any

from flowkit._utils import reflection


def _signatures() -> list[str]:
    """Parameter lists covering every kind: positional-only, defaults, *args, keyword-only, **kwargs."""
    found = []
    for posonly, plain, defaults, star, kwonly, kwdefault, kwargs in itertools.product(
        range(3), range(3), range(3), (False, True), range(3), (False, True), (False, True)
    ):
        names = [f"p{i}" for i in range(posonly)] + [f"a{i}" for i in range(plain)]
        if defaults > len(names):
            continue
        parts = [n if i < len(names) - defaults else f"{n}=1" for i, n in enumerate(names)]
        if posonly:
            parts.insert(posonly, "/")
        if star:
            parts.append("*args")
        elif kwonly:
            parts.append("*")
        parts += [f"k{i}=2" if kwdefault and i == 0 else f"k{i}" for i in range(kwonly)]
        if kwargs:
            parts.append("**kwargs")
        found.append(", ".join(parts))
    return found


def test_code_objects_are_read_as_inspect_reads_signatures() -> None:
    checked = 0
    for params in _signatures():
        namespace: dict[str, Any] = {}
        exec(f"def f({params}): pass", namespace)  # noqa: S102 - signatures made above
        function = namespace["f"]
        for drop_first in (False, True):
            fast = reflection._from_code(function, drop_first)
            slow = reflection._from_signature(function, drop_first)
            assert fast == slow, (params, drop_first)
            checked += 1
    assert checked > 300


def test_decorated_functions_are_read_through_to_what_they_wrap() -> None:
    def inner(a: int, b: int = 1) -> int:
        return a + b

    @functools.wraps(inner)
    def outer(*args: Any, **kwargs: Any) -> int:
        return inner(*args, **kwargs)

    assert reflection.get_callable_args(outer) == ["a", "b"]
    assert reflection.get_callable_args(outer, required_only=True) == ["a"]
    assert reflection.get_callable_args(functools.partial(inner, 1)) == ["b"]


class _AsyncCallable:
    async def __call__(self, x: int) -> int:
        return x

    async def method(self, x: int) -> int:
        return x

    def plain(self, x: int) -> int:
        return x


class _PlainCallable:
    def __call__(self, x: int) -> int:
        return x


async def _async_function(x: int, y: int = 0) -> int:
    return x + y


def test_is_coroutine_function_sees_async_functions_however_they_are_wrapped() -> None:
    obj = _AsyncCallable()
    for target in (
        _async_function,
        functools.partial(_async_function, y=1),
        functools.partial(functools.partial(_async_function), 1),
        obj,
        obj.method,
        _AsyncCallable.method,
    ):
        assert reflection.is_coroutine_function(target), target
    for target in (
        len,
        print,
        obj.plain,
        _PlainCallable(),
        functools.partial(obj.plain),
        _PlainCallable,
        int,
    ):
        assert not reflection.is_coroutine_function(target), target


def test_is_coroutine_function_agrees_with_inspect_where_inspect_sees_them() -> None:
    import inspect
    from unittest import mock

    obj = _AsyncCallable()
    for target in (
        _async_function,
        functools.partial(_async_function),
        obj.method,
        obj.plain,
        len,
        mock.AsyncMock(),
        mock.Mock(),
    ):
        assert reflection.is_coroutine_function(target) == inspect.iscoroutinefunction(target)
