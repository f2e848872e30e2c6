"""flowkit.formatters: what a failed atom's log entry says about the atoms before it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flowkit import engines, formatters, states, task
from flowkit.listeners import logging as logging_listeners
from flowkit.patterns import linear_flow
from flowkit.types.failure import Failure


class Fetch(task.Task):
    def execute(self, token: str) -> dict[str, Any]:
        return {"secret": "s3", "items": [{"secret": "x", "id": 1}]}


class Broken(task.Task):
    def execute(self, fetched: dict[str, Any]) -> None:
        raise RuntimeError("boom")


def _failed_engine() -> tuple[Any, Failure]:
    flow = linear_flow.Flow("boot").add(Fetch("fetch", provides="fetched"), Broken("broken"))
    engine = engines.load(flow, store={"token": "t0ps3cret"}, never_resolve=True)
    with pytest.raises(RuntimeError, match="boom"):
        engine.run()
    return engine, engine.storage.get_execute_failures()["broken"]


def _is_broken(node: Any) -> bool:
    return bool(node.item.name == "broken")


def test_predecessors_are_listed_with_masked_inputs_and_outputs() -> None:
    engine, fail = _failed_engine()
    formatter = formatters.FailureFormatter(engine, mask_inputs_keys=["token"], mask_outputs_keys=["secret"])
    exc_info, details = formatter.format(fail, _is_broken)
    assert exc_info is not None and exc_info[0] is RuntimeError
    provides = {"secret": "***", "items": [{"secret": "***", "id": 1}]}
    fetch = {"intention": "EXECUTE", "state": "SUCCESS", "requires": {"token": "***"}, "provides": provides}
    assert details == f"2 predecessors (most recent first):\n  Atom 'fetch' {fetch}\n  |__Flow 'boot'"


def test_hidden_atoms_show_no_inputs_or_outputs() -> None:
    engine, fail = _failed_engine()
    formatter = formatters.FailureFormatter(engine, hide_inputs_outputs_of=["fetch"])
    _, details = formatter.format(fail, _is_broken)
    assert "Atom 'fetch' {'intention': 'EXECUTE', 'state': 'SUCCESS'}" in details
    assert "t0ps3cret" not in details


def test_nothing_is_listed_unless_the_atom_failed_executing() -> None:
    engine, fail = _failed_engine()
    engine.storage.set_atom_intention("broken", states.REVERT)
    assert formatters.FailureFormatter(engine).format(fail, _is_broken)[1] == ""
    assert formatters.FailureFormatter(engine).format(fail, lambda node: False)[1] == ""


def test_a_failure_without_a_live_exception_brings_its_recorded_traceback() -> None:
    engine, fail = _failed_engine()
    remote = Failure.from_dict(fail.to_dict())
    exc_info, details = formatters.FailureFormatter(engine).format(remote, lambda node: False)
    assert exc_info is None
    assert "RuntimeError: boom" in details


def test_an_engine_not_yet_compiled_gets_only_the_failure() -> None:
    flow = linear_flow.Flow("idle").add(Broken("broken"))
    engine = engines.load(flow)
    _, fail = _failed_engine()
    assert formatters.FailureFormatter(engine).format(fail, _is_broken)[1] == ""


def test_the_dynamic_logging_listener_uses_it_by_default(caplog: pytest.LogCaptureFixture) -> None:
    flow = linear_flow.Flow("boot").add(Fetch("fetch", provides="fetched"), Broken("broken"))
    engine = engines.load(flow, store={"token": "t"}, never_resolve=True)
    listener = logging_listeners.DynamicLoggingListener(engine)
    with caplog.at_level(logging.DEBUG), listener, pytest.raises(RuntimeError):
        engine.run()
    failed = [r for r in caplog.records if "into state 'FAILURE'" in r.getMessage()]
    assert "1 predecessors (most recent first)" not in failed[0].getMessage()
    assert "2 predecessors (most recent first):" in failed[0].getMessage()
    assert failed[0].exc_info is not None


def test_a_subclass_can_change_what_is_logged() -> None:
    class Quiet(formatters.FailureFormatter):
        def format(self, fail: Failure, atom_matcher: Any) -> tuple[Any, str]:
            if fail.check(RuntimeError):
                return None, "expected: " + fail.exception_str
            return super().format(fail, atom_matcher)

    engine, fail = _failed_engine()
    assert Quiet(engine).format(fail, _is_broken) == (None, "expected: boom")
