"""Engine kinds imported on first use are safe to look up from several threads at once.

A non-blocking conductor loads the engines of its first jobs on several
threads at the same moment; a lookup that found the engine's module half
imported by another thread must wait for that import, not fail.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit.engines import helpers

#: Seconds a test thread waits for another before the test is declared stuck.
STEP_TIMEOUT = 30.0

_MODULE = "flowkit_test_gated_engine"
_GATE = "flowkit_test_engine_gate"

# A module whose import stops half way (in sys.modules, its class not yet defined)
# until the test opens the gate.
_SOURCE = f"""
import {_GATE} as gate

gate.started.set()
if not gate.release.wait({STEP_TIMEOUT}):
    raise TimeoutError("the test never released the import")


class GatedEngine:
    pass
"""


@pytest.fixture
def gated_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """Register the engine kind ``gated`` whose module's import waits for ``gate.release``."""
    (tmp_path / f"{_MODULE}.py").write_text(_SOURCE, encoding="utf-8")
    gate = types.ModuleType(_GATE)
    gate.started = threading.Event()  # type: ignore[attr-defined]
    gate.release = threading.Event()  # type: ignore[attr-defined]
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, _GATE, gate)
    monkeypatch.setitem(helpers._BUILTIN, "gated", f"{_MODULE}:GatedEngine")
    try:
        yield gate
    finally:
        gate.release.set()
        sys.modules.pop(_MODULE, None)


def test_lookup_while_another_thread_imports_the_kind_waits_for_the_import(
    gated_kind: types.ModuleType,
) -> None:
    found: dict[str, object] = {}

    def look_up(who: str) -> None:
        try:
            found[who] = helpers._engine_class("gated")
        except Exception as error:  # the failure the test looks for
            found[who] = error

    first = threading.Thread(target=look_up, args=("first",))
    first.start()
    assert gated_kind.started.wait(STEP_TIMEOUT), "the first lookup never started importing"
    # The module is in sys.modules now, half imported.
    second = threading.Thread(target=look_up, args=("second",))
    second.start()
    second.join(0.2)  # with the import held, a correct lookup is still waiting here
    gated_kind.release.set()
    first.join(STEP_TIMEOUT)
    second.join(STEP_TIMEOUT)
    assert isinstance(found["first"], type) and found["first"].__name__ == "GatedEngine"
    assert found["second"] is found["first"]
