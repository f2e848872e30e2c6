"""Retries: let a subflow recover from transient failures.

Two stories about an unreliable network:

1. ``Times``: sending a report to a server that times out twice before it
   answers. The subflow is reverted after each failure and run again, up to
   three attempts in all; the third attempt succeeds.
2. ``ForEach``: downloading a package from a list of mirrors, the first two
   of which are down. The retry hands each attempt the next mirror to try
   (it *provides* ``mirror``) until one works.

The failures are counted, not timed, so the output is the same on every run.
"""

from __future__ import annotations

from typing import Any

from flowkit import engines, retry, task
from flowkit.patterns import linear_flow


class Timeout(Exception):
    """The server did not answer in time."""


class MirrorDown(Exception):
    """The mirror refused the connection."""


class PrepareReport(task.Task):
    """Write the report to a scratch file; reverting deletes the file."""

    default_provides = "report"

    def execute(self) -> str:
        print(f"  [{self.name}] wrote report.txt")
        return "report.txt"

    def revert(self, result: Any, **kwargs: Any) -> None:
        print(f"  [{self.name}] deleted {result}")


class SendReport(task.Task):
    """Send the report; the first ``failures`` calls time out."""

    def __init__(self, name: str, failures: int) -> None:
        super().__init__(name)
        self.failures_left = failures

    def execute(self, report: str, attempt: int) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            print(f"  [{self.name}] attempt {attempt}: server timed out")
            raise Timeout(f"no answer while sending {report}")
        print(f"  [{self.name}] attempt {attempt}: server accepted {report}")


class Download(task.Task):
    """Fetch the package from the mirror the retry chose for this attempt."""

    default_provides = "downloaded_from"
    DOWN = frozenset({"mirror-a.example", "mirror-b.example"})

    def execute(self, mirror: str) -> str:
        if mirror in self.DOWN:
            print(f"  [{self.name}] {mirror}: connection refused")
            raise MirrorDown(mirror)
        print(f"  [{self.name}] {mirror}: got package.tar.gz")
        return mirror


def retry_a_few_times() -> None:
    """Run a subflow under ``Times(3)`` against a server that fails twice."""
    flow = linear_flow.Flow("send-report", retry=retry.Times(3, "try_three_times", provides="attempt")).add(
        PrepareReport("prepare_report"), SendReport("send_report", failures=2)
    )
    engine = engines.load(flow)
    engine.run()
    print(f"report sent; attempts used: {engine.storage.fetch('attempt')}")


def retry_with_each_mirror() -> None:
    """Run a download under ``ForEach`` so each attempt uses another mirror."""
    mirrors = ["mirror-a.example", "mirror-b.example", "mirror-c.example"]
    flow = linear_flow.Flow("download", retry=retry.ForEach(mirrors, "pick_mirror", provides="mirror")).add(
        Download("download")
    )
    engine = engines.load(flow)
    engine.run()
    print(f"package downloaded from {engine.storage.fetch('downloaded_from')}")


def main() -> None:
    """Show both retry strategies recovering."""
    print("Times: retry the whole subflow up to 3 times")
    retry_a_few_times()
    print("ForEach: try each mirror in turn")
    retry_with_each_mirror()


if __name__ == "__main__":
    main()
