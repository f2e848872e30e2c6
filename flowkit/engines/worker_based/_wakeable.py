"""A reading thread's connection: its own, so another thread can wake its read and nothing queues for it.

The Python worker's reading thread waits for requests in ``XREADGROUP ...
BLOCK`` of up to half a second (``worker.MAX_BLOCK``): shorter blocks would wake
an idle worker more often for nothing. A stop used to wait for that read to
end: an idle worker took 0.1-0.5 s to notice ``stop()`` or SIGTERM, every time.

:func:`open_reader` gives the reading thread a connection of its own (made
with the worker's connection options), for its reads and for the replay
guard's claims, and learns its ``CLIENT ID`` (again after each reconnection);
:meth:`Reader.wake` sends ``CLIENT UNBLOCK`` for it on a connection of the
worker's pool, which ends the read at once as if its block had run out.

Being its own, the connection is not checked out of redis-py's pool for each
round trip: the pool probes a connection it hands out for unread data (a
non-blocking ``recv`` and two ``settimeout`` calls) and takes its lock, about
27 µs of CPU per round trip on the project's machine under load (``PING``: 66
against 39 µs), and the reading thread makes one round trip for its read and
one for its claims per batch of requests. Only the reading thread uses it:
redis-py reconnects it after an error, as a pooled one. A Redis user whose ACL forbids
``CLIENT UNBLOCK`` (an ``@admin`` command) keeps the old wait, said once at
``INFO``. On the memory transport the reads use the worker's client, and a
wake is its ``interrupt()``.

The worker-based engine's reply reader reads the same way, and its alarm
(``_alarm``) wakes it at the next deadline it knows of: Redis ends a blocked
read only on its timer's tick, a tenth of a second apart.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from flowkit.engines.worker_based import _memory, _transport

if TYPE_CHECKING:
    import redis

__all__ = ["Reader", "open_reader"]

LOG = logging.getLogger("flowkit.engines.worker_based.worker")

#: What a worker whose Redis refuses the wake loses (said once at INFO).
_WORKER_REFUSED = (
    "the worker (%(error)s): a stop waits for the worker's read of requests to end, up to half a second"
)


class Reader:
    """The client a worker's blocking reads go through, and how to end one early.

    Args:
        client: the client to read with.
        pool_client: the worker's Redis client, on which the wake is sent
            (another connection than the read's); None on the memory transport.
        refused: what a refused wake costs, said once at INFO after "Redis
            refuses CLIENT UNBLOCK to ...".
        log: the logger that says it.
    """

    def __init__(
        self,
        client: _transport.Client,
        pool_client: redis.Redis | None,
        refused: str = _WORKER_REFUSED,
        log: logging.Logger = LOG,
    ) -> None:
        self.client = client
        self._pool_client = pool_client
        self._refused_text = refused
        self._log = log
        #: The read connection's ``CLIENT ID`` (None: not known, or wakes refused).
        self.client_id: int | None = None
        self._refused = False
        #: The pool of the read connection alone (None on the memory transport).
        self.own_pool: Any = None

    def note_connection(self, connection: Any) -> None:
        """Learn the id of the read connection, just (re)connected (redis-py's connect callback).

        A failure leaves the id unknown: the next stop waits out the block, as before.
        """
        try:
            connection.send_command("CLIENT", "ID")
            self.client_id = int(connection.read_response())
        except _transport.errors() as err:
            self.client_id = None
            self._log.debug("could not learn the id of the worker's read connection: %s", err)

    def wake(self) -> None:
        """End the blocking read now, if one is waiting (never raises).

        A read not waiting yet is not affected: it blocks for its time, as before.
        """
        if isinstance(self.client, _memory.MemoryClient):
            self.client.interrupt()
            return
        reading = self.client_id
        if reading is None or self._refused or self._pool_client is None:
            return
        try:
            self._pool_client.client_unblock(reading)
        except _transport.refusals() as err:
            self._refused = True
            self._log.info("Redis refuses CLIENT UNBLOCK to %s", self._refused_text % {"error": err})
        except _transport.errors() as err:
            self._log.debug("could not wake a blocked read: %s", err)

    def close(self) -> None:
        """Close the read connection (the memory transport's client stays)."""
        if self.own_pool is not None:
            self.own_pool.disconnect()


def open_reader(
    client: _transport.Client,
    refused: str = _WORKER_REFUSED,
    log: logging.Logger = LOG,
    *,
    borrow: bool = False,
) -> Reader:
    """A :class:`Reader` over ``client``: a connection of its own on Redis, ``client`` itself in memory.

    ``refused`` and ``log`` are :class:`Reader`'s. With ``borrow`` the
    connection is taken out of ``client``'s pool (one already made, when one
    is idle: the engine's, which opens a connection per run, then makes no
    more than it did before) and learns its id as the reading thread first
    uses it; it goes back to nobody: :meth:`Reader.close` closes it.

    Raises:
        redis.RedisError: Redis could not be reached (a ``_transport.errors()`` one).
    """
    if isinstance(client, _memory.MemoryClient):
        return Reader(client, None, refused, log)
    import redis

    borrowed = client.connection_pool.get_connection() if borrow else None
    pool = _one_connection_pool()(client.connection_pool)
    dedicated = redis.Redis(connection_pool=pool)
    reader = Reader(dedicated, client, refused, log)
    reader.own_pool = pool
    pool.connect_callback = reader.note_connection
    if borrowed is not None:
        pool.adopt(borrowed)
        return reader
    try:
        pool.get_connection()  # connects now, and learns its id
    except BaseException:
        dedicated.close()
        raise
    return reader


@functools.cache
def _one_connection_pool() -> type[Any]:
    """The class of a pool of one connection, handed out without a probe (made once redis is imported)."""
    import redis

    class OneConnectionPool(redis.ConnectionPool):
        """One connection with ``pool``'s options, for one thread: handed out as it is, never shared."""

        def __init__(self, pool: redis.ConnectionPool) -> None:
            super().__init__(connection_class=pool.connection_class, **pool.connection_kwargs)
            self.connect_callback: Any = None
            self._connection: Any = None
            self._adopted = False  # connected before it came here: its id is learned at first use

        def adopt(self, connection: Any) -> None:
            """Make ``connection`` (another pool's, checked out for good) this pool's one."""
            self._connection = connection
            self._adopted = True
            if self.connect_callback is not None:
                connection.register_connect_callback(self.connect_callback)

        def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
            connection: Any = self._connection
            if connection is None:
                connection = self._connection = self.make_connection()
                if self.connect_callback is not None:
                    connection.register_connect_callback(self.connect_callback)
            connection.connect()  # nothing to do once connected (a reconnection learns its id)
            if self._adopted:
                self._adopted = False
                if self.connect_callback is not None:
                    self.connect_callback(connection)
            return connection

        def release(self, connection: Any) -> None:
            """Kept: it is this pool's only connection."""

        def disconnect(self, inuse_connections: bool = True) -> None:
            if self._connection is not None:
                self._connection.disconnect()

    return OneConnectionPool
