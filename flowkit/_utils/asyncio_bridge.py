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

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

# asyncio itself (and with it concurrent.futures) is imported on first use: it
# costs ~30 ms, and most flows never await anything.

__all__ = ["NESTING", "EventLoopThread", "result_of"]

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

                def serve() -> None:
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

    def close(self) -> None:
        """Stop the loop thread, if this object started one.

        Its tasks still pending (the coroutines of a run an interrupt ended, a
        task a coroutine started and left behind) are cancelled and awaited
        first, as :func:`asyncio.run` does: closing the loop under them
        destroyed them unfinished, so their ``finally`` blocks and ``async
        with`` exits never ran ("Task was destroyed but it is pending!").
        Tasks cancelled before that which still run on (a timed-out coroutine
        that swallowed its cancellation, abandoned) are not waited for: the
        loop's daemon thread goes on running them and stops, closing the loop,
        once they have ended, as a thread running an abandoned call does.
        Closing the loop under them left them pending, to be destroyed
        unfinished when collected, at the latest at interpreter exit.
        """
        import asyncio

        with self._lock:
            loop, thread = self._loop, self._thread
            if not self._owned or loop is None or thread is None:
                return
            self._loop = self._thread = None
            closing = self._closing
        abandoned = asyncio.run_coroutine_threadsafe(_cancel_pending(), loop).result()
        closing.set()
        if abandoned:
            asyncio.run_coroutine_threadsafe(_stop_after(abandoned), loop)
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()


async def _stop_after(tasks: list[asyncio.Task[Any]]) -> None:
    """Wait for the abandoned ``tasks`` to end, then stop the loop (its thread closes it)."""
    import asyncio

    await asyncio.wait(tasks)
    asyncio.get_running_loop().stop()


async def _cancel_pending() -> list[asyncio.Task[Any]]:
    """Cancel the other tasks of the running loop and wait until they have ended.

    Returns:
        The tasks already cancelled that go on (a timed-out coroutine that
        swallowed its cancellation): abandoned, they are not waited for here.
    """
    import asyncio

    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    pending = [task for task in others if not task.cancelling()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
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
