"""Service: Twilio's status callbacks move outbound messages forward, never backwards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from bridge.db import events, statuses
from bridge.db.claims import Handoff, taker_of
from bridge.db.pool import Connection, Database
from bridge.db.sms_configs import WebhookConfig
from bridge.db.statuses import StatusMove
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.models import Channel, ConfigId, Message, MessageId, outbound_status, split_address
from bridge.twilio.webhooks import MissingParameter, Params, error_code, first

log = get_logger(__name__)


def callback_channel(params: Params) -> Channel | None:
    """``rcs`` when Twilio says it delivered by RCS (a Messaging Service with an RCS sender
    chose it): the message then shows that channel. WhatsApp texts are WhatsApp already."""
    for name in ("From", "To"):
        channel, _ = split_address(first(params, name) or "")
        if channel == "rcs":
            return channel
    return None


CallbackOutcome = Literal["applied", "stale", "early", "unknown_status"]


class StatusService:
    """Applies status callbacks; keeps those that arrive before their message is known."""

    def __init__(
        self, db: Database, metrics: Metrics, handoff: Handoff[events.Claimed] | None = None
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._handoff = handoff

    async def receive(self, config: WebhookConfig, params: Params) -> CallbackOutcome:
        sid = first(params, "MessageSid") or first(params, "SmsSid")
        reported = first(params, "MessageStatus") or first(params, "SmsStatus")
        if not sid or not reported:
            raise MissingParameter("missing MessageSid or MessageStatus")
        status = outbound_status(reported)
        channel = callback_channel(params)
        outcome: CallbackOutcome
        if status is None:
            # A status newer than this code: acknowledged (Twilio must not retry it), not guessed.
            outcome = "unknown_status"
        else:
            code = error_code(params)
            async with self._db.transaction() as conn:
                await statuses.lock_sid(conn, config.id, sid)
                target = await statuses.outbound_by_sid(conn, config.id, sid)
                if target is None:
                    await statuses.keep_early(conn, config.id, sid, status, code, channel)
                    outcome = "early"
                else:
                    moved = await statuses.advance(
                        conn,
                        [StatusMove(target[0], status, code, channel=channel)],
                        taker_of(self._handoff),
                    )
                    outcome = "applied" if moved else "stale"
        self._metrics.status_callbacks.labels(outcome).inc()
        log.info(
            "status.callback",
            config_id=config.id,
            status=reported,
            outcome=outcome,
            channel=channel or "sms",
        )
        return outcome

    async def apply(self, conn: Connection, moves: Sequence[StatusMove]) -> list[Message]:
        """Move messages forward in the caller's transaction (and tell the PBX); the moved."""
        return await statuses.advance(conn, moves, taker_of(self._handoff))

    async def apply_early(
        self, conn: Connection, sends: Sequence[tuple[ConfigId, str, MessageId]]
    ) -> None:
        """Once sends learn their MessageSids, apply the callbacks that beat them here."""
        early = await statuses.take_early(conn, [(c, sid) for c, sid, _ in sends])
        moves = [
            StatusMove(message_id, e.status, e.error_code, channel=e.channel)
            for config_id, sid, message_id in sends
            for e in early.get((config_id, sid), [])
        ]
        # One move per message per statement: a message's early callbacks go in their order.
        while moves:
            seen: set[MessageId] = set()
            now: list[StatusMove] = []
            later: list[StatusMove] = []
            for move in moves:
                (later if move.message_id in seen else now).append(move)
                seen.add(move.message_id)
            await statuses.advance(conn, now, taker_of(self._handoff))
            moves = later
