"""Fault injection for the fake's REST API: "the next N requests fail" and a seeded random mode."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["429", "429-no-retry-after", "500", "500-after-create", "503", "slow"]
# Messages (create, fetch, list, delete), media, the account, and the number-setup APIs:
# IncomingPhoneNumbers ("numbers") and Messaging Services ("services").
Operation = Literal["create", "fetch", "list", "delete", "media", "account", "numbers", "services"]
ALL_OPERATIONS: frozenset[Operation] = frozenset(
    ("create", "fetch", "list", "delete", "media", "account", "numbers", "services")
)


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; `delay` only matters for `slow` (None = config slow_delay)."""

    kind: FaultKind
    delay: float | None = None


@dataclass
class _Queued:
    fault: Fault
    remaining: int
    operations: frozenset[Operation]


@dataclass
class _RandomMode:
    probability: float
    kinds: tuple[FaultKind, ...]
    operations: frozenset[Operation]
    delay: float | None
    rng: random.Random


@dataclass
class FaultInjector:
    """Decides, per API request, whether to misbehave and how."""

    _queue: list[_Queued] = field(default_factory=list)
    _random: _RandomMode | None = None

    def add_next(
        self, fault: Fault, count: int = 1, operations: Iterable[Operation] = ("create",)
    ) -> None:
        """Make the next `count` matching requests suffer `fault` (queued after earlier ones)."""
        if count > 0:
            self._queue.append(_Queued(fault, count, frozenset(operations)))

    def set_random(
        self,
        probability: float,
        kinds: Iterable[FaultKind],
        *,
        seed: int | None = None,
        operations: Iterable[Operation] = ("create",),
        delay: float | None = None,
    ) -> None:
        """Give each matching request `probability` of a fault drawn from `kinds`."""
        kinds = tuple(kinds)
        if not 0.0 <= probability <= 1.0 or not kinds:
            raise ValueError("probability must be within [0, 1] and kinds non-empty")
        self._random = _RandomMode(
            probability, kinds, frozenset(operations), delay, random.Random(seed)
        )

    def stop_random(self) -> None:
        """Leave random mode; queued faults stay."""
        self._random = None

    def clear(self) -> None:
        """Stop injecting faults."""
        self._queue.clear()
        self._random = None

    def pending(self) -> int:
        """How many queued faults are left."""
        return sum(q.remaining for q in self._queue)

    def draw(self, operation: Operation) -> Fault | None:
        """The fault for this request, if any; queued faults win over the random mode."""
        for queued in self._queue:
            if operation in queued.operations:
                queued.remaining -= 1
                if queued.remaining == 0:
                    self._queue.remove(queued)
                return queued.fault
        mode = self._random
        if mode is None or operation not in mode.operations:
            return None
        if mode.rng.random() >= mode.probability:
            return None
        return Fault(mode.rng.choice(mode.kinds), mode.delay)
