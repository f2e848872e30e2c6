"""A read-only, hashable set that keeps insertion order (TaskFlow's ``types.sets``).

Use :class:`OrderedSet` wherever a ``frozenset`` would do but the order items were
given in matters (for example, to report requirements in the order they appear in
a signature).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Iterator, Set
from typing import Any

__all__ = ["OrderedSet"]


class OrderedSet(Set[Any], Hashable):
    """A ``frozenset`` that iterates in the order its items were first given."""

    __slots__ = ("_data",)

    def __init__(self, iterable: Iterable[Any] | None = None) -> None:
        self._data: dict[Any, None] = dict.fromkeys(iterable) if iterable is not None else {}

    def __hash__(self) -> int:
        return self._hash()

    def __contains__(self, value: object) -> bool:
        return value in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(self._data)

    def __setstate__(self, items: tuple[Any, ...]) -> None:
        self._data = dict.fromkeys(items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._data)})"

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> OrderedSet:
        return cls(it)

    def copy(self) -> OrderedSet:
        """Return a shallow copy."""
        return self._from_iterable(self)

    def intersection(self, *sets: Iterable[Any]) -> OrderedSet:
        """Return the items found in this set and in every one of ``sets``, in this set's order."""
        others = [s if isinstance(s, Set) else set(s) for s in sets]
        return self._from_iterable(v for v in self if all(v in s for s in others))

    def issuperset(self, other: Iterable[Any]) -> bool:
        """Tell whether every item of ``other`` is in this set."""
        return all(value in self for value in other)

    def issubset(self, other: Iterable[Any]) -> bool:
        """Tell whether every item of this set is in ``other``."""
        container = other if isinstance(other, Set) else set(other)
        return all(value in container for value in self)

    def difference(self, *sets: Iterable[Any]) -> OrderedSet:
        """Return the items of this set found in none of ``sets``, in this set's order."""
        others = [s if isinstance(s, Set) else set(s) for s in sets]
        return self._from_iterable(v for v in self if not any(v in s for s in others))

    def union(self, *sets: Iterable[Any]) -> OrderedSet:
        """Return this set's items followed by the new items of ``sets``, in order."""
        return self._from_iterable(itertools.chain(self, *sets))
