"""Mistakes a type checker must catch in code written against flowkit.

Type-checked with ``mypy --strict`` by tests/typing/test_user_code.py, which
expects exactly the error named in the comment that ends each wrong line (and
no other). Never run: each of these lines would fail at run time, or do the
wrong thing, and a type checker says so before.
"""

from __future__ import annotations

from typing import Any

from flowkit import engines, retry, task
from flowkit.jobs import base as jobs_base
from flowkit.listeners import logging as logging_listeners
from flowkit.patterns import graph_flow, linear_flow
from flowkit.types import failure


class Convert(task.Task):
    default_provides = "converted"

    def execute(self, amount: float, rate: float) -> float:
        return amount * rate


class Report(task.Task):
    def execute(self, converted: float) -> str:
        return f"{converted:.2f}"


def miswired() -> None:
    flow = graph_flow.Flow("pricing").add(Convert(), Report())
    # An engine is given a flow or an atom, not the flow's name.
    engines.load("pricing", store={"amount": 1.0, "rate": 2.0})  # error: arg-type
    # The store maps symbol names to values.
    engines.load(flow, store=[("amount", 1.0)])  # error: arg-type
    # Not caught: which argument a stored value feeds is known only once the flow
    # is compiled, so a type checker cannot see that "12" goes to a float
    # (doc/typed.rst, "What a type checker sees"; the store is Mapping[str, Any]).
    engines.load(flow, store={"amount": "12", "rate": 2.0})
    # A backend is a backend or its configuration dict, not a URL.
    engines.load(flow, backend="sqlite:////tmp/runs.db")  # error: arg-type
    # Calling a typed task's execute directly is checked against its annotations.
    Convert().execute(amount="12", rate=1.0)  # error: arg-type
    # Linking needs the items themselves, and a decider gets ``history`` by keyword.
    flow.link("Convert", "Report")  # error: arg-type, arg-type
    flow.link(Convert(), Report(), decider=lambda: True)  # error: arg-type

    def by_results(results: dict[str, Any]) -> bool:
        return True

    flow.link(Convert(), Report(), decider=by_results)  # error: arg-type
    linear_flow.Flow("prices").add("Convert")  # error: arg-type
    # Retries count attempts with an int.
    linear_flow.Flow("again", retry=retry.Times("3"))  # error: arg-type
    # A listener watches an engine, not the flow it runs.
    with logging_listeners.DynamicLoggingListener(flow):  # error: arg-type
        pass


def report_length() -> int:
    # A typed task's result has its declared type.
    return Report().execute(converted=1.0)  # error: return-value


def options(convert: Convert) -> None:
    # Task options engines read have types.
    convert.cache = "yes"  # error: assignment
    convert.validate_types = "on"  # error: assignment
    convert.worker_topic = 7  # error: assignment


def jobs(board: jobs_base.JobBoard, job: jobs_base.Job, fail: failure.Failure) -> None:
    # Who claims a job is a name.
    board.claim(job, 42)  # error: arg-type
    board.post("resize", details=["x"])  # error: arg-type
    fail.check(42)  # error: arg-type
