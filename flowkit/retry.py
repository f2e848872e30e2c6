"""Retries: atoms that decide what happens when something in their flow fails.

A retry is attached to a flow (``linear_flow.Flow("f", retry=Times(3))``). It
runs before the flow's other atoms, and may provide values to them (for example
which attempt this is, or the next value to try). When an atom of the flow
fails, the engine calls the retry's :meth:`Retry.on_failure` with the
:class:`History` of earlier attempts, and the :class:`Decision` it returns says
whether to run the flow again, revert it, or revert everything.
"""

from __future__ import annotations

import abc
import contextlib
import enum
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from flowkit import atom
from flowkit import exceptions as exc

if TYPE_CHECKING:
    from flowkit.types.failure import Failure

__all__ = [
    "EXECUTE_REVERT_HISTORY",
    "RETRY",
    "REVERT",
    "REVERT_ALL",
    "REVERT_FLOW_FAILURES",
    "AlwaysRevert",
    "AlwaysRevertAll",
    "Decision",
    "ForEach",
    "ForEachBase",
    "History",
    "ParameterizedForEach",
    "Retry",
    "Times",
]


@enum.unique
class Decision(enum.StrEnum):
    """What a retry wants done after a failure in its flow."""

    #: Revert the retry's own flow, then let the enclosing flow's retry (if
    #: any) decide. Kept from TaskFlow: without ``defer_reverts=True`` and
    #: without an enclosing retry, only this flow is reverted and the rest of
    #: the run continues.
    REVERT = "REVERT"
    #: Revert everything that ran, whatever the enclosing retries would say.
    REVERT_ALL = "REVERT_ALL"
    #: Revert the retry's flow and run it again.
    RETRY = "RETRY"


# Module-level aliases, as TaskFlow has them.
REVERT = Decision.REVERT
REVERT_ALL = Decision.REVERT_ALL
RETRY = Decision.RETRY

#: Keyword under which a retry's methods receive its :class:`History`.
EXECUTE_REVERT_HISTORY = "history"
#: Keyword under which ``revert`` receives the failures that caused the revert.
REVERT_FLOW_FAILURES = "flow_failures"

Outcomes = dict[str, "Failure"]


class History:
    """Read-only view of a retry's earlier attempts.

    Args:
        contents: one ``(provided_value, {atom_name: Failure})`` pair per
            attempt, oldest first: what the retry provided on that attempt and
            the failures the flow's atoms had with it.
        failure: the retry's own failure, if it failed itself.
    """

    def __init__(self, contents: Sequence[tuple[Any, Outcomes]], failure: Failure | None = None) -> None:
        self._contents = contents
        self._failure = failure

    @property
    def failure(self) -> Failure | None:
        """The retry's own failure (not its atoms'), or ``None``."""
        return self._failure

    def outcomes_iter(self, index: int | None = None) -> Iterator[tuple[str, Failure]]:
        """Yield ``(atom_name, failure)`` for every attempt, or only attempt ``index``.

        The retry's own failure is not included; see :attr:`failure`.
        """
        attempts = self._contents if index is None else [self._contents[index]]
        for _provided, outcomes in attempts:
            yield from outcomes.items()

    def provided_iter(self) -> Iterator[Any]:
        """Yield what the retry provided on each attempt, oldest first."""
        for provided, _outcomes in self._contents:
            yield provided

    def caused_by(
        self,
        exception_cls: type[BaseException] | str,
        index: int | None = None,
        include_retry: bool = False,
    ) -> bool:
        """Whether a failure of that exception class happened.

        Args:
            exception_cls: the class (or its dotted name) to look for.
            index: look at that attempt only; all attempts by default.
            include_retry: also look at the retry's own failure.
        """
        for _name, failure in self.outcomes_iter(index=index):
            if failure.check(exception_cls):
                return True
        return bool(include_retry and self._failure is not None and self._failure.check(exception_cls))

    def __len__(self) -> int:
        return len(self._contents)

    def __getitem__(self, index: int) -> tuple[Any, Outcomes]:
        return self._contents[index]

    def __iter__(self) -> Iterator[tuple[Any, Outcomes]]:
        return iter(self._contents)

    def __repr__(self) -> str:
        return f"<History attempts={len(self._contents)} failure={self._failure!r}>"


class Retry(atom.Atom):
    """An atom that decides how its flow recovers from failures.

    ``execute``, ``revert`` and ``on_failure`` all receive the ``history``
    keyword from the engine, so it is never a requirement. ``on_failure`` is
    called with the same arguments as ``execute``.

    The engine calls all three by keyword, so a subclass may take ``history``
    wherever it likes beside its own requirements (``execute(self, history,
    servers)``, ``on_failure(self, values, history, *args, **kwargs)`` as
    :class:`ParameterizedForEach` does). The base methods are declared
    ``(*args, **kwargs)`` so that type checkers accept every such override, as
    they do ``execute`` and ``revert`` of a task.

    When no name is given, the retry is named like a task until it is attached
    to a flow, which renames it ``<flow name>_retry`` (as TaskFlow names
    unnamed retries).

    Args:
        name: see :class:`~flowkit.atom.Atom`.
        provides: see :class:`~flowkit.atom.Atom`.
        requires: see :class:`~flowkit.atom.Atom`.
        auto_extract: see :class:`~flowkit.atom.Atom`.
        rebind: see :class:`~flowkit.atom.Atom`.
    """

    _ignore_args: ClassVar[tuple[str, ...]] = (EXECUTE_REVERT_HISTORY,)

    def __init__(
        self,
        name: str | None = None,
        provides: atom.ProvidesSpec = None,
        requires: str | Iterable[str] | None = None,
        auto_extract: bool = True,
        rebind: atom.RebindSpec = None,
    ) -> None:
        super().__init__(
            name=name, provides=provides, requires=requires, auto_extract=auto_extract, rebind=rebind
        )
        # While the name is the class-derived default, a flow may replace it.
        self._name_defaulted = name is None

    @property
    def name(self) -> str:
        """The retry's name; unnamed retries take their flow's name plus ``_retry``."""
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        self._name = name
        self._name_defaulted = False

    def _adopt_flow_name(self, flow_name: str) -> None:
        """Take ``<flow_name>_retry`` as name unless the user named this retry."""
        if self._name_defaulted:
            self.name = f"{flow_name}_retry"

    @abc.abstractmethod
    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Provide the values the flow's atoms use on this attempt.

        Args:
            args: not passed by engines (they call by keyword).
            kwargs: ``history`` (the earlier attempts, a :class:`History`) and
                the retry's requirements.
        """

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        """Undo this retry; called only when its flow is reverted for good.

        Args:
            args: not passed by engines (they call by keyword).
            kwargs: ``history`` (every attempt, including the last) and the
                retry's requirements.
        """

    @abc.abstractmethod
    def on_failure(self, *args: Any, **kwargs: Any) -> Decision:
        """Decide what to do after an atom of the flow failed.

        Args:
            args: not passed by engines (they call by keyword).
            kwargs: ``history`` (the attempts so far, the failed one last) and
                the same arguments as ``execute``.

        Returns:
            :data:`RETRY` to run the flow again, :data:`REVERT` to revert it
            and let the enclosing retry decide, :data:`REVERT_ALL` to revert
            everything.
        """


class AlwaysRevert(Retry):
    """A retry that never retries: it reverts its flow and lets the enclosing retry decide."""

    def on_failure(self, *args: Any, **kwargs: Any) -> Decision:
        return REVERT

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return None


class AlwaysRevertAll(Retry):
    """A retry that reverts the whole run on any failure in its flow."""

    def on_failure(self, *args: Any, **kwargs: Any) -> Decision:
        return REVERT_ALL

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return None


class Times(Retry):
    """Run the flow up to ``attempts`` times; provides the attempt number (from 1).

    Args:
        attempts: how many times the flow may run in total.
        revert_all: once out of attempts, revert everything (:data:`REVERT_ALL`)
            instead of only this flow (:data:`REVERT`).

    Other arguments are as for :class:`Retry`.
    """

    def __init__(
        self,
        attempts: int = 1,
        name: str | None = None,
        provides: atom.ProvidesSpec = None,
        requires: str | Iterable[str] | None = None,
        auto_extract: bool = True,
        rebind: atom.RebindSpec = None,
        revert_all: bool = False,
    ) -> None:
        super().__init__(name, provides, requires, auto_extract, rebind)
        self._attempts = attempts
        self._revert_action = REVERT_ALL if revert_all else REVERT

    @property
    def attempts(self) -> int:
        """How many times the flow may run in total."""
        return self._attempts

    def on_failure(self, history: History, *args: Any, **kwargs: Any) -> Decision:
        return RETRY if len(history) < self._attempts else self._revert_action

    def execute(self, history: History, *args: Any, **kwargs: Any) -> int:
        return len(history) + 1


def _untried(values: Iterable[Any], tried: Iterable[Any]) -> list[Any]:
    """Return ``values`` minus one occurrence of each tried value, in order.

    Works with unhashable values, and a value listed twice may be tried twice.
    """
    remaining = list(values)
    for value in tried:
        with contextlib.suppress(ValueError):
            remaining.remove(value)
    return remaining


class ForEachBase(Retry):
    """Base for retries that try the values of a collection one by one."""

    def __init__(
        self,
        name: str | None = None,
        provides: atom.ProvidesSpec = None,
        requires: str | Iterable[str] | None = None,
        auto_extract: bool = True,
        rebind: atom.RebindSpec = None,
        revert_all: bool = False,
    ) -> None:
        super().__init__(name, provides, requires, auto_extract, rebind)
        self._revert_action = REVERT_ALL if revert_all else REVERT

    def _untried(self, values: Iterable[Any], history: History) -> list[Any]:
        """The values not tried yet; values that are no collection are refused naming this retry.

        ``ForEach(5)`` (TaskFlow takes anything) failed its run with a bare
        "'int' object is not iterable", naming neither the retry nor the value.
        The type raised is still ``TypeError``, as in TaskFlow.
        """
        try:
            iter(values)
        except TypeError:
            raise TypeError(
                f"'{type(values).__name__}' object is not iterable (retry {self.name!r} "
                f"({type(self).__name__}) tries its values one by one, but {values!r} is not "
                f"a collection of values)"
            ) from None
        return _untried(values, history.provided_iter())

    def _get_next_value(self, values: Iterable[Any], history: History) -> Any:
        remaining = self._untried(values, history)
        if not remaining:
            raise exc.NotFound(f"No elements left in collection of iterable retry controller {self.name}")
        return remaining[0]

    def _on_failure(self, values: Iterable[Any], history: History) -> Decision:
        if self._untried(values, history):
            return RETRY
        return self._revert_action


class ForEach(ForEachBase):
    """Run the flow once per value until it succeeds; provides the value being tried.

    Args:
        values: the values to try, in order.
        revert_all: once out of values, revert everything instead of only this flow.

    Other arguments are as for :class:`Retry`.

    Raises:
        flowkit.exceptions.NotFound: from ``execute`` when every value was tried.
    """

    def __init__(
        self,
        values: Iterable[Any],
        name: str | None = None,
        provides: atom.ProvidesSpec = None,
        requires: str | Iterable[str] | None = None,
        auto_extract: bool = True,
        rebind: atom.RebindSpec = None,
        revert_all: bool = False,
    ) -> None:
        super().__init__(name, provides, requires, auto_extract, rebind, revert_all)
        self._values = values

    def on_failure(self, history: History, *args: Any, **kwargs: Any) -> Decision:
        return self._on_failure(self._values, history)

    def execute(self, history: History, *args: Any, **kwargs: Any) -> Any:
        return self._get_next_value(self._values, history)


class ParameterizedForEach(ForEachBase):
    """Like :class:`ForEach`, but the values are a requirement named ``values``.

    The values come from storage or an earlier atom (use ``rebind`` to fetch
    them under another name), so they can be decided at run time.

    Raises:
        flowkit.exceptions.NotFound: from ``execute`` when every value was tried.
    """

    def on_failure(self, values: Iterable[Any], history: History, *args: Any, **kwargs: Any) -> Decision:
        return self._on_failure(values, history)

    def execute(self, values: Iterable[Any], history: History, *args: Any, **kwargs: Any) -> Any:
        return self._get_next_value(values, history)
