"""The narrow read behind ``Connection.get_atom_states``: a flow's atoms' states, not their details.

A view polling a running flow (the monitor's live stream) needs each atom's
state, intention and how many ``ready`` events its event log holds. Read
whole, a 10,000-atom flow on SQLite cost about 0.4 s a poll, nearly all of
it decoding every column of every row and building 10,000 details; the
results and failures were never looked at.

Here one SELECT reads the name, state and intention columns, and the ready
count where the database can count it. It starts from the flow's own row,
joined to its atoms' (outer join): a flow without atoms gives one row without
an atom, and no row at all says there is no such flow, so no second query
asks whether the flow exists (the monitor polls this for every open page).

- SQLite (its JSON functions are built in) counts the events in the
  ``meta`` text itself, so no metadata crosses into Python at all;
- any other database sends the ``meta`` column alone, decoded here.

A row the database cannot count for exactly as the full read would (meta
that SQLite does not take for JSON, such as Python's ``NaN``; a chunk of a
long history, or an atom whose history is chunked, whose events are partly
in other rows: see :mod:`flowkit.persistence._archived`) makes
:func:`read_states` answer None, and the caller reads the flow whole
instead: rare, and right by construction. The markers are looked for as
text (a key name inside a string is taken for one too, which only costs
that full read).

Each case matches :func:`~flowkit.persistence.base.ready_events`: an event
log that is not a list (an object's members are not its events: ``typeof(key)``
is an index only for an array's elements) counts none, nor does an entry or
a cause that is not an object, and metadata that is not an object reads as
none, as the models read it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnClause, Connection, Select, bindparam, literal_column, select

from flowkit.persistence._archived import ARCHIVE_KEY, CHUNKS_KEY, is_chunked
from flowkit.persistence.backends._missing import FLOWS, not_found
from flowkit.persistence.backends.sqlalchemy import _codec
from flowkit.persistence.backends.sqlalchemy._statements import ATOM_ORDER
from flowkit.persistence.backends.sqlalchemy.tables import atomdetails, flowdetails
from flowkit.persistence.base import EVENT_LOG_KEY, READY_CAUSE, AtomStatus, ready_events
from flowkit.states import EXECUTE

__all__ = ["SELECT_STATES", "SELECT_STATES_SQLITE", "read_states"]

_COLUMNS = (atomdetails.c.name, atomdetails.c.state, atomdetails.c.intention)
#: The flow's row and its atoms' (none: one row whose atom columns are NULL).
_FLOW_AND_ATOMS = flowdetails.outerjoin(atomdetails, atomdetails.c.parent_uuid == flowdetails.c.uuid)
_OF_FLOW = flowdetails.c.uuid == bindparam("b_uuid")


def _states(*columns: Any) -> Select[Any]:
    return select(*_COLUMNS, *columns).select_from(_FLOW_AND_ATOMS).where(_OF_FLOW).order_by(*ATOM_ORDER)


#: Every database: the columns a status needs, ``meta`` decoded here for the ready count.
SELECT_STATES: Select[Any] = _states(atomdetails.c.meta)

#: The atoms' ``meta`` column, named whole: the flow's row has one too.
_META = f"{atomdetails.name}.{atomdetails.c.meta.name}"

#: SQLite's count of an atom's ``ready`` events, from its ``meta`` text; NULL for a row it
#: cannot count as :func:`~flowkit.persistence.base.ready_events` would (see the module
#: docstring).
_READY_SQLITE: ColumnClause[int] = literal_column(
    f"""
    CASE
      WHEN {_META} IS NULL THEN 0
      WHEN NOT json_valid({_META})
        OR instr({_META}, '"{ARCHIVE_KEY}"') > 0 OR instr({_META}, '"{CHUNKS_KEY}"') > 0 THEN NULL
      ELSE (
        SELECT count(*) FROM json_each({_META}, '$.{EVENT_LOG_KEY}') AS event
        WHERE typeof(event.key) = 'integer' AND event.type = 'object'
          AND json_extract(event.value, '$.cause.kind') = '{READY_CAUSE}'
      )
    END"""
)

#: SQLite: the columns a status needs, and the ready count made by the database.
SELECT_STATES_SQLITE: Select[Any] = _states(_READY_SQLITE.label("ready"))


def read_states(conn: Connection, fd_uuid: str) -> dict[str, AtomStatus] | None:
    """The statuses of flow ``fd_uuid``'s atoms by name, or None when only the full read can tell.

    Raises:
        NotFound: no such flow detail (as the full read says it).
        StorageFailure: a ``meta`` column is not JSON (as the full read says).
    """
    params = {"b_uuid": fd_uuid}
    sqlite = conn.dialect.name == "sqlite"
    rows = conn.execute(SELECT_STATES_SQLITE if sqlite else SELECT_STATES, params).all()
    if not rows:
        raise not_found(FLOWS, fd_uuid)
    found: dict[str, AtomStatus] = {}
    for name, state, intention, counted in rows:
        if name is None:  # the flow's row alone: it has no atoms
            continue
        if sqlite:
            if counted is None:
                return None
            ready = int(counted)
        else:
            meta = _codec.loads(counted, "meta", "atom detail", name)
            if isinstance(meta, dict) and is_chunked(meta):
                return None
            ready = ready_events(meta)
        found[name] = AtomStatus(state, intention or EXECUTE, ready)
    return found
