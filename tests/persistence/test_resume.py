"""A flow whose process is killed (SIGKILL) resumes in another process.

Each run is a real child process (``_resume_child.py``) writing to a real
store, and the crashes are real: a task kills its own process with SIGKILL,
so nothing is cleaned up or flushed on the way out. The tasks log every call
(``_resume_flows.py``), which tells what ran, how often, and in which process.

What a crash may cost is documented in doc/persistence.rst: an atom that was
running (or reverting) when its process died is in doubt and runs again, so
atoms run at least once; everything that finished before is never redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import states
from flowkit.persistence import backends, models
from tests.persistence import _resume_child, _resume_flows
from tests.services import wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(_resume_child.__file__).resolve()
#: Bound on any one child process, generous for a loaded 2-core machine.
CHILD_TIMEOUT = 60.0
KILLED = -signal.SIGKILL


# -- running children ------------------------------------------------------------


def spawn(url: str, mode: str, ids: dict[str, Any], log: Path) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, str(CHILD), url, mode, json.dumps(ids), str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Wait (bounded) for ``proc``; return its exit status, stdout and stderr."""
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"child still running after {CHILD_TIMEOUT:.0f} s:\n{err}") from None
    return proc.returncode, out, err


def report_of(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The JSON report of a child that must run its flow to the end."""
    code, out, err = finish(proc)
    assert code == 0, f"child exited with {code}:\n{err}"
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


def crash(url: str, ids: dict[str, Any], log: Path) -> int:
    """Start a flow in a child that must be killed by one of its tasks; return its pid."""
    proc = spawn(url, "start", ids, log)
    code, out, err = finish(proc)
    assert code == KILLED, f"child was not killed (exit {code}):\n{out}\n{err}"
    return proc.pid


def kill_all(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


# -- looking at the store and the call log -------------------------------------------


@contextlib.contextmanager
def connection(url: str) -> Iterator[Any]:
    """A connection of a backend of its own to ``url`` (both closed on exit)."""
    with contextlib.closing(backends.fetch({"connection": url})) as backend:
        conn = backend.get_connection()
        try:
            yield conn
        finally:
            conn.close()


@pytest.fixture(params=["sqlite", "postgresql", "dir"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A durable store shared by processes, its schema made."""
    return make_store(request.param, request, tmp_path)


def make_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'flows.db'}"
    elif kind == "dir":
        url = f"dir://{tmp_path / 'flows'}"
    else:
        url = str(request.getfixturevalue("postgresql_db_url"))
    with connection(url) as conn:
        conn.upgrade()
    return url


def stored_flow(url: str, book_uuid: str) -> models.FlowDetail:
    """The only flow detail of logbook ``book_uuid``, read fresh from the store."""
    with connection(url) as conn:
        (flow_detail,) = list(conn.get_logbook(book_uuid))
    return flow_detail


def atoms_of(flow_detail: models.FlowDetail) -> dict[str, models.AtomDetail]:
    return {ad.name: ad for ad in flow_detail}


def calls(log: Path) -> list[tuple[str, str, int]]:
    """The call log as ``(atom, action, pid)``, oldest first."""
    return [(c["atom"], c["action"], c["pid"]) for c in _resume_flows.read_log(log)]


def without_log(results: dict[str, Any]) -> dict[str, Any]:
    """Results minus the log path (each run logs to its own file)."""
    return {k: v for k, v in results.items() if k != _resume_flows.LOG_SYMBOL}


def chain_result(value: str, last: int) -> str:
    return value + "".join(f">t{n}" for n in range(1, last + 1))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Run a flow start to end in a fresh process (SQLite); reports cached per flow."""
    cache: dict[str, dict[str, Any]] = {}

    def run(ids: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps(ids, sort_keys=True)
        if key not in cache:
            where = tmp_path_factory.mktemp("uninterrupted")
            url = f"sqlite:///{where / 'flows.db'}"
            with connection(url) as conn:
                conn.upgrade()
            run_ids = {**ids, "book": str(uuid.uuid4())}
            cache[key] = report_of(spawn(url, "start", run_ids, where / "calls.log"))
        return cache[key]

    yield run


# -- killed while executing ----------------------------------------------------------------


def test_a_run_killed_in_a_task_resumes_in_a_new_process_redoing_only_that_task(
    store_url: str, tmp_path: Path, uninterrupted: Any
) -> None:
    log, book = tmp_path / "calls.log", str(uuid.uuid4())
    first = crash(store_url, {"book": book, "factory": "linear_chain", "args": [6, 3]}, log)

    crashed = stored_flow(store_url, book)
    assert crashed.state == states.RUNNING
    assert {name: (ad.state, ad.results) for name, ad in atoms_of(crashed).items()} == {
        "t1": (states.SUCCESS, "v>t1"),
        "t2": (states.SUCCESS, "v>t1>t2"),
        "t3": (states.RUNNING, None),
        "t4": (states.PENDING, None),
        "t5": (states.PENDING, None),
        "t6": (states.PENDING, None),
    }

    resumer = spawn(store_url, "resume", {"book": book}, log)
    resumed = report_of(resumer)
    second = resumer.pid
    assert (resumed["state"], resumed["error"]) == (states.SUCCESS, None)
    # t3 was in doubt when the process died: it runs again (at least once).
    assert calls(log) == [
        ("t1", "execute", first),
        ("t2", "execute", first),
        ("t3", "execute", first),
        ("t3", "execute", second),
        ("t4", "execute", second),
        ("t5", "execute", second),
        ("t6", "execute", second),
    ]
    reference = uninterrupted({"factory": "linear_chain", "args": [6]})
    assert without_log(resumed["results"]) == without_log(reference["results"])
    assert without_log(resumed["results"])["t6"] == chain_result("v", 6)

    final = stored_flow(store_url, book)
    assert final.state == states.SUCCESS
    assert {name: (ad.state, ad.results) for name, ad in atoms_of(final).items()} == {
        f"t{n}": (states.SUCCESS, chain_result("v", n)) for n in range(1, 7)
    }
    # The resumed run carried on in the stored flow detail; it made no new one.
    with connection(store_url) as conn:
        assert [[fd.uuid for fd in lb] for lb in conn.get_logbooks()] == [[final.uuid]]


# -- killed while reverting ------------------------------------------------------------------


def test_a_run_killed_while_reverting_finishes_reverting_in_a_new_process(
    store_url: str, tmp_path: Path, uninterrupted: Any
) -> None:
    log, book = tmp_path / "calls.log", str(uuid.uuid4())
    # t5 fails, so t5, t4, t3... are reverted; t3's revert kills the process.
    args = [6, 3, "revert", 5]
    first = crash(store_url, {"book": book, "factory": "linear_chain", "args": args}, log)

    crashed = atoms_of(stored_flow(store_url, book))
    assert {name: ad.state for name, ad in crashed.items()} == {
        "t1": states.SUCCESS,
        "t2": states.SUCCESS,
        "t3": states.REVERTING,
        "t4": states.REVERTED,
        "t5": states.REVERTED,
        "t6": states.PENDING,
    }
    assert (crashed["t1"].results, crashed["t2"].results) == ("v>t1", "v>t1>t2")
    stored_failure = crashed["t5"].failure
    assert stored_failure is not None and stored_failure.check(RuntimeError)

    resumer = spawn(store_url, "resume", {"book": book}, log)
    resumed = report_of(resumer)
    second = resumer.pid
    assert calls(log) == [
        *((f"t{n}", "execute", first) for n in range(1, 6)),
        ("t5", "revert", first),
        ("t4", "revert", first),
        ("t3", "revert", first),
        # t3's revert was in doubt: it runs again, then the rest of the revert.
        ("t3", "revert", second),
        ("t2", "revert", second),
        ("t1", "revert", second),
    ]
    assert resumed["state"] == states.REVERTED
    # The resumed run re-raises t5's stored failure; it no longer has the live
    # exception, so it comes wrapped (as in TaskFlow).
    assert resumed["error"] == {
        "type": "WrappedFailure",
        "message": "WrappedFailure: [Failure: RuntimeError: t5 failed]",
        "wrapped": [
            {
                "types": ["RuntimeError", "Exception"],
                "message": "t5 failed",
            }
        ],
    }
    reference = uninterrupted({"factory": "linear_chain", "args": [6, None, "execute", 5]})
    assert reference["error"]["type"] == "RuntimeError"
    assert reference["state"] == states.REVERTED
    # The reverted atoms' results are gone; the failed one's Failure stays (as in TaskFlow).
    failed_t5 = {"failure": ["RuntimeError", "Exception"]}
    assert (
        without_log(resumed["results"])
        == without_log(reference["results"])
        == {"value": "v", "t5": failed_t5}
    )

    final = stored_flow(store_url, book)
    assert final.state == states.REVERTED
    assert {name: ad.state for name, ad in atoms_of(final).items()} == {
        **{f"t{n}": states.REVERTED for n in range(1, 6)},
        "t6": states.PENDING,
    }


# -- the parallel engine ------------------------------------------------------------------------


def test_a_graph_flow_on_the_parallel_engine_killed_mid_run_resumes(
    request: pytest.FixtureRequest, tmp_path: Path, uninterrupted: Any
) -> None:
    url = make_store("sqlite", request, tmp_path)
    log, book = tmp_path / "calls.log", str(uuid.uuid4())
    spec = {"factory": "fan_out_graph", "engine": "parallel", "options": {"max_workers": 4}}
    first = crash(url, {**spec, "book": book, "args": ["w2"]}, log)

    crashed = {name: ad.state for name, ad in atoms_of(stored_flow(url, book)).items()}
    assert crashed["start"] == states.SUCCESS
    assert crashed["w2"] == states.RUNNING
    assert crashed["join"] == states.PENDING
    # The other branches ran alongside w2: each is stored done or still running.
    assert {crashed[f"w{n}"] for n in (0, 1, 3)} <= {states.SUCCESS, states.RUNNING}
    before = Counter(atom for atom, action, _ in calls(log) if action == "execute")

    resumer = spawn(url, "resume", {**spec, "book": book}, log)
    resumed = report_of(resumer)
    assert (resumed["state"], resumed["error"]) == (states.SUCCESS, None)
    log_after = calls(log)
    assert all(action == "execute" for _, action, _ in log_after)
    assert {pid for *_, pid in log_after[: sum(before.values())]} == {first}
    again = Counter(atom for atom, _, pid in log_after if pid == resumer.pid)
    # Exactly what was not stored done runs again, once; nothing done is redone.
    assert again == Counter(name for name, state in crashed.items() if state != states.SUCCESS)
    assert before["start"] == 1 and "start" not in again

    reference = uninterrupted({**spec, "args": [None]})
    assert without_log(resumed["results"]) == without_log(reference["results"])
    assert resumed["results"]["joined"] == "+".join(f"v>start>w{n}" for n in range(4))
    final = stored_flow(url, book)
    assert final.state == states.SUCCESS
    assert {ad.state for ad in final} == {states.SUCCESS}


# -- two engines sharing one database -------------------------------------------------------------

TASKS = 200


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_processes_run_different_flows_against_one_database_at_once(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = make_store(kind, request, tmp_path)
    barrier = tmp_path / "barrier"
    plans = {value: str(uuid.uuid4()) for value in ("a", "b")}
    procs = [
        spawn(
            url,
            "start",
            {
                "book": book,
                "factory": "linear_chain",
                "args": [TASKS],
                "value": value,
                "barrier": str(barrier),
            },
            tmp_path / f"calls-{value}.log",
        )
        for value, book in plans.items()
    ]
    try:
        # Both have loaded their engine (and saved their logbook): release them together.
        wait_until(
            lambda: all(Path(f"{barrier}.{proc.pid}").exists() or proc.poll() is not None for proc in procs),
            timeout=CHILD_TIMEOUT,
            message="both children ready to run",
        )
        (tmp_path / "barrier.go").touch()
        reports = [report_of(proc) for proc in procs]
    finally:
        kill_all(procs)

    for report, value in zip(reports, plans, strict=True):
        assert (report["state"], report["error"]) == (states.SUCCESS, None)
        assert without_log(report["results"])[f"t{TASKS}"] == chain_result(value, TASKS)
    with connection(url) as conn:
        assert {book.uuid for book in conn.get_logbooks()} == set(plans.values())
    for value, book in plans.items():
        flow_detail = stored_flow(url, book)
        assert flow_detail.state == states.SUCCESS
        assert len(flow_detail) == TASKS
        assert {ad.name: (ad.state, ad.results) for ad in flow_detail} == {
            f"t{n}": (states.SUCCESS, chain_result(value, n)) for n in range(1, TASKS + 1)
        }
