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
