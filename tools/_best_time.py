"""The best wall time of a few runs, for the in-process benchmarks.

The minimum, not the mean: on a shared machine every disturbance only adds time,
so the fastest run is the one closest to what the code itself costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["best"]


def best(fn: Callable[[], Any], repeat: int) -> float:
    """Seconds taken by the fastest of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)
