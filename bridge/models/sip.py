"""API models of texts on the phones (design §10): a tenant's SIP settings."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from bridge.models.values import ApiModel, TenantId

Transport = Literal["udp", "tcp"]

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")
# sip:host[:port][;transport=udp|tcp] — where the bridge sends its MESSAGEs (the PBX's proxy).
_PROXY = re.compile(
    r"sip:(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:(?P<port>\d{1,5}))?"
    r"(;transport=(?P<transport>udp|tcp|UDP|TCP))?"
)
# sip:user@host[:port][;params] — an extension's own address, when not {extension}@{domain}.
SIP_URI = re.compile(
    r"sips?:[^@\s<>\"]+@(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(;[^\s<>\"]*)?"
)
Password = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\r\n\x00]+$")]
DigestAlgorithm = Literal["SHA-256", "MD5"]


def _strongest_first() -> list[DigestAlgorithm]:
    return ["SHA-256", "MD5"]


def check_sip_uri(value: str) -> str:
    if not SIP_URI.fullmatch(value):
        raise ValueError("must be a SIP URI such as sip:101@acme.pbx.example.com")
    return value


class SipSettingsPut(ApiModel):
    """A tenant's SIP settings. The passwords are write-only: leave one out to keep it, send
    null to remove it."""

    enabled: bool = True
    domain: Annotated[str, Field(min_length=1, max_length=253)]
    proxy: Annotated[str, Field(min_length=5, max_length=300)]
    allowed_sources: list[str] = Field(min_length=1, max_length=100)
    auth_username: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    auth_password: Password | None = None
    inbound_password: Password | None = None
    max_age_hours: float = Field(default=72.0, gt=0, le=24 * 30)
    notify_failures: bool = True
    inbound_digest: list[DigestAlgorithm] = Field(
        default_factory=_strongest_first,
        min_length=1,
        max_length=2,
        description="The digest algorithms the bridge challenges the PBX with (inbound_password), "
        "in the order offered: SHA-256 first as RFC 8760 asks; MD5 first, or MD5 alone, for a "
        "PBX that reads only the first challenge and knows only MD5",
    )

    @field_validator("inbound_digest")
    @classmethod
    def _digest(cls, value: list[DigestAlgorithm]) -> list[DigestAlgorithm]:
        if len(set(value)) != len(value):
            raise ValueError("names an algorithm twice")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not _HOSTNAME.fullmatch(value):
            raise ValueError("must be a host name such as acme.pbx.example.com")
        return value.lower()

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str) -> str:
        match = _PROXY.fullmatch(value)
        if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
            raise ValueError("must be sip:host[:port][;transport=udp|tcp], e.g. sip:10.0.0.5:5060")
        return value

    @field_validator("allowed_sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        networks = []
        for source in value:
            try:
                networks.append(str(ipaddress.ip_network(source, strict=False)))
            except ValueError:
                raise ValueError(
                    f"{source!r} is not an address or network such as 10.0.0.5/32"
                ) from None
        return networks


class SipSettings(BaseModel):
    """A tenant's SIP settings as the API shows them: never a password, only whether set."""

    tenant_id: TenantId
    enabled: bool
    domain: str
    proxy: str
    allowed_sources: list[str]
    auth_username: str | None
    auth_password_set: bool
    inbound_password_set: bool
    max_age_hours: float
    notify_failures: bool
    inbound_digest: list[DigestAlgorithm]
    created_at: datetime
    updated_at: datetime


def proxy_parts(proxy: str) -> tuple[str, int, Transport]:
    """Host, port (5060 unless given) and transport (udp unless given) of a valid proxy."""
    match = _PROXY.fullmatch(proxy)
    if match is None:
        raise ValueError(f"not a SIP proxy: {proxy}")
    host = match["host"].strip("[]")
    transport: Transport = "tcp" if (match["transport"] or "udp").lower() == "tcp" else "udp"
    return host, int(match["port"] or 5060), transport


class SipRetried(BaseModel):
    """What `sip-retry` did: how many of the extension's waiting texts are due now."""

    extension: str
    due_now: int
