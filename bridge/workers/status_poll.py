"""Worker: ask Twilio what became of outbound texts whose status stood still, because Twilio
never sends a lost status callback again."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from bridge.crypto import SecretBox
from bridge.db import status_poll as repo
from bridge.db.claims import worker_id
from bridge.db.pool import Database
from bridge.db.statuses import StatusMove
from bridge.errors import BridgeError
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.models import STATUS_RANK, outbound_status
from bridge.services.status import StatusService
from bridge.twilio.client import TwilioClient
from bridge.twilio.credentials import rest_credentials

log = get_logger(__name__)

BATCH = 16
DISCOVER = 1000

Outcome = Literal["final", "moved", "unchanged", "failed"]


@dataclass(frozen=True)
class _Answer:
    quiet: repo.Quiet
    outcome: Outcome
    move: StatusMove | None = None
    error: str | None = None


class StatusPoller:
    """Claims quiet texts with SKIP LOCKED, so any number of processes share the looking."""

    def __init__(
        self,
        db: Database,
        client: TwilioClient,
        box: SecretBox,
        status: StatusService,
        metrics: Metrics,
        *,
        quiet_seconds: float,
        max_interval_seconds: float,
        max_age_seconds: float,
        twilio_timeout: float,
    ) -> None:
        self._db = db
        self._client = client
        self._box = box
        self._status = status
        self._metrics = metrics
        self._quiet = quiet_seconds
        self._max_interval = max_interval_seconds
        self._max_age = max_age_seconds
        # A claim outlasts the batch's requests (all in flight at once) with room to spare.
        self._claim = max(60.0, 3 * twilio_timeout)
        # Looking a tenth of the quiet time late is soon enough, and costs little.
        self._every = min(max(quiet_seconds / 10, 0.05), 30.0)
        self.worker_id = worker_id("status-poll")

    async def run(self) -> None:
        """Until cancelled: look at what is due, then sleep unless a whole batch was due."""
        while True:
            try:
                busy = await self.poll_due()
            except (OSError, BridgeError) as exc:
                log.warning("status_poll.loop_error", error=str(exc))
                busy = 0
            except Exception:
                # The rows stay; the next round takes them again once their claim runs out.
                log.exception("status_poll.loop_crashed")
                busy = 0
            if busy < BATCH:
                await asyncio.sleep(self._every)

    async def poll_due(self) -> int:
        """One round: tidy up, find texts that went quiet, look up a batch of the due ones."""
        async with self._db.connection() as conn:
            gave_up = await repo.forget_settled(conn, self._max_age)
            await repo.discover(conn, self._quiet, self._max_age, DISCOVER)
            claimed = await repo.claim(
                conn,
                self.worker_id,
                BATCH,
                claim_seconds=self._claim,
                quiet_seconds=self._quiet,
                max_age_seconds=self._max_age,
            )
        if gave_up:
            self._metrics.status_polls.labels("gave_up").inc(gave_up)
            log.info("status_poll.gave_up", count=gave_up)
        if not claimed:
            return 0
        answers = await asyncio.gather(*(self._ask(quiet) for quiet in claimed))
        async with self._db.transaction() as conn:
            # The one status rule: forward only, in the history, told to the PBX.
            await self._status.apply(conn, [a.move for a in answers if a.move is not None])
            await repo.forget(conn, [a.quiet.message_id for a in answers if a.outcome == "final"])
            await repo.reschedule(
                conn, self.worker_id, [self._later(a) for a in answers if a.outcome != "final"]
            )
        for answer in answers:
            self._metrics.status_polls.labels(answer.outcome).inc()
        return len(claimed)

    async def _ask(self, quiet: repo.Quiet) -> _Answer:
        try:
            creds = rest_credentials(
                self._box, quiet.config_id, quiet.account_sid, quiet.api_key_sid, quiet.secrets
            )
            found = await self._client.fetch_message(creds, quiet.twilio_sid)
        except BridgeError as exc:
            log.info("status_poll.failed", message_id=quiet.message_id, error=exc.message)
            return _Answer(quiet, "failed", error=exc.message)
        status = outbound_status(found.status)
        current = outbound_status(quiet.status)
        if status is None or STATUS_RANK[status] <= STATUS_RANK[current or "accepted"]:
            return _Answer(quiet, "unchanged")
        # No error_message: the bridge's meaning of the code, as for a callback.
        move = StatusMove(quiet.message_id, status, found.error_code)
        log.info(
            "status_poll.moved",
            tenant_id=quiet.tenant_id,
            message_id=quiet.message_id,
            status=status,
        )
        final = STATUS_RANK[status] >= repo.FINAL_RANK
        return _Answer(quiet, "final" if final else "moved", move)

    def _later(self, answer: _Answer) -> repo.Reschedule:
        """Moved: the next look waits the quiet time again; else each look doubles the wait."""
        quiet = answer.quiet
        if answer.outcome == "moved":
            return repo.Reschedule(quiet.message_id, 0, self._quiet)
        polls = quiet.polls + 1
        delay = min(self._quiet * 2.0 ** min(polls, 32), self._max_interval)
        return repo.Reschedule(quiet.message_id, polls, delay, answer.error)
