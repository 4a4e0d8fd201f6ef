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
from bridge.db.statuses import StatusMove
from bridge.errors import BridgeError, DatabaseUnavailable
from bridge.groupcommit import GroupCommit
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.models import MessageId, channel_address, outbound_status, split_address
from bridge.models.twilio_codes import TWILIO_CODES
from bridge.retry import Backoff
from bridge.services.status import StatusService
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
from bridge.twilio.credentials import rest_credentials
from bridge.urls import PublicUrls

log = get_logger(__name__)

# A lease lasts this long before its sender is offered to every process again (so one busy
# process cannot keep a sender forever), and beats this often while texts are in flight.
LEASE_SECONDS = 10.0
LEASE_BEAT_SECONDS = 5.0
STALE_MARGIN_SECONDS = 5.0
# Twilio's dates have whole seconds and its clock is not ours: look a little before the attempt.
RECONCILE_SKEW = timedelta(seconds=5)
RECONCILE_PAGES = 5


def stale_lease_seconds(twilio_timeout: float) -> float:
    """How long a lease may go without a beat before another process takes the sender over.

    A lease beats every LEASE_BEAT_SECONDS for as long as its texts are in flight, however
    long a reconciliation or a wait for the account's concurrency takes; and a create starts
    only while it would end (within ``twilio_timeout``) before its lease could go stale. So
    no two processes ever have a create in flight for one sender's texts."""
    return max(60.0, 2 * (twilio_timeout + LEASE_BEAT_SECONDS) + STALE_MARGIN_SECONDS)


class LeaseKeeper:
    """Beats a sender's lease, and says whether a create may still start under it."""

    def __init__(
        self,
        db: Database,
        sender_key: str,
        worker: str,
        *,
        stale_seconds: float,
        create_seconds: float,
        beat_seconds: float = LEASE_BEAT_SECONDS,
    ) -> None:
        self._db = db
        self._sender = sender_key
        self._worker = worker
        self._stale = stale_seconds
        self._create = create_seconds
        self._beat_every = beat_seconds
        self._margin = min(STALE_MARGIN_SECONDS, stale_seconds / 4)
        # The claim or the last beat took the lease at least this recently (the monotonic
        # time taken before the statement, so a slow round trip errs on the safe side).
        self._beat_at = time.monotonic()
        self.lost = False

    def may_create(self) -> bool:
        """A create started now ends before any other process could take the sender."""
        deadline = self._beat_at + self._stale - self._margin
        return not self.lost and time.monotonic() + self._create < deadline

    async def run(self) -> None:
        while not self.lost:
            await asyncio.sleep(self._beat_every)
            started = time.monotonic()
            try:
                async with self._db.connection() as conn:
                    held = await repo.beat(conn, self._sender, self._worker)
            except (OSError, BridgeError) as exc:
                # Not beaten: `may_create` turns false in time, and nothing is sent meanwhile.
                log.warning("send.lease_beat_failed", sender=self._sender, error=str(exc))
                continue
            if held:
                self._beat_at = started
            else:
                self.lost = True
                log.warning("send.lease_lost", sender=self._sender)


# Texts one sender may have awaiting Twilio at once: enough to keep its pace while Twilio takes
# PIPELINE_SECONDS to answer a create. A long code (1/s) or toll-free number (3/s) has one at a
# time; a faster sender overlaps texts to different recipients, never two to the same one, so
# every conversation's texts still reach Twilio one after another, in order.
PIPELINE_SECONDS = 0.25
# How late a start may be and still keep its sender's schedule: a fetch or a busy loop of a few
# intervals is caught up (at most this long's worth of texts go out back to back), so a fast
# sender keeps its pace on a loaded machine.
SCHEDULE_SLACK = timedelta(seconds=0.1)
MAX_IN_FLIGHT = 32


# A text Twilio took: the job, its sid (and chosen number), and the status Twilio gave it.
_Taken = tuple[SendJob, repo.Sent, str]


def in_flight_window(mps: float) -> int:
    return max(1, min(MAX_IN_FLIGHT, math.ceil(mps * PIPELINE_SECONDS)))


def refill_at(window: int) -> int:
    """How many texts of a window must be answered before the sender fetches more."""
    return max(1, window // 4)


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
        urls: PublicUrls,
        twilio_timeout: float,
        max_leases: int,
        account_concurrency: int,
        poll_seconds: float,
        backoff: Backoff | None = None,
        stale_seconds: float | None = None,
        beat_seconds: float = LEASE_BEAT_SECONDS,
    ) -> None:
        self._db = db
        self._listener = listener
        self._client = client
        self._box = box
        self._status = status
        self._metrics = metrics
        self._urls = urls
        self._create_seconds = twilio_timeout
        self._stale = stale_lease_seconds(twilio_timeout)
        self._max_leases = max_leases
        self._account_cap = account_concurrency
        self._accounts: dict[str, asyncio.Semaphore] = {}
        self._poll = poll_seconds
        self._backoff = backoff or Backoff(base=1.0, cap=60.0)
        if stale_seconds is not None:
            self._stale = stale_seconds
        self._beat_every = beat_seconds
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
                conn, self.worker_id, free, self._stale, list(self._leases.values())
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
        keeper = LeaseKeeper(
            self._db,
            sender_key,
            self.worker_id,
            stale_seconds=self._stale,
            create_seconds=self._create_seconds,
            beat_seconds=self._beat_every,
        )
        beating = asyncio.create_task(keeper.run(), name=f"lease-beat:{sender_key}")
        try:
            while True:
                jobs: list[SendJob] = []
                room = window - len(running)
                # A fetch is a statement that reads the queue's head: a fast sender refills
                # its window a few texts at a time, not one fetch for every answer.
                if (
                    room >= (refill_at(window) if running else 1)
                    and time.monotonic() < deadline
                    and not keeper.lost
                ):
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
                    # spell (longer than an interval and SCHEDULE_SLACK) the schedule starts
                    # again from now, so nothing bursts.
                    interval = timedelta(seconds=job.segments / job.mps)
                    started = datetime.now(UTC)
                    on_schedule = started - next_free < max(interval, SCHEDULE_SLACK)
                    next_free = (next_free if on_schedule else started) + interval
                    running[asyncio.create_task(self._send(job, keeper))] = job.message_id
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
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
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

    async def _send(self, job: SendJob, keeper: LeaseKeeper) -> None:
        """One attempt: reconcile first if an earlier one may have reached Twilio."""
        creds = rest_credentials(
            self._box, job.config_id, job.account_sid, job.api_key_sid, job.secrets
        )
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
            if not keeper.may_create():
                # The lease may go stale before this create would end: leave the text marked
                # as attempted, for whichever process holds the sender next to reconcile.
                log.warning("send.lease_at_risk", message_id=job.message_id)
                return
            try:
                sent = await self._client.create_message(
                    creds,
                    to=channel_address(job.channel, job.to),
                    from_=None
                    if job.messaging_service_sid
                    else channel_address(job.channel, job.from_number),
                    messaging_service_sid=job.messaging_service_sid,
                    body=job.body or None,
                    media_urls=[self._urls.media(token) for token in job.media_tokens],
                    status_callback=self._urls.status_callback(job.webhook_token),
                    content_sid=job.content_sid,
                    content_variables=job.content_variables,
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
        from_ = None if job.messaging_service_sid else channel_address(job.channel, job.from_number)
        listed = await self._client.list_messages(
            creds,
            to=channel_address(job.channel, job.to),
            from_=from_,
            page_size=100,
            max_pages=RECONCILE_PAGES,
        )
        if job.messaging_service_sid:
            # A service with an RCS sender sends RCS first, and Twilio then lists the text to
            # the recipient's rcs: address (a rare second look: only after an unknown outcome).
            listed += await self._client.list_messages(
                creds,
                to=channel_address("rcs", job.to),
                page_size=100,
                max_pages=RECONCILE_PAGES,
            )
        cutoff = since.replace(microsecond=0)
        candidates = [
            c
            for c in listed
            if (from_ is None or c.from_ == from_)
            and (c.date_created is None or c.date_created >= cutoff)
            # Twilio lists a template with the text it made of it: only our own body compares.
            and (job.content_sid is not None or c.body == job.body)
        ]
        if candidates:
            # One look for all of them: a sid another message of ours already has is not this one.
            async with self._db.connection() as conn:
                known = await repo.known_sids(conn, job.config_id, [c.sid for c in candidates])
            for candidate in candidates:
                if candidate.sid not in known:
                    log.info("send.reconciled", message_id=job.message_id, found=True)
                    return candidate
        log.info("send.reconciled", message_id=job.message_id, found=False)
        return None

    async def _accepted(
        self, job: SendJob, sid: str, status: str, sent: SentMessage | None
    ) -> None:
        """Record Twilio's answer; answers that arrive together share one transaction. Its From
        is kept as the number, without a ``whatsapp:`` prefix (design §12)."""
        channel, from_number = (None, None)
        if sent is not None and sent.from_:
            channel, from_number = split_address(sent.from_)
        await self._taken.submit(
            (
                job,
                # A Messaging Service with an RCS sender may have chosen RCS.
                repo.Sent(
                    job.message_id,
                    job.config_id,
                    sid,
                    from_number,
                    "rcs" if channel == "rcs" else None,
                ),
                status,
            )
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
            moves = []
            for job, _, reported in batch:
                status = outbound_status(reported)
                if status is not None:
                    moves.append(StatusMove(job.message_id, status))
            await self._status.apply(conn, moves)
            await self._status.apply_early(
                conn, [(job.config_id, t.sid, job.message_id) for job, t, _ in batch]
            )
        return [None] * len(batch)

    async def _rejected(self, job: SendJob, exc: TwilioRejected) -> None:
        code = exc.twilio_code
        known = TWILIO_CODES.get(code or 0)
        text = exc.message if known is None else known.meaning
        async with self._db.transaction() as conn:
            await repo.finish_send(conn, job.message_id, "failed", str(code))
            await self._status.apply(conn, [StatusMove(job.message_id, "failed", code, text)])
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
