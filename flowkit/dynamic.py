"""Dynamic sub-flows: a task adds atoms to the running flow by returning them.

A task's ``execute`` may return :func:`subflow`. The engine then compiles that
flow and splices it into the running graph right after the task (the
*spawner*): everything that ran after the spawner now runs after the whole
sub-flow, and the sub-flow's task results (a list, in the order the tasks were
added) become the spawner's result::

    class FanOut(task.Task):
        def execute(self, volume_ids):
            return dynamic.subflow(unordered_flow.Flow("per-volume").add(
                *[Snapshot(name=f"snap-{v}", inject={"volume_id": v}) for v in volume_ids]))

What was spawned is recorded in the spawner's atom detail (``meta["spawned"]``),
so a run resumed after a crash rebuilds the sub-flow without running the
spawner again. To rebuild it the engine needs either a *factory* (an
importable function and JSON arguments: ``subflow(make_flow, ids)``) or a flow
it can describe itself: stock patterns of atoms whose class is importable and
that can be made again from their name, ``provides``, ``rebind`` and
``inject`` (checked when the flow is spawned, with an error naming the atom
that cannot be described). Runs kept only in memory need neither.

Bounds: spawned flows nest at most :data:`MAX_DEPTH` deep and one run spawns
at most :data:`MAX_SPAWNED` atoms; past either the spawner fails with
:class:`~flowkit.exceptions.SpawnLimitExceeded` and the flow reverts.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from flowkit import _steering
from flowkit import exceptions as exc
from flowkit import flow as flows

__all__ = ["MAX_DEPTH", "MAX_SPAWNED", "RECORD_KEY", "Collect", "Subflow", "spawnable", "subflow"]

#: The key that marks a sub-flow sent as JSON (from a worker to the engine).
RECORD_KEY = "flowkit.subflow"

#: How deep spawned flows may nest (a spawned task that spawns is one level deeper).
MAX_DEPTH = 32
#: How many atoms one run may spawn in total, over every spawner.
MAX_SPAWNED = 1_000_000


class Collect(enum.StrEnum):
    """What the spawner's result becomes once its sub-flow has finished."""

    #: The sub-flow's task results, in the order the tasks were added (default).
    LIST = "list"
    #: Task name -> result.
    DICT = "dict"
    #: Nothing (None): the sub-flow is run for its effects or what it provides.
    NONE = "none"


class Subflow:
    """What :func:`subflow` returns: a flow to splice in, and how to rebuild it.

    Attributes:
        flow: the flow to run after the spawner.
        collect: what the spawner's result becomes (:class:`Collect`).
        factory: the dotted name of the function that made the flow, or None.
        args: positional arguments the factory was called with.
        kwargs: keyword arguments the factory was called with.
    """

    __slots__ = ("args", "collect", "factory", "flow", "kwargs")

    def __init__(
        self,
        flow: flows.Flow,
        collect: Collect,
        factory: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.flow = flow
        self.collect = collect
        self.factory = factory
        self.args = list(args)
        self.kwargs = dict(kwargs or {})

    def __repr__(self) -> str:
        return f"<Subflow {self.flow.name!r} collect={self.collect.value}>"

    def to_record(self) -> dict[str, Any]:
        """This spawn as JSON values: how a worker sends it back to the engine.

        Raises:
            InvalidFlowItem: the flow was not made by a factory and cannot be
                described (see :mod:`flowkit.dynamic`).
        """
        from flowkit import _flow_codec

        record: dict[str, Any] = {RECORD_KEY: 1, "collect": self.collect.value, "factory": self.factory}
        if self.factory is not None:
            record["args"], record["kwargs"] = self.args, self.kwargs
        else:
            record["flow"] = _flow_codec.describe(self.flow)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, sender: str | None = None) -> Subflow:
        """The spawn :meth:`to_record` wrote, with its flow made again.

        Args:
            record: what :meth:`to_record` wrote.
            sender: who sent the record, for errors (a worker's answer to a
                request). A record from elsewhere is data, not code: its
                factory is called only when marked :func:`spawnable`.

        Raises:
            InvalidFormat: the record is damaged, names something that cannot
                be imported, something that is not an atom class, or (from a
                ``sender``) a factory not marked :func:`spawnable`.
        """
        from flowkit import _flow_codec

        prefix = f"{sender} sent a sub-flow, but " if sender else ""
        collect = Collect(record.get("collect", Collect.LIST))
        factory = record.get("factory")
        if isinstance(factory, str):
            try:
                # From another process: looked up, never imported (import_path says why).
                make = _flow_codec.import_path(factory, imported_only=sender is not None)
            except ImportError as err:
                hint = (
                    " (the engine imports no module a worker names: import the module defining it"
                    " in the engine's process, as the flow's own task modules are)"
                    if sender is not None
                    else ""
                )
                # import_path's words start with the name ("'pkg.make' cannot be imported ...").
                raise exc.quoting_cause(exc.InvalidFormat(f"{prefix}sub-flow factory {err}{hint}")) from err
            marked = isinstance(make, types.FunctionType | types.MethodType)
            if sender is not None and not (marked and getattr(make, _SPAWNABLE, False) is True):
                raise exc.InvalidFormat(
                    f"{prefix}its factory '{factory}' is not marked @flowkit.dynamic.spawnable: the engine"
                    " calls only factories marked so when a worker names them (doc/dynamic.rst)"
                )
            made = make(*record.get("args", ()), **record.get("kwargs", {}))
            if not isinstance(made, flows.Flow):
                raise exc.InvalidFormat(f"{prefix}sub-flow factory '{factory}' made {made!r}, not a flow")
            return cls(made, collect, factory, record.get("args", ()), record.get("kwargs"))
        try:
            return cls(_flow_codec.rebuild(dict(record["flow"]), imported_only=sender is not None), collect)
        except exc.InvalidFormat as err:
            if sender is None:
                raise
            reason = err.__cause__ or err
            raise exc.quoting_cause(
                exc.InvalidFormat(
                    f"{prefix}its description cannot be built: {type(reason).__name__}: {reason}"
                )
            ) from err


def subflow(
    flow: flows.Flow | Callable[..., flows.Flow] | str,
    *args: Any,
    collect: Collect | str = Collect.LIST,
    **kwargs: Any,
) -> Subflow:
    """Ask the engine to run ``flow`` right after the task returning this.

    Args:
        flow: a flow, or a factory making one: a module-level function or its
            dotted name (``"package.module.function"``), called with ``args`` and ``kwargs``
            (which must be JSON values, to be stored for a resume).
        args: positional arguments for the factory.
        collect: what the spawning task's result becomes (:class:`Collect`).
        kwargs: keyword arguments for the factory.

    Returns:
        The marker to return from ``execute``.

    Raises:
        InvalidFlowItem: ``flow`` is not a flow (or the factory did not make one),
            or arguments are given with a flow rather than a factory.
        ValueError: ``collect`` is not a :class:`Collect` value.
    """
    try:
        how = Collect(collect)
    except ValueError:
        choices = ", ".join(repr(c.value) for c in Collect)
        raise ValueError(f"dynamic.subflow() got collect={collect!r}; it must be one of {choices}") from None
    if isinstance(flow, flows.Flow):
        if args or kwargs:
            raise exc.InvalidFlowItem(
                f"dynamic.subflow() got arguments for flow '{flow.name}', which is not a factory",
                flow=flow.name,
                item=flow,
            )
        return Subflow(flow, how)
    from flowkit._flow_codec import callable_path, import_path

    if isinstance(flow, str):
        factory = import_path(flow)
        name = flow
    elif callable(flow) and not isinstance(flow, type):
        factory = flow
        try:
            name = callable_path(flow)
        except ValueError:
            # Not importable again (a lambda, a closure): the flow it makes is
            # recorded as a flow given directly would be.
            name = None
    else:
        raise exc.InvalidFlowItem(
            f"dynamic.subflow() needs a flow or a factory making one, not {flow!r} ({type(flow).__name__})",
            item=flow,
        )
    made = factory(*args, **kwargs)
    if not isinstance(made, flows.Flow):
        raise exc.InvalidFlowItem(
            f"factory {name or flow!r} given to dynamic.subflow() made {made!r} "
            f"({type(made).__name__}), not a flow",
            item=made,
        )
    return Subflow(made, how, name, args, kwargs)


#: The attribute :func:`spawnable` sets on a factory.
_SPAWNABLE = "__flowkit_spawnable__"

_F = TypeVar("_F", bound=Callable[..., flows.Flow])


def spawnable(factory: _F) -> _F:
    """Mark ``factory`` as one a worker's spawn may name; return it unchanged.

    A worker sends a spawn made by a factory back as the factory's dotted name
    and JSON arguments, and the engine calls that name. The worker's answer is
    data from another process (or from whoever can write to Redis), so the
    engine calls only factories marked with this decorator: an unmarked name
    (``os.system``, ``shutil.rmtree``...) fails the spawner instead of running.
    Factories called in the engine's own process (``subflow(make_flow)`` on a
    local engine, a resume from persistence) need no mark.
    """
    setattr(factory, _SPAWNABLE, True)
    return factory


_steering.STEERING[Subflow] = _steering.Steer.SPAWN
