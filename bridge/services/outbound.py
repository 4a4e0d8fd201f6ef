"""Service: accept a text from an extension — validated, routed, stored and queued, or refused."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
import secrets
from datetime import datetime
from typing import Literal, assert_never
from urllib.parse import urlsplit

import aiohttp

from bridge.db import dialplan as dialplan_repo
from bridge.db import media as media_repo
from bridge.db import messages as messages_repo
from bridge.db import opt_outs
from bridge.db import outbound as repo
from bridge.db import sms_configs as configs_repo
from bridge.db import tenants as tenants_repo
from bridge.db.media import MediaFile, OutboundFile
from bridge.db.pool import Connection, Database
from bridge.db.sms_configs import SendingConfig
from bridge.errors import Conflict, FieldProblem, InvalidInput, NotFound
from bridge.ids import new_id
from bridge.log import get_logger
from bridge.models import (
    MAX_BODY_CHARS,
    ConfigId,
    InlineMedia,
    MediaItem,
    Message,
    MessageId,
    OutboundExplainRequest,
    OutboundExplanation,
    SendChannel,
    SendRequest,
    StatusChange,
    TenantId,
    country_of,
    number_field,
    split_address,
)
from bridge.netguard import FetchFailed, FetchTooLarge, fetch_bounded, is_public
from bridge.routing import (
    NO_ALPHANUMERIC_SENDER,
    ConfigView,
    CountryNotAllowed,
    NoSender,
    OutboundPlan,
    RoutingError,
    SenderKind,
    matching_rule,
    route_outbound,
)
from bridge.twilio.encoding import segments_of

__all__ = ["MediaFile", "OutboundService"]

log = get_logger(__name__)

# Where a send came from: the API (the portal), or a phone by SIP MESSAGE (design §10).
Origin = Literal["api", "sip"]

# Segments per second by sender type (design §6); a number's own `mps` overrides.
MPS_BY_TYPE = {"long_code": 1.0, "toll_free": 3.0, "short_code": 100.0}
ALPHANUMERIC_MPS = 10.0
# Twilio paces messaging-service sends itself; the bridge only keeps each destination's
# texts in order, over a few parallel lanes per service.
SERVICE_MPS = 10_000.0
SERVICE_LANES = 8
# WhatsApp senders: messages (not segments) per second, unless the number says otherwise.
WHATSAPP_MPS = 80.0
# The customer-service window the remote's last WhatsApp message opens (design §12).
WHATSAPP_WINDOW_SECONDS = 24 * 3600.0
# Fields added to SendRequest later: left out of the hash while unset, so an Idempotency-Key
# used just before an upgrade still matches its own repeat just after it.
_LATER_FIELDS = ("channel", "content_sid", "content_variables")
MAX_MEDIA_REDIRECTS = 3
MEDIA_FETCH_LIMITS = aiohttp.ClientTimeout(total=15)
_SEPARATORS = re.compile(r"[\s().\-/]")


class BodyTooLong(InvalidInput):
    """The body is longer than 1,600 characters."""

    code = "body_too_long"


class TooMuchMedia(InvalidInput):
    """Too many media items, or too many bytes."""

    code = "too_much_media"


class RecipientOptedOut(InvalidInput):
    """The recipient texted STOP to this configuration."""

    code = "recipient_opted_out"


class MediaUnavailable(InvalidInput):
    """A media item could not be read."""

    code = "media_unavailable"


class WhatsappWindowClosed(InvalidInput):
    """The customer has not written by WhatsApp in the last 24 hours: only an approved
    template (content_sid) may be sent now."""

    code = "whatsapp_window_closed"


def send_channel(to: str, channel: SendChannel | None) -> tuple[SendChannel, str]:
    """The channel of a send and the number as dialled: ``to`` may be ``whatsapp:+…``."""
    prefixed, dialled = split_address(to)
    if prefixed == "rcs":
        raise InvalidInput.field(
            "to", "texts are sent by sms or whatsapp; a Messaging Service chooses RCS itself"
        )
    if prefixed == "whatsapp":
        if channel == "sms":
            raise InvalidInput.field("channel", "is sms, but to is a whatsapp: address")
        return "whatsapp", dialled
    return channel or "sms", to


def check_content(body: SendRequest, channel: SendChannel) -> None:
    """A template is WhatsApp's, and is the whole content: Twilio fails a template sent with a
    body outside the window (twilio.md §9)."""
    if body.content_variables is not None and body.content_sid is None:
        raise InvalidInput.field("content_variables", "needs content_sid")
    if body.content_sid is None:
        return
    if channel != "whatsapp":
        raise InvalidInput.field("content_sid", "templates are sent by whatsapp")
    if body.body or body.media:
        raise InvalidInput.field("body", "a template (content_sid) is sent without body or media")


def dialled_digits(to: str) -> str:
    """What the rules see: the number as dialled, without the separators people type."""
    return _SEPARATORS.sub("", to)


def request_hash(body: SendRequest) -> str:
    fields = body.model_dump(mode="json")
    for name in _LATER_FIELDS:
        if fields[name] is None:
            del fields[name]
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def sender_key_and_mps(plan: OutboundPlan, config: SendingConfig) -> tuple[str, float]:
    """The queue a text joins (one per sender, leased by one process at a time) and its pace.
    A number's WhatsApp texts have a queue and a pace of their own (design §12)."""
    channel = plan.channel
    if channel == "whatsapp":
        number = config.numbers[plan.sender]
        return f"{plan.config_id}:whatsapp:{plan.sender}", number.mps or WHATSAPP_MPS
    if channel != "sms":
        assert_never(channel)
    kind = plan.sender_kind
    if kind == "alphanumeric":
        return f"{plan.config_id}:{plan.sender}", ALPHANUMERIC_MPS
    if kind == "messaging_service":
        lane = int(hashlib.sha256(plan.destination.encode()).hexdigest(), 16) % SERVICE_LANES
        return f"{plan.config_id}:{plan.sender}:{lane}", SERVICE_MPS
    if kind == "number":
        number = config.numbers[plan.sender]
        return f"{plan.config_id}:{plan.sender}", number.mps or MPS_BY_TYPE[number.type]
    assert_never(kind)


def routing_view(config: SendingConfig) -> ConfigView:
    return ConfigView(
        id=config.id,
        enabled=config.enabled,
        sender_id=config.sender_id,
        messaging_service_sid=config.messaging_service_sid,
        numbers=frozenset(config.texting),
        allowed_countries=frozenset(config.allowed_countries),
        whatsapp_numbers=config.whatsapp,
    )


class OutboundService:
    """Everything is checked before anything is queued; a refused send stores nothing."""

    def __init__(
        self,
        db: Database,
        session: aiohttp.ClientSession | None,
        *,
        media_max_items: int,
        media_max_bytes: int,
        media_ttl_seconds: float,
        allow_private_media: bool = False,
    ) -> None:
        self._db = db
        self._session = session
        self._max_items = media_max_items
        self._max_bytes = media_max_bytes
        self._media_ttl = media_ttl_seconds
        self._allow_private = allow_private_media

    async def _media(self, items: list[InlineMedia | object]) -> list[OutboundFile]:
        if len(items) > self._max_items:
            raise TooMuchMedia(f"at most {self._max_items} media items")
        loaded: list[OutboundFile] = []
        total = 0
        for i, item in enumerate(items):
            if isinstance(item, InlineMedia):
                try:
                    data = base64.b64decode(item.data_base64, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise InvalidInput.field(f"media[{i}].data_base64", "is not base64") from exc
                content_type = item.content_type
            else:
                content_type, data = await self._fetch(i, str(getattr(item, "url", "")))
            total += len(data)
            if len(data) > self._max_bytes or total > self._max_bytes:
                raise TooMuchMedia(f"media may hold at most {self._max_bytes} bytes in all")
            loaded.append(OutboundFile(secrets.token_urlsafe(24), content_type, data))
        return loaded

    async def _fetch(self, index: int, url: str) -> tuple[str, bytes]:
        """GET a tenant's media URL, every redirect hop checked."""
        field = f"media[{index}].url"
        if self._session is None:
            raise MediaUnavailable.field(field, "media by URL is not enabled")
        try:
            fetched = await fetch_bounded(
                self._session,
                url,
                max_bytes=self._max_bytes,
                limits=MEDIA_FETCH_LIMITS,
                max_redirects=MAX_MEDIA_REDIRECTS,
                check=lambda hop: self._check_host(field, hop),
            )
        except FetchTooLarge as exc:
            raise TooMuchMedia(f"media may hold at most {self._max_bytes} bytes in all") from exc
        except FetchFailed as exc:
            raise MediaUnavailable.field(field, str(exc)) from exc
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise MediaUnavailable.field(field, "could not be fetched") from exc
        return fetched.content_type or "application/octet-stream", fetched.data

    def _check_host(self, field: str, url: str) -> None:
        """Names are checked by the session's resolver as it connects; addresses written
        in the URL never reach a resolver, so they are checked here."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MediaUnavailable.field(field, "must be an http(s) URL")
        if self._allow_private:
            return
        try:
            ipaddress.ip_address(parts.hostname)
        except ValueError:
            return
        if not is_public(parts.hostname):
            raise MediaUnavailable.field(field, "refers to a private address")

    async def plan(
        self, conn: Connection, tenant_id: TenantId, body: SendRequest
    ) -> tuple[OutboundPlan, SendingConfig]:
        """Design §6 outbound, from the tenant's rules and configurations as they are now:
        only the configurations of the matching rule's trunks are read."""
        channel, to = send_channel(body.to, body.channel)
        tenant = await tenants_repo.require_tenant(conn, tenant_id)
        extension = await dialplan_repo.get_extension(conn, tenant_id, body.from_extension)
        if extension is None:
            raise InvalidInput.field("from_extension", "no such extension in this tenant")
        rules = await dialplan_repo.get_outbound_rules(conn, tenant_id)
        dialled = dialled_digits(to)
        rule = matching_rule(rules, body.from_extension, dialled)
        configs = (
            {} if rule is None else await configs_repo.sending_configs(conn, tenant_id, rule.trunks)
        )
        plan = route_outbound(
            rules,
            from_extension=body.from_extension,
            dialled=dialled,
            default_country=tenant.default_country,
            extension=extension,
            from_did=body.from_did,
            configs={trunk: routing_view(c) for trunk, c in configs.items()},
            channel=channel,
        )
        return plan, configs[plan.trunk_id]

    async def accept(
        self,
        tenant_id: TenantId,
        body: SendRequest,
        idempotency_key: str | None,
        *,
        test_config: ConfigId | None = None,
        origin: Origin = "api",
    ) -> Message:
        """Check, route, store and queue a send; refusals raise and store nothing. A phone's
        texts (``origin`` sip) are told back to it when Twilio fails them."""
        if len(body.body) > MAX_BODY_CHARS:
            raise BodyTooLong(f"the body has {len(body.body)} characters; at most {MAX_BODY_CHARS}")
        channel, _ = send_channel(body.to, body.channel)
        check_content(body, channel)
        if not body.body and not body.media and body.content_sid is None:
            raise InvalidInput.field("body", "a text needs a body or media")
        media = await self._media(list(body.media))
        segments, encoding = segments_of(channel, body.body)
        message_id = MessageId(new_id("msg"))
        async with self._db.transaction() as conn:
            if idempotency_key is not None:
                taken = await repo.remember_key(
                    conn, tenant_id, idempotency_key, request_hash(body), message_id
                )
                if taken is not None:
                    return await self._replay(conn, tenant_id, body, taken)
            if test_config is None:
                plan, config = await self.plan(conn, tenant_id, body)
            else:
                plan, config = await self._test_plan(conn, tenant_id, test_config, body.to)
            if origin == "sip" and body.channel is None and channel == "sms":
                reply = await self._whatsapp_reply(conn, tenant_id, body, plan)
                if reply is not None:
                    body, plan, config = reply
                    channel = "whatsapp"
                    segments, encoding = segments_of(channel, body.body)
            if await opt_outs.is_opted_out(conn, plan.config_id, plan.destination, channel):
                raise RecipientOptedOut.field("to", f"{plan.destination} has opted out (STOP)")
            if channel == "whatsapp" and body.content_sid is None:
                await self._require_window(conn, plan)
            sender_key, mps = sender_key_and_mps(plan, config)
            new = repo.NewOutbound(
                id=message_id,
                tenant_id=tenant_id,
                config_id=plan.config_id,
                from_number=plan.sender,
                to_number=plan.destination,
                body=body.body,
                from_extension=None if test_config else body.from_extension,
                segments=segments,
                encoding=encoding,
                channel=channel,
                content_sid=body.content_sid,
                content_variables=body.content_variables,
                routing={
                    "rule": plan.rule_name,
                    "rule_index": plan.rule_index,
                    "trunk_id": plan.trunk_id,
                    "sender_kind": plan.sender_kind,
                    "origin": origin,
                    "explanation": list(plan.explanation),
                },
                sender_key=sender_key,
                mps=mps,
                num_media=len(media),
            )
            created_at = await repo.insert(conn, new)
            if media:
                await media_repo.insert_outbound(conn, message_id, media, self._media_ttl)
        message = _accepted(new, created_at, media)
        log.info(
            "outbound.accepted",
            tenant_id=tenant_id,
            config_id=plan.config_id,
            message_id=message_id,
            segments=message.segments,
            media=len(media),
        )
        return message

    async def _whatsapp_reply(
        self, conn: Connection, tenant_id: TenantId, body: SendRequest, plan: OutboundPlan
    ) -> tuple[SendRequest, OutboundPlan, SendingConfig] | None:
        """A phone has no channel to choose: its text goes by WhatsApp while the remote's
        WhatsApp window with the number it would go from is open (the remote wrote by WhatsApp
        in the last 24 hours, design §12), and by SMS otherwise."""
        opened = await messages_repo.whatsapp_window_opened(
            conn, plan.config_id, plan.sender, plan.destination, WHATSAPP_WINDOW_SECONDS
        )
        if opened is None:
            return None
        by_whatsapp = body.model_copy(update={"channel": "whatsapp"})
        try:
            whatsapp_plan, config = await self.plan(conn, tenant_id, by_whatsapp)
        except RoutingError:
            return None  # the number no longer sends by WhatsApp: SMS it is
        return by_whatsapp, whatsapp_plan, config

    async def _require_window(self, conn: Connection, plan: OutboundPlan) -> None:
        """Free-form WhatsApp only inside the window the remote's last message opened."""
        opened = await messages_repo.whatsapp_window_opened(
            conn, plan.config_id, plan.sender, plan.destination, WHATSAPP_WINDOW_SECONDS
        )
        if opened is None:
            raise WhatsappWindowClosed(
                f"{plan.destination} has not written to {plan.sender} by WhatsApp in the last "
                "24 hours: send an approved template (content_sid)",
                details=(FieldProblem("content_sid", "required outside the 24-hour window"),),
            )

    async def _replay(
        self, conn: Connection, tenant_id: TenantId, body: SendRequest, taken: tuple[str, MessageId]
    ) -> Message:
        stored_hash, message_id = taken
        if stored_hash != request_hash(body):
            raise Conflict("this Idempotency-Key was used with another request")
        message = await messages_repo.get(conn, tenant_id, message_id)
        if message is None:
            raise Conflict("this Idempotency-Key belongs to a message that no longer exists")
        return message

    async def explain(
        self, tenant_id: TenantId, request: OutboundExplainRequest
    ) -> OutboundExplanation:
        """The plan a send would get now, or why it would be refused; nothing is sent."""
        body = SendRequest(
            from_extension=request.from_extension,
            to=request.to,
            from_did=request.from_did,
            channel=request.channel,
        )
        async with self._db.connection() as conn:
            try:
                plan, _config = await self.plan(conn, tenant_id, body)
            except RoutingError as exc:
                return OutboundExplanation(
                    direction="outbound",
                    from_extension=request.from_extension,
                    decision=exc.code,
                    error=exc.message,
                    explanation=list(exc.explanation),
                )
            opted_out = await opt_outs.is_opted_out(
                conn, plan.config_id, plan.destination, plan.channel
            )
            window = None
            if plan.channel == "whatsapp":
                window = await messages_repo.whatsapp_window_opened(
                    conn, plan.config_id, plan.sender, plan.destination, WHATSAPP_WINDOW_SECONDS
                )
        explanation = list(plan.explanation)
        if opted_out:
            explanation.append(f"{plan.destination} has opted out: the send would be refused")
        if plan.channel == "whatsapp":
            explanation.append(
                "the WhatsApp window is open: free-form text and media may be sent"
                if window is not None
                else "the WhatsApp window is closed: only a template (content_sid) may be sent"
            )
        return OutboundExplanation(
            direction="outbound",
            from_extension=request.from_extension,
            decision="recipient_opted_out" if opted_out else "send",
            to=plan.destination,
            country=plan.destination_country,
            rule=plan.rule_name,
            rule_index=plan.rule_index,
            trunk_id=plan.trunk_id,
            config_id=plan.config_id,
            sender_kind=plan.sender_kind,
            sender=plan.sender,
            channel=plan.channel,
            explanation=explanation,
        )

    async def media(self, token: str) -> MediaFile:
        """A file behind a public media link (an outbound MMS's, or an inbound item linked
        from a phone's text), while the link has not expired."""
        async with self._db.connection() as conn:
            found = await media_repo.public_file(conn, token)
        if found is None:
            raise NotFound("no such media")
        return found

    async def _test_plan(
        self, conn: Connection, tenant_id: TenantId, config_id: ConfigId, to: str
    ) -> tuple[OutboundPlan, SendingConfig]:
        """A test text skips the rules: this configuration, its own sender."""
        tenant = await tenants_repo.require_tenant(conn, tenant_id)
        config = await configs_repo.sending_config(conn, tenant_id, config_id)
        if config is None:
            raise NotFound("SMS configuration not found")
        destination = number_field("to", to, tenant.default_country)
        country = country_of(destination) or ""
        if country not in config.allowed_countries:
            raise CountryNotAllowed.field("to", f"{country or 'unknown'} is not allowed")
        notes = ["test message: sent from this configuration, outbound rules not consulted"]
        kind: SenderKind
        texting = config.texting
        if config.sender_id and country not in NO_ALPHANUMERIC_SENDER:
            kind, sender = "alphanumeric", config.sender_id
        elif texting:
            kind, sender = "number", texting[0]
        elif config.messaging_service_sid:
            kind, sender = "messaging_service", config.messaging_service_sid
        else:
            raise NoSender("the configuration has no number, sender_id or messaging service")
        plan = OutboundPlan(
            rule_index=-1,
            rule_name="test-message",
            destination=destination,
            destination_country=country,
            trunk_id=config.trunk_id,
            config_id=config.id,
            sender_kind=kind,
            sender=sender,
            explanation=tuple(notes),
        )
        return plan, config


def _accepted(new: repo.NewOutbound, created_at: datetime, files: list[OutboundFile]) -> Message:
    """The message as just stored: reading it back would cost a round trip."""
    return Message(
        id=new.id,
        tenant_id=new.tenant_id,
        config_id=new.config_id,
        direction="outbound",
        status="accepted",
        channel=new.channel,
        from_=new.from_number,
        to=new.to_number,
        body=new.body,
        content_sid=new.content_sid,
        content_variables=new.content_variables,
        extensions=[new.from_extension] if new.from_extension else [],
        segments=new.segments,
        encoding=new.encoding,
        media=[
            MediaItem(index=i, content_type=f.content_type, size=len(f.data), status="stored")
            for i, f in enumerate(files)
        ],
        twilio_sid=None,
        error_code=None,
        error_message=None,
        routing=new.routing,
        created_at=created_at,
        updated_at=created_at,
        # The history row was written with the message, in the same transaction (same now()).
        status_history=[StatusChange(status="accepted", error_code=None, at=created_at)],
        deliveries=[],
    )
