"""Ids and value types: SIDs, numbers, countries, rule patterns, pages."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Generic, Literal, NewType, TypeVar

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ValidationInfo,
)

from bridge.errors import InvalidInput

T = TypeVar("T")

TenantId = NewType("TenantId", str)
TrunkId = NewType("TrunkId", str)
ConfigId = NewType("ConfigId", str)
TokenId = NewType("TokenId", str)
MessageId = NewType("MessageId", str)
EventId = NewType("EventId", str)

# How a text travels through Twilio (design §12). Sends go by SMS or WhatsApp; RCS is seen only
# on callbacks and webhooks, when a Messaging Service with an RCS sender delivered by RCS.
Channel = Literal["sms", "whatsapp", "rcs"]
SendChannel = Literal["sms", "whatsapp"]
CHANNELS: dict[str, Channel] = {"sms": "sms", "whatsapp": "whatsapp", "rcs": "rcs"}

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_AUTH_TOKEN = re.compile(r"[0-9a-fA-F]{32}")
_SENDER_ID = re.compile(r"[A-Za-z0-9 ]{1,11}")
_EXTENSION = re.compile(r"[0-9A-Za-z_.-]{1,32}")
_EXTENSION_PATTERN = re.compile(r"[0-9A-Za-z_.-]{1,32}\*?|\*")
E164_SHAPE = re.compile(r"\+[1-9][0-9]{1,14}")
SHORT_CODE = re.compile(r"[0-9]{3,8}")
DIALLED = re.compile(r"\+?[0-9*#]{0,32}")


def _matching(pattern: re.Pattern[str], message: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


AccountSid = Annotated[str, _matching(_ACCOUNT_SID, "must be AC followed by 32 hex digits")]
ApiKeySid = Annotated[str, _matching(_API_KEY_SID, "must be SK followed by 32 hex digits")]
ServiceSid = Annotated[str, _matching(_SERVICE_SID, "must be MG followed by 32 hex digits")]
AuthToken = Annotated[str, _matching(_AUTH_TOKEN, "must be 32 hex digits")]
ExtensionName = Annotated[
    str, _matching(_EXTENSION, "must be 1-32 of 0-9 A-Z a-z _ . - (e.g. 101)")
]
ExtensionPattern = Annotated[
    str, _matching(_EXTENSION_PATTERN, "must be an extension, a prefix ending in *, or *")
]


def check_sender_id(value: str) -> str:
    """Alphanumeric sender IDs: 1-11 of A-Z a-z 0-9 and space, not all digits (Twilio's rule)."""
    if not _SENDER_ID.fullmatch(value) or not value.strip():
        raise ValueError("must be 1-11 characters of A-Z a-z 0-9 and space")
    if value.replace(" ", "").isdigit():
        raise ValueError("must not be all digits")
    return value


SenderId = Annotated[str, AfterValidator(check_sender_id)]


def check_country(value: str) -> str:
    upper = value.upper()
    if upper not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("must be an ISO 3166 alpha-2 country code, e.g. US")
    return upper


Country = Annotated[str, AfterValidator(check_country)]


def to_e164(value: str, default_country: str | None = None) -> str:
    """Parse a phone number (possible, not necessarily assigned) and return it in E.164."""
    region = None if value.lstrip().startswith("+") else default_country
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("is not a phone number; write it in E.164, e.g. +15551230001") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("is not a possible phone number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def number_field(field: str, value: str, default_country: str | None) -> str:
    """``to_e164`` for a request field: a bad number is an InvalidInput naming the field."""
    try:
        return to_e164(value, default_country)
    except ValueError as exc:
        raise InvalidInput.field(field, str(exc)) from None


def country_of(number: str) -> str | None:
    """The number's region, else the main country of its calling code (design §5)."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    if region and region != phonenumbers.UNKNOWN_REGION:
        return region
    main = phonenumbers.region_code_for_country_code(parsed.country_code or 0)
    return None if main == phonenumbers.UNKNOWN_REGION else main


def e164_in_context(value: str, info: ValidationInfo) -> str:
    context = info.context if isinstance(info.context, dict) else {}
    country = context.get("default_country")
    return to_e164(value, country if isinstance(country, str) else None)


E164 = Annotated[str, AfterValidator(e164_in_context)]


def split_address(raw: str) -> tuple[Channel, str]:
    """Twilio's address (``whatsapp:+1555…``, ``rcs:acme_agent``, ``+1555…``) as its channel
    and the address without the prefix: the number, or an RCS sender id as Twilio wrote it."""
    prefix, sep, rest = raw.partition(":")
    channel = CHANNELS.get(prefix.strip().lower()) if sep else None
    if channel is None or channel == "sms":
        return "sms", raw
    return channel, rest.strip()


def channel_address(channel: Channel, address: str) -> str:
    """The address as Twilio writes it on this channel (SMS addresses have no prefix)."""
    return address if channel == "sms" else f"{channel}:{address}"


def conversation_channel(channel: Channel) -> SendChannel:
    """The thread a channel's texts belong to: RCS is Twilio delivering the SMS thread of a
    Messaging Service by RCS (with SMS as its fallback), so it stays in that thread."""
    return "whatsapp" if channel == "whatsapp" else "sms"


# --- DID patterns (inbound rules) -------------------------------------------------------------


@dataclass(frozen=True)
class DidPattern:
    """A parsed rule pattern: exact number, inclusive range, prefix, or any."""

    kind: Literal["exact", "range", "prefix", "any"]
    low: str = ""
    high: str = ""

    @property
    def text(self) -> str:
        if self.kind == "exact":
            return self.low
        if self.kind == "range":
            return f"{self.low}-{self.high}"
        if self.kind == "prefix":
            return f"{self.low}*"
        return "*"


def parse_did_pattern(value: str) -> DidPattern:
    """Parse ``+15551230001``, ``+1555123*``, ``+15551230000-+15551239999`` or ``*``."""
    if value == "*":
        return DidPattern("any")
    if value.endswith("*"):
        prefix = value[:-1]
        if not re.fullmatch(r"\+[0-9]{1,15}", prefix):
            raise ValueError("a prefix pattern is + and digits followed by *, e.g. +1555123*")
        return DidPattern("prefix", prefix)
    if "-" in value:
        low, _, high = value.partition("-")
        if not (E164_SHAPE.fullmatch(low) and E164_SHAPE.fullmatch(high)):
            raise ValueError("a range is two E.164 numbers joined by -, e.g. +15550000-+15559999")
        if len(low) != len(high):
            raise ValueError("both ends of a range must have the same length")
        if low > high:
            raise ValueError("a range must not start after it ends")
        return DidPattern("range", low, high)
    if not E164_SHAPE.fullmatch(value):
        raise ValueError("must be an E.164 number, a prefix ending in *, a range a-b, or *")
    return DidPattern("exact", value)


def _check_did_pattern(value: str) -> str:
    return parse_did_pattern(value).text


DidPatternText = Annotated[str, AfterValidator(_check_did_pattern)]


# --- API models ---------------------------------------------------------------------------------


class ApiModel(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than ignored."""

    model_config = ConfigDict(extra="forbid")


def implied_tag(field: str, default: str, implied_by: Mapping[str, str]) -> Discriminator:
    """The tag of a request union: ``field`` when it is sent; when it is left out, the variant
    one of whose own fields is there (``implied_by``: field → tag), else ``default``.

    Each variant's tag field has its tag as default, so the OpenAPI document does not make a
    generated client pass what the class it built already says; this reads such a body the way
    the document describes it (the variants stay distinct by their required fields)."""
    tags = sorted({default, *implied_by.values()})

    def tag(value: object) -> str | None:
        if isinstance(value, BaseModel):
            found = getattr(value, field, None)
            return found if isinstance(found, str) else None
        if not isinstance(value, dict):
            return None
        if field not in value:
            return next((t for key, t in implied_by.items() if key in value), default)
        given = value[field]
        return given if isinstance(given, str) else None

    return Discriminator(
        tag,
        custom_error_type="unknown_tag",
        custom_error_message=f"{field} must be one of {', '.join(tags)}",
    )


Name = Annotated[str, Field(min_length=1, max_length=200)]


def reject_repeats(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value} is listed twice")
        seen.add(value)


class Page(BaseModel, Generic[T]):
    """A page of a list: ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None = None


def make_page(items: list[T], limit: int, cursor_of: Callable[[T], str]) -> Page[T]:
    """Cut a fetch of ``limit + 1`` rows into a page and the cursor of the next one."""
    if len(items) > limit:
        items = items[:limit]
        return Page(items=items, next_cursor=cursor_of(items[-1]))
    return Page(items=items)
