"""Number options of every command: a value outside what the option means is refused at once (status 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import flowkit_cmd

#: No Redis listens on port 1: a command that got past its options says it cannot connect (status 1).
NOWHERE = "redis://127.0.0.1:1/0"


def _commands(db: str) -> dict[str, list[str]]:
    return {
        "conductor": ["conductor", "--name", "c", "--board", NOWHERE, "--connection", db],
        "worker": ["worker", "--redis", NOWHERE, "--topic", "t", "--tasks", "tests.cli._flows"],
        "workers": ["workers", "--redis", NOWHERE],
        "monitor": ["monitor", "--connection", db],
    }


@pytest.mark.parametrize(
    ("command", "option", "value", "reason"),
    [
        # NaN is no number a wait or a count can be, and an endless wait never polls again.
        ("conductor", "--wait-timeout", "nan", "must be a finite number, got 'nan'"),
        ("conductor", "--wait-timeout", "inf", "must be a finite number, got 'inf'"),
        ("conductor", "--claim-expiry", "inf", "must be a finite number, got 'inf'"),
        ("worker", "--heartbeat", "nan", "must be a finite number, got 'nan'"),
        ("worker", "--grace", "nan", "must be a finite number, got 'nan'"),
        ("workers", "--timeout", "-inf", "must be a finite number, got '-inf'"),
        # It went on to connect, then failed with a traceback from the conductor's ValueError.
        ("conductor", "--max-failures", "-3", "must not be negative, got '-3'"),
        # getaddrinfo takes a port modulo 65536: 99999 served on 34463, 65536 on a free port;
        # -1 said "cannot resolve --host '127.0.0.1'".
        ("monitor", "--port", "99999", "must be a port number, 0 to 65535 (0 picks a free one), got '99999'"),
        ("monitor", "--port", "65536", "must be a port number, 0 to 65535 (0 picks a free one), got '65536'"),
        ("monitor", "--port", "-1", "must be a port number, 0 to 65535 (0 picks a free one), got '-1'"),
        # A live page's reads in a busy loop, or never.
        ("monitor", "--poll", "-1", "must be positive, got '-1'"),
        ("monitor", "--poll", "nan", "must be a finite number, got 'nan'"),
    ],
)
def test_a_number_outside_what_the_option_means_is_refused_naming_the_option(
    tmp_path: Path, command: str, option: str, value: str, reason: str
) -> None:
    db = tmp_path / "flows.db"
    done = flowkit_cmd(*_commands(f"sqlite:///{db}")[command], f"{option}={value}", timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(f"flowkit {command}: error: argument {option}: {reason}\n"), done.stderr
    assert done.stdout == "" and not db.exists()


def test_the_bounds_an_option_means_are_taken() -> None:
    from flowkit.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(
        [*_commands("sqlite://")["conductor"], "--max-failures", "0", "--wait-timeout", "0.01"]
    )
    assert (args.max_failures, args.wait_timeout) == (0, 0.01)
    args = parser.parse_args([*_commands("sqlite://")["monitor"], "--port", "0", "--poll", "0.1"])
    assert (args.port, args.poll) == (0, 0.1)
    assert parser.parse_args([*_commands("sqlite://")["monitor"], "--port", "65535"]).port == 65535
    assert parser.parse_args([*_commands("sqlite://")["worker"], "--grace", "0"]).grace == 0.0
