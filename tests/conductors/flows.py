"""Flow factories the conductor tests post as jobs (importable by conductor processes).

Conductors rebuild a job's flow from the factory recorded in its flow
detail, so these are module-level functions taking JSON arguments. Tasks
append one JSON line per call to the file named by the ``calls`` symbol
(opened and closed per line: a SIGKILLed process loses nothing it logged).
A task given a ``gate`` waits until that file exists, so a test can hold a
conductor mid-flow, then kill, stop or release it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from flowkit import exceptions, task
from flowkit.conductors import in_doubt
from flowkit.patterns import linear_flow

#: Seconds a gated task waits for its gate before failing (a test that forgot it).
GATE_TIMEOUT = 60.0


def log_call(calls: str, atom: str, action: str, **extra: Any) -> None:
    """Append one call record to ``calls``."""
    line = json.dumps({"atom": atom, "action": action, "pid": os.getpid(), **extra}) + "\n"
    with open(calls, "a", encoding="utf-8") as out:
        out.write(line)


def read_calls(calls: str | Path) -> list[dict[str, Any]]:
    """The call records in ``calls``, oldest first."""
    path = Path(calls)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


class Step(task.Task):
    """Logs its call, waits for its gate if it has one, and returns its input plus one."""

    def __init__(self, name: str, requires_value: str, provides: str, gate: str | None = None) -> None:
        super().__init__(name=name, provides=provides, rebind={"value": requires_value})
        self._gate = gate

    def execute(self, value: int, calls: str) -> int:
        log_call(calls, self.name, "execute")
        if self._gate is not None:
            deadline = time.monotonic() + GATE_TIMEOUT
            while not os.path.exists(self._gate):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gate {self._gate} never opened")
                time.sleep(0.01)
        return value + 1


def chain(length: int, gate_at: int | None = None, gate: str | None = None) -> linear_flow.Flow:
    """``step0 -> step1 -> ...``: each adds one to the previous result (``v0`` is the store's)."""
    flow = linear_flow.Flow("chain")
    for i in range(length):
        flow.add(Step(f"step{i}", f"v{i}", f"v{i + 1}", gate if i == gate_at else None))
    return flow


class Collect(task.Task):
    """Returns the three values the store precedence test looks at."""

    default_provides = "seen"

    def execute(self, a: Any, b: Any, c: Any) -> list[Any]:
        return [a, b, c]


def collect() -> linear_flow.Flow:
    return linear_flow.Flow("collect").add(Collect(name="Collect"))


class Boom(task.Task):
    """Fails; its revert logs the call."""

    def execute(self, calls: str) -> None:
        log_call(calls, self.name, "execute")
        raise RuntimeError("boom")

    def revert(self, calls: str, **kwargs: Any) -> None:
        log_call(calls, self.name, "revert")


def failing() -> linear_flow.Flow:
    return linear_flow.Flow("failing").add(Boom(name="Boom"))


class BoomNotConsumed(Boom):
    """Fails with an ExecutionFailure, after which a conductor gives its job back (as TaskFlow's)."""

    def execute(self, calls: str) -> None:
        log_call(calls, self.name, "execute")
        raise exceptions.ExecutionFailure("the cluster is down")


def failing_not_consumed() -> linear_flow.Flow:
    return linear_flow.Flow("failing-not-consumed").add(BoomNotConsumed(name="Boom"))


class Charge(task.Task):
    """Charges a card once: the charge is a marker file; ``check_done`` looks for it."""

    default_provides = "receipt"

    def execute(self, calls: str, ledger: str) -> str:
        log_call(calls, self.name, "execute")
        Path(ledger).write_text("charged", encoding="utf-8")
        return "receipt-1"

    def check_done(self, calls: str, ledger: str) -> in_doubt.Done | None:
        log_call(calls, self.name, "check_done")
        return in_doubt.Done("receipt-1") if os.path.exists(ledger) else None


class Ship(task.Task):
    """Needs the receipt."""

    default_provides = "shipped"

    def execute(self, receipt: str, calls: str) -> str:
        log_call(calls, self.name, "execute", receipt=receipt)
        return f"shipped with {receipt}"


def checkout() -> linear_flow.Flow:
    return linear_flow.Flow("checkout").add(Charge(name="Charge"), Ship(name="Ship"))


class WhoAmI(task.Task):
    """Waits for its gate, then returns the PID of the process that ran it."""

    default_provides = "writer"

    def __init__(self, gate: str) -> None:
        super().__init__(name="whoami")
        self._gate = gate

    def execute(self, calls: str) -> int:
        log_call(calls, self.name, "execute")
        Step("wait", "x", "y", self._gate).execute(0, os.devnull)
        return os.getpid()


def fenced(gate1: str, gate2: str) -> linear_flow.Flow:
    """``whoami`` (held by ``gate1``) then ``after`` (held by ``gate2``)."""
    return linear_flow.Flow("fenced").add(WhoAmI(gate1), Step("after", "v0", "v1", gate2))


def leave_mark(path: str) -> None:
    """Create the file ``path``: stands for any importable function a job's poster could name.

    A conductor calls the factory a flow detail records with the recorded
    arguments; this one is no flow factory at all (``os.system`` would do too).
    """
    Path(path).touch()
