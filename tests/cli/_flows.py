"""Flows the CLI tests run through the real ``flowkit`` command (importable by name).

Tasks that must stop a run midway wait on a marker file named by the
``FLOWKIT_TEST_MARKER`` environment variable: the first time they get there
they create it and block until the test kills the process; once it exists
(the resumed run) they carry on.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowkit import dynamic, engines, retry, task
from flowkit.listeners.events import EventLogListener
from flowkit.patterns import linear_flow
from flowkit.persistence import backends

__all__ = [
    "SHOP",
    "CardDeclined",
    "make_big_gated",
    "make_blocking",
    "make_chatty",
    "make_labels",
    "make_long",
    "make_long_gated",
    "make_refused",
    "make_retried",
    "make_revert_fails",
    "make_shop",
    "make_slow",
    "run_logged",
    "make_slow_spawning",
    "make_spawning",
    "slow_steps",
    "spawned_steps",
    "make_stuck_revert",
]


class CardDeclined(Exception):
    """The payment failed."""


def _block_first_time() -> None:
    marker = Path(os.environ["FLOWKIT_TEST_MARKER"])
    if marker.exists():
        return
    marker.write_text(str(os.getpid()))
    while True:  # until the test kills this process
        time.sleep(0.05)


class Step(task.Task):
    """Returns its own name."""

    def execute(self) -> str:
        return self.name


class StopsOnce(Step):
    """Interrupts the run the first time it runs while armed (a crash stand-in: the atom stays RUNNING)."""

    armed = True

    def execute(self) -> str:
        if StopsOnce.armed:
            StopsOnce.armed = False
            raise KeyboardInterrupt
        return self.name


class Blocking(task.Task):
    """Blocks the first run in ``execute`` (see the module docstring)."""

    def execute(self) -> str:
        _block_first_time()
        return self.name


class BlockingRevert(task.Task):
    """Blocks the first run in ``revert``."""

    def execute(self) -> str:
        return self.name

    def revert(self, *args: Any, **kwargs: Any) -> None:
        _block_first_time()


class Charge(task.Task):
    """Charges ``amount``; over 100 is declined."""

    def execute(self, amount: int) -> int:
        if amount > 100:
            raise CardDeclined(f"card declined for {amount}")
        return amount


#: Seconds a gated :class:`Slow` waits for its gate before it gives up.
GATE_TIMEOUT = 120.0


class Slow(task.Task):
    """Sleeps ``delay`` seconds (a flow a browser can watch), or waits for its gate.

    With ``FLOWKIT_TEST_GATE`` set to a directory, it runs until a file named
    after the atom appears there instead: a watcher that must see it RUNNING
    lets it finish only once it has, however slow the machine is.
    """

    def execute(self, delay: float) -> str:
        gate = os.environ.get("FLOWKIT_TEST_GATE")
        if gate:
            self.update_progress(0.0)
            deadline = time.monotonic() + GATE_TIMEOUT
            while not (Path(gate) / self.name).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gate {Path(gate) / self.name} not opened in {GATE_TIMEOUT:.0f} s")
                time.sleep(0.02)
            return self.name
        for part in range(5):
            self.update_progress(part / 5)
            time.sleep(delay / 5)
        return self.name


def make_shop() -> linear_flow.Flow:
    """reserve, then charge under retry r1 (2 attempts, then REVERT_ALL), then ship."""
    payment = linear_flow.Flow("payment", retry=retry.Times(2, "r1", revert_all=True)).add(Charge("charge"))
    return linear_flow.Flow("shop").add(Step("reserve"), payment, Step("ship"))


class Refuse(task.Task):
    """Fails with ``why`` as its message: text from outside (a remote worker's, a service's)."""

    def execute(self, why: str) -> None:
        raise ValueError(why)


def make_refused() -> linear_flow.Flow:
    """One atom, ``refuse``, failing with the message given as ``why``."""
    return linear_flow.Flow("refused").add(Refuse("refuse"))


class GivesText(task.Task):
    default_provides = "amount"

    def execute(self) -> str:
        return "12"


class UsesNumber(task.Task):
    def execute(self, amount: float) -> float:
        return amount


def make_mistyped() -> linear_flow.Flow:
    """A str provided where a float is required: warned of when compiled, refused with check_types."""
    return linear_flow.Flow("mistyped").add(GivesText("give"), UsesNumber("use"))


def label(postcode: str, copies: int, weight: float | None = None) -> str:
    """A shipping label: ``postcode`` is text (``02139`` keeps its zero), ``copies`` a count."""
    return f"{postcode.zfill(5)} x{copies}" + ("" if weight is None else f" {weight:.1f}kg")


def make_labels() -> linear_flow.Flow:
    """One typed task, ``label``: what ``--store`` gives it must fit its annotations."""
    return linear_flow.Flow("labels").add(task.FunctorTask(label, name="label", provides="label"))


def make_blocking() -> linear_flow.Flow:
    """a, b, c (blocks the first time), d."""
    return linear_flow.Flow("blocking").add(Step("a"), Step("b"), Blocking("c"), Step("d"))


def make_stuck_revert() -> linear_flow.Flow:
    """a, b (its revert blocks the first time), then charge fails: the flow reverts."""
    return linear_flow.Flow("stuck-revert").add(Step("a"), BlockingRevert("b"), Charge("charge"))


#: Atoms in :func:`make_long`: as many as ``flowkit run`` keeps the shape of for the monitor.
LONG = 2000


def make_long() -> linear_flow.Flow:
    """``LONG`` steps in a row."""
    return linear_flow.Flow("long").add(*(Step(f"step-{i:04d}") for i in range(LONG)))


class RevertFails(task.Task):
    """Its revert always raises."""

    def execute(self) -> str:
        return self.name

    def revert(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"cannot undo {self.name}")


def make_revert_fails() -> linear_flow.Flow:
    """a, b (its revert raises), then charge fails: the flow ends FAILURE with a left done."""
    return linear_flow.Flow("revert-fails").add(Step("a"), RevertFails("b"), Charge("charge"))


def make_long_gated() -> linear_flow.Flow:
    """300 steps in a row; the 241st, ``gated``, is a :class:`Slow` (give ``delay``)."""
    steps: list[task.Task] = [Step(f"step-{i:03d}") for i in range(300)]
    steps[240] = Slow("gated")
    return linear_flow.Flow("long-gated").add(*steps)


def make_big_gated() -> linear_flow.Flow:
    """2,100 steps in a row (past the monitor's summary threshold); ``step-0300`` and ``-0400`` are gated."""
    steps: list[task.Task] = [Step(f"step-{i:04d}") for i in range(2100)]
    for gated in (300, 400):
        steps[gated] = Slow(f"step-{gated:04d}")
    return linear_flow.Flow("big-gated").add(*steps)


def make_gated_alone() -> linear_flow.Flow:
    """``gated``: one gated :class:`Slow` step named as its flow (give ``delay``)."""
    return linear_flow.Flow("gated").add(Slow("gated"))


def make_slow() -> linear_flow.Flow:
    """Three slow steps."""
    return linear_flow.Flow("slow").add(Slow("one"), Slow("two"), Slow("three"))


def slow_steps(names: list[str]) -> linear_flow.Flow:
    """Slow steps named ``names`` (a sub-flow factory)."""
    return linear_flow.Flow("slow-spawned").add(*[Slow(n) for n in names])


class SlowSpawner(Slow):
    """Waits as :class:`Slow` does, then spawns ``slow_steps(["s1", "s2"])``."""

    def execute(self, delay: float) -> Any:
        super().execute(delay)
        return dynamic.subflow(slow_steps, ["s1", "s2"])


def make_slow_spawning() -> linear_flow.Flow:
    """one, spawner (which adds s1 and s2 at run time), last: each waits for its gate."""
    return linear_flow.Flow("growing").add(Slow("one"), SlowSpawner("spawner"), Slow("last"))


#: A flow object (``flowkit run`` takes these too).
SHOP = make_shop()

#: A factory bound to a module name but not importable by its own (``<lambda>``).
make_shop_lambda = lambda: make_shop()  # noqa: E731, PLW0108 - the point: a lambda as a flowkit run target


class FailsUntilMarked(task.Task):
    """Fails while the marker file does not exist (the first run), succeeds after."""

    def execute(self) -> str:
        if not Path(os.environ["FLOWKIT_TEST_MARKER"]).exists():
            raise CardDeclined("no marker yet")
        return self.name


def make_retried() -> linear_flow.Flow:
    """a; under retry r1: b (its revert blocks the first time), then c (fails until then); d.

    The first run: c fails, r1 chooses RETRY, c is reverted, b's revert blocks.
    """
    scope = linear_flow.Flow("scope", retry=retry.Times(3, "r1")).add(
        BlockingRevert("b"), FailsUntilMarked("c")
    )
    return linear_flow.Flow("retried").add(Step("a"), scope, Step("d"))


def spawned_steps(names: list[str]) -> linear_flow.Flow:
    """Steps named ``names``; the one named ``blocks`` blocks the first time (a sub-flow factory)."""
    return linear_flow.Flow("spawned").add(*[Blocking(n) if n == "blocks" else Step(n) for n in names])


class Spawner(task.Task):
    """Spawns ``spawned_steps(["s1", "blocks", "s2"])``."""

    def execute(self) -> Any:
        return dynamic.subflow(spawned_steps, ["s1", "blocks", "s2"])


def make_spawning() -> linear_flow.Flow:
    """spawner (s1, blocks: blocks the first time, s2), then after."""
    return linear_flow.Flow("spawning").add(Spawner("spawner"), Step("after"))


#: Markup that runs script if a page ever inserts it as HTML (tests/monitor: XSS).
HOSTILE_MARKUP = '<img src=x onerror="window.__flowkit_xss=1"><script>window.__flowkit_xss=2</script>'


class FailsWithMarkup(task.Task):
    """Fails with :data:`HOSTILE_MARKUP` in its message; returns it when it does not fail."""

    def execute(self, fail: bool = True) -> str:
        if fail:
            raise RuntimeError(HOSTILE_MARKUP)
        return HOSTILE_MARKUP


def make_hostile() -> linear_flow.Flow:
    """A flow whose name, atom names, result and failure text all hold :data:`HOSTILE_MARKUP`."""
    return linear_flow.Flow(f"flow {HOSTILE_MARKUP}").add(
        FailsWithMarkup(f"ok {HOSTILE_MARKUP}", inject={"fail": False}),
        FailsWithMarkup(f"bad {HOSTILE_MARKUP}"),
    )


class Chatty(task.Task):
    """Prints a line, and writes one to file descriptor 1 as a C library or a child would."""

    def execute(self) -> str:
        print(f"{self.name} says hello")
        os.write(1, f"{self.name} writes to fd 1\n".encode())
        return self.name


def make_chatty() -> linear_flow.Flow:
    """Two atoms that write to standard output while they run."""
    return linear_flow.Flow("chatty").add(Chatty("one"), Chatty("two"))


def run_logged(
    url: str,
    factory: Callable[[], Any],
    store: dict[str, Any],
    expected: type[Exception] = CardDeclined,
) -> str:
    """Run the flow ``factory`` makes in the backend at ``url``, its event log kept; its uuid.

    Made by a factory so that it can be resumed from the backend. A run ending
    in ``expected`` (the shop's declined card) is left as it ended, for the
    reader under test.
    """
    with backends.backend(url) as backend:
        engine = engines.load_from_factory(factory, store=store, backend=backend)
        with EventLogListener(engine), contextlib.suppress(expected):
            engine.run()
        return engine.storage.flow_uuid
