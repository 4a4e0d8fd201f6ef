"""Repository: what the webhook path refused, per configuration and hour, and the causes of
its signature failures (design §11). Refusals are held in memory and written in batches, so a
refused webhook costs no transaction of its own; nothing of its body is kept."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from bridge.db.pool import Connection, Database
from bridge.models import ConfigId, SignatureCause

Outcome = Literal["duplicate", "bad_signature", "refused"]
# Causes kept per configuration; older ones are dropped as new ones come.
KEEP_FAILURES = 20

_ADD = """
INSERT INTO webhook_counts (config_id, hour, outcome, count)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::int[])
ON CONFLICT (config_id, hour, outcome) DO UPDATE SET count = webhook_counts.count + excluded.count
"""

_ADD_FAILURES = """
INSERT INTO signature_failures (config_id, at, kind, cause, detail)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])
"""

_TRIM = """
DELETE FROM signature_failures f
WHERE f.config_id = ANY ($1::text[]) AND f.id NOT IN (
    SELECT k.id FROM signature_failures k WHERE k.config_id = f.config_id
    ORDER BY k.at DESC LIMIT $2)
"""

_FORGET = "DELETE FROM webhook_counts WHERE hour < now() - interval '8 days'"


@dataclass(frozen=True)
class SignatureFailure:
    config_id: ConfigId
    at: datetime
    kind: str
    cause: SignatureCause
    detail: str


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


async def add(conn: Connection, counts: Sequence[tuple[ConfigId, Outcome, int]]) -> None:
    """Count outcomes in the caller's transaction (duplicates, in the webhook's own commit)."""
    if not counts:
        return
    hour = _hour(datetime.now(UTC))
    await conn.execute(
        _ADD,
        [c for c, _, _ in counts],
        [hour] * len(counts),
        [o for _, o, _ in counts],
        [n for _, _, n in counts],
    )


class RefusalLog:
    """Refusals counted in memory, written by `flush` (the runtime calls it every second)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[ConfigId, datetime, Outcome]] = Counter()
        self._failures: list[SignatureFailure] = []

    def count(self, config_id: ConfigId, outcome: Outcome) -> None:
        self._counts[(config_id, _hour(datetime.now(UTC)), outcome)] += 1

    def failure(self, failure: SignatureFailure) -> None:
        # A flood of forged webhooks keeps only the newest causes per configuration.
        if len(self._failures) < 10 * KEEP_FAILURES:
            self._failures.append(failure)

    async def flush(self, db: Database) -> None:
        counts, self._counts = self._counts, Counter()
        failures, self._failures = self._failures, []
        if not counts and not failures:
            return
        try:
            async with db.transaction() as conn:
                if counts:
                    keys = list(counts)
                    await conn.execute(
                        _ADD,
                        [k[0] for k in keys],
                        [k[1] for k in keys],
                        [k[2] for k in keys],
                        [counts[k] for k in keys],
                    )
                if failures:
                    await conn.execute(
                        _ADD_FAILURES,
                        [f.config_id for f in failures],
                        [f.at for f in failures],
                        [f.kind for f in failures],
                        [f.cause for f in failures],
                        [f.detail for f in failures],
                    )
                    await conn.execute(
                        _TRIM, sorted({f.config_id for f in failures}), KEEP_FAILURES
                    )
                await conn.execute(_FORGET)
        except BaseException:
            # Not written: kept for the next flush (diagnostics, not promises, but still).
            self._counts.update(counts)
            self._failures = failures + self._failures
            raise
