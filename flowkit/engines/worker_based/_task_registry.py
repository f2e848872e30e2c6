"""Which task classes a worker offers, from classes or ``"module[:Name,...]"`` strings.

The command line names tasks by module (``--tasks myservice.tasks``), so a
string names either every concrete task class *defined* in a module (classes
it merely imports are left to their own module) or the listed ones. Each class
is offered under :func:`protocol.task_name
<flowkit.engines.worker_based.protocol.task_name>`, the name engines send.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from typing import Any

from flowkit import exceptions as exc
from flowkit import task as task_module
from flowkit.engines.worker_based import protocol

__all__ = ["TaskClass", "load_tasks"]

TaskClass = type[task_module.BaseTask]


def load_tasks(specs: Iterable[type | str]) -> dict[str, TaskClass]:
    """Resolve task classes and module specs into a name -> class registry.

    Args:
        specs: task classes, ``"pkg.mod"`` (every concrete task class defined in
            that module) or ``"pkg.mod:Name,Other"``.

    Returns:
        Classes by the name requests use for them (see :func:`protocol.task_name`).

    Raises:
        NotFound: a module cannot be imported, a name is not in its module, or
            a module defines no task.
        TypeError: a class or name is not a task class.
        Duplicate: two different classes share one task name.
    """
    if isinstance(specs, str | type):
        specs = [specs]
    registry: dict[str, TaskClass] = {}
    for spec in specs:
        for cls in _resolve(spec):
            name = protocol.task_name(cls)
            known = registry.setdefault(name, cls)
            if known is not cls:
                raise exc.Duplicate(
                    f"two task classes are named {name!r}: {known!r} and {cls!r}", names=[name]
                )
    return registry


def _path_hint(module_name: str) -> str:
    """For a script's relative path given as the module (``--tasks app/tasks.py``), the module meant.

    Python's "No module named 'app/tasks'" does not say that a dotted module
    name was wanted; this names it.
    """
    if not (module_name.endswith(".py") or "/" in module_name) or module_name.startswith(("/", "..")):
        return ""
    stem = module_name[: -len(".py")] if module_name.endswith(".py") else module_name
    dotted = ".".join(part for part in stem.split("/") if part not in ("", "."))
    return f" (a file path, not a module: give its dotted name, {dotted!r})" if dotted else ""


def _resolve(spec: type | str) -> list[TaskClass]:
    if isinstance(spec, type):
        return [_task_class(spec, repr(spec))]
    if not isinstance(spec, str) or not spec.strip():
        raise TypeError(f"tasks must be task classes or 'module[:Name,...]' strings, not {spec!r}")
    module_name, _, names = spec.strip().partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise exc.quoting_cause(
            exc.NotFound(f"cannot import task module {module_name!r}: {err}{_path_hint(module_name)}")
        ) from err
    if names:
        found = []
        for name in (part.strip() for part in names.split(",")):
            value: Any = module
            for attr in name.split("."):
                value = getattr(value, attr, None)
            if value is None or not name:
                raise exc.NotFound(f"task module {module_name!r} has no {name!r}")
            found.append(_task_class(value, f"{module_name}:{name}"))
        return found
    defined = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, task_module.BaseTask)
        and value.__module__ == module.__name__
        and not inspect.isabstract(value)
    ]
    if not defined:
        raise exc.NotFound(f"task module {module_name!r} defines no task classes")
    return defined


def _task_class(value: object, where: str) -> TaskClass:
    if not isinstance(value, type) or not issubclass(value, task_module.BaseTask):
        raise TypeError(f"{where} is not a flowkit task class")
    if inspect.isabstract(value):
        raise TypeError(f"{where} is abstract (it does not define execute)")
    return value
