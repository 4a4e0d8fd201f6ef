"""API models of texts: messages, their media and history, sends, opt-outs, explanations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Tag,
)

from bridge.models.values import (
    ApiModel,
    Channel,
    ConfigId,
    EventId,
    ExtensionName,
    MessageId,
    SendChannel,
    TenantId,
    implied_tag,
)

# --- messages ---------------------------------------------------------------------------------

Direction = Literal["inbound", "outbound"]
# Twilio's message statuses, and the bridge's own first one (`accepted`: stored, waiting).
OutboundStatus = Literal[
    "accepted",
    "scheduled",
    "queued",
    "sending",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "canceled",
    "read",
]
InboundStatus = Literal["received", "unroutable"]
MessageStatus = Literal[OutboundStatus, InboundStatus]
FINAL_STATUSES: frozenset[OutboundStatus] = frozenset(
    {"delivered", "undelivered", "failed", "canceled", "read"}
)
# Where an event on its way to the PBX stands: held (waiting for its media), pending, or done.
DeliveryStatus = Literal["held", "pending", "delivered", "dead"]
DeliveryChannel = Literal["webhook", "sip"]
MediaStatus = Literal["pending", "stored", "failed"]

# Twilio's statuses in the order they may follow each other (Twilio's status docs); a status never
# replaces one of a higher rank.
STATUS_RANK: dict[OutboundStatus, int] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}
_OUTBOUND_STATUSES: dict[str, OutboundStatus] = {name: name for name in get_args(OutboundStatus)}


def outbound_status(text: str) -> OutboundStatus | None:
    """A status as Twilio writes it, if the bridge knows it (new ones are ignored, not guessed)."""
    return _OUTBOUND_STATUSES.get(text.strip().lower())


class MediaItem(BaseModel):
    index: int
    content_type: str | None
    size: int | None
    status: MediaStatus


class StatusChange(BaseModel):
    status: MessageStatus
    error_code: int | None
    at: datetime


class DeliveryState(BaseModel):
    """Where a text stands on one channel to the PBX: an event to the delivery target
    (``webhook``), or a MESSAGE to one extension's phone (``sip``, design §10)."""

    channel: DeliveryChannel = "webhook"
    extension: str | None = None
    event_id: EventId | None = None
    type: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


class Message(BaseModel):
    """A text as the API and the PBX see it."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: MessageId
    tenant_id: TenantId
    config_id: ConfigId | None
    direction: Direction
    status: MessageStatus
    channel: Channel = Field(
        default="sms",
        description="How it travelled: sms, whatsapp, or rcs (a Messaging Service's RCS sender "
        "delivered it); from and to are shown without Twilio's whatsapp: or rcs: prefix",
    )
    from_: str = Field(alias="from")
    to: str
    body: str
    content_sid: str | None = Field(
        default=None, description="The approved WhatsApp template (HX…) sent instead of a body"
    )
    content_variables: dict[str, str] | None = Field(
        default=None, description="The template's variables"
    )
    extensions: list[str]
    segments: int
    encoding: str
    media: list[MediaItem]
    twilio_sid: str | None
    error_code: int | None
    error_message: str | None
    error_advice: str | None = Field(
        default=None, description="What to do about error_code (Twilio's error dictionary)"
    )
    routing: dict[str, object] = Field(
        default_factory=dict, description="The routing decision and why it was made"
    )
    created_at: datetime
    updated_at: datetime
    status_history: list[StatusChange] | None = None
    deliveries: list[DeliveryState] | None = None


@dataclass(frozen=True)
class MessageFilter:
    """What a message list may be narrowed to; ``None`` is "any"."""

    direction: Direction | None = None
    status: str | None = None
    config_id: str | None = None
    number: str | None = None
    channel: Channel | None = None


class OptOut(BaseModel):
    config_id: ConfigId
    number: str
    channel: SendChannel = Field(
        default="sms", description="Opt-outs are per channel: a WhatsApp STOP stops WhatsApp"
    )
    keyword: str
    opted_out_at: datetime


class InboundExplainRequest(ApiModel):
    direction: Literal["inbound"] = "inbound"
    to: str
    from_: str = Field(alias="from")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class OutboundExplainRequest(ApiModel):
    direction: Literal["outbound"] = "outbound"
    from_extension: ExtensionName
    to: Annotated[str, Field(min_length=1, max_length=49)]
    from_did: str | None = None
    channel: SendChannel | None = Field(
        default=None, description="whatsapp, or sms; default: whatsapp when to is whatsapp:+…"
    )


ExplainRequest = Annotated[
    Annotated[InboundExplainRequest, Tag("inbound")]
    | Annotated[OutboundExplainRequest, Tag("outbound")],
    implied_tag("direction", "inbound", {"from_extension": "outbound", "from_did": "outbound"}),
]


# --- sending ----------------------------------------------------------------------------------

MAX_BODY_CHARS = 1600


class InlineMedia(ApiModel):
    content_type: Annotated[str, Field(pattern=r"^[\w.+-]+/[\w.+-]+$", max_length=100)]
    data_base64: str


class MediaByUrl(ApiModel):
    url: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2000)]


# A template's variables, as Twilio's ContentVariables JSON string carries them: names to texts.
ContentVariables = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=100)],
        Annotated[str, Field(min_length=1, max_length=MAX_BODY_CHARS)],
    ],
    Field(max_length=100),
]


class SendRequest(ApiModel):
    """A text from an extension; body and media limits are checked by the service with codes."""

    from_extension: ExtensionName
    to: Annotated[str, Field(min_length=1, max_length=49)] = Field(
        description="The number as dialled; whatsapp:+… sends by WhatsApp"
    )
    body: str = ""
    media: list[InlineMedia | MediaByUrl] = Field(default_factory=list)
    from_did: str | None = None
    channel: SendChannel | None = Field(
        default=None, description="whatsapp, or sms; default: whatsapp when to is whatsapp:+…"
    )
    content_sid: Annotated[str, Field(pattern=r"^HX[0-9a-fA-F]{32}$")] | None = Field(
        default=None,
        description="An approved WhatsApp template (HX…), sent instead of body and media: the "
        "only way to write outside the 24-hour window the customer's last message opened",
    )
    content_variables: ContentVariables | None = Field(
        default=None, description='The template\'s variables, e.g. {"1": "Jane"}'
    )


class TestMessageRequest(ApiModel):
    to: Annotated[str, Field(min_length=1, max_length=40)]
    body: Annotated[str, Field(max_length=MAX_BODY_CHARS)] = "Test message from pbx-sms-bridge"
