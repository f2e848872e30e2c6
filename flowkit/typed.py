"""Typed task inputs and outputs: an atom's ``execute`` annotations are its contract.

``def execute(self, amount: float, rate: float) -> Price`` says that ``amount``
and ``rate`` must be floats and that the result is a ``Price``. Three things use
that contract:

* the compiler's check (:func:`check_compilation`): a provider whose declared
  result type cannot satisfy a consumer's declared argument type is a
  :class:`~flowkit.exceptions.TypeMismatch` before anything runs. Only a
  *certain* mismatch is an error: an unannotated side, ``Any``, a type variable
  or a form this module does not understand is accepted (untyped stays unchecked);
* run-time validation (:func:`validator_for`): a result that is not of its
  declared type fails its atom with :class:`~flowkit.exceptions.InvalidResult`,
  so the flow reverts. It is on by default only for pydantic models, and turned
  on or off per task (``validate_types`` on the class or instance) or per engine
  (the ``validate_types=`` option);
* declarative specs, which check constant inputs against the annotations.

With pydantic installed (``pip install 'flowkit[typed]'``) a model type is
validated by pydantic and a mapping is turned into the model (which is how a
model comes back from JSON: persistence, workers). Without it, values are
checked with ``isinstance`` for the basic types: classes, ``None``, unions,
``Literal``, and the element types of ``list``/``set``/``tuple``/``dict`` and
their abstract bases. Anything else is accepted.

Cost: contracts are read once per function (cached); an atom whose ``execute``
has no annotations costs one dictionary lookup at compile time and nothing at
run time.
"""

from __future__ import annotations

import collections.abc as cabc
import enum
import functools
import operator
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Final

from flowkit import exceptions as exc
from flowkit._utils import reflection
from flowkit._utils.class_caches import make_room
from flowkit.atom import Atom, check_switch

__all__ = [
    "UNTYPED",
    "Contract",
    "Untyped",
    "check_compilation",
    "check_value",
    "classes_declaring",
    "coerce_input",
    "coerce_inputs",
    "coerce_value",
    "contract_of",
    "contract_of_class",
    "element_type",
    "has_pydantic",
    "item_type",
    "model_inputs",
    "provided_type",
    "revive_result",
    "revives",
    "satisfies",
    "shares_contract",
    "tuple_items",
    "type_mismatches",
    "type_name",
    "validator_for",
]


class Untyped:
    """The type of :data:`UNTYPED`: what something that carries no annotation has (so is not checked).

    A one-member class written out rather than an :class:`enum.Enum`: this module
    loads with the first annotated flow of a process, and making an enum class
    cost about 0.13 ms of that. It keeps what an enum member offers that could be
    relied on: ``Untyped.UNTYPED``, ``name``, ``value``, the repr, and pickling
    and copying as the one instance.
    """

    __slots__ = ()

    #: The one instance (set below).
    UNTYPED: ClassVar[Untyped]
    name: ClassVar[str] = "UNTYPED"
    value: ClassVar[str] = "untyped"

    def __repr__(self) -> str:
        return "<Untyped.UNTYPED: 'untyped'>"

    def __reduce__(self) -> str:
        return "UNTYPED"  # the module's global: unpickled and copied as the same instance


UNTYPED: Final = Untyped()
Untyped.UNTYPED = UNTYPED


class Contract:
    """What an atom's ``execute`` declares (read-only once made).

    A plain slotted class rather than a frozen dataclass: this module is imported
    by every process that runs a flow, and making a dataclass costs ~0.5 ms.

    Engines pass every value by keyword (as TaskFlow does): a value given under
    a name the signature lists goes to that argument, any other (an "extra
    argument" of ``requires`` or ``rebind``) to ``**kwargs``. So a ``**values:
    int`` annotation is the type of each such value, and a ``*args`` annotation
    describes nothing a flow gives. :meth:`input_type` answers for any name.

    Attributes:
        inputs: argument name -> annotation, for the annotated named arguments only.
        extra: the annotation of ``**kwargs``: the type of every value passed
            under a name the signature does not list, or :data:`UNTYPED`
            (also for ``Any`` and ``object``, which take anything).
        result: the return annotation, or :data:`UNTYPED`.
    """

    __slots__ = ("_by_name", "extra", "inputs", "result")

    inputs: Mapping[str, Any]
    extra: Any
    result: Any
    #: What :meth:`input_type` reads: ``inputs``, and with ``extra`` declared the
    #: unannotated named arguments as UNTYPED (they do not take ``extra``'s type).
    _by_name: Mapping[str, Any]

    def __init__(
        self, inputs: Mapping[str, Any], result: Any, extra: Any = UNTYPED, named: Iterable[str] = ()
    ) -> None:
        """Make a contract.

        Args:
            inputs: the annotated named arguments' types.
            result: the return annotation, or :data:`UNTYPED`.
            extra: the annotation of ``**kwargs``, or :data:`UNTYPED`.
            named: every named argument (annotated or not); needed only with
                ``extra``, so that an unannotated one is not taken for it.
        """
        by_name = inputs
        if extra is not UNTYPED:
            by_name = types.MappingProxyType({**dict.fromkeys(named, UNTYPED), **inputs})
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "extra", extra)
        object.__setattr__(self, "result", result)
        object.__setattr__(self, "_by_name", by_name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: a Contract is read-only")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Contract):
            return NotImplemented
        return (
            self._by_name == other._by_name
            and self.inputs == other.inputs
            and self.extra == other.extra
            and self.result == other.result
        )

    def __hash__(self) -> int:
        return hash((tuple(self.inputs.items()), self.extra, self.result))

    def __repr__(self) -> str:
        extra = "" if self.extra is UNTYPED else f", extra={self.extra!r}"
        return f"Contract(inputs={dict(self.inputs)!r}{extra}, result={self.result!r})"

    def input_type(self, arg: str) -> Any:
        """The declared type of the value ``execute`` receives as argument ``arg`` (or UNTYPED)."""
        return self._by_name.get(arg, self.extra)

    @property
    def declares_inputs(self) -> bool:
        """Whether any argument's type is declared (a named one or ``**kwargs``)."""
        return bool(self.inputs) or self.extra is not UNTYPED

    @property
    def typed(self) -> bool:
        """Whether anything at all is declared."""
        return self.declares_inputs or self.result is not UNTYPED


_EMPTY = Contract({}, UNTYPED)
_DEFAULT_ARG_SOURCES = Atom._arg_sources


def has_pydantic() -> bool:
    """Whether pydantic (the ``typed`` extra) can be imported."""
    return _pydantic() is not None


@functools.cache
def _pydantic() -> Any:
    try:
        import pydantic
    except ImportError:
        return None
    return pydantic


def _loaded_pydantic() -> Any:
    """pydantic if something imported it already, else None (without importing it).

    A type can only be a pydantic model once pydantic is imported, so asking
    whether an annotation mentions one never needs to import it; importing it
    anyway would add a tenth of a second to every short-lived process whose tasks
    are annotated.
    """
    module = sys.modules.get("pydantic")
    return module if getattr(module, "BaseModel", None) is not None else None


def _is_model(tp: Any) -> bool:
    pydantic = _loaded_pydantic()
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


# -- reading contracts -------------------------------------------------------------


#: Classes whose instances all share one contract (execute is a method of the class).
_BY_CLASS: dict[type, Contract] = {}


def shares_contract(cls: type) -> bool:
    """Whether every atom of ``cls`` has the same contract (its class's ``execute``)."""
    sources = getattr(cls, "_arg_sources", None)
    return sources is _DEFAULT_ARG_SOURCES and not hasattr(cls, "__flowkit_contract__")


def contract_of(atom: Any) -> Contract:
    """Return the :class:`Contract` of ``atom`` (cached per ``execute`` function).

    An atom may define ``__flowkit_contract__()`` to declare its contract itself
    (adapters that wrap another task do).
    """
    cls = type(atom)
    found = _BY_CLASS.get(cls)
    if found is not None:
        return found
    if shares_contract(cls):
        # One lookup per atom from now on: flows of 100,000 atoms of one class are common.
        make_room(_BY_CLASS)
        found = _BY_CLASS[cls] = _contract_of_callable(cls.execute)
        return found
    own = getattr(atom, "__flowkit_contract__", None)
    if own is not None:
        return own()  # type: ignore[no-any-return]
    source, _revert_source = atom._arg_sources()
    return _contract_of_callable(getattr(source, "__func__", source))


def _contract_of_callable(fn: Callable[..., Any]) -> Contract:
    try:
        return _cached_contract(fn)
    except TypeError:  # an unhashable callable object
        return _read_contract(fn)


def _read_contract(fn: Callable[..., Any]) -> Contract:
    target = fn if isinstance(fn, types.FunctionType | types.MethodType) else getattr(fn, "__call__", fn)  # noqa: B004 - the method, not callability
    if not getattr(target, "__annotations__", None):
        return _EMPTY
    hints = _plain_hints(target)
    if hints is None:
        try:
            hints = typing.get_type_hints(target, include_extras=False)
        except Exception:  # an annotation that cannot be resolved is treated as absent
            return _EMPTY
    result = hints.pop("return", UNTYPED)
    hints.pop("self", None)
    if not hints and result is UNTYPED:
        return _EMPTY
    try:
        shape = reflection.inspect_callable(target)
    except (TypeError, ValueError):  # no signature to read: it could not be an atom's either
        return _EMPTY
    # ``**kwargs``' annotation is the type of each extra argument, not of an argument
    # named ``kwargs``; ``*args``' describes nothing engines pass (every value goes by keyword).
    extra = hints.pop(shape.var_keyword, UNTYPED) if shape.var_keyword is not None else UNTYPED
    if extra is Any or extra is object:
        # How code checked by mypy --strict says "any arguments": nothing can mismatch
        # it, and declaring nothing spares every edge into such a task the check.
        extra = UNTYPED
    inputs = {arg: tp for arg, tp in hints.items() if arg in shape.all}
    if not inputs and extra is UNTYPED and result is UNTYPED:
        return _EMPTY
    return Contract(types.MappingProxyType(inputs), result, extra, shape.all)


_cached_contract = functools.lru_cache(maxsize=4096)(_read_contract)


def _plain_hints(target: Any) -> dict[str, Any] | None:
    """``typing.get_type_hints(target)`` when every annotation names a class
    (:func:`~flowkit._utils.reflection.plain_type`, no ``compile()``); else None."""
    if getattr(target, "__no_type_check__", None):
        return None
    hints: dict[str, Any] = {}
    for arg, annotation in target.__annotations__.items():
        found = reflection.plain_type(target, annotation)
        if found is reflection.NOT_PLAIN:
            return None
        hints[arg] = found
    return hints


_NOT_FOUND = object()


def type_name(tp: Any) -> str:
    """A short readable name for a type or annotation."""
    if tp is UNTYPED:
        return "untyped"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp).replace("typing.", "")


# -- static compatibility ----------------------------------------------------------

_UNIONS = (typing.Union, types.UnionType)
_NUMERIC_PROMOTIONS: dict[type, tuple[type, ...]] = {float: (int,), complex: (int, float)}


def _strip(tp: Any) -> Any:
    if tp is None:
        return type(None)
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, typing.NewType):
            tp = tp.__supertype__
        else:
            return tp


def satisfies(provided: Any, required: Any) -> bool:
    """Tell whether a value declared as ``provided`` can be what ``required`` asks for.

    False only for a certain mismatch (``str`` for ``int``, ``list[str]`` for
    ``list[int]``...); unannotated, ``Any``, type variables and forms not
    understood give True.
    """
    if provided is UNTYPED or required is UNTYPED:
        return True
    provided, required = _strip(provided), _strip(required)
    if required is Any or required is object or provided is Any:
        return True
    if isinstance(required, typing.TypeVar) or isinstance(provided, typing.TypeVar):
        return True
    p_origin, r_origin = typing.get_origin(provided), typing.get_origin(required)
    if p_origin in _UNIONS:
        return all(satisfies(arg, required) for arg in typing.get_args(provided))
    if p_origin is typing.Literal:
        # Its values are known: each is checked as a value (``Literal["a"]`` does not
        # satisfy ``Literal["b"]``, ``Literal[1, "a"]`` satisfies ``int | str``).
        return all(check_value(value, required) for value in typing.get_args(provided))
    if r_origin in _UNIONS:
        return any(satisfies(provided, arg) for arg in typing.get_args(required))
    if r_origin is typing.Literal:
        return any(
            satisfies(provided, type(value)) or satisfies(type(value), provided)
            for value in typing.get_args(required)
        )
    p_cls = p_origin if p_origin is not None else provided
    r_cls = r_origin if r_origin is not None else required
    if not isinstance(p_cls, type) or not isinstance(r_cls, type):
        return True
    try:
        related = issubclass(p_cls, r_cls)
    except TypeError:  # protocols, TypedDicts: not checkable by class
        return True
    if not related:
        # A subclass of int (bool, an IntEnum) promotes to float as int itself does.
        return any(issubclass(p_cls, promoted) for promoted in _NUMERIC_PROMOTIONS.get(r_cls, ()))
    return _parameters_satisfy(p_cls, r_cls, typing.get_args(provided), typing.get_args(required))


def _parameters_satisfy(cls: type, r_cls: type, p_args: tuple[Any, ...], r_args: tuple[Any, ...]) -> bool:
    """Whether the type parameters of ``cls[p_args]`` fit those of ``r_cls[r_args]``.

    A tuple's parameters are its items' types, one per position; another
    class's (``Sequence[int]``) is the type of every item, so a
    ``tuple[int, int]`` is a ``Sequence[int]`` when each position's type is.
    """
    if not p_args or not r_args:
        return True
    if issubclass(cls, tuple) and not issubclass(r_cls, tuple):
        if len(r_args) != 1:
            return True
        items = p_args[:1] if len(p_args) == 2 and p_args[1] is Ellipsis else p_args
        return all(satisfies(item, r_args[0]) for item in items)
    if issubclass(cls, tuple):
        p_var = len(p_args) == 2 and p_args[1] is Ellipsis
        r_var = len(r_args) == 2 and r_args[1] is Ellipsis
        if r_var:
            return all(satisfies(arg, r_args[0]) for arg in (p_args[:1] if p_var else p_args))
        if p_var:
            return all(satisfies(p_args[0], arg) for arg in r_args)
        return len(p_args) == len(r_args) and all(map(satisfies, p_args, r_args))
    if len(p_args) != len(r_args):
        return True
    return all(map(satisfies, p_args, r_args))


def _satisfies_cached(provided: Any, required: Any) -> bool:
    try:
        return _satisfies_memo(provided, required)
    except TypeError:  # an unhashable annotation
        return satisfies(provided, required)


_satisfies_memo = functools.lru_cache(maxsize=1024)(satisfies)


def classes_declaring(classes: Iterable[type], inputs: bool) -> set[type]:
    """The atom classes among ``classes`` that may declare input (or result) types.

    Asked per class, not per atom: a flow of 100,000 untyped atoms pays no
    contract lookup per atom (the caller collects its atoms' classes once, as
    the engine's compile does for all its checks). Classes whose instances may
    differ (function tasks, adapters) are always included.
    """
    found: set[type] = set()
    for cls in classes:
        if not shares_contract(cls):
            found.add(cls)
        else:
            contract = contract_of_class(cls)
            if contract.declares_inputs if inputs else contract.result is not UNTYPED:
                found.add(cls)
    return found


def contract_of_class(cls: type) -> Contract:
    """The contract shared by every instance of a class that takes ``execute`` as it is."""
    found = _BY_CLASS.get(cls)
    if found is None:
        make_room(_BY_CLASS)
        found = _BY_CLASS[cls] = _contract_of_callable(cls.execute)  # type: ignore[attr-defined]
    return found


def provided_type(provider: Any, key: int | str | None = None) -> Any:
    """The declared type of what a consumer reads from ``provider``'s result, or UNTYPED.

    Args:
        provider: the atom (or callable) whose result is read.
        key: None for the whole result; else the item ``provides`` takes out of
            it (a tuple's position, a mapping's key), as :func:`item_type` reads it.

    A spawner (``-> dynamic.Subflow``) provides its sub-flow's results, which its
    annotation does not describe: UNTYPED.
    """
    result = contract_of(provider).result
    if result is UNTYPED or _may_spawn(result):
        return UNTYPED
    if key is None:
        return result
    return item_type(result, key)


def item_type(result: Any, key: int | str) -> Any:
    """The declared type of item ``key`` of a value declared ``result``, or UNTYPED when unknown.

    A position of a ``tuple[...]`` or a named tuple, an index of a sequence
    (``list[T]``, ``Sequence[T]``: every item is a ``T``), a key of a
    ``Mapping[K, V]`` or a TypedDict: what the engine's check reads for
    ``provides``, and a declarative spec for ``${task.field}``, so the two agree.
    A position past a fixed tuple's end is UNTYPED here (the engine leaves it
    to the run, as TaskFlow does); :func:`tuple_items` says how many there are.
    """
    result = _strip(result)
    args = typing.get_args(result)
    origin = typing.get_origin(result)
    if isinstance(key, int):
        positions = tuple_items(result)
        if positions is not None:
            return positions[key] if key < len(positions) else UNTYPED
        if origin is tuple and args:  # tuple[T, ...]
            return args[0]
        if isinstance(origin, type) and len(args) == 1 and issubclass(origin, cabc.Sequence):
            return args[0]
    if isinstance(origin, type) and issubclass(origin, cabc.Mapping) and len(args) == 2:
        return args[1]  # an int key too: the spec's ${counts.0} and TaskFlow's result[0] look it up
    if isinstance(key, str) and typing.is_typeddict(result):
        return typing.get_type_hints(result).get(key, UNTYPED)
    return UNTYPED


def element_type(iterable: Any) -> Any:
    """The declared type of what iterating a value declared ``iterable`` yields, or UNTYPED when unknown.

    What :class:`~flowkit.retry.ParameterizedForEach` provides, one per try, of
    the values it is given: a sequence's, set's or iterable's item
    (``list[T]``, ``Sequence[T]``, ``tuple[T, ...]``, ``Iterable[T]``), any of
    a fixed tuple's positions (``tuple[int, str]``: ``int | str``), a
    mapping's key (``dict[K, V]``: ``K``; a TypedDict's keys are ``str``), a
    string's characters. A union is not certain to be any one of these, so
    ``list[int] | None`` gives UNTYPED, as :func:`item_type` says of it.
    """
    iterable = _strip(iterable)
    if iterable is str:
        return str
    positions = tuple_items(iterable)
    if positions is not None:
        if not positions or UNTYPED in positions:
            return UNTYPED
        try:
            return functools.reduce(operator.or_, positions)
        except TypeError:  # a position ``|`` does not take (a forward reference left as text)
            return UNTYPED
    if typing.is_typeddict(iterable):
        return str
    args = typing.get_args(iterable)
    origin = typing.get_origin(iterable)
    if not isinstance(origin, type):
        return UNTYPED
    if issubclass(origin, cabc.Mapping):
        return args[0] if len(args) == 2 else UNTYPED
    if origin is tuple:  # tuple[T, ...]; a fixed one was read above
        return args[0] if args else UNTYPED
    if issubclass(origin, cabc.Iterable) and len(args) == 1:
        return args[0]
    return UNTYPED


def tuple_items(tp: Any) -> tuple[Any, ...] | None:
    """The declared types of the positions of a fixed-length tuple type, or None for any other type.

    ``tuple[int, str]`` and a named tuple class ``class Span(NamedTuple): low:
    int; high: str`` both give ``(int, str)``; ``tuple[int, ...]``, a bare
    ``tuple`` and anything else give None (their length is not declared).
    """
    tp = _strip(tp)
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return None
        return args
    fields = getattr(tp, "_fields", None)
    if isinstance(tp, type) and issubclass(tp, tuple) and isinstance(fields, tuple):
        try:
            hints = typing.get_type_hints(tp)
        except Exception:  # an annotation that cannot be resolved: positions unknown
            return None
        return tuple(hints.get(name, UNTYPED) for name in fields)
    return None


def _may_spawn(result: Any) -> bool:
    """Whether a result declared as ``result`` may be a sub-flow (``-> Subflow``, ``-> Subflow | None``).

    Such a task provides what its sub-flow's tasks return, which its annotation
    does not say: a consumer's type cannot be checked against it.
    """
    dynamic = sys.modules.get("flowkit.dynamic")  # not imported: nothing can be declared as one
    if dynamic is None:
        return False
    result = _strip(result)
    members = typing.get_args(result) if typing.get_origin(result) in _UNIONS else (result,)
    return any(isinstance(member, type) and issubclass(member, dynamic.Subflow) for member in members)


def check_compilation(
    compilation: Any,
    replaced: Callable[[Any, str], bool] | None = None,
    classes: Iterable[type] | None = None,
) -> None:
    """Check every provider -> consumer edge of a compiled flow against the annotations.

    Arguments as for :func:`type_mismatches`.

    Raises:
        TypeMismatch: the first edge whose declared types cannot match, naming
            both atoms and the symbol.
    """
    for mismatch in type_mismatches(compilation, replaced, classes):
        raise mismatch


def type_mismatches(
    compilation: Any,
    replaced: Callable[[Any, str], bool] | None = None,
    classes: Iterable[type] | None = None,
) -> Iterator[exc.TypeMismatch]:
    """The provider -> consumer edges of a compiled flow whose declared types cannot match.

    Each as the :class:`~flowkit.exceptions.TypeMismatch` that names it, in
    the flow's order, found one at a time (the engine refuses the first, or
    logs them all and runs the flow as TaskFlow would).

    Args:
        compilation: an engine's :class:`~flowkit.engines._compiler.Compilation`.
        replaced: ``(node, symbol) -> bool``: whether the atom of ``node`` is
            given ``symbol`` by an injected value (its own ``inject``, the
            engine's ``inject=``, the store), which wins over the provider's
            result at run time: that edge is not checked, since the provider's
            type says nothing about what the atom gets.
        classes: the classes of the compilation's atoms, if the caller has
            them already (the engine does); else they are collected here.
    """
    nodes = compilation.nodes
    atoms = compilation.atoms
    if classes is None:
        classes = {type(node.atom) for node in atoms}
    suspects = classes_declaring(classes, inputs=True)
    if not suspects:
        return
    # The contract per class (None: read per atom, its instances may differ).
    declared = {cls: contract_of_class(cls) if shares_contract(cls) else None for cls in suspects}
    # What a provider's result type gives a reader: the same for every atom of a
    # class whose instances share its contract (most flows repeat a few classes),
    # where working it out per edge was most of the check. The whole result (the
    # common case, and every edge of a fan-in) is kept by class alone, an item by
    # (class, key).
    whole: dict[type, Any] = {}
    items: dict[tuple[type, int | str], Any] = {}
    shared = _BY_CLASS
    for node in atoms:
        contract = declared.get(type(node.atom), _EMPTY)
        if contract is _EMPTY:  # a class that declares no input
            continue
        if contract is None:
            contract = contract_of(node.atom)
            if not contract.declares_inputs:
                continue
        # Contract.input_type, bound once per atom: a fan-in asks it per edge.
        required_of = contract._by_name.get
        extra = contract.extra
        for plan in node.exec_args:
            index = plan.provider
            if index < 0:
                continue
            required = required_of(plan.arg, extra)
            if required is UNTYPED:
                continue
            provider = nodes[index]
            provider_class = type(provider.atom)
            key = plan.key
            if key is None:
                provided = whole.get(provider_class, _NOT_FOUND)
                if provided is _NOT_FOUND:
                    provided = provided_type(provider.atom, None)
                    if provider_class in shared:
                        whole[provider_class] = provided
            else:
                provided = items.get((provider_class, key), _NOT_FOUND)
                if provided is _NOT_FOUND:
                    provided = provided_type(provider.atom, key)
                    if provider_class in shared:
                        items[provider_class, key] = provided
            if provided is required or _satisfies_cached(provided, required):
                continue
            # Asked only of an edge that would fail: an injected value wins over the
            # provider's result, so its type says nothing of what the atom gets.
            if replaced is not None and replaced(node, plan.symbol):
                continue
            yield exc.TypeMismatch(
                f"atom '{node.name}' requires '{plan.symbol}' (argument '{plan.arg}') as "
                f"{type_name(required)}, but atom '{provider.name}' provides it as "
                f"{type_name(provided)}",
                symbol=plan.symbol,
                provider=provider.name,
                consumer=node.name,
                argument=plan.arg,
                provided=type_name(provided),
                required=type_name(required),
            )


# -- values at run time ------------------------------------------------------------


def check_value(value: Any, tp: Any, *, bool_is_number: bool = True) -> bool:
    """Tell whether ``value`` is of type ``tp`` (basic types; see the module docs).

    Args:
        value: the value to check.
        tp: the declared type.
        bool_is_number: whether a ``bool`` counts as an ``int`` (and so a ``float``),
            as Python and type checkers count it. False takes JSON's view, where
            ``true`` is no number: a value typed on a command line is JSON, and a
            ``true`` given for an ``int`` is a mistake, not a 1.
    """
    if tp is UNTYPED:
        return True
    tp = _strip(tp)
    if tp is Any or tp is object or isinstance(tp, typing.TypeVar):
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in _UNIONS:
        return any(check_value(value, arg, bool_is_number=bool_is_number) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    cls = origin if origin is not None else tp
    if not isinstance(cls, type):
        return True
    if not bool_is_number and isinstance(value, bool) and cls in _NUMBERS:
        return False
    # As the compile check (and type checkers) accept them: an int, so a bool or an
    # IntEnum, for a float; an int or a float for a complex.
    if cls is float and isinstance(value, int):
        return True
    if cls is complex and isinstance(value, int | float):
        return True
    try:
        if not isinstance(value, cls):
            return False
    except TypeError:  # protocols, TypedDicts
        return True
    if not args or isinstance(value, str | bytes):
        return True

    def check(item: Any, item_type: Any) -> bool:
        return check_value(item, item_type, bool_is_number=bool_is_number)

    if isinstance(value, tuple) and issubclass(cls, tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return all(check(item, args[0]) for item in value)
        return len(args) == len(value) and all(map(check, value, args))
    if isinstance(value, cabc.Mapping) and len(args) == 2:
        return all(check(k, args[0]) and check(v, args[1]) for k, v in value.items())
    if isinstance(value, cabc.Collection) and len(args) == 1:
        return all(check(item, args[0]) for item in value)
    return True


#: The classes a bool is an instance of (or, for float and complex, counted as) in Python.
_NUMBERS = frozenset({int, float, complex})


def coerce_value(value: Any, tp: Any, *, bool_is_number: bool = True) -> Any:
    """Return ``value`` as a ``tp``, or raise ``TypeError`` saying why it is not one.

    pydantic models (and, with pydantic, containers of them) are validated by
    pydantic, which turns a mapping into the model (and, in its lax mode, reads
    ``true`` as ``1`` whatever ``bool_is_number`` says); other types are checked
    with :func:`check_value` (``bool_is_number`` as it takes it) and returned unchanged.
    """
    stripped = _strip(tp)
    if _is_model(stripped):
        if isinstance(value, stripped):
            return value
        try:
            return stripped.model_validate(value)
        except Exception as err:  # pydantic.ValidationError; its text says what is wrong
            raise TypeError(str(err)) from err
    if _loaded_pydantic() is not None and _mentions_model(stripped):
        try:
            return _adapter(stripped).validate_python(value)
        except Exception as err:
            raise TypeError(str(err)) from err
    if not check_value(value, stripped, bool_is_number=bool_is_number):
        from flowkit._utils.reprs import short_repr  # only a value that does not fit needs it

        raise TypeError(f"{short_repr(value, 60)} ({type(value).__name__}) is not {type_name(stripped)}")
    return value


def _mentions_model(tp: Any) -> bool:
    return _is_model(tp) or any(_mentions_model(arg) for arg in typing.get_args(tp))


@functools.lru_cache(maxsize=256)
def _adapter(tp: Any) -> Any:
    return _loaded_pydantic().TypeAdapter(tp)


_T = typing.TypeVar("_T")
#: What :func:`_kept_per_class` finds for a class not read yet (None is an answer).
_UNREAD: Final = object()


def _kept_per_class(cache: dict[type, _T], atom: Any, read: Callable[[Any], _T]) -> _T:
    """``read(atom)``, kept in ``cache`` for ``atom``'s class when all its instances share its contract.

    For the answers derived from a contract that callers ask per atom or per
    call (a flow of 100,000 atoms of one class, a worker's every request):
    read once per class, as the contract itself is.
    """
    cls = type(atom)
    known = cache.get(cls, _UNREAD)
    if known is not _UNREAD:
        return typing.cast("_T", known)
    value = read(atom)
    if shares_contract(cls):
        make_room(cache)
        cache[cls] = value
    return value


def model_inputs(atom: Any) -> Contract | None:
    """The part of ``atom``'s contract whose arguments pydantic makes into models, or None.

    Its inputs are the named arguments typed with a pydantic model (or a
    container of them), its ``extra`` that of ``**kwargs`` if that is such a
    type; :func:`coerce_inputs` applies it to a call's arguments.

    Kept per class (see :func:`_kept_per_class`) once pydantic is loaded: the
    guards ask for every atom of every run, a declarative step and a worker's
    task call for every call, and each rebuilt it (some 6 µs). Before pydantic
    is loaded no annotation can name a model, so the answer is None, and not
    kept: it may change once pydantic is imported.
    """
    if _loaded_pydantic() is None:
        return None
    return _kept_per_class(_MODEL_INPUTS, atom, _read_model_inputs)


#: :func:`model_inputs`' answer per class whose instances share its contract.
_MODEL_INPUTS: dict[type, Contract | None] = {}


def _read_model_inputs(atom: Any) -> Contract | None:
    contract = contract_of(atom)
    if not contract.declares_inputs:
        return None
    inputs = {arg: tp for arg, tp in contract.inputs.items() if _mentions_model(_strip(tp))}
    extra = contract.extra if _mentions_model(_strip(contract.extra)) else UNTYPED
    if not inputs and extra is UNTYPED:
        return None
    return Contract(types.MappingProxyType(inputs), UNTYPED, extra, contract._by_name)


def coerce_inputs(atom: str, models: Contract, arguments: dict[str, Any]) -> None:
    """Make the values of ``arguments`` that ``models`` (see :func:`model_inputs`) types into their models.

    In place: a mapping (a model as JSON, from a resumed run's store, a worker's
    request, the cache) becomes the model, a model stays as it is.

    Raises:
        InvalidResult: an argument cannot be made into its model (``what`` names it).
    """
    if models.extra is UNTYPED:
        for arg, tp in models.inputs.items():
            if arg in arguments:
                arguments[arg] = coerce_input(atom, arg, arguments[arg], tp)
        return
    for arg, value in list(arguments.items()):
        tp = models.input_type(arg)
        if tp is not UNTYPED:
            arguments[arg] = coerce_input(atom, arg, value, tp)


def revives(atom: Any) -> bool:
    """Whether :func:`revive_result` may change a result of ``atom`` (an enum or a model declared).

    So a caller that revives every result it reads back (the cache's hits)
    asks once per atom, not once per value; the answer is kept per class where
    all its instances share one contract (a resumed run asks about every atom).
    """
    return _kept_per_class(_REVIVES, atom, _reads_revived)


#: :func:`revives`' answer per class whose instances share its contract.
_REVIVES: dict[type, bool] = {}


def _reads_revived(atom: Any) -> bool:
    result = contract_of(atom).result
    if result is UNTYPED:
        return False
    stripped = _strip(result)
    return _mentions_enum(stripped) or (_loaded_pydantic() is not None and _mentions_model(stripped))


def _mentions_enum(tp: Any) -> bool:
    """Whether an enum class appears in ``tp`` (``Level``, ``list[Level]``, ``Level | None``...)."""
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return True
    return any(_mentions_enum(arg) for arg in typing.get_args(tp))


def _revive_enums(value: Any, tp: Any) -> Any:
    """``value`` with the enum values JSON kept made members again, where ``tp`` declares an enum.

    A member is stored as its value: the hit of a ``-> list[Level]`` gave
    ``[2]``, which its own validation then refused (on the second run only).
    Containers keep their type (a tuple stays a tuple); in a union, a value
    that already fits a member of it other than an enum is left as it is (in
    ``Level | int`` a 2 may have been either). What does not fit is left as it was.
    """
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except (ValueError, TypeError):
            return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not args:
        return value
    if origin in _UNIONS:
        plain = [arg for arg in args if not _mentions_enum(arg)]
        if any(check_value(value, arg) for arg in plain):
            return value
        for arg in args:
            if _mentions_enum(arg):
                revived = _revive_enums(value, arg)
                if revived is not value and check_value(revived, arg):
                    return revived
        return value
    if not isinstance(origin, type):
        return value
    kind = type(value)
    if kind is tuple and issubclass(origin, tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_revive_enums(item, args[0]) for item in value)
        if len(args) != len(value):
            return value
        return tuple(map(_revive_enums, value, args))
    if kind is dict and issubclass(origin, cabc.Mapping) and len(args) == 2:
        return {_revive_enums(k, args[0]): _revive_enums(v, args[1]) for k, v in value.items()}
    if kind in (list, tuple, set, frozenset) and issubclass(origin, cabc.Collection) and len(args) == 1:
        return kind(_revive_enums(item, args[0]) for item in value)
    return value


def revive_result(atom: Any, value: Any) -> Any:
    """A result read back from JSON (a resumed run's store, the cache), as ``atom`` declares it.

    Models are stored as JSON objects; a resumed run takes them up as mappings.
    When ``atom``'s result is declared as a pydantic model (or a container of
    them) the mapping is made into it again, so ``storage.fetch`` returns what
    the first run did; a result declared as an enum is made its member again
    from the value JSON kept. A value that does not fit is left as it was: the
    resumed run reads what was stored, it does not judge it.
    """
    result = contract_of(atom).result
    if result is UNTYPED:
        return value
    stripped = _strip(result)
    if _loaded_pydantic() is not None and _mentions_model(stripped):
        try:
            return coerce_value(value, result)  # pydantic makes the enums inside members too
        except TypeError:
            return value
    # JSON holds an enum member as its value (an IntEnum's int): the member again,
    # also inside a declared container or union (``list[Level]``, ``Level | None``).
    return _revive_enums(value, stripped)


def coerce_input(atom: str, arg: str, value: Any, tp: Any) -> Any:
    """``value`` as the model-typed argument ``arg`` of ``atom`` wants it.

    Raises:
        InvalidResult: it cannot be made into one (``what`` names the argument).
    """
    try:
        return coerce_value(value, tp)
    except TypeError as err:
        raise exc.InvalidResult(
            f"atom '{atom}' argument '{arg}' is not {type_name(tp)}: {err}",
            atom=atom,
            what=arg,
            expected=type_name(tp),
        ) from err


def validator_for(atom: Any, default: bool | None = None) -> Callable[[Any], Any] | None:
    """The run-time check of ``atom``'s result, or None when it is not validated.

    Whether a result is validated: the atom's ``validate_types`` attribute if it
    is set, else ``default`` (the engine option) if given, else only when the
    declared result type involves a pydantic model.

    Returns:
        A function taking the result and returning it (a mapping turned into its
        model), raising :class:`~flowkit.exceptions.InvalidResult` when it does
        not fit.

    Raises:
        InvalidAtomOption: the atom declares a result and its ``validate_types``
            is not True, False or None.
    """
    result = contract_of(atom).result
    if result is UNTYPED:
        return None
    own = getattr(atom, "validate_types", None)
    if own is not None:
        own = check_switch(atom.name, "validate_types", own, "doc/typed.rst")
    wanted = own if own is not None else default
    if wanted is None:
        wanted = _loaded_pydantic() is not None and _mentions_model(_strip(result))
    if not wanted:
        return None
    name = atom.name

    def validate(value: Any) -> Any:
        try:
            return coerce_value(value, result)
        except TypeError as err:
            raise exc.InvalidResult(
                f"atom '{name}' returned a result that is not {type_name(result)}: {err}",
                atom=name,
                expected=type_name(result),
            ) from err

    return validate
