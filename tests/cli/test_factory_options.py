"""``--allow-factory`` of ``flowkit conductor`` and ``flowkit monitor``: what names no factory is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import flowkit_cmd

#: No Redis listens on port 1: a conductor that got past its options says it cannot connect (status 1).
NOWHERE = "redis://127.0.0.1:1/0"
WHAT = "is no dotted factory name nor a module prefix ending in '.' (pkg.flows.make_order, pkg.flows.)"


def _command(name: str, db: Path) -> list[str]:
    if name == "conductor":
        return ["conductor", "--name", "c", "--board", NOWHERE, "--connection", f"sqlite:///{db}"]
    return ["monitor", "--connection", f"sqlite:///{db}", "--port", "0"]


@pytest.mark.parametrize("command", ["conductor", "monitor"])
@pytest.mark.parametrize("value", ["", " ", ".", "pkg..make", "pkg.flows make", "pkg/flows.py:make"])
def test_an_allowed_factory_that_names_none_is_refused_naming_the_option(
    tmp_path: Path, command: str, value: str
) -> None:
    # An empty one: the conductor connected, then failed with a TypeError traceback; the
    # monitor said "TypeError: factories must hold non-empty strings" (status 1). The
    # others were taken and allowed nothing, so every job's factory was refused.
    db = tmp_path / "flows.db"
    done = flowkit_cmd(*_command(command, db), f"--allow-factory={value}", timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(f"flowkit {command}: error: argument --allow-factory: {value!r} {WHAT}\n")
    assert done.stdout == "" and not db.exists()


def test_an_allowed_factory_is_read_as_conductors_name_factories() -> None:
    from flowkit.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(
        [*_command("conductor", Path("x.db")), "--allow-factory", "pkg.flows:make_order",
         "--allow-factory", "pkg.other.", "--allow-factory", "flows.make"]
    )  # fmt: skip
    # MODULE:NAME, as `flowkit run` and `flowkit jobs post` take it, is the dotted name a
    # flow detail records: taken as it was, it allowed nothing.
    assert args.allow_factory == ["pkg.flows.make_order", "pkg.other.", "flows.make"]
