"""TaskFlow 6.5 as an oracle for the arguments jobboard calls take, on a real Redis server.

TaskFlow's Redis board polls in ``wait()``, and its callers may tune the
polling (``initial_delay``, ``max_delay``) or pass their own ``sleep_func``
(an eventlet or test sleep). Each case makes the same call on both libraries.
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any

import pytest

from tests.compat.test_taskflow_wording_oracle import redis_board

LIBRARIES = ("taskflow", "flowkit")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.parametrize("root", LIBRARIES)
def test_redis_wait_sleeps_with_the_given_sleep_func_until_a_job_arrives(root: str, redis_url: str) -> None:
    # flowkit's wait() took only timeout=: TaskFlow code passing the others got TypeError.
    with redis_board(root, redis_url, f"wait-{uuid.uuid4().hex}") as board:
        naps: list[float] = []

        def nap(seconds: float) -> None:
            naps.append(seconds)
            if len(naps) == 3:
                board.post("arrived")  # the job appears while wait() sleeps

        jobs = board.wait(timeout=30, initial_delay=0.001, max_delay=0.002, sleep_func=nap)
        assert [job.name for job in jobs] == ["arrived"]
        assert len(naps) == 3
        assert all(0 < nap <= 0.002 for nap in naps)


@pytest.mark.parametrize("root", LIBRARIES)
def test_redis_wait_gives_up_after_timeout_with_not_found(root: str, redis_url: str) -> None:
    exceptions = importlib.import_module(f"{root}.exceptions")
    with (
        redis_board(root, redis_url, f"wait-{uuid.uuid4().hex}") as board,
        pytest.raises(exceptions.NotFound),
    ):
        board.wait(timeout=0.05, initial_delay=0.001, max_delay=0.01)


def test_redis_wait_refuses_an_initial_delay_over_the_max_delay_as_taskflow(redis_url: str) -> None:
    errors: list[Any] = []
    for root in LIBRARIES:
        with redis_board(root, redis_url, f"wait-{uuid.uuid4().hex}") as board:
            with pytest.raises(ValueError, match="0.5") as caught:
                board.wait(timeout=1, initial_delay=0.5, max_delay=0.1)
            errors.append(type(caught.value))
    assert errors[0] is errors[1] is ValueError
