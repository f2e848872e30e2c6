"""Flows as data: the same flow written in a YAML file instead of in code.

A monthly invoice measures a customer's storage, looks up the price, computes
the amount, e-mails it and archives it. ``declarative_flow.yaml``, next to
this script, says which task feeds which: ``${usage.gigabytes}`` reads one
field of the ``usage`` task's result, ``"... ${amount} EUR"`` is text made
from results, ``after:`` orders two tasks that pass no data, and ``retry: 2``
gives the e-mail a second attempt (the mail server refuses the first).

The functions are plain Python, registered under the names the spec uses.
``declarative.load_flow`` checks the whole spec before anything runs: the
second half of the story loads two broken copies of the file and prints what
is wrong with them, by line, task and key.

Run it with::

    python examples/declarative_flow.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TypedDict

from flowkit import declarative, engines, exceptions

SPEC = Path(__file__).with_name("declarative_flow.yaml")


class Usage(TypedDict):
    """What the storage meter says about one customer and month."""

    contact: str
    gigabytes: int


SENT: list[str] = []


@declarative.register("measure_usage")
def measure_usage(customer: str, month: str) -> Usage:
    print(f"  [usage] {customer} stored 120 GB in {month}")
    return {"contact": f"billing@{customer}.example", "gigabytes": 120}


@declarative.register("price_per_gb")
def price_per_gb(plan: str) -> float:
    price = {"business": 0.25, "personal": 0.5}[plan]
    print(f"  [rate] plan {plan}: {price} EUR per GB")
    return price


@declarative.register("multiply")
def multiply(quantity: float, unit_price: float) -> float:
    return round(quantity * unit_price, 2)


@declarative.register("send_email")
def send_email(to: str, text: str) -> None:
    SENT.append(to)
    if len(SENT) == 1:
        print(f"  [send] mail server busy, {to} not reached")
        raise ConnectionError("mail server busy")
    print(f"  [send] to {to}: {text}")


@declarative.register("archive_invoice")
def archive_invoice(customer: str) -> str:
    print(f"  [archive] filed the invoice of {customer}")
    return f"archive/{customer}.pdf"


def run_invoice() -> None:
    """Load the spec and run the flow it describes like any other flow."""
    flow = declarative.load_flow(SPEC)
    print(f"loaded flow '{flow.name}' from {SPEC.name}: {len(flow)} tasks")
    results = engines.run(flow, store={"customer": "acme", "month": "May"})
    print(f"results by task: amount={results['amount']}, archive={results['archive']}")


def show_mistake(old: str, new: str) -> None:
    """Load a copy of the spec with ``old`` replaced by ``new`` and print the error."""
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / SPEC.name
        broken.write_text(SPEC.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
        try:
            declarative.load_flow(broken)
        except exceptions.FlowSpecError as err:
            print(f"  line {err.line}, task '{err.task}', key '{err.key}': {err.reason}")
        else:
            raise AssertionError(f"replacing {old!r} with {new!r} went unnoticed")


def main() -> None:
    run_invoice()
    print("a typo in a reference, caught before anything runs:")
    show_mistake('quantity: "${usage.gigabytes}"', 'quantity: "${usage.gigabyte}"')
    print("a constant of the wrong type, caught before anything runs:")
    show_mistake("plan: business", "plan: 2")


if __name__ == "__main__":
    main()
