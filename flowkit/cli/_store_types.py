"""Read each ``--store`` value as the atoms that take it declare it.

A command line holds text. ``--store`` reads a value as JSON when it parses, so
``amount=42`` is a number and ``tags=["a","b"]`` a list; but ``postcode=02139``
is not JSON while ``postcode=12345`` is, and an argument annotated ``str`` got
the int ``12345`` (``version=1.10`` gave the float ``1.1``). The task then
failed half way through the flow, or worse, worked on a value it never
declared. So the flow's annotations decide, as they do for results
(:mod:`flowkit.typed`):

* no atom that reads the symbol declares a type: the JSON value, else the text;
* the JSON value fits every declared type: it is taken (``42`` for an ``int``
  or a ``float``, ``null`` for an ``Optional``). As in JSON, ``true`` and
  ``false`` are no numbers: a ``bool`` is an ``int`` in Python, and the task
  declaring an ``int`` got ``True`` where its user mistyped;
* else the text fits every declared type (a ``str``, a ``Literal`` of strings):
  the text is taken, as given;
* else neither fits: a :class:`~flowkit.cli._common.CliError` (status 2) naming
  the ``--store`` item, the atom, its argument and the type, before anything
  is written.

Only types a command line can give count: JSON's (``str``, ``int``, ``float``,
``bool``, ``None``, lists and dicts of them, ``Literal``, unions) and pydantic
models. An argument of another type (a ``Path``, a ``datetime``, an enum) was
handed text or JSON and made its own of it, so it leaves the reading as it was.

A value holding a number JSON cannot (``NaN``, ``Infinity``, ``1e400``, which
Python's :mod:`json` reads) is refused, naming the item, as a declarative
spec refuses one (:mod:`flowkit.declarative._numbers`).

Cost: one walk over the flow's atoms, only when ``--store`` gives something.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from flowkit._utils.json_types import json_representable
from flowkit.atom import Atom
from flowkit.cli._common import CliError
from flowkit.flow import Flow

__all__ = ["Reader", "StoreItem", "parse_item", "readers_of", "typed_store"]


class StoreItem(NamedTuple):
    """One ``--store KEY=VALUE`` item: what was typed, and its value read as JSON (else the text)."""

    key: str
    text: str
    value: Any


class Reader(NamedTuple):
    """An argument that reads a stored symbol, with its declared type."""

    atom: str
    argument: str
    type: Any


def typed_store(items: Sequence[StoreItem], flow: Any) -> dict[str, Any]:
    """Return the store ``items`` give, each value fitted to the types of the arguments reading it.

    Raises:
        CliError: a value that neither as JSON nor as text fits a reader's declared type.
    """
    store = {item.key: item.value for item in items}
    if not items:
        return store
    readers = readers_of(flow, store.keys())
    for item in items:
        if readers.get(item.key):
            store[item.key] = _fitted(item, readers[item.key])
        _check_finite(item, store[item.key])
    return store


def _check_finite(item: StoreItem, value: Any) -> None:
    """Refuse a value holding NaN, an infinity or ``1e400``, as declarative specs do.

    Python's :mod:`json` reads them though no JSON document holds them, and the
    run stored them. Checked on the value taken: ``NaN`` for a ``str`` argument
    is the text, and stays.

    Raises:
        CliError: the value holds such a number (the ``--store`` item named).
    """
    from flowkit.declarative._numbers import NO_JSON_FORM, first_non_finite

    number = first_non_finite(value)
    if number is not None:
        raise CliError(
            f"--store '{item.key}={item.text}': {number} {NO_JSON_FORM}, in which a run's store is kept"
        )


def readers_of(flow: Any, symbols: Iterator[str] | Sequence[str] | Any) -> dict[str, list[Reader]]:
    """Map each of ``symbols`` to the typed arguments of ``flow``'s atoms that read it.

    An argument its atom injects itself (``inject``) does not read the store, nor
    does one without an annotation. A value passed under a name the signature
    does not list (``requires``, ``rebind``) is read as the ``**kwargs``
    annotation declares it, as the compile check reads it
    (:meth:`flowkit.typed.Contract.input_type`).
    """
    from flowkit.typed import UNTYPED, contract_of

    wanted = set(symbols)
    found: dict[str, list[Reader]] = {}
    for atom in _atoms(flow):
        whole = getattr(atom, "whole_references", None)
        if callable(whole):
            # A spec task's adapter (flowkit.declarative): its own arguments are the
            # symbols; the task it runs declares the arguments they are given whole.
            contract, reads = contract_of(atom.inner), whole().items()  # type: ignore[attr-defined]
        else:
            contract, reads = contract_of(atom), atom.rebind.items()
        if not contract.declares_inputs:
            continue
        injected: Mapping[str, Any] = atom.inject or {}
        for argument, symbol in reads:
            declared = contract.input_type(argument)
            if (
                symbol in wanted
                and symbol not in injected
                and declared is not UNTYPED
                and json_representable(declared)
            ):
                found.setdefault(symbol, []).append(Reader(atom.name, argument, declared))
    return found


def _atoms(item: Any) -> Iterator[Atom]:
    """Every atom of ``item`` (an atom, or a flow and its retries at any depth)."""
    if isinstance(item, Atom):
        yield item
        return
    if isinstance(item, Flow):
        if item.retry is not None:
            yield item.retry
        for child, _meta in item.iter_nodes():
            yield from _atoms(child)


def _fitted(item: StoreItem, readers: Sequence[Reader]) -> Any:
    from flowkit.typed import coerce_value

    candidates = [item.value] if item.value is item.text else [item.value, item.text]
    for value in candidates:
        for reader in readers:
            try:
                coerce_value(value, reader.type, bool_is_number=False)
            except TypeError:
                break
        else:
            return value
    # Neither fits: say why the value as read (JSON when it parses) does not.
    for reader in readers:
        try:
            coerce_value(item.value, reader.type, bool_is_number=False)
        except TypeError as err:
            from flowkit.typed import type_name

            raise CliError(
                f"--store '{item.key}={item.text}': atom '{reader.atom}' takes it as its argument"
                f" '{reader.argument}' ({type_name(reader.type)}): {_reason(err)}"
            ) from err
    raise AssertionError("unreachable: a value fitting every reader was returned above")


def _reason(err: TypeError) -> str:
    """``coerce_value``'s message on one line (pydantic's runs over several, with a link).

    ``1 validation error for Loc\\nlat\\n  Field required [...]\\n    For further
    information visit ...`` becomes ``1 validation error for Loc: lat Field required [...]``.
    """
    lines = [line.strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line and not line.startswith("For further information")]
    if not lines:
        return type(err).__name__
    return lines[0] + (": " + " ".join(lines[1:]) if len(lines) > 1 else "")


def parse_item(item: str) -> StoreItem:
    """Split ``KEY=VALUE`` and read VALUE as JSON when it parses (else keep the text).

    Raises:
        CliError: no ``=``, or an empty key.
    """
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise CliError(f"--store '{item}' must be KEY=VALUE")
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return StoreItem(key.strip(), text, value)
