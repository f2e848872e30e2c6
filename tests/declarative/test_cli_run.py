"""``flowkit run pricing.yaml``: a spec file as the TARGET of the run command."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import flowkit_cmd
from tests.declarative.test_load import PRICING


def test_flowkit_run_takes_a_spec_file(tmp_path: Path) -> None:
    spec = tmp_path / "pricing.yaml"
    spec.write_text(PRICING)
    done = flowkit_cmd("run", str(spec), "--connection", f"sqlite:///{tmp_path}/flows.db")
    assert done.returncode == 0, done.stderr
    assert "flow 'pricing'" in done.stdout and "SUCCESS" in done.stdout


def test_a_bad_spec_is_bad_usage_naming_file_task_and_key(tmp_path: Path) -> None:
    spec = tmp_path / "pricing.yaml"
    spec.write_text(PRICING.replace("${fx}", "${fxx}"))
    done = flowkit_cmd("run", str(spec))
    assert done.returncode == 2
    assert f"{spec}, line 5, task 'price', key 'inputs.rate'" in done.stderr


def test_a_spec_file_finds_its_tasks_in_the_current_directory(tmp_path: Path) -> None:
    # `flowkit run` is a console script: sys.path starts with the script's own
    # directory, so the spec's myapp_tasks:... imported only when PYTHONPATH
    # happened to name the directory, unlike a module:callable target.
    (tmp_path / "myapp_tasks.py").write_text("def double(x: int) -> int:\n    return 2 * x\n")
    (tmp_path / "double.yaml").write_text(
        "name: double\ntasks:\n  d: {task: myapp_tasks:double, inputs: {x: 21}}\n"
    )
    db = f"sqlite:///{tmp_path}/flows.db"
    for args in (
        ["run", "double.yaml", "--connection", db],
        ["flows", "resume", "double", "--connection", db],
    ):
        done = flowkit_cmd(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "SUCCESS" in done.stdout
    drawn = flowkit_cmd("graph", "double.yaml", cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr


def test_flowkit_run_reads_the_spec_file_once(tmp_path: Path) -> None:
    # The task's module rewrites the spec when it is imported, that is while
    # the spec is first built: a second read would find another flow (named
    # 'second', with an engine the spec never asked for at the first read).
    spec = tmp_path / "once.yaml"
    (tmp_path / "rewriter_tasks.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(spec)!r}).write_text(Path({str(spec)!r}).read_text().replace('first', 'second'))\n"
        "def double(x: int) -> int:\n    return 2 * x\n"
    )
    spec.write_text("name: first\ntasks:\n  d: {task: rewriter_tasks:double, inputs: {x: 21}}\n")
    done = flowkit_cmd(
        "run", spec.name, "--no-progress", "--connection", f"sqlite:///{tmp_path}/flows.db", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "flow 'first'" in done.stdout, done.stdout
    assert "second" in spec.read_text()  # the module was imported: the file did change


def test_a_parameter_not_given_is_bad_usage_naming_the_spec_before_any_record(tmp_path: Path) -> None:
    # It failed at run time naming no file, and left a PENDING run in the database.
    spec = tmp_path / "param.yaml"
    spec.write_text(
        "parameters: [start, unused]\n"
        "tasks:\n  a: {task: tests.declarative.tasks:Step, inputs: {x: '${start}'}}\n"
    )
    url = f"sqlite:///{tmp_path}/flows.db"
    done = flowkit_cmd("run", str(spec), "--connection", url)
    assert done.returncode == 2
    assert (
        f"target '{spec}': {spec}, line 1, key 'parameters': parameter(s) ['start'] not given" in done.stderr
    )
    assert "--store" in done.stderr
    # Refused before the database was opened: nothing recorded, not even the file.
    assert not (tmp_path / "flows.db").exists()
    given = flowkit_cmd("run", str(spec), "--connection", url, "--store", "start=4")
    assert given.returncode == 0, given.stderr


def test_a_misspelled_parameter_names_the_store_key_no_parameter_reads(tmp_path: Path) -> None:
    # A Python target names the --store keys the flow does not read (where a typo shows);
    # a spec said only "parameter(s) ['start'] not given", the misspelled 'strat' unsaid.
    spec = tmp_path / "param.yaml"
    spec.write_text(
        "parameters: [start]\ntasks:\n  a: {task: tests.declarative.tasks:Step, inputs: {x: '${start}'}}\n"
    )
    done = flowkit_cmd("run", str(spec), "--store", "strat=4")
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "parameter(s) ['start'] not given: give them with --store NAME=VALUE"
        " (--store gave ['strat'], which no task of the spec reads)"
    ), done.stderr


def test_a_yaml_spec_without_pyyaml_fails_with_status_1_naming_the_extra(tmp_path: Path) -> None:
    # It left with status 2, "bad usage", for what the install lacks (the monitor's
    # missing extra is status 1).
    import subprocess
    import sys

    from tests.cli.conftest import command_env

    spec = tmp_path / "pricing.yaml"
    spec.write_text(PRICING)
    without_yaml = (
        "import sys; sys.modules['yaml'] = None; from flowkit.cli import main; raise SystemExit(main())"
    )
    for command in ("run", "graph"):
        done = subprocess.run(
            [sys.executable, "-c", without_yaml, command, str(spec)],
            capture_output=True, text=True, env=command_env(), cwd=tmp_path, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 1, (command, done.stderr)
        assert done.stderr.strip() == (
            f"flowkit {command}: error: target '{spec}': {spec}: reading a YAML spec needs PyYAML: "
            "pip install 'flowkit[declarative]' (or use a .json file or a dict)"
        ), done.stderr
