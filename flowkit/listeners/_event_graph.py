"""What the event log asks of the compiled graph: predecessors, retry scopes, decisions.

The listener hears notifications, not the scheduler's reasoning; these are the
questions it answers from the engine's compiled graph (``engine.compilation``)
and stored intentions to explain a transition. Each answer is cached per atom
(per failure for decisions), so explaining a run costs one walk per atom.
An engine that exposes no compiled graph gets empty answers.
"""

from __future__ import annotations

from typing import Any

from flowkit import states as st
from flowkit._utils.records import Record
from flowkit.types.failure import Failure

__all__ = ["Decided", "FlowGraph", "failure_words", "state_before"]


class Decided(Record):
    """The retry decision that resolved a failure, as a cause names it."""

    retry: str | None  # None (with decision None): no retry controls the failed atom
    decision: str | None  # "RETRY", "REVERT" or "REVERT_ALL"


def failure_words(failure: Any) -> tuple[str | None, str]:
    """The failure's short type name (None if not a Failure) and ``Type: message`` text."""
    if isinstance(failure, Failure):
        names = failure.exception_type_names
        kind = names[0].rpartition(".")[2] if names else "Exception"
        return kind, f"{kind}: {failure.exception_str}" if failure.exception_str else kind
    return None, "an error"


def state_before(state: str) -> str | None:
    """The state an atom is in while working towards ``state`` (RUNNING before SUCCESS...)."""
    if state in (st.SUCCESS, st.FAILURE):
        return st.RUNNING
    if state in (st.REVERTED, st.REVERT_FAILURE):
        return st.REVERTING
    return None


class FlowGraph:
    """The engine's compiled graph, asked about one atom at a time.

    Args:
        engine: the engine whose ``compilation`` and ``storage`` are read.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._nodes: dict[str, Any] | None = None
        #: atom name -> its predecessor atoms.
        self._preds: dict[str, list[str]] = {}
        #: failure seq -> the decision inferred for it.
        self._decisions: dict[int, Decided] = {}

    def nodes(self) -> dict[str, Any]:
        """Atom name -> compiled node (empty when the engine exposes no graph)."""
        compilation = getattr(self._engine, "compilation", None)
        atoms = getattr(compilation, "atoms", None) or ()
        # A spawned sub-flow (flowkit.dynamic) adds atoms while the flow runs.
        if self._nodes is None or len(self._nodes) != len(atoms):
            self._nodes = {node.name: node for node in atoms}
        return self._nodes

    def predecessors(self, name: str) -> list[str]:
        """The atoms whose completion ``name`` waits for, through nested flows."""
        known = self._preds.get(name)
        if known is not None:
            return known
        node = self.nodes().get(name)
        if node is None:
            return []
        nodes = self._engine.compilation.nodes
        found: list[str] = []
        seen: set[int] = set()
        stack = list(node.pred)
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            other = nodes[index]
            if other.atom is None:
                stack.extend(other.pred)
            else:
                found.append(other.name)
        found.reverse()
        self._preds[name] = found
        return found

    def retry_chain(self, name: str) -> list[Any]:
        """The retries controlling ``name``, innermost first."""
        node = self.nodes().get(name)
        if node is None:
            return []
        nodes = self._engine.compilation.nodes
        chain = []
        index = getattr(node, "retry", -1)
        while index is not None and index >= 0:
            chain.append(nodes[index])
            index = getattr(nodes[index], "retry", -1)
        return chain

    def decision(self, failed: str, failure_seq: int) -> Decided:
        """Infer the retry decision taken after the failure numbered ``failure_seq`` of ``failed``.

        Worked out once per failure, at its first consequence, when the
        scheduler has marked every atom it will revert: the innermost retry
        that chose RETRY, else the innermost whose scope holds every atom
        meant to revert (REVERT), else REVERT_ALL.
        """
        known = self._decisions.get(failure_seq)
        if known is not None:
            return known
        chain = self.retry_chain(failed)
        decided = Decided(None, None)
        if chain:
            storage = self._engine.storage
            reverting = [n for n in self.nodes() if storage.get_atom_intention(n) in (st.REVERT, st.RETRY)]
            decided = Decided(chain[-1].name, "REVERT_ALL")
            for retry in chain:
                if (
                    storage.get_atom_intention(retry.name) == st.RETRY
                    or storage.get_atom_state(retry.name) == st.RETRYING
                ):
                    decided = Decided(retry.name, "RETRY")
                    break
                if all(n == retry.name or retry in self.retry_chain(n) for n in reverting):
                    decided = Decided(retry.name, "REVERT")
                    break
        self._decisions[failure_seq] = decided
        return decided
