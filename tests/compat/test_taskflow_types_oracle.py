"""TaskFlow 6.5 as an oracle for the helper types: same trees, same drawings and walks.

Random trees are built twice, once with ``taskflow.types.tree`` and once with
``flowkit.types.tree``; every walk and the drawing must come out the same.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowkit.types import sets as fk_sets
from flowkit.types import tree as fk_tree

tf_tree = pytest.importorskip("taskflow.types.tree")
tf_sets = pytest.importorskip("taskflow.types.sets")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# A tree as nested lists: each node is a list of its children.
shapes = st.recursive(st.just([]), lambda children: st.lists(children, max_size=4), max_leaves=25)


def build(module: Any, shape: list[Any]) -> Any:
    counter = iter(range(10_000))

    def node(children: list[Any]) -> Any:
        made = module.Node(f"n{next(counter)}")
        for child in children:
            made.add(node(child))
        return made

    return node(shape)


def items(nodes: Any) -> list[str]:
    return [n.item for n in nodes]


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_tree_walks_and_drawing_match_taskflow(shape: list[Any]) -> None:
    ours, theirs = build(fk_tree, shape), build(tf_tree, shape)
    assert ours.pformat() == theirs.pformat()
    assert ours.pformat(starting_prefix="  ") == theirs.pformat(starting_prefix="  ")
    for flags in ({}, {"include_self": True}, {"right_to_left": False}, {"right_to_left": True}):
        assert items(ours.dfs_iter(**flags)) == items(theirs.dfs_iter(**flags))
        assert items(ours.bfs_iter(**flags)) == items(theirs.bfs_iter(**flags))
    assert ours.child_count(only_direct=False) == theirs.child_count(only_direct=False)
    for child_ours, child_theirs in zip(ours.dfs_iter(), theirs.dfs_iter(), strict=True):
        assert child_ours.pformat() == child_theirs.pformat()
        assert items(child_ours.path_iter()) == items(child_theirs.path_iter())


@settings(deadline=None)  # it checks results, not speed: a busy machine must not fail it
@given(st.lists(st.integers(-5, 5)), st.lists(st.integers(-5, 5)), st.lists(st.integers(-5, 5)))
def test_ordered_set_operations_match_taskflow(a: list[int], b: list[int], c: list[int]) -> None:
    ours, theirs = fk_sets.OrderedSet(a), tf_sets.OrderedSet(a)
    assert list(ours) == list(theirs)
    assert list(ours.union(b, c)) == list(theirs.union(b, c))
    assert list(ours.intersection(b, c)) == list(theirs.intersection(b, c))
    assert list(ours.difference(b, c)) == list(theirs.difference(b, c))
    assert ours.issubset(b) == theirs.issubset(b)
    assert ours.issuperset(b) == theirs.issuperset(b)


def _formatted_failure(root: str, nested: bool) -> str:
    """Run a flow whose last task fails on library ``root``; format the failure."""
    import importlib

    engines = importlib.import_module(f"{root}.engines")
    formatters = importlib.import_module(f"{root}.formatters")
    states = importlib.import_module(f"{root}.states")
    task = importlib.import_module(f"{root}.task")
    linear_flow = importlib.import_module(f"{root}.patterns.linear_flow")
    unordered_flow = importlib.import_module(f"{root}.patterns.unordered_flow")

    class Fetch(task.Task):  # type: ignore[misc, name-defined]
        def execute(self, token: str) -> dict[str, Any]:
            return {"secret": "s3", "n": len(token)}

    class Broken(task.Task):  # type: ignore[misc, name-defined]
        def execute(self, a: dict[str, Any], b: dict[str, Any]) -> None:
            raise RuntimeError("boom")

    fetches = (Fetch("fetch-a", provides="a"), Fetch("fetch-b", provides="b"))
    if nested:
        flow = linear_flow.Flow("boot").add(unordered_flow.Flow("both").add(*fetches), Broken("broken"))
    else:
        flow = linear_flow.Flow("boot").add(*fetches, Broken("broken"))
    engine = engines.load(flow, store={"token": "t0k"})
    with pytest.raises(RuntimeError):
        engine.run()
    fail = engine.storage.get_execute_failures()["broken"]
    engine.storage.set_atom_intention("broken", states.EXECUTE)
    formatter = formatters.FailureFormatter(engine, mask_inputs_keys=["token"], mask_outputs_keys=["secret"])
    exc_info, details = formatter.format(fail, lambda node: node.item.name == "broken")
    assert exc_info is not None and exc_info[0] is RuntimeError
    return str(details)


@pytest.mark.parametrize("nested", [False, True], ids=["linear", "unordered-inside-linear"])
def test_failure_formatter_text_matches_taskflow(nested: bool) -> None:
    ours, theirs = _formatted_failure("flowkit", nested), _formatted_failure("taskflow", nested)
    # Siblings of an unordered flow come in no defined order in either library.
    assert sorted(ours.splitlines()) == sorted(theirs.splitlines())
    if not nested:
        assert ours == theirs
        assert "Atom 'fetch-a'" in ours and "'token': '***'" in ours


def _chained_failure(root: str, links: int) -> Any:
    """A failure of an exception raised through ``links`` others (``raise ... from``)."""
    failure_mod = __import__(f"{root}.types.failure", fromlist=["Failure"])
    try:
        try:
            raise KeyError("deepest")
        except KeyError as err:
            caught: BaseException = err
            for level in range(links):
                try:
                    raise ValueError(f"level {level}") from caught
                except ValueError as wrapped:
                    caught = wrapped
            raise RuntimeError("top") from caught
    except RuntimeError:
        return failure_mod.Failure()


def _shape(record: dict[str, Any]) -> list[Any]:
    # What a reader of the record sees, without traceback text (file paths differ).
    return [record["exception_str"], record["exc_type_names"], [_shape(c) for c in record["causes"]]]


@pytest.mark.parametrize("links", [0, 1, 2, 5])
def test_a_failures_cause_chain_is_recorded_nested_as_taskflow_records_it(links: int) -> None:
    ours = _chained_failure("flowkit", links).to_dict()
    theirs = _chained_failure("taskflow", links).to_dict()
    assert _shape(ours) == _shape(theirs)
