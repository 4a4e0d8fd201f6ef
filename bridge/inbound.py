"""Service: Twilio's inbound webhooks — verified, stored once, routed, queued for the PBX."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bridge.crypto import SecretBox
from bridge.db import dialplan as dialplan_repo
from bridge.db import events as events_repo
from bridge.db import messages as repo
from bridge.db import sms_configs as configs_repo
from bridge.db.notify import MEDIA
from bridge.db.pool import Connection, Database, notify
from bridge.db.sms_configs import WebhookConfig
from bridge.errors import BridgeError, DatabaseUnavailable
from bridge.events import RECEIVED
from bridge.groupcommit import GroupCommit
from bridge.ids import new_id
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.models import Message, MessageId, TenantId
from bridge.routing import InboundDecision, InboundRuleIndex, route_inbound
from bridge.sms_configs import secret_context
from bridge.twilio.encoding import segment_info
from bridge.twilio.signature import validate_request

log = get_logger(__name__)

OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "UNSUBSCRIBE", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT", "CANCEL"}
)
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
REQUIRED = ("MessageSid", "From", "To")
CONFIG_CACHE_SECONDS = 1.0
CONFIG_CACHE_SIZE = 10_000
_MEDIA_URL = re.compile(r"MediaUrl(\d+)")


class MissingParameter(BridgeError):
    """A required webhook parameter is missing."""

    code = "missing_parameter"


Params = Sequence[tuple[str, str]]


def first(params: Params, name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value
    return None


def opt_change(body: str, opt_out_type: str | None) -> tuple[str, str] | None:
    """``("out"|"in", keyword)`` when the text (or Twilio's OptOutType) changes consent."""
    if opt_out_type:
        kind = opt_out_type.strip().upper()
        if kind == "STOP":
            return "out", body.strip().upper() or kind
        if kind == "START":
            return "in", body.strip().upper() or kind
        return None
    keyword = body.strip().upper()
    if keyword in OPT_OUT_KEYWORDS:
        return "out", keyword
    if keyword in OPT_IN_KEYWORDS:
        return "in", keyword
    return None


def media_items(params: Params) -> list[tuple[str, str | None]]:
    """``(MediaUrlN, MediaContentTypeN)`` in N order."""
    urls: dict[int, str] = {}
    types: dict[str, str] = {}
    for key, value in params:
        match = _MEDIA_URL.fullmatch(key)
        if match:
            urls.setdefault(int(match[1]), value)
        elif key.startswith("MediaContentType"):
            types.setdefault(key.removeprefix("MediaContentType"), value)
    return [(urls[n], types.get(str(n))) for n in sorted(urls)]


@dataclass(frozen=True)
class Receipt:
    """What happened to a webhook: stored now, or already stored before."""

    message_id: MessageId | None
    duplicate: bool


class InboundService:
    """Authenticates Twilio's webhooks and stores inbound messages with their routing."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        metrics: Metrics,
        *,
        media_max_items: int,
        group_commits: int = 2,
    ) -> None:
        self._db = db
        self._box = box
        self._metrics = metrics
        self._media_max = media_max_items
        self._rule_cache: dict[TenantId, tuple[int, InboundRuleIndex]] = {}
        self._config_cache: dict[str, tuple[float, WebhookConfig | None]] = {}
        self._writer: GroupCommit[_Webhook, Receipt] = GroupCommit(
            self._store, max_concurrent=group_commits, batch_errors=(DatabaseUnavailable,)
        )

    async def config_for(self, token: str) -> WebhookConfig | None:
        """The token's configuration, remembered for a second: Twilio sends in bursts, and a
        change (disable, rotation grace ending) may take that second to be seen."""
        now = time.monotonic()
        cached = self._config_cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._db.connection() as conn:
            config = await configs_repo.webhook_config(conn, token)
        if len(self._config_cache) >= CONFIG_CACHE_SIZE:
            self._config_cache.clear()
        self._config_cache[token] = (now + CONFIG_CACHE_SECONDS, config)
        return config

    def verify(
        self,
        config: WebhookConfig,
        *,
        url: str,
        params: Params,
        raw_body: bytes,
        content_type: str,
        signature: str | None,
    ) -> bool:
        """Twilio signs with the account's auth token, also when we send with an API key."""
        token = self._box.open(
            config.secrets.auth_token_sealed(), secret_context(config.id, "auth_token")
        )
        return validate_request(
            url=url,
            params=params,
            raw_body=raw_body,
            content_type=content_type,
            signature=signature,
            auth_tokens=(token,),
        )

    async def _rules(self, conn: Connection, config: WebhookConfig) -> InboundRuleIndex:
        cached = self._rule_cache.get(config.tenant_id)
        if cached is not None and cached[0] == config.rules_version:
            return cached[1]
        rules = await dialplan_repo.get_inbound_rules(conn, config.tenant_id)
        index = InboundRuleIndex.build(rules)
        self._rule_cache[config.tenant_id] = (config.rules_version, index)
        return index

    async def route(
        self, conn: Connection, config: WebhookConfig, did: str, remote: str
    ) -> InboundDecision:
        affinity = await repo.affinity_extension(
            conn, config.tenant_id, did, remote, config.affinity_hours
        )
        return await self._decide(conn, config, did, remote, affinity)

    async def _decide(
        self, conn: Connection, config: WebhookConfig, did: str, remote: str, affinity: str | None
    ) -> InboundDecision:
        index = await self._rules(conn, config)
        return route_inbound(
            index, did=did, remote=remote, trunk_id=config.trunk_id, affinity_extension=affinity
        )

    async def receive(self, config: WebhookConfig, params: Params) -> Receipt:
        """Store the message, its routing, media and event; answered once committed (with
        whatever else arrived meanwhile: one transaction, one WAL flush, for the group)."""
        missing = [name for name in REQUIRED if not first(params, name)]
        if missing:
            raise MissingParameter(f"missing {', '.join(missing)}")
        return await self._writer.submit(_Webhook.of(config, params))

    async def _store(self, batch: Sequence[_Webhook]) -> list[Receipt]:
        async with self._db.transaction() as conn:
            stored = await self._store_in(conn, batch)
        receipts = []
        for webhook, (message_id, status, reason) in zip(batch, stored, strict=True):
            config = webhook.config
            if message_id is None:
                self._metrics.inbound.labels("duplicate").inc()
                log.info("inbound.duplicate", config_id=config.id)
                receipts.append(Receipt(None, duplicate=True))
                continue
            self._metrics.inbound.labels(status if config.enabled else "disabled").inc()
            log.info(
                "inbound.stored",
                tenant_id=config.tenant_id,
                config_id=config.id,
                message_id=message_id,
                status=status,
                media=len(webhook.media),
                routing=reason,
            )
            receipts.append(Receipt(message_id, duplicate=False))
        return receipts

    async def _store_in(
        self, conn: Connection, batch: Sequence[_Webhook]
    ) -> list[tuple[MessageId | None, str, object]]:
        """Route, insert and queue a batch of webhooks in the caller's transaction: a round
        trip per step for the whole batch, not per message."""
        affinity = await repo.affinity_extensions(
            conn,
            [
                repo.AffinityQuery(
                    w.config.tenant_id,
                    w.did,
                    w.remote,
                    w.config.affinity_hours if w.config.enabled else 0,
                )
                for w in batch
            ],
        )
        rows: list[repo.NewInbound] = []
        for webhook, extension in zip(batch, affinity, strict=True):
            config = webhook.config
            if config.enabled:
                decision = await self._decide(conn, config, webhook.did, webhook.remote, extension)
                routing: dict[str, object] = {
                    "reason": decision.reason,
                    "rule": decision.rule_name,
                    "rule_index": decision.rule_index,
                    "explanation": list(decision.explanation),
                }
                extensions: tuple[str, ...] = decision.extensions
            else:
                routing = {
                    "reason": "config_disabled",
                    "explanation": ["the SMS configuration is disabled: stored, not delivered"],
                }
                extensions = ()
            info = segment_info(webhook.body)
            rows.append(
                repo.NewInbound(
                    id=MessageId(new_id("msg")),
                    tenant_id=config.tenant_id,
                    config_id=config.id,
                    status="received" if extensions or not config.enabled else "unroutable",
                    from_number=webhook.remote,
                    to_number=webhook.did,
                    body=webhook.body,
                    extensions=extensions,
                    segments=max(1, info.segments),
                    encoding=info.encoding,
                    num_media=len(webhook.media),
                    twilio_sid=webhook.sid,
                    routing=routing,
                    params=webhook.params,
                )
            )
        created_at = await repo.insert_inbound(conn, rows)
        events: list[tuple[events_repo.NewEvent, bool]] = []
        media_queued = False
        for webhook, row, created in zip(batch, rows, created_at, strict=True):
            if created is None:
                continue
            media = webhook.media
            if media:
                await repo.insert_media(conn, row.id, media, self._media_max)
                media_queued = True
            change = opt_change(webhook.body, first(webhook.params, "OptOutType"))
            if change is not None:
                config = webhook.config
                if change[0] == "out":
                    await repo.set_opt_out(
                        conn, config.id, config.tenant_id, webhook.remote, change[1]
                    )
                else:
                    await repo.clear_opt_out(conn, config.id, webhook.remote)
            if row.extensions:
                events.append(
                    (
                        events_repo.new_event(_message(row, created), RECEIVED, held=bool(media)),
                        bool(media),
                    )
                )
        if media_queued:
            await notify(conn, MEDIA)
        await events_repo.insert_many(conn, events)
        return [
            (row.id if created is not None else None, row.status, row.routing.get("reason"))
            for row, created in zip(rows, created_at, strict=True)
        ]


def _message(row: repo.NewInbound, created: datetime) -> Message:
    """The message as just stored: re-reading it would cost a round trip."""
    return Message(
        id=row.id,
        tenant_id=row.tenant_id,
        config_id=row.config_id,
        direction="inbound",
        status=row.status,
        from_=row.from_number,
        to=row.to_number,
        body=row.body,
        extensions=list(row.extensions),
        segments=row.segments,
        encoding=row.encoding,
        media=[],
        twilio_sid=row.twilio_sid,
        error_code=None,
        error_message=None,
        routing=row.routing,
        created_at=created,
        updated_at=created,
    )


@dataclass(frozen=True)
class _Webhook:
    """A verified webhook waiting for its group's commit, its parameters read once."""

    config: WebhookConfig
    params: Params
    sid: str
    remote: str
    did: str
    body: str
    media: list[tuple[str, str | None]]

    @classmethod
    def of(cls, config: WebhookConfig, params: Params) -> _Webhook:
        return cls(
            config=config,
            params=params,
            sid=first(params, "MessageSid") or "",
            remote=first(params, "From") or "",
            did=first(params, "To") or "",
            body=first(params, "Body") or "",
            media=media_items(params),
        )
