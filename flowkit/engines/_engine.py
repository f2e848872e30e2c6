"""The action engine: one run loop shared by every engine kind.

An engine kind is a *driver*: it decides where calls run (inline, on a pool, on an
event loop) and how the loop waits for them. Everything else (compiling,
validation, the state machine of a run, re-raising) is here, once.

A run cycles through TaskFlow's engine states, which :meth:`ActionEngine.run_iter`
yields: RESUMING once, then SCHEDULING (start what is ready), WAITING (collect
finished calls), ANALYZING (account for them), until nothing is left; then the
final flow state.
"""

from __future__ import annotations

import _thread  # threading's Lock, without importing threading (start-up time)
import contextlib
import functools
import sys
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from itertools import pairwise
from types import FunctionType
from typing import TYPE_CHECKING, Any, ClassVar, is_typeddict

from flowkit import exceptions as exc
from flowkit import states as st
from flowkit._utils import reflection
from flowkit._utils.gc_pause import gc_paused
from flowkit._utils.lazy_logging import module_logger
from flowkit.atom import Atom, check_switch
from flowkit.engines import _compiler
from flowkit.engines._compiler import Node
from flowkit.engines._runtime import Call, Completion, Runtime, call_outcome
from flowkit.engines._scheduler import REVERT
from flowkit.engines.base import Engine
from flowkit.storage import Storage
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    from flowkit._utils.asyncio_bridge import EventLoopThread
    from flowkit.engines._completions import Completions
    from flowkit.engines._deciding import IgnoreCause
    from flowkit.engines._missing import Gap
    from flowkit.engines._protocols import Driver  # a Protocol: type checkers only
    from flowkit.engines._reverting import RevertCause
    from flowkit.engines._splice import SpawnedEdges
    from flowkit.engines._timeouts import Timer

__all__ = [
    "MAX_WORKERS",
    "ActionEngine",
    "Completion",
    "DispatchingDriver",
    "call_outcome",
    "may_check_types",
    "may_guard",
    "option_flag",
    "positive_workers",
]

_LOG = module_logger(__name__)
# A run that ends in FAILURE is logged where TaskFlow's engine logs it, in its words.
_ENGINE_LOG = module_logger("flowkit.engines.action_engine.engine")
#: Engine state changes kept for that log line (TaskFlow's MAX_MACHINE_STATES_RETAINED).
MAX_MACHINE_STATES_RETAINED = 10

#: The most workers an engine may be asked for. Threads are started only as work
#: arrives, but a process pool starts all of its processes, and a number this large
#: is a typo or an attack more often than a plan; above it loading is refused.
MAX_WORKERS = 1024


_NO_RERAISE = frozenset({st.SUCCESS, st.SUSPENDED})
#: Annotations of ``execute`` that are not argument types for :mod:`flowkit.typed`.
_NOT_INPUTS = frozenset({"return", "self"})


def _declares_alone(cls: type) -> bool:
    """Whether ``cls`` takes its arguments the default way from a plain ``execute`` function.

    Then what :mod:`flowkit.typed` reads of it is that function's ``__annotations__``,
    which the checks below read without importing ``typed``. Any other class
    (function tasks, adapters, an own ``__flowkit_contract__``) is left to ``typed``.
    """
    return (
        getattr(cls, "_arg_sources", None) is Atom._arg_sources
        and not hasattr(cls, "__flowkit_contract__")
        and type(getattr(cls, "execute", None)) is FunctionType
    )


def _check_switch(options: dict[str, Any], name: str, engine: str, *, unset: bool) -> bool | None:
    """Refuse an on/off engine option that is not a bool; 0 and 1 (an engine URI's) become one.

    Read by truth, ``check_types="no"`` would check and ``validate_types="no"``
    be ignored: the opposite of what the words ask, without a word.

    Args:
        unset: whether None is a value of its own (the option's default).

    Returns:
        The option's value: True, False, or None when unset.
    """
    value = options.get(name)
    if value is None and (unset or name not in options):
        return None
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        options[name] = bool(value)  # read as ``is True`` by the guards, which read the options
        return bool(value)
    allowed = "True, False or None" if unset else "True or False"
    raise exc.InvalidEngineOption(f"{name} must be {allowed}, not {value!r}", engine=engine, option=name)


def _takes_anything(execute: Callable[..., Any], arg: str) -> bool:
    """Whether ``execute`` annotates ``arg`` as ``Any`` or ``object``, read without resolving it.

    A string annotation (``from __future__ import annotations``) is read as
    :mod:`flowkit.typed` reads a plain one (:func:`~flowkit._utils.reflection.plain_type`),
    or as ``typing.`` and a name; anything else is not known to take anything.
    """
    annotation = execute.__annotations__[arg]
    if isinstance(annotation, str) and annotation.startswith("typing."):
        annotation = getattr(execute.__globals__.get("typing"), annotation[len("typing.") :], None)
    else:
        annotation = reflection.plain_type(execute, annotation)
    return annotation is Any or annotation is object


def may_check_types(nodes: Iterable[Node], classes: Iterable[type]) -> bool:
    """Whether :func:`flowkit.typed.check_compilation` may find an edge to check among ``nodes``.

    It compares a provider's result type with the consumer's annotation of the
    argument it feeds, so it has something to do only where an ``execute``
    annotates an argument that another atom provides (or its ``**kwargs``,
    which types every extra argument, and one is fed), and only if the flow's
    annotations name more than one class: where all of them name one plain
    class (a pipeline passing ``int``, or ``DataFrame``, from task to task),
    every edge gives what it reads and none can mismatch. Worked out per class
    (``classes``: those of ``nodes``' atoms) from the annotations, read as
    ``typed`` reads a plain one, without importing it: a flow of tasks that
    annotate their results only, or arguments fed by the store, or one type
    throughout, pays a look or two per class and no walk over its edges.
    """
    annotated: dict[type, set[str] | None] = {}
    # What the annotations in play name (reflection.NOT_PLAIN: something only typed can read).
    named: set[Any] = set()
    for cls in classes:
        if not _declares_alone(cls):
            return True
        execute = cls.execute  # type: ignore[attr-defined]
        annotations = execute.__annotations__
        if "return" in annotations:
            named.add(reflection.plain_type(execute, annotations["return"]))
        names = annotations.keys() - _NOT_INPUTS
        if not names:
            continue
        var_keyword = reflection.inspect_callable(execute).var_keyword
        if var_keyword is not None and var_keyword in names and _takes_anything(execute, var_keyword):
            names.discard(var_keyword)  # ``**kwargs: Any`` declares nothing (as typed reads it)
            if not names:
                continue
        named.update(reflection.plain_type(execute, annotations[name]) for name in names)
        # An annotated ``**kwargs`` types every extra argument: any fed one is checked.
        annotated[cls] = None if var_keyword in names else names
    if not annotated:
        return False
    if len(named) == 1:
        (only,) = named
        # A plain class's result gives no item a type of its own (a TypedDict's does).
        if only is not reflection.NOT_PLAIN and not is_typeddict(only):
            return False
    for node in nodes:
        cls = type(node.atom)
        if cls in annotated:
            names = annotated[cls]
            for plan in node.exec_args:
                if plan.provider >= 0 and (names is None or plan.arg in names):
                    return True
    return False


def may_guard(nodes: Iterable[Node], classes: Iterable[type], options: Mapping[str, Any]) -> bool:
    """Whether :func:`flowkit._guards.build` may find an atom to guard among ``nodes``.

    Without a cache, a guard validates a result or turns arguments into pydantic
    models. Unless pydantic is imported or ``validate_types=True`` asks for every
    annotated result, a result is validated only for a task whose
    ``validate_types`` is True (an attribute of the task or its class), and only
    if its ``execute`` declares a result (a retry's never is): a flow of annotated tasks pays one
    attribute look per atom of such a class, and a flow of plain tasks none.
    """
    if options.get("cache") is not None or options.get("validate_types") is True or "pydantic" in sys.modules:
        return True
    returning = {
        cls
        for cls in classes
        if not _declares_alone(cls) or "return" in cls.execute.__annotations__  # type: ignore[attr-defined]
    }
    if not returning:
        return False
    for node in nodes:
        # A retry is never validated (nor cached): its validate_types means nothing
        # here, and a class ported from TaskFlow may use the name for its own ends.
        if type(node.atom) in returning and node.kind != _compiler.RETRY:
            own = getattr(node.atom, "validate_types", None)
            # Checked here too, as typed.validator_for does: read as ``is True``, a
            # "yes" would be ignored without a word in a run with no other guard.
            if own is not None and check_switch(node.name, "validate_types", own, "doc/typed.rst"):
                return True
    return False


#: How many type mismatches a run that is not refused names in its log, one warning each.
_MISMATCHES_LOGGED = 10


def _check_types(
    compilation: _compiler.Compilation | SpawnedEdges,
    replaced: Callable[[Node, str], bool],
    classes: Iterable[type],
    flow_name: str,
    *,
    refuse: bool,
    told: set[str] | None = None,
) -> None:
    """Compare the flow's declared types (:mod:`flowkit.typed`): refuse a mismatch, or warn and go on.

    TaskFlow reads no annotations: a flow whose annotations contradict each
    other (``-> str | None`` feeding a ``str`` its author knows is set) runs
    there, and by default runs here too, each mismatch logged as a warning.
    ``check_types=True`` or ``strict=True`` (``refuse``) makes the first one a
    :class:`~flowkit.exceptions.TypeMismatch` before anything runs. ``told``:
    the mismatches logged already (a sub-flow spawned again in each round of a
    loop or a retry logged the same warnings every round); those are not again.
    """
    from flowkit import typed

    found = typed.type_mismatches(compilation, replaced, classes)
    if refuse:
        for mismatch in found:
            raise mismatch
        return
    if told is not None:
        found = (mismatch for mismatch in found if str(mismatch) not in told)
    for count, mismatch in enumerate(found):
        if count == _MISMATCHES_LOGGED:
            more = 1 + sum(1 for _ in found)
            _LOG.warning("flow '%s': %d more type mismatches not shown", flow_name, more)
            break
        if told is not None:
            told.add(str(mismatch))
        _LOG.warning(
            "flow '%s': %s; running it anyway, as TaskFlow would "
            "(check_types=True or strict=True refuses it)",
            flow_name,
            mismatch,
        )


def _without_run_options(nodes: Iterable[Node], options: Mapping[str, Any]) -> bool:
    """Whether neither the engine's options nor any atom of ``nodes`` sets a timeout or a concurrency key.

    Then :func:`flowkit.engines._task_options.read_task_options` would find
    nothing to read, and the engine does not import it (most flows: a pass over
    the atoms reading the two attributes it would read first).
    """
    if options.get("default_timeout") is not None or options.get("concurrency_limits") is not None:
        return False
    for node in nodes:
        atom: Any = node.atom  # an atom node's: never None
        if atom.timeout is not None or atom.concurrency_key is not None:
            return False
    return True


def _guard_spawned(
    validate_types: bool | None, nodes: Sequence[Node], everyone: Mapping[int, Any]
) -> dict[int, Any]:
    """The guards of atoms spawned at run time: validation and model arguments, never the cache.

    Spawned atoms are not cached (``doc/dynamic.rst``); their results and model
    arguments are treated as those of atoms loaded up front. A spawn of atoms that
    declare nothing costs the same pass over their classes as :func:`may_guard`.
    """
    options = {"validate_types": validate_types}
    classes = {type(node.atom) for node in nodes}
    if not may_guard(nodes, classes, options):
        return {}
    from flowkit import _guards

    return _guards.guard_nodes(nodes, validate_types, None, everyone, classes)


def _check_spawned(
    replaced: Callable[[Node, str], bool], flow_name: str, refuse: bool, told: set[str], edges: SpawnedEdges
) -> None:
    """Check the declared types of a sub-flow about to be spliced in, as the compile checks the flow's.

    Each edge into a spawned atom is checked, from a provider inside its
    sub-flow or in the running flow; with ``refuse`` the first mismatch is
    raised (the spawner fails, before any spawned task runs), else each is
    logged and the run goes on, as TaskFlow would. A spawn of atoms that
    declare nothing costs a pass over their arguments' providers' classes.
    """
    nodes = edges.nodes
    classes = {type(node.atom) for node in edges.atoms}
    classes.update(
        type(nodes[plan.provider].atom)
        for node in edges.atoms
        for plan in node.exec_args
        if plan.provider >= 0
    )
    if may_check_types(edges.atoms, classes):
        _check_types(edges, replaced, classes, flow_name, refuse=refuse, told=told)


class DispatchingDriver:
    """A driver that hands calls elsewhere and hears back through a completion queue.

    Subclasses say where a call goes (:meth:`dispatch`). Retries always run inline,
    in the engine thread: they only decide, and their decisions steer the scheduler.
    """

    #: Where a retry's coroutine runs, if it has one (None: the shared loop thread).
    bridge: EventLoopThread | None = None

    def __init__(self) -> None:
        from flowkit.engines._completions import Completions  # not the serial engine's: imported here

        self._done = Completions()

    @property
    def in_flight(self) -> int:
        return self._done.in_flight

    @property
    def completions(self) -> Completions:
        return self._done

    def open(self, runtime: Runtime) -> None:
        """Get ready for a run (start pools, loops...)."""

    def schedule(self, runtime: Runtime) -> None:
        next_item = runtime.next_item
        timeouts = runtime.timeouts
        done = self._done
        # With durable storage, every ready atom's state is written (one flush)
        # before any of their calls is made.
        held: list[tuple[_compiler.Node, int, Call]] | None = [] if runtime.state.durable else None
        # Retries run here, in the engine's thread, once the step's other calls are
        # started: what a retry makes ready waits for the next step, as in TaskFlow
        # (whose step starts its batch before it accounts for any outcome). So the
        # states run_iter() yields match, and a suspend asked for as a retry
        # finishes starts nothing more.
        retries: list[tuple[_compiler.Node, int, Call]] | None = None
        while (item := next_item()) is not None:
            node, action = item
            call = runtime.begin_or_fail(node, action)
            if call is None:
                continue
            if node.kind == _compiler.RETRY:
                if retries is None:
                    retries = []
                retries.append((node, action, call))
            elif held is not None:
                held.append((node, action, call))
            else:
                done.in_flight += 1  # done.started(), inline: once per call
                if timeouts and action != REVERT and node.index in timeouts:
                    self.dispatch_timed(runtime, node, action, call, timeouts[node.index])
                else:
                    self.dispatch(done, node, action, call)
        if held:
            runtime.state.flush()
            for node, action, call in held:
                done.started()
                if timeouts and action != REVERT and node.index in timeouts:
                    self.dispatch_timed(runtime, node, action, call, timeouts[node.index])
                else:
                    self.dispatch(done, node, action, call)
        if retries is not None:
            for node, action, call in retries:
                runtime.complete(node, action, *call_outcome(call, self.bridge))

    def dispatch(self, done: Completions, node: _compiler.Node, action: int, call: Call) -> Any:
        """Start ``call`` somewhere; its outcome must reach ``done`` exactly once.

        Returns:
            A future of the call, if there is one (a timed call is cancelled through it).
        """
        raise NotImplementedError

    def dispatch_timed(
        self, runtime: Runtime, node: _compiler.Node, action: int, call: Call, seconds: float
    ) -> None:
        """Start a call that may run ``seconds``; past that the atom fails with TaskTimeout.

        This default counts from now (the call is handed over) and cancels the
        returned future, if any, on time-out; drivers that know when the call
        really starts, or can stop it better, override it.
        """
        timed = runtime.timed_calls().call(self._done, node, action, seconds)
        timed.arm()
        future = self.dispatch(timed, node, action, call)  # type: ignore[arg-type]
        if future is not None:
            timed.attach(future.cancel)

    def wait(self, timeout: float | None) -> list[Completion]:
        return self._done.take(timeout)

    def close(self) -> None:
        """Release what :meth:`open` took."""


def option_flag(options: Mapping[str, Any], name: str, default: bool) -> bool:
    """The yes/no engine option ``name``, read as TaskFlow reads its flags.

    Options often come from configuration files, where a flag is the text
    ``"false"`` or ``"no"``: ``bool()`` of such a text is True, so
    ``never_resolve="false"`` left a failed flow unreverted. A bool is taken as
    it is, anything else by its text (:func:`~flowkit._utils.switches.read_switch`).
    A text that is no yes/no word (``None``, ``2``, ``"maybe"``) is false, as
    TaskFlow's ``bool_from_string`` makes it; a warning names it unless it is None.
    """
    value = options.get(name, default)
    if value is True or value is False:
        return value  # the common case: the switch reader's module is not even imported
    from flowkit._utils.switches import read_switch

    switch = read_switch(value)
    if switch is None:
        if value is not None:
            _LOG.warning("engine option %s=%r is not a yes/no word: false, as TaskFlow takes it", name, value)
        return False
    return switch


def positive_workers(options: Mapping[str, Any], kind: str) -> int | None:
    """The ``max_workers`` option, checked: None or an int from 1 to :data:`MAX_WORKERS`.

    A text that ``int()`` reads (``"4"``, from a configuration file) is taken as
    that number, as TaskFlow's engines take it.

    Raises:
        InvalidEngineOption: any other value.
    """
    workers = options.get("max_workers")
    if isinstance(workers, str):
        with contextlib.suppress(ValueError):  # other text is refused below, quoted as given
            workers = int(workers)
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise exc.InvalidEngineOption(
            f"max_workers must be a positive int, not {workers!r}", engine=kind, option="max_workers"
        )
    if workers is not None and workers > MAX_WORKERS:
        raise exc.InvalidEngineOption(
            f"max_workers={workers} is more than the {MAX_WORKERS} workers an engine may have",
            engine=kind,
            option="max_workers",
        )
    return workers


class ActionEngine(Engine):
    """An engine whose calls are made by a :class:`Driver`.

    Options every kind takes: ``defer_reverts`` (a REVERT decision defers to the
    enclosing retry instead of reverting only its own scope), ``never_resolve``
    (do not revert on failure: stop and end in FAILURE), ``inject_transient``
    (atom ``inject=`` values are not persisted; default True),
    ``gather_statistics`` (default True), ``check_types`` (compare the
    ``execute`` annotations of providers and consumers when compiling: by
    default a mismatch is logged as a warning and the flow runs, as TaskFlow,
    which reads no annotations, runs it; True refuses it with TypeMismatch
    before anything runs, False skips the comparison; see :mod:`flowkit.typed`),
    ``validate_types`` (check results against their annotations: True, False,
    or by default pydantic models only),
    ``cache`` (a cache store or URL for tasks marked ``cache = True``, see
    :mod:`flowkit.cache`), ``strict`` (refuse what TaskFlow lets run but is
    likely a mistake: options the engine kind does not take, several
    equally near providers of an argument, which raise AmbiguousDependency at
    compile time, and, unless ``check_types`` says otherwise, annotations
    that contradict each other; default False), ``default_timeout`` (seconds any task's
    execute may run unless it sets its own ``timeout``; see
    ``doc/timeouts.rst``), ``concurrency_limits`` (concurrency key -> most
    calls at once; see ``doc/limits.rst``), ``clock`` (what loop delays and
    task timeouts are measured with: an object with ``monotonic()``, plus
    ``sleep(seconds)`` for loops and ``call_later(seconds, callback)``
    returning a handle with ``cancel()`` for timeouts; tests pass one they
    move by hand).
    """

    kind: ClassVar[str] = "action"
    #: Whether the calls this engine makes run the tasks (so :attr:`trace_sources`
    #: makes their span current around them); not where a request carries the
    #: context to a remote worker instead.
    _calls_traced_here: ClassVar[bool] = True
    OPTIONS: ClassVar[frozenset[str]] = frozenset(
        {
            "defer_reverts",
            "never_resolve",
            "inject_transient",
            "gather_statistics",
            "check_types",
            "validate_types",
            "cache",
            "strict",
            "default_timeout",
            "concurrency_limits",
            "clock",
        }
    )

    def __init__(
        self,
        flow: Any,
        flow_detail: Any = None,
        backend: Any = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(flow, flow_detail, backend, options)
        # Each on/off option is read once, here or where it is used, by one of two readers:
        # - option_flag, leniently, as TaskFlow reads its flags (oslo's bool_from_string):
        #   TaskFlow's defer_reverts, never_resolve, inject_transient, gather_statistics,
        #   and flowkit's strict, documented with them since configuration files give it
        #   as text too. "false" is false and a word that is neither is false with a
        #   warning, so a configuration TaskFlow runs runs the same here.
        # - _check_switch, strictly, for flowkit's own check_types and validate_types:
        #   None is a value of theirs (the default: warn, or pydantic models only), which
        #   a lenient reader would turn into False, and TaskFlow has no reading to match,
        #   so a non-bool is refused at load rather than guessed at.
        #: ``strict``: refuse what TaskFlow lets run but is likely a mistake.
        self._strict = option_flag(self._options, "strict", False)
        unknown = sorted(set(self._options) - self.OPTIONS)
        if unknown:
            # TaskFlow passes options it does not know through (programs pass their
            # own); strict=True refuses them, since a misspelt one is silently lost.
            message = f"{self.kind} engine does not take option(s) {unknown}; it takes {sorted(self.OPTIONS)}"
            if self._strict:
                raise exc.InvalidEngineOption(message, engine=self.kind, option=unknown[0])
            _LOG.warning("%s (kept in engine.options; strict=True refuses them)", message)
        if flow_detail is None and backend is not None:
            # Made directly rather than by engines.load(): file the run the same way.
            from flowkit.engines.helpers import _new_flow_detail

            flow_detail = _new_flow_detail(flow, None, backend)
        if flow_detail is None:
            # A run in memory is named after its flow (or lone atom). An atom's name
            # need not be a string (TaskFlow takes any); the run's name is its text.
            name = getattr(flow, "name", None)
            if name is None:
                name = type(flow).__name__
            flow_detail = name if isinstance(name, str) else str(name)
        self._storage = Storage(flow_detail, backend=backend)
        self._compilation: _compiler.Compilation | None = None
        self._runtime: Runtime | None = None
        #: Functions ``(atom name) -> traceparent or None`` (the last one added
        #: wins): a task's execute and revert run with that trace context current,
        #: on whatever executor runs them. ``TracingListener`` adds itself here.
        self.trace_sources: list[Callable[[str], str | None]] = []
        self._prepared = False
        #: ``engines.load``'s ``inject=``, known before the compile that checks it
        #: and given to the atoms' records only after (see :meth:`expect_inject`).
        self._load_inject: Mapping[str, Mapping[str, Any]] = {}
        self._lock = _thread.allocate_lock()
        self._statistics: dict[str, Any] = {}
        self._gather = option_flag(self._options, "gather_statistics", True)
        self._check_options()
        # A bad value is refused here, at load, before a persisted run is written:
        # not at the first run() (the limits below are checked at load the same way).
        if self._options.get("default_timeout") is not None:
            from flowkit.engines import _task_options  # only with the option (first-load cost)

            _task_options.check_default_timeout(self._options["default_timeout"], self.kind)
        #: ``check_types``: True refuses contradicting annotations, False skips the
        #: comparison, None (the default) warns, or refuses when :attr:`_strict`.
        self._check_types = _check_switch(self._options, "check_types", self.kind, unset=True)
        # Read from the options by the guards (flowkit._guards), which are built from them.
        _check_switch(self._options, "validate_types", self.kind, unset=True)
        if self._options.get("cache") is not None:
            # Checked (not opened) now, so a bad URL fails load, before anything runs.
            from flowkit.cache._stores import check_target

            check_target(self._options["cache"])
        if self._options.get("concurrency_limits") is not None:
            # Compiled now rather than at the first run (it is compiled once either
            # way), so a concurrency key the limits do not name fails at load.
            self.compile()

    def _check_options(self) -> None:
        """Check the options of this engine kind (raise InvalidEngineOption); a hook."""

    # -- properties ---------------------------------------------------------------

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def statistics(self) -> dict[str, Any]:
        return self._statistics

    @property
    def compilation(self) -> _compiler.Compilation | None:
        """The compiled execution graph (None before :meth:`compile`)."""
        return self._compilation

    # -- the steps before running -------------------------------------------------------

    def revert_cause(self, atom_name: str) -> RevertCause | None:
        """Which failure, and which retry's decision about it, made ``atom_name`` revert or reset.

        The engine's own account of its latest revert (or, for a retry's scope,
        reset) in the current or last run; None when it has none (the atom was
        not reverted in this engine's runs). The causal event log reads it, so
        ``flowkit flows why`` names the failure that did it even when several
        failures overlap.
        """
        runtime = self._runtime
        return None if runtime is None else runtime.cause_of(atom_name)

    def ignore_cause(self, atom_name: str) -> IgnoreCause | None:
        """Which link's decider skipped ``atom_name`` (IGNORE), and at what depth.

        The engine's own account of its latest skip of that atom in the current
        or last run; None when it has none. The causal event log reads it, so
        ``flowkit flows why`` names the link (and the atom whose result the
        decider judged) also for atoms a depth skipped behind the link's target.
        """
        runtime = self._runtime
        return None if runtime is None else runtime.ignore_cause_of(atom_name)

    def compile(self) -> None:
        if self._compilation is not None:
            return
        # The compilation and the runtime's per-node state are big and long-lived:
        # no point in the collector walking them while they are made.
        with gc_paused():
            compilation = _compiler.compile_flow(self._flow, strict=self._strict)
            # Type checks and guards (validation, caching) import their modules only
            # for flows that can use them: most flows pay one pass over the atoms here.
            nodes = compilation.atoms
            classes = {type(node.atom) for node in nodes}
            check_types = self._check_types
            if check_types is not False and may_check_types(nodes, classes):
                refuse = check_types is True or (check_types is None and self._strict)
                _check_types(compilation, self._injected_for, classes, self._flow.name, refuse=refuse)
            self._runtime = Runtime(
                compilation,
                self._storage,
                self._atom_notifier,
                defer_reverts=option_flag(self._options, "defer_reverts", False),
                never_resolve=option_flag(self._options, "never_resolve", False),
                clock=self._options.get("clock"),
            )
        if may_guard(nodes, classes, self._options):
            from flowkit import _guards

            self._runtime.guards = _guards.build(compilation, self._options, classes)
        self._runtime.guard_spawned = functools.partial(_guard_spawned, self._options.get("validate_types"))
        if check_types is not False:
            refuse = check_types is True or (check_types is None and self._strict)
            self._runtime.check_spawned = functools.partial(
                _check_spawned, self._injected_for, self._flow.name, refuse, set()
            )
        if self._calls_traced_here:
            self._runtime.trace_sources = self.trace_sources
        if _without_run_options(nodes, self._options):
            self._runtime.timer = self._timer(False)
        else:
            from flowkit.engines import _task_options  # timeouts or limits only (first-load cost)

            task_options = _task_options.read_task_options(compilation, self._options, self.kind)
            self._runtime.timeouts = task_options.timeouts
            self._runtime.keys = task_options.keys
            self._runtime.limits = task_options.limits
            self._runtime.default_timeout = task_options.default_timeout
            self._runtime.timer = self._timer(bool(task_options.timeouts or task_options.default_timeout))
        self._compilation = compilation
        run = self._storage.run_state
        run.scope = lambda atom_name, symbol: compilation.visible_provider(atom_name, symbol, run.has_result)

    def expect_inject(self, inject: Mapping[str, Mapping[str, Any]]) -> None:
        """Say which per-atom values ``engines.load``'s ``inject=`` gives, before the compile.

        They reach the atoms' records only once the flow is compiled and
        prepared, but the compile's type check must already know them: an
        injected value replaces the provider's result (see
        :func:`~flowkit.engines._validating.injected_for`).
        """
        self._load_inject = inject

    def _injected_for(self, node: Node, symbol: str) -> bool:
        """Whether an injected value gives ``node``'s atom ``symbol`` (the compile's type check asks).

        Asked only of an edge whose types do not match, so a typed flow that
        checks clean never loads :mod:`~flowkit.engines._validating` (the
        first-load cost, ``doc/benchmarks.rst``).
        """
        from flowkit.engines import _validating

        return _validating.injected_for(
            node, symbol, run_state=self._storage.run_state, load_inject=self._load_inject
        )

    def _timer(self, needed: bool) -> Timer | None:
        """What this engine measures task timeouts with (the ``clock`` option; None: real time).

        Args:
            needed: some task has a timeout, so a clock that cannot time one is
                an error (otherwise it may be a clock for loops only).
        """
        clock = self._options.get("clock")
        if clock is None:
            return None
        missing = [name for name in ("monotonic", "call_later") if not callable(getattr(clock, name, None))]
        if missing and not needed:
            return None
        if missing:
            raise exc.InvalidEngineOption(
                f"clock must have monotonic() and call_later(seconds, callback) to time tasks; "
                f"{clock!r} lacks {missing}",
                engine=self.kind,
                option="clock",
            )
        return clock  # type: ignore[no-any-return]

    def prepare(self) -> None:
        self.compile()
        if not self._prepared:
            self._change_state(st.RESUMING)
            transient = option_flag(self._options, "inject_transient", True)
            storage = self._storage
            run_state = storage.run_state
            assert self._runtime is not None
            # The runtime reaches each record by node index from here on.
            records = self._runtime.records
            nodes = self._compiled().atoms
            if run_state.durable:
                from flowkit.engines import _validating  # loaded by a persisted run (first-load cost)

                _validating.check_stored_names(nodes, run_state.flow_name)
            with gc_paused(), run_state.batch():
                made = run_state.ensure_all(
                    [node.atom for node in nodes], [node.kind == _compiler.RETRY for node in nodes]
                )
                for node, record in zip(nodes, made, strict=True):
                    records[node.index] = record
                    atom = node.atom
                    if atom.inject:  # type: ignore[union-attr]
                        storage.inject_atom_args(node.name, atom.inject, transient=transient)  # type: ignore[union-attr]
            self._change_state(st.SUSPENDED)
            self._prepared = True
        if self._storage.get_flow_state() == st.REVERTED:
            self.reset()

    def validate(self) -> None:
        """Raise MissingDependencies for the flow when an atom has an unsatisfiable argument."""
        self.prepare()
        store = self._storage.run_state.store
        records = self._storage.run_state.records
        found: list[Gap] = []
        # Only arguments no atom provides depend on injected values; the compiler
        # listed those per atom, so a fully wired flow is checked in no time.
        for node in self._compiled().open_atoms:
            injected = records[node.name].injected or {}
            execute, revert = (
                {
                    p.symbol
                    for p in plans
                    if not p.optional
                    and p.provider < 0
                    and p.symbol not in store
                    and p.symbol not in injected
                }
                for plans in (node.exec_args, node.revert_args)
            )
            if execute or revert:
                from flowkit.engines._missing import Gap  # only on this failure (first-load cost)

                found.append(Gap(node, execute, revert))
        if found:
            from flowkit.engines._missing import missing_error

            raise missing_error(self._flow, found)

    def _compiled(self) -> _compiler.Compilation:
        if self._compilation is None:
            raise exc.InvalidState("the engine has not been compiled yet")
        return self._compilation

    # -- running ----------------------------------------------------------------------------

    def _make_driver(self) -> Driver:
        raise NotImplementedError

    def run(self, timeout: float | None = None) -> None:
        self._take_run_lock()
        try:
            self._run_held(timeout)
        finally:
            self._lock.release()

    def _take_run_lock(self) -> None:
        """Take the lock a run holds, or raise: one run at a time per engine."""
        if not self._lock.acquire(blocking=False):
            # TaskFlow's sentence first (services match on it), then which engine.
            raise exc.ExecutionFailure(
                "Engine currently locked, please try again later: the engine of flow "
                f"'{self._storage.flow_name}' is already running; wait for it to finish"
            )

    def _run_held(self, timeout: float | None) -> None:
        """What :meth:`run` does once it holds the run lock."""
        # Nobody watches the steps: only the final state is yielded (three
        # generator round trips per step are a tenth of a serial task's cost).
        for _state in self._steps(timeout, emit=False):
            pass

    def run_iter(self, timeout: float | None = None) -> Generator[str, Any, None]:
        return self._steps(timeout, emit=True)

    def _steps(self, timeout: float | None, emit: bool) -> Generator[str, Any, None]:
        """The run's states (:meth:`_machine`), closing the backend :func:`~flowkit.engines.load` made.

        A backend given as a configuration dict is made for this engine alone
        and nobody else can close it: each run left its connections (a pooled
        SQL connection, a ZooKeeper client and its threads) open until the
        cyclic collector freed it. Closed once the run ends; a later run or
        read reopens them.
        """
        if not self._closes_backend:
            return self._machine(timeout, emit)
        return self._closing(self._machine(timeout, emit))

    def _closing(self, steps: Generator[str, Any, None]) -> Generator[str, Any, None]:
        try:
            yield from steps
        finally:
            backend = self._backend
            if backend is not None:
                backend.close()

    def _machine(self, timeout: float | None, emit: bool) -> Generator[str, Any, None]:
        """The run's state machine; ``emit``: yield every engine state (run_iter), not just the last."""
        self.compile()
        self.prepare()
        self.validate()
        runtime = self._runtime
        assert runtime is not None
        driver = self._make_driver()
        started = time.perf_counter()
        # From here until runtime.finish() writes wait for the drivers' flush before
        # each call: the flow's RUNNING state goes with the first atom's, one write.
        self._storage.run_state.batching = True
        runtime.steps_watched = emit
        self._change_state(st.RUNNING)
        try:
            runtime.start()
            # Progress reported in other threads reaches the records through the queue.
            runtime.relay_progress(driver.completions)
            driver.open(runtime)
        except BaseException:
            runtime.finish(best_effort=True)
            raise
        storage = self._storage
        run = storage.run_state
        scheduler = runtime.scheduler
        closed = False
        collected: list[Completion] = []
        has_ready = runtime.has_ready
        # The states gone through, for the log line of a run ending in FAILURE.
        visited = deque(["UNDEFINED"], maxlen=MAX_MACHINE_STATES_RETAINED + 1)
        remember = visited.append
        try:
            state = st.RESUMING
            while True:
                remember(state)
                # Yield the state, then do its work (TaskFlow's machine reacts to a
                # state after announcing it). A truthy value sent in (or closing the
                # iterator) asks for a suspend, which lets running atoms finish first.
                if emit and not closed:
                    try:
                        sent = yield state
                    except GeneratorExit:
                        closed, sent = True, True
                    if sent:
                        self.suspend()
                if state == st.SCHEDULING:
                    if run.flow_state == st.RUNNING and not scheduler.halted:
                        driver.schedule(runtime)
                    state = st.WAITING
                elif state == st.WAITING:
                    if driver.in_flight:
                        # A loop flow may be spliced in mid-run: runtime.loops is read each time.
                        loops = runtime.loops
                        budget = loops.wait_budget(timeout) if loops is not None and loops.timers else timeout
                        collected = driver.wait(budget)
                    state = st.ANALYZING
                elif state == st.ANALYZING:
                    if collected:
                        for node, action, ok, value in collected:
                            runtime.complete(node, action, ok, value)
                        collected = []
                    loops = runtime.loops
                    if loops is not None and loops.timers:
                        loops.wake_due()
                    if run.flow_state == st.RUNNING and not scheduler.halted and has_ready():
                        state = st.SCHEDULING
                    elif driver.in_flight:
                        state = st.WAITING
                    elif (
                        loops is not None
                        and loops.timers
                        and run.flow_state == st.RUNNING
                        and not scheduler.halted
                        and loops.sleep_until_due()
                    ):
                        # Nothing else can move: wait out a loop's delay.
                        state = st.SCHEDULING
                    else:
                        break
                else:  # RESUMING: the runtime already took up the stored states
                    state = st.SCHEDULING
            final = self._final_state(runtime)
        except BaseException as err:
            driver.close()
            runtime.finish(best_effort=True)
            if isinstance(err, Exception):
                # An interrupt (KeyboardInterrupt, SystemExit) leaves the flow RUNNING,
                # as TaskFlow does: the run did not fail, it was stopped; resuming
                # takes it RUNNING -> RESUMING -> SUSPENDED -> RUNNING.
                with contextlib.suppress(Exception):  # the error being raised says more
                    self._change_state(st.FAILURE)
            raise
        finally:
            if self._gather:
                self._statistics = {
                    "active_for": time.perf_counter() - started,
                    "completed": runtime.completed,
                    "discarded_failures": scheduler.resolved_failures,
                    "incomplete": driver.in_flight,
                }
        driver.close()
        runtime.finish()
        if final == st.FAILURE:
            # As TaskFlow: a run that could not be reverted raises what stopped the
            # revert (a revert's own exception), not the failure that started it;
            # that one stays in storage.get_execute_failures(). And as TaskFlow's, the
            # engine raises it instead of yielding FAILURE, logging an ERROR first.
            failures = list(runtime.retained) or self._failures(storage, runtime)
            if failures:
                try:
                    Failure.reraise_if_any(failures)
                except Exception:
                    states = [*visited, "GAME_OVER", st.FAILURE]
                    _ENGINE_LOG.exception(
                        "Engine execution has failed, something bad must have happened"
                        " (last %s machine transitions were %s)",
                        MAX_MACHINE_STATES_RETAINED,
                        list(pairwise(states))[-MAX_MACHINE_STATES_RETAINED:],
                    )
                    self._change_state(final)
                    raise
        if not closed:
            try:
                yield final
            except GeneratorExit:
                closed = True
        self._change_state(final)
        if final not in _NO_RERAISE:
            Failure.reraise_if_any(self._failures(storage, runtime))

    @staticmethod
    def _failures(storage: Storage, runtime: Runtime) -> list[Failure]:
        """What a run that did not succeed raises: its atoms' failures, then those it kept aside."""
        failures = list(storage.get_execute_failures().values())
        failures.extend(storage.get_revert_failures().values())
        failures.extend(f for f in runtime.retained if f not in failures)
        return failures

    def _final_state(self, runtime: Runtime) -> str:
        scheduler = runtime.scheduler
        if scheduler.halted:
            return st.FAILURE
        records = scheduler.records
        atom_states = [records[n.index].state for n in self._compiled().atoms]
        if all(s in (st.SUCCESS, st.IGNORE) for s in atom_states):
            return st.SUCCESS
        if self._storage.get_flow_state() == st.SUSPENDING and self._work_left(runtime):
            return st.SUSPENDED
        # Nothing was left to do when the suspend came: the revert had finished.
        return st.REVERTED

    @staticmethod
    def _work_left(runtime: Runtime) -> bool:
        """Tell whether a suspended run stopped before its end (something could still run or revert)."""
        from flowkit.engines import _suspending  # loaded when a run is suspended (first-load cost)

        return _suspending.work_left(runtime)

    def suspend(self) -> None:
        self._change_state(st.SUSPENDING)

    def reset(self) -> None:
        if not self._prepared:
            self.prepare()
        assert self._runtime is not None
        self._runtime.reset_all()
        self._change_state(st.PENDING)

    def _change_state(self, state: str) -> None:
        moved, old = self._storage.change_flow_state(state)
        if moved and self._notifier.has_listeners:
            if self._notifier.has_user_listeners:
                # As TaskFlow, and as the runtime does for an atom's change: stored
                # before a user's listener is told (a run batches its writes otherwise).
                self._storage.run_state.flush()
            self._notifier.notify(
                state,
                {
                    "engine": self,
                    "flow_name": self._storage.flow_name,
                    "flow_uuid": self._storage.flow_uuid,
                    "old_state": old,
                },
            )
