"""Service: accept a text from an extension — validated, routed, stored and queued, or refused."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
import secrets
from urllib.parse import urljoin, urlsplit

import aiohttp

from bridge.db import dialplan as dialplan_repo
from bridge.db import messages as messages_repo
from bridge.db import outbound as repo
from bridge.db import sms_configs as configs_repo
from bridge.db import tenants as tenants_repo
from bridge.db.pool import Connection, Database
from bridge.errors import Conflict, InvalidInput, NotFound
from bridge.ids import new_id
from bridge.log import get_logger
from bridge.models import (
    MAX_BODY_CHARS,
    ConfigId,
    InlineMedia,
    Message,
    MessageId,
    OutboundExplainRequest,
    SendRequest,
    SmsConfig,
    TenantId,
    TrunkId,
    country_of,
    number_field,
)
from bridge.netguard import is_public
from bridge.routing import (
    NO_ALPHANUMERIC_SENDER,
    ConfigView,
    CountryNotAllowed,
    NoSender,
    OutboundPlan,
    RoutingError,
    SenderKind,
    route_outbound,
)
from bridge.sms_configs import SmsConfigService
from bridge.twilio.encoding import segment_info

log = get_logger(__name__)

# Segments per second by sender type (design §6); a number's own `mps` overrides.
MPS_BY_TYPE = {"long_code": 1.0, "toll_free": 3.0, "short_code": 100.0}
ALPHANUMERIC_MPS = 10.0
# Twilio paces messaging-service sends itself; the bridge only keeps each destination's
# texts in order, over a few parallel lanes per service.
SERVICE_MPS = 10_000.0
SERVICE_LANES = 8
MAX_MEDIA_REDIRECTS = 3
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


def dialled_digits(to: str) -> str:
    """What the rules see: the number as dialled, without the separators people type."""
    return _SEPARATORS.sub("", to)


def request_hash(body: SendRequest) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def sender_key_and_mps(plan: OutboundPlan, config: SmsConfig) -> tuple[str, float]:
    if plan.sender_kind == "alphanumeric":
        return f"{plan.config_id}:{plan.sender}", ALPHANUMERIC_MPS
    if plan.sender_kind == "messaging_service":
        lane = int(hashlib.sha256(plan.destination.encode()).hexdigest(), 16) % SERVICE_LANES
        return f"{plan.config_id}:{plan.sender}:{lane}", SERVICE_MPS
    number = next(n for n in config.numbers if n.number == plan.sender)
    return f"{plan.config_id}:{plan.sender}", number.mps or MPS_BY_TYPE[number.type]


class OutboundService:
    """Everything is checked before anything is queued; a refused send stores nothing."""

    def __init__(
        self,
        db: Database,
        configs: SmsConfigService,
        session: aiohttp.ClientSession | None,
        *,
        media_max_items: int,
        media_max_bytes: int,
        media_ttl_seconds: float,
        allow_private_media: bool = False,
    ) -> None:
        self._db = db
        self._configs = configs
        self._session = session
        self._max_items = media_max_items
        self._max_bytes = media_max_bytes
        self._media_ttl = media_ttl_seconds
        self._allow_private = allow_private_media

    async def _media(self, items: list[InlineMedia | object]) -> list[tuple[str, str, bytes]]:
        if len(items) > self._max_items:
            raise TooMuchMedia(f"at most {self._max_items} media items")
        loaded: list[tuple[str, str, bytes]] = []
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
            loaded.append((secrets.token_urlsafe(24), content_type, data))
        return loaded

    async def _fetch(self, index: int, url: str) -> tuple[str, bytes]:
        """GET a tenant's media URL: redirects followed by hand, so that every hop is checked."""
        field = f"media[{index}].url"
        if self._session is None:
            raise MediaUnavailable.field(field, "media by URL is not enabled")
        timeout = aiohttp.ClientTimeout(total=15)
        try:
            for _ in range(MAX_MEDIA_REDIRECTS + 1):
                self._check_host(field, url)
                async with self._session.get(
                    url, timeout=timeout, allow_redirects=False
                ) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        url = urljoin(url, response.headers.get("Location", ""))
                        continue
                    if response.status != 200:
                        raise MediaUnavailable.field(field, f"answered HTTP {response.status}")
                    data = bytearray()
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        data += chunk
                        if len(data) > self._max_bytes:
                            raise TooMuchMedia(
                                f"media may hold at most {self._max_bytes} bytes in all"
                            )
                    content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
                    return content_type or "application/octet-stream", bytes(data)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise MediaUnavailable.field(field, "could not be fetched") from exc
        raise MediaUnavailable.field(field, "too many redirects")

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
    ) -> tuple[OutboundPlan, SmsConfig]:
        """Design §6 outbound, from the tenant's rules and configurations as they are now."""
        tenant = await tenants_repo.get_tenant(conn, tenant_id)
        if tenant is None:
            raise NotFound("tenant not found")
        extensions = {e.extension: e for e in await dialplan_repo.get_extensions(conn, tenant_id)}
        extension = extensions.get(body.from_extension)
        if extension is None:
            raise InvalidInput.field("from_extension", "no such extension in this tenant")
        rules = await dialplan_repo.get_outbound_rules(conn, tenant_id)
        configs: dict[TrunkId, SmsConfig] = {}
        cursor = ""
        while True:
            page = await configs_repo.list_page(conn, tenant_id, cursor, 200)
            for row in page:
                config = self._configs.view(row)
                configs[config.trunk_id] = config
            if len(page) < 200:
                break
            cursor = page[-1].id
        plan = route_outbound(
            rules,
            from_extension=body.from_extension,
            dialled=dialled_digits(body.to),
            default_country=tenant.default_country,
            extension=extension,
            from_did=body.from_did,
            configs={trunk: ConfigView.of(c) for trunk, c in configs.items()},
        )
        return plan, configs[plan.trunk_id]

    async def accept(
        self,
        tenant_id: TenantId,
        body: SendRequest,
        idempotency_key: str | None,
        *,
        test_config: ConfigId | None = None,
    ) -> Message:
        if len(body.body) > MAX_BODY_CHARS:
            raise BodyTooLong(f"the body has {len(body.body)} characters; at most {MAX_BODY_CHARS}")
        if not body.body and not body.media:
            raise InvalidInput.field("body", "a text needs a body or media")
        media = await self._media(list(body.media))
        info = segment_info(body.body)
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
            if await messages_repo.is_opted_out(conn, plan.config_id, plan.destination):
                raise RecipientOptedOut.field("to", f"{plan.destination} has opted out (STOP)")
            sender_key, mps = sender_key_and_mps(plan, config)
            await repo.insert(
                conn,
                repo.NewOutbound(
                    id=message_id,
                    tenant_id=tenant_id,
                    config_id=plan.config_id,
                    from_number=plan.sender,
                    to_number=plan.destination,
                    body=body.body,
                    from_extension=None if test_config else body.from_extension,
                    segments=max(1, info.segments),
                    encoding=info.encoding,
                    routing={
                        "rule": plan.rule_name,
                        "rule_index": plan.rule_index,
                        "trunk_id": plan.trunk_id,
                        "sender_kind": plan.sender_kind,
                        "explanation": list(plan.explanation),
                    },
                    sender_key=sender_key,
                    mps=mps,
                    num_media=len(media),
                ),
            )
            if media:
                await repo.insert_media(conn, message_id, media, self._media_ttl)
            message = await messages_repo.get(conn, tenant_id, message_id)
        assert message is not None
        log.info(
            "outbound.accepted",
            tenant_id=tenant_id,
            config_id=plan.config_id,
            message_id=message_id,
            segments=message.segments,
            media=len(media),
        )
        return message

    async def _replay(
        self, conn: Connection, tenant_id: TenantId, body: SendRequest, taken: tuple[str, str]
    ) -> Message:
        stored_hash, message_id = taken
        if stored_hash != request_hash(body):
            raise Conflict("this Idempotency-Key was used with another request")
        message = await messages_repo.get(conn, tenant_id, MessageId(message_id))
        if message is None:
            raise Conflict("this Idempotency-Key belongs to a message that no longer exists")
        return message

    async def explain(
        self, tenant_id: TenantId, request: OutboundExplainRequest
    ) -> dict[str, object]:
        """The plan a send would get now, or why it would be refused; nothing is sent."""
        body = SendRequest(
            from_extension=request.from_extension, to=request.to, from_did=request.from_did
        )
        answer: dict[str, object] = {
            "direction": "outbound",
            "from_extension": request.from_extension,
        }
        async with self._db.connection() as conn:
            try:
                plan, _config = await self.plan(conn, tenant_id, body)
            except RoutingError as exc:
                return {
                    **answer,
                    "decision": exc.code,
                    "error": exc.message,
                    "explanation": list(exc.explanation),
                }
            opted_out = await messages_repo.is_opted_out(conn, plan.config_id, plan.destination)
        explanation = list(plan.explanation)
        if opted_out:
            explanation.append(f"{plan.destination} has opted out: the send would be refused")
        return {
            **answer,
            "decision": "recipient_opted_out" if opted_out else "send",
            "to": plan.destination,
            "country": plan.destination_country,
            "rule": plan.rule_name,
            "rule_index": plan.rule_index,
            "trunk_id": plan.trunk_id,
            "config_id": plan.config_id,
            "sender_kind": plan.sender_kind,
            "sender": plan.sender,
            "explanation": explanation,
        }

    async def media(self, token: str) -> tuple[str, bytes] | None:
        async with self._db.connection() as conn:
            row = await repo.media_for_token(conn, token)
        return None if row is None else (row["content_type"], bytes(row["data"]))

    async def _test_plan(
        self, conn: Connection, tenant_id: TenantId, config_id: ConfigId, to: str
    ) -> tuple[OutboundPlan, SmsConfig]:
        """A test text skips the rules: this configuration, its own sender."""
        tenant = await tenants_repo.get_tenant(conn, tenant_id)
        row = await configs_repo.get(conn, tenant_id, config_id)
        if tenant is None or row is None:
            raise NotFound("SMS configuration not found")
        config = self._configs.view(row)
        destination = number_field("to", to, tenant.default_country)
        country = country_of(destination) or ""
        if country not in config.allowed_countries:
            raise CountryNotAllowed.field("to", f"{country or 'unknown'} is not allowed")
        notes = ["test message: sent from this configuration, outbound rules not consulted"]
        kind: SenderKind
        if config.sender_id and country not in NO_ALPHANUMERIC_SENDER:
            kind, sender = "alphanumeric", config.sender_id
        elif config.numbers:
            kind, sender = "number", config.numbers[0].number
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
