"""Retries, functor tasks, notifiers and flow building, as TaskFlow users write them.

Type-checked with ``mypy --strict`` by tests/typing/test_user_code.py and never
run: every statement here is a correct program that a type checker must accept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flowkit import atom, engines, exceptions, formatters, retry, states, task
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from flowkit.types import failure, notifier

LOG = logging.getLogger(__name__)


class RetryOnTimeout(retry.Times):
    """Retries only when a task timed out; reverts the whole flow otherwise."""

    def on_failure(self, history: retry.History, *args: Any, **kwargs: Any) -> retry.Decision:
        for _name, fail in history.outcomes_iter():
            if not fail.check(exceptions.TaskTimeout):
                return retry.REVERT_ALL
        return super().on_failure(history, *args, **kwargs)


class PickServer(retry.Retry):
    """A retry whose ``execute`` requires a symbol of its own, beside ``history``."""

    default_provides = "server"

    def execute(self, history: retry.History, servers: list[str]) -> str:
        tried = set(history.provided_iter())
        return next(server for server in servers if server not in tried)

    def on_failure(self, history: retry.History, *args: Any, **kwargs: Any) -> retry.Decision:
        return retry.RETRY if len(history) < 3 else retry.REVERT

    def revert(self, history: retry.History, *args: Any, **kwargs: Any) -> None:
        LOG.info("giving up after %d tries", len(history))


class PickFromValues(retry.ParameterizedForEach):
    """A subclass of TaskFlow's parameterized retry, with its own signature."""

    def on_failure(
        self, values: Iterable[Any], history: retry.History, *args: Any, **kwargs: Any
    ) -> retry.Decision:
        return super().on_failure(values, history, *args, **kwargs)


class Boot(task.Task):
    """Boots on the server the retry picked; the old style, every argument in **kwargs."""

    def execute(self, server: str, **kwargs: Any) -> str:
        return f"booted on {server}"

    def revert(
        self, server: str, result: Any, flow_failures: dict[str, failure.Failure], **kwargs: Any
    ) -> None:
        LOG.info("undoing boot on %s: %s", server, result)

    def pre_execute(self) -> None:
        LOG.debug("about to boot")

    def post_revert(self) -> None:
        LOG.debug("reverted")


class EchoAtom(atom.Atom):
    """An atom subclass of a user's own (rare, but TaskFlow allows it)."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return kwargs

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        return None


def add(x: int, y: int) -> int:
    return x + y


def undo_add(*args: Any, **kwargs: Any) -> None:
    LOG.info("undo %s", kwargs)


def square(item: int) -> int:
    return item * item


def total(first: int, second: int) -> int:
    return first + second


def on_progress(event_type: str, details: dict[str, Any]) -> None:
    LOG.info("%s: %s", event_type, details["progress"])


def on_state(state: str, details: dict[str, Any]) -> None:
    LOG.info("%s is %s", details.get("task_name"), state)


def build() -> graph_flow.Flow:
    """A graph flow of functor tasks under retries."""
    adding = task.FunctorTask(add, name="add", provides="sum", revert=undo_add, inject={"y": 2})
    mapping = task.MapFunctorTask(square, name="square", requires=["a", "b"], provides=("a2", "b2"))
    reducing = task.ReduceFunctorTask(total, name="total", requires=["a2", "b2"], provides="sum2")
    boots = linear_flow.Flow("boots", retry=PickServer(name="pick", requires="servers"))
    boots.add(Boot(provides="booted"), Boot(name="boot_again", rebind={"server": "server"}))
    timed = unordered_flow.Flow("timed", retry=RetryOnTimeout(attempts=2, revert_all=True))
    timed.add(task.FunctorTask(add, name="add_again", rebind=["sum", "y"], provides="again", inject={"y": 1}))
    whole = graph_flow.Flow("whole", retry=retry.ForEach([1, 2, 3], provides="x"))
    whole.add(adding, mapping, reducing, boots, timed, EchoAtom(name="echo"))
    whole.link(adding, timed)
    targeted = graph_flow.TargetedFlow("targeted")
    targeted.add(task.FunctorTask(square, name="sq", rebind={"item": "x"}, provides="x2"))
    targeted.set_target(next(iter(targeted)))
    whole.add(targeted)
    for item in whole:
        LOG.debug("item %s provides %s", item.name, sorted(item.provides))
    for first, second, meta in whole.iter_links():
        LOG.debug("%s -> %s (%s)", first.name, second.name, meta)
    return whole


def watch_and_run(flow: graph_flow.Flow) -> None:
    """Register callbacks on the engine's notifiers and a task's own."""
    engine = engines.load(flow, store={"x": 1, "a": 2, "b": 3, "servers": ["s1", "s2"]})
    engine.notifier.register(notifier.Notifier.ANY, on_state)
    engine.atom_notifier.register(states.FAILURE, on_state, details_filter=lambda details: True)
    for item in flow.iter_nodes():
        node = item[0]
        if isinstance(node, task.Task):
            node.notifier.register(task.EVENT_UPDATE_PROGRESS, on_progress)
    engine.storage.inject({"x": 2})
    engine.run(timeout=30)
    LOG.info("add is %s", engine.storage.get_atom_state("add"))
    LOG.info("statistics %s", engine.statistics)
    engine.notifier.deregister(notifier.Notifier.ANY, on_state)


def explain(engine: engines.Engine, fail: failure.Failure) -> str:
    """Format a failure with the engine's context, as TaskFlow's listeners do."""
    formatter = formatters.FailureFormatter(engine)
    exc_info, text = formatter.format(fail, lambda node: True)
    if exc_info is not None:
        LOG.error("failed", exc_info=exc_info)
    return text
