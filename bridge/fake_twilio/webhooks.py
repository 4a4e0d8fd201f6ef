"""Everything the fake starts on its own: message lifecycles, status callbacks, inbound webhooks."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Literal

import aiohttp
from yarl import URL

from .delivery import Sender, build_record
from .formats import new_sid
from .magic import ERROR_MESSAGES, Outcome
from .models import InboundSpec
from .numbers import HttpMethod
from .payloads import inbound_params, status_params
from .records import MediaFetchRecord, WebhookRecord, utcnow
from .segments import count_segments
from .state import Account, FakeState, Media, Message, MessageStatus
from .validation import channel_of

log = logging.getLogger(__name__)

POOL_NUMBER = "+15005550006"
PRICE_PER_SEGMENT = 0.0079


RouteSource = Literal["request", "number", "service"]


class Unroutable(Exception):
    """Twilio would send no webhook for this inbound message (no URL is configured)."""


@dataclass(frozen=True)
class InboundRoute:
    """Where an inbound message goes, and whose configuration said so."""

    account: Account
    url: str
    method: HttpMethod
    fallback_url: str | None
    fallback_method: HttpMethod
    messaging_service_sid: str | None
    source: RouteSource


@dataclass(frozen=True)
class InboundResult:
    """What happened when the fake delivered an inbound message."""

    message: Message
    webhook: WebhookRecord
    fallback: WebhookRecord | None
    route: RouteSource = "request"


def failed(record: WebhookRecord) -> bool:
    """Whether Twilio would count this webhook as failed (no answer or an HTTP error)."""
    answer = record.answer
    return answer is None or answer.status is None or answer.status >= 400


class Dispatcher:
    """Runs the fake's outgoing traffic as tasks owned by the app, cancelled at shutdown."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open the HTTP client session used for everything the fake sends."""
        if self._session is None:
            self._session = aiohttp.ClientSession()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The client session; only available between `start` and `close`."""
        if self._session is None:
            raise RuntimeError("the dispatcher is not started")
        return self._session

    @property
    def sender(self) -> Sender:
        """Webhook sender over the shared session."""
        return Sender(self.session, self.state)

    def spawn(self, coro: Coroutine[object, None, None]) -> None:
        """Run `coro` in the background, kept until done or until `close`."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("fake_twilio.task_failed", exc_info=task.exception())
        self.state.notify()

    @property
    def busy(self) -> bool:
        """Whether background work is still running."""
        return bool(self._tasks)

    async def cancel_pending(self) -> None:
        """Cancel and await all background work (message lifecycles)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel background work, then close the session."""
        await self.cancel_pending()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def start_outbound(self, message: Message, outcome: Outcome) -> None:
        """Walk an accepted outbound message through its statuses in the background."""
        self.spawn(self._lifecycle(message, outcome))

    async def _lifecycle(self, message: Message, outcome: Outcome) -> None:
        if self.state.config.fetch_media and message.media:
            outcome = await self._fetch_media(message) or outcome
        steps: list[MessageStatus] = ["queued"] if message.status == "accepted" else []
        steps.extend(outcome.steps)
        held: list[MessageStatus] = []
        for status in self._with_read(message, steps):
            await asyncio.sleep(self.state.config.callback_delay)
            self.apply_status(message, status, outcome.error_code)
            if message.status_callback is None:
                continue
            if self.state.config.drop_callbacks:
                self.state.dropped_callbacks += 1
                self.state.notify()
                continue
            if self.state.config.reorder_callbacks:
                held.append(status)
            else:
                await self.send_status(message, status, outcome.error_code)
        # Reordering sends the whole sequence backwards once it is complete.
        for status in reversed(held):
            await self.send_status(message, status, outcome.error_code)

    def _with_read(self, message: Message, steps: list[MessageStatus]) -> Iterator[MessageStatus]:
        """The steps, then `read` once a WhatsApp or RCS message was delivered (its channel
        is known only once a Messaging Service chose its sender, at the first step)."""
        yield from steps
        delivered = bool(steps) and steps[-1] == "delivered"
        if delivered and self.state.config.read_receipts and channel_of(message.to) is not None:
            yield "read"

    def apply_status(self, message: Message, status: MessageStatus, error_code: int | None) -> None:
        """Move the message resource to `status`, filling what Twilio fills at that point."""
        now = utcnow()
        message.status = status
        message.updated = now
        if message.from_ is None:
            rcs = self._rcs_sender(message)
            if rcs is not None and channel_of(message.to) is None:
                # Twilio sends RCS first when the service has an RCS sender (twilio.md §12).
                message.from_, message.to = f"rcs:{rcs}", f"rcs:{message.to}"
            else:
                message.from_ = self._pool_sender(message)
        if message.num_segments == 0:
            message.num_segments = 1 if channel_of(message.to) else count_segments(message.body)
        if status == "sent":
            message.date_sent = now
        if status in ("sent", "delivered", "undelivered") and message.price is None:
            message.price = f"{-PRICE_PER_SEGMENT * message.num_segments:.5f}"
            message.price_unit = "USD"
        if status in ("failed", "undelivered"):
            message.error_code = error_code
            message.error_message = ERROR_MESSAGES.get(error_code or 0, "Unknown error")
        self.state.notify()

    def _rcs_sender(self, message: Message) -> str | None:
        directory = self.state.directory
        service = directory.find_service(message.account_sid, message.messaging_service_sid or "")
        return None if service is None else service.rcs_sender

    def _pool_sender(self, message: Message) -> str:
        # Twilio picks the sender from the Messaging Service's pool when it knows the service.
        directory = self.state.directory
        service = directory.find_service(message.account_sid, message.messaging_service_sid or "")
        pool = directory.service_numbers(service) if service is not None else []
        if pool:
            return pool[0].phone_number
        account = self.state.accounts.get(message.account_sid)
        return account.numbers[0] if account and account.numbers else POOL_NUMBER

    async def send_status(
        self, message: Message, status: str, error_code: int | None
    ) -> WebhookRecord | None:
        """POST one signed status callback (twice with the same token if duplicating)."""
        account = self.state.accounts.get(message.account_sid)
        if message.status_callback is None or account is None:
            return None
        record = build_record(
            kind="status",
            account_sid=account.sid,
            message_sid=message.sid,
            url=message.status_callback,
            auth_token=account.auth_token,
            params=status_params(message, status, error_code),
            message_status=status,
        )
        await self.sender.send(record)
        self._log_webhook(record)
        self.state.record_webhook(record)
        if self.state.config.duplicate_callbacks:
            await self.resend(record)
        return record

    async def resend(self, original: WebhookRecord) -> WebhookRecord:
        """Send a webhook again exactly as before: same params, signature and idempotency token."""
        copy = WebhookRecord(
            kind=original.kind,
            account_sid=original.account_sid,
            message_sid=original.message_sid,
            url=original.url,
            signed_url=original.signed_url,
            signature=original.signature,
            idempotency_token=original.idempotency_token,
            params=list(original.params),
            json_body=original.json_body,
            method=original.method,
            message_status=original.message_status,
            duplicate=True,
        )
        await self.sender.send(copy)
        self._log_webhook(copy)
        return self.state.record_webhook(copy)

    def route_inbound(self, spec: InboundSpec) -> InboundRoute:
        """Where Twilio sends a message to `spec.to`: `spec.url`, else as the number is set up.

        LookupError if `to` is no provisioned number; Unroutable if nothing is configured.
        """
        if spec.url is not None:
            return InboundRoute(
                account=self._account_for(spec.account_sid),
                url=spec.url,
                method=spec.method,
                fallback_url=spec.fallback_url,
                fallback_method="POST",
                messaging_service_sid=spec.messaging_service_sid,
                source="request",
            )
        directory = self.state.directory
        # A WhatsApp sender is the number itself: `whatsapp:+1…` arrives where `+1…` does.
        number = directory.number_for(spec.to.removeprefix("whatsapp:"), spec.account_sid)
        account = None if number is None else self.state.accounts.get(number.account_sid)
        if number is None or account is None:
            raise LookupError(f"{spec.to} is not a provisioned number; give a url")
        service = directory.services.get(number.service_sid or "")
        source: RouteSource
        if service is not None and not service.use_inbound_webhook_on_number:
            if not service.inbound_request_url:
                raise Unroutable(
                    f"Messaging Service {service.sid} has no InboundRequestUrl and does not "
                    "defer to its numbers: Twilio drops the message"
                )
            url, method = service.inbound_request_url, service.inbound_method
            fallback, fallback_method = service.fallback_url, service.fallback_method
            source = "service"
        else:
            if not number.sms_url:
                raise Unroutable(f"{number.phone_number} has no SmsUrl: Twilio sends no webhook")
            url, method = number.sms_url, number.sms_method
            fallback, fallback_method = number.sms_fallback_url, number.sms_fallback_method
            source = "number"
        return InboundRoute(
            account=account,
            url=url,
            method=spec.method if "method" in spec.model_fields_set else method,
            fallback_url=spec.fallback_url or fallback or None,
            fallback_method="POST" if spec.fallback_url else fallback_method,
            messaging_service_sid=spec.messaging_service_sid or number.service_sid,
            source=source,
        )

    async def send_inbound(self, spec: InboundSpec, base_url: str) -> InboundResult:
        """Store an inbound message (with hosted media) and deliver it as `route_inbound` says."""
        route = self.route_inbound(spec)
        account = route.account
        media_bytes = [_decode(m.data_base64) for m in spec.media]
        sid = new_sid("MM" if spec.media else "SM")
        message = Message(
            sid=sid,
            account_sid=account.sid,
            direction="inbound",
            status="received",
            to=spec.to,
            from_=spec.from_,
            body=spec.body,
            num_segments=1 if channel_of(spec.to) else count_segments(spec.body),
            seq=self.state.next_seq(),
            messaging_service_sid=route.messaging_service_sid,
            date_sent=utcnow(),
        )
        message.media = [
            Media(new_sid("ME"), account.sid, sid, m.content_type, data)
            for m, data in zip(spec.media, media_bytes, strict=True)
        ]
        self.state.add_message(message)
        params = inbound_params(message, spec, base_url)
        record = build_record(
            kind="inbound",
            account_sid=account.sid,
            message_sid=sid,
            url=route.url,
            auth_token=account.auth_token,
            params=params,
            json_body=spec.json_body,
            method=route.method,
            signature=spec.signature,
            sign_url=spec.sign_url,
        )
        await self.sender.send(record)
        self._log_webhook(record)
        self.state.record_webhook(record)
        fallback = None
        if route.fallback_url and failed(record):
            fallback = await self._fallback(
                route.fallback_url, route.fallback_method, account, record
            )
        return InboundResult(message, record, fallback, route.source)

    async def _fallback(
        self, url: str, method: HttpMethod, account: Account, failed_record: WebhookRecord
    ) -> WebhookRecord:
        answer = failed_record.answer
        connect_failed = answer is not None and (answer.error or "").startswith("connect")
        params = [
            *failed_record.params,
            ("ErrorCode", "11205" if connect_failed else "11200"),
            ("ErrorUrl", failed_record.signed_url),
        ]
        record = build_record(
            kind="fallback",
            account_sid=account.sid,
            message_sid=failed_record.message_sid,
            url=url,
            auth_token=account.auth_token,
            params=params,
            method=method,
        )
        await self.sender.send(record)
        self._log_webhook(record)
        return self.state.record_webhook(record)

    def _account_for(self, account_sid: str | None) -> Account:
        if account_sid is not None:
            account = self.state.accounts.get(account_sid)
            if account is None:
                raise LookupError(f"unknown account {account_sid}")
            return account
        if len(self.state.accounts) != 1:
            raise LookupError("account_sid is required unless exactly one account exists")
        return next(iter(self.state.accounts.values()))

    async def _fetch_media(self, message: Message) -> Outcome | None:
        # Twilio checks each MediaUrl with HEAD and GET and refuses mismatched content types.
        for media in message.media:
            if media.source_url is None:
                continue
            types: list[str | None] = []
            for method in ("HEAD", "GET"):
                record = await self._fetch_one(message.sid, method, media)
                if record.status is None or not 200 <= record.status < 300:
                    return Outcome("failed", 11200)
                types.append(record.content_type)
            if types[0] is None or types[0] != types[1]:
                return Outcome("failed", 12300)
            media.content_type = types[0].split(";")[0].strip()
        return None

    async def _fetch_one(self, message_sid: str, method: str, media: Media) -> MediaFetchRecord:
        url = media.source_url or ""
        record = MediaFetchRecord(message_sid, method, url, None, None, 0)
        try:
            async with self.session.request(
                method, URL(url, encoded=True), timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                data = await response.read()
                record.status = response.status
                record.content_type = response.headers.get("Content-Type")
                record.size = len(data)
                if method == "GET" and response.status == 200:
                    media.data = data
        except (aiohttp.ClientError, TimeoutError) as exc:
            record.error = repr(exc)
        self.state.media_fetches.append(record)
        self.state.notify()
        return record

    def _log_webhook(self, record: WebhookRecord) -> None:
        answer = record.answer
        log.info(
            "fake_twilio.webhook kind=%s sid=%s status=%s answer=%s",
            record.kind,
            record.message_sid,
            record.message_status or "-",
            "-" if answer is None else (answer.status or answer.error),
        )


def _decode(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError("data_base64 is not valid base64") from exc
