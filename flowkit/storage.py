"""TaskFlow's ``Storage``: one flow's states, results, failures and inputs, by atom name.

:class:`Storage` is what ``engine.storage`` returns, with TaskFlow's method names
and semantics. It holds no state of its own: everything lives in the run's
:class:`~flowkit._run_state.RunState`, which the engine's runtime works on
directly (its hot path touches records, not names) and which owns the writing
to a persistence backend. In memory nothing is written, which is why an
in-memory run costs a few microseconds per task.

Symbol lookups here (:meth:`Storage.fetch`, :meth:`~Storage.fetch_all`,
:meth:`~Storage.fetch_mapped_args`) serve callers outside the engine; the engine
resolves arguments through the plans its compiler made.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit import states as st
from flowkit._atom_record import RESULT_STATES, AtomRecord, holds_result
from flowkit._run_state import RunState
from flowkit._utils.flow_meta import STORE_KEY
from flowkit.atom import Atom, _OneName
from flowkit.retry import History, Retry
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    import threading

    # A flow run in memory never makes a flow detail (start-up time).
    from flowkit.persistence.base import Backend
    from flowkit.persistence.models import FlowDetail

__all__ = ["AtomRecord", "Storage", "store_meta"]

# States in which an atom's execute result (or failure) can be read, as in TaskFlow.
_EXECUTE_RESULT_STATES = frozenset({st.SUCCESS, st.FAILURE, st.REVERTING})
_REVERT_RESULT_STATES = frozenset({st.REVERTED, st.REVERT_FAILURE, st.REVERTING})
# Where an atom's execute result is both current and still held: what
# ``_values_of`` requires of a provider (a result state that holds_result accepts).
_STANDING_RESULT_STATES = _EXECUTE_RESULT_STATES & RESULT_STATES


def store_meta(store: Mapping[str, Any] | None, flow_name: str) -> dict[str, Any]:
    """The flow-detail metadata that holds ``store`` (empty when there is nothing to hold).

    ``engines.load`` writes it with the new flow detail, in the same write.

    Raises:
        InvalidFormat: a key is not a string, or a value cannot be stored as JSON
            (naming it and the flow; nothing is written then).
    """
    if not store:
        return {}
    checker = RunState(flow_name)
    for name, value in store.items():
        checker.check_injectable(name, value)
    return {STORE_KEY: dict(store)}


class _ReadWriteLock:
    """The ``storage.lock`` TaskFlow exposes; the run state's re-entrant lock serves both sides."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock

    @contextlib.contextmanager
    def read_lock(self) -> Iterator[None]:
        with self._lock:
            yield

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        with self._lock:
            yield


class Storage:
    """States, results and inputs of one flow, by atom name.

    Args:
        flow_detail: the :class:`~flowkit.persistence.models.FlowDetail` to keep
            the flow's data in (its atom details are loaded: this is how a flow
            resumes), or just the flow's name for a run kept in memory only.
        backend: the persistence backend the flow detail is saved to, or None.
        scope_fetcher: accepted for TaskFlow compatibility; the engine resolves
            scopes when it compiles, so it is not used.
        run_state: the run state to be the façade of (the engine passes its own);
            ``flow_detail`` and ``backend`` are then ignored.

    Changes are batched while an engine runs: it writes them in one transaction
    right before it starts or reverts an atom, which gives the guarantees of
    doc/persistence.rst at one write per task. Outside a run each change is
    written at once.
    """

    #: The name TaskFlow gives the record of flow-level injected values. flowkit
    #: keeps those in the flow detail's metadata instead; no atom may take the name.
    #: As in TaskFlow, once values were injected (not transient), ``get``,
    #: ``get_atom_state`` and ``get_atoms_states`` answer for it: the saved values, SUCCESS.
    injector_name = "_TaskFlow_INJECTOR"

    def __init__(
        self,
        flow_detail: FlowDetail | str | None = None,
        backend: Any = None,
        scope_fetcher: Any = None,
        *,
        run_state: RunState | None = None,
    ) -> None:
        if run_state is None:
            if flow_detail is None:
                raise TypeError("Storage needs a flow detail (or a flow name)")
            run_state = RunState(flow_detail, backend)
        self._run = run_state
        self.lock = _ReadWriteLock(run_state.lock)

    @property
    def run_state(self) -> RunState:
        """The engine's live run state this façade reads and writes (not TaskFlow API)."""
        return self._run

    # -- identity ---------------------------------------------------------------

    @property
    def flow_name(self) -> str:
        return self._run.flow_name

    @property
    def flow_uuid(self) -> str:
        return self._run.flow_uuid

    @property
    def flow_meta(self) -> dict[str, Any]:
        return self._run.flow_meta

    @property
    def backend(self) -> Backend:
        """The persistence backend; for a run kept in memory, a memory backend made on first use.

        As in TaskFlow, code may inspect what a run wrote; asking is what makes
        the memory backend (and the run then writes to it), so runs nobody asks
        about pay nothing.
        """
        found: Backend = self._run.backend_or_memory()
        return found

    @property
    def flow_detail(self) -> FlowDetail:
        """The flow detail holding this flow's data (written through first).

        For a flow kept in memory only, a snapshot made on each access.
        """
        return self._run.snapshot()

    @property
    def _flowdetail(self) -> FlowDetail:
        """TaskFlow's private name for :attr:`flow_detail`.

        TaskFlow programs and TaskFlow's own tests read ``engine.storage._flowdetail``
        to reuse a run's flow detail (to resume it in a second engine, or to read its
        meta); the name is kept so that code keeps working after the import change.
        """
        return self.flow_detail

    def flush(self) -> None:
        """Write every pending change now (see :meth:`RunState.flush`)."""
        self._run.flush()

    # -- atoms ------------------------------------------------------------------

    def ensure_atom(self, atom: Atom) -> str:
        """Create the record for ``atom`` if missing; return its uuid.

        Raises:
            Duplicate: a record by that name exists for the other kind of atom.
            ValueError: the atom has no name, or takes the injector's name.
        """
        if not atom.name:
            raise ValueError(f"{'Retry' if isinstance(atom, Retry) else 'Task'} name must be non-empty")
        if atom.name == self.injector_name:
            raise ValueError(f"atom name '{atom.name}' is reserved for injected values")
        return self._run.ensure(atom, isinstance(atom, Retry)).uuid

    def ensure_atoms(self, atoms: Iterable[Atom]) -> list[str]:
        """Create records for every atom in ``atoms``; return their uuids in order."""
        return [self.ensure_atom(atom) for atom in atoms]

    def _record(self, name: str) -> AtomRecord:
        return self._run.record(name)

    def _changed(self, record: AtomRecord | None) -> None:
        self._run.changed(record)

    def get_atom_uuid(self, atom_name: str) -> str:
        return self._record(atom_name).uuid

    def _saved_injected(self) -> dict[str, Any]:
        """The injected values TaskFlow's injector record would hold.

        Raises:
            NotFound: none were injected (TaskFlow has no such record then).
        """
        run = self._run
        saved = {k: v for k, v in run.store.items() if k not in run.transient}
        if not saved and STORE_KEY not in run.flow_meta:
            raise exc.NotFound(f"Unknown atom name '{self.injector_name}' in flow '{run.flow_name}'")
        return saved

    def get_atom_state(self, atom_name: str) -> str:
        if atom_name == self.injector_name:
            self._saved_injected()
            return st.SUCCESS
        return self._record(atom_name).state

    def set_atom_state(self, atom_name: str, state: str) -> None:
        record = self._record(atom_name)
        record.state = state
        self._changed(record)

    def get_atom_intention(self, atom_name: str) -> str:
        if atom_name == self.injector_name:
            self._saved_injected()
            return st.EXECUTE
        return self._record(atom_name).intention

    def set_atom_intention(self, atom_name: str, intention: str) -> None:
        record = self._record(atom_name)
        record.intention = intention
        self._changed(record)

    def get_atoms_states(self, atom_names: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Return ``{name: (state, intention)}`` for the given atoms."""
        return {name: (self.get_atom_state(name), self.get_atom_intention(name)) for name in atom_names}

    def update_atom_metadata(self, atom_name: str, update_with: Mapping[str, Any]) -> None:
        record = self._record(atom_name)
        with self._run.lock:
            record.meta.update(update_with or {})
        self._changed(record)

    def get_atom_metadata(self, atom_name: str) -> dict[str, Any]:
        return dict(self._record(atom_name).meta)

    def set_task_progress(
        self, task_name: str, progress: float, details: dict[str, Any] | None = None
    ) -> None:
        """Record a task's progress, and with non-empty ``details`` the details at this point.

        As in TaskFlow, ``details=None`` leaves the last details in place (the
        engine's own 0.0 and 1.0 say nothing new) and empty details erase them.
        """
        record = self._record(task_name)
        with self._run.lock:
            record.progress = progress
            if details is not None:
                record.meta["progress_details"] = (
                    {"at_progress": progress, "details": details} if details else None
                )
        self._changed(record)

    def get_task_progress(self, task_name: str) -> float:
        """A task's progress: 0.0 until it is first set, as TaskFlow answers."""
        progress = self._record(task_name).progress
        return 0.0 if progress is None else progress

    def get_task_progress_details(self, task_name: str) -> dict[str, Any] | None:
        meta = self._record(task_name)._meta
        return None if meta is None else meta.get("progress_details")

    # -- results ----------------------------------------------------------------

    def save(self, atom_name: str, result: Any, state: str = st.SUCCESS) -> None:
        """Store an outcome: a result (or Failure) for ``state``.

        After ``save(name, value)`` the atom is SUCCESS and the names it provides
        can be fetched, as in TaskFlow. Saving a mapping under
        :attr:`injector_name` replaces the flow's saved injected values
        (``save(storage.injector_name, {})`` forgets them all), as in TaskFlow.
        """
        if atom_name == self.injector_name:
            self._run.replace_injected(dict(result or {}))
            return
        record = self._record(atom_name)
        # A text the engine encoded may be of this very object before a change made in place.
        self._run.forget_encoded(atom_name)
        record.state = state
        if state in (st.SUCCESS, st.FAILURE):
            if isinstance(result, Failure):
                record.failure, record.result = result, None
            else:
                record.failure, record.result = None, result
        elif state in (st.REVERTED, st.REVERT_FAILURE):
            if isinstance(result, Failure):
                record.revert_failure, record.revert_result = result, None
            else:
                record.revert_failure, record.revert_result = None, result
        elif record.is_retry and state == st.RETRYING:
            record.result = result
        if record.is_retry and state == st.SUCCESS and not isinstance(result, Failure):
            self._run.append_retry_result(atom_name, result)
        self._changed(record)

    def get(self, atom_name: str) -> Any:
        """The execute result of ``atom_name``, or its Failure if it failed."""
        return self.get_execute_result(atom_name)

    def get_execute_result(self, atom_name: str) -> Any:
        """The execute result (or Failure) of an atom.

        For a retry this is its whole history, as in TaskFlow: a list of ``(result,
        {atom name: Failure})`` per attempt, oldest first (TaskFlow's code that reads a
        retry's results this way keeps working); :meth:`fetch` gives its last result.

        Raises:
            NotFound: the atom has no execute result in its current state.
        """
        if atom_name == self.injector_name:
            return self._saved_injected()
        record = self._record(atom_name)
        if record.failure is not None:
            return record.failure
        if record.state not in _EXECUTE_RESULT_STATES:
            why = " (as it was ignored)" if record.state == st.IGNORE else ""
            raise exc.NotFound(f"Result for atom '{atom_name}' execution is not known{why}")
        if record.is_retry:
            return [(value, dict(failures)) for value, failures in self._run.history.get(atom_name, ())]
        return record.result

    def get_revert_result(self, atom_name: str) -> Any:
        """The revert result (or Failure) of an atom.

        Raises:
            NotFound: the atom has no revert result in its current state.
        """
        record = self._record(atom_name)
        if record.revert_failure is not None:
            return record.revert_failure
        if record.state not in _REVERT_RESULT_STATES:
            why = " (as it was ignored)" if record.state == st.IGNORE else ""
            raise exc.NotFound(f"Result for atom '{atom_name}' revert is not known{why}")
        return record.revert_result

    def get_execute_failures(self) -> dict[str, Failure]:
        return self._run.failures()

    def get_revert_failures(self) -> dict[str, Failure]:
        return self._run.revert_failures()

    get_failures = get_execute_failures

    def has_failures(self) -> bool:
        return any(r.failure is not None or r.revert_failure is not None for r in self._run.records.values())

    def reset(self, atom_name: str, state: str = st.PENDING) -> None:
        """Forget an atom's outcome and set it to ``state`` with intention EXECUTE."""
        if atom_name == self.injector_name:
            return
        record = self._record(atom_name)
        if record.state == state:
            return
        record.state, record.intention = state, st.EXECUTE
        record.result = record.failure = None
        record.revert_result = record.revert_failure = None
        self._changed(record)

    # -- retries ----------------------------------------------------------------

    def save_retry_failure(self, retry_name: str, failed_atom_name: str, failure: Failure) -> None:
        history = self._run.history.setdefault(retry_name, [])
        if not history:
            history.append((None, {}))
        history[-1][1].setdefault(failed_atom_name, failure)
        self._changed(self._record(retry_name))

    def cleanup_retry_history(self, retry_name: str, state: str) -> None:
        self._run.history.pop(retry_name, None)
        self.set_atom_state(retry_name, state)

    def get_retry_history(self, retry_name: str) -> History:
        record = self._record(retry_name)
        return History(list(self._run.history.get(retry_name, ())), failure=record.failure)

    def get_retry_histories(self) -> list[tuple[str, History]]:
        return [(name, self.get_retry_history(name)) for name, r in self._run.records.items() if r.is_retry]

    # -- injected values ----------------------------------------------------------

    def inject(self, pairs: Mapping[str, Any] | Iterable[tuple[str, Any]], transient: bool = False) -> None:
        """Make ``pairs`` visible to every atom of the flow (the ``store=``).

        Unless ``transient``, the values are saved with the flow detail, so a
        resumed run sees them too; transient ones live as long as this storage.

        Raises:
            InvalidFormat: a value to be saved cannot be stored as JSON (nothing
                is injected then).
        """
        self._run.inject(dict(pairs), transient)

    def inject_atom_args(self, atom_name: str, pairs: Mapping[str, Any], transient: bool = True) -> None:
        """Give ``pairs`` to one atom only; they win over every other source.

        Unless ``transient`` they are saved with the atom's record. Transient
        ones win over saved ones, as in TaskFlow.
        """
        record = self._record(atom_name)
        if transient:
            record.injected = {**(record.injected or {}), **pairs}
            return
        saved = {**(record.meta.get("injected") or {}), **pairs}
        record.meta["injected"] = saved
        # Transient values given earlier keep winning over saved ones.
        transient_values = {k: v for k, v in (record.injected or {}).items() if k not in saved}
        record.injected = {**saved, **transient_values} if transient_values else dict(saved)
        self._changed(record)

    # -- symbol lookups -----------------------------------------------------------

    def _values_of(self, name: str) -> list[Any]:
        """Every current value of ``name``: the injected one first, then results in atom order.

        Only atoms whose result still stands count (SUCCESS, or REVERTING while it is
        being undone); a reverted atom's result is gone, as in TaskFlow. A result
        too short for the provided name does not count either. An atom that failed
        gives its Failure for the names it provides whole until it is reset, as
        TaskFlow's lookups do: code inspecting a failed run reads it there.
        """
        store = self._run.store
        values = [store[name]] if name in store else []
        for record in self._run.providers.get(name, ()):
            if record.failure is not None:
                if record.save_as[name] is None:
                    values.append(record.failure)
                continue
            if record.state in _EXECUTE_RESULT_STATES and holds_result(record):
                key = record.save_as[name]
                if key is None:
                    values.append(record.result)
                    continue
                try:
                    values.append(record.result[key])
                except (IndexError, KeyError, TypeError):
                    continue
        return values

    def fetch(self, name: str, many_handler: Callable[[list[Any]], Any] | None = None) -> Any:
        """Return the value of symbol ``name``.

        Args:
            name: the symbol.
            many_handler: picks from several values (default: the first, which is the
                injected one when there is one, else the first provider's).

        Raises:
            NotFound: nothing injected or produced the symbol (yet).
        """
        run = self._run
        if many_handler is None and name not in run.store:
            # The common case, answered without building the list of values: one
            # atom provides the name whole (``provides="x"``), and its result stands.
            # What _values_of would find, for a program that fetches result by result.
            found = run.providers.get(name)
            if found is not None and len(found) == 1:
                record = found[0]
                if (
                    type(record.save_as) is _OneName
                    and record.failure is None
                    and record.state in _STANDING_RESULT_STATES
                ):
                    return record.result
        values = self._values_of(name)
        if not values:
            flow = self._run.flow_name
            searched = len(self._run.providers.get(name, ()))
            if not searched:
                raise exc.NotFound(
                    f"Name '{name}' is not mapped as a produced output by any providers (flow '{flow}')"
                )
            for record in self._run.providers.get(name, ()):
                # TaskFlow's words for a provider whose result cannot be read in its
                # state (it has not run, or was reverted); an ignored one is passed over.
                if record.failure is None and record.state not in _EXECUTE_RESULT_STATES | {st.IGNORE}:
                    raise exc.NotFound(
                        f"Expected to be able to find output '{name}' produced by "
                        f"<Provider '{record.name}'> but was unable to get at that providers "
                        f"results (it is {record.state}; flow '{flow}')"
                    )
            raise exc.NotFound(
                f"Unable to find result '{name}', searched {searched} providers (flow '{flow}')"
            )
        return many_handler(values) if many_handler else values[0]

    def fetch_all(self, many_handler: Callable[[list[Any]], Any] | None = None) -> dict[str, Any]:
        """Return every symbol that has a value right now.

        A symbol with several values (injected and produced, or several producers)
        maps to the list of them unless ``many_handler`` picks one, as in TaskFlow.
        """
        store, providers = self._run.store, self._run.providers
        results: dict[str, Any] = {}
        for name in [*store, *(n for n in providers if n not in store)]:
            values = self._values_of(name)
            if values:
                if many_handler is not None:
                    results[name] = many_handler(values)
                else:
                    results[name] = values if len(values) > 1 else values[0]
        return results

    def fetch_mapped_args(
        self,
        args_mapping: Mapping[str, str],
        atom_name: str | None = None,
        scope_walker: Any = None,
        optional_args: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Resolve ``{argument: symbol}`` to ``{argument: value}``.

        Atom-specific injected values come first, then the flow's injected values,
        then results: with ``atom_name``, once an engine compiled the flow, the
        result of the nearest atom visible to that atom (what it reads when it
        runs, as in TaskFlow); otherwise the first one. Missing optional
        arguments are left out.

        Raises:
            NotFound: a required argument has no value, naming it and the atom.
        """
        optional = frozenset(optional_args or ())
        injected = self._record(atom_name).injected or {} if atom_name else {}
        scope = self._run.scope if atom_name else None
        store = self._run.store
        out: dict[str, Any] = {}
        for arg, symbol in args_mapping.items():
            if symbol in injected:
                out[arg] = injected[symbol]
                continue
            try:
                if scope is not None and symbol not in store:
                    out[arg] = self._visible_value(scope, atom_name or "", symbol)
                else:
                    out[arg] = self.fetch(symbol)
            except exc.NotFound:
                if arg in optional:
                    continue
                who = f" (for atom '{atom_name}')" if atom_name else ""
                scanned = len(self._run.providers.get(symbol, ()))
                if not scanned:
                    # TaskFlow's sentence for a symbol nothing provides.
                    message = f"Name '{symbol}' is not mapped as a produced output by any providers"
                else:
                    message = (
                        f"Mapped argument '{arg}' <= '{symbol}' was not produced by any accessible "
                        f"provider ({scanned} possible providers were scanned)"
                    )
                raise exc.NotFound(f"{message}{who}") from None
        return out

    def _visible_value(self, scope: Callable[[str, str], str | None], atom_name: str, symbol: str) -> Any:
        provider = scope(atom_name, symbol)
        if provider is None:
            raise exc.NotFound(f"no atom visible to '{atom_name}' holds '{symbol}'")
        record = self._record(provider)
        key = record.save_as.get(symbol)
        return record.result if key is None else record.result[key]

    def fetch_unsatisfied_args(
        self,
        atom_name: str,
        args_mapping: Mapping[str, str],
        scope_walker: Any = None,
        optional_args: Iterable[str] | None = None,
    ) -> set[str]:
        """Return the symbols of required arguments nothing can provide."""
        optional = frozenset(optional_args or ())
        injected = self._record(atom_name).injected or {}
        store, providers = self._run.store, self._run.providers
        return {
            symbol
            for arg, symbol in args_mapping.items()
            if arg not in optional
            and symbol not in injected
            and symbol not in store
            and symbol not in providers
        }

    # -- the flow -----------------------------------------------------------------

    def get_flow_state(self) -> str:
        return self._run.flow_state

    def set_flow_state(self, state: str) -> None:
        self._run.set_flow_state(state)

    def change_flow_state(self, state: str) -> tuple[bool, str]:
        """Move the flow to ``state`` if the state table allows; return (moved, old)."""
        old = self._run.flow_state
        moved = st.check_flow_transition(old, state)
        if moved:
            self.set_flow_state(state)
        return moved, old

    def update_flow_metadata(self, update_with: Mapping[str, Any]) -> None:
        if update_with:
            self._run.flow_meta.update(update_with)
            self._changed(None)
