"""The job a conductor runs a flow for, as the flow's metadata records it.

Every conductor writes it (``meta["job"]``: the job's uuid, the board's kind
and a URL naming the board, any password masked) into the flow detail of each
job it runs, before the flow runs, with the job's claim held. ``flowkit flows
resume`` reads it back: a flow a conductor runs is resumed by hand only while
the resume itself holds the job (:mod:`flowkit.cli._held`).

Beyond TaskFlow, whose conductors record nothing there; a TaskFlow-shaped
reader of the metadata sees one key more and reads its own keys as before.
The record is staged with the flow's other metadata and written with the
flow's first state change: it costs the conductor no write of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flowkit.persistence.backends._urls import mask_url

__all__ = ["JOB_KEY", "JobRecord"]

#: Flow detail metadata key holding the :class:`JobRecord` of a conductor's run.
JOB_KEY = "job"


@dataclass(frozen=True)
class JobRecord:
    """The job a conductor runs a flow for, as its flow's metadata keeps it.

    Attributes:
        uuid: the job's uuid.
        board: the board's kind (the scheme of its URL: ``redis``, ``zookeeper``...).
        url: a URL naming the board (:attr:`JobBoard.url <flowkit.jobs.base.JobBoard.url>`),
            any password in it masked.
    """

    uuid: str
    board: str
    url: str

    @classmethod
    def of(cls, job_uuid: str, board_url: str) -> JobRecord:
        """The record of job ``job_uuid`` on the board at ``board_url`` (its password masked here)."""
        return cls(job_uuid, urlsplit(board_url).scheme.lower() or board_url, mask_url(board_url))

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> JobRecord | None:
        """The record a flow's metadata holds, or ``None`` (a flow no conductor ran, or a malformed entry)."""
        entry = (meta or {}).get(JOB_KEY)
        if not isinstance(entry, Mapping):
            return None
        fields = (entry.get("uuid"), entry.get("board"), entry.get("url"))
        if not all(isinstance(value, str) for value in fields):
            return None
        uuid, board, url = (str(value) for value in fields)
        return cls(uuid, board, url)

    def to_dict(self) -> dict[str, str]:
        """The record as stored in the flow's metadata (and shown by ``--dry-run --json``)."""
        return {"uuid": self.uuid, "board": self.board, "url": self.url}

    def describe(self) -> str:
        """``job UUID on KIND board URL``, as the messages name it."""
        return f"job {self.uuid} on {self.board} board {self.url}"
