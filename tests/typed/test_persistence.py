"""pydantic results persist as JSON and come back as models when a flow resumes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import engines, states
from flowkit.patterns import linear_flow
from flowkit.persistence import backends
from flowkit.types.notifier import Notifier

pytest.importorskip("pydantic")

from tests.typed import models  # noqa: E402 - needs pydantic


@pytest.fixture(name="sqlite_backend")
def sqlite_backend_fixture(tmp_path: Path) -> Iterator[Any]:
    """A SQLite persistence backend with its schema made, closed after the test."""
    backend = backends.fetch({"connection": f"sqlite:///{tmp_path / 'flows.db'}"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    try:
        yield backend
    finally:
        backend.close()


def flow() -> linear_flow.Flow:
    """A model made from the store, then used: what the resumed run must read as a model."""
    return linear_flow.Flow("f").add(models.MakePrice("make"), models.UsePrice("use"))


def test_a_model_result_is_stored_on_sqlite_and_is_a_model_again_after_resume(sqlite_backend: Any) -> None:
    backend = sqlite_backend
    engine = engines.load(flow(), store={"raw": models.Price(amount=2, currency="EUR")}, backend=backend)

    def stop(state: str, details: dict[str, Any]) -> None:
        if details["task_name"] == "make" and state == states.SUCCESS:
            engine.suspend()

    engine.atom_notifier.register(Notifier.ANY, stop)
    engine.run()
    assert engine.storage.get_atom_state("use") == states.PENDING
    with contextlib.closing(backend.get_connection()) as conn:
        detail = conn.get_flow_details(engine.storage.flow_uuid)
    stored = {atom.name: atom.results for atom in detail}
    assert stored["make"] == {"amount": 2.0, "currency": "EUR"}  # JSON in the database

    resumed = engines.load(flow(), flow_detail=detail, backend=backend)
    resumed.run()
    assert resumed.storage.fetch("seen") == "Price 2.0 EUR"


def test_a_model_result_survives_sigkill_and_is_a_model_in_the_resuming_process(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.typed import _crash_child

    repo = Path(__file__).resolve().parents[2]
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    env = {**os.environ, "FLOWKIT_TEST_KILL": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    child = subprocess.run(
        [sys.executable, "-m", "tests.typed._crash_child", url],
        cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr

    backend = backends.fetch({"connection": url})
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            (book,) = conn.get_logbooks()
            (detail,) = list(book)
        stored = {atom.name: (atom.state, atom.results) for atom in detail}
        assert stored["make"] == (states.SUCCESS, {"amount": 2.0, "currency": "EUR"})
        assert stored["kill"][0] == states.RUNNING  # in doubt: it runs again

        resumed = engines.load(_crash_child.priced_flow(), flow_detail=detail, backend=backend)
        resumed.run()
        assert resumed.storage.fetch("price") == models.Price(amount=2.0, currency="EUR")
        assert resumed.storage.fetch("checked") == "Price"  # the stored JSON came back a model
        assert resumed.storage.fetch("seen") == "Price 2.0 EUR"
    finally:
        backend.close()


def test_the_report_of_a_resumed_run_shows_a_model_result_as_fetch_returns_it(sqlite_backend: Any) -> None:
    from flowkit.report import ExecutionReport, summarize

    backend = sqlite_backend
    engine = engines.load(flow(), store={"raw": models.Price(amount=2, currency="EUR")}, backend=backend)
    engine.atom_notifier.register(
        Notifier.ANY,
        lambda state, details: engine.suspend() if details["task_name"] == "make" else None,
    )
    engine.run()
    with contextlib.closing(backend.get_connection()) as conn:
        detail = conn.get_flow_details(engine.storage.flow_uuid)
    resumed = engines.load(flow(), flow_detail=detail, backend=backend)
    resumed.run()
    price = resumed.storage.fetch("price")
    assert isinstance(price, models.Price)
    # The engine's own flow detail says what storage.fetch says: the model, not its JSON.
    (make,) = [atom for atom in resumed.storage.flow_detail if atom.name == "make"]
    assert make.results == price and isinstance(make.results, models.Price)
    report = ExecutionReport.from_engine(resumed)
    (line,) = [line for line in report.to_text().splitlines() if line.strip().startswith("make")]
    assert line.endswith(f"-> {summarize(price)}"), line
    (atom,) = [atom for atom in report.to_dict()["atoms"] if atom["name"] == "make"]
    assert atom["result"] == "Price(amount=2.0, currency='EUR')"


def test_flows_show_and_the_monitor_name_a_stored_model_result_as_the_engine_report_does(
    sqlite_backend: Any, tmp_path: Path
) -> None:
    import warnings

    from flowkit.monitor import create_app
    from flowkit.report import ExecutionReport
    from tests.cli.conftest import flowkit_cmd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's test client prefers another HTTP client
        from starlette.testclient import TestClient

    url = f"sqlite:///{tmp_path / 'flows.db'}"
    price = models.Price(amount=2, currency="EUR")
    engine = engines.load(flow(), store={"raw": price}, backend=sqlite_backend)
    engine.run()
    shown = "Price(amount=2.0, currency='EUR')"
    (in_hand,) = [atom for atom in ExecutionReport.from_engine(engine).atoms if atom.name == "make"]
    assert in_hand.result == shown
    # Read from the store alone, with no flow code: they showed {'amount': 2.0, 'currency': 'EUR'}.
    text = flowkit_cmd("flows", "show", engine.storage.flow_uuid, "--connection", url)
    assert text.returncode == 0, text.stderr
    (line,) = [line for line in text.stdout.splitlines() if line.strip().startswith("make")]
    assert line.endswith(f"-> {shown}"), line
    as_json = flowkit_cmd("flows", "show", engine.storage.flow_uuid, "--connection", url, "--json")
    assert as_json.returncode == 0, as_json.stderr
    atoms = {atom["name"]: atom for atom in json.loads(as_json.stdout)["atoms"]}
    assert atoms["make"]["result"] == shown
    assert atoms["use"]["result"] == "'Price 2.0 EUR'"  # a plain result reads as before
    with TestClient(create_app(url)) as client:
        report = client.get(f"/api/flows/{engine.storage.flow_uuid}").json()
    assert {atom["name"]: atom["result"] for atom in report["atoms"]}["make"] == shown


def test_a_model_reads_the_same_in_hand_and_from_its_stored_json() -> None:
    import pydantic

    from flowkit.persistence._json import encode_json, model_name
    from flowkit.report import summarize

    class Wide(pydantic.BaseModel):
        a: int = 1
        b: int = 2
        c: int = 3
        d: int = 4
        e: int = 5
        f: int = 6

    class Order(pydantic.BaseModel):
        price: models.Price
        lines: list[int]

    Codes = pydantic.RootModel[list[int]]
    cases = {
        "Order(price={'amount': 2.0, 'currency': 'EUR'}, lines=[1, 2])": Order(
            price=models.Price(amount=2, currency="EUR"), lines=[1, 2]
        ),
        "Wide(a=1, b=2, c=3, d=4, e=5, ...)": Wide(),
        "RootModel[list[int]](root=[7])": Codes([7]),
    }
    for shown, model in cases.items():
        stored = json.loads(encode_json(model))
        assert summarize(model) == shown
        assert summarize(stored, model_name(model)) == shown
    assert model_name({"a": 1}) is None and model_name(models.Price) is None  # a class is no model


def test_models_and_enums_in_a_result_that_is_no_mapping_come_back_after_resume(sqlite_backend: Any) -> None:
    # A resumed run made a stored result into its declared model only when it
    # was a JSON object: an enum alone, a list of them, a list of models and a
    # tuple holding one came back as their JSON (doc/typed.rst says members and
    # models come back, alone or inside a container).
    backend = sqlite_backend
    names = ("level", "levels", "prices", "pair")

    def grades_flow() -> linear_flow.Flow:
        return linear_flow.Flow("f").add(models.Grades("grades", provides=names), models.UsePrice("use"))

    store = {"price": {"amount": 3, "currency": "EUR"}}
    engine = engines.load(grades_flow(), store=store, backend=backend)

    def stop(state: str, details: dict[str, Any]) -> None:
        if details["task_name"] == "grades" and state == states.SUCCESS:
            engine.suspend()

    engine.atom_notifier.register(Notifier.ANY, stop)
    engine.run()
    first = {name: engine.storage.fetch(name) for name in names}
    with contextlib.closing(backend.get_connection()) as conn:
        detail = conn.get_flow_details(engine.storage.flow_uuid)
    resumed = engines.load(grades_flow(), flow_detail=detail, backend=backend)
    resumed.run()
    again = {name: resumed.storage.fetch(name) for name in names}
    assert again == first
    assert type(again["level"]) is models.Level
    assert [type(level) for level in again["levels"]] == [models.Level]
    assert [type(price) for price in again["prices"]] == [models.Price]
    assert type(again["pair"]) is tuple and type(again["pair"][0]) is models.Price
