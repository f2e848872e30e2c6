"""The CLI and the monitor use other modules' public names only.

A private helper (a leading underscore) may change or go with any refactor of
its module; a command that imported one broke with no test of that module
failing. Private *modules* (``_transport``) are a package's own business and
not checked here: what they export without an underscore is their interface.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "flowkit"
SOURCES = sorted([*(ROOT / "cli").glob("*.py"), *(ROOT / "monitor").glob("*.py")])


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_private_name_of_another_package_is_imported(path: Path) -> None:
    own = _package_of(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        if node.module == own or node.module.startswith(own + "."):
            continue
        for alias in node.names:
            if alias.name.startswith("_") and not _is_module(f"{node.module}.{alias.name}"):
                found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    assert not found, f"{path.name} imports private names: {found}"
