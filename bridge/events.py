"""The events sent to the PBX (design §8): their shape, their conversation, their signature."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import assert_never

from bridge.ids import new_id
from bridge.models import EventId, Message, conversation_channel

RECEIVED = "message.received"
STATUS = "message.status"


def new_event_id() -> EventId:
    return EventId(new_id("evt"))


def conversation_key(message: Message) -> str:
    """Events of one thread (our number, their number, its channel) are delivered in order.
    An SMS thread keeps the key it had before WhatsApp (events queued across an upgrade keep
    their order); a WhatsApp thread with the same person is another conversation."""
    inbound = message.direction == "inbound"
    ours, theirs = (message.to, message.from_) if inbound else (message.from_, message.to)
    channel = conversation_channel(message.channel)
    if channel == "sms":
        return f"{message.tenant_id}:{ours}:{theirs}"
    if channel == "whatsapp":
        return f"{message.tenant_id}:whatsapp:{ours}:{theirs}"
    assert_never(channel)


def payload(event_id: EventId, event_type: str, message: Message) -> dict[str, object]:
    body = message.model_dump(mode="json", by_alias=True, exclude={"status_history"})
    return {
        "id": event_id,
        "type": event_type,
        "tenant_id": message.tenant_id,
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "message": body,
        "extensions": list(message.extensions),
    }


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 of ``timestamp.body`` with the tenant's delivery secret."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()
