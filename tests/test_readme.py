"""README.rst names only what exists: its API names, its examples, its extras.

The README's Python snippets are a tour, not programs (``cloud`` and the
volume tasks are the reader's), so they are not run; what can go stale in
them is checked instead: every ``module.name`` they and the prose use must
resolve in flowkit, every example script named must exist and every one that
exists must be named, and every ``.[extra]`` must be an extra of setup.cfg.
Its shell commands run in tests/cli/test_doc_transcripts.py and
tests/test_examples.py.
"""

from __future__ import annotations

import ast
import configparser
import importlib
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text(encoding="utf-8")

#: Short module names the README uses, as its snippets import them.
MODULES = {
    "engines": "flowkit.engines",
    "task": "flowkit.task",
    "retry": "flowkit.retry",
    "dynamic": "flowkit.dynamic",
    "linear_flow": "flowkit.patterns.linear_flow",
    "graph_flow": "flowkit.patterns.graph_flow",
    "unordered_flow": "flowkit.patterns.unordered_flow",
    "loop_flow": "flowkit.patterns.loop_flow",
    "backends": "flowkit.persistence.backends",
    "models": "flowkit.persistence.models",
}


def _python_blocks() -> list[str]:
    """The README's ``::`` blocks that are Python using flowkit, dedented."""
    blocks = []
    for match in re.finditer(r"::\n\n((?:    .*\n|\n)+)", README):
        text = "\n".join(line[4:] for line in match.group(1).splitlines())
        if "from flowkit" in text:
            blocks.append(text)
    return blocks


def _resolves(dotted: str) -> bool:
    head, *rest = dotted.split(".")
    target: object = importlib.import_module(MODULES[head])
    for part in rest:
        if not hasattr(target, part):
            return False
        target = getattr(target, part)
    return True


def _importable(module: str, name: str) -> bool:
    """Whether ``from module import name`` works (a submodule, or an attribute)."""
    if importlib.util.find_spec(module) is None:
        return False
    if hasattr(importlib.import_module(module), name):
        return True
    return importlib.util.find_spec(f"{module}.{name}") is not None


def test_every_flowkit_import_and_name_of_the_snippets_exists() -> None:
    blocks = _python_blocks()
    assert len(blocks) >= 4, blocks
    missing = []
    for text in blocks:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flowkit"):
                missing += [
                    f"{node.module}.{a.name}" for a in node.names if not _importable(node.module, a.name)
                ]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in MODULES
            ):
                dotted = f"{node.value.id}.{node.attr}"
                missing += [] if _resolves(dotted) else [dotted]
    assert missing == []


def test_every_module_name_in_the_prose_exists() -> None:
    used = set(re.findall(r"``(" + "|".join(MODULES) + r")\.([A-Za-z_][A-Za-z_.]*)", README))
    assert ("engines", "load") in used and ("retry", "Times") in used
    assert [f"{m}.{n}" for m, n in sorted(used) if not _resolves(f"{m}.{n}")] == []


def test_the_examples_named_are_the_examples_there_are() -> None:
    section = README[README.index("``examples/`` holds") :]
    named = set(re.findall(r"``([a-z_]+\.(?:py|yaml))``", section[: section.index("The documentation")]))
    there = {p.name for p in (ROOT / "examples").iterdir() if p.suffix in (".py", ".yaml")}
    assert named == there


def test_every_extra_named_is_an_extra() -> None:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    extras = set(config["options.extras_require"])
    named = set(re.findall(r"\.\[([a-z]+)\]", README))
    assert "cli" in named and named - extras == set()
