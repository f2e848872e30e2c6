"""Module loggers that import :mod:`logging` when they first log, not at import.

Importing :mod:`logging` costs a short-lived process milliseconds (it brings
``traceback``, ``linecache``, ``tokenize``, ``string`` and ``threading`` with it),
while the modules a first flow run imports log only on rare paths: a clamped
progress value, an ignored engine option, a cache that cannot be written. So
those modules hold a :func:`module_logger` instead of ``logging.getLogger(__name__)``;
it behaves as the named logger (``caplog``, handlers and levels set on that
name apply) and costs nothing until it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import logging

__all__ = ["module_logger"]


class _LoggerOnFirstUse:
    """Stands for ``logging.getLogger(name)``, fetched on the first attribute access.

    Setting or deleting an attribute goes to the logger too, so that
    ``mock.patch.object(module.LOG, "warning")`` (TaskFlow's tests do this) patches
    the logger the module logs through.
    """

    __slots__ = ("_logger", "_name")
    _logger: logging.Logger | None
    _name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_logger", None)

    def _get(self) -> logging.Logger:
        logger = self._logger
        if logger is None:
            import logging

            logger = logging.getLogger(self._name)
            object.__setattr__(self, "_logger", logger)
        return logger

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._get(), attribute)

    def __setattr__(self, attribute: str, value: Any) -> None:
        setattr(self._get(), attribute, value)

    def __delattr__(self, attribute: str) -> None:
        delattr(self._get(), attribute)

    def __repr__(self) -> str:
        return f"<logger {self._name!r}, fetched on first use>"


def module_logger(name: str) -> logging.Logger:
    """The logger called ``name``, for a module to hold at module level.

    Typed as a :class:`logging.Logger` because it is used as one: every attribute
    is the real logger's (``logging`` is imported at the first access).
    """
    return cast("logging.Logger", _LoggerOnFirstUse(name))
