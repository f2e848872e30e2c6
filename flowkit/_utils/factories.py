"""Which recorded flow factories a process may import and call.

A flow detail names the factory that builds its flow, with its arguments, and
whoever can write the backend can write that name: a conductor (``factories=``,
``--allow-factory``) and the monitor call only the factories listed. The check
is on the name, before anything is imported: importing a module runs its code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["FactoryNames"]


class FactoryNames:
    """Dotted factory names (``"pkg.flows.make_order"``) and module prefixes ending in a dot.

    ``"pkg.flows."`` allows every factory of that module and of the modules under it.

    Raises:
        TypeError: ``names`` is a single string (its letters would each be a
            name) or holds something else than non-empty strings.
    """

    def __init__(self, names: Iterable[str]) -> None:
        if isinstance(names, str):
            raise TypeError(f"factories must be a list of names, not the string {names!r}")
        listed = list(names)
        bad = [name for name in listed if not isinstance(name, str) or not name]
        if bad:
            raise TypeError(f"factories must hold non-empty strings, not {bad!r}")
        self._exact = frozenset(n for n in listed if not n.endswith("."))
        self._prefixes = tuple(n for n in listed if n.endswith("."))

    def allows(self, name: str) -> bool:
        """Whether the factory called ``name`` is listed, by itself or by a prefix of its module."""
        return name in self._exact or name.startswith(self._prefixes)

    def listed(self) -> list[str]:
        """The names and prefixes, sorted: what an error says was allowed."""
        return sorted([*self._exact, *self._prefixes])

    def disallowed_target(self, name: str, importer: Callable[[str], Any]) -> str | None:
        """Where an allowed ``name`` leads, when that is not allowed itself; else None.

        Imports ``name`` with ``importer`` (call it once :meth:`allows` said
        yes: only an allowed module is imported) and names the object it
        reaches by its defining module and qualified name. An allowed module
        does not lend what it imports: ``pkg.flows.os.system`` passes the
        prefix ``pkg.flows.`` but is ``posix.system``. A recorded factory's
        name is its defining name, so legitimate ones pass. None also when
        ``name`` cannot be imported (the caller's load says so).
        """
        try:
            target = importer(name)
        except ImportError:
            return None
        real = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"
        return None if self.allows(real) else real
