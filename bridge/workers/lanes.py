"""A queue worker in lanes: each lane claims as a worker of its own, in turn with the others,
and delivers what it took side by side with them (see `claim_in_turns`); and what the
queue's `Handoff` gives it as it is queued, beside them."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from typing import Generic, TypeVar

from bridge.db.claims import Handoff, Taker, worker_id
from bridge.db.notify import Listener, claim_in_turns
from bridge.log import get_logger

log = get_logger(__name__)

Job = TypeVar("Job")


class Lanes(ABC, Generic[Job]):
    """Subclasses say how a lane claims (``_claim``) and delivers one job (``_deliver``)."""

    def __init__(
        self,
        name: str,
        listener: Listener,
        channel: str,
        *,
        lanes: int,
        batch: int,
        poll: float,
        handoff: Handoff[Job] | None = None,
        room: int = 0,
    ) -> None:
        self._name = name
        self._listener = listener
        self._channel = channel
        self._batch = batch
        self._poll = poll
        # A claim query re-takes what its own worker still holds (the leftovers of a failed
        # batch), which must never be another lane's: each lane claims as a worker of its own.
        self.worker_ids = [worker_id(name) for _ in range(lanes)]
        self._handoff = handoff
        # Jobs handed over and not yet done, at most: past this the lanes claim them from the
        # table, so a slow peer costs queued rows, not memory.
        self._room = room
        self._taker = Taker[Job](worker_id(name), self._take, self._has_room)
        self._handed: set[asyncio.Task[None]] = set()
        self._handed_jobs = 0
        self._running = False

    async def run(self) -> None:
        """Until cancelled: the lanes claim in turn and deliver side by side, and what the
        handoff gives this worker is delivered beside them."""
        self._running = True
        if self._handoff is not None:
            self._handoff.attach(self._taker)
        try:
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
        finally:
            self._running = False
            if self._handoff is not None:
                self._handoff.attach(None)
            for task in self._handed:
                task.cancel()
            # Their claims stay with this worker: given back once its process is gone.
            await asyncio.gather(*self._handed, return_exceptions=True)

    def _has_room(self) -> bool:
        return self._handed_jobs < self._room

    def _take(self, jobs: Sequence[Job], keys: Collection[str]) -> None:
        if not self._running:
            # Committed after this worker stopped: the claims wait to be given back.
            self._taker.release(keys)
            return
        self._handed_jobs += len(jobs)
        task = asyncio.create_task(self._deliver_handed(jobs, keys))
        self._handed.add(task)
        task.add_done_callback(self._handed.discard)

    async def _deliver_handed(self, jobs: Sequence[Job], keys: Collection[str]) -> None:
        try:
            await self._deliver_all(self._taker.worker, jobs)
        except Exception:
            # As a lane's: the rows stay claimed and go to another worker once stale.
            log.exception(f"{self._name}.loop_crashed")
        finally:
            self._handed_jobs -= len(jobs)
            self._taker.release(keys)

    async def _deliver_all(self, worker: str, jobs: Sequence[Job]) -> None:
        await asyncio.gather(*(self._deliver(job, worker) for job in jobs))

    @abstractmethod
    async def _claim(self, worker: str) -> Sequence[Job]: ...

    @abstractmethod
    async def _deliver(self, job: Job, worker: str) -> None: ...
