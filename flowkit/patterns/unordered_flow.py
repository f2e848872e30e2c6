"""Unordered flow: items may run in any order, or all at the same time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flowkit import flow
from flowkit.flow import FlowItem

__all__ = ["Flow"]


class Flow(flow._OrderedItems):
    """Run the items in no particular order (in parallel on a parallel engine).

    Items cannot use each other's results: what they require must come from
    outside the flow or from its retry. Adding an item that is already in the
    flow does nothing.

    Args:
        name: the flow's name.
        retry: an optional :class:`~flowkit.retry.Retry` for this flow.
    """

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


flow._TRACKED.add(Flow)
