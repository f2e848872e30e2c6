"""A jobboard in etcd (v3, through its HTTP gateway with ``etcd3gw``): claims are leased keys.

TaskFlow's key layout, so a TaskFlow etcd board on the same ``path`` reads
flowkit's jobs and the other way round (``<root>`` is
``/taskflow/jobs/<path>``, ``path`` defaulting to ``jobboard``)::

    <root>/sequence                 the posting counter (text integer)
    <root>/job7.data                the posting, JSON (with its ``sequence``)
    <root>/job7.lock                the claim: {"owner", "token", "lease_id"?, "ttl"?}
    <root>/job7.last_modified       {"last_modified": "<UTC time>"}: last claim
    <root>/job7.attempts            JSON list of the job's claims (flowkit's own key)
    /taskflow/.trash/<path>/job7    a trashed job: its posting, reason and attempts

Every change is one etcd transaction guarded by the keys it read, so two
boards racing for a job cannot both win: a post bumps the counter and writes
the posting together; a claim creates the lock only if there is none and the
job is still there, appending to its attempts in the same step; consume,
abandon and trash act only while the lock is the one they read. The fencing
token of a claim is the version of the attempts key it wrote, so it grows
with every claim of the job.

A claim with an expiry (``claim(..., expiry=)`` or the board's ``ttl``
option, TaskFlow's name) is attached to an etcd lease: when the lease runs
out, etcd deletes the lock and the job is claimable again. etcd counts
leases in whole seconds, so an expiry is rounded up to the next second (and
a server may grant a longer minimum). Without an expiry a claim lasts until
it is given back, as on TaskFlow's etcd board.

A prefix watch sends :data:`~flowkit.jobs.base.POSTED` and ``REMOVAL``
notifications for changes made by anyone and wakes :meth:`EtcdJobBoard.wait`.
It runs from the first listener registered on the board's notifier or the
first ``wait()``, so a conductor that uses neither does not hold the stream
open. A stream silent for ``watch_timeout`` seconds is checked on and opened
again from where it was, since a connection that died without closing (a
network partition, a proxy that stopped forwarding) raises no error.

Options (TaskFlow's names): ``host`` (default ``localhost``), ``port``
(2379), ``protocol`` (``http``/``https``), ``ca_cert``, ``cert_key``,
``cert_cert``, ``timeout`` (seconds per request), ``api_path``, ``path`` and
``ttl``; or a URL ``etcd://host:port/path`` (``etcds://`` for https).
flowkit's own: ``watch_timeout`` (seconds, default :data:`WATCH_TIMEOUT`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flowkit import exceptions as exc
from flowkit import states
from flowkit._utils.text import LogSafe
from flowkit.jobs import _posting
from flowkit.jobs._board import WatchingJobBoard
from flowkit.jobs._job import BoardJob
from flowkit.jobs.base import (
    POSTED,
    REMOVAL,
    Attempt,
    AttemptEnd,
    Claim,
    Job,
    JobPriority,
    check_claim_expiry,
    check_who,
    expiry_extension_ms,
    iter_sorted,
    lost_claim,
)

if TYPE_CHECKING:
    from flowkit.persistence.base import Backend
    from flowkit.persistence.models import LogBook

__all__ = ["EtcdJob", "EtcdJobBoard"]

LOG = logging.getLogger(__name__)

_ATTEMPTS = ".attempts"
#: TaskFlow's text form of ``last_modified`` (oslo.utils' ``strtime``).
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
#: Transactions that lost a race are read and tried again this many times at most.
_RETRIES = 20
#: Keys read per request when the board counts its jobs (``job_count``, ``wait()``).
KEY_PAGE = 1000
#: Seconds before the first try to open again a watch whose stream ended.
WATCH_RETRY_FIRST = 0.05
#: The longest wait (seconds) between two tries to open the watch again (the delay doubles).
WATCH_RETRY_MAX = 5.0
#: Seconds a watch stream may stay silent before the board checks on etcd and opens it again
#: (the ``watch_timeout`` option).
WATCH_TIMEOUT = 30.0


def _b64(data: str | bytes) -> str:
    import base64

    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _unb64(data: str) -> bytes:
    import base64

    return base64.b64decode(data)


def _prefix_end(prefix: str) -> str:
    """The key just past every key starting with ``prefix`` (etcd's ``range_end``)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw).decode()


class EtcdJob(BoardJob):
    """A job on an etcd board: its key and, when claimed with an expiry, the claim's lease.

    TaskFlow's class name and attributes (``key``, ``root``, ``lease``,
    ``expires_in()``, ``extend_expiry()``).
    """

    def __init__(self, board: EtcdJobBoard, posting: _posting.Posting, key: str, **kwargs: Any) -> None:
        super().__init__(board, posting, **kwargs)
        self._etcd_board = board
        self._key = key

    @property
    def key(self) -> str:
        """The job's key: ``<root>/job<sequence>`` (its keys add ``.data``, ``.lock``...)."""
        return self._key

    @property
    def root(self) -> str:
        """The board's root key the job is under."""
        return self._etcd_board.root_path

    @property
    def last_modified(self) -> datetime | None:
        """When the job was last claimed (UTC), else posted; TaskFlow's etcd board records claims."""
        return self._etcd_board._last_modified(self) or self.created_on

    @property
    def lease(self) -> Any:
        """The ``etcd3gw.Lease`` of the current claim, ``None`` when unclaimed or claimed without expiry."""
        data = self._etcd_board.get_owner_data(self)
        if not data or "lease_id" not in data:
            return None
        from etcd3gw.lease import Lease

        return Lease(int(data["lease_id"]), client=self._etcd_board._etcd())

    def expires_in(self) -> int:
        """Seconds (whole, etcd's unit) until the current claim expires; -1 when it does not expire.

        Raises:
            JobFailure: the board cannot be read.
        """
        data = self._etcd_board.get_owner_data(self)
        if not data or "lease_id" not in data:
            return -1
        return self._etcd_board._lease_ttl(int(data["lease_id"]))

    def extend_expiry(self, expiry: float) -> bool:
        """Make the current claim expire ``expiry`` seconds from now (rounded up to whole seconds).

        ``False`` when the job is not claimed. A claim made without an
        expiry gets one. An ``expiry`` that comes to no whole millisecond (0,
        negative) ends the claim now, as on the other flowkit boards. (TaskFlow's
        etcd board only refreshes the lease with its first TTL, ignoring
        ``expiry``.)

        Raises:
            ValueError: ``expiry`` is NaN or infinite.
            TypeError: ``expiry`` is not a number.
            JobFailure: the board cannot be written.
        """
        claim = self._etcd_board.current_claim(self)
        if claim is None:
            return False
        return self._etcd_board.renew(self, claim, expiry)


class EtcdJobBoard(WatchingJobBoard):
    """TaskFlow's etcd jobboard semantics, with fencing tokens, attempt history and notifications.

    Args:
        name: the board's name.
        conf: options (see the module docstring).
        client: an ``etcd3gw.Etcd3Client`` to use instead of one made from ``conf``
            (``close()`` leaves it to its owner).
        persistence: backend the jobs' logbooks are loaded from.
        emit_notifications: send :data:`~flowkit.jobs.base.POSTED` and ``REMOVAL``
            to the board's ``notifier`` listeners (``False``: send none).
    """

    _log = LOG

    #: Where every board's root key is (TaskFlow's): ``<ROOT_PATH>/<path>``.
    ROOT_PATH = "/taskflow/jobs"
    #: Where trashed jobs go, under the board's ``path`` (TaskFlow's).
    TRASH_PATH = "/taskflow/.trash"
    #: The board's ``path`` when the configuration gives none.
    DEFAULT_PATH = "jobboard"
    #: What a job's key starts with (its posting order follows: ``job7``).
    JOB_PREFIX = "job"
    #: The counter's key under the root.
    SEQUENCE_KEY = "sequence"
    #: A job's posting key is its key followed by this.
    DATA_POSTFIX = ".data"
    #: A job's claim key is its key followed by this.
    LOCK_POSTFIX = ".lock"
    #: The key of a job's last claim time is its key followed by this.
    LAST_MODIFIED_POSTFIX = ".last_modified"
    #: The options passed to ``etcd3gw.Etcd3Client``, with their types (TaskFlow's).
    ETCD_CONFIG_OPTIONS = (
        ("host", str),
        ("port", int),
        ("protocol", str),
        ("ca_cert", str),
        ("cert_key", str),
        ("cert_cert", str),
        ("timeout", float),
        ("api_path", str),
    )

    def __init__(
        self,
        name: str,
        conf: dict[str, Any] | None = None,
        client: Any = None,
        persistence: Backend | None = None,
        emit_notifications: bool = True,
    ) -> None:
        super().__init__(name, dict(conf or {}), emit_notifications)
        conf = self._conf
        url = conf.get("url")
        if url:
            parts = urlsplit(str(url))
            if parts.hostname:
                conf.setdefault("host", parts.hostname)
            if parts.port:
                conf.setdefault("port", parts.port)
            if parts.scheme.lower() in ("etcds", "https"):
                conf.setdefault("protocol", "https")
            if parts.path.strip("/"):
                conf.setdefault("path", parts.path.strip("/"))
        self._client_options: dict[str, Any] = {}
        for key, kind in self.ETCD_CONFIG_OPTIONS:
            if key in conf:
                try:
                    self._client_options[key] = kind(conf[key])
                except (TypeError, ValueError) as err:
                    raise ValueError(
                        f"etcd jobboard {name!r}: option {key!r} must be {kind.__name__}, not {conf[key]!r}"
                    ) from err
        path = str(conf.get("path", self.DEFAULT_PATH)).strip("/")
        if not path:
            raise ValueError(f"etcd jobboard {name!r}: the path must name a key below {self.ROOT_PATH}")
        self._root = f"{self.ROOT_PATH}/{path}"
        self._trash = f"{self.TRASH_PATH}/{path}"
        ttl = conf.get("ttl")
        self._default_expiry = None if ttl is None else check_claim_expiry(self, ttl, "any job")
        self._watch_timeout = _watch_timeout(name, conf.get("watch_timeout", WATCH_TIMEOUT))
        self._persistence = persistence
        self._client = client
        self._own_client = client is None
        self._opened = False
        self._watch_wanted = False
        self._watch_lock = threading.Lock()
        self._watch_stop: threading.Event | None = None
        self._watch_thread: threading.Thread | None = None
        self._watch_stream: Any = None  # the open ``requests`` response of the watch, to shut on close
        # Jobs the watch has seen posted, by key, for their REMOVAL notification (its thread's own).
        self._known: dict[str, EtcdJob] = {}

    # -- names -----------------------------------------------------------
    @property
    def root_path(self) -> str:
        """The key every job key of this board starts with: ``/taskflow/jobs/<path>``."""
        return self._root

    @property
    def trash_path(self) -> str:
        """The key trashed jobs are kept under: ``/taskflow/.trash/<path>``."""
        return self._trash

    @property
    def url(self) -> str:
        """A URL naming this board, password masked: the one given, unless its options say otherwise."""
        return self._given_url_naming_it()

    def _names_this_board(self, given: str, named: str) -> bool:
        # TLS is no part of where the jobs are, but a URL read back must reach them the same way:
        # a protocol option over the URL's scheme (etcd:// or etcds://) is named.
        same_tls = urlsplit(given).scheme.lower() == urlsplit(named).scheme.lower()
        return same_tls and super()._names_this_board(given, named)

    def _url_from_options(self) -> str:
        """``etcd://host:port/path`` (``etcds`` over TLS), the path below the root as a board URL gives it."""
        options = self._client_options
        scheme = "etcds" if options.get("protocol") == "https" else "etcd"
        path = self._root[len(self.ROOT_PATH) :]
        return f"{scheme}://{options.get('host', 'localhost')}:{options.get('port', 2379)}{path}"

    @property
    def where(self) -> str:
        """``http://host:port/root`` (for messages)."""
        options = self._client_options
        return (
            f"{options.get('protocol', 'http')}://{options.get('host', 'localhost')}:"
            f"{options.get('port', 2379)}{self._root}"
        )

    # -- connection ------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._opened and self._client is not None

    def connect(self) -> None:
        """Make the client (unless one was given) and check the server answers.

        Raises:
            JobFailure: the server cannot be reached.
        """
        if self._opened:
            return
        try:
            import etcd3gw
        except ImportError as err:  # pragma: no cover - etcd3gw is a declared extra
            raise exc.JobFailure("the etcd jobboard needs etcd3gw: pip install 'flowkit[etcd]'") from err
        if self._client is None:
            self._client = etcd3gw.Etcd3Client(**self._client_options)
            self._own_client = True
        with self._translated("connect"):
            self._client.status()
        self._opened = True
        if self._watch_wanted:
            self._start_watch()

    def close(self) -> None:
        """Stop the watch and drop the client; the jobs (and claims) stay on the server."""
        self._opened = False
        self._stop_watch()
        if self._client is not None and self._own_client:
            session = getattr(self._client, "session", None)
            if session is not None:
                session.close()
            self._client = None

    def _etcd(self) -> Any:
        if not self._opened or self._client is None:
            raise exc.JobFailure(f"etcd jobboard {self.name!r} at {self.where} is not connected")
        return self._client

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        from etcd3gw import exceptions as etcd_errors

        try:
            yield
        except (etcd_errors.Etcd3Exception, OSError) as err:
            raise exc.quoting_cause(
                exc.JobFailure(
                    f"etcd jobboard {self.name!r} at {self.where}: could not {action}: {_describe(err)}"
                )
            ) from err

    def register_entity(self, entity: Any) -> None:
        """Nothing to do: as TaskFlow's etcd board, this board lists no entities."""

    # -- low-level reads (TaskFlow's helpers) ----------------------------
    def _txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]]) -> dict[str, Any]:
        client = self._etcd()
        result: dict[str, Any] = client.transaction({"compare": compare, "success": success, "failure": []})
        return result

    def _post(self, path: str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """POST ``payload`` to the gateway's ``path``; ``timeout`` (seconds) bounds it when given.

        Without ``timeout`` the client's own applies, which is none unless
        the ``timeout`` option set one: the watch thread passes its own bound,
        so that a connection gone silent cannot hold it for good.
        """
        client = self._etcd()
        if timeout is None:
            return dict(client.post(client.get_url(path), json=payload))
        import requests
        from etcd3gw import exceptions as etcd_errors

        try:
            response = client.session.post(client.get_url(path), json=payload, timeout=timeout)
        except requests.exceptions.Timeout as error:
            raise etcd_errors.ConnectionTimeoutError(str(error)) from error
        except requests.exceptions.ConnectionError as error:
            raise etcd_errors.ConnectionFailedError(str(error)) from error
        if response.status_code != 200:
            raise etcd_errors.Etcd3Exception(response.text, response.reason)
        return dict(response.json())

    def _range(
        self, key: str, prefix: bool = False, timeout: float | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The key-values at ``key`` (or under it) and the store's revision when read."""
        payload: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            payload["range_end"] = _b64(_prefix_end(key))
        result = self._post("/kv/range", payload, timeout)
        kvs = []
        for kv in result.get("kvs", []):
            kvs.append(
                {
                    "key": _unb64(kv["key"]).decode(),
                    "value": _unb64(kv.get("value", "")),
                    "create_revision": int(kv.get("create_revision", 0)),
                    "mod_revision": int(kv.get("mod_revision", 0)),
                    "version": int(kv.get("version", 0)),
                    "lease": int(kv.get("lease", 0)),
                }
            )
        return kvs, int(result["header"]["revision"])

    def get_one(self, key: str) -> bytes | None:
        """The value at ``key``, or ``None`` (TaskFlow's helper)."""
        with self._translated(f"read {key}"):
            kvs, _ = self._range(key)
        return kvs[0]["value"] if kvs else None

    def get_owner_data(self, job: Job) -> dict[str, Any] | None:
        """The claim record of ``job`` (``owner``, ``token``, ``lease_id`` when it expires), or ``None``."""
        raw = self.get_one(self._key_of(job) + self.LOCK_POSTFIX)
        return None if raw is None else dict(json.loads(raw))

    def get_data(self, job: Job) -> bytes | None:
        """The posting of ``job`` as stored, or ``None`` once it is gone."""
        return self.get_one(self._key_of(job) + self.DATA_POSTFIX)

    def get_owner_and_data(self, job: Job) -> tuple[str | None, bytes | None]:
        """``(owner, posting)`` of ``job`` in one read; either is ``None`` when absent."""
        keys = self._job_keys(job)
        lock = keys.get(self.LOCK_POSTFIX)
        data = keys.get(self.DATA_POSTFIX)
        owner = None if lock is None else json.loads(lock["value"]).get("owner")
        return owner, None if data is None else data["value"]

    def set_last_modified(self, job: Job) -> None:
        """Record now as ``job``'s last change (a claim does it in its own transaction)."""
        key = self._key_of(job) + self.LAST_MODIFIED_POSTFIX
        with self._translated(f"write the last change of job {job.uuid}"):
            self._etcd().put(key, _last_modified_now())

    def get_last_modified(self, job: Job) -> bytes | None:
        """The stored ``{"last_modified": ...}`` of ``job``, or ``None``."""
        return self.get_one(self._key_of(job) + self.LAST_MODIFIED_POSTFIX)

    def _last_modified(self, job: Job) -> datetime | None:
        raw = self.get_last_modified(job)
        if raw is None:
            return None
        try:
            return datetime.strptime(json.loads(raw)["last_modified"], _TIME_FORMAT).replace(tzinfo=UTC)
        except (ValueError, KeyError, TypeError):
            LOG.warning("unreadable last_modified of job %s: %r", LogSafe(job.uuid), raw)
            return None

    def _lease_ttl(self, lease_id: int) -> int:
        client = self._etcd()
        with self._translated(f"read lease {lease_id}"):
            result = client.post(client.get_url("/kv/lease/timetolive"), json={"ID": lease_id})
        # The gateway leaves out a TTL of 0 (a lease in its last second).
        return int(result.get("TTL", 0))

    def _key_of(self, job: Job) -> str:
        key = getattr(job, "key", None)
        if isinstance(key, str):
            return key
        sequence = getattr(job, "sequence", None)
        if sequence is None:
            raise exc.NotFound(f"job {job.uuid} is not a job of etcd board {self.name!r}")
        return f"{self._root}/{self.JOB_PREFIX}{sequence}"

    def _job_keys(self, job: Job) -> dict[str, dict[str, Any]]:
        """The keys of ``job`` by suffix (``.data``, ``.lock``, ...), in one read."""
        key = self._key_of(job)
        with self._translated(f"read job {job.uuid}"):
            kvs, _ = self._range(key + ".", prefix=True)
        return {kv["key"][len(key) :]: kv for kv in kvs}

    # -- reading ---------------------------------------------------------
    def _job_from(self, key: str, raw: bytes) -> EtcdJob | None:
        try:
            posting = _posting.loads(raw, f"{self.where} {key}")
        except _posting.MalformedJob as error:
            self._set_aside_malformed(key, raw, error)
            return None
        return EtcdJob(self, posting, key, backend=self._persistence)

    def _set_aside_malformed(self, key: str, raw: bytes, error: _posting.MalformedJob) -> None:
        """Move an unreadable posting to the trash (as the other boards do), with why.

        TaskFlow's etcd board deletes it and fails the listing; here the
        listing goes on and the document is kept for a person to look at.
        """
        LOG.warning("setting aside malformed job document %s: %s", LogSafe(error.location), LogSafe(error))
        doc = json.dumps({"raw": raw.decode("utf-8", "replace"), "reason": str(error), "attempts": []})
        trash_key = f"{self._trash}/{key.rsplit('/', 1)[1]}"
        try:
            self._txn(
                [_exists(key + self.DATA_POSTFIX)],
                [
                    {"request_put": _put(trash_key, doc)},
                    {"request_delete_range": {"key": _b64(key + self.DATA_POSTFIX)}},
                ],
            )
        except Exception:  # not connected any more, or the server failed: the next listing tries again
            LOG.debug("could not set %s aside", LogSafe(key), exc_info=True)

    def _job_state(self, job: BoardJob) -> str:
        keys = self._job_keys(job)
        if self.DATA_POSTFIX not in keys:
            return states.COMPLETE
        return states.CLAIMED if self.LOCK_POSTFIX in keys else states.UNCLAIMED

    def _data_keys(self) -> list[dict[str, Any]]:
        with self._translated("list jobs"):
            kvs, _ = self._range(f"{self._root}/{self.JOB_PREFIX}", prefix=True)
        return [kv for kv in kvs if kv["key"].endswith(self.DATA_POSTFIX)]

    def _count_jobs(self, enough: int | None = None) -> int:
        """How many postings are on the board, read from their keys alone, in pages of :data:`KEY_PAGE`.

        Counting from a full listing would move every posting, details and
        all, for one number. etcd's ``count_only`` counts every key under the
        prefix (claims and histories too) and cannot pick the ``.data`` keys,
        so the keys are read (``keys_only``, no values), all pages at the
        first page's revision so the count is of one moment. ``enough`` stops
        at that many (``wait()`` needs one).
        """
        client = self._etcd()
        prefix = f"{self._root}/{self.JOB_PREFIX}"
        start: bytes = prefix.encode()
        end = _b64(_prefix_end(prefix))
        suffix = self.DATA_POSTFIX.encode()
        count = 0
        revision = 0
        # A job has at most four keys: for ``enough`` jobs the first page is small.
        page = KEY_PAGE if enough is None else min(KEY_PAGE, 4 * enough)
        with self._translated("count jobs"):
            while True:
                payload: dict[str, Any] = {
                    "key": _b64(start),
                    "range_end": end,
                    "keys_only": True,
                    "limit": page,
                }
                if revision:
                    payload["revision"] = revision
                result = client.post(client.get_url("/kv/range"), json=payload)
                revision = revision or int(result["header"]["revision"])
                keys = [_unb64(kv["key"]) for kv in result.get("kvs", [])]
                count += sum(1 for key in keys if key.endswith(suffix))
                if (enough is not None and count >= enough) or not keys or not result.get("more"):
                    return count
                start = keys[-1] + b"\0"
                page = KEY_PAGE

    @property
    def job_count(self) -> int:
        """How many jobs are on the board, counted from their keys (postings are not read)."""
        return self._count_jobs()

    def _has_jobs(self) -> bool:
        return self._count_jobs(enough=1) > 0

    def _fetch(self, ensure_fresh: bool) -> list[EtcdJob]:
        jobs = []
        for kv in self._data_keys():
            job = self._job_from(kv["key"][: -len(self.DATA_POSTFIX)], kv["value"])
            if job is not None:
                jobs.append(job)
        return iter_sorted(jobs)

    def current_claim(self, job: Job) -> Claim | None:
        data = self.get_owner_data(job)
        return None if data is None else _claim_of(data)

    def attempts(self, job: Job) -> list[Attempt]:
        """``job``'s claims, oldest first; an open one whose lock is gone (its lease ran out) as LOST."""
        keys = self._job_keys(job)
        return _seen_attempts(keys, self.LOCK_POSTFIX)

    def trashed(self) -> list[dict[str, Any]]:
        found = []
        with self._translated("list trashed jobs"):
            kvs, _ = self._range(self._trash + "/", prefix=True)
        for kv in kvs:
            doc = dict(json.loads(kv["value"]))
            doc.setdefault("reason", None)
            doc.setdefault("attempts", [])
            found.append(doc)
        return found

    # -- writing ---------------------------------------------------------
    def incr(self, key: str) -> int:
        """Add one to the counter at ``key`` (made at 1 when absent) and return it (TaskFlow's helper)."""
        with self._translated(f"increment {key}"):
            for _ in range(_RETRIES * 5):
                kvs, _ = self._range(key)
                value, guard = _counter(key, kvs)
                put = {"request_put": {"key": _b64(key), "value": _b64(str(value))}}
                if self._txn([guard], [put]).get("succeeded"):
                    return value
        raise exc.JobFailure(f"etcd jobboard {self.name!r}: too much contention incrementing {key}")

    def post(
        self,
        name: str,
        book: LogBook | None = None,
        details: dict[str, Any] | None = None,
        priority: JobPriority | str = JobPriority.NORMAL,
    ) -> EtcdJob:
        posting = _posting.Posting.make(str(uuidlib.uuid4()), name, 0, book, details, priority)
        counter = f"{self._root}/{self.SEQUENCE_KEY}"
        with self._translated(f"post job {name!r}"):
            for _ in range(_RETRIES * 5):
                kvs, _ = self._range(counter)
                sequence, guard = _counter(counter, kvs)
                numbered = _posting.Posting(**{**posting.__dict__, "sequence": sequence})
                key = f"{self._root}/{self.JOB_PREFIX}{sequence}"
                writes = [
                    {"request_put": {"key": _b64(counter), "value": _b64(str(sequence))}},
                    {
                        "request_put": {
                            "key": _b64(key + self.DATA_POSTFIX),
                            "value": _b64(_posting.dumps(numbered)),
                        }
                    },
                ]
                # The counter and the posting in one step: no number is taken without its job.
                if self._txn([guard], writes).get("succeeded"):
                    break
            else:
                raise exc.JobFailure(f"etcd jobboard {self.name!r}: too much contention posting {name!r}")
        self._waiter.wake()
        return EtcdJob(self, numbered, key, backend=self._persistence, book=book)

    def _grant(self, seconds: float) -> int:
        client = self._etcd()
        result = client.post(client.get_url("/lease/grant"), json={"TTL": math.ceil(seconds), "ID": 0})
        return int(result["ID"])

    def _keep_alive(self, lease_id: int) -> bool:
        """Restart ``lease_id``'s TTL; ``False`` when it ran out already (its claim is gone)."""
        client = self._etcd()
        result = client.post(client.get_url("/lease/keepalive"), json={"ID": lease_id})
        return int(result.get("result", {}).get("TTL", 0)) > 0

    def _revoke(self, lease_id: int) -> None:
        """Drop a lease nothing needs any more (best effort: it runs out by itself anyway)."""
        client = self._client
        if client is None:
            return
        try:
            client.post(client.get_url("/kv/lease/revoke"), json={"ID": lease_id})
        except Exception:
            LOG.debug("could not revoke etcd lease %s", lease_id, exc_info=True)

    @check_who
    def claim(self, job: Job, who: str, expiry: float | None = None) -> Claim:
        if isinstance(expiry, int | float) and expiry == 0:
            # TaskFlow's etcd board reads a zero expiry as none given (its ``ttl``
            # applies), where its Redis board refuses it: code written for the
            # etcd board may pass 0 for "the default".
            expiry = None
        check_claim_expiry(self, expiry, f"job {job.uuid}")
        seconds = expiry if expiry is not None else self._default_expiry
        key = self._key_of(job)
        self._etcd()
        with self._translated(f"claim job {job.uuid}"):
            for _ in range(_RETRIES):
                keys = self._job_keys(job)
                if self.DATA_POSTFIX not in keys:
                    raise exc.NotFound(f"job {job.uuid} is not on board {self.name!r} (cannot claim it)")
                lock = keys.get(self.LOCK_POSTFIX)
                if lock is not None:
                    owner = json.loads(lock["value"]).get("owner")
                    raise exc.UnclaimableJob(f"Job {job.uuid} already claimed by '{owner}'")
                history = keys.get(_ATTEMPTS)
                attempts = _seen_attempts(keys, self.LOCK_POSTFIX)
                version = 0 if history is None else history["version"]
                token = version + 1
                claim = Claim(who, token)
                attempts.append(Attempt(who, token, time.time()))
                lease_id = None if seconds is None else self._grant(seconds)
                record: dict[str, Any] = {"owner": who, "token": token}
                lock_put: dict[str, Any] = {"key": _b64(key + self.LOCK_POSTFIX)}
                if lease_id is not None and seconds is not None:
                    record["lease_id"] = lease_id
                    record["ttl"] = math.ceil(seconds)
                    lock_put["lease"] = lease_id
                lock_put["value"] = _b64(json.dumps(record))
                compare = [
                    _exists(key + self.DATA_POSTFIX),
                    _absent(key + self.LOCK_POSTFIX),
                    _unchanged(key + _ATTEMPTS, history),
                ]
                writes = [
                    {"request_put": lock_put},
                    {"request_put": _put(key + _ATTEMPTS, json.dumps([a.to_dict() for a in attempts]))},
                    {"request_put": _put(key + self.LAST_MODIFIED_POSTFIX, _last_modified_now())},
                ]
                if self._claim_txn(job, who, compare, writes, lock_put, lease_id):
                    return claim
        raise exc.UnclaimableJob(f"job {job.uuid}: too much contention to claim it on board {self.name!r}")

    def _claim_txn(
        self,
        job: Job,
        who: str,
        compare: list[dict[str, Any]],
        writes: list[dict[str, Any]],
        lock_put: dict[str, Any],
        lease_id: int | None,
    ) -> bool:
        """Run a claim's transaction; when it fails, leave no claim for a caller told it failed.

        Unless it succeeded, the lease granted for it is revoked: refused by
        etcd, the claim would leave that lease holding nothing until its TTL
        ran out; failed on the way back (etcd acted, its reply was lost),
        revoking the lease also deletes the lock. Without a lease, that lock
        is deleted if it still holds what this claim wrote, else the job
        would stay claimed for ever by a conductor that moved on.
        """
        try:
            done = bool(self._txn(compare, writes).get("succeeded"))
        except Exception:
            if lease_id is not None:
                self._revoke(lease_id)
            else:
                self._undo_lock(job, who, lock_put)
            raise
        if not done and lease_id is not None:
            self._revoke(lease_id)
        return done

    def _undo_lock(self, job: Job, who: str, lock_put: dict[str, Any]) -> None:
        """Delete the lock ``lock_put`` wrote, if it is still the one there (best effort)."""
        mine = {"key": lock_put["key"], "target": "VALUE", "result": "EQUAL", "value": lock_put["value"]}
        try:
            self._txn([mine], [{"request_delete_range": {"key": lock_put["key"]}}])
        except Exception as error:
            LOG.warning(
                "job %s on etcd jobboard %r at %s may stay claimed by %r: the claim failed and "
                "could not be undone (%s)",
                LogSafe(job.uuid),
                self.name,
                self.where,
                who,
                _describe(error),
            )

    def renew(self, job: Job, claim: Claim, expiry: float) -> bool:
        """Make ``claim`` expire ``expiry`` seconds from now (whole seconds, rounded up).

        ``False`` if it is no longer ``job``'s current claim. The same TTL
        as the claim's lease (a conductor extending by its claim expiry after
        each step) is one keep-alive of the lease, as TaskFlow's
        ``extend_expiry``; another gets a new lease (etcd cannot change a
        lease's TTL). An ``expiry`` of no whole millisecond (0, negative)
        ends the claim now.

        Raises:
            ValueError: ``expiry`` is NaN or infinite (nothing is changed).
        """
        ms = expiry_extension_ms(self, expiry, f"job {job.uuid}")
        key = self._key_of(job) + self.LOCK_POSTFIX
        with self._translated(f"extend the claim on job {job.uuid}"):
            kvs, _ = self._range(key)
            if not kvs:
                return False
            lock = kvs[0]
            record = dict(json.loads(lock["value"]))
            if _claim_of(record) != claim:
                return False
            guard = {
                "key": _b64(key),
                "target": "MOD",
                "result": "EQUAL",
                "mod_revision": lock["mod_revision"],
            }
            old_lease = record.get("lease_id")
            seconds = math.ceil(ms / 1000.0)
            if ms and old_lease is not None and record.get("ttl") == seconds:
                # The lease already has this TTL: a keep-alive restarts it, in one request.
                return self._keep_alive(int(old_lease))
            if ms == 0:
                done = self._txn([guard], [{"request_delete_range": {"key": _b64(key)}}]).get("succeeded")
            else:
                lease_id = self._grant(seconds)
                record.update(lease_id=lease_id, ttl=seconds)
                put = {"key": _b64(key), "value": _b64(json.dumps(record)), "lease": lease_id}
                done = self._txn([guard], [{"request_put": put}]).get("succeeded")
                if not done:
                    self._revoke(lease_id)
            if done and old_lease is not None:
                self._revoke(int(old_lease))
            return bool(done)

    def _finish(
        self,
        job: Job,
        who: str,
        action: str,
        claim: Claim | None,
        reason: str | None = None,
        failed: bool = False,
    ) -> None:
        key = self._key_of(job)
        with self._translated(f"{action} job {job.uuid}"):
            for _ in range(_RETRIES):
                keys = self._job_keys(job)
                data = keys.get(self.DATA_POSTFIX)
                if data is None:
                    raise exc.NotFound(f"job {job.uuid} is not on board {self.name!r} (cannot {action} it)")
                lock = keys.get(self.LOCK_POSTFIX)
                current = None if lock is None else _claim_of(json.loads(lock["value"]))
                if claim is not None and current != claim:
                    raise lost_claim(self, job, claim, current)
                if lock is None or current is None:
                    # NotFound, as TaskFlow raises for a job whose owner it cannot find.
                    raise exc.NotFound(
                        f"Cannot {action} a job {job.uuid} which is not owned by {who} (it is not claimed)"
                    )
                if current.owner != who:
                    raise exc.JobFailure(
                        f"Cannot {action} a job {job.uuid} which is not owned by {who} "
                        f"(it is claimed by {current.owner!r})"
                    )
                attempts = _seen_attempts(keys, self.LOCK_POSTFIX)
                end = AttemptEnd.FAILED if failed else AttemptEnd.ABANDONED
                if attempts and attempts[-1].end is AttemptEnd.OPEN:
                    attempts[-1] = _ended(attempts[-1], end, reason)
                compare = [
                    {
                        "key": _b64(key + self.LOCK_POSTFIX),
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": lock["mod_revision"],
                    },
                    _exists(key + self.DATA_POSTFIX),
                ]
                everything = {
                    "request_delete_range": {
                        "key": _b64(key + "."),
                        "range_end": _b64(_prefix_end(key + ".")),
                    }
                }
                writes: list[dict[str, Any]]
                if action == "abandon":
                    writes = [
                        {"request_delete_range": {"key": _b64(key + self.LOCK_POSTFIX)}},
                        {"request_put": _put(key + _ATTEMPTS, json.dumps([a.to_dict() for a in attempts]))},
                    ]
                elif action == "trash":
                    doc = {
                        **json.loads(data["value"]),
                        "reason": reason,
                        "attempts": [a.to_dict() for a in attempts],
                    }
                    trash_key = f"{self._trash}/{key.rsplit('/', 1)[1]}"
                    writes = [{"request_put": _put(trash_key, json.dumps(doc))}, everything]
                else:
                    writes = [everything]
                if self._txn(compare, writes).get("succeeded"):
                    lease_id = json.loads(lock["value"]).get("lease_id")
                    if lease_id is not None:
                        self._revoke(int(lease_id))
                    if action == "abandon":
                        self._waiter.wake()
                    return
        raise exc.JobFailure(f"job {job.uuid}: too much contention to {action} it on board {self.name!r}")

    @check_who
    def consume(self, job: Job, who: str, claim: Claim | None = None) -> None:
        self._finish(job, who, "consume", claim)

    @check_who
    def abandon(
        self,
        job: Job,
        who: str,
        reason: str | None = None,
        failed: bool = False,
        claim: Claim | None = None,
    ) -> None:
        self._finish(job, who, "abandon", claim, reason=reason, failed=failed)

    @check_who
    def trash(self, job: Job, who: str, reason: str | None = None, claim: Claim | None = None) -> None:
        self._finish(job, who, "trash", claim, reason=reason)

    # -- the watch -------------------------------------------------------
    def _want_watch(self) -> None:
        self._watch_wanted = True
        if self._opened:
            self._start_watch()

    def _start_watch(self) -> None:
        """Start the thread that lists the jobs, then follows every change after that listing."""
        with self._watch_lock:
            if self._watch_thread is not None or not self._opened:
                return
            # A board opened again announces its jobs again, as on the ZooKeeper board.
            self._known = {}
            stop = threading.Event()
            self._watch_stop = stop
            self._watch_thread = threading.Thread(
                target=self._watch_loop, args=(stop,), name=f"etcd-jobboard-{self.name}", daemon=True
            )
            self._watch_thread.start()

    def _stop_watch(self) -> None:
        with self._watch_lock:
            stop, thread, stream = self._watch_stop, self._watch_thread, self._watch_stream
            self._watch_stop = self._watch_thread = self._watch_stream = None
            if stop is not None:
                stop.set()
        if stream is not None:
            _shut(stream)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _watch_loop(self, stop: threading.Event) -> None:
        """Catch up with the board, follow its changes until the stream ends; again until stopped.

        A stream ends when etcd restarts, the connection drops or the server
        cancels the watch; whatever changed while none was open is found by
        the listing that starts the next one. A stream can also die without
        ending (a network partition, a proxy that stops forwarding: the
        connection stays open and nothing comes), which no error reveals: so
        a stream silent for ``watch_timeout`` seconds is given up, etcd is
        asked (one small read) whether it answers and which of the board's
        keys changed meanwhile, and the watch is opened again from the last
        revision it delivered, so etcd itself replays what it missed; if etcd
        does not answer either, the next try lists the jobs as after an
        outage. Tries are spaced from :data:`WATCH_RETRY_FIRST` seconds,
        doubling up to :data:`WATCH_RETRY_MAX` while etcd does not accept the
        watch (so a server that ends every stream at once is not hammered
        either).
        """
        delay = WATCH_RETRY_FIRST
        failures = 0
        resume: int | None = None  # the revision to watch from without listing, after a silence
        while not stop.is_set():
            error: Exception | None = None
            changed: int | None = None
            try:
                start = self._catch_up() if resume is None else resume
                resume = None
                accepted = self._follow(stop, start)
            except _WatchSilent as silent:
                accepted = silent.accepted
                try:
                    changed = self._changed_since(silent.revision)
                    resume = silent.revision
                except Exception as failed:
                    error = failed
            except Exception as failed:
                accepted, error = False, failed
            if stop.is_set():
                break
            if accepted:
                delay, failures = WATCH_RETRY_FIRST, 0
            if changed is not None:
                self._log_silence(changed, resume, delay)
            else:
                failures += 1
                log = LOG.warning if failures == 1 else LOG.debug
                log(
                    "the etcd watch of jobboard %r at %s stopped (%s); opening it again in %.2f s",
                    self.name,
                    self.where,
                    "its stream ended" if error is None else _describe(error),
                    delay,
                    # A traceback only for the unexpected: a JobFailure says all there is.
                    exc_info=error if failures == 1 and not isinstance(error, exc.JobFailure) else None,
                )
            stop.wait(delay)
            delay = min(delay * 2, WATCH_RETRY_MAX)

    def _log_silence(self, changed: int, resume: int | None, delay: float) -> None:
        """Say why a silent watch is opened again: a WARNING when it missed changes, else DEBUG.

        A board nobody changes has a quiet stream too; its reopening every
        ``watch_timeout`` is routine. Keys written meanwhile that the stream
        never delivered prove it dead.
        """
        if changed:
            LOG.warning(
                "the etcd watch of jobboard %r at %s heard nothing for %s s while %d of its keys changed "
                "after revision %s: its stream seems dead; opening it again from there in %.2f s",
                self.name,
                self.where,
                self._watch_timeout,
                changed,
                resume,
                delay,
            )
        else:
            LOG.debug(
                "the etcd watch of jobboard %r at %s heard nothing for %s s (etcd answers, none of its keys "
                "changed after revision %s); opening it again from there in %.2f s",
                self.name,
                self.where,
                self._watch_timeout,
                resume,
                delay,
            )

    def _changed_since(self, revision: int) -> int:
        """How many job keys were written after ``revision``: a small read proving etcd answers.

        Only the keys (``keys_only``) of what changed, within the watch's
        deadline. A deletion leaves no key to count; the watch opened again
        from ``revision`` reports it all the same.

        Raises:
            JobFailure: etcd does not answer in time.
        """
        prefix = f"{self._root}/{self.JOB_PREFIX}"
        payload = {
            "key": _b64(prefix),
            "range_end": _b64(_prefix_end(prefix)),
            "keys_only": True,
            "min_mod_revision": revision + 1,
        }
        with self._translated(f"check on its watch, silent for {self._watch_timeout} s"):
            result = self._post("/kv/range", payload, self._watch_bound())
        return len(result.get("kvs", []))

    def _watch_bound(self) -> float:
        """How long any request of the watch thread may take (seconds): never unbounded.

        The client's ``timeout``, or ``watch_timeout`` when that is longer or the client has none.
        """
        client_timeout = getattr(self._client, "timeout", None) or 0.0
        return max(float(client_timeout), self._watch_timeout)

    def _catch_up(self) -> int:
        """List the jobs, announce those posted or gone since the last look; the listing's revision."""
        prefix = f"{self._root}/{self.JOB_PREFIX}"
        with self._translated("list jobs to watch them"):
            kvs, revision = self._range(prefix, prefix=True, timeout=self._watch_bound())
        listed = {
            kv["key"][: -len(self.DATA_POSTFIX)]: kv["value"]
            for kv in kvs
            if kv["key"].endswith(self.DATA_POSTFIX)
        }
        for key in [key for key in self._known if key not in listed]:
            self._notify(REMOVAL, self._known.pop(key))
        for key, raw in listed.items():
            if key not in self._known:
                job = self._job_from(key, raw)
                if job is not None:
                    self._known[key] = job
                    self._notify(POSTED, job)
        # A claim may have been given back (or a job posted) while nobody watched.
        self._waiter.wake()
        return revision

    def _follow(self, stop: threading.Event, revision: int) -> bool:
        """Hand every change after ``revision`` to :meth:`_on_event` until the stream ends or ``stop``.

        ``True`` once etcd had accepted the watch (the next try starts
        from the shortest delay again). ``progress_notify`` is asked for: a
        server whose progress interval (``--experimental-watch-progress-notify-interval``)
        is shorter than ``watch_timeout`` keeps a quiet stream from being
        taken for a dead one.

        Raises:
            JobFailure: the stream could not be opened, or etcd refused or cancelled the watch.
            _WatchSilent: nothing came for ``watch_timeout`` seconds.
        """
        client = self._etcd()
        prefix = f"{self._root}/{self.JOB_PREFIX}"
        request = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(_prefix_end(prefix)),
                "start_revision": revision + 1,
                "progress_notify": True,
            }
        }
        where = f"etcd jobboard {self.name!r} at {self.where} (watch from revision {revision + 1})"
        try:
            stream = client.session.post(
                client.get_url("/watch"),
                json=request,
                stream=True,
                # Connecting is bounded, and so is each silence of the stream.
                timeout=(self._watch_bound(), self._watch_timeout),
            )
        except OSError as error:  # requests' errors are OSErrors
            raise exc.quoting_cause(exc.JobFailure(f"{where}: could not watch: {error}")) from error
        with self._watch_lock:
            if stop.is_set():
                stream.close()
                return False
            self._watch_stream = stream
        accepted = False
        seen = revision  # every change up to this revision has been handed on
        try:
            if stream.status_code != 200:
                raise exc.JobFailure(
                    f"{where}: could not watch: HTTP {stream.status_code} {stream.text.strip()}"
                )
            for line in stream.iter_lines(chunk_size=None):
                if not line.strip():
                    continue
                message = json.loads(line)
                result = message.get("result")
                if result is None:
                    raise exc.JobFailure(f"{where}: watch failed: {message}")
                if result.get("canceled"):
                    why = result.get("cancel_reason") or (
                        f"revision {revision + 1} is compacted (oldest kept {result.get('compact_revision')})"
                        if result.get("compact_revision")
                        else "no reason given"
                    )
                    raise exc.JobFailure(f"{where}: etcd cancelled the watch: {why}")
                created = bool(result.get("created"))
                accepted = accepted or created
                events = result.get("events", ())
                if not events and not created:
                    # A progress notification: nothing under the prefix changed up to its revision.
                    seen = max(seen, int(result.get("header", {}).get("revision", 0)))
                for event in events:
                    kv = event.get("kv") or {}
                    seen = max(seen, int(kv.get("mod_revision", 0)))
                    self._on_event(
                        {
                            "type": event.get("type", "PUT"),
                            "kv": {"key": _unb64(kv.get("key", "")), "value": _unb64(kv.get("value", ""))},
                        }
                    )
        except Exception as error:
            if stop.is_set():
                return accepted  # closed under it: the error is the shut stream
            if _read_timed_out(error):
                raise _WatchSilent(seen, accepted) from error
            raise
        finally:
            with self._watch_lock:
                if self._watch_stream is stream:
                    self._watch_stream = None
            stream.close()
        return accepted

    def _on_event(self, event: dict[str, Any]) -> None:
        kv = event.get("kv") or {}
        raw_key = kv.get("key", b"")
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        if not key.endswith(self.DATA_POSTFIX):
            if key.endswith(self.LOCK_POSTFIX) and event.get("type") == "DELETE":
                self._waiter.wake()  # a job given back (or its lease ran out) is claimable
            return
        key = key[: -len(self.DATA_POSTFIX)]
        if event.get("type") == "DELETE":
            gone = self._known.pop(key, None)
            if gone is not None:
                self._notify(REMOVAL, gone)
            return
        value = kv.get("value", b"")
        job = self._job_from(key, value if isinstance(value, bytes) else str(value).encode())
        if job is None or key in self._known:
            return
        self._known[key] = job
        self._waiter.wake()
        self._notify(POSTED, job)


class _WatchSilent(Exception):
    """A watch stream said nothing for ``watch_timeout`` seconds: dead connection, or a quiet board.

    ``revision`` is the last one whose changes it had delivered, where a new
    watch resumes; ``accepted`` whether etcd had accepted it at all.
    """

    def __init__(self, revision: int, accepted: bool) -> None:
        super().__init__(f"no word from the watch after revision {revision}")
        self.revision = revision
        self.accepted = accepted


def _read_timed_out(error: BaseException) -> bool:
    """Whether ``error`` (from reading a ``requests`` stream) is a read timeout, under any wrapping.

    ``requests`` re-raises urllib3's ``ReadTimeoutError`` met while streaming
    as a ``ConnectionError`` holding it.
    """
    from urllib3.exceptions import ReadTimeoutError

    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (ReadTimeoutError, TimeoutError)):
            return True
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def _watch_timeout(board: str, value: Any) -> float:
    """The ``watch_timeout`` option as seconds: a positive, finite number.

    Raises:
        ValueError: it is not one (naming the board).
    """
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(
            f"etcd jobboard {board!r}: option 'watch_timeout' must be a positive number of seconds, "
            f"not {value!r}"
        )
    return seconds


def _shut(stream: Any) -> None:
    """End a streaming ``requests`` response now, waking the thread blocked reading it."""
    connection = getattr(getattr(stream, "raw", None), "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed by the other side
            sock.shutdown(socket.SHUT_RDWR)
    stream.close()


def _describe(error: BaseException) -> str:
    """An error in words, with the text ``etcd3gw`` keeps out of its exceptions' ``str()``."""
    detail = getattr(error, "detail_text", None)
    return f"{type(error).__name__}: {detail}" if detail else repr(error)


def _last_modified_now() -> str:
    """The ``.last_modified`` document for now, in TaskFlow's form (naive UTC ``strtime``)."""
    return json.dumps({"last_modified": datetime.now(UTC).strftime(_TIME_FORMAT)})


def _put(key: str, value: str) -> dict[str, Any]:
    return {"key": _b64(key), "value": _b64(value)}


def _exists(key: str) -> dict[str, Any]:
    return {"key": _b64(key), "target": "CREATE", "result": "GREATER", "create_revision": 0}


def _absent(key: str) -> dict[str, Any]:
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": 0}


def _unchanged(key: str, kv: dict[str, Any] | None) -> dict[str, Any]:
    """Compare: ``key`` is as read (``kv``; absent when ``None``)."""
    if kv is None:
        return _absent(key)
    return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": kv["mod_revision"]}


def _counter(key: str, kvs: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """The counter's next value and the compare that holds while nobody else took it."""
    if not kvs:
        return 1, _absent(key)
    try:
        current = int(kvs[0]["value"])
    except ValueError as err:
        raise exc.JobFailure(f"the counter at etcd key {key} is not a number: {kvs[0]['value']!r}") from err
    return current + 1, _unchanged(key, kvs[0])


def _claim_of(record: dict[str, Any]) -> Claim:
    # A claim written by TaskFlow's etcd board has no token: 0, below any flowkit claim's.
    return Claim(str(record.get("owner")), int(record.get("token", 0)))


def _ended(attempt: Attempt, end: AttemptEnd, reason: str | None) -> Attempt:
    return Attempt(attempt.owner, attempt.token, attempt.claimed_at, end, reason)


def _seen_attempts(keys: dict[str, dict[str, Any]], lock_postfix: str) -> list[Attempt]:
    """The attempts stored with a job; the last one LOST when open but its lock is gone or another's."""
    history = keys.get(_ATTEMPTS)
    if history is None:
        return []
    attempts = [Attempt.from_dict(item) for item in json.loads(history["value"])]
    lock = keys.get(lock_postfix)
    token = None if lock is None else _claim_of(json.loads(lock["value"])).token
    if attempts and attempts[-1].end is AttemptEnd.OPEN and attempts[-1].token != token:
        attempts[-1] = _ended(attempts[-1], AttemptEnd.LOST, "claim expired")
    return attempts
