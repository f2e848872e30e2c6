"""A jobboard in ZooKeeper: jobs are sequential nodes, claims are ephemeral nodes.

Layout under the board's ``path`` (default ``/flowkit/jobs``)::

    job0000000007            posting JSON (persistent, sequential: posting order)
    job0000000007.lock       {"owner": ..., "token": ...} (ephemeral: the claim)
    job0000000007.attempts   JSON list of attempts; its version is the claim token
    .trash/job0000000007     {"posting", "reason", "attempts"} of a job set aside

and next to it, where TaskFlow's board keeps them (``/flowkit/.entities`` for
the default path), so tooling that reads TaskFlow's conductor listing reads
flowkit's::

    .entities/conductor/<name>   a registered conductor, {"kind", "name", "metadata"}
                                 (ephemeral); an entity of another kind under its kind

Boards whose paths share a parent share that folder, as in TaskFlow. The
trash stays under the board's own path (TaskFlow's is next to it too): job
node names are numbered per board, so two boards' trashed jobs would collide
in a shared folder.

A claim is one multi-operation transaction: create the ephemeral lock and
bump the attempts node from the version just read. The token is that new
version, so it grows with every claim of the job, and the transaction fails
if anyone claimed in between. The claim lives as long as the claimant's
ZooKeeper session: a holder that dies, hangs past the session timeout or is
partitioned away loses it when the server expires the session.

A children watch on ``path`` sends :data:`~flowkit.jobs.base.POSTED` and
``REMOVAL`` notifications for every change, made here or by anyone else, and
wakes :meth:`~ZookeeperJobBoard.wait`. It lists every job on each change, so
it starts only once someone registers a listener on the board's notifier or
calls ``wait()`` (its first listing announces the jobs already on the board
as posted); a conductor, which does neither, does not pay for it.

Options (TaskFlow's names): ``hosts`` (``"h1:2181,h2:2181"`` or a list;
:data:`~flowkit.utils.kazoo_utils.DEFAULT_HOSTS`, TaskFlow's ``localhost:2181``, if absent),
``path``, ``timeout`` (the session timeout, seconds: how long a silent
holder keeps its claims), and the client options TaskFlow's board passes to
kazoo (``use_ssl``, ``verify_certs``, ``keyfile``, ``keyfile_password``,
``certfile``, ``read_only``, ``randomize_hosts``, ``command_retry``,
``connection_retry``, ``handler``: see
:func:`flowkit.utils.kazoo_utils.make_client`), ``check_compatible`` (yes/no,
default yes: refuse a server older than ``MIN_ZK_VERSION`` on connecting); flowkit's ``connect_timeout``
(seconds to connect, default the larger of ``timeout`` and 10); or a
``zookeeper://h1:2181,h2:2181/path`` URL, whose ``user:password@`` the
board authenticates with (digest, as the ZooKeeper persistence backend;
TaskFlow's board reads no credentials). A client made elsewhere (with
``kazoo_utils.make_client``, to share it) may be passed as ``client=``.
"""

from __future__ import annotations

import json
import logging
import posixpath
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from flowkit import exceptions as exc
from flowkit import states
from flowkit._utils.masking import MASK
from flowkit._utils.text import LogSafe
from flowkit.jobs import _posting
from flowkit.jobs._board import WatchingJobBoard, parse_entity
from flowkit.jobs._job import BoardJob
from flowkit.jobs.base import (
    POSTED,
    REMOVAL,
    Attempt,
    AttemptEnd,
    Claim,
    Job,
    JobBoardIterator,
    JobPriority,
    check_claim_expiry,
    check_who,
    iter_sorted,
    lost_claim,
)
from flowkit.persistence.backends._urls import Netloc, mask_url, split_hosts, split_netloc
from flowkit.utils import kazoo_utils

if TYPE_CHECKING:
    from flowkit.persistence.base import Backend
    from flowkit.persistence.models import LogBook

__all__ = ["ZookeeperJob", "ZookeeperJobBoard"]

LOG = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_PATH = "/flowkit/jobs"
DEFAULT_TIMEOUT = 10.0
_PREFIX = "job"
_LOCK = ".lock"
_ATTEMPTS = ".attempts"
#: Seconds at most that a confirmation of a claim is trusted without asking again (see
#: ``holds_locally``): under the shortest session timeout a server is likely to grant.
LEASE_CAP = 1.0


@dataclass(frozen=True)
class _Lease:
    """What this board knows of a claim it made: in which session, confirmed when."""

    token: int
    session: Any
    sent_at: float


class ZookeeperJob(BoardJob):
    """A job on a ZooKeeper board, with the paths of its nodes (TaskFlow's class name)."""

    def __init__(self, board: ZookeeperJobBoard, posting: _posting.Posting, path: str, **kwargs: Any) -> None:
        super().__init__(board, posting, **kwargs)
        self._path = path

    @property
    def path(self) -> str:
        """The job's node (its posting)."""
        return self._path

    @property
    def lock_path(self) -> str:
        """The node of the job's claim, present while it is claimed (owner and fencing token, JSON)."""
        return self._path + _LOCK

    @property
    def root(self) -> str:
        """The board's path the job's node is under, with a trailing ``/`` (as TaskFlow's)."""
        return self._path[: self._path.rindex("/") + 1]


@contextmanager
def _translated(action: str, where: str) -> Iterator[None]:
    from kazoo import exceptions as kazoo_errors  # type: ignore[import-untyped]

    try:
        yield
    except kazoo_errors.NoNodeError as err:
        raise exc.NotFound(f"ZooKeeper jobboard at {where}: could not {action}: a node is gone") from err
    except kazoo_errors.NoAuthError as err:
        # kazoo says only "NoAuthError()"; say which credentials were refused (the URL's user, if any).
        raise exc.quoting_cause(
            exc.JobFailure(
                f"ZooKeeper jobboard at {where}: could not {action}: {err!r}: not authorized by the "
                "node's ACL (the board authenticates with the user:password@ of its URL, if it has one)"
            )
        ) from err
    except (kazoo_errors.KazooException, OSError) as err:
        raise exc.quoting_cause(
            exc.JobFailure(f"ZooKeeper jobboard at {where}: could not {action}: {err!r}")
        ) from err


class ZookeeperJobBoard(WatchingJobBoard):
    """TaskFlow's ZooKeeper jobboard semantics, with fencing tokens and attempt history.

    TaskFlow's public attributes are here, naming this board's nodes (see
    the module docstring). Left out: ``STATE_HISTORY_LENGTH`` and
    ``NO_FETCH_STATES``, the bookkeeping of TaskFlow's connection-state
    listener (this board asks its client whether it is connected).

    On connecting it checks, as TaskFlow's, that the server is at least
    :attr:`MIN_ZK_VERSION` unless configured ``check_compatible=False``; the
    check reads the ``envi`` four-letter command, which ZooKeeper 3.5 and
    later run only when ``4lw.commands.whitelist`` allows it.

    Args:
        name: the board's name.
        conf: options (see the module docstring).
        client: an already made ``KazooClient`` to use instead of one made from ``conf``
            (``connect()`` starts it unless it is started; ``close()`` leaves it running).
        persistence: backend the jobs' logbooks are loaded from.
        emit_notifications: send :data:`~flowkit.jobs.base.POSTED` and ``REMOVAL``
            to the board's ``notifier`` listeners (``False``: send none).

    Raises:
        TypeError: a persistence backend given where the client goes (flowkit's
            earlier order was ``(name, conf, persistence, client)``).
    """

    _log = LOG

    #: The oldest ZooKeeper server this board works with (TaskFlow's attribute): claims
    #: are multi-operation transactions, which ZooKeeper has since 3.4.
    MIN_ZK_VERSION = (3, 4, 0)

    #: What a job's node name is followed by to name its claim's node.
    LOCK_POSTFIX = _LOCK

    #: The child of :attr:`path` trashed jobs are kept under (:attr:`trash_path`).
    TRASH_FOLDER = ".trash"

    #: The sibling of :attr:`path` registered entities are kept under (:attr:`entity_path`).
    ENTITY_FOLDER = ".entities"

    #: What a job's node name starts with (its posting order follows: ``job0000000007``).
    JOB_PREFIX = _PREFIX

    #: The board's path when the configuration gives none.
    DEFAULT_PATH = DEFAULT_PATH

    def __init__(
        self,
        name: str,
        conf: dict[str, Any] | None = None,
        client: Any = None,
        persistence: Backend | None = None,
        emit_notifications: bool = True,
    ) -> None:
        super().__init__(name, dict(conf or {}), emit_notifications)
        from flowkit.persistence.base import Backend as _Backend

        if isinstance(client, _Backend):
            raise TypeError(
                f"ZookeeperJobBoard {name!r}: a persistence backend ({type(client).__name__}) was given as "
                "the client; the order is (name, conf, client, persistence), as TaskFlow's: pass persistence="
            )
        self._persistence = persistence
        self._client = client
        self._own_client = client is None
        # Set by connect(), cleared by close(): a client handed in may be started already.
        self._opened = False
        hosts: Any = self._conf.get("hosts")
        path = self._conf.get("path")
        url = self._conf.get("url")
        # Who the board authenticates as: the URL's user info, as the ZooKeeper backend reads it.
        netloc = Netloc(None, None, "")
        if url:
            parts = urlsplit(str(url))
            netloc = split_netloc(parts.netloc)
            hosts = hosts or netloc.hosts or None
            path = path or (parts.path if parts.path not in ("", "/") else None)
        self._auth = kazoo_utils.digest_auth_data(netloc.username, netloc.password)
        self._hosts = kazoo_utils.hosts_text(hosts) if hosts else kazoo_utils.DEFAULT_HOSTS
        self._path = "/" + str(path or DEFAULT_PATH).strip("/")
        # Made once, from the masked user info only: the password is in no text the board shows.
        userinfo = ""
        if netloc.username is not None:
            secret = "" if netloc.password is None else f":{MASK}"
            userinfo = f"{quote(netloc.username, safe='')}{secret}@"
        self._where = mask_url(f"zookeeper://{userinfo}{self._hosts}{self._path}")
        try:
            split_hosts(self._hosts)  # kazoo would find a bad port only on connecting, naming no board
        except ValueError as err:
            raise ValueError(f"ZooKeeper jobboard {name!r} at {self.where}: {err}") from err
        if self._path == "/":
            raise ValueError(
                f"ZooKeeper jobboard {name!r}: the path must name a node below the root, not {path!r}"
            )
        self._trash = f"{self._path}/{self.TRASH_FOLDER}"
        self._entities = posixpath.join(posixpath.dirname(self._path), self.ENTITY_FOLDER)
        self._timeout = float(self._conf.get("timeout", DEFAULT_TIMEOUT))
        # A short session timeout (quick take-over) must not make connecting fragile.
        self._connect_timeout = float(self._conf.get("connect_timeout", max(self._timeout, DEFAULT_TIMEOUT)))
        # TaskFlow's client options (TLS, read_only, retries, handler...), read as its board
        # reads them; checked here so a bad one is refused before anything connects.
        self._client_options = kazoo_utils.client_options({**self._conf, "hosts": self._hosts})
        self._client_options["timeout"] = self._timeout
        self._check_compatible = kazoo_utils.version_check_wanted(self._conf)
        # The children watch costs a listing of every job on each change, so it runs only
        # for someone who uses it: a notification listener, or a caller of wait() (WatchingJobBoard).
        self._watch_wanted = False
        self._watched_client: Any = None
        self._watch_lock = threading.Lock()
        # Job nodes seen by the children watch, with the job read when it appeared.
        self._known: dict[str, ZookeeperJob | None] = {}
        self._known_lock = threading.Lock()
        # Claims this board made, by job uuid (``holds_locally``).
        self._leases: dict[str, _Lease] = {}
        self._leases_lock = threading.Lock()

    @property
    def where(self) -> str:
        """``zookeeper://[user:***@]hosts/path`` (for messages: the password masked)."""
        return self._where

    @property
    def url(self) -> str:
        """A URL naming this board, password masked: the one given, unless its options say otherwise."""
        return self._given_url_naming_it()

    def _url_from_options(self) -> str:
        return self._where

    @property
    def path(self) -> str:
        """The node the board's jobs are children of."""
        return self._path

    @property
    def trash_path(self) -> str:
        """The node trashed jobs are children of: ``.trash`` under :attr:`path` (see the module docstring)."""
        return self._trash

    @property
    def entity_path(self) -> str:
        """The node registered entities are under, by kind: ``.entities`` next to :attr:`path`, as TaskFlow's.

        A conductor named ``c1`` is ``{entity_path}/conductor/c1``.
        """
        return self._entities

    # -- connection ------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._opened and self._client is not None and bool(self._client.connected)

    def connect(self, timeout: float | None = None) -> None:
        """Start the client (unless it is started) and create the board's nodes.

        Args:
            timeout: seconds to wait for the connection, as TaskFlow's
                ``connect(timeout=)``; default the ``connect_timeout`` option.

        Raises:
            JobFailure: no connection within the timeout, or the nodes could not be made.
        """
        connect_timeout = self._connect_timeout if timeout is None else float(timeout)
        try:
            from kazoo.client import KazooClient  # type: ignore[import-untyped]
        except ImportError as err:  # pragma: no cover - kazoo is a declared extra
            raise exc.JobFailure(
                "the ZooKeeper jobboard needs kazoo: pip install 'flowkit[zookeeper]'"
            ) from err
        if self._client is None:
            options = dict(self._client_options)
            # Keep trying (a busy server may answer late) until start()'s own timeout.
            options.setdefault(
                "connection_retry", {"max_tries": -1, "delay": 0.1, "backoff": 2, "max_delay": 1.0}
            )
            self._client = KazooClient(**options, auth_data=self._auth or None)
            self._own_client = True
        if not self._client.connected:
            try:
                self._client.start(timeout=connect_timeout)
            except self._client.handler.timeout_exception as err:
                self._client.stop()
                raise exc.JobFailure(
                    f"could not connect to the ZooKeeper jobboard at {self.where} "
                    f"within {connect_timeout} seconds"
                ) from err
        try:
            if self._check_compatible:
                # IncompatibleVersion goes up (not as JobFailure), as from TaskFlow's board.
                with _translated("check the server's version", self.where):
                    kazoo_utils.check_compatible(self._client, self.MIN_ZK_VERSION)
        except exc.IncompatibleVersion as err:
            if self._own_client:
                self._client.stop()
            raise exc.quoting_cause(
                exc.IncompatibleVersion(f"ZooKeeper jobboard at {self.where}: {err}")
            ) from err
        with _translated("create the board's nodes", self.where):
            self._client.ensure_path(self._trash)
        self._start_watch()
        self._opened = True

    def close(self) -> None:
        self._opened = False
        with self._leases_lock:
            self._leases.clear()
        if self._client is not None and self._own_client:
            self._client.stop()
            self._client.close()
            self._client = None

    def _zk(self) -> Any:
        # Closed counts too: a client handed in outlives close() (its owner stops it), and the
        # board served on through it, where a closed board on its own client refuses.
        if not self._opened or self._client is None or not self._client.connected:
            raise exc.JobFailure(f"ZooKeeper jobboard {self.name!r} at {self.where} is not connected")
        return self._client

    def register_entity(self, entity: Any) -> None:
        """Make ``entity`` (a conductor) known on the board while its session lives.

        Its node is ``{entity_path}/{kind}/{name}``, ephemeral: for a
        conductor that is TaskFlow's ``.entities/conductor/{name}``. An entity
        of another kind goes under its kind, where TaskFlow's board raises
        ``NotImplementedError``. Registering a name already there (a conductor
        run again) writes its record anew.

        Raises:
            TypeError: ``entity`` is not an entity (it has no ``kind`` and
                ``name``, like :class:`~flowkit.types.entity.Entity`): TaskFlow's
                board refuses a plain name too.
        """
        if not (hasattr(entity, "kind") and hasattr(entity, "name")):
            raise TypeError(
                f"register_entity takes an entity with a kind and a name (flowkit.types.entity.Entity), "
                f"not {type(entity).__name__} {entity!r}"
            )
        name = str(entity.name)
        record = {
            "kind": entity.kind,
            "name": name,
            "metadata": getattr(entity, "metadata", {}),
        }
        from kazoo.exceptions import NodeExistsError  # type: ignore[import-untyped]

        folder = self._entity_folder(str(entity.kind))
        path = f"{folder}/{name.replace('/', '_')}"
        with _translated("register an entity", self.where):
            self._zk().ensure_path(folder)
            data = json.dumps(record, default=str).encode()
            try:
                self._zk().create(path, data, ephemeral=True)
            except NodeExistsError:
                self._zk().set(path, data)

    def _entity_folder(self, kind: str) -> str:
        """The node the entities of ``kind`` are registered under (the same for writing and listing)."""
        return f"{self._entities}/{kind.replace('/', '_')}"

    def entities(self, kind: str = "conductor") -> list[dict[str, Any]]:
        """The entities of ``kind`` whose ephemeral node lives (their session is open), by name."""
        from kazoo.exceptions import NoNodeError

        folder = self._entity_folder(kind)
        found = []
        with _translated("list entities", self.where):
            try:
                children = sorted(self._zk().get_children(folder))
            except NoNodeError:
                return []
            for child in children:
                try:
                    raw, _ = self._zk().get(f"{folder}/{child}")
                except NoNodeError:  # its session ended between the listing and the read
                    continue
                record = parse_entity(raw, f"{folder}/{child}", self.where, LOG)
                if record is not None:
                    found.append(record)
        return found

    # -- notifications ---------------------------------------------------
    def _listening(self) -> bool:
        """Whether anyone hears this board's notifications (else the watch need not read jobs)."""
        return self._emit_notifications and self.notifier.has_listeners

    def _want_watch(self) -> None:
        self._watch_wanted = True
        self._start_watch()
        if self._listening():
            self._read_unread_known()

    def _read_unread_known(self) -> None:
        """Read the jobs the watch noted by name only (it had no listener then).

        Without them a listener registered after a ``wait()`` would never hear
        of those jobs' removal: a job gone before it was read cannot be
        announced.
        """
        with self._known_lock:
            unread = [child for child, job in self._known.items() if job is None]
            for child in unread:
                self._known[child] = self._read_job(child)

    def _start_watch(self) -> None:
        """Watch the board's children, once per client, if anyone wants it."""
        with self._watch_lock:
            client = self._client
            if not self._watch_wanted or client is None or not client.connected:
                return  # connect() starts it
            if self._watched_client is client:
                return
            self._watched_client = client
        client.ChildrenWatch(self._path, self._on_children)

    def _on_children(self, children: list[str]) -> None:
        names = {c for c in children if _is_job_node(c)}
        listening = self._listening()
        with self._known_lock:
            added = sorted(names - self._known.keys())
            removed = [self._known.pop(c) for c in sorted(self._known.keys() - names)]
            for child in added:
                self._known[child] = self._read_job(child) if listening else None
            posted = [self._known[c] for c in added]
        if added:
            self._waiter.wake()
        for job in posted:
            if job is not None:
                self._notify(POSTED, job)
        for gone in removed:
            if gone is not None:
                self._notify(REMOVAL, gone)

    # -- reading ---------------------------------------------------------
    def _read_job(self, child: str) -> ZookeeperJob | None:
        path = f"{self._path}/{child}"
        try:
            raw, _ = self._zk().get(path)
        except Exception:  # gone meanwhile or unreadable: nothing to hand out
            return None
        return self._job_from(child, raw)

    def _job_from(self, child: str, raw: bytes) -> ZookeeperJob | None:
        path = f"{self._path}/{child}"
        try:
            posting = _posting.loads(raw, f"{self.where}/{child}")
        except _posting.MalformedJob as error:
            self._set_aside_malformed(child, raw, error)
            return None
        sequence = int(child[len(_PREFIX) :])
        posting = _posting.Posting(**{**posting.__dict__, "sequence": sequence})
        return ZookeeperJob(self, posting, path, backend=self._persistence)

    def _set_aside_malformed(self, child: str, raw: bytes, error: _posting.MalformedJob) -> None:
        LOG.warning("setting aside malformed job document %s: %s", LogSafe(error.location), LogSafe(error))
        doc = json.dumps({"raw": raw.decode("utf-8", "replace"), "reason": str(error), "attempts": []})
        zk = self._zk()
        try:
            txn = zk.transaction()
            txn.create(f"{self._trash}/{child}", doc.encode())
            txn.delete(f"{self._path}/{child}")
            txn.commit()
        except Exception:  # another board set it aside first
            LOG.debug("could not set %s aside", LogSafe(child), exc_info=True)

    def _children(self) -> list[str]:
        with _translated("list jobs", self.where):
            return [c for c in self._zk().get_children(self._path) if _is_job_node(c)]

    def _job_state(self, job: BoardJob) -> str:
        path = _path_of(job)
        with _translated(f"read the state of job {job.uuid}", self.where):
            zk = self._zk()
            exists = zk.exists_async(path)
            locked = zk.exists_async(path + _LOCK)
            listed, owned = exists.get(), locked.get()
        if listed is None:
            return states.COMPLETE
        return states.CLAIMED if owned is not None else states.UNCLAIMED

    @property
    def job_count(self) -> int:
        """How many jobs are posted; 0 on a board that is not connected, as in TaskFlow."""
        if not self.connected:
            return 0
        return len(self._children())

    def _fetch(self, ensure_fresh: bool) -> list[ZookeeperJob]:
        if not self.connected and not ensure_fresh:
            # As TaskFlow's board: a board not connected (closed, or its session
            # suspended or lost) lists no jobs; only a fresh listing is an error.
            return []
        children = self._children()
        zk = self._zk()
        pending = [(c, zk.get_async(f"{self._path}/{c}")) for c in children]
        jobs = []
        from kazoo.exceptions import NoNodeError

        for child, result in pending:
            try:
                raw, _ = result.get()
            except NoNodeError:
                continue
            job = self._job_from(child, raw)
            if job is not None:
                jobs.append(job)
        return iter_sorted(jobs)

    def iterjobs(self, only_unclaimed: bool = False, ensure_fresh: bool = False) -> JobBoardIterator:
        """The posted jobs, most urgent then oldest first.

        A board that is not connected lists none, as TaskFlow's does; with
        ``ensure_fresh`` it raises :class:`~flowkit.exceptions.JobFailure` instead.
        """
        return super().iterjobs(only_unclaimed, ensure_fresh)

    def current_claim(self, job: Job) -> Claim | None:
        from kazoo.exceptions import NoNodeError

        sent_at = time.monotonic()
        with _translated(f"read the claim of job {job.uuid}", self.where):
            try:
                raw, _ = self._zk().get(_path_of(job) + _LOCK)
            except NoNodeError:
                return None
        data = json.loads(raw)
        claim = Claim(str(data["owner"]), int(data["token"]))
        with self._leases_lock:
            lease = self._leases.get(job.uuid)
            if lease is not None and lease.token == claim.token:
                self._leases[job.uuid] = _Lease(lease.token, lease.session, sent_at)
        return claim

    def holds_locally(self, job: Job, claim: Claim) -> bool:
        """True for a claim this board made, in its current session, confirmed less than a while ago.

        The claim lives as long as the session that made it, and the server
        does not expire a session sooner than its timeout after the last
        request it answered: a confirmation sent at ``t`` holds until
        ``t + timeout``. Half the session timeout, never more than
        :data:`LEASE_CAP` seconds, is trusted (the server may have granted a
        shorter session timeout than the board asked for).
        """
        from kazoo.protocol.states import KazooState  # type: ignore[import-untyped]

        with self._leases_lock:
            lease = self._leases.get(job.uuid)
        client = self._client
        if lease is None or client is None or lease.token != claim.token:
            return False
        if client.state != KazooState.CONNECTED or client.client_id != lease.session:
            return False
        return time.monotonic() < lease.sent_at + min(self._timeout / 2, LEASE_CAP)

    def _read_attempts(self, job: Job) -> tuple[list[Attempt], int | None]:
        from kazoo.exceptions import NoNodeError

        try:
            raw, stat = self._zk().get(_path_of(job) + _ATTEMPTS)
        except NoNodeError:
            return [], None
        return [Attempt.from_dict(item) for item in json.loads(raw)], stat.version

    def attempts(self, job: Job) -> list[Attempt]:
        with _translated(f"read the attempts of job {job.uuid}", self.where):
            return self._read_attempts(job)[0]

    def trashed(self) -> list[dict[str, Any]]:
        found = []
        with _translated("list trashed jobs", self.where):
            for child in self._zk().get_children(self._trash):
                raw, _ = self._zk().get(f"{self._trash}/{child}")
                doc = json.loads(raw)
                posting = doc.pop("posting", None) or {}
                found.append({**posting, **doc})
        return found

    # -- writing ---------------------------------------------------------
    def post(
        self,
        name: str,
        book: LogBook | None = None,
        details: dict[str, Any] | None = None,
        priority: JobPriority | str = JobPriority.NORMAL,
    ) -> ZookeeperJob:
        posting = _posting.Posting.make(str(uuidlib.uuid4()), name, 0, book, details, priority)
        with _translated(f"post job {name!r}", self.where):
            path = self._zk().create(
                f"{self._path}/{_PREFIX}", _posting.dumps(posting).encode(), sequence=True
            )
        child = path.rsplit("/", 1)[1]
        posting = _posting.Posting(**{**posting.__dict__, "sequence": int(child[len(_PREFIX) :])})
        job = ZookeeperJob(self, posting, path, backend=self._persistence, book=book)
        self._waiter.wake()
        return job

    def _after_lost_reply(self, read: Callable[[], _T]) -> _T:
        """``read()`` once the connection is back, to learn what a request whose answer was lost did.

        Tried until about twice the session timeout has passed: by then the
        session either came back (its ephemeral nodes with it) or expired
        (and they are gone).

        Raises:
            KazooException: still no answer by then.
        """
        from kazoo.retry import KazooRetry  # type: ignore[import-untyped]

        retry = KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5, deadline=2 * self._timeout)
        return retry(read)  # type: ignore[no-any-return]

    def _made_in_session(self, lock_path: str, claim: Claim, session: Any) -> bool:
        """Whether ``lock_path`` holds ``claim``, made in ``session`` (a claim whose answer was lost)."""
        from kazoo.exceptions import NoNodeError

        assert self._client is not None
        try:
            raw, stat = self._after_lost_reply(lambda: self._client.get(lock_path))
        except NoNodeError:
            return False
        data = json.loads(raw)
        found = Claim(str(data["owner"]), int(data["token"]))
        return found == claim and stat.ephemeralOwner == session[0]

    def _gave_back(self, job: Job, action: str, token: int, end: AttemptEnd) -> bool:
        """Whether ``action`` (whose answer was lost) ended the claim with ``token`` on the server."""
        from kazoo.exceptions import NoNodeError

        path = _path_of(job)
        assert self._client is not None
        client = self._client
        if action != "abandon":
            return self._after_lost_reply(lambda: client.exists(path)) is None
        try:
            raw, _ = self._after_lost_reply(lambda: client.get(path + _ATTEMPTS))
        except NoNodeError:
            return False
        ours = [a for a in (Attempt.from_dict(item) for item in json.loads(raw)) if a.token == token]
        # Another claim after ours would have ended it LOST, not with the end asked for.
        return bool(ours) and ours[-1].end is end

    @check_who
    def claim(self, job: Job, who: str, expiry: float | None = None) -> Claim:
        from kazoo.exceptions import ConnectionLoss, NodeExistsError, NoNodeError

        # Unused (the claim lasts as long as this board's session), but checked as every
        # board checks it, so a caller's bad value fails here as it would elsewhere.
        check_claim_expiry(self, expiry, f"job {job.uuid}")
        path = _path_of(job)
        zk = self._zk()
        with _translated(f"claim job {job.uuid}", self.where):
            for _ in range(10):
                # The claim and the history in one round trip; no separate existence check:
                # the transaction's check of the job's node fails (NoNodeError, below) when it
                # is gone.
                locked, history = zk.get_async(path + _LOCK), zk.get_async(path + _ATTEMPTS)
                try:
                    raw_lock, _ = locked.get()
                except NoNodeError:
                    pass
                else:
                    owner = json.loads(raw_lock).get("owner")
                    raise exc.UnclaimableJob(f"Job {job.uuid} already claimed by '{owner}'")
                try:
                    raw_attempts, stat = history.get()
                except NoNodeError:
                    attempts, version = [], None
                else:
                    attempts = [Attempt.from_dict(item) for item in json.loads(raw_attempts)]
                    version = stat.version
                token = 1 if version is None else version + 2
                if attempts and attempts[-1].end is AttemptEnd.OPEN:
                    attempts[-1] = _ended(attempts[-1], AttemptEnd.LOST, "claim lost (session expired)")
                claim = Claim(who, token)
                attempts.append(Attempt(who, token, time.time()))
                body = json.dumps([a.to_dict() for a in attempts]).encode()
                txn = zk.transaction()
                txn.check(path, -1)
                txn.create(path + _LOCK, json.dumps({"owner": who, "token": token}).encode(), ephemeral=True)
                if version is None:
                    # Created at version 0 with token 1; each later change bumps the version, and a
                    # claim's token is the version it writes plus one, so tokens only grow.
                    txn.create(path + _ATTEMPTS, body)
                else:
                    txn.set_data(path + _ATTEMPTS, body, version=version)
                session, sent_at = zk.client_id, time.monotonic()
                try:
                    results = txn.commit()
                except ConnectionLoss:
                    # The answer was lost, maybe not the claim: made, its lock lives as long as
                    # this session, and the job would stay claimed by nobody running it.
                    if not self._made_in_session(path + _LOCK, claim, session):
                        raise
                    results = []
                failures = [r for r in results if isinstance(r, Exception)]
                if not failures:
                    with self._leases_lock:
                        self._leases[job.uuid] = _Lease(token, session, sent_at)
                    return claim
                if any(isinstance(r, NodeExistsError) for r in results[1:2]):
                    owner = self.find_owner(job)
                    raise exc.UnclaimableJob(f"Job {job.uuid} already claimed by '{owner}'")
                if isinstance(results[0], NoNodeError):
                    raise exc.NotFound(f"job {job.uuid} is not on board {self.name!r} (cannot claim it)")
                # The attempts node changed under us (a racing claim): read again.
        raise exc.UnclaimableJob(f"job {job.uuid} could not be claimed: too much contention")

    def _finish(
        self, job: Job, who: str, action: str, reason: str | None, end: AttemptEnd, claim: Claim | None
    ) -> None:
        from kazoo.exceptions import ConnectionLoss, NoNodeError

        path = _path_of(job)
        zk = self._zk()
        with self._leases_lock:
            self._leases.pop(job.uuid, None)
        with _translated(f"{action} job {job.uuid}", self.where):
            for _ in range(10):
                # The job, its claim and its attempts, read in one round trip.
                posted, locked, history = (
                    zk.get_async(path),
                    zk.get_async(path + _LOCK),
                    zk.get_async(path + _ATTEMPTS),
                )
                try:
                    raw_posting, _ = posted.get()
                except NoNodeError:
                    raise exc.NotFound(
                        f"job {job.uuid} is not on board {self.name!r} (cannot {action} it)"
                    ) from None
                try:
                    raw_lock, lock_stat = locked.get()
                except NoNodeError:
                    if claim is not None:
                        raise lost_claim(self, job, claim, None) from None
                    # NotFound, as TaskFlow raises for a job whose owner it cannot find.
                    raise exc.NotFound(
                        f"Can not {action} a job {job.uuid} which we can not determine the owner of"
                    ) from None
                data = json.loads(raw_lock)
                current = Claim(str(data["owner"]), int(data["token"]))
                if claim is not None and current != claim:
                    raise lost_claim(self, job, claim, current)
                if current.owner != who:
                    raise exc.JobFailure(
                        f"Can not {action} a job {job.uuid} which is not owned by {who} "
                        f"(it is claimed by {current.owner!r})"
                    )
                try:
                    raw_attempts, attempts_stat = history.get()
                except NoNodeError:
                    attempts, version = [], None
                else:
                    attempts = [Attempt.from_dict(item) for item in json.loads(raw_attempts)]
                    version = attempts_stat.version
                if attempts and attempts[-1].end is AttemptEnd.OPEN:
                    attempts[-1] = _ended(attempts[-1], end, reason)
                txn = zk.transaction()
                txn.delete(path + _LOCK, version=lock_stat.version)
                if action == "abandon":
                    if version is not None:
                        txn.set_data(
                            path + _ATTEMPTS, json.dumps([a.to_dict() for a in attempts]).encode(), version
                        )
                else:
                    if action == "trash":
                        doc = {
                            "posting": json.loads(raw_posting),
                            "reason": reason,
                            "attempts": [a.to_dict() for a in attempts],
                        }
                        txn.create(f"{self._trash}/{path.rsplit('/', 1)[1]}", json.dumps(doc).encode())
                    if version is not None:
                        txn.delete(path + _ATTEMPTS, version=version)
                    txn.delete(path)
                try:
                    results = txn.commit()
                except ConnectionLoss:
                    # The answer was lost, maybe not the change. Not made, the claim would stay
                    # with this session (and the job unrun) for as long as the board lives:
                    # done if the server shows it, else tried again once it answers.
                    if self._gave_back(job, action, current.token, end):
                        return
                    continue
                if not any(isinstance(r, Exception) for r in results):
                    return
        raise exc.JobFailure(f"could not {action} job {job.uuid}: too much contention")

    @check_who
    def consume(self, job: Job, who: str, claim: Claim | None = None) -> None:
        self._finish(job, who, "consume", None, AttemptEnd.ABANDONED, claim)

    @check_who
    def abandon(
        self,
        job: Job,
        who: str,
        reason: str | None = None,
        failed: bool = False,
        claim: Claim | None = None,
    ) -> None:
        end = AttemptEnd.FAILED if failed else AttemptEnd.ABANDONED
        self._finish(job, who, "abandon", reason, end, claim)

    @check_who
    def trash(self, job: Job, who: str, reason: str | None = None, claim: Claim | None = None) -> None:
        self._finish(job, who, "trash", reason, AttemptEnd.ABANDONED, claim)


def _is_job_node(child: str) -> bool:
    return child.startswith(_PREFIX) and child[len(_PREFIX) :].isdigit()


def _path_of(job: Job) -> str:
    if not isinstance(job, ZookeeperJob):
        raise exc.NotFound(f"job {job.uuid} was not read from a ZooKeeper jobboard")
    return job.path


def _ended(attempt: Attempt, end: AttemptEnd, reason: str | None) -> Attempt:
    from dataclasses import replace

    return replace(attempt, end=end, reason=reason)
