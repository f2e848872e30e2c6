"""Publish/subscribe for engine events: who wants to hear about what.

The engine notifies on every state change of every atom, so :meth:`Notifier.notify`
is built to cost next to nothing when nobody listens: the engine checks the plain
boolean :attr:`Notifier.has_listeners` before even building the event details.

Listener lists are copy-on-write: ``register``/``deregister`` build new ones under
a lock and swap them in, while ``notify`` reads whatever snapshot is current
without locking. A listener added or removed during a ``notify`` call may or may
not see that particular event.

Callbacks are called as ``callback(event_type, *args, details=details, **kwargs)``,
the way TaskFlow calls them, so ``def on_event(event_type, details)`` works.
"""

from __future__ import annotations

import _thread  # threading's Lock, without importing threading (start-up time)
import contextlib
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from flowkit._utils.lazy_logging import module_logger

if TYPE_CHECKING:
    import weakref

__all__ = ["Listener", "Notifier", "RestrictedNotifier", "register_deregister"]

LOG = module_logger(__name__)

Callback = Callable[..., Any]
DetailsFilter = Callable[[Any], Any]


def _from_flowkit(callback: Callback) -> bool:
    """Whether ``callback`` is flowkit's own: a function of a flowkit module, bound (if
    a method) to an instance of a flowkit class. A subclass defined elsewhere, a
    ``functools.partial`` or any other callable counts as the user's."""
    owner = getattr(callback, "__self__", None)
    if owner is not None and not _in_flowkit(type(owner).__module__):
        return False
    return _in_flowkit(getattr(getattr(callback, "__func__", callback), "__module__", None))


def _in_flowkit(module: object) -> bool:
    return isinstance(module, str) and (module == "flowkit" or module.startswith("flowkit."))


def _same_callable(first: object, second: object) -> bool:
    # Bound methods are recreated on each attribute access, so identity is not
    # enough; they compare equal when bound to the same object.
    return first is second or first == second


class Listener:
    """One registered callback, with its extra arguments and optional filter.

    Args:
        callback: called as ``callback(event_type, *args, details=..., **kwargs)``.
        args: extra positional arguments.
        kwargs: extra keyword arguments.
        details_filter: called with the details first; a falsy result skips
            the callback.
        weak: hold only a weak reference to ``callback`` (a
            :class:`weakref.WeakMethod` for bound methods), so registering does
            not keep its owner alive.
        on_collected: called (with no arguments) when a weak callback dies.
    """

    __slots__ = ("_args", "_callback", "_details_filter", "_kwargs", "_ref", "from_flowkit")

    def __init__(
        self,
        callback: Callback,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        details_filter: DetailsFilter | None = None,
        *,
        weak: bool = False,
        on_collected: Callable[[], None] | None = None,
    ) -> None:
        self._args: tuple[Any, ...] = tuple(args) if args else ()
        self._kwargs: dict[str, Any] = dict(kwargs) if kwargs else {}
        self._details_filter = details_filter
        self._ref: weakref.ref[Any] | None = None
        self._callback: Callback | None = callback
        #: flowkit's own listeners never read the persistence backend inside a
        #: notification (see :attr:`Notifier.has_user_listeners`).
        self.from_flowkit = _from_flowkit(callback)
        if weak:
            import weakref  # only weak listeners need it (start-up time)

            notify_dead = None if on_collected is None else (lambda _ref: on_collected())
            if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
                self._ref = weakref.WeakMethod(callback, notify_dead)
            else:
                self._ref = weakref.ref(callback, notify_dead)
            self._callback = None

    @property
    def callback(self) -> Callback | None:
        """The callback, or ``None`` if it was weakly held and has been collected."""
        return self._callback if self._ref is None else self._ref()

    @property
    def details_filter(self) -> DetailsFilter | None:
        """The filter deciding, from the details, whether to call back."""
        return self._details_filter

    @property
    def args(self) -> tuple[Any, ...]:
        """Extra positional arguments passed to the callback."""
        return self._args

    @property
    def kwargs(self) -> dict[str, Any]:
        """A copy of the extra keyword arguments passed to the callback."""
        return dict(self._kwargs)

    @property
    def is_weak(self) -> bool:
        """Whether the callback is held by a weak reference."""
        return self._ref is not None

    @property
    def is_alive(self) -> bool:
        """False once a weakly held callback has been garbage collected."""
        return self._ref is None or self._ref() is not None

    def __call__(self, event_type: Hashable, details: Any) -> None:
        """Call the callback with the event, unless the filter says no."""
        self.deliver(event_type, details)

    def deliver(self, event_type: Hashable, details: Any) -> bool:
        """Like calling the listener; returns ``False`` if its callback is gone."""
        callback = self._callback if self._ref is None else self._ref()
        if callback is None:
            return False
        if self._details_filter is not None and not self._details_filter(details):
            return True
        if self._kwargs:
            callback(event_type, *self._args, details=details, **self._kwargs)
        else:
            callback(event_type, *self._args, details=details)
        return True

    def is_equivalent(self, callback: Callback, details_filter: DetailsFilter | None = None) -> bool:
        """Whether this listener is for ``callback`` with the same ``details_filter``."""
        if not _same_callable(self.callback, callback):
            return False
        if details_filter is None or self._details_filter is None:
            return details_filter is self._details_filter
        return _same_callable(self._details_filter, details_filter)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Listener):
            return NotImplemented
        callback = other.callback
        return callback is not None and self.is_equivalent(callback, other._details_filter)

    # Equality is by callback and filter, which may themselves be unhashable.
    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        text = f"<Listener calling {self.callback!r}"
        if self._details_filter is not None:
            text += f" filtered by {self._details_filter!r}"
        return text + (" (weak)>" if self.is_weak else ">")


_Topics = dict[Hashable, tuple[Listener, ...]]


class Notifier:
    """Calls registered callbacks when events are notified.

    Registering, deregistering and notifying are safe from several threads at
    once. A callback that raises is logged and does not stop the others.

    Attributes:
        has_listeners: ``True`` while any listener is registered, for any event
            (including :attr:`ANY`). A plain attribute so hot paths can skip
            building event details when nobody listens.
        has_user_listeners: ``True`` while a listener other than flowkit's own
            is registered. TaskFlow writes every change to the persistence
            backend before it notifies, and a user's callback may read the
            backend (through a connection of its own) when told; flowkit
            batches its writes, so a durable engine writes what is pending
            before notifying only while this is ``True``. flowkit's listeners
            (logging, event log, progress, timing, tracing, claims) read only
            the engine's storage, which is current either way, and so do not
            cost a write per notification.
    """

    ANY: ClassVar[str] = "*"
    """Register for this event type to hear every event."""

    RESERVED_KEYS: ClassVar[tuple[str, ...]] = ("details",)
    """Keyword argument names a registration may not use (they are passed by notify)."""

    def __init__(self, named_only: Iterable[Hashable] = ()) -> None:
        """Make a notifier.

        Args:
            named_only: event types delivered only to listeners registered for
                them by name, never to :attr:`ANY` listeners. The engine uses this
                for progress events, so ``ANY`` listeners written for TaskFlow
                (which never sent those there) keep seeing only state changes.
        """
        self._lock = _thread.allocate_lock()
        self._topics: _Topics = {}
        self._prune_pending = False
        self._named_only = frozenset(named_only)
        self.has_listeners: bool = False
        self.has_user_listeners: bool = False

    # -- registering ---------------------------------------------------------

    def register(
        self,
        event_type: Hashable,
        callback: Callback,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        details_filter: DetailsFilter | None = None,
        weak: bool = False,
    ) -> None:
        """Call ``callback`` whenever ``event_type`` (or any event, for :attr:`ANY`) is notified.

        Args:
            event_type: the event to listen for.
            callback: called as ``callback(event_type, *args, details=details, **kwargs)``.
            args: extra positional arguments for the callback.
            kwargs: extra keyword arguments for the callback.
            details_filter: called with the details first; the callback runs
                only if it returns something truthy.
            weak: hold the callback by weak reference; it is forgotten once
                collected.

        Raises:
            ValueError: the callback or filter is not callable, the event may
                not be registered, or the same callback and filter are already
                registered for it.
            KeyError: ``kwargs`` uses a reserved name (``details``).
        """
        # Messages open with TaskFlow's words (callers match them), then add the culprit.
        if not callable(callback):
            raise ValueError(f"Event callback must be callable, not {callback!r}")
        if details_filter is not None and not callable(details_filter):
            raise ValueError(f"Details filter must be callable, not {details_filter!r}")
        if not self.can_be_registered(event_type):
            raise ValueError(f"Disallowed event type '{event_type}' can not have a callback registered")
        for key in self.RESERVED_KEYS:
            if kwargs and key in kwargs:
                raise KeyError(f"Reserved key '{key}' not allowed in kwargs")
        on_collected = self._pruner() if weak else None
        listener = Listener(callback, args, kwargs, details_filter, weak=weak, on_collected=on_collected)
        with self._lock:
            current = self._topics.get(event_type, ())
            if any(known.is_equivalent(callback, details_filter) for known in current):
                raise ValueError(
                    "Event callback already registered with equivalent details filter: "
                    f"{callback!r} for event type {event_type!r}"
                )
            self._replace_topic(event_type, (*current, listener))

    def deregister(
        self, event_type: Hashable, callback: Callback, details_filter: DetailsFilter | None = None
    ) -> bool:
        """Stop calling ``callback`` (with that filter) for ``event_type``.

        Returns:
            Whether such a listener was registered.
        """
        with self._lock:
            current = self._topics.get(event_type, ())
            for index, known in enumerate(current):
                if known.is_equivalent(callback, details_filter):
                    self._replace_topic(event_type, current[:index] + current[index + 1 :])
                    return True
            return False

    def deregister_event(self, event_type: Hashable) -> int:
        """Forget every listener of ``event_type``.

        Returns:
            How many listeners were removed.
        """
        with self._lock:
            removed = len(self._topics.get(event_type, ()))
            if removed:
                self._replace_topic(event_type, ())
            return removed

    def reset(self) -> None:
        """Forget every listener of every event."""
        with self._lock:
            self._set_topics({})

    def _replace_topic(self, event_type: Hashable, listeners: tuple[Listener, ...]) -> None:
        # Caller holds the lock. Build a new mapping so readers never see one change.
        topics = dict(self._topics)
        if listeners:
            topics[event_type] = listeners
        else:
            topics.pop(event_type, None)
        if self._prune_pending:
            topics = self._without_dead(topics)
        self._set_topics(topics)

    def _set_topics(self, topics: _Topics) -> None:
        # Caller holds the lock; the flags are derived here, nowhere else.
        self._topics = topics
        self.has_listeners = bool(topics)
        self.has_user_listeners = any(
            not listener.from_flowkit for listeners in topics.values() for listener in listeners
        )

    # -- weak listeners --------------------------------------------------------

    def _pruner(self) -> Callable[[], None]:
        import weakref

        # Hold the notifier weakly: a listener must not keep it alive.
        notifier_ref = weakref.ref(self)

        def prune() -> None:
            notifier = notifier_ref()
            if notifier is not None:
                notifier._prune_dead()

        return prune

    def _prune_dead(self) -> None:
        # Runs from garbage collection callbacks, possibly in a thread that
        # already holds the lock, so never wait for it: if busy, the holder
        # prunes before releasing (see _replace_topic), or a later call will.
        if not self._lock.acquire(blocking=False):
            self._prune_pending = True
            return
        try:
            self._set_topics(self._without_dead(self._topics))
        finally:
            self._lock.release()

    def _without_dead(self, topics: _Topics) -> _Topics:
        self._prune_pending = False
        pruned: _Topics = {}
        for event_type, listeners in topics.items():
            alive = tuple(listener for listener in listeners if listener.is_alive)
            if alive:
                pruned[event_type] = alive
        return pruned

    # -- notifying -------------------------------------------------------------

    def notify(self, event_type: Hashable, details: Mapping[str, Any] | None) -> None:
        """Tell the listeners of ``event_type``, and those of :attr:`ANY`, that it happened.

        :attr:`ANY` listeners are called first, then the event's own. Each gets
        its own shallow copy of ``details``. Exceptions from callbacks are
        logged, never raised. Events that may not trigger notifications (see
        :meth:`can_trigger_notification`) are dropped.

        Args:
            event_type: the event that happened.
            details: what happened, passed to callbacks as ``details=``.
        """
        if not self.has_listeners:
            return
        if not self.can_trigger_notification(event_type):
            LOG.debug("Event type '%s' is not allowed to trigger notifications", event_type)
            return
        topics = self._topics
        if event_type in self._named_only:
            listeners = topics.get(event_type, ())
        else:
            listeners = topics.get(self.ANY, ()) + topics.get(event_type, ())
        if not listeners:
            return
        if not details:
            details = {}
        saw_dead = False
        for listener in listeners:
            try:
                if not listener.deliver(event_type, dict(details)):
                    saw_dead = True
            except Exception:
                # TaskFlow's words, so log searches written for it still match.
                LOG.warning(
                    "Failure calling listener %s to notify about event %s, details: %s",
                    listener,
                    event_type,
                    details,
                    exc_info=True,
                )
        if saw_dead:
            self._prune_dead()

    # -- looking -------------------------------------------------------------

    def is_registered(
        self, event_type: Hashable, callback: Callback, details_filter: DetailsFilter | None = None
    ) -> bool:
        """Whether ``callback`` with that filter listens to ``event_type``."""
        return any(
            listener.is_equivalent(callback, details_filter) for listener in self._topics.get(event_type, ())
        )

    def listeners_iter(self) -> Iterator[tuple[Hashable, tuple[Listener, ...]]]:
        """Yield ``(event_type, listeners)`` for each event that has listeners."""
        yield from self._topics.items()

    def __len__(self) -> int:
        """How many listeners are registered, over all events."""
        return sum(len(listeners) for listeners in self._topics.values())

    def can_be_registered(self, event_type: Hashable) -> bool:
        """Whether callbacks may be registered for ``event_type`` (always, here)."""
        return True

    def can_trigger_notification(self, event_type: Hashable) -> bool:
        """Whether notifying ``event_type`` reaches anyone (:attr:`ANY` itself does not)."""
        return event_type != self.ANY

    def copy(self) -> Notifier:
        """Return a notifier with the same listeners, registered independently from now on."""
        from copy import copy as shallow_copy  # rarely needed (start-up time)

        with self._lock:
            clone = shallow_copy(self)
            clone._lock = _thread.allocate_lock()
            # Safe to share: listener mappings are never changed in place.
            clone._set_topics(self._topics)
            return clone


class RestrictedNotifier(Notifier):
    """A notifier that accepts listeners only for a fixed set of events.

    Args:
        watchable_events: the events callbacks may be registered for.
        allow_any: whether :attr:`Notifier.ANY` may be registered too.
    """

    def __init__(self, watchable_events: Iterable[Hashable], allow_any: bool = True) -> None:
        super().__init__()
        self._watchable_events = frozenset(watchable_events)
        self._allow_any = allow_any

    def events_iter(self) -> Iterator[Hashable]:
        """Yield the events callbacks may be registered for (not :attr:`Notifier.ANY`)."""
        yield from self._watchable_events

    def can_be_registered(self, event_type: Hashable) -> bool:
        """Whether ``event_type`` is watchable (or is :attr:`Notifier.ANY`, if allowed)."""
        if event_type in self._watchable_events:
            return True
        return self._allow_any and event_type == self.ANY


@contextlib.contextmanager
def register_deregister(
    notifier: Notifier,
    event_type: Hashable,
    callback: Callback | None = None,
    args: Iterable[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    details_filter: DetailsFilter | None = None,
    weak: bool = False,
) -> Iterator[None]:
    """Register ``callback`` for the duration of a ``with`` block.

    A ``None`` callback registers nothing, so callers can make listening optional.
    """
    if callback is None:
        yield
        return
    notifier.register(
        event_type, callback, args=args, kwargs=kwargs, details_filter=details_filter, weak=weak
    )
    try:
        yield
    finally:
        notifier.deregister(event_type, callback, details_filter=details_filter)
