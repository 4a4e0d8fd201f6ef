"""`GET /tenants/{id}/events`: the events sent to the PBX, live, as server-sent events."""

from __future__ import annotations

from aiohttp import web

from bridge.models import TenantId
from bridge.web.keys import RUNTIME, services_of


async def events_stream(request: web.Request) -> web.StreamResponse:
    """Resumable: send ``Last-Event-ID`` (or ``?last_event_id=``) to continue after an event."""
    messages = services_of(request).messages
    tenant_id = TenantId(request.match_info["tenant_id"])
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    position = await messages.stream_position(tenant_id, last)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    items = messages.stream(tenant_id, position, request.app[RUNTIME].stopping)
    try:
        async for item in items:
            if item is None:
                await response.write(b": keepalive\n\n")
            else:
                await response.write(
                    f"id: {item.event_id}\nevent: {item.type}\ndata: {item.data}\n\n".encode()
                )
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        await items.aclose()
    return response
