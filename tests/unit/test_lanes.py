"""A queue worker's lanes and what the handoff gives it, without a database: claims find
nothing, so whatever is delivered came through the handoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from bridge.db.claims import Handoff
from bridge.db.notify import EVENTS, Listener
from bridge.workers.lanes import Lanes


class Recorder(Lanes[str]):
    def __init__(self, handoff: Handoff[str], room: int) -> None:
        # Never started: the lanes only take its waiters, and poll.
        listener = Listener("postgresql://nobody@127.0.0.1:1/none")
        super().__init__(
            "test", listener, EVENTS, lanes=1, batch=8, poll=0.05, handoff=handoff, room=room
        )
        self.done: list[tuple[str, str]] = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def _claim(self, worker: str) -> list[str]:
        return []

    async def _deliver(self, job: str, worker: str) -> None:
        await self.hold.wait()
        self.done.append((job, worker))


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - plain state, no event to await
            await asyncio.sleep(0.01)


async def test_handed_jobs_are_delivered_by_a_running_worker_within_its_room() -> None:
    handoff = Handoff[str]()
    lanes = Recorder(handoff, room=2)
    assert handoff.taker() is None, "no worker runs yet"
    running = asyncio.create_task(lanes.run())
    await until(lambda: handoff.taker() is not None)
    taker = handoff.taker()
    assert taker is not None and taker.worker not in lanes.worker_ids, "a claimant of its own"
    lanes.hold.clear()
    taker.receive(["a", "b"], {"k"})
    assert handoff.taker() is None, "two in hand fill its room: the lanes claim the rest"
    lanes.hold.set()
    await until(lambda: len(lanes.done) == 2)
    assert sorted(lanes.done) == [("a", taker.worker), ("b", taker.worker)]
    await until(lambda: "k" not in taker.holding)
    await until(lambda: handoff.taker() is not None)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert handoff.taker() is None, "a stopped worker takes nothing"
    taker.receive(["late"], {"late"})  # a commit that ended after the worker stopped
    await asyncio.sleep(0.1)
    assert [job for job, _ in lanes.done] == ["a", "b"]
    assert "late" not in taker.holding


async def test_a_stopping_worker_cancels_what_it_was_handed() -> None:
    handoff = Handoff[str]()
    lanes = Recorder(handoff, room=4)
    running = asyncio.create_task(lanes.run())
    await until(lambda: handoff.taker() is not None)
    lanes.hold.clear()
    taker = handoff.taker()
    assert taker is not None
    taker.receive(["stuck"], {"s"})
    await asyncio.sleep(0.05)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    lanes.hold.set()
    await asyncio.sleep(0.05)
    assert lanes.done == [], "cancelled with the worker: its claim is given back later"
