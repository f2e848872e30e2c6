"""Names a spec's ``task:`` can use: registered ones, or import paths ``module:Name``."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar, overload

from flowkit import exceptions as exc
from flowkit._utils.factories import FactoryNames

__all__ = ["TaskNotAllowed", "UnknownTask", "register", "registered", "resolve_task", "unregister"]

_T = TypeVar("_T", bound=Callable[..., Any])
_REGISTRY: dict[str, Callable[..., Any]] = {}
_LOCK = threading.Lock()


@overload
def register(name: str, target: None = None) -> Callable[[_T], _T]: ...


@overload
def register(name: str, target: _T) -> _T: ...


# Overloaded so that a type checker keeps the registered class or function's own
# type (``@register("fetch")`` is not an untyped decorator under ``mypy --strict``).
def register(name: str, target: _T | None = None) -> _T | Callable[[_T], _T]:
    """Make ``target`` (a task class or a function) usable as ``task: <name>`` in specs.

    Usable as a decorator: ``@declarative.register("fetch")``.

    Args:
        name: the name specs use.
        target: a :class:`~flowkit.task.Task` subclass or a plain function (run as
            a :class:`~flowkit.task.FunctorTask`).

    Returns:
        ``target`` (or, without it, a decorator that registers and returns its argument).

    Raises:
        Duplicate: ``name`` is already registered to something else.
        TypeError: ``target`` is not callable or ``name`` is not a non-empty str.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"a registered task name must be a non-empty str, not {name!r}")
    if target is None:

        def decorator(found: _T) -> _T:
            register(name, found)
            return found

        return decorator
    if not callable(target):
        raise TypeError(f"register({name!r}, ...) needs a task class or a function, not {target!r}")
    with _LOCK:
        current = _REGISTRY.get(name)
        if current is not None and current is not target:
            raise exc.Duplicate(f"task name {name!r} is already registered to {current!r}", names=[name])
        _REGISTRY[name] = target
    return target


def unregister(name: str) -> None:
    """Forget a registered name (unknown names are ignored)."""
    with _LOCK:
        _REGISTRY.pop(name, None)


def registered() -> dict[str, Callable[..., Any]]:
    """A copy of the registered names and what they stand for."""
    with _LOCK:
        return dict(_REGISTRY)


class UnknownTask(LookupError):
    """A ``task:`` value that is neither registered nor importable; says why."""


class TaskNotAllowed(LookupError):
    """An import path that the caller's allow-list does not hold; says what it holds."""


def resolve_task(path: str, allowed: FactoryNames | None = None) -> Callable[..., Any]:
    """What ``task: <path>`` means: a registered name, ``module:Name`` or ``module.Name``.

    Args:
        path: the spec's ``task:`` value.
        allowed: when given, the only import paths that may be resolved (dotted
            names, or module prefixes ending in a dot); registered names are
            always allowed. Checked before anything is imported, since importing
            a module runs its code, and again on where the found object was
            defined (its module and qualified name), so an allowed module does
            not lend what it imports.

    Raises:
        UnknownTask: nothing by that name; the message says what was tried.
        TaskNotAllowed: ``path`` is an import path ``allowed`` does not hold.
    """
    with _LOCK:
        found = _REGISTRY.get(path)
    if found is not None:
        return found
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
    elif "." in path:
        module_name, _, attr_path = path.rpartition(".")
    else:
        known = ", ".join(sorted(registered())) or "none"
        raise UnknownTask(f"no task is registered as {path!r} (registered: {known}); or write module:Name")
    if not all(part.isidentifier() for part in (*module_name.split("."), *attr_path.split("."))):
        # importlib raised ValueError ("Empty module name") or TypeError (a relative
        # import) for these, which named no file, task or key.
        raise UnknownTask(f"{path!r} is not an import path: write module:Name (or module.Name)")
    if allowed is not None and not allowed.allows(f"{module_name}.{attr_path}"):
        raise TaskNotAllowed(
            f"{path!r} is not an allowed task: this spec may use registered tasks"
            f" ({', '.join(sorted(registered())) or 'none'}) and the import paths"
            f" {allowed.listed()}"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise UnknownTask(f"cannot import module {module_name!r} for task {path!r}: {err}") from err
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UnknownTask(f"module {module_name!r} has no {attr_path!r} (task {path!r})") from None
    if not callable(target):
        raise UnknownTask(f"{path!r} is {type(target).__name__}, not a task class or a function")
    if allowed is not None:
        # The name written was allowed; what it reaches must be too, or an allowed
        # module would lend everything it imports (`allowed.mod:os.system`).
        real = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"
        if not allowed.allows(real):
            raise TaskNotAllowed(
                f"{path!r} is {real}, which is not an allowed task (allowed: {allowed.listed()})"
            )
    return target  # type: ignore[no-any-return]
