"""A listener that prints an engine's state changes, one line each."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

from flowkit.listeners import base

if TYPE_CHECKING:  # for annotations only: importing a listener does not import the engines
    from flowkit.engines.base import Engine

__all__ = ["PrintingListener"]


class PrintingListener(base.DumpingListener):
    """Prints each flow and task state change to standard output (or error).

    The stream is looked up when each line is printed, so redirecting
    ``sys.stdout`` (or ``sys.stderr``) after the listener is made still works.

    Args:
        engine: the engine to watch.
        task_listen_for: the task events to print.
        flow_listen_for: the flow events to print.
        retry_listen_for: the retry events to hear (retries are not printed).
        stderr: print to standard error instead of standard output.
    """

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[Hashable] | None = base.DEFAULT_LISTEN_FOR,
        stderr: bool = False,
    ) -> None:
        super().__init__(
            engine,
            task_listen_for=task_listen_for,
            flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )
        self._stderr = stderr

    @property
    def _file(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout

    def _dump(self, message: str, *args: Any, **kwargs: Any) -> None:
        out = self._file
        print(message % args, file=out)
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            # The captured traceback, which may differ from the exception's current one.
            traceback.print_exception(exc_info[0], exc_info[1], exc_info[2], file=out)
