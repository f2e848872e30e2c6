"""Names of classes and callables, and what arguments a callable takes.

Atoms read their ``execute``/``revert`` signatures to learn what they require.
Tasks are created by the hundred thousand, so the signature of each function is
inspected once and remembered: the cache is keyed by the underlying function
object (not the bound method, which is new for every instance).
"""

from __future__ import annotations

import builtins
import functools
import types
import typing
from collections.abc import Callable
from typing import Any, Final

from flowkit._utils.records import Record

__all__ = [
    "NOT_PLAIN",
    "CallableArgs",
    "accepts_kwargs",
    "get_callable_args",
    "get_callable_name",
    "get_class_name",
    "inspect_callable",
    "inspect_key",
    "is_coroutine_function",
    "plain_type",
    "signature_key",
]

_BUILTIN_MODULES = frozenset(["builtins", "__builtin__", "__builtins__", "exceptions"])
# Code object flags (see the inspect module's CO_* constants).
_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08
_CO_COROUTINE = 0x80


class CallableArgs(Record):
    """The named arguments of a callable, as an atom needs to know them.

    Attributes:
        required: names of the arguments without a default, in signature order.
        all: names of every named argument (``*args``/``**kwargs`` excluded).
        accepts_kwargs: whether the callable takes ``**kwargs``, which lets it
            receive names that are not in its signature.
        positional_only: names of the arguments that cannot be passed by keyword
            (before a ``/``); engines pass every argument by keyword.
        var_keyword: the name of the ``**kwargs`` parameter (None: there is
            none), whose annotation (:mod:`flowkit.typed`) is the type of every
            value passed under a name that ``all`` does not list.
    """

    required: tuple[str, ...]
    all: tuple[str, ...]
    accepts_kwargs: bool
    positional_only: tuple[str, ...] = ()
    var_keyword: str | None = None


def get_class_name(obj: Any, fully_qualified: bool = True, truncate_builtins: bool = True) -> str:
    """Return the name of ``obj``'s class (or of ``obj`` itself when it is a class).

    The name is ``module.ClassName`` like TaskFlow's (which uses the class's
    ``__name__``, not its ``__qualname__``), so default atom names match the
    names TaskFlow would have stored.

    Args:
        obj: a class, an instance, or a bound method (its ``self``'s class is used).
        fully_qualified: prefix the module name.
        truncate_builtins: leave builtin classes without their module prefix.

    Raises:
        TypeError: for a plain function, which has no class.
    """
    if isinstance(obj, types.FunctionType):
        raise TypeError(f"cannot get a class name from the function {obj!r}")
    if isinstance(obj, types.MethodType):
        obj = obj.__self__
    cls = obj if isinstance(obj, type) else type(obj)
    module = getattr(cls, "__module__", None)
    if module is None or not fully_qualified or (truncate_builtins and module in _BUILTIN_MODULES):
        return str(cls.__name__)
    return f"{module}.{cls.__name__}"


def get_callable_name(function: Callable[..., Any]) -> str:
    """Return a dotted name for a callable: ``module.qualified.name``.

    Bound methods are named after the class of the object they are bound to;
    other callable objects after their class.
    """
    owner = getattr(function, "__self__", None) if isinstance(function, types.MethodType) else None
    if owner is not None:
        owner_cls = owner if isinstance(owner, type) else type(owner)
        qualname = getattr(function, "__qualname__", None)
        if qualname is None:
            return f"{owner_cls.__module__}.{owner_cls.__name__}.{function.__name__}"
        return f"{owner_cls.__module__}.{qualname}"
    if isinstance(function, (types.FunctionType, types.MethodType)):
        qualname = getattr(function, "__qualname__", function.__name__)
        return f"{function.__module__}.{qualname}"
    cls = function if isinstance(function, type) else type(function)
    return f"{cls.__module__}.{getattr(cls, '__qualname__', cls.__name__)}"


def is_coroutine_function(target: object) -> bool:
    """Tell whether calling ``target`` makes a coroutine.

    True for an ``async def`` function or method, a :func:`functools.partial`
    of one, an object whose class's ``__call__`` is one, and a function-like
    object with an ``async def`` code object (an ``AsyncMock``): wherever
    :func:`inspect.iscoroutinefunction` says so, and for ``async def __call__``. Read from the code
    flags, as :func:`inspect.iscoroutinefunction` does, without importing
    :mod:`inspect` (see :func:`_from_code`).
    """
    while isinstance(target, functools.partial):
        target = target.func
    if isinstance(target, types.MethodType):
        target = target.__func__
    # A function's code, or a function-like object's (an AsyncMock), as inspect reads it.
    code = getattr(target, "__code__", None)
    if not isinstance(code, types.CodeType):
        # Read for its code's flags, not to test whether target is callable.
        code = getattr(getattr(type(target), "__call__", None), "__code__", None)  # noqa: B004
        if not isinstance(code, types.CodeType):
            return False
    return bool(code.co_flags & _CO_COROUTINE)


@functools.lru_cache(maxsize=4096)
def _inspect(target: Callable[..., Any], drop_first: bool) -> CallableArgs:
    if (
        type(target) is types.FunctionType
        and not hasattr(target, "__wrapped__")
        and not hasattr(target, "__signature__")
    ):
        return _from_code(target, drop_first)
    return _from_signature(target, drop_first)


def _from_code(function: types.FunctionType, drop_first: bool) -> CallableArgs:
    """Read a plain function's arguments from its code object.

    What :func:`inspect.signature` would say, without importing :mod:`inspect`
    (with :mod:`ast` and :mod:`dis`, a few milliseconds every process would pay
    for its first task). Decorated functions (``__wrapped__``) and functions with
    a ``__signature__`` go through :func:`_from_signature`.
    """
    code = function.__code__
    positional = code.co_varnames[: code.co_argcount]
    keyword_only = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    posonly_count = code.co_posonlyargcount
    defaulted = len(function.__defaults__ or ())
    first_default = len(positional) - defaulted
    if drop_first and positional:
        positional = positional[1:]
        posonly_count = max(posonly_count - 1, 0)
        first_default -= 1
    kw_defaults = function.__kwdefaults__ or {}
    required = positional[: max(first_default, 0)] + tuple(n for n in keyword_only if n not in kw_defaults)
    var_keyword = None
    if code.co_flags & _CO_VARKEYWORDS:
        # Local names start with the parameters: the named ones, ``*args``, ``**kwargs``.
        after_named = code.co_argcount + code.co_kwonlyargcount
        var_keyword = code.co_varnames[after_named + bool(code.co_flags & _CO_VARARGS)]
    return CallableArgs(
        required=required,
        all=positional + keyword_only,
        accepts_kwargs=var_keyword is not None,
        positional_only=positional[:posonly_count],
        var_keyword=var_keyword,
    )


def _from_signature(target: Callable[..., Any], drop_first: bool) -> CallableArgs:
    """Read any callable's arguments with :func:`inspect.signature`."""
    import inspect

    kinds = inspect.Parameter
    params = list(inspect.signature(target).parameters.values())
    if drop_first and params and params[0].kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD):
        params = params[1:]
    named = [
        p
        for p in params
        if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
    ]
    var_keyword = next((p.name for p in params if p.kind is kinds.VAR_KEYWORD), None)
    return CallableArgs(
        required=tuple(p.name for p in named if p.default is kinds.empty),
        all=tuple(p.name for p in named),
        accepts_kwargs=var_keyword is not None,
        positional_only=tuple(p.name for p in named if p.kind is kinds.POSITIONAL_ONLY),
        var_keyword=var_keyword,
    )


def signature_key(function: Callable[..., Any]) -> tuple[Callable[..., Any], bool]:
    """Return ``(target, drop_first)``: what identifies ``function``'s signature.

    A bound method is keyed by its underlying function (shared by every
    instance) with ``drop_first`` set, since its ``self``/``cls`` is supplied.
    """
    func = getattr(function, "__func__", None)
    if func is not None and getattr(function, "__self__", None) is not None:
        return func, True
    return function, False


def inspect_key(target: Callable[..., Any], drop_first: bool) -> CallableArgs:
    """Return the named arguments for a :func:`signature_key` pair (cached when hashable)."""
    try:
        return _inspect(target, drop_first)
    except TypeError:
        # An unhashable callable object cannot be a cache key; inspect it uncached.
        if not callable(target):
            raise
        return _inspect.__wrapped__(target, drop_first)


def inspect_callable(function: Callable[..., Any]) -> CallableArgs:
    """Return the named arguments of ``function``, computed once per function.

    For a bound method the ``self`` (or ``cls``) argument is not counted, and the
    answer is shared by every instance of the class.

    Raises:
        ValueError: when Python cannot read the callable's signature.
        TypeError: when ``function`` is not callable.
    """
    return inspect_key(*signature_key(function))


def get_callable_args(function: Callable[..., Any], required_only: bool = False) -> list[str]:
    """Return the names of ``function``'s named arguments (no ``*args``/``**kwargs``).

    Args:
        function: the callable to read.
        required_only: leave out arguments that have a default value.
    """
    spec = inspect_callable(function)
    return list(spec.required if required_only else spec.all)


def accepts_kwargs(function: Callable[..., Any]) -> bool:
    """Return whether ``function`` takes ``**kwargs``."""
    return inspect_callable(function).accepts_kwargs


#: What :func:`plain_type` answers for an annotation it leaves to :func:`typing.get_type_hints`.
NOT_PLAIN: Final = object()


def plain_type(function: Callable[..., Any], annotation: Any) -> Any:
    """The class that ``annotation`` (one of ``function``'s) names, if it is a plain one.

    Under ``from __future__ import annotations`` each annotation is a string, and
    :func:`typing.get_type_hints` runs :func:`compile` on every one; the first
    ``compile()`` of a process also builds the interpreter's AST classes (about
    1 ms of a first run). A plain name (``"int"``, ``"Order"``) is looked up as
    ``eval`` would, in the globals of the function (unwrapped, as
    ``get_type_hints`` reads them) and then the builtins, with ``None`` standing
    for its class. Anything else (a generic, a union, a dotted name, a name that
    is not a class, or not found) is :data:`NOT_PLAIN`: only ``get_type_hints``
    can say what it means. One reading for :mod:`flowkit.typed` and for the
    engine's decision whether to import it.
    """
    holder: Any = function
    while hasattr(holder, "__wrapped__"):
        holder = holder.__wrapped__
    found = annotation
    if isinstance(annotation, str):
        names = getattr(holder, "__globals__", None)
        if names is None or not annotation.isidentifier():
            return NOT_PLAIN
        found = names.get(annotation, NOT_PLAIN)
        if found is NOT_PLAIN:
            found = getattr(builtins, annotation, None)
    if found is None and annotation in (None, "None"):
        return type(None)
    if not isinstance(found, type) or typing.get_args(found):
        return NOT_PLAIN
    return found
