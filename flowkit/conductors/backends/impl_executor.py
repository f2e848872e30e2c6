"""The conductor loop shared by the blocking and non-blocking conductors.

``run()`` lists the board's unclaimed jobs, claims them one at a time while it
has room (``max_simultaneous_jobs``), and hands each claimed job to an
executor; when nothing could be claimed it sleeps ``wait_timeout`` seconds
(cut short by :meth:`stop`). Each dispatched job ends in one
:class:`Verdict`:

- ``CONSUME``: the flow finished (successfully, or reverted after a task
  failed: TaskFlow consumes those too);
- ``ABANDON``: the conductor is stopping and suspended the flow;
- ``FAIL``: running failed in a way another conductor may get past
  (a storage or execution failure): abandoned and recorded as a failure.
  A job whose flow could not be loaded because the board or the store
  cannot be reached (a server restarting; the store fails its ``validate``
  too) is no failure of the job's: it is abandoned without being counted
  (``max_failures``), and the loop waits ``wait_timeout`` before claiming
  again;
- ``TRASH``: the job cannot be run at all (no flow detail, a flow factory
  that cannot be imported, a flow detail another job still claimed runs:
  :class:`~flowkit.conductors.base.FlowDetailHeld`): set aside with the reason;
- ``LOST``: the claim was lost meanwhile, or counts as lost (the board did
  not confirm it in time, the store gave its fence to another): given back
  with the claim's token, which the board refuses if another conductor
  claimed the job since, and which frees a job the board still holds for
  this conductor (else claims that never lapse on their own, as ZooKeeper's
  and the Redis board's renewed ones, would keep it claimed for ever).

Beyond TaskFlow: every engine writes through a
:class:`~flowkit.conductors._fencing.FencedBackend`, so a conductor whose
claim was lost cannot write; a job whose earlier attempts failed
``max_failures`` times is set aside (``None``, the default, never does);
tasks left ``RUNNING`` by a dead conductor are asked ``check_done``
(:mod:`flowkit.conductors.in_doubt`).

Events sent on the conductor's notifier (details: ``job``, ``conductor``,
and ``engine`` for the stages): ``compilation_start``/``_end``,
``preparation_start``/``_end``, ``validation_start``/``_end``,
``running_start``/``_end``, ``job_consumed``, ``job_abandoned``,
``job_trashed`` (with ``reason``), ``job_lost``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import enum
import functools
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flowkit import exceptions as exc
from flowkit import states
from flowkit._utils.text import LogSafe
from flowkit.conductors._fencing import ClaimFence, FencedBackend, FlowDetailHeld
from flowkit.conductors.base import Conductor
from flowkit.jobs.base import Claim, Claimed, ClaimLost, Job, JobBoard
from flowkit.listeners import logging as logging_listener
from flowkit.persistence.base import Backend

__all__ = ["ExecutorConductor", "Verdict", "consumed_when_reverted"]

LOG = logging.getLogger(__name__)


class Verdict(enum.Enum):
    """How a dispatched job ends (see the module docstring)."""

    CONSUME = "consume"
    ABANDON = "abandon"
    FAIL = "fail"
    TRASH = "trash"
    LOST = "lost"


@dataclass(frozen=True)
class Outcome:
    """A verdict and why."""

    verdict: Verdict
    reason: str | None = None


#: Failures another conductor may get past: abandon rather than consume.
NO_CONSUME_EXCEPTIONS: tuple[type[BaseException], ...] = (exc.ExecutionFailure, exc.StorageFailure)


def consumed_when_reverted(engine: Any) -> bool:
    """Whether the run that took ``engine``'s flow to REVERTED ended with its job consumed.

    As :meth:`ExecutorConductor._run_engine` decides (and TaskFlow's conductor), and
    so ``flowkit flows resume`` of a job's flow ends the job as a conductor would:
    failures all of :data:`NO_CONSUME_EXCEPTIONS` give the job back to be run
    again, anything else consumes it. Read from the failures the store kept.
    """
    storage = engine.storage
    failures = [*storage.get_execute_failures().values(), *storage.get_revert_failures().values()]
    return not failures or _consumes(failures)


def _consumes(failures: Iterable[Any]) -> bool:
    """Whether a run that failed with ``failures`` consumes its job (TaskFlow's rule):
    not when every one of them is of :data:`NO_CONSUME_EXCEPTIONS`, which ask for another try."""
    return not all(f.check(*NO_CONSUME_EXCEPTIONS) for f in failures)


class ExecutorConductor(Conductor):
    """Dispatches claimed jobs to an executor made by :meth:`_executor_factory`.

    Args:
        name: the name jobs are claimed under.
        jobboard: the board to take jobs from.
        persistence: the backend holding the jobs' logbooks and flow details.
        engine: engine kind for every job's flow.
        engine_options: more engine options.
        store: values every job's flow may use (lowest precedence).
        wait_timeout: seconds to sleep when no job could be claimed.
        log: logger for the conductor and its engines' logging listeners.
        max_simultaneous_jobs: jobs running at once (``<= 0``: no limit).
        max_failures: set a job aside once this many of its earlier attempts
            failed or lost their claim (``None``: never, as TaskFlow).
        claim_expiry: seconds a claim lasts unless renewed (boards with expiring claims).
        factories: the flow factories this conductor may call (see
            :class:`~flowkit.conductors.base.Conductor`; ``None``: any, as TaskFlow).
    """

    WAIT_TIMEOUT = 0.5
    MAX_SIMULTANEOUS_JOBS = -1
    #: Seconds between two listings that ask the board to refresh (``ensure_fresh``).
    REFRESH_PERIODICITY = 30.0
    #: Listed jobs offered to the board per claim attempt (``JobBoard.claim_first``).
    CLAIM_WINDOW = 16

    EVENTS_EMITTED = (
        "compilation_start",
        "compilation_end",
        "preparation_start",
        "preparation_end",
        "validation_start",
        "validation_end",
        "running_start",
        "running_end",
        "job_consumed",
        "job_abandoned",
        "job_trashed",
        "job_lost",
    )

    def __init__(
        self,
        name: str,
        jobboard: JobBoard,
        persistence: Backend | None = None,
        engine: str | None = None,
        engine_options: Mapping[str, Any] | None = None,
        wait_timeout: float | None = None,
        log: logging.Logger | None = None,
        max_simultaneous_jobs: int | None = None,
        store: Mapping[str, Any] | None = None,
        max_failures: int | None = None,
        claim_expiry: float | None = None,
        *,
        factories: Iterable[str] | None = None,
    ) -> None:
        super().__init__(
            name,
            jobboard,
            persistence=persistence,
            engine=engine,
            engine_options=engine_options,
            store=store,
            factories=factories,
        )
        self._wait_timeout = self.WAIT_TIMEOUT if wait_timeout is None else float(wait_timeout)
        self._log = log or LOG
        limit = self.MAX_SIMULTANEOUS_JOBS if max_simultaneous_jobs is None else max_simultaneous_jobs
        self._max_simultaneous_jobs = int(limit)
        if max_failures is not None and max_failures < 1:
            raise ValueError(f"max_failures must be at least 1 (or None), not {max_failures!r}")
        self._max_failures = max_failures
        self._claim_expiry = claim_expiry
        self._stopped = threading.Event()
        # Set once run() returns, as TaskFlow's: until then (before run() too) the conductor
        # counts as dispatching and wait() waits, so a supervisor that starts run() on
        # another thread and then waits is not told at once that it finished.
        self._dead = threading.Event()
        # Each running job's future and the claim it runs under: _on_job_done takes
        # TaskFlow's (job, future) arguments, which subclasses override and call.
        self._dispatched: dict[concurrent.futures.Future[Outcome], Claim] = {}
        self._dispatched_lock = threading.Lock()
        # Jobs whose end (consume, abandon, trash, giving back a lost claim) the board
        # could not be told of, by uuid: the release is tried again at each turn of the
        # loop until the board answers it (see _release_later).
        self._unreleased: dict[str, _Release] = {}
        self._unreleased_lock = threading.Lock()
        # Set when a job could not be loaded for an outage: the loop waits wait_timeout
        # before claiming again, rather than claiming and giving back without a pause.
        self._pause = threading.Event()
        # Set once an outage was logged at WARNING: the later give-backs of the same
        # outage (one per wait_timeout) are logged at DEBUG, until a job loads again.
        self._outage_told = threading.Event()

    def _executor_factory(self) -> concurrent.futures.Executor:
        raise NotImplementedError

    # -- control -----------------------------------------------------------
    def stop(self) -> None:
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for :meth:`run` to return; ``False`` if ``timeout`` passed first.

        As TaskFlow's, a conductor that has not run yet is waited for too
        (``wait(0)`` is ``False``), until a :meth:`run` returns.
        """
        return self._dead.wait(timeout)

    @property
    def dispatching(self) -> bool:
        """``False`` once :meth:`run` returned; ``True`` before (also before the first run, as TaskFlow's)."""
        return not self._dead.is_set()

    def _notify(self, event: str, details: dict[str, Any]) -> None:
        if self._notifier.has_listeners:
            self._notifier.notify(event, {"conductor": self, "persistence": self._persistence, **details})

    # -- the loop ----------------------------------------------------------
    def run(self, max_dispatches: int | None = None) -> None:
        self._dead.clear()
        # The stop event is not cleared here: a stop() asked before run() started (a SIGTERM
        # while ``flowkit conductor`` starts up) must end this run, as it does in TaskFlow.
        try:
            self._jobboard.register_entity(self.conductor)
            with self._executor_factory() as executor:
                self._run_until_stopped(executor, max_dispatches)
        finally:
            self._dead.set()

    def _can_claim_more(self) -> bool:
        if self._stopped.is_set():
            return False
        if self._max_simultaneous_jobs <= 0:
            return True
        with self._dispatched_lock:
            return len(self._dispatched) < self._max_simultaneous_jobs

    def _run_until_stopped(self, executor: concurrent.futures.Executor, max_dispatches: int | None) -> None:
        limit = -1 if max_dispatches is None else max_dispatches
        total = 0
        last_fresh = time.monotonic()
        while limit != 0 and not self._stopped.is_set():
            dispatched_any = False
            if self._unreleased:
                self._release_pending()
            ensure_fresh = time.monotonic() - last_fresh >= self.REFRESH_PERIODICITY
            if ensure_fresh:
                last_fresh = time.monotonic()
            try:
                listing = self._jobboard.iterjobs(only_unclaimed=True, ensure_fresh=ensure_fresh)
                # Claiming is the state check: a job taken or done since the listing fails
                # to be claimed, in the one round trip a separate check would have cost.
                candidates = deque(listing.candidates())
                while candidates and self._can_claim_more():
                    claimed = self._claim_first(candidates)
                    if claimed is None:
                        continue
                    job, claim = claimed
                    if self._set_aside_if_poisoned(job, claim):
                        continue
                    future = executor.submit(self._dispatch_job, job, claim)
                    with self._dispatched_lock:
                        self._dispatched[future] = claim
                    future.add_done_callback(functools.partial(self._on_job_done, job))
                    dispatched_any = True
                    total += 1
                    if 0 <= limit <= total:
                        self._log.info("Maximum dispatch limit of %s reached", limit)
                        return
            except exc.JobFailure:
                self._log.exception(
                    "Transient job board failure while iterating jobs; backing off and retrying"
                )
            paused = self._pause.is_set()
            if paused:
                self._pause.clear()
            if (paused or not dispatched_any) and not self._stopped.is_set():
                self._stopped.wait(self._wait_timeout)

    def _claim_first(self, candidates: deque[Job]) -> Claimed | None:
        """Claim the first claimable of the next :attr:`CLAIM_WINDOW` candidates; drop those tried.

        Conductors racing down one listing lose most claims to each other; the
        board tries a window of jobs in order (in one round trip on Redis)
        instead of one round trip per job a peer took first.
        """
        window = list(itertools.islice(candidates, self.CLAIM_WINDOW))
        claimed = self._jobboard.claim_first(window, self._name, expiry=self._claim_expiry)
        tried = len(window) if claimed is None else window.index(claimed.job) + 1
        debug = self._log.isEnabledFor(logging.DEBUG)
        for _ in range(tried):
            job = candidates.popleft()
            if debug:  # TaskFlow's lines for each job it tried, in order
                self._log.debug("Trying to claim job: %s", job)
                if claimed is None or job is not claimed.job:
                    self._log.debug("Job already claimed or consumed: %s", job)
        return claimed

    def _set_aside_if_poisoned(self, job: Job, claim: Claim) -> bool:
        if self._max_failures is None:
            return False
        earlier = [a for a in self._jobboard.attempts(job) if a.token != claim.token]
        failures = [a for a in earlier if a.counts_as_failure]
        if len(failures) < self._max_failures:
            return False
        listed = "; ".join(f"{a.owner}: {a.end.value}: {a.reason or 'no reason given'}" for a in failures)
        reason = f"set aside after {len(failures)} failed attempts ({listed})"
        self._log.warning("job %s is poisoned: %s", job, LogSafe(reason))
        self._finish(job, claim, Outcome(Verdict.TRASH, reason))
        return True

    # -- one job -----------------------------------------------------------
    def _listeners_from_job(self, job: Job, engine: Any) -> list[Any]:
        """The base class's listeners and a logging listener on the conductor's logger, as TaskFlow's.

        Subclasses extend the list returned by ``super()`` (OpenStack Octavia adds
        its own); one that leaves the logging listener out runs without it.
        """
        listeners = super()._listeners_from_job(job, engine)
        listeners.append(logging_listener.LoggingListener(engine, log=self._log))
        return listeners

    def _fenced(self, job: Job, claim: Claim) -> Backend | None:
        if self._persistence is None:
            return None
        return FencedBackend(self._persistence, ClaimFence(self._jobboard, job, claim, self._claim_expiry))

    def _dispatch_job(self, job: Job, claim: Claim) -> Outcome:
        backend = self._fenced(job, claim)
        try:
            return self._load_and_run(job, backend)
        finally:
            if backend is not None:
                backend.close()

    def _load_and_run(self, job: Job, backend: Backend | None) -> Outcome:
        try:
            engine = self._engine_from_job(job, backend)
        except FlowDetailHeld as held:
            # Another job, still claimed, runs the flow detail: this one is a duplicate of it.
            return Outcome(Verdict.TRASH, str(held))
        except ClaimLost as lost:
            return Outcome(Verdict.LOST, str(lost))
        except (exc.UnknownEngine, exc.InvalidEngineOption) as error:
            # The conductor's engine setting is at fault, not the job: given back
            # rather than trashed (TaskFlow's conductor trashes it, and so one
            # misconfigured conductor emptied the board; doc/migrating.rst), and
            # the loop pauses.
            reason = f"this conductor cannot make its engine: {_public_type_name(error)}: {error}"
            self._log.warning("job %s is given back: %s", job, LogSafe(reason))
            self._pause.set()
            return Outcome(Verdict.ABANDON, reason)
        except (exc.JobFailure, exc.StorageFailure) as failure:
            # The board or the store failed: another try (here or elsewhere) may succeed.
            reason = f"could not load the job's flow: {failure}"
            if self._out_of_reach(failure):
                # A server restarting is no fault of the job's: counted as a failed
                # attempt, a few seconds of outage set it aside as poisoned for good.
                # Given back plainly, and the loop pauses before claiming again.
                self._pause.set()
                self._tell_outage(job, reason)
                return Outcome(Verdict.ABANDON, reason)
            return Outcome(Verdict.FAIL, reason)
        except Exception as error:  # any other loading error means this job can never run
            kind = _public_type_name(error)
            return Outcome(Verdict.TRASH, f"cannot load the job's flow: {kind}: {error}")
        if self._outage_told.is_set():
            self._outage_told.clear()
            self._log.warning("job %s loaded: the board and the store answer again", job)
        if (
            isinstance(backend, FencedBackend)
            and engine.storage.flow_uuid in backend.run_before
            and engine.storage.get_flow_state() == states.REVERTED
            and consumed_when_reverted(engine)
        ):
            return self._already_reverted(job, engine)
        details = {"job": job, "engine": engine}
        listeners = self._listeners_from_job(job, engine)
        for listener in listeners:
            listener.register()
        self._log.debug("Dispatching engine for job '%s'", job)
        try:
            return self._run_engine(job, engine, details)
        finally:
            for listener in reversed(listeners):
                listener.deregister()

    def _tell_outage(self, job: Job, reason: str) -> None:
        """Log that ``job`` is given back for an outage: at WARNING the first time, then at DEBUG.

        Without it a conductor whose store was out of reach (a server down, or
        a ``--connection`` URL with the wrong port) gave every job back in
        silence, every ``wait_timeout``, and its operator saw jobs that stayed
        unclaimed and a conductor that said nothing. The reason names the
        server (its password masked) and the error.
        """
        if self._outage_told.is_set():
            self._log.debug("job %s is given back, the outage goes on: %s", job, LogSafe(reason))
            return
        self._outage_told.set()
        self._log.warning(
            "job %s is given back until the board and the store answer (claimed again every %s s): %s",
            job,
            self._wait_timeout,
            LogSafe(reason),
        )

    def _out_of_reach(self, failure: BaseException) -> bool:
        """Whether loading failed because the board or the store cannot be reached right now.

        A board failure is never the job's doing. A store failure is told by
        asking the store whether it is usable at all (``validate``): a store
        that fails that too is away (restarting, the network down), while one
        that answers failed on this job's data, which counts against the job.
        """
        if not isinstance(failure, exc.StorageFailure):
            return True
        if self._persistence is None:
            return False
        try:
            with contextlib.closing(self._persistence.get_connection()) as conn:
                conn.validate()
        except exc.StorageFailure:
            return True
        except Exception:  # a store that fails otherwise is no plain outage
            self._log.debug("the store failed its check after a load failure", exc_info=True)
            return False
        return False

    def _already_reverted(self, job: Job, engine: Any) -> Outcome:
        """Consume ``job`` without running its flow, which an earlier claim of it took to ``REVERTED``.

        A REVERTED flow run again starts over (TaskFlow's rule), every task's
        work done a second time. The flow of a job still on the board ends
        REVERTED when the conductor that ran it died (SIGKILL, lost host)
        after the flow's last write and before it could consume the job: the
        conductor taking the job over must finish that job, not run it anew.
        The store's write fence tells that case (the fence is this job's,
        from its earlier claim) from a job posted on a flow reverted before,
        which runs the flow again as on TaskFlow.
        """
        reason = (
            f"flow '{engine.storage.flow_name}' ({engine.storage.flow_uuid}) ended REVERTED already: "
            "consumed without running it again"
        )
        self._log.info("job %s: %s", job, LogSafe(reason))
        return Outcome(Verdict.CONSUME, reason)

    def _run_engine(self, job: Job, engine: Any, details: dict[str, Any]) -> Outcome:
        def run() -> None:
            suspended = False
            for _state in engine.run_iter():
                if not suspended and self._stopped.is_set():
                    self._log.info("Conductor stopped, requesting suspension of engine running job %s", job)
                    engine.suspend()
                    suspended = True

        stages: list[tuple[Callable[[], None], str]] = [
            (engine.compile, "compilation"),
            (engine.prepare, "preparation"),
            (engine.validate, "validation"),
            (run, "running"),
        ]
        try:
            for stage, event in stages:
                self._notify(f"{event}_start", details)
                stage()
                self._notify(f"{event}_end", details)
        except ClaimLost as lost:
            return Outcome(Verdict.LOST, str(lost))
        except exc.WrappedFailure as failures:
            if any(f.check(ClaimLost) for f in failures):
                return Outcome(Verdict.LOST, "claim lost while running")
            consume = _consumes(failures)
            self._log_failures(job, consume, list(failures))
            if not consume:
                return Outcome(Verdict.FAIL, f"{len(failures)} failures: {failures}")
            return Outcome(Verdict.CONSUME, str(failures))
        except NO_CONSUME_EXCEPTIONS as error:
            self._log.warning("Job execution failed (consumption being skipped): %s", job, exc_info=True)
            return Outcome(Verdict.FAIL, f"{type(error).__name__}: {error}")
        except Exception as error:  # a task's own failure: the flow reverted; TaskFlow consumes
            self._log.warning("Job execution failed (consumption proceeding): %s", job, exc_info=True)
            return Outcome(Verdict.CONSUME, f"{type(error).__name__}: {error}")
        if engine.storage.get_flow_state() == states.SUSPENDED:
            self._log.info("Job execution was suspended: %s", job)
            return Outcome(Verdict.ABANDON, "conductor stopped; flow suspended")
        self._log.info("Job completed successfully: %s", job)
        return Outcome(Verdict.CONSUME)

    def _log_failures(self, job: Job, consume: bool, failures: list[Any]) -> None:
        """Log a job's several failures as TaskFlow does: a summary, then each with its traceback."""
        if not self._log.isEnabledFor(logging.WARNING):
            return
        if consume:
            self._log.warning(
                "Job execution failed (consumption proceeding): %s [%s failures]", job, len(failures)
            )
        else:
            self._log.warning(
                "Job execution failed (consumption being skipped): %s [%s failures]",
                job,
                len(failures),
            )
        for i, failure in enumerate(failures):
            self._log.warning("%s. %s", i + 1, failure.pformat(traceback=True))

    def _on_job_done(self, job: Job, fut: concurrent.futures.Future[Outcome]) -> None:
        """Finish ``job`` once its run ended (TaskFlow's arguments, for subclasses that extend it)."""
        with self._dispatched_lock:
            claim = self._dispatched[fut]
        try:
            try:
                outcome = fut.result()
            except Exception as error:  # a bug in dispatching: set the job aside with it
                self._log.warning("Job dispatching failed: %s", job, exc_info=True)
                outcome = Outcome(Verdict.TRASH, f"dispatching failed: {type(error).__name__}: {error}")
            self._finish(job, claim, outcome)
        finally:
            with self._dispatched_lock:
                self._dispatched.pop(fut, None)
            # Room for another job: wake the loop if it sleeps.
            if self._max_simultaneous_jobs > 0:
                self._wake()

    def _wake(self) -> None:
        """Hook for subclasses whose loop sleeps on something else than ``stop``."""

    def _finish(self, job: Job, claim: Claim, outcome: Outcome) -> None:
        verdict = outcome.verdict
        details = {"job": job, "reason": outcome.reason}
        if verdict is Verdict.LOST:
            self._log.warning(
                "claim on job %s was lost (or counts as lost); giving it back if held: %s",
                job,
                LogSafe(outcome.reason),
            )
            self._give_back_if_held(job, claim, outcome.reason)
            self._notify("job_lost", details)
            return
        # Each release names the claim: the board compares its token in the same atomic
        # step, so a conductor whose claim was taken over never ends the new owner's run.
        try:
            if verdict is Verdict.CONSUME:
                self._jobboard.consume(job, self._name, claim=claim)
                self._notify("job_consumed", details)
            elif verdict is Verdict.TRASH:
                self._log.warning("setting job %s aside: %s", job, LogSafe(outcome.reason))
                self._jobboard.trash(job, self._name, reason=outcome.reason, claim=claim)
                self._notify("job_trashed", details)
            else:
                failed = verdict is Verdict.FAIL
                self._jobboard.abandon(job, self._name, reason=outcome.reason, failed=failed, claim=claim)
                self._notify("job_abandoned", details)
        except ClaimLost as lost:
            self._log.warning("claim on job %s was lost before it could be finished: %s", job, LogSafe(lost))
            self._notify("job_lost", {**details, "reason": str(lost)})
        except (exc.JobFailure, exc.NotFound) as failure:
            # TaskFlow's words, the job first (log filters look for it there, as Octavia's).
            if verdict is Verdict.CONSUME:
                self._log.warning("Failed job consumption: %s", job, exc_info=True)
            else:
                self._log.warning("Failed job abandonment: %s", job, exc_info=True)
            if _board_unreachable(failure):
                self._release_later(_Release(job, claim, outcome))

    def _give_back_if_held(self, job: Job, claim: Claim, reason: str | None) -> None:
        """Abandon ``job`` (as failed) if ``claim`` still holds it; the board refuses a claim taken over.

        A board that cannot be reached (its server restarting) may still hold
        the claim once it is back: a ZooKeeper session outlives a quick restart,
        the Redis and etcd boards renew their claims. Then the give-back is
        tried again from the loop, else the job stayed claimed for ever by this
        live conductor, which no longer runs it.
        """
        try:
            self._abandon_lost(job, claim, reason)
        except (ClaimLost, exc.JobFailure, exc.NotFound) as failure:
            self._log.debug("job %s is no longer held by this conductor's claim", job, exc_info=True)
            if _board_unreachable(failure):
                self._release_later(_Release(job, claim, Outcome(Verdict.LOST, reason)))

    def _abandon_lost(self, job: Job, claim: Claim, reason: str | None) -> None:
        self._jobboard.abandon(
            job, self._name, reason=f"claim counted as lost: {reason}", failed=True, claim=claim
        )

    # -- releases the board missed ---------------------------------------------
    def _release_later(self, release: _Release) -> None:
        """Remember a release the board could not be told of, to try it again from the loop."""
        with self._unreleased_lock:
            known = release.job.uuid in self._unreleased
            self._unreleased[release.job.uuid] = release
        if not known:
            self._log.warning(
                "job %s: the board could not be told that it %s; trying again until it answers",
                release.job,
                _DONE_WORDS[release.outcome.verdict],
            )

    def _release_pending(self) -> None:
        """Try again each release the board missed; keep those it still cannot be reached for.

        Each release names the claim it was made under, so one that comes
        late never ends another conductor's claim: the board refuses it
        (:class:`~flowkit.jobs.base.ClaimLost`), and it is dropped, as is one
        whose job is gone (consumed, trashed, emptied with a board that kept
        nothing across its restart).
        """
        with self._unreleased_lock:
            pending = list(self._unreleased.values())
        for release in pending:
            if self._stopped.is_set():
                return
            job, claim, outcome = release.job, release.claim, release.outcome
            verdict = outcome.verdict
            try:
                if verdict is Verdict.CONSUME:
                    self._jobboard.consume(job, self._name, claim=claim)
                elif verdict is Verdict.TRASH:
                    self._jobboard.trash(job, self._name, reason=outcome.reason, claim=claim)
                elif verdict is Verdict.LOST:
                    self._abandon_lost(job, claim, outcome.reason)
                else:
                    failed = verdict is Verdict.FAIL
                    self._jobboard.abandon(job, self._name, reason=outcome.reason, failed=failed, claim=claim)
            except (exc.JobFailure, exc.NotFound) as failure:
                if _board_unreachable(failure):
                    self._log.debug("job %s: the board still cannot be reached", job, exc_info=True)
                    continue
                self._log.info(
                    "job %s: no longer held by this conductor's claim once the board answered (%s)",
                    job,
                    LogSafe(failure),
                )
            else:
                self._log.info(
                    "job %s: the board answers again and was told that it %s",
                    job,
                    _DONE_WORDS[verdict],
                )
                event = {
                    Verdict.CONSUME: "job_consumed",
                    Verdict.TRASH: "job_trashed",
                    Verdict.LOST: None,
                }.get(verdict, "job_abandoned")
                if event is not None:
                    self._notify(event, {"job": job, "reason": outcome.reason})
            with self._unreleased_lock:
                if self._unreleased.get(job.uuid) is release:
                    del self._unreleased[job.uuid]


@dataclass(frozen=True)
class _Release:
    """A job's end the board missed: the job, the claim it ran under, and how it ended."""

    job: Job
    claim: Claim
    outcome: Outcome


#: How a release is told in the conductor's log lines.
_DONE_WORDS = {
    Verdict.CONSUME: "is done (consume)",
    Verdict.ABANDON: "is given back (abandon)",
    Verdict.FAIL: "failed and is given back (abandon)",
    Verdict.TRASH: "is set aside (trash)",
    Verdict.LOST: "is given back, its claim counted as lost (abandon)",
}


def _board_unreachable(failure: BaseException) -> bool:
    """Whether a release failed because the board could not be reached, not because it refused.

    A refusal (:class:`~flowkit.jobs.base.ClaimLost`: another claim is current;
    :class:`~flowkit.exceptions.UnclaimableJob`: not this owner's;
    :class:`~flowkit.exceptions.NotFound`: the job is gone) is final; any other
    :class:`~flowkit.exceptions.JobFailure` is the board's server or the way to
    it failing, which a later try may get past.
    """
    return isinstance(failure, exc.JobFailure) and not isinstance(failure, ClaimLost | exc.UnclaimableJob)


def _public_type_name(error: BaseException) -> str:
    """The name of ``error``'s first class an operator could look up (``ImportError``,
    not flowkit's private ``_FactoryImportError``)."""
    return next(c.__name__ for c in type(error).__mro__ if not c.__name__.startswith("_"))
