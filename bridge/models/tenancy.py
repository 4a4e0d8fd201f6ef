"""API models of the configuration plane: tenants, tokens, trunks, configurations, rules."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.models.setup import AutoSetup
from bridge.models.sip import check_sip_uri
from bridge.models.values import (
    DIALLED,
    E164,
    E164_SHAPE,
    SHORT_CODE,
    AccountSid,
    ApiKeySid,
    ApiModel,
    AuthToken,
    ConfigId,
    Country,
    DidPatternText,
    ExtensionName,
    ExtensionPattern,
    Name,
    SendChannel,
    SenderId,
    ServiceSid,
    TenantId,
    TokenId,
    TrunkId,
    check_sender_id,
    e164_in_context,
    implied_tag,
    reject_repeats,
)


class TenantCreate(ApiModel):
    name: Name
    default_country: Country = "US"
    affinity_hours: int = Field(default=72, ge=0, le=24 * 365)


class TenantPatch(ApiModel):
    name: Name | None = None
    default_country: Country | None = None
    affinity_hours: int | None = Field(default=None, ge=0, le=24 * 365)


class Tenant(BaseModel):
    id: TenantId
    name: str
    default_country: str
    affinity_hours: int
    created_at: datetime
    updated_at: datetime


class TokenCreate(ApiModel):
    label: str = Field(default="", max_length=200)


class TenantToken(BaseModel):
    id: TokenId
    tenant_id: TenantId
    label: str
    created_at: datetime
    revoked_at: datetime | None = None


class IssuedToken(TenantToken):
    token: str = Field(description="Shown once; store it now. The bridge keeps only a hash.")


class DeliveryTargetPut(ApiModel):
    url: Annotated[str, Field(max_length=2000)]
    secret: Annotated[str, Field(min_length=16, max_length=512)]

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", value):
            raise ValueError("must be an http(s) URL")
        return value


class DeliveryTarget(BaseModel):
    url: str
    secret_set: bool
    updated_at: datetime


class TrunkCreate(ApiModel):
    name: Name


class TrunkPatch(ApiModel):
    name: Name | None = None


class Trunk(BaseModel):
    id: TrunkId
    tenant_id: TenantId
    name: str
    created_at: datetime
    updated_at: datetime


class AuthTokenCredential(ApiModel):
    type: Literal["auth_token"] = "auth_token"
    auth_token: AuthToken


class ApiKeyCredential(ApiModel):
    type: Literal["api_key"] = "api_key"
    api_key_sid: ApiKeySid
    api_key_secret: Annotated[str, Field(min_length=16, max_length=128, pattern=r"^\S+$")]
    auth_token: AuthToken = Field(description="Twilio signs webhooks with the auth token")


CredentialIn = Annotated[
    Annotated[AuthTokenCredential, Tag("auth_token")] | Annotated[ApiKeyCredential, Tag("api_key")],
    implied_tag("type", "auth_token", {"api_key_sid": "api_key", "api_key_secret": "api_key"}),
]


class CredentialOut(BaseModel):
    type: Literal["auth_token", "api_key"]
    api_key_sid: str | None = None
    auth_token_last4: str


NumberType = Literal["long_code", "short_code", "toll_free"]


def _sms_only() -> list[SendChannel]:
    return ["sms"]


class SmsNumber(ApiModel):
    number: str
    type: NumberType = "long_code"
    mms: bool = True
    mps: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="Override of segments per second (of messages per second on WhatsApp)",
    )
    channels: list[SendChannel] = Field(
        default_factory=_sms_only,
        min_length=1,
        max_length=2,
        description="sms, and whatsapp when the number is also a WhatsApp sender of the account",
    )

    @model_validator(mode="after")
    def _normalise(self, info: ValidationInfo) -> SmsNumber:
        reject_repeats(list(self.channels), "channel")
        if self.type == "short_code" and "whatsapp" in self.channels:
            raise ValueError("a short code cannot be a WhatsApp sender")
        if self.type == "short_code" and SHORT_CODE.fullmatch(self.number):
            return self
        self.number = e164_in_context(self.number, info)
        return self


class SmsConfigCreate(ApiModel):
    trunk_id: TrunkId
    name: Name
    account_sid: AccountSid
    credential: CredentialIn
    sender_id: SenderId | None = None
    messaging_service_sid: ServiceSid | None = None
    numbers: list[SmsNumber] = Field(default_factory=list, max_length=1000)
    allowed_countries: list[Country] | None = Field(
        default=None, description="Destination countries; default: the tenant's default_country"
    )
    enabled: bool = True
    auto_setup: bool = Field(
        default=False,
        description="Point the numbers' incoming texts at webhook_url in Twilio on create and "
        "after rotate-webhook",
    )

    @field_validator("numbers")
    @classmethod
    def _unique_numbers(cls, value: list[SmsNumber]) -> list[SmsNumber]:
        reject_repeats([n.number for n in value], "number")
        return value


class SmsConfigPatch(ApiModel):
    name: Name | None = None
    account_sid: AccountSid | None = None
    credential: CredentialIn | None = None
    sender_id: SenderId | None = None
    messaging_service_sid: ServiceSid | None = None
    numbers: list[SmsNumber] | None = Field(default=None, max_length=1000)
    allowed_countries: list[Country] | None = None
    enabled: bool | None = None
    auto_setup: bool | None = None

    @field_validator("numbers")
    @classmethod
    def _unique_numbers(cls, value: list[SmsNumber] | None) -> list[SmsNumber] | None:
        if value is not None:
            reject_repeats([n.number for n in value], "number")
        return value


class SmsConfig(BaseModel):
    id: ConfigId
    tenant_id: TenantId
    trunk_id: TrunkId
    name: str
    account_sid: str
    credential: CredentialOut
    sender_id: str | None
    messaging_service_sid: str | None
    numbers: list[SmsNumber]
    allowed_countries: list[str]
    enabled: bool
    auto_setup: bool = False
    webhook_url: str
    status_callback_url: str
    previous_webhook_valid_until: datetime | None = None
    created_at: datetime
    updated_at: datetime
    twilio_setup: AutoSetup | None = Field(
        default=None, description="On create and rotation with auto_setup: what it did"
    )


class Extension(ApiModel):
    extension: ExtensionName
    name: str = Field(default="", max_length=200)
    dids: list[E164] = Field(default_factory=list, max_length=100)
    default_did: E164 | None = None
    sip_uri: Annotated[str, AfterValidator(check_sip_uri), Field(max_length=300)] | None = Field(
        default=None, description="Where its texts go by SIP; default sip:{extension}@{domain}"
    )
    sip: bool = Field(default=True, description="false: this extension gets no texts by SIP")

    @model_validator(mode="after")
    def _default_in_dids(self) -> Extension:
        reject_repeats(self.dids, "did")
        if self.default_did is not None and self.default_did not in self.dids:
            raise ValueError("default_did must be one of dids")
        return self


class InboundRule(ApiModel):
    name: Name
    trunk_id: TrunkId | None = None
    did: DidPatternText
    from_: DidPatternText | None = Field(default=None, alias="from")
    extensions: list[ExtensionName] = Field(min_length=1, max_length=100)
    enabled: bool = True

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class OutboundRule(ApiModel):
    name: Name
    from_extensions: list[ExtensionPattern] = Field(default_factory=list, max_length=100)
    prefix: Annotated[str, Field(max_length=32)] = ""
    min_length: int | None = Field(default=None, ge=1, le=32)
    max_length: int | None = Field(default=None, ge=1, le=32)
    strip: int = Field(default=0, ge=0, le=32)
    prepend: Annotated[str, Field(max_length=16, pattern=r"^\+?[0-9]*$")] = ""
    trunks: list[TrunkId] = Field(min_length=1, max_length=20)
    sender: str | None = Field(
        default=None, description="A DID of the trunk's configuration, or an alphanumeric sender"
    )
    enabled: bool = True

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not DIALLED.fullmatch(value):
            raise ValueError("must be digits, optionally starting with +")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is None or E164_SHAPE.fullmatch(value):
            return value
        return check_sender_id(value)

    @model_validator(mode="after")
    def _lengths(self) -> OutboundRule:
        if (
            self.min_length is not None
            and self.max_length is not None
            and self.min_length > self.max_length
        ):
            raise ValueError("min_length must not exceed max_length")
        return self
