"""``flowkit cache stats|clear``, run as users run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flowkit import engines
from tests.cache import tasks

REPO = Path(__file__).resolve().parents[2]


def flowkit(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "flowkit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_stats_and_clear_a_sqlite_cache(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    engines.run(tasks.chain(3), store={"start": 0}, cache=url)
    stats = flowkit("cache", "stats", "--cache", url)
    assert (stats.returncode, stats.stdout) == (0, "entries: 3\n")
    cleared = flowkit("cache", "clear", "--cache", url)
    assert (cleared.returncode, cleared.stdout) == (0, "cleared: 3\n")
    assert flowkit("cache", "stats", "--cache", url).stdout == "entries: 0\n"


def test_a_bad_url_is_one_line_and_bad_usage() -> None:
    # Status 2, as a bad --connection URL is for the other commands (it was 1).
    done = flowkit("cache", "stats", "--cache", "nowhere://x")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "flowkit cache stats: error: cache URL 'nowhere://x': unknown scheme 'nowhere'; "
        "use memory://, dir://, sqlite://, postgresql:// or redis://"
    ]
