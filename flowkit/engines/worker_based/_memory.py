"""The in-process memory transport: the Redis commands the workers use, kept in dicts.

TaskFlow's users run engines and workers in one process on kombu's ``memory``
transport (its own tests and examples do). This module gives flowkit's worker
based engine and :class:`~flowkit.engines.worker_based.worker.Worker` the same:
``transport="memory"`` (or a ``memory://`` URL) hands them a
:class:`MemoryClient` instead of a Redis client, and the driver and the worker
run unchanged on it. It implements only the commands they send (streams with
one consumer group, pending entries and their take-over, hashes, sorted sets,
strings with expiry), with the replies redis-py gives for a client that does
not decode responses; ``tests/workers/test_memory_transport_contract.py`` runs
the same checks against a real Redis and this, so the two cannot drift apart.

Engines and workers find each other through a :class:`MemoryBroker`: one per
name in a process (``memory://`` is the unnamed one, ``memory://other`` another),
so nothing crosses a process boundary. What it costs: every command, and every
pipeline as a whole, holds the broker's one lock (so a pipeline is as atomic as
a ``MULTI`` block); a blocking read waits on a condition that every ``XADD``
wakes, so a reply is seen as soon as it is added, without polling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowkit.engines.worker_based._clock import SYSTEM, Clock

__all__ = [
    "SCHEME",
    "CommandError",
    "MemoryBroker",
    "MemoryClient",
    "MemoryPipeline",
    "TransportError",
    "broker",
    "connect",
    "is_memory_url",
]

#: The URL scheme of the memory transport.
SCHEME = "memory://"

_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"

#: A stream entry id: (milliseconds, sequence).
_Id = tuple[int, int]
#: A command of a block: the broker method, its arguments and keyword arguments.
_Command = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class TransportError(Exception):
    """Base of what the memory transport raises; it plays redis-py's ``RedisError``.

    The memory transport does not import redis (a plain ``pip install flowkit``
    has no redis client), so it has its own errors; ``_transport.errors()``
    catches these and redis-py's alike.
    """


class CommandError(TransportError):
    """A command refused, worded as Redis words it (``BUSYGROUP ...``, ``WRONGTYPE ...``).

    It plays redis-py's ``ResponseError``: ``_transport.refusals()`` catches both.
    """


def is_memory_url(url: object) -> bool:
    """Whether ``url`` names the memory transport (``memory://`` or ``memory://NAME``)."""
    return isinstance(url, str) and url.startswith(SCHEME)


def _bytes(value: Any) -> bytes:
    """A key, field or value as Redis stores it (redis-py's encoding rules)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        raise TypeError(f"invalid input of type 'bool': {value!r}; convert to bytes, str, int or float first")
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return repr(value).encode()
    raise TypeError(
        f"invalid input of type {type(value).__name__!r}; convert to bytes, str, int or float first"
    )


def _render(entry_id: _Id) -> bytes:
    return f"{entry_id[0]}-{entry_id[1]}".encode()


def _parse_id(value: Any, *, low: bool = True) -> _Id:
    """``"5-1"``, ``"5"`` (sequence 0 when ``low``, the largest otherwise), ``"-"`` or ``"+"``."""
    text = _bytes(value).decode()
    if text == "-":
        return (0, 0)
    if text == "+":
        return (2**64, 2**64)
    ms, sep, seq = text.partition("-")
    try:
        return (int(ms), int(seq) if sep else (0 if low else 2**64))
    except ValueError:
        raise CommandError("ERR Invalid stream ID specified as stream command argument") from None


@dataclass
class _Pending:
    consumer: bytes
    delivered_at: float  # the broker clock's monotonic seconds
    count: int


@dataclass
class _Group:
    last_delivered: _Id
    pending: dict[_Id, _Pending] = field(default_factory=dict)


@dataclass
class _Stream:
    entries: dict[_Id, dict[bytes, bytes]] = field(default_factory=dict)
    last_id: _Id = (0, 0)
    groups: dict[bytes, _Group] = field(default_factory=dict)


#: Keys with an expiry the broker holds before it first sweeps the expired ones.
_FIRST_SWEEP = 64


class MemoryBroker:
    """The keys of one in-process memory transport, shared by its engines and workers.

    Args:
        clock: what key expiry and the idle time of pending entries are measured
            with (default: the system clock). Blocking reads wait in real time.
    """

    def __init__(self, clock: Clock = SYSTEM) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._added = threading.Condition(self._lock)
        self._values: dict[bytes, Any] = {}
        self._expires: dict[bytes, float] = {}  # key -> monotonic deadline
        #: How many keys with an expiry make the next one set sweep them (see _expiring).
        self._sweep_at = _FIRST_SWEEP

    # -- running commands (the caller holds the lock) ------------------------------

    def run(
        self, commands: Iterable[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]
    ) -> list[Any]:
        """Run ``commands`` as one atomic block; an error is returned in its place."""
        results: list[Any] = []
        with self._lock:
            for command, args, kwargs in commands:
                try:
                    results.append(command(self, *args, **kwargs))
                except CommandError as err:
                    results.append(err)
        return results

    def read_blocking(self, read: Callable[[], Any], block_ms: int | None, client: MemoryClient) -> Any:
        """Run ``read`` until it finds something, ``block_ms`` passes or ``client`` is interrupted.

        The block is real time, as on Redis, whatever the broker's clock.
        """
        with self._added:
            reply = read()
            if reply or block_ms is None:
                return reply
            deadline = time.monotonic() + block_ms / 1000
            while not reply:
                left = deadline - time.monotonic()
                if left <= 0 or client.interrupted:
                    break
                self._added.wait(left)
                reply = read()
            client.interrupted = False
            return reply

    def interrupt(self, client: MemoryClient) -> None:
        """End ``client``'s blocking read now, or its next one if none is waiting."""
        with self._added:
            client.interrupted = True
            self._added.notify_all()

    def _now(self) -> float:
        return self._clock.monotonic()

    def _get(self, key: bytes, kind: type | None) -> Any:
        """The live value of ``key`` (None when absent or expired), which must be a ``kind``."""
        deadline = self._expires.get(key)
        if deadline is not None and self._now() >= deadline:
            del self._expires[key]
            self._values.pop(key, None)
        value = self._values.get(key)
        if value is not None and kind is not None and type(value) is not kind:
            raise CommandError(_WRONGTYPE)
        return value

    def _make(self, key: bytes, kind: type) -> Any:
        value = self._get(key, kind)
        if value is None:
            value = self._values[key] = kind()
        return value

    def _stream(self, key: Any) -> _Stream | None:
        stream: _Stream | None = self._get(_bytes(key), _Stream)
        return stream

    def _group(self, key: Any, group: Any) -> tuple[_Stream, _Group]:
        stream = self._stream(key)
        found = None if stream is None else stream.groups.get(_bytes(group))
        if stream is None or found is None:
            raise CommandError(
                f"NOGROUP No such key '{_bytes(key).decode()}' or consumer group '{_bytes(group).decode()}'"
            )
        return stream, found

    # -- keys ------------------------------------------------------------------------

    def delete(self, *keys: Any) -> int:
        gone = 0
        for key in map(_bytes, keys):
            if self._get(key, None) is not None:
                gone += 1
            self._values.pop(key, None)
            self._expires.pop(key, None)
        return gone

    def exists(self, *keys: Any) -> int:
        return sum(self._get(_bytes(key), None) is not None for key in keys)

    def pexpire(self, key: Any, ms: int) -> bool:
        name = _bytes(key)
        if self._get(name, None) is None:
            return False
        self._expiring(name, int(ms))
        return True

    # -- strings ---------------------------------------------------------------------

    def set(self, key: Any, value: Any, nx: bool = False, px: int | None = None) -> bool | None:
        name = _bytes(key)
        if nx and self._get(name, None) is not None:
            return None
        self._values[name] = _bytes(value)
        self._expires.pop(name, None)
        if px is not None:
            self._expiring(name, int(px))
        return True

    def _expiring(self, name: bytes, ms: int) -> None:
        """Give ``name`` an expiry, first dropping every expired key once enough have one.

        An expired key went only when it was read again, as Redis's lazy expiry does;
        Redis also drops expired keys it samples in the background, and without that a
        worker's ``seen:<request id>`` marks (written once, never read again) stayed
        here one per request for as long as the process ran. Swept when the keys with
        an expiry have doubled since the last sweep: a constant cost per key set.
        """
        expires = self._expires
        if len(expires) >= self._sweep_at:
            now = self._now()
            for key in [key for key, deadline in expires.items() if now >= deadline]:
                del expires[key]
                self._values.pop(key, None)
            self._sweep_at = max(_FIRST_SWEEP, 2 * len(expires))
        expires[name] = self._now() + ms / 1000

    def get(self, key: Any) -> bytes | None:
        value: bytes | None = self._get(_bytes(key), bytes)
        return value

    # -- hashes ----------------------------------------------------------------------

    def hset(self, key: Any, mapping: Mapping[Any, Any]) -> int:
        fields: _Hash = self._make(_bytes(key), _Hash)
        added = 0
        for name, value in mapping.items():
            added += _bytes(name) not in fields
            fields[_bytes(name)] = _bytes(value)
        return added

    def hgetall(self, key: Any) -> dict[bytes, bytes]:
        return dict(self._get(_bytes(key), _Hash) or {})

    # -- sorted sets -----------------------------------------------------------------

    def zadd(self, key: Any, mapping: Mapping[Any, Any], gt: bool = False) -> int:
        members: _ZSet = self._make(_bytes(key), _ZSet)
        added = 0
        for member, score in mapping.items():
            name, value = _bytes(member), float(score)
            old = members.get(name)
            if old is None:
                added += 1
            elif gt and value <= old:  # GT: an existing score only ever rises
                continue
            members[name] = value
        return added

    def zrem(self, key: Any, *members: Any) -> int:
        found: _ZSet | None = self._get(_bytes(key), _ZSet)
        if found is None:
            return 0
        removed = sum(found.pop(_bytes(member), None) is not None for member in members)
        self._drop_if_empty(_bytes(key), found)
        return removed

    def zremrangebyscore(self, key: Any, low: Any, high: Any) -> int:
        found: _ZSet | None = self._get(_bytes(key), _ZSet)
        if found is None:
            return 0
        inside = _score_test(low, high)
        doomed = [member for member, score in found.items() if inside(score)]
        for member in doomed:
            del found[member]
        self._drop_if_empty(_bytes(key), found)
        return len(doomed)

    def zrange(self, key: Any, start: int, end: int) -> list[bytes]:
        found: _ZSet | None = self._get(_bytes(key), _ZSet)
        ordered = sorted((found or {}).items(), key=lambda item: (item[1], item[0]))
        members = [member for member, _ in ordered]
        stop = len(members) if end == -1 else end + 1
        return members[start:stop]

    def _drop_if_empty(self, key: bytes, value: Any) -> None:
        if not value:  # Redis deletes an emptied set or hash
            self._values.pop(key, None)
            self._expires.pop(key, None)

    # -- streams -----------------------------------------------------------------------

    def xadd(self, key: Any, fields: Mapping[Any, Any], maxlen: int | None = None) -> bytes:
        stream: _Stream = self._make(_bytes(key), _Stream)
        ms = max(int(time.time() * 1000), stream.last_id[0])
        entry_id = (ms, stream.last_id[1] + 1 if ms == stream.last_id[0] else 0)
        if entry_id == (0, 0):
            entry_id = (0, 1)
        stream.last_id = entry_id
        stream.entries[entry_id] = {_bytes(name): _bytes(value) for name, value in fields.items()}
        if maxlen is not None:
            while len(stream.entries) > maxlen:
                del stream.entries[next(iter(stream.entries))]
        self._added.notify_all()
        return _render(entry_id)

    def xdel(self, key: Any, *ids: Any) -> int:
        stream = self._stream(key)
        if stream is None:
            return 0
        return sum(stream.entries.pop(_parse_id(entry_id), None) is not None for entry_id in ids)

    def xtrim(self, key: Any, minid: Any) -> int:
        stream = self._stream(key)
        if stream is None:
            return 0
        floor = _parse_id(minid)
        doomed = [entry_id for entry_id in stream.entries if entry_id < floor]
        for entry_id in doomed:
            del stream.entries[entry_id]
        return len(doomed)

    def xgroup_create(self, key: Any, group: Any, entry_id: Any, mkstream: bool) -> bool:
        stream = self._stream(key)
        if stream is None:
            if not mkstream:
                raise CommandError(
                    "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want"
                    " to use the MKSTREAM option to create an empty stream automatically."
                )
            stream = self._make(_bytes(key), _Stream)
        name = _bytes(group)
        if name in stream.groups:
            raise CommandError("BUSYGROUP Consumer Group name already exists")
        start = stream.last_id if _bytes(entry_id) == b"$" else _parse_id(entry_id)
        stream.groups[name] = _Group(last_delivered=start)
        return True

    def xrevrange(self, key: Any, high: Any, low: Any, count: int | None) -> list[Any]:
        """The entries of ``key`` from ``high`` down to ``low`` (ids, or ``+`` and ``-``), newest first."""
        stream = self._stream(key)
        if stream is None:
            return []
        top, bottom = _parse_id(high, low=False), _parse_id(low)
        items = [(_render(i), dict(f)) for i, f in reversed(stream.entries.items()) if bottom <= i <= top]
        return items if count is None else items[:count]

    def xread(self, streams: Mapping[Any, Any], count: int | None) -> list[Any]:
        reply = []
        for key, after in streams.items():
            stream = self._stream(key)
            if stream is None:
                continue
            last = stream.last_id if _bytes(after) == b"$" else _parse_id(after)
            items = [(_render(i), dict(f)) for i, f in stream.entries.items() if i > last][:count]
            if items:
                reply.append([_bytes(key), items])
        return reply

    def xreadgroup(
        self, group: Any, consumer: Any, streams: Mapping[Any, Any], count: int | None
    ) -> list[Any]:
        reply = []
        for key, after in streams.items():
            stream, found = self._group(key, group)
            if _bytes(after) != b">":  # the consumer's own pending entries
                floor = _parse_id(after)
                mine = [i for i, p in found.pending.items() if p.consumer == _bytes(consumer) and i > floor]
                items = [(_render(i), dict(stream.entries.get(i, {}))) for i in sorted(mine)][:count]
                reply.append([_bytes(key), items])
                continue
            fresh = [i for i in stream.entries if i > found.last_delivered][:count]
            if not fresh:
                continue
            now = self._now()
            for entry_id in fresh:
                found.pending[entry_id] = _Pending(_bytes(consumer), now, 1)
            found.last_delivered = fresh[-1]
            reply.append([_bytes(key), [(_render(i), dict(stream.entries[i])) for i in fresh]])
        return reply

    def xack(self, key: Any, group: Any, *ids: Any) -> int:
        stream = self._stream(key)
        found = None if stream is None else stream.groups.get(_bytes(group))
        if found is None:
            return 0
        return sum(found.pending.pop(_parse_id(entry_id), None) is not None for entry_id in ids)

    def xinfo_consumers(self, key: Any, group: Any) -> list[dict[str, Any]]:
        """XINFO CONSUMERS, of the consumers holding entries (the only ones this broker knows).

        Their ``idle`` is 0: a consumer is never taken for a dead one here,
        where a worker's entries are taken over by their own idle time.
        """
        _, found = self._group(key, group)
        held: dict[bytes, int] = {}
        for pending in found.pending.values():
            held[pending.consumer] = held.get(pending.consumer, 0) + 1
        return [{"name": name, "pending": count, "idle": 0} for name, count in held.items()]

    def xgroup_delconsumer(self, key: Any, group: Any, consumer: Any) -> int:
        """XGROUP DELCONSUMER: the consumer's pending entries are dropped with it; returns how many."""
        _, found = self._group(key, group)
        name = _bytes(consumer)
        dropped = [entry_id for entry_id, pending in found.pending.items() if pending.consumer == name]
        for entry_id in dropped:
            del found.pending[entry_id]
        return len(dropped)

    def xclaim(
        self, key: Any, group: Any, consumer: Any, min_idle_ms: int, ids: Iterable[Any]
    ) -> list[bytes]:
        """XCLAIM with JUSTID: ownership moves and idle time restarts, the delivery count stays."""
        _, found = self._group(key, group)
        now = self._now()
        claimed = []
        for raw in ids:
            entry_id = _parse_id(raw)
            pending = found.pending.get(entry_id)
            if pending is None or (now - pending.delivered_at) * 1000 < min_idle_ms:
                continue
            pending.consumer = _bytes(consumer)
            pending.delivered_at = now
            claimed.append(_render(entry_id))
        return claimed

    def xautoclaim(
        self, key: Any, group: Any, consumer: Any, min_idle_ms: int, start: Any, count: int
    ) -> list[Any]:
        """XAUTOCLAIM: [next start id, claimed entries, ids of deleted entries dropped from the PEL]."""
        stream, found = self._group(key, group)
        now = self._now()
        floor = _parse_id(start)
        claimed: list[tuple[bytes, dict[bytes, bytes]]] = []
        deleted: list[bytes] = []
        next_start = b"0-0"
        for entry_id in sorted(i for i in found.pending if i >= floor):
            if len(claimed) >= count:
                next_start = _render(entry_id)
                break
            fields = stream.entries.get(entry_id)
            if fields is None:  # deleted: dropped from the list, however recently delivered
                del found.pending[entry_id]
                deleted.append(_render(entry_id))
                continue
            pending = found.pending[entry_id]
            if (now - pending.delivered_at) * 1000 < min_idle_ms:
                continue
            pending.consumer = _bytes(consumer)
            pending.delivered_at = now
            pending.count += 1
            claimed.append((_render(entry_id), dict(fields)))
        return [next_start, claimed, deleted]

    def xpending_range(
        self, key: Any, group: Any, low: Any, high: Any, count: int, consumer: Any | None
    ) -> list[dict[str, Any]]:
        _, found = self._group(key, group)
        first, last = _parse_id(low), _parse_id(high, low=False)
        now = self._now()
        rows = []
        for entry_id in sorted(found.pending):
            pending = found.pending[entry_id]
            if not first <= entry_id <= last or (
                consumer is not None and pending.consumer != _bytes(consumer)
            ):
                continue
            rows.append(
                {
                    "message_id": _render(entry_id),
                    "consumer": pending.consumer,
                    "time_since_delivered": int((now - pending.delivered_at) * 1000),
                    "times_delivered": pending.count,
                }
            )
        return rows[:count]


class _ZSet(dict[bytes, float]):
    """A sorted set: member -> score (ordered when read)."""


class _Hash(dict[bytes, bytes]):
    """A hash: field -> value."""


def _score_test(low: Any, high: Any) -> Callable[[float], bool]:
    """The test ``score in [low, high]`` for ZREMRANGEBYSCORE bounds (``-inf``, ``(5`` exclusive)."""

    def bound(raw: Any) -> tuple[float, bool]:
        text = _bytes(raw).decode()
        exclusive = text.startswith("(")
        return float(text[1:] if exclusive else text), exclusive

    (lo, lo_open), (hi, hi_open) = bound(low), bound(high)

    def inside(score: float) -> bool:
        above = score > lo if lo_open else score >= lo
        below = score < hi if hi_open else score <= hi
        return above and below

    return inside


class _Commands:
    """The commands flowkit sends, with redis-py's names and arguments; subclasses say when they run."""

    def _do(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def delete(self, *names: Any) -> Any:
        return self._do(MemoryBroker.delete, *names)

    def exists(self, *names: Any) -> Any:
        return self._do(MemoryBroker.exists, *names)

    def pexpire(self, name: Any, time: int) -> Any:
        return self._do(MemoryBroker.pexpire, name, time)

    def set(self, name: Any, value: Any, nx: bool = False, px: int | None = None) -> Any:
        return self._do(MemoryBroker.set, name, value, nx=nx, px=px)

    def get(self, name: Any) -> Any:
        return self._do(MemoryBroker.get, name)

    def hset(self, name: Any, mapping: Mapping[Any, Any]) -> Any:
        return self._do(MemoryBroker.hset, name, mapping)

    def hgetall(self, name: Any) -> Any:
        return self._do(MemoryBroker.hgetall, name)

    def zadd(self, name: Any, mapping: Mapping[Any, Any], gt: bool = False) -> Any:
        return self._do(MemoryBroker.zadd, name, mapping, gt=gt)

    def zrem(self, name: Any, *values: Any) -> Any:
        return self._do(MemoryBroker.zrem, name, *values)

    def zremrangebyscore(self, name: Any, min: Any, max: Any) -> Any:  # noqa: A002 (redis-py's names)
        return self._do(MemoryBroker.zremrangebyscore, name, min, max)

    def zrange(self, name: Any, start: int, end: int) -> Any:
        return self._do(MemoryBroker.zrange, name, start, end)

    def xadd(
        self, name: Any, fields: Mapping[Any, Any], maxlen: int | None = None, approximate: bool = True
    ) -> Any:
        return self._do(MemoryBroker.xadd, name, fields, maxlen)

    def xdel(self, name: Any, *ids: Any) -> Any:
        return self._do(MemoryBroker.xdel, name, *ids)

    def xrevrange(self, name: Any, max: Any = "+", min: Any = "-", count: int | None = None) -> Any:  # noqa: A002
        return self._do(MemoryBroker.xrevrange, name, max, min, count)

    def xtrim(self, name: Any, minid: Any, approximate: bool = True) -> Any:
        return self._do(MemoryBroker.xtrim, name, minid)

    def xgroup_create(self, name: Any, groupname: Any, id: Any = "$", mkstream: bool = False) -> Any:  # noqa: A002
        return self._do(MemoryBroker.xgroup_create, name, groupname, id, mkstream)

    def xack(self, name: Any, groupname: Any, *ids: Any) -> Any:
        return self._do(MemoryBroker.xack, name, groupname, *ids)

    def xinfo_consumers(self, name: Any, groupname: Any) -> Any:
        return self._do(MemoryBroker.xinfo_consumers, name, groupname)

    def xgroup_delconsumer(self, name: Any, groupname: Any, consumername: Any) -> Any:
        return self._do(MemoryBroker.xgroup_delconsumer, name, groupname, consumername)

    def xclaim(
        self,
        name: Any,
        groupname: Any,
        consumername: Any,
        min_idle_time: int,
        message_ids: Any,
        justid: bool = False,
    ) -> Any:
        if not justid:
            raise NotImplementedError("the memory transport implements XCLAIM with JUSTID only")
        return self._do(MemoryBroker.xclaim, name, groupname, consumername, min_idle_time, message_ids)

    def xpending_range(
        self,
        name: Any,
        groupname: Any,
        min: Any,  # noqa: A002 (redis-py's names)
        max: Any,  # noqa: A002 (redis-py's names)
        count: int,
        consumername: Any = None,
    ) -> Any:
        return self._do(MemoryBroker.xpending_range, name, groupname, min, max, count, consumername)


class MemoryPipeline(_Commands):
    """Commands queued and run as one atomic block by :meth:`execute` (transaction or not)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._queued: list[_Command] = []

    def _do(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> MemoryPipeline:
        self._queued.append((command, args, kwargs))
        return self

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Run the queued commands; an error is raised, or left in its place with ``raise_on_error=False``."""
        queued, self._queued = self._queued, []
        results = self._broker.run(queued)
        if raise_on_error:
            for result in results:
                if isinstance(result, CommandError):
                    raise result
        return results

    def xreadgroup(
        self, groupname: Any, consumername: Any, streams: Mapping[Any, Any], count: int | None = None
    ) -> MemoryPipeline:
        """Queue a read that does not block, as Redis runs one inside a pipeline.

        A worker sends it in the round trip of its replay claims, so the memory
        transport must take it too; there is no ``block``: a pipeline never waits.
        """
        return self._do(MemoryBroker.xreadgroup, groupname, consumername, streams, count)


class MemoryClient(_Commands):
    """A client of one :class:`MemoryBroker` with the face of a (non-decoding) Redis client."""

    def __init__(self, broker: MemoryBroker, url: str = SCHEME) -> None:
        self.broker = broker
        self.url = url
        #: Set by :meth:`interrupt`, cleared by the blocking read it ends (under the broker's lock).
        self.interrupted = False

    def __repr__(self) -> str:
        return f"<MemoryClient {self.url}>"

    def _do(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = self.broker.run([(command, args, kwargs)])[0]
        if isinstance(result, CommandError):
            raise result
        return result

    def pipeline(self, transaction: bool = True) -> MemoryPipeline:
        """A pipeline; with or without ``transaction`` its commands run as one block."""
        return MemoryPipeline(self.broker)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release: the broker lives as long as the process."""

    def interrupt(self) -> None:
        """End this client's blocking read at once (or its next one): a stopping worker stops waiting.

        On Redis a stop sends ``CLIENT UNBLOCK`` for the same effect (see
        ``_wakeable``).
        """
        self.broker.interrupt(self)

    def xread(self, streams: Mapping[Any, Any], count: int | None = None, block: int | None = None) -> Any:
        broker = self.broker
        return broker.read_blocking(lambda: broker.xread(streams, count), block, self)

    def xreadgroup(
        self,
        groupname: Any,
        consumername: Any,
        streams: Mapping[Any, Any],
        count: int | None = None,
        block: int | None = None,
    ) -> Any:
        broker = self.broker
        return broker.read_blocking(
            lambda: broker.xreadgroup(groupname, consumername, streams, count), block, self
        )

    def xautoclaim(
        self,
        name: Any,
        groupname: Any,
        consumername: Any,
        min_idle_time: int,
        start_id: Any = "0-0",
        count: int | None = None,
    ) -> Any:
        return self._do(
            MemoryBroker.xautoclaim, name, groupname, consumername, min_idle_time, start_id, count or 100
        )


#: The brokers of this process, by name (the part of the URL after ``memory://``).
_BROKERS: dict[str, MemoryBroker] = {}
_BROKERS_LOCK = threading.Lock()


def broker(name: str = "") -> MemoryBroker:
    """The broker called ``name`` in this process, made on first use."""
    with _BROKERS_LOCK:
        found = _BROKERS.get(name)
        if found is None:
            found = _BROKERS[name] = MemoryBroker()
        return found


def connect(url: str = SCHEME) -> MemoryClient:
    """A client of the broker ``url`` names (``memory://`` or ``memory://NAME``)."""
    if not is_memory_url(url):
        raise ValueError(f"not a memory transport URL: {url!r} (expected memory:// or memory://NAME)")
    name = url[len(SCHEME) :].strip("/")
    return MemoryClient(broker(name), url)
