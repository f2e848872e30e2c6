"""Every layer shows a secret as the one :data:`flowkit._utils.masking.MASK`.

The text was once written out in six modules (URLs, the failure formatter,
kazoo's logged credentials, the Redis jobboard's option errors, the worker
transport's scheme-less URLs, the monitor's access lines), and ``flowkit
flows resume`` looked for a literal copy of it to tell a password lost to
masking. A change to one would have split them silently; the scan below
fails when a module writes the mask itself instead of importing it.
"""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

from flowkit._utils.masking import MASK
from flowkit.cli.monitor import _TokenMask
from flowkit.cli.run import masked_engine, unrecorded_password
from flowkit.persistence.backends._urls import mask_url

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "flowkit"
HOME = PACKAGE_DIR / "_utils" / "masking.py"

# The mask alone, not part of a longer run of stars (pydantic's SecretStr
# dumps ``'**********'``, which flowkit quotes in messages about it).
_WRITTEN_OUT = re.compile(r"(?<!\*)\*\*\*(?!\*)")


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the constants that are docstrings (prose may say ``***``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def written_out_masks(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Where code under ``package_dir`` spells the mask instead of importing it."""
    home = package_dir / "_utils" / "masking.py"
    places = []
    for path in sorted(package_dir.rglob("*.py")):
        if path == home:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        prose = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in prose
                and _WRITTEN_OUT.search(node.value)
            ):
                places.append(f"{path.relative_to(package_dir.parent)}:{node.lineno}")
    return places


def test_no_module_spells_the_mask_itself() -> None:
    assert HOME.is_file()
    assert written_out_masks() == []


def test_the_scan_finds_a_mask_written_out(tmp_path: Path) -> None:
    package = tmp_path / "flowkit"
    (package / "_utils").mkdir(parents=True)
    (package / "_utils" / "masking.py").write_text('MASK = "***"\n')
    (package / "shown.py").write_text(
        '"""Shown as ``***``."""\n'
        'SECRET = "**********"\n'
        "def shown(user):\n"
        '    """``user:***``."""\n'
        '    return f"{user}:***@host"\n'
    )
    assert written_out_masks(package) == ["flowkit/shown.py:5"]


def test_each_layer_shows_the_same_mask() -> None:
    assert mask_url("redis://:hunter2@db:6379/0") == f"redis://:{MASK}@db:6379/0"
    recorded = masked_engine("worker-based://?url=redis://:hunter2@db:6379/0")
    assert "hunter2" not in recorded and unrecorded_password(recorded)
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, "%s", ("GET /?token=abc",), None)
    _TokenMask().filter(record)
    assert record.args == (f"GET /?token={MASK}",)
