"""``-v`` adds the traceback to a command's one-line error, for every command (doc/cli.rst).

``flowkit jobs ...``, ``flowkit conductor``, ``flowkit worker`` and ``flowkit
workers`` printed their own error line and dropped the exception, so ``-v``
showed nothing more than the line (``flowkit worker`` logged some with ``-vv``).
"""

from __future__ import annotations

import pytest

from tests.cli.conftest import flowkit_cmd

#: No Redis listens on port 1: connecting is refused at once.
NOWHERE = "redis://127.0.0.1:1/0"

#: (arguments, the error line's start, the exception the traceback ends with)
CASES = [
    (["jobs", "--board", NOWHERE, "list"], "flowkit jobs list: error: Redis jobboard", "JobFailure"),
    (["jobs", "--board", "bogus://x", "show", "u"], "flowkit jobs show: error: Could not find", "NotFound"),
    (
        ["conductor", "--board", NOWHERE, "--name", "c"],
        "flowkit conductor: error: Redis jobboard",
        "JobFailure",
    ),
    (["workers", "--redis", NOWHERE], "flowkit workers: error: cannot read workers", "ConnectionError"),
    (
        ["worker", "--redis", NOWHERE, "--topic", "t", "--tasks", "tests.cli._flows", "--burst"],
        "flowkit worker: error: cannot reach Redis",
        "ConnectionError",
    ),
    (
        ["conductor", "--board", NOWHERE, "--name", "c", "--engine", "bogus"],
        "flowkit conductor: error: --engine 'bogus'",
        "UnknownEngine",
    ),
]


@pytest.mark.parametrize(("argv", "line", "exception"), CASES)
def test_verbose_adds_the_traceback_to_the_error_line(argv: list[str], line: str, exception: str) -> None:
    plain = flowkit_cmd(*argv)
    verbose = flowkit_cmd("-v", *argv)
    assert plain.returncode == verbose.returncode != 0, (plain.stderr, verbose.stderr)
    assert "Traceback" not in plain.stderr and plain.stderr.startswith(line), plain.stderr
    assert verbose.stderr.startswith("Traceback (most recent call last):"), verbose.stderr
    assert f"{exception}: " in verbose.stderr, verbose.stderr
    # The same one line closes it, after the traceback.
    assert verbose.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1]


def test_verbose_after_the_command_name_adds_it_too() -> None:
    done = flowkit_cmd("jobs", "--board", NOWHERE, "list", "-v")
    assert "Traceback (most recent call last):" in done.stderr, done.stderr
