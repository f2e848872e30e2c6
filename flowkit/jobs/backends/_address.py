"""What identifies a jobboard, read from its URL: two spellings of one board compare equal.

``flowkit flows resume --board URL`` checks that the board given is the one
the flow's job is on before it reads the job's claim there. As text,
``redis://h:6379`` and ``redis://h:6379/0`` differ, and so do a URL with its
password and the recorded one (masked), ``H`` and ``h``, or a path with a
trailing slash: the same board was refused. What identifies a board is where
its jobs live: its kind, its servers (host and port, the default port filled
in, the host's case folded) and where on them (the Redis database and key
namespace; the ZooKeeper or etcd path), with each board's defaults filled in.
A user name or password says who connects, not to what, so it is left out.

Cost: a ``urlsplit`` per URL; nothing connects.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from flowkit._utils.redis_urls import bad_database
from flowkit.persistence.backends._urls import mask_url

__all__ = ["BoardAddress", "board_address"]

#: A scheme's board kind, where two schemes name one (as the board table maps them).
_KINDS = {"rediss": "redis", "zk": "zookeeper", "etcds": "etcd"}
#: Each kind's server port when the URL gives none.
_DEFAULT_PORTS = {"redis": 6379, "zookeeper": 2181, "etcd": 2379}


class BoardAddress(NamedTuple):
    """Where a board keeps its jobs: boards with equal addresses share them.

    Attributes:
        kind: the board's kind (``redis``, ``zookeeper``, ``etcd``...).
        servers: each server as ``host:port``, the host lower-cased and the
            kind's default port filled in (a set: a ZooKeeper ensemble's order
            does not matter).
        database: the Redis database number; None for other kinds.
        prefix: where on the servers: the Redis key namespace (``None`` for a
            board with none, ``?no_namespace=true``), the ZooKeeper node or etcd
            key path; for a kind flowkit does not know, the URL's path and query
            as given.
    """

    kind: str
    servers: frozenset[str]
    database: int | None
    prefix: str | None

    def differences(self, other: BoardAddress) -> str:
        """What tells this board from ``other``, as ``database 1, not 0`` (parts joined by ``; ``)."""
        said = []
        for field in self._fields:
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine == theirs:
                continue
            name = field
            if field == "servers":
                mine, theirs = ",".join(sorted(mine)) or "none", ",".join(sorted(theirs)) or "none"
            elif field == "prefix":
                name = "namespace" if self.kind == "redis" else "path"
                mine, theirs = _shown_prefix(mine), _shown_prefix(theirs)
            said.append(f"{name} {mine}, not {theirs}")
        return "; ".join(said)


def _shown_prefix(prefix: str | None) -> str:
    """A prefix as the differences name it: quoted, or ``none`` for a board without one."""
    return "none" if prefix is None else repr(prefix)


def board_address(url: str) -> BoardAddress:
    """The address of the board at ``url``, each board's defaults filled in.

    Raises:
        ValueError: ``url`` names no board: a port that is no number, a Redis
            database that is none, a Redis namespace said two ways (the URL
            named, password masked).
    """
    try:
        return _address(url)
    except ValueError as err:
        raise ValueError(f"jobboard URL {mask_url(url)!r}: {err}") from None


def _address(url: str) -> BoardAddress:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    kind = _KINDS.get(scheme, scheme)
    netloc = parts.netloc.rpartition("@")[2]  # the last "@" ends the user info
    if kind == "redis":
        return _redis(url, netloc)
    if kind == "zookeeper":
        path = "/" + (parts.path.strip("/") or "flowkit/jobs")
        return BoardAddress(kind, _servers(netloc, kind), None, path)
    if kind == "etcd":
        return BoardAddress(kind, _servers(netloc, kind), None, parts.path.strip("/") or "jobboard")
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return BoardAddress(kind, frozenset({netloc.lower()} if netloc else ()), None, rest)


def _redis(url: str, netloc: str) -> BoardAddress:
    """Redis: redis-py's database (``?db=`` before the path, else 0) and the board's key namespace."""
    database = bad_database(url)
    if database is not None:
        raise ValueError(f"the URL's database must be a number (/0), not {database!r}")
    parts = urlsplit(url)
    # redis-py's reading: the first non-blank ?db= (parse_qs drops blank values), else the path.
    given = [value for key, value in parse_qsl(parts.query) if key == "db"]
    number = given[0] if given else unquote(parts.path).strip("/") or "0"
    if not number.isdecimal():
        raise ValueError(f"the URL's database must be a number, not {number!r}")
    from flowkit.jobs.backends._redis_board_url import url_namespace
    from flowkit.jobs.backends.impl_redis import DEFAULT_NAMESPACE

    namespace = url_namespace(parse_qsl(parts.query, keep_blank_values=True), DEFAULT_NAMESPACE)
    return BoardAddress("redis", _servers(netloc, "redis"), int(number), namespace)


def _servers(netloc: str, kind: str) -> frozenset[str]:
    """``host:port`` of each server in ``netloc`` (``h1:2181,h2``), the kind's default port filled in."""
    servers = set()
    for server in filter(None, netloc.split(",")):
        # urlsplit reads one server's host and port (brackets, case) as drivers do.
        one = urlsplit(f"//{server}")
        host = one.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        servers.add(f"{host}:{one.port or _DEFAULT_PORTS[kind]}")
    return frozenset(servers)
