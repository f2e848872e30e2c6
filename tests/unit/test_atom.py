"""Atoms: what they require and provide, worked out from signatures and options."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from flowkit import atom, task
from flowkit._utils import reflection


class Plain(task.Task):
    def execute(self, a, b):
        return a + b


class WithOptional(task.Task):
    def execute(self, a, b=1, *, c, d=2):
        return a


class WithKwargs(task.Task):
    def execute(self, a, **kwargs):
        return a


class AllVariadic(task.Task):
    def execute(self, *args, **kwargs):
        return None


class WithVarargs(task.Task):
    def execute(self, a, *args):
        return a


class WithRevert(task.Task):
    def execute(self, a, b=1):
        return a

    def revert(self, a, c, result, flow_failures, d=3):
        return None


class Provider(task.Task):
    default_provides = "out"

    def execute(self):
        return 1


# -- requirements from the signature -------------------------------------------


def test_requires_are_the_execute_arguments_without_defaults() -> None:
    t = Plain()
    assert t.requires == frozenset({"a", "b"})
    assert t.optional == frozenset()
    assert t.rebind == {"a": "a", "b": "b"}


def test_arguments_with_defaults_are_optional_and_still_mapped() -> None:
    t = WithOptional()
    assert t.requires == frozenset({"a", "c"})
    assert t.optional == frozenset({"b", "d"})
    # Required arguments come first, then optional ones, each in signature order.
    assert list(t.rebind) == ["a", "c", "b", "d"]


def test_star_args_and_kwargs_are_never_requirements() -> None:
    assert AllVariadic().requires == frozenset()
    assert WithVarargs().requires == frozenset({"a"})
    assert WithKwargs().rebind == {"a": "a"}


def test_self_is_not_a_requirement() -> None:
    assert "self" not in Plain().requires


def test_requires_and_optional_are_frozensets() -> None:
    t = WithOptional()
    assert isinstance(t.requires, frozenset)
    assert isinstance(t.optional, frozenset)
    assert isinstance(t.provides, frozenset)


# -- rebind --------------------------------------------------------------------


def test_rebind_list_renames_required_arguments_in_order() -> None:
    t = Plain(rebind=["x", "y"])
    assert t.rebind == {"a": "x", "b": "y"}
    assert t.requires == frozenset({"x", "y"})


def test_rebind_list_shorter_than_arguments_renames_only_the_first() -> None:
    t = Plain(rebind=["x"])
    assert t.rebind == {"a": "x", "b": "b"}


def test_rebind_list_longer_than_arguments_is_an_error_naming_the_atom() -> None:
    with pytest.raises(ValueError, match="my-atom") as info:
        Plain(name="my-atom", rebind=["x", "y", "z"])
    assert "z" in str(info.value)
    assert "execute" in str(info.value)


def test_rebind_list_longer_than_arguments_is_accepted_with_kwargs() -> None:
    t = WithKwargs(rebind=["x", "y"])
    assert t.rebind == {"a": "x", "y": "y"}
    assert t.requires == frozenset({"x", "y"})


def test_rebind_dict_maps_arguments_to_symbols() -> None:
    t = Plain(rebind={"b": "other"})
    assert t.rebind == {"a": "a", "b": "other"}
    assert t.requires == frozenset({"a", "other"})


def test_rebind_dict_naming_an_unknown_argument_is_an_error() -> None:
    with pytest.raises(ValueError, match="Extra arguments.*named.*\\['nope'\\]"):
        Plain(name="named", rebind={"nope": "x"})


def test_rebind_dict_may_name_anything_when_execute_takes_kwargs() -> None:
    t = WithKwargs(rebind={"extra": "sym"})
    assert t.rebind == {"a": "a", "extra": "sym"}
    assert t.requires == frozenset({"a", "sym"})


def test_rebinding_an_optional_argument_makes_it_required() -> None:
    t = WithOptional(rebind={"b": "bee"})
    assert "bee" in t.requires
    assert "b" not in t.optional
    assert t.rebind["b"] == "bee"


def test_rebind_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Plain(rebind="a")  # type: ignore[arg-type]


def test_rebind_with_non_string_symbols_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="rebind"):
        Plain(rebind={"a": 1})  # type: ignore[dict-item]


# -- requires, auto_extract, ignore_list, inject ---------------------------------


def test_requires_adds_names_passed_as_keywords() -> None:
    t = WithKwargs(requires=["x", "y"])
    assert t.requires == frozenset({"a", "x", "y"})
    assert t.rebind == {"a": "a", "x": "x", "y": "y"}


def test_requires_may_be_a_single_string() -> None:
    assert WithKwargs(requires="x").requires == frozenset({"a", "x"})


def test_requires_naming_an_argument_execute_cannot_take_is_an_error() -> None:
    with pytest.raises(ValueError, match="Extra arguments"):
        Plain(requires=["zzz"])


def test_atoms_of_one_class_each_get_their_own_required_names() -> None:
    AllVariadic(requires=["warm"])  # the class's signature is known from now on
    first, second = AllVariadic(requires=["p", "q"]), AllVariadic(requires=["r"])
    assert first.rebind == {"p": "p", "q": "q"}
    assert second.rebind == {"r": "r"}
    assert (first.requires, second.requires) == (frozenset({"p", "q"}), frozenset({"r"}))
    assert first.revert_rebind == first.rebind  # the default revert takes them too
    again = WithKwargs(requires=["x", "x", "a"])
    assert again.rebind == {"a": "a", "x": "x"}
    assert WithOptional(requires=["b"]).requires == frozenset({"a", "b", "c"})


def test_a_required_name_execute_cannot_take_is_named_in_the_error_each_time() -> None:
    Plain()
    for _ in range(2):
        with pytest.raises(ValueError, match="Extra arguments.*\\['zzz'\\]"):
            Plain(requires=["zzz"])


def test_without_auto_extract_unbound_required_arguments_are_an_error() -> None:
    with pytest.raises(ValueError, match="Missing arguments.*\\['a', 'b'\\]"):
        Plain(auto_extract=False)


def test_without_auto_extract_requires_must_cover_the_arguments() -> None:
    t = WithOptional(auto_extract=False, requires=["a", "c"])
    assert t.requires == frozenset({"a", "c"})
    assert t.optional == frozenset()
    assert t.rebind == {"a": "a", "c": "c"}


def test_ignore_list_removes_arguments_from_the_requirements() -> None:
    t = Plain(ignore_list=["b"])
    assert t.requires == frozenset({"a"})
    assert t.rebind == {"a": "a"}


def test_inject_removes_injected_names_from_requires_and_optional() -> None:
    t = WithOptional(inject={"a": 1, "b": 2})
    assert t.inject == {"a": 1, "b": 2}
    assert t.requires == frozenset({"c"})
    assert t.optional == frozenset({"d"})
    # The engine still passes injected arguments, so rebind keeps them.
    assert set(t.rebind) == {"a", "b", "c", "d"}


def test_inject_defaults_to_none() -> None:
    assert Plain().inject is None


# -- revert --------------------------------------------------------------------


def test_requires_include_revert_arguments_but_not_result_or_flow_failures() -> None:
    t = WithRevert()
    assert t.requires == frozenset({"a", "c"})
    assert t.revert_rebind == {"a": "a", "c": "c", "d": "d"}
    assert t.revert_optional == frozenset({"d"})
    assert t.optional == frozenset({"b"})


def test_revert_rebind_and_revert_requires_apply_to_revert_only() -> None:
    t = WithRevert(revert_rebind={"c": "see"})
    assert t.rebind == {"a": "a", "b": "b"}
    assert t.revert_rebind["c"] == "see"
    assert "see" in t.requires


def test_rebind_applies_to_revert_when_no_revert_rebind_is_given() -> None:
    t = WithRevert(rebind={"a": "alpha"})
    assert t.rebind["a"] == "alpha"
    assert t.revert_rebind["a"] == "alpha"


def test_default_revert_takes_the_execute_arguments_through_kwargs() -> None:
    t = Plain(rebind={"a": "x"})
    assert t.revert_rebind == {"a": "x"}
    assert t.revert_optional == frozenset()


def test_revert_requires_replaces_requires_for_revert() -> None:
    t = WithKwargs(requires=["x"], revert_requires=["y"])
    assert t.rebind == {"a": "a", "x": "x"}
    assert t.revert_rebind == {"y": "y"}
    assert t.requires == frozenset({"a", "x", "y"})


def test_a_revert_read_alike_shares_the_execute_mapping_and_one_that_differs_does_not() -> None:
    # A **kwargs execute with the default revert and a long requires (a fan-in):
    # revert's mapping is execute's, worked out once and shared.
    names = [f"v{i}" for i in range(100)]
    t = AllVariadic(requires=names)
    assert t.rebind == dict(zip(names, names, strict=True))
    assert t.revert_rebind is t.rebind
    assert t.requires == frozenset(names)
    # Revert with arguments of its own, or other requires, still gets its own mapping.
    assert WithRevert(rebind={"a": "x"}).revert_rebind == {"a": "x", "c": "c", "d": "d"}
    other = AllVariadic(requires=names, revert_requires=["y"])
    assert other.revert_rebind == {"y": "y"}
    assert other.requires == frozenset([*names, "y"])


def test_revert_rebind_naming_an_unknown_argument_names_the_revert_method() -> None:
    with pytest.raises(
        ValueError, match=r"^Extra arguments given to atom named: \['zzz'\] \(to its revert method\)"
    ):
        WithRevert(name="named", revert_rebind={"zzz": "q"})


# -- provides ------------------------------------------------------------------


def test_provides_string_saves_the_whole_result() -> None:
    t = Plain(provides="total")
    assert t.provides == frozenset({"total"})
    assert t.save_as == {"total": None}


def test_provides_tuple_or_list_saves_by_position() -> None:
    assert Plain(provides=("x", "y")).save_as == {"x": 0, "y": 1}
    assert Plain(provides=["x", "y"]).save_as == {"x": 0, "y": 1}


def test_provides_set_saves_by_dict_key() -> None:
    t = Plain(provides={"x", "y"})
    assert t.save_as == {"x": "x", "y": "y"}
    assert t.provides == frozenset({"x", "y"})


def test_provides_list_keeps_its_order_in_save_as() -> None:
    t = Plain(provides=["z", "a", "m"])
    assert list(t.save_as) == ["z", "a", "m"]


def test_extraction_is_the_save_as_items_as_a_tuple() -> None:
    t = Plain(provides=["x", "y"])
    assert t._extraction == tuple(t.save_as.items()) == (("x", 0), ("y", 1))
    assert Plain()._extraction == ()


def test_duplicate_names_in_provides_are_an_error() -> None:
    with pytest.raises(ValueError, match="Duplicate.*dup.*\\['x'\\]"):
        Plain(name="dup", provides=["x", "y", "x"])


def test_provides_of_an_unsupported_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="provides"):
        Plain(provides=42)  # type: ignore[arg-type]


def test_no_provides_means_nothing_is_saved() -> None:
    t = Plain()
    assert t.provides == frozenset()
    assert t.save_as == {}


def test_default_provides_is_used_when_provides_is_not_given() -> None:
    assert Provider().save_as == {"out": None}


def test_default_provides_may_be_a_tuple_or_a_set() -> None:
    class Pair(Provider):
        default_provides = ("first", "second")

    class Keys(Provider):
        default_provides = {"k"}

    assert Pair().save_as == {"first": 0, "second": 1}
    assert Keys().save_as == {"k": "k"}


def test_provides_overrides_default_provides() -> None:
    t = Provider(provides="mine")
    assert t.provides == frozenset({"mine"})


# -- identity ------------------------------------------------------------------


def test_name_defaults_to_the_class_module_path() -> None:
    assert Plain().name == f"{__name__}.Plain"


def test_explicit_name_is_kept() -> None:
    assert Plain(name="adder").name == "adder"


def test_version_defaults_to_one_zero_and_classes_may_override_it() -> None:
    class Newer(Plain):
        version = (2, 3)

    assert Plain().version == (1, 0)
    assert Newer().version == (2, 3)
    assert str(Newer(name="n")) == '"n==2.3"'


def test_priority_defaults_to_zero_and_classes_may_override_it() -> None:
    class Urgent(Plain):
        priority = 5

    assert Plain().priority == 0
    assert Urgent().priority == 5


def test_str_and_repr_show_name_and_version() -> None:
    t = Plain(name="adder")
    assert str(t) == '"adder==1.0"'
    assert repr(t) == f'<{__name__}.Plain "adder==1.0">'


def test_atom_is_abstract_without_execute() -> None:
    with pytest.raises(TypeError):
        atom.Atom()  # type: ignore[abstract]


def test_hooks_exist_and_do_nothing_by_default() -> None:
    t = Plain()
    assert t.pre_execute() is None
    assert t.post_execute() is None
    assert t.pre_revert() is None
    assert t.post_revert() is None
    assert t.revert(a=1, b=2, result=3, flow_failures={}) is None


# -- sharing and caching ----------------------------------------------------------


def test_mappings_are_read_only_so_atoms_can_share_them() -> None:
    # Flows of 100,000 atoms share one mapping per spelling; writing to it is refused.
    first, second = Plain(provides="x"), Plain(provides="x")
    with pytest.raises(TypeError):
        first.rebind["a"] = "changed"  # type: ignore[index]
    with pytest.raises(TypeError):
        first.save_as["x"] = 0  # type: ignore[index]
    assert second.rebind == {"a": "a", "b": "b"}
    assert second.save_as == {"x": None}


def test_a_one_argument_rebind_is_a_read_only_mapping_that_pickles() -> None:
    WithKwargs(rebind={"a": "warm"})  # the class's signature is known from now on
    t = WithKwargs(rebind={"a": "x7"})
    assert t.rebind == {"a": "x7"} and dict(t.rebind) == {"a": "x7"}
    assert list(t.rebind.items()) == [("a", "x7")] and "a" in t.rebind and "x7" not in t.rebind
    with pytest.raises(TypeError):
        t.rebind["a"] = "changed"  # type: ignore[index]
    with pytest.raises(KeyError):
        t.rebind["x7"]
    assert repr(t.rebind) == "{'a': 'x7'}"
    copy = pickle.loads(pickle.dumps(t))
    assert copy.rebind == {"a": "x7"} and copy.requires == frozenset({"x7"})


def _fresh_classes() -> tuple[type[task.Task], type[task.Task]]:
    """Two classes with one signature: one warmed up (the shortcut's), one never used."""

    def make() -> type[task.Task]:
        class Fresh(task.Task):
            def execute(self, a, b=1, **kwargs):  # type: ignore[no-untyped-def]
                return a

            def revert(self, a, result, **kwargs):  # type: ignore[no-untyped-def]
                return None

        return Fresh

    return make(), make()


SPELLINGS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"name": "one"}, {"name": "two", "provides": "p"}),
    ({"rebind": {"a": "x1"}}, {"rebind": {"a": "x2"}, "provides": ["p", "q"]}),
    ({"rebind": {"a": "x1", "b": "y1"}}, {"rebind": {"a": "x2", "b": "y2"}}),
    ({"rebind": {"a": "x1"}}, {"rebind": {"a": "x2"}, "inject": {"b": 5}}),
    ({"requires": ["r1"]}, {"requires": ["r2"]}),
    ({"name": "one"}, {"requires": []}),
    ({"requires": []}, {"name": "two", "inject": {"a": 1}}),
    ({"requires": ["r1"]}, {"requires": ["b"], "inject": {"a": 1}}),
    ({"requires": ["r1", "s1"]}, {"requires": ["r2", "s2"], "inject": {"s2": 0}}),
    ({"requires": ["r1"]}, {"requires": ["b"]}),  # names an argument: the long way
    ({"requires": ["r1", "s1"]}, {"requires": ["r2", "r2"]}),  # a repeat: the long way
]


@pytest.mark.parametrize(("first", "later"), SPELLINGS)
def test_a_later_atom_spelled_like_an_earlier_one_gets_what_the_long_way_gives(
    first: dict[str, Any], later: dict[str, Any]
) -> None:
    # The class remembers the profile of each common spelling for the atoms after it.
    warmed, fresh = _fresh_classes()
    warmed(**first)
    short, long = warmed(**later), fresh(**later)
    assert _mappings(short) == _mappings(long)


def _mappings(t: atom.Atom) -> dict[str, Any]:
    return {
        "rebind": list(t.rebind.items()),
        "revert_rebind": list(t.revert_rebind.items()),
        "save_as": list(t.save_as.items()),
        "extraction": t._extraction,
        "optional": t.optional,
        "revert_optional": t.revert_optional,
        "requires": t.requires,
        "provides": t.provides,
    }


def test_a_later_atom_spelled_alike_is_still_checked() -> None:
    warmed, _ = _fresh_classes()
    warmed(rebind={"a": "x1"}, requires=None)
    with pytest.raises(TypeError, match="rebind"):
        warmed(rebind={"a": 7})  # type: ignore[dict-item]
    Plain(rebind={"a": "x1"})
    with pytest.raises(ValueError, match="Extra arguments"):
        Plain(rebind={"zzz": "x2"})


def test_patching_a_method_drops_what_the_class_remembered() -> None:
    warmed, _ = _fresh_classes()
    warmed(rebind={"a": "x1"})
    warmed(rebind={"a": "x2"})

    def execute(self: Any, c: Any) -> Any:
        return c

    warmed.execute = execute  # type: ignore[method-assign]
    assert warmed(rebind={"c": "x3"}).rebind == {"c": "x3"}
    with pytest.raises(ValueError, match="Extra arguments"):
        warmed(rebind={"a": "x4"})


def test_a_subclass_does_not_take_what_its_base_class_remembered() -> None:
    # The record is a class attribute, so a subclass sees its base's: it must work
    # out its own (here it reads its arguments from another function).
    class Base(task.Task):
        def execute(self, a: Any) -> Any:
            return a

    def other(b: Any) -> Any:
        return b

    class Sub(Base):
        def _arg_sources(self) -> Any:
            return other, None

    assert Base().requires == frozenset({"a"})
    assert Base().requires == frozenset({"a"})  # from what Base remembered
    assert Sub().requires == frozenset({"b"})
    assert Sub(inject={"b": 1}).requires == frozenset()


def test_signature_is_inspected_once_per_function() -> None:
    first, second = Plain(), Plain()
    assert reflection.inspect_callable(first.execute) is reflection.inspect_callable(second.execute)


def test_callable_objects_that_are_unhashable_still_work() -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, a: Any) -> Any:
            return a

    t = task.FunctorTask(Unhashable(), name="u")
    assert t.requires == frozenset({"a"})


def test_reflection_names_classes_and_callables() -> None:
    assert reflection.get_class_name(Plain()) == f"{__name__}.Plain"
    assert reflection.get_class_name(Plain) == f"{__name__}.Plain"
    assert reflection.get_class_name(1) == "int"
    assert reflection.get_callable_name(Plain().execute) == f"{__name__}.Plain.execute"
    assert reflection.get_callable_name(test_reflection_names_classes_and_callables).endswith(
        "test_atom.test_reflection_names_classes_and_callables"
    )
    with pytest.raises(TypeError):
        reflection.get_class_name(test_reflection_names_classes_and_callables)


def test_reflection_lists_arguments() -> None:
    def f(a, b=1, *args, c, **kwargs):
        return None

    assert reflection.get_callable_args(f) == ["a", "b", "c"]
    assert reflection.get_callable_args(f, required_only=True) == ["a", "c"]
    assert reflection.accepts_kwargs(f)
    assert not reflection.accepts_kwargs(lambda x: x)
