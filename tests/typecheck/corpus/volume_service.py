"""A TaskFlow-style volume service written against flowkit, as TaskFlow users write it.

Type-checked with ``mypy --strict`` by tests/typing/test_user_code.py and never
run: every statement here is a correct program that a type checker must accept.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent import futures
from typing import Any, assert_type

from flowkit import engines, exceptions, retry, states, task
from flowkit.listeners import base as listeners_base
from flowkit.listeners import logging as logging_listeners
from flowkit.listeners import timing
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from flowkit.types import failure

LOG = logging.getLogger(__name__)


class VolumeRecord:
    """What the service's database keeps for a volume."""

    def __init__(self, volume_id: str, size: int) -> None:
        self.volume_id = volume_id
        self.size = size


class ExtractVolumeRequest(task.Task):
    """Reads the request; what it provides is listed on the class."""

    default_provides = {"size", "volume_type"}

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"size": int(request["size"]), "volume_type": request.get("type", "lvm")}


class CreateVolumeRecord(task.Task):
    """Writes the database row, and deletes it again on revert."""

    default_provides = "volume"

    def __init__(self, db: dict[str, VolumeRecord], **kwargs: Any) -> None:
        super().__init__(name="create_record", **kwargs)
        self.db = db

    def execute(self, size: int, volume_type: str) -> VolumeRecord:
        record = VolumeRecord(f"vol-{len(self.db)}", size)
        self.db[record.volume_id] = record
        return record

    def revert(
        self, result: VolumeRecord | failure.Failure, flow_failures: dict[str, failure.Failure], **kwargs: Any
    ) -> None:
        if isinstance(result, failure.Failure):
            LOG.warning("record was never made: %s", result.exception_str)
            return
        for name, cause in flow_failures.items():
            LOG.error("%s failed: %s", name, cause.exception_str)
        self.db.pop(result.volume_id, None)


class AllocateSpace(task.Task):
    """Asks a backend for space; reports progress as it goes."""

    default_provides = ("host", "pool")
    version = (1, 2)

    def execute(self, volume: VolumeRecord, *, retries: int = 3) -> tuple[str, str]:
        self.update_progress(0.5)
        return "host-1", f"pool-{volume.size}"

    def revert(self, *args: Any, **kwargs: Any) -> None:
        LOG.info("releasing %s", kwargs.get("result"))


class Notify(task.Task):
    """Tells the user; takes its inputs as keywords only, and ignores any extra."""

    def execute(self, *, volume: VolumeRecord, host: str, **kwargs: Any) -> None:
        LOG.info("created %s on %s", volume.volume_id, host)


class AuditListener(listeners_base.Listener):
    """A service's own listener: hears task and flow transitions."""

    def __init__(self, engine: engines.Engine, seen: list[str]) -> None:
        super().__init__(engine, task_listen_for=(states.SUCCESS, states.FAILURE))
        self.seen = seen

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        self.seen.append(f"{details['task_name']}:{state}")

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        self.seen.append(f"flow:{state}")


def build_create_flow(db: dict[str, VolumeRecord]) -> linear_flow.Flow:
    """The creation flow: a linear flow under a retry, holding a graph flow."""
    flow = linear_flow.Flow("create_volume", retry=retry.Times(3, name="create_retry"))
    placement = graph_flow.Flow("placement")
    extract = ExtractVolumeRequest()
    record = CreateVolumeRecord(db)
    allocate = AllocateSpace(rebind={"volume": "volume"}, inject={"retries": 2})
    placement.add(extract, record, allocate)
    placement.link(extract, record)
    placement.link(record, allocate, decider=lambda history: True)
    notify = unordered_flow.Flow("notify").add(Notify(), Notify(name="notify_again"))
    flow.add(placement, notify)
    return flow


def create_volume(db: dict[str, VolumeRecord], request: dict[str, Any]) -> VolumeRecord:
    """Run the flow the way Cinder does: load, run, fetch the result."""
    flow = build_create_flow(db)
    backend: dict[str, Any] = {"connection": "memory://"}
    with futures.ThreadPoolExecutor(max_workers=2) as executor:
        engine = engines.load(
            flow,
            store={"request": request},
            engine="parallel",
            executor=executor,
            backend=backend,
            max_workers=2,
        )
        seen: list[str] = []
        with (
            logging_listeners.DynamicLoggingListener(engine, log=LOG),
            timing.DurationListener(engine),
            AuditListener(engine, seen),
        ):
            try:
                engine.run()
            except exceptions.WrappedFailure as wrapped:
                for fail in wrapped:
                    if fail.check(exceptions.TaskTimeout):
                        LOG.error("timed out: %s", fail.exception_str)
                raise
            except exceptions.NotFound:
                LOG.exception("missing")
                raise
    volume: VolumeRecord = engine.storage.fetch("volume")
    host = engine.storage.fetch("host")
    LOG.info("volume %s on %s; flow %s", volume.volume_id, host, engine.storage.get_flow_state())
    everything: dict[str, Any] = engine.storage.fetch_all()
    LOG.debug("%d symbols", len(everything))
    return volume


def failures_of(engine: engines.Engine) -> list[str]:
    """What went wrong, read as TaskFlow users read it."""
    found: list[str] = []
    for name, fail in engine.storage.get_failures().items():
        if fail.check(ValueError, "KeyError") is not None:
            found.append(name)
        found.extend(fail.exception_type_names)
        found.append(fail.traceback_str)
        cause: BaseException | None = fail.exception
        if cause is not None:
            found.append(type(cause).__name__)
    return found


def capture() -> failure.Failure:
    """A failure made from the exception being handled, and one from an exception."""
    try:
        raise RuntimeError("no space")
    except RuntimeError as error:
        caught = failure.Failure()
        made = failure.Failure.from_exception(error)
        assert caught.matches(made)
        copied = failure.Failure.from_dict(made.to_dict())
        failure.Failure.reraise_if_any([copied])
        return caught


def run_once(request: dict[str, Any]) -> dict[str, Any]:
    """``engines.run`` returns what the flow stored."""
    db: dict[str, VolumeRecord] = {}
    result: dict[str, Any] = engines.run(build_create_flow(db), store={"request": request})
    return result


def run_stepwise(db: dict[str, VolumeRecord]) -> list[str]:
    """``run_iter`` yields the engine's states."""
    engine = engines.load(build_create_flow(db), store={"request": {"size": 1}})
    engine.compile()
    engine.prepare()
    engine.validate()
    seen: list[str] = []
    for state in engine.run_iter():
        seen.append(state)
        if state == states.SUSPENDING:
            break
    with contextlib.suppress(exceptions.TaskFlowException):
        engine.suspend()
    engine.reset()
    return seen


def what_the_checker_sees(db: dict[str, VolumeRecord], fail: failure.Failure) -> None:
    """The types flowkit gives back are its own, not ``Any``."""
    flow = build_create_flow(db)
    assert_type(flow.add(Notify(name="n3")), linear_flow.Flow)
    assert_type(graph_flow.Flow("g").add(Notify()), graph_flow.Flow)
    engine = engines.load(flow)
    assert_type(engine, engines.Engine)
    assert_type(engine.storage.get_flow_state(), str)
    assert_type(engine.storage.get_failures(), dict[str, failure.Failure])
    assert_type(fail.exception, BaseException | None)
    assert_type(fail.check(ValueError), type[BaseException] | str | None)
    assert_type(retry.Times(2).attempts, int)
    with AuditListener(engine, []) as listener:
        assert_type(listener, AuditListener)
