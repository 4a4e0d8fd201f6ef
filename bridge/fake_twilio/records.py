"""What the fake received and sent, kept for tests and the control API to inspect."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeAlias

JSONValue: TypeAlias = dict[str, "JSONValue"] | list["JSONValue"] | str | int | float | bool | None
Pairs: TypeAlias = list[tuple[str, str]]


def utcnow() -> datetime:
    """Now in UTC, to the second as Twilio's dates are."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class ApiRequestRecord:
    """One request the fake's Twilio API received, and how it answered."""

    id: int
    operation: str
    method: str
    path: str
    query: Pairs
    auth_username: str | None
    auth_kind: str
    form: Pairs = field(default_factory=list)
    status: int | None = None
    fault: str | None = None
    message_sid: str | None = None
    at: datetime = field(default_factory=utcnow)
    # Sub-second arrival time (epoch seconds) for tests and benchmarks that time requests;
    # `at` has whole seconds like Twilio's own dates.
    received_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, JSONValue]:
        """JSON view for the control API."""
        return {
            "id": self.id,
            "received_at": self.received_at,
            "operation": self.operation,
            "method": self.method,
            "path": self.path,
            "query": [[k, v] for k, v in self.query],
            "form": [[k, v] for k, v in self.form],
            "auth": {"username": self.auth_username, "kind": self.auth_kind},
            "status": self.status,
            "fault": self.fault,
            "message_sid": self.message_sid,
            "at": self.at.isoformat(),
        }


@dataclass
class Attempt:
    """One HTTP attempt the fake made towards a webhook URL."""

    status: int | None
    content_type: str | None
    body: str
    error: str | None = None
    authorized: bool = False

    def to_json(self) -> dict[str, JSONValue]:
        """JSON view for the control API."""
        return {
            "status": self.status,
            "content_type": self.content_type,
            "body": self.body,
            "error": self.error,
            "authorized": self.authorized,
        }


@dataclass
class WebhookRecord:
    """A webhook the fake sent (status callback, inbound message or fallback)."""

    kind: Literal["status", "inbound", "fallback"]
    account_sid: str
    message_sid: str
    url: str
    signed_url: str
    signature: str
    idempotency_token: str
    params: Pairs
    json_body: str | None = None
    method: Literal["POST", "GET"] = "POST"
    message_status: str | None = None
    duplicate: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    at: datetime = field(default_factory=utcnow)

    @property
    def answer(self) -> Attempt | None:
        """The last attempt, which decided the outcome."""
        return self.attempts[-1] if self.attempts else None

    def to_json(self) -> dict[str, JSONValue]:
        """JSON view for the control API."""
        answer = self.answer
        return {
            "kind": self.kind,
            "account_sid": self.account_sid,
            "message_sid": self.message_sid,
            "url": self.url,
            "signed_url": self.signed_url,
            "signature": self.signature,
            "idempotency_token": self.idempotency_token,
            "params": [[k, v] for k, v in self.params],
            "json_body": self.json_body,
            "method": self.method,
            "message_status": self.message_status,
            "duplicate": self.duplicate,
            "answer": None if answer is None else answer.to_json(),
            "attempts": [a.to_json() for a in self.attempts],
            "at": self.at.isoformat(),
        }


@dataclass
class MediaFetchRecord:
    """The fake fetched an outbound MediaUrl, as Twilio does before sending an MMS."""

    message_sid: str
    method: str
    url: str
    status: int | None
    content_type: str | None
    size: int
    error: str | None = None

    def to_json(self) -> dict[str, JSONValue]:
        """JSON view for the control API."""
        return {
            "message_sid": self.message_sid,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "content_type": self.content_type,
            "size": self.size,
            "error": self.error,
        }
