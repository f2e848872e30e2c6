"""The web monitor: a small ASGI app that watches the flows of a persistence backend.

``flowkit monitor --connection URL`` serves it; :func:`create_app` builds it
for any ASGI server. Pages: the list of flows (filter by state), and a flow's
page with its graph coloured by atom state and updated live (server-sent
events), its report, event log and failures. The JSON API (``doc/monitor.rst``):

``GET /api/flows``
    every flow (``?state=FAILURE``, ``?name=TEXT`` filter), as ``flowkit flows list --json``;
    ``?limit=N&before=UUID`` (or ``after=``) pages it, ``Link`` naming the pages around.
``GET /api/flows/{uuid}``
    one flow's execution report, as ``flowkit flows show --json``.
``GET /api/flows/{uuid}/graph``
    its graph with node positions; ``?summary=1``, past 2,000 nodes, its
    summary (sub-flows as groups), and ``?group=ID`` one group of it alone.
``GET /api/flows/{uuid}/stream``
    server-sent events: ``{"state", "atoms": {name: state}}`` at each change,
    then ``event: end`` once the flow is finished, ``event: closing`` when the
    monitor stops (the pages say so and reconnect); ``404`` for an unknown uuid.

It only reads. With a token, every request must carry
``Authorization: Bearer TOKEN`` (a browser may open ``/?token=TOKEN`` once:
the token is then kept in a cookie); without it the answer is 401.
Needs ``pip install 'flowkit[monitor]'`` (Starlette and uvicorn).
"""

from __future__ import annotations

from flowkit.monitor.app import create_app

__all__ = ["create_app"]
