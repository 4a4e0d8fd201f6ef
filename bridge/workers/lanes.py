"""A queue worker in lanes: each lane claims as a worker of its own, in turn with the others,
and delivers what it took side by side with them (see `claim_in_turns`)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

from bridge.db.claims import worker_id
from bridge.db.notify import Listener, claim_in_turns

Job = TypeVar("Job")


class Lanes(ABC, Generic[Job]):
    """Subclasses say how a lane claims (``_claim``) and delivers one job (``_deliver``)."""

    def __init__(
        self, name: str, listener: Listener, channel: str, *, lanes: int, batch: int, poll: float
    ) -> None:
        self._name = name
        self._listener = listener
        self._channel = channel
        self._batch = batch
        self._poll = poll
        # A claim query re-takes what its own worker still holds (the leftovers of a failed
        # batch), which must never be another lane's: each lane claims as a worker of its own.
        self.worker_ids = [worker_id(name) for _ in range(lanes)]

    async def run(self) -> None:
        """Until cancelled: the lanes claim in turn and deliver side by side."""
        await claim_in_turns(
            self._name,
            self._listener,
            self._channel,
            self.worker_ids,
            self._claim,
            self._deliver_all,
            batch=self._batch,
            poll_seconds=self._poll,
        )

    async def deliver_due(self, worker: str) -> int:
        """One claim of due jobs, delivered, as ``worker``."""
        jobs = await self._claim(worker)
        await self._deliver_all(worker, jobs)
        return len(jobs)

    async def _deliver_all(self, worker: str, jobs: Sequence[Job]) -> None:
        await asyncio.gather(*(self._deliver(job, worker) for job in jobs))

    @abstractmethod
    async def _claim(self, worker: str) -> Sequence[Job]: ...

    @abstractmethod
    async def _deliver(self, job: Job, worker: str) -> None: ...
