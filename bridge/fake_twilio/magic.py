"""Magic numbers that make the fake answer like Twilio does when something goes wrong.

The first five `To` numbers and the three `From` numbers are the ones Twilio itself reserves for
test credentials; the others follow the same +1500555xxxx pattern.

Synchronous answers to `POST …/Messages.json`, chosen by `To`:

    ============  ======  =====  ==================================================
    To            HTTP    code   effect
    ============  ======  =====  ==================================================
    +15005550001  400     21211  invalid 'To' number
    +15005550002  400     21612  'To' not reachable from this 'From'
    +15005550003  400     21408  no geo permission for the 'To' region
    +15005550004  400     21610  recipient unsubscribed (texted STOP)
    +15005550009  400     21614  'To' is not a mobile number
    +15005550429  429     20429  too many requests, with `Retry-After`
    +15005550430  429     20429  too many requests, no `Retry-After`
    +15005550500  500     20500  internal error, message NOT created
    +15005550501  500     20500  internal error AFTER the message was created
    +15005550503  503     20503  service unavailable, message NOT created
    +15005550504  201     -      created at once, answered after `slow_delay`
    ============  ======  =====  ==================================================

Chosen by `From`: +15005550001 → 400/21212 (invalid From), +15005550007 → 400/21606 (not an
SMS-capable number of the account), +15005550008 → 400/21611 (sender queue full).

Asynchronous outcomes (create answers 201; status callbacks then report):

    ============  =================================================
    To            callbacks after the initial status
    ============  =================================================
    +15005553001  failed, ErrorCode 30001 (queue overflow)
    +15005553003  sent → undelivered, ErrorCode 30003 (unreachable)
    +15005553005  sent → undelivered, ErrorCode 30005 (unknown handset)
    +15005553007  sent → undelivered, ErrorCode 30007 (carrier filtered)
    +15005552161  failed, ErrorCode 21610 (opted out, detected late)
    anything else sent → delivered (→ read, on WhatsApp and RCS)
    ============  =================================================

The same numbers work behind `whatsapp:`. A WhatsApp message without ContentSid, to a user who
has not written to that sender within `whatsapp_window_seconds`, is created and then fails with
ErrorCode 63016.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from aiohttp import web

FinalStatus = Literal["delivered", "undelivered", "failed"]
StepStatus = Literal["sent", "delivered", "undelivered", "failed"]


@dataclass(frozen=True)
class Rejection:
    """A synchronous error answer to a create request."""

    http_status: int
    code: int
    message: str
    retry_after: bool = False
    after_create: bool = False


@dataclass(frozen=True)
class Outcome:
    """How an accepted message ends: its callback sequence after the initial status."""

    final: FinalStatus
    error_code: int | None = None

    @property
    def steps(self) -> tuple[StepStatus, ...]:
        """Statuses reported by callbacks, in the order Twilio reaches them."""
        return (self.final,) if self.final == "failed" else ("sent", self.final)


TOO_MANY_REQUESTS = "Too Many Requests"
INTERNAL_ERROR = "An internal server error has occurred"
UNAVAILABLE = "Service is unavailable. Please try again"

REJECT_BY_TO: Mapping[str, Rejection] = MappingProxyType(
    {
        "+15005550001": Rejection(400, 21211, "The 'To' number {to} is not a valid phone number."),
        "+15005550002": Rejection(
            400,
            21612,
            "The 'To' phone number: {to}, is not currently reachable using the 'From' "
            "phone number: {from_} via SMS.",
        ),
        "+15005550003": Rejection(
            400,
            21408,
            "Permission to send an SMS has not been enabled for the region indicated by "
            "the 'To' number: {to}.",
        ),
        "+15005550004": Rejection(400, 21610, "Attempt to send to unsubscribed recipient"),
        "+15005550009": Rejection(400, 21614, "'To' number is not a valid mobile number"),
        "+15005550429": Rejection(429, 20429, TOO_MANY_REQUESTS, retry_after=True),
        "+15005550430": Rejection(429, 20429, TOO_MANY_REQUESTS),
        "+15005550500": Rejection(500, 20500, INTERNAL_ERROR),
        "+15005550501": Rejection(500, 20500, INTERNAL_ERROR, after_create=True),
        "+15005550503": Rejection(503, 20503, UNAVAILABLE),
    }
)

REJECT_BY_FROM: Mapping[str, Rejection] = MappingProxyType(
    {
        "+15005550001": Rejection(
            400, 21212, "The 'From' number {from_} is not a valid phone number."
        ),
        "+15005550007": Rejection(
            400,
            21606,
            "The From phone number {from_} is not a valid, SMS-capable inbound phone number "
            "or short code for your account.",
        ),
        "+15005550008": Rejection(
            400, 21611, "This 'From' number has exceeded the maximum number of queued messages"
        ),
    }
)

SLOW_TO = "+15005550504"

OUTCOME_BY_TO: Mapping[str, Outcome] = MappingProxyType(
    {
        "+15005553001": Outcome("failed", 30001),
        "+15005553003": Outcome("undelivered", 30003),
        "+15005553005": Outcome("undelivered", 30005),
        "+15005553007": Outcome("undelivered", 30007),
        "+15005552161": Outcome("failed", 21610),
    }
)

DELIVERED = Outcome("delivered")
# A free-form WhatsApp message outside the user's 24-hour window (no ContentSid).
WHATSAPP_WINDOW_CLOSED = Outcome("failed", 63016)

ERROR_MESSAGES: Mapping[int, str] = MappingProxyType(
    {
        11200: "HTTP retrieval failure",
        12300: "Invalid Content-Type",
        21610: "Attempt to send to unsubscribed recipient",
        30001: "Queue overflow",
        30003: "Unreachable destination handset",
        30005: "Unknown destination handset",
        30007: "Carrier violation",
        63016: "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template.",
    }
)


def error_body(status: int, code: int, message: str) -> dict[str, object]:
    """Twilio's v2010 JSON error document."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def error_response(
    status: int, code: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON error answer in Twilio's shape."""
    return web.json_response(error_body(status, code, message), status=status, headers=headers)


def rejection_response(rejection: Rejection, to: str, from_: str, retry_after: int) -> web.Response:
    """Render a magic-number rejection, filling the numbers into its message."""
    headers = {"Retry-After": str(retry_after)} if rejection.retry_after else None
    message = rejection.message.format(to=to, from_=from_)
    return error_response(rejection.http_status, rejection.code, message, headers)


def unauthorized() -> web.Response:
    """The 401 Twilio gives for missing or wrong credentials."""
    body = error_body(401, 20003, "Authenticate")
    return web.json_response(
        body, status=401, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
    )


def not_found(path: str) -> web.Response:
    """The 404 Twilio gives for an unknown resource."""
    return error_response(404, 20404, f"The requested resource {path} was not found")
