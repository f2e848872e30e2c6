"""The same requests through a Python and a Go worker must get the same answers.

Each test starts one worker of each kind on the session's Redis, puts the very
same request on each one's stream and compares what comes back, reply by
reply, as an engine reads it. What may differ is taken out first: the request
and worker ids and times, traceback texts, and, for an exception a *task*
raised, the spelling of its type names (the protocol lets the Python worker
write TaskFlow's form and the Go worker the qualified one); its message is
compared as it is, so arguments a task does not take, or misses, are worded
as Python's own call words them by both. Failures the protocol spells out (an
unknown task, another version, a poison request) are compared exactly. A
request no worker may answer must get no answer from either.

The second half runs one flow on the worker-based engine against each worker
and compares what the engine records: states, results, failures, progress.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit.engines.worker_based import protocol
from flowkit.engines.worker_based._response_head import response_head
from flowkit.patterns import linear_flow
from flowkit.types.failure import Failure
from tests import services
from tests.workers.behaviour_tasks import GO_TASKS, Announce, Echo, Fail
from tests.workers.conftest import (
    NAMESPACE,
    Events,
    WorkerFactory,
    WorkerProcess,
    fresh_topic,
    load_engine,
    pending_requests,
    requests_key,
)
from tests.workers.raw_requests import execute_request

# Generous: the first Go test also pays for the session's `go build`.
pytestmark = pytest.mark.timeout(300)

#: Seconds to wait for an answer, and to wait for an answer that must not come.
ANSWER_TIMEOUT = 15.0


@dataclass(frozen=True)
class Case:
    """One request sent to both workers and what of the answers to compare."""

    task: str
    arguments: dict[str, Any]
    changes: dict[str, Any] = field(default_factory=dict)
    #: The raw body to send in place of the request's JSON (built from it).
    raw: Callable[[bytes], bytes] | None = None


def _deep(depth: int) -> Any:
    """A value whose arrays nest ``depth`` levels."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


#: Levels a request's own object and its "arguments" object add above a value.
ARGUMENT_LEVELS = 2

#: What turns an execute request into the revert of a result.
_REVERT_OF_A_RESULT: dict[str, Any] = {"action": "revert", "result": "s1", "flow_failures": {}}

ANSWERED: dict[str, Case] = {
    "success": Case(f"{GO_TASKS}.Echo", {"value": {"a": [1, 2.5, None, True, "é"], "": {}}}),
    "task-failure": Case(f"{GO_TASKS}.Fail", {"message": "disk 7 is on fire"}),
    "unknown-task": Case(f"{GO_TASKS}.NoSuchTask", {}),
    "other-version": Case(f"{GO_TASKS}.Echo", {"value": 1}, {"v": 2}),
    "missing-argument": Case(f"{GO_TASKS}.Echo", {}),
    "unexpected-argument": Case(f"{GO_TASKS}.Echo", {"value": 1, "extra": 2}),
    # Python's call names the first it is given, not the first by name.
    "unexpected-arguments": Case(f"{GO_TASKS}.Echo", {"zz": 1, "value": 1, "yy": 2}),
    "missing-arguments": Case(f"{GO_TASKS}.Sha256Rounds", {}),
    "revert-of-a-result": Case(
        f"{GO_TASKS}.Echo", {"value": 1}, {"action": "revert", "result": [5], "flow_failures": {}}
    ),
    "revert-of-a-failure": Case(
        f"{GO_TASKS}.Echo",
        {"value": 1},
        {
            "action": "revert",
            "failure": Failure.from_exception(RuntimeError("no")).to_dict(),
            "flow_failures": {"other": Failure.from_exception(ValueError("bad")).to_dict()},
        },
    ),
    # A task without a revert of its own takes any arguments in its revert
    # (Python's default revert takes **kwargs; the Go one registers none).
    "revert-without-its-own-takes-anything": Case(f"{GO_TASKS}.Echo", {"zz": 1}, _REVERT_OF_A_RESULT),
    # A revert of its own takes what it declares, as Python's call of it does.
    "revert": Case(f"{GO_TASKS}.Reserve", {"slot": "s1"}, _REVERT_OF_A_RESULT),
    "revert-given-an-unexpected-argument": Case(
        f"{GO_TASKS}.Reserve", {"slot": "s1", "extra": 1}, _REVERT_OF_A_RESULT
    ),
    "revert-missing-its-argument": Case(f"{GO_TASKS}.Reserve", {}, _REVERT_OF_A_RESULT),
    "revert-of-a-failure-given-another-argument": Case(
        f"{GO_TASKS}.Reserve",
        {"other": 1},
        {
            "action": "revert",
            "failure": Failure.from_exception(RuntimeError("no")).to_dict(),
            "flow_failures": {},
        },
    ),
    "progress": Case(f"{GO_TASKS}.Sleep", {"seconds": 0.05}),
    # Python's time.sleep refuses a negative length before the task reports anything.
    "negative-sleep": Case(f"{GO_TASKS}.Sleep", {"seconds": -1}),
    "notifications-and-progress": Case(f"{GO_TASKS}.Announce", {"events": ["a", "b", "c"]}),
    "nested-to-the-limit": Case(f"{GO_TASKS}.Echo", {"value": _deep(protocol.MAX_DEPTH - ARGUMENT_LEVELS)}),
}

UNANSWERED: dict[str, Case] = {
    "nested-past-the-limit": Case(
        f"{GO_TASKS}.Echo", {"value": _deep(protocol.MAX_DEPTH - ARGUMENT_LEVELS + 1)}
    ),
    "past-its-deadline": Case(f"{GO_TASKS}.Echo", {"value": 1}, {"deadline": 1.0}),
    # Lateness is checked first: the engine failed the request already.
    "unknown-task-past-its-deadline": Case(f"{GO_TASKS}.NoSuchTask", {}, {"deadline": 1.0}),
    "reply-to-outside-the-namespace": Case(f"{GO_TASKS}.Echo", {"value": 1}, {"reply_to": "victim:jobs"}),
    # JSON's grammar lets such a number through, but it is no double: Python
    # would read it as infinity, which the protocol refuses as it does NaN.
    "number-too-large-for-a-double": Case(
        f"{GO_TASKS}.Echo", {"value": 0}, raw=lambda body: body.replace(b'"value":0', b'"value":-1e400')
    ),
    # Python reads no integer of more digits (its int conversion limit).
    "integer-of-4301-digits": Case(
        f"{GO_TASKS}.Echo",
        {"value": 0},
        raw=lambda body: body.replace(b'"value":0', b'"value":' + b"7" * 4301),
    ),
}


def _request(case: Case, reply_to: str) -> dict[str, Any]:
    return execute_request(reply_to, case.task, "atom", case.arguments, case.changes)


def _comparable(reply: dict[str, Any], worker: WorkerProcess) -> dict[str, Any]:
    """What of a reply must be the same whichever worker sent it.

    The worker's id and topic, which a message may quote, read as ``{worker}``
    and ``{topic}``.
    """
    text = json.dumps(reply).replace(reply["worker"], "{worker}").replace(worker.topic, "{topic}")
    reply = {key: value for key, value in json.loads(text).items() if key not in ("id", "worker", "sent_at")}
    record = reply.get("failure")
    if record is not None:
        reply["failure"] = {**record, "traceback_str": ""}
    return reply


@pytest.fixture
def both(python_worker: WorkerFactory, go_worker: WorkerFactory) -> dict[str, WorkerProcess]:
    """One worker of each kind, each alone on a topic of its own."""
    return {"python": python_worker(fresh_topic()), "go": go_worker(fresh_topic())}


def _replies(client: Any, reply_to: str) -> list[dict[str, Any]]:
    replies = []
    for _, fields in client.xrange(reply_to):
        reply = json.loads(fields[b"body"])
        # An engine that cannot parse an answer reads its head to fail the request:
        # both workers must write id and event first, in the one order it reads.
        assert response_head(fields[b"body"]) == (reply["id"], reply["event"]), fields[b"body"][:200]
        replies.append(reply)
    return replies


def _send(client: Any, worker: WorkerProcess, case: Case, reply_to: str) -> None:
    body = json.dumps(_request(case, reply_to), separators=(",", ":")).encode()
    client.xadd(requests_key(worker.topic), {"body": case.raw(body) if case.raw else body})


def _answers(client: Any, worker: WorkerProcess, reply_to: str) -> list[dict[str, Any]]:
    def final() -> list[dict[str, Any]] | None:
        replies = _replies(client, reply_to)
        return replies if replies and replies[-1]["event"] in ("success", "failure") else None

    return services.wait_until(
        final, ANSWER_TIMEOUT, message=f"an answer from {worker!r}\n{worker.log()[-3000:]}"
    )


def test_both_workers_answer_every_request_the_same_way(
    both: dict[str, WorkerProcess], redis_client: Any
) -> None:
    sent = {(name, kind): f"{NAMESPACE}:replies:{kind}-{name}" for name in ANSWERED for kind in both}
    for (name, kind), reply_to in sent.items():
        _send(redis_client, both[kind], ANSWERED[name], reply_to)

    differences = []
    for name in ANSWERED:
        answers = {
            kind: [_comparable(r, worker) for r in _answers(redis_client, worker, sent[name, kind])]
            for kind, worker in both.items()
        }
        if answers["python"] != answers["go"]:
            differences.append(f"{name}:\n  python {answers['python']}\n  go     {answers['go']}")
    assert differences == [], "\n".join(differences)


def test_neither_worker_answers_a_request_no_worker_may_answer(
    both: dict[str, WorkerProcess], redis_client: Any
) -> None:
    sent = {(name, kind): f"{NAMESPACE}:replies:{kind}-{name}" for name in UNANSWERED for kind in both}
    for (name, kind), reply_to in sent.items():
        _send(redis_client, both[kind], UNANSWERED[name], reply_to)
    for worker in both.values():
        services.wait_until(
            lambda worker=worker: (
                redis_client.xlen(requests_key(worker.topic)) == 0
                and pending_requests(redis_client, worker.topic) == 0
            ),
            ANSWER_TIMEOUT,
            message=f"{worker!r} settling its entries\n{worker.log()[-3000:]}",
        )
    # Every entry is acknowledged and deleted, so an answer would already be written.
    answered = {key: [r["event"] for r in _replies(redis_client, reply_to)] for key, reply_to in sent.items()}
    assert {key: events for key, events in answered.items() if events} == {}
    assert not redis_client.exists("victim:jobs")
    assert all(worker.alive for worker in both.values())


# --- What the engine records ------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """What one engine run recorded, in a form both workers must match."""

    states: list[tuple[str, str]]
    progress: list[float]
    results: dict[str, Any]
    failure: dict[str, Any]


def _record(worker: WorkerProcess, url: str) -> Recorded:
    flow = linear_flow.Flow("parity").add(
        Echo(name="echo", provides="echoed"),
        Announce(name="announce", provides="count"),
        Fail(name="fail"),
    )
    engine = load_engine(
        flow, url, worker.topic, store={"value": {"k": [1, "ü"]}, "events": ["x", "y"], "message": "stop"}
    )
    events = Events(engine)
    with pytest.raises(exc.WrappedFailure):
        engine.run()
    failure = engine.storage.get("fail")
    assert isinstance(failure, Failure)
    record = failure.to_dict()
    record["traceback_str"] = ""
    return Recorded(
        states=events.states,
        progress=events.progress_of("announce"),
        results={name: engine.storage.get_revert_result(name) for name in ("echo", "announce", "fail")},
        failure=record,
    )


def test_the_engine_records_the_same_run_whichever_worker_serves_it(
    both: dict[str, WorkerProcess], redis_flushed_url: str
) -> None:
    recorded = {kind: _record(worker, redis_flushed_url) for kind, worker in both.items()}

    assert recorded["python"] == recorded["go"]
    # The engine's own 0.0 and 1.0 around what the task reported after each event.
    assert recorded["go"].progress == [0.0, 0.5, 1.0, 1.0]
