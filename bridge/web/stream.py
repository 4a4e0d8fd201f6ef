"""`GET /tenants/{id}/events`: the events sent to the PBX, live, as server-sent events."""

from __future__ import annotations

from aiohttp import web

from bridge.models import TenantId
from bridge.web.keys import RUNTIME, services_of
from bridge.web.params import text

_RESUME = (
    "Continue after this event id. 0 replays every stored event of the tenant from the "
    "first; an id the bridge does not know replays from the first too (nothing is skipped, "
    "and each event carries its id, so a client drops the ones it has). Without it the "
    "stream starts at the live end."
)
LAST_EVENT_ID = text("Last-Event-ID", _RESUME, max_length=100, where="header")
LAST_EVENT_ID_QUERY = text(
    "last_event_id",
    "The same as the Last-Event-ID header, for clients that cannot set one (a browser's "
    "EventSource on its first connection); the header wins when both are sent.",
    max_length=100,
)
EVENT_STREAM = (
    "text/event-stream: `id: <event id>`, `event: message.received | message.status`, "
    "`data: <the event's JSON, as POSTed to the delivery target>`; a `: keepalive` comment "
    "when idle."
)


async def events_stream(request: web.Request) -> web.StreamResponse:
    """Resumable: send ``Last-Event-ID`` (or ``?last_event_id=``) to continue after an event,
    ``0`` to replay from the first."""
    messages = services_of(request).messages
    tenant_id = TenantId(request.match_info["tenant_id"])
    last = LAST_EVENT_ID.read(request) or LAST_EVENT_ID_QUERY.read(request)
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
