"""The fake's in-memory world: accounts, keys, messages, media, and what it received and sent."""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from .faults import FaultInjector
from .formats import ACCOUNTS_PREFIX, API_VERSION, new_sid, rfc2822
from .numbers import E164, NumberDirectory
from .records import (
    ApiRequestRecord,
    JSONValue,
    MediaFetchRecord,
    Pairs,
    WebhookRecord,
    utcnow,
)

MessageStatus = Literal[
    "queued",
    "sending",
    "sent",
    "failed",
    "delivered",
    "undelivered",
    "receiving",
    "received",
    "accepted",
    "scheduled",
    "read",
    "partially_delivered",
    "canceled",
]
Direction = Literal["inbound", "outbound-api", "outbound-call", "outbound-reply"]
KeyType = Literal["standard", "main"]
AccountStatus = Literal["active", "suspended", "closed"]
CredentialKind = Literal["auth_token", "standard", "main"]


@dataclass
class FakeConfig:
    """Knobs a test or the control API can turn; every delay is in seconds."""

    latency: float = 0.0
    callback_delay: float = 0.05
    slow_delay: float = 2.0
    retry_after: int = 1
    reorder_callbacks: bool = False
    duplicate_callbacks: bool = False
    # Status callbacks lost on the way (a proxy down): the message still moves on, unheard.
    drop_callbacks: bool = False
    fetch_media: bool = False
    media_auth: bool = True
    public_base_url: str | None = None
    webhook_timeout: float = 15.0
    # WhatsApp's customer-service window: free-form messages only this long after the user's
    # last message to the sender (0 closes every window).
    whatsapp_window_seconds: float = 24 * 3600.0
    # WhatsApp and RCS report `read` after `delivered`.
    read_receipts: bool = True


@dataclass
class Account:
    """A Twilio account with its primary auth token."""

    sid: str
    auth_token: str
    friendly_name: str = "Fake account"
    status: AccountStatus = "active"
    numbers: list[str] = field(default_factory=list)
    # E.164 numbers registered as WhatsApp senders (From `whatsapp:+…` must be one of them).
    whatsapp_senders: list[str] = field(default_factory=list)
    created: datetime = field(default_factory=utcnow)

    def resource(self) -> dict[str, JSONValue]:
        """The `api.v2010.account` JSON."""
        base = f"{ACCOUNTS_PREFIX}/{self.sid}"
        return {
            "auth_token": self.auth_token,
            "date_created": rfc2822(self.created),
            "date_updated": rfc2822(self.created),
            "friendly_name": self.friendly_name,
            "owner_account_sid": self.sid,
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "messages": f"{base}/Messages.json",
                "balance": f"{base}/Balance.json",
                "keys": f"{base}/Keys.json",
                "incoming_phone_numbers": f"{base}/IncomingPhoneNumbers.json",
            },
            "type": "Full",
            "uri": f"{base}.json",
        }


@dataclass(frozen=True)
class ApiKey:
    """An API key (SK…) of an account; Standard keys cannot reach /Accounts resources."""

    sid: str
    secret: str
    account_sid: str
    kind: KeyType = "standard"


@dataclass(frozen=True)
class Credential:
    """Who a request authenticated as."""

    kind: CredentialKind
    username: str
    account_sid: str


@dataclass
class Media:
    """A media file attached to a message; `data` is None until the fake has the bytes."""

    sid: str
    account_sid: str
    message_sid: str
    content_type: str
    data: bytes | None = None
    source_url: str | None = None
    created: datetime = field(default_factory=utcnow)

    @property
    def uri(self) -> str:
        """Relative URI of the media file (no extension serves the bytes)."""
        return f"{ACCOUNTS_PREFIX}/{self.account_sid}/Messages/{self.message_sid}/Media/{self.sid}"

    def resource(self) -> dict[str, JSONValue]:
        """The `api.v2010.account.message.media` JSON."""
        return {
            "account_sid": self.account_sid,
            "content_type": self.content_type,
            "date_created": rfc2822(self.created),
            "date_updated": rfc2822(self.created),
            "parent_sid": self.message_sid,
            "sid": self.sid,
            "uri": f"{self.uri}.json",
        }


@dataclass
class Message:
    """A message resource, outbound (created through the API) or inbound (sent by the fake)."""

    sid: str
    account_sid: str
    direction: Direction
    status: MessageStatus
    to: str
    from_: str | None
    body: str
    num_segments: int
    seq: int
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    content_sid: str | None = None
    content_variables: str | None = None
    media: list[Media] = field(default_factory=list)
    params: Pairs = field(default_factory=list)
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)
    date_sent: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    price: str | None = None
    price_unit: str | None = None

    @property
    def uri(self) -> str:
        """Relative URI of the message resource."""
        return f"{ACCOUNTS_PREFIX}/{self.account_sid}/Messages/{self.sid}.json"

    def resource(self, *, with_feedback: bool = True) -> dict[str, JSONValue]:
        """The `api.v2010.account.message` JSON; create answers omit the feedback link."""
        base = f"{ACCOUNTS_PREFIX}/{self.account_sid}/Messages/{self.sid}"
        subresources: dict[str, JSONValue] = {"media": f"{base}/Media.json"}
        if with_feedback:
            subresources["feedback"] = f"{base}/Feedback.json"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media)),
            "num_segments": str(self.num_segments),
            "price": self.price,
            "price_unit": self.price_unit,
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": subresources,
            "to": self.to,
            "uri": self.uri,
        }


class FakeState:
    """Everything the fake knows; one instance per app, shared by handlers and tasks."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()
        self.accounts: dict[str, Account] = {}
        self.keys: dict[str, ApiKey] = {}
        self.messages: dict[str, Message] = {}
        self.directory = NumberDirectory(self.accounts)
        self.requests: list[ApiRequestRecord] = []
        self.webhooks: list[WebhookRecord] = []
        self.dropped_callbacks = 0
        self.media_fetches: list[MediaFetchRecord] = []
        self.faults = FaultInjector()
        self.cdn_secret = secrets.token_bytes(32)
        self._seq = itertools.count(1)
        self._changed = asyncio.Event()

    def add_account(
        self,
        sid: str | None = None,
        auth_token: str | None = None,
        *,
        friendly_name: str = "Fake account",
        numbers: list[str] | None = None,
        status: AccountStatus = "active",
        whatsapp_senders: list[str] | None = None,
    ) -> Account:
        """Register (or replace) an account; SID and token are generated when not given.

        Each E.164 number in `numbers` also becomes an IncomingPhoneNumber of the account
        (ValueError if another account has it); replacing an account drops its old numbers.
        """
        account = Account(
            sid=sid or new_sid("AC"),
            auth_token=auth_token or secrets.token_hex(16),
            friendly_name=friendly_name,
            status=status,
            whatsapp_senders=list(dict.fromkeys(whatsapp_senders or [])),
        )
        self.directory.forget_account(account.sid)
        self.accounts[account.sid] = account
        for number in dict.fromkeys(numbers or []):
            if E164.fullmatch(number):
                self.directory.add_number(account.sid, number)
            elif number not in account.numbers:
                account.numbers.append(number)
        self.notify()
        return account

    def add_key(
        self,
        account_sid: str,
        *,
        kind: KeyType = "standard",
        sid: str | None = None,
        secret: str | None = None,
    ) -> ApiKey:
        """Register an API key for an existing account."""
        if account_sid not in self.accounts:
            raise KeyError(account_sid)
        key = ApiKey(sid or new_sid("SK"), secret or secrets.token_urlsafe(24), account_sid, kind)
        self.keys[key.sid] = key
        return key

    def authenticate(self, authorization: str | None) -> Credential | None:
        """Check an HTTP Basic header against registered accounts and keys."""
        if not authorization or not authorization.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, sep, password = decoded.partition(":")
        if not sep:
            return None
        account = self.accounts.get(username)
        if account is not None:
            if account.status == "active" and _same(account.auth_token, password):
                return Credential("auth_token", username, account.sid)
            return None
        key = self.keys.get(username)
        owner = self.accounts.get(key.account_sid) if key else None
        if key is None or owner is None or owner.status != "active":
            return None
        if _same(key.secret, password):
            return Credential(key.kind, username, key.account_sid)
        return None

    def whatsapp_window_open(self, account_sid: str, sender: str, user: str) -> bool:
        """Whether `user` wrote to `sender` (both `whatsapp:+…`) within the window."""
        window = self.config.whatsapp_window_seconds
        now = utcnow()
        return any(
            m.account_sid == account_sid
            and m.direction == "inbound"
            and m.from_ == user
            and m.to == sender
            and (now - m.created).total_seconds() < window
            for m in self.messages.values()
        )

    def next_seq(self) -> int:
        """Monotonic creation order, finer than the one-second dates."""
        return next(self._seq)

    def add_message(self, message: Message) -> Message:
        """Store a message resource."""
        self.messages[message.sid] = message
        self.notify()
        return message

    def find_message(self, account_sid: str, sid: str) -> Message | None:
        """A message of this account, or None."""
        message = self.messages.get(sid)
        return message if message is not None and message.account_sid == account_sid else None

    def account_messages(self, account_sid: str) -> list[Message]:
        """An account's messages, newest first as Twilio lists them."""
        mine = [m for m in self.messages.values() if m.account_sid == account_sid]
        return sorted(mine, key=lambda m: m.seq, reverse=True)

    def record_request(self, record: ApiRequestRecord) -> ApiRequestRecord:
        """Keep a received API request for inspection."""
        self.requests.append(record)
        self.notify()
        return record

    def record_webhook(self, record: WebhookRecord) -> WebhookRecord:
        """Keep a sent webhook for inspection."""
        self.webhooks.append(record)
        self.notify()
        return record

    def callbacks(self, message_sid: str | None = None) -> list[WebhookRecord]:
        """Status callbacks sent so far, optionally for one message."""
        return [
            w
            for w in self.webhooks
            if w.kind == "status" and (message_sid is None or w.message_sid == message_sid)
        ]

    def reset(self, *, keep_accounts: bool = True) -> None:
        """Forget messages, records and faults (accounts, keys, numbers, services unless kept)."""
        if not keep_accounts:
            self.accounts.clear()
            self.keys.clear()
            self.directory.clear()
        self.messages.clear()
        self.requests.clear()
        self.webhooks.clear()
        self.dropped_callbacks = 0
        self.media_fetches.clear()
        self.faults.clear()
        self.notify()

    def notify(self) -> None:
        """Wake anyone waiting in `wait_for`."""
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until `predicate()` holds; raises TimeoutError after `within` seconds."""
        async with asyncio.timeout(within):
            while True:
                self._changed.clear()
                if predicate():
                    return
                await self._changed.wait()


def _same(expected: str, given: str) -> bool:
    # compare_digest refuses non-ASCII str, and a password may be anything.
    return secrets.compare_digest(expected.encode(), given.encode())
