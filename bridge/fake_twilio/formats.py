"""Twilio's identifiers, dates and paths, shared by every resource the fake serves."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from email.utils import format_datetime

API_VERSION = "2010-04-01"
ACCOUNTS_PREFIX = f"/{API_VERSION}/Accounts"
MESSAGING_VERSION = "v1"
SERVICES_PREFIX = f"/{MESSAGING_VERSION}/Services"

# A few calling codes are enough for plausible geo fields; Twilio leaves the rest empty.
_COUNTRY_BY_PREFIX = (
    ("+1", "US"),
    ("+44", "GB"),
    ("+61", "AU"),
    ("+33", "FR"),
    ("+49", "DE"),
    ("+34", "ES"),
)


def new_sid(prefix: str) -> str:
    """A Twilio-style SID: two letters and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime | None) -> str | None:
    """Format like `Thu, 24 Aug 2023 05:01:45 +0000` (the 2010-04-01 API's dates)."""
    return None if moment is None else format_datetime(moment.astimezone(UTC))


def iso8601(moment: datetime | None) -> str | None:
    """Format like `2015-07-30T20:12:31Z` (the dates of the newer APIs such as Messaging v1)."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def country_of(number: str) -> str:
    """ISO country of a number for the geo fields, or "" when unknown."""
    number = number.rpartition(":")[2]
    for prefix, country in _COUNTRY_BY_PREFIX:
        if number.startswith(prefix):
            return country
    return ""
