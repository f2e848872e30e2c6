"""A user's code under ``mypy --strict``: what a type checker says about programs written against flowkit.

The corpus (``corpus/``) is code as flowkit's users write it: a TaskFlow-style
volume service, a job-board service with a conductor, retries and functor
tasks, and flowkit's typed tasks and declarative specs. It is only
type-checked, never run. Every file but ``wrong_usage.py`` is a correct
program, so mypy must say nothing about it; ``wrong_usage.py`` marks each wrong
line with the error code(s) mypy must report there (``# error: arg-type``), and
nothing else may be reported. So a signature that starts rejecting correct code,
or stops catching a mistake, fails here.

flowkit is checked as an installed package would be (its own errors are not
the user's: ``follow_imports = silent`` for ``flowkit.*``; ``mypy flowkit`` is
checked on its own by tools/test.sh). Pyright (strict) is checked the same way,
by line, where a ``pyright`` command is on PATH (``npm install pyright``); it is
not a dependency, so elsewhere that test says it was skipped and why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is a dev dependency: pip install -e '.[dev]'")

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
ROOT = HERE.parent.parent

#: ``path:line: error: message  [code]`` as mypy prints it (one line per error, no colours).
ERROR_LINE = re.compile(r"^(?P<path>[^:]+\.py):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")
#: ``# error: code[, code...]`` at the end of a line of the corpus.
EXPECTED = re.compile(r"#\s*error:\s*(?P<codes>[a-z-]+(?:\s*,\s*[a-z-]+)*)\s*$")

CONFIG = """\
[mypy]
strict = True
warn_unreachable = True
python_version = 3.11
show_error_codes = True
[mypy-flowkit.*]
follow_imports = silent
"""


def expected_errors() -> Counter[tuple[str, int, str]]:
    """``(file name, line, code)`` for each error the corpus's comments announce."""
    wanted: Counter[tuple[str, int, str]] = Counter()
    for path in sorted(CORPUS.glob("*.py")):
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            found = EXPECTED.search(text)
            if found:
                for code in found["codes"].split(","):
                    wanted[(path.name, number, code.strip())] += 1
    return wanted


def run_mypy(tmp_path: Path) -> tuple[Counter[tuple[str, int, str]], str]:
    """Run mypy --strict over the corpus, with a cache of its own; return its errors and its output."""
    config = tmp_path / "mypy.ini"
    config.write_text(CONFIG, encoding="utf-8")
    # MYPYPATH puts this checkout's flowkit first (mypy does not follow editable-install hooks).
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-color-output",
            "--no-error-summary",
            *sorted(str(p) for p in CORPUS.glob("*.py")),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = done.stdout + done.stderr
    found: Counter[tuple[str, int, str]] = Counter()
    for text in output.splitlines():
        match = ERROR_LINE.match(text.strip())
        if match:
            found[(Path(match["path"]).name, int(match["line"]), match["code"])] += 1
        elif ": error:" in text:
            pytest.fail(f"mypy printed an error this test cannot read:\n{output}")
    if done.returncode not in (0, 1):  # 2: mypy itself failed (bad config, crash)
        pytest.fail(f"mypy exited with {done.returncode}:\n{output}")
    return found, output


def test_expected_errors_are_announced() -> None:
    """The wrong file announces errors, and only it does (the correct files must stay silent)."""
    wanted = expected_errors()
    assert {name for name, _, _ in wanted} == {"wrong_usage.py"}
    assert sum(wanted.values()) >= 15


def test_mypy_strict_on_user_code(tmp_path: Path) -> None:
    """mypy --strict reports exactly the announced errors: none in correct code, each planted one."""
    found, output = run_mypy(tmp_path)
    wanted = expected_errors()
    unexpected = sorted((found - wanted).elements())
    missed = sorted((wanted - found).elements())
    assert not unexpected and not missed, (
        f"errors mypy reported that the corpus does not announce (false errors in correct code?): "
        f"{unexpected}\nannounced errors mypy did not report (a mistake no longer caught?): "
        f"{missed}\nmypy said:\n{output}"
    )


#: ``/path/file.py:line:col - error: message`` as pyright prints it.
PYRIGHT_LINE = re.compile(r"^\s*(?P<path>\S+\.py):(?P<line>\d+):\d+ - error: ")


def test_pyright_strict_on_user_code() -> None:
    """Pyright's strict mode agrees: errors on exactly the announced lines, none elsewhere."""
    pyright = shutil.which("pyright")
    if pyright is None:
        pytest.skip("pyright is not installed (npm install pyright); mypy --strict is checked above")
    done = subprocess.run(
        [pyright, "-p", str(HERE), "--pythonpath", sys.executable],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = done.stdout + done.stderr
    found: Counter[tuple[str, int]] = Counter()
    for text in output.splitlines():
        match = PYRIGHT_LINE.match(text)
        if match:
            found[(Path(match["path"]).name, int(match["line"]))] += 1
    wanted: Counter[tuple[str, int]] = Counter()
    for (name, line, _code), count in expected_errors().items():
        wanted[(name, line)] += count
    assert done.returncode in (0, 1), output
    assert found == wanted, f"pyright disagrees with the announced errors:\n{output}"
