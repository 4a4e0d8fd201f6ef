"""Worker: POST queued events to each tenant's delivery target, in order, until acknowledged."""

from __future__ import annotations

import time
from collections.abc import Sequence

import aiohttp

from bridge.crypto import Sealed, SecretBox, delivery_secret_context
from bridge.db import events as repo
from bridge.db.claims import Handoff
from bridge.db.notify import EVENTS, Listener
from bridge.db.pool import Database
from bridge.errors import DatabaseUnavailable
from bridge.events import sign
from bridge.groupcommit import GroupCommit
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.models import EventId, TenantId
from bridge.retry import Backoff
from bridge.workers.lanes import Lanes

log = get_logger(__name__)

BATCH = 64
# Claims in flight at once per process: while one lane waits for the PBX's answers and the
# database, another claims and posts. With one lane the loop's round trips (claim, posts,
# acknowledgement) capped delivery near 1,300 events/s, below what the webhook path takes in.
LANES = 4
# Events handed over at insert (`Handoff`) and not yet delivered, at most: beyond, a slow PBX
# costs queued rows, not posts waiting for one of the session's connections (beside the
# lanes' 4 x 64) until they time out.
HANDOFF_ROOM = 128
# Delivery secrets kept opened, in this process's memory only.
SECRETS_KEPT = 1024


class DeliveryWorker(Lanes[repo.Claimed]):
    """Claims due events with SKIP LOCKED, so any number of processes can share the queue."""

    def __init__(
        self,
        db: Database,
        listener: Listener,
        session: aiohttp.ClientSession,
        box: SecretBox,
        metrics: Metrics,
        *,
        timeout: float,
        max_age_seconds: float,
        poll_seconds: float,
        backoff: Backoff | None = None,
        lanes: int = LANES,
        handoff: Handoff[repo.Claimed] | None = None,
    ) -> None:
        super().__init__(
            "delivery",
            listener,
            EVENTS,
            lanes=lanes,
            batch=BATCH,
            poll=poll_seconds,
            handoff=handoff,
            room=HANDOFF_ROOM,
        )
        self._db = db
        self._session = session
        self._box = box
        self._metrics = metrics
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # A claim outlives its POST's timeout; past three of them its worker is gone (a crash)
        # and another takes the event over, so a restart is not kept waiting long.
        self._stale = max(30.0, 3 * timeout)
        self._max_age = max_age_seconds
        self._backoff = backoff or Backoff()
        # Acknowledgements that arrive together are recorded together: one UPDATE (and one WAL
        # flush) for all of them instead of one each.
        self._acknowledged: GroupCommit[tuple[str, EventId], None] = GroupCommit(
            self._record_delivered, max_concurrent=1, batch_errors=(DatabaseUnavailable,)
        )
        self._secrets: dict[tuple[TenantId, Sealed], str] = {}

    async def _claim(self, worker: str) -> list[repo.Claimed]:
        async with self._db.connection() as conn:
            return await repo.claim(conn, worker, BATCH, self._stale)

    async def _deliver(self, event: repo.Claimed, worker: str) -> None:
        body = event.payload.encode("utf-8")
        secret = self._secret(event)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Bridge-Event-Id": event.id,
            "X-Bridge-Timestamp": str(timestamp),
            "X-Bridge-Signature": sign(secret, timestamp, body),
        }
        self._metrics.deliveries.labels("attempted").inc()
        error: str | None = None
        try:
            async with self._session.post(
                event.url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    await self._acknowledged.submit((worker, event.id))
                    self._metrics.deliveries.labels("acknowledged").inc()
                    self._metrics.delivery_lag.observe(event.age_seconds)
                    log.debug("delivery.acknowledged", event_id=event.id, tenant_id=event.tenant_id)
                    return
                error = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        await self._failed(event, worker, error)

    def _secret(self, event: repo.Claimed) -> str:
        """Opened once per sealed value, not per delivery: a few targets sign them all. A new
        secret is a new sealed value, so a changed one is used at once."""
        key = (event.tenant_id, event.secret)
        secret = self._secrets.get(key)
        if secret is None:
            if len(self._secrets) >= SECRETS_KEPT:
                self._secrets.clear()
            secret = self._box.open(event.secret, delivery_secret_context(event.tenant_id))
            self._secrets[key] = secret
        return secret

    async def _record_delivered(self, acks: Sequence[tuple[str, EventId]]) -> list[None]:
        by_worker: dict[str, list[EventId]] = {}
        for worker, event_id in acks:
            by_worker.setdefault(worker, []).append(event_id)
        followed = False
        async with self._db.connection() as conn:
            for worker, event_ids in by_worker.items():
                followed |= await repo.delivered(conn, event_ids, worker)
        if followed:
            # Their conversations' next events were waiting behind them: claim those now,
            # not at the next poll (a long text's parts would go one a poll apart).
            self._listener.announce([EVENTS])
        return [None] * len(acks)

    async def _failed(self, event: repo.Claimed, worker: str, error: str) -> None:
        async with self._db.connection() as conn:
            if event.age_seconds >= self._max_age:
                if await repo.dead(conn, event.id, worker, error):
                    self._listener.announce([EVENTS])
                self._metrics.deliveries.labels("dead").inc()
                log.warning(
                    "delivery.dead", event_id=event.id, tenant_id=event.tenant_id, error=error
                )
                return
            delay = self._backoff.delay(event.attempts)
            await repo.retry_later(conn, event.id, worker, delay, error)
        self._metrics.deliveries.labels("failed").inc()
        log.info(
            "delivery.retry",
            event_id=event.id,
            tenant_id=event.tenant_id,
            attempt=event.attempts,
            delay=round(delay, 2),
            error=error,
        )
