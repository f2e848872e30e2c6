"""Loop flow: run a body again and again until a predicate holds, a bounded number of times.

::

    poll = loop_flow.Flow("wait-ready", CheckStatus(), until=lambda status: status == "ready",
                          max_iterations=30, delay=2.0)

The body's atoms run one after another, as in a linear flow. Then ``until`` is
called; its parameters name symbols, as a task's ``execute`` parameters do
(here ``status``, which ``CheckStatus`` provides). When it returns something
true the loop is done and what the body provided last is what later atoms
see. Otherwise the body runs again after ``delay`` seconds (other branches of
the flow go on meanwhile), at most ``max_iterations`` times in all; then the
loop fails with :class:`~flowkit.exceptions.LoopExhausted` and the flow
reverts. A revert undoes each body atom once, with its last result.

``until`` runs in a hidden task named ``<loop name>^until``, placed after the
body; it has a record of its own like any atom. Each atom's record carries its
iteration number (``meta["iteration"]``, from 1) and the results of its earlier
iterations (``meta["iterations"]``); notifications about body atoms carry
``iteration`` too. A resumed run carries on with the iteration it was in (a
delay it was waiting out is not waited again).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

from flowkit import _steering, flow, task
from flowkit._utils import reflection
from flowkit.flow import FlowItem
from flowkit.patterns import linear_flow
from flowkit.retry import Retry

__all__ = ["Flow", "LoopVerdict"]


#: The hidden until task's revert arguments: none.
_NO_ARGUMENTS: MappingProxyType[str, str] = MappingProxyType({})


class LoopVerdict:
    """What the hidden ``until`` task returns: whether the loop is done, and the predicate's value."""

    __slots__ = ("done", "value")

    def __init__(self, done: bool, value: Any) -> None:
        self.done = done
        self.value = value

    def __repr__(self) -> str:
        return f"<LoopVerdict done={self.done}>"


class Until(task.Task):
    """The hidden last task of a loop's body: asks ``until`` whether to stop."""

    def __init__(self, name: str, until: Callable[..., Any], requires: list[str], loop: str) -> None:
        super().__init__(name=name, requires=requires, auto_extract=False)
        # Its revert (the default, which does nothing) reads no symbol. It would read
        # ``requires`` (TaskFlow's ``revert_requires`` falls back to them, an empty one
        # too), and so could not revert an until that failed for lack of them (its
        # provider skipped by a decider): the loop was left half reverted.
        self.revert_rebind = _NO_ARGUMENTS
        self.revert_optional = frozenset()
        self._until = until
        #: The loop's name, for errors (the hidden task's own is not one the user gave).
        self._loop = loop

    def execute(self, **kwargs: Any) -> LoopVerdict:
        value = self._until(**kwargs)
        try:
            done = bool(value)
        except (ValueError, TypeError) as err:  # numpy's arrays, for one, refuse
            from flowkit._utils.reprs import short_repr

            kind = ValueError if isinstance(err, ValueError) else TypeError
            raise kind(
                f"loop '{self._loop}': until returned {type(value).__name__} {short_repr(value)}, which is "
                f"neither true nor false (bool() raised {type(err).__name__}: {err}); return a bool"
            ) from err
        return LoopVerdict(done, value)


class Flow(linear_flow.Flow):
    """Repeat the body (``atoms``, in order) until ``until`` holds, at most ``max_iterations`` times.

    Args:
        name: the loop's name.
        atoms: the body, run in order (more can be added with :meth:`add`).
        until: the predicate; its parameters name symbols the body (or
            anything before the loop) provides.
        max_iterations: how many times the body may run (at least 1).
        delay: seconds to wait before each repeat (0: none).
        retry: an optional :class:`~flowkit.retry.Retry` for the loop.

    Raises:
        ValueError: ``max_iterations`` is not a positive int, ``delay`` is
            negative or not a number.
        TypeError: ``until`` is not callable.
        ValueError: ``until``'s parameters cannot be read (a builtin without
            a signature).
    """

    def __init__(
        self,
        name: str,
        *atoms: FlowItem,
        until: Callable[..., Any],
        max_iterations: int,
        delay: float = 0.0,
        retry: Retry | None = None,
    ) -> None:
        if not callable(until):
            raise TypeError(f"loop '{name}': until must be callable, not {until!r}")
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
            raise ValueError(
                f"loop '{name}': max_iterations must be a positive int (the body runs at least once), "
                f"not {max_iterations!r}"
            )
        if (
            isinstance(delay, bool)
            or not isinstance(delay, (int, float))
            or not math.isfinite(delay)
            or delay < 0
        ):
            raise ValueError(f"loop '{name}': delay must be a number of seconds >= 0, not {delay!r}")
        super().__init__(name, retry)
        self.until = until
        self.max_iterations = max_iterations
        self.delay = float(delay)
        try:
            # Its parameters name the symbols it reads: a callable without a signature has none to read.
            requires = reflection.get_callable_args(until, True)
        except (ValueError, TypeError) as err:
            raise type(err)(
                f"loop '{name}': cannot read the parameters of until {until!r} (they name the symbols "
                f"it reads; wrap it in a function or lambda): {err}"
            ) from err
        self._until_task = Until(f"{self.name}^until", until, requires, loop=self.name)
        if atoms:
            self.add(*atoms)

    @property
    def until_task(self) -> Until:
        """The hidden task that evaluates ``until`` (always the body's last item)."""
        return self._until_task

    def __len__(self) -> int:
        return len(self._items) + 1

    def __iter__(self) -> Iterator[FlowItem]:
        return itertools.chain(self._items, (self._until_task,))

    def iter_nodes(self) -> Iterator[tuple[FlowItem, dict[str, Any]]]:
        for item in self:
            yield item, {}

    def iter_links(self) -> Iterator[tuple[FlowItem, FlowItem, dict[str, Any]]]:
        for before, after in itertools.pairwise(self):
            yield before, after, {flow.LINK_INVARIANT: True}

    @property
    def requires(self) -> frozenset[str]:
        needed: set[str] = set()
        available: set[str] = set()
        if self._retry is not None:
            needed.update(self._retry.requires)
            available.update(self._retry.provides)
        for item in self:
            needed.update(item.requires.difference(available))
            available.update(item.provides)
        return frozenset(needed)


_steering.STEERING[LoopVerdict] = _steering.Steer.LOOP
_steering.LOOPS.add(Flow)

flow._TRACKED.add(Flow)
