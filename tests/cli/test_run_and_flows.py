"""``flowkit run`` and ``flowkit flows list|show|why``, as users run them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import FLOWKIT, SOURCE_ROOT, command_env, flowkit_cmd, flowkit_json


def _run_shop(amount: int, connection: str) -> int:
    """The exit status of ``flowkit run`` of the shop flow charging ``amount`` (over 100 is declined)."""
    return flowkit_cmd(
        "run", "tests.cli._flows:make_shop", "--store", f"amount={amount}", "--connection", connection
    ).returncode


def test_run_succeeds_with_status_0_and_prints_the_report(connection: str) -> None:
    done = flowkit_cmd("run", "tests.cli._flows:make_shop", "--store", "amount=5", "--connection", connection)
    assert done.returncode == 0, done.stderr
    assert "flow 'shop'" in done.stdout and "SUCCESS" in done.stdout
    assert done.stderr == ""


def test_a_failed_flow_exits_1_naming_the_atom_the_failure_and_the_revert(connection: str) -> None:
    done = flowkit_cmd(
        "run", "tests.cli._flows:make_shop", "--store", "amount=500", "--connection", connection
    )
    assert done.returncode == 1
    line = done.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "atom 'charge' failed with" in line and "CardDeclined: card declined for 500" in line
    assert "reverted" in line


def test_a_failure_left_unresolved_does_not_say_nothing_needed_reverting() -> None:
    # With never_resolve the reserve step stays SUCCESS; the line said "nothing needed reverting".
    done = flowkit_cmd(
        "run", "tests.cli._flows:make_shop", "--store", "amount=500",
        "--engine", "serial://?never_resolve=true", "--report", "none",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        "flow 'shop' ended FAILURE; atom 'charge' failed with tests.cli._flows.CardDeclined: card declined "
        "for 500; nothing was reverted (2 atom(s) left in SUCCESS)"
    ), done.stderr


def test_run_records_a_lambda_target_by_its_module_name_and_resumes_it(tmp_path: Path) -> None:
    # It failed: "Flow factory <function <lambda> ...> is not reimportable by name"; the
    # CLI recognised that error by words load_from_factory no longer used.
    connection = f"sqlite:///{tmp_path}/flows.db"
    done = flowkit_cmd(
        "run", "tests.cli._flows:make_shop_lambda", "--store", "amount=5", "--connection", connection
    )
    assert done.returncode == 0, done.stderr
    plan = flowkit_json("flows", "resume", "shop", "--connection", connection, "--dry-run")
    assert plan["state"] == "SUCCESS"
    again = flowkit_cmd("flows", "resume", "shop", "--connection", connection)
    assert again.returncode == 0, again.stderr


def test_run_accepts_a_flow_object_and_prints_a_json_report() -> None:
    done = flowkit_cmd("run", "tests.cli._flows:SHOP", "--store", "amount=7", "--report", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["state"] == "SUCCESS"
    atoms = {a["name"]: a for a in report["atoms"]}
    assert atoms["charge"]["result"] == "7" and atoms["charge"]["attempts"] == 1


def test_store_values_are_json_when_they_parse_and_text_otherwise() -> None:
    as_json = flowkit_cmd("run", "tests.cli._flows:make_shop", "--store", "amount=101", "--report", "none")
    assert as_json.returncode == 1  # 101 arrived as a number, and was declined
    # Text where charge declares an int: refused before the run (it ran, and charge
    # failed with TypeError: '>' not supported between 'str' and 'int').
    as_text = flowkit_cmd("run", "tests.cli._flows:make_shop", "--store", "amount=lots", "--report", "json")
    assert as_text.returncode == 2
    assert "--store 'amount=lots': atom 'charge' takes it as its argument 'amount' (int)" in as_text.stderr


def _label_of(*store: str, target: str = "tests.cli._flows:make_labels") -> str:
    """The ``label`` result of ``flowkit run TARGET --store ...`` (which must succeed)."""
    args = [item for pair in store for item in ("--store", pair)]
    done = flowkit_cmd("run", target, *args, "--report", "json")
    assert done.returncode == 0, done.stderr
    (atom,) = [a for a in json.loads(done.stdout)["atoms"] if a["name"] == "label"]
    return str(atom["result"])


def test_a_store_value_is_read_as_the_type_its_reader_declares() -> None:
    # label(postcode: str, copies: int, weight: float | None): a postcode of digits is
    # JSON for a number, which a str argument cannot take, so it stays the text given
    # (it arrived as the int 2139, and zfill failed: AttributeError, the flow REVERTED).
    assert _label_of("postcode=02139", "copies=2") == "'02139 x2'"
    assert _label_of("postcode=12345", "copies=2") == "'12345 x2'"
    assert _label_of("postcode=null", "copies=3") == "'0null x3'"  # the text, not None
    # Where the JSON value fits, it is taken: an int for an int, an int for a float,
    # null for an Optional.
    assert _label_of("postcode=1", "copies=3", "weight=2") == "'00001 x3 2.0kg'"
    assert _label_of("postcode=1", "copies=3", "weight=null") == "'00001 x3'"


def test_a_store_value_is_read_as_a_spec_task_declares(tmp_path: Path) -> None:
    spec = tmp_path / "labels.yaml"
    spec.write_text(
        "name: labels\n"
        "parameters: [code, n]\n"
        "tasks:\n"
        "  label: {task: tests.cli._flows:label, inputs: {postcode: '${code}', copies: '${n}'}}\n"
    )
    assert _label_of("code=12345", "n=4", target=str(spec)) == "'12345 x4'"


def test_a_store_value_no_declared_type_takes_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    db = tmp_path / "flows.db"
    cases = {
        # It ran, and failed in the task: TypeError: '>' not supported, or a zfill on an int.
        "copies=lots": (
            "--store 'copies=lots': atom 'label' takes it as its argument 'copies' (int):"
            " 'lots' (str) is not int"
        ),
        "copies=1.5": (
            "--store 'copies=1.5': atom 'label' takes it as its argument 'copies' (int):"
            " 1.5 (float) is not int"
        ),
        "weight=[1]": (
            "--store 'weight=[1]': atom 'label' takes it as its argument 'weight' (float | None):"
            " [1] (list) is not float | None"
        ),
        # JSON's true is no number (the task got True: a bool is an int in Python).
        "copies=true": (
            "--store 'copies=true': atom 'label' takes it as its argument 'copies' (int):"
            " True (bool) is not int"
        ),
    }
    for item, words in cases.items():
        done = flowkit_cmd(
            "run", "tests.cli._flows:make_labels", "--store", "postcode=1", "--store", "copies=1",
            "--store", item, "--connection", f"sqlite:///{db}",
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"flowkit run: error: target 'tests.cli._flows:make_labels': {words}\n"
        assert not db.exists()


def test_a_flow_whose_annotations_contradict_runs_with_a_warning_by_default(connection: str) -> None:
    # TaskFlow reads no annotations: such a flow runs there, so it runs here unless asked otherwise.
    done = flowkit_cmd("run", "tests.cli._flows:make_mistyped", "--connection", connection)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "requires 'amount'" in line]
    assert len(warned) == 1 and "WARNING" in warned[0] and "running it anyway" in warned[0], done.stderr


def test_bad_usage_exits_2_with_one_line_naming_the_fault(tmp_path: Path) -> None:
    cases = {
        ("run", "tests.cli._flows:nothing"): "has no attribute 'nothing'",
        ("run", "no_such_module_xyz:make"): "cannot import module 'no_such_module_xyz'",
        ("run", "tests.cli._flows"): "must be MODULE:NAME",
        # A script's path, as `python PATH` takes it: it said "No module named 'tests/cli/_flows'".
        ("run", "tests/cli/_flows.py"): (
            "target 'tests/cli/_flows.py' is a file path, not a module: give its module's dotted name, "
            "'tests.cli._flows:NAME'"
        ),
        ("run", "tests/cli/_flows.py:make_shop"): "dotted name, 'tests.cli._flows:make_shop'",
        ("graph", "/srv/app/flows.py:make"): "is a file path, not a module: run from the directory",
        ("run", "tests.cli._flows:make_shop", "--store", "amount"): "--store 'amount' must be KEY=VALUE",
        ("run", "tests.cli._flows:make_shop"): "amount",  # a value the flow needs, not given
        # A misspelled key: it said only what was missing, not that 'amout' went unread.
        ("run", "tests.cli._flows:make_shop", "--store", "amout=5"): (
            "flow 'shop' needs ['amount'], not given: give them with --store NAME=VALUE "
            "(--store gave ['amout'], which the flow does not require)"
        ),
        ("run", "tests.cli._flows:CardDeclined"): "did not give a flow",
        # It said "did not give a flow" of a flow whose types do not fit (refused when asked).
        ("run", "tests.cli._flows:make_mistyped", "--engine", "serial://?check_types=1"): (
            "the flow of target 'tests.cli._flows:make_mistyped' cannot run: atom 'use' requires 'amount'"
        ),
        (
            "run",
            "tests.cli._flows:make_shop",
            "--store",
            "amount=5",  # else the missing input is said first, before any engine is made
            "--engine",
            "bogus",
        ): "--engine 'bogus': Could not find engine 'bogus'",
        (
            "run",
            "tests.cli._flows:make_shop",
            "--store",
            "amount=5",
            "--engine",
            "parallel://?max_workers=0",
        ): ("--engine 'parallel://?max_workers=0': max_workers must be a positive int"),
        # The options without '://': it said only "Could not find engine 'parallel?max_workers=2'".
        (
            "run",
            "tests.cli._flows:make_shop",
            "--store",
            "amount=5",
            "--engine",
            "parallel?max_workers=2",
        ): (
            "Could not find engine 'parallel?max_workers=2' (known engines: asyncio, default, parallel,"
            " serial, worker-based, worker_based); an engine URI is KIND://?OPTIONS: 'parallel://?max_workers=2'"
        ),
    }
    for args, words in cases.items():
        done = flowkit_cmd(*args)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, done.stderr)
    # It said "in this backend": neither which backend nor what it holds, so another
    # database than the one meant looked like a mistyped flow name.
    assert flowkit_cmd("db", "upgrade", "--connection", f"sqlite:///{tmp_path}/x.db").returncode == 0
    unknown = flowkit_cmd("flows", "show", "nope", "--connection", f"sqlite:///{tmp_path}/x.db")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        f"flowkit flows show: error: no flow with uuid or name 'nope' in the backend "
        f"sqlite:///{tmp_path}/x.db, which holds no flows"
    )
    assert _run_shop(5, f"sqlite:///{tmp_path}/x.db") == 0
    typo = flowkit_cmd("flows", "why", "shp", "--connection", f"sqlite:///{tmp_path}/x.db")
    assert typo.returncode == 2
    assert typo.stderr.strip() == (
        f"flowkit flows why: error: no flow with uuid or name 'shp' in the backend "
        f"sqlite:///{tmp_path}/x.db (its flows: 'shop')"
    )


def test_a_state_that_is_no_flow_state_is_bad_usage_not_an_empty_list(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/flows.db"
    assert _run_shop(500, url) == 1
    assert "shop" in flowkit_cmd("flows", "list", "--state", "reverted", "--connection", url).stdout
    done = flowkit_cmd("flows", "list", "--state", "FAILED", "--connection", url)
    assert done.returncode == 2
    assert "--state 'FAILED' is no flow state" in done.stderr and "'REVERTED'" in done.stderr


def test_a_bad_engine_for_resume_is_bad_usage_naming_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/flows.db"
    assert _run_shop(5, url) == 0
    for engine, words in [
        ("bogus", "Could not find engine 'bogus'"),
        ("parallel://?max_workers=0", "max_workers"),
    ]:
        done = flowkit_cmd("flows", "resume", "shop", "--engine", engine, "--connection", url)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"--engine '{engine}': " in lines[0] and words in lines[0], done.stderr


def test_verbose_adds_the_traceback() -> None:
    done = flowkit_cmd("-v", "run", "tests.cli._flows:nothing")
    assert done.returncode == 2
    assert "Traceback" in done.stderr


def test_an_unreachable_database_exits_1_naming_it_with_the_password_masked() -> None:
    url = "postgresql+psycopg://someone:secret@127.0.0.1:9/nowhere"
    done = flowkit_cmd("flows", "list", "--connection", url)
    assert done.returncode == 1
    line = done.stderr.strip()
    assert "\n" not in line and "secret" not in line
    assert "database postgresql+psycopg://someone:***@127.0.0.1:9/nowhere: " in line
    # Said once: the line read "cannot use database URL: cannot connect to database URL: ..."
    # and then the whole cause again.
    assert line.count("127.0.0.1:9/nowhere") == 1, line


@pytest.mark.parametrize("password", ["se#cret", "se?cret"])
def test_a_password_holding_a_url_delimiter_is_masked_too(password: str) -> None:
    # The driver takes such a URL (and tries the server), so the error names it.
    done = flowkit_cmd(
        "flows", "list", "--connection", f"postgresql://someone:{password}@127.0.0.1:9/nowhere"
    )
    assert done.returncode == 1
    assert "cret" not in done.stderr and "someone:***@127.0.0.1:9/nowhere" in done.stderr


def test_a_spec_error_with_a_cause_is_one_line() -> None:
    # The cause of a flowkit error followed on lines of its own (seven for a YAML syntax error).
    done = flowkit_cmd("run", "tests/cli/no_such_dir/spec.yaml")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "spec.yaml: cannot read the spec: No such file or directory" in done.stderr


def test_an_unreachable_cache_is_one_line_with_the_usual_prefix() -> None:
    # It lacked "error:", and the cause followed on a line of its own.
    done = flowkit_cmd("cache", "stats", "--cache", "redis://:secret@127.0.0.1:9/0")
    assert done.returncode == 1
    assert done.stderr.startswith("flowkit cache stats: error: cannot reach cache store redis://:***@")
    assert done.stderr.count("\n") == 1 and "secret" not in done.stderr, done.stderr


def test_flows_list_and_show_give_stable_json(connection: str) -> None:
    assert _run_shop(5, connection) == 0
    assert _run_shop(500, connection) == 1
    listed = flowkit_json("flows", "list", "--connection", connection)
    assert [f["state"] for f in listed] == ["SUCCESS", "REVERTED"]
    for flow in listed:
        assert {
            "uuid",
            "name",
            "state",
            "book",
            "created_at",
            "started_at",
            "ended_at",
            "atoms",
            "total",
        } <= set(flow)
        assert flow["name"] == "shop" and flow["total"] == 4
    assert listed[0]["atoms"] == {"SUCCESS": 4}
    failed = flowkit_json("flows", "list", "--state", "reverted", "--connection", connection)
    assert [f["uuid"] for f in failed] == [listed[1]["uuid"]]

    shown = flowkit_json("flows", "show", listed[1]["uuid"], "--connection", connection)
    assert shown["uuid"] == listed[1]["uuid"] and shown["state"] == "REVERTED"
    atoms = {a["name"]: a for a in shown["atoms"]}
    assert set(atoms) == {"reserve", "r1", "charge", "ship"}
    for atom in shown["atoms"]:
        assert {"name", "state", "intention", "attempts", "duration", "result", "failure", "reverted"} <= set(
            atom
        )
    assert atoms["charge"]["attempts"] == 2
    assert atoms["charge"]["failure"]["type"].endswith("CardDeclined")
    assert atoms["charge"]["failure"]["message"] == "card declined for 500"
    assert atoms["reserve"]["reverted"] == "reverted"
    assert atoms["ship"]["state"] == "PENDING"
    # By name: the newest flow of that name.
    by_name = flowkit_json("flows", "show", "shop", "--connection", connection)
    assert by_name["uuid"] == listed[1]["uuid"]
    text = flowkit_cmd("-v", "flows", "show", "shop", "--connection", connection)
    assert "CardDeclined" in text.stdout and "Traceback" not in text.stdout
    assert "charge execute traceback:" in text.stdout


def test_flows_why_tells_the_chain_of_causes(connection: str) -> None:
    assert _run_shop(500, connection) == 1
    done = flowkit_cmd("flows", "why", "shop", "reserve", "--connection", connection)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "reserve is REVERTED:"
    assert "reserve REVERTING" in lines[2]
    assert "'charge' failed with CardDeclined: card declined for 500 in attempt 2" in lines[2]
    assert "retry 'r1' chose REVERT_ALL" in lines[2]
    assert "charge FAILURE (attempt 2, run 1)" in lines[3]
    chain = flowkit_json("flows", "why", "shop", "charge", "--connection", connection)["chain"]
    assert chain[0]["state"] == "REVERTED"
    retried = flowkit_json("flows", "why", "shop", "r1", "--connection", connection)
    assert retried["state"] == "REVERTED"
    # Attempt 2 of charge ran because r1 chose RETRY after attempt 1 failed.
    events = flowkit_json("flows", "show", "shop", "--connection", connection)["events"]
    second = [e for e in events if e["name"] == "charge" and e["state"] == "RUNNING"][1]
    assert second["cause"]["kind"] == "retry" and second["cause"]["decision"] == "RETRY"
    assert second["cause"]["retry"] == "r1"
    unknown = flowkit_cmd("flows", "why", "shop", "nobody", "--connection", connection)
    assert unknown.returncode == 2 and "has no atom 'nobody'" in unknown.stderr


def test_flows_why_without_an_atom_tells_how_the_flow_ended(tmp_path: Path) -> None:
    # `why FLOW` was a usage error, and `why FLOW FLOW` said the flow had no atom of that
    # name: how a flow came to revert was only found by reading `show`'s event list.
    connection = f"sqlite:///{tmp_path}/flows.db"
    assert _run_shop(500, connection) == 1
    for atom in ((), ("shop",)):
        done = flowkit_cmd("flows", "why", "shop", *atom, "--connection", connection)
        assert done.returncode == 0, (atom, done.stderr)
        lines = done.stdout.splitlines()
        assert lines[0] == "flow 'shop' is REVERTED:", done.stdout
        assert "shop REVERTED" in lines[1] and "'charge' failed with CardDeclined" in lines[1]
        assert "<- charge FAILURE (attempt 2, run 1): execute raised CardDeclined" in lines[2]
    explained = flowkit_json("flows", "why", "shop", "--connection", connection, "--json")
    assert (explained["flow"], explained["state"]) == ("shop", "REVERTED")
    assert [(e["name"], e["state"]) for e in explained["chain"]] == [
        ("shop", "REVERTED"),
        ("charge", "FAILURE"),
    ]


def test_run_draws_progress_bars_on_a_terminal_only() -> None:
    import pty

    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [FLOWKIT, "run", "tests.cli._flows:make_shop", "--store", "amount=5", "--report", "none"],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env=command_env(COLUMNS="100", TERM="xterm"),
            cwd=SOURCE_ROOT,
        )
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(primary)
    drawn = b"".join(chunks).decode(errors="replace")
    assert "flow shop" in drawn and "100%" in drawn
    piped = flowkit_cmd("run", "tests.cli._flows:make_shop", "--store", "amount=5", "--report", "none")
    assert piped.returncode == 0 and piped.stdout == ""


def test_worker_jobs_and_conductor_errors_do_not_repeat_their_cause() -> None:
    # They printed a flowkit error's message and then its cause again on the same line.
    worker = flowkit_cmd(
        "worker", "--redis", "redis://127.0.0.1:9/0", "--topic", "t", "--tasks", "no_such_mod"
    )
    assert worker.stderr == (
        "flowkit worker: error: cannot import task module 'no_such_mod': No module named 'no_such_mod'\n"
    )
    # A script's path: Python's "No module named 'tests/cli/_flows'" did not say a dotted name was wanted.
    path = flowkit_cmd(
        "worker", "--redis", "redis://127.0.0.1:9/0", "--topic", "t", "--tasks", "tests/cli/_flows.py"
    )
    assert path.returncode == 2
    assert path.stderr.strip().endswith(
        "(a file path, not a module: give its dotted name, 'tests.cli._flows')"
    ), path.stderr
    for command in (["jobs", "--board", "redis://:pw@127.0.0.1:9/0", "list"], ["conductor", "--board",
                    "redis://:pw@127.0.0.1:9/0", "--name", "c"]):  # fmt: skip
        done = flowkit_cmd(*command)
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and done.stderr.count("Connection refused") == 1, done.stderr
        assert "pw" not in done.stderr


def test_flows_list_keeps_its_columns_with_long_and_wide_names(postgresql_db_url: str) -> None:
    from flowkit import engines
    from flowkit.patterns import linear_flow
    from flowkit.persistence import backends
    from tests.cli._flows import Step

    names = ["shop", "a-very-long-flow-name-that-an-operator-gave-it <b>&</b>", "日本語のフロー"]
    with backends.backend(postgresql_db_url) as backend:
        for name in names:
            engines.load(linear_flow.Flow(name).add(Step("a")), backend=backend).run()
    done = flowkit_cmd("flows", "list", "--connection", postgresql_db_url)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["UUID", "NAME", "STATE", "CREATED", "(UTC)", "ATOMS"]
    assert [row.split("  ")[1].strip() for row in rows] == names
    # Each state starts in the same terminal cell (a wide character takes two), under its header.
    column = header.index("STATE")
    for row, name in zip(rows, names, strict=True):
        wide = sum(1 for c in name if ord(c) > 0x2E80)
        assert row[column - wide :].startswith("SUCCESS"), done.stdout
    # Seconds in UTC, not an ISO string with microseconds and an offset.
    assert re.search(r"  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  1 SUCCESS$", rows[0]), rows[0]


def test_a_reader_that_goes_away_ends_the_command_quietly_as_sigpipe_would() -> None:
    # `flowkit flows list | head -1` printed "error: BrokenPipeError" and exited 1.
    proc = subprocess.Popen(
        [FLOWKIT, "graph", "tests.cli._flows:make_shop"],
        env=command_env(),
        cwd=SOURCE_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # no reader left: the command's first write fails
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert err == ""


def test_flows_show_aligns_the_states_of_atoms_with_wide_names(postgresql_db_url: str) -> None:
    from flowkit import engines
    from flowkit.patterns import linear_flow
    from flowkit.persistence import backends
    from tests.cli._flows import Step

    with backends.backend(postgresql_db_url) as backend:
        flow = linear_flow.Flow("wide").add(Step("日本語の手順"), Step("ascii-step"), Step("é"))
        engines.load(flow, backend=backend).run()
    shown = flowkit_cmd("flows", "show", "wide", "--connection", postgresql_db_url)
    assert shown.returncode == 0, shown.stderr

    # Each SUCCESS starts in the same terminal cell; a CJK character takes two.
    def cells(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)

    starts = [cells(line[: line.index("SUCCESS")]) for line in shown.stdout.splitlines()[1:]]
    assert len(starts) == 3 and len(set(starts)) == 1, shown.stdout


def test_a_name_shared_by_several_flows_says_which_it_took_and_how_to_choose(tmp_path: Path) -> None:
    # It took the newest in silence: an operator looking at "shop" could be reading another run.
    connection = f"sqlite:///{tmp_path}/flows.db"
    assert _run_shop(5, connection) == 0
    assert _run_shop(500, connection) == 1
    assert _run_shop(6, connection) == 0
    older, middle, newest = (f["uuid"] for f in flowkit_json("flows", "list", "--connection", connection))
    for command in (("flows", "show", "shop"), ("flows", "why", "shop", "charge")):
        done = flowkit_cmd(*command, "--json", "--connection", connection)
        assert done.returncode == 0, done.stderr
        json.loads(done.stdout)  # the note stays off standard output
        note = done.stderr.strip()
        assert "\n" not in note and note.startswith(f"flowkit {' '.join(command[:2])}: note: ")
        assert f"3 flows are named 'shop'; this is the newest, {newest}" in note
        assert f"2 others: {middle}, {older}" in note and "give a uuid" in note
    assert flowkit_json("flows", "show", "shop", "--connection", connection)["uuid"] == newest
    # A uuid, or a name only one flow has, leaves nothing to say.
    by_uuid = flowkit_cmd("flows", "show", older, "--json", "--connection", connection)
    assert by_uuid.returncode == 0 and by_uuid.stderr == ""
    alone = f"sqlite:///{tmp_path}/alone.db"
    assert _run_shop(5, alone) == 0
    only = flowkit_cmd("flows", "show", "shop", "--connection", alone)
    assert only.returncode == 0 and only.stderr == ""


def test_a_python_target_missing_an_input_is_refused_before_any_run_is_written(tmp_path: Path) -> None:
    # The flow was loaded (a PENDING run written) before the engine found `amount` missing:
    # each try left a run behind that nobody could finish. Spec files were refused up front.
    url = f"sqlite:///{tmp_path}/flows.db"
    for target in (
        "tests.cli._flows:make_shop",
        "tests.cli._flows:SHOP",
        "tests.cli._flows:make_shop_lambda",
    ):
        done = flowkit_cmd("run", target, "--connection", url)
        assert done.returncode == 2, (target, done.stderr)
        assert done.stderr.strip() == (
            f"flowkit run: error: target '{target}': flow 'shop' needs ['amount'], not given:"
            " give them with --store NAME=VALUE"
        ), done.stderr
    assert list(tmp_path.iterdir()) == []  # no run written: not even the database made


@pytest.mark.parametrize(
    "command",
    [
        ("flows", "list"),
        ("flows", "show", "shop"),
        ("flows", "why", "shop"),
        ("flows", "resume", "shop", "--dry-run"),
        ("db", "current"),
    ],
    ids=lambda c: " ".join(c[:2]) + (" --dry-run" if "--dry-run" in c else ""),
)
def test_a_reading_command_given_a_mistyped_sqlite_path_creates_no_database(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # It created an empty database there and said it "holds no flows": the typo went unseen,
    # and the stray file stayed.
    done = flowkit_cmd(*command, "--connection", "sqlite:///flws.db", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().endswith(
        f"--connection sqlite:///flws.db: no SQLite database at 'flws.db' ({tmp_path / 'flws.db'}): "
        "the file does not exist (a command that only reads creates none; flowkit run, "
        "flowkit flows resume and flowkit db upgrade do)"
    ), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_reading_command_opens_sqlite_read_only_and_writing_ones_still_create_it(tmp_path: Path) -> None:
    connection = f"sqlite:///{tmp_path}/flows.db"
    upgraded = flowkit_cmd("db", "upgrade", "--connection", connection)
    assert upgraded.returncode == 0, upgraded.stderr
    assert _run_shop(5, connection) == 0
    database = tmp_path / "flows.db"
    before = database.read_bytes()
    assert [f["state"] for f in flowkit_json("flows", "list", "--connection", connection)] == ["SUCCESS"]
    assert flowkit_json("flows", "show", "shop", "--connection", connection)["state"] == "SUCCESS"
    assert database.read_bytes() == before
    # A file that is no flowkit database (one an earlier flowkit left empty) is said to be one.
    (tmp_path / "empty.db").touch()
    empty = flowkit_cmd("flows", "list", "--connection", f"sqlite:///{tmp_path}/empty.db")
    assert empty.returncode == 1
    assert "has no flowkit schema; create it with `flowkit db upgrade" in empty.stderr, empty.stderr
    assert (tmp_path / "empty.db").stat().st_size == 0


READING = [("flows", "list"), ("flows", "show", "shop"), ("flows", "why", "shop")]
#: What a reading command says after naming a store that is not there, whatever the backend.
CREATES_NONE = (
    "(a command that only reads creates none; flowkit run, flowkit flows resume and flowkit db upgrade do)"
)


@pytest.mark.parametrize("command", READING, ids=lambda c: " ".join(c[:2]))
def test_a_reading_command_given_a_mistyped_directory_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # It called upgrade(), which made the directory and its collections, and
    # said the new empty store "holds no flows": the typo went unseen.
    missing = tmp_path / "flws"
    done = flowkit_cmd(*command, "--connection", f"dir://{missing}")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().endswith(
        f"dir://{missing}: no such directory {str(missing)!r} {CREATES_NONE}"
    ), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_reading_command_stays_read_only_whatever_the_url_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The command's writable=False is in the conf, which a URL query never overrides.
    from flowkit.cli import main

    missing = tmp_path / "flws"
    assert main(["flows", "list", "--connection", f"dir://{missing}?writable=true"]) == 1
    assert "no such directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", READING, ids=lambda c: " ".join(c[:2]))
def test_a_reading_command_given_a_mistyped_zookeeper_path_creates_nothing(
    zookeeper_server: Any, zookeeper_path_url: str, command: tuple[str, ...]
) -> None:
    path = zookeeper_path_url.split("/", 3)[3]
    done = flowkit_cmd(*command, "--connection", zookeeper_path_url)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().endswith(f"no such ZooKeeper path '/{path}' {CREATES_NONE}"), done.stderr
    assert zookeeper_path_url in done.stderr
    with zookeeper_server.client() as client:
        assert client.exists(f"/{path}") is None


def test_a_reading_command_given_a_directory_never_upgraded_names_the_command(tmp_path: Path) -> None:
    # It said the library's "run upgrade() first", a call a command-line user cannot make.
    store = tmp_path / "flows"
    store.mkdir()
    done = flowkit_cmd("flows", "list", "--connection", f"dir://{store}")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        f"flowkit flows list: error: store dir://{store} has no flowkit collections; "
        f"create them with `flowkit db upgrade --connection dir://{store}`"
    ), done.stderr
    assert list(store.iterdir()) == []


def test_a_reading_command_given_a_zookeeper_path_never_upgraded_masks_the_password(
    zookeeper_server: Any, zookeeper_path_url: str
) -> None:
    path = "/" + zookeeper_path_url.split("/", 3)[3]
    with zookeeper_server.client() as client:
        client.ensure_path(path)
    url = zookeeper_path_url.replace("zookeeper://", "zookeeper://ops:s3cret@", 1)
    masked = url.replace(":s3cret@", ":***@")
    done = flowkit_cmd("flows", "list", "--connection", url)
    assert done.returncode == 1, done.stderr
    assert "s3cret" not in done.stderr
    assert done.stderr.strip().endswith(f"create them with `flowkit db upgrade --connection {masked}`"), (
        done.stderr
    )
    with zookeeper_server.client() as client:
        assert client.get_children(path) == []


@pytest.mark.parametrize("command", READING, ids=lambda c: " ".join(c[:2]))
def test_a_reading_command_writes_no_node_on_a_store_made_before_read_holds(
    zookeeper_server: Any, zookeeper_path_url: str, command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store upgraded before read holds existed has no ``readers`` node; a reader
    # made it (ensure_path) on its first read, so a read-only command wrote to ZooKeeper.
    path = "/" + zookeeper_path_url.split("/", 3)[3]
    assert _run_shop(5, zookeeper_path_url) == 0
    with zookeeper_server.client() as client:
        client.delete(f"{path}/readers")
        before = {child: client.get(f"{path}/{child}")[1].mzxid for child in client.get_children(path)}
        stat = client.get(path)[1]
    # A read takes a hold (and made ``readers``) only after reads that overlapped a
    # write: a real write of the flow's members lands between each of the first
    # reads and its check, as an engine writing without pause would.
    from flowkit.cli import main
    from flowkit.persistence.backends import impl_zookeeper

    real_checks = impl_zookeeper._ZkStore._send_checks
    overlapped = []

    def overlapping(store: Any, seen: Any) -> Any:
        if len(overlapped) < 15 and seen:
            overlapped.append(True)
            writer.set(f"{path}/members/{flow}", b"")
        return real_checks(store, seen)

    with zookeeper_server.client() as writer:
        (flow,) = writer.get_children(f"{path}/members")
        monkeypatch.setattr(impl_zookeeper._ZkStore, "_send_checks", overlapping)
        assert main([*command, "--connection", zookeeper_path_url]) == 0
    assert len(overlapped) == 15
    with zookeeper_server.client() as client:
        assert client.exists(f"{path}/readers") is None
        after = {child: client.get(f"{path}/{child}")[1].mzxid for child in client.get_children(path)}
        assert client.get(path)[1].cversion == stat.cversion  # no child made, even if removed again
    assert after == before


def test_a_reading_command_reads_a_directory_store_it_may_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # validate() asks for write access, so a read-only operator (or a read-only
    # mount) was refused "is not writable" by commands that only read. The tests
    # run as root, which may write anywhere: the operator's lack of write access
    # is what os.access answers, in process, while the files and the store are real.
    from flowkit.cli import main

    connection = f"dir://{tmp_path / 'flows'}"
    assert _run_shop(5, connection) == 0
    real_access = os.access

    def read_only(path: Any, mode: int, **kwargs: Any) -> bool:
        return not mode & os.W_OK and real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", read_only)
    capsys.readouterr()
    assert main(["flows", "list", "--json", "--connection", connection]) == 0
    listed, said = capsys.readouterr()
    assert said == ""
    assert [f["state"] for f in json.loads(listed)] == ["SUCCESS"]


def test_flows_commands_escape_names_another_process_wrote(tmp_path: Path) -> None:
    # A flow's and an atom's name (and a result) in the database are whatever the
    # process that ran the flow wrote: printed raw, an escape repainted the
    # operator's terminal and a newline forged a row or a line.
    from flowkit import states
    from flowkit.persistence import backends, models

    connection = f"sqlite:///{tmp_path / 'flows.db'}"
    book = models.LogBook("book")
    detail = models.FlowDetail("nightly\x1b[2J\nforged-uuid  forged  SUCCESS", "f-1")
    detail.state = states.SUCCESS
    atom = models.TaskDetail("step\x1b]0;owned\x07", "a-1")
    atom.state, atom.intention, atom.results = states.SUCCESS, states.EXECUTE, "ok\u202edone"
    detail.add(atom)
    book.add(detail)
    with backends.backend(connection) as backend, backend.get_connection() as conn:
        conn.upgrade()
        conn.save_logbook(book)
    listed = flowkit_cmd("flows", "list", "--connection", connection)
    shown = flowkit_cmd("flows", "show", "f-1", "--connection", connection)
    for done in (listed, shown):
        assert done.returncode == 0, done.stderr
        assert not any(c in done.stdout + done.stderr for c in "\x1b\x07\u202e"), done.stdout
    [_, row] = listed.stdout.splitlines()
    assert row.startswith("f-1   nightly\\x1b[2J\\nforged-uuid  forged  SUCCESS  SUCCESS ")
    [head, line] = shown.stdout.splitlines()
    assert head.startswith("flow 'nightly\\x1b[2J\\nforged-uuid  forged  SUCCESS' (f-1): SUCCESS")
    assert line.split() == ["step\\x1b]0;owned\\x07", "SUCCESS", "->", "'ok\\u202edone'"]
    # Error lines escape a name as the listing does: a newline in it read as a space there.
    missing = flowkit_cmd("flows", "show", "no-such", "--connection", connection)
    assert (
        missing.returncode == 2
        and "its flows: 'nightly\\x1b[2J\\nforged-uuid  forged  SUCCESS')" in missing.stderr
    )
    why = flowkit_cmd("flows", "why", "f-1", "--connection", connection)  # it has no event log
    assert why.returncode == 1
    assert why.stderr.startswith(
        "flowkit flows why: error: flow 'nightly\\x1b[2J\\nforged-uuid  forged  SUCCESS' "
    )
    typed = flowkit_cmd("flows", "show", "nightly\nforged", "--connection", connection)
    assert typed.returncode == 2
    assert typed.stderr.startswith(
        "flowkit flows show: error: no flow with uuid or name 'nightly\\nforged' in "
    )


def test_one_line_flattens_a_message_and_escapes_the_names_quoted_in_it() -> None:
    from flowkit import exceptions as exc
    from flowkit.cli._common import one_line

    err = exc.StorageFailure("flow 'a\nb  c' can't be read:\n    it's 'd\te' (see\n  'f\x1b')")
    assert one_line(err) == "flow 'a\\nb  c' can't be read: it's 'd\\te' (see 'f\\x1b')"
    assert one_line(ValueError("two\n  lines, 'unclosed\nquote")) == "two lines, 'unclosed quote"
    assert one_line(ValueError(repr("x\ny"))) == "'x\\ny'"  # repr escaped it already: unchanged


def test_flows_commands_escape_states_another_process_wrote(tmp_path: Path) -> None:
    # A state is a column of the database, as a name is: whatever the writing
    # process put there. flows list printed the flow's state and the atoms' counts
    # by state raw, and flows why the flow's and the atom's, while flows show
    # escaped them, so a newline forged a row and an escape repainted the terminal.
    import sqlite3

    database = tmp_path / "flows.db"
    connection = f"sqlite:///{database}"
    assert _run_shop(5, connection) == 0
    hostile = "SUCCESS\x1b[2J\nforged  SUCCESS"
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute("UPDATE flowdetails SET state = ?", (hostile,))
        db.execute("UPDATE atomdetails SET state = ? WHERE name = 'reserve'", (hostile,))
    listed = flowkit_cmd("flows", "list", "--connection", connection)
    why_flow = flowkit_cmd("flows", "why", "shop", "--connection", connection)
    why_atom = flowkit_cmd("flows", "why", "shop", "reserve", "--connection", connection)
    shown = "SUCCESS\\x1b[2J\\nforged  SUCCESS"
    for done in (listed, why_flow, why_atom):
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout + done.stderr, done.stdout
    [_, row] = listed.stdout.splitlines()
    assert f"  shop  {shown}  " in row and row.endswith(f", 1 {shown}"), row
    assert why_flow.stdout.splitlines()[0] == f"flow 'shop' is {shown}:"
    assert why_atom.stdout.splitlines()[0] == f"reserve is {shown}:"


def test_a_failure_s_message_cannot_repaint_the_terminal_from_the_error_line() -> None:
    # The message is whatever the code that raised wrote (a remote worker's, a
    # service's reply): its escape sequences reached the terminal from stderr.
    done = flowkit_cmd("run", "tests.cli._flows:make_refused", "--store", "why=no\x1b[2J\u202eway")
    assert done.returncode == 1
    assert not any(c in done.stdout + done.stderr for c in "\x1b\u202e"), done.stderr
    assert "atom 'refuse' failed with ValueError: no\\x1b[2J\\u202eway" in done.stderr


def test_a_reading_command_creates_no_schema_in_an_empty_postgresql_database(postgresql_db_url: str) -> None:
    # Only SQLite was opened read-only: on PostgreSQL flows list, show and why ran
    # the migrations, so a reading command pointed at the wrong (empty) database
    # made flowkit's tables there, and one at an older schema migrated it.
    import sqlalchemy as sa

    for command in (["flows", "list"], ["flows", "show", "x"], ["flows", "why", "x"]):
        done = flowkit_cmd(*command, "--connection", postgresql_db_url)
        assert done.returncode == 1, done.stderr
        assert "has no flowkit schema; create it with `flowkit db upgrade" in done.stderr, done.stderr
    engine = sa.create_engine(postgresql_db_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_a_json_report_is_all_standard_output_holds_even_when_the_tasks_print(tmp_path: Path) -> None:
    # `flowkit run --report json | jq` failed on a flow whose tasks print (the quickstart's
    # do): their lines came first on standard output, before the JSON. What the run writes
    # goes to standard error then, down to its file descriptor (a C library, a child).
    connection = f"sqlite:///{tmp_path}/flows.db"
    done = flowkit_cmd("run", "tests.cli._flows:make_chatty", "--connection", connection, "--report", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "SUCCESS"
    for line in ("one says hello", "one writes to fd 1", "two says hello", "two writes to fd 1"):
        assert line in done.stderr.splitlines(), done.stderr
    resumed = flowkit_cmd("flows", "resume", "chatty", "--connection", connection, "--json")
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["state"] == "SUCCESS", resumed.stderr
    # The text report is for a person: the tasks' lines stay where they were, before it.
    text = flowkit_cmd("run", "tests.cli._flows:make_chatty", "--report", "text")
    assert text.stdout.splitlines()[:2] == ["one says hello", "one writes to fd 1"], text.stdout


def test_a_run_whose_revert_fails_says_so_in_one_line_and_v_adds_the_traceback(tmp_path: Path) -> None:
    # The engine logs an ERROR with the revert's traceback as TaskFlow's does ("Engine
    # execution has failed, something bad must have happened ..."): `flowkit run` printed
    # those 20 lines before its own error line, where the page promises one line.
    run = ("run", "tests.cli._flows:make_revert_fails", "--store", "amount=500", "--report", "none")
    done = flowkit_cmd(*run, "--connection", f"sqlite:///{tmp_path}/a.db")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "flowkit run: error: flow 'revert-fails' ended FAILURE; atom 'charge' failed with "
        "tests.cli._flows.CardDeclined: card declined for 500; reverting 'b' failed with "
        "RuntimeError: cannot undo b"
    ], done.stderr
    verbose = flowkit_cmd("-v", *run, "--connection", f"sqlite:///{tmp_path}/b.db")
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr and "RuntimeError: cannot undo b" in verbose.stderr


def test_a_store_number_json_cannot_hold_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    # It ran, and the label read "00001 x1 nankg"; a declarative spec refuses such a number.
    db = tmp_path / "flows.db"
    done = flowkit_cmd(
        "run", "tests.cli._flows:make_labels", "--store", "postcode=1", "--store", "copies=1",
        "--store", "weight=NaN", "--connection", f"sqlite:///{db}",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        "flowkit run: error: target 'tests.cli._flows:make_labels': --store 'weight=NaN': nan is not a"
        " finite number: NaN, Infinity and numbers past the float range (1e400) have no JSON form"
    ), done.stderr
    assert not db.exists()
