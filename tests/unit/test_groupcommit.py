"""Group commit: batches form under load, and one bad item fails only itself."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bridge.groupcommit import GroupCommit


class Down(Exception):
    pass


class Writer:
    """Records the batches it was given; fails items named "bad", everything while down."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = False
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.down:
            raise Down("database down")
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]


async def test_an_idle_writer_commits_each_item_alone_and_at_once() -> None:
    writer = Writer()
    group = GroupCommit(writer)
    assert await group.submit("a") == "A"
    assert await group.submit("b") == "B"
    assert writer.batches == [["a"], ["b"]]


async def test_items_arriving_during_a_commit_share_the_next_one() -> None:
    writer = Writer()
    group = GroupCommit(writer, max_concurrent=1)
    writer.release.clear()
    first = asyncio.create_task(group.submit("first"))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(group.submit(f"n{i}")) for i in range(5)]
    await asyncio.sleep(0)
    writer.release.set()
    assert await first == "FIRST"
    assert [await task for task in rest] == [f"N{i}" for i in range(5)]
    assert writer.batches == [["first"], [f"n{i}" for i in range(5)]]


async def test_batches_are_capped() -> None:
    writer = Writer()
    group = GroupCommit(writer, max_batch=2, max_concurrent=1)
    writer.release.clear()
    tasks = [asyncio.create_task(group.submit(str(i))) for i in range(5)]
    await asyncio.sleep(0)
    writer.release.set()
    await asyncio.gather(*tasks)
    assert [len(batch) for batch in writer.batches] == [1, 2, 2]


async def test_a_bad_item_fails_alone_and_its_batch_mates_still_commit() -> None:
    writer = Writer()
    group = GroupCommit(writer, max_concurrent=1)
    writer.release.clear()
    blocker = asyncio.create_task(group.submit("x"))
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(group.submit(item)) for item in ("a", "bad", "c")]
    await asyncio.sleep(0)
    writer.release.set()
    await blocker
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], ValueError)
    assert writer.batches[1:] == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


async def test_a_batch_error_fails_every_item_without_retrying_each() -> None:
    writer = Writer()
    group = GroupCommit(writer, max_concurrent=1, batch_errors=(Down,))
    writer.release.clear()
    blocker = asyncio.create_task(group.submit("x"))
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(group.submit(item)) for item in ("a", "b")]
    await asyncio.sleep(0)
    writer.down = True
    writer.release.set()
    with pytest.raises(Down):
        await blocker
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(result, Down) for result in results)
    assert writer.batches == [["x"], ["a", "b"]]


async def test_a_caller_that_goes_away_does_not_cancel_the_batch() -> None:
    writer = Writer()
    group = GroupCommit(writer, max_concurrent=1)
    writer.release.clear()
    leaving = asyncio.create_task(group.submit("leaving"))
    await asyncio.sleep(0)
    staying = asyncio.create_task(group.submit("staying"))
    await asyncio.sleep(0)
    leaving.cancel()
    writer.release.set()
    assert await staying == "STAYING"
    assert writer.batches == [["leaving"], ["staying"]]
