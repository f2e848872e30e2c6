"""Reading backend URLs, and hiding the secrets in them before they are shown.

Every message that names a backend URL (errors, logs, ``repr``) goes through
:func:`mask_url` first, so passwords never reach a log file or a bug report.
Masking works on text that does not parse, too: a badly formed URL is exactly
the one that ends up in an error message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from flowkit import exceptions as exc
from flowkit._utils.lazy_logging import module_logger
from flowkit._utils.masking import MASK
from flowkit._utils.switches import read_switch

_LOG = module_logger(__name__)

__all__ = [
    "HostPort",
    "Netloc",
    "ParsedUrl",
    "backend_name",
    "conf_bool",
    "conf_float",
    "mask_url",
    "parse_url",
    "split_conf",
    "split_hosts",
    "split_netloc",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# A URI without an authority (``memory:``, ``dir:/var/lib/flows``): TaskFlow accepts these too.
_BARE_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(?!//)")
# Query parameters whose values are secrets.
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:password|passwd|pwd|secret|token)=)[^&;#]*")
# The same in a libpq keyword string (``host=db password=x``), whose values may be quoted.
_SECRET_KEYWORD = re.compile(
    r"(?i)((?:^|\s)(?:password|passwd|pwd|secret|token)\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)"
)
# A scheme followed by too few slashes (``postgresql:/u:pw@h``): user info may still follow.
_SCHEME_SLASHES = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:/+")


def mask_url(url: object) -> str:
    """Return ``url`` as text with any password replaced by ``***``.

    Handles ``scheme://user:password@host...``, secret query parameters
    (``?password=...``) and libpq keyword strings (``password=...``). When in
    doubt it masks more, never less.
    """
    text = str(url)
    start = text.find("://")
    if start >= 0:
        start += 3
    else:
        # Not a well-formed URL (a scheme with one slash, or none at all, as in
        # "user:pw@host/db"): exactly what ends up in an error message.
        slashes = _SCHEME_SLASHES.match(text)
        start = slashes.end() if slashes else 0
    end = len(text)
    for stop in ("?", "#"):
        found = text.find(stop, start)
        if found >= 0:
            end = min(end, found)
    # The last "@" ends the user info: a raw "@" in a password must not leak the rest.
    at = text.rfind("@", start, end)
    if at < 0 and end < len(text) and "/" not in text[start:end]:
        # No "@" before the first "?" or "#", and no path yet: that "?" or "#"
        # may sit in a password written raw ("u:pa#ss@db/x", which drivers
        # take), so the user info may run on to an "@" before the path.
        slash = text.find("/", end)
        at = text.rfind("@", start, slash if slash >= 0 else len(text))
    if at >= 0:
        colon = text.find(":", start, at)
        if colon >= 0:
            text = f"{text[: colon + 1]}{MASK}{text[at:]}"
    text = _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, text)
    return _SECRET_KEYWORD.sub(lambda m: m.group(1) + MASK, text)


def backend_name(scheme: str) -> str:
    """The backend a scheme selects: ``postgresql+psycopg`` -> ``postgresql``."""
    return scheme.partition("+")[0].lower()


def split_conf(conf: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Turn ``fetch()``'s argument into ``(scheme, conf dict)``.

    ``conf`` is a URL, or a mapping whose ``connection`` key is a URL or a
    bare backend name (``{"connection": "dir", "path": "/x"}``). As in
    TaskFlow, a URL needs no authority part: ``memory:`` and ``dir:`` (with
    the directory in ``path``) name their backend as ``memory://`` does. A
    URL's query parameters are added to the conf unless the conf already sets
    them.

    Raises:
        TypeError: ``conf`` is neither a string nor a mapping (as ``Backend`` refuses it).
        StorageFailure: no ``connection`` given, or the URL's scheme is malformed.
    """
    if not isinstance(conf, str | Mapping):
        raise TypeError(f"persistence conf must be a URL or a mapping, not {type(conf).__name__}")
    merged: dict[str, Any] = {"connection": conf} if isinstance(conf, str) else dict(conf)
    connection = merged.get("connection")
    if not isinstance(connection, str) or not connection:
        raise exc.StorageFailure(
            f"persistence conf needs a 'connection' URL or backend name, got {mask_url(connection)!r}"
        )
    if "://" not in connection:
        bare = _BARE_SCHEME.match(connection.strip())
        if bare is None:
            return connection.strip().lower(), merged
        _merge_query(connection, merged)
        return bare.group(1).lower(), merged
    match = _SCHEME.match(connection)
    if match is None:
        raise exc.StorageFailure(f"malformed persistence URL {mask_url(connection)!r}: bad scheme")
    _merge_query(connection, merged)
    return match.group(1).lower(), merged


def _merge_query(connection: str, merged: dict[str, Any]) -> None:
    """Add the URL's query parameters to ``merged``, keeping the options it already has."""
    _, _, query = connection.partition("?")
    for key, value in parse_qsl(query.partition("#")[0], keep_blank_values=True):
        merged.setdefault(key, value)


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """The parts of a backend URL, with hosts split for multi-host URLs."""

    scheme: str
    username: str | None
    password: str | None
    hosts: tuple[HostPort, ...]
    path: str
    query: dict[str, str] = field(default_factory=dict)

    @property
    def hosts_text(self) -> str:
        """``host:port,host:port`` as ZooKeeper clients want it."""
        return ",".join(host.text for host in self.hosts)


def parse_url(url: str) -> ParsedUrl:
    """Split ``url`` into its parts; several ``host:port`` may be comma separated.

    Raises:
        StorageFailure: the URL does not parse (its masked form is in the message).
    """
    match = _SCHEME.match(url)
    if match is None:
        raise exc.StorageFailure(f"malformed persistence URL {mask_url(url)!r}: bad scheme")
    try:
        parts = urlsplit(url)
        netloc = split_netloc(parts.netloc)
        hosts = split_hosts(netloc.hosts)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
    except ValueError as err:
        raise exc.quoting_cause(
            exc.StorageFailure(f"malformed persistence URL {mask_url(url)!r}: {err}")
        ) from err
    return ParsedUrl(
        match.group(1).lower(), netloc.username, netloc.password, hosts, unquote(parts.path), query
    )


class Netloc(NamedTuple):
    """A URL's authority split at its user info: who connects, and the hosts as written."""

    username: str | None
    password: str | None
    hosts: str


def split_netloc(netloc: str) -> Netloc:
    """Split ``user:password@host:port,host:port`` (user info optional, percent-decoded).

    ``username`` is None without user info, ``""`` for ``:password@``.

    The one reader of a URL's user info, for the backends and the jobboards
    alike. The last ``@`` ends it, so a raw ``@`` in a password stays in it.
    """
    userinfo, _, hosts = netloc.rpartition("@")
    if not userinfo:
        return Netloc(None, None, hosts)
    user, colon, secret = userinfo.partition(":")
    # ``:secret@`` (a password, no user) is user info too: passed on, not dropped unseen.
    return Netloc(unquote(user) if user or colon else None, unquote(secret) if colon else None, hosts)


class HostPort(NamedTuple):
    """One host of a ``host:port`` list; ``port`` is ``None`` where none is written (the client's default)."""

    host: str
    port: int | None

    @property
    def text(self) -> str:
        """``host:port`` as written in a list, an IPv6 address in its brackets (``[::1]:2181``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def split_hosts(hosts: str) -> tuple[HostPort, ...]:
    """Read a ZooKeeper ``host[:port],host[:port]`` list as kazoo reads it.

    The one reader of such lists, for the persistence backend's URL and
    ``hosts`` and the jobboard's alike. As kazoo: a ``/chroot`` may follow the
    last host, spaces around a host are ignored, so is user info up to an
    ``@`` (a URL's netloc), an IPv6 address goes in brackets, and an empty
    port or port 0 (``zk1:``, ``zk1:0``) means ZooKeeper's default port, as
    TaskFlow's backends take them (a warning names the host: more likely a
    slip than a wish). kazoo finds the other mistakes only when it connects,
    with messages naming neither the host nor the URL: each is refused here,
    before anything connects. The message quotes only the host, never user
    info, so a caller can put it beside its masked URL.

    Returns:
        The hosts in order; none for an empty list.

    Raises:
        ValueError: an empty host (a stray comma), no host before a port, an
            IPv6 address without brackets or with broken ones, or a port that
            is not a number up to 65535.
    """
    listed = hosts.partition("/")[0]
    if not listed.strip():
        return ()
    return tuple(_host_port(item.rpartition("@")[2].strip()) for item in listed.split(","))


def _host_port(address: str) -> HostPort:
    """One host of :func:`split_hosts`, refused with a message saying what is wrong with it."""
    if not address:
        raise ValueError("an empty host in the list (a stray comma?)")
    if address.startswith("["):  # [ipv6]:port
        host, closed, rest = address[1:].partition("]")
        if not closed:
            raise ValueError(f"host {address!r} has no closing ']'")
        if rest and not rest.startswith(":"):
            raise ValueError(f"host {address!r} has {rest!r} after its ']'; a ':port' may follow it")
        if not host:
            raise ValueError(f"host {address!r} names no host")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"host {address!r} has no IPv6 address in its brackets") from None
        has_port, port_text = bool(rest), rest[1:]
    else:
        if address.count(":") > 1:
            raise ValueError(f"host {address!r}: an IPv6 address goes in brackets, as in '[::1]:2181'")
        host, colon, port_text = address.partition(":")
        if not host:
            raise ValueError(f"host {address!r} names no host")
        has_port = bool(colon)
    if not has_port:
        return HostPort(host, None)
    # isdigit() alone takes other scripts' digits ('٣'), which int() reads and kazoo does not.
    if port_text and not (port_text.isascii() and port_text.isdigit() and int(port_text) < 65536):
        raise ValueError(f"the port of host {address!r} must be a number up to 65535, not {port_text!r}")
    if not port_text or int(port_text) == 0:
        # kazoo reads both as its default port (so TaskFlow's backends connect there).
        _LOG.warning("ZooKeeper host %r gives no port: the default port is used, as kazoo does", address)
        return HostPort(host, None)
    return HostPort(host, int(port_text))


def conf_bool(conf: Mapping[str, Any], key: str, default: bool = False) -> bool:
    """Read a yes/no option that may come from a URL query string as text.

    Raises:
        StorageFailure: the value is not a recognisable boolean.
    """
    value = conf.get(key, default)
    if isinstance(value, str) and not value.strip():
        return False  # ``?echo=`` in a URL: given, empty
    switch = read_switch(value)
    if switch is not None:
        return switch
    raise exc.StorageFailure(f"persistence option {key!r} must be true or false, not {value!r}")


def conf_float(conf: Mapping[str, Any], key: str, default: float) -> float:
    """Read a number option that may come from a URL query string as text.

    Raises:
        StorageFailure: the value is not a number.
    """
    value = conf.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise exc.StorageFailure(f"persistence option {key!r} must be a number, not {value!r}") from err
