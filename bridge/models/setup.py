"""API models of Twilio set-up from the bridge and of the diagnosis (design §11)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from bridge.models.values import E164, ApiModel, ConfigId, TenantId

NumberState = Literal["ok", "points_elsewhere", "empty", "not_on_account", "service_overrides"]
SignatureCause = Literal[
    "scheme_mismatch", "host_mismatch", "port_mismatch", "path_mismatch", "wrong_auth_token"
]


class Capabilities(BaseModel):
    sms: bool
    mms: bool


class NumberSetup(BaseModel):
    """One number of the configuration as Twilio has it, and whether its texts reach us."""

    number: str
    found: bool
    twilio_sid: str | None = None
    capabilities: Capabilities | None = None
    sms_url: str | None = None
    sms_method: str | None = None
    state: NumberState
    detail: str


class ServiceSetup(BaseModel):
    """The configuration's Messaging Service: its inbound URL wins unless it defers."""

    sid: str
    found: bool
    inbound_request_url: str | None = None
    use_inbound_webhook_on_number: bool | None = None
    numbers: list[str] = Field(default_factory=list, description="The service's sender pool")


class TwilioSetup(BaseModel):
    """What `GET …/twilio-setup` reads from Twilio with the configuration's credentials."""

    config_id: ConfigId
    webhook_url: str
    numbers: list[NumberSetup]
    messaging_service: ServiceSetup | None = None


class TwilioSetupRequest(ApiModel):
    """Which numbers to point at the configuration's webhook URL: some, or all of them."""

    numbers: list[E164] | Literal["all"] = "all"


class SetupChange(BaseModel):
    """One change made at Twilio, with the value it replaced (so it can be undone)."""

    target: Literal["number", "messaging_service"]
    sid: str
    number: str | None = None
    field: Literal["SmsUrl", "SmsMethod", "InboundRequestUrl", "InboundMethod"]
    previous: str | None
    new: str


class TwilioSetupApplied(BaseModel):
    """What `POST …/twilio-setup` changed, and how things stand afterwards."""

    changes: list[SetupChange]
    setup: TwilioSetup


class AutoSetup(BaseModel):
    """What `auto_setup` did on create or rotation: the changes, or why it could not."""

    ok: bool
    changes: list[SetupChange] = Field(default_factory=list)
    error: str | None = None


class InboundCounts(BaseModel):
    accepted: int
    duplicate: int
    bad_signature: int
    unknown_number: int
    refused: int


class SignatureFailureView(BaseModel):
    at: datetime
    cause: SignatureCause
    detail: str


class InboundDiagnosis(BaseModel):
    last_webhook_at: datetime | None
    last_24h: InboundCounts
    signature_failures: list[SignatureFailureView]
    unroutable_last_24h: int


class FailureCount(BaseModel):
    code: int | None
    count: int
    meaning: str
    advice: str


class OutboundDiagnosis(BaseModel):
    queued: int
    oldest_queued_seconds: float | None
    failed_last_24h: list[FailureCount]


class ChannelDiagnosis(BaseModel):
    """A delivery channel to the PBX: what waits, for how long, and what was given up."""

    configured: bool
    pending: int
    oldest_pending_seconds: float | None
    dead_last_24h: int
    last_error: str | None


class DeliveryDiagnosis(BaseModel):
    webhook: ChannelDiagnosis
    sip: ChannelDiagnosis


Problems = Annotated[list[str], Field(description="What is wrong, in sentences, worst first")]


class Diagnosis(BaseModel):
    """One answer to "why don't my texts arrive (or go out)?" for a configuration."""

    config_id: ConfigId
    inbound: InboundDiagnosis
    outbound: OutboundDiagnosis
    delivery: DeliveryDiagnosis
    twilio: TwilioSetup | None = Field(default=None, description="With ?check_twilio=true")
    problems: Problems


class TenantDiagnosis(BaseModel):
    """Every configuration of the tenant summed, with the tenant-wide problems."""

    tenant_id: TenantId
    config_ids: list[ConfigId]
    inbound: InboundDiagnosis
    outbound: OutboundDiagnosis
    delivery: DeliveryDiagnosis
    twilio: list[TwilioSetup] | None = Field(default=None, description="With ?check_twilio=true")
    problems: Problems
