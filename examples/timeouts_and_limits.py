"""Time limits and concurrency limits: a nightly export that must not hang.

Six reports are queried from a database that accepts only two connections,
then uploaded to a partner whose server, tonight, never answers.

* Each query carries ``concurrency_key = "reports-db"`` and the engine gets
  ``concurrency_limits={"reports-db": 2}``: six threads are free, yet never
  more than two queries run at once. A barrier that only opens for two
  queries at a time proves they do run two by two, without timing anything.
* The upload has ``timeout = 0.2``: the engine stops waiting after 0.2 s,
  the upload fails with ``TaskTimeout`` and the flow reverts. The upload's
  ``revert`` is told why, and removes whatever part of the upload arrived;
  the queries' temporary files are removed.
* Python cannot stop a thread, so the hung call is abandoned, not killed:
  when the partner finally answers, flowkit logs the late outcome and
  ignores it.

The only real wait is the upload's 0.2 s. Run it with::

    python examples/timeouts_and_limits.py
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flowkit import engines, exceptions, task
from flowkit.patterns import linear_flow, unordered_flow
from flowkit.types import failure

DB_CONNECTIONS = 2
REPORTS = ["sales", "refunds", "stock", "returns", "visits", "signups"]


class Database:
    """Counts the connections in use, and remembers the most at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_use = 0
        self.peak = 0
        # Opens only when two queries wait at it: one at a time would hang here.
        self.two_at_once = threading.Barrier(2, timeout=10)

    def query(self, report: str) -> None:
        with self.lock:
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
        self.two_at_once.wait()
        with self.lock:
            self.in_use -= 1


DB = Database()
REMOVED: list[str] = []
PARTNER_ANSWERS = threading.Event()  # set only after the run, long past the deadline


class QueryReport(task.Task):
    """Write one report to a temporary CSV file; reverting removes the file."""

    concurrency_key = "reports-db"

    def execute(self) -> str:
        DB.query(self.name)
        return f"{self.name}.csv"

    def revert(self, result: Any, **kwargs: Any) -> None:
        REMOVED.append(result)


class Upload(task.Task):
    """Send the reports to the partner, who does not answer tonight."""

    timeout = 0.2  # seconds

    def execute(self, **reports: str) -> str:
        print(f"  [{self.name}] sending {len(reports)} files to the partner...")
        PARTNER_ANSWERS.wait(10)
        return "accepted"

    def revert(self, result: Any, **kwargs: Any) -> None:
        if isinstance(result, failure.Failure):
            print(f"  [{self.name}] revert told: {result.exception_str}")
        print(f"  [{self.name}] removed the files that reached the partner, if any")


class LateOutcome(logging.Handler):
    """Notices the warning flowkit logs when the abandoned upload finally returns."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.logged = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "'upload'" in message and "past its timeout" in message:
            self.logged.set()


def build_flow() -> linear_flow.Flow:
    queries = unordered_flow.Flow("queries").add(
        *[QueryReport(report, provides=report) for report in REPORTS]
    )
    upload = Upload("upload", requires=REPORTS)
    return linear_flow.Flow("nightly-export").add(queries, upload)


def main() -> None:
    late = LateOutcome()
    logging.getLogger("flowkit.engines.timeouts").addHandler(late)

    engine = engines.load(
        build_flow(),
        engine="parallel",
        max_workers=len(REPORTS),
        concurrency_limits={"reports-db": DB_CONNECTIONS},
    )
    print(
        f"exporting {len(REPORTS)} reports on {len(REPORTS)} threads, {DB_CONNECTIONS} database connections"
    )
    try:
        engine.run()
    except exceptions.TaskTimeout as err:
        print(f"run() raised TaskTimeout: '{err.atom}' ran past {err.timeout} s")
    print(f"queries at once: at most {DB.peak}")
    print(f"temporary files removed: {', '.join(sorted(REMOVED))}")
    print(f"final flow state: {engine.storage.get_flow_state()}")

    PARTNER_ANSWERS.set()  # the partner answers at last, to a call nobody waits for
    if late.logged.wait(10):
        print("the abandoned upload returned late: flowkit logged a warning and ignored its result")


if __name__ == "__main__":
    main()
