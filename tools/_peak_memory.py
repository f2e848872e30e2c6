"""This process's peak resident memory, for the benchmarks that report one.

Read from ``VmHWM`` in ``/proc/self/status`` (Linux), not from
``getrusage(RUSAGE_SELF).ru_maxrss``: the kernel keeps ``ru_maxrss`` across
``exec``, so a child started by a parent that had grown (a benchmark driver that
ran a big flow, a test runner) would report the parent's peak as its own. The
module imports nothing, so importing it does not move the figure it reads.
"""

from __future__ import annotations

__all__ = ["peak_rss_kb"]


def peak_rss_kb() -> int:
    """Peak resident set size of this process so far, in KiB (``VmHWM``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])  # "VmHWM:     12345 kB"
    raise RuntimeError("/proc/self/status has no VmHWM line (this benchmark needs Linux)")
