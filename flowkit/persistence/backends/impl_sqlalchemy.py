"""Persistence in a SQL database through SQLAlchemy: SQLite, PostgreSQL, MySQL.

The URL picks the database: ``sqlite:///flows.db``, ``sqlite://`` (in
memory, shared by every connection of the backend), ``postgresql://user:pw@
host/db`` (psycopg 3 unless a driver is named, as in ``postgresql+psycopg2``),
``mysql://...`` (PyMySQL unless named). Options (conf keys, or URL query
parameters):

- ``max_retries`` (3): how often an operation is retried after a transient
  error (lost connection, SQLite busy, PostgreSQL serialization failure),
  waiting 0.05 s, 0.1 s, 0.2 s... between attempts.
- ``sqlite_synchronous`` (``normal``): SQLite's ``synchronous`` pragma. With
  the WAL journal, ``normal`` survives the death of the process; ``full`` also
  survives losing power.
- ``sqlite_busy_timeout`` (5.0): seconds SQLite waits for another writer
  before reporting the database busy (which is then retried).
- ``isolation_level``, ``isolation_levels`` (TaskFlow's): the transaction
  isolation level, or a driver-name-to-level dict; by default PostgreSQL and
  MySQL run at ``READ COMMITTED``, as in TaskFlow.
- ``idle_timeout`` (3600 on a server): seconds before a pooled connection is
  replaced; ``max_pool_size``, ``max_overflow``, ``pool_timeout``: the pool's.
- ``engine_args``: a dict passed to :func:`sqlalchemy.create_engine`.
- ``writable`` (true): false to create, migrate and write nothing (see
  ``Backend.writable``); a SQLite file is then opened ``mode=ro``, and one that
  does not exist raises :class:`~flowkit.exceptions.StoreMissing` instead of
  being made. The engine made for it is read-only on the database's side too
  (SQLite's ``query_only``, PostgreSQL's read-only transactions): a write
  made on it by hand is refused by the database.

Each :class:`SQLAlchemyConnection` keeps one database connection checked out
and runs every operation as one transaction on it, with one exception: the
engine's per-task :meth:`~SQLAlchemyConnection.save_flow_progress` (and its
fenced form), when it writes atom rows only, is one multi-row upsert
committed on its own on the driver's connection (SQLite, PostgreSQL): one
statement, one round trip, no ``BEGIN``/``COMMIT``, unless SQLAlchemy's
``echo`` or a listener of its statements would miss it. SQLite write
transactions begin with ``BEGIN IMMEDIATE`` so writers queue on the busy
timeout instead of failing half way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any, TypeVar

import tenacity
from sqlalchemy import Connection as SAConnection
from sqlalchemy import Engine, text
from sqlalchemy import exc as sa_exc

from flowkit import exceptions as exc
from flowkit.persistence import base, models
from flowkit.persistence._archived import fold_one
from flowkit.persistence.backends._missing import ATOMS, BOOKS, FLOWS, not_found
from flowkit.persistence.backends.sqlalchemy import _codec, _engine, _schema, _states
from flowkit.persistence.backends.sqlalchemy import _statements as sql
from flowkit.persistence.backends.sqlalchemy._errors import describe, is_transient, log_retry

__all__ = ["SQLITE_IN_MEMORY", "Connection", "SQLAlchemyBackend", "SQLAlchemyConnection"]

LOG = logging.getLogger(__name__)

#: The URLs that mean an in-memory SQLite database, under TaskFlow's name. (The
#: backend also treats any ``sqlite`` URL without a database, or with
#: ``mode=memory``, as one.)
SQLITE_IN_MEMORY = ("sqlite://", "sqlite:///", "sqlite:///:memory:")

_T = TypeVar("_T")

_PG_SNAPSHOT = text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
# Backoff between attempts after a transient error: 0.05 s, 0.1 s, 0.2 s, ... at most 2 s.
_FIRST_WAIT = 0.05
_MAX_WAIT = 2.0


class SQLAlchemyBackend(base.Backend):
    """A persistence backend over a SQL database (see the module docs for options).

    Args:
        conf: ``{"connection": URL, ...options}`` (a bare URL string works too).
        engine: an existing engine to use instead of making one from the URL
            (it is not disposed by :meth:`close`).

    Raises:
        StorageFailure: the URL is malformed or an option is invalid (the
            password is masked in the message).
    """

    def __init__(self, conf: Mapping[str, Any] | str | None, engine: Engine | None = None) -> None:
        super().__init__({"connection": conf} if isinstance(conf, str) else conf)
        connection = self._conf.get("connection")
        if engine is not None and not connection:
            connection = engine.url.render_as_string(hide_password=False)
        self.settings = _engine.read_settings(self._conf, connection)
        self.masked_url = self.settings.masked_url
        self.max_retries = self.settings.max_retries
        self.is_sqlite = self.settings.dialect == "sqlite"
        self.is_postgresql = self.settings.dialect == "postgresql"
        self._engine = engine
        self._owns_engine = engine is None
        self._engine_lock = threading.Lock()
        self._writer: sql.ProgressWriter | None = None
        #: Set once the schema revision was found right, so later operations skip the check.
        self.schema_ready = False
        # One in-memory SQLite connection is shared by every Connection: take turns.
        self._shared_lock: AbstractContextManager[Any] = (
            threading.RLock() if self.settings.is_memory else nullcontext()
        )

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, made on first use.

        Raises:
            StorageFailure: the database's driver is not installed.
        """
        engine = self._engine
        if engine is None:
            with self._engine_lock:
                if self._engine is None:
                    self._engine = _engine.make_engine(self.settings, self._conf, writable=self.writable)
                engine = self._engine
        return engine

    def progress_writer(self) -> sql.ProgressWriter:
        """The hot path's statements for this database's dialect (built once)."""
        writer = self._writer
        if writer is None:
            writer = self._writer = sql.ProgressWriter(self.engine.dialect)
        return writer

    def writes_alone(self) -> bool:
        """Whether a write of atom rows alone may skip SQLAlchemy's execution layer.

        Only on an engine flowkit made, while it has no ``echo`` and no
        listener of statements or transactions (:func:`_engine.has_user_hooks`),
        so whatever watches the engine's SQL sees every write. A connection
        asks once, as it opens (asking per write cost more than the write
        saved): a listener added later is seen by connections opened later,
        such as the next run's.
        """
        return self._owns_engine and not _engine.has_user_hooks(self.engine)

    def shared(self) -> AbstractContextManager[Any]:
        """Held around each operation; a real lock only for in-memory SQLite."""
        return self._shared_lock

    def get_connection(self) -> SQLAlchemyConnection:
        """Open a connection to the database.

        Raises:
            StorageFailure: the database cannot be reached (URL masked).
        """
        conn = SQLAlchemyConnection(self)
        conn.connect()
        return conn

    def close(self) -> None:
        """Close the engine's pooled connections (a later use reopens them)."""
        if not self._owns_engine:
            return
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    def __repr__(self) -> str:
        return f"<SQLAlchemyBackend {self.masked_url}>"


def _lost_connection(error: BaseException) -> bool:
    # Only a dead connection is replaced: busy or conflicting transactions were
    # rolled back already, and an in-memory SQLite database dies with its connection.
    if isinstance(error, sa_exc.DBAPIError):
        return error.connection_invalidated
    return isinstance(error, sa_exc.DisconnectionError)


def _now() -> datetime:
    return datetime.now(UTC)


class SQLAlchemyConnection(base.Connection):
    """One database session of a :class:`SQLAlchemyBackend`; one thread at a time.

    Every operation is one transaction, retried as a whole after a transient
    error (the database connection is replaced first when it was lost).
    """

    supports_fences = True

    def __init__(self, backend: SQLAlchemyBackend) -> None:
        super().__init__(backend)
        self._sa_backend = backend
        self._conn: SAConnection | None = None
        #: Whether writes of atom rows alone may go to the driver (decided as the
        #: connection is opened: see :meth:`SQLAlchemyBackend.writes_alone`).
        self._writes_alone = False
        # Read once: every write asks it, the engine's per-task save among them.
        self._writable = backend.writable

    # -- plumbing ----------------------------------------------------------------

    def connect(self) -> SAConnection:
        """Check a database connection out of the pool (kept until :meth:`close`).

        Raises:
            StoreMissing: (not writable) the SQLite file does not exist; none is made.
            StorageFailure: the database cannot be reached.
        """
        conn = self._conn
        if conn is None:
            backend = self._sa_backend
            missing = None if self._writable else _engine.missing_sqlite_file(backend.settings)
            if missing is not None:
                raise missing
            try:
                conn = self._conn = backend.engine.connect()
            except sa_exc.SQLAlchemyError as err:
                # describe() gives the driver's words without SQLAlchemy's wrapping.
                raise exc.quoting_cause(
                    exc.StorageFailure(f"cannot connect to database {backend.masked_url}: {describe(err)}")
                ) from err
            self._writes_alone = backend.writes_alone()
        return conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except sa_exc.SQLAlchemyError:  # already broken; a fresh one comes next
                LOG.debug("ignoring an error while dropping a broken connection", exc_info=True)

    def _attempt(
        self, work: Callable[[SAConnection], _T], write: bool, check: bool, transaction: bool = True
    ) -> _T:
        backend = self._sa_backend
        conn = self._conn
        if conn is None:
            try:
                conn = self._conn = backend.engine.connect()
            except sa_exc.DBAPIError as err:
                # Getting back to a server after losing it (a restart) is worth the retries.
                raise sa_exc.DisconnectionError(describe(err)) from err
        try:
            with backend.shared():
                if not transaction:
                    # ``work`` commits on its own (one statement on the driver's autocommit).
                    return work(conn)
                if backend.is_sqlite:
                    conn.info[_engine.WRITE_FLAG] = write
                with conn.begin():
                    if not write and backend.is_postgresql:
                        # One snapshot for the whole read: READ COMMITTED would let a
                        # book's flows and atoms come from different commits.
                        conn.execute(_PG_SNAPSHOT)
                    if check and not backend.schema_ready:
                        _schema.check_revision(conn, backend.masked_url)
                        backend.schema_ready = True
                    return work(conn)
        except sa_exc.SQLAlchemyError as err:
            if _lost_connection(err):
                self._discard()
            raise

    def _run(
        self,
        operation: str,
        work: Callable[[SAConnection], _T],
        *,
        write: bool,
        check: bool = True,
        max_retries: int | None = None,
        transaction: bool = True,
    ) -> _T:
        """Run ``work`` in one transaction, retrying transient errors a bounded number of times.

        ``max_retries`` overrides the backend's count of retries for this call.
        With ``transaction=False`` no transaction is begun: ``work`` runs one
        statement that commits by itself (and the schema must be known good).

        Raises:
            StoreReadOnly: ``write`` on a backend that is not writable (nothing is sent).
            StorageFailure: a database error, or transient ones outlasted the retries.
        """
        backend = self._sa_backend
        if write and not self._writable:
            raise exc.StoreReadOnly(location=backend.masked_url, operation=operation)
        retries = backend.max_retries if max_retries is None else max(0, int(max_retries))
        try:
            return self._attempt(work, write, check, transaction)  # the fast path: no retry machinery
        except sa_exc.SQLAlchemyError as err:
            if retries <= 0 or not is_transient(err):
                raise self._failure(operation, err) from err
            first: BaseException | None = err
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(retries + 1),
            wait=tenacity.wait_exponential(multiplier=_FIRST_WAIT, min=_FIRST_WAIT, max=_MAX_WAIT),
            retry=tenacity.retry_if_exception(is_transient),
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if first is not None:
                        # Attempt 1 already ran above; replay its error so the wait comes first.
                        error, first = first, None
                        raise error
                    return self._attempt(work, write, check, transaction)
        except sa_exc.SQLAlchemyError as err:
            raise self._failure(operation, err, retried=True) from err
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _failure(self, operation: str, err: BaseException, retried: bool = False) -> exc.StorageFailure:
        after = f" (after {self._sa_backend.max_retries} retries)" if retried else ""
        # Raised from ``err``, whose words (without SQLAlchemy's wrapping) it quotes.
        return exc.quoting_cause(
            exc.StorageFailure(f"{operation} failed on {self._sa_backend.masked_url}{after}: {describe(err)}")
        )

    # -- lifecycle and schema ------------------------------------------------------

    def close(self) -> None:
        """Return the database connection to the pool."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sa_exc.SQLAlchemyError:
                LOG.debug("ignoring an error while closing a connection", exc_info=True)

    def upgrade(self) -> None:
        """Create the schema or migrate it to this flowkit's newest revision.

        On a backend that is not writable, check the schema instead
        (:meth:`validate`): nothing is created or migrated.

        Raises:
            StoreMissing: (not writable) the SQLite file does not exist.
            StoreNotUpgraded: (not writable) the database has no flowkit schema;
                the message names ``flowkit db upgrade``.
            StorageFailure: unreachable, the database's schema is newer than
                this flowkit, or (not writable) older.
        """
        if not self._writable:
            self.validate()
            return
        backend = self._sa_backend
        self._run(
            "upgrading the schema",
            lambda conn: _schema.upgrade(conn, backend.masked_url),
            write=True,
            check=False,
        )
        backend.schema_ready = True

    def validate(self, max_retries: int | None = None) -> None:
        """Check the database answers and holds this flowkit's schema.

        Args:
            max_retries: how many times to try again after a transient error (a lost
                connection), as TaskFlow's ``validate(max_retries=...)``; default the
                backend's ``max_retries``.

        Raises:
            StorageFailure: unreachable, never upgraded, or a schema newer or older than this flowkit.
        """
        backend = self._sa_backend
        self._run(
            "validating the database",
            lambda conn: _schema.check_revision(conn, backend.masked_url),
            write=False,
            check=False,
            max_retries=max_retries,
        )
        backend.schema_ready = True

    def current_revision(self) -> str | None:
        """The schema revision the database is at (``None`` if never upgraded)."""
        return self._run("reading the schema revision", _schema.current_revision, write=False, check=False)

    def run_write(self, operation: str, work: Callable[[SAConnection], _T]) -> _T:
        """Run ``work`` as one write transaction, retried whole after a transient error.

        For bulk writes the model API has no call for (``flowkit db
        import-taskflow`` inserts a whole database at once, so a failure leaves nothing).

        Raises:
            StorageFailure: a database error (``operation`` and the masked URL are named).
        """
        return self._run(operation, work, write=True)

    def clear_all(self) -> None:
        """Delete every logbook, flow detail and atom detail."""

        def work(conn: SAConnection) -> None:
            for stmt in sql.DELETE_ALL:
                conn.execute(stmt)

        self._run("clearing all logbooks", work, write=True)

    def destroy_logbook(self, book_uuid: str) -> None:
        """Delete a book with its flow and atom details.

        Raises:
            NotFound: no such book.
        """

        def work(conn: SAConnection) -> None:
            params = {"b_uuid": book_uuid}
            conn.execute(sql.DELETE_BOOK_ATOMS, params)
            conn.execute(sql.DELETE_BOOK_FLOWS, params)
            if conn.execute(sql.DELETE_BOOK, params).rowcount == 0:
                raise not_found(BOOKS, book_uuid)

        self._run(f"destroying logbook {book_uuid!r}", work, write=True)

    # -- writes ----------------------------------------------------------------------

    def save_logbook(self, book: models.LogBook) -> models.LogBook:
        """Insert ``book`` or merge it into the stored one, with its flow and atom details.

        Returns:
            a fresh copy of the stored book, with every flow and atom detail it holds.
        """

        def work(conn: SAConnection) -> models.LogBook:
            now = _now()
            found = conn.execute(sql.SELECT_BOOK, {"b_uuid": book.uuid}).first()
            if found is None:
                row = _codec.book_row(book)
                conn.execute(sql.INSERT_BOOK, row)
                stored_flows: dict[str, models.FlowDetail] = {}
            else:
                stored = _codec.book_from_row(found._mapping).merge(book)
                row = _codec.book_row(stored)
                conn.execute(sql.UPDATE_BOOK, _codec.update_params(row))
                params = {"b_uuid": book.uuid}
                atoms = _codec.group_atoms(conn.execute(sql.SELECT_BOOK_ATOMS, params).all())
                flow_rows = conn.execute(sql.SELECT_BOOK_FLOWS, params).all()
                stored_flows = {
                    found.flow.uuid: found.flow for found in _codec.assemble_flows(flow_rows, atoms)
                }
            result = _codec.book_from_row(row)
            for fd in stored_flows.values():
                result.add(fd)
            for fd in book:
                result.add(self._write_flow(conn, fd, stored_flows.get(fd.uuid), book.uuid, now))
            result.updated_at = _codec.utc(row["updated_at"])  # add() stamps it; keep the stored one
            return result

        return self._run(f"saving logbook {book.uuid!r}", work, write=True)

    def _write_flow(
        self,
        conn: SAConnection,
        fd: models.FlowDetail,
        stored: models.FlowDetail | None,
        parent_uuid: str,
        now: datetime,
    ) -> models.FlowDetail:
        """Insert ``fd`` or merge it into ``stored``; return the fresh stored version."""
        if stored is None:
            row = _codec.flow_row(fd, parent_uuid)
            conn.execute(sql.INSERT_FLOW, {**row, "created_at": now, "updated_at": now})
            existing: dict[str, models.AtomDetail] = {}
        else:
            row = _codec.flow_row(stored.merge(fd), parent_uuid)
            conn.execute(
                sql.UPDATE_FLOW,
                {"b_uuid": fd.uuid, "state": row["state"], "meta": row["meta"], "updated_at": now},
            )
            existing = {ad.uuid: ad for ad in stored}
        result = _codec.flow_from_row(row)
        for ad in existing.values():
            result.add(ad)
        inserts = []
        for ad in fd:
            current = existing.get(ad.uuid)
            if current is None:
                atom = _codec.atom_row(ad, fd.uuid)
                inserts.append({**atom, "created_at": now, "updated_at": now})
            else:
                atom = _codec.atom_row(current.merge(ad), fd.uuid)
                conn.execute(sql.UPDATE_ATOM, {**_codec.update_params(atom), "updated_at": now})
            result.add(_codec.atom_from_row(atom))
        if inserts:
            conn.execute(sql.INSERT_ATOM, inserts)
        return result

    def update_flow_details(self, flow_detail: models.FlowDetail) -> models.FlowDetail:
        """Merge ``flow_detail`` into the stored one and upsert its atom details.

        Returns:
            a fresh copy of the stored flow detail with all its atom details.

        Raises:
            NotFound: the flow detail was never saved.
        """

        def work(conn: SAConnection) -> models.FlowDetail:
            params = {"b_uuid": flow_detail.uuid}
            found = conn.execute(sql.SELECT_FLOW, params).first()
            if found is None:
                raise not_found(FLOWS, flow_detail.uuid)
            stored = _codec.flow_from_row(found._mapping)
            for row in conn.execute(sql.SELECT_FLOW_ATOMS, params):
                stored.add(_codec.atom_from_row(row._mapping))
            return self._write_flow(conn, flow_detail, stored, found._mapping["parent_uuid"], _now())

        return self._run(f"updating flow detail {flow_detail.uuid!r}", work, write=True)

    def update_atom_details(self, atom_detail: models.AtomDetail) -> models.AtomDetail:
        """Merge ``atom_detail`` into the stored one.

        Returns:
            a fresh copy of the stored atom detail.

        Raises:
            NotFound: the atom detail was never saved.
        """

        def work(conn: SAConnection) -> models.AtomDetail:
            found = conn.execute(sql.SELECT_ATOM, {"b_uuid": atom_detail.uuid}).first()
            if found is None:
                raise not_found(ATOMS, atom_detail.uuid)
            stored = _codec.atom_from_row(found._mapping).merge(atom_detail)
            row = _codec.atom_row(stored, found._mapping["parent_uuid"])
            conn.execute(sql.UPDATE_ATOM, {**_codec.update_params(row), "updated_at": _now()})
            return _codec.atom_from_row(row)

        return self._run(f"updating atom detail {atom_detail.uuid!r}", work, write=True)

    def save_flow_progress(
        self,
        flow_detail: models.FlowDetail,
        atom_details: Sequence[models.AtomDetail],
        flow_changed: bool = True,
    ) -> None:
        """Write the engine's progress in one transaction: no reads, no merging.

        The given atom details overwrite (or become) the stored ones under
        ``flow_detail``; with ``flow_changed`` its state and meta are
        overwritten too.

        Raises:
            NotFound: the flow detail was never saved.
            StorageFailure: the database failed, or a result is not JSON-serializable.
        """
        self._save_progress(flow_detail, atom_details, flow_changed, None)

    def save_flow_progress_fenced(
        self,
        flow_detail: models.FlowDetail,
        atom_details: Sequence[models.AtomDetail],
        flow_changed: bool,
        fence: base.WriteFence,
    ) -> None:
        """:meth:`save_flow_progress`, written only while ``fence`` holds the flow's row.

        With the flow's state, or more than 32 atoms, it is a transaction whose
        fence check is an ``UPDATE`` matching only the writer's own fence: it
        takes the row's write lock (SQLite's write transactions are serialised
        anyway). A write of a few atoms alone (a task's, under a conductor) is
        one upsert whose rows are selected only ``WHERE EXISTS`` the flow row
        with that fence, locked ``FOR SHARE`` on PostgreSQL until the
        statement commits (on SQLite the statement holds the write lock from
        its start). Either way a :meth:`fence_flow` by someone else commits
        either before (this write is refused) or after this one.

        Raises:
            NotFound: the flow detail was never saved.
            FenceRefused: the flow detail is fenced for someone else; nothing was written.
            StorageFailure: the database failed.
        """
        self._save_progress(flow_detail, atom_details, flow_changed, fence)

    def _save_progress(
        self,
        flow_detail: models.FlowDetail,
        atom_details: Sequence[models.AtomDetail],
        flow_changed: bool,
        fence: base.WriteFence | None,
    ) -> None:
        fd_uuid = flow_detail.uuid
        writer = self._sa_backend.progress_writer()
        now = writer.stamp(_now())
        rows = []
        for ad in atom_details:
            row = _codec.atom_row(ad, fd_uuid)
            row["created_at"] = row["updated_at"] = now
            rows.append(row)
        flow_params = (
            {
                "b_uuid": fd_uuid,
                "state": flow_detail.state,
                "meta": _codec.dumps(flow_detail.meta),
                "updated_at": now,
            }
            if flow_changed
            else None
        )

        backend = self._sa_backend
        alone = (
            flow_params is None
            and backend.schema_ready
            and self._writes_alone
            and writer.can_write_alone(rows)
        )
        held = None if fence is None else {"b_uuid": fd_uuid, "holder": fence.holder, "token": fence.token}

        def write_alone(conn: SAConnection) -> int:
            return writer.upsert_alone(conn, rows, held)

        def work(conn: SAConnection) -> None:
            if fence is not None and held is not None and writer.hold_fence(conn, held) == 0:
                raise _refusal(conn, fd_uuid, fence, "writing progress of")
            if flow_params is not None:
                if writer.update_flow(conn, flow_params) == 0:
                    raise not_found(FLOWS, fd_uuid)
            elif not rows and conn.execute(sql.FLOW_EXISTS, {"b_uuid": fd_uuid}).first() is None:
                raise not_found(FLOWS, fd_uuid)
            if rows:
                # A missing flow makes the foreign key fail; told apart below.
                writer.upsert_atoms(conn, rows)

        try:
            operation = f"saving progress of flow detail {fd_uuid!r}"
            if alone:
                # Atom rows only (the write per task): one statement, committed alone.
                if self._run(operation, write_alone, write=True, transaction=False) == 0:
                    # Nothing written: the fence is someone else's, or there is no such flow.
                    assert fence is not None, "an unfenced upsert writes every row"
                    raise self._run(
                        f"reading the fence of flow detail {fd_uuid!r}",
                        lambda conn: _refusal(conn, fd_uuid, fence, "writing progress of"),
                        write=False,
                    )
            else:
                self._run(operation, work, write=True)
        except exc.StorageFailure as failure:
            if isinstance(failure.__cause__, sa_exc.IntegrityError) and not self._flow_exists(fd_uuid):
                raise not_found(FLOWS, fd_uuid) from None
            raise

    def fence_flow(
        self, fd_uuid: str, fence: base.WriteFence, *, take_over: bool | base.WriteFence = True
    ) -> models.FlowDetail:
        """Take the flow detail's write fence and read it, in one write transaction.

        ``take_over`` as :meth:`flowkit.persistence.base.Connection.fence_flow`:
        one conditional ``UPDATE``, so the fence checked is the fence replaced.

        Raises:
            NotFound: no such flow detail.
            FenceRefused: a later claim of the same job holds the fence, or
                another job's fence that ``take_over`` does not let go.
        """
        return self.take_fence(fd_uuid, fence, take_over=take_over).flow

    def take_fence(
        self, fd_uuid: str, fence: base.WriteFence, *, take_over: bool | base.WriteFence = True
    ) -> base.FenceTaken:
        """:meth:`fence_flow`, with the fence replaced, in the same transaction.

        The flow's row is read first and locked (``FOR UPDATE``; SQLite's
        write transaction holds the database), which gives the fence the
        conditional ``UPDATE`` then replaces, and the flow: no statement more
        than taking the fence and reading the flow cost before.
        """

        def work(conn: SAConnection) -> base.FenceTaken:
            params: dict[str, Any] = {"b_uuid": fd_uuid, "holder": fence.holder, "token": fence.token}
            found = conn.execute(sql.SELECT_FLOW_LOCKED, {"b_uuid": fd_uuid}).first()
            if found is None:
                raise not_found(FLOWS, fd_uuid)
            row = found._mapping
            holder = row["fence_holder"]
            replaced = None if holder is None else base.WriteFence(str(holder), int(row["fence_token"]))
            statement = sql.FENCE_FLOW
            if isinstance(take_over, base.WriteFence):
                statement = sql.FENCE_FLOW_REPLACING
                params.update(old_holder=take_over.holder, old_token=take_over.token)
            elif not take_over:
                statement = sql.FENCE_FLOW_OWN
            if conn.execute(statement, params).rowcount == 0:
                # The row is locked since it was read: the fence that refused is the one read.
                raise base.FenceRefused.make(fd_uuid, fence, replaced, "fencing")
            fd = _codec.flow_from_row(row)
            for atom in conn.execute(sql.SELECT_FLOW_ATOMS, {"b_uuid": fd_uuid}):
                fd.add(_codec.atom_from_row(atom._mapping))
            return base.FenceTaken(fd, replaced)

        return self._run(f"fencing flow detail {fd_uuid!r}", work, write=True)

    def flow_fence(self, fd_uuid: str) -> base.WriteFence | None:
        """The write fence the flow detail holds now (None: never fenced).

        Raises:
            NotFound: no such flow detail.
        """

        def work(conn: SAConnection) -> base.WriteFence | None:
            return _current_fence(conn, fd_uuid)

        return self._run(f"reading the fence of flow detail {fd_uuid!r}", work, write=False)

    def _flow_exists(self, fd_uuid: str) -> bool:
        return self._run(
            f"reading flow detail {fd_uuid!r}",
            lambda conn: conn.execute(sql.FLOW_EXISTS, {"b_uuid": fd_uuid}).first() is not None,
            write=False,
        )

    # -- reads -------------------------------------------------------------------------

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> models.LogBook:
        """Return the stored book (``lazy``: the book alone, without its flow details).

        Raises:
            NotFound: no such book.
        """

        def work(conn: SAConnection) -> models.LogBook:
            found, flows = self._book_and_flows(conn, book_uuid, with_flows=not lazy, with_atoms=not lazy)
            return _codec.build_book(found, flows)

        return self._run(f"reading logbook {book_uuid!r}", work, write=False)

    @staticmethod
    def _book_and_flows(
        conn: SAConnection, book_uuid: str, with_flows: bool, with_atoms: bool
    ) -> tuple[Any, list[_codec.BookFlow]]:
        """The book's row and, if asked, its flow details (with their atom details if asked)."""
        params = {"b_uuid": book_uuid}
        found = conn.execute(sql.SELECT_BOOK, params).first()
        if found is None:
            raise not_found(BOOKS, book_uuid)
        if not with_flows:
            return found, []
        atoms = _codec.group_atoms(conn.execute(sql.SELECT_BOOK_ATOMS, params).all()) if with_atoms else None
        flow_rows = conn.execute(sql.SELECT_BOOK_FLOWS, params).all()
        return found, _codec.assemble_flows(flow_rows, atoms)

    def get_logbooks(self, lazy: bool = False) -> Iterator[models.LogBook]:
        """Iterate over every stored book (read in one transaction, up front)."""

        def work(conn: SAConnection) -> list[models.LogBook]:
            by_book: dict[str, list[_codec.BookFlow]] = {}
            if not lazy:  # a lazy book is the book alone, as in get_logbook
                atoms = _codec.group_atoms(conn.execute(sql.SELECT_ALL_ATOMS).all())
                for found in _codec.assemble_flows(conn.execute(sql.SELECT_ALL_FLOWS).all(), atoms):
                    by_book.setdefault(found.book_uuid, []).append(found)
            return [
                _codec.build_book(row, by_book.get(row._mapping["uuid"], []))
                for row in conn.execute(sql.SELECT_ALL_BOOKS)
            ]

        return iter(self._run("reading logbooks", work, write=False))

    def get_flows_for_book(self, book_uuid: str, lazy: bool = False) -> Iterator[models.FlowDetail]:
        """Iterate over one book's flow details.

        Raises:
            NotFound: no such book.
        """

        def work(conn: SAConnection) -> list[models.FlowDetail]:
            _, flows = self._book_and_flows(conn, book_uuid, with_flows=True, with_atoms=not lazy)
            return [found.flow for found in flows]

        return iter(self._run(f"reading the flows of logbook {book_uuid!r}", work, write=False))

    def get_flow_details(self, fd_uuid: str, lazy: bool = False) -> models.FlowDetail:
        """Return the stored flow detail (``lazy``: without its atom details).

        Raises:
            NotFound: no such flow detail.
        """

        return self._run(
            f"reading flow detail {fd_uuid!r}", lambda conn: _read_flow(conn, fd_uuid, lazy), write=False
        )

    def get_atom_details(self, ad_uuid: str) -> models.AtomDetail:
        """Return the stored atom detail.

        Raises:
            NotFound: no such atom detail.
        """

        def work(conn: SAConnection) -> models.AtomDetail:
            found = conn.execute(sql.SELECT_ATOM, {"b_uuid": ad_uuid}).first()
            if found is None:
                raise not_found(ATOMS, ad_uuid)

            def read(uuids: list[str]) -> list[models.AtomDetail | None]:
                rows = (conn.execute(sql.SELECT_ATOM, {"b_uuid": uuid}).first() for uuid in uuids)
                return [_codec.atom_from_row(row._mapping) if row is not None else None for row in rows]

            # A long history comes back whole, from the chunks it is stored in (see _archived).
            return fold_one(_codec.atom_from_row(found._mapping), read)

        return self._run(f"reading atom detail {ad_uuid!r}", work, write=False)

    def get_atoms_for_flow(self, fd_uuid: str) -> Iterator[models.AtomDetail]:
        """Iterate over one flow detail's atom details.

        Raises:
            NotFound: no such flow detail.
        """
        return iter(self.get_flow_details(fd_uuid))

    def get_atom_states(self, fd_uuid: str) -> dict[str, base.AtomStatus]:
        """Each atom's status by name, from one SELECT of a few columns (see ``_states``).

        Raises:
            NotFound: no such flow detail.
        """
        found = self._run(
            f"reading the atom states of flow detail {fd_uuid!r}",
            lambda conn: _states.read_states(conn, fd_uuid),
            write=False,
        )
        # None: a row only the full read reads right (a chunked history): rare, so read it whole.
        return super().get_atom_states(fd_uuid) if found is None else found


def _read_flow(conn: SAConnection, fd_uuid: str, lazy: bool) -> models.FlowDetail:
    params = {"b_uuid": fd_uuid}
    found = conn.execute(sql.SELECT_FLOW, params).first()
    if found is None:
        raise not_found(FLOWS, fd_uuid)
    fd = _codec.flow_from_row(found._mapping)
    if not lazy:
        for row in conn.execute(sql.SELECT_FLOW_ATOMS, params):
            fd.add(_codec.atom_from_row(row._mapping))
    return fd


def _refusal(conn: SAConnection, fd_uuid: str, fence: base.WriteFence, action: str) -> Exception:
    """Why a fence statement matched no row: no such flow, or someone else's fence."""
    try:
        current = _current_fence(conn, fd_uuid)
    except exc.NotFound as missing:
        return missing
    return base.FenceRefused.make(fd_uuid, fence, current, action)


def _current_fence(conn: SAConnection, fd_uuid: str) -> base.WriteFence | None:
    """The fence the flow detail holds (None: never fenced).

    Raises:
        NotFound: no such flow detail.
    """
    found = conn.execute(sql.SELECT_FENCE, {"b_uuid": fd_uuid}).first()
    if found is None:
        raise not_found(FLOWS, fd_uuid)
    holder, token = found
    return None if holder is None else base.WriteFence(str(holder), int(token))


#: TaskFlow's name for this backend's connection class.
Connection = SQLAlchemyConnection
