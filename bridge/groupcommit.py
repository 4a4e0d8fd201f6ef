"""Group commit: many callers' writes in one transaction, each caller answered after the commit.

A webhook is acknowledged only once it is committed, and a commit costs a WAL flush plus a
handful of round trips whatever it holds. Under load, the writes that arrive while a batch is
committing wait for the next one, so batches grow with the load by themselves; an idle bridge
commits each write alone, at once, with no timer adding latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from bridge.log import get_logger

log = get_logger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Runs ``write(items) -> results`` (one result per item, same order) on batches.

    When a batch fails, each of its items is tried again alone, unless the error is one of
    ``batch_errors`` (the database is down, say), which says nothing about the items.
    """

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = 128,
        max_concurrent: int = 2,
        batch_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self._write = write
        self._batch_errors = batch_errors
        self._max_batch = max_batch
        self._max_concurrent = max_concurrent
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        """The item's result once its batch is committed, or the error that batch met."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._start()
        # Shielded: a caller that goes away must not cancel a batch other callers wait on.
        return await asyncio.shield(future)

    def _start(self) -> None:
        while self._waiting and len(self._running) < self._max_concurrent:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            task = asyncio.create_task(self._commit(batch))
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start()

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._write([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, self._batch_errors):
                for _, future in batch:
                    _settle(future, exc)
                return
            # One bad item must not fail the others: each is tried again on its own.
            log.warning("groupcommit.batch_failed", size=len(batch), error=repr(exc))
            for one in batch:
                await self._commit([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _settle(future: asyncio.Future[Result], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
        # A caller that went away (cancelled at shutdown, say) no longer reads it; the ones
        # still waiting get it all the same.
        future.exception()
