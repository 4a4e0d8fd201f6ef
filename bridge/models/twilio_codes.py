"""Twilio's error codes as an operator needs them: what happened, and what to do about it.

Twilio says the codes, not its texts, are what to rely on; the meanings here are short and ours.
Every answer that shows an ``error_code`` shows these beside it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TwilioCode:
    """One error code of Twilio's dictionary."""

    code: int
    meaning: str
    advice: str


_TABLE = (
    TwilioCode(
        20003,
        "authentication failed",
        "check the Account SID and the auth token or API key of the configuration",
    ),
    TwilioCode(
        20404,
        "not found on this Twilio account",
        "check that the number or service belongs to the configuration's account",
    ),
    TwilioCode(20429, "too many requests at once", "the bridge retries; lower the send rate"),
    TwilioCode(21211, "invalid 'To' number", "check the number dialled"),
    TwilioCode(21212, "invalid 'From' number", "check the configuration's numbers and sender_id"),
    TwilioCode(
        21408,
        "sending to this region is not enabled",
        "enable the country in the Twilio console's Messaging Geo Permissions",
    ),
    TwilioCode(
        21606,
        "the 'From' number cannot send to this destination",
        "use a number that can text this country, or a messaging service",
    ),
    TwilioCode(
        21608,
        "the 'To' number is not verified on this trial account",
        "verify the number in the Twilio console, or upgrade the account",
    ),
    TwilioCode(
        21610,
        "the recipient has opted out (STOP)",
        "the recipient must text START to receive texts again",
    ),
    TwilioCode(
        21611,
        "the sender's queue is full (over 10 hours of texts)",
        "send more slowly, or spread the texts over more numbers",
    ),
    TwilioCode(
        21612,
        "the 'To' number cannot be reached with this sender",
        "use another sender: some countries refuse alphanumeric or foreign senders",
    ),
    TwilioCode(21614, "the 'To' number is not a mobile number", "text a mobile number instead"),
    TwilioCode(21617, "the text is longer than 1,600 characters", "shorten the text"),
    TwilioCode(
        21655,
        "the template (content_sid) is not one of this account's",
        "copy the HX… SID from the account's Content Template Builder",
    ),
    TwilioCode(
        21656,
        "the template's variables are not valid",
        "give every variable of the template a non-empty text",
    ),
    TwilioCode(
        21910,
        "the 'From' and 'To' addresses are on different channels",
        "send WhatsApp from a WhatsApp number (whatsapp: on both sides)",
    ),
    TwilioCode(30001, "queue overflow", "send more slowly"),
    TwilioCode(30002, "account suspended", "contact Twilio about the account"),
    TwilioCode(
        30003,
        "unreachable destination handset",
        "the phone may be off or out of coverage; try again later",
    ),
    TwilioCode(
        30004,
        "message blocked",
        "the recipient may have blocked the sender",
    ),
    TwilioCode(30005, "unknown destination handset", "check the number dialled"),
    TwilioCode(30006, "landline or unreachable carrier", "text a mobile number instead"),
    TwilioCode(
        30007,
        "message filtered by the carrier",
        "fix the content, or register the sender (A2P 10DLC or toll-free verification)",
    ),
    TwilioCode(30008, "unknown error", "try again; if it persists, ask Twilio"),
    TwilioCode(
        30034,
        "the US number is not registered for A2P 10DLC",
        "register the number's campaign in the Twilio console",
    ),
    TwilioCode(
        63007,
        "the number is not a WhatsApp sender of this Twilio account",
        "register it as a WhatsApp sender in Twilio, or take whatsapp out of its channels",
    ),
    TwilioCode(
        63016,
        "outside the WhatsApp 24-hour window",
        "send an approved template (content_sid) until the customer writes again",
    ),
)

TWILIO_CODES: dict[int, TwilioCode] = {entry.code: entry for entry in _TABLE}


def describe(code: int | None) -> TwilioCode | None:
    """The code's meaning and advice; an unknown code gets a pointer to Twilio's dictionary."""
    if code is None:
        return None
    return TWILIO_CODES.get(code) or TwilioCode(
        code,
        "Twilio error " + str(code),
        f"see https://www.twilio.com/docs/api/errors/{code}",
    )
