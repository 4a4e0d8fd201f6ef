"""JSON bodies accepted by the fake's control API (`/_fake/...`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from .faults import FaultKind, Operation
from .numbers import HttpMethod
from .state import AccountStatus, KeyType

E164_PATTERN = r"^\+[1-9]\d{6,14}$"
NumberRef = Annotated[str, Field(pattern=r"^(\+[1-9]\d{6,14}|PN[0-9a-fA-F]{32})$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AccountSpec(_Body):
    """Register an account; omitted SID/token are generated."""

    sid: str | None = Field(default=None, pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: str | None = Field(default=None, min_length=1)
    friendly_name: str = "Fake account"
    numbers: list[str] = Field(default_factory=list)
    status: AccountStatus = "active"
    whatsapp_senders: list[Annotated[str, Field(pattern=E164_PATTERN)]] = Field(
        default_factory=list
    )


class KeySpec(_Body):
    """Register an API key of an account."""

    sid: str | None = Field(default=None, pattern=r"^SK[0-9a-fA-F]{32}$")
    secret: str | None = Field(default=None, min_length=1)
    kind: KeyType = "standard"


class CapabilitiesSpec(_Body):
    """What a provisioned number can do."""

    voice: bool = True
    sms: bool = True
    mms: bool = True
    fax: bool = False


class NumberSpec(_Body):
    """Provision a phone number on an account, optionally into a Messaging Service.

    URLs are taken as given (even invalid ones), so tests can stage any misconfiguration.
    """

    account_sid: str
    phone_number: str = Field(pattern=E164_PATTERN)
    sid: str | None = Field(default=None, pattern=r"^PN[0-9a-fA-F]{32}$")
    friendly_name: str | None = None
    capabilities: CapabilitiesSpec = Field(default_factory=CapabilitiesSpec)
    sms_url: str = ""
    sms_method: HttpMethod = "POST"
    sms_fallback_url: str = ""
    sms_fallback_method: HttpMethod = "POST"
    status_callback: str = ""
    voice_url: str = ""
    messaging_service_sid: str | None = None


class ServiceSpec(_Body):
    """Create a Messaging Service; `numbers` are E.164 numbers (provisioned if new) or PN SIDs."""

    account_sid: str
    sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    friendly_name: str = "Fake Messaging Service"
    inbound_request_url: str | None = None
    inbound_method: HttpMethod = "POST"
    fallback_url: str | None = None
    fallback_method: HttpMethod = "POST"
    status_callback: str | None = None
    use_inbound_webhook_on_number: bool = False
    numbers: list[NumberRef] = Field(default_factory=list)
    rcs_sender: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,100}$")


class ConfigPatch(_Body):
    """Change some of the fake's knobs; absent fields keep their value."""

    latency: float | None = Field(default=None, ge=0)
    callback_delay: float | None = Field(default=None, ge=0)
    slow_delay: float | None = Field(default=None, ge=0)
    retry_after: int | None = Field(default=None, ge=0)
    reorder_callbacks: bool | None = None
    duplicate_callbacks: bool | None = None
    drop_callbacks: bool | None = None
    fetch_media: bool | None = None
    media_auth: bool | None = None
    public_base_url: str | None = None
    webhook_timeout: float | None = Field(default=None, gt=0)
    whatsapp_window_seconds: float | None = Field(default=None, ge=0)
    read_receipts: bool | None = None


class NextFaults(_Body):
    """The next `count` requests of the given operations get `kind`."""

    kind: FaultKind
    count: int = Field(default=1, ge=1)
    operations: tuple[Operation, ...] = ("create",)
    delay: float | None = Field(default=None, ge=0)


class RandomFaults(_Body):
    """Each request of the given operations gets a fault from `kinds` with `probability`."""

    probability: float = Field(ge=0, le=1)
    kinds: list[FaultKind] = Field(min_length=1)
    seed: int | None = None
    operations: tuple[Operation, ...] = ("create",)
    delay: float | None = Field(default=None, ge=0)


class FaultsSpec(_Body):
    """Fault injection: queued faults are appended; `random` replaces the random mode."""

    next: list[NextFaults] = Field(default_factory=list)
    random: RandomFaults | None = None


class MediaSpec(_Body):
    """A media file the fake hosts for an inbound MMS."""

    content_type: str = Field(min_length=3)
    data_base64: str


class InboundSpec(_Body):
    """An inbound message the fake sends, as Twilio would.

    Without `url` it goes where Twilio would send it: the Messaging Service's inbound webhook
    when `to` is in a service that does not defer to its numbers, else the number's SmsUrl,
    each with its own method and fallback unless `method` or `fallback_url` are given.
    """

    url: str | None = Field(default=None, min_length=1)
    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    body: str = ""
    account_sid: str | None = None
    messaging_service_sid: str | None = None
    media: list[MediaSpec] = Field(default_factory=list, max_length=10)
    opt_out_type: Literal["STOP", "START", "HELP"] | None = None
    extra_params: dict[str, str] = Field(default_factory=dict)
    include_geo: bool = True
    geo: dict[str, str] = Field(default_factory=dict)
    method: Literal["POST", "GET"] = "POST"
    json_body: JsonValue = None
    signature: Literal["valid", "invalid", "missing"] = "valid"
    sign_url: str | None = None
    fallback_url: str | None = None
    profile_name: str = Field(default="WhatsApp user", description="WhatsApp's ProfileName")


class CallbackSpec(_Body):
    """Send one status callback for a message now, outside its normal sequence."""

    status: Literal[
        "queued", "sending", "sent", "failed", "delivered", "undelivered", "read", "canceled"
    ]
    error_code: int | None = None
    apply: bool = True


class ResetSpec(_Body):
    """Forget messages, records and faults; accounts too unless kept."""

    keep_accounts: bool = True
