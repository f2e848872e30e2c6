"""Cacheable tasks for the cache tests (importable, so child processes can use them)."""

from __future__ import annotations

from typing import Any

from flowkit import task
from flowkit.patterns import linear_flow

#: Names of the tasks whose execute ran, in order; tests clear it.
CALLS: list[str] = []
REVERTS: list[str] = []


class Add(task.Task):
    cache = True

    def execute(self, value: int, k: int) -> int:
        CALLS.append(self.name)
        return value + k

    def revert(self, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        REVERTS.append(self.name)


class Fail(task.Task):
    def execute(self, value: int) -> None:
        raise RuntimeError("fails on purpose")


def chain(count: int, ks: dict[int, int] | None = None) -> linear_flow.Flow:
    """``count`` Adds, each adding its own ``k`` (1 unless ``ks`` says) to the previous result."""
    ks = ks or {}
    flow = linear_flow.Flow("chain")
    for i in range(count):
        flow.add(
            Add(
                f"add{i}",
                provides=f"v{i}",
                rebind={"value": "start" if i == 0 else f"v{i - 1}"},
                inject={"k": ks.get(i, 1)},
            )
        )
    return flow


class Doubled(task.Task):
    """Keyed by its code, which holds a nested code object (the generator expression)."""

    cache = True
    cache_code = True

    def execute(self, values: list[int]) -> int:
        CALLS.append(self.name)
        return sum(value * 2 for value in values)


class Member(task.Task):
    """Keyed by its code, which holds a frozenset constant (``in {...}`` of strs)."""

    cache = True
    cache_code = True

    def execute(self, word: str) -> bool:
        CALLS.append(self.name)
        return word in {"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}


try:
    import pydantic
except ImportError:  # pragma: no cover - the typed extra is installed for the tests
    pydantic = None  # type: ignore[assignment]

if pydantic is not None:

    class Credentials(pydantic.BaseModel):
        """A model whose JSON dump hides a field: ``password`` is written ``"**********"``."""

        user: str
        password: pydantic.SecretStr

    class Login(task.Task):
        """Cacheable, declared as returning :class:`Credentials`."""

        cache = True

        def execute(self) -> Credentials:
            CALLS.append(self.name)
            return Credentials(user="ops", password=pydantic.SecretStr("hunter2"))


class Tagged(task.Task):
    """Shares its results between calls of the same tags, in whatever order they come."""

    cache = True

    def execute(self, tags: list[str]) -> str:
        CALLS.append(self.name)
        return ",".join(sorted(tags))

    def cache_key(self, inputs: dict[str, Any]) -> Any:
        return set(inputs["tags"])
