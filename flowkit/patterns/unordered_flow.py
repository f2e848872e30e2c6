"""Unordered flow: items may run in any order, or all at the same time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self

from flowkit import flow
from flowkit.flow import FlowItem
from flowkit.retry import Retry

__all__ = ["Flow"]


class Flow(flow.Flow):
    """Run the items in no particular order (in parallel on a parallel engine).

    Items cannot use each other's results: what they require must come from
    outside the flow or from its retry. Adding an item that is already in the
    flow does nothing.

    Args:
        name: the flow's name.
        retry: an optional :class:`~flowkit.retry.Retry` for this flow.
    """

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        super().__init__(name, retry)
        # An insertion-ordered set (items carry no metadata of their own).
        self._items: dict[FlowItem, None] = {}

    def add(self, *items: FlowItem) -> Self:
        """Add items that may run in any order.

        Raises:
            flowkit.exceptions.InvalidFlowItem: an item is not an atom or flow
                (nothing is added then).
        """
        for item in items:
            self._check_item(item)
        for item in items:
            self._items.setdefault(item)
        return self

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[FlowItem]:
        return iter(self._items)

    def iter_nodes(self) -> Iterator[tuple[FlowItem, dict[str, Any]]]:
        for item in self._items:
            yield item, {}

    def iter_links(self) -> Iterator[tuple[FlowItem, FlowItem, dict[str, Any]]]:
        return iter(())

    @property
    def requires(self) -> frozenset[str]:
        needed: set[str] = set()
        from_retry: frozenset[str] = frozenset()
        if self._retry is not None:
            needed.update(self._retry.requires)
            from_retry = self._retry.provides
        for item in self._items:
            needed.update(item.requires.difference(from_retry))
        return frozenset(needed)
