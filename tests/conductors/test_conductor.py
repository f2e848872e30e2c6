"""Conductors over a memory board and SQLite persistence: TaskFlow's behaviour and flowkit's additions."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path
from typing import Any

import pytest

from flowkit import conductors, states
from flowkit import exceptions as exc
from flowkit.jobs.backends.impl_memory import MemoryJobBoard
from flowkit.jobs.base import AttemptEnd
from flowkit.listeners.claims import CheckingClaimListener
from flowkit.persistence.base import Backend
from tests import services
from tests.conductors import flows
from tests.conductors.conftest import flow_state, post_flow, stored_results
from tests.conftest import wait_until
from tests.jobs.conftest import board_conf
from tests.manual_clock import ManualClock


def make_board() -> MemoryJobBoard:
    board = MemoryJobBoard("board")
    board.connect()
    return board


def record_events(conductor: Any) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    conductor.notifier.register("*", lambda event_type, details: events.append((event_type, details)))
    return events


@pytest.mark.parametrize("kind", ["blocking", "nonblocking"])
def test_conductor_runs_a_job_and_consumes_it(kind: str, persistence: Backend, tmp_path: Path) -> None:
    board = make_board()
    calls = str(tmp_path / "calls")
    job, fd = post_flow(board, persistence, flows.chain, [2], job_store={"v0": 40, "calls": calls})
    conductor = conductors.backends.fetch(kind, "host-a", board, persistence=persistence, engine="serial")
    events = record_events(conductor)
    conductor.run(max_dispatches=1)
    assert job.state == states.COMPLETE
    assert flow_state(persistence, fd) == (states.SUCCESS, {"step0": states.SUCCESS, "step1": states.SUCCESS})
    assert stored_results(persistence, fd) == {"step0": 41, "step1": 42}
    names = [e for e, _ in events]
    assert names == [
        "compilation_start",
        "compilation_end",
        "preparation_start",
        "preparation_end",
        "validation_start",
        "validation_end",
        "running_start",
        "running_end",
        "job_consumed",
    ]
    assert events[-1][1]["job"] is job and events[-1][1]["conductor"] is conductor
    assert conductor.wait(0)


def test_nonblocking_executor_factory_is_called_without_arguments_as_taskflows(
    persistence: Backend, tmp_path: Path
) -> None:
    """TaskFlow calls ``executor_factory()`` bare (its docstring says with the conductor; its code does not).

    Its own conductor tests pass ``def single_factory(): ...``, as programs written for it do.
    """
    board = make_board()
    job, _ = post_flow(
        board, persistence, flows.chain, [1], job_store={"v0": 0, "calls": str(tmp_path / "c")}
    )
    made: list[concurrent.futures.Executor] = []

    def single_factory() -> concurrent.futures.Executor:
        made.append(concurrent.futures.ThreadPoolExecutor(max_workers=1))
        return made[-1]

    conductor = conductors.backends.fetch(
        "nonblocking", "c", board, persistence=persistence, executor_factory=single_factory
    )
    conductor.run(max_dispatches=1)
    assert job.state == states.COMPLETE
    assert len(made) == 1


def test_store_precedence_is_job_then_flow_detail_then_conductor(persistence: Backend) -> None:
    board = make_board()
    _, fd = post_flow(
        board,
        persistence,
        flows.collect,
        meta_store={"b": "meta", "c": "meta"},
        job_store={"c": "job"},
    )
    conductor = conductors.backends.fetch(
        "blocking", "c", board, persistence=persistence, store={"a": "conductor", "b": "conductor", "c": "x"}
    )
    conductor.run(max_dispatches=1)
    assert stored_results(persistence, fd) == {"Collect": ["conductor", "meta", "job"]}


def test_run_returns_after_max_dispatches(persistence: Backend, tmp_path: Path) -> None:
    board = make_board()
    store = {"v0": 0, "calls": str(tmp_path / "calls")}
    jobs = [
        post_flow(board, persistence, flows.chain, [1], job_store=store, name=f"j{i}")[0] for i in range(3)
    ]
    conductor = conductors.backends.fetch("blocking", "c", board, persistence=persistence)
    conductor.run(max_dispatches=2)
    assert [j.state for j in jobs] == [states.COMPLETE, states.COMPLETE, states.UNCLAIMED]
    conductor.run(max_dispatches=0)
    assert jobs[2].state == states.UNCLAIMED


@pytest.mark.parametrize("engine", ["worker-bsed", "parallel://?max_workers=many"])
def test_an_engine_the_conductor_cannot_make_gives_the_job_back_as_taskflows(
    engine: str, persistence: Backend, tmp_path: Path
) -> None:
    # The conductor's own engine setting is at fault, not the job: every job it
    # claimed was set aside in the trash for good, so one misconfigured conductor
    # emptied the board. TaskFlow's conductor gives such a job back.
    board = make_board()
    calls = str(tmp_path / "calls")
    job, _ = post_flow(board, persistence, flows.chain, [1], job_store={"v0": 0, "calls": calls})
    conductor = conductors.backends.fetch("blocking", "c", board, persistence=persistence, engine=engine)
    conductor.run(max_dispatches=1)
    assert board.trashed() == []
    assert job.state == states.UNCLAIMED
    assert [a.end for a in job.attempts] == [AttemptEnd.ABANDONED]
    assert flows.read_calls(calls) == []


@pytest.mark.parametrize("kind", ["blocking", "nonblocking"])
def test_conductor_not_run_yet_is_dispatching_and_waited_for_as_taskflows(
    kind: str, persistence: Backend
) -> None:
    """TaskFlow's conductor counts as dispatching until a run() returns; wait() before it waits."""
    conductor = conductors.backends.fetch(kind, "c", make_board(), persistence=persistence, wait_timeout=0.01)
    assert conductor.dispatching
    assert not conductor.wait(0)
    assert not conductor.wait(0.01)
    conductor.run(max_dispatches=0)
    assert not conductor.dispatching
    assert conductor.wait(0)


def test_conductor_started_while_redis_is_down_waits_for_it_as_taskflows(
    persistence: Backend, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """TaskFlow's run() registers nothing on Redis and retries listing: a Redis down at start is outlived."""
    services.require_module("redis", "redis")
    from flowkit.jobs import backends as board_backends

    server: services.RedisServer = request.getfixturevalue("redis_server")
    board = board_backends.fetch("b", board_conf("redis", request), persistence=persistence)
    board.connect()
    conductor = conductors.backends.fetch("blocking", "c", board, persistence=persistence, wait_timeout=0.01)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            conductor.run()
        except BaseException as error:
            failures.append(error)
            raise

    server.stop()
    runner = threading.Thread(target=run, daemon=True)
    try:
        runner.start()
        # Redis stays down until run() has tried it (and failed, or raised as it used to).
        wait_until(lambda: failures or "could not register entity" in caplog.text)
    finally:
        server.start()
    try:
        job, _ = post_flow(board, persistence, flows.chain, [1], job_store={"v0": 1})
        wait_until(lambda: failures or job.state == states.COMPLETE)
        assert not failures, f"run() raised: {failures[0]!r}"
    finally:
        conductor.stop()
        runner.join(30)
        board.close()
    assert not runner.is_alive()


def test_stop_ends_an_idle_run(persistence: Backend) -> None:
    board = make_board()
    conductor = conductors.backends.fetch(
        "nonblocking", "c", board, persistence=persistence, wait_timeout=0.01
    )
    # The run is idle once it has looked for jobs and found none (dispatching is
    # True before run() starts, as in TaskFlow, so it cannot tell).
    listed = threading.Event()
    iterjobs = board.iterjobs

    def listing(*args: Any, **kwargs: Any) -> Any:
        listed.set()
        return iterjobs(*args, **kwargs)

    board.iterjobs = listing  # type: ignore[method-assign]
    runner = threading.Thread(target=conductor.run)
    runner.start()
    assert listed.wait(10), "the conductor never looked for jobs"
    conductor.stop()
    assert conductor.wait(10)
    runner.join(10)
    assert not runner.is_alive()


@pytest.mark.parametrize("kind", ["blocking", "nonblocking"])
def test_stop_before_run_is_not_forgotten(kind: str, persistence: Backend) -> None:
    """A stop() that lands before run() starts (a SIGTERM at start-up) still ends the run, as in TaskFlow."""
    board = make_board()
    job, _ = post_flow(board, persistence, flows.chain, [1], job_store={"v0": 1})
    conductor = conductors.backends.fetch(kind, "c", board, persistence=persistence, wait_timeout=0.01)
    conductor.stop()
    runner = threading.Thread(target=conductor.run, daemon=True)
    runner.start()
    runner.join(10)
    assert not runner.is_alive(), "run() ignored the stop() asked before it started"
    assert conductor.wait(0)
    assert job.state == states.UNCLAIMED


def test_stop_suspends_a_running_flow_and_abandons_its_job(persistence: Backend, tmp_path: Path) -> None:
    board = make_board()
    gate = tmp_path / "gate"
    calls = str(tmp_path / "calls")
    job, fd = post_flow(
        board, persistence, flows.chain, [3, 1, str(gate)], job_store={"v0": 0, "calls": calls}
    )
    conductor = conductors.backends.fetch("blocking", "c", board, persistence=persistence)
    events = record_events(conductor)
    runner = threading.Thread(target=conductor.run)
    runner.start()
    wait_until(lambda: [c["atom"] for c in flows.read_calls(calls)] == ["step0", "step1"])
    conductor.stop()
    gate.touch()
    assert conductor.wait(10)
    runner.join(10)
    assert job.state == states.UNCLAIMED
    assert [e for e, _ in events][-1] == "job_abandoned"
    assert job.attempts[-1].end is AttemptEnd.ABANDONED and not job.attempts[-1].counts_as_failure
    state, atoms = flow_state(persistence, fd)
    assert state == states.SUSPENDED and atoms["step2"] == states.PENDING
    # Another conductor resumes where it stopped: step0 and step1 do not run again.
    conductors.backends.fetch("blocking", "d", board, persistence=persistence).run(max_dispatches=1)
    assert job.state == states.COMPLETE
    assert [c["atom"] for c in flows.read_calls(calls)] == ["step0", "step1", "step2"]
    assert stored_results(persistence, fd)["step2"] == 3


def test_a_failed_flow_is_reverted_and_its_job_consumed(persistence: Backend, tmp_path: Path) -> None:
    board = make_board()
    calls = str(tmp_path / "calls")
    job, fd = post_flow(board, persistence, flows.failing, job_store={"calls": calls})
    conductor = conductors.backends.fetch("blocking", "c", board, persistence=persistence)
    conductor.run(max_dispatches=1)
    assert job.state == states.COMPLETE
    assert flow_state(persistence, fd)[0] == states.REVERTED
    assert [c["action"] for c in flows.read_calls(calls)] == ["execute", "revert"]


def test_a_new_job_for_a_flow_reverted_before_runs_it_again_as_on_taskflow(
    persistence: Backend, tmp_path: Path
) -> None:
    # Only a job whose own earlier claim reverted the flow is consumed without a run
    # (its conductor died before consuming it): a job posted afterwards starts it over.
    board = make_board()
    calls = str(tmp_path / "calls")
    first, fd = post_flow(board, persistence, flows.failing, job_store={"calls": calls})
    conductor = conductors.backends.fetch("blocking", "c", board, persistence=persistence)
    conductor.run(max_dispatches=1)
    assert first.state == states.COMPLETE and flow_state(persistence, fd)[0] == states.REVERTED
    assert first.book is not None
    again = board.post("again", book=first.book, details={"store": {"calls": calls}})
    conductor.run(max_dispatches=1)
    assert again.state == states.COMPLETE
    assert [c["action"] for c in flows.read_calls(calls)] == ["execute", "revert"] * 2


def test_a_job_given_back_after_its_flow_reverted_runs_it_again_as_on_taskflow(
    persistence: Backend, tmp_path: Path
) -> None:
    # Failures that all say "try the job again" give it back; its next claim finds the
    # flow REVERTED under its own earlier fence, and still runs it again.
    board = make_board()
    calls = str(tmp_path / "calls")
    job, fd = post_flow(board, persistence, flows.failing_not_consumed, job_store={"calls": calls})
    conductor = conductors.backends.fetch("blocking", "c", board, persistence=persistence)
    conductor.run(max_dispatches=1)
    assert job.state == states.UNCLAIMED and flow_state(persistence, fd)[0] == states.REVERTED
    conductor.run(max_dispatches=1)
    assert [c["action"] for c in flows.read_calls(calls)] == ["execute", "revert"] * 2


def test_job_whose_factory_cannot_be_imported_is_set_aside(persistence: Backend, tmp_path: Path) -> None:
    board = make_board()
    bad, _ = post_flow(board, persistence, "tests.conductors.no_such_module.factory", name="bad")
    calls = str(tmp_path / "calls")
    good, _ = post_flow(
        board, persistence, flows.chain, [1], job_store={"v0": 0, "calls": calls}, name="good"
    )
    conductor = conductors.backends.fetch("blocking", "c", board, persistence=persistence)
    events = record_events(conductor)
    conductor.run(max_dispatches=2)
    assert (bad.state, good.state) == (states.COMPLETE, states.COMPLETE)
    [aside] = board.trashed()
    assert aside["uuid"] == bad.uuid
    assert "tests.conductors.no_such_module.factory" in aside["reason"]
    assert "cannot be imported" in aside["reason"]
    # It named flowkit's private "_FactoryImportError".
    assert aside["reason"].startswith("cannot load the job's flow: ImportError: ")
    assert [e for e, _ in events if e.startswith("job_")] == ["job_trashed", "job_consumed"]


def test_job_without_a_logbook_is_set_aside(persistence: Backend) -> None:
    board = make_board()
    job = board.post("orphan")
    conductors.backends.fetch("blocking", "c", board, persistence=persistence).run(max_dispatches=1)
    assert job.state == states.COMPLETE
    assert "has no logbook" in board.trashed()[0]["reason"]


def test_job_whose_logbook_was_destroyed_after_posting_is_set_aside(
    persistence: Backend, tmp_path: Path
) -> None:
    board = make_board()
    job, fd = post_flow(
        board, persistence, flows.chain, [1], job_store={"v0": 0, "calls": str(tmp_path / "c")}
    )
    assert job.book_uuid is not None
    with persistence.get_connection() as conn:
        conn.destroy_logbook(job.book_uuid)
    [listed] = list(board.iterjobs())
    conductors.backends.fetch("blocking", "c", board, persistence=persistence).run(max_dispatches=1)
    assert listed.state == states.COMPLETE
    reason = board.trashed()[0]["reason"]
    assert "NotFound" in reason and fd.uuid in reason
    assert not (tmp_path / "c").exists()


def test_poison_job_is_set_aside_with_its_failures(persistence: Backend, tmp_path: Path) -> None:
    board = make_board()
    job, _ = post_flow(
        board, persistence, flows.chain, [1], job_store={"v0": 0, "calls": str(tmp_path / "c")}
    )
    for who in ("host-a", "host-b"):
        board.claim(job, who)
        board.abandon(job, who, reason=f"{who} ran out of memory", failed=True)
    conductor = conductors.backends.fetch("blocking", "c", board, persistence=persistence, max_failures=2)
    events = record_events(conductor)
    runner = threading.Thread(target=conductor.run)
    runner.start()
    wait_until(lambda: job.state == states.COMPLETE)
    conductor.stop()
    runner.join(10)
    [aside] = board.trashed()
    assert "after 2 failed attempts" in aside["reason"]
    assert "host-a: failed: host-a ran out of memory" in aside["reason"]
    assert [e for e, _ in events] == ["job_trashed"]
    assert not (tmp_path / "c").exists()


def test_poison_limit_must_be_positive(persistence: Backend) -> None:
    with pytest.raises(ValueError, match="max_failures"):
        conductors.backends.fetch("blocking", "c", make_board(), persistence=persistence, max_failures=0)


def test_unknown_conductor_kind_names_the_known_ones() -> None:
    from flowkit import exceptions as exc

    with pytest.raises(
        exc.NotFound, match=r"^Could not find conductor turbo \(known kinds: blocking, nonblocking"
    ):
        conductors.backends.fetch("turbo", "c", make_board())


def test_writes_of_a_conductor_whose_claim_was_taken_over_are_refused(
    persistence: Backend, tmp_path: Path
) -> None:
    clock = ManualClock(0.0)
    board = MemoryJobBoard("board", {"claim_expiry": 10}, clock=clock)
    gate = tmp_path / "gate"
    calls = str(tmp_path / "calls")
    job, fd = post_flow(
        board, persistence, flows.chain, [2, 0, str(gate)], job_store={"v0": 0, "calls": calls}
    )
    loser = conductors.backends.fetch("blocking", "loser", board, persistence=persistence)
    events = record_events(loser)
    runner = threading.Thread(target=loser.run, kwargs={"max_dispatches": 1})
    runner.start()
    wait_until(lambda: [c["atom"] for c in flows.read_calls(calls)] == ["step0"])
    # The loser's claim expires while its task runs; another conductor takes the job.
    clock.now += 11
    [seen] = list(board.iterjobs(only_unclaimed=True))
    board.claim(seen, "winner")
    gate.touch()
    runner.join(10)
    assert [e for e, _ in events][-1] == "job_lost"
    # Its result was never written: the flow detail shows step0 still running, as the winner found it.
    assert flow_state(persistence, fd)[1]["step0"] == states.RUNNING
    assert board.find_owner(job) == "winner"


def test_in_doubt_task_that_finished_is_not_run_again(persistence: Backend, tmp_path: Path) -> None:
    board = make_board()
    calls, ledger = str(tmp_path / "calls"), tmp_path / "ledger"
    job, fd = post_flow(board, persistence, flows.checkout, job_store={"calls": calls, "ledger": str(ledger)})
    _leave_running(persistence, fd, "Charge")
    ledger.write_text("charged")  # the dead conductor's charge went through
    conductors.backends.fetch("blocking", "c", board, persistence=persistence).run(max_dispatches=1)
    assert job.state == states.COMPLETE
    assert [(c["atom"], c["action"]) for c in flows.read_calls(calls)] == [
        ("Charge", "check_done"),
        ("Ship", "execute"),
    ]
    assert stored_results(persistence, fd) == {"Charge": "receipt-1", "Ship": "shipped with receipt-1"}


def test_in_doubt_task_that_did_not_finish_runs_again(persistence: Backend, tmp_path: Path) -> None:
    board = make_board()
    calls, ledger = str(tmp_path / "calls"), tmp_path / "ledger"
    job, fd = post_flow(board, persistence, flows.checkout, job_store={"calls": calls, "ledger": str(ledger)})
    _leave_running(persistence, fd, "Charge")
    conductors.backends.fetch("blocking", "c", board, persistence=persistence).run(max_dispatches=1)
    assert [(c["atom"], c["action"]) for c in flows.read_calls(calls)] == [
        ("Charge", "check_done"),
        ("Charge", "execute"),
        ("Ship", "execute"),
    ]


def _leave_running(persistence: Backend, fd: Any, atom: str) -> None:
    """Make the stored flow look like its conductor died while ``atom`` ran."""
    from flowkit import engines

    with persistence.get_connection() as conn:
        stored = conn.get_flow_details(fd.uuid)
    engine = engines.load_from_detail(stored, backend=persistence, store={"calls": "-", "ledger": "-"})
    engine.prepare()
    engine.storage.set_atom_state(atom, states.RUNNING)
    engine.storage.flush()


def test_checking_claim_listener_suspends_an_engine_that_lost_its_claim(
    persistence: Backend, tmp_path: Path
) -> None:
    board = make_board()
    calls = str(tmp_path / "calls")
    job, fd = post_flow(board, persistence, flows.chain, [3], job_store={"v0": 0, "calls": calls})
    board.claim(job, "a")

    class Losing(conductors.backends.fetch("blocking", "x", board).__class__):  # type: ignore[misc]
        def _listeners_from_job(self, job: Any, engine: Any) -> list[Any]:
            return [CheckingClaimListener(engine, job, self._jobboard, self._name)]

    board.abandon(job, "a")
    conductor = Losing("c", board, persistence=persistence)

    def steal(event_type: str, details: dict[str, Any]) -> None:
        board.abandon(job, "c")
        board.claim(job, "thief")

    conductor.notifier.register("running_start", steal)
    conductor.run(max_dispatches=1)
    assert len(flows.read_calls(calls)) < 3
    assert board.find_owner(job) == "thief"


class _UncheckableBoard(MemoryJobBoard):
    """A memory board whose claim checks fail once ``uncheckable`` is set (its other answers come).

    As a board that does not answer a conductor's claim checks in time: the
    conductor counts its claim lost, though the board still holds it.
    """

    uncheckable = False

    def check_claim(self, job: Any, claim: Any) -> None:
        if self.uncheckable:
            raise exc.JobFailure("the claim check got no answer (forced by the test)")
        super().check_claim(job, claim)


def test_a_claim_counted_lost_but_still_held_is_given_back(persistence: Backend, tmp_path: Path) -> None:
    """Not left claimed, by a conductor that stopped running the job, for as long as it lives.

    Claims that never expire on their own (ZooKeeper's live with the
    conductor's session, Redis's the board keeps renewing) made such a job
    wait for ever. Given back with the claim's token, so a claim really taken
    over is left to its new owner.
    """
    board = _UncheckableBoard("board", clock=ManualClock())  # its claims never expire
    board.connect()
    gate = tmp_path / "gate"
    calls = str(tmp_path / "calls")
    job, _fd = post_flow(
        board, persistence, flows.chain, [2, 0, str(gate)], job_store={"v0": 0, "calls": calls}
    )
    conductor = conductors.backends.fetch("blocking", "c", board, persistence=persistence, claim_expiry=0.2)
    events = record_events(conductor)
    runner = threading.Thread(target=conductor.run, kwargs={"max_dispatches": 1})
    runner.start()
    wait_until(lambda: [c["atom"] for c in flows.read_calls(calls)] == ["step0"])
    board.uncheckable = True  # step0's result is written next: its claim check gets no answer
    gate.touch()
    runner.join(10)
    assert [e for e, _ in events][-1] == "job_lost"
    assert job.state == states.UNCLAIMED, "the job stays claimed by a conductor no longer running it"
    [attempt] = board.attempts(job)
    assert attempt.end is AttemptEnd.FAILED
    assert attempt.reason is not None and "counted as lost" in attempt.reason


# -- which flow factories a conductor calls ----------------------------------------


def _board_of(kind: str, request: pytest.FixtureRequest) -> Any:
    from flowkit.jobs import backends as job_backends

    board = job_backends.fetch("board", board_conf(kind, request))
    board.connect()
    request.addfinalizer(board.close)
    return board


@pytest.mark.parametrize("kind", ["memory", "redis", "etcd"])
def test_by_default_a_conductor_calls_whatever_factory_a_job_names_as_taskflows(
    kind: str, request: pytest.FixtureRequest, persistence: Backend, tmp_path: Path
) -> None:
    # What the 'factories' option is for: a poster chooses the function and its arguments.
    board = _board_of(kind, request)
    mark = tmp_path / "called"
    post_flow(board, persistence, flows.leave_mark, [str(mark)], name="odd")
    conductors.backends.fetch("blocking", "c", board, persistence=persistence).run(max_dispatches=1)
    assert mark.exists()


@pytest.mark.parametrize("kind", ["memory", "redis", "etcd"])
def test_a_conductor_given_factories_calls_no_other_and_sets_that_job_aside(
    kind: str, request: pytest.FixtureRequest, persistence: Backend, tmp_path: Path
) -> None:
    board = _board_of(kind, request)
    mark = tmp_path / "called"
    post_flow(board, persistence, flows.leave_mark, [str(mark)], name="odd")
    _, good = post_flow(
        board, persistence, flows.chain, [1], job_store={"v0": 0, "calls": str(tmp_path / "c")}, name="good"
    )
    conductor = conductors.backends.fetch(
        "blocking", "c", board, persistence=persistence, factories=["tests.conductors.flows.chain", "other."]
    )
    conductor.run(max_dispatches=2)
    assert not mark.exists(), "the conductor called a factory it was not given"
    [aside] = board.trashed()
    assert "'tests.conductors.flows.leave_mark'" in aside["reason"]
    assert "factories" in aside["reason"] and "conductor 'c'" in aside["reason"]
    assert flow_state(persistence, good)[0] == states.SUCCESS


def test_a_module_prefix_in_factories_allows_the_module_s_factories(
    persistence: Backend, tmp_path: Path
) -> None:
    board = make_board()
    _, good = post_flow(
        board, persistence, flows.chain, [1], job_store={"v0": 0, "calls": str(tmp_path / "c")}, name="good"
    )
    conductors.backends.fetch(
        "blocking", "c", board, persistence=persistence, factories=["tests.conductors."]
    ).run(max_dispatches=1)
    assert flow_state(persistence, good)[0] == states.SUCCESS
    assert not board.trashed()


def test_factories_must_be_names(persistence: Backend) -> None:
    with pytest.raises(TypeError, match="factories"):
        conductors.backends.fetch(
            "blocking", "c", make_board(), persistence=persistence, factories="pkg.make"
        )


def test_an_allowed_module_does_not_lend_the_functions_it_imports(
    persistence: Backend, tmp_path: Path
) -> None:
    # factories=["tests.conductors."] was checked on the recorded name only: a job
    # naming 'tests.conductors.flows.os.makedirs' passed it, and the conductor
    # called os.makedirs with the job's arguments.
    board = make_board()
    target = tmp_path / "made-by-a-job"
    post_flow(board, persistence, "tests.conductors.flows.os.makedirs", [str(target)], name="odd")
    conductors.backends.fetch(
        "blocking", "c", board, persistence=persistence, factories=["tests.conductors."]
    ).run(max_dispatches=1)
    assert not target.exists(), "the conductor called a function its allowed module imports"
    [aside] = board.trashed()
    assert "'tests.conductors.flows.os.makedirs'" in aside["reason"]
    assert "os.makedirs" in aside["reason"] and "conductor 'c'" in aside["reason"]
