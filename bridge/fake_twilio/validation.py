"""Validation of a create-message request, with Twilio's error codes."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from multidict import MultiMapping

from .state import Account

MAX_BODY = 1600
MAX_MEDIA = 10
MAX_CALLBACK_URL = 4000

_E164 = re.compile(r"\+[1-9]\d{6,14}")
_NANP = re.compile(r"1?(\d{10})")
_SHORT_CODE = re.compile(r"\d{3,8}")
_FORMATTING = re.compile(r"[\s().\-]")
_ALPHA_SENDER = re.compile(r"[A-Za-z0-9 ]{1,11}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_CHANNELS = ("whatsapp", "messenger", "rcs")
# The OpenAPI file's ContentSid pattern; an RCS sender id (`rcs:acme_agent`) is no number.
_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
_RCS_SENDER_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@dataclass(frozen=True)
class Problem:
    """A refused create request: Twilio code and message, answered with HTTP 400."""

    code: int
    message: str


@dataclass(frozen=True)
class CreateRequest:
    """A create request that passed validation, with addresses normalised."""

    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    media_urls: tuple[str, ...]
    status_callback: str | None
    content_sid: str | None = None
    content_variables: str | None = None


def channel_of(address: str | None) -> str | None:
    """`whatsapp`, `rcs`, … for a channel address; None for a phone number or sender ID."""
    prefix, sep, _ = (address or "").partition(":")
    return prefix if sep and prefix in _CHANNELS else None


def normalize_phone(raw: str) -> str | None:
    """E.164 when the input is a phone number Twilio could normalise, else None."""
    compact = _FORMATTING.sub("", raw.strip())
    if _E164.fullmatch(compact):
        return compact
    if match := _NANP.fullmatch(compact):
        return "+1" + match[1]
    return None


def normalize_to(raw: str) -> str | None:
    """Normalise a destination: a phone number or a channel address like whatsapp:+1…."""
    prefix, sep, rest = raw.strip().partition(":")
    if sep and prefix in _CHANNELS:
        number = normalize_phone(rest)
        return f"{prefix}:{number}" if number else None
    return normalize_phone(raw)


def sender_kind(from_: str) -> str | None:
    """Classify a From value: 'phone', 'short_code', 'alpha', 'channel', or None if invalid."""
    prefix, sep, rest = from_.partition(":")
    if sep and prefix in _CHANNELS:
        if prefix == "rcs" and _RCS_SENDER_ID.fullmatch(rest) and not rest.startswith("+"):
            return "channel"
        return "channel" if normalize_phone(rest) else None
    if from_.startswith("+"):
        return "phone" if normalize_phone(from_) else None
    if _SHORT_CODE.fullmatch(from_):
        return "short_code"
    if _ALPHA_SENDER.fullmatch(from_) and not from_.isdigit():
        return "alpha"
    return None


def valid_http_url(url: str, *, max_length: int | None = None) -> bool:
    """An http(s) URL with a host name Twilio accepts (no underscores)."""
    if max_length is not None and len(url) > max_length:
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


def validate_create(params: MultiMapping[str], account: Account) -> CreateRequest | Problem:
    """Check a create request in the order Twilio reports problems."""
    raw_to = params.get("To", "").strip()
    if not raw_to:
        return Problem(21604, "A 'To' phone number is required.")
    to = normalize_to(raw_to)
    if to is None:
        return Problem(21211, f"The 'To' number {raw_to} is not a valid phone number.")
    raw_from = params.get("From", "").strip()
    service = params.get("MessagingServiceSid", "").strip() or None
    if not raw_from and service is None:
        return Problem(21603, "A 'From' or 'MessagingServiceSid' parameter is required")
    if service is not None and not _SERVICE_SID.fullmatch(service):
        return Problem(21701, f"The Messaging Service Sid {service} is invalid.")
    body = params.get("Body", "")
    media_urls = tuple(url.strip() for url in params.getall("MediaUrl", []) if url.strip())
    content = _check_content(params)
    if isinstance(content, Problem):
        return content
    content_sid, content_variables = content
    if not body and not media_urls and content_sid is None:
        return Problem(21602, "Message body is required.")
    if len(body) > MAX_BODY:
        return Problem(21617, "The concatenated message body exceeds the 1600 character limit.")
    if len(media_urls) > MAX_MEDIA:
        return Problem(21623, "The number of media files exceeds the limit of 10.")
    bad_media = [url for url in media_urls if not valid_http_url(url)]
    if bad_media:
        return Problem(
            21620, f"Media urls: {', '.join(bad_media)} are invalid. Use http or https urls."
        )
    callback = params.get("StatusCallback", "").strip() or None
    if callback is not None and not valid_http_url(callback, max_length=MAX_CALLBACK_URL):
        return Problem(21609, f"The StatusCallback URL {callback} is not a valid URL.")
    from_ = _check_sender(raw_from, to, account) if raw_from else None
    if isinstance(from_, Problem):
        return from_
    return CreateRequest(
        to, from_, service, body, media_urls, callback, content_sid, content_variables
    )


def _check_content(params: MultiMapping[str]) -> tuple[str | None, str | None] | Problem:
    """ContentSid as the OpenAPI file has it (`^HX` + 32 hex), and ContentVariables: a JSON
    object of texts, only with a ContentSid."""
    content_sid = params.get("ContentSid", "").strip() or None
    variables = params.get("ContentVariables")
    if content_sid is not None and not _CONTENT_SID.fullmatch(content_sid):
        return Problem(21655, f"The ContentSid {content_sid} is Invalid")
    if variables is None:
        return content_sid, None
    if content_sid is None:
        return Problem(21654, "A ContentSid must be specified if ContentVariables are provided.")
    try:
        parsed = json.loads(variables)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) and v for v in parsed.values()):
        return Problem(21656, "The ContentVariables Parameter is invalid")
    return content_sid, variables


def _check_sender(raw_from: str, to: str, account: Account) -> str | Problem:
    kind = sender_kind(raw_from)
    if kind is None:
        return Problem(21212, f"The 'From' number {raw_from} is not a valid phone number.")
    if kind == "phone":
        from_ = normalize_phone(raw_from) or raw_from
    elif kind == "channel":
        from_ = normalize_to(raw_from) or raw_from
    else:
        from_ = raw_from
    if kind == "alpha" and to.startswith("+1"):
        # Alphanumeric sender IDs are not supported towards the US and Canada.
        return Problem(
            21612,
            f"The 'To' phone number: {to}, is not currently reachable using the 'From' "
            f"phone number: {from_} via SMS.",
        )
    if kind in ("phone", "short_code") and account.numbers and from_ not in account.numbers:
        return Problem(
            21606,
            f"The From phone number {from_} is not a valid, SMS-capable inbound phone number "
            "or short code for your account.",
        )
    if channel_of(from_) != channel_of(to):
        return Problem(
            21910, f"From ({from_}) and To ({to}) addresses should be of the same channel"
        )
    if channel_of(from_) == "whatsapp" and from_.partition(":")[2] not in account.whatsapp_senders:
        return Problem(63007, "Twilio could not find a Channel with the specified From address")
    return from_


# IncomingPhoneNumber update: form field → attribute, for the fields the fake keeps.
NUMBER_URL_FIELDS = (
    ("SmsUrl", "sms_url"),
    ("SmsFallbackUrl", "sms_fallback_url"),
    ("VoiceUrl", "voice_url"),
    ("VoiceFallbackUrl", "voice_fallback_url"),
)
NUMBER_METHOD_FIELDS = (
    ("SmsMethod", "sms_method"),
    ("SmsFallbackMethod", "sms_fallback_method"),
    ("StatusCallbackMethod", "status_callback_method"),
    ("VoiceMethod", "voice_method"),
    ("VoiceFallbackMethod", "voice_fallback_method"),
)
SERVICE_URL_FIELDS = (
    ("InboundRequestUrl", "inbound_request_url"),
    ("FallbackUrl", "fallback_url"),
    ("StatusCallback", "status_callback"),
)
SERVICE_METHOD_FIELDS = (("InboundMethod", "inbound_method"), ("FallbackMethod", "fallback_method"))
SERVICE_FLAG_FIELDS = (
    ("UseInboundWebhookOnNumber", "use_inbound_webhook_on_number"),
    ("StickySender", "sticky_sender"),
    ("MmsConverter", "mms_converter"),
    ("SmartEncoding", "smart_encoding"),
    ("FallbackToLongCode", "fallback_to_long_code"),
    ("AreaCodeGeomatch", "area_code_geomatch"),
    ("SynchronousValidation", "synchronous_validation"),
)
SCAN_MESSAGE_CONTENT = ("inherit", "enable", "disable")
USECASES = ("notifications", "marketing", "verification", "discussion", "poll", "undeclared")
MAX_VALIDITY_PERIOD = 36000
# Messaging v1 answers a malformed parameter with the generic "invalid parameter" code.
INVALID_PARAMETER = 20001

Changes = dict[str, str | bool | int | None]


def validate_number_update(params: MultiMapping[str]) -> Changes | Problem:
    """The attribute changes of an IncomingPhoneNumber update; "" clears a URL."""
    changes: Changes = {}
    if "FriendlyName" in params:
        changes["friendly_name"] = params["FriendlyName"]
    for name, attribute in NUMBER_URL_FIELDS:
        if name in params:
            url = params[name].strip()
            if url and not valid_http_url(url, max_length=MAX_CALLBACK_URL):
                return Problem(21402, f"{name} is not valid: {url}")
            changes[attribute] = url
    if "StatusCallback" in params:
        callback = params["StatusCallback"].strip()
        if callback and not valid_http_url(callback, max_length=MAX_CALLBACK_URL):
            return Problem(21502, f"The callback url provided is not a valid URL: {callback}")
        changes["status_callback"] = callback
    for name, attribute in NUMBER_METHOD_FIELDS:
        if name in params:
            method = _method(params[name])
            if method is None:
                return Problem(21403, f"{name} must be either GET or POST, not {params[name]!r}")
            changes[attribute] = method
    return changes


def validate_service_update(params: MultiMapping[str]) -> Changes | Problem:
    """The attribute changes of a Messaging Service update; "" clears a URL (to null)."""
    changes: Changes = {}
    if "FriendlyName" in params:
        changes["friendly_name"] = params["FriendlyName"]
    for name, attribute in SERVICE_URL_FIELDS:
        if name in params:
            url = params[name].strip()
            if url and not valid_http_url(url, max_length=MAX_CALLBACK_URL):
                return Problem(INVALID_PARAMETER, f"Invalid parameter: {name}")
            changes[attribute] = url or None
    for name, attribute in SERVICE_METHOD_FIELDS:
        if name in params:
            method = _method(params[name])
            if method is None:
                return Problem(INVALID_PARAMETER, f"Invalid parameter: {name}")
            changes[attribute] = method
    for name, attribute in SERVICE_FLAG_FIELDS:
        if name in params:
            flag = params[name].strip().lower()
            if flag not in ("true", "false"):
                return Problem(INVALID_PARAMETER, f"Invalid parameter: {name}")
            changes[attribute] = flag == "true"
    return _service_settings(params, changes)


def _service_settings(params: MultiMapping[str], changes: Changes) -> Changes | Problem:
    if "ValidityPeriod" in params:
        raw = params["ValidityPeriod"].strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_VALIDITY_PERIOD:
            return Problem(INVALID_PARAMETER, "Invalid parameter: ValidityPeriod")
        changes["validity_period"] = int(raw)
    for name, attribute, allowed in (
        ("ScanMessageContent", "scan_message_content", SCAN_MESSAGE_CONTENT),
        ("Usecase", "usecase", USECASES),
    ):
        if name in params:
            if params[name] not in allowed:
                return Problem(INVALID_PARAMETER, f"Invalid parameter: {name}")
            changes[attribute] = params[name]
    return changes


def _method(raw: str) -> str | None:
    method = raw.strip().upper()
    return method if method in ("GET", "POST") else None
