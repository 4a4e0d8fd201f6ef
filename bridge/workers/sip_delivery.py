"""Worker: texts on the phones (design §10) — one MESSAGE per text and extension through the
tenant's proxy, stored and forwarded while the phone is away."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.crypto import SecretBox, sip_secret_context
from bridge.db import sip_deliveries as repo
from bridge.db.claims import Handoff
from bridge.db.notify import SIP, Listener
from bridge.db.pool import Database
from bridge.db.sip_deliveries import SipJob
from bridge.errors import DatabaseUnavailable
from bridge.groupcommit import GroupCommit
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.sip import (
    NameAddr,
    Outcome,
    SipEndpoint,
    SipParseError,
    parse_proxy,
    split_body,
)
from bridge.workers.lanes import Lanes

log = get_logger(__name__)

BATCH = 32
# Claims in flight at once per process, each lane a worker of its own (a claim re-takes what
# its own worker still holds): while one lane waits for the phones' answers, the other claims
# and sends. Measured with SIPp as the phone (make bench): one lane of 16 drained a backlog at
# about 640 MESSAGEs/s and held 250/s within a p99 of 250 ms; two of 32 drain 840/s and hold
# 350/s; four of 64 overran the phone (140/s, retransmissions).
LANES = 2
# MESSAGEs handed over as they are queued (`Handoff`) and not yet answered, at most: one
# lane's worth more in flight, since more overran the phones (above).
HANDOFF_ROOM = 32
# Answers that mean "the phone is off or away": the text waits and is tried again.
AWAY = frozenset({404, 408, 480, 486})


def away(outcome: Outcome) -> bool:
    """No answer, a transport failure, a 5xx, or a status that says the phone is away."""
    if outcome.status is None:
        return True
    return outcome.status in AWAY or 500 <= outcome.status < 600


class SipDeliveryWorker(Lanes[SipJob]):
    """Claims due MESSAGEs with SKIP LOCKED (a phone's texts one at a time, in order), so any
    number of processes share the queue; nothing of it is kept in memory but what it is
    sending (and what the handoff gave it to send)."""

    def __init__(
        self,
        db: Database,
        listener: Listener,
        endpoint: SipEndpoint,
        box: SecretBox,
        metrics: Metrics,
        *,
        poll_seconds: float,
        retry_base_seconds: float,
        retry_cap_seconds: float,
        stale_seconds: float,
        handoff: Handoff[SipJob] | None = None,
    ) -> None:
        super().__init__(
            "sip",
            listener,
            SIP,
            lanes=LANES,
            batch=BATCH,
            poll=poll_seconds,
            handoff=handoff,
            room=HANDOFF_ROOM,
        )
        self._db = db
        self._endpoint = endpoint
        self._box = box
        self._metrics = metrics
        self._base = retry_base_seconds
        self._cap = retry_cap_seconds
        self._stale = stale_seconds
        # Deliveries the phones took at about the same time are recorded in one statement.
        self._delivered: GroupCommit[tuple[str, str, int], None] = GroupCommit(
            self._record_delivered, max_concurrent=1, batch_errors=(DatabaseUnavailable,)
        )

    async def _claim(self, worker: str) -> list[SipJob]:
        async with self._db.connection() as conn:
            return await repo.claim(conn, worker, BATCH, self._stale)

    async def _record_delivered(self, done: Sequence[tuple[str, str, int]]) -> list[None]:
        by_worker: dict[str, list[tuple[str, int]]] = {}
        for worker, job_id, sent in done:
            by_worker.setdefault(worker, []).append((job_id, sent))
        followed = False
        async with self._db.connection() as conn:
            for worker, jobs in by_worker.items():
                followed |= await repo.delivered(conn, jobs, worker)
        if followed:
            # A phone's next texts waited behind these: claimed now, not at the next poll.
            self._listener.announce([SIP])
        return [None] * len(done)

    def retry_delay(self, attempts: int) -> float:
        """30 s, doubling, at most 15 min (by default)."""
        return float(min(self._cap, self._base * 2 ** max(0, attempts - 1)))

    async def _deliver(self, job: SipJob, worker: str) -> None:
        try:
            destination = parse_proxy(job.proxy)
            # The phone shows the remote's number, and a reply goes back to it (design §10).
            sender = NameAddr(f"sip:{job.from_number}@{job.domain}", job.from_number)
            recipient = NameAddr(job.uri)
        except SipParseError as exc:
            await self._dead(
                job, worker, f"the tenant's SIP settings do not parse: {exc}", job.parts_sent
            )
            return
        parts = split_body(job.body) if destination.transport == "udp" else [job.body]
        headers = [("X-Bridge-DID", job.did)] if job.did else []
        if job.message_id is not None:
            headers.append(("X-Bridge-Message-Id", job.message_id))
        credentials = self._credentials(job)
        sent = job.parts_sent
        outcome: Outcome | None = None
        for part in parts[sent:]:
            outcome = await self._endpoint.send_message(
                job.uri,
                from_=sender,
                to=recipient,
                body=part.encode("utf-8"),
                destination=destination,
                extra_headers=headers,
                credentials=credentials,
            )
            if not outcome.ok:
                break
            sent += 1
            if sent < len(parts):
                async with self._db.connection() as conn:
                    await repo.progress(conn, job.id, worker, sent)
        if outcome is None or outcome.ok:
            await self._delivered.submit((worker, job.id, sent))
            self._metrics.sip_messages.labels("to_phone", "delivered").inc()
            log.info("sip.delivered", message_id=job.message_id, extension=job.extension)
            return
        if away(outcome) and job.age_seconds < job.max_age_hours * 3600:
            delay = self.retry_delay(job.attempts)
            async with self._db.connection() as conn:
                await repo.retry_later(conn, job.id, worker, delay, str(outcome), sent)
            self._metrics.sip_messages.labels("to_phone", "retry").inc()
            log.info(
                "sip.retry",
                message_id=job.message_id,
                extension=job.extension,
                attempt=job.attempts,
                delay=delay,
                error=str(outcome),
            )
            return
        await self._dead(job, worker, str(outcome), sent)

    def _credentials(self, job: SipJob) -> tuple[str, str] | None:
        if job.auth_username is None or job.auth_password is None:
            return None
        context = sip_secret_context(job.tenant_id, "auth_password")
        return job.auth_username, self._box.open(job.auth_password, context)

    async def _dead(self, job: SipJob, worker: str, error: str, sent: int) -> None:
        async with self._db.connection() as conn:
            followed = await repo.dead(conn, job.id, worker, error, sent)
        if followed:
            self._listener.announce([SIP])
        self._metrics.sip_messages.labels("to_phone", "dead").inc()
        log.warning("sip.dead", message_id=job.message_id, extension=job.extension, error=error)
