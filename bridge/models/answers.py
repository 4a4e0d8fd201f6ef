"""API answers that are not resources: routing explanations and the credentials check."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.models.values import ConfigId, SendChannel, TrunkId

# The same values as bridge.routing's InboundReason and SenderKind (models import nothing from
# routing; mypy checks that what the services put here fits).
InboundDecisionKind = Literal["affinity", "rule", "fallback", "unroutable"]
SenderKindName = Literal["alphanumeric", "number", "messaging_service"]


class SipTarget(BaseModel):
    """Where the text's MESSAGE to one extension's phone would go (design §10)."""

    extension: str
    uri: str = Field(
        description="The Request-URI: the extension's sip_uri, or {extension}@{domain}"
    )
    proxy: str = Field(description="Where the MESSAGE is sent: the tenant's proxy")
    sends: bool = Field(description="false when the extension takes no texts by SIP")


class InboundExplanation(BaseModel):
    """Where a text to a DID from a remote number would go now, and why. When no configuration
    holds the DID, the keys that need one are left out (not null)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    direction: Literal["inbound"]
    to: str = Field(description="The DID, in E.164")
    from_: str = Field(alias="from", description="The remote number, in E.164")
    config_id: ConfigId | None = Field(
        default=None, description="The SMS configuration that holds the DID"
    )
    trunk_id: TrunkId | None = None
    decision: InboundDecisionKind = Field(
        description="affinity (follows the conversation), rule, fallback (a * rule), or unroutable"
    )
    rule: str | None = Field(default=None, description="The name of the rule that decided")
    rule_index: int | None = Field(default=None, description="Its position in the list, from 0")
    extensions: list[str] = Field(description="Who would get it")
    sip: list[SipTarget] | None = Field(
        default=None, description="The MESSAGEs to the phones, when the tenant has SIP on"
    )
    explanation: list[str] = Field(description="The reasons, one sentence each")


class OutboundExplanation(BaseModel):
    """What a send from an extension would do now, or why it would be refused. A refusal
    carries error and none of the plan's keys (to, country, rule, trunk, sender); a plan
    carries no error."""

    direction: Literal["outbound"]
    from_extension: str
    decision: str = Field(
        description="send, or the refusal code the send would get: no_route, no_sender, "
        "country_not_allowed, invalid_destination, recipient_opted_out"
    )
    error: str | None = Field(default=None, description="Why it would be refused")
    to: str | None = Field(default=None, description="The destination, in E.164")
    country: str | None = Field(default=None, description="The destination's country")
    rule: str | None = Field(default=None, description="The outbound rule that matched")
    rule_index: int | None = Field(default=None, description="Its position in the list, from 0")
    trunk_id: TrunkId | None = None
    config_id: ConfigId | None = None
    sender_kind: SenderKindName | None = None
    sender: str | None = Field(
        default=None, description="The DID, alphanumeric sender or messaging service SID"
    )
    channel: SendChannel | None = Field(default=None, description="sms or whatsapp")
    explanation: list[str] = Field(description="The reasons, one sentence each")


Explanation = Annotated[InboundExplanation | OutboundExplanation, Field(discriminator="direction")]


class TwilioAccount(BaseModel):
    """The harmless part of the Twilio account the credentials open."""

    sid: str
    status: str
    type: str | None
    friendly_name: str | None


class CredentialsCheck(BaseModel):
    """Twilio accepted the configuration's credentials (a refusal is a 422 error instead)."""

    ok: bool
    checked_with: Literal["account", "messages_list"] = Field(
        description="account: the account was read (an auth token or a Main key); "
        "messages_list: a Standard API key, which may list messages but not read the account"
    )
    account: TwilioAccount | None
