"""Service: messages, their media, opt-outs, the event stream and routing explanations."""

from __future__ import annotations

from bridge.db import events as events_repo
from bridge.db import messages as repo
from bridge.db import sms_configs as configs_repo
from bridge.db import tenants as tenants_repo
from bridge.db.pool import Database
from bridge.errors import NotFound
from bridge.inbound import InboundService
from bridge.models import (
    InboundExplainRequest,
    Message,
    MessageId,
    OptOut,
    Page,
    TenantId,
    make_page,
    number_field,
)


class MessageService:
    """What the portal reads about texts, and why they went where they went."""

    def __init__(self, db: Database, inbound: InboundService) -> None:
        self._db = db
        self._inbound = inbound

    async def require_tenant(self, tenant_id: TenantId) -> str:
        """The tenant's default country; NotFound if there is no such tenant."""
        async with self._db.connection() as conn:
            tenant = await tenants_repo.get_tenant(conn, tenant_id)
        if tenant is None:
            raise NotFound("tenant not found")
        return tenant.default_country

    async def list_messages(
        self, tenant_id: TenantId, f: repo.MessageFilter, cursor: str | None, limit: int
    ) -> Page[Message]:
        await self.require_tenant(tenant_id)
        async with self._db.connection() as conn:
            items = await repo.list_page(conn, tenant_id, f, cursor, limit + 1)
        return make_page(items, limit, lambda m: m.id)

    async def get(self, tenant_id: TenantId, message_id: MessageId) -> Message:
        async with self._db.connection() as conn:
            message = await repo.get(conn, tenant_id, message_id)
        if message is None:
            raise NotFound("message not found")
        return message

    async def media(
        self, tenant_id: TenantId, message_id: MessageId, index: int
    ) -> tuple[str, bytes]:
        async with self._db.connection() as conn:
            row = await repo.media_data(conn, tenant_id, message_id, index)
        if row is None:
            raise NotFound("no such media item")
        if row["status"] != "stored" or row["data"] is None:
            raise NotFound(f"media item {index} is {row['status']}, not stored")
        return row["content_type"] or "application/octet-stream", bytes(row["data"])

    async def opt_outs(self, tenant_id: TenantId, cursor: str | None, limit: int) -> Page[OptOut]:
        await self.require_tenant(tenant_id)
        after = None
        if cursor and "|" in cursor:
            config_id, number = cursor.split("|", 1)
            after = (config_id, number)
        async with self._db.connection() as conn:
            items = await repo.list_opt_outs(conn, tenant_id, after, limit + 1)
        return make_page(items, limit, lambda o: f"{o.config_id}|{o.number}")

    async def explain_inbound(
        self, tenant_id: TenantId, request: InboundExplainRequest
    ) -> dict[str, object]:
        """The decision a text to ``to`` from ``from`` would get now, without storing anything."""
        country = await self.require_tenant(tenant_id)
        did = number_field("to", request.to, country)
        remote = number_field("from", request.from_, country)
        async with self._db.connection() as conn:
            config = await configs_repo.webhook_config_for_number(conn, tenant_id, did)
            if config is None:
                return {
                    "direction": "inbound",
                    "to": did,
                    "from": remote,
                    "decision": "unroutable",
                    "extensions": [],
                    "explanation": [
                        f"{did} is not a number of any of this tenant's configurations"
                    ],
                }
            decision = await self._inbound.route(conn, config, did, remote)
        explanation = list(decision.explanation)
        if not config.enabled:
            explanation.append(
                "the SMS configuration is disabled: it would be stored, not delivered"
            )
        return {
            "direction": "inbound",
            "to": did,
            "from": remote,
            "config_id": config.id,
            "trunk_id": config.trunk_id,
            "decision": decision.reason,
            "rule": decision.rule_name,
            "rule_index": decision.rule_index,
            "extensions": list(decision.extensions) if config.enabled else [],
            "explanation": explanation,
        }

    async def stream_position(self, tenant_id: TenantId, last_event_id: str | None) -> int:
        """Where a stream resumes: after ``last_event_id``, or at the live end."""
        async with self._db.connection() as conn:
            if last_event_id:
                seq = await events_repo.stream_position(conn, tenant_id, last_event_id)
                if seq is not None:
                    return seq
            return await events_repo.stream_head(conn)

    async def stream_after(
        self, tenant_id: TenantId, position: int, limit: int
    ) -> list[tuple[int, str, str, str]]:
        async with self._db.connection() as conn:
            return await events_repo.stream_after(conn, tenant_id, position, limit)
