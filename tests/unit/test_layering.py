"""flowkit's packages import downward only.

The layers, lowest first (a module may import its own layer and those
below it, never one above)::

    base        exceptions, states, types, logging, version, _utils, utils
    atoms       atom, task, retry, deciders, typed
    patterns    flow, patterns, declarative (specs compile to patterns)
    persistence persistence
    engines     engines (compiler, scheduler, drivers), storage (with _run_state,
                _atom_record and _detail_sync)
    observers   listeners, formatters, workers, engines.worker_based
    jobs        jobs, conductors
    cli         cli, and the ``flowkit`` package itself

``_utils`` sits in the base layer, below the atoms, so that the types (for
example the failure record) can use its helpers; it must never reach up to
atoms. The worker-based engine belongs with the workers because it speaks
their protocol; the engines package finds it by entry point, not by import.

Every import counts, at module level or inside a function, except those
under ``if TYPE_CHECKING:``, which never run. Every module under
``flowkit/`` must be placed in a layer here, so that a new package is a
deliberate decision and not an accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "flowkit"

LAYER_NAMES = ("base", "atoms", "patterns", "persistence", "engines", "observers", "jobs", "cli")

# Module (or package prefix) -> layer; the longest matching prefix wins.
LAYERS: dict[str, str] = {
    "flowkit.exceptions": "base",
    "flowkit.states": "base",
    "flowkit.types": "base",
    "flowkit.logging": "base",
    "flowkit.version": "base",
    "flowkit._utils": "base",
    "flowkit.utils": "base",
    "flowkit.atom": "atoms",
    "flowkit.task": "atoms",
    "flowkit.retry": "atoms",
    "flowkit.deciders": "atoms",
    "flowkit.typed": "atoms",
    "flowkit.flow": "patterns",
    "flowkit.patterns": "patterns",
    "flowkit.declarative": "patterns",
    "flowkit.dynamic": "patterns",
    "flowkit._steering": "base",
    "flowkit._flow_codec": "patterns",
    "flowkit.persistence": "persistence",
    "flowkit.engines": "engines",
    "flowkit.storage": "engines",
    "flowkit._atom_record": "engines",
    "flowkit._detail_sync": "engines",
    "flowkit._guards": "engines",
    "flowkit.cache": "engines",
    "flowkit._run_state": "engines",
    "flowkit.listeners": "observers",
    "flowkit.formatters": "observers",
    "flowkit.workers": "observers",
    "flowkit.engines.worker_based": "observers",
    "flowkit.jobs": "jobs",
    "flowkit.conductors": "jobs",
    "flowkit.cli": "cli",
    "flowkit.__main__": "cli",
    "flowkit": "cli",
}


def layer_of(module: str) -> str | None:
    """Return the layer of ``module`` by its longest listed prefix, if any."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = LAYERS.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    return None


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    """Return the dotted name of a file under ``package_dir``."""
    relative = path.relative_to(package_dir.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking_guard(node: ast.If) -> bool:
    test = node.test
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Collect every import that can run: module level, nested, not type-only."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking_guard(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _is_module(dotted: str, package_dir: Path) -> bool:
    path = package_dir.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(
    source: str, importer: str, is_package: bool, package_dir: Path = PACKAGE_DIR
) -> set[str]:
    """Return the flowkit modules that ``source`` imports at run time.

    ``from a import b`` counts as importing ``a.b`` when that is a module,
    and as importing ``a`` otherwise. Relative imports are resolved against
    ``importer``.
    """
    root = package_dir.name
    package = importer if is_package else importer.rpartition(".")[0]
    targets: set[str] = set()
    for node in _runtime_imports(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        if node.level:
            base_parts = package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            targets.add(candidate if _is_module(candidate, package_dir) else base)
    return {name for name in targets if name == root or name.startswith(root + ".")}


def _source_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def _violations(path: Path) -> list[str]:
    importer = module_name(path)
    importer_rank = LAYER_NAMES.index(layer_of(importer) or "cli")
    problems = []
    source = path.read_text(encoding="utf-8")
    for target in sorted(imported_modules(source, importer, path.name == "__init__.py")):
        target_layer = layer_of(target)
        if target_layer is None:
            problems.append(f"{importer} imports {target}, which has no layer")
        elif LAYER_NAMES.index(target_layer) > importer_rank:
            problems.append(f"{importer} ({layer_of(importer)}) imports {target} ({target_layer})")
    return problems


def test_every_module_has_a_layer() -> None:
    unplaced = [module_name(path) for path in _source_files() if layer_of(module_name(path)) is None]
    assert not unplaced, f"add these to LAYERS in {Path(__file__).name}: {unplaced}"


def test_every_layer_in_the_map_is_known() -> None:
    assert set(LAYERS.values()) <= set(LAYER_NAMES)


@pytest.mark.parametrize("path", _source_files(), ids=module_name)
def test_module_imports_only_its_own_or_lower_layers(path: Path) -> None:
    problems = _violations(path)
    assert not problems, "\n".join(problems)


def test_import_scan_sees_nested_and_relative_imports_but_not_type_only(tmp_path: Path) -> None:
    package_dir = tmp_path / "flowkit"
    for relative in ("__init__.py", "task.py", "engines/__init__.py", "engines/helpers.py", "storage.py"):
        (package_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (package_dir / relative).write_text("")
    source = (
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "from flowkit import task\n"
        "from . import helpers\n"
        "from ..storage import Storage\n"
        "if TYPE_CHECKING:\n"
        "    from flowkit.listeners import base\n"
        "def later():\n"
        "    import flowkit.jobs.board\n"
        "    from flowkit import __version__\n"
    )
    found = imported_modules(source, "flowkit.engines", is_package=True, package_dir=package_dir)
    assert found == {
        "flowkit",
        "flowkit.engines.helpers",
        "flowkit.jobs.board",
        "flowkit.storage",
        "flowkit.task",
    }


def test_layer_of_prefers_the_longest_prefix() -> None:
    assert layer_of("flowkit.engines.worker_based.proxy") == "observers"
    assert layer_of("flowkit.engines._compiler") == "engines"
    assert layer_of("flowkit.types.failure") == "base"
    assert layer_of("flowkitx") is None
