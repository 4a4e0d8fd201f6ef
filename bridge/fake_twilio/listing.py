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

from .records import JSONValue, Pairs
from .state import Message

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DATE_FILTERS = ("DateSent", "DateSent<", "DateSent>")


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
