"""A jobboard in Redis: claims are keys with an expiry that their holder keeps alive.

Layout under the board's ``namespace`` (default ``flowkit``)::

    {ns}:listings          hash   job uuid -> posting JSON
    {ns}:sequence          string posting order counter
    {ns}:tokens            string claim (fencing) token counter
    {ns}:owner:{uuid}      string {"owner": ..., "token": ..., "request": ...}, expires unless
                           renewed ("request" marks the claim call that made it)
    {ns}:attempts:{uuid}   list   one JSON attempt per claim (see ``Attempt``)
    {ns}:trash             hash   job uuid -> {"posting", "reason", "attempts"}
    {ns}:released:{id}     string a release call made (expires after two minutes)
    {ns}:entity:{name}     string JSON of a registered conductor, expires unless renewed

With ``namespace: None`` the keys have no ``{ns}:`` prefix, as TaskFlow's do.

Every state change is one Lua script, so it is atomic on the server: a claim
checks there is no owner, takes the next token and records the attempt in
one step. A holder's board renews its claims every third of their expiry on
a background thread; a holder that dies (or stops) loses its claim when the
key expires, and the next claim records the previous attempt as lost.

Options (TaskFlow's names): ``host``, ``port``, ``password``, ``username``,
``db``, ``namespace``, ``unix_socket_path``, ``encoding``, ``encoding_errors``,
``socket_timeout``, ``socket_connect_timeout``, ``retry_on_timeout``,
``health_check_interval``, ``ssl``..., ``sentinel``, ``sentinel_fallbacks``,
``sentinel_kwargs``; or ``url`` (``redis://:pw@host:6379/0``). ``socket_timeout``
defaults to 10 s and ``socket_connect_timeout`` to 5 s, whatever redis-py's
own defaults (for ever before redis-py 8, 5 s since): a Redis that stops
answering without closing the connection (a frozen server) fails the board's
call with ``JobFailure`` naming the board, it does not hang. flowkit's own:
``claim_expiry`` (seconds, default 30, ``none`` for claims that never expire
unless asked, as TaskFlow's); ``renew_given_expiry`` (default false): as in
TaskFlow, a claim made with ``claim(..., expiry=N)`` is not renewed and lapses
``N`` seconds after it was made unless its holder calls ``extend_expiry()``;
true renews those too, so they lapse only once their holder is gone (claims
without an ``expiry=``, and ``claim_first``'s, the conductors', are renewed
either way). Options may be text, as a configuration file
gives them (``"false"`` is false); one that does not convert is a
``ValueError`` naming it, raised when the board is made.

Board notifications (:data:`~flowkit.jobs.base.POSTED`, ``REMOVAL``) are sent
for changes made through this board object only.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flowkit import exceptions as exc
from flowkit import states
from flowkit._utils.masking import MASK
from flowkit._utils.redis_urls import bad_database
from flowkit._utils.switches import read_switch
from flowkit._utils.text import LogSafe
from flowkit.jobs import _posting
from flowkit.jobs._board import ListingJobBoard, parse_entity
from flowkit.jobs._job import BoardJob
from flowkit.jobs.backends._redis_board_url import (
    NAMESPACE,
    NO_NAMESPACE,
    namespace_param,
    url_namespace,
    with_database,
    with_namespace,
)
from flowkit.jobs.base import (
    POSTED,
    REMOVAL,
    Attempt,
    Claim,
    Claimed,
    Job,
    JobBoardIterator,
    JobPriority,
    check_applicant,
    check_claim_expiry,
    check_who,
    expiry_extension_ms,
    iter_sorted,
    lost_claim,
    wait_for_jobs,
)
from flowkit.persistence.backends._urls import mask_url

if TYPE_CHECKING:
    from flowkit.persistence.base import Backend
    from flowkit.persistence.models import LogBook

__all__ = ["RedisJob", "RedisJobBoard", "UnknownExpire"]

LOG = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "flowkit"
DEFAULT_CLAIM_EXPIRY = 30.0
#: The server (or sentinel) when no host is given: redis-py's own default, so
#: that the board's messages name the server it connects to.
DEFAULT_HOST = "localhost"

# Claims one job: {1, token}, or {0, 'unknown'} / {0, 'claimed', current owner JSON}.
# ``request`` is unique to one call of the board's claim: a claim already made by it (the
# script sent again by redis-py after its reply was lost) is that claim, not someone else's.
_CLAIM_ONE = """
local function claim_one(listings, owner, attempts, tokens, uuid, who, ms, now, request)
  if redis.call('HEXISTS', listings, uuid) == 0 then return {0, 'unknown'} end
  local current = redis.call('GET', owner)
  if current then
    local holder = cjson.decode(current)
    if holder['request'] == request then return {1, holder['token']} end
    return {0, 'claimed', current}
  end
  local token = redis.call('INCR', tokens)
  local value = cjson.encode({owner = who, token = token, request = request})
  if tonumber(ms) > 0 then
    redis.call('SET', owner, value, 'PX', ms)
  else
    redis.call('SET', owner, value)
  end
  local last = redis.call('LINDEX', attempts, -1)
  if last then
    local record = cjson.decode(last)
    if record['end'] == 'open' then
      record['end'] = 'lost'
      record['reason'] = 'claim lost (expired or holder gone)'
      redis.call('LSET', attempts, -1, cjson.encode(record))
    end
  end
  local attempt = {owner = who, token = token, claimed_at = tonumber(now), ['end'] = 'open'}
  redis.call('RPUSH', attempts, cjson.encode(attempt))
  return {1, token}
end
"""

# KEYS: listings, owner, attempts, tokens. ARGV: uuid, who, expiry ms (0: none), now, request.
# A job already claimed by ``who`` (by another request) is refused all the same, but its claim
# gets the expiry asked for (none asked: left as it is) and its open attempt a ``reclaimed_at``,
# as TaskFlow's claim of one's own job refreshes its expiry and last-modified time.
_CLAIM = (
    _CLAIM_ONE
    + """
local current = redis.call('GET', KEYS[2])
local held = current and cjson.decode(current)
if held and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 and held['owner'] == ARGV[2]
    and held['request'] ~= ARGV[5] then
  if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
  local last = redis.call('LINDEX', KEYS[3], -1)
  if last then
    local record = cjson.decode(last)
    if record['end'] == 'open' then
      record['reclaimed_at'] = tonumber(ARGV[4])
      redis.call('LSET', KEYS[3], -1, cjson.encode(record))
    end
  end
end
return claim_one(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""
)

# The first claimable of several jobs, in order: {1, index (1-based), token}, or {0}.
# KEYS: listings, tokens, then owner and attempts of each job. ARGV: who, expiry ms, now,
# request, then the uuid of each job.
_CLAIM_FIRST = (
    _CLAIM_ONE
    + """
for i = 5, #ARGV do
  local j = i - 4
  local owner, attempts = KEYS[1 + 2 * j], KEYS[2 + 2 * j]
  local got = claim_one(KEYS[1], owner, attempts, KEYS[2], ARGV[i], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
  if got[1] == 1 then return {1, j, got[2]} end
end
return {0}
"""
)

# KEYS: owner. ARGV: the token held, expiry ms.
_RENEW = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['token'] == tonumber(ARGV[1]) then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: owner. ARGV: expiry ms, the token whose claim to extend ('': whichever is current).
# {1, owner JSON} when extended; {0} when unclaimed, {0, owner JSON} when another claim holds it.
# One script, so the claim checked is the claim extended: one that lapsed and was taken by
# another conductor meanwhile is never given the old holder's expiry.
_EXTEND = """
local current = redis.call('GET', KEYS[1])
if not current then return {0} end
if ARGV[2] ~= '' and cjson.decode(current)['token'] ~= tonumber(ARGV[2]) then return {0, current} end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {1, current}
"""

# KEYS: listings, owner, attempts, trash, this call's "released" mark. ARGV: uuid, who, action,
# reason, end, token ('': any), now, how long the mark lasts (ms). A call whose mark is there
# already released the job: the script was sent again after its reply was lost.
_RELEASE = """
if redis.call('EXISTS', KEYS[5]) == 1 then return {1} end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {0, 'unknown'} end
local current = redis.call('GET', KEYS[2])
if not current then return {0, 'unclaimed'} end
local holder = cjson.decode(current)
if holder['owner'] ~= ARGV[2] then return {0, 'other', current} end
if ARGV[6] ~= '' and holder['token'] ~= tonumber(ARGV[6]) then return {0, 'other', current} end
redis.call('DEL', KEYS[2])
local last = redis.call('LINDEX', KEYS[3], -1)
if last and ARGV[3] ~= 'consume' then
  local record = cjson.decode(last)
  if record['end'] == 'open' then
    record['end'] = ARGV[5]
    record['ended_at'] = tonumber(ARGV[7])
    if ARGV[4] ~= '' then record['reason'] = ARGV[4] end
    redis.call('LSET', KEYS[3], -1, cjson.encode(record))
  end
end
if ARGV[3] == 'trash' then
  local posting = redis.call('HGET', KEYS[1], ARGV[1])
  local attempts = redis.call('LRANGE', KEYS[3], 0, -1)
  local reason = cjson.encode(ARGV[4])
  local doc = '{"posting":' .. posting .. ',"reason":' .. reason
  doc = doc .. ',"attempts":[' .. table.concat(attempts, ',') .. ']}'
  redis.call('HSET', KEYS[4], ARGV[1], doc)
end
if ARGV[3] ~= 'abandon' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[3])
end
redis.call('SET', KEYS[5], '1', 'PX', ARGV[8])
return {1}
"""


def _boolean(value: Any) -> bool:
    """A yes/no option, which a configuration file or URL gives as text ("false" is false)."""
    switch = read_switch(value)
    if switch is None:
        raise ValueError("expected true or false")
    return switch


def _as_given(value: Any) -> Any:
    """An option passed to redis-py as given (``ssl_cert_reqs``: a name or an ``ssl`` constant)."""
    return value


# Options handed to redis-py, converted (TaskFlow's list, plus ``socket_keepalive`` and
# ``ssl_check_hostname``).
_CLIENT_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "host": str,
    "port": int,
    "username": str,
    "password": str,
    "db": int,
    "encoding": str,
    "encoding_errors": str,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "socket_keepalive": _boolean,
    "retry_on_timeout": _boolean,
    "health_check_interval": int,
    "unix_socket_path": str,
    "ssl": _boolean,
    "ssl_keyfile": str,
    "ssl_certfile": str,
    "ssl_cert_reqs": _as_given,
    "ssl_ca_certs": str,
    "ssl_check_hostname": _boolean,
}

#: What each converter expects, for the error naming an option that does not convert.
_EXPECTED = {int: "a whole number", float: "a number", _boolean: "true or false"}


class UnknownExpire(enum.IntEnum):
    """What :meth:`RedisJob.expires_in` answers when there is no time left to give (TaskFlow's values)."""

    #: The job is claimed, and its claim does not expire.
    DOES_NOT_EXPIRE = -1
    #: The job is not claimed (or no longer on the board).
    KEY_NOT_FOUND = -2


class RedisJob(BoardJob):
    """A job on a Redis board, with TaskFlow's ``expires_in``/``extend_expiry`` for its claim.

    TaskFlow's ``key`` and ``owner_key`` name this board's keys; its
    ``last_modified_key`` is left out, since a job's last change is read
    from its attempts here, not kept in a key of its own.
    """

    _board: RedisJobBoard

    #: Token of the last claim made through this job object (by any Redis board): the
    #: claim :meth:`extend_expiry` extends; ``None`` while none was, then any current claim.
    claimed_token: int | None = None

    @property
    def key(self) -> bytes:
        """The job's field in the board's :attr:`~RedisJobBoard.listings_key` and ``trash_key`` hashes."""
        return self.uuid.encode()

    @property
    def owner_key(self) -> bytes:
        """Key of the job's claim (JSON owner and fencing token), absent while unclaimed."""
        return self._board.join("owner", self.uuid)

    def expires_in(self) -> float | UnknownExpire:
        """Seconds until the job's current claim expires, or an :class:`UnknownExpire`.

        Raises:
            JobFailure: the board cannot be read.
        """
        return self._board._claim_ttl(self)

    def extend_expiry(self, expiry: float) -> bool:
        """Make the job's current claim expire ``expiry`` seconds from now; ``False`` when unclaimed.

        A claim made without an expiry gets one. A claim this board keeps
        alive is renewed with the new expiry from then on. As in TaskFlow, an
        ``expiry`` that comes to no whole millisecond (0, negative) ends the
        claim now (answering ``True``); this board then stops renewing it and
        vouching for it (:meth:`RedisJobBoard.holds_locally`).

        A job object that was claimed (through :meth:`RedisJobBoard.claim` or
        ``claim_first``) extends only that claim: once it lapsed, or was given
        back, and another conductor claimed the job, this answers ``False``
        and leaves the new holder's expiry alone, rather than shortening or
        stretching a claim its caller does not hold. A job object never
        claimed extends whichever claim is current, as TaskFlow's does. The
        check and the change are one step on the server.

        Raises:
            ValueError: ``expiry`` is NaN or infinite (TaskFlow fails to convert
                those too); the job and the value are named, nothing is sent.
            TypeError: ``expiry`` is not a number.
            JobFailure: the board cannot be written.
        """
        return self._board._set_claim_ttl(self, expiry)

    @property
    def last_modified(self) -> datetime:
        """When the job was last claimed or given back (abandoned, trashed), else posted (UTC).

        Raises:
            JobFailure: the board cannot be read.
        """
        return self._board._last_modified(self)


class _KeptClaim:
    """A claim this board keeps alive: which claim, its expiry, and the pace of its renewals.

    One record per job instead of three dicts that had to be filled and emptied
    together. Changed only with the board's ``_kept_lock`` held.
    """

    __slots__ = ("due", "ms", "renewed_at", "token")

    token: int
    ms: int
    renewed_at: float
    """When the last claim or renewal that succeeded was sent (monotonic)."""
    due: float
    """When to renew next (monotonic): a third of its own expiry after the last try,
    so claims of different expiries each keep their own pace."""

    def __init__(self, token: int, ms: int, sent_at: float) -> None:
        self.token = token
        self.ms = ms
        self.renewed(sent_at)

    def renewed(self, sent_at: float) -> None:
        """The claim or renewal sent at ``sent_at`` succeeded."""
        self.renewed_at = sent_at
        self.retry_from(sent_at)

    def retry_from(self, sent_at: float) -> None:
        """Renew next a third of the expiry after ``sent_at`` (a renewal that failed then)."""
        self.due = sent_at + self.ms / 3000.0

    def is_claim(self, token: int, ms: int) -> bool:
        """Whether this is still the claim ``token`` kept with expiry ``ms`` (not taken up again since)."""
        return self.token == token and self.ms == ms


@contextmanager
def _translated(action: str, where: str) -> Iterator[None]:
    """Turn redis-py's errors into :class:`JobFailure` naming the action and the (masked) server."""
    from redis.exceptions import RedisError

    try:
        yield
    except RedisError as err:
        # The server's words, masked (a URL in them may hold a password), once: str() does not add them again.
        raise exc.quoting_cause(
            exc.JobFailure(f"Redis jobboard at {where}: could not {action}: {mask_url(err)}")
        ) from err


class RedisJobBoard(ListingJobBoard):
    """TaskFlow's Redis jobboard semantics, with fencing tokens and attempt history.

    TaskFlow's public class attributes and key names are here with meanings
    true for this board's own key layout (see the module docstring), which
    differs from TaskFlow's by design: :attr:`listings_key` names the hash
    this board lists its jobs in, not TaskFlow's. Left out, since nothing in
    this layout answers to them: ``OWNED_POSTFIX`` and
    ``LAST_MODIFIED_POSTFIX`` (a claim is ``{namespace}:owner:{uuid}``, made
    with :meth:`join`, and a job's last change is read from its attempts),
    and the ``SCRIPT_*`` constants and ``SCRIPT_TEMPLATES`` (TaskFlow's Lua
    protocol; this board's scripts and their answers are its own).

    Args:
        name: the board's name.
        conf: options (see the module docstring).
        client: an already made ``redis.Redis`` to use instead of one made from ``conf``.
        persistence: backend the jobs' logbooks are loaded from.
    """

    _log = LOG

    #: Default namespace for keys when none is given (bytes, as TaskFlow's ``b"taskflow"``).
    DEFAULT_NAMESPACE = DEFAULT_NAMESPACE.encode()

    #: Least Redis version the board needs: Lua scripting with ``cjson`` (2.6) and
    #: ``SET`` with ``PX`` (2.6.12). :meth:`connect` raises
    #: :class:`~flowkit.exceptions.IncompatibleVersion` on an older server.
    MIN_REDIS_VERSION = (2, 6, 12)

    #: Separator between the namespace and the rest of a key.
    NAMESPACE_SEP = b":"

    #: Separator between the pieces :meth:`join` combines (``:`` in this layout:
    #: ``join("owner", uuid)`` is a job's claim key).
    KEY_PIECE_SEP = b":"

    #: Options passed from ``conf`` to the redis-py client, each with its converter
    #: (TaskFlow's list, plus ``socket_keepalive`` and ``ssl_check_hostname``).
    CLIENT_CONF_TRANSFERS: tuple[tuple[str, Callable[[Any], Any]], ...] = tuple(_CLIENT_OPTIONS.items())

    def __init__(
        self,
        name: str,
        conf: dict[str, Any] | None = None,
        client: Any = None,
        persistence: Backend | None = None,
    ) -> None:
        super().__init__(name, _conf_from_url(dict(conf or {})))
        self._persistence = persistence
        self._client = client
        self._own_client = client is None
        self._namespace: str | bytes | None = self._conf.get("namespace", self.DEFAULT_NAMESPACE)
        # TaskFlow's namespaces are bytes (its default is b"taskflow"): the same name either way.
        # ``None`` is no namespace, as in TaskFlow: the keys are then ``listings``, ``owner:{uuid}``...
        ns = self._namespace
        if ns is None:
            self._prefix = ""
        else:
            self._prefix = (ns.decode() if isinstance(ns, bytes) else str(ns)) + self.NAMESPACE_SEP.decode()
        self._listings = f"{self._prefix}listings"
        self._sequence = f"{self._prefix}sequence"
        self._tokens = f"{self._prefix}tokens"
        self._trash = f"{self._prefix}trash"
        self._default_expiry = self._claim_expiry_option()
        self._renew_given = self._renew_given_option()
        # Converted now, so a bad option fails fetch(), naming it, before anything connects.
        self._client_options = self._converted_options()
        self._fallbacks = self._sentinel_fallbacks()
        self._scripts: dict[str, Any] = {}
        # Claims this board keeps alive, by job uuid.
        self._kept: dict[str, _KeptClaim] = {}
        self._kept_lock = threading.Lock()
        # Held while a renewal, or a change of a kept claim's expiry (extend_expiry, a claim
        # of one's own job), is on its way: a renewal with the expiry read before such a
        # change would undo it on the server, the claim lapsing long before it is next due.
        self._send_lock = threading.Lock()
        # Wakes the keeper early: a claim due sooner than it planned for, or close().
        self._keeper_wake = threading.Condition(self._kept_lock)
        self._keeper: threading.Thread | None = None
        self._keeper_stop = threading.Event()
        # Entities registered through this board: key -> JSON record, kept on the server
        # while the board is connected (renewed by the keeper), deleted by close().
        self._entities: dict[str, str] = {}
        # When each entity's entry is to be written again (monotonic).
        self._entity_due: dict[str, float] = {}

    # -- connection ------------------------------------------------------
    @property
    def where(self) -> str:
        """The server's address, password masked (for messages)."""
        url = self._conf.get("url")
        if url:
            return mask_url(url)
        if self._conf.get("unix_socket_path"):
            return f"unix://{self._conf['unix_socket_path']}"
        return f"redis://{self._conf.get('host', DEFAULT_HOST)}:{self._conf.get('port', 6379)}"

    @property
    def url(self) -> str:
        """A URL naming this board, password masked: the one it was made from, where that names it.

        A URL given is kept as given, but for what the board's options say
        over it: a ``namespace`` option (``None`` among them, spelled
        ``?no_namespace=true``: see :mod:`~flowkit.jobs.backends._redis_board_url`),
        or a ``db`` option where the URL names no database. Otherwise the URL
        recorded named another board than the one the jobs are on.
        """
        return mask_url(self._url_from_options())

    def _url_from_options(self) -> str:
        """The server, the database and the key namespace (in the query, as a board URL names it)."""
        board = self._conf.get("board")
        # A board URL as given (with its query), else the url option (its board options moved out).
        given = board if isinstance(board, str) and "://" in board else self._conf.get("url")
        if given:
            named = with_database(str(given), self._conf.get("db"))
            return with_namespace(named, self._namespace, DEFAULT_NAMESPACE)
        if self._conf.get("unix_socket_path"):
            base = f"unix://{self._conf['unix_socket_path']}?db={self._conf.get('db', 0)}"
        else:
            host, port = self._conf.get("host", DEFAULT_HOST), self._conf.get("port", 6379)
            base = f"redis://{host}:{port}/{self._conf.get('db', 0)}"
        return f"{base}{'&' if '?' in base else '?'}{urlencode([namespace_param(self._namespace)])}"

    def _option_error(self, key: str, value: Any, expected: str) -> ValueError:
        shown = mask_url(value) if "password" not in key else MASK
        return ValueError(
            f"Redis jobboard {self.name!r} at {self.where}: option {key!r} must be {expected}, not {shown!r}"
        )

    def _claim_expiry_option(self) -> float | None:
        """The ``claim_expiry`` option in seconds (``None``: claims never expire)."""
        value = self._conf.get("claim_expiry", DEFAULT_CLAIM_EXPIRY)
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = -1.0
        if not seconds >= 0.001 or seconds == float("inf"):
            raise self._option_error("claim_expiry", value, "at least a millisecond (0.001 seconds) or none")
        return seconds

    def _renew_given_option(self) -> bool:
        """The ``renew_given_expiry`` option: renew claims made with ``claim(expiry=...)`` too."""
        value = self._conf.get("renew_given_expiry", False)
        switch = read_switch(value)
        if switch is None:
            raise self._option_error("renew_given_expiry", value, "true or false")
        return switch

    def _converted_options(self) -> dict[str, Any]:
        """The options redis-py is given, each converted to its type.

        Raises:
            ValueError: an option does not convert (the option and the board are named).
        """
        options: dict[str, Any] = {}
        for key, convert in _CLIENT_OPTIONS.items():
            if key not in self._conf:
                continue
            value = self._conf[key]
            try:
                options[key] = convert(value)
            except (TypeError, ValueError):
                raise self._option_error(key, value, _EXPECTED.get(convert, "text")) from None
        return options

    def _sentinel_fallbacks(self) -> list[tuple[str, int]]:
        """The ``sentinel_fallbacks`` option as ``(host, port)`` pairs.

        Raises:
            ValueError: an entry is not ``host:port`` (the option and the board are named).
        """
        value = self._conf.get("sentinel_fallbacks") or []
        entries = [value] if isinstance(value, str) else list(value)
        pairs = []
        for entry in entries:
            host, _, port = str(entry).rpartition(":")
            if not host or not port.isdigit():
                raise self._option_error("sentinel_fallbacks", entry, "a list of host:port")
            pairs.append((host, int(port)))
        return pairs

    def _make_client(self) -> Any:
        try:
            import redis
        except ImportError as err:  # pragma: no cover - redis is a declared extra
            raise exc.JobFailure("the Redis jobboard needs redis-py: pip install 'flowkit[redis]'") from err
        options: dict[str, Any] = {"socket_connect_timeout": 5.0, "socket_timeout": 10.0}
        options.update(self._client_options)
        if not redis.__version__.startswith(("2.", "3.", "4.", "5.")):
            # redis-py 6 retries on timeouts by default and deprecates the option.
            options.pop("retry_on_timeout", None)
        try:
            from redis.maint_notifications import MaintNotificationsConfig
        except ImportError:  # pragma: no cover - redis-py < 7
            pass
        else:
            options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
        url = self._conf.get("url")
        sentinel = self._conf.get("sentinel")
        try:
            if sentinel:
                from redis.sentinel import Sentinel

                hosts = [(options.pop("host", DEFAULT_HOST), options.pop("port", 26379)), *self._fallbacks]
                if not options.get("ssl"):
                    options = {k: v for k, v in options.items() if not k.startswith("ssl")}
                made = Sentinel(hosts, sentinel_kwargs=self._conf.get("sentinel_kwargs"), **options)
                return made.master_for(str(sentinel))
            if url:
                return redis.Redis.from_url(str(url), **options)
            return redis.Redis(**options)
        except (ValueError, TypeError) as err:
            raise exc.quoting_cause(
                exc.JobFailure(f"malformed Redis jobboard configuration for {self.where}: {err}")
            ) from err

    @property
    def connected(self) -> bool:
        # A client handed in exists before connect() and after close(): only a board
        # connected since (its scripts registered) counts, whoever owns the client.
        if self._client is None or not self._scripts:
            return False
        try:
            return bool(self._client.ping())
        except Exception:  # any failure to answer means not connected
            return False

    def connect(self) -> None:
        if self._client is None:
            self._client = self._make_client()
            self._own_client = True
        with _translated("connect", self.where):
            self._client.ping()
            self._check_version()
        scripts = (
            ("claim", _CLAIM),
            ("claim_first", _CLAIM_FIRST),
            ("renew", _RENEW),
            ("extend", _EXTEND),
            ("release", _RELEASE),
        )
        for name, body in scripts:
            self._scripts[name] = self._client.register_script(body)
        with self._kept_lock:
            waiting = list(self._entities)
        if waiting:
            # Registered before the board was connected: listed from now on.
            for key in waiting:
                self._write_entity(key)
            with self._kept_lock:
                self._start_keeper()

    def _check_version(self) -> None:
        """Refuse a server older than :attr:`MIN_REDIS_VERSION`, as TaskFlow's board does.

        A server whose version cannot be read (``INFO`` refused, as an ACL
        may) is taken as new enough: nothing says it is not.
        """
        from redis.exceptions import ResponseError

        try:
            text = str(self._client.info("server").get("redis_version") or "")
        except ResponseError:
            return
        version = tuple(int(part) for part in re.findall(r"\d+", text)[:3])
        if version and version < self.MIN_REDIS_VERSION:
            wanted = ".".join(str(part) for part in self.MIN_REDIS_VERSION)
            raise exc.IncompatibleVersion(
                f"Redis jobboard {self.name!r} at {self.where}: Redis {wanted} or newer is needed, "
                f"the server is {text}"
            )

    def close(self) -> None:
        self._keeper_stop.set()
        with self._keeper_wake:
            self._keeper_wake.notify_all()
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.join(timeout=5)
        with self._kept_lock:
            self._kept.clear()
            self._entity_due.clear()
            entity_keys = list(self._entities)
            self._entities.clear()
        if entity_keys and self._client is not None and self._scripts:
            # The entities registered here stop being listed with the board closed, as a
            # ZooKeeper board's ephemeral nodes do; left to expire if Redis cannot be reached.
            try:
                self._client.delete(*entity_keys)
            except Exception:  # closing goes on; the entries expire on their own
                LOG.warning("could not remove the registered entities at %s", self.where, exc_info=True)
        self._scripts.clear()
        if self._client is not None and self._own_client:
            self._client.close()
            self._client = None

    def _redis(self) -> Any:
        if self._client is None or not self._scripts:
            raise exc.JobFailure(f"Redis jobboard {self.name!r} at {self.where} is not connected")
        return self._client

    def _script(self, name: str) -> Any:
        """The registered Lua script ``name``; a board not connected has none and says so.

        Raises:
            JobFailure: the board is not connected (never connected, or closed).
        """
        self._redis()
        return self._scripts[name]

    #: Seconds a registered entity's entry lasts on the server unless its board renews it
    #: (every third of that while the board is connected); a conductor whose process died
    #: is no longer listed this long after.
    ENTITY_EXPIRY = 30.0

    def register_entity(self, entity: Any) -> None:
        """List ``entity`` (a conductor) on the board while this board is connected.

        Its entry, ``{namespace}:entity:{name}``, expires :attr:`ENTITY_EXPIRY`
        seconds after its last renewal, is renewed in the background while the
        board is connected, and is deleted by :meth:`close`. TaskFlow's Redis
        board registers nothing, so this never fails: with Redis out of reach
        (or the board not connected yet) a warning is logged and the entry is
        written once the server answers (on :meth:`connect` for a board not
        connected), and a conductor's ``run()`` goes on to list jobs, retrying
        as TaskFlow's does.
        """
        name = str(getattr(entity, "name", entity))
        record = {
            "kind": getattr(entity, "kind", None),
            "name": name,
            "metadata": getattr(entity, "metadata", {}),
            "registered_at": time.time(),
        }
        key = self._entity_key(name)
        with self._kept_lock:
            self._entities[key] = json.dumps(record, default=str)
        if self._client is None or not self._scripts:
            return  # written by connect()
        self._write_entity(key)
        with self._kept_lock:
            self._start_keeper()

    def entities(self, kind: str = "conductor") -> list[dict[str, Any]]:
        """The entities of ``kind`` listed now: those whose entry has not expired, by name."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._entity_key("")) + "*"
        found = []
        with _translated("list entities", self.where):
            client = self._redis()
            keys = sorted(client.scan_iter(match=pattern, count=500))
            values = client.mget(keys) if keys else []
        for key, raw in zip(keys, values, strict=True):
            if raw is None:  # expired between the scan and the read
                continue
            name = key if isinstance(key, str) else key.decode("utf-8", "replace")
            record = parse_entity(raw, name, self.where, LOG)
            if record is not None and record.get("kind") == kind:
                found.append(record)
        return found

    def _write_entity(self, key: str) -> None:
        """(Re)write one registered entity's entry with its expiry; a failure is retried later."""
        ms = int(self.ENTITY_EXPIRY * 1000)
        sent_at = time.monotonic()
        with self._kept_lock:
            value = self._entities.get(key)
        if value is None:
            return
        try:
            self._redis().set(key, value, px=ms)
        except Exception:  # retried a third of the expiry later: registering never fails
            LOG.warning("could not register entity %s at %s; retrying", key, self.where, exc_info=True)
        with self._kept_lock:
            if key in self._entities:
                self._entity_due[key] = sent_at + ms / 3000.0
                self._keeper_wake.notify_all()

    # -- keys ------------------------------------------------------------
    @property
    def namespace(self) -> str | bytes | None:
        """The namespace every key of the board starts with, as given (default :attr:`DEFAULT_NAMESPACE`).

        ``None`` (given as ``namespace: None``) means no namespace, as in
        TaskFlow: the board's keys are then unprefixed (``listings``,
        ``owner:{uuid}``...), never prefixed with the text ``None``.
        """
        return self._namespace

    def join(self, key_piece: str | bytes, *more_key_pieces: str | bytes) -> bytes:
        """The key ``{namespace}:{piece}:{piece}...`` (bytes, as TaskFlow's), for reading the board's keys.

        ``join("owner", job.uuid)`` is the key of a job's claim, ``join("listings")``
        :attr:`listings_key`; with no namespace (``None``) the pieces alone.
        """
        pieces = [p if isinstance(p, bytes) else str(p).encode() for p in (key_piece, *more_key_pieces)]
        return self._prefix.encode() + self.KEY_PIECE_SEP.join(pieces)

    @property
    def listings_key(self) -> bytes:
        """Key of the hash listing the board's jobs (job uuid to its posting, JSON)."""
        return self.join("listings")

    @property
    def trash_key(self) -> bytes:
        """Key of the hash of trashed jobs (job uuid to its posting, reason and attempts, JSON)."""
        return self.join("trash")

    @property
    def sequence_key(self) -> bytes:
        """Key of the counter that numbers posted jobs in order."""
        return self.join("sequence")

    def _owner_key(self, job_uuid: str) -> str:
        return f"{self._prefix}owner:{job_uuid}"

    def _attempts_key(self, job_uuid: str) -> str:
        return f"{self._prefix}attempts:{job_uuid}"

    def _entity_key(self, name: str) -> str:
        return f"{self._prefix}entity:{name}"

    # -- reading ---------------------------------------------------------
    def _job_state(self, job: BoardJob) -> str:
        with _translated(f"read the state of job {job.uuid}", self.where):
            pipe = self._redis().pipeline(transaction=False)
            pipe.hexists(self._listings, job.uuid)
            pipe.exists(self._owner_key(job.uuid))
            listed, owned = pipe.execute()
        if not listed:
            return states.COMPLETE
        return states.CLAIMED if owned else states.UNCLAIMED

    @property
    def job_count(self) -> int:
        with _translated("count jobs", self.where):
            return int(self._redis().hlen(self._listings))

    def _set_aside_malformed(self, key: str, raw: bytes | str, error: _posting.MalformedJob) -> None:
        LOG.warning("setting aside malformed job document %s: %s", LogSafe(error.location), LogSafe(error))
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        doc = json.dumps({"raw": text, "reason": str(error), "attempts": []})
        with _translated("set a malformed job aside", self.where):
            pipe = self._redis().pipeline(transaction=True)
            pipe.hset(self._trash, key, doc)
            pipe.hdel(self._listings, key)
            pipe.execute()

    def _fetch(self, ensure_fresh: bool) -> list[BoardJob]:
        with _translated("list jobs", self.where):
            raw = self._redis().hgetall(self._listings)
        jobs = []
        for raw_key, raw_posting in raw.items():
            key = _text(raw_key)  # str from a client made with decode_responses=True
            try:
                posting = _posting.loads(raw_posting, f"{self.where} {self._listings}[{key}]")
            except _posting.MalformedJob as error:
                self._set_aside_malformed(key, raw_posting, error)
                continue
            jobs.append(RedisJob(self, posting, backend=self._persistence))
        return iter_sorted(jobs)

    def wait(
        self,
        timeout: float | None = None,
        initial_delay: float = 0.005,
        max_delay: float = 1.0,
        sleep_func: Callable[[float], object] = time.sleep,
    ) -> JobBoardIterator:
        """Poll until the board holds a job; return an iterator over the jobs.

        Args:
            timeout: seconds to wait at most (None: for ever).
            initial_delay: the first pause between looks, doubled after each
                up to ``max_delay``; TaskFlow's polling arguments, as its
                Redis board takes them.
            max_delay: the longest pause.
            sleep_func: what pauses (``time.sleep``; a test or eventlet sleep).

        Raises:
            NotFound: ``timeout`` seconds passed without a job.
            ValueError: ``initial_delay`` is over ``max_delay`` (as in TaskFlow).
        """
        if initial_delay > max_delay:
            raise ValueError(
                f"initial delay {initial_delay} of board {self.name!r}'s wait() must be less than"
                f" or equal to the max delay {max_delay}"
            )
        return wait_for_jobs(
            self, timeout, max_delay=max_delay, initial_delay=initial_delay, sleep=sleep_func
        )

    def current_claim(self, job: Job) -> Claim | None:
        return self.claim_of(job.uuid)

    def claim_of(self, job_uuid: str) -> Claim | None:
        """One read: a job's claim key outlives neither its claim nor its listing."""
        with _translated(f"read the claim of job {job_uuid}", self.where):
            raw = self._redis().get(self._owner_key(job_uuid))
        return None if raw is None else _decode_claim(raw)

    def _claim_ttl(self, job: Job) -> float | UnknownExpire:
        with _translated(f"read the claim expiry of job {job.uuid}", self.where):
            left = int(self._redis().pttl(self._owner_key(job.uuid)))
        if left < 0:
            return UnknownExpire(left) if left in (-1, -2) else UnknownExpire.KEY_NOT_FOUND
        return left / 1000.0

    def _set_claim_ttl(self, job: RedisJob, expiry: float) -> bool:
        ms = expiry_extension_ms(self, expiry, f"job {job.uuid}")  # refused before anything is sent
        held = job.claimed_token
        with self._send_lock, _translated(f"extend the claim expiry of job {job.uuid}", self.where):
            sent_at = time.monotonic()
            result = self._script("extend")(  # refuses a board not connected
                keys=[self._owner_key(job.uuid)], args=[ms, "" if held is None else held]
            )
            if result[0] != 1:
                return False
            token = _decode_claim(result[1]).token
            if ms > 0:
                # Renewed with the new expiry from now on, at the pace it sets.
                self._reschedule_if_kept(job.uuid, token, ms, sent_at)
            else:
                # No time left (TaskFlow's meaning of 0): the server ended the claim, so this
                # board neither renews it nor vouches for it (holds_locally) any longer.
                self._forget(job.uuid, token)
        return True

    def _last_modified(self, job: BoardJob) -> datetime:
        with _translated(f"read the last attempt of job {job.uuid}", self.where):
            raw = self._redis().lindex(self._attempts_key(job.uuid), -1)
        latest = job.created_on
        if raw is not None:
            record = json.loads(raw)
            stamps = [record.get("claimed_at"), record.get("reclaimed_at"), record.get("ended_at")]
            seconds = max(float(v) for v in stamps if isinstance(v, (int, float)))
            latest = max(latest, datetime.fromtimestamp(seconds, UTC))
        return latest

    def attempts(self, job: Job) -> list[Attempt]:
        with _translated(f"read the attempts of job {job.uuid}", self.where):
            raw = self._redis().lrange(self._attempts_key(job.uuid), 0, -1)
        return [Attempt.from_dict(json.loads(item)) for item in raw]

    def trashed(self) -> list[dict[str, Any]]:
        with _translated("list trashed jobs", self.where):
            raw = self._redis().hgetall(self._trash)
        found = []
        for item in raw.values():
            doc = json.loads(item)
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
    ) -> BoardJob:
        job_uuid = str(uuidlib.uuid4())
        # Check the posting before any write, so bad details cost no sequence number.
        _posting.Posting.make(job_uuid, name, 0, book, details, priority)
        with _translated(f"post job {name!r}", self.where):
            sequence = int(self._redis().incr(self._sequence))
            posting = _posting.Posting.make(job_uuid, name, sequence, book, details, priority)
            if not self._redis().hsetnx(self._listings, job_uuid, _posting.dumps(posting)):
                raise exc.JobFailure(f"job {job_uuid} could not be posted: the uuid is taken")
        job = RedisJob(self, posting, backend=self._persistence, book=book)
        self._notify(POSTED, job)
        return job

    @check_who
    def claim(self, job: Job, who: str, expiry: float | None = None) -> Claim:
        ms = self._expiry_ms(expiry, f"job {job.uuid}")
        keys = [self._listings, self._owner_key(job.uuid), self._attempts_key(job.uuid), self._tokens]
        with self._kept_lock:
            # The script may refresh the expiry of a claim kept here (see _send_lock).
            kept = job.uuid in self._kept
        with self._send_lock if kept else nullcontext():
            sent_at = time.monotonic()
            with _translated(f"claim job {job.uuid}", self.where):
                result = self._script("claim")(keys=keys, args=[job.uuid, who, ms, time.time(), _request()])
            if result[0] != 1:
                reason = _text(result[1])
                if reason == "unknown":
                    raise exc.NotFound(f"job {job.uuid} is not on board {self.name!r} (cannot claim it)")
                current = _decode_claim(result[2])
                if current.owner == who and ms:
                    # Refreshed by the script, as TaskFlow's: renewed with this expiry from now on.
                    self._reschedule_if_kept(job.uuid, current.token, ms, sent_at)
                raise exc.UnclaimableJob(f"Job {job.uuid} already claimed by {current.owner}")
        claim = Claim(who, int(result[1]))
        _remember_claim(job, claim)
        # TaskFlow's claim(expiry=N) lapses N seconds after it was made unless extended;
        # only the board's own default expiry (or renew_given_expiry) is kept alive.
        if ms and (expiry is None or self._renew_given):
            self._keep_alive(job.uuid, claim.token, ms, sent_at)
        return claim

    def _expiry_ms(self, expiry: float | None, what: str) -> int:
        """A claim's expiry in milliseconds (0: none), the board's default unless given.

        Raises:
            ValueError, TypeError: as :func:`~flowkit.jobs.base.check_claim_expiry`
                (under a millisecond, which Redis cannot keep, NaN, infinite...).
        """
        seconds = check_claim_expiry(self, expiry, what)
        if seconds is None:
            seconds = self._default_expiry  # checked when the board was made
        return 0 if seconds is None else int(seconds * 1000)

    #: Milliseconds a release (consume, abandon, trash) is remembered as made, so that
    #: redis-py sending the script again after its reply was lost does not report it failed.
    RELEASED_MARK_MS = 120_000

    #: Jobs one :meth:`claim_first` round trip tries at most.
    CLAIM_FIRST_BATCH = 16

    def claim_first(self, jobs: Sequence[Job], who: str, expiry: float | None = None) -> Claimed | None:
        """Try the jobs in order, up to :attr:`CLAIM_FIRST_BATCH` per round trip, in one script each."""
        check_applicant(who)
        ms = self._expiry_ms(expiry, f"jobs {', '.join(job.uuid for job in jobs)}")
        for start in range(0, len(jobs), self.CLAIM_FIRST_BATCH):
            batch = jobs[start : start + self.CLAIM_FIRST_BATCH]
            keys = [self._listings, self._tokens]
            for job in batch:
                keys += [self._owner_key(job.uuid), self._attempts_key(job.uuid)]
            sent_at = time.monotonic()
            with _translated(f"claim one of {len(batch)} jobs", self.where):
                result = self._script("claim_first")(
                    keys=keys, args=[who, ms, time.time(), _request(), *(job.uuid for job in batch)]
                )
            if result[0] == 1:
                job = batch[int(result[1]) - 1]
                claim = Claim(who, int(result[2]))
                _remember_claim(job, claim)
                if ms:
                    self._keep_alive(job.uuid, claim.token, ms, sent_at)
                return Claimed(job, claim)
        return None

    def holds_locally(self, job: Job, claim: Claim) -> bool:
        """True within half a claim's expiry of its last successful claim or renewal by this board.

        The server set the key's expiry when it ran the script, after it was
        sent, so the claim cannot lapse before ``sent + expiry``; half of that
        leaves room for clocks that run at slightly different rates.
        """
        with self._kept_lock:
            kept = self._kept.get(job.uuid)
            if kept is None or kept.token != claim.token:
                return False
            until = kept.renewed_at + kept.ms / 2000.0
        return time.monotonic() < until

    def _release(
        self, job: Job, who: str, action: str, reason: str | None, end: str, claim: Claim | None
    ) -> None:
        self._forget(job.uuid)
        done = f"{self._prefix}released:{_request()}"  # marks this call's release as made
        keys = [self._listings, self._owner_key(job.uuid), self._attempts_key(job.uuid), self._trash, done]
        token = "" if claim is None else str(claim.token)
        args = [job.uuid, who, action, reason or "", end, token, time.time(), self.RELEASED_MARK_MS]
        with _translated(f"{action} job {job.uuid}", self.where):
            result = self._script("release")(keys=keys, args=args)
        if result[0] == 1:
            return
        why = _text(result[1])
        if why == "unknown":
            raise exc.NotFound(f"job {job.uuid} is not on board {self.name!r} (cannot {action} it)")
        current = None if why == "unclaimed" else _decode_claim(result[2])
        if claim is not None:
            raise lost_claim(self, job, claim, current)
        if current is None:
            # NotFound, as TaskFlow raises for a job whose owner it cannot find.
            raise exc.NotFound(f"Can not {action} job {job.uuid} which we can not determine the owner of")
        raise exc.JobFailure(
            f"Can not {action} job {job.uuid} which is not owned by {who} "
            f"(it is actively owned by {current.owner})"
        )

    @check_who
    def consume(self, job: Job, who: str, claim: Claim | None = None) -> None:
        self._release(job, who, "consume", None, "consumed", claim)
        self._notify(REMOVAL, job)

    @check_who
    def abandon(
        self,
        job: Job,
        who: str,
        reason: str | None = None,
        failed: bool = False,
        claim: Claim | None = None,
    ) -> None:
        self._release(job, who, "abandon", reason, "failed" if failed else "abandoned", claim)

    @check_who
    def trash(self, job: Job, who: str, reason: str | None = None, claim: Claim | None = None) -> None:
        self._release(job, who, "trash", reason, "abandoned", claim)
        self._notify(REMOVAL, job)

    # -- keeping claims alive --------------------------------------------
    def _schedule(self, job_uuid: str, token: int, ms: int, sent_at: float) -> None:
        """Keep ``job_uuid``'s claim, renewed next a third of ``ms`` after ``sent_at`` (lock held)."""
        self._kept[job_uuid] = _KeptClaim(token, ms, sent_at)
        self._keeper_wake.notify_all()

    def _reschedule_if_kept(self, job_uuid: str, token: int, ms: int, sent_at: float) -> None:
        """Renew ``job_uuid``'s claim at the pace of ``ms`` from ``sent_at`` on, if this board keeps it.

        Only the claim with ``token``: one this board no longer keeps (lost,
        given back) is not taken up again.
        """
        with self._kept_lock:
            kept = self._kept.get(job_uuid)
            if kept is not None and kept.token == token:
                self._schedule(job_uuid, token, ms, sent_at)

    def _keep_alive(self, job_uuid: str, token: int, ms: int, sent_at: float) -> None:
        with self._kept_lock:
            self._schedule(job_uuid, token, ms, sent_at)
            self._start_keeper()

    def _start_keeper(self) -> None:
        """Start the thread renewing claims and entities unless it runs (lock held).

        Withdraws the stop :meth:`close` asked: a board used again after
        closing renews what it then claims or registers.
        """
        self._keeper_stop.clear()
        if self._keeper is None or not self._keeper.is_alive():
            self._keeper = threading.Thread(
                target=self._renew_loop, name=f"flowkit-redis-claims-{self.name}", daemon=True
            )
            self._keeper.start()

    def _forget(self, job_uuid: str, token: int | None = None) -> None:
        """Stop keeping ``job_uuid``'s claim (only the one with ``token``, when given)."""
        with self._kept_lock:
            kept = self._kept.get(job_uuid)
            if token is not None and (kept is None or kept.token != token):
                return  # given back and claimed anew meanwhile: that claim is kept
            self._kept.pop(job_uuid, None)

    def _next_due(self) -> tuple[list[tuple[str, int]], list[str]]:
        """Wait until kept claims or entities are due for renewal; those due, or nothing once closing."""
        with self._keeper_wake:
            while not self._keeper_stop.is_set():
                now = time.monotonic()
                due = [(u, kept.token) for u, kept in self._kept.items() if kept.due <= now]
                entities = [key for key, at in self._entity_due.items() if at <= now]
                for key in entities:
                    del self._entity_due[key]  # until written again
                if due or entities:
                    return due, entities
                # Woken early by a claim due sooner than this (or by close()).
                dues = [kept.due for kept in self._kept.values()]
                soonest = min([*dues, *self._entity_due.values()], default=now + 1.0)
                self._keeper_wake.wait(soonest - now)
            return [], []

    def _renew_loop(self) -> None:
        while True:
            due, entities = self._next_due()
            if not due and not entities:
                return
            for key in entities:
                self._write_entity(key)
            for job_uuid, token in due:
                with self._send_lock:
                    self._renew(job_uuid, token)

    def _renew(self, job_uuid: str, token: int) -> None:
        """Renew one kept claim with the expiry it has now (``_send_lock`` held)."""
        with self._kept_lock:
            kept = self._kept.get(job_uuid)
        if kept is None or kept.token != token:
            return  # given back (or claimed anew) since it fell due
        ms = kept.ms  # an extend_expiry since it fell due may have changed it
        sent_at = time.monotonic()
        try:
            renewed = self._scripts["renew"](keys=[self._owner_key(job_uuid)], args=[token, ms])
        except Exception:  # tried again a third of its expiry later; it expires only later
            LOG.warning(
                "could not renew the claim on job %s at %s", LogSafe(job_uuid), self.where, exc_info=True
            )
            with self._kept_lock:
                kept = self._kept.get(job_uuid)
                if kept is not None and kept.is_claim(token, ms):
                    kept.retry_from(sent_at)
            return
        if not renewed:
            LOG.warning(
                "claim on job %s at %s was lost; no longer renewing it", LogSafe(job_uuid), self.where
            )
            self._forget(job_uuid, token)
            return
        with self._kept_lock:
            kept = self._kept.get(job_uuid)
            if kept is not None and kept.is_claim(token, ms):
                kept.renewed(sent_at)


#: Options read from a board URL's query string (``redis://h/0?namespace=x``) rather than given to redis-py.
_BOARD_QUERY_OPTIONS = (NAMESPACE, NO_NAMESPACE, "claim_expiry")


def _conf_from_url(conf: dict[str, Any]) -> dict[str, Any]:
    """Move the board's own options out of the ``url``'s query string into ``conf``.

    Options given beside the URL win over its query, as over its other parts.

    Raises:
        ValueError: the URL's path names no database number (redis-py would
            use database 0 without a word), or its namespace is said two
            ways, naming the URL, password masked.
    """
    url = conf.get("url")
    if not url:
        return conf
    database = bad_database(str(url))
    if database is not None:
        raise ValueError(
            f"Redis jobboard at {mask_url(url)}: the URL's database must be a number (/0), not {database!r}"
        )
    parts = urlsplit(str(url))
    query = parse_qsl(parts.query, keep_blank_values=True)
    try:
        namespace = url_namespace(query, DEFAULT_NAMESPACE)
    except ValueError as err:
        raise ValueError(f"Redis jobboard at {mask_url(url)}: {err}") from None
    if namespace is None or any(key == NAMESPACE for key, _ in query):  # else the board's default, as bytes
        conf.setdefault(NAMESPACE, namespace)
    for key, value in query:
        if key == "claim_expiry":
            conf.setdefault(key, value)
    kept = [(k, v) for k, v in query if k not in _BOARD_QUERY_OPTIONS]
    conf["url"] = urlunsplit(parts._replace(query=urlencode(kept)))
    return conf


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _request() -> str:
    """A unique mark of one claim call, kept with the claim (see ``_CLAIM_ONE``)."""
    return uuidlib.uuid4().hex


def _remember_claim(job: Job, claim: Claim) -> None:
    """Note on a Redis job object the claim made through it (what its ``extend_expiry`` extends)."""
    if isinstance(job, RedisJob):
        job.claimed_token = claim.token


def _decode_claim(raw: Any) -> Claim:
    data = json.loads(raw)
    return Claim(str(data["owner"]), int(data["token"]))
