"""Run coroutines from synchronous code, on an event loop in a thread of its own.

Tasks whose ``execute``/``revert`` are ``async def`` run in every engine. The
serial and thread-pool engines are synchronous, so they hand such coroutines to an
:class:`EventLoopThread` and wait on (or are called back by) the returned future.
One loop thread serves a whole run, so coroutines of one flow share a loop and can
share loop-bound resources.
"""

from __future__ import annotations

import threading
from collections.abc import Coroutine
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from flowkit._utils.lazy_logging import module_logger

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

# asyncio itself (and with it concurrent.futures) is imported on first use: it
# costs ~30 ms, and most flows never await anything.

__all__ = ["CLOSE_GRACE", "NESTING", "EventLoopThread", "result_of"]

_LOG = module_logger(__name__)

#: Seconds :meth:`EventLoopThread.close` gives the tasks it cancels to end. A
#: coroutine may catch its cancellation and go on; waiting for it without a
#: bound made ``close`` (and the run ending with it) wait for ever.
CLOSE_GRACE = 2.0

#: How many :class:`EventLoopThread` coroutines the running code is inside (0: none).
#: A coroutine that runs a flow of its own (``engines.run`` in an ``async def``
#: task) holds its loop's thread: that flow's coroutines must go to another loop.
NESTING: ContextVar[int] = ContextVar("flowkit_loop_nesting", default=0)


class EventLoopThread:
    """An event loop running in a daemon thread, started on first use."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._owned = loop is None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Set by :meth:`close` before it stops the loop it started: its thread ends then.
        self._closing = threading.Event()
        #: The tasks :meth:`close` abandoned, held by the loop's thread (see ``loop``).
        self._kept: set[asyncio.Task[Any]] = set()

    @property
    def owned(self) -> bool:
        """Whether the loop is this object's own (made by it, closed by :meth:`close`)."""
        return self._owned

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop coroutines run on (started if needed)."""
        with self._lock:
            if self._loop is None:
                import asyncio

                loop = asyncio.new_event_loop()
                ready = threading.Event()
                closing = self._closing = threading.Event()
                kept = self._kept = set()

                def serve() -> None:
                    # Abandoned tasks go in here (see close). A task waiting on a future
                    # only it references is garbage once nothing else holds it: collected
                    # pending, at the latest at exit ("Task was destroyed but it is
                    # pending!"). This frame lives as long as the thread, even past exit.
                    abandoned = kept  # noqa: F841 (held, never read)
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    while True:
                        try:
                            loop.run_forever()
                        except (KeyboardInterrupt, SystemExit):
                            # A coroutine raised it: asyncio puts it in the coroutine's
                            # future, then re-raises it here. Ending the thread would leave
                            # that future (and every later one) waiting forever, so the loop
                            # goes on, and the future hands the interrupt to its waiter.
                            if not closing.is_set():
                                continue
                        if closing.is_set():
                            # Stopped for good (by close, or once the abandoned tasks
                            # it left ended): the loop is closed here, its thread done.
                            loop.close()
                        return

                self._thread = threading.Thread(target=serve, name="flowkit-asyncio", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Schedule ``coro`` on the loop; return a thread-safe future of its result.

        Cancelling the future cancels the coroutine. Read the outcome with
        :func:`result_of`: a :class:`asyncio.CancelledError` the coroutine raised
        itself (no one cancelled it) travels wrapped, since asyncio would mark the
        future cancelled and its waiter would get a bare
        :class:`concurrent.futures.CancelledError`, without the exception's class,
        message or traceback.
        """
        import asyncio

        return asyncio.run_coroutine_threadsafe(_own_cancel_kept(coro), self.loop)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the loop and block until it finishes; return or raise its outcome.

        Interrupted while it waits (Ctrl-C), it cancels the coroutine, which went
        on running on the loop, unwatched, after the interrupt had ended the run.
        """
        future = self.submit(coro)
        try:
            return result_of(future)
        except BaseException:
            future.cancel()  # nothing, if the coroutine had ended
            raise

    def close(self, grace: float | None = None) -> None:
        """Stop the loop thread, if this object started one.

        Its tasks still pending (the coroutines of a run an interrupt ended, a
        task a coroutine started and left behind) are cancelled and awaited
        first, as :func:`asyncio.run` does: closing the loop under them
        destroyed them unfinished, so their ``finally`` blocks and ``async
        with`` exits never ran ("Task was destroyed but it is pending!").
        They are awaited for ``grace`` seconds at most (None:
        :data:`CLOSE_GRACE`, read at each call): a coroutine that
        catches the cancellation and goes on would otherwise hold ``close``
        (and the end of the run) for ever. Those, and tasks cancelled before
        (a timed-out coroutine that swallowed its cancellation), are
        abandoned, named in a WARNING: the loop's daemon thread goes on
        running them and stops, closing the loop, once they have ended, as a
        thread running an abandoned call does. Closing the loop under them
        left them pending, to be destroyed unfinished when collected, at the
        latest at interpreter exit.
        """
        import asyncio

        with self._lock:
            loop, thread = self._loop, self._thread
            if not self._owned or loop is None or thread is None:
                return
            self._loop = self._thread = None
            closing, kept = self._closing, self._kept
        if grace is None:
            grace = CLOSE_GRACE
        abandoned = asyncio.run_coroutine_threadsafe(_cancel_pending(grace), loop).result()
        closing.set()
        if abandoned:
            _LOG.warning(
                "closing the asyncio loop thread: abandoned %d task(s) still running after "
                "being cancelled (given %g s to end); its daemon thread runs them on until "
                "they end: %s",
                len(abandoned),
                grace,
                ", ".join(_describe(task) for task in abandoned),
            )
            asyncio.run_coroutine_threadsafe(_stop_after(abandoned, kept), loop)
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()


def _describe(task: asyncio.Task[Any]) -> str:
    """A task as a log line names it: its name and its coroutine's (innermost awaited) function."""
    coro: Any = task.get_coro()
    if getattr(coro, "cr_code", None) is _own_cancel_kept.__code__:
        # submit()'s wrapper: the coroutine it awaits is the one worth naming.
        coro = getattr(coro, "cr_await", None) or coro
    return f"{task.get_name()} ({getattr(coro, '__qualname__', type(coro).__name__)})"


async def _stop_after(tasks: list[asyncio.Task[Any]], kept: set[asyncio.Task[Any]]) -> None:
    """Wait for the abandoned ``tasks`` to end, then stop the loop (its thread closes it).

    They and this task are held in ``kept`` meanwhile: a task waiting on a future
    nothing else references would otherwise be collected, still pending.
    """
    import asyncio

    current = asyncio.current_task()
    assert current is not None
    kept.update(tasks)
    kept.add(current)
    await asyncio.wait(tasks)
    kept.clear()
    asyncio.get_running_loop().stop()


async def _cancel_pending(grace: float) -> list[asyncio.Task[Any]]:
    """Cancel the other tasks of the running loop and wait up to ``grace`` s for them to end.

    Returns:
        The tasks that go on: those cancelled before (a timed-out coroutine that
        swallowed its cancellation), not waited for, and those that outlived
        ``grace`` (one that swallowed this cancellation): abandoned.
    """
    import asyncio

    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    pending = [task for task in others if not task.cancelling()]
    for task in pending:
        task.cancel()
    if pending:
        done, _ = await asyncio.wait(pending, timeout=grace)
        for task in done:  # their outcome is seen here, as gather() would: no "never retrieved"
            if not task.cancelled():
                task.exception()
    return [task for task in others if not task.done()]


class _OwnCancel(Exception):
    """Carries a CancelledError a coroutine raised itself out of its task, uncancelled."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


def result_of(future: concurrent.futures.Future[Any]) -> Any:
    """``future.result()`` of a :meth:`EventLoopThread.submit` future.

    Raises:
        BaseException: what the coroutine raised, a CancelledError it raised
            itself included.
    """
    try:
        return future.result()
    except _OwnCancel as carried:
        raise carried.error from None


async def _own_cancel_kept(coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro``; a CancelledError it raised itself leaves as :class:`_OwnCancel`."""
    import asyncio

    NESTING.set(NESTING.get() + 1)  # in this task's own copy of the context
    try:
        return await coro
    except asyncio.CancelledError as err:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise  # cancelled from outside (the future, a timeout): the task is cancelled
        raise _OwnCancel(err) from None
