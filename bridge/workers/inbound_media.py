"""Worker: fetch inbound MMS media from Twilio, store it, then let the message go to the PBX."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp

from bridge.crypto import SecretBox
from bridge.db import events as events_repo
from bridge.db import media as repo
from bridge.db import messages as messages_repo
from bridge.db import sip_deliveries
from bridge.db.claims import worker_id
from bridge.db.media import MediaFile, MediaJob
from bridge.db.notify import MEDIA, Listener, poll_forever
from bridge.db.pool import Connection, Database
from bridge.events import RECEIVED, payload
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.models import MessageId, TenantId
from bridge.netguard import FetchFailed, FetchTooLarge, fetch_bounded
from bridge.retry import Backoff
from bridge.twilio.credentials import rest_credentials
from bridge.urls import PublicUrls

log = get_logger(__name__)

BATCH = 8
MAX_REDIRECTS = 3
# Past two whole fetch timeouts the claiming worker is gone (a crash): take the item over.
STALE_CLAIM_SECONDS = 130.0


class MediaFetcher:
    """Fetches with HTTP Basic from Twilio's API host only; never sends credentials elsewhere."""

    def __init__(
        self,
        db: Database,
        listener: Listener,
        session: aiohttp.ClientSession,
        box: SecretBox,
        metrics: Metrics,
        *,
        twilio_api_base: str,
        max_bytes: int,
        attempts: int,
        poll_seconds: float,
        urls: PublicUrls,
        link_ttl_seconds: float,
        backoff: Backoff | None = None,
    ) -> None:
        self._db = db
        self._listener = listener
        self._session = session
        self._box = box
        self._metrics = metrics
        self._api_host = urlsplit(twilio_api_base).netloc.lower()
        self._max_bytes = max_bytes
        self._attempts = attempts
        self._poll = poll_seconds
        self._backoff = backoff or Backoff(base=2.0, cap=120.0)
        self._timeout = aiohttp.ClientTimeout(total=60, connect=10)
        self.worker_id = worker_id("media")
        self._urls = urls
        self._link_ttl = link_ttl_seconds

    async def run(self) -> None:
        await poll_forever(
            "media", self._listener, MEDIA, self.fetch_due, batch=BATCH, poll_seconds=self._poll
        )

    async def fetch_due(self) -> int:
        async with self._db.connection() as conn:
            jobs = await repo.claim(conn, self.worker_id, BATCH, STALE_CLAIM_SECONDS)
        if jobs:
            await asyncio.gather(*(self._fetch(job) for job in jobs))
        return len(jobs)

    def _credentials_for(self, job: MediaJob) -> Mapping[str, str]:
        creds = rest_credentials(
            self._box, job.config_id, job.account_sid, job.api_key_sid, job.secrets
        )
        return {"Authorization": aiohttp.encode_basic_auth(creds.username, creds.password)}

    async def download(self, job: MediaJob) -> MediaFile:
        """Credentials go to Twilio's API host on the first request only: the signed URL it
        redirects to needs none, and must not see them."""

        def headers(hop: int, url: str) -> Mapping[str, str]:
            to_twilio = hop == 0 and urlsplit(url).netloc.lower() == self._api_host
            return self._credentials_for(job) if to_twilio else {}

        fetched = await fetch_bounded(
            self._session,
            job.source_url,
            max_bytes=self._max_bytes,
            limits=self._timeout,
            max_redirects=MAX_REDIRECTS,
            headers=headers,
        )
        content_type = fetched.content_type or job.content_type or "application/octet-stream"
        return MediaFile(content_type, fetched.data)

    async def _fetch(self, job: MediaJob) -> None:
        retry_in: float | None = None
        try:
            file = await self.download(job)
        except FetchTooLarge as exc:
            error = f"too large: {exc}"
        except (FetchFailed, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if job.attempts < self._attempts:
                retry_in = self._backoff.delay(job.attempts)
        else:
            async with self._db.transaction() as conn:
                await repo.lock_message(conn, job.message_id)
                digest = hashlib.sha256(file.data).hexdigest()
                await repo.stored(conn, job, self.worker_id, file, digest)
                await self._release_if_complete(conn, job.tenant_id, job.message_id)
            self._metrics.media.labels("stored").inc()
            log.info(
                "media.stored", message_id=job.message_id, index=job.position, size=len(file.data)
            )
            return
        async with self._db.transaction() as conn:
            await repo.lock_message(conn, job.message_id)
            await repo.failed(conn, job, self.worker_id, error, retry_in)
            if retry_in is None:
                await self._release_if_complete(conn, job.tenant_id, job.message_id)
        self._metrics.media.labels("retry" if retry_in is not None else "failed").inc()
        log.warning(
            "media.fetch_failed",
            message_id=job.message_id,
            index=job.position,
            attempt=job.attempts,
            final=retry_in is None,
            error=error,
        )

    async def _release_if_complete(
        self, conn: Connection, tenant_id: TenantId, message_id: MessageId
    ) -> None:
        """Once no item is pending, the text goes on: its event to the PBX, its MESSAGEs to the
        phones (with a link to each stored item)."""
        if await repo.pending_left(conn, message_id):
            return
        held = await events_repo.held_for_message(conn, message_id)
        phones = await sip_deliveries.has_held(conn, message_id)
        if not held and not phones:
            return
        message = await messages_repo.get(conn, tenant_id, message_id, history=False)
        assert message is not None
        for event_id in held:
            await events_repo.release(conn, event_id, payload(event_id, RECEIVED, message))
        if phones:
            links = await repo.link_items(conn, message_id, self._link_ttl)
            lines = [message.body] if message.body else []
            for item in message.media:
                token = links.get(item.index)
                lines.append(
                    f"[media {item.index + 1} not available]"
                    if token is None
                    else self._urls.media(token)
                )
            await sip_deliveries.release(conn, message_id, "\n".join(lines))
