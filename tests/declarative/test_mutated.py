"""A valid spec with one value changed, removed or added loads, or raises FlowSpecError: never anything else.

Specs come from the generator of :mod:`tests.declarative.test_equivalence`;
one node of each is replaced by a value of another shape (a list where a name
was, a dict where a list was...), removed, or given an extra key. A TypeError
or KeyError escaping :func:`~flowkit.declarative.load_spec` names no file,
line or key; a ``flow: [graph]`` did exactly that.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit import declarative
from tests.declarative.test_equivalence import specs

#: Values of every shape, and strings a spec gives meaning to.
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.sampled_from(["${", "${t1}", "${t1.x}", "$${", "${vals}", "graph", "times", "os:system", "x", "fail"]),
    st.lists(st.sampled_from(["t1", "f2", 1, None]), max_size=3),
    st.dictionaries(
        st.sampled_from(["item", "decider", "x", "controller", "flow", "tasks", "task"]),
        st.sampled_from([1, "t1", None, "times", "graph"]),
        max_size=3,
    ),
)
EXTRA_KEYS = st.sampled_from(["flow", "task", "tasks", "retry", "after", "name", "inputs", "zz"])


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value in ``node``, the root first."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), data=st.data())
def test_a_mutated_spec_loads_or_raises_a_spec_error(spec: dict[str, Any], data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(list(paths(spec))[1:]))
    changed = copy.deepcopy(spec)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    how = data.draw(st.sampled_from(["replace", "remove", "add a key"]))
    if how == "replace":
        parent[path[-1]] = data.draw(JUNK)
    elif how == "remove":
        del parent[path[-1]]
    elif isinstance(parent[path[-1]], dict):
        parent[path[-1]][data.draw(EXTRA_KEYS)] = data.draw(JUNK)
    with contextlib.suppress(declarative.FlowSpecError):
        declarative.load_spec(changed)
