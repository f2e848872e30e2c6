"""An n-ary tree of items (TaskFlow's ``types.tree``): build, search, print.

The failure formatter prints an atom's predecessors with it, and programs use it
for their own hierarchies. Iteration orders follow TaskFlow's, because callers
see them: direct children come in the order they were added; :meth:`Node.dfs_iter`
is a pre-order walk in added order; :meth:`Node.bfs_iter` visits each level
newest-first unless ``right_to_left=True``.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc

if TYPE_CHECKING:
    from flowkit.types.graph import OrderedDiGraph

__all__ = ["FrozenNode", "Node"]


class FrozenNode(exc.TaskFlowException):
    """A frozen node (or tree) was asked to change."""

    def __init__(self, message: str = "Frozen node(s) can't be modified") -> None:
        super().__init__(message)


class Node:
    """A node holding ``item``, keyword metadata, a parent and ordered children.

    Args:
        item: What the node stands for (compared with ``==`` by :meth:`find`).
        **kwargs: Metadata kept in :attr:`metadata`.
    """

    STARTING_PREFIX = ""
    EMPTY_SPACE_SEP = " "
    HORIZONTAL_CONN = "__"
    VERTICAL_CONN = "|"
    LINE_SEP = os.linesep

    def __init__(self, item: Any, **kwargs: Any) -> None:
        self.item = item
        self.parent: Node | None = None
        self.metadata: dict[str, Any] = dict(kwargs)
        self.frozen = False
        self._children: list[Node] = []

    def __repr__(self) -> str:
        return f"<Node {self.item!r} children={len(self._children)}>"

    def _check_not_frozen(self) -> None:
        if self.frozen:
            raise FrozenNode()

    def freeze(self) -> None:
        """Forbid changes to this node and everything below it."""
        for child in self._children:
            child.freeze()
        self.frozen = True

    def add(self, child: Node) -> None:
        """Append ``child`` to this node's children and make this node its parent."""
        self._check_not_frozen()
        child.parent = self
        self._children.append(child)

    def empty(self) -> bool:
        """Tell whether this node is a leaf."""
        return not self._children

    def path_iter(self, include_self: bool = True) -> Iterator[Node]:
        """Yield the nodes from this one (or its parent) up to the root."""
        node = self if include_self else self.parent
        while node is not None:
            yield node
            node = node.parent

    def find_first_match(
        self, matcher: Callable[[Node], bool], only_direct: bool = False, include_self: bool = True
    ) -> Node | None:
        """Return the first node ``matcher`` accepts, searching depth first, or None.

        Args:
            matcher: Called with each node; a truthy answer ends the search.
            only_direct: Look only at this node and its direct children (newest first).
            include_self: Whether this node itself may match.
        """
        candidates: Iterator[Node]
        if only_direct:
            own = [self] if include_self else []
            candidates = iter([*own, *self.reverse_iter()])
        else:
            candidates = self.dfs_iter(include_self=include_self)
        for node in candidates:
            if matcher(node):
                return node
        return None

    def find(self, item: Any, only_direct: bool = False, include_self: bool = True) -> Node | None:
        """Return the first node whose item equals ``item``, or None."""
        return self.find_first_match(lambda node: node.item == item, only_direct, include_self)

    def disassociate(self) -> int:
        """Detach this node from its parent; return how many times the parent held it."""
        self._check_not_frozen()
        parent, self.parent = self.parent, None
        if parent is None:
            return 0
        before = len(parent._children)
        parent._children = [child for child in parent._children if child is not self]
        return before - len(parent._children)

    def remove(self, item: Any, only_direct: bool = False, include_self: bool = True) -> Node:
        """Detach and return the first node holding ``item``.

        Raises:
            ValueError: No node holds ``item``.
        """
        self._check_not_frozen()
        node = self.find(item, only_direct=only_direct, include_self=include_self)
        if node is None:
            raise ValueError(f"Item '{item}' not found to remove")
        node.disassociate()
        return node

    def __contains__(self, item: Any) -> bool:
        return self.find(item) is not None

    def __getitem__(self, index: int) -> Node:
        return self._children[index]

    def __iter__(self) -> Iterator[Node]:
        """Iterate over the direct children, in the order they were added."""
        return iter(self._children)

    def reverse_iter(self) -> Iterator[Node]:
        """Iterate over the direct children, newest first."""
        return reversed(self._children)

    def index(self, item: Any) -> int:
        """Return the position of the direct child holding ``item``.

        Raises:
            ValueError: No direct child holds ``item``.
        """
        for position, child in enumerate(self._children):
            if child.item == item:
                return position
        raise ValueError(f"{item} is not contained in any child")

    def child_count(self, only_direct: bool = True) -> int:
        """Count the direct children, or with ``only_direct=False`` every descendant."""
        if only_direct:
            return len(self._children)
        return sum(1 for _ in self.dfs_iter())

    def dfs_iter(self, include_self: bool = False, right_to_left: bool = True) -> Iterator[Node]:
        """Walk depth first (pre-order); ``right_to_left=False`` takes newest children first."""
        stack: list[Node] = [self] if include_self else self._pushed(self, right_to_left)
        while stack:
            node = stack.pop()
            yield node
            stack.extend(self._pushed(node, right_to_left))

    @staticmethod
    def _pushed(node: Node, right_to_left: bool) -> list[Node]:
        # A stack pops last-in first: push in reverse to visit in added order.
        return list(node.reverse_iter()) if right_to_left else list(node)

    def bfs_iter(self, include_self: bool = False, right_to_left: bool = False) -> Iterator[Node]:
        """Walk breadth first; each level newest first, or in added order if ``right_to_left``."""

        def children(node: Node) -> Iterator[Node]:
            return iter(node) if right_to_left else node.reverse_iter()

        queue: collections.deque[Node] = collections.deque([self] if include_self else children(self))
        while queue:
            node = queue.popleft()
            yield node
            queue.extend(children(node))

    def pformat(
        self,
        stringify_node: Callable[[Node], str] | None = None,
        linesep: str = LINE_SEP,
        vertical_conn: str = VERTICAL_CONN,
        horizontal_conn: str = HORIZONTAL_CONN,
        empty_space: str = EMPTY_SPACE_SEP,
        starting_prefix: str = STARTING_PREFIX,
    ) -> str:
        """Draw this node and its descendants, one per line::

            CEO
            |__Infra
            |  |__Boss
            |__Mobile

        Args:
            stringify_node: Turns a node into its label (``str(node.item)`` by default).
            linesep: Put between lines (none after the last).
            vertical_conn: Continues a parent's line past a child that has later siblings.
            horizontal_conn: Joins a child to that line.
            empty_space: Pads where no line continues.
            starting_prefix: Starts every line.
        """
        label = stringify_node if stringify_node is not None else (lambda node: str(node.item))
        pad = empty_space * len(vertical_conn + horizontal_conn)
        through = vertical_conn + empty_space * len(horizontal_conn)
        lines = [starting_prefix + label(self)]

        def draw(node: Node, indent: str) -> None:
            last = len(node._children) - 1
            for position, child in enumerate(node._children):
                lines.append(starting_prefix + indent + vertical_conn + horizontal_conn + label(child))
                draw(child, indent + (pad if position == last else through))

        draw(self, "")
        return linesep.join(lines)

    def to_digraph(self) -> OrderedDiGraph:
        """Return this tree as a directed graph, parent to child, node metadata kept."""
        from flowkit.types import graph

        digraph = graph.OrderedDiGraph()
        for node in self.bfs_iter(include_self=True, right_to_left=True):
            digraph.add_node(node.item, **node.metadata)
            if node is not self and node.parent is not None:
                digraph.add_edge(node.parent.item, node.item)
        return digraph
