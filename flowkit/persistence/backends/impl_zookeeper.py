"""A backend that keeps logbooks in ZooKeeper, one znode per record.

Under the configured root path (default ``/flowkit``) the records live at
``books/<uuid>``, ``flows/<uuid>`` and ``atoms/<uuid>``, each a JSON document
(see :mod:`flowkit.persistence.backends._path_based`). A flow's atoms are the
(empty) children of ``members/<flow uuid>``, created with the flow; the data
version of that znode is bumped by every transaction that writes one of the
flow's atoms, so a reader that finds it unchanged after loading the atoms knows
it saw no half-applied write, without the writers touching anything whose size
grows with the flow.

Every change is one ZooKeeper multi-operation transaction, so it is
all-or-nothing (but for one over :attr:`_ZkStore.max_request_bytes`, about
ZooKeeper's 1 MB limit: its new atoms go in earlier parts, each checking what
the whole would, see :mod:`._zk_requests`), and it is optimistic: documents
read while deciding what to write are version-checked in the same
transaction, and a step that lost a race is re-run on fresh data. No lock
node is needed, so a crashed client never leaves one behind.

Reads are optimistic too, and a flow written without pause could make every
one of them miss. So a read that missed a few times holds off the flow's
writers for one more try: in one transaction it creates the ephemeral
``readers/<flow uuid>`` and gives ``readers`` a new data version. Every
transaction writing a flow's document or atoms checks that version as this
process last knew it (one ``check`` operation, the cheapest there is), so
none commits once a hold was taken since; the writer then lists the holds,
waits for those on its flows to go (the read ending, or the reader's
session), and runs its step again. A hold that lasts over a minute (a
frozen reader) it removes as stale, so writers never fail for a reader.

A backend configured ``writable=False`` (``flowkit flows list`` and the other
commands that only read) writes nothing at all: it takes no hold (a hold is
a write) and never creates ``readers`` in a store made before holds existed.
Its reads stay optimistic, checked as every read is, so they are never torn;
what it gives up is the hold's promise of an answer: against a flow written
without pause it may give up ("data kept changing while read") where a
holding reader would have held the writers off.

``read_only`` keeps TaskFlow's meaning: it is its kazoo client's option, which
lets the client connect to a server in read-only mode (writes still go to a
writable one); flowkit refuses no write for it.

kazoo is imported only when a connection is made, so configuring this backend
(or importing flowkit) never needs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import Any, ClassVar

from flowkit import exceptions as exc
from flowkit._utils.records import Record
from flowkit._utils.text import LogSafe, error_text
from flowkit.persistence.backends._missing import never_upgraded
from flowkit.persistence.backends._path_based import (
    ATOMS,
    FLOWS,
    KINDS,
    MEMBERS,
    Batch,
    Conflict,
    DocumentConnection,
    DocumentStore,
    Members,
    Read,
)
from flowkit.persistence.backends._urls import conf_bool, conf_float, mask_url, parse_url, split_hosts
from flowkit.persistence.backends._zk_requests import (
    Action,
    Op,
    Plan,
    TransactionLost,
    emit,
    request_size,
    split,
)
from flowkit.persistence.base import Backend
from flowkit.utils import kazoo_utils

__all__ = ["MIN_ZK_VERSION", "TransactionLost", "ZkBackend", "ZkConnection"]

LOG = logging.getLogger(__name__)

DEFAULT_PATH = "/flowkit"
#: The oldest ZooKeeper server this backend works with (TaskFlow's constant): every change is
#: a multi-operation transaction, which ZooKeeper has since 3.4. Checked on connecting unless
#: the configuration says ``check_compatible=False``.
MIN_ZK_VERSION = (3, 4, 0)
DEFAULT_TIMEOUT = 10.0
# How many atom uuids a store remembers as existing, to guess instead of ask.
_KNOWN_ATOMS = 50_000
# Where a read holding off a flow's writers puts its ephemeral znode (see the module docstring).
READERS = "readers"


class _Deletion(Record):
    """A document a commit deletes; kept aside because deletes go last (children first)."""

    kind: str
    key: str
    present: bool  # whether it exists (as read, or as asked): a missing one has nothing to delete
    expected: Any  # the version the delete checks (-1: any, for a document never read)


def _kazoo_errors() -> Any:
    try:
        from kazoo import exceptions  # type: ignore[import-untyped]
    except ImportError as err:  # pragma: no cover - kazoo is a declared dependency
        raise exc.StorageFailure(
            "the ZooKeeper backend needs kazoo: pip install 'flowkit[zookeeper]'"
        ) from err
    return exceptions


class _ZkStore(DocumentStore):
    """Documents as znodes; writes are version-checked multi-op transactions."""

    optimistic = True

    #: The largest request a commit sends at once, in bytes (estimated): below ZooKeeper's
    #: default ``jute.maxbuffer`` of 1,048,575 bytes, with room for the request's framing. A
    #: larger commit sends its new atoms in earlier parts (see :mod:`._zk_requests`).
    max_request_bytes = 1_000_000

    #: Seconds a writer (or a reader) waits for a reader's hold on a flow to go before it
    #: removes the hold as stale (a reader frozen, or one whose removal failed).
    reader_patience = 60.0

    def __init__(self, client: Any, root: str, where: str, writable: bool = True) -> None:
        self._client = client
        # False: reads only, and writes nothing, not even a read hold (see the module docstring).
        self.writable = writable
        self._root = root.rstrip("/") or "/"
        self._where = where
        self._errors = _kazoo_errors()
        # Atoms this process last saw existing, oldest first; only ever a guess.
        self._known_atoms: OrderedDict[str, None] = OrderedDict()
        self._known_lock = threading.Lock()
        # The data version of ``readers`` this process last read (None: not read yet):
        # every write checks it, and every read hold taken changes it.
        self._gate: int | None = None

    def _learn(self, kind: str, facts: Iterable[tuple[str, bool]]) -> None:
        if kind != ATOMS:
            return
        known = self._known_atoms
        with self._known_lock:
            for key, present in facts:
                if present:
                    known[key] = None
                    known.move_to_end(key)
                else:
                    known.pop(key, None)
            while len(known) > _KNOWN_ATOMS:
                known.popitem(last=False)

    def guess_exists(self, kind: str, keys: Sequence[str]) -> list[bool] | None:
        if kind != ATOMS:
            return None
        known = self._known_atoms
        return [key in known for key in keys]

    def describe(self) -> str:
        return self._where

    def _path(self, kind: str, key: str = "") -> str:
        base = f"{self._root.rstrip('/')}/{kind}"
        return f"{base}/{key}" if key else base

    def read(self, kind: str, key: str) -> Read | None:
        return self._collect([self._client.get_async(self._path(kind, key))], kind, [key])[0]

    def read_many(self, kind: str, keys: Sequence[str]) -> list[Read | None]:
        # Issue every read before waiting for any: one round trip, not len(keys).
        return self._collect([self._client.get_async(self._path(kind, key)) for key in keys], kind, keys)

    def read_many_checked(
        self, kind: str, keys: Sequence[str], seen: Mapping[tuple[str, str], Any]
    ) -> tuple[list[Read | None], bool | None]:
        # ZooKeeper answers one session's requests in the order sent, so
        # checks sent right behind the reads see the store as of after them.
        reads = [self._client.get_async(self._path(kind, key)) for key in keys]
        checks = self._send_checks(seen)
        return self._collect(reads, kind, keys), self._outcome(checks)

    def _link(self, flow: str, atom: str) -> str:
        return f"{self._path(MEMBERS, flow)}/{atom}"

    def linked_many(self, flow: str, atoms: Sequence[str]) -> list[bool]:
        pending = [self._client.exists_async(self._link(flow, atom)) for atom in atoms]
        found = [result.get() is not None for result in pending]
        self._learn(ATOMS, ((atom, True) for atom, here in zip(atoms, found, strict=True) if here))
        return found

    def read_and_linked(self, flow: str, atoms: Sequence[str]) -> tuple[Read | None, list[bool]]:
        # Every request sent before waiting for any: one round trip (the read is sent
        # first, and collected only once linked_many has its answers).
        read = self._client.get_async(self._path(FLOWS, flow))
        linked = self.linked_many(flow, atoms)
        return self._collect([read])[0], linked

    def _collect(self, pending: list[Any], kind: str = "", keys: Sequence[str] = ()) -> list[Read | None]:
        found: list[Read | None] = []
        for result in pending:
            try:
                data, stat = result.get()
            except self._errors.NoNodeError:
                found.append(None)
            else:
                found.append(Read(bytes(data), stat.version))
        if kind:
            self._learn(kind, ((key, item is not None) for key, item in zip(keys, found, strict=True)))
        return found

    def _members_of(self, pending: Any) -> Members:
        try:
            children, stat = pending.get()
        except self._errors.NoNodeError:
            return Members([], None)
        return Members(list(children), stat.version)

    def members(self, flow: str) -> Members:
        return self._members_of(self._client.get_children_async(self._path(MEMBERS, flow), include_data=True))

    def read_flow(self, key: str) -> tuple[Read | None, Members]:
        read = self._client.get_async(self._path(FLOWS, key))
        children = self._client.get_children_async(self._path(MEMBERS, key), include_data=True)
        return self._collect([read])[0], self._members_of(children)

    def keys(self, kind: str) -> list[str]:
        try:
            return list(self._client.get_children(self._path(kind)))
        except self._errors.NoNodeError:
            return []

    def writing(self) -> AbstractContextManager[None]:
        return nullcontext()

    def reading(self) -> AbstractContextManager[None]:
        return nullcontext()

    def _send_checks(self, seen: Mapping[tuple[str, str], Any]) -> list[tuple[Any, Any]]:
        return [(version, self._client.exists_async(self._path(*where))) for where, version in seen.items()]

    @staticmethod
    def _outcome(checks: list[tuple[Any, Any]]) -> bool:
        same = True
        for version, result in checks:
            stat = result.get()  # wait for every answer, even after a mismatch
            same = same and (stat.version if stat is not None else None) == version
        return same

    def unchanged(self, seen: Mapping[tuple[str, str], Any]) -> bool:
        return self._outcome(self._send_checks(seen))

    def _hold_path(self, flow: str) -> str:
        return self._path(READERS, flow)

    def _read_gate(self) -> list[str]:
        """Learn the version of ``readers`` and return the flows held now (one read, so they agree)."""
        while True:
            try:
                held, stat = self._client.get_children(self._path(READERS), include_data=True)
            except self._errors.NoNodeError:  # a store made before holds existed
                self._client.ensure_path(self._path(READERS))
                continue
            self._gate = stat.version
            return list(held)

    def _hold(self, flow: str) -> str:
        """Hold off the writers of ``flow`` (waiting for another reader's hold on it to go)."""
        path = self._hold_path(flow)
        while True:
            txn = self._client.transaction()
            txn.create(path, b"", ephemeral=True)
            txn.set_data(self._path(READERS), b"")  # writers that last knew the old version stop
            first = txn.commit()[0]
            if not isinstance(first, Exception):
                return path
            if isinstance(first, self._errors.NodeExistsError):  # another reader's: wait for it
                self._await_reader(path)
            elif isinstance(first, self._errors.NoNodeError):  # a store made before holds existed
                self._client.ensure_path(self._path(READERS))
            else:
                raise first

    @contextmanager
    def excluding_writers(self, flows: Sequence[str]) -> Iterator[None]:
        # Taken in the order given (sorted by the caller), so two readers never wait on each other.
        held: list[str] = []
        if not self.writable:  # a hold is a write: the read stays optimistic (see the module docstring)
            yield
            return
        try:
            for flow in flows:
                held.append(self._hold(flow))
            yield
        finally:
            for path in reversed(held):
                try:
                    self._client.delete(path)
                except self._errors.NoNodeError:
                    pass
                except self._errors.KazooException:  # writers remove it after reader_patience
                    LOG.warning(
                        "%s: could not remove the read hold %s", self._where, LogSafe(path), exc_info=True
                    )

    def _wait_for_holds(self, flows: Iterable[str]) -> None:
        """Learn the holds (and the version of ``readers``); wait for those on ``flows`` to go."""
        for flow in sorted(set(self._read_gate()) & set(flows)):
            self._await_reader(self._hold_path(flow))

    def _await_reader(self, path: str) -> None:
        """Wait for a reader's hold ``path`` to go; past :attr:`reader_patience` seconds, remove it.

        A read takes milliseconds: a hold that lasts is a reader frozen (or
        one whose removal of it failed, its session living on). Removing it
        is safe: a read under a hold still checks that nothing it read
        changed, so the reader it belonged to reads again, never torn data.
        """
        deadline = time.monotonic() + self.reader_patience
        gone = threading.Event()  # set by a watch; a stale one only makes the loop look again
        while True:
            gone.clear()
            if self._client.exists(path, watch=lambda _event: gone.set()) is None:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                LOG.warning(
                    "%s: a reader held off the writers of flow %s for over %gs; removing its hold %s",
                    self._where,
                    LogSafe(path.rsplit("/", 1)[-1]),
                    self.reader_patience,
                    LogSafe(path),
                )
                with suppress(self._errors.NoNodeError):
                    self._client.delete(path)
                return
            gone.wait(left)

    def _existing(self, batch: Batch) -> dict[tuple[str, str], bool]:
        """Whether each written-but-never-read document exists now."""
        known: dict[tuple[str, str], bool] = {}
        unknown = []
        for where in batch.writes:
            if where in batch.seen:
                continue
            hint = batch.exists.get(where)
            if hint is not None:  # asked of the server in this very attempt
                known[where] = hint
            else:
                unknown.append(where)
        pending = [self._client.exists_async(self._path(*where)) for where in unknown]
        for where, result in zip(unknown, pending, strict=True):
            known[where] = result.get() is not None
        return known

    def _plan(self, batch: Batch, flows: set[str]) -> Plan:
        """The operations committing ``batch`` (see :mod:`._zk_requests` for how they may be split)."""
        existing = self._existing(batch)
        ops: list[Op] = []
        # First, for a write to flows: no read hold taken since this process last looked
        # (see the module docstring).
        if flows:
            if self._gate is None:
                self._wait_for_holds(flows)
            assert self._gate is not None  # learnt just above
            ops.append(Op(Action.CHECK, self._path(READERS), version=self._gate))
        covered: set[tuple[str, str]] = set()  # seen znodes whose version a write checks
        deleted: list[_Deletion] = []
        created_flows: set[str] = set()
        new_atoms: dict[str, Op] = {}  # created atoms, by uuid: movable to an earlier part with their link
        # Documents first (a new flow's members znode with it), then links
        # (children after their parent), then deletes (children first).
        for where, data in batch.writes.items():
            kind, key = where
            if where in batch.seen:
                version = batch.seen[where]
                present, expected = version is not None, version
                covered.add(where)
            else:
                present, expected = existing[where], -1
            if data is None:
                deleted.append(_Deletion(kind, key, present, expected))
            elif present:
                ops.append(Op(Action.SET, self._path(kind, key), data, expected))
            elif kind == ATOMS:
                new_atoms[key] = Op(Action.CREATE, self._path(kind, key), data)
            else:
                ops.append(Op(Action.CREATE, self._path(kind, key), data))
                if kind == FLOWS:
                    created_flows.add(key)
                    ops.append(Op(Action.CREATE, self._path(MEMBERS, key)))
        gone = {doc.key for doc in deleted if doc.kind == FLOWS and doc.present}
        movable: list[tuple[Op, ...]] = []
        for (flow, atom), add in batch.links.items():
            link = self._link(flow, atom)
            if not add:
                ops.append(Op(Action.DELETE, link))
            elif atom in new_atoms and flow not in created_flows and flow not in gone:
                movable.append((new_atoms.pop(atom), Op(Action.CREATE, link)))
            else:
                ops.append(Op(Action.CREATE, link))
        ops.extend(new_atoms.values())  # created without a link, or linked to a flow made here
        for flow, atom in batch.linked - batch.links.keys():
            # Written as this flow's atom on the strength of its link (guessed, or
            # seen before this commit): a link gone since (the atom moved to
            # another flow) fails the commit, and the step runs again on reads.
            ops.append(Op(Action.CHECK, self._link(flow, atom)))
        members_at: dict[str, int] = {}
        for flow in batch.touched - gone:
            # A new data version tells readers the flow's atoms changed.
            members = (MEMBERS, flow)
            version = batch.seen.get(members)
            members_at[self._path(*members)] = len(ops)
            ops.append(Op(Action.SET, self._path(*members), version=-1 if version is None else version))
            covered.add(members)
        for doc in deleted:
            if doc.present:
                ops.append(Op(Action.DELETE, self._path(doc.kind, doc.key), version=doc.expected))
            if doc.kind == FLOWS and doc.key in gone:
                members = (MEMBERS, doc.key)
                if batch.seen.get(members) is not None:
                    ops.append(Op(Action.DELETE, self._path(*members), version=batch.seen[members]))
                    covered.add(members)
        for where, version in batch.seen.items():
            if version is not None and where not in covered:
                ops.append(Op(Action.CHECK, self._path(*where), version=version))
        return Plan(ops, movable, members_at)

    def commit(self, batch: Batch) -> None:
        flows = batch.touched | {key for kind, key in batch.writes if kind == FLOWS}
        plan = self._plan(batch, flows)
        if not plan.ops and not plan.movable:
            return
        for part in split(plan, self.max_request_bytes):
            txn = self._client.transaction()
            emit(txn, part)
            try:
                results = txn.commit()
            except self._errors.ConnectionLoss as err:
                # Measured only now: a request too big is refused by a dropped connection.
                raise TransactionLost(len(txn.operations), request_size(txn.operations), err) from err
            self._check_committed(results, flows)
        self._learn(
            ATOMS,
            ((key, data is not None) for (kind, key), data in batch.writes.items() if kind == ATOMS),
        )

    def _check_committed(self, results: list[Any], flows: set[str]) -> None:
        """Raise :class:`Conflict` for a transaction that lost a race, or the error of one that failed."""
        errors = [item for item in results if isinstance(item, Exception)]
        if not errors:
            return
        races = (
            self._errors.BadVersionError,
            self._errors.NodeExistsError,
            self._errors.NoNodeError,
            self._errors.NotEmptyError,
        )
        # Operations before the failed one report RolledBackError, those after it RuntimeInconsistency.
        knock_on = (self._errors.RolledBackError, self._errors.RuntimeInconsistency)
        real = [err for err in errors if not isinstance(err, knock_on)]
        if all(isinstance(err, races) for err in real):
            if any(isinstance(err, self._errors.NoNodeError) for err in real):
                # A node missing may be a race (deleted since it was read) or a path
                # never upgraded, whose writes would fail as races until the retries
                # ran out ("too much contention"): the second is said as it is.
                self.validate()
            if flows and isinstance(results[0], races):  # a hold was taken (or never looked for)
                self._wait_for_holds(flows)
            raise Conflict(str(real))
        raise real[0]

    def ensure(self) -> None:
        for kind in (*KINDS, MEMBERS, READERS):
            self._client.ensure_path(self._path(kind))

    def clear(self) -> None:
        with self._known_lock:
            self._known_atoms.clear()
        # Not ``readers``: its holds are ephemeral, and its version must only grow.
        for kind in (*KINDS, MEMBERS):
            with suppress(self._errors.NoNodeError):
                self._client.delete(self._path(kind), recursive=True)
        self.ensure()

    def validate(self) -> None:
        for kind in (*KINDS, MEMBERS):
            if self._client.exists(self._path(kind)) is None:
                raise exc.StoreNotUpgraded(
                    f"{self._where} is missing {kind}; run upgrade() first", self._where
                )

    def validate_readable(self) -> None:
        """Check the root path exists before its collections, so a mistyped one is named as such."""
        if self._client.exists(self._root) is None:
            raise exc.StoreMissing(f"{self._where}: no such ZooKeeper path {self._root!r}", self._where)
        for kind in (*KINDS, MEMBERS):
            if self._client.exists(self._path(kind)) is None:
                raise never_upgraded(self._where)


class ZkConnection(DocumentConnection):
    """A connection to a :class:`ZkBackend` (TaskFlow's name for the ZooKeeper backend's connection class).

    Every method is the shared document connection's; the class exists so that
    code naming it, in ``isinstance`` checks or type hints, keeps working.
    """


class ZkBackend(Backend):
    """Keeps logbooks in ZooKeeper.

    Args:
        conf: ``{"connection": "zookeeper://host:port[,host:port]/root/path"}``
            and/or the keys ``hosts`` (``"h1:2181,h2:2181"``), ``path`` (the
            root, default ``/flowkit``) and ``timeout`` (seconds to connect,
            default 10). ``user:password@`` in the URL adds digest credentials.
            ``writable=False`` (``?writable=false``): the connections only read
            and write nothing, not even a read hold (see the module docstring
            and ``Backend.writable``). ``read_only`` is TaskFlow's, handed to
            kazoo: the client may connect to a server in read-only mode, and
            writes are not refused.
        client: an already made ``KazooClient`` to use; the backend then
            neither starts nor stops it (it is started if needed).

    Raises:
        StorageFailure: the URL is malformed, or an option has a bad value.
    """

    #: The root path without one in the conf or URL (TaskFlow's attribute; its value is
    #: ``/taskflow``, flowkit's node layout differs, see ``doc/migrating.rst``).
    DEFAULT_PATH: ClassVar[str] = DEFAULT_PATH

    def __init__(self, conf: Mapping[str, Any] | None, client: Any = None) -> None:
        super().__init__(conf)
        connection = str(self._conf.get("connection", ""))
        hosts = self._conf.get("hosts")
        path = self._conf.get("path")
        self._auth: list[tuple[str, str]] = []
        # Messages name the URL where it says which hosts and path are used, else what is.
        named_by_url = False
        if "://" in connection:
            parsed = parse_url(connection)
            named_by_url = bool(parsed.hosts) and not hosts and not path
            hosts = hosts or parsed.hosts_text
            path = path or parsed.path
            self._auth = kazoo_utils.digest_auth_data(parsed.username, parsed.password)
        self._path = str(path or self.DEFAULT_PATH)
        if not self._path.startswith("/"):
            self._path = "/" + self._path
        # No hosts (``{"connection": "zookeeper:"}``): TaskFlow's kazoo_utils default, as TaskFlow's backend.
        try:
            self._hosts = (
                kazoo_utils.hosts_text(hosts)
                if hosts
                else ("" if client is not None else kazoo_utils.DEFAULT_HOSTS)
            )
        except TypeError as err:  # its message shows the hosts given
            raise exc.quoting_cause(
                exc.StorageFailure(f"ZooKeeper backend {mask_url(connection)!r}: {err}")
            ) from err
        self._where = mask_url(connection if named_by_url else f"zookeeper://{self._hosts}{self._path}")
        self._timeout = conf_float(self._conf, "timeout", DEFAULT_TIMEOUT)
        # kazoo's read_only, as TaskFlow hands it on: allowed onto a server in read-only mode.
        # A backend that is not writable only reads, so such a server serves it too.
        self._kazoo_read_only = conf_bool(self._conf, "read_only") or not self.writable
        self._client = client
        self._owned = client is None
        # What the client is made with, checked now rather than at the first connection:
        # every client option of the conf, as TaskFlow hands its whole conf to make_client.
        self._client_options: dict[str, Any] = {}
        try:
            split_hosts(self._hosts)  # kazoo would find a bad port only on connecting, naming no URL
            self._check_compatible = kazoo_utils.version_check_wanted(self._conf)
            if client is None:
                self._client_options = kazoo_utils.client_options(
                    {
                        **self._conf,
                        "hosts": self._hosts,
                        "timeout": self._timeout,
                        "read_only": self._kazoo_read_only,
                    }
                )
        except (TypeError, ValueError) as err:
            raise exc.quoting_cause(exc.StorageFailure(f"ZooKeeper backend at {self._where}: {err}")) from err
        self._lock = threading.Lock()
        self._store: _ZkStore | None = None

    @property
    def path(self) -> str:
        """The root path of the records."""
        return self._path

    def _started_store(self) -> _ZkStore:
        with self._lock:
            if self._store is not None:
                return self._store
            errors = _kazoo_errors()
            if self._client is None:
                from kazoo.client import KazooClient  # type: ignore[import-untyped]

                self._client = KazooClient(**self._client_options, auth_data=self._auth or None)
            try:
                self._client.start(timeout=self._timeout)
            except (
                errors.KazooException,
                errors.ZookeeperError,
                self._client.handler.timeout_exception,
            ) as err:
                if self._owned:
                    self._stop_client()
                raise exc.quoting_cause(
                    exc.StorageFailure(f"cannot connect to ZooKeeper at {self._where}: {error_text(err)}")
                ) from err
            if self._check_compatible:
                self._check_version(errors)
            self._store = _ZkStore(self._client, self._path, self._where, writable=self.writable)
            return self._store

    def _check_version(self, errors: Any) -> None:
        """Refuse a server older than :data:`MIN_ZK_VERSION`, as TaskFlow's backend does on connecting."""
        try:
            kazoo_utils.check_compatible(self._client, MIN_ZK_VERSION)
        except exc.IncompatibleVersion as err:
            if self._owned:
                self._stop_client()
            raise exc.quoting_cause(
                exc.StorageFailure(f"ZooKeeper at {self._where} is not a compatible version: {err}")
            ) from err
        except (errors.KazooException, OSError) as err:
            if self._owned:
                self._stop_client()
            raise exc.quoting_cause(
                exc.StorageFailure(f"cannot check the version of ZooKeeper at {self._where}: {err!r}")
            ) from err

    def get_connection(self) -> ZkConnection:
        """Connect (on first use) and return a connection.

        Raises:
            StorageFailure: ZooKeeper is unreachable within the timeout.
        """
        return ZkConnection(self, self._started_store())

    def _stop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.stop()
            client.close()

    def close(self) -> None:
        """Stop the ZooKeeper client if this backend made it."""
        with self._lock:
            self._store = None
            if self._owned:
                self._stop_client()
