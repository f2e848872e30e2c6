"""Helpers shared by the declarative tests: run a flow for comparison, load a spec expected to fail.

Kept in one module so the tests checking a spec against the same flow built
in Python, and the ones checking a mistake's file, line and key, all compare
the same things.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowkit import declarative, engines, exceptions
from flowkit.patterns import graph_flow
from flowkit.types.notifier import Notifier

__all__ = ["error_of", "run"]


def run(flow: graph_flow.Flow, kind: str, **options: Any) -> tuple[Any, ...]:
    """Run ``flow`` on engine ``kind``; return what another run of the same flow must match.

    That is the stored results, each atom's states (retries' included), the flow's states and the
    error raised (its type name and message), or None.
    """
    engine = engines.load(flow, engine=kind, **options)
    atom_states: dict[str, list[str]] = {}
    flow_states: list[str] = []
    # Retries are atoms too: their details name them under "retry_name".
    engine.atom_notifier.register(
        Notifier.ANY,
        lambda state, details: atom_states.setdefault(
            details.get("task_name", details.get("retry_name")), []
        ).append(state),
    )
    engine.notifier.register(Notifier.ANY, lambda state, details: flow_states.append(state))
    error = None
    try:
        engine.run()
    except Exception as err:
        error = (type(err).__name__, str(err))
    return engine.storage.fetch_all(), atom_states, flow_states, error


def error_of(tmp_path: Path, text: str) -> exceptions.FlowSpecError:
    """Load ``text`` as the YAML file ``flow.yaml`` under ``tmp_path``; return the error it must raise.

    A file rather than a mapping, so the error can name the file and line.
    """
    pytest.importorskip("yaml")
    path = tmp_path / "flow.yaml"
    path.write_text(text)
    with pytest.raises(exceptions.FlowSpecError) as info:
        declarative.load_flow(path)
    return info.value
