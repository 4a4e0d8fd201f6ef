"""List filters and Twilio-style paging (PageSize, Page, PageToken, relative page URIs)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import urlencode

from multidict import MultiMapping

from .numbers import IncomingNumber
from .records import JSONValue, Pairs
from .state import Message

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DATE_FILTERS = ("DateSent", "DateSent<", "DateSent>")
NUMBER_FILTERS = ("FriendlyName", "Beta", "PhoneNumber", "Origin")


class BadQuery(ValueError):
    """A list query parameter Twilio would refuse."""


@dataclass(frozen=True)
class PageRequest:
    """The paging part of a list query."""

    size: int
    number: int
    token: str | None


@dataclass(frozen=True)
class MessageFilter:
    """The filtering part of a Messages list query, with the raw values for echoing in URIs."""

    echoed: Pairs
    to: str | None
    from_: str | None
    on: date | None
    on_or_before: date | None
    on_or_after: date | None

    def matches(self, message: Message) -> bool:
        """Whether a message passes every given filter."""
        if self.to is not None and message.to != self.to:
            return False
        if self.from_ is not None and message.from_ != self.from_:
            return False
        if self.on is None and self.on_or_before is None and self.on_or_after is None:
            return True
        if message.date_sent is None:
            return False
        sent = message.date_sent.astimezone(UTC).date()
        return (
            (self.on is None or sent == self.on)
            and (self.on_or_before is None or sent <= self.on_or_before)
            and (self.on_or_after is None or sent >= self.on_or_after)
        )


def parse_page(query: MultiMapping[str]) -> PageRequest:
    """Read PageSize (1 to 1000, default 50), Page (0 or more) and PageToken."""
    size = _int_param(query, "PageSize", DEFAULT_PAGE_SIZE)
    number = _int_param(query, "Page", 0)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise BadQuery(f"PageSize must be between 1 and {MAX_PAGE_SIZE}")
    if number < 0:
        raise BadQuery("Page must be a non-negative integer")
    return PageRequest(size, number, query.get("PageToken") or None)


def parse_message_filter(query: MultiMapping[str]) -> MessageFilter:
    """Read To, From, DateSent, DateSent< and DateSent> (dates compared in GMT, whole days)."""
    echoed: Pairs = [(name, query[name]) for name in ("To", "From") if query.get(name)]
    dates: dict[str, date | None] = {}
    for name in DATE_FILTERS:
        raw = query.get(name)
        dates[name] = _parse_day(name, raw) if raw else None
        if raw:
            echoed.append((name, raw))
    return MessageFilter(
        echoed=echoed,
        to=query.get("To") or None,
        from_=query.get("From") or None,
        on=dates["DateSent"],
        on_or_before=dates["DateSent<"],
        on_or_after=dates["DateSent>"],
    )


@dataclass(frozen=True)
class NumberFilter:
    """The filtering part of an IncomingPhoneNumbers list query."""

    echoed: Pairs
    friendly_name: str | None
    phone: re.Pattern[str] | None
    origin: str | None

    def matches(self, number: IncomingNumber) -> bool:
        """Whether a number passes every given filter (the fake has no beta numbers)."""
        if self.friendly_name is not None and number.friendly_name != self.friendly_name:
            return False
        if self.phone is not None and self.phone.search(number.phone_number[1:]) is None:
            return False
        # Beta=false would hide numbers new to Twilio; the fake's are neither new nor hosted.
        return self.origin is None or self.origin == "twilio"


def parse_number_filter(query: MultiMapping[str]) -> NumberFilter:
    """Read FriendlyName (exact), PhoneNumber (partial, `*` = any digit), Beta and Origin."""
    echoed: Pairs = [(name, query[name]) for name in NUMBER_FILTERS if query.get(name)]
    beta_text = (query.get("Beta") or "").lower()
    if beta_text not in ("", "true", "false"):
        raise BadQuery("Beta must be true or false")
    raw_phone = query.get("PhoneNumber") or None
    phone = phone_pattern(raw_phone) if raw_phone else None
    if raw_phone and phone is None:
        raise BadQuery(f"PhoneNumber is not a valid phone number pattern: {raw_phone}")
    return NumberFilter(
        echoed=echoed,
        friendly_name=query.get("FriendlyName") or None,
        phone=phone,
        origin=query.get("Origin") or None,
    )


def phone_pattern(raw: str) -> re.Pattern[str] | None:
    """A `PhoneNumber` filter as a pattern over a number's digits, or None if it has none.

    Twilio matches partial numbers, `*` standing for any digit; a leading `+` anchors the
    pattern at the start, so a full E.164 number finds itself and no shorter or shifted match.
    Formatting characters are ignored.
    """
    text = raw.strip()
    kept = [ch for ch in text if ch.isdigit() or ch == "*"]
    if not kept:
        return None
    body = "".join(r"\d" if ch == "*" else ch for ch in kept)
    return re.compile(("^" if text.startswith("+") else "") + body)


def build_page(
    *,
    path: str,
    key: str,
    filters: Pairs,
    items: Sequence[T],
    sid_of: Callable[[T], str],
    render: Callable[[T], JSONValue],
    page: PageRequest,
) -> dict[str, JSONValue]:
    """One page of `items` (already in list order) with Twilio's page keys."""
    start_index = _start_index(items, sid_of, page)
    chunk = items[start_index : start_index + page.size]

    def uri(number: int, token: str | None) -> str:
        query = [*filters, ("PageSize", str(page.size)), ("Page", str(number))]
        if token:
            query.append(("PageToken", token))
        return f"{path}?{urlencode(query)}"

    more = start_index + len(chunk) < len(items)
    start = page.number * page.size
    return {
        key: [render(item) for item in chunk],
        "end": start + max(len(chunk) - 1, 0),
        "first_page_uri": uri(0, None),
        "next_page_uri": uri(page.number + 1, "PA" + sid_of(chunk[-1])) if more and chunk else None,
        "page": page.number,
        "page_size": page.size,
        "previous_page_uri": (
            uri(page.number - 1, "PB" + sid_of(chunk[0])) if page.number > 0 and chunk else None
        ),
        "start": start,
        "uri": uri(page.number, page.token),
    }


def build_meta_page(
    *,
    base_url: str,
    path: str,
    key: str,
    items: Sequence[T],
    sid_of: Callable[[T], str],
    render: Callable[[T], JSONValue],
    page: PageRequest,
) -> dict[str, JSONValue]:
    """One page in the newer APIs' shape: records under `key`, absolute URLs under `meta`."""
    start_index = _start_index(items, sid_of, page)
    chunk = items[start_index : start_index + page.size]

    def url(number: int, token: str | None) -> str:
        query = [("PageSize", str(page.size)), ("Page", str(number))]
        if token:
            query.append(("PageToken", token))
        return f"{base_url}{path}?{urlencode(query)}"

    more = start_index + len(chunk) < len(items)
    return {
        key: [render(item) for item in chunk],
        "meta": {
            "first_page_url": url(0, None),
            "key": key,
            "next_page_url": url(page.number + 1, "PA" + sid_of(chunk[-1]))
            if more and chunk
            else None,
            "page": page.number,
            "page_size": page.size,
            "previous_page_url": (
                url(page.number - 1, "PB" + sid_of(chunk[0])) if page.number > 0 and chunk else None
            ),
            "url": url(page.number, page.token),
        },
    }


def _start_index(items: Sequence[T], sid_of: Callable[[T], str], page: PageRequest) -> int:
    # PA<sid> continues after that item, PB<sid> goes back one page before it; an unknown
    # token (its item deleted meanwhile) falls back to plain offset paging.
    token = page.token
    if token and token[:2] in ("PA", "PB"):
        sids = [sid_of(item) for item in items]
        if token[2:] in sids:
            index = sids.index(token[2:])
            return index + 1 if token.startswith("PA") else max(index - page.size, 0)
    return page.number * page.size


def _int_param(query: MultiMapping[str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadQuery(f"{name} must be an integer") from None


_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_US_DAY = re.compile(r"(\d{2})/(\d{2})/(\d{4})")


def _parse_day(name: str, raw: str) -> date:
    text = raw.strip()
    try:
        if match := _DAY.match(text):
            return date(int(match[1]), int(match[2]), int(match[3]))
        if match := _US_DAY.match(text):
            return date(int(match[3]), int(match[1]), int(match[2]))
        parsed: datetime = parsedate_to_datetime(text)
    except (ValueError, TypeError):
        raise BadQuery(f"{name} is not a valid date: {raw}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.date()
