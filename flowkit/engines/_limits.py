"""Concurrency limits: at most ``n`` calls of atoms sharing a ``concurrency_key`` at once.

The runtime consults a :class:`Limiter` for every item the scheduler hands out,
before the atom is begun: an item whose key has a free slot takes it and is
dispatched; one whose key is full is *parked* (the scheduler takes it back, still
PENDING) until a slot frees. A slot frees when the engine accounts for the call's
outcome, the first thing it does with it: so a task that spawns more work gives its
slot back before that work can be dispatched, and a limit of 1 cannot deadlock on a
parent waiting for its children.

Parked items are not trusted when they come back: they are offered to the
scheduler again, which hands them out only if they are still ready (a failure may
have put them in a revert set since, or a retry reset them).

Everything here runs in the engine thread, so there is no lock. Limits count
execute and revert calls alike: both reach the resource the key stands for.

A wait is recorded where the slot is handed out (:class:`SlotWait`, in
:attr:`Limiter.waited`): the engine's notice of the call's start carries it,
so the causal event log says the atom started late because of the limit, and
whose call gave the slot back, rather than "when its inputs were ready". It
costs the keyed atoms a lookup; a run without limits has no limiter at all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

from flowkit._utils.records import Record
from flowkit.engines._compiler import Node

if TYPE_CHECKING:
    from flowkit.engines._scheduler import Scheduler

__all__ = ["SLOT_WAIT_KEY", "Limiter", "SlotWait"]

#: The key of a start notice's details that carries its :class:`SlotWait`.
SLOT_WAIT_KEY = "slot_wait"


class SlotWait(Record):
    """An atom's call started only once a slot of its concurrency key freed.

    ``held_by`` is the atom whose call ended last before this one got its
    slot: with a limit of 1, the one that held it; None when no call of the
    key ended in this run (the slot was taken when the run began).
    """

    key: str
    limit: int
    held_by: str | None


class Limiter:
    """Free slots and parked items per key, for one run.

    Args:
        limits: key -> most calls at once.
        keys: node index -> its key, for the atoms that have one.
    """

    def __init__(self, limits: Mapping[str, int], keys: Mapping[int, str]) -> None:
        self._free = dict(limits)
        self._keys = keys
        self._parked: dict[str, deque[tuple[Node, int]]] = {key: deque() for key in limits}
        self._holding: set[int] = set()
        #: node index -> its key, for the items parked now or since their last start.
        self._waiting: dict[int, str] = {}
        #: key -> the atom whose call of that key ended last.
        self._freed_by: dict[str, str] = {}
        #: node index -> the wait behind its call that started last, until its start is told.
        self.waited: dict[int, SlotWait] = {}
        #: key -> most calls seen holding a slot at once (for tests and statistics).
        self.peak: dict[str, int] = dict.fromkeys(limits, 0)
        self._limits = dict(limits)

    def next_item(self, scheduler: Scheduler) -> tuple[Node, int] | None:
        """``scheduler``'s next item that may run now under the limits (the runtime's ``next_item``).

        An item whose key is full goes back to the scheduler (still PENDING) and
        waits here; once slots free, waiting items are offered to the scheduler
        again, which hands them out only if they are still ready.
        """
        while True:
            item = scheduler.next_item()
            if item is None:
                back = self.reoffer()
                if not back:
                    return None
                for node, action in back:
                    scheduler.offer(node, action)
                continue
            if self.admit(*item):
                return item
            scheduler.give_back(item[0])

    def has_ready(self, scheduler: Scheduler) -> bool:
        """Whether :meth:`next_item` would still hand something out (the runtime's ``has_ready``)."""
        return scheduler.has_ready() or self.has_reoffer()

    def admit(self, node: Node, action: int) -> bool:
        """Take a slot for ``node`` if it needs one; False parks it (the caller gives it back)."""
        key = self._keys.get(node.index)
        if key is None:
            return True
        free = self._free[key]
        index = node.index
        if free > 0:
            self._free[key] = free - 1
            self._holding.add(index)
            self.peak[key] = max(self.peak[key], self._limits[key] - free + 1)
            if self._waiting and self._waiting.pop(index, None) is not None:
                self.waited[index] = SlotWait(key, self._limits[key], self._freed_by.get(key))
            elif self.waited:
                # An earlier wait no start notice told (nobody listened then): not this start's.
                self.waited.pop(index, None)
            return True
        self._parked[key].append((node, action))
        self._waiting[index] = key
        return False

    def release(self, node: Node) -> None:
        """``node``'s call is over: free its slot (a no-op for a node that holds none)."""
        index = node.index
        if index in self._holding:
            self._holding.discard(index)
            key = self._keys[index]
            self._free[key] += 1
            self._freed_by[key] = node.name

    def annotate(self, index: int, details: dict[str, object]) -> None:
        """Add the wait behind node ``index``'s start, if any, to its start notice's details."""
        wait = self.waited.pop(index, None)
        if wait is not None:
            details[SLOT_WAIT_KEY] = wait

    def reoffer(self) -> list[tuple[Node, int]]:
        """Take back as many parked items as there are free slots for their keys."""
        out: list[tuple[Node, int]] = []
        for key, parked in self._parked.items():
            count = self._free[key]
            while count > 0 and parked:
                out.append(parked.popleft())
                count -= 1
        return out

    def has_reoffer(self) -> bool:
        """Whether :meth:`reoffer` would return something."""
        return any(parked and self._free[key] > 0 for key, parked in self._parked.items())
