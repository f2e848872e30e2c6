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
by line. Pyright is an npm package, not a Python dependency: tools/test.sh
installs a pinned one into a cache and names it in ``FLOWKIT_PYRIGHT``
(:func:`find_pyright` says where else it looks). Without one that test skips,
saying how to install it, except under CI, where it fails: a CI machine that
cannot run pyright must not pass by skipping the only check of our annotations
against pyright's strict mode.
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

from tests.services import in_ci

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

#: The pyright version tools/test.sh pins (``PYRIGHT_VERSION=...``), for the install hint.
PYRIGHT_PIN = re.compile(r"^PYRIGHT_VERSION=(?P<version>\S+)$", re.MULTILINE)

#: Seconds pyright may take over the corpus. It takes about 10 s on an idle 2-core machine
#: and 15-22 s on one loaded three times over; far more means something is wrong (a search
#: path pulling in a whole tree?), not a slow machine.
PYRIGHT_TIMEOUT = 120


def pinned_pyright_version() -> str:
    """The pyright version tools/test.sh installs, read from the script so the pin lives in one place."""
    found = PYRIGHT_PIN.search((ROOT / "tools" / "test.sh").read_text(encoding="utf-8"))
    assert found, "tools/test.sh no longer pins pyright with a PYRIGHT_VERSION=... line"
    return found["version"]


def default_pyright_cache() -> Path:
    """Where tools/test.sh installs pyright: ``FLOWKIT_PYRIGHT_CACHE`` or ``~/.cache/flowkit/pyright``."""
    named = os.environ.get("FLOWKIT_PYRIGHT_CACHE")
    return Path(named) if named else Path.home() / ".cache" / "flowkit" / "pyright"


def find_pyright() -> str:
    """Return the pyright program to run; skip, or fail under CI, when there is none.

    Looked for in this order: ``FLOWKIT_PYRIGHT`` (tools/test.sh exports the one
    it installed; a name that is not an executable file is an error, not a
    reason to look elsewhere), the cache tools/test.sh installs into (so a plain
    ``pytest`` after one run of tools/test.sh finds it too), then ``PATH``.
    """
    named = os.environ.get("FLOWKIT_PYRIGHT")
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            pytest.fail(f"FLOWKIT_PYRIGHT={named!r} is not an executable file (tools/test.sh sets it)")
        return named
    installed = default_pyright_cache() / "node_modules" / ".bin" / "pyright"
    if installed.is_file() and os.access(installed, os.X_OK):
        return str(installed)
    on_path = shutil.which("pyright")
    if on_path:
        return on_path
    reason = (
        f"pyright is not installed: tools/test.sh installs it, or run "
        f"npm install --prefix {default_pyright_cache()} pyright@{pinned_pyright_version()} "
        f"(looked at FLOWKIT_PYRIGHT, {installed} and PATH)"
    )
    if in_ci():
        pytest.fail(f"{reason}; CI is set, so a missing pyright is an error, not a skip")
    pytest.skip(f"{reason}; mypy --strict is checked above")


def test_pyright_strict_on_user_code() -> None:
    """Pyright's strict mode agrees: errors on exactly the announced lines, none elsewhere."""
    pyright = find_pyright()
    try:
        done = subprocess.run(
            [pyright, "-p", str(HERE), "--pythonpath", sys.executable],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=PYRIGHT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{pyright} -p {HERE} took more than {PYRIGHT_TIMEOUT} s (10 to 20 s is usual)")
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


def test_missing_pyright_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With no pyright anywhere and ``CI=true``, the pyright test fails instead of skipping."""
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("FLOWKIT_PYRIGHT", raising=False)
    monkeypatch.setenv("FLOWKIT_PYRIGHT_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    # Skipped and Failed are BaseExceptions; catch both to tell which one came.
    with pytest.raises(BaseException) as raised:
        test_pyright_strict_on_user_code()
    assert isinstance(raised.value, pytest.fail.Exception), f"not a failure: {raised.value!r}"
    assert "CI is set" in str(raised.value)
    assert f"pyright@{pinned_pyright_version()}" in str(raised.value)


def test_missing_pyright_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A developer without pyright (and without CI set) gets a skip that says how to install it."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("FLOWKIT_PYRIGHT", raising=False)
    monkeypatch.setenv("FLOWKIT_PYRIGHT_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match="tools/test.sh installs it"):
        find_pyright()


def fake_program(path: Path) -> Path:
    """An executable file at ``path``: :func:`find_pyright` only looks programs up, never runs them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def test_find_pyright_prefers_the_one_test_sh_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``FLOWKIT_PYRIGHT`` wins over the cache and over a pyright on PATH."""
    named = fake_program(tmp_path / "named" / "pyright")
    fake_program(tmp_path / "cache" / "node_modules" / ".bin" / "pyright")
    fake_program(tmp_path / "bin" / "pyright")
    monkeypatch.setenv("FLOWKIT_PYRIGHT", str(named))
    monkeypatch.setenv("FLOWKIT_PYRIGHT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert find_pyright() == str(named)


def test_find_pyright_finds_test_sh_cache_off_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without ``FLOWKIT_PYRIGHT`` (a plain ``pytest``), the cache tools/test.sh fills is used."""
    cached = fake_program(tmp_path / "cache" / "node_modules" / ".bin" / "pyright")
    monkeypatch.delenv("FLOWKIT_PYRIGHT", raising=False)
    monkeypatch.setenv("FLOWKIT_PYRIGHT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert find_pyright() == str(cached)


def test_find_pyright_rejects_a_wrong_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A ``FLOWKIT_PYRIGHT`` that names no program fails, naming it, even outside CI."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("FLOWKIT_PYRIGHT", str(tmp_path / "no-such-pyright"))
    with pytest.raises(pytest.fail.Exception, match="no-such-pyright"):
        find_pyright()


def test_test_sh_pins_an_exact_pyright() -> None:
    """The pin is one exact version (x.y.z): a range would let CI pick up a pyright with new opinions."""
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned_pyright_version())
