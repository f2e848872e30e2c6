"""TaskFlow 6.5 as an oracle: the same scenarios, built once and run on both libraries, must match.

Each scenario is a function of a :class:`Lib` (one library's modules plus task classes
that write to the library's own :class:`Journal`), so the flow is defined once and
built twice. Both runs use the serial engine and record, through callbacks on
``engine.notifier`` and ``engine.atom_notifier``:

* every state change (atom name or ``"flow"``, new state, the detail keys, and the
  result for finishing states, failures reduced to their type and message), and
* every call of ``execute``/``revert``/``on_failure`` the engine made.

Where only one atom is ready at a time the sequences must be identical. Where several
are ready at once TaskFlow's order among them is arbitrary (set iteration, and its
serial engine starts a whole batch before it looks at any outcome), so those scenarios
compare each atom's own sequence instead. Events flowkit adds (``update_progress`` on
the atom notifier) are left out.

taskflow is a test dependency (``taskflow==6.5.0`` in the ``test`` extra): these tests
never skip.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

LIBRARIES = ("taskflow", "flowkit")

# Importing taskflow pulls in oslo_utils.eventletutils, which warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:oslo_utils.eventletutils")


class Journal:
    """The calls the engine made into atoms, in order: ``(call, atom_name)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []


class Lib:
    """One library's modules, and task classes built on its ``Task``."""

    def __init__(self, root: str) -> None:
        self.root = root

        def module(name: str) -> Any:
            return importlib.import_module(f"{root}.{name}")

        self.task = module("task")
        self.retry = module("retry")
        self.engines = module("engines")
        self.states = module("states")
        self.exceptions = module("exceptions")
        self.lf = module("patterns.linear_flow")
        self.uf = module("patterns.unordered_flow")
        self.gf = module("patterns.graph_flow")
        self.journal = journal = Journal()
        base = self.task.Task

        class Ok(base):  # type: ignore[misc, valid-type]
            def __init__(self, name: str, value: Any = None, **kwargs: Any) -> None:
                super().__init__(name, **kwargs)
                self.value = name if value is None else value

            def execute(self, **kwargs: Any) -> Any:
                journal.calls.append(("execute", self.name))
                return self.value

            def revert(self, **kwargs: Any) -> Any:
                journal.calls.append(("revert", self.name))
                return f"undid {self.name}"

        class Fail(Ok):
            def execute(self, **kwargs: Any) -> Any:
                journal.calls.append(("execute", self.name))
                raise ValueError(f"{self.name} failed")

        class FailN(Ok):
            def __init__(self, name: str, times: int, **kwargs: Any) -> None:
                super().__init__(name, **kwargs)
                self.times = times
                self.calls = 0

            def execute(self, **kwargs: Any) -> Any:
                journal.calls.append(("execute", self.name))
                self.calls += 1
                if self.calls <= self.times:
                    raise ValueError(f"{self.name} failed {self.calls}")
                return self.calls

        class RevertFail(Ok):
            def revert(self, **kwargs: Any) -> Any:
                journal.calls.append(("revert", self.name))
                raise RuntimeError(f"{self.name} revert failed")

        class Echo(Ok):
            """Returns the arguments it was given (so argument passing is compared too)."""

            def execute(self, **kwargs: Any) -> Any:
                journal.calls.append(("execute", self.name))
                return sorted(kwargs.items())

        self.Ok, self.Fail, self.FailN, self.RevertFail, self.Echo = Ok, Fail, FailN, RevertFail, Echo

    def times(self, attempts: int, name: str, **kwargs: Any) -> Any:
        """A Times retry whose on_failure calls are journalled."""
        journal = self.journal

        class Counted(self.retry.Times):  # type: ignore[misc, name-defined]
            def on_failure(self, *args: Any, **kw: Any) -> Any:
                journal.calls.append(("on_failure", self.name))
                return super().on_failure(*args, **kw)

        return Counted(attempts, name, **kwargs)


def _result(value: Any) -> Any:
    """A library-neutral form of a notification's ``result``.

    A failure becomes its exception's type name and, when our tasks raised it (a
    built-in exception class), its message; each library words its own messages.
    """
    if hasattr(value, "exception_str") and hasattr(value, "exception"):
        error = value.exception
        message = value.exception_str if type(error).__module__ == "builtins" else None
        return ("failure", type(error).__name__, message)
    return value


@dataclass
class Outcome:
    events: list[tuple[Any, ...]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    error: BaseException | None = None
    flow_state: str = ""
    atom_states: dict[str, str] = field(default_factory=dict)

    def per_atom(self) -> dict[str, list[tuple[Any, ...]]]:
        found: dict[str, list[tuple[Any, ...]]] = {}
        for event in self.events:
            found.setdefault(event[0], []).append(event[1:])
        return found

    def calls_per_atom(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for call, name in self.calls:
            found.setdefault(name, []).append(call)
        return found


Builder = Callable[[Lib], Any]


def run_on(root: str, build: Builder, **options: Any) -> Outcome:
    """Build the scenario with library ``root``, run it on the serial engine, record everything."""
    lib = Lib(root)
    flow = build(lib)
    engine = lib.engines.load(flow, **options)
    outcome = Outcome()

    def on_flow(state: str, details: dict[str, Any]) -> None:
        outcome.events.append(("flow", state, tuple(sorted(details))))

    def on_atom(state: str, details: dict[str, Any]) -> None:
        if "old_state" not in details:  # progress and other non-state events
            return
        name = details.get("task_name", details.get("retry_name"))
        keys = tuple(sorted(details))
        if "result" in details:
            outcome.events.append((name, state, keys, _result(details["result"])))
        else:
            outcome.events.append((name, state, keys))

    engine.notifier.register(engine.notifier.ANY, on_flow)
    engine.atom_notifier.register(engine.atom_notifier.ANY, on_atom)
    try:
        engine.run()
    except Exception as err:  # the oracle compares what is raised
        outcome.error = err
    outcome.calls = list(lib.journal.calls)
    outcome.flow_state = engine.storage.get_flow_state()
    outcome.atom_states = {name: _state_of(engine, name) for name in _atom_names(flow)}
    return outcome


def _state_of(engine: Any, name: str) -> str:
    try:
        return str(engine.storage.get_atom_state(name))
    except Exception as err:  # refused before the atoms were even recorded
        return f"unknown ({type(err).__name__})"


def _atom_names(item: Any) -> list[str]:
    names: list[str] = []
    retry = getattr(item, "retry", None)
    if retry is not None:
        names.append(retry.name)
    if hasattr(item, "iter_nodes"):
        for child, _meta in item.iter_nodes():
            names.extend(_atom_names(child))
    else:
        names.append(item.name)
    return names


def _error_summary(error: BaseException | None) -> Any:
    """Type name, plus the message when our tasks wrote it (the libraries word their own)."""
    if error is None:
        return None
    if type(error).__name__ == "WrappedFailure":
        return ("WrappedFailure", sorted(_result(f) for f in error))
    if type(error).__module__ == "builtins":
        return (type(error).__name__, str(error))
    return (type(error).__name__,)


# -- scenarios --------------------------------------------------------------------------------
# name -> (builder, engine options, exact global order?)


def linear_success(L: Lib) -> Any:
    return L.lf.Flow("f").add(L.Ok("a"), L.Ok("b", provides="x"), L.Echo("c", requires=["x"]))


def linear_failure(L: Lib) -> Any:
    return L.lf.Flow("f").add(L.Ok("a"), L.Ok("b"), L.Fail("c"), L.Ok("d"))


def unordered_success(L: Lib) -> Any:
    return L.uf.Flow("u").add(L.Ok("a"), L.Ok("b"), L.Ok("c"))


def unordered_failure(L: Lib) -> Any:
    # The failing atom comes last, so every sibling has run in both libraries.
    return L.uf.Flow("u").add(L.Ok("a"), L.Ok("b"), L.Fail("c"))


def unordered_failure_first(L: Lib) -> Any:
    # TaskFlow's serial engine starts every ready atom of a step before it looks at
    # any outcome: b and c run (and are reverted) although a failed first.
    return L.uf.Flow("u").add(L.Fail("a"), L.Ok("b"), L.Ok("c"))


def amphora_pair(L: Lib) -> Any:
    """Octavia's ACTIVE_STANDBY amphora pair: two branches in an unordered flow, one fails.

    TaskFlow advances both branches in step, so when the BACKUP's compute create
    fails, the MASTER has run its first three tasks and never starts its two
    database tasks after them.
    """

    def branch(role: str, fail: bool) -> Any:
        compute = L.Fail if fail else L.Ok
        return L.lf.Flow(f"{role}-amphora").add(
            L.Ok(f"{role}-create-amphora-in-db"),
            L.Ok(f"{role}-generate-server-pem"),
            compute(f"{role}-compute-create"),
            L.Ok(f"{role}-mark-amphora-allocated-in-db"),
            L.Ok(f"{role}-update-amphora-info-in-db"),
        )

    pair = L.uf.Flow("amphora-pair").add(branch("master", False), branch("backup", True))
    return L.lf.Flow("create-lb").add(L.Ok("get-lb"), pair, L.Ok("mark-lb-active-in-db"))


def active_standby(L: Lib) -> Any:
    """Octavia's ACTIVE_STANDBY create-LB flow: both amphora branches provide ``amphora_id``.

    TaskFlow compiles it and the task after the pair reads one of the two values
    (the branch added last); flowkit must read the same one.
    """

    def branch(role: str) -> Any:
        return L.lf.Flow(f"{role}-amphora").add(
            L.Ok(f"{role}-create-amphora-in-db", value=f"{role}-amp", provides="amphora_id"),
            L.Echo(f"{role}-compute-create", requires=["amphora_id"], provides="compute_id"),
        )

    pair = L.uf.Flow("amphora-pair").add(branch("master"), branch("backup"))
    return L.lf.Flow("create-lb").add(
        L.Ok("get-lb", provides="loadbalancer"),
        pair,
        L.Echo("mark-lb-active-in-db", requires=["amphora_id", "compute_id", "loadbalancer"]),
    )


def linked_graph_providers(L: Lib) -> Any:
    # Both provide x and p1 runs first; TaskFlow reads the one placed last in the
    # graph flow's (topological) order, p2.
    p2, p1 = L.Ok("p2", provides="x"), L.Ok("p1", provides="x")
    graph = L.gf.Flow("g").add(p2, p1).link(p1, p2)
    return L.lf.Flow("f").add(graph, L.Echo("c", requires=["x"]))


def nested_unordered_providers(L: Lib) -> Any:
    inner = L.uf.Flow("inner").add(L.Ok("a", provides="x"), L.Ok("b", provides="x"))
    outer = L.uf.Flow("outer").add(
        inner, L.Ok("c", provides="x"), L.lf.Flow("s").add(L.Ok("d", provides="x"))
    )
    return L.lf.Flow("f").add(L.Ok("z", provides="x"), outer, L.Echo("use", requires=["x"]))


def unordered_in_linear(L: Lib) -> Any:
    return L.lf.Flow("f").add(
        L.Ok("first", provides="x"),
        L.uf.Flow("u").add(L.Echo("a", requires=["x"]), L.Echo("b", requires=["x"])),
        L.Fail("last"),
    )


def nested_linear_success(L: Lib) -> Any:
    return L.lf.Flow("f").add(
        L.Ok("a"),
        L.lf.Flow("s").add(L.Ok("b"), L.lf.Flow("t").add(L.Ok("c", provides="x"))),
        L.Echo("d", requires=["x"]),
    )


def nested_linear_failure(L: Lib) -> Any:
    return L.lf.Flow("f").add(
        L.Ok("a"), L.lf.Flow("s").add(L.Ok("b"), L.lf.Flow("t").add(L.Ok("c"))), L.Ok("d"), L.Fail("e")
    )


def graph_inferred(L: Lib) -> Any:
    return L.gf.Flow("g").add(
        L.Echo("consumer", requires=["y"]),
        L.Echo("middle", requires=["x"], provides="y"),
        L.Ok("source", value=1, provides="x"),
    )


def graph_inferred_failure(L: Lib) -> Any:
    return L.gf.Flow("g").add(
        L.Fail("consumer", requires=["y"]),
        L.Ok("middle", requires=["x"], provides="y"),
        L.Ok("source", provides="x"),
    )


def graph_diamond_failure(L: Lib) -> Any:
    a, b, c, d = L.Ok("a"), L.Ok("b"), L.Ok("c"), L.Fail("d")
    return L.gf.Flow("g").add(a, b, c, d).link(a, b).link(a, c).link(b, d).link(c, d)


def times_recovering(L: Lib) -> Any:
    return L.lf.Flow("f", retry=L.times(3, "r", provides="attempt")).add(
        L.Echo("a", requires=["attempt"]), L.FailN("b", 2)
    )


def times_exhausted(L: Lib) -> Any:
    return L.lf.Flow("f", retry=L.times(2, "r")).add(L.Ok("a"), L.FailN("b", 5))


def times_in_subflow(L: Lib) -> Any:
    return L.lf.Flow("f").add(
        L.Ok("before"), L.lf.Flow("s", retry=L.times(3, "r")).add(L.FailN("flaky", 1)), L.Ok("after")
    )


def for_each(L: Lib) -> Any:
    return L.lf.Flow("f", retry=L.retry.ForEach(["x", "y", "z"], "r", provides="v")).add(
        L.Echo("a", requires=["v"]), L.FailN("b", 2)
    )


def for_each_exhausted(L: Lib) -> Any:
    return L.lf.Flow("f", retry=L.retry.ForEach([1, 2], "r", provides="v")).add(L.Fail("b", requires=["v"]))


def parameterized_for_each(L: Lib) -> Any:
    return L.lf.Flow("f", retry=L.retry.ParameterizedForEach("r", provides="v")).add(
        L.Echo("a", requires=["v"]), L.FailN("b", 1)
    )


def _subflow(L: Lib, retry: Any) -> Any:
    return L.lf.Flow("f").add(L.Ok("a"), L.lf.Flow("s", retry=retry).add(L.Ok("b"), L.Fail("c")), L.Ok("d"))


def revert_decision(L: Lib) -> Any:
    return _subflow(L, L.retry.AlwaysRevert("r"))


def revert_all_decision(L: Lib) -> Any:
    return _subflow(L, L.retry.AlwaysRevertAll("r"))


def revert_then_later_failure(L: Lib) -> Any:
    return L.lf.Flow("f").add(
        L.Ok("a"), L.lf.Flow("s", retry=L.retry.AlwaysRevert("r")).add(L.Ok("b"), L.Fail("c")), L.Fail("d")
    )


def times_revert_all(L: Lib) -> Any:
    return L.lf.Flow("f").add(
        L.Ok("a"), L.lf.Flow("s", retry=L.times(2, "r", revert_all=True)).add(L.Fail("c")), L.Ok("d")
    )


def _inner_revert_outer_times(L: Lib, failures: int) -> Any:
    inner = L.lf.Flow("s", retry=L.retry.AlwaysRevert("r_inner")).add(L.Ok("b"), L.FailN("c", failures))
    return L.lf.Flow("f", retry=L.times(2, "r_outer")).add(L.Ok("a"), inner, L.Ok("d"))


def inner_revert_outer_retries(L: Lib) -> Any:
    return _inner_revert_outer_times(L, 1)


def inner_revert_outer_exhausted(L: Lib) -> Any:
    return _inner_revert_outer_times(L, 9)


def inner_revert_all_outer_times(L: Lib) -> Any:
    inner = L.lf.Flow("s", retry=L.retry.AlwaysRevertAll("r_inner")).add(L.Ok("b"), L.FailN("c", 1))
    return L.lf.Flow("f", retry=L.times(2, "r_outer")).add(L.Ok("a"), inner, L.Ok("d"))


def nested_times_recovering(L: Lib) -> Any:
    inner = L.lf.Flow("s", retry=L.times(2, "r2")).add(L.Ok("b"), L.FailN("c", 3))
    return L.lf.Flow("f", retry=L.times(2, "r1")).add(L.Ok("a"), inner)


def nested_times_exhausted(L: Lib) -> Any:
    inner = L.lf.Flow("s", retry=L.times(2, "r2")).add(L.Fail("c"))
    return L.lf.Flow("f", retry=L.times(2, "r1")).add(L.Ok("a"), inner)


def revert_failure(L: Lib) -> Any:
    return L.lf.Flow("f").add(L.Ok("a"), L.RevertFail("b"), L.Fail("c"))


def revert_failure_in_retry(L: Lib) -> Any:
    return L.lf.Flow("f", retry=L.times(3, "r")).add(L.RevertFail("a"), L.FailN("b", 1))


def _decided(L: Lib, depth: str | None, answer: bool) -> Any:
    a, b, c, d = L.Ok("a"), L.Ok("b"), L.Ok("c"), L.Ok("d")
    sub = L.lf.Flow("sub").add(L.Ok("s1"), L.Ok("s2"))
    flow = L.gf.Flow("g").add(a, b, c, d, sub)
    flow.link(a, b, decider=lambda history: answer, decider_depth=depth)
    return flow.link(b, c).link(c, d).link(b, sub)


def _decided_subflow(L: Lib, depth: str) -> Any:
    a, z = L.Ok("a"), L.Ok("z")
    sub = L.lf.Flow("sub").add(L.Ok("s1"), L.lf.Flow("inner").add(L.Ok("i1")))
    return (
        L.gf.Flow("g")
        .add(a, sub, z)
        .link(a, sub, decider=lambda history: False, decider_depth=depth)
        .link(sub, z)
    )


def ignored_then_failure(L: Lib) -> Any:
    a, b, c = L.Ok("a"), L.Ok("b"), L.Fail("c")
    return (
        L.gf.Flow("g").add(a, b, c).link(a, b, decider=lambda history: False, decider_depth="ATOM").link(b, c)
    )


def decider_sees_history(L: Lib) -> Any:
    a, b, c = L.Ok("a", value=5), L.Ok("b", value=7), L.Ok("c")

    def enough(history: dict[str, Any]) -> bool:
        return sum(history.values()) > 10

    return L.gf.Flow("g").add(a, b, c).link(a, c, decider=enough).link(b, c, decider=enough)


def graph_with_retry(L: Lib) -> Any:
    return L.gf.Flow("g", retry=L.times(2, "r")).add(L.FailN("b", 1, requires=["x"]), L.Ok("a", provides="x"))


def unordered_with_retry(L: Lib) -> Any:
    return L.uf.Flow("u", retry=L.times(2, "r")).add(L.Ok("a"), L.FailN("b", 1))


def decider_in_retried_flow(L: Lib) -> Any:
    a, b, c = L.Ok("a"), L.Ok("b"), L.FailN("c", 1)
    flow = L.gf.Flow("g", retry=L.times(2, "r")).add(a, b, c)
    return flow.link(a, b, decider=lambda history: False, decider_depth="ATOM").link(b, c)


def decider_on_a_retried_subflow(L: Lib) -> Any:
    a, z = L.Ok("a"), L.Ok("z")
    sub = L.lf.Flow("s", retry=L.times(2, "r")).add(L.Ok("b"))
    return L.gf.Flow("g").add(a, sub, z).link(a, sub, decider=lambda history: False).link(sub, z)


def ignored_provider(L: Lib) -> Any:
    a, b, c = L.Ok("a"), L.Ok("b", provides="x"), L.Echo("c", requires=["x"])
    return L.gf.Flow("g").add(a, b, c).link(a, b, decider=lambda history: False, decider_depth="ATOM")


def for_each_with_no_values(L: Lib) -> Any:
    retry = L.retry.ForEach([], "r", provides="v")
    return L.lf.Flow("f").add(L.Ok("a"), L.lf.Flow("s", retry=retry).add(L.Ok("b", requires=["v"])))


def for_each_revert_all(L: Lib) -> Any:
    retry = L.retry.ForEach([1], "r", provides="v", revert_all=True)
    return L.lf.Flow("f").add(L.Ok("a"), L.lf.Flow("s", retry=retry).add(L.Fail("b", requires=["v"])))


def on_failure_raises(L: Lib) -> Any:
    class Broken(L.retry.Times):  # type: ignore[misc, name-defined]
        def on_failure(self, *args: Any, **kwargs: Any) -> Any:
            raise KeyError("no decision")

    return L.lf.Flow("f").add(L.Ok("a"), L.lf.Flow("s", retry=Broken(2, "r")).add(L.Fail("b")))


def retry_value_in_nested_flow(L: Lib) -> Any:
    inner = L.lf.Flow("s").add(L.Echo("deep", requires=["n"]), L.FailN("x", 1))
    return L.lf.Flow("f", retry=L.times(2, "r", provides="n")).add(inner)


def retry_requiring_a_value(L: Lib) -> Any:
    class Limited(L.retry.Times):  # type: ignore[misc, name-defined]
        def execute(self, history: Any, limit: int) -> int:
            return len(history) + 1

        def on_failure(self, history: Any, limit: int) -> Any:
            return L.retry.RETRY if len(history) < limit else L.retry.REVERT

    return L.lf.Flow("f").add(
        L.Ok("limit", value=2, provides="limit"), L.lf.Flow("s", retry=Limited(name="r")).add(L.FailN("b", 5))
    )


def retried_flow_of_subflows(L: Lib) -> Any:
    return L.lf.Flow("f", retry=L.times(3, "r")).add(
        L.lf.Flow("s1").add(L.Ok("a")), L.uf.Flow("s2").add(L.Ok("b"), L.FailN("c", 2))
    )


def revert_in_unordered(L: Lib) -> Any:
    return L.uf.Flow("u").add(
        L.lf.Flow("s1", retry=L.retry.AlwaysRevert("r1")).add(L.Ok("a"), L.Fail("b")),
        L.lf.Flow("s2").add(L.Ok("c")),
    )


def three_levels_of_retries(L: Lib) -> Any:
    inner = L.lf.Flow("i", retry=L.retry.AlwaysRevert("ri")).add(L.Fail("x"))
    middle = L.lf.Flow("m", retry=L.retry.AlwaysRevert("rm")).add(L.Ok("b"), inner)
    return L.lf.Flow("o", retry=L.times(2, "ro")).add(L.Ok("a"), middle)


def never_resolved(L: Lib) -> Any:
    return L.lf.Flow("f", retry=L.times(3, "r")).add(L.Ok("a"), L.Fail("b"))


def empty_flows(L: Lib) -> Any:
    return L.lf.Flow("f").add(L.Ok("a"), L.uf.Flow("e"), L.Ok("b"))


def atom_inject(L: Lib) -> Any:
    return L.lf.Flow("f").add(L.Echo("a", requires=["x"], inject={"x": 1}), L.Echo("b", requires=["x"]))


def revert_failure_unordered(L: Lib) -> Any:
    return L.lf.Flow("f").add(L.Ok("z"), L.uf.Flow("u").add(L.RevertFail("a"), L.Ok("b")), L.Fail("c"))


def targeted(L: Lib) -> Any:
    flow = L.gf.TargetedFlow("t")
    a, b = L.Ok("a", value=1, provides="x"), L.Echo("b", requires=["x"], provides="y")
    flow.add(a, b, L.Ok("c"), L.Echo("d", requires=["y"]))
    flow.set_target(b)
    return flow


def targeted_in_linear(L: Lib) -> Any:
    flow = L.gf.TargetedFlow("t")
    b = L.Echo("b", requires=["x"])
    flow.add(L.lf.Flow("s").add(L.Ok("a", value=1, provides="x")), b, L.Ok("c"))
    flow.set_target(b)
    return L.lf.Flow("f").add(flow, L.Fail("z"))


def decider_raises(L: Lib) -> Any:
    a, b = L.Ok("a"), L.Ok("b")
    return L.gf.Flow("g").add(a, b).link(a, b, decider=lambda history: 1 / 0)


SCENARIOS: dict[str, tuple[Builder, dict[str, Any], bool]] = {
    "linear-success": (linear_success, {}, True),
    "linear-failure": (linear_failure, {}, True),
    "unordered-success": (unordered_success, {}, False),
    "unordered-failure": (unordered_failure, {}, False),
    "unordered-failure-first": (unordered_failure_first, {}, False),
    "active-standby-providers": (active_standby, {}, False),
    "linked-graph-providers": (linked_graph_providers, {}, True),
    "nested-unordered-providers": (nested_unordered_providers, {}, False),
    "unordered-in-linear": (unordered_in_linear, {}, False),
    "nested-linear-success": (nested_linear_success, {}, True),
    "nested-linear-failure": (nested_linear_failure, {}, True),
    "graph-inferred": (graph_inferred, {}, True),
    "graph-inferred-failure": (graph_inferred_failure, {}, True),
    "graph-diamond-failure": (graph_diamond_failure, {}, False),
    "times-recovering": (times_recovering, {}, True),
    "times-exhausted": (times_exhausted, {}, True),
    "times-in-subflow": (times_in_subflow, {}, True),
    "for-each": (for_each, {}, True),
    "for-each-exhausted": (for_each_exhausted, {}, True),
    "parameterized-for-each": (parameterized_for_each, {"store": {"values": [3, 4, 5]}}, True),
    "revert": (revert_decision, {}, True),
    "revert-defer-reverts": (revert_decision, {"defer_reverts": True}, True),
    "revert-all": (revert_all_decision, {}, True),
    "revert-then-later-failure": (revert_then_later_failure, {}, True),
    "times-revert-all": (times_revert_all, {}, True),
    "inner-revert-outer-retries": (inner_revert_outer_retries, {}, True),
    "inner-revert-outer-retries-defer": (inner_revert_outer_retries, {"defer_reverts": True}, True),
    "inner-revert-outer-exhausted": (inner_revert_outer_exhausted, {}, True),
    "inner-revert-outer-exhausted-defer": (inner_revert_outer_exhausted, {"defer_reverts": True}, True),
    "inner-revert-all-outer-times": (inner_revert_all_outer_times, {}, True),
    "nested-times-recovering": (nested_times_recovering, {}, True),
    "nested-times-exhausted": (nested_times_exhausted, {}, True),
    "nested-times-exhausted-defer": (nested_times_exhausted, {"defer_reverts": True}, True),
    "decider-yes": (lambda L: _decided(L, None, True), {}, False),
    "decider-default-depth": (lambda L: _decided(L, None, False), {}, True),
    "ignored-then-failure": (ignored_then_failure, {}, True),
    "decider-sees-history": (decider_sees_history, {}, False),
    "graph-with-retry": (graph_with_retry, {}, True),
    "unordered-with-retry": (unordered_with_retry, {}, False),
    "decider-in-retried-flow": (decider_in_retried_flow, {}, True),
    "decider-on-a-retried-subflow": (decider_on_a_retried_subflow, {}, True),
    "ignored-provider": (ignored_provider, {"store": {"x": 0}}, True),
    "for-each-with-no-values": (for_each_with_no_values, {}, True),
    "for-each-revert-all": (for_each_revert_all, {}, True),
    "on-failure-raises": (on_failure_raises, {}, True),
    "retry-value-in-nested-flow": (retry_value_in_nested_flow, {}, True),
    "retry-requiring-a-value": (retry_requiring_a_value, {}, True),
    "retried-flow-of-subflows": (retried_flow_of_subflows, {}, False),
    "revert-in-unordered": (revert_in_unordered, {}, False),
    "three-levels-of-retries": (three_levels_of_retries, {}, True),
    "three-levels-of-retries-defer": (three_levels_of_retries, {"defer_reverts": True}, True),
    "never-resolve": (never_resolved, {"never_resolve": True}, True),
    "empty-flows": (empty_flows, {}, True),
    "empty-flow": (lambda L: L.lf.Flow("f"), {}, True),
    "atom-inject": (atom_inject, {"store": {"x": 2}}, True),
    "decider-raises": (decider_raises, {}, True),
    "targeted": (targeted, {}, True),
    "targeted-in-linear": (targeted_in_linear, {}, True),
}
for _depth in ("ALL", "FLOW", "NEIGHBORS", "ATOM"):
    # Exact where one atom at a time is ready after the skip (NEIGHBORS and ATOM leave two,
    # which TaskFlow starts in set order); the skips are told in TaskFlow's order.
    SCENARIOS[f"decider-{_depth.lower()}"] = (
        lambda L, d=_depth: _decided(L, d, False),
        {},
        _depth in ("ALL", "FLOW"),
    )
    SCENARIOS[f"decider-into-subflow-{_depth.lower()}"] = (
        lambda L, d=_depth: _decided_subflow(L, d),
        {},
        True,
    )


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[str, Outcome, Outcome, bool]:
    build, options, exact = SCENARIOS[request.param]
    return request.param, run_on("taskflow", build, **options), run_on("flowkit", build, **options), exact


def test_atom_state_sequences_match_taskflow(scenario: tuple[str, Outcome, Outcome, bool]) -> None:
    _name, expected, actual, exact = scenario
    if exact:
        assert actual.events == expected.events
    else:
        assert actual.per_atom() == expected.per_atom()


def test_engine_calls_into_atoms_match_taskflow(scenario: tuple[str, Outcome, Outcome, bool]) -> None:
    _name, expected, actual, exact = scenario
    if exact:
        assert actual.calls == expected.calls
    else:
        assert actual.calls_per_atom() == expected.calls_per_atom()


def test_final_states_and_raised_exception_match_taskflow(
    scenario: tuple[str, Outcome, Outcome, bool],
) -> None:
    _name, expected, actual, _exact = scenario
    assert actual.flow_state == expected.flow_state
    assert actual.atom_states == expected.atom_states
    assert _error_summary(actual.error) == _error_summary(expected.error)


@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_flowkits_concurrent_engines_match_taskflows_serial_engine_per_atom(kind: str, name: str) -> None:
    build, options, _exact = SCENARIOS[name]
    expected, actual = run_on("taskflow", build, **options), run_on("flowkit", build, engine=kind, **options)
    assert actual.per_atom() == expected.per_atom()
    assert actual.calls_per_atom() == expected.calls_per_atom()
    assert actual.flow_state == expected.flow_state
    assert actual.atom_states == expected.atom_states
    assert _error_summary(actual.error) == _error_summary(expected.error)


PRIORITIES = {"low": -1, "mid": 0, "high": 5, "top": 10, "mid2": 0, "neg": -3}


def _prioritised(L: Lib) -> Any:
    tasks = []
    for name, priority in PRIORITIES.items():
        atom = L.Ok(name)
        atom.priority = priority
        tasks.append(atom)
    return L.lf.Flow("f").add(L.Ok("first"), L.uf.Flow("u").add(*tasks))


def _executed(outcome: Outcome) -> list[str]:
    return sorted(name for call, name in outcome.calls if call == "execute")


def test_the_serial_engine_advances_unordered_branches_in_step_as_taskflow() -> None:
    # Octavia's amphora pair: flowkit must run exactly the tasks TaskFlow runs. (What
    # TaskFlow does next is not always the same: when it happens to account for the
    # MASTER's step before the BACKUP's failure, it "reverts" the MASTER's next task,
    # which never ran. flowkit never reverts what did not run.)
    expected, actual = run_on("taskflow", amphora_pair), run_on("flowkit", amphora_pair)
    assert _executed(actual) == _executed(expected)
    assert "master-mark-amphora-allocated-in-db" not in _executed(actual)
    ran = set(_executed(actual))
    reverted = sorted(name for call, name in actual.calls if call == "revert")
    assert reverted == sorted(ran)
    assert actual.flow_state == expected.flow_state == "REVERTED"
    assert _error_summary(actual.error) == _error_summary(expected.error)
    for name, state in expected.atom_states.items():
        never_ran_but_reverted = name not in ran and state == "REVERTED"
        assert actual.atom_states[name] == ("PENDING" if never_ran_but_reverted else state)


def test_priority_orders_ready_atoms_like_taskflow() -> None:
    # Both serial engines start ready atoms highest priority first. (Among equal
    # priorities TaskFlow's order is arbitrary: set iteration.)
    def priorities(outcome: Outcome) -> list[int]:
        return [PRIORITIES[name] for call, name in outcome.calls if name in PRIORITIES]

    expected, actual = run_on("taskflow", _prioritised), run_on("flowkit", _prioritised)
    assert priorities(actual) == priorities(expected) == sorted(PRIORITIES.values(), reverse=True)


# -- suspending and resuming -------------------------------------------------------------------


def _suspend_and_resume(
    root: str, build: Builder, at: tuple[str, str], kind: str = "serial"
) -> list[Outcome]:
    """Suspend the first time atom ``at[0]`` enters state ``at[1]``, then run until done."""
    lib = Lib(root)
    flow = build(lib)
    engine = lib.engines.load(flow, engine=kind)
    suspended: list[bool] = []

    def suspend_once(state: str, details: dict[str, Any]) -> None:
        name = details.get("task_name", details.get("retry_name"))
        if (name, state) == at and not suspended:
            suspended.append(True)
            engine.suspend()

    engine.atom_notifier.register(engine.atom_notifier.ANY, suspend_once)
    runs: list[Outcome] = []
    while len(runs) < 3:
        outcome = Outcome()

        def on_atom(state: str, details: dict[str, Any], o: Outcome = outcome) -> None:
            if "old_state" in details:
                o.events.append((details.get("task_name", details.get("retry_name")), state))

        def on_flow(state: str, details: dict[str, Any], o: Outcome = outcome) -> None:
            o.events.append(("flow", state))

        engine.atom_notifier.register(engine.atom_notifier.ANY, on_atom)
        engine.notifier.register(engine.notifier.ANY, on_flow)
        try:
            engine.run()
        except Exception as err:
            outcome.error = err
        engine.atom_notifier.deregister(engine.atom_notifier.ANY, on_atom)
        engine.notifier.deregister(engine.notifier.ANY, on_flow)
        outcome.calls = [call for call in lib.journal.calls if call[0] != "on_failure"]
        lib.journal.calls.clear()
        outcome.flow_state = engine.storage.get_flow_state()
        outcome.atom_states = {name: engine.storage.get_atom_state(name) for name in _atom_names(flow)}
        runs.append(outcome)
        if outcome.flow_state != "SUSPENDED":
            break
    return runs


SUSPEND_POINTS = {
    "in-execute": (linear_failure, ("b", "RUNNING")),
    "in-revert": (linear_failure, ("b", "REVERTING")),
    "right-after-a-failure-under-a-retry": (times_recovering, ("b", "FAILURE")),
    "after-a-revert-before-retrying": (times_recovering, ("b", "REVERTED")),
    "while-retrying": (times_recovering, ("r", "RETRYING")),
    "while-an-inner-retry-retries": (nested_times_recovering, ("r2", "RETRYING")),
    "during-a-revert-decision": (revert_decision, ("c", "REVERTED")),
    "while-an-outer-retry-reverts": (inner_revert_outer_retries, ("a", "REVERTED")),
    "during-for-each": (for_each, ("b", "REVERTED")),
    # TaskFlow asks a link's decider as the source's outcome is taken in, suspend or not.
    "as-a-decided-links-source-succeeds": (lambda L: _decided(L, "FLOW", False), ("a", "SUCCESS")),
    "before-a-decided-link-into-a-sub-flow": (lambda L: _decided_subflow(L, "ATOM"), ("a", "SUCCESS")),
}


@pytest.mark.parametrize("point", sorted(SUSPEND_POINTS))
def test_suspending_and_resuming_matches_taskflow(point: str) -> None:
    # (TaskFlow asks a retry's on_failure again for a failure it had already decided on
    # when the run resumes; flowkit remembers the decision. Those calls are left out.)
    build, at = SUSPEND_POINTS[point]
    expected, actual = _suspend_and_resume("taskflow", build, at), _suspend_and_resume("flowkit", build, at)
    assert len(expected) >= 2, "the scenario must suspend"
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual, strict=True):
        assert got.events == want.events
        assert got.calls == want.calls
        assert got.flow_state == want.flow_state
        assert got.atom_states == want.atom_states
        assert _error_summary(got.error) == _error_summary(want.error)


# A retry runs in the engine's own thread on every engine kind; TaskFlow announces its
# outcome after the step's batch has started, so a suspend asked for then starts
# nothing more. In linear flows only one atom is ever ready, so the parallel engines
# of both libraries must agree on every event.
PARALLEL_SUSPEND_POINTS = {
    **SUSPEND_POINTS,
    "as-a-retry-succeeds": (times_recovering, ("r", "SUCCESS")),
    "as-an-inner-retry-succeeds": (nested_times_recovering, ("r2", "SUCCESS")),
    "as-a-for-each-retry-succeeds": (for_each, ("r", "SUCCESS")),
}


@pytest.mark.parametrize("kind", ["parallel", "asyncio"])
@pytest.mark.parametrize("point", sorted(PARALLEL_SUSPEND_POINTS))
def test_suspending_the_concurrent_engines_matches_taskflows_parallel_engine(point: str, kind: str) -> None:
    # flowkit's parallel engine started the atom after a retry (the retry runs inline)
    # although a listener had asked for a suspend as the retry finished.
    build, at = PARALLEL_SUSPEND_POINTS[point]
    expected = _suspend_and_resume("taskflow", build, at, "parallel")
    actual = _suspend_and_resume("flowkit", build, at, kind)
    assert len(expected) >= 2, "the scenario must suspend"
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual, strict=True):
        assert got.events == want.events
        assert got.calls == want.calls
        assert got.flow_state == want.flow_state
        assert got.atom_states == want.atom_states
        assert _error_summary(got.error) == _error_summary(want.error)


# -- a revert that fails ------------------------------------------------------------------------


REVERT_FAILURES = {
    "revert-failure": revert_failure,
    "revert-failure-in-retry": revert_failure_in_retry,
    "revert-failure-unordered": revert_failure_unordered,
}


@pytest.mark.parametrize("build", REVERT_FAILURES.values(), ids=REVERT_FAILURES.keys())
def test_a_failed_revert_notifies_and_ends_like_taskflow(build: Builder) -> None:
    expected, actual = run_on("taskflow", build), run_on("flowkit", build)
    assert actual.per_atom() == expected.per_atom()
    assert actual.calls_per_atom() == expected.calls_per_atom()
    if build is not revert_failure_unordered:
        assert actual.events == expected.events
        assert actual.calls == expected.calls
    assert actual.flow_state == expected.flow_state == "FAILURE"
    assert actual.atom_states == expected.atom_states


@pytest.mark.parametrize("build", REVERT_FAILURES.values(), ids=REVERT_FAILURES.keys())
def test_a_failed_revert_raises_the_reverts_own_exception_as_in_taskflow(build: Builder) -> None:
    # The failure that started the revert is not raised (it stays in storage), in both.
    expected, actual = run_on("taskflow", build), run_on("flowkit", build)
    (stuck,) = [name for name, state in actual.atom_states.items() if state == "REVERT_FAILURE"]
    assert (
        _error_summary(actual.error)
        == _error_summary(expected.error)
        == ("RuntimeError", f"{stuck} revert failed")
    )


def _flow_failures_seen(root: str) -> dict[str, list[str]]:
    """Three atoms of an unordered flow fail in one step: the ``flow_failures`` each revert gets."""
    lib = Lib(root)
    seen: dict[str, list[str]] = {}

    class Failing(lib.Fail):  # type: ignore[misc, name-defined]
        def revert(self, result: Any, flow_failures: dict[str, Any], **kwargs: Any) -> None:
            assert _result(result) == ("failure", "ValueError", f"{self.name} failed")
            seen[self.name] = sorted(flow_failures)

    engine = lib.engines.load(lib.uf.Flow("u").add(Failing("a"), Failing("b"), Failing("c")))
    with pytest.raises(lib.exceptions.WrappedFailure):
        engine.run()
    return seen


def test_a_revert_gets_every_failure_of_the_step_where_taskflow_gives_one() -> None:
    # TaskFlow 6.5 passes each revert one of the step's failures, a different one
    # from run to run; flowkit's serial engine (where the whole step fails before
    # any revert starts) passes all of them, as flow_failures is documented
    # (doc/reverting.rst, doc/migrating.rst).
    expected = _flow_failures_seen("taskflow")
    (given,) = {tuple(names) for names in expected.values()}
    assert len(given) == 1 and given[0] in ("a", "b", "c")
    assert _flow_failures_seen("flowkit") == {name: ["a", "b", "c"] for name in "abc"}


# -- run_iter and storage ----------------------------------------------------------------------


def _run_iter(root: str, build: Builder) -> list[str]:
    lib = Lib(root)
    engine = lib.engines.load(build(lib))
    seen: list[str] = []
    try:
        for state in engine.run_iter():
            seen.append(state)
    except Exception as err:
        seen.append(type(err).__name__)
    return seen


@pytest.mark.parametrize("build", [linear_success, linear_failure], ids=["success", "failure"])
def test_run_iter_yields_the_same_engine_states(build: Builder) -> None:
    assert _run_iter("flowkit", build) == _run_iter("taskflow", build)


def _run_iter_interleaved(root: str, build: Builder) -> list[Any]:
    """The yielded states with the calls the engine made between them."""
    lib = Lib(root)
    engine = lib.engines.load(build(lib))
    seen: list[Any] = []

    def calls_since() -> None:
        seen.extend(lib.journal.calls)
        lib.journal.calls.clear()

    try:
        for state in engine.run_iter():
            calls_since()
            seen.append(state)
    except Exception as err:
        seen.append(type(err).__name__)
    calls_since()
    return seen


@pytest.mark.parametrize(
    "build", [linear_success, linear_failure, times_recovering], ids=["success", "failure", "retry"]
)
def test_run_iter_runs_each_task_after_yielding_scheduling_as_taskflow(build: Builder) -> None:
    # TaskFlow's run_by_iter examples interleave engines on this: SCHEDULING is
    # yielded, then the ready work runs, then WAITING is yielded.
    expected = _run_iter_interleaved("taskflow", build)
    assert _run_iter_interleaved("flowkit", build) == expected
    assert (
        expected[:4] == ["RESUMING", "SCHEDULING", ("execute", "a"), "WAITING"] or build is times_recovering
    )


def _run_iter_suspended(root: str, build: Builder, kind: str, after: int) -> list[Any]:
    """Run with ``run_iter()``, suspend once ``after`` states were yielded: what was yielded and done."""
    lib = Lib(root)
    flow = build(lib)
    engine = lib.engines.load(flow, engine=kind)
    seen: list[Any] = []
    try:
        for state in engine.run_iter():
            seen.append(state)
            if len(seen) == after:
                engine.suspend()
    except Exception as err:
        seen.append(type(err).__name__)
    states = {name: engine.storage.get_atom_state(name) for name in _atom_names(flow)}
    return [seen, engine.storage.get_flow_state(), states, list(lib.journal.calls)]


RETRIED = {
    "times": times_recovering,
    "nested-times": nested_times_recovering,
    "for-each": for_each,
    "inner-revert-outer-retries": inner_revert_outer_retries,
}


@pytest.mark.parametrize("after", [3, 5, 7, 9, 13])
@pytest.mark.parametrize("kind", ["serial", "parallel"])
@pytest.mark.parametrize("name", sorted(RETRIED))
def test_run_iter_steps_through_retries_as_taskflow(name: str, kind: str, after: int) -> None:
    # A retry's outcome makes the next atoms ready only for the next step, as in
    # TaskFlow: flowkit's parallel engine ran the retry and started the atoms after it
    # in one SCHEDULING step, so a run_iter() suspended there had done more.
    expected = _run_iter_suspended("taskflow", RETRIED[name], kind, after)
    assert _run_iter_suspended("flowkit", RETRIED[name], kind, after) == expected


def _interrupted_then_resumed(root: str) -> tuple[list[Any], list[Any], dict[str, str]]:
    """Interrupt a persisted run with KeyboardInterrupt, then resume it with a new engine."""
    lib = Lib(root)
    backends = importlib.import_module(f"{root}.persistence.backends")
    models = importlib.import_module(f"{root}.persistence.models")
    backend = backends.fetch({"connection": "memory://"})
    interrupted: list[bool] = []

    class Interrupting(lib.Ok):  # type: ignore[misc, name-defined]
        def execute(self, **kwargs: Any) -> Any:
            lib.journal.calls.append(("execute", self.name))
            if not interrupted:
                interrupted.append(True)
                raise KeyboardInterrupt
            return self.value

    def build() -> Any:
        return lib.lf.Flow("f").add(lib.Ok("a"), Interrupting("b"), lib.Ok("c"))

    book = models.LogBook("book")
    flow_detail = models.FlowDetail("f", "7f1b59f6-5e1a-4a41-9d36-7b7a3c1f0c2e")
    book.add(flow_detail)
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
    first = lib.engines.load(build(), flow_detail=flow_detail, book=book, backend=backend)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    after_interrupt = [
        first.storage.get_flow_state(),
        first.storage.get_atom_state("b"),
        list(lib.journal.calls),
    ]
    lib.journal.calls.clear()
    with contextlib.closing(backend.get_connection()) as conn:
        stored = conn.get_logbook(book.uuid).find(flow_detail.uuid)
    second = lib.engines.load(build(), flow_detail=stored, book=book, backend=backend)
    events: list[Any] = []
    second.notifier.register(second.notifier.ANY, lambda state, details: events.append(("flow", state)))
    second.atom_notifier.register(
        second.atom_notifier.ANY,
        lambda state, details: events.append((details.get("task_name"), details.get("old_state"), state)),
    )
    second.run()
    final = {name: second.storage.get_atom_state(name) for name in ("a", "b", "c")}
    return after_interrupt, events + list(lib.journal.calls), final


def test_an_interrupted_run_is_left_running_and_resumes_as_in_taskflow() -> None:
    expected = _interrupted_then_resumed("taskflow")
    actual = _interrupted_then_resumed("flowkit")
    assert expected[0][:2] == ["RUNNING", "RUNNING"]
    assert actual == expected


def _storage_answers(root: str, build: Builder, store: dict[str, Any] | None = None) -> dict[str, Any]:
    lib = Lib(root)
    flow = build(lib)
    engine = lib.engines.load(flow, store=store)
    with contextlib.suppress(Exception):  # the storage is what is compared
        engine.run()
    storage = engine.storage

    def ask(call: Callable[[], Any]) -> Any:
        try:
            return _result(call())
        except Exception as err:
            return ("raised", type(err).__name__)

    answers: dict[str, Any] = {"fetch_all": ask(storage.fetch_all)}
    for name in _atom_names(flow):
        answers[f"state {name}"] = storage.get_atom_state(name)
        answers[f"execute {name}"] = ask(lambda n=name: storage.get_execute_result(n))
        answers[f"revert {name}"] = ask(lambda n=name: storage.get_revert_result(n))
    for symbol in ("x", "y", "s"):
        answers[f"fetch {symbol}"] = ask(lambda s=symbol: storage.fetch(s))
    answers["execute failures"] = sorted(storage.get_execute_failures())
    answers["revert failures"] = sorted(storage.get_revert_failures())
    return answers


def _values_then_failure(L: Lib) -> Any:
    return L.lf.Flow("f").add(L.Ok("a", value=1, provides="x"), L.Ok("b", value=2, provides="y"), L.Fail("c"))


def test_storage_answers_like_taskflow_after_a_successful_run() -> None:
    assert _storage_answers("flowkit", linear_success, {"s": 0}) == _storage_answers(
        "taskflow", linear_success, {"s": 0}
    )


def test_storage_answers_like_taskflow_after_a_reverted_run() -> None:
    expected = _storage_answers("taskflow", _values_then_failure, {"s": 0})
    assert _storage_answers("flowkit", _values_then_failure, {"s": 0}) == expected


def _two_providers(L: Lib) -> Any:
    return L.lf.Flow("f").add(L.Ok("a", value=1, provides="x"), L.Ok("b", value=2, provides="x"))


def test_storage_fetch_with_several_providers_matches_taskflow() -> None:
    assert _storage_answers("flowkit", _two_providers) == _storage_answers("taskflow", _two_providers)


def _neutral(value: Any) -> Any:
    """``_result`` applied inside lists, tuples and dicts (a retry's history holds failures)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_neutral(item) for item in value)
    if isinstance(value, dict):
        return {key: _neutral(item) for key, item in value.items()}
    return _result(value)


def _retried_then_succeeded(L: Lib) -> Any:
    flow = L.lf.Flow("f", retry=L.retry.ForEach([10, 20, 30], name="r", provides="x"))
    return flow.add(L.FailN("t", 2, requires=["x"]))


def _retried_then_reverted(L: Lib) -> Any:
    flow = L.lf.Flow("f", retry=L.retry.ForEach([10, 20], name="r", provides="x"))
    return flow.add(L.FailN("t", 5, requires=["x"]))


@pytest.mark.parametrize("build", [_retried_then_succeeded, _retried_then_reverted])
def test_a_retrys_execute_result_is_its_history_as_in_taskflow(build: Builder) -> None:
    # TaskFlow 6.5: get_execute_result (and get) of a retry give its whole history,
    # [(result, {atom: Failure}), ...]; fetch gives the last result. flowkit gave the
    # last result from all three.
    answers = {}
    for root in LIBRARIES:
        lib = Lib(root)
        engine = lib.engines.load(build(lib))
        with contextlib.suppress(ValueError):
            engine.run()
        storage = engine.storage
        found: dict[str, Any] = {}
        for what, call in [
            ("execute", lambda s=storage: s.get_execute_result("r")),
            ("get", lambda s=storage: s.get("r")),
            ("revert", lambda s=storage: s.get_revert_result("r")),
            ("fetch", lambda s=storage: s.fetch("x")),
        ]:
            try:
                found[what] = _neutral(call())
            except Exception as err:
                found[what] = ("raised", type(err).__name__)
        answers[root] = found
    assert answers["flowkit"] == answers["taskflow"]


@pytest.mark.parametrize("name", [7, ("a", 1)], ids=["int", "tuple"])
@pytest.mark.parametrize("alone", [True, False], ids=["atom-alone", "in-a-flow"])
def test_an_atom_name_that_is_not_a_string_runs_in_memory_as_in_taskflow(name: Any, alone: bool) -> None:
    # flowkit crashed running such an atom alone (the run is named after it).
    seen = {}
    for root in LIBRARIES:
        lib = Lib(root)
        atom = lib.Ok(name, value=5, provides="x")
        engine = lib.engines.load(atom if alone else lib.lf.Flow("f").add(lib.Ok("b"), atom))
        engine.run()
        storage = engine.storage
        seen[root] = (storage.get_atom_state(name), storage.get(name), storage.fetch_all(), lib.journal.calls)
    assert seen["flowkit"] == seen["taskflow"]


def test_engines_run_returns_what_taskflow_returns_when_store_and_a_task_share_a_symbol() -> None:
    results = {}
    for root in LIBRARIES:
        lib = Lib(root)
        results[root] = lib.engines.run(
            lib.lf.Flow("f").add(lib.Ok("a", value=2, provides="x")), store={"x": 1}
        )
    assert results["flowkit"] == results["taskflow"]


def test_store_values_shadow_task_values_for_consumers_as_in_taskflow() -> None:
    def build(L: Lib) -> Any:
        return L.lf.Flow("f").add(
            L.Ok("a", value="task", provides="x"), L.Echo("b", requires=["x"], provides="seen")
        )

    seen = {}
    for root in LIBRARIES:
        lib = Lib(root)
        engine = lib.engines.load(build(lib), store={"x": "store"})
        engine.run()
        seen[root] = engine.storage.get_execute_result("b")
    assert seen["flowkit"] == seen["taskflow"] == [("x", "store")]


def test_missing_dependencies_are_refused_by_both_before_anything_runs() -> None:
    def build(L: Lib) -> Any:
        return L.uf.Flow("u").add(L.Ok("p", provides="x"), L.Echo("use", requires=["x"]))

    for root in LIBRARIES:
        lib = Lib(root)
        with pytest.raises(lib.exceptions.MissingDependencies):
            lib.engines.load(build(lib)).run()
        assert lib.journal.calls == []


def _flows_named_like_other_items(L: Lib) -> Any:
    """A sub-flow named like a task, two sibling sub-flows named alike, one named like its parent."""
    return L.gf.Flow("top").add(
        L.Ok("a", provides="a"),
        L.lf.Flow("a").add(L.Ok("b", provides="b")),
        L.uf.Flow("a").add(L.Ok("c", provides="c")),
        L.lf.Flow("top").add(L.lf.Flow("d").add(L.Ok("d", provides="d"))),
    )


def test_flow_names_may_repeat_or_be_atom_names_as_in_taskflow() -> None:
    # TaskFlow's compile refuses two atoms of one name (Duplicate) but checks no
    # flow name: declared flows follow it (tests/declarative/test_nested.py).
    outcomes = {root: run_on(root, _flows_named_like_other_items) for root in LIBRARIES}
    expected, actual = outcomes["taskflow"], outcomes["flowkit"]
    assert expected.error is None and expected.flow_state == "SUCCESS"
    assert actual.per_atom() == expected.per_atom()
    assert (actual.error, actual.flow_state, actual.atom_states) == (None, "SUCCESS", expected.atom_states)


def test_two_atoms_of_one_name_are_refused_by_both_at_compile() -> None:
    for root in LIBRARIES:
        lib = Lib(root)
        engine = lib.engines.load(lib.gf.Flow("top").add(lib.lf.Flow("x").add(lib.Ok("a")), lib.Ok("a")))
        with pytest.raises(lib.exceptions.Duplicate, match="(?i)atoms with duplicate names found: \\['a'\\]"):
            engine.compile()
        assert lib.journal.calls == []


# -- random nested linear flows with retries --------------------------------------------------
# In linear flows only one atom is ever ready, so both libraries must agree on every event.
# A flow is described as data (``("flow", retry, children)``, ``(task_kind, fails)``) and
# built for each library from that description.

_RETRIES = st.sampled_from(
    [
        None,
        None,
        ("times", 1),
        ("times", 2),
        ("times", 3),
        ("times-revert-all", 2),
        ("always-revert",),
        ("always-revert-all",),
        ("for-each", 2),
    ]
)
_TASKS = st.one_of(
    st.tuples(st.just("ok"), st.just(0)),
    st.tuples(st.just("fail-times"), st.integers(1, 3)),
    st.tuples(st.just("fail"), st.just(0)),
    st.tuples(st.just("revert-fails"), st.just(0)),
)


def _flows(depth: int) -> Any:
    child = _TASKS if depth == 0 else st.one_of(_TASKS, _TASKS, st.deferred(lambda: _flows(depth - 1)))
    return st.tuples(st.just("flow"), _RETRIES, st.lists(child, min_size=1, max_size=4))


def _from_spec(spec: Any) -> Builder:
    def build(L: Lib) -> Any:
        counter = [0]

        def make(node: Any) -> Any:
            counter[0] += 1
            name = f"n{counter[0]}"
            if node[0] != "flow":
                return _task_from_spec(L, node, name)
            _, retry, children = node
            flow = L.lf.Flow(name, retry=_make_retry(L, retry, f"{name}_retry"))
            return flow.add(*(make(child) for child in children))

        return make(spec)

    return build


def _make_retry(L: Lib, retry: Any, name: str) -> Any:
    if retry is None:
        return None
    kind = retry[0]
    if kind == "times":
        return L.times(retry[1], name)
    if kind == "times-revert-all":
        return L.times(retry[1], name, revert_all=True)
    if kind == "always-revert":
        return L.retry.AlwaysRevert(name)
    if kind == "always-revert-all":
        return L.retry.AlwaysRevertAll(name)
    return L.retry.ForEach(list(range(retry[1])), name)


def _raised(error: BaseException | None) -> set[Any]:
    summary = _error_summary(error)
    if summary is None:
        return set()
    if summary[0] == "WrappedFailure":
        return set(summary[1])
    return {("failure", *summary)}


@pytest.mark.parametrize("kind", ["serial", "parallel"])
@settings(max_examples=60, deadline=None)
@given(spec=_flows(3), defer_reverts=st.booleans())
def test_random_nested_linear_flows_with_retries_match_taskflow(
    kind: str, spec: Any, defer_reverts: bool
) -> None:
    build = _from_spec(spec)
    expected = run_on("taskflow", build, defer_reverts=defer_reverts)
    actual = run_on("flowkit", build, engine=kind, defer_reverts=defer_reverts)
    assert actual.events == expected.events
    assert actual.calls == expected.calls
    assert actual.atom_states == expected.atom_states
    assert actual.flow_state == expected.flow_state
    _assert_raised_alike(expected, actual)


def _assert_raised_alike(expected: Outcome, actual: Outcome) -> None:
    """flowkit raised what TaskFlow raised, but for the documented differences."""
    wanted, got = _raised(expected.error), _raised(actual.error)
    assert bool(got) == bool(wanted)
    if actual.flow_state == "FAILURE":
        # A failed revert: flowkit reports the execute failure too (see above).
        assert got >= wanted
    else:
        # TaskFlow may also re-raise failures an earlier retry attempt already handled
        # (its failure cache outlives the atom being run again); flowkit reports only
        # the ones that ended the run.
        assert got <= wanted
        for stale in wanted - got:
            assert _ran_again_after(actual.events, stale), f"flowkit did not report {stale}"


def _ran_again_after(events: list[tuple[Any, ...]], failure: Any) -> bool:
    """Whether the atom that failed with ``failure`` was started again later."""
    for position, event in enumerate(events):
        if event[1] == "FAILURE" and len(event) > 3 and event[3] == failure:
            return any(later[0] == event[0] and later[1] == "RUNNING" for later in events[position:])
    return False


# -- random nested unordered, graph and linear flows with retries and failures ---------------
# Several atoms are ready at once here, so each atom's own sequence must match (TaskFlow's
# order among them is arbitrary). Links carry no deciders: whether TaskFlow runs a decider
# for a branch whose sibling failed in the same step depends on that arbitrary order
# (deciders without failures are the next test's).


def _mixed_flows(depth: int) -> Any:
    child = _TASKS if depth == 0 else st.one_of(_TASKS, _TASKS, st.deferred(lambda: _mixed_flows(depth - 1)))
    return st.tuples(
        st.sampled_from(["linear", "unordered", "graph"]),
        _RETRIES,
        st.lists(child, min_size=1, max_size=4),
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=3),
    )


def _mixed_from_spec(spec: Any) -> Builder:
    def build(L: Lib) -> Any:
        counter = [0]
        patterns = {"linear": L.lf, "unordered": L.uf, "graph": L.gf}

        def make(node: Any) -> Any:
            counter[0] += 1
            name = f"n{counter[0]}"
            if node[0] not in patterns:
                return _task_from_spec(L, node, name)
            pattern, retry, children, links = node
            flow = patterns[pattern].Flow(name, retry=_make_retry(L, retry, f"{name}_retry"))
            made = [make(child) for child in children]
            flow.add(*made)
            if pattern == "graph":
                for u, v in links:
                    if u < v < len(made):
                        flow.link(made[u], made[v])
            return flow

        return make(spec)

    return build


def _task_from_spec(L: Lib, node: Any, name: str) -> Any:
    kind, fails = node
    if kind == "ok":
        return L.Ok(name)
    if kind == "fail":
        return L.Fail(name)
    if kind == "revert-fails":
        return L.RevertFail(name)
    return L.FailN(name, fails)


def _reverted_without_running(outcome: Outcome) -> bool:
    """Whether TaskFlow reverted an atom that never ran (a documented difference, doc/migrating.rst)."""
    for name, events in outcome.per_atom().items():
        states = [event[0] for event in events]
        if name != "flow" and any(
            state == "REVERTING" and (i == 0 or states[i - 1] == "PENDING") for i, state in enumerate(states)
        ):
            return True
    return False


@settings(max_examples=60, deadline=None)
@given(spec=_mixed_flows(2))
def test_random_unordered_and_graph_flows_with_retries_and_failures_match_taskflow(spec: Any) -> None:
    build = _mixed_from_spec(spec)
    expected = run_on("taskflow", build)
    assume(type(expected.error).__name__ != "InvalidState" and not _reverted_without_running(expected))
    actual = run_on("flowkit", build)
    assert actual.per_atom() == expected.per_atom()
    assert actual.calls_per_atom() == expected.calls_per_atom()
    assert actual.atom_states == expected.atom_states
    assert actual.flow_state == expected.flow_state
    _assert_raised_alike(expected, actual)


# -- random graph flows with deciders ----------------------------------------------------------
# Nothing fails here, so which atoms run or are IGNOREd does not depend on the order of
# simultaneously ready atoms: each atom's own sequence must match.

_DECIDER = st.one_of(
    st.none(), st.tuples(st.booleans(), st.sampled_from([None, "ALL", "FLOW", "NEIGHBORS", "ATOM"]))
)


@st.composite
def _decided_graphs(draw: st.DrawFn) -> Any:
    count = draw(st.integers(2, 8))
    items = draw(
        st.lists(
            st.one_of(st.just(("task",)), st.tuples(st.just("flow"), st.integers(1, 3), st.booleans())),
            min_size=count,
            max_size=count,
        )
    )
    pairs = draw(
        st.lists(st.tuples(st.integers(0, count - 1), st.integers(0, count - 1), _DECIDER), max_size=14)
    )
    links = {(min(u, v), max(u, v)): decider for u, v, decider in pairs if u != v}
    return items, sorted(links.items())


def _graph_from_spec(spec: Any) -> Builder:
    items, links = spec

    def build(L: Lib) -> Any:
        made = []
        for position, item in enumerate(items):
            if item[0] == "task":
                made.append(L.Ok(f"t{position}"))
                continue
            _, size, nested = item
            sub = L.lf.Flow(f"F{position}").add(*(L.Ok(f"s{position}_{i}") for i in range(size)))
            if nested:
                sub.add(L.lf.Flow(f"F{position}_inner").add(L.Ok(f"s{position}_deep")))
            made.append(sub)
        graph = L.gf.Flow("g").add(*made)
        for (u, v), decider in links:
            if decider is None:
                graph.link(made[u], made[v])
            else:
                answer, depth = decider
                graph.link(made[u], made[v], decider=lambda history, a=answer: a, decider_depth=depth)
        return L.lf.Flow("top").add(L.Ok("first"), graph, L.Ok("last"))

    return build


@pytest.mark.parametrize("kind", ["serial", "parallel"])
@settings(max_examples=60, deadline=None)
@given(spec=_decided_graphs())
def test_random_graph_flows_with_deciders_ignore_what_taskflow_ignores(kind: str, spec: Any) -> None:
    build = _graph_from_spec(spec)
    expected = run_on("taskflow", build)
    # TaskFlow 6.5 itself sometimes stops such runs with InvalidState (it tries to move
    # the flow from RUNNING to SUSPENDED); it gives no answer to compare with then.
    assume(type(expected.error).__name__ != "InvalidState")
    actual = run_on("flowkit", build, engine=kind)
    assert actual.per_atom() == expected.per_atom()
    assert actual.calls_per_atom() == expected.calls_per_atom()
    assert actual.atom_states == expected.atom_states
    assert actual.flow_state == expected.flow_state
    assert _error_summary(actual.error) == _error_summary(expected.error)
