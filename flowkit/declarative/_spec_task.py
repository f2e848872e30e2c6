"""The adapter for a spec task whose inputs need more than a symbol: fields and text.

Most spec tasks need no adapter: constants become ``inject`` values and whole
references (``${fetch}``) become ``rebind`` entries of the user's own task. An
input such as ``${fetch.close}`` or ``"price is ${price}"`` must be computed
from the referenced results just before ``execute``; :class:`SpecTask` does that
and calls the user's task with the computed arguments. It keeps the user task's
name and version, so the flow's atoms, states and stored results are the same
as without it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from flowkit import exceptions as exc
from flowkit import typed
from flowkit.declarative import _refs
from flowkit.task import BaseTask, Task

__all__ = ["SpecTask"]


#: Attributes of the user's task that steer how the engine runs it.
_RUN_OPTIONS = ("timeout", "concurrency_key", "retry", "cache", "validate_types")


class SpecTask(Task):
    """Run ``inner`` with inputs rendered from the referenced results.

    Args:
        inner: the user's task (named like this one).
        inputs: argument -> parsed input value.
        symbols: every task result or flow parameter the inputs reference.
        provides: the symbol this task's result is stored under (or symbols, by position).
    """

    def __init__(
        self,
        inner: BaseTask,
        inputs: Mapping[str, _refs.Value],
        symbols: list[str],
        provides: str | tuple[str, ...],
    ) -> None:
        self._inner = inner
        self._inputs = dict(inputs)
        super().__init__(inner.name, provides=provides, requires=symbols, auto_extract=False)
        self.version = inner.version
        # What the engine reads from an atom to run it (set on the task or its
        # class): this adapter runs in the task's place, so it must carry them,
        # or a task class's `timeout = 30` would be dropped for a spec reading
        # `${fetch.close}` and kept for one reading `${fetch}`.
        for option in _RUN_OPTIONS:
            value = getattr(inner, option, None)
            if value is not None:
                setattr(self, option, value)
        # The result cache asks the atom for `cache_key(inputs)`: a user's key goes
        # on this adapter only when the task has one, since any `cache_key` (even
        # one that defers) replaces the inputs' part of the key.
        if callable(getattr(inner, "cache_key", None)):
            self.cache_key = self._inner_cache_key
        revert = inner.revert
        self._revert_takes_all = _accepts_kwargs(revert)
        self._revert_args = frozenset(inspect.signature(revert).parameters)

    @property
    def inner(self) -> BaseTask:
        """The user's task this adapter runs."""
        return self._inner

    def whole_references(self) -> dict[str, str]:
        """The inner task's arguments given a whole result or parameter (``${name}``), to its name.

        Such an argument gets the value as it is, so what the inner task declares
        for it is what the value must be: ``flowkit run --store`` reads a
        parameter's text by it (the adapter's own arguments are the symbols).
        """
        return {
            arg: value.name
            for arg, value in self._inputs.items()
            if isinstance(value, _refs.Ref) and not value.path
        }

    def __flowkit_contract__(self) -> typed.Contract:
        # Inputs are checked when the spec is loaded; the result is the inner task's.
        return typed.Contract({}, typed.contract_of(self._inner).result)

    def __flowkit_cache_identity__(self) -> tuple[BaseTask, dict[str, Any]]:
        """The user's task, and how its arguments are made from the results read.

        The result cache (:mod:`flowkit.cache`) keys a call by the task's
        identity and the values it reads, here whole results: both parts are
        needed, or two spec tasks reading ``${s.v}`` would share one entry
        whatever they run.
        """
        return self._inner, {"spec_inputs": {arg: repr(self._inputs[arg]) for arg in sorted(self._inputs)}}

    def _inner_cache_key(self, values: dict[str, Any]) -> Any:
        """The user's ``cache_key`` of the arguments ``execute`` will get, as for a plain task.

        The engine hands the adapter the results it reads (``values``); the
        user's hook expects the task's own arguments, so they are rendered first.
        A field that is missing means no key (the call runs uncached, and
        ``execute`` reports the missing field).
        """
        try:
            arguments = self._render(values)
        except exc.NotFound:
            return None
        return self._inner.cache_key(arguments)  # type: ignore[attr-defined]

    def _render(self, values: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
        out = {}
        for arg, value in self._inputs.items():
            try:
                out[arg] = _refs.render(value, values)
            except _refs.FieldMissing as err:
                if strict:
                    raise exc.quoting_cause(
                        exc.NotFound(f"task '{self.name}', key 'inputs.{arg}': {err}")
                    ) from err
                # Reverting after that very error: revert gets the inputs that exist.
        return out

    def pre_execute(self) -> None:
        self._inner._progress_sink = self._relay_progress
        self._inner.pre_execute()

    def post_execute(self) -> None:
        self._inner.post_execute()
        self._inner._progress_sink = None

    def pre_revert(self) -> None:
        self._inner.pre_revert()

    def post_revert(self) -> None:
        self._inner.post_revert()

    def _relay_progress(self, _task: BaseTask, progress: float, _details: object = None) -> None:
        self.update_progress(progress)

    def execute(self, **values: Any) -> Any:
        arguments = self._render(values)
        # The engine makes a mapping handed to a model-typed argument into the
        # model (doc/typed.rst), for the arguments it hands over; the adapter
        # makes these, so it does the same. Asked per call, not kept on the
        # task (a process pool pickles it, the contract does not pickle):
        # typed keeps the answer per class, so asking is a lookup.
        models = typed.model_inputs(self._inner)
        if models is not None:
            typed.coerce_inputs(self.name, models, arguments)
        return self._inner.execute(**arguments)

    def revert(self, result: Any, flow_failures: Any, **values: Any) -> Any:
        kwargs = self._render(values, strict=False)
        if not self._revert_takes_all:
            kwargs = {k: v for k, v in kwargs.items() if k in self._revert_args}
        return self._inner.revert(result=result, flow_failures=flow_failures, **kwargs)


def _accepts_kwargs(fn: Any) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
