"""``flowkit workers``: the workers alive on a Redis, by topic.

::

    flowkit workers --redis redis://127.0.0.1:6379/0 [--key-prefix flowkit] [--topic T ...] [--json]
        [--timeout SECONDS]

Reads what engines read to find workers: each worker's advertisement, renewed
at every heartbeat, under the topics announced in ``{key_prefix}:topics``. A
worker that stopped or died drops out once its advertisement expires (three
heartbeats). Advertisements are checked with the signing secret of
``FLOWKIT_WORKER_SECRET`` when it is set, as engines check them. It only reads.
Each Redis command waits at most ``--timeout`` seconds (default
:data:`TIMEOUT`) for its answer, and connecting at most as long: left to the
client's own default, a frozen Redis would hold the command for ever with
redis-py before 8. A ``?socket_timeout=`` in the URL wins over it.
Exit status: 0 (also when no worker is alive), 1 when Redis cannot be read
(or answers too late), 2 for a URL that is not a Redis URL.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from flowkit._utils.text import log_safe
from flowkit.cli._common import FAILED, FROM_FILE, CliError, columns, guarded, one_line, positive, url_value

__all__ = ["TIMEOUT", "connect", "register"]

#: Default seconds a Redis command (and connecting) may take: as long as the
#: result cache's Redis client waits (``flowkit.cache._redis.SOCKET_TIMEOUT``);
#: a listing has no reason to wait longer than a cache read.
TIMEOUT = 5.0


def register(subparsers: Any) -> None:
    """Add the ``workers`` command to the ``flowkit`` parser."""
    parser = subparsers.add_parser(
        "workers",
        help="list the workers alive on a Redis, by topic",
        description="List the workers alive on a Redis (what worker-based engines send tasks to), by topic.",
    )
    parser.add_argument(
        "--redis",
        required=True,
        type=url_value,
        metavar="URL",
        help="Redis URL, e.g. redis://host:6379/0" + FROM_FILE,
    )
    parser.add_argument(
        "--key-prefix",
        "--namespace",
        default="flowkit",
        metavar="PREFIX",
        help="prefix of the Redis keys, the workers' --key-prefix (default: flowkit)",
    )
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="only this topic (repeatable; default: every topic workers announced)",
    )
    parser.add_argument("--json", action="store_true", help="a JSON array, one object per worker")
    parser.add_argument(
        "--timeout",
        type=positive(float),
        default=TIMEOUT,
        metavar="SECONDS",
        help=f"seconds to wait for each Redis answer before failing (default: {TIMEOUT:g})",
    )
    parser.set_defaults(handler=guarded("flowkit workers", _run))


def connect(url: str, timeout: float = TIMEOUT) -> Any:
    """A client for ``url`` whose commands and connecting wait at most ``timeout`` seconds.

    Tried once (an operator re-runs the command); a frozen Redis costs one timeout.

    Raises:
        InvalidFormat: ``url`` is not a Redis URL.
        ImportError: redis-py is not installed.
    """
    from flowkit.engines.worker_based import _transport

    return _transport.connect(url, attempts=1, socket_timeout=timeout)


def _run(args: argparse.Namespace) -> int:
    from flowkit import exceptions as exc
    from flowkit.engines.worker_based import _transport, protocol
    from flowkit.persistence.backends._urls import mask_url

    try:
        client = connect(args.redis, args.timeout)
    except (exc.InvalidFormat, ImportError) as err:
        raise CliError(one_line(err), status=2 if isinstance(err, exc.InvalidFormat) else FAILED) from err
    secret = protocol.resolve_secret(None)
    now = time.time()
    rows: list[dict[str, Any]] = []
    try:
        topics = args.topic or _transport.live_topics(client, args.key_prefix, now=now)
        for topic in topics:
            adverts = _transport.live_workers(client, args.key_prefix, topic, secret, now=now)
            for worker_id, advert in sorted(adverts.items()):
                rows.append(
                    {
                        "topic": topic,
                        "worker": worker_id,
                        "host": advert.get("host"),
                        "pid": advert.get("pid"),
                        "language": advert.get("language"),
                        "seen_ago": round(max(now - float(advert["sent_at"]), 0.0), 3),
                        "heartbeat": advert.get("heartbeat"),
                        "tasks": list(advert.get("tasks") or ()),
                    }
                )
    except _transport.errors() as err:
        masked = mask_url(args.redis)
        raise CliError(
            f"cannot read workers from Redis {masked}: {one_line(err).replace(args.redis, masked)}",
            status=FAILED,
        ) from err
    finally:
        client.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        where = f" on topic {', '.join(args.topic)}" if args.topic else ""
        print(f"no live workers{where}")
        return 0
    table = [("TOPIC", "WORKER", "HOST", "PID", "LANGUAGE", "SEEN", "TASKS")]
    for row in rows:
        seen = f"{row['seen_ago']:.0f}s ago"
        tasks = f"{len(row['tasks'])}: {', '.join(map(log_safe, row['tasks']))}"
        table.append(
            (
                log_safe(row["topic"]),
                log_safe(row["worker"]),
                log_safe(row["host"]),
                log_safe(row["pid"]),
                log_safe(row["language"]),
                seen,
                tasks,
            )
        )
    print(columns(table))
    return 0
