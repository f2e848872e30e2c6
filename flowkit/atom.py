"""The atom: the smallest named piece of work a flow is made of.

An atom says what it needs and what it gives in symbol names. What it needs is
read from the signature of its ``execute`` (and ``revert``) method, adjusted by
``requires=``, ``rebind=``, ``inject=`` and ``ignore_list=``; what it gives comes
from ``provides=`` (or the class's ``default_provides``). The engine reads only
the precomputed attributes documented on :class:`Atom`; nothing here runs work.

Working out those attributes from a signature is done once per function and
argument spelling and then shared (see :func:`_lookup_profile`), because benchmarks
create tasks of one class by the hundred thousand.
"""

from __future__ import annotations

import abc
import functools
import itertools
from collections import deque
from collections.abc import Callable, Collection, ItemsView, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from flowkit._utils import reflection
from flowkit._utils.class_caches import make_room
from flowkit._utils.records import Record

if TYPE_CHECKING:
    import weakref

__all__ = ["Atom", "check_concurrency_key", "check_retry", "check_switch", "check_timeout"]

#: Names in ``revert``'s signature that the engine fills itself; never required.
_REVERT_SPECIAL_ARGS: tuple[str, ...] = ("result", "flow_failures")

ProvidesSpec = str | Iterable[str] | None
RebindSpec = Mapping[str, str] | list[str] | tuple[str, ...] | None

# A normalised rebind: ("seq", names) for positional rebinding, ("map", pairs)
# for argument -> symbol pairs. Hashable, so mappings can be cached.
_RebindKey = tuple[str, tuple[Any, ...]] | None
_Extraction = tuple[tuple[str, int | str | None], ...]


class _MappingError(Exception):
    """Raised by the cached mapping code; re-raised as ValueError naming the atom."""

    def __init__(self, what: str, names: list[str], detail: str = "") -> None:
        super().__init__(what, names)
        self.what = what
        self.names = names
        # Said after TaskFlow's sentence, which OpenStack code matches on.
        self.detail = detail


def _check_symbol(atom_name: object, value: object, where: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"atom {atom_name}: {where} must name symbols with strings, not {value!r}")
    return value


def _provides_key(atom_name: object, provides: Any) -> tuple[str, tuple[str, ...]] | None:
    """Normalise ``provides`` to a hashable ``(kind, names)`` pair."""
    if provides is None:
        return None
    if isinstance(provides, str):
        return ("one", (provides,))
    if isinstance(provides, Sequence):
        kind = "index"
    elif isinstance(provides, AbstractSet):
        kind = "key"
    else:
        raise TypeError(
            f"Atom provides parameter can be only string, set, tuple or list (atom {atom_name}: "
            f"a str, a list or tuple (indexed result) or a set (dict result), not {type(provides).__name__})"
        )
    return (kind, tuple(_check_symbol(atom_name, name, "provides") for name in provides))


@functools.lru_cache(maxsize=1024)
def _save_as(key: tuple[str, tuple[str, ...]] | None) -> tuple[_Extraction, frozenset[str]]:
    """Return ``(save_as items, provides)`` for a normalised ``provides``."""
    if key is None:
        return (), frozenset()
    kind, names = key
    if kind == "one":
        return ((names[0], None),), frozenset(names)
    if len(set(names)) != len(names):
        dupes = sorted({name for name in names if names.count(name) > 1})
        raise _MappingError("Duplicate names in provides", dupes)
    if kind == "index":
        return tuple((name, index) for index, name in enumerate(names)), frozenset(names)
    return tuple((name, name) for name in names), frozenset(names)


@functools.lru_cache(maxsize=1024)
def _save_as_view(extraction: _Extraction) -> Mapping[str, int | str | None]:
    """A read-only ``save_as`` mapping, shared by atoms that provide alike."""
    return MappingProxyType(dict(extraction))


class _OneName(Mapping[str, None]):
    """``save_as`` of an atom whose whole result is stored under one name.

    The most common spelling (``provides="x"``), and different for nearly every
    atom of a big flow, so it is a one-slot object rather than a cached mapping
    proxy over a dict (a tenth of the memory).
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getitem__(self, key: str) -> None:
        if key == self._name:
            return
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key == self._name

    def __iter__(self) -> Iterator[str]:
        return iter((self._name,))

    def __len__(self) -> int:
        return 1

    def __repr__(self) -> str:
        return f"{{{self._name!r}: None}}"


def _result_names(save_as: Mapping[str, object]) -> Collection[str]:
    """The names an atom's result is saved under: the keys of its ``save_as``.

    A :class:`_OneName` gives its one name without being iterated (its ``__iter__``
    is Python code: a call and an iterator per atom); any other mapping gives its
    C-level key view. Two loops over every atom of a flow, where a call per atom
    measures, spell this out inline with a comment pointing here: the compiler's
    provider index and ``RunState.providers``.
    """
    return (save_as._name,) if type(save_as) is _OneName else save_as.keys()


#: Stand-ins for the symbols of a ``rebind`` dict (and for the names in a
#: ``requires`` list) in a cached profile, filled in per atom. No symbol a flow
#: uses contains a NUL. Grown on demand, up to :data:`_REQUIRES_SLOTS`.
_SLOTS: list[str] = [f"\x00flowkit-rebind-{i}\x00" for i in range(8)]
_SLOT_INDEX: dict[str, int] = {slot: i for i, slot in enumerate(_SLOTS)}


class _SymbolEdits:
    """The atoms whose ``provides`` or ``requires`` was set by hand (after they were made).

    A graph flow indexes the symbols of what it holds as items are added (so adding
    stays linear in the number of items), while TaskFlow reads every item's current
    symbols at each add. No flow is told when an atom it holds is edited (an atom
    knows none of its flows: a list per atom would cost every atom of a big flow),
    so the edits are noted here, and each graph flow catches up at its next add or
    compile: it counts the edits it has seen, and checks the ones since against
    its own atoms (an edit of an atom in no flow yet, the usual case, costs one
    look-up per flow). Each note keeps the symbols the atom had before, so that a
    flow can take exactly those out of its indexes. Only the latest
    :data:`_KEPT_EDITS` notes are kept (an atom weakly: a note keeps no atom alive);
    a flow that missed more re-reads all its atoms.
    """

    __slots__ = ("_recent", "count")

    def __init__(self) -> None:
        #: How many edits were made, ever.
        self.count = 0
        self._recent: deque[tuple[weakref.ref[Atom], frozenset[str] | None, frozenset[str] | None]]
        self._recent = deque(maxlen=_KEPT_EDITS)

    def note(
        self, atom: Atom, old_provides: frozenset[str] | None, old_requires: frozenset[str] | None
    ) -> None:
        """Record that ``atom``'s symbols are about to be set by hand; None: that one is left as is."""
        import weakref  # only once an atom is edited (a one-task run never imports it)

        self.count += 1
        self._recent.append((weakref.ref(atom), old_provides, old_requires))

    def since(self, seen: int) -> list[_SymbolEdit] | None:
        """The edits after the first ``seen`` (oldest first), or None if not all are kept."""
        missed = self.count - seen
        recent = self._recent
        if not 0 <= missed <= len(recent):
            return None
        found = []
        # From the newest back (a deque is walked from one end: no pass over the older notes).
        for ref, old_provides, old_requires in itertools.islice(reversed(recent), missed):
            atom = ref()
            if atom is not None:
                found.append(_SymbolEdit(atom, old_provides, old_requires))
        found.reverse()
        return found


class _SymbolEdit:
    """One hand edit of an atom's symbols, as :class:`_SymbolEdits` reports it to flows.

    A plain class: a NamedTuple's annotations would be compiled as the module loads.
    """

    __slots__ = ("atom", "old_provides", "old_requires")

    def __init__(
        self, atom: Atom, old_provides: frozenset[str] | None, old_requires: frozenset[str] | None
    ) -> None:
        self.atom = atom
        #: What the atom provided before the edit (None: the edit left ``provides`` as is).
        self.old_provides = old_provides
        #: What it required before the edit (None: the edit left ``requires`` as is).
        self.old_requires = old_requires


#: How many edited atoms :data:`_symbol_edits` remembers.
_KEPT_EDITS = 256
#: The edits of atoms' symbols made by hand (see :class:`_SymbolEdits`).
_symbol_edits = _SymbolEdits()

#: How many symbols of a ``rebind`` dict are stood in for (a longer one is cached as is).
_REBIND_SLOTS = 8
#: How many names of a ``requires`` list are stood in for. A longer list is a fan-in
#: atom's, nearly always one of a kind: stand-ins would cost it three more passes
#: over its names (and a thousand stand-ins made once) for a profile never shared.
_REQUIRES_SLOTS = 64
_SLOT_RUNS: dict[int, tuple[str, ...]] = {}


def _slots(count: int) -> tuple[str, ...]:
    """The first ``count`` stand-ins (made when first needed)."""
    found = _SLOT_RUNS.get(count)
    if found is None:
        while len(_SLOTS) < count:
            slot = f"\x00flowkit-rebind-{len(_SLOTS)}\x00"
            _SLOT_INDEX[slot] = len(_SLOTS)
            _SLOTS.append(slot)
        found = _SLOT_RUNS[count] = tuple(_SLOTS[:count])
    return found


#: (argument, index of the argument's name in the atom's values or -1, index of
#: its symbol there or -1, fixed symbol). Only ``requires`` stands in for arguments.
_Plan = tuple[tuple[str, int, int, str], ...]


def _plan_of(mapping: Mapping[str, str]) -> _Plan:
    index = _SLOT_INDEX.get
    return tuple((arg, index(arg, -1), index(sym, -1), sym) for arg, sym in mapping.items())


def _fill(plan: _Plan, values: tuple[str, ...]) -> Mapping[str, str]:
    if len(plan) == 1:
        ((arg, a, i, sym),) = plan
        return _OnePair(values[a] if a >= 0 else arg, values[i] if i >= 0 else sym)
    return MappingProxyType(
        {values[a] if a >= 0 else arg: values[i] if i >= 0 else sym for arg, a, i, sym in plan}
    )


class _OnePair(Mapping[str, str]):
    """A read-only mapping of one argument to one symbol (``rebind={"x": "x17"}``).

    Such a mapping is different for nearly every atom of a big flow, so it is a
    two-slot object rather than a mapping proxy over a dict (a third of the memory).
    """

    __slots__ = ("_arg", "_symbol")

    def __init__(self, arg: str, symbol: str) -> None:
        self._arg = arg
        self._symbol = symbol

    def __getitem__(self, key: str) -> str:
        if key == self._arg:
            return self._symbol
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key == self._arg

    def __iter__(self) -> Iterator[str]:
        return iter((self._arg,))

    def __len__(self) -> int:
        return 1

    def items(self) -> ItemsView[str, str]:
        return _OnePairItems(self)

    def __repr__(self) -> str:
        return f"{{{self._arg!r}: {self._symbol!r}}}"


class _OnePairItems(ItemsView[str, str]):
    """The items of a :class:`_OnePair`, iterated without a generator (the compiler reads them)."""

    __slots__ = ()

    _mapping: _OnePair

    def __iter__(self) -> Iterator[tuple[str, str]]:
        pair = self._mapping
        return iter(((pair._arg, pair._symbol),))


#: Signature keys of an atom class -> every argument name its execute and revert take.
_ARG_NAMES: dict[tuple[Any, Any], frozenset[str]] = {}


def _arg_names(signatures: tuple[Any, Any]) -> frozenset[str]:
    found = _ARG_NAMES.get(signatures)
    if found is None:
        names = set(reflection.inspect_key(*signatures[0]).all)
        if signatures[1] is not None:
            names.update(reflection.inspect_key(*signatures[1]).all)
        make_room(_ARG_NAMES)
        found = _ARG_NAMES[signatures] = frozenset(names)
    return found


#: Rebound argument names -> the rebind key with stand-in symbols.
_SLOTTED: dict[tuple[str, ...], _RebindKey] = {}

#: Mappings filled in lately, so atoms spelled alike still share theirs. Cleared
#: when full: an atom spelled like no other gains nothing from being remembered.
_FILLED: dict[tuple[_Profile, tuple[str, ...]], tuple[Mapping[str, str], Mapping[str, str]]] = {}
_FILLED_MAX = 1024


def _rebind_key(atom_name: object, rebind: Any) -> _RebindKey:
    if rebind is None:
        return None
    if isinstance(rebind, (list, tuple)):
        return ("seq", tuple(_check_symbol(atom_name, s, "rebind") for s in rebind))
    if isinstance(rebind, Mapping):
        return (
            "map",
            tuple(
                (_check_symbol(atom_name, a, "rebind"), _check_symbol(atom_name, s, "rebind"))
                for a, s in rebind.items()
            ),
        )
    raise TypeError(
        f"Invalid rebind value '{rebind}' ({type(rebind)}): atom {atom_name} needs a list, tuple or dict"
    )


def _requires_key(atom_name: object, requires: Any) -> tuple[str, ...] | None:
    if requires is None:
        return None
    if isinstance(requires, str):
        return (requires,)
    names = tuple(requires)
    for name in names:
        if type(name) is not str:
            _check_symbol(atom_name, name, "requires")
    return names


class _Profile:
    """The argument mappings of an atom class (or functor), shared by atoms spelled alike."""

    __slots__ = ("optional", "plans", "rebind", "requires", "revert_optional", "revert_rebind", "single")

    def __init__(
        self,
        rebind: dict[str, str],
        revert_rebind: dict[str, str],
        requires: frozenset[str],
        optional: frozenset[str],
        revert_optional: frozenset[str],
    ) -> None:
        # Atoms spelled alike share these objects (flows of 100,000 atoms are common),
        # which is why atoms treat their mappings as read-only. The dicts are the
        # profile's own (made by _method_mapping for it), so they are not copied.
        self.rebind: Mapping[str, str] = MappingProxyType(rebind)
        self.revert_rebind = (
            self.rebind
            if revert_rebind is rebind or (revert_rebind == rebind and list(revert_rebind) == list(rebind))
            else MappingProxyType(revert_rebind)
        )
        self.requires = requires
        self.optional = optional
        self.revert_optional = optional if revert_optional == optional else revert_optional
        #: For a profile whose rebind symbols are :data:`_SLOTS`: how to fill them in.
        self.plans: tuple[_Plan, _Plan | None] | None = None
        #: Set by :meth:`template` when execute and revert share one mapping of one
        #: argument to the first stand-in: that argument (``rebind={"x": "x17"}``),
        #: or the first stand-in itself when the name is the argument too
        #: (``requires=["d17"]``).
        self.single: str | None = None

    def template(self) -> tuple[_Plan, _Plan | None]:
        """``(execute plan, revert plan or None when revert shares execute's mapping)``."""
        plans = self.plans
        if plans is None:
            execute = _plan_of(self.rebind)
            revert = None if self.revert_rebind is self.rebind else _plan_of(self.revert_rebind)
            if revert is None and len(execute) == 1 and execute[0][1] <= 0 and execute[0][2] == 0:
                self.single = execute[0][0]
            plans = self.plans = (execute, revert)
        return plans


def _method_mapping(
    spec: reflection.CallableArgs,
    method: str,
    *,
    requires: tuple[str, ...] | None,
    rebind: _RebindKey,
    auto_extract: bool,
    ignore: tuple[str, ...],
) -> tuple[dict[str, str], frozenset[str], frozenset[str]]:
    """Work out which symbol feeds each argument of one method (TaskFlow's rules).

    Required arguments (minus ``ignore``) map to themselves when
    ``auto_extract``; ``requires`` adds names passed as keywords; ``rebind``
    renames (a sequence pairs up with the required arguments in order, extra
    entries map to themselves). Arguments with defaults not otherwise bound are
    optional. Rebinding an optional argument makes it required, as in TaskFlow.

    Returns:
        ``(argument -> symbol, required first; required symbols, optional arguments)``.
    """
    req_args, candidates, named = _shape(spec, ignore)
    required: dict[str, str] = dict(zip(req_args, req_args, strict=True)) if auto_extract else {}
    if requires:
        required.update(zip(requires, requires, strict=True))
    if rebind is not None:
        kind, values = rebind
        if kind == "seq":
            required.update(zip(req_args, values, strict=False))
            required.update((name, name) for name in values[len(req_args) :])
        else:
            required.update(values)
    optional: dict[str, str] = {}
    if auto_extract:
        optional = {arg: arg for arg in candidates if arg not in required}
    if spec.positional_only:
        # Engines pass arguments by keyword: such an argument could never be given.
        # An optional one is simply never passed (its default applies).
        stuck = [arg for arg in spec.positional_only if arg in required]
        if stuck:
            raise _MappingError(
                f"Positional-only arguments (before '/') cannot be passed by keyword, "
                f"which is how engines call the {method} method of atom",
                stuck,
            )
        for arg in spec.positional_only:
            optional.pop(arg, None)
    if not spec.accepts_kwargs:
        extra = [arg for arg in required if arg not in named]
        if extra:
            raise _MappingError("Extra arguments given to atom", extra, f" (to its {method} method)")
    missing = [arg for arg in req_args if arg not in required]
    if missing:
        raise _MappingError("Missing arguments for atom", missing, f" (of its {method} method)")
    frozen_required, frozen_optional = _frozen(required.values()), _frozen(optional.values())
    # Required arguments first, then optional ones (none is both): one dict, made once.
    required.update(optional)
    return required, frozen_required, frozen_optional


@functools.lru_cache(maxsize=1024)
def _shape(
    spec: reflection.CallableArgs, ignore: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...], frozenset[str]]:
    """A signature's required and optional argument names less ``ignore``, and all its names.

    Cached: most atoms of a flow share a class, and so a signature.
    """
    required = tuple(arg for arg in spec.required if arg not in ignore)
    candidates = tuple(arg for arg in spec.all if arg not in ignore)
    return required, candidates, frozenset(spec.all)


_EMPTY: frozenset[str] = frozenset()


def _frozen(names: Iterable[str]) -> frozenset[str]:
    """A frozenset of ``names``; the one shared empty set when there are none."""
    found = frozenset(names)
    return found if found else _EMPTY


class _KnownClass:
    """What the first atom of an atom class worked out, for the atoms of that class made after it.

    Kept on the class itself (``_flowkit_signatures``), so it goes with the class.

    Attributes:
        execute: the class's ``execute`` it was worked out from; a different one
            (a test patched it) makes the whole record stale.
        revert: likewise for ``revert``.
        signatures: the signature keys of both (see :func:`reflection.signature_key`).
        ignore: the class's ``_ignore_args`` at the time (also checked).
        shortcuts: the profile of each common spelling seen so far, keyed by the
            argument names of its ``rebind`` dict (None: no rebind), for atoms
            given nothing but a name, ``provides``, ``inject``, run options and
            at most that ``rebind``; or by the number of names in ``requires``
            for atoms given that and no ``rebind``. A big flow makes its atoms
            alike by the hundred thousand, and this spares each one building and
            hashing the full profile key.
        arg_names: every argument name of execute and revert (a ``requires``
            shortcut holds only for names none of these is).
    """

    __slots__ = ("arg_names", "execute", "ignore", "owner", "revert", "shortcuts", "signatures")

    def __init__(
        self, owner: type, execute: Any, revert: Any, signatures: tuple[Any, Any], ignore: tuple[str, ...]
    ) -> None:
        #: The class it was worked out for: a subclass inherits the attribute, not the record.
        self.owner = owner
        self.execute = execute
        self.revert = revert
        self.signatures = signatures
        self.ignore = ignore
        self.shortcuts: dict[tuple[str, ...] | int | None, _Profile] = {}
        self.arg_names: frozenset[str] = frozenset()


#: ``save_as`` of an atom that provides nothing.
_NO_NAMES: Mapping[str, int | str | None] = MappingProxyType({})


class _ProfileKey(Record):
    """Everything an atom's argument mappings depend on; hashable, so they can be cached.

    Atoms build the plain tuple (cheaper); :func:`_build_profile` names its parts.
    """

    exec_key: tuple[Callable[..., Any], bool]
    revert_key: tuple[Callable[..., Any], bool] | None
    requires: tuple[str, ...] | None
    rebind: _RebindKey
    revert_requires: tuple[str, ...] | None
    revert_rebind: _RebindKey
    auto_extract: bool
    ignore: tuple[str, ...]


def _build_profile(key: tuple[Any, ...]) -> _Profile:
    key = _ProfileKey(*key)
    exec_spec = reflection.inspect_key(*key.exec_key)
    exec_rebind, exec_required, exec_optional = _method_mapping(
        exec_spec,
        "execute",
        requires=key.requires,
        rebind=key.rebind,
        auto_extract=key.auto_extract,
        ignore=key.ignore,
    )
    if key.revert_key is None:
        return _Profile(exec_rebind, exec_rebind, exec_required, exec_optional, exec_optional)
    revert_spec = reflection.inspect_key(*key.revert_key)
    revert_ignore = key.ignore + _REVERT_SPECIAL_ARGS
    if (
        key.revert_requires == key.requires
        and key.revert_rebind == key.rebind
        and revert_spec.accepts_kwargs == exec_spec.accepts_kwargs
        and revert_spec.positional_only == exec_spec.positional_only
        and _shape(revert_spec, revert_ignore) == _shape(exec_spec, key.ignore)
    ):
        # Everything _method_mapping reads is alike (a **kwargs execute with the
        # default revert, given a long ``requires``): the same answer, not worked
        # out twice.
        return _Profile(exec_rebind, exec_rebind, exec_required, exec_optional, exec_optional)
    revert_rebind, revert_required, revert_optional = _method_mapping(
        revert_spec,
        "revert",
        requires=key.revert_requires,
        rebind=key.revert_rebind,
        auto_extract=key.auto_extract,
        ignore=revert_ignore,
    )
    requires = exec_required if revert_required <= exec_required else exec_required | revert_required
    return _Profile(exec_rebind, revert_rebind, requires, exec_optional, revert_optional)


_cached_profile = functools.lru_cache(maxsize=4096)(_build_profile)


def _lookup_profile(key: tuple[Any, ...]) -> _Profile:
    try:
        return _cached_profile(key)
    except TypeError:
        try:
            hash(key)
        except TypeError:
            # An unhashable callable object (as a functor) cannot key the cache.
            return _build_profile(key)
        raise


class Atom(metaclass=abc.ABCMeta):
    """A named unit of work with declared inputs and outputs.

    Args:
        name: a name unique within the flow it runs in; defaults to the class's
            ``module.ClassName``.
        provides: the symbol(s) the result is stored under: a str stores the
            whole result, a list/tuple stores each item of an indexable result by
            position, a set stores each key of a dict result. Defaults to the
            class's ``default_provides``.
        requires: extra required symbols, passed to ``execute`` as keywords.
        auto_extract: read the required and optional arguments from the
            signature of ``execute``/``revert``.
        rebind: fetch arguments under other symbol names: a list renames the
            required arguments in order, a dict maps argument -> symbol.
        inject: argument -> value pairs given to this atom only; injected names
            are not required from anyone else.
        ignore_list: argument names not to treat as requirements.
        revert_rebind: ``rebind`` for ``revert`` (defaults to ``rebind``).
        revert_requires: ``requires`` for ``revert`` (defaults to ``requires``).
        timeout: seconds ``execute`` may run before the atom fails with
            :class:`~flowkit.exceptions.TaskTimeout` (default: the class's
            ``timeout``, else the engine's ``default_timeout``; ``math.inf``
            opts out of the engine's default). See ``doc/timeouts.rst``.
        concurrency_key: the name of a limit the engine's
            ``concurrency_limits`` sets: at most that many atoms sharing the key
            run at once. See ``doc/limits.rst``.
        retry: run this atom under its own retry controller: a
            :class:`~flowkit.retry.Retry`, or an int ``n`` for ``Times(n)``, as if
            it sat alone in a linear flow with that ``retry=``.

    Attributes:
        name: see above.
        version: a ``(major, minor)`` tuple stored with results; a class may
            override it.
        priority: among atoms ready at the same time, higher runs first.
        inject: see above (``None`` when not given).
        provides: frozenset of symbols this atom's result provides.
        save_as: provided symbol -> how to extract it from the result (``None``
            for the whole result, an int index, or a str key), in order.
        rebind: execute argument -> symbol it is fetched from, for every
            argument the engine passes (required first, then optional).
        requires: symbols required by ``execute`` and ``revert`` together.
        optional: execute arguments with defaults, passed only when available.
        revert_rebind: like ``rebind``, for ``revert``'s own arguments.
        revert_optional: like ``optional``, for ``revert``.
        timeout: see above (``None``: none of its own).
        concurrency_key: see above (``None``: not limited).
        retry: see above (``None``: none of its own).

    Raises:
        ValueError: when ``rebind``/``requires`` name arguments the method
            cannot take, when required arguments are left unbound, or when
            ``provides`` names a symbol twice.
        TypeError: when ``provides`` or ``rebind`` has an unsupported type.
        flowkit.exceptions.InvalidAtomOption: a bad ``timeout``,
            ``concurrency_key`` or ``retry`` (also a ValueError).
    """

    priority: ClassVar[int] = 0
    default_provides: ClassVar[ProvidesSpec] = None
    version: tuple[int, ...] | str = (1, 0)
    # Run options the engine reads (a class may set them too; the engine checks
    # class values when it loads the flow, since no constructor sees them).
    timeout: float | None = None
    concurrency_key: str | None = None
    retry: Any = None

    #: Argument names the engine fills in itself; never requirements.
    _ignore_args: ClassVar[tuple[str, ...]] = ()
    #: Set on each subclass when its first atom is made (see :class:`_KnownClass`).
    _flowkit_signatures: ClassVar[_KnownClass | None] = None
    #: Nothing to extract from the result: the common ``provides="x"`` (or no
    #: ``provides``) leaves it at this class default instead of setting one per atom.
    _extraction: _Extraction = ()

    name: str
    inject: dict[str, Any] | None
    save_as: Mapping[str, int | str | None]
    rebind: Mapping[str, str]
    optional: frozenset[str]
    revert_rebind: Mapping[str, str]
    revert_optional: frozenset[str]

    def __init__(
        self,
        name: str | None = None,
        provides: ProvidesSpec = None,
        requires: str | Iterable[str] | None = None,
        auto_extract: bool = True,
        rebind: RebindSpec = None,
        inject: dict[str, Any] | None = None,
        ignore_list: Iterable[str] | None = None,
        revert_rebind: RebindSpec = None,
        revert_requires: str | Iterable[str] | None = None,
        *,
        timeout: float | None = None,
        concurrency_key: str | None = None,
        retry: Any = None,
    ) -> None:
        self.name = reflection.get_class_name(self) if name is None else name
        self.inject = inject
        if timeout is not None or concurrency_key is not None or retry is not None:
            self._set_run_options(timeout, concurrency_key, retry)
        if provides is None:
            provides = self.default_provides
        if type(provides) is str:
            # The whole result under one name: nothing to extract, nothing to cache.
            self.save_as = _OneName(provides)
        elif provides is not None:
            self._set_provides(provides)
        else:
            self.save_as = _NO_NAMES
        cls = type(self)
        # What the class's first atom worked out, kept on the class (checked against
        # the methods, which a test may have patched since).
        # Read as an attribute (no mapping proxy made per atom); a subclass inherits
        # it, hence the owner check.
        known = cls._flowkit_signatures
        if (
            known is not None
            and known.owner is cls
            and known.execute is cls.execute
            and known.revert is cls.revert
        ):
            if (
                revert_requires is None
                and revert_rebind is None
                and ignore_list is None
                and auto_extract is True
                and known.ignore is cls._ignore_args
            ):
                # The common spellings: the profile of the class's earlier atom spelled
                # alike, found by the argument names of a small rebind dict (None: no
                # rebind) or by the number of names in ``requires``.
                if requires is None and rebind is None:
                    profile = known.shortcuts.get(None)
                    if profile is not None:
                        # _apply_profile(profile) for the commonest atom, inline: made by
                        # the hundred thousand.
                        self.rebind = profile.rebind
                        self.revert_rebind = profile.revert_rebind
                        if inject:
                            injected = inject.keys()
                            self.optional = profile.optional.difference(injected)
                            self.revert_optional = profile.revert_optional.difference(injected)
                        else:
                            self.optional = profile.optional
                            self.revert_optional = profile.revert_optional
                            self._requires = profile.requires
                        return
                elif requires is None and type(rebind) is dict:
                    profile = known.shortcuts.get(tuple(rebind))
                    if profile is not None:
                        symbols = tuple(rebind.values())
                        for text in symbols:
                            if type(text) is not str:
                                _check_symbol(self.name, text, "rebind")
                        self._apply_profile(profile, symbols)
                        return
                elif rebind is None:
                    names = _requires_key(self.name, requires) or ()
                    if not names:
                        # ``requires=[]`` asks for nothing more than no ``requires``.
                        profile = known.shortcuts.get(None)
                        if profile is not None:
                            self._apply_profile(profile)
                            return
                    profile = known.shortcuts.get(len(names))
                    if (
                        profile is not None
                        and (len(names) == 1 or len(set(names)) == len(names))
                        and known.arg_names.isdisjoint(names)
                    ):
                        self._apply_profile(profile, names)
                        return
            signatures = known.signatures
        else:
            execute, revert = self._arg_sources()
            signatures = (
                reflection.signature_key(execute),
                None if revert is None else reflection.signature_key(revert),
            )
            known = None
            if cls._arg_sources is Atom._arg_sources and signatures[0][1]:
                known = _KnownClass(cls, cls.execute, cls.revert, signatures, cls._ignore_args)
                cls._flowkit_signatures = known
        ignore = self._ignore_args + tuple(ignore_list) if ignore_list else self._ignore_args
        values: tuple[str, ...] | None = None
        # Whether ``values`` stand in for the names of ``requires`` (else for rebind symbols).
        slotted_requires = False
        if requires is None and rebind is None and revert_requires is None and revert_rebind is None:
            req_key = revert_req_key = rebind_key = revert_rebind_key = None
        else:
            req_key = _requires_key(self.name, requires)
            revert_req_key = _requires_key(self.name, revert_requires) if revert_requires else req_key
            if (
                rebind is None
                and revert_rebind is None
                and revert_req_key is req_key
                and req_key
                and len(req_key) <= _REQUIRES_SLOTS
                and known is not None
                and len(set(req_key)) == len(req_key)
                and _arg_names(signatures).isdisjoint(req_key)
            ):
                # ``requires=["d3", "d17"]`` on a **kwargs task: names no other atom
                # uses, and none of the signature's, so the profile is cached with
                # stand-ins (for argument and symbol alike) and the names filled in.
                values, slotted_requires = req_key, True
                req_key = revert_req_key = _slots(len(values))
                rebind_key = revert_rebind_key = None
            elif revert_rebind is None and type(rebind) is dict and 0 < len(rebind) <= _REBIND_SLOTS:
                # A rebind dict usually names symbols no other atom's does (``x17``):
                # the profile is cached with stand-ins and the symbols filled in.
                values = tuple(rebind.values())
                args = tuple(rebind)
                for text in values + args:
                    if type(text) is not str:
                        _check_symbol(self.name, text, "rebind")
                rebind_key = _SLOTTED.get(args)
                if rebind_key is None:
                    rebind_key = _SLOTTED[args] = ("map", tuple(zip(args, _slots(len(args)), strict=True)))
                revert_rebind_key = rebind_key
            else:
                rebind_key = _rebind_key(self.name, rebind)
                revert_rebind_key = _rebind_key(self.name, revert_rebind) if revert_rebind else rebind_key
        key = (
            signatures[0],
            signatures[1],
            req_key,
            rebind_key,
            revert_req_key,
            revert_rebind_key,
            auto_extract is True or bool(auto_extract),
            ignore,
        )
        try:
            try:
                try:
                    profile = _cached_profile(key)
                except TypeError:
                    profile = _lookup_profile(key)
            except _MappingError:
                if not slotted_requires:
                    raise
                # Say what is wrong with the real names, not the stand-ins.
                real = _requires_key(self.name, requires)
                _lookup_profile((key[0], key[1], real, None, real, None, key[6], key[7]))
                raise
        except _MappingError as err:
            raise ValueError(f"{err.what} {self.name}: {err.names}{err.detail}") from None
        self._apply_profile(profile, values)
        if (
            known is not None
            and (rebind is None or (values is not None and not slotted_requires))
            and (requires is None or (rebind is None and req_key == ()))
            and revert_requires is None
            and revert_rebind is None
            and ignore_list is None
            and auto_extract is True
        ):
            # The next atom of this class spelled alike takes the shortcut above.
            known.shortcuts[None if rebind is None else tuple(rebind)] = profile
        elif (
            slotted_requires
            and known is not None
            and revert_requires is None
            and ignore_list is None
            and auto_extract is True
        ):
            known.arg_names = _arg_names(signatures)
            known.shortcuts[len(values or ())] = profile

    def _set_run_options(self, timeout: Any, concurrency_key: Any, retry: Any) -> None:
        if timeout is not None:
            self.timeout = check_timeout(self.name, timeout)
        if concurrency_key is not None:
            self.concurrency_key = check_concurrency_key(self.name, concurrency_key)
        if retry is not None:
            self.retry = check_retry(self.name, retry)

    def _arg_sources(self) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
        """Return the callables whose signatures define ``execute``'s and ``revert``'s arguments.

        Adapters that wrap other callables (see :class:`~flowkit.task.FunctorTask`)
        return those instead; ``None`` for revert means "same as execute".
        """
        return self.execute, self.revert

    def _set_provides(self, provides: Any) -> None:
        if type(provides) is str:
            # The whole result under one name: nothing to extract, nothing to cache.
            self._extraction = ()
            self.save_as = _OneName(provides)
            return
        try:
            extraction, names = _save_as(_provides_key(self.name, provides))
        except _MappingError as err:
            raise ValueError(f"{err.what} of atom {self.name}: {err.names}") from None
        self._extraction = extraction
        self.save_as = _save_as_view(extraction)
        self._provides = names

    def _apply_profile(self, profile: _Profile, values: tuple[str, ...] | None = None) -> None:
        if values is None:
            self.rebind = profile.rebind
            self.revert_rebind = profile.revert_rebind
        elif profile.plans is not None and profile.single is not None:
            # One argument, one symbol: a two-slot mapping different for nearly every
            # atom, cheaper to make than to look up in _FILLED.
            arg = profile.single
            symbol = values[0]
            self.rebind = self.revert_rebind = _OnePair(symbol if arg == _SLOTS[0] else arg, symbol)
        else:
            key = (profile, values)
            filled = _FILLED.get(key)
            if filled is None:
                execute, revert = profile.template()
                rebind = _fill(execute, values)
                filled = (rebind, rebind if revert is None else _fill(revert, values))
                if len(_FILLED) >= _FILLED_MAX:
                    _FILLED.clear()
                _FILLED[key] = filled
            self.rebind, self.revert_rebind = filled
        if self.inject:
            injected = self.inject.keys()
            self.optional = profile.optional.difference(injected)
            self.revert_optional = profile.revert_optional.difference(injected)
        else:
            self.optional = profile.optional
            self.revert_optional = profile.revert_optional
            if values is None:
                # No stand-ins and nothing injected: the profile's required symbols
                # are this atom's own (what _derive_requires would work out again
                # when a graph flow first reads them), and shared, so free to keep.
                self._requires = profile.requires

    # ``provides`` and ``requires`` are worked out when first read: the engine needs
    # neither (it reads ``save_as`` and ``rebind``), and a linear flow of 100,000
    # atoms would pay two sets per atom for them. Kept in plain attributes (None
    # on the class until set): reading ``self.__dict__`` would make CPython build
    # a dict for every atom.
    _provides: frozenset[str] | None = None
    _requires: frozenset[str] | None = None

    @property
    def provides(self) -> frozenset[str]:
        found = self._provides
        if found is None:
            found = self._provides = frozenset(_result_names(self.save_as))
        return found

    @provides.setter
    def provides(self, value: frozenset[str]) -> None:
        _symbol_edits.note(self, self.provides, None)
        self._provides = value

    @property
    def requires(self) -> frozenset[str]:
        found = self._requires
        if found is None:
            found = self._requires = self._derive_requires()
        return found

    @requires.setter
    def requires(self, value: frozenset[str]) -> None:
        _symbol_edits.note(self, None, self.requires)
        self._requires = value

    def _derive_requires(self) -> frozenset[str]:
        """The symbols bound to required arguments of ``execute`` and ``revert``, less injected ones."""
        optional, rebind = self.optional, self.rebind
        if not optional and not self.inject and rebind is self.revert_rebind and not self.revert_optional:
            # Every argument required, execute and revert alike (the usual atom): the symbols.
            if type(rebind) is _OnePair:
                return frozenset((rebind._symbol,))
            return _frozen(rebind.values())
        found = {sym for arg, sym in self.rebind.items() if arg not in optional}
        if self.revert_rebind is not self.rebind or self.revert_optional is not optional:
            revert_optional = self.revert_optional
            found.update(sym for arg, sym in self.revert_rebind.items() if arg not in revert_optional)
        if self.inject:
            found.difference_update(self.inject)
        return _frozen(found)

    def pre_execute(self) -> None:  # noqa: B027 - optional hook, a no-op unless overridden
        """Run just before ``execute``; a hook for shared setup in a base class."""

    @abc.abstractmethod
    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Do the work; the return value is stored under ``provides``.

        The engine calls this with keyword arguments named as in ``rebind``.
        The result should be JSON-serialisable so it can be persisted.
        """

    def post_execute(self) -> None:  # noqa: B027 - optional hook, a no-op unless overridden
        """Run just after ``execute``, whether it succeeded or not."""

    def pre_revert(self) -> None:  # noqa: B027 - optional hook, a no-op unless overridden
        """Run just before ``revert``."""

    def revert(self, *args: Any, **kwargs: Any) -> Any:  # noqa: B027 - undoing nothing is a valid default
        """Undo what ``execute`` did.

        Besides the arguments in ``revert_rebind``, the engine passes
        ``result`` (what ``execute`` returned, or its failure) and
        ``flow_failures`` (the failures that caused the revert) by keyword.
        """

    def post_revert(self) -> None:  # noqa: B027 - optional hook, a no-op unless overridden
        """Run just after ``revert``."""

    def _version_string(self) -> str:
        version = self.version
        if isinstance(version, (list, tuple)):
            return ".".join(str(part) for part in version)
        return str(version)

    def __str__(self) -> str:
        return f'"{self.name}=={self._version_string()}"'

    def __repr__(self) -> str:
        return f"<{reflection.get_class_name(self)} {self}>"

    # Pickling (process pools ship atoms to other processes): the read-only mapping
    # views cannot be pickled, and neither an engine's per-run progress hook nor
    # listeners registered in this process mean anything elsewhere.
    _VIEWS: ClassVar[tuple[str, ...]] = ("rebind", "revert_rebind", "save_as")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in self._VIEWS:
            if key in state:
                state[key] = dict(state[key])
        state.pop("_progress_sink", None)
        state.pop("_own_notifier", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key in self._VIEWS:
            if key in state:
                state[key] = MappingProxyType(state[key])
        self.__dict__.update(state)


# -- run options -------------------------------------------------------------------
# Checked when an atom is made with them and again when an engine loads the flow
# (class attributes and later assignments bypass the constructor).


def check_timeout(atom_name: str, value: Any) -> float:
    """Return ``value`` as float seconds, or raise naming the atom.

    Raises:
        flowkit.exceptions.InvalidAtomOption: not a number above zero
            (``math.inf`` is allowed: no timeout).
    """
    from flowkit import exceptions as exc

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise exc.InvalidAtomOption(
            f"atom '{atom_name}' has timeout={value!r}; a timeout is a number of seconds above zero "
            "(math.inf for none). flowkit reads a task's timeout attribute as the time its execute "
            "may take (doc/timeouts.rst): a task that uses the name for something else must rename it",
            atom=atom_name,
            option="timeout",
            value=value,
        )
    return float(value)


def check_concurrency_key(atom_name: str, value: Any) -> str:
    """Return ``value`` if it is a non-empty str, or raise naming the atom.

    Raises:
        flowkit.exceptions.InvalidAtomOption: anything else.
    """
    from flowkit import exceptions as exc

    if not isinstance(value, str) or not value:
        raise exc.InvalidAtomOption(
            f"atom '{atom_name}' has concurrency_key={value!r}; it must be a non-empty str. flowkit "
            "reads a task's concurrency_key attribute as the name of its engine limit (doc/limits.rst): "
            "a task that uses the name for something else must rename it",
            atom=atom_name,
            option="concurrency_key",
            value=value,
        )
    return value


def check_switch(atom_name: str, option: str, value: Any, doc: str) -> bool | None:
    """Return a task's on/off option (``cache``, ``validate_types``...) if it is a bool or None.

    The engines read these as ``is True`` or "is it a bool?": ``"yes"``, ``"no"``
    or ``1`` would be taken as unset without a word (``"no"`` even as on, read
    by truth). So anything else is refused, naming the task.

    Args:
        doc: the page that says what the option does, for the message.

    Raises:
        flowkit.exceptions.InvalidAtomOption: naming the atom, the option and the value.
    """
    if value is None or isinstance(value, bool):
        return value
    from flowkit import exceptions as exc

    raise exc.InvalidAtomOption(
        f"atom '{atom_name}' has {option}={value!r}; flowkit reads a task's {option} attribute as "
        f"a switch, True or False ({doc}): a task that uses the name for something else must rename it",
        atom=atom_name,
        option=option,
        value=value,
    )


def check_retry(atom_name: str, value: Any) -> Any:
    """Return ``value`` if it is a Retry or an int of attempts from 1, or raise naming the atom.

    Raises:
        flowkit.exceptions.InvalidAtomOption: anything else.
    """
    from flowkit import exceptions as exc
    from flowkit.retry import Retry

    if isinstance(value, Retry) or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise exc.InvalidAtomOption(
        f"atom '{atom_name}' has retry={value!r}; give a flowkit.retry.Retry or a number of "
        "attempts from 1 (retry=3 means retry=Times(3))",
        atom=atom_name,
        option="retry",
        value=value,
    )
