"""The jobs package's public surface: TaskFlow's names, no optional client imported up front."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

REQUIRED = {
    "flowkit.jobs.base": {
        "Job",
        "JobBoard",
        "JobBoardIterator",
        "JobPriority",
        "NotifyingJobBoard",
        "POSTED",
    },
    "flowkit.jobs.backends": {"fetch", "backend"},
}


@pytest.mark.parametrize("module_name", sorted(REQUIRED))
def test_module_exports_taskflow_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert REQUIRED[module_name] <= set(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)


def test_fetching_a_board_imports_no_client_library() -> None:
    code = (
        "import sys; from flowkit.jobs import backends; "
        "backends.fetch('b', {'board': 'redis'}); backends.fetch('b', 'zookeeper://h:1/p'); "
        "print(sorted(m for m in ('redis', 'kazoo') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_priority_reorder_is_taskflows() -> None:
    from flowkit.jobs.base import JobPriority

    assert JobPriority.reorder(("low", "a")) == "a"
    assert JobPriority.reorder(("low", "a"), ("very_high", "b"), ("low", "c")) == ("b", "a", "c")
