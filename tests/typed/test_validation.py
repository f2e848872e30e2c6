"""Run-time validation of results: a bad result fails its atom and the flow reverts."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, exceptions, task
from flowkit.patterns import linear_flow

REVERTED: list[str] = []


class First(task.Task):
    default_provides = "first"

    def execute(self) -> int:
        return 1

    def revert(self, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        REVERTED.append(self.name)


class Liar(task.Task):
    default_provides = "number"

    def execute(self, give: Any) -> int:
        return give  # type: ignore[no-any-return]  # the test decides what comes back


def test_a_result_of_the_wrong_type_fails_its_atom_and_the_flow_reverts() -> None:
    REVERTED.clear()
    flow = linear_flow.Flow("f").add(First("first"), Liar("liar"))
    engine = engines.load(flow, store={"give": "not a number"}, validate_types=True)
    with pytest.raises(exceptions.InvalidResult) as err:
        engine.run()
    assert err.value.atom == "liar"
    assert "atom 'liar' returned a result that is not int" in str(err.value)
    assert REVERTED == ["first"]


def test_validation_is_off_by_default_for_plain_types() -> None:
    assert engines.run(Liar("liar"), store={"give": "text"})["number"] == "text"


def test_a_task_can_opt_out_of_validation() -> None:
    liar = Liar("liar")
    liar.validate_types = False  # type: ignore[attr-defined]
    assert engines.run(liar, store={"give": "text"}, validate_types=True)["number"] == "text"


def test_pydantic_results_are_validated_by_default_and_mappings_become_models() -> None:
    pytest.importorskip("pydantic")
    from tests.typed import models

    flow = linear_flow.Flow("f").add(models.MakePrice("make"), models.UsePrice("use"))
    results = engines.run(flow, store={"raw": {"amount": "2.5", "currency": "EUR"}})
    assert results["seen"] == "Price 2.5 EUR"
    assert isinstance(results["price"], models.Price)
    with pytest.raises(exceptions.InvalidResult, match="amount"):
        engines.run(flow, store={"raw": {"amount": "lots", "currency": "EUR"}})
