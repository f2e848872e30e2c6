"""What a Redis board URL says of where the board's keys are: their namespace (or none), the database.

A Redis board's keys start with its ``namespace`` (default ``flowkit``), or
with nothing when the board is given ``namespace: None``, as TaskFlow allows.
A URL says ``?namespace=NAME``; ``?namespace=`` is the empty name (keys
``:listings``..., as in TaskFlow), so it cannot also mean "none". A URL
without the parameter is the default namespace. "No namespace" is spelled
``?no_namespace=true``: without a spelling of its own, the URL a conductor
recorded for such a board read back as the default namespace, and ``flowkit
flows resume --board`` looked for the job among other keys.

The board (reading its URL), :attr:`~flowkit.jobs.base.JobBoard.url` (writing
one) and :func:`~flowkit.jobs.backends._address.board_address` (comparing two)
all read and write the spelling here.

The database: redis-py reads it from ``?db=``, else from the URL's path, else
from the ``db`` option. A board given ``redis://host`` and ``db: 3`` uses
database 3, so the URL naming it must say so (:func:`with_database`).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flowkit._utils.switches import read_switch

__all__ = [
    "NAMESPACE",
    "NO_NAMESPACE",
    "NamespaceOption",
    "namespace_param",
    "namespace_text",
    "url_namespace",
    "with_database",
    "with_namespace",
]

#: The query parameter naming the namespace.
NAMESPACE = "namespace"
#: The query parameter saying the board has no namespace (``namespace: None``).
NO_NAMESPACE = "no_namespace"

#: A namespace as a board is given it: text, bytes (TaskFlow's), or ``None`` for none.
NamespaceOption = str | bytes | None


def namespace_text(namespace: NamespaceOption) -> str | None:
    """``namespace`` as text (bytes decoded), ``None`` for none."""
    if namespace is None:
        return None
    return namespace.decode() if isinstance(namespace, bytes) else str(namespace)


def url_namespace(query: Sequence[tuple[str, str]], default: str) -> str | None:
    """The namespace a URL's query (``parse_qsl``'s pairs) names: its text, None for none, or ``default``.

    Raises:
        ValueError: ``no_namespace`` is no yes or no word, or says yes beside a
            ``namespace`` (the message names both; the caller names the URL).
    """
    named = [value for key, value in query if key == NAMESPACE]
    none_said = False
    for key, value in query:
        if key != NO_NAMESPACE:
            continue
        switch = read_switch(value)
        if switch is None:
            raise ValueError(f"{NO_NAMESPACE} must be true or false, not {value!r}")
        none_said = none_said or switch
    if none_said:
        if named:
            raise ValueError(f"the URL names namespace {named[0]!r} and {NO_NAMESPACE}=true: give one")
        return None
    return named[0] if named else default


def namespace_param(namespace: NamespaceOption) -> tuple[str, str]:
    """The query parameter naming ``namespace``: ``("namespace", text)``, or ``("no_namespace", "true")``."""
    text = namespace_text(namespace)
    return (NO_NAMESPACE, "true") if text is None else (NAMESPACE, text)


def with_namespace(url: str, namespace: NamespaceOption, default: str) -> str:
    """``url`` naming ``namespace``: as given when it already does, else its query's namespace replaced.

    Args:
        url: a board URL.
        namespace: the namespace the board uses.
        default: the namespace a URL silent about it names (the board's default).

    Raises:
        ValueError: as :func:`url_namespace`.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if url_namespace(query, default) == namespace_text(namespace):
        return url
    kept = [(k, v) for k, v in query if k not in (NAMESPACE, NO_NAMESPACE)]
    return urlunsplit(parts._replace(query=urlencode([*kept, namespace_param(namespace)])))


def with_database(url: str, database: object) -> str:
    """``url`` naming database ``database`` (the board's ``db`` option) where it names none itself.

    A URL that names one (``?db=``, or a ``redis://`` URL's path) is returned
    as given: redis-py reads the URL's before the option.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    tcp = parts.scheme.lower() in ("redis", "rediss")  # a unix:// URL's path is its socket
    # A blank ?db= names none: redis-py's parse_qs drops it.
    named = any(key == "db" for key, _ in parse_qsl(parts.query))
    if database is None or (tcp and parts.path.strip("/")) or named:
        return url
    if tcp:
        return urlunsplit(parts._replace(path=f"/{database}"))
    return urlunsplit(parts._replace(query=urlencode([*query, ("db", str(database))])))
