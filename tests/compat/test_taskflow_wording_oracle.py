"""TaskFlow 6.5 as an oracle for wording: the same mistakes, made on both libraries, must read alike.

OpenStack services and their log scrapers match on the text of TaskFlow's exceptions
and log lines, so flowkit words them as TaskFlow does by default. Each case below is a
function of a library root (``"taskflow"`` or ``"flowkit"``) that makes one mistake;
the oracle runs it on both and requires that flowkit raise the same exception type (a
class of the same name, or a subclass of it) and that flowkit's ``str()`` start with
TaskFlow's text after uuids are normalised: flowkit may add detail after TaskFlow's
sentence (the flow's name, say) but never reword or recase it.

The second half compares log lines: the logging listeners and the engine's own INFO
and WARNING records on a flow that succeeds, one that fails and reverts, and one that
retries, captured on both libraries with ``caplog`` and compared by level and text
once uuids and timings are normalised.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.compat.test_taskflow_suite import load_known_differences

# Importing taskflow pulls in oslo_utils.eventletutils, which warns that it is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:oslo_utils.eventletutils")

LIBRARIES = ("taskflow", "flowkit")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMING = re.compile(r"\d+\.\d+(e-?\d+)?")
ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def mod(root: str, name: str) -> Any:
    """The module ``name`` of library ``root``."""
    return importlib.import_module(f"{root}.{name}")


def normalise(text: str) -> str:
    """Replace what differs from run to run (uuids, timings, addresses, module roots)."""
    text = UUID.sub("<uuid>", text)
    text = TIMING.sub("<t>", text)
    text = ADDRESS.sub("", text)
    return text.replace("flowkit.", "taskflow.")


def tasks(root: str) -> Any:
    """Task classes on library ``root``'s ``Task``, defined once for every case."""
    task = mod(root, "task")

    class Ok(task.Task):  # type: ignore[misc, name-defined]
        def execute(self) -> str:
            return self.name

    class Needs(task.Task):  # type: ignore[misc, name-defined]
        def execute(self, x: Any) -> Any:
            return x

    class Fail(task.Task):  # type: ignore[misc, name-defined]
        def execute(self) -> None:
            raise ValueError(f"{self.name} failed")

    class Ns:
        pass

    ns = Ns()
    ns.Ok, ns.Needs, ns.Fail = Ok, Needs, Fail  # type: ignore[attr-defined]
    return ns


Case = Callable[[str], Any]
CASES: dict[str, Case] = {}
# Case -> the words after which TaskFlow's message is another library's text (stevedore's,
# jsonschema's, or a list of the names TaskFlow itself takes): only TaskFlow's own words,
# up to and including these, are compared.
OWN_WORDS: dict[str, str] = {}
# Cases flowkit words otherwise on purpose: listed as ``wording::<case>`` in
# taskflow_known_differences.txt (only its two allowed kinds); strict xfails, so a
# listed case that starts matching shows.
KNOWN: dict[str, str] = {
    case.removeprefix("wording::"): reason
    for case, reason in load_known_differences().items()
    if case.startswith("wording::")
}


def case(func: Case | None = None, *, upto: str = "") -> Any:
    """Register a wording case (``@case``, or ``@case(upto=...)``)."""

    def register(func: Case) -> Case:
        CASES[func.__name__] = func
        if upto:
            OWN_WORDS[func.__name__] = upto
        return func

    return register(func) if func is not None else register


def run(root: str, flow: Any, **options: Any) -> None:
    mod(root, "engines").load(flow, **options).run()


def lf(root: str, name: str = "f") -> Any:
    return mod(root, "patterns.linear_flow").Flow(name)


def uf(root: str, name: str = "u") -> Any:
    return mod(root, "patterns.unordered_flow").Flow(name)


def gf(root: str, name: str = "g") -> Any:
    return mod(root, "patterns.graph_flow").Flow(name)


def loaded(root: str, *atoms: Any) -> Any:
    """A compiled and prepared engine over a linear flow of ``atoms``."""
    engine = mod(root, "engines").load(lf(root).add(*atoms))
    engine.compile()
    engine.prepare()
    return engine


# -- requirements and provides ----------------------------------------------------------------


@case
def missing_requirement(root: str) -> None:
    T = tasks(root)
    run(root, lf(root).add(T.Needs("a")))


@case
def missing_requirement_single_task(root: str) -> None:
    mod(root, "engines").run(tasks(root).Needs("a"))


@case
def missing_requirement_unordered(root: str) -> None:
    T = tasks(root)
    run(root, uf(root).add(T.Ok("a"), T.Needs("b", rebind={"x": "z"})))


@case
def missing_requirement_validate(root: str) -> None:
    T = tasks(root)
    engine = mod(root, "engines").load(lf(root).add(T.Needs("a"), T.Needs("b", rebind={"x": "y"})))
    engine.compile()
    engine.prepare()
    engine.validate()


@case
def extra_rebind_mapping(root: str) -> None:
    tasks(root).Needs("a", rebind={"x": "x", "z": "w"})


@case
def extra_rebind_list(root: str) -> None:
    tasks(root).Needs("a", rebind=["p", "q"])


@case
def rebind_bad_type(root: str) -> None:
    tasks(root).Needs("a", rebind=42)


@case
def requires_bad_type(root: str) -> None:
    tasks(root).Ok("a", requires=42)


@case
def duplicate_provides_unordered(root: str) -> None:
    T = tasks(root)
    uf(root).add(T.Ok("a", provides="x"), T.Needs("b"))


@case
def unordered_requires_sibling(root: str) -> None:
    T = tasks(root)
    uf(root).add(T.Needs("b"), T.Ok("a", provides="x"))


@case
def inject_atom_args_unknown(root: str) -> None:
    loaded(root, tasks(root).Ok("a")).storage.inject_atom_args("nope", {"x": 1})


@case
def duplicate_names_linear(root: str) -> None:
    T = tasks(root)
    run(root, lf(root).add(T.Ok("a"), T.Ok("a")))


@case
def duplicate_names_nested(root: str) -> None:
    T = tasks(root)
    run(root, lf(root).add(T.Ok("a"), uf(root).add(T.Ok("b"), T.Ok("a"))))


@case
def duplicate_flow_names(root: str) -> None:
    T = tasks(root)
    run(root, lf(root, "x").add(T.Ok("a"), lf(root, "x").add(T.Ok("b"))))


# -- graph flows ------------------------------------------------------------------------------


@case
def graph_link_unknown_source(root: str) -> None:
    T = tasks(root)
    a, b = T.Ok("a"), T.Ok("b")
    gf(root).add(b).link(a, b)


@case
def graph_link_unknown_target(root: str) -> None:
    T = tasks(root)
    a, b = T.Ok("a"), T.Ok("b")
    gf(root).add(a).link(a, b)


@case
def graph_link_cycle(root: str) -> None:
    T = tasks(root)
    a, b = T.Ok("a"), T.Ok("b")
    gf(root).add(a, b).link(a, b).link(b, a)


@case
def graph_self_link(root: str) -> None:
    T = tasks(root)
    a = T.Ok("a")
    gf(root).add(a).link(a, a)


@case
def graph_requires_cycle(root: str) -> None:
    T = tasks(root)
    task = mod(root, "task")

    class Y(task.Task):  # type: ignore[misc, name-defined]
        def execute(self, y: Any) -> Any:
            return y

    gf(root).add(T.Needs("a", provides="y"), Y("b", provides="x"))


@case
def graph_duplicate_provides(root: str) -> None:
    T = tasks(root)
    gf(root).add(T.Ok("a", provides="x"), T.Ok("b", provides="x"))


@case
def graph_link_unknown_decider_depth(root: str) -> None:
    # flowkit said "unknown decider depth 'bogus'; ...", not TaskFlow's sentence.
    T, flow = tasks(root), gf(root)
    a, b = T.Ok("a"), T.Ok("b")
    flow.add(a, b).link(a, b, decider=lambda history: True, decider_depth="bogus")


@case
def graph_link_decider_not_callable(root: str) -> None:
    # flowkit said "a decider must be callable, not 5".
    T, flow = tasks(root), gf(root)
    a, b = T.Ok("a"), T.Ok("b")
    flow.add(a, b).link(a, b, decider=5)


@case
def graph_link_decider_depth_bad_type(root: str) -> None:
    T, flow = tasks(root), gf(root)
    a, b = T.Ok("a"), T.Ok("b")
    flow.add(a, b).link(a, b, decider=lambda history: True, decider_depth=3)


@case
def graph_add_non_atom(root: str) -> None:
    gf(root).add("not an atom")


# TaskFlow's linear and unordered flows take anything at add() and fail at compile;
# flowkit refuses the item at add(), in the words TaskFlow uses at compile.
@case
def linear_add_non_atom(root: str) -> None:
    run(root, lf(root).add(42))


@case
def unordered_add_non_atom(root: str) -> None:
    run(root, uf(root).add(object()))


# -- retries ----------------------------------------------------------------------------------


@case
def retry_foreach_bad_values(root: str) -> None:
    T = tasks(root)
    retry = mod(root, "retry")
    run(root, lf(root).add(T.Ok("a")).__class__("r", retry.ForEach(42, "fe")).add(T.Ok("a")))


@case
def retry_times_exhausted(root: str) -> None:
    T = tasks(root)
    retry = mod(root, "retry")
    run(root, mod(root, "patterns.linear_flow").Flow("r", retry.Times(2, "t")).add(T.Fail("a")))


@case
def retry_parameterized_foreach_missing(root: str) -> None:
    T = tasks(root)
    retry = mod(root, "retry")
    run(root, mod(root, "patterns.linear_flow").Flow("r", retry.ParameterizedForEach("p")).add(T.Ok("a")))


@case
def retry_bad_rebind(root: str) -> None:
    mod(root, "retry").Times(2, "t", rebind={"nope": "x"})


@case
def retry_revert_all_failure(root: str) -> None:
    T = tasks(root)
    retry = mod(root, "retry")
    inner = mod(root, "patterns.linear_flow").Flow("i", retry.AlwaysRevertAll("ra")).add(T.Fail("a"))
    run(root, lf(root).add(inner))


@case
def retry_unknown_decision(root: str) -> None:
    # flowkit said only "'bogus' is not a valid Decision", naming neither the retry
    # nor what a decision may be.
    retry = mod(root, "retry")

    class Undecided(retry.Times):  # type: ignore[misc, name-defined]
        def on_failure(self, *args: Any, **kwargs: Any) -> str:
            return "bogus"

    run(root, mod(root, "patterns.linear_flow").Flow("r", Undecided(2, "u")).add(tasks(root).Fail("a")))


# -- engines ----------------------------------------------------------------------------------


@case
def unknown_engine(root: str) -> None:
    mod(root, "engines").load(lf(root).add(tasks(root).Ok("a")), engine="bogus")


@case(upto="Could not import factory 'nomod_zz.nope':")
def load_from_factory_unknown_name(root: str) -> None:
    # flowkit said "flow factory 'nomod_zz.nope' cannot be imported" (the rest of
    # TaskFlow's line is Python's or oslo's text).
    mod(root, "engines").load_from_factory("nomod_zz.nope")


def _detail(root: str, meta: dict[str, Any] | None) -> Any:
    flow_detail = mod(root, "persistence.models").FlowDetail("nightly", str(uuid.uuid4()))
    flow_detail.meta = meta
    return flow_detail


@case
def flow_from_detail_without_factory(root: str) -> None:
    # flowkit quoted the name and put its own words before TaskFlow's.
    mod(root, "engines").flow_from_detail(_detail(root, {}))


@case
def flow_from_detail_unknown_factory(root: str) -> None:
    mod(root, "engines").flow_from_detail(_detail(root, {"factory": {"name": "nomod_zz.nope"}}))


@case(upto="expected one of")
def unknown_executor(root: str) -> None:
    mod(root, "engines").load(lf(root).add(tasks(root).Ok("a")), engine="parallel", executor="bogus")


@case(upto="expected an instance of")
def executor_bad_type(root: str) -> None:
    mod(root, "engines").load(lf(root).add(tasks(root).Ok("a")), engine="parallel", executor=42)


@case
def engine_bad_store(root: str) -> None:
    engine = mod(root, "engines").load(lf(root).add(tasks(root).Needs("a")), store={"y": 1})
    engine.run()


# -- storage ----------------------------------------------------------------------------------


@case
def storage_fetch_unknown(root: str) -> None:
    loaded(root, tasks(root).Ok("a")).storage.fetch("nope")


@case
def storage_get_unknown(root: str) -> None:
    loaded(root, tasks(root).Ok("a")).storage.get("nope")


@case
def storage_get_atom_state_unknown(root: str) -> None:
    loaded(root, tasks(root).Ok("a")).storage.get_atom_state("nope")


@case
def storage_get_revert_result_unknown(root: str) -> None:
    loaded(root, tasks(root).Ok("a")).storage.get_revert_result("nope")


@case
def storage_save_unknown(root: str) -> None:
    loaded(root, tasks(root).Ok("a")).storage.save("nope", 1)


@case
def storage_fetch_unfinished(root: str) -> None:
    loaded(root, tasks(root).Ok("a", provides="x")).storage.fetch("x")


@case
def storage_set_atom_state_unknown(root: str) -> None:
    loaded(root, tasks(root).Ok("a")).storage.set_atom_state("nope", "PENDING")


@case
def storage_fetch_mapped_unknown(root: str) -> None:
    loaded(root, tasks(root).Ok("a")).storage.fetch_mapped_args({"x": "nope"})


# -- notifiers --------------------------------------------------------------------------------


@case
def notifier_not_callable(root: str) -> None:
    mod(root, "types.notifier").Notifier().register("ev", 42)


@case
def notifier_bad_filter(root: str) -> None:
    mod(root, "types.notifier").Notifier().register("ev", print, details_filter=42)


@case
def notifier_twice(root: str) -> None:
    notifier = mod(root, "types.notifier").Notifier()
    notifier.register("ev", print)
    notifier.register("ev", print)


@case
def restricted_notifier_unknown_event(root: str) -> None:
    mod(root, "types.notifier").RestrictedNotifier(["a"]).register("b", print)


@case
def listener_register_twice(root: str) -> None:
    listeners = mod(root, "listeners.logging")
    engine = mod(root, "engines").load(lf(root).add(tasks(root).Ok("a")))
    listeners.LoggingListener(engine).register()
    listener = listeners.LoggingListener(engine)
    listener.register()
    listener.register()


# -- persistence ------------------------------------------------------------------------------


@contextlib.contextmanager
def memory_conn(root: str) -> Iterator[Any]:
    backend = mod(root, "persistence.backends").fetch({"connection": "memory://"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
        yield conn


@case
def logbook_unknown(root: str) -> None:
    with memory_conn(root) as conn:
        conn.get_logbook("00000000-0000-0000-0000-000000000000")


@case
def flow_detail_unknown(root: str) -> None:
    with memory_conn(root) as conn:
        conn.get_flow_details("00000000-0000-0000-0000-000000000000")


@case
def atom_detail_unknown(root: str) -> None:
    with memory_conn(root) as conn:
        conn.get_atom_details("00000000-0000-0000-0000-000000000000")


@case
def destroy_logbook_unknown(root: str) -> None:
    with memory_conn(root) as conn:
        conn.destroy_logbook("00000000-0000-0000-0000-000000000000")


@case
def update_flow_details_unknown(root: str) -> None:
    models = mod(root, "persistence.models")
    with memory_conn(root) as conn:
        conn.update_flow_details(models.FlowDetail("fd", "00000000-0000-0000-0000-000000000001"))


@case(upto="Could not find backend bogus: No '")
def persistence_unknown_backend(root: str) -> None:
    mod(root, "persistence.backends").fetch({"connection": "bogus://x"})


# -- jobboards and conductors -----------------------------------------------------------------


@case
def jobboard_unknown_kind(root: str) -> None:
    mod(root, "jobs.backends").fetch("b", {"board": "bogus"})


@case
def conductor_unknown_kind(root: str) -> None:
    mod(root, "conductors.backends").fetch("bogus", "c", None)


@case
def conductor_bad_wait_timeout(root: str) -> None:
    mod(root, "conductors.backends").fetch("nonblocking", "c", None, wait_timeout="abc")


@case
def conductor_not_a_board(root: str) -> None:
    mod(root, "conductors.backends").fetch("blocking", "c", "not a board").run(max_dispatches=1)


@contextlib.contextmanager
def sqlite_conn(root: str) -> Iterator[Any]:
    """A connection to a new SQLite file (TaskFlow's SQL backend words its lookups plainly)."""
    with tempfile.TemporaryDirectory() as where:
        url = f"sqlite:///{where}/{root}.db"
        backend = mod(root, "persistence.backends").fetch({"connection": url})
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
            yield conn
        backend.close()


@case
def sql_logbook_unknown(root: str) -> None:
    with sqlite_conn(root) as conn:
        conn.get_logbook("00000000-0000-0000-0000-000000000000")


@case
def sql_flow_detail_unknown(root: str) -> None:
    with sqlite_conn(root) as conn:
        conn.get_flow_details("00000000-0000-0000-0000-000000000000")


@case
def sql_atom_detail_unknown(root: str) -> None:
    with sqlite_conn(root) as conn:
        conn.get_atom_details("00000000-0000-0000-0000-000000000000")


@case
def sql_destroy_logbook_unknown(root: str) -> None:
    with sqlite_conn(root) as conn:
        conn.destroy_logbook("00000000-0000-0000-0000-000000000000")


# -- Failure and exceptions -------------------------------------------------------------------


def failure_of(root: str, error: BaseException) -> Any:
    try:
        raise error
    except BaseException:
        return mod(root, "types.failure").Failure()


@case
def failure_reraise(root: str) -> None:
    failure_of(root, ValueError("boom")).reraise()


@case
def failure_no_exc_info(root: str) -> None:
    mod(root, "types.failure").Failure()


@case
def failure_reraise_many(root: str) -> None:
    failure = mod(root, "types.failure").Failure
    failure.reraise_if_any([failure_of(root, ValueError("a")), failure_of(root, KeyError("b"))])


@case
def failure_str(root: str) -> None:
    raise RuntimeError(str(failure_of(root, ValueError("boom"))))


@case
def failure_pformat(root: str) -> None:
    raise RuntimeError(failure_of(root, ValueError("boom")).pformat())


@case(upto="Failure data not of the expected format:")
def failure_validate_bad(root: str) -> None:
    mod(root, "types.failure").Failure.validate({"exc_type_names": []})


@case
def failure_from_dict_bad(root: str) -> None:
    mod(root, "types.failure").Failure.from_dict({"version": 99})


@case
def wrapped_failure_str(root: str) -> None:
    exceptions = mod(root, "exceptions")
    raise exceptions.WrappedFailure([failure_of(root, ValueError("a")), failure_of(root, KeyError("b"))])


@case
def exception_pformat_with_cause(root: str) -> None:
    exceptions = mod(root, "exceptions")
    try:
        try:
            raise ValueError("inner")
        except ValueError as err:
            raise exceptions.ExecutionFailure("outer", cause=err) from err
    except exceptions.ExecutionFailure as err:
        raise RuntimeError(err.pformat()) from None


@case
def missing_dependencies_own_str(root: str) -> None:
    raise mod(root, "exceptions").MissingDependencies("who", ["a", "b"], cause=None, method="execute")


@case
def missing_dependencies_no_method(root: str) -> None:
    raise mod(root, "exceptions").MissingDependencies("who", ["a"])


@case
def not_implemented_error(root: str) -> None:
    raise mod(root, "exceptions").NotImplementedError("nope")


@case
def disallowed_transition(root: str) -> None:
    loaded(root, tasks(root).Ok("a")).storage.set_flow_state("SUCCESS")


def _same_type(expected: type[BaseException], got: type[BaseException]) -> bool:
    """``got`` is TaskFlow's type (a builtin) or a subclass of a class named as TaskFlow's."""
    if expected.__module__ == "builtins":
        return issubclass(got, expected)
    return any(klass.__name__ == expected.__name__ for klass in got.__mro__)


def outcome(root: str, name: str) -> BaseException | None:
    try:
        CASES[name](root)
    except BaseException as err:
        return err
    return None


def own_words(name: str, text: str) -> str:
    """TaskFlow's own sentence: its first line (the rest is the chain of causes), cut at ``upto``."""
    first = text.split("\n", 1)[0]
    upto = OWN_WORDS.get(name)
    if upto:
        assert upto in first, f"{name}: TaskFlow no longer says {upto!r}: {first!r}"
        first = first[: first.index(upto) + len(upto)]
    return first


def test_enough_cases() -> None:
    assert len(CASES) - len(KNOWN) >= 40
    assert not set(KNOWN) - set(CASES), "listed wording cases that no longer exist"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN[name]))
        if name in KNOWN
        else name
        for name in sorted(CASES)
    ],
)
def test_exception_wording(name: str) -> None:
    expected, got = (outcome(root, name) for root in LIBRARIES)
    if expected is None:
        assert got is None, f"TaskFlow accepts this, flowkit raises {got!r}"
        return
    assert got is not None, f"TaskFlow raises {expected!r}, flowkit accepts it"
    assert _same_type(type(expected), type(got)), f"{type(expected)} != {type(got)}"
    want, have = own_words(name, normalise(str(expected))), normalise(str(got))
    assert have.startswith(want), f"\nTaskFlow: {want!r}\nflowkit:  {have!r}"


# -- log lines --------------------------------------------------------------------------------

ENGINE_REPR = re.compile(r"<taskflow\.engines\.[\w.]+ object>")


def scenario(root: str, kind: str) -> Any:
    """A flow that succeeds (``ok``), fails and reverts (``fail``), or retries then reverts (``retry``)."""
    T = tasks(root)
    linear = mod(root, "patterns.linear_flow")
    if kind == "ok":
        return linear.Flow("f").add(T.Ok("a"), T.Ok("b"))
    if kind == "fail":
        return linear.Flow("f").add(T.Ok("a"), T.Fail("b"))
    return linear.Flow("f", mod(root, "retry").Times(2, "t")).add(T.Ok("a"), T.Fail("b"))


def log_lines(root: str, kind: str, listener: str, caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """Run ``scenario(kind)`` on ``root`` under ``listener`` (or none) and return its log lines.

    Kept: every line of the library's listeners, and the engine's own lines at INFO and
    above (TaskFlow's DEBUG lines are its engine's internals). The engine's class differs
    by design (its repr is the LoggingListener's first word), so it reads ``<engine>``.
    """
    caplog.clear()
    engine = mod(root, "engines").load(scenario(root, kind))
    with caplog.at_level(logging.DEBUG, logger=root), contextlib.suppress(ValueError):
        if listener:
            with getattr(mod(root, "listeners.logging"), listener)(engine):
                engine.run()
        else:
            engine.run()
    return [
        (record.levelname, ENGINE_REPR.sub("<engine>", normalise(record.getMessage())))
        for record in caplog.records
        if record.name.split(".")[0] == root
        and (".listeners." in record.name or record.levelno >= logging.INFO)
    ]


@pytest.mark.parametrize("kind", ["ok", "fail", "retry"])
@pytest.mark.parametrize("listener", ["", "LoggingListener", "DynamicLoggingListener"])
def test_log_lines(kind: str, listener: str, caplog: pytest.LogCaptureFixture) -> None:
    expected = log_lines("taskflow", kind, listener, caplog)
    got = log_lines("flowkit", kind, listener, caplog)
    if listener:
        assert expected, "the listener logged nothing: the capture is broken"
    assert got == expected


@pytest.mark.parametrize("kind", ["ok", "fail", "retry"])
def test_capture_listener_values(kind: str) -> None:
    """The CaptureListener records the same (name, state) sequence on both libraries."""

    def values(root: str) -> list[Any]:
        engine = mod(root, "engines").load(scenario(root, kind))
        with (
            mod(root, "listeners.capturing").CaptureListener(engine) as capture,
            contextlib.suppress(ValueError),
        ):
            engine.run()
        # The details' engine, uuids and results are each library's own objects: compare
        # the keys and the names and states they give.
        return [
            (
                what,
                state,
                sorted(details),
                [details.get(key) for key in ("flow_name", "task_name", "retry_name", "old_state")],
            )
            for what, state, details in capture.values
        ]

    assert values("flowkit") == values("taskflow")


# -- jobboards (a real Redis server) ----------------------------------------------------------


@contextlib.contextmanager
def redis_board(root: str, redis_url: str, namespace: str) -> Iterator[Any]:
    """A connected Redis jobboard of library ``root`` in its own namespace."""
    host, port = redis_url.split("//", 1)[1].split("/", 1)[0].split(":")
    conf = {"board": "redis", "host": host, "port": int(port), "namespace": namespace}
    board = mod(root, "jobs.backends").fetch(f"wording-{root}", conf)
    board.connect()
    try:
        yield board
    finally:
        board.close()


def claim_claimed(board: Any) -> None:
    job = board.post("j")
    board.claim(job, "me")
    board.claim(job, "you")


def consume_unowned(board: Any) -> None:
    job = board.post("j")
    board.claim(job, "me")
    board.consume(job, "you")


def consume_unclaimed(board: Any) -> None:
    board.consume(board.post("j"), "me")


def abandon_unowned(board: Any) -> None:
    job = board.post("j")
    board.claim(job, "me")
    board.abandon(job, "you")


def abandon_unclaimed(board: Any) -> None:
    board.abandon(board.post("j"), "me")


def trash_unowned(board: Any) -> None:
    job = board.post("j")
    board.claim(job, "me")
    board.trash(job, "you")


BOARD_CASES: dict[str, Callable[[Any], None]] = {
    func.__name__: func
    for func in (
        claim_claimed,
        consume_unowned,
        consume_unclaimed,
        abandon_unowned,
        abandon_unclaimed,
        trash_unowned,
    )
}


@pytest.mark.parametrize("name", sorted(BOARD_CASES))
def test_jobboard_wording(name: str, redis_url: str) -> None:
    errors: list[BaseException | None] = []
    for root in LIBRARIES:
        with redis_board(root, redis_url, f"wording-{name}-{uuid.uuid4().hex}") as board:
            try:
                BOARD_CASES[name](board)
            except Exception as err:
                errors.append(err)
            else:
                errors.append(None)
    expected, got = errors
    assert expected is not None, f"TaskFlow accepts {name}"
    assert got is not None, f"TaskFlow raises {expected!r}, flowkit accepts it"
    assert _same_type(type(expected), type(got)), f"{type(expected)} != {type(got)}"
    want, have = own_words(name, normalise(str(expected))), normalise(str(got))
    assert have.startswith(want), f"\nTaskFlow: {want!r}\nflowkit:  {have!r}"
