"""The ZooKeeper backend's transactions as data: their operations, their size, and their split.

ZooKeeper refuses a request larger than its ``jute.maxbuffer`` (1 MB by
default) by dropping the client's connection, without an error code. One
save of many new atoms (the engine's prepare writes every atom of a flow) is
such a request when written as one transaction, as TaskFlow writes it.

A commit is therefore planned as a list of :class:`Op` first. When it would
be larger than the store's limit, the creation of new atoms (each with its
link to a flow that already exists) is moved into parts committed before the
rest. The rule that keeps the callers' guarantees:

* Every part checks everything the whole would have checked: each version
  the step read (the flow's document among them: a conductor's write fence
  lives there, so a fenced write is refused in *each* part once the fence
  moved), each link it relied on, and the gate of readers' holds.
* Every part gives each flow it links atoms to a new data version of its
  ``members`` znode, so a reader never sees links change without noticing.
* The last part holds everything else (the flow's document, atoms already
  linked, unlinks, deletes), so until it commits the flow's document is as
  it was.

A crash (or a lost race) between parts leaves new atoms, in the state the
step gave them, linked to their flow: what a reader then sees is the flow as
it was plus those atoms, and the step, re-run (a retry, or the engine's
prepare on resume), finds them linked and rewrites them. Only a flow created
in the same step is never split: its links need its ``members`` znode, made
in the last part.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Any

from flowkit._utils.records import Record
from flowkit._utils.text import error_text

__all__ = [
    "DEFAULT_JUTE_MAXBUFFER",
    "Action",
    "Op",
    "Plan",
    "TransactionLost",
    "emit",
    "estimated_size",
    "request_size",
    "split",
]

#: ZooKeeper's default ``jute.maxbuffer`` (0xfffff bytes): a server drops the connection of a
#: client whose request is larger, without an error code, so kazoo says only ``ConnectionLoss``.
DEFAULT_JUTE_MAXBUFFER = 0xFFFFF
# Bytes each operation of a multi-operation request adds beyond its own body (its header).
_MULTI_HEADER_BYTES = 9
# Bytes an operation's encoding adds beyond its path and data, at most (lengths, ACL, flags,
# version), with room for a chroot the client may prefix to the path.
_OP_OVERHEAD = 128


class Action(enum.Enum):
    """What one operation of a transaction does to its znode."""

    CREATE = "create"
    SET = "set"
    DELETE = "delete"
    CHECK = "check"


class Op(Record):
    """One operation of a ZooKeeper transaction."""

    action: Action
    path: str
    data: bytes = b""
    version: int = -1
    """The version the operation requires (-1: any)."""


class Plan(Record):
    """A commit's operations, with the creations of new atoms that may go into earlier parts."""

    ops: list[Op]
    """Everything but :attr:`movable`, in commit order (the gate's check first, if any)."""
    movable: list[tuple[Op, ...]]
    """New atoms: each its document's creation and its link's, to a flow that exists."""
    members: dict[str, int]
    """Path of each flow's ``members`` znode that ``ops`` gives a new data version -> index in ``ops``."""


class TransactionLost(Exception):
    """The connection was lost while a transaction was committing; says how big it was and why that matters.

    ZooKeeper answers a request over its ``jute.maxbuffer`` by closing the
    connection, and kazoo then raises a ``ConnectionLoss`` with no text: a
    message quoting it said nothing. This one names the size, and when the
    request was over the default limit, the limit and what to do.

    Attributes:
        operations: how many operations (nodes created, set, deleted or checked) the transaction held.
        size: about how many bytes the request carried.
    """

    def __init__(self, operations: int, size: int, lost: BaseException) -> None:
        self.operations = operations
        self.size = size
        carried = f"the ZooKeeper transaction of {operations:,} znode operations ({size:,} bytes)"
        if size > DEFAULT_JUTE_MAXBUFFER:
            text = (
                f"{carried} lost its connection ({error_text(lost)}): ZooKeeper refuses a request "
                f"over its jute.maxbuffer, 1 MB ({DEFAULT_JUTE_MAXBUFFER:,} bytes) by default, by "
                "dropping the connection; raise -Djute.maxbuffer on every server and client, or "
                "write less at once"
            )
        else:
            text = f"{carried} lost its connection ({error_text(lost)})"
        super().__init__(text)


def request_size(operations: Sequence[Any]) -> int:
    """How many bytes a multi-operation request of kazoo ``operations`` carries (kazoo's own encoding)."""
    return sum(len(op.serialize()) + _MULTI_HEADER_BYTES for op in operations)


def estimated_size(ops: Iterable[Op]) -> int:
    """At least as many bytes as ``ops`` take in a request (cheap: no encoding)."""
    return sum(len(op.path) + len(op.data) + _OP_OVERHEAD for op in ops)


def emit(txn: Any, ops: Iterable[Op]) -> None:
    """Add ``ops`` to the kazoo transaction ``txn``."""
    for op in ops:
        if op.action is Action.CREATE:
            txn.create(op.path, op.data)
        elif op.action is Action.SET:
            txn.set_data(op.path, op.data, version=op.version)
        elif op.action is Action.DELETE:
            txn.delete(op.path, version=op.version)
        else:
            txn.check(op.path, op.version)


def _checks_of(ops: Sequence[Op], members: Iterable[str]) -> list[Op]:
    """What every earlier part checks: each version ``ops`` require, but the bumped ``members``."""
    bumped = set(members)
    return [
        Op(Action.CHECK, op.path, version=op.version)
        for op in ops
        if op.path not in bumped
        and (op.action is Action.CHECK or (op.action in (Action.SET, Action.DELETE) and op.version != -1))
    ]


def split(plan: Plan, limit: int) -> list[list[Op]]:
    """The plan's operations in parts of about ``limit`` bytes at most (see the module docstring).

    One part (the whole plan) when it fits, or when moving its new atoms out
    cannot make its parts fit: a too big request then fails as it is, and
    says so (:class:`TransactionLost`).
    """
    whole = [*plan.ops, *(op for pair in plan.movable for op in pair)]
    if not plan.movable or estimated_size(whole) <= limit:
        # The movable creations go after the other documents and links: their flows exist already.
        return [whole]
    checks = _checks_of(plan.ops, plan.members)
    overhead = estimated_size(checks) + estimated_size(plan.ops[index] for index in plan.members.values())
    budget = limit - overhead
    if budget <= 0 or estimated_size(plan.ops) > limit:
        return [whole]
    chunks: list[list[Op]] = [[]]
    used = 0
    for pair in plan.movable:
        size = estimated_size(pair)
        if chunks[-1] and used + size > budget:
            chunks.append([])
            used = 0
        chunks[-1].extend(pair)
        used += size
    parts: list[list[Op]] = []
    bumps = dict.fromkeys(plan.members, 0)  # how many parts so far gave each members znode a version
    for chunk in chunks:
        part = [*chunk]
        for path in plan.members:
            part.append(_bumped(plan.ops[plan.members[path]], bumps[path]))
            bumps[path] += 1
        parts.append(checks + part)  # the gate's check first, as in the last part
    last = list(plan.ops)
    for path, index in plan.members.items():
        last[index] = _bumped(last[index], bumps[path])
    parts.append(last)
    return parts


def _bumped(op: Op, earlier: int) -> Op:
    """``op`` (a ``members`` znode's new data version) after ``earlier`` parts gave it one each."""
    return op if op.version == -1 else op._replace(version=op.version + earlier)
