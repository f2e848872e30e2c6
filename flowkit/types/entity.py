"""A named, typed resource with metadata (TaskFlow's ``types.entity``).

Jobboards and conductors describe who claimed a job, or which conductor runs, as an
:class:`Entity`: a kind (``"conductor"``), a unique name and a metadata dict.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Entity"]


class Entity:
    """Something identified by ``kind`` and ``name``, described by ``metadata``.

    Args:
        kind: What sort of thing it is (usually unique to an application).
        name: Tells it apart from other entities of the same kind.
        metadata: Anything further that describes it.
    """

    def __init__(self, kind: str, name: str, metadata: dict[str, Any]) -> None:
        self.kind = kind
        self.name = name
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"Entity(kind={self.kind!r}, name={self.name!r}, metadata={self.metadata!r})"

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"kind": ..., "name": ..., "metadata": ...}`` (JSON-safe if the metadata is)."""
        return {"kind": self.kind, "name": self.name, "metadata": self.metadata}
