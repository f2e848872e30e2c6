#!/usr/bin/env python3
"""What building a cache key costs, per input shape (see flowkit/cache/_keys.py).

Usage (the checkout's ``flowkit`` is put first on the path)::

    python tools/bench_cache_keys.py                     # median of 15 samples per case
    python tools/bench_cache_keys.py --repeat 31 --json out.json
    python tools/bench_cache_keys.py --checkout /tmp/old  # another checkout's flowkit
    python tools/bench_cache_keys.py --memory             # tracemalloc peak per case too

Times ``call_key(identity, {"x": value})`` (what a cacheable atom's guard pays
before each call, plus writing its small identity) for: two int arguments, a
small dict, a list of 100,000 ints, a list of 10,000 tuples, a dict of 1,000
str keys to lists, and a nested structure holding sets and frozensets. A
sample times enough calls to last about a millisecond and gives the time per
call; the median of the samples is printed, since the machines this runs on
are shared and a disturbance moves the mean and the minimum alike. Times are
the process's CPU time (the work is in process and single-threaded), which
other work on a busy machine moves much less than wall-clock time.

``call_key`` is the entry point every flowkit version has, so two checkouts can
be compared by running this file with ``--checkout`` for each, alternately.
``--memory`` adds the peak of memory allocated while one key is built
(tracemalloc, measured apart from the times, which it would slow down).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

_IDENTITY = {"task": "tools.bench_cache_keys.Task", "version": [1, 0]}


def cases() -> dict[str, dict[str, Any]]:
    """Input shapes by name: each the inputs of one call."""
    return {
        "two ints": {"a": 1, "b": 2},
        "small dict": {"x": {"name": "render", "count": 3, "ratio": 0.5, "tags": ["a", "b"], "on": True}},
        "100k-int list": {"x": list(range(100_000))},
        "10k-tuple list": {"x": [(i, f"s{i}") for i in range(10_000)]},
        "1k-key dict of lists": {"x": {f"key{i}": list(range(i % 20)) for i in range(1_000)}},
        "nested with sets": {
            "x": {
                "groups": [
                    {"id": i, "members": set(range(i, i + 20)), "labels": frozenset({f"l{i % 7}", "all"})}
                    for i in range(200)
                ],
                "owners": {"alice", "bob", "carol"},
            }
        },
    }


def _per_call(fn: Callable[[], Any], loops: int) -> float:
    started = time.process_time()
    for _ in range(loops):
        fn()
    return (time.process_time() - started) / loops


def measure(repeat: int, memory: bool) -> dict[str, dict[str, float]]:
    from flowkit.cache._keys import call_key

    results: dict[str, dict[str, float]] = {}
    for name, inputs in cases().items():

        def build(inputs: dict[str, Any] = inputs) -> str:
            return call_key(_IDENTITY, inputs)

        build()  # warm up (imports, caches)
        once = _per_call(build, 1)
        loops = max(1, int(0.001 / max(once, 1e-9)))
        gc.collect()
        samples = [_per_call(build, loops) for _ in range(repeat)]
        row = {"median_ms": statistics.median(samples) * 1000, "min_ms": min(samples) * 1000}
        if memory:
            gc.collect()
            tracemalloc.start()
            build()
            row["peak_kib"] = tracemalloc.get_traced_memory()[1] / 1024
            tracemalloc.stop()
        results[name] = row
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=15, help="samples per case (default 15)")
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--memory", action="store_true", help="also the tracemalloc peak of one key")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.checkout.resolve()))
    results = measure(args.repeat, args.memory)
    for name, row in results.items():
        line = f"{name:24} median {row['median_ms']:9.4f} ms   min {row['min_ms']:9.4f} ms"
        if "peak_kib" in row:
            line += f"   peak {row['peak_kib']:9.1f} KiB"
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
