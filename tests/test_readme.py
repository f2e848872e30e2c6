"""README.rst names only what exists: its API names, its examples, its extras.

Its Python snippets run, in page order, in tests/test_doc_snippets.py (as
the pages of ``doc/`` do, the reader's ``cloud`` and volume tasks given
there), and its shell commands in tests/cli/test_doc_transcripts.py and
tests/test_examples.py. What the prose names is checked here: every
``module.name`` it uses must resolve in flowkit, every example script named
must exist and every one that exists must be named, and every ``.[extra]``
must be an extra of setup.cfg.
"""

from __future__ import annotations

import configparser
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text(encoding="utf-8")

#: Short module names the README uses, as its prose and snippets name them.
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


def _resolves(dotted: str) -> bool:
    head, *rest = dotted.split(".")
    target: object = importlib.import_module(MODULES[head])
    for part in rest:
        if not hasattr(target, part):
            return False
        target = getattr(target, part)
    return True


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
