"""Service: Twilio's status callbacks move outbound messages forward, never backwards."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.db import events as events_repo
from bridge.db import messages as repo
from bridge.db.pool import Connection, Database
from bridge.db.sms_configs import WebhookConfig
from bridge.events import STATUS
from bridge.inbound import MissingParameter, Params, first
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.models import STATUS_RANK, ConfigId, Message, MessageId, TenantId

log = get_logger(__name__)

# Short texts for the codes a PBX user most often sees (Twilio's error dictionary); Twilio says the
# codes, not its texts, are what to rely on.
ERROR_TEXT = {
    21610: "the recipient has opted out (STOP)",
    21211: "invalid 'To' number",
    21408: "sending to this region is not enabled",
    21612: "the 'To' number cannot be reached with this sender",
    21614: "the 'To' number is not a mobile number",
    30001: "queue overflow",
    30002: "account suspended",
    30003: "unreachable destination handset",
    30004: "message blocked",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    30007: "message filtered by the carrier",
    30008: "unknown error",
}


def error_code_of(params: Params) -> int | None:
    raw = first(params, "ErrorCode")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw.strip())


class StatusService:
    """Applies status callbacks; keeps those that arrive before their message is known."""

    def __init__(self, db: Database, metrics: Metrics) -> None:
        self._db = db
        self._metrics = metrics

    async def receive(self, config: WebhookConfig, params: Params) -> str:
        sid = first(params, "MessageSid") or first(params, "SmsSid")
        status = first(params, "MessageStatus") or first(params, "SmsStatus")
        if not sid or not status:
            raise MissingParameter("missing MessageSid or MessageStatus")
        status = status.strip().lower()
        code = error_code_of(params)
        async with self._db.transaction() as conn:
            await repo.lock_sid(conn, config.id, sid)
            target = await repo.outbound_by_sid(conn, config.id, sid)
            if target is None:
                await repo.keep_early_callback(conn, config.id, sid, status, code)
                outcome = "early"
            else:
                moved = await self.apply(conn, target.id, target.tenant_id, status, code)
                outcome = "applied" if moved else "stale"
        self._metrics.status_callbacks.labels(outcome).inc()
        log.info("status.callback", config_id=config.id, status=status, outcome=outcome)
        return outcome

    async def apply(
        self,
        conn: Connection,
        message_id: MessageId,
        tenant_id: TenantId,
        status: str,
        error_code: int | None,
        error_message: str | None = None,
    ) -> bool:
        """Record the change; if it moves the message forward, tell the PBX."""
        moved = await self.apply_many(conn, [(message_id, status, error_code, error_message)])
        return bool(moved)

    async def apply_many(
        self,
        conn: Connection,
        changes: Sequence[tuple[MessageId, str, int | None, str | None]],
    ) -> list[Message]:
        """`apply` for several messages at once (message, status, error code, error text);
        statuses the bridge does not know are ignored. The messages that moved."""
        moves = []
        for message_id, status, error_code, error_message in changes:
            rank = STATUS_RANK.get(status)
            if rank is None:
                continue
            text = error_message
            if text is None and error_code is not None:
                text = ERROR_TEXT.get(error_code, "see Twilio error code")
            moves.append(repo.StatusMove(message_id, status, rank, error_code, text))
        moved = await repo.record_statuses(conn, moves)
        await events_repo.insert_many(
            conn, [(events_repo.new_event(m, STATUS, held=False), False) for m in moved]
        )
        return moved

    async def apply_early(
        self, conn: Connection, sends: Sequence[tuple[ConfigId, str, MessageId, TenantId]]
    ) -> None:
        """Once sends learn their MessageSids, apply the callbacks that beat them here."""
        early = await repo.take_early_callbacks(conn, [(c, sid) for c, sid, _, _ in sends])
        for config_id, sid, message_id, tenant_id in sends:
            for status, code in early.get((config_id, sid), []):
                await self.apply(conn, message_id, tenant_id, status, code)
