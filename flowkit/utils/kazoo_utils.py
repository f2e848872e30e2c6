"""Make and dispose of kazoo clients from a configuration dict, as TaskFlow's ``kazoo_utils``.

Services that share one ZooKeeper client between their jobboards build it with
:func:`make_client` and pass it as ``client=`` (OpenStack Octavia does), and
flowkit's ZooKeeper jobboard makes its own client the same way, so both read
the same options. kazoo is imported only when a client is made.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flowkit import exceptions as exc
from flowkit._utils.masking import MASK
from flowkit._utils.switches import read_switch

__all__ = [
    "CONF_TRANSFERS",
    "DEFAULT_HOSTS",
    "check_compatible",
    "client_options",
    "digest_auth_data",
    "finalize_client",
    "hosts_text",
    "make_client",
    "server_version",
    "version_check_wanted",
]

LOG = logging.getLogger(__name__)


class _HideCredentials(logging.Filter):
    """Mask the credential of the authentication requests kazoo logs through :data:`LOG`.

    kazoo logs every request it sends at DEBUG, its ``Auth`` (scheme
    ``digest``, ``user:password``) too, so without this a debug log of a
    client made here, or of flowkit's ZooKeeper backend and jobboard, holds
    the password. It costs nothing unless DEBUG records of :data:`LOG` are
    wanted: a filter runs only on records that were made.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(_is_auth_request(arg) for arg in args):
            record.args = tuple(_masked_auth(arg) if _is_auth_request(arg) else arg for arg in args)
        return True


def _is_auth_request(value: object) -> bool:
    # kazoo's Auth is a namedtuple; matched by name so the filter imports nothing.
    return type(value).__name__ == "Auth" and hasattr(value, "_replace") and hasattr(value, "auth")


def _masked_auth(request: Any) -> Any:
    user, colon, _ = str(request.auth).partition(":")
    return request._replace(auth=f"{user}:{MASK}" if colon else MASK)


LOG.addFilter(_HideCredentials())

#: The server a client is made for when the configuration names none (TaskFlow's default):
#: the ZooKeeper jobboard and persistence backend both read it, so one program's board
#: and backend without hosts reach the same server.
DEFAULT_HOSTS = "localhost:2181"

# The line of the ``envi`` answer that gives the server's version ("3.8.0-..., built on ...").
_ENVI_VERSION = re.compile(r"^zookeeper\.version=(\d+(?:\.\d+)*)", re.MULTILINE)


def _switch(name: str) -> Callable[[Any], bool]:
    def read(value: Any) -> bool:
        found = read_switch(value)
        if found is None:
            raise ValueError(f"ZooKeeper client option {name!r} must be true or false, not {value!r}")
        return found

    return read


#: The options passed to ``KazooClient`` as they are named in the configuration:
#: ``(name, conversion or None, default)``; TaskFlow's list.
CONF_TRANSFERS: tuple[tuple[str, Callable[[Any], Any] | None, Any], ...] = (
    ("read_only", _switch("read_only"), False),
    ("randomize_hosts", _switch("randomize_hosts"), False),
    ("keyfile", None, None),
    ("keyfile_password", None, None),
    ("certfile", None, None),
    ("use_ssl", _switch("use_ssl"), False),
    ("verify_certs", _switch("verify_certs"), True),
)


def hosts_text(hosts: Any) -> str:
    """``hosts`` as kazoo's ``"host:port,host:port"``: from text, a list/set/tuple, or a host-to-port dict.

    The forms TaskFlow's ``make_client`` takes; flowkit's ZooKeeper backend and
    jobboard read their ``hosts`` option with it too, so each takes all of them.

    Raises:
        TypeError: ``hosts`` is empty or of another type.
    """
    if isinstance(hosts, str):
        text = hosts.strip()
    elif isinstance(hosts, Mapping):
        text = ",".join(f"{host}:{port}" for host, port in hosts.items())
    elif isinstance(hosts, (list, set, tuple)):
        text = ",".join(str(host) for host in hosts)
    else:
        raise TypeError(
            f"ZooKeeper hosts must be a non-empty string or list, not {hosts!r} ({type(hosts).__name__})"
        )
    if not text:
        raise TypeError(f"ZooKeeper hosts must be a non-empty string or list, not {hosts!r}")
    return text


def client_options(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The ``KazooClient`` keyword arguments ``conf`` asks for (see :func:`make_client`)."""
    options: dict[str, Any] = {"logger": LOG}
    for key, convert, default in CONF_TRANSFERS:
        if key in conf:
            options[key] = conf[key] if convert is None else convert(conf[key])
        else:
            options[key] = default
    for key in ("command_retry", "connection_retry", "handler"):
        if key in conf:
            options[key] = conf[key]
    options["hosts"] = hosts_text(conf.get("hosts", DEFAULT_HOSTS))
    if "timeout" in conf:
        options["timeout"] = float(conf["timeout"])
    return options


def make_client(conf: Mapping[str, Any]) -> Any:
    """A new, unstarted ``kazoo.client.KazooClient`` configured by ``conf``.

    Keys read (others are ignored, as TaskFlow ignores them): ``hosts`` (text, a
    list or set, or a host-to-port dict; ``localhost:2181`` if absent),
    ``timeout``, ``read_only``, ``randomize_hosts``, ``use_ssl``,
    ``verify_certs`` (yes/no, as bools or text), ``keyfile``,
    ``keyfile_password``, ``certfile``, ``command_retry`` and
    ``connection_retry`` (kazoo retry objects or dicts of their options), and
    ``handler``.

    Raises:
        TypeError: ``hosts`` is empty or of another type.
        ValueError: a yes/no option that is neither.
    """
    from kazoo.client import KazooClient  # type: ignore[import-untyped]

    return KazooClient(**client_options(conf))


def digest_auth_data(username: str | None, password: str | None) -> list[tuple[str, str]]:
    """kazoo's ``auth_data`` for a URL's ``user:password@``: one digest credential, or none.

    The one place flowkit's ZooKeeper persistence backend and jobboard turn a
    URL's user info into credentials (TaskFlow's ``make_client`` reads none).
    A user without a password authenticates with an empty one.
    """
    if username is None:
        return []
    return [("digest", f"{username}:{password or ''}")]


def finalize_client(client: Any) -> None:
    """Stop and close ``client``, whether or not it was started."""
    client.stop()
    client.close()


def version_check_wanted(conf: Mapping[str, Any]) -> bool:
    """Whether ``conf`` asks for the server version check on connecting (``check_compatible``).

    Absent, ``None`` or empty means yes, as TaskFlow reads it; otherwise a yes/no
    switch (a bool, or text such as ``"false"``/``"no"``/``"0"``).

    Raises:
        ValueError: a value that is neither yes nor no (TaskFlow would take it as yes).
    """
    value = conf.get("check_compatible")
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    return _switch("check_compatible")(value)


def server_version(client: Any) -> tuple[int, ...]:
    """The version of the server a started ``client`` is connected to, e.g. ``(3, 8, 0)``.

    Read from the ``envi`` four-letter command, as kazoo's ``server_version()``
    does; unlike it, a server that refuses the command (ZooKeeper 3.5 and later
    run only the commands ``4lw.commands.whitelist`` allows) is named as such
    instead of failing with an ``AttributeError``.

    Raises:
        IncompatibleVersion: the server does not say its version.
    """
    answer = client.command(b"envi")
    found = _ENVI_VERSION.search(answer)
    if found is None:
        if "whitelist" in answer or "not executed" in answer:
            raise exc.IncompatibleVersion(
                "cannot check the ZooKeeper server's version: it refuses the 'envi' command; "
                "allow it (4lw.commands.whitelist) or set check_compatible to false"
            )
        raise exc.IncompatibleVersion(
            f"cannot check the ZooKeeper server's version: its 'envi' answer names none: {answer[:200]!r}"
        )
    return tuple(int(part) for part in found.group(1).split("."))


def _dotted(version: Sequence[int]) -> str:
    return ".".join(str(part) for part in version)


def check_compatible(
    client: Any, min_version: Sequence[int] | None = None, max_version: Sequence[int] | None = None
) -> None:
    """Check that the server ``client`` is connected to is within the versions given (inclusive).

    TaskFlow's function: its ZooKeeper persistence backend and jobboard call it on
    connecting, unless configured ``check_compatible=False``, and so do flowkit's.
    Nothing is asked of the server when neither bound is given.

    Raises:
        IncompatibleVersion: the server is older than ``min_version``, newer than
            ``max_version``, or does not say its version (see :func:`server_version`).
    """
    if not min_version and not max_version:
        return
    version = server_version(client)
    if min_version and version < tuple(int(part) for part in min_version):
        raise exc.IncompatibleVersion(
            f"Incompatible zookeeper version {_dotted(version)} detected, "
            f"zookeeper >= {_dotted(min_version)} required"
        )
    if max_version and version > tuple(int(part) for part in max_version):
        raise exc.IncompatibleVersion(
            f"Incompatible zookeeper version {_dotted(version)} detected, "
            f"zookeeper <= {_dotted(max_version)} required"
        )
