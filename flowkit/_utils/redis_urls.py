"""What a ``redis://`` URL's path may say, checked the same way by the workers and the jobboard.

redis-py reads the path of ``redis://host:6379/orders`` as no database at
all and connects to database 0, without a word: an operator who meant
another database (or took the path for a key prefix) had workers, engines
and conductors meet on the wrong one. Both sides refuse such a URL instead.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

__all__ = ["bad_database"]


def bad_database(url: str) -> str | None:
    """The path of a ``redis://`` or ``rediss://`` URL when it names no database number, else None.

    An empty path, ``/`` and ``/N`` (a decimal number) are databases redis-py
    reads as meant. A ``unix://`` URL's path is its socket (the database goes
    in ``?db=``), so it is never refused here.

    Raises:
        ValueError: the URL cannot be split (an unclosed IPv6 bracket).
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("redis", "rediss"):
        return None
    database = unquote(parts.path).strip("/")
    if not database or database.isdecimal():
        return None
    return parts.path
