"""Copy the records of a TaskFlow SQL database into a flowkit backend.

flowkit's SQL schema reuses TaskFlow's table names but not its column types
(TaskFlow keeps JSON natively on PostgreSQL and enums for atom kinds), nor its
Alembic history, so a TaskFlow database is not one flowkit writes into. This
module reads TaskFlow's tables with plain SQLAlchemy (TaskFlow need not be
installed), in one read-only snapshot, and writes the same logbooks, flow
details and atom details (uuids, names, states, intentions, results,
failures, revert results, retry histories, meta, the logbooks' times) into any
flowkit backend. The TaskFlow database is never written: processes still
running TaskFlow keep working, and a failed or unwanted copy costs nothing
but the target.

Only the records move. Anything that points at them by uuid (jobs on a
jobboard naming a logbook and flow detail) finds them again in the target.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from flowkit import exceptions as exc
from flowkit import states
from flowkit._utils.flow_meta import STORE_KEY
from flowkit.persistence import models
from flowkit.persistence.backends._urls import mask_url
from flowkit.persistence.backends.impl_sqlalchemy import SQLAlchemyConnection
from flowkit.persistence.backends.sqlalchemy import REVISIONS, _codec, tables
from flowkit.persistence.backends.sqlalchemy import _statements as sql
from flowkit.persistence.backends.sqlalchemy._engine import read_settings
from flowkit.persistence.backends.sqlalchemy._errors import describe
from flowkit.persistence.backends.sqlalchemy._schema import current_revision
from flowkit.persistence.base import Connection

__all__ = [
    "TASKFLOW_REVISIONS",
    "ImportSummary",
    "import_taskflow",
    "looks_like_taskflow",
    "read_taskflow",
]

LOG = logging.getLogger(__name__)

#: The Alembic revision ids of TaskFlow's persistence schema (oldest first).
#: TaskFlow creates SQLite databases without Alembic: those have no revision
#: at all and are recognised by their tables.
TASKFLOW_REVISIONS: tuple[str, ...] = (
    "1cea328f0f65",
    "1c783c0c2875",
    "84d6e888850",
    "14b227d79a87",
    "589dccdf2b6e",
    "3162c0f3f8e4",
    "2ad4984f2864",
    "0bc3e1a3c135",
    "6df9422fcb43",
    "40fc8c914bd2",
    "00af93df9d77",
)

_TABLES = ("logbooks", "flowdetails", "atomdetails")
# The pseudo atom detail in which TaskFlow saves a flow's ``store=`` values.
_INJECTOR = "_TaskFlow_INJECTOR"
# Rows per INSERT and uuids per IN (...): well under every driver's parameter limit.
_CHUNK = 500
_ATOM_JSON = ("results", "failure", "revert_results", "revert_failure", "meta")


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What :func:`import_taskflow` copied, and from where to where (passwords masked)."""

    source: str
    target: str
    logbooks: int
    flow_details: int
    atom_details: int
    #: Flow details without a logbook (TaskFlow allows them); they cannot be copied.
    orphans: int = 0


def looks_like_taskflow(conn: sa.Connection) -> bool:
    """Whether the database on ``conn`` holds TaskFlow's persistence schema.

    Either its Alembic revision is one of TaskFlow's, or (TaskFlow's SQLite
    databases, made without Alembic) it has TaskFlow's tables and no revision
    and no flowkit column.
    """
    inspector = sa.inspect(conn)
    if inspector.has_table("alembic_version"):
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        return revision in TASKFLOW_REVISIONS
    if not inspector.has_table("logbooks"):
        return False
    if not (inspector.has_table("atomdetails") or inspector.has_table("taskdetails")):
        return False
    columns = {column["name"] for column in inspector.get_columns("flowdetails")}
    return "fence_holder" not in columns


def _source_url(source: str | URL) -> URL:
    """The URL with flowkit's default drivers (psycopg 3, PyMySQL), as the backends use.

    Raises:
        StorageFailure: the URL is malformed (password masked).
    """
    return read_settings({}, str(source) if isinstance(source, str) else source.render_as_string(False)).url


def _sqlite_reader(url: URL, masked: str) -> sa.Engine:
    # Read-only and never created: opening a mistyped path must not leave an
    # empty database behind, and nothing may change the file's journal mode.
    database = url.database or ""
    if database in ("", ":memory:"):
        raise exc.StorageFailure(
            f"cannot import from {masked}: an in-memory SQLite database is empty to any other "
            "process; give the path of TaskFlow's database file"
        )
    if not os.path.isfile(database):
        raise exc.StorageFailure(
            f"cannot import from {masked}: no such file {database!r}; give the path of "
            "TaskFlow's database file"
        )

    uri = Path(database).resolve().as_uri() + "?mode=ro"  # percent-encoded: any path works

    def connect() -> sqlite3.Connection:
        raw = sqlite3.connect(uri, uri=True, check_same_thread=False)
        raw.isolation_level = None  # BEGIN is issued explicitly, for one snapshot
        return raw

    return sa.create_engine("sqlite://", creator=connect, poolclass=sa.NullPool)


@contextmanager
def _snapshot(url: URL, masked: str) -> Iterator[sa.Connection]:
    """A connection reading the source at ``url`` in one read-only transaction."""
    try:
        if url.get_backend_name() == "sqlite":
            engine = _sqlite_reader(url, masked)
        else:
            engine = sa.create_engine(url, poolclass=sa.NullPool)
    except (ImportError, sa_exc.NoSuchModuleError, sa_exc.ArgumentError) as err:
        raise exc.quoting_cause(
            exc.StorageFailure(f"cannot open TaskFlow database {masked}: {describe(err)}")
        ) from err
    try:
        with engine.connect() as conn:
            if url.get_backend_name() == "sqlite":
                conn.exec_driver_sql("BEGIN")
                try:
                    yield conn
                finally:
                    conn.exec_driver_sql("ROLLBACK")
            else:
                options: dict[str, Any] = {"isolation_level": "REPEATABLE READ"}
                if url.get_backend_name() == "postgresql":
                    options["postgresql_readonly"] = True
                reader = conn.execution_options(**options)
                with reader.begin():
                    yield reader
    except sa_exc.SQLAlchemyError as err:
        raise exc.quoting_cause(
            exc.StorageFailure(f"cannot read TaskFlow database {masked}: {describe(err)}")
        ) from err
    finally:
        engine.dispose()


def _check_schema(conn: sa.Connection, masked: str) -> dict[str, sa.Table]:
    revision = current_revision(conn)
    if revision in REVISIONS:
        raise exc.StorageFailure(
            f"{masked} is a flowkit database already (schema revision {revision}); "
            "nothing to import, point flowkit at it"
        )
    inspector = sa.inspect(conn)
    if inspector.has_table("taskdetails") and not inspector.has_table("atomdetails"):
        raise exc.StorageFailure(
            f"{masked} holds an early TaskFlow schema (table 'taskdetails'); bring it to "
            "TaskFlow's newest revision with TaskFlow's upgrade() first, then import it"
        )
    missing = [name for name in _TABLES if not inspector.has_table(name)]
    if missing:
        raise exc.StorageFailure(
            f"{masked} is not a TaskFlow persistence database: table(s) {', '.join(missing)} missing; "
            "give the URL TaskFlow's persistence 'connection' option names"
        )
    metadata = sa.MetaData()
    return {name: sa.Table(name, metadata, autoload_with=conn) for name in _TABLES}


class _Decoder:
    """Turns one table's column values into Python values.

    TaskFlow stores JSON as text, except on PostgreSQL after its native-JSON
    revision, where the driver already hands back Python values: which one a
    column holds is read from its reflected type, never guessed from the
    value (the JSON text ``"42"`` and the string ``42`` must stay apart).
    """

    def __init__(self, table: sa.Table, masked: str) -> None:
        self._native = {column.name for column in table.columns if isinstance(column.type, sa.JSON)}
        self._masked = masked

    def json(self, row: Mapping[Any, Any], column: str, where: str) -> Any:
        """The value of ``column`` (``None`` if NULL, or missing from an older TaskFlow schema).

        Raises:
            StorageFailure: the text is not JSON (``where`` names the record).
        """
        value = row.get(column)
        if value is None or column in self._native:
            return value
        if isinstance(value, bytes | bytearray):
            value = value.decode("utf-8")
        try:
            return json.loads(value)
        except (TypeError, ValueError) as err:
            raise exc.quoting_cause(
                exc.StorageFailure(
                    f"cannot import from {self._masked}: column {column!r} of {where} is not JSON ({err})"
                )
            ) from err


def _utc(when: Any) -> datetime | None:
    """A TaskFlow time (naive UTC) as flowkit reads its own; anything but a time is none."""
    return _codec.utc(when) if isinstance(when, datetime) else None


def _order(table: sa.Table) -> sa.Select[Any]:
    return sa.select(table).order_by(table.c.created_at, table.c.uuid)


def _atom(row: Mapping[Any, Any], decoder: _Decoder, masked: str) -> models.AtomDetail:
    where = f"atom detail {row.get('name')!r} ({row['uuid']})"
    kind = row.get("atom_type") or "TASK_DETAIL"
    try:
        cls = models.atom_detail_class(str(kind))
    except TypeError as err:
        raise exc.quoting_cause(exc.StorageFailure(f"cannot import {where} from {masked}: {err}")) from err
    data = {column: decoder.json(row, column, where) for column in _ATOM_JSON}
    try:
        return cls.from_dict(
            {
                "name": row.get("name"),
                "uuid": row["uuid"],
                "state": row.get("state"),
                "intention": row.get("intention") or states.EXECUTE,
                "version": row.get("version"),
                **data,
            }
        )
    except (exc.InvalidFormat, TypeError, ValueError, KeyError) as err:
        raise exc.quoting_cause(exc.StorageFailure(f"cannot import {where} from {masked}: {err}")) from err


@dataclass(slots=True)
class _Source:
    books: list[models.LogBook]
    orphans: int
    #: (created_at, updated_at) of each flow and atom detail, by uuid, kept by SQL targets.
    times: dict[str, tuple[datetime | None, datetime | None]]


def _take_store(fd: models.FlowDetail, injector: models.AtomDetail, masked: str) -> None:
    """Move the ``store=`` values TaskFlow keeps in a pseudo atom to where flowkit keeps them.

    Without this a resumed flow would lack its inputs: flowkit reads them from
    the flow detail's ``meta["store"]`` and has no atom of that name.
    """
    values = injector.results
    if values is None:
        return
    if not isinstance(values, dict):
        raise exc.StorageFailure(
            f"cannot import flow detail {fd.name!r} ({fd.uuid}) from {masked}: its {_INJECTOR} "
            f"record holds {type(values).__name__}, not the dict of injected values"
        )
    store = fd.meta.get(STORE_KEY)
    fd.meta[STORE_KEY] = {**(store if isinstance(store, dict) else {}), **values}


def _read(conn: sa.Connection, masked: str) -> _Source:
    tables = _check_schema(conn, masked)
    times: dict[str, tuple[datetime | None, datetime | None]] = {}
    book_dec, flow_dec, atom_dec = (_Decoder(tables[name], masked) for name in _TABLES)
    atoms: dict[str, list[models.AtomDetail]] = {}
    for row in conn.execute(_order(tables["atomdetails"])).mappings():
        atoms.setdefault(row["parent_uuid"], []).append(_atom(row, atom_dec, masked))
        times[row["uuid"]] = (_utc(row.get("created_at")), _utc(row.get("updated_at")))
    flows: dict[str, list[models.FlowDetail]] = {}
    orphans = 0
    for row in conn.execute(_order(tables["flowdetails"])).mappings():
        where = f"flow detail {row.get('name')!r} ({row['uuid']})"
        fd = models.FlowDetail(str(row.get("name") or ""), row["uuid"])
        fd.state = row.get("state")
        fd.meta = flow_dec.json(row, "meta", where) or {}
        times[row["uuid"]] = (_utc(row.get("created_at")), _utc(row.get("updated_at")))
        for ad in atoms.get(fd.uuid, ()):
            if ad.name == _INJECTOR:
                _take_store(fd, ad, masked)
            else:
                fd.add(ad)
        if row.get("parent_uuid") is None:
            orphans += 1
            LOG.warning("skipping %s of %s: it belongs to no logbook", where, masked)
            continue
        flows.setdefault(row["parent_uuid"], []).append(fd)
    books = []
    for row in conn.execute(_order(tables["logbooks"])).mappings():
        book = models.LogBook(str(row.get("name") or ""), row["uuid"])
        book.meta = book_dec.json(row, "meta", f"logbook {row.get('name')!r} ({row['uuid']})") or {}
        for fd in flows.get(book.uuid, ()):
            book.add(fd)
        book.created_at = _utc(row.get("created_at"))
        book.updated_at = _utc(row.get("updated_at"))
        books.append(book)
    return _Source(books, orphans, times)


def read_taskflow(source: str | URL) -> list[models.LogBook]:
    """Every logbook of a TaskFlow SQL database, with its flow and atom details.

    The database is read in one read-only transaction (a consistent snapshot
    on PostgreSQL and MySQL; SQLite files are opened read-only) and never written.

    Raises:
        StorageFailure: unreachable, not TaskFlow's schema, or a damaged record
            (the URL, password masked, and the record are named).
    """
    masked = mask_url(str(source))
    with _snapshot(_source_url(source), masked) as conn:
        return _read(conn, masked).books


def import_taskflow(source: str | URL, target: str | Mapping[str, Any]) -> ImportSummary:
    """Copy every logbook of the TaskFlow database ``source`` into the flowkit backend ``target``.

    ``target`` is any flowkit backend conf (a URL or a dict); its schema is
    created or upgraded first. Nothing is written when a logbook of the
    source already exists in the target (a second import would otherwise
    overwrite progress made since the first). ``source`` is only read.

    Stop every TaskFlow process using ``source`` before the import: what they
    write afterwards is not in the copy.

    Returns:
        how many logbooks, flow details and atom details were copied.

    Raises:
        StorageFailure: either database is unreachable, the source is not
            TaskFlow's schema, the target is the source, or holds one of its
            logbooks already (the message says which and what to do).
    """
    from flowkit.persistence import backends

    masked_source = mask_url(str(source))
    source_url = _source_url(source)
    with _snapshot(source_url, masked_source) as conn:
        read = _read(conn, masked_source)
    books = read.books
    backend = backends.fetch(target)
    try:
        masked_target = str(getattr(backend, "masked_url", None) or mask_url(_connection_of(target)))
        with backend.get_connection() as tconn:
            _refuse_same(source_url, target, masked_source)
            tconn.upgrade()
            if isinstance(tconn, SQLAlchemyConnection):
                _write_sql(tconn, read, masked_source, masked_target)
            else:
                _write_any(tconn, books, masked_source, masked_target)
    finally:
        backend.close()
    return ImportSummary(
        source=masked_source,
        target=masked_target,
        logbooks=len(books),
        flow_details=sum(len(book) for book in books),
        atom_details=sum(len(fd) for book in books for fd in book),
        orphans=read.orphans,
    )


def _conflict(masked_target: str, masked_source: str, what: str) -> exc.StorageFailure:
    return exc.StorageFailure(
        f"{masked_target} already holds {what} of {masked_source}; nothing was imported. "
        "Import into a new database, or destroy the logbooks imported before"
    )


def _write_any(conn: Connection, books: list[models.LogBook], masked_source: str, masked_target: str) -> None:
    """Save book after book through the backend's own API (any flowkit backend)."""
    for book in books:
        try:
            conn.get_logbook(book.uuid, lazy=True)
        except exc.NotFound:
            continue
        raise _conflict(masked_target, masked_source, f"logbook {book.name!r} ({book.uuid})")
    for book in books:
        conn.save_logbook(book)


def _write_sql(conn: SQLAlchemyConnection, read: _Source, masked_source: str, masked_target: str) -> None:
    """Insert every row in one transaction, with the source's times: all or nothing, order kept."""
    book_rows, flow_rows, atom_rows = [], [], []
    for book in read.books:
        book_rows.append(_codec.book_row(book))
        for fd in book:
            created, updated = read.times.get(fd.uuid, (None, None))
            flow_rows.append({**_codec.flow_row(fd, book.uuid), "created_at": created, "updated_at": updated})
            for ad in fd:
                created, updated = read.times.get(ad.uuid, (None, None))
                atom_rows.append(
                    {**_codec.atom_row(ad, fd.uuid), "created_at": created, "updated_at": updated}
                )
    checks = (
        ("logbook", tables.logbooks, book_rows),
        ("flow detail", tables.flowdetails, flow_rows),
        ("atom detail", tables.atomdetails, atom_rows),
    )

    def work(db: sa.Connection) -> None:
        for what, table, rows in checks:
            uuids = [row["uuid"] for row in rows]
            for start in range(0, len(uuids), _CHUNK):
                chunk = uuids[start : start + _CHUNK]
                found = db.execute(sa.select(table.c.uuid).where(table.c.uuid.in_(chunk)).limit(1)).scalar()
                if found is not None:
                    raise _conflict(masked_target, masked_source, f"{what} {found!r}")
        for statement, rows in (
            (sql.INSERT_BOOK, book_rows),
            (sql.INSERT_FLOW, flow_rows),
            (sql.INSERT_ATOM, atom_rows),
        ):
            for start in range(0, len(rows), _CHUNK):
                db.execute(statement, rows[start : start + _CHUNK])

    conn.run_write(f"importing {masked_source}", work)


def _connection_of(target: str | Mapping[str, Any]) -> str:
    return str(target.get("connection", "")) if isinstance(target, Mapping) else target


def _refuse_same(source: URL, target: str | Mapping[str, Any], masked: str) -> None:
    try:
        same = source == _source_url(_connection_of(target))
    except exc.StorageFailure:
        return  # not a SQL target
    if same:
        raise exc.StorageFailure(
            f"cannot import {masked} into itself: TaskFlow's tables have flowkit's names; "
            "give --connection a new, empty database"
        )
