"""Make and dispose of kazoo clients from a configuration dict, as TaskFlow's ``kazoo_utils``.

Services that share one ZooKeeper client between their jobboards build it with
:func:`make_client` and pass it as ``client=`` (OpenStack Octavia does), and
flowkit's ZooKeeper jobboard makes its own client the same way, so both read
the same options. kazoo is imported only when a client is made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flowkit._utils.switches import read_switch

__all__ = ["CONF_TRANSFERS", "client_options", "finalize_client", "make_client"]

LOG = logging.getLogger(__name__)


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


def _hosts_text(hosts: Any) -> str:
    """``hosts`` as kazoo's ``"host:port,host:port"``: from text, a list/set/tuple, or a host-to-port dict."""
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
    options["hosts"] = _hosts_text(conf.get("hosts", "localhost:2181"))
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


def finalize_client(client: Any) -> None:
    """Stop and close ``client``, whether or not it was started."""
    client.stop()
    client.close()
