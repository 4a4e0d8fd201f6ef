"""When to try again: exponential backoff with full jitter, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt ``n + 1`` after ``n`` failures: up to base·2ⁿ⁻¹, at most cap."""

    base: float = 1.0
    cap: float = 300.0

    def ceiling(self, failures: int) -> float:
        return float(min(self.cap, self.base * 2.0 ** max(0, failures - 1)))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        # Jitter keeps a crowd of retries (e.g. after the PBX comes back) from arriving at once.
        ceiling = self.ceiling(failures)
        return ceiling / 2 + (rng or random).random() * ceiling / 2
