"""The worker's blocking reads, on a connection a stop can wake: a stop need not wait out the block.

The Python worker's reading thread waits for requests in ``XREADGROUP ...
BLOCK`` of up to half a second (``worker.MAX_BLOCK``): shorter blocks would wake
an idle worker more often for nothing. A stop used to wait for that read to
end: an idle worker took 0.1-0.5 s to notice ``stop()`` or SIGTERM, every time.

:func:`open_reader` gives the reads a connection of their own (taken from the
worker's pool and kept, so no other command queues behind a block on it) and
learns its ``CLIENT ID`` (again after each reconnection); :meth:`Reader.wake`
sends ``CLIENT UNBLOCK`` for it on another connection of the pool, which ends
the read at once as if its block had run out. A Redis user whose ACL forbids
``CLIENT UNBLOCK`` (an ``@admin`` command) keeps the old wait, said once at
``INFO``. On the memory transport the reads use the worker's client, and a
wake is its ``interrupt()``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flowkit.engines.worker_based import _memory, _transport

if TYPE_CHECKING:
    import redis

__all__ = ["Reader", "open_reader"]

LOG = logging.getLogger("flowkit.engines.worker_based.worker")


class Reader:
    """The client a worker's blocking reads go through, and how to end one early.

    Args:
        client: the client to read with.
        pool_client: the worker's Redis client, on which the wake is sent
            (another connection than the read's); None on the memory transport.
    """

    def __init__(self, client: _transport.Client, pool_client: redis.Redis | None) -> None:
        self.client = client
        self._pool_client = pool_client
        #: The read connection's ``CLIENT ID`` (None: not known, or wakes refused).
        self.client_id: int | None = None
        self._refused = False

    def note_connection(self, connection: Any) -> None:
        """Learn the id of the read connection, just (re)connected (redis-py's connect callback).

        A failure leaves the id unknown: the next stop waits out the block, as before.
        """
        try:
            connection.send_command("CLIENT", "ID")
            self.client_id = int(connection.read_response())
        except _transport.errors() as err:
            self.client_id = None
            LOG.debug("could not learn the id of the worker's read connection: %s", err)

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
            LOG.info(
                "Redis refuses CLIENT UNBLOCK to the worker (%s): a stop waits for the worker's read"
                " of requests to end, up to half a second",
                err,
            )
        except _transport.errors() as err:
            LOG.debug("could not wake the worker's read of requests: %s", err)

    def close(self) -> None:
        """Give the read connection back to the pool (the memory transport's client stays)."""
        if self._pool_client is not None:
            self.client.close()


def open_reader(client: _transport.Client) -> Reader:
    """A :class:`Reader` over ``client``: a connection of its own on Redis, ``client`` itself in memory.

    Raises:
        redis.RedisError: Redis could not be reached (a ``_transport.errors()`` one).
    """
    if isinstance(client, _memory.MemoryClient):
        return Reader(client, None)
    import redis

    # One connection, taken from the worker's pool (its options: URL, TLS, timeouts,
    # retries) and kept until close(): a block on it holds up no other command.
    dedicated = redis.Redis(connection_pool=client.connection_pool, single_connection_client=True)
    reader = Reader(dedicated, client)
    connection = dedicated.connection
    assert connection is not None  # a single-connection client holds it from the start
    connection.register_connect_callback(reader.note_connection)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    try:
        reader.client_id = int(dedicated.client_id())
    except _transport.refusals() as err:  # CLIENT ID refused: wakes cannot name it
        LOG.debug("could not learn the id of the worker's read connection: %s", err)
    except BaseException:
        dedicated.close()
        raise
    return reader
