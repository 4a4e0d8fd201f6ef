"""Inbound routing (design §6): an index of a tenant's rules, then the decision."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from bridge.models import (
    DidPattern,
    InboundRule,
    parse_did_pattern,
)

InboundReason = Literal["affinity", "rule", "fallback", "unroutable"]
PatternKind = Literal["exact", "range", "prefix", "any"]


# Entries are ordered by one int, (specificity, list position), so candidates gathered from
# several buckets merge without building tuples; positions stay below 2**32.
_POSITION_BITS = 32


def is_number(value: str) -> bool:
    """Whether ``value`` is + followed by ASCII digits, the only shape prefixes and ranges match."""
    digits = value[1:]
    return value[:1] == "+" and digits.isascii() and digits.isdigit()


def pattern_matches(pattern: DidPattern, value: str) -> bool:
    """Whether a number matches a DID pattern; a value that is not + and digits matches only *."""
    if pattern.kind == "any":
        return True
    if pattern.kind == "exact":
        return value == pattern.low
    if not is_number(value):
        return False
    if pattern.kind == "prefix":
        return value.startswith(pattern.low)
    return len(value) == len(pattern.low) and pattern.low <= value <= pattern.high


def range_blocks(low: str, high: str) -> list[str]:
    """The fewest digit prefixes whose numbers of ``len(low)`` digits are exactly low..high."""
    size = len(low)
    start, end = int(low), int(high)
    blocks: list[str] = []
    while start <= end:
        span = 0
        while span < size and start % 10 ** (span + 1) == 0 and start + 10 ** (span + 1) - 1 <= end:
            span += 1
        blocks.append(str(start).zfill(size)[: size - span])
        start += 10**span
    return blocks


# --- inbound ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundDecision:
    """Which extensions an inbound text goes to, and why."""

    extensions: tuple[str, ...]
    rule_index: int | None
    rule_name: str | None
    reason: InboundReason
    explanation: tuple[str, ...]


@dataclass(slots=True)
class _Entry:
    # What a decision reads is copied out of the rule: with 100,000 rules a decision is bound by
    # memory latency, and every object it touches beyond this one is another cache miss.
    position: int
    name: str
    extensions: tuple[str, ...]
    trunk_id: str | None
    kind: PatternKind
    text: str
    source: DidPattern | None
    order: int

    @property
    def label(self) -> str:
        return rule_label(self.position, self.name)


def _order(entry: _Entry) -> int:
    return entry.order


# Most buckets hold one rule, so that rule is stored bare rather than in a one-item tuple.
_Bucket = _Entry | tuple[_Entry, ...]


_Draft = dict[str, _Entry | list[_Entry]]


def _append(draft: _Draft, key: str, entry: _Entry) -> None:
    # No list until a key has a second rule: each allocation that survives the build is one
    # more object for the garbage collector to walk while it runs.
    bucket = draft.get(key)
    if bucket is None:
        draft[key] = entry
    elif isinstance(bucket, list):
        bucket.append(entry)
    else:
        draft[key] = [bucket, entry]


def _freeze(draft: _Draft, *, sort: bool) -> dict[str, _Bucket]:
    return {
        key: tuple(sorted(bucket, key=_order) if sort else bucket)
        if isinstance(bucket, list)
        else bucket
        for key, bucket in draft.items()
    }


class _Buckets:
    """Entries by a leading slice of the value; a lookup tries only the slice lengths in use."""

    __slots__ = ("by_key", "key_lengths")

    def __init__(self, draft: _Draft, *, sort: bool) -> None:
        self.by_key = _freeze(draft, sort=sort)
        self.key_lengths = tuple(sorted({len(key) for key in draft}, reverse=True))

    def lookup(self, value: str, into: list[_Bucket]) -> None:
        size = len(value)
        for length in self.key_lengths:
            if length <= size:
                bucket = self.by_key.get(value[:length])
                if bucket is not None:
                    into.append(bucket)


class _Partition:
    """The enabled rules of one trunk (or of every trunk), one structure per kind of pattern."""

    __slots__ = ("any", "exact", "prefix_walk", "prefixes", "ranges")

    def __init__(self, entries: Iterable[_Entry], shared: _Partition | None = None) -> None:
        exact: _Draft = {}
        prefixes: _Draft = {}
        # Keyed by the length of the numbers first, so a range never surfaces for a DID of
        # another length that happens to share a leading block.
        ranges: dict[int, _Draft] = {}
        anything: list[_Entry] = []
        for entry in entries:
            if entry.kind == "exact":
                _append(exact, entry.text, entry)
            elif entry.kind == "prefix":
                _append(prefixes, entry.text[:-1], entry)
            elif entry.kind == "range":
                low, _, high = entry.text.partition("-")
                blocks = ranges.setdefault(len(low), {})
                for block in range_blocks(low[1:], high[1:]):
                    _append(blocks, "+" + block, entry)
            else:
                anything.append(entry)
        # Entries arrive in list order, so only range buckets (ordered by width) need sorting.
        self.exact = _freeze(exact, sort=False)
        self.prefixes = _Buckets(prefixes, sort=False)
        self.ranges = {size: _Buckets(blocks, sort=True) for size, blocks in ranges.items()}
        self.any: tuple[_Entry, ...] = tuple(anything)
        # The prefix lengths to try, longest first, when this partition is consulted together
        # with the shared one: computed here rather than on every decision.
        lengths = set(self.prefixes.key_lengths)
        if shared is not None:
            lengths.update(shared.prefixes.key_lengths)
        self.prefix_walk = tuple(sorted(lengths, reverse=True))


def _first(buckets: list[_Bucket], remote: str, notes: list[str]) -> _Entry | None:
    """The first entry, in (specificity, position) order, whose ``from`` filter applies."""
    candidates: Iterable[_Entry]
    if len(buckets) == 1:
        only = buckets[0]
        if isinstance(only, _Entry):
            if only.source is None:
                return only
            candidates = (only,)
        else:
            candidates = only
    else:
        lists = [(b,) if isinstance(b, _Entry) else b for b in buckets]
        candidates = heapq.merge(*lists, key=_order)
    for entry in candidates:
        if entry.source is None or pattern_matches(entry.source, remote):
            return entry
        notes.append(
            f"{entry.label} (did {entry.text}) "
            f"skipped: from {remote} does not match {entry.source.text}"
        )
    return None


def _first_of(
    shared: _Bucket | None, own: _Bucket | None, remote: str, notes: list[str]
) -> _Entry | None:
    """:func:`_first` over the shared partition's bucket and the trunk's own, either absent."""
    if own is None:
        return None if shared is None else _first([shared], remote, notes)
    return _first([own] if shared is None else [shared, own], remote, notes)


class InboundRuleIndex:
    """A tenant's inbound rules, indexed so a decision costs the same with 10 or 100,000 rules."""

    __slots__ = ("_by_trunk", "_shared", "_size")

    def __init__(self, shared: _Partition, by_trunk: dict[str, _Partition], size: int) -> None:
        self._shared = shared
        self._by_trunk = by_trunk
        self._size = size

    @classmethod
    def build(cls, rules: Sequence[InboundRule]) -> InboundRuleIndex:
        """Index a tenant's ordered rule list; disabled rules are left out."""
        shared: list[_Entry] = []
        by_trunk: dict[str, list[_Entry]] = {}
        extension_lists: dict[tuple[str, ...], tuple[str, ...]] = {}
        for position, rule in enumerate(rules):
            if not rule.enabled:
                continue
            pattern = parse_did_pattern(rule.did)
            if pattern.kind == "range":
                specificity = int(pattern.high[1:]) - int(pattern.low[1:])
            elif pattern.kind == "prefix":
                specificity = -len(pattern.low)
            else:
                specificity = 0
            extensions = tuple(rule.extensions)
            entry = _Entry(
                position=position,
                name=rule.name,
                extensions=extension_lists.setdefault(extensions, extensions),
                trunk_id=rule.trunk_id,
                kind=pattern.kind,
                text=pattern.text,
                source=None if rule.from_ is None else parse_did_pattern(rule.from_),
                order=(specificity << _POSITION_BITS) + position,
            )
            if rule.trunk_id is None:
                shared.append(entry)
            else:
                by_trunk.setdefault(rule.trunk_id, []).append(entry)
        common = _Partition(shared)
        return cls(
            common,
            {trunk: _Partition(entries, common) for trunk, entries in by_trunk.items()},
            len(shared) + sum(len(entries) for entries in by_trunk.values()),
        )

    def __len__(self) -> int:
        return self._size

    def _match(
        self, did: str, remote: str, trunk_id: str | None, notes: list[str]
    ) -> _Entry | None:
        """Exact, then ranges, then prefixes longest first, then any; the first that applies."""
        shared = self._shared
        own = None if trunk_id is None else self._by_trunk.get(trunk_id)
        mine = None if own is None else own.exact.get(did)
        entry = _first_of(shared.exact.get(did), mine, remote, notes)
        if entry is not None:
            return entry
        if is_number(did):
            buckets: list[_Bucket] = []
            for partition in (shared,) if own is None else (shared, own):
                if (blocks := partition.ranges.get(len(did))) is not None:
                    blocks.lookup(did, buckets)
            if buckets and (entry := _first(buckets, remote, notes)) is not None:
                return entry
            # One length at a time, longest first, so the walk stops at the first that applies.
            size = len(did)
            for length in (shared if own is None else own).prefix_walk:
                if length <= size:
                    key = did[:length]
                    mine = None if own is None else own.prefixes.by_key.get(key)
                    entry = _first_of(shared.prefixes.by_key.get(key), mine, remote, notes)
                    if entry is not None:
                        return entry
        mine = None if own is None or not own.any else own.any
        return _first_of(shared.any or None, mine, remote, notes)


def rule_label(position: int, name: str) -> str:
    return f"rule [{position}] {name!r}"


_HOW = {
    "exact": "is exactly",
    "range": "is in the range",
    "prefix": "starts with the prefix of",
    "any": "falls through to",
}


def route_inbound(
    index: InboundRuleIndex,
    *,
    did: str,
    remote: str,
    trunk_id: str | None,
    affinity_extension: str | None,
) -> InboundDecision:
    """Design §6 inbound: conversation affinity, then the most specific applicable rule."""
    if affinity_extension is not None:
        return InboundDecision(
            extensions=(affinity_extension,),
            rule_index=None,
            rule_name=None,
            reason="affinity",
            explanation=(
                f"replies follow the conversation: extension {affinity_extension} is the newest "
                f"to have texted {remote} from {did} within the tenant's affinity_hours",
            ),
        )
    notes: list[str] = []
    entry = index._match(did, remote, trunk_id, notes)
    if entry is None:
        on_trunk = "" if trunk_id is None else f" on trunk {trunk_id}"
        notes.append(f"no enabled inbound rule applies to {did} from {remote}{on_trunk}")
        return InboundDecision((), None, None, "unroutable", tuple(notes))
    # An exact rule's text is the DID itself; reading it again would cost a cache miss.
    text = did if entry.kind == "exact" else entry.text
    why = f"{entry.label} wins: {did} {_HOW[entry.kind]} {text}"
    if entry.kind == "range":
        why += f" (width {entry.order >> _POSITION_BITS})"
    if entry.trunk_id is not None:
        why += f", on trunk {entry.trunk_id}"
    if entry.source is not None:
        why += f", from {remote} matches {entry.source.text}"
    notes.append(why)
    plural = "s" if len(entry.extensions) > 1 else ""
    notes.append(f"delivers to extension{plural} {', '.join(entry.extensions)}")
    return InboundDecision(
        extensions=entry.extensions,
        rule_index=entry.position,
        rule_name=entry.name,
        reason="fallback" if entry.kind == "any" else "rule",
        explanation=tuple(notes),
    )
