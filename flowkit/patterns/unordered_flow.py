"""Unordered flow: items may run in any order, or all at the same time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self

from flowkit import flow
from flowkit.flow import FlowItem
from flowkit.retry import Retry

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

    # Defined here, not only on the shared base, so that what users see (a
    # TypeError for a misused call, help(), a type checker's "add" of "Flow")
    # names this public class rather than flowkit.flow's private _OrderedItems.
    def __init__(self, name: str, retry: Retry | None = None) -> None:
        super().__init__(name, retry)

    def add(self, *items: FlowItem) -> Self:
        """Add items (all are checked first: on an error nothing is added).

        Raises:
            flowkit.exceptions.InvalidFlowItem: an item is not an atom or flow.
        """
        return super().add(*items)

    def iter_nodes(self) -> Iterator[tuple[FlowItem, dict[str, Any]]]:
        return super().iter_nodes()

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
