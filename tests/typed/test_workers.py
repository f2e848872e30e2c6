"""Typed tasks on the worker-based engine: models cross the wire as JSON and are models on both ends.

A real Redis and a real Python :class:`~flowkit.engines.worker_based.worker.Worker`
(in a thread of the test) serving the tasks of :mod:`tests.typed.models`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowkit import declarative, engines
from flowkit import exceptions as exc
from flowkit.engines.worker_based import protocol
from flowkit.patterns import linear_flow

pytest.importorskip("pydantic")
redis = pytest.importorskip("redis")

from tests.typed import models  # noqa: E402 - needs pydantic

pytestmark = pytest.mark.timeout(60)

MODELS = "tests.typed.models"


@pytest.fixture
def start_worker(redis_flushed_url: str) -> Iterator[Callable[..., Any]]:
    from flowkit.engines.worker_based.worker import Worker

    started: list[Worker] = []

    def start(topic: str, tasks: str = MODELS) -> Worker:
        worker = Worker(
            topic=topic,
            tasks=[tasks],
            url=redis_flushed_url,
            heartbeat=0.2,
            visibility_timeout=2.0,
            grace=1.0,
        )
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(grace=0.5)
        assert worker.join(10)


@pytest.fixture
def redis_client(redis_flushed_url: str) -> Iterator[Any]:
    client = redis.Redis.from_url(redis_flushed_url)
    try:
        yield client
    finally:
        client.close()


def topic() -> str:
    return f"typed-{uuid.uuid4().hex[:8]}"


def load(flow: Any, url: str, topics: list[str], **options: Any) -> Any:
    # The library's default, as TaskFlow: no check before the run, a request waits
    # (up to transition_timeout) for a worker offering its task.
    options.setdefault("transition_timeout", 10.0)
    return engines.load(flow, engine="worker-based", url=url, topics=topics, **options)


def requests_added(client: Any, topic_: str) -> int:
    """How many requests were ever added to ``topic_``'s stream (0 if it never existed)."""
    key = protocol.requests_key(protocol.DEFAULT_NAMESPACE, topic_)
    if not client.exists(key):
        return 0
    return int(client.xinfo_stream(key)["entries-added"])


def test_a_model_goes_to_a_python_worker_and_comes_back_a_model(
    start_worker: Any, redis_flushed_url: str
) -> None:
    here = topic()
    start_worker(here)
    flow = linear_flow.Flow("typed").add(models.MakePrice("make"), models.UsePrice("use"))
    engine = load(flow, redis_flushed_url, [here], store={"raw": models.Price(amount=2, currency="EUR")})

    engine.run()

    # MakePrice returned the JSON object it was sent; the engine validated it into the model.
    assert engine.storage.fetch("price") == models.Price(amount=2.0, currency="EUR")
    # UsePrice, on the worker, was called with a Price, not a dict.
    assert engine.storage.fetch("seen") == "Price 2.0 EUR"


def test_models_given_to_a_workers_task_through_its_kwargs_are_models_there(
    start_worker: Any, redis_flushed_url: str
) -> None:
    # ``execute(self, **prices: Price)``: each value crosses the wire as a JSON
    # object, and the worker makes it into the model as it does a named argument's.
    here = topic()
    start_worker(here)
    atom = models.PriceKinds("kinds", requires=["a", "b"])
    store = {"a": {"amount": 1, "currency": "EUR"}, "b": models.Price(amount=2, currency="USD")}
    engine = load(atom, redis_flushed_url, [here], store=store)

    engine.run()

    assert engine.storage.fetch("kinds") == {"a": "Price", "b": "Price"}


def test_a_result_that_is_not_its_model_fails_and_reverts(start_worker: Any, redis_flushed_url: str) -> None:
    here = topic()
    start_worker(here)
    flow = linear_flow.Flow("typed").add(models.MakePrice("make"), models.UsePrice("use"))
    engine = load(flow, redis_flushed_url, [here], store={"raw": {"amount": "lots"}})

    with pytest.raises(exc.InvalidResult, match="atom 'make'"):
        engine.run()
    assert engine.storage.get_atom_state("make") == "REVERTED"


def test_a_spec_task_with_a_topic_goes_to_that_topic_only(
    start_worker: Any, redis_flushed_url: str, redis_client: Any
) -> None:
    default, pinned = topic(), topic()
    start_worker(default)  # offers both tasks
    start_worker(pinned, f"{MODELS}:MakePrice")
    flow = declarative.load_flow(
        {
            "name": "pinned",
            "parameters": ["raw"],
            "tasks": {
                "price": {"task": f"{MODELS}:MakePrice", "inputs": {"raw": "${raw}"}, "topic": pinned},
                "seen": {"task": f"{MODELS}:UsePrice", "inputs": {"price": "${price}"}},
            },
        }
    )
    engine = load(flow, redis_flushed_url, [default], store={"raw": {"amount": 3, "currency": "USD"}})

    engine.run()

    assert engine.storage.fetch("seen") == "Price 3.0 USD"
    assert (requests_added(redis_client, pinned), requests_added(redis_client, default)) == (1, 1)


def test_a_pinned_topic_nobody_serves_fails_before_the_run_naming_atom_and_topic(
    start_worker: Any, redis_flushed_url: str
) -> None:
    default = topic()
    start_worker(default)
    make = models.MakePrice("make")
    make.worker_topic = "nobody-here"  # type: ignore[attr-defined]
    # worker_wait is the opt-in this test is about: by default the request would
    # wait for a worker on that topic and time out, as in TaskFlow.
    engine = load(make, redis_flushed_url, [default], store={"raw": {}}, worker_wait=0.2)

    with pytest.raises(exc.NotFound, match="atom 'make' .*pinned to topic 'nobody-here'"):
        engine.run()


def test_a_worker_topic_that_is_not_a_string_is_refused_naming_the_atom(redis_flushed_url: str) -> None:
    make = models.MakePrice("make")
    make.worker_topic = 7  # type: ignore[attr-defined]
    engine = load(make, redis_flushed_url, ["t"], store={"raw": {}})

    with pytest.raises(exc.InvalidEngineOption, match="atom 'make' has worker_topic 7"):
        engine.run()
