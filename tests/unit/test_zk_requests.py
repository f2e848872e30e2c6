"""The rule by which a ZooKeeper commit too big for one request is split (no server needed)."""

from __future__ import annotations

from flowkit.persistence.backends._zk_requests import Action, Op, Plan, estimated_size, split

_GATE = Op(Action.CHECK, "/r/readers", version=7)
_FLOW_DOC = Op(Action.SET, "/r/flows/f", b'{"fence": 1}', version=3)
_MEMBERS = Op(Action.SET, "/r/members/f", version=5)


def _plan(atoms: int) -> Plan:
    movable = [
        (Op(Action.CREATE, f"/r/atoms/a{n}", b"x" * 400), Op(Action.CREATE, f"/r/members/f/a{n}"))
        for n in range(atoms)
    ]
    return Plan([_GATE, _FLOW_DOC, _MEMBERS], movable, {_MEMBERS.path: 2})


def test_a_plan_that_fits_is_one_part_with_every_operation() -> None:
    plan = _plan(3)
    (whole,) = split(plan, 1_000_000)
    assert whole[:3] == plan.ops and len(whole) == 3 + 2 * 3


def test_every_part_checks_the_gate_first_and_the_flow_document_and_bumps_members_in_turn() -> None:
    plan = _plan(200)
    limit = 20_000
    parts = split(plan, limit)
    assert len(parts) > 2
    for number, part in enumerate(parts):
        assert part[0] == _GATE  # a read hold taken since fails the part first
        assert estimated_size(part) <= limit
        members = [op for op in part if op.path == _MEMBERS.path]
        assert members == [_MEMBERS._replace(version=_MEMBERS.version + number)]
        if number < len(parts) - 1:  # the flow's document (its fence) is checked, not yet written
            assert Op(Action.CHECK, _FLOW_DOC.path, version=_FLOW_DOC.version) in part
            assert _FLOW_DOC not in part
    assert _FLOW_DOC in parts[-1]
    moved = [op for part in parts[:-1] for op in part if op.action is Action.CREATE]
    assert moved == [op for pair in plan.movable for op in pair]  # each atom with its link, in order


def test_members_never_read_are_bumped_without_a_version_in_every_part() -> None:
    members = _MEMBERS._replace(version=-1)
    plan = _plan(200)._replace(ops=[_GATE, _FLOW_DOC, members])
    parts = split(plan, 20_000)
    assert all(members in part for part in parts)


def test_a_rest_over_the_limit_is_not_split() -> None:
    big = Op(Action.SET, "/r/atoms/old", b"x" * 30_000)
    plan = _plan(10)._replace(ops=[_GATE, _FLOW_DOC, _MEMBERS, big])
    assert len(split(plan, 20_000)) == 1
