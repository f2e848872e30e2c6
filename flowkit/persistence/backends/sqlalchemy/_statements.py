"""The SQL the backend runs, built once per process (and per dialect for upserts).

Statements are module constants so SQLAlchemy's compiled cache finds them by
identity-stable cache keys and nothing is rebuilt per call. Parameters use
``b_``-prefixed names where a column of the same name is being set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Delete,
    Dialect,
    Executable,
    Insert,
    Select,
    Update,
    and_,
    bindparam,
    column,
    delete,
    exists,
    literal_column,
    or_,
    select,
    union_all,
    values,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from flowkit.persistence.backends.sqlalchemy.tables import atomdetails, flowdetails, logbooks

__all__ = [
    "ATOM_ORDER",
    "DELETE_ALL",
    "DELETE_BOOK",
    "DELETE_BOOK_ATOMS",
    "DELETE_BOOK_FLOWS",
    "FENCE_FLOW",
    "FENCE_FLOW_OWN",
    "FENCE_FLOW_REPLACING",
    "FLOW_EXISTS",
    "HOLD_FENCE",
    "INSERT_ATOM",
    "INSERT_BOOK",
    "INSERT_FLOW",
    "MAX_ALONE_ROWS",
    "SELECT_ALL_ATOMS",
    "SELECT_ALL_BOOKS",
    "SELECT_ALL_FLOWS",
    "SELECT_ATOM",
    "SELECT_BOOK",
    "SELECT_BOOK_ATOMS",
    "SELECT_BOOK_FLOWS",
    "SELECT_FENCE",
    "SELECT_FLOW",
    "SELECT_FLOW_ATOMS",
    "SELECT_FLOW_LOCKED",
    "UPDATE_ATOM",
    "UPDATE_BOOK",
    "UPDATE_FLOW",
    "UPDATE_FLOW_PROGRESS",
    "ProgressWriter",
    "atom_upserter",
]

ATOM_ORDER = (atomdetails.c.created_at, atomdetails.c.uuid)
_FLOW_ORDER = (flowdetails.c.created_at, flowdetails.c.uuid)

SELECT_BOOK: Select[Any] = select(logbooks).where(logbooks.c.uuid == bindparam("b_uuid"))
SELECT_ALL_BOOKS: Select[Any] = select(logbooks).order_by(logbooks.c.created_at, logbooks.c.uuid)
SELECT_FLOW: Select[Any] = select(flowdetails).where(flowdetails.c.uuid == bindparam("b_uuid"))
# The flow row (its fence with it) locked until the transaction ends, so the fence read is the
# fence a conditional UPDATE after it replaces (SQLite ignores FOR UPDATE: its write transactions,
# BEGIN IMMEDIATE, hold the whole database from their start).
SELECT_FLOW_LOCKED: Select[Any] = SELECT_FLOW.with_for_update()
SELECT_BOOK_FLOWS: Select[Any] = (
    select(flowdetails).where(flowdetails.c.parent_uuid == bindparam("b_uuid")).order_by(*_FLOW_ORDER)
)
SELECT_ALL_FLOWS: Select[Any] = select(flowdetails).order_by(*_FLOW_ORDER)
FLOW_EXISTS: Select[Any] = select(flowdetails.c.uuid).where(flowdetails.c.uuid == bindparam("b_uuid"))
SELECT_ATOM: Select[Any] = select(atomdetails).where(atomdetails.c.uuid == bindparam("b_uuid"))
SELECT_FLOW_ATOMS: Select[Any] = (
    select(atomdetails).where(atomdetails.c.parent_uuid == bindparam("b_uuid")).order_by(*ATOM_ORDER)
)
SELECT_BOOK_ATOMS: Select[Any] = (
    select(atomdetails)
    .join(flowdetails, flowdetails.c.uuid == atomdetails.c.parent_uuid)
    .where(flowdetails.c.parent_uuid == bindparam("b_uuid"))
    .order_by(*ATOM_ORDER)
)
SELECT_ALL_ATOMS: Select[Any] = select(atomdetails).order_by(*ATOM_ORDER)

INSERT_BOOK: Insert = logbooks.insert()
INSERT_FLOW: Insert = flowdetails.insert()
INSERT_ATOM: Insert = atomdetails.insert()

UPDATE_BOOK: Update = logbooks.update().where(logbooks.c.uuid == bindparam("b_uuid"))
UPDATE_FLOW: Update = flowdetails.update().where(flowdetails.c.uuid == bindparam("b_uuid"))
# The hot path sets only what the engine changes, so the statement is fixed.
UPDATE_FLOW_PROGRESS: Update = (
    flowdetails.update()
    .where(flowdetails.c.uuid == bindparam("b_uuid"))
    .values(
        state=bindparam("state"),
        meta=bindparam("meta"),
        updated_at=bindparam("updated_at"),
    )
)
UPDATE_ATOM: Update = atomdetails.update().where(atomdetails.c.uuid == bindparam("b_uuid"))
# Write fences: taking one is refused while the same holder's later claim holds it; a fenced
# write first "updates" the fence to itself, which matches only while the fence is the
# writer's and takes the row's write lock, so no fence can change until the write commits.
FENCE_FLOW: Update = (
    flowdetails.update()
    .where(
        flowdetails.c.uuid == bindparam("b_uuid"),
        or_(
            flowdetails.c.fence_holder.is_(None),
            flowdetails.c.fence_holder != bindparam("holder"),
            flowdetails.c.fence_token <= bindparam("token"),
        ),
    )
    .values(fence_holder=bindparam("holder"), fence_token=bindparam("token"))
)
# Taking one while the flow is unfenced or fenced by an earlier claim of the same job only
# (``take_over=False``), or also over exactly one fence of another job (``take_over=fence``):
# a compare-and-set, so a fence that moved since the caller judged it is not taken.
_FREE_OR_OURS = or_(
    flowdetails.c.fence_holder.is_(None),
    and_(flowdetails.c.fence_holder == bindparam("holder"), flowdetails.c.fence_token <= bindparam("token")),
)
FENCE_FLOW_OWN: Update = (
    flowdetails.update()
    .where(flowdetails.c.uuid == bindparam("b_uuid"), _FREE_OR_OURS)
    .values(fence_holder=bindparam("holder"), fence_token=bindparam("token"))
)
FENCE_FLOW_REPLACING: Update = (
    flowdetails.update()
    .where(
        flowdetails.c.uuid == bindparam("b_uuid"),
        or_(
            _FREE_OR_OURS,
            and_(
                flowdetails.c.fence_holder == bindparam("old_holder"),
                flowdetails.c.fence_token == bindparam("old_token"),
            ),
        ),
    )
    .values(fence_holder=bindparam("holder"), fence_token=bindparam("token"))
)
HOLD_FENCE: Update = (
    flowdetails.update()
    .where(
        flowdetails.c.uuid == bindparam("b_uuid"),
        flowdetails.c.fence_holder == bindparam("holder"),
        flowdetails.c.fence_token == bindparam("token"),
    )
    .values(fence_token=bindparam("token"))
)
SELECT_FENCE: Select[Any] = select(flowdetails.c.fence_holder, flowdetails.c.fence_token).where(
    flowdetails.c.uuid == bindparam("b_uuid")
)

_BOOK_FLOWS = select(flowdetails.c.uuid).where(flowdetails.c.parent_uuid == bindparam("b_uuid"))
DELETE_BOOK_ATOMS: Delete = atomdetails.delete().where(atomdetails.c.parent_uuid.in_(_BOOK_FLOWS))
DELETE_BOOK_FLOWS: Delete = flowdetails.delete().where(flowdetails.c.parent_uuid == bindparam("b_uuid"))
DELETE_BOOK: Delete = logbooks.delete().where(logbooks.c.uuid == bindparam("b_uuid"))
# Children first, so no database has to rely on cascades being enabled.
DELETE_ALL: tuple[Delete, ...] = (delete(atomdetails), delete(flowdetails), delete(logbooks))

# Every column an upsert overwrites when the atom already exists.
_ATOM_OVERWRITE = tuple(c.name for c in atomdetails.columns if c.name not in ("uuid", "created_at"))

_PARAMSTYLES = frozenset({"qmark", "format", "pyformat", "named"})
_ATOM_COLUMNS = tuple(c.name for c in atomdetails.columns)
_PICK_ATOM_COLUMNS = itemgetter(*_ATOM_COLUMNS)

#: The most atom rows one statement written alone (autocommitted, see
#: :meth:`ProgressWriter.upsert_alone`) carries: 14 parameters a row stays far
#: below every driver's limit, and a parallel round that starts more atoms
#: than this writes them in one transaction instead.
MAX_ALONE_ROWS = 32


class _DriverStatement:
    """A Core statement compiled once for a dialect, run with ``exec_driver_sql``.

    That skips SQLAlchemy's per-call cache-key and compiled-cache lookup (the
    larger part of a Core execution's cost) while keeping its transaction,
    error wrapping and disconnect detection. Parameters are not processed, so
    callers pass values the driver takes as they are (see
    :meth:`ProgressWriter.stamp`).
    """

    def __init__(self, stmt: ClauseElement, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # DML compiles with the SQL compiler
        self.sql = compiled.string
        order = compiled.positiontup if compiled.positional else None
        self._pick: Callable[[Mapping[str, Any]], Any] | None = None
        if order:
            getter = itemgetter(*order)
            self._pick = (lambda row: (getter(row),)) if len(order) == 1 else getter

    def run(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        pick = self._pick
        params: Any = [pick(row) for row in rows] if pick is not None else list(rows)
        result = conn.exec_driver_sql(self.sql, params[0] if len(params) == 1 else params)
        return result.rowcount


class ProgressWriter:
    """The engine's hot path on one dialect: flow update and atom upsert, built once.

    SQLite and PostgreSQL run precompiled SQL through ``exec_driver_sql``,
    and a write of atom rows alone as one multi-row upsert on the driver
    (:meth:`upsert_alone`); MySQL and other dialects use ordinary Core
    executions (MySQL's ``ON DUPLICATE KEY UPDATE``, or update-then-insert).
    """

    def __init__(self, dialect: Dialect) -> None:
        self._driver = dialect.name in ("sqlite", "postgresql") and dialect.paramstyle in _PARAMSTYLES
        # Multi-row upserts by row count, built on first use.
        self._alone: dict[tuple[int, bool], tuple[str, bool]] = {}
        if self._driver:
            processor = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
            self._stamp: Callable[[Any], Any] | None = processor
            self._update_flow: _DriverStatement | None = _DriverStatement(UPDATE_FLOW_PROGRESS, dialect)
            self._hold_fence: _DriverStatement | None = _DriverStatement(HOLD_FENCE, dialect)
            upsert = _DriverStatement(_on_conflict_upsert(dialect.name), dialect)
            self._upsert_atoms: AtomUpserter = upsert.run
            # Writing alone takes the driver's own autocommit: sqlite3's and psycopg's are known.
            alone = dialect.driver in ("pysqlite", "psycopg", "psycopg2")
            self._dialect: Dialect | None = dialect if alone else None
        else:
            self._dialect = None
            self._stamp = None
            self._update_flow = None
            self._hold_fence = None
            self._upsert_atoms = atom_upserter(dialect.name)

    def stamp(self, when: datetime) -> Any:
        """``when`` as the statements below want a time column's value."""
        return when if self._stamp is None else self._stamp(when)

    def update_flow(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Overwrite a flow's state, meta and update time; return the rows matched."""
        if self._update_flow is None:
            return conn.execute(UPDATE_FLOW_PROGRESS, dict(params)).rowcount
        return self._update_flow.run(conn, (params,))

    def hold_fence(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Lock a flow's row if its fence is ``holder``/``token``; return the rows matched (0 or 1)."""
        if self._hold_fence is None:
            return conn.execute(HOLD_FENCE, dict(params)).rowcount
        return self._hold_fence.run(conn, (params,))

    def upsert_atoms(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or overwrite whole atom rows (every column given, times stamped)."""
        self._upsert_atoms(conn, rows)

    def can_write_alone(self, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Whether :meth:`upsert_alone` takes ``rows`` (SQLite or PostgreSQL, 1 to 32 distinct atoms).

        One statement may not touch a row twice (PostgreSQL refuses an
        ``ON CONFLICT DO UPDATE`` that would): rows naming one atom twice,
        which only a direct caller of ``save_flow_progress`` sends, go through
        the transaction, where the later row wins.
        """
        count = len(rows)
        if self._dialect is None or not 0 < count <= MAX_ALONE_ROWS:
            return False
        return count == 1 or len({row["uuid"] for row in rows}) == count

    def upsert_alone(
        self,
        conn: Connection,
        rows: Sequence[Mapping[str, Any]],
        fence: Mapping[str, Any] | None = None,
    ) -> int:
        """Upsert ``rows`` as one statement committed on its own, on the driver's connection.

        Why: a write of atom rows only (the engine's write per task) needs no
        transaction around it, since one statement is atomic by itself; sent
        alone it is one round trip to PostgreSQL instead of ``BEGIN``,
        statement and ``COMMIT``, and on SQLite it skips SQLAlchemy's
        transaction and execution objects, which cost more than SQLite's own
        work. It is as durable as a ``COMMIT`` (SQLite syncs, or not, by its
        ``synchronous`` pragma; PostgreSQL by ``synchronous_commit``).

        With ``fence`` (``b_uuid``, ``holder``, ``token``) the rows are
        written only while the flow row holds that fence, checked in the same
        statement: on PostgreSQL the flow row is locked ``FOR SHARE`` until the
        statement commits, so a fence taken meanwhile waits for it (and one
        taken just before is seen, and nothing is written); on SQLite the
        statement holds the database's write lock from its start.

        ``conn`` must not be in a transaction. Driver errors come back as
        SQLAlchemy's (``IntegrityError`` for a missing flow, with
        ``connection_invalidated`` set for a lost connection), so retries and
        error messages are those of every other write.

        Returns:
            the rows written: 0 only if ``fence`` was not held (or no such flow).
        """
        dialect = self._dialect
        assert dialect is not None and 0 < len(rows) <= MAX_ALONE_ROWS, "check can_write_alone first"
        text, params = self._many_rows(dialect, rows, fence)
        fairy = conn.connection
        raw: Any = fairy.driver_connection
        dbapi_error = dialect.loaded_dbapi.Error
        try:
            if dialect.name == "sqlite":
                # The connection is in autocommit (isolation_level None, see _engine):
                # the statement is its own transaction, committed when it returns.
                if raw.in_transaction:
                    # It would join that transaction and not be committed: refuse loudly.
                    raise sa_exc.InvalidRequestError("a transaction is open on the SQLite connection")
                written: int = raw.execute(text, params).rowcount
            else:
                raw.autocommit = True
                try:
                    with raw.cursor() as cursor:
                        cursor.execute(text, params)
                        written = cursor.rowcount
                finally:
                    raw.autocommit = False
        except dbapi_error as err:
            gone = bool(dialect.is_disconnect(err, fairy, None))
            raise sa_exc.DBAPIError.instance(
                text, None, err, dbapi_error, connection_invalidated=gone, dialect=dialect
            ) from err
        return written

    def _many_rows(
        self, dialect: Dialect, rows: Sequence[Mapping[str, Any]], fence: Mapping[str, Any] | None
    ) -> tuple[str, Any]:
        """The SQL upserting ``rows`` in one statement (built once per row count), and its parameters."""
        key = (len(rows), fence is not None)
        built = self._alone.get(key)
        if built is None:
            built = self._alone[key] = _many_row_upsert(dialect, *key)
        text, positional = built
        if positional:
            params: list[Any] = []
            for row in rows:
                params.extend(_PICK_ATOM_COLUMNS(row))
            if fence is not None:
                params.extend((fence["b_uuid"], fence["holder"], fence["token"]))
            return text, params
        named = {f"{name}__{i}": row[name] for i, row in enumerate(rows) for name in _ATOM_COLUMNS}
        if fence is not None:
            named.update(f_uuid=fence["b_uuid"], f_holder=fence["holder"], f_token=fence["token"])
        return text, named


AtomUpserter = Callable[[Connection, Sequence[dict[str, Any]]], Any]


def _many_row_upsert(dialect: Dialect, count: int, fenced: bool) -> tuple[str, bool]:
    """``INSERT ... VALUES (row 0), (row 1), ... ON CONFLICT (uuid) DO UPDATE`` for ``count`` rows.

    ``fenced``: ``INSERT ... SELECT`` from those values ``WHERE EXISTS`` the
    flow row with fence ``f_holder``/``f_token`` (locked ``FOR SHARE`` on
    PostgreSQL), so nothing is written unless the fence is held.

    Returns the SQL and whether its parameters are positional (then every
    column of row 0 in table order, then row 1's, ..., then the flow's uuid,
    holder and token; checked here against the compiled order), else named
    ``<column>__<row>`` and ``f_uuid``, ``f_holder``, ``f_token``.
    """
    if dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as make_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as make_insert  # type: ignore[assignment]
    if fenced:
        binds = [
            [bindparam(f"{name}__{i}", type_=atomdetails.c[name].type) for name in _ATOM_COLUMNS]
            for i in range(count)
        ]
        rows: Any
        if dialect.name == "sqlite":
            # SQLite names no columns of a VALUES subquery: one labelled SELECT per row.
            selects = [
                select(*(b.label(n) for b, n in zip(row, _ATOM_COLUMNS, strict=True))) for row in binds
            ]
            rows = (selects[0] if count == 1 else union_all(*selects)).subquery("v")
        else:
            columns = (column(name, atomdetails.c[name].type) for name in _ATOM_COLUMNS)
            rows = values(*columns, name="v").data([tuple(row) for row in binds])
        held = exists(
            select(literal_column("1"))
            .select_from(flowdetails)
            .where(
                flowdetails.c.uuid == bindparam("f_uuid"),
                flowdetails.c.fence_holder == bindparam("f_holder"),
                flowdetails.c.fence_token == bindparam("f_token"),
            )
            .with_for_update(read=True)
        )
        insert_ = make_insert(atomdetails).from_select(
            list(_ATOM_COLUMNS), select(*(rows.c[name] for name in _ATOM_COLUMNS)).where(held)
        )
    else:
        insert_ = make_insert(atomdetails).values(
            [{name: bindparam(f"{name}__{i}") for name in _ATOM_COLUMNS} for i in range(count)]
        )
    stmt = insert_.on_conflict_do_update(
        index_elements=[atomdetails.c.uuid], set_={name: insert_.excluded[name] for name in _ATOM_OVERWRITE}
    )
    compiled = stmt.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    if not compiled.positional:
        return compiled.string, False
    expected = [f"{name}__{i}" for i in range(count) for name in _ATOM_COLUMNS]
    if fenced:
        expected += ["f_uuid", "f_holder", "f_token"]
    if list(compiled.positiontup or ()) != expected:
        raise AssertionError(f"unexpected parameter order in the {dialect.name} multi-row upsert")
    return compiled.string, True


def _on_conflict_upsert(dialect_name: str) -> Insert:
    if dialect_name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(atomdetails)
        return lite.on_conflict_do_update(
            index_elements=[atomdetails.c.uuid],
            set_={name: lite.excluded[name] for name in _ATOM_OVERWRITE},
        )
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    pg = pg_insert(atomdetails)
    return pg.on_conflict_do_update(
        index_elements=[atomdetails.c.uuid],
        set_={name: pg.excluded[name] for name in _ATOM_OVERWRITE},
    )


def _native_upsert(stmt: Executable) -> AtomUpserter:
    def run(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        conn.execute(stmt, rows)

    return run


def _update_then_insert(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    # Portable fallback: per-row UPDATE (rowcount is per statement), then
    # INSERT the rows that were not there.
    missing = []
    for row in rows:
        params = dict(row, b_uuid=row["uuid"])
        del params["created_at"]
        if conn.execute(UPDATE_ATOM, params).rowcount == 0:
            missing.append(row)
    if missing:
        conn.execute(INSERT_ATOM, missing)


def atom_upserter(dialect_name: str) -> AtomUpserter:
    """A Core insert-or-overwrite of atom rows for a dialect (rows carry every column).

    SQLite and PostgreSQL use ``INSERT ... ON CONFLICT (uuid) DO UPDATE``,
    MySQL ``ON DUPLICATE KEY UPDATE``; anything else updates then inserts.
    ``created_at`` is kept when a row is overwritten.
    """
    if dialect_name in ("sqlite", "postgresql"):
        return _native_upsert(_on_conflict_upsert(dialect_name))
    if dialect_name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        mins = mysql_insert(atomdetails)
        return _native_upsert(
            mins.on_duplicate_key_update({name: mins.inserted[name] for name in _ATOM_OVERWRITE})
        )
    return _update_then_insert
