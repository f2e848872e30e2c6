"""How OpenStack services call TaskFlow, run on TaskFlow 6.5 and on flowkit: both must behave alike.

Each test is a small flow of our own that makes the calls, with the arguments and
option values, that a service's code makes (read from the services' released
wheels: Octavia 19, Cinder 29, Glance 33, Masakari 22, Karbor 1.6). It is built
once per library (``root`` is ``"taskflow"`` or ``"flowkit"``) and what it
observes is compared: results, states, the calls made into atoms, the types
raised, and log lines where the service reads them.

Deliberate differences (doc/migrating.rst) are left out of the comparison where
they show, with the reason: the injector atom detail TaskFlow stores, and each
library's own wording of exception messages.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import importlib
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests import services

LIBRARIES = ("taskflow", "flowkit")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def lib(root: str, name: str) -> Any:
    """Module ``name`` of library ``root`` (``lib("flowkit", "task")``)."""
    return importlib.import_module(f"{root}.{name}")


def both(scenario: Any) -> tuple[Any, Any]:
    """Run ``scenario(root)`` on TaskFlow, then on flowkit."""
    return scenario("taskflow"), scenario("flowkit")


class Records(logging.Handler):
    """Keeps the records a logger emits, with uuids replaced so runs compare."""

    UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[tuple[str, str]]:
        """(level, message) per record, without the frames of tracebacks (each library has its own)."""
        return [(r.levelname, self.UUID.sub("UUID", _without_frames(r.getMessage()))) for r in self.records]


def _without_frames(text: str) -> str:
    """``text`` less the ``  File "..."`` lines of a traceback and the indented lines under them."""
    kept: list[str] = []
    in_frame = False
    for line in text.splitlines():
        if line.startswith('  File "'):
            in_frame = True
        elif not (in_frame and line.startswith("    ")):
            in_frame = False
            kept.append(line)
    return "\n".join(kept)


@contextlib.contextmanager
def recording(name: str) -> Iterator[Records]:
    logger = logging.getLogger(name)
    handler = Records()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


# -- Masakari: progress reported through the task's own ``_notifier`` ---------------------------


def masakari_progress(root: str, db: Path) -> dict[str, Any]:
    """A task reports progress details as Masakari's tasks do, and the driver reads them back.

    Masakari's base task calls ``self._notifier.notify("update_progress", {"progress":
    ..., "progress_details": [...]})`` from ``execute``, with no listener of its own;
    its driver later reads ``meta["progress_details"]["details"]["progress_details"]``
    of each atom detail in the logbook named after the notification. The backend is
    fetched from a connection string; the logbook is looked up by the notification's
    uuid (``NotFound`` the first time, then made), so a second recovery of the same
    notification adds its flow to the same book.
    """
    task, engines, lf = lib(root, "task"), lib(root, "engines"), lib(root, "patterns.linear_flow")
    backends, models = lib(root, "persistence.backends"), lib(root, "persistence.models")

    class Evacuate(task.Task):
        def __init__(self, context: Any, novaclient: Any, **kwargs: Any) -> None:
            super().__init__(
                type(self).__name__,
                requires=kwargs.get("requires"),
                rebind=kwargs.get("rebind"),
                provides=kwargs.get("provides"),
            )
            self.progress: list[dict[str, Any]] = []

        def execute(self, host_name: str) -> str:
            for step, fraction in (("disabling host", 0.5), ("evacuated", 1.0)):
                self.progress.append({"message": step, "progress": fraction})
                self._notifier.notify(
                    "update_progress", {"progress": fraction, "progress_details": list(self.progress)}
                )
            return host_name

    exceptions = lib(root, "exceptions")
    connection = f"sqlite:///{db}"
    with (
        contextlib.closing(backends.fetch(connection)) as backend,
        contextlib.closing(backend.get_connection()) as conn,
    ):
        conn.upgrade()
    lookups = []
    for host in ("node-1", "node-2"):
        backend = backends.fetch(connection)
        with contextlib.closing(backend.get_connection()) as conn:
            book = None
            try:
                book = conn.get_logbook("notification-1")
                lookups.append("found")
            except exceptions.NotFound:
                lookups.append("NotFound")
            if book is None:
                book = models.LogBook("process_failure", "notification-1")
        flow = lf.Flow("recovery").add(Evacuate(None, None, requires=["host_name"]))
        engines.load(flow, store={"host_name": host}, backend=backend, book=book).run()
        backend.close()
    read: list[Any] = []
    backend = backends.fetch(connection)
    with contextlib.closing(backend), contextlib.closing(backend.get_connection()) as conn:
        for detail in conn.get_flows_for_book("notification-1"):
            for atom in conn.get_atoms_for_flow(detail.uuid):
                if atom.meta and atom.meta.get("progress_details"):
                    read.append(
                        (
                            atom.name,
                            atom.state,
                            atom.results,
                            atom.meta["progress"],
                            atom.meta["progress_details"]["details"]["progress_details"],
                        )
                    )
    return {"lookups": lookups, "atoms": sorted(read, key=lambda entry: entry[2])}


def test_masakari_progress_through_the_private_notifier_is_stored_alike(tmp_path: Path) -> None:
    theirs, ours = (masakari_progress(root, tmp_path / f"{root}.db") for root in LIBRARIES)
    assert theirs == ours
    assert ours["lookups"] == ["NotFound", "found"]
    assert [entry[2] for entry in ours["atoms"]] == ["node-1", "node-2"]
    assert ours["atoms"][0][4][-1] == {"message": "evacuated", "progress": 1.0}


# -- Octavia: retry controllers --------------------------------------------------------------


class Retryable(Exception):
    """The error Octavia's retry controllers retry on (a connection not up yet)."""


class Fatal(Exception):
    """Any other error: revert everything."""


def octavia_retries(root: str, db: Path | None = None) -> dict[str, Any]:
    """Octavia's ``AmpRetry``/``ComputeRetry`` read the live exception of the last attempt.

    They look at ``history[-1][1]`` (task name to Failure), retry while its
    ``_exc_info[1]`` is the retryable error and attempts remain, and otherwise
    answer ``REVERT_ALL``. Its ``SleepingRetryTimesController`` passes ``Times``'s
    arguments by position and reads ``_attempts`` and ``_revert_action``. With ``db``
    the runs are persisted to SQL (Octavia's jobboard mode), where the failures of the
    run in progress must still hold their exceptions.
    """
    task, retry, engines, lf = (lib(root, n) for n in ("task", "retry", "engines", "patterns.linear_flow"))
    seen: list[Any] = []

    class AmpRetry(retry.Times):
        def on_failure(self, history: Any, *args: Any, **kwargs: Any) -> Any:
            for name, info in history[-1][1].items():
                if len(history) <= 3:
                    if info is None or info._exc_info is None:
                        return retry.RETRY
                    seen.append((self.name, name, type(info._exc_info[1]).__name__))
                    if isinstance(info._exc_info[1], Retryable):
                        return retry.RETRY
            return retry.REVERT_ALL

    class SleepingTimes(retry.Times):
        def __init__(
            self,
            attempts: int = 1,
            name: str | None = None,
            provides: Any = None,
            requires: Any = None,
            auto_extract: bool = True,
            rebind: Any = None,
            revert_all: bool = False,
            interval: float = 1,
        ) -> None:
            super().__init__(attempts, name, provides, requires, auto_extract, rebind, revert_all)
            self._interval = interval

        def on_failure(self, history: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append((self.name, len(history), self._attempts))
            if len(history) < self._attempts:
                return retry.RETRY
            return self._revert_action

        def revert(self, history: Any, *args: Any, **kwargs: Any) -> None:
            seen.append(("revert", self.name, len(history), sorted(kwargs)))

    attempts = {"connect": 0}

    class Connect(task.Task):
        def execute(self, amphora: str) -> str:
            attempts["connect"] += 1
            if attempts["connect"] < 3:
                raise Retryable(f"{amphora} not up yet")
            raise Fatal(f"{amphora} refused the certificate")

    class MarkError(task.Task):
        def execute(self, amphora: str) -> None:
            seen.append(("mark", amphora))

        def revert(self, amphora: str, *args: Any, **kwargs: Any) -> None:
            seen.append(("unmark", amphora, type(kwargs.get("result")).__name__))

    class Delete(task.Task):
        def execute(self) -> None:
            raise Fatal("compute API down")

    backend = None
    if db is not None:
        backend = lib(root, "persistence.backends").fetch(f"sqlite:///{db}")
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
    outcomes = {}
    connect = lf.Flow("amp-retry-subflow", retry=AmpRetry()).add(
        Connect("connectivity-wait", requires="amphora", inject={"raise_retry_exception": True})
    )
    flow = lf.Flow("create-amphora").add(MarkError("to-error-on-revert"), connect)
    engine = engines.load(flow, store={"amphora": "amp-1"}, backend=backend)
    with pytest.raises(Fatal):
        engine.run()
    outcomes["amp"] = (engine.storage.get_flow_state(), attempts["connect"])

    controller = SleepingTimes(name="retry-delete-amphora", attempts=3, interval=0)
    outcomes["controller"] = (controller.name, controller._attempts, str(controller._revert_action))
    flow = lf.Flow("delete-amphora", retry=controller).add(Delete("delete-compute"))
    engine = engines.load(flow, backend=backend)
    with pytest.raises(Fatal):
        engine.run()
    outcomes["delete"] = engine.storage.get_flow_state()
    outcomes["seen"] = seen
    if backend is not None:
        backend.close()
    return outcomes


@pytest.mark.parametrize("persisted", [False, True], ids=["in-memory", "sql"])
def test_octavia_retry_controllers_decide_alike(persisted: bool, tmp_path: Path) -> None:
    theirs, ours = (
        octavia_retries(root, tmp_path / f"{root}.db" if persisted else None) for root in LIBRARIES
    )
    assert theirs == ours
    assert ("amp-retry-subflow_retry", "connectivity-wait", "Fatal") in ours["seen"]


# -- Cinder: a logging listener with its own failure formatter --------------------------------


class QuotaError(Exception):
    """An expected error: Cinder's formatter logs it without a traceback."""


def cinder_create_volume(root: str, size: int) -> dict[str, Any]:
    """Cinder's create-volume flow shape: named tasks, set ``default_provides``, revert kwargs.

    Its ``DynamicLogListener`` passes ``fail_formatter=`` a ``FailureFormatter``
    subclass whose ``format(fail, atom_matcher)`` returns ``(None, text)`` for
    expected errors (``fail.check(...)`` and ``fail.pformat(traceback=False)``).
    After the run the manager asks ``storage.fetch`` and ``get_revert_result``
    and catches ``NotFound``.
    """
    task, engines, lf = lib(root, "task"), lib(root, "engines"), lib(root, "patterns.linear_flow")
    formatters, llog, lbase = (
        lib(root, "formatters"),
        lib(root, "listeners.logging"),
        lib(root, "listeners.base"),
    )
    ft, exceptions = lib(root, "types.failure"), lib(root, "exceptions")
    log = logging.getLogger(f"compat.cinder.{root}")
    reverts: list[Any] = []

    class SpecialFormatter(formatters.FailureFormatter):
        def __init__(self, engine: Any) -> None:
            super().__init__(engine)

        def format(self, fail: Any, atom_matcher: Any) -> Any:
            if fail.check(QuotaError) is not None:
                return None, f"{os.linesep}{fail.pformat(traceback=False)}"
            return super().format(fail, atom_matcher)

    class DynamicLogListener(llog.DynamicLoggingListener):
        def __init__(
            self,
            engine: Any,
            task_listen_for: Any = lbase.DEFAULT_LISTEN_FOR,
            flow_listen_for: Any = lbase.DEFAULT_LISTEN_FOR,
            retry_listen_for: Any = lbase.DEFAULT_LISTEN_FOR,
            logger: Any = log,
        ) -> None:
            super().__init__(
                engine,
                task_listen_for=task_listen_for,
                flow_listen_for=flow_listen_for,
                retry_listen_for=retry_listen_for,
                log=logger,
                fail_formatter=SpecialFormatter(engine),
            )

    class VolumeTask(task.Task):
        def __init__(self, addons: list[str] | None = None, **kwargs: Any) -> None:
            super().__init__(f"{type(self).__name__};{', '.join(addons or [])}", **kwargs)

    class Extract(VolumeTask):
        default_provides = {"size", "volume_id"}

        def execute(self, request: dict[str, Any]) -> dict[str, Any]:
            return {"size": request["size"], "volume_id": "vol-1"}

    class Reserve(VolumeTask):
        default_provides = "reservations"

        def execute(self, size: int) -> list[str]:
            if size > 10:
                raise QuotaError(f"over quota by {size - 10}")
            return ["r1"]

        def revert(self, context: Any, result: Any, flow_failures: Any, **kwargs: Any) -> None:
            failed = [name for name, f in sorted(flow_failures.items()) if f.check(QuotaError)]
            reverts.append(("reserve", isinstance(result, ft.Failure), failed))

    class Reschedule(VolumeTask):
        def execute(self, volume_id: str) -> None:
            pass

        def revert(
            self, context: Any, result: Any, flow_failures: Any, volume_id: str, **kwargs: Any
        ) -> bool:
            causes = [f.exception_str for f in flow_failures.values()]
            reverts.append(("reschedule", causes))
            return True

    class Create(VolumeTask):
        def execute(self, volume_id: str, reservations: list[str]) -> None:
            raise RuntimeError("backend down")

    flow = lf.Flow("volume_create_manager").add(
        Extract(addons=["create"]),
        Reschedule(addons=["create"]),
        Reserve(addons=["create"]),
        Create(addons=["create"]),
    )
    engine = engines.load(flow, store={"request": {"size": size}, "context": "ctx"})
    out: dict[str, Any] = {}
    with recording(log.name) as records:
        try:
            with DynamicLogListener(engine, logger=log):
                engine.run()
        except Exception as err:
            out["raised"] = type(err).__name__
    try:
        engine.storage.fetch("volume_id")
    except exceptions.NotFound:
        out["volume_id"] = "NotFound"
    try:
        out["rescheduled"] = engine.storage.get_revert_result("Reschedule;create")
    except exceptions.NotFound:
        out["rescheduled"] = "NotFound"
    out["reverts"] = reverts
    out["log"] = records.lines()
    # The formatter's text: a traceback only for the unexpected error.
    out["tracebacks"] = [
        (r.levelname, r.exc_info is not None, "Traceback" in r.getMessage())
        for r in records.records
        if r.levelno >= logging.WARNING
    ]
    return out


@pytest.mark.parametrize("size", [5, 20])
def test_cinder_listener_formatter_and_revert_arguments_alike(size: int) -> None:
    theirs, ours = both(functools.partial(cinder_create_volume, size=size))
    assert theirs == ours


# -- Glance: serial or parallel engines with their executor, AlwaysRevert ---------------------


def glance_import(root: str, mode: str, executor_kind: str = "threads") -> dict[str, Any]:
    """Glance loads ``engine=mode, executor=..., max_workers=10`` and logs with DynamicLoggingListener.

    Its executor is ``None`` in serial mode and a thread pool in parallel mode; its
    import flows run under ``retry.AlwaysRevert()`` and its tasks' ``revert(*args,
    **kwargs)`` look for ``result`` and ``flow_failures`` in ``kwargs``.
    """
    task, retry, engines, lf = (lib(root, n) for n in ("task", "retry", "engines", "patterns.linear_flow"))
    llog = lib(root, "listeners.logging")
    log = logging.getLogger(f"compat.glance.{root}")
    calls: list[Any] = []

    class CreateImage(task.Task):
        default_provides = "image_id"

        def execute(self) -> str:
            return "img-1"

        def revert(self, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("result") is not None and kwargs.get("flow_failures") is not None:
                calls.append(("delete image", kwargs["result"], sorted(kwargs["flow_failures"])))

    class ImportToStore(task.Task):
        default_provides = "file_path"

        def execute(self, image_id: str) -> str:
            raise OSError(f"no space left for {image_id}")

        def revert(self, image_id: str, result: Any, **kwargs: Any) -> None:
            calls.append(("cleanup", image_id, result.check(OSError) is not None, result.exception_str))

    executor = _executor(executor_kind) if mode == "parallel" else None
    flow = lf.Flow("api_image_import", retry=retry.AlwaysRevert()).add(
        CreateImage("create-image"), ImportToStore("import-to-store")
    )
    out: dict[str, Any] = {}
    try:
        engine = engines.load(flow, engine=mode, executor=executor, max_workers=10)
        with recording(log.name) as records, llog.DynamicLoggingListener(engine, log=log):
            engine.run()
    except OSError as err:
        out["raised"] = str(err)
    finally:
        if executor is not None:
            executor.shutdown()
    out["flow"] = engine.storage.get_flow_state()
    out["atoms"] = {name: engine.storage.get_atom_state(name) for name in ("create-image", "import-to-store")}
    out["calls"] = calls
    out["log"] = sorted(records.lines())  # parallel: order among concurrent events may differ
    return out


@pytest.mark.parametrize(
    ("mode", "executor_kind"),
    [("serial", "none"), ("parallel", "threads"), ("parallel", "futurist-threads")],
)
def test_glance_engine_options_and_revert_kwargs_alike(mode: str, executor_kind: str) -> None:
    theirs, ours = both(functools.partial(glance_import, mode=mode, executor_kind=executor_kind))
    assert theirs == ours


# -- Karbor: graph flows of functor tasks, notifiers registered with "*" ----------------------


def _executor(kind: str) -> Any:
    """The executor a service hands the parallel engine: Karbor's default is futurist's
    green pool, Glance's a futurist thread pool, Octavia's the standard library's."""
    if kind == "futurist-green":
        futurist = pytest.importorskip("futurist")
        return futurist.GreenThreadPoolExecutor(max_workers=4)
    if kind == "futurist-threads":
        futurist = pytest.importorskip("futurist")
        return futurist.ThreadPoolExecutor(max_workers=4)
    return concurrent.futures.ThreadPoolExecutor(2)


def karbor_graph(root: str, executor_kind: str = "threads") -> dict[str, Any]:
    """Karbor builds ``FunctorTask``s with every keyword, links them, and watches with ``"*"``."""
    task, engines, gf = lib(root, "task"), lib(root, "engines"), lib(root, "patterns.graph_flow")
    events: list[Any] = []

    def protect(resource: str) -> str:
        return f"{resource}-protected"

    def verify(protected: str, checksum: str) -> str:
        return f"{protected}-verified-{checksum}"

    def undo(*args: Any, **kwargs: Any) -> None:
        events.append(("undo", sorted(kwargs)))

    flow = gf.Flow("protect-plan")
    first = task.FunctorTask(
        protect,
        name="protect",
        provides="protected",
        requires=None,
        auto_extract=True,
        rebind=None,
        revert=undo,
        version=None,
        inject={"resource": "volume-1"},
    )
    second = task.FunctorTask(
        verify,
        name="verify",
        provides="verified",
        requires=None,
        auto_extract=True,
        rebind={"checksum": "sum"},
        revert=None,
        version=None,
        inject=None,
    )
    flow.add(first, second)
    flow.link(first, second)
    found = [node.name for node, _meta in flow.iter_nodes() if isinstance(node, task.FunctorTask)]
    executor = _executor(executor_kind)
    try:
        engine = engines.load(flow, executor=executor, engine="parallel", store={"sum": "abc"})
        engine.notifier.register(
            "*", lambda state, details: events.append(("flow", state, details.get("old_state")))
        )
        engine.atom_notifier.register(
            "*",
            lambda state, details: events.append((details.get("task_name"), state, details.get("old_state"))),
        )
        engine.run()
    finally:
        executor.shutdown()
    return {
        "nodes": found,
        "fetch": engine.storage.fetch("verified"),
        "all": sorted(engine.storage.fetch_all().items()),
        "events": events,
    }


@pytest.mark.parametrize("executor_kind", ["threads", "futurist-threads", "futurist-green"])
def test_karbor_graph_flow_of_functor_tasks_alike(executor_kind: str) -> None:
    theirs, ours = both(functools.partial(karbor_graph, executor_kind=executor_kind))
    assert theirs == ours


# -- Masakari: a ParameterizedForEach over reserved hosts ------------------------------------


def masakari_reserved_hosts(root: str, hosts: list[str]) -> dict[str, Any]:
    """``retry.ParameterizedForEach(rebind=[...], provides=...)`` tries each host in turn."""
    task, retry, engines, lf = (lib(root, n) for n in ("task", "retry", "engines", "patterns.linear_flow"))
    tried: list[str] = []

    class EvacuateTo(task.Task):
        def execute(self, reserved_host: str) -> str:
            tried.append(reserved_host)
            if reserved_host != "h3":
                raise RuntimeError(f"no room on {reserved_host}")
            return reserved_host

    main = lf.Flow(
        "retry_rh_failure_engine",
        retry=retry.ParameterizedForEach(rebind=["reserved_host_list"], provides="reserved_host"),
    ).add(EvacuateTo("evacuate"))
    flow = lf.Flow("rh_failure_engine").add(lf.Flow("pre_tasks"), main, lf.Flow("post_tasks"))
    engine = engines.load(flow, store={"reserved_host_list": hosts})
    out: dict[str, Any] = {}
    try:
        engine.run()
        out["host"] = engine.storage.fetch("reserved_host")
    except RuntimeError as err:
        out["raised"] = str(err)
    out["tried"] = tried
    out["flow"] = engine.storage.get_flow_state()
    return out


@pytest.mark.parametrize("hosts", [["h1", "h2", "h3"], ["h1", "h2"]])
def test_masakari_parameterized_for_each_alike(hosts: list[str]) -> None:
    theirs, ours = both(functools.partial(masakari_reserved_hosts, hosts=hosts))
    assert theirs == ours


# -- Octavia: engine options, masked listener, never_resolve ---------------------------------

FILTER_KEYS = ("certificate", "private_key", "passphrase", "server_pem", "intermediates")


def octavia_engine(root: str, never_resolve: bool) -> dict[str, Any]:
    """Octavia loads with its own thread pool, ``never_resolve=``, then compiles and prepares.

    It runs under a DynamicLoggingListener that masks secrets with
    ``mask_inputs_keys``/``mask_outputs_keys``.
    """
    task, engines, lf = lib(root, "task"), lib(root, "engines"), lib(root, "patterns.linear_flow")
    llog = lib(root, "listeners.logging")
    log = logging.getLogger(f"compat.octavia.{root}")
    reverted: list[str] = []

    class GenerateCert(task.Task):
        def execute(self, amphora: dict[str, Any]) -> dict[str, Any]:
            return {"certificate": "PEM", "private_key": "KEY", "amphora_id": amphora["id"]}

        def revert(self, *args: Any, **kwargs: Any) -> None:
            reverted.append("cert")

    class Upload(task.Task):
        def execute(self, server_pem: dict[str, Any]) -> None:
            raise RuntimeError("amphora agent refused the upload")

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    flow = lf.Flow("amphora-cert").add(
        GenerateCert("generate-cert", provides="server_pem"), Upload("upload-cert")
    )
    out: dict[str, Any] = {}
    try:
        engine = engines.load(
            flow,
            engine="parallel",
            executor=executor,
            never_resolve=never_resolve,
            store={"amphora": {"id": "amp-1", "private_key": "SECRET"}},
        )
        engine.compile()
        engine.prepare()
        with (
            recording(log.name) as records,
            llog.DynamicLoggingListener(
                engine, log=log, mask_inputs_keys=FILTER_KEYS, mask_outputs_keys=FILTER_KEYS
            ),
            pytest.raises(RuntimeError),
        ):
            engine.run()
    finally:
        executor.shutdown()
    out["flow"] = engine.storage.get_flow_state()
    out["reverted"] = reverted
    out["log"] = records.lines()
    text = "\n".join(r.getMessage() for r in records.records)
    out["secret shown"] = "SECRET" in text
    # Octavia's log filter drops records whose exc_info holds its retry exceptions.
    out["exc_info types"] = [type(r.exc_info[1]).__name__ for r in records.records if r.exc_info]
    return out


@pytest.mark.parametrize("never_resolve", [False, True])
def test_octavia_engine_options_and_masked_logging_alike(never_resolve: bool) -> None:
    theirs, ours = both(functools.partial(octavia_engine, never_resolve=never_resolve))
    assert theirs == ours


# -- Octavia: its conductor, posting and consuming through a Redis jobboard -------------------


#: The conductor running the jobs of each library, for tasks that stop it (``stop_midway``).
RUNNING_CONDUCTORS: dict[str, Any] = {}


def octavia_amphora_flow(root: str, fail: bool = False, stop_midway: bool = False) -> Any:
    """The flow factory the jobs name (module level, so both conductors can import it)."""
    task, lf = lib(root, "task"), lib(root, "patterns.linear_flow")

    class Greet(task.Task):
        def execute(self, loadbalancer_id: str) -> str:
            if fail:
                raise RuntimeError(f"could not create {loadbalancer_id}")
            if stop_midway:  # the service shuts down while the flow runs
                RUNNING_CONDUCTORS[root].stop()
            return f"created {loadbalancer_id}"

    class Finish(task.Task):
        def execute(self, created: str) -> str:
            return f"{created}, active"

    return lf.Flow("create-load-balancer").add(Greet("create-lb", provides="created"), Finish("mark-active"))


#: Octavia's defaults for its Redis jobboard's and sentinel's TLS options.
REDIS_SSL_DEFAULTS = {
    "ssl": False,
    "ssl_keyfile": None,
    "ssl_certfile": None,
    "ssl_ca_certs": None,
    "ssl_cert_reqs": "required",
}


def octavia_conductor(
    root: str,
    redis_url: str,
    db: Path,
    keep_logging: bool = True,
    jobs: int = 1,
    fail: bool = False,
    stop_midway: bool = False,
    etcd: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Octavia's poster and conductor on a Redis board with an SQL persistence backend.

    The poster saves a logbook and flow detail, ``save_factory_details`` and posts
    the job with its store; the conductor is a ``BlockingConductor`` subclass that
    adds listeners in ``_listeners_from_job`` (a DynamicLoggingListener and one
    extending the claim through ``job.extend_expiry``) and, in ``_on_job_done(job,
    fut)``, calls the parent then destroys a completed job's logbook. The board's
    ``claim`` is wrapped to pass ``expiry=``; a filter on the conductor's logger
    rewrites records whose first argument is a ``Job``. With ``keep_logging=False``
    the subclass drops the parent's listeners (its logging listener). ``jobs`` are
    posted before the conductor starts; it stops once all are done. With ``fail``
    the flow's task fails and the flow reverts; with ``stop_midway`` the conductor is
    stopped while the first task runs (the flow is suspended and the job given back).
    With ``etcd`` (host, port) the board is Octavia's etcd one instead (its
    ``etcd_taskflow_driver``: ``host``, ``port``, ``path``, ``ttl``).
    """
    engines, states, excs = lib(root, "engines"), lib(root, "states"), lib(root, "exceptions")
    impl_blocking, job_backends = lib(root, "conductors.backends.impl_blocking"), lib(root, "jobs.backends")
    job_base, lbase, llog = (
        lib(root, "jobs.base"),
        lib(root, "listeners.base"),
        lib(root, "listeners.logging"),
    )
    models, persistence_backends = lib(root, "persistence.models"), lib(root, "persistence.backends")
    log = logging.getLogger(f"compat.octavia.conductor.{root}")
    done: list[Any] = []
    extended: list[str] = []

    class JobDetailsFilter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.args and isinstance(record.args[0], job_base.Job):
                record.args = (f"<job {record.args[0].name}>", *record.args[1:])
            return True

    class ExtendExpiryListener(lbase.Listener):
        def __init__(self, engine: Any, job: Any) -> None:
            super().__init__(engine)
            self.job = job

        def _task_receiver(self, state: str, details: Any) -> None:
            self.job.extend_expiry(30)
            extended.append(state)

        def _flow_receiver(self, state: str, details: Any) -> None:
            self.job.extend_expiry(30)

        def _retry_receiver(self, state: str, details: Any) -> None:
            self.job.extend_expiry(30)

    class DynamicLoggingConductor(impl_blocking.BlockingConductor):
        def _listeners_from_job(self, job: Any, engine: Any) -> list[Any]:
            listeners = super()._listeners_from_job(job, engine) if keep_logging else []
            listeners.append(
                llog.DynamicLoggingListener(
                    engine, log=log, mask_inputs_keys=FILTER_KEYS, mask_outputs_keys=FILTER_KEYS
                )
            )
            listeners.append(ExtendExpiryListener(engine, job))
            return listeners

        def _on_job_done(self, job: Any, fut: Any) -> None:
            super()._on_job_done(job, fut)
            done.append((job.name, job.state))
            if job.state == states.COMPLETE and job.book:
                try:
                    self._persistence.get_connection().destroy_logbook(job.book.uuid)
                    done.append("logbook destroyed")
                except excs.NotFound:
                    done.append("logbook already gone")
            if sum(not isinstance(d, str) for d in done) == jobs:
                self.stop()

    where = urlsplit(redis_url)
    conf = {
        "board": "redis",
        "host": where.hostname,
        "port": where.port,
        "db": 0,
        "namespace": f"octavia_{root}",
        "sentinel": None,
        "sentinel_fallbacks": [],
        # Octavia merges its (default) TLS options in, and passes the sentinel's.
        **REDIS_SSL_DEFAULTS,
        "sentinel_kwargs": dict(REDIS_SSL_DEFAULTS),
    }
    if etcd is not None:
        # Octavia's EtcdTaskFlowDriver: its namespace is the board's path, its expiration the ttl.
        conf = {
            "board": "etcd",
            "host": etcd[0],
            "port": etcd[1],
            "path": f"octavia_{root}_{uuid.uuid4().hex}",
            "ttl": 30,
        }
    board_name = f"octavia_{root}"
    persistence = persistence_backends.fetch(
        {
            "connection": f"sqlite:///{db}",
            "max_pool_size": 5,
            "max_overflow": 10,
            "pool_timeout": 30,
            "idle_timeout": 3600,
            "max_retries": 3,
        }
    )
    with contextlib.closing(persistence), contextlib.closing(persistence.get_connection()) as conn:
        conn.upgrade()
        conn.validate()
    executor_log = f"{root}.conductors.backends.impl_executor"
    logger = logging.getLogger(executor_log)
    job_filter = JobDetailsFilter()
    logger.addFilter(job_filter)
    try:
        with (
            recording(executor_log) as records,
            job_backends.backend(board_name, conf, persistence=persistence) as board,
        ):
            for _ in range(jobs):
                job_id = str(uuid.uuid4())
                name = f"octavia_amphora_flow-{job_id}"
                book = models.LogBook(name)
                flow_detail = models.FlowDetail(name, job_id)
                book.add(flow_detail)
                persistence.get_connection().save_logbook(book)
                engines.save_factory_details(
                    flow_detail,
                    octavia_amphora_flow,
                    [root],
                    {"fail": fail, "stop_midway": stop_midway},
                    backend=persistence,
                )
                store = {"loadbalancer_id": "lb-1", "certificate": "PEM"}
                board.post(name, book=book, details={"store": store})
            board.claim = functools.partial(board.claim, expiry=30)
            conductor = DynamicLoggingConductor(
                "octavia-worker-1",
                board,
                persistence=persistence,
                engine="parallel",
                engine_options={"max_workers": 4},
            )
            # The poster waits for its jobs (Octavia's run_poster: job.wait() per listed job).
            posted = list(board.iterjobs())
            RUNNING_CONDUCTORS[root] = conductor
            runner = threading.Thread(target=conductor.run, daemon=True)
            runner.start()
            waited = [] if stop_midway else [job.wait(30) for job in posted]
            runner.join(30)
            flow_states = [
                detail.state for book in persistence.get_connection().get_logbooks() for detail in book
            ]
            left = [Records.UUID.sub("UUID", job.name) for job in board.iterjobs()]
    finally:
        logger.removeFilter(job_filter)
    job_lines = [
        (level, line.replace("octavia_amphora_flow-UUID", "JOB"))
        for level, line in records.lines()
        if "<job " in line  # the records whose first argument was the job
    ]
    if jobs > 1:  # the boards list jobs of one priority in different orders (doc/migrating.rst)
        job_lines.sort()
        done.sort(key=str)
    return {
        "stopped": not runner.is_alive(),
        "flow states": flow_states,
        "waited": waited,
        "done": [d if isinstance(d, str) else ("JOB", d[1]) for d in done],
        "left": left,
        "extended": extended,
        "job lines": job_lines,
        "engine lines": sum(" has moved " in line for _level, line in records.lines()),
    }


@pytest.mark.parametrize("keep_logging", [True, False], ids=["extends", "replaces"])
def test_octavia_conductor_subclass_runs_alike(
    redis_flushed_url: str, tmp_path: Path, keep_logging: bool
) -> None:
    theirs = octavia_conductor("taskflow", redis_flushed_url, tmp_path / "taskflow.db", keep_logging)
    ours = octavia_conductor("flowkit", redis_flushed_url, tmp_path / "flowkit.db", keep_logging)
    assert theirs == ours
    assert ours["engine lines"] == (6 if keep_logging else 0)
    assert ours["done"] == [("JOB", "COMPLETE"), "logbook destroyed"]
    assert ("INFO", "Job completed successfully: <job JOB>") in ours["job lines"]


def test_octavia_conductor_consumes_a_reverted_job_alike(redis_flushed_url: str, tmp_path: Path) -> None:
    theirs = octavia_conductor("taskflow", redis_flushed_url, tmp_path / "taskflow.db", fail=True)
    ours = octavia_conductor("flowkit", redis_flushed_url, tmp_path / "flowkit.db", fail=True)
    assert theirs == ours
    assert ours["done"] == [("JOB", "COMPLETE"), "logbook destroyed"]
    assert ("WARNING", "Job execution failed (consumption proceeding): <job JOB>") in ours["job lines"]


def test_octavia_conductor_stopped_midway_suspends_and_gives_the_job_back_alike(
    redis_flushed_url: str, tmp_path: Path
) -> None:
    theirs = octavia_conductor("taskflow", redis_flushed_url, tmp_path / "taskflow.db", stop_midway=True)
    ours = octavia_conductor("flowkit", redis_flushed_url, tmp_path / "flowkit.db", stop_midway=True)
    assert theirs == ours
    assert ours["flow states"] == ["SUSPENDED"]
    assert ours["left"] == ["octavia_amphora_flow-UUID"]
    assert ("INFO", "Job execution was suspended: <job JOB>") in ours["job lines"]


def test_octavia_conductor_logs_each_claim_it_tries_once_alike(
    redis_flushed_url: str, tmp_path: Path
) -> None:
    theirs = octavia_conductor("taskflow", redis_flushed_url, tmp_path / "taskflow.db", jobs=3)
    ours = octavia_conductor("flowkit", redis_flushed_url, tmp_path / "flowkit.db", jobs=3)
    assert theirs == ours
    assert ours["job lines"].count(("DEBUG", "Trying to claim job: <job JOB>")) == 3


@pytest.mark.parametrize("outcome", ["complete", "reverted", "stopped midway"])
def test_octavia_conductor_runs_alike_on_an_etcd_board(
    etcd_server: Any, redis_flushed_url: str, tmp_path: Path, outcome: str
) -> None:
    options = {"fail": outcome == "reverted", "stop_midway": outcome == "stopped midway"}
    etcd = (etcd_server.host, etcd_server.port)
    theirs = octavia_conductor("taskflow", redis_flushed_url, tmp_path / "taskflow.db", etcd=etcd, **options)
    ours = octavia_conductor("flowkit", redis_flushed_url, tmp_path / "flowkit.db", etcd=etcd, **options)
    assert theirs == ours
    if outcome == "stopped midway":
        assert ours["left"] == ["octavia_amphora_flow-UUID"]
    else:
        assert ours["done"] == [("JOB", "COMPLETE"), "logbook destroyed"]


# -- Octavia: one kazoo client made with kazoo_utils, shared by its ZooKeeper jobboards -------


def _client_settings(client: Any) -> tuple[Any, ...]:
    return (
        client.hosts,
        client.read_only,
        client.randomize_hosts,
        client.use_ssl,
        client.verify_certs,
        client.certfile,
        client.keyfile,
        client.keyfile_password,
        client._session_timeout,
    )


@pytest.mark.parametrize(
    "conf",
    [
        {"hosts": "zk1:2181,zk2:2181"},
        # Octavia's default jobboard_zookeeper_ssl_options, merged into its conf.
        {
            "hosts": "zk1:2181",
            "use_ssl": False,
            "keyfile": None,
            "keyfile_password": None,
            "certfile": None,
            "verify_certs": True,
        },
        {
            "hosts": ["zk1:2181", "zk2:2182"],
            "use_ssl": "true",
            "verify_certs": "false",
            "keyfile": "/etc/zk/key.pem",
            "keyfile_password": "pw",
            "certfile": "/etc/zk/cert.pem",
            "timeout": "3",
            "read_only": True,
            "randomize_hosts": "on",
        },
        {"hosts": {"zk1": 2181}},
        {},
    ],
)
def test_kazoo_utils_make_client_configures_alike(conf: dict[str, Any]) -> None:
    clients = [lib(root, "utils.kazoo_utils").make_client(conf) for root in LIBRARIES]
    try:
        assert _client_settings(clients[0]) == _client_settings(clients[1])
    finally:
        for root, client in zip(LIBRARIES, clients, strict=True):
            lib(root, "utils.kazoo_utils").finalize_client(client)


def octavia_zookeeper_board(root: str, hosts: str, namespace: str) -> list[str]:
    """Octavia's ZooKeeper driver: ``make_client``, ``start``, then boards built on that client.

    Each ``job_board(persistence)`` call opens ``backend(namespace, {"board":
    "zookeeper", "path": "/" + namespace}, persistence=..., client=client)``; the
    client outlives the boards and is finalized at shutdown.
    """
    kazoo_utils, job_backends = lib(root, "utils.kazoo_utils"), lib(root, "jobs.backends")
    persistence_backends = lib(root, "persistence.backends")
    conf = {"hosts": hosts}
    conf.update(
        {"use_ssl": False, "keyfile": None, "keyfile_password": None, "certfile": None, "verify_certs": True}
    )
    client = kazoo_utils.make_client(conf)
    try:
        client.start()
        persistence = persistence_backends.fetch({"connection": "memory://"})
        # TaskFlow asks the server its version with the "envi" command, which this test
        # server (ZooKeeper 3.5+) refuses; flowkit never asks (doc/migrating.rst).
        board_conf = {"board": "zookeeper", "path": "/" + namespace, "check_compatible": False}
        with job_backends.backend(namespace, board_conf, persistence=persistence, client=client) as board:
            board.post("create-lb-1", details={"store": {"loadbalancer_id": "lb-1"}})
        with job_backends.backend(namespace, board_conf, persistence=persistence, client=client) as board:
            names = [job.name for job in board.iterjobs(ensure_fresh=True)]
        assert client.connected, "closing a board must leave a client it was given running"
        return names
    finally:
        kazoo_utils.finalize_client(client)


def test_octavia_shared_zookeeper_client_alike(zookeeper_server: Any) -> None:
    hosts = f"127.0.0.1:{zookeeper_server.port}"
    results = []
    for root in LIBRARIES:
        namespace = f"{zookeeper_server.root.strip('/')}/octavia-{root}-{uuid.uuid4().hex}"
        results.append(octavia_zookeeper_board(root, hosts, namespace))
    assert results[0] == results[1] == ["create-lb-1"]


def test_zookeeper_board_reads_taskflows_client_options(zookeeper_server: Any) -> None:
    """A board making its own client passes TaskFlow's kazoo options on, as TaskFlow's board does."""
    conf = {
        "board": "zookeeper",
        "hosts": f"127.0.0.1:{zookeeper_server.port}",
        "path": f"{zookeeper_server.root}/options-{uuid.uuid4().hex}",
        "randomize_hosts": "yes",
        "verify_certs": "no",
        "keyfile": "/nonexistent/key.pem",
    }
    theirs = lib("taskflow", "jobs.backends").fetch("opts", conf)
    ours = lib("flowkit", "jobs.backends").fetch("opts", conf)
    ours.connect()
    try:
        assert _client_settings(theirs._client)[1:8] == _client_settings(ours._client)[1:8]
    finally:
        ours.close()
        lib("taskflow", "utils.kazoo_utils").finalize_client(theirs._client)


def test_zookeeper_board_refuses_a_yes_no_option_that_is_neither() -> None:
    with pytest.raises(ValueError, match="use_ssl"):
        lib("flowkit", "jobs.backends").fetch("opts", {"board": "zookeeper", "use_ssl": "maybe"})


# -- Octavia with disable_revert: a run left in FAILURE ----------------------------------------


def octavia_disable_revert(root: str, revert_fails: bool) -> dict[str, Any]:
    """``never_resolve=True`` (Octavia's ``disable_revert``), or a revert that fails: the run ends FAILURE.

    TaskFlow raises the failure instead of yielding FAILURE from ``run_iter``, and
    logs an ERROR (with the traceback) on its engine module's logger first.
    """
    task, engines, lf = lib(root, "task"), lib(root, "engines"), lib(root, "patterns.linear_flow")

    class Allocate(task.Task):
        def execute(self) -> str:
            return "vip-1"

        def revert(self, *args: Any, **kwargs: Any) -> None:
            if revert_fails:
                raise KeyError("port already gone")

    class Plug(task.Task):
        def execute(self, vip: str) -> None:
            raise RuntimeError(f"could not plug {vip}")

    flow = lf.Flow("failover-amphora").add(Allocate("allocate-vip", provides="vip"), Plug("plug-vip"))
    engine = engines.load(flow, never_resolve=not revert_fails)
    seen: list[str] = []
    with recording(f"{root}.engines.action_engine.engine") as records:
        try:
            for state in engine.run_iter():
                seen.append(state)
        except Exception as err:
            seen.append(type(err).__name__)
    return {
        "run_iter": seen,
        "flow": engine.storage.get_flow_state(),
        "log": [(r.levelname, r.getMessage(), r.exc_info is not None) for r in records.records],
    }


@pytest.mark.parametrize("revert_fails", [False, True], ids=["never_resolve", "revert-fails"])
def test_a_run_ending_in_failure_raises_and_logs_alike(revert_fails: bool) -> None:
    theirs, ours = both(functools.partial(octavia_disable_revert, revert_fails=revert_fails))
    assert theirs == ours
    assert ours["log"][0][0] == "ERROR"


# -- Octavia: extending the claims of its own jobs -----------------------------------------------


def octavia_extend_jobs(root: str, redis_url: str) -> list[Any]:
    """Octavia's waiter thread: for each job, ``find_owner`` (TaskFlow raises ``TypeError``
    for an unclaimed one; flowkit answers ``None``, doc/migrating.rst), and for those the
    conductor owns, ``extend_expiry`` when ``expires_in()`` is under half the expiration.
    """
    job_backends = lib(root, "jobs.backends")
    where = urlsplit(redis_url)
    conf = {
        "board": "redis",
        "host": where.hostname,
        "port": where.port,
        "namespace": f"octavia_extend_{root}",
    }
    seen: list[Any] = []
    with job_backends.backend(conf["namespace"], conf) as board:
        mine = board.post("mine", details={})
        board.post("unclaimed", details={})
        theirs = board.post("theirs", details={})
        board.claim(mine, "octavia-worker-1", expiry=10)
        board.claim(theirs, "octavia-worker-2", expiry=10)
        for job in board.iterjobs():
            try:
                owner = board.find_owner(job)
            except TypeError:
                seen.append((job.name, "unowned"))
                continue
            if owner is None:
                seen.append((job.name, "unowned"))
                continue
            if owner == "octavia-worker-1" and job.expires_in() < 60 / 2:
                job.extend_expiry(60)
                seen.append((job.name, "extended", 30 < job.expires_in() <= 60))
            else:
                seen.append((job.name, "left", 0 < job.expires_in() <= 10))
    return sorted(seen)


def test_octavia_extends_the_claims_it_holds_alike(redis_flushed_url: str) -> None:
    theirs, ours = (octavia_extend_jobs(root, redis_flushed_url) for root in LIBRARIES)
    assert theirs == ours == [("mine", "extended", True), ("theirs", "left", True), ("unclaimed", "unowned")]


# -- Octavia: master and backup subflows providing the same names --------------------------------


def octavia_create_lb(root: str, engine_kind: str) -> dict[str, Any]:
    """Octavia's create-load-balancer shape: symbols provided again and again, tuple ``provides``,
    and an unordered flow of two linear subflows (master, backup) whose tasks provide and
    require the same names (``amphora_id``, ``compute_id``, ``amphora``), each with a retry
    subflow inside; after it, a task requiring ``loadbalancer`` and ``amphora``.
    """
    task, retry, engines = lib(root, "task"), lib(root, "retry"), lib(root, "engines")
    lf, uf = lib(root, "patterns.linear_flow"), lib(root, "patterns.unordered_flow")
    received: dict[str, Any] = {}
    waits: dict[str, int] = {}

    class Step(task.Task):
        """Records the arguments it got and returns a value naming itself."""

        def execute(self, **kwargs: Any) -> Any:
            received[self.name] = dict(sorted(kwargs.items()))
            if len(self.provides) > 1:
                return tuple(f"{self.name}:{p}" for p in sorted(self.provides))
            return f"{self.name}"

    class ComputeWait(Step):
        def execute(self, **kwargs: Any) -> Any:
            waits[self.name] = waits.get(self.name, 0) + 1
            if waits[self.name] < 2:
                raise Retryable("compute not active yet")
            return super().execute(**kwargs)

    class ComputeRetry(retry.Times):
        def on_failure(self, history: Any, *args: Any, **kwargs: Any) -> Any:
            for _name, info in history[-1][1].items():
                if len(history) <= 3 and info is not None and isinstance(info._exc_info[1], Retryable):
                    return retry.RETRY
            return retry.REVERT_ALL

    flow = lf.Flow("octavia-create-loadbalancer-flow")
    flow.add(Step("reload-lb-before-allocate-vip", requires="loadbalancer_id", provides="loadbalancer"))
    flow.add(Step("allocate-vip", requires="loadbalancer", provides=("vip", "additional_vips")))
    flow.add(Step("update-vip", requires=("loadbalancer_id", "vip"), provides="loadbalancer"))
    flow.add(
        Step(
            "update-additional-vips", requires=("loadbalancer_id", "additional_vips"), provides="loadbalancer"
        )
    )

    def amphora_subflow(role: str) -> Any:
        sub = lf.Flow(f"{role}-amp-plug-net-subflow")
        sub.add(Step(f"{role}-create-amphora-indb", provides="amphora_id"))
        sub.add(Step(f"{role}-cert-compute-create", requires=("amphora_id", "flavor"), provides="compute_id"))
        wait = lf.Flow(f"{role}-compute-create-retry-subflow", retry=ComputeRetry())
        wait.add(
            ComputeWait(f"{role}-compute-wait", requires=("compute_id", "amphora_id"), provides="compute_obj")
        )
        sub.add(wait)
        sub.add(
            Step(f"{role}-update-amphora-info", requires=("amphora_id", "compute_obj"), provides="amphora")
        )
        sub.add(Step(f"{role}-mark-amp-{role}-indb", requires="amphora"))
        return sub

    flow.add(
        uf.Flow("octavia-create-amp-for-lb-flow").add(amphora_subflow("MASTER"), amphora_subflow("BACKUP"))
    )
    flow.add(Step("mark-lb-active-indb", requires=("loadbalancer", "loadbalancer_id")))
    engine = engines.load(
        flow,
        engine=engine_kind,
        store={"loadbalancer_id": "lb-1", "flavor": {"loadbalancer_topology": "ACTIVE_STANDBY"}},
    )
    engine.run()
    return {
        "received": dict(sorted(received.items())),
        "waits": waits,
        "fetched": engine.storage.fetch("loadbalancer"),
    }


@pytest.mark.parametrize("engine_kind", ["serial", "parallel"])
def test_octavia_same_names_in_master_and_backup_subflows_alike(engine_kind: str) -> None:
    theirs, ours = both(functools.partial(octavia_create_lb, engine_kind=engine_kind))
    assert theirs == ours
    assert ours["received"]["BACKUP-mark-amp-BACKUP-indb"] == {"amphora": "BACKUP-update-amphora-info"}


# -- Octavia's upgrade check: the persistence dialect and a connected board ---------------------


def octavia_status_check(root: str, redis_url: str, db: Path) -> tuple[str, bool, bool]:
    """``octavia-status upgrade check`` reads ``backend.engine.dialect.name`` and ``board.connected``.

    It runs after ``octavia-db-manage upgrade_persistence`` (``conn.upgrade()``):
    flowkit's ``validate()`` also checks the schema (doc/migrating.rst). TaskFlow's
    SQL ``validate`` takes ``max_retries``.
    """
    persistence_backends, job_backends = lib(root, "persistence.backends"), lib(root, "jobs.backends")
    conf = {"connection": f"sqlite:///{db}", "max_pool_size": 10, "max_overflow": 20, "pool_timeout": 10}
    backend = persistence_backends.fetch(conf)
    with contextlib.closing(backend):
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
            conn.validate()
            conn.validate(max_retries=2)
        dialect = backend.engine.dialect.name
    where = urlsplit(redis_url)
    board_conf = {"board": "redis", "host": where.hostname, "port": where.port, "namespace": f"status_{root}"}
    with job_backends.backend(board_conf["namespace"], board_conf, persistence=backend) as board:
        connected = board.connected
    return dialect, connected, board.connected


def test_octavia_status_check_alike(redis_flushed_url: str, tmp_path: Path) -> None:
    results = [octavia_status_check(root, redis_flushed_url, tmp_path / f"{root}.db") for root in LIBRARIES]
    assert results[0] == results[1] == ("sqlite", True, False)


# -- Cinder's VNX driver: execute(*args, **kwargs), requires lists, per-task inject ---------------


def cinder_vnx_consistency_group(root: str, fail: bool) -> dict[str, Any]:
    """Cinder's VNX driver builds per-LUN tasks with ``inject=`` dicts, tuple ``provides``,
    ``rebind`` dicts, and tasks whose ``execute(self, client, name, *args, **kwargs)`` get
    the extra names of a ``requires`` list in ``kwargs``; its revert takes the same form.
    Afterwards it fetches each LUN's id by its templated name.
    """
    task, engines, lf = lib(root, "task"), lib(root, "engines"), lib(root, "patterns.linear_flow")
    calls: list[Any] = []

    class CreateLun(task.Task):
        def __init__(self, name: str, provides: Any = None, inject: Any = None) -> None:
            super().__init__(name=name, provides=provides, inject=inject)

        def execute(self, client: str, pool_name: str, lun_name: str, lun_size: int) -> tuple[str, str]:
            calls.append(("create", self.name, client, pool_name, lun_name, lun_size))
            return f"id-{lun_name}", f"wwn-{lun_name}"

        def revert(self, result: Any, client: str, lun_name: str, *args: Any, **kwargs: Any) -> None:
            calls.append(("delete", self.name, lun_name, sorted(kwargs)))

    class MigrateLun(task.Task):
        def __init__(self, name: str, inject: Any = None, rebind: Any = None) -> None:
            super().__init__(name=name, inject=inject, rebind=rebind)

        def execute(self, client: str, src_id: str, dst_id: str, async_migrate: bool = False) -> bool:
            calls.append(("migrate", self.name, src_id, dst_id, async_migrate))
            return True

    class CreateGroup(task.Task):
        def __init__(self, lun_id_key_template: str, num_of_members: int, *args: Any, **kwargs: Any) -> None:
            self.lun_id_keys = sorted({lun_id_key_template % i for i in range(num_of_members)})
            super().__init__(*args, requires=self.lun_id_keys, **kwargs)

        def execute(self, client: str, new_cg_name: str, *args: Any, **kwargs: Any) -> None:
            calls.append(("group", new_cg_name, [kwargs[key] for key in self.lun_id_keys], sorted(kwargs)))
            if fail:
                raise RuntimeError("array refused the group")

        def revert(self, client: str, new_cg_name: str, *args: Any, **kwargs: Any) -> None:
            calls.append(("ungroup", new_cg_name, sorted(kwargs)))

    flow = lf.Flow("create_cg_from_cg")
    for i, lun in enumerate(["lun-a", "lun-b"]):
        spec = {"lun_name": f"tmp-{lun}", "lun_size": 10 * (i + 1), "async_migrate": True}
        flow.add(
            CreateLun(f"CreateLunTask_{i}", provides=(f"new_src_id_{i}", f"new_src_wwn_{i}"), inject=spec),
            CreateLun(
                f"CreateDstLunTask_{i}",
                provides=(f"new_dst_id_{i}", f"new_dst_wwn_{i}"),
                inject={**spec, "lun_name": lun},
            ),
            MigrateLun(
                f"MigrateLunTask_{i}",
                inject=spec,
                rebind={"src_id": f"new_src_id_{i}", "dst_id": f"new_dst_id_{i}"},
            ),
        )
    flow.add(CreateGroup("new_src_id_%s", 2))
    engine = engines.load(flow, store={"client": "vnx", "pool_name": "pool-1", "new_cg_name": "cg-1"})
    out: dict[str, Any] = {}
    try:
        engine.run()
        out["ids"] = [engine.storage.fetch(f"new_src_id_{i}") for i in range(2)]
    except RuntimeError as err:
        out["raised"] = str(err)
    out["calls"] = calls
    return out


@pytest.mark.parametrize("fail", [False, True], ids=["created", "reverted"])
def test_cinder_vnx_varargs_tasks_alike(fail: bool) -> None:
    theirs, ours = both(functools.partial(cinder_vnx_consistency_group, fail=fail))
    assert theirs == ours


# -- Octavia's Redis jobboard behind Sentinel --------------------------------------------------


@pytest.fixture
def redis_sentinel(redis_server: services.RedisServer) -> Iterator[services.RedisSentinel]:
    """A Sentinel watching the session's Redis server as ``mymaster``."""
    assert redis_server.port is not None
    sentinel = services.RedisSentinel(redis_server.port)
    try:
        sentinel.start()
        yield sentinel
    finally:
        sentinel.close()


def octavia_sentinel_board(root: str, first_port: int, fallback_port: int) -> list[str]:
    """Octavia's Redis driver with ``jobboard_redis_sentinel`` set: ``host``/``port`` name a
    Sentinel, ``sentinel_fallbacks`` the other Sentinels, and ``sentinel_kwargs`` its TLS
    options with ``ssl`` read as a boolean.
    """
    job_backends = lib(root, "jobs.backends")
    conf = {
        "board": "redis",
        "host": "127.0.0.1",
        "port": first_port,
        "db": 0,
        "namespace": f"octavia_sentinel_{root}",
        "sentinel": "mymaster",
        "sentinel_fallbacks": [f"127.0.0.1:{fallback_port}"],
        **REDIS_SSL_DEFAULTS,
        "sentinel_kwargs": dict(REDIS_SSL_DEFAULTS),
    }
    with job_backends.backend(conf["namespace"], conf) as board:
        board.post("create-lb-1", details={"store": {"loadbalancer_id": "lb-1"}})
        return [job.name for job in board.iterjobs()]


@pytest.mark.parametrize("first_down", [False, True], ids=["first-up", "first-down"])
def test_octavia_redis_board_behind_sentinel_alike(
    redis_flushed_url: str, redis_sentinel: services.RedisSentinel, first_down: bool
) -> None:
    assert redis_sentinel.port is not None
    ports = [redis_sentinel.port, services.free_port()]  # a live Sentinel and one that is down
    first, fallback = reversed(ports) if first_down else ports
    results = [octavia_sentinel_board(root, first, fallback) for root in LIBRARIES]
    assert results[0] == results[1] == ["create-lb-1"]


def job_text(root: str, redis_url: str) -> str:
    """``str(job)``: what the conductor's log lines show of a job (Octavia re-creates its format
    in ``FilteredJob.__str__`` to mask secrets, so the rest of its lines must match it)."""
    job_backends = lib(root, "jobs.backends")
    where = urlsplit(redis_url)
    conf = {"board": "redis", "host": where.hostname, "port": where.port, "namespace": f"text_{root}"}
    with job_backends.backend(conf["namespace"], conf) as board:
        job = board.post("create-lb-1", details={"store": {"loadbalancer_id": "lb-1"}})
        return Records.UUID.sub("UUID", str(job))


def test_a_job_reads_as_text_alike(redis_flushed_url: str) -> None:
    theirs, ours = (job_text(root, redis_flushed_url) for root in LIBRARIES)
    assert theirs == ours


# -- Octavia: one thread pool shared by every flow the controller worker runs -------------------


def octavia_shared_executor(root: str) -> dict[str, Any]:
    """Octavia's controller makes one ``ThreadPoolExecutor`` and passes it to every engine it
    loads, from several threads at once; the engines must leave it running."""
    task, engines = lib(root, "task"), lib(root, "engines")
    lf, uf = lib(root, "patterns.linear_flow"), lib(root, "patterns.unordered_flow")

    class AddOne(task.Task):
        def execute(self, x: int) -> int:
            return x + 1

    shared = concurrent.futures.ThreadPoolExecutor(max_workers=4)

    def run(i: int) -> list[tuple[str, Any]]:
        flow = lf.Flow(f"update-members-{i}").add(
            uf.Flow("amphorae").add(
                AddOne(f"master-{i}", provides="master", inject={"x": i}),
                AddOne(f"backup-{i}", provides="backup", inject={"x": 10 * i}),
            )
        )
        engine = engines.load(flow, engine="parallel", executor=shared, never_resolve=False, store={})
        engine.compile()
        engine.prepare()
        engine.run()
        return sorted(engine.storage.fetch_all().items())

    try:
        one_by_one = [run(i) for i in range(3)]
        at_once: dict[int, Any] = {}
        threads = [threading.Thread(target=lambda i=i: at_once.__setitem__(i, run(i))) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        still_usable = shared.submit(lambda: "yes").result(10)
    finally:
        shared.shutdown()
    return {"one by one": one_by_one, "at once": sorted(at_once.items()), "executor usable": still_usable}


def test_octavia_shared_executor_alike() -> None:
    theirs, ours = both(octavia_shared_executor)
    assert theirs == ours
    assert len(ours["at once"]) == 5


# -- Watcher: linked actions with a decider, hooks around execute, executor names ---------------


class ActionPlanCancelled(Exception):
    """Raised from ``pre_execute`` when the plan was cancelled, as Watcher's actions do."""


def watcher_action_plan(root: str, executor: str, rule: str, modes: dict[str, str]) -> dict[str, Any]:
    """Watcher's applier: one task per action, linked parent to child with a decider that, for
    the ``ANY`` rule, skips a child once a parent succeeded; the parallel engine loaded with
    ``executor="threaded"`` or ``"greenthreaded"`` and ``max_workers``. Its tasks do their
    checks in ``pre_execute`` (raising to stop a cancelled plan) and their notifications in
    ``post_execute``, which must run even then; a WrappedFailure is asked
    ``check("<module>.ActionPlanCancelled")`` by name.
    """
    task, engines, gf, excs = (lib(root, n) for n in ("task", "engines", "patterns.graph_flow", "exceptions"))
    calls: list[Any] = []
    lock = threading.Lock()

    def note(*entry: Any) -> None:
        with lock:
            calls.append(entry)

    class Action(task.Task):
        def __init__(self, name: str, mode: str) -> None:
            super().__init__(name=name)
            self.mode = mode

        def pre_execute(self) -> None:
            note("pre_execute", self.name)
            if self.mode == "cancel":
                raise ActionPlanCancelled(f"plan of {self.name} cancelled")

        def execute(self, *args: Any, **kwargs: Any) -> bool:
            note("execute", self.name, args, sorted(kwargs))
            return self.mode != "unfinished"

        def post_execute(self) -> None:
            note("post_execute", self.name)

        def revert(self, *args: Any, **kwargs: Any) -> None:
            note("revert", self.name, sorted(kwargs))

    def decider(history: dict[str, Any]) -> bool:
        note("decider", sorted(history.items()))
        if history and rule == "ANY":
            return not list(history.values())[0]
        return True

    flow = gf.Flow("watcher_flow")
    actions = {name: Action(f"action_type:migrate uuid:{name}", mode) for name, mode in modes.items()}
    flow.add(*actions.values())
    parents = {"b": "a", "c": "b"}
    for child, parent in parents.items():
        if child in actions and parent in actions:
            flow.link(actions[parent], actions[child], decider=decider)
    engine = engines.load(flow, executor=executor, engine="parallel", max_workers=4)
    out: dict[str, Any] = {}
    try:
        engine.run()
        out["ended"] = "ok"
    except ActionPlanCancelled:
        out["ended"] = "cancelled"
    except excs.WrappedFailure as wrapped:
        out["ended"] = ("wrapped", len(wrapped), wrapped.check(f"{__name__}.ActionPlanCancelled") is not None)
    out["states"] = {name: engine.storage.get_atom_state(action.name) for name, action in actions.items()}
    out["calls"] = sorted(calls, key=repr)  # branches run side by side
    return out


WATCHER_PLANS = {
    "all-succeed": {"a": "ok", "b": "ok", "c": "ok"},
    "parent-unfinished": {"a": "unfinished", "b": "ok", "c": "ok"},
    "cancelled-midway": {"a": "ok", "b": "cancel", "c": "ok"},
    "two-cancelled": {"a": "cancel", "x": "cancel"},
}


@pytest.mark.parametrize("plan", WATCHER_PLANS, ids=list(WATCHER_PLANS))
@pytest.mark.parametrize("rule", ["ANY", "ALWAYS"])
@pytest.mark.parametrize("executor", ["threaded", "greenthreaded"])
def test_watcher_action_plans_alike(executor: str, rule: str, plan: str) -> None:
    if executor == "greenthreaded":
        pytest.importorskip("eventlet")
    theirs, ours = both(
        functools.partial(watcher_action_plan, executor=executor, rule=rule, modes=WATCHER_PLANS[plan])
    )
    assert theirs == ours
