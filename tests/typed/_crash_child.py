"""Child process of the typed crash test: runs the priced flow on a database until a task kills it.

Usage: ``python -m tests.typed._crash_child URL`` (prints nothing: it dies of SIGKILL).
"""

from __future__ import annotations

import contextlib
import sys

from flowkit import engines
from flowkit.patterns import linear_flow
from flowkit.persistence import backends
from tests.typed import models


def priced_flow() -> linear_flow.Flow:
    return linear_flow.Flow("priced").add(
        models.MakePrice("make"), models.KillIfAsked("kill"), models.UsePrice("use")
    )


def main(url: str) -> None:
    backend = backends.fetch({"connection": url})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    engine = engines.load(
        priced_flow(), store={"raw": models.Price(amount=2, currency="EUR")}, backend=backend
    )
    engine.run()


if __name__ == "__main__":
    main(sys.argv[1])
