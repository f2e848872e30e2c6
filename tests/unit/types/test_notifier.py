"""Behaviour of :mod:`flowkit.types.notifier`."""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

import pytest

from flowkit.types.notifier import Listener, Notifier, RestrictedNotifier, register_deregister


class Recorder:
    """A callback that remembers how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, event_type: Any, *args: Any, **kwargs: Any) -> None:
        self.calls.append((event_type, args, kwargs))

    def method(self, event_type: Any, details: Any) -> None:
        self.calls.append((event_type, (), {"details": details}))


# -- registering and notifying -----------------------------------------------------


def test_notify_calls_listeners_of_that_event_with_details() -> None:
    notifier = Notifier()
    recorder = Recorder()
    notifier.register("SUCCESS", recorder)
    notifier.notify("SUCCESS", {"task_name": "a"})
    notifier.notify("FAILURE", {"task_name": "b"})
    assert recorder.calls == [("SUCCESS", (), {"details": {"task_name": "a"}})]


def test_a_plain_two_argument_callback_works() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def on_event(event_type: str, details: dict[str, Any]) -> None:
        seen.append((event_type, details))

    notifier = Notifier()
    notifier.register("RUNNING", on_event)
    notifier.notify("RUNNING", {"x": 1})
    assert seen == [("RUNNING", {"x": 1})]


def test_any_listeners_hear_every_event_and_are_called_first() -> None:
    notifier = Notifier()
    order: list[str] = []
    notifier.register("SUCCESS", lambda event_type, details: order.append(f"specific:{event_type}"))
    notifier.register(Notifier.ANY, lambda event_type, details: order.append(f"any:{event_type}"))
    notifier.notify("SUCCESS", {})
    notifier.notify("REVERTED", {})
    assert order == ["any:SUCCESS", "specific:SUCCESS", "any:REVERTED"]


def test_notifying_the_any_event_itself_reaches_nobody() -> None:
    notifier = Notifier()
    recorder = Recorder()
    notifier.register(Notifier.ANY, recorder)
    notifier.notify(Notifier.ANY, {})
    assert recorder.calls == []
    assert not notifier.can_trigger_notification(Notifier.ANY)
    assert notifier.can_trigger_notification("SUCCESS")


def test_args_and_kwargs_are_passed_around_the_details() -> None:
    notifier = Notifier()
    recorder = Recorder()
    notifier.register("E", recorder, args=[1, 2], kwargs={"flag": True})
    notifier.notify("E", {"k": "v"})
    assert recorder.calls == [("E", (1, 2), {"details": {"k": "v"}, "flag": True})]


def test_details_key_is_reserved_in_kwargs() -> None:
    with pytest.raises(KeyError, match="Reserved key 'details' not allowed in kwargs"):
        Notifier().register("E", Recorder(), kwargs={"details": 1})


def test_each_listener_gets_its_own_copy_of_the_details() -> None:
    notifier = Notifier()
    received: list[dict[str, Any]] = []

    def mutate(event_type: str, details: dict[str, Any]) -> None:
        details["mutated"] = True
        received.append(details)

    notifier.register("E", mutate)
    notifier.register("E", lambda event_type, details: received.append(details))
    original = {"k": 1}
    notifier.notify("E", original)
    assert original == {"k": 1}
    assert received == [{"k": 1, "mutated": True}, {"k": 1}]


def test_missing_details_become_an_empty_dict() -> None:
    notifier = Notifier()
    recorder = Recorder()
    notifier.register("E", recorder)
    notifier.notify("E", None)
    assert recorder.calls == [("E", (), {"details": {}})]


def test_details_filter_gates_the_callback() -> None:
    notifier = Notifier()
    recorder = Recorder()
    notifier.register("E", recorder, details_filter=lambda details: details.get("wanted"))
    notifier.notify("E", {"wanted": False})
    notifier.notify("E", {"wanted": True})
    assert recorder.calls == [("E", (), {"details": {"wanted": True}})]


def test_registering_the_same_callback_and_filter_twice_is_refused() -> None:
    notifier = Notifier()
    recorder = Recorder()

    def only(details: Any) -> bool:
        return True

    notifier.register("E", recorder.method)
    with pytest.raises(ValueError, match="^Event callback already registered with equivalent details filter"):
        notifier.register("E", recorder.method)
    notifier.register("E", recorder.method, details_filter=only)
    with pytest.raises(ValueError, match="already registered"):
        notifier.register("E", recorder.method, details_filter=only)
    notifier.register("OTHER", recorder.method)
    assert len(notifier) == 3


def test_non_callables_are_refused() -> None:
    notifier = Notifier()
    with pytest.raises(ValueError, match="^Event callback must be callable"):  # TaskFlow's words
        notifier.register("E", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^Details filter must be callable"):
        notifier.register("E", Recorder(), details_filter=5)  # type: ignore[arg-type]
    assert not notifier.has_listeners


def test_a_failing_callback_is_logged_and_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier()
    recorder = Recorder()

    def broken(event_type: str, details: Any) -> None:
        raise RuntimeError("listener bug")

    notifier.register("E", broken)
    notifier.register("E", recorder)
    with caplog.at_level(logging.WARNING, logger="flowkit.types.notifier"):
        notifier.notify("E", {"k": 1})
    assert recorder.calls == [("E", (), {"details": {"k": 1}})]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert record.getMessage().startswith("Failure calling listener ")  # TaskFlow's words
    assert record.getMessage().endswith(" to notify about event E, details: {'k': 1}")


# -- deregistering and looking ---------------------------------------------------


def test_deregister_removes_only_the_matching_listener() -> None:
    notifier = Notifier()
    first, second = Recorder(), Recorder()

    def keep(details: Any) -> bool:
        return True

    notifier.register("E", first)
    notifier.register("E", first, details_filter=keep)
    notifier.register("E", second)
    assert notifier.deregister("E", first)
    assert not notifier.deregister("E", first)
    assert not notifier.deregister("MISSING", first)
    assert notifier.is_registered("E", first, details_filter=keep)
    assert not notifier.is_registered("E", first)
    assert notifier.is_registered("E", second)
    notifier.notify("E", {})
    assert len(first.calls) == 1
    assert len(second.calls) == 1


def test_deregister_event_removes_every_listener_of_the_event() -> None:
    notifier = Notifier()
    notifier.register("E", Recorder())
    notifier.register("E", Recorder())
    notifier.register("F", Recorder())
    assert notifier.deregister_event("E") == 2
    assert notifier.deregister_event("E") == 0
    assert len(notifier) == 1


def test_listeners_iter_yields_events_with_their_listeners() -> None:
    notifier = Notifier()
    recorder = Recorder()
    notifier.register("E", recorder, args=("a",))
    notifier.register(Notifier.ANY, recorder)
    found = dict(notifier.listeners_iter())
    assert set(found) == {"E", Notifier.ANY}
    (listener,) = found["E"]
    assert isinstance(listener, Listener)
    assert listener.callback is recorder
    assert listener.args == ("a",)
    assert listener.details_filter is None


def test_reset_forgets_everything() -> None:
    notifier = Notifier()
    notifier.register("E", Recorder())
    notifier.register(Notifier.ANY, Recorder())
    notifier.reset()
    assert len(notifier) == 0
    assert list(notifier.listeners_iter()) == []


def test_copy_is_independent_of_the_original() -> None:
    notifier = Notifier()
    recorder = Recorder()
    notifier.register("E", recorder)
    clone = notifier.copy()
    clone.register("F", recorder)
    notifier.deregister("E", recorder)
    assert clone.is_registered("E", recorder)
    assert not notifier.is_registered("F", recorder)
    assert clone.has_listeners
    assert not notifier.has_listeners


# -- has_listeners -----------------------------------------------------------------


def test_has_listeners_follows_register_deregister_and_reset() -> None:
    notifier = Notifier()
    recorder = Recorder()
    assert notifier.has_listeners is False
    notifier.register("E", recorder)
    assert notifier.has_listeners is True
    notifier.register(Notifier.ANY, recorder)
    notifier.deregister("E", recorder)
    assert notifier.has_listeners is True
    notifier.deregister(Notifier.ANY, recorder)
    assert notifier.has_listeners is False
    notifier.register("E", recorder)
    notifier.deregister_event("E")
    assert notifier.has_listeners is False
    notifier.register("E", recorder)
    notifier.reset()
    assert notifier.has_listeners is False


def test_has_listeners_is_a_plain_attribute() -> None:
    notifier = Notifier()
    assert "has_listeners" in vars(notifier)
    assert not isinstance(getattr(Notifier, "has_listeners", None), property)


# -- weak references ---------------------------------------------------------------


def test_weak_bound_method_listener_is_forgotten_once_its_owner_dies() -> None:
    notifier = Notifier()
    owner = Recorder()
    notifier.register("E", owner.method, weak=True)
    notifier.notify("E", {"n": 1})
    assert owner.calls == [("E", (), {"details": {"n": 1}})]
    assert notifier.is_registered("E", owner.method)
    del owner
    gc.collect()
    assert len(notifier) == 0
    assert notifier.has_listeners is False
    notifier.notify("E", {"n": 2})


def test_weak_function_listener_is_forgotten_once_collected() -> None:
    notifier = Notifier()
    calls: list[str] = []

    def on_event(event_type: str, details: Any) -> None:
        calls.append(event_type)

    notifier.register("E", on_event, weak=True)
    notifier.notify("E", {})
    del on_event
    gc.collect()
    notifier.notify("E", {})
    assert calls == ["E"]
    assert not notifier.has_listeners


def test_strong_listener_keeps_its_owner_alive() -> None:
    notifier = Notifier()
    owner = Recorder()
    notifier.register("E", owner.method)
    del owner
    gc.collect()
    notifier.notify("E", {"n": 1})
    ((listener,),) = (listeners for _, listeners in notifier.listeners_iter())
    assert listener.callback is not None
    assert len(listener.callback.__self__.calls) == 1  # type: ignore[attr-defined]


def test_dead_weak_listener_in_a_copy_is_pruned_on_notify() -> None:
    notifier = Notifier()
    owner = Recorder()
    notifier.register("E", owner.method, weak=True)
    clone = notifier.copy()
    del owner
    gc.collect()
    assert clone.has_listeners
    clone.notify("E", {})
    assert not clone.has_listeners
    assert len(clone) == 0


# -- restricted notifier -----------------------------------------------------------


def test_restricted_notifier_refuses_events_it_does_not_watch() -> None:
    notifier = RestrictedNotifier(["SUCCESS", "FAILURE"])
    notifier.register("SUCCESS", Recorder())
    notifier.register(Notifier.ANY, Recorder())
    with pytest.raises(
        ValueError, match="^Disallowed event type 'RUNNING' can not have a callback registered"
    ):
        notifier.register("RUNNING", Recorder())
    assert sorted(notifier.events_iter()) == ["FAILURE", "SUCCESS"]
    assert notifier.can_be_registered("FAILURE")
    assert not notifier.can_be_registered("RUNNING")


def test_restricted_notifier_can_refuse_the_any_event() -> None:
    notifier = RestrictedNotifier(["SUCCESS"], allow_any=False)
    with pytest.raises(ValueError, match="can not have a callback registered"):
        notifier.register(Notifier.ANY, Recorder())
    assert not notifier.has_listeners


def test_restricted_notifier_copy_keeps_its_restrictions() -> None:
    clone = RestrictedNotifier(["SUCCESS"]).copy()
    assert isinstance(clone, RestrictedNotifier)
    with pytest.raises(ValueError):
        clone.register("RUNNING", Recorder())


# -- register_deregister ---------------------------------------------------------


def test_register_deregister_listens_only_inside_the_block() -> None:
    notifier = Notifier()
    recorder = Recorder()
    with register_deregister(notifier, "E", recorder, args=(1,)):
        assert notifier.is_registered("E", recorder)
        notifier.notify("E", {})
    notifier.notify("E", {})
    assert recorder.calls == [("E", (1,), {"details": {}})]
    assert not notifier.has_listeners


def test_register_deregister_cleans_up_when_the_block_raises() -> None:
    notifier = Notifier()
    recorder = Recorder()
    with pytest.raises(RuntimeError), register_deregister(notifier, "E", recorder):
        raise RuntimeError("inside")
    assert not notifier.is_registered("E", recorder)


def test_register_deregister_without_a_callback_registers_nothing() -> None:
    notifier = Notifier()
    with register_deregister(notifier, "E"):
        assert not notifier.has_listeners


# -- threads -----------------------------------------------------------------------


def test_concurrent_register_deregister_and_notify_lose_nothing() -> None:
    notifier = Notifier()
    always = Recorder()
    notifier.register("E", always)
    workers, rounds = 4, 300
    start = threading.Barrier(workers + 1)
    errors: list[BaseException] = []

    def churn(index: int) -> None:
        start.wait()
        try:
            for round_ in range(rounds):
                callback = Recorder()
                notifier.register(f"E{index}", callback)
                notifier.register("E", callback, args=(round_,))
                assert notifier.deregister("E", callback)
                assert notifier.deregister(f"E{index}", callback)
        except BaseException as error:  # surfaced in the main thread
            errors.append(error)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    start.wait()
    for _ in range(rounds):
        notifier.notify("E", {})
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert all(not thread.is_alive() for thread in threads)
    assert len(always.calls) == rounds
    assert len(notifier) == 1
    assert notifier.has_listeners
