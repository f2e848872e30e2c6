"""``flowkit run`` on the worker-based engine says why it waits when no worker offers its tasks."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import flowkit_cmd


def test_a_run_whose_tasks_no_worker_offers_says_so_while_it_waits(redis_url: str, tmp_path: Path) -> None:
    # With no worker for its tasks the run waited out transition_timeout without a word
    # (the engine's line saying why is INFO, shown only with -v): a newcomer who forgot
    # to start a worker saw a command that hung.
    engine = f"worker-based://?url={redis_url}&topics=nobody-{tmp_path.name}&transition_timeout=0.5"
    done = flowkit_cmd("run", "tests.cli._flows:make_blocking", "--engine", engine, "--no-progress")
    assert done.returncode == 1, done.stderr
    said = [line for line in done.stderr.splitlines() if "wait up to" in line]
    # The execute request, then the revert's (held too: the flow ends FAILURE).
    assert len(said) == 2, done.stderr
    assert "for a live worker offering their task; the first: the execute request of atom 'a'" in said[0]
    assert "the revert request of atom 'a'" in said[1]
