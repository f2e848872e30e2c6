"""Reverting: which tasks are undone, in what order, and what they are told.

Moving a customer to a new plan takes four steps. The third one fails, so:

* the fourth step never runs and is never reverted;
* the steps that ran are reverted newest first: the failed step itself, then
  the second, then the first;
* each ``revert()`` receives the same arguments as ``execute()``, plus
  ``result`` (what its own ``execute()`` returned, or a ``Failure`` if it
  raised) and ``flow_failures`` (every failure in the flow, by atom name);
* ``engine.run()`` finally raises the original exception.
"""

from __future__ import annotations

from typing import Any

from flowkit import engines, task
from flowkit.patterns import linear_flow
from flowkit.types import failure

REVERTED: list[str] = []


class QuotaExceeded(Exception):
    """The new plan's quota is smaller than what the customer uses."""


class Step(task.Task):
    """A step that returns a receipt and describes its revert call."""

    def execute(self, customer: str) -> str:
        print(f"  execute {self.name}")
        return f"{self.name}-receipt-for-{customer}"

    def revert(self, customer: str, result: Any, flow_failures: dict[str, Any], **kwargs: Any) -> None:
        REVERTED.append(self.name)
        if isinstance(result, failure.Failure):
            what = f"its own failure ({result.exception_str})"
        else:
            what = f"its result {result!r}"
        print(f"  revert  {self.name}: got {what}")
        for atom_name, flow_failure in sorted(flow_failures.items()):
            kind = "QuotaExceeded" if flow_failure.check(QuotaExceeded) else "another error"
            print(f"          flow_failures[{atom_name!r}] is {kind}")


class ApplyQuota(Step):
    """The step that fails."""

    def execute(self, customer: str) -> str:
        print(f"  execute {self.name} (fails)")
        raise QuotaExceeded(f"{customer} uses 12 GB, the new plan allows 10 GB")


def build_flow() -> linear_flow.Flow:
    """Return the four steps; the third one raises."""
    return linear_flow.Flow("change-plan").add(
        Step("freeze_account"),
        Step("migrate_data"),
        ApplyQuota("apply_quota"),
        Step("send_invoice"),
    )


def main() -> None:
    """Run the flow and show the revert order and arguments."""
    engine = engines.load(build_flow(), store={"customer": "acme"})
    try:
        engine.run()
    except QuotaExceeded as exc:
        print(f"run() raised QuotaExceeded: {exc}")
    print(f"revert order: {' -> '.join(REVERTED)}")
    print(f"send_invoice state: {engine.storage.get_atom_state('send_invoice')}")


if __name__ == "__main__":
    main()
