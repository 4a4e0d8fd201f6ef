"""`GET /tenants/{id}/events`: the events sent to the PBX, live, as server-sent events."""

from __future__ import annotations

import time

from aiohttp import web

from bridge.db.notify import EVENTS, wait_for
from bridge.models import TenantId
from bridge.web.keys import RUNTIME, services_of

KEEPALIVE_SECONDS = 15.0
BATCH = 100


async def events_stream(request: web.Request) -> web.StreamResponse:
    """Resumable: send ``Last-Event-ID`` (or ``?last_event_id=``) to continue after an event."""
    services = services_of(request)
    tenant_id = TenantId(request.match_info["tenant_id"])
    await services.messages.require_tenant(tenant_id)
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    position = await services.messages.stream_position(tenant_id, last)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    stopping = request.app[RUNTIME].stopping
    quiet_since = time.monotonic()
    try:
        while not stopping.is_set():
            wake = services.listener.waiter(EVENTS)
            batch = await services.messages.stream_after(tenant_id, position, BATCH)
            for seq, event_id, event_type, data in batch:
                await response.write(
                    f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n".encode()
                )
                position = seq
            if batch:
                quiet_since = time.monotonic()
                continue
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                await response.write(b": keepalive\n\n")
                quiet_since = time.monotonic()
            await wait_for(wake, 1.0)
    except (ConnectionResetError, ConnectionError):
        pass
    return response
