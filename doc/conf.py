"""Sphinx configuration for flowkit's documentation.

Builds offline with Sphinx's own extensions only; ``tools/test.sh`` runs it
with warnings as errors, so a broken reference fails the test run.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Document the checkout being built, not whichever flowkit is installed.
sys.path.insert(0, str(ROOT))
# Our own Sphinx extensions (doc/_ext/state_tables.py renders flowkit.states).
sys.path.insert(0, str(ROOT / "doc" / "_ext"))

import flowkit  # noqa: E402 - needs the path set above

project = "flowkit"
author = "the flowkit authors"
copyright = "the flowkit authors"  # noqa: A001 - the name Sphinx reads
release = flowkit.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "state_tables",
]

# Cross-project links would need the network at build time; keep none.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

# Docstrings are Google style (Args:/Returns:/Raises:), never NumPy style.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

root_doc = "index"
exclude_patterns = ["_build", "_ext"]
templates_path: list[str] = []

html_theme = "alabaster"
html_title = f"flowkit {release}"
html_static_path: list[str] = []

# A reference to a public flowkit name that resolves to nothing renders as plain
# text, silently: check them (a renamed or undocumented class fails the -W
# build). Everything else stays unchecked: the standard library and third-party
# names (no intersphinx offline), bare names, and the private flowkit types that
# autodoc writes out from type hints.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!flowkit\.).*"),
    (r"py:.*", r"flowkit\.(.*\.)?_.*"),
    # Type variables (``T``) and the loop's internal ``until`` task, named by type hints only.
    (r"py:class", r"flowkit\..*\.[A-Z]"),
    (r"py:class", r"flowkit\.patterns\.loop_flow\.Until"),
]
