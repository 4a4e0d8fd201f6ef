"""Worker: hand queued texts to Twilio — paced per sender, in order, each created once."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bridge.crypto import SecretBox
from bridge.db import outbound as repo
from bridge.db.claims import worker_id
from bridge.db.notify import OUTBOUND, Listener
from bridge.db.outbound import SendJob
from bridge.db.pool import Database
from bridge.errors import BridgeError, DatabaseUnavailable
from bridge.groupcommit import GroupCommit
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.models import MessageId
from bridge.retry import Backoff
from bridge.sms_configs import twilio_login
from bridge.status import ERROR_TEXT, StatusService
from bridge.twilio.client import (
    Credentials,
    ListedMessage,
    SentMessage,
    TwilioAmbiguous,
    TwilioClient,
    TwilioError,
    TwilioRejected,
    TwilioUnavailable,
)

log = get_logger(__name__)

LEASE_SECONDS = 10.0
# A lease beats as each create starts; between two beats lie at most a reconciliation (two
# list pages) and a create, each within the Twilio timeout (15 s by default).
STALE_LEASE_SECONDS = 60.0
# Twilio's dates have whole seconds and its clock is not ours: look a little before the attempt.
RECONCILE_SKEW = timedelta(seconds=5)


# Texts one sender may have awaiting Twilio at once: enough to keep its pace while Twilio takes
# PIPELINE_SECONDS to answer a create. A long code (1/s) or toll-free number (3/s) has one at a
# time; a faster sender overlaps texts to different recipients, never two to the same one, so
# every conversation's texts still reach Twilio one after another, in order.
PIPELINE_SECONDS = 0.25
MAX_IN_FLIGHT = 32


# A text Twilio took: the job, its sid (and chosen number), and the status Twilio gave it.
_Taken = tuple[SendJob, repo.Sent, str]


def in_flight_window(mps: float) -> int:
    return max(1, min(MAX_IN_FLIGHT, math.ceil(mps * PIPELINE_SECONDS)))


class SendWorker:
    """Leases senders (one process sends for a sender at a time, so its texts keep their order)."""

    def __init__(
        self,
        db: Database,
        listener: Listener,
        client: TwilioClient,
        box: SecretBox,
        status: StatusService,
        metrics: Metrics,
        *,
        public_base_url: str,
        max_leases: int,
        account_concurrency: int,
        poll_seconds: float,
        backoff: Backoff | None = None,
    ) -> None:
        self._db = db
        self._listener = listener
        self._client = client
        self._box = box
        self._status = status
        self._metrics = metrics
        self._base = public_base_url
        self._max_leases = max_leases
        self._account_cap = account_concurrency
        self._accounts: dict[str, asyncio.Semaphore] = {}
        self._poll = poll_seconds
        self._backoff = backoff or Backoff(base=1.0, cap=60.0)
        self._leases: dict[asyncio.Task[None], str] = {}
        self._freed = asyncio.Event()
        self.worker_id = worker_id("sender")
        self._taken: GroupCommit[_Taken, None] = GroupCommit(
            self._record_taken, max_concurrent=2, batch_errors=(DatabaseUnavailable,)
        )

    async def run(self) -> None:
        try:
            while True:
                wake = self._listener.waiter(OUTBOUND)
                try:
                    await self._claim()
                except (OSError, BridgeError) as exc:
                    log.warning("send.loop_error", error=str(exc))
                except Exception:
                    log.exception("send.loop_crashed")
                await self._sleep(wake)
        finally:
            for task in self._leases:
                task.cancel()
            await asyncio.gather(*self._leases, return_exceptions=True)

    async def _sleep(self, wake: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(self._freed.wait())]
        try:
            await asyncio.wait(waits, timeout=self._poll, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        self._freed.clear()

    async def _claim(self) -> None:
        free = self._max_leases - len(self._leases)
        if free <= 0:
            return
        async with self._db.connection() as conn:
            claimed = await repo.claim_senders(
                conn, self.worker_id, free, STALE_LEASE_SECONDS, list(self._leases.values())
            )
            self._metrics.queue_depth.set(await repo.queue_depth(conn))
        for sender_key, next_free_at in claimed:
            task = asyncio.create_task(self._lease(sender_key, next_free_at))
            self._leases[task] = sender_key
            task.add_done_callback(self._lease_done)

    def _lease_done(self, task: asyncio.Task[None]) -> None:
        self._leases.pop(task, None)
        self._freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("send.lease_crashed", error=repr(task.exception()))

    async def _lease(self, sender_key: str, next_free_at: datetime) -> None:
        """Start this sender's due texts in queue order, each at its paced time, with up to
        ``in_flight_window`` of them awaiting Twilio at once, for up to LEASE_SECONDS."""
        deadline = time.monotonic() + LEASE_SECONDS
        next_free = next_free_at
        running: dict[asyncio.Task[None], MessageId] = {}
        window = 1
        try:
            while True:
                jobs: list[SendJob] = []
                room = window - len(running)
                if room > 0 and time.monotonic() < deadline:
                    async with self._db.connection() as conn:
                        jobs = await repo.start_sends(
                            conn, sender_key, self.worker_id, room, list(running.values())
                        )
                if not jobs:
                    if not running:
                        return
                    await self._reap(running, block=True)
                    continue
                for job in jobs:
                    window = in_flight_window(job.mps)
                    wait = (next_free - datetime.now(UTC)).total_seconds()
                    if wait > 0:
                        self._metrics.shaping_delay.observe(wait)
                        await asyncio.sleep(wait)
                    # The slot is taken when the create starts, whatever its outcome. Slots
                    # follow a schedule: a start a little late (a fetch, a busy loop) does not
                    # push every later one back, so the pace holds on average. After an idle
                    # spell the schedule starts again from now, so nothing bursts.
                    interval = timedelta(seconds=job.segments / job.mps)
                    started = datetime.now(UTC)
                    on_schedule = started - next_free < interval
                    next_free = (next_free if on_schedule else started) + interval
                    running[asyncio.create_task(self._send(job))] = job.message_id
                await self._reap(running, block=False)
        except asyncio.CancelledError:
            # Shutting down: creates in flight stay marked as attempted, and are reconciled
            # with Twilio before any resend.
            for task in running:
                task.cancel()
            raise
        finally:
            # Otherwise what was started finishes and is recorded, not abandoned.
            for outcome in await asyncio.gather(*running, return_exceptions=True):
                if isinstance(outcome, Exception):
                    log.error("send.failed", sender=sender_key, error=repr(outcome))
            async with self._db.connection() as conn:
                await repo.release_sender(conn, sender_key, self.worker_id, next_free)

    async def _reap(self, running: dict[asyncio.Task[None], MessageId], *, block: bool) -> None:
        """Collect finished sends (waiting for one if ``block``); a send's error is raised."""
        done, _ = await asyncio.wait(
            running, timeout=None if block else 0, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            del running[task]
            error = task.exception()
            if error is not None:
                raise error

    def _credentials(self, job: SendJob) -> Credentials:
        user, password = twilio_login(
            self._box, job.config_id, job.account_sid, job.api_key_sid, job.secrets
        )
        return Credentials(job.account_sid, user, password)

    async def _send(self, job: SendJob) -> None:
        """One attempt: reconcile first if an earlier one may have reached Twilio."""
        creds = self._credentials(job)
        semaphore = self._accounts.setdefault(job.account_sid, asyncio.Semaphore(self._account_cap))
        async with semaphore:
            if job.attempt_started_at is not None:
                try:
                    found = await self._reconcile(job, creds)
                except TwilioError as exc:
                    # Still unknown whether Twilio has it: keep the mark, look again later.
                    await self._retry(
                        job, self._backoff.delay(job.attempts + 1), exc, certain=False
                    )
                    return
                if found is not None:
                    await self._accepted(job, found.sid, found.status, None)
                    self._metrics.sends.labels("reconciled", "").inc()
                    return
            try:
                sent = await self._client.create_message(
                    creds,
                    to=job.to,
                    from_=None if job.messaging_service_sid else job.from_number,
                    messaging_service_sid=job.messaging_service_sid,
                    body=job.body or None,
                    media_urls=[f"{self._base}/media/{token}" for token in job.media_tokens],
                    status_callback=f"{self._base}/twilio/{job.webhook_token}/status",
                )
            except TwilioRejected as exc:
                await self._rejected(job, exc)
                return
            except TwilioUnavailable as exc:
                delay = (
                    exc.retry_after
                    if exc.retry_after is not None
                    else self._backoff.delay(job.attempts + 1)
                )
                await self._retry(job, delay, exc, certain=True)
                return
            except TwilioAmbiguous as exc:
                await self._retry(job, self._backoff.delay(job.attempts + 1), exc, certain=False)
                return
        await self._accepted(job, sent.sid, sent.status, sent)
        self._metrics.sends.labels("created", "").inc()

    async def _reconcile(self, job: SendJob, creds: Credentials) -> ListedMessage | None:
        """After an attempt whose outcome is unknown: did Twilio take it? Look before resending."""
        assert job.attempt_started_at is not None
        since = job.attempt_started_at - RECONCILE_SKEW
        # Not filtered by DateSent: a message Twilio still holds in its queue has none yet.
        # Filtered by sender as well as recipient (a messaging service picks its own From):
        # with To alone, a busy recipient's texts from other senders pushed this attempt off
        # the pages read while its retry waited, and it was sent twice. Newest first, so
        # these pages hold anything from this attempt.
        listed = await self._client.list_messages(
            creds,
            to=job.to,
            from_=None if job.messaging_service_sid else job.from_number,
            page_size=100,
            max_pages=5,
        )
        async with self._db.connection() as conn:
            for candidate in listed:
                same_sender = (
                    job.messaging_service_sid is not None or candidate.from_ == job.from_number
                )
                recent = candidate.date_created is None or candidate.date_created >= since.replace(
                    microsecond=0
                )
                if (
                    same_sender
                    and recent
                    and candidate.body == job.body
                    and not await repo.sid_known(conn, job.config_id, candidate.sid)
                ):
                    log.info("send.reconciled", message_id=job.message_id, found=True)
                    return candidate
        log.info("send.reconciled", message_id=job.message_id, found=False)
        return None

    async def _accepted(
        self, job: SendJob, sid: str, status: str, sent: SentMessage | None
    ) -> None:
        """Record Twilio's answer; answers that arrive together share one transaction."""
        from_number = sent.from_ if sent is not None else None
        await self._taken.submit(
            (job, repo.Sent(job.message_id, job.config_id, sid, from_number), status)
        )
        log.info(
            "send.created",
            tenant_id=job.tenant_id,
            message_id=job.message_id,
            attempt=job.attempts + 1,
        )

    async def _record_taken(self, batch: Sequence[_Taken]) -> list[None]:
        async with self._db.transaction() as conn:
            await repo.sent(conn, [taken for _, taken, _ in batch])
            # Twilio answers a create with queued (or accepted).
            await self._status.apply_many(
                conn, [(job.message_id, status, None, None) for job, _, status in batch]
            )
            await self._status.apply_early(
                conn, [(job.config_id, t.sid, job.message_id, job.tenant_id) for job, t, _ in batch]
            )
        return [None] * len(batch)

    async def _rejected(self, job: SendJob, exc: TwilioRejected) -> None:
        code = exc.twilio_code
        async with self._db.transaction() as conn:
            await repo.finish_send(conn, job.message_id, "failed", str(code))
            text = ERROR_TEXT.get(code or 0) or exc.message
            await self._status.apply(conn, job.message_id, job.tenant_id, "failed", code, text)
        self._metrics.sends.labels("rejected", str(code or exc.http_status or "")).inc()
        log.warning("send.rejected", tenant_id=job.tenant_id, message_id=job.message_id, code=code)

    async def _retry(self, job: SendJob, delay: float, exc: TwilioError, *, certain: bool) -> None:
        async with self._db.connection() as conn:
            await repo.retry_send(conn, job.message_id, delay, exc.message, certain=certain)
        outcome = "retry" if certain else "ambiguous"
        self._metrics.sends.labels(outcome, str(exc.twilio_code or exc.http_status or "")).inc()
        log.info(
            "send.retry",
            message_id=job.message_id,
            delay=round(delay, 2),
            certain_not_taken=certain,
            error=exc.message,
        )
