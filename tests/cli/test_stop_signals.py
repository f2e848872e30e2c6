"""The stop signals of ``flowkit worker``, ``conductor`` and ``monitor``: one at a time, oldest first.

Python runs a handler between any two bytecodes of the main thread, another
handler's included. These tests call the handler from inside its own actions,
as such a signal would, to force the interleavings a real pair of signals
gives only now and then (a monitor test saw "received again" logged above
"received" under load).
"""

from __future__ import annotations

import signal

import pytest

from flowkit.cli._signals import StopSignals


class _Stop(Exception):
    pass


def _recording(said: list[str]) -> StopSignals:
    return StopSignals(lambda name: said.append(f"{name} graceful"), lambda name: said.append(f"{name} now"))


def test_the_first_signal_is_acted_on_gracefully_and_each_later_one_now() -> None:
    said: list[str] = []
    handler = _recording(said)
    handler(signal.SIGTERM, None)
    handler(signal.SIGINT, None)
    handler(signal.SIGTERM, None)
    assert said == ["SIGTERM graceful", "SIGINT now", "SIGTERM now"]
    assert handler.count == 3


def test_a_signal_arriving_during_the_first_action_is_acted_on_after_it() -> None:
    said: list[str] = []

    def first(name: str) -> None:
        said.append(f"{name} graceful: start")
        handler(signal.SIGINT, None)  # the second signal, run between two bytecodes of this one
        said.append(f"{name} graceful: end")

    handler = StopSignals(first, lambda name: said.append(f"{name} now"))
    handler(signal.SIGTERM, None)
    assert said == ["SIGTERM graceful: start", "SIGTERM graceful: end", "SIGINT now"]


def test_a_signal_arriving_as_the_handler_finishes_is_not_left_behind() -> None:
    # The window between the handler's last look at what arrived and its
    # return: a signal there finds it still acting and leaves itself to it.
    said: list[str] = []
    handler = _recording(said)
    arrived = handler._arrived

    class LateList(list[int]):
        looks = 0

        def __len__(self) -> int:
            LateList.looks += 1
            length = super().__len__()
            if LateList.looks == 3:  # the inner loop's last look, after acting on the first signal
                handler(signal.SIGINT, None)  # arrives just after it
            return length

    handler._arrived = LateList(arrived)
    handler(signal.SIGTERM, None)
    assert said == ["SIGTERM graceful", "SIGINT now"]


def test_an_action_that_raises_leaves_the_handler_ready_for_the_next_signal() -> None:
    said: list[str] = []

    def again(name: str) -> None:
        said.append(f"{name} now")
        raise _Stop  # the worker's way out of a blocking Redis read

    handler = StopSignals(lambda name: said.append(f"{name} graceful"), again)
    handler(signal.SIGTERM, None)
    with pytest.raises(_Stop):
        handler(signal.SIGINT, None)
    with pytest.raises(_Stop):
        handler(signal.SIGINT, None)
    assert said == ["SIGTERM graceful", "SIGINT now", "SIGINT now"]


def test_a_second_signal_inside_the_first_action_raises_after_the_first_action_ends() -> None:
    said: list[str] = []

    def first(name: str) -> None:
        handler(signal.SIGINT, None)
        said.append(f"{name} graceful done")

    def again(name: str) -> None:
        said.append(f"{name} now")
        raise _Stop

    handler = StopSignals(first, again)
    with pytest.raises(_Stop):
        handler(signal.SIGTERM, None)
    assert said == ["SIGTERM graceful done", "SIGINT now"]
