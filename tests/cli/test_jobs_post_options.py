"""``flowkit jobs post``'s options: a value of the wrong kind is refused naming the option, unconnected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import flowkit_cmd

#: No Redis listens on port 1: a post that got past its options says it cannot connect (status 1).
NOWHERE = "redis://127.0.0.1:1/0"

#: What a number JSON cannot hold is refused with (flowkit.declarative._numbers).
NO_JSON_FORM = (
    "is not a finite number: NaN, Infinity and numbers past the float range (1e400) have no JSON form"
)


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        # It connected to the board first (an unreachable one hid the mistake behind
        # status 1), then said "--args must be a JSON list, --kwargs and --store JSON
        # objects" whichever of the three was at fault.
        ("--args", '{"n": 1}', 'must be a JSON list, not an object: {"n": 1}'),
        ("--kwargs", "[1, 2]", "must be a JSON object, not a list: [1, 2]"),
        ("--store", "3", "must be a JSON object, not a number: 3"),
        ("--store", '"vm"', 'must be a JSON object, not a string: "vm"'),
        ("--store", "null", "must be a JSON object, not null: null"),
        (
            "--store",
            "{",
            "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        # flowkit run's KEY=VALUE: it said only "not JSON: Expecting value: line 1 column 1".
        (
            "--store",
            "size_gb=10",
            "not JSON: Expecting value: line 1 column 1 (char 0); give a JSON object,"
            " such as '{\"size_gb\": 10}' (not KEY=VALUE, as flowkit run takes it)",
        ),
        # A broken JSON object holding an '=' is no KEY=VALUE: no hint (it offered
        # '{"{size_gb": "10}"}').
        (
            "--store",
            "{size_gb=10}",
            "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        # Python's json reads NaN, Infinity and 1e400 (as inf), which no JSON document holds:
        # the job was posted with them, as declarative specs no longer may hold them.
        ("--store", '{"vm": NaN}', f"key 'vm': nan {NO_JSON_FORM}, in which a job is posted"),
        (
            "--store",
            '{"vm": {"size": [-Infinity]}}',
            f"key 'vm': -inf {NO_JSON_FORM}, in which a job is posted",
        ),
        ("--kwargs", '{"size": 1e400}', f"key 'size': inf {NO_JSON_FORM}, in which a job is posted"),
        ("--args", "[1, Infinity]", f"item 1: inf {NO_JSON_FORM}, in which a job is posted"),
        # It said "'BOGUS' is not a job priority; ...", naming no option, after connecting.
        (
            "--priority",
            "BOGUS",
            "'BOGUS' is not a job priority; valid priorities are VERY_HIGH, HIGH, NORMAL, LOW, VERY_LOW",
        ),
    ],
)
def test_a_post_option_of_the_wrong_kind_is_refused_naming_it_before_connecting(
    tmp_path: Path, option: str, value: str, reason: str
) -> None:
    db = tmp_path / "flows.db"
    done = flowkit_cmd(
        "jobs", "--board", NOWHERE, "--connection", f"sqlite:///{db}",
        "post", "n", "--factory", "tests.conductors.flows.chain", f"{option}={value}",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(f"flowkit jobs post: error: argument {option}: {reason}\n"), done.stderr
    assert done.stdout == "" and not db.exists()


def test_post_options_of_the_right_kind_are_read() -> None:
    from flowkit.cli import build_parser
    from flowkit.jobs.base import JobPriority

    args = build_parser().parse_args(
        ["jobs", "--board", NOWHERE, "post", "n", "--factory", "m.f", "--args", "[1]", "--store", '{"a": 1}',
         "--priority", "high"]
    )  # fmt: skip
    assert (args.args, args.kwargs, args.store, args.priority) == ([1], {}, {"a": 1}, JobPriority.HIGH)
