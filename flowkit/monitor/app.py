"""The monitor's ASGI application: pages, JSON API, live stream, token check."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from flowkit import states
from flowkit._utils.text import log_safe
from flowkit.monitor import _data

__all__ = ["LOOPBACK_HOSTS", "Closing", "create_app", "host_name"]

LOG = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: Cookie that keeps a browser's token after it opened ``/?token=...``.
TOKEN_COOKIE = "flowkit_monitor_token"


def _starlette() -> Any:
    try:
        import starlette  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError("the monitor needs Starlette and uvicorn: pip install 'flowkit[monitor]'") from err


def create_app(
    connection: str | Any,
    token: str | None = None,
    poll_interval: float = 0.5,
    allowed_hosts: Iterable[str] | None = None,
    factories: Iterable[str] = (),
    closing: Closing | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Build the monitor for the backend at ``connection`` (a URL or a backend).

    Args:
        connection: a backend URL (fetched ``writable=False``, its store made if
            not there yet, see ``backends.ready_for_reading``, and closed
            with the app) or a backend object (left open).
        token: when set, requests must carry ``Authorization: Bearer TOKEN``.
        poll_interval: seconds between two reads of a watched flow (live view).
        allowed_hosts: when set, requests whose ``Host`` header names another
            host (port aside) get ``403``: what keeps a web page that rebinds
            its own name to 127.0.0.1 (DNS rebinding) from reading a monitor
            that listens on loopback without a token. ``flowkit monitor`` sets
            it to the loopback names when it binds a loopback address.
        factories: the recorded flow factories the monitor may import and
            call to draw a flow's graph, as dotted names or module prefixes
            ending in a dot (as a conductor's ``factories=``). None by
            default: anyone who can write a flow detail can name any function
            there, so a flow is drawn from what is stored (the shape
            ``flowkit run`` keeps, else its atoms and the links its event log
            recorded) unless its factory is listed.
        closing: what ends the open live streams when the server stops
            (:meth:`Closing.close`, called from the server's signal handler):
            a stream of a flow that never ends would otherwise never end, and
            a server that waits for its responses to finish before stopping
            (uvicorn) would never stop.
        clock: seconds, for how long a poll's read took (tests give a fake one):
            a stream waits at least :data:`READ_SHARE` times that before its
            next read, so watching a flow whose read is slow (10,000 atoms)
            leaves the backend to the run.

    Returns:
        A Starlette application.

    Raises:
        TypeError: ``factories`` is a single string or holds something else than strings.
    """
    _starlette()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from flowkit import exceptions as exc

    reader = _data.Reader(connection, factories)
    stopping = closing if closing is not None else Closing()
    outage = _Outage()

    async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            result = await asyncio.to_thread(fn, *args)
        except exc.StorageFailure as err:
            outage.failed(err)
            raise
        outage.answered()
        return result

    async def unavailable(_request: Request, err: Exception) -> Response:
        # The database went away (restarting, unreachable): say so in one line, as
        # the CLI would, and let the pages keep polling until it answers again.
        return JSONResponse({"error": _one_line(err)}, status_code=503)

    async def index(request: Request) -> Response:
        return _with_cookie(FileResponse(STATIC / "index.html"), request)

    async def flow_page(request: Request) -> Response:
        return _with_cookie(FileResponse(STATIC / "flow.html"), request)

    def bad_request(message: str) -> Response:
        """``400`` with the one-line ``{"error"}`` every refusal of the API carries."""
        return JSONResponse({"error": message}, status_code=400)

    async def api_flows(request: Request) -> Response:
        params = request.query_params
        state = params.get("state") or None
        if state and state.upper() not in states.FLOW_STATES:
            # As `flows list --state`: a misspelt state (FAILED) listed nothing, as if none had failed.
            known = ", ".join(sorted(states.FLOW_STATES))
            return bad_request(f"state '{state}' is no flow state; use one of {known}")
        before, after = params.get("before") or None, params.get("after") or None
        if before and after:
            return bad_request("give before= or after=, not both")
        limit: int | None = None
        if "limit" in params or before or after:
            text = params.get("limit") or str(DEFAULT_PAGE)
            try:
                limit = int(text)
            except ValueError:
                limit = 0
            if not 1 <= limit <= MAX_PAGE:
                return bad_request(f"limit={text!r} must be a whole number from 1 to {MAX_PAGE}")
        try:
            page = await in_thread(
                functools.partial(reader.page, limit, before, after, state, params.get("name") or None)
            )
        except _data.UnknownCursor as err:
            return bad_request(str(err))
        headers = {"X-Total-Count": str(page.total)}
        links = []
        for cursor, uuid, rel in (("before", page.older, "next"), ("after", page.newer, "prev")):
            if uuid is not None:
                target = request.url.remove_query_params(["before", "after", "limit"])
                target = target.include_query_params(limit=limit, **{cursor: uuid})
                links.append(f'<{target.path}?{target.query}>; rel="{rel}"')
        if links:
            headers["Link"] = ", ".join(links)
        return JSONResponse(page.rows, headers=headers)

    async def api_flow(request: Request) -> Response:
        found = await in_thread(reader.report, request.path_params["uuid"])
        if found is None:
            return JSONResponse({"error": f"no flow {request.path_params['uuid']}"}, status_code=404)
        return JSONResponse(found)

    async def api_graph(request: Request) -> Response:
        uuid, params = request.path_params["uuid"], request.query_params
        group = params.get("group")
        if group is not None:
            try:
                found = await in_thread(reader.graph_part, uuid, group)
            except _data.UnknownGroup as err:
                return JSONResponse({"error": str(err)}, status_code=404)
        elif params.get("summary", "").lower() in _YES:
            found = await in_thread(reader.graph_summary, uuid)
        else:
            found = await in_thread(reader.graph, uuid)
        if found is None:
            return JSONResponse({"error": f"no flow {request.path_params['uuid']}"}, status_code=404)
        # The client has this drawing already (its version moved, the drawing did not): say so briefly.
        return JSONResponse(_data.unchanged(found, params.get("drawing")) or found)

    async def api_stream(request: Request) -> Response:
        uuid = request.path_params["uuid"]
        unread: str | None = None
        took = 0.0  # how long the last read of the flow took (clock seconds)

        async def read() -> Any:
            nonlocal took
            began = clock()
            try:
                return await in_thread(reader.states, uuid)
            finally:
                took = clock() - began

        try:
            first: Any = await read()
        except exc.StorageFailure as err:
            # The stream says so, and goes on once the database answers.
            first, unread = _UNREAD, _one_line(err)
        if first is None:
            # 404 before any byte: an EventSource gives up instead of reconnecting.
            return JSONResponse({"error": f"no flow {uuid}"}, status_code=404)

        # ?changes=1 (what the page asks for): after the first snapshot, each one
        # carries only the atoms whose state changed, so a poll of a 10,000-atom
        # flow where one atom moved sends one atom, not 10,000.
        changes_only = request.query_params.get("changes", "").lower() in _YES

        async def events() -> AsyncIterator[str]:
            last: Any = None
            snapshot = first
            if unread is not None:
                yield _event("unavailable", {"error": unread})
            while True:
                if snapshot is None:  # deleted while watched: nothing more will come
                    yield _event("gone", {"error": f"flow {uuid} is no longer in the backend"})
                    return
                if snapshot is not _UNREAD:
                    if snapshot != last:
                        whole = not changes_only or last is None
                        sent = snapshot if whole else _data.changes(last, snapshot)
                        last = snapshot
                        yield f"data: {json.dumps(sent)}\n\n"
                    else:
                        yield ": still here\n\n"  # lets a closed connection be noticed
                    if snapshot["state"] in ENDED:
                        # A finished flow does not change: end rather than poll for nobody.
                        yield _event("end", {"state": snapshot["state"]})
                        return
                if await stopping.wait(max(poll_interval, READ_SHARE * took)):
                    # The server stops: end here, or it would wait for a flow that may never end.
                    yield _event("closing", {"error": "the monitor is stopping"})
                    return
                if await request.is_disconnected():
                    return
                try:
                    snapshot = await read()
                except exc.StorageFailure as err:
                    # Named, so a page's onmessage (which reads snapshots) is not handed it.
                    yield _event("unavailable", {"error": _one_line(err)})
                    last, snapshot = None, _UNREAD  # the first snapshot once it is back is sent

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    def _with_cookie(response: Response, request: Request) -> Response:
        given = request.query_params.get("token")
        if token is not None and given is not None:
            response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict")
        return response

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            stopping.close()
            reader.close()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/flows/{uuid}", flow_page),
            Route("/api/flows", api_flows),
            Route("/api/flows/{uuid}", api_flow),
            Route("/api/flows/{uuid}/graph", api_graph),
            Route("/api/flows/{uuid}/stream", api_stream),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
        exception_handlers={exc.StorageFailure: unavailable},
    )
    gated: Any = app if token is None else _TokenGate(app, token)
    if allowed_hosts is not None:
        gated = _HostGate(gated, allowed_hosts)
    return gated


#: The names a browser on this machine reaches a loopback address by.
LOOPBACK_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


def host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port or IPv6 brackets, lowercased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class _HostGate:
    """ASGI middleware: 403 unless the ``Host`` header names an allowed host.

    Checked before the token: a request for a rebound name is refused without
    saying whether a token would have been needed.
    """

    def __init__(self, app: Any, hosts: Iterable[str]) -> None:
        self.app = app
        self._hosts = frozenset(host_name(h) if h.startswith("[") else h.lower().rstrip(".") for h in hosts)

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] == "http":
            host = ""
            for key, value in scope.get("headers") or ():
                if key == b"host":
                    host = host_name(value.decode("latin-1")).rstrip(".")
                    break
            if host not in self._hosts:
                from starlette.responses import JSONResponse

                response = JSONResponse(
                    {"error": f"this monitor does not answer for host {host!r}"}, status_code=403
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


#: Flows per page of ``/api/flows`` when a cursor is given without ``limit=``, and the most one may ask.
DEFAULT_PAGE, MAX_PAGE = 100, 1000


#: The flow states after which a flow's stream ends: nothing changes them but a resume.
ENDED = frozenset({states.SUCCESS, states.FAILURE, states.REVERTED})
#: A stream waits at least this many times as long as its last read took before the next one:
#: a read of a 10,000-atom flow took longer than the 0.5 s between two polls, and a page
#: open on the flow kept the backend busy reading it (a SQLite run took twice as long).
READ_SHARE = 4.0
#: How ``?changes=`` is switched on (any other value, or none, sends whole snapshots).
_YES = frozenset({"1", "yes", "true", "on"})
#: A stream's snapshot while the database does not answer.
_UNREAD = object()


def _event(name: str, data: dict[str, Any]) -> str:
    """A named server-sent event (a page's ``onmessage``, which reads snapshots, is not handed it)."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _one_line(err: BaseException) -> str:
    from flowkit.cli._common import one_line

    return one_line(err)


class Closing:
    """Tells the live streams that the server stops, from any thread or a signal handler.

    uvicorn, told to stop, waits for every response to end before it tells
    the application (lifespan shutdown); a stream of a flow that is never run
    to its end never ends by itself. ``flowkit monitor`` calls :meth:`close`
    from the server's exit handler, so every stream ends at its next wait
    and the server stops within a poll interval.
    """

    def __init__(self) -> None:
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """End every stream at its next wait (and any stream opened from now on at its first)."""
        self._closed = True
        loop, event = self._loop, self._event
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def wait(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if closed meanwhile; return whether it is closed."""
        if self._event is None:
            self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
        if self._closed:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        return self._closed


class _Outage:
    """Logs a database outage once when it starts and once when it ends.

    Each page polls every few seconds: a traceback per request, as the server
    logged before, buried the one line that mattered.
    """

    def __init__(self) -> None:
        self._down = False

    def failed(self, err: BaseException) -> None:
        if not self._down:
            LOG.warning("the monitor cannot read its backend: %s", log_safe(_one_line(err)))
        self._down = True

    def answered(self) -> None:
        if self._down:
            LOG.warning("the monitor reads its backend again")
            self._down = False


class _TokenGate:
    """ASGI middleware: 401 unless the request carries the token.

    Accepted: ``Authorization: Bearer TOKEN``, the cookie a browser gets from
    ``/?token=TOKEN``, or that query parameter itself. Compared in constant time.
    """

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _allowed(self, scope: dict[str, Any]) -> bool:
        from starlette.requests import HTTPConnection

        conn = HTTPConnection(scope)
        offered: list[str] = []
        header = conn.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            offered.append(value.strip())
        if TOKEN_COOKIE in conn.cookies:
            offered.append(conn.cookies[TOKEN_COOKIE])
        if "token" in conn.query_params:
            offered.append(conn.query_params["token"])
        return any(hmac.compare_digest(o.encode(), self._token) for o in offered)

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            from starlette.responses import JSONResponse

            response = JSONResponse(
                # A browser cannot send the header: its way in is said too.
                {
                    "error": "a token is required: send 'Authorization: Bearer TOKEN', or, in a"
                    " browser, open /?token=TOKEN once (a cookie keeps it)"
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
