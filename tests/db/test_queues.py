"""The claim statements of the work queues, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Collection, Sequence

import asyncpg
import pytest

from bridge.db import events as events_repo
from bridge.db import outbound as outbound_repo
from bridge.db.claims import Handoff, Taker, release_dead_local_claims, worker_id
from bridge.db.pool import Database
from bridge.models import EventId, MessageId, TenantId


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[Database]:
    database = await Database.connect(db_dsn, min_size=1, max_size=6, slow_query_ms=1000)
    async with database.connection() as conn:
        await conn.execute(
            "INSERT INTO tenants (id, name, default_country, affinity_hours) "
            "VALUES ('ten_q', 'Q', 'US', 72)"
        )
        await conn.execute(
            "INSERT INTO delivery_targets (tenant_id, url, secret_key_id, secret_sealed) "
            "VALUES ('ten_q', 'http://127.0.0.1:9/', 'k', '\\x00')"
        )
    yield database
    await database.close()


def new_event(event_id: str, conversation: str, tenant: str = "ten_q") -> events_repo.NewEvent:
    return events_repo.NewEvent(
        id=EventId(event_id),
        tenant_id=TenantId(tenant),
        message_id=MessageId("none"),
        type="message.received",
        conversation=conversation,
        payload={"n": event_id},
    )


async def queue(db: Database, event_id: str, conversation: str) -> None:
    async with db.transaction() as conn:
        await events_repo.insert_many(conn, [(new_event(event_id, conversation), False)])


@pytest.fixture(autouse=True)
async def _loose_message_reference(db_dsn: str) -> None:
    # The queue tests care about events, not the messages they describe.
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute("ALTER TABLE events DROP CONSTRAINT events_message_id_fkey")
    finally:
        await conn.close()


async def claim(db: Database, worker: str, limit: int = 10, stale: float = 60) -> list[str]:
    async with db.connection() as conn:
        return [c.id for c in await events_repo.claim(conn, worker, limit, stale)]


async def test_one_open_event_per_conversation_is_claimed_in_order(db: Database) -> None:
    for i in range(3):
        await queue(db, f"a{i}", "conv-a")
        await queue(db, f"b{i}", "conv-b")
    assert sorted(await claim(db, "w1")) == ["a0", "b0"]
    assert await claim(db, "w2") == [], "the heads are claimed; the rest wait behind them"
    async with db.connection() as conn:
        await events_repo.delivered(conn, ["a0"], "w1")
        await events_repo.retry_later(conn, "b0", "w1", 60, "HTTP 503")
    assert await claim(db, "w2") == ["a1"], "b1 waits for b0's retry"


async def test_concurrent_workers_never_share_an_event(db: Database) -> None:
    for i in range(40):
        await queue(db, f"e{i:02d}", f"conv-{i}")
    results = await asyncio.gather(*(claim(db, f"w{i}", limit=7) for i in range(6)))
    claimed = [event for batch in results for event in batch]
    assert len(claimed) == len(set(claimed)) == 40


class Taking:
    """A delivery worker's side of the handoff, keeping what it is given."""

    def __init__(self, room: bool = True) -> None:
        self.room = room
        self.given: list[events_repo.Claimed] = []
        self.keys: set[str] = set()
        self.taker = Taker[events_repo.Claimed]("handoff-worker", self.take, lambda: self.room)

    def take(self, events: Sequence[events_repo.Claimed], keys: Collection[str]) -> None:
        self.given.extend(events)
        self.keys.update(keys)


async def test_the_handoff_takes_what_a_claim_would_take_and_no_more(db: Database) -> None:
    await queue(db, "open", "conv-busy")  # pending: what follows in its conversation waits
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO tenants (id, name, default_country, affinity_hours) "
            "VALUES ('ten_x', 'X', 'US', 72)"
        )
    handoff = Handoff[events_repo.Claimed]()
    taking = Taking()
    handoff.attach(taking.taker)
    taker = handoff.taker()
    assert taker is not None
    batch = [
        (new_event("a1", "conv-a"), False),
        (new_event("a2", "conv-a"), False),  # behind a1, in the same batch
        (new_event("b1", "conv-busy"), False),  # behind "open"
        (new_event("h1", "conv-h"), True),  # held for its media
        (new_event("x1", "conv-x", tenant="ten_x"), False),  # no delivery target
        (new_event("c1", "conv-c"), False),
    ]
    async with db.transaction() as conn:
        await events_repo.insert_many(conn, batch, taker)
        assert taking.given == [], "handed over only once committed"
    taken = sorted(taking.given, key=lambda e: e.id)
    assert [(e.id, e.attempts, e.url) for e in taken] == [
        ("a1", 1, "http://127.0.0.1:9/"),
        ("c1", 1, "http://127.0.0.1:9/"),
    ]
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT id, claimed_by, payload::text AS payload FROM events")
    held = {r["id"]: r["claimed_by"] for r in rows}
    assert held == {
        "open": None,
        "a1": "handoff-worker",
        "a2": None,
        "b1": None,
        "h1": None,
        "x1": None,
        "c1": "handoff-worker",
    }
    assert taking.keys == taker.holding == {"conv-a", "conv-c"}, "held until delivered"
    payloads = {r["id"]: r["payload"] for r in rows}
    assert [e.payload for e in taken] == [payloads["a1"], payloads["c1"]], "as a claim reads it"
    # What the handoff took is no lane's to claim; the rest is, in conversation order.
    assert sorted(await claim(db, "lane")) == ["open"]
    async with db.connection() as conn:
        assert await events_repo.delivered(conn, ["a1"], "handoff-worker"), "a2 waited for it"
        assert not await events_repo.delivered(conn, ["c1"], "handoff-worker"), "none for c1"
    assert await claim(db, "lane-2") == ["a2"]


async def test_without_room_or_a_worker_the_lanes_claim_everything(db: Database) -> None:
    handoff = Handoff[events_repo.Claimed]()
    assert handoff.taker() is None, "no delivery worker runs in this process"
    taking = Taking(room=False)
    handoff.attach(taking.taker)
    assert handoff.taker() is None, "the worker has its hands full"
    taking.room = True
    taker = handoff.taker()
    assert taker is not None
    handoff.attach(None)
    assert handoff.taker() is None
    async with db.transaction() as conn:
        await events_repo.insert_many(conn, [(new_event("e1", "c"), False)], None)
    assert await claim(db, "lane") == ["e1"]


async def test_two_transactions_at_once_take_one_event_of_a_conversation(db: Database) -> None:
    """Neither insert sees the other's row before it commits: the handoff itself lets only
    one of them take the conversation, so its events are never sent side by side."""
    taking = Taking()
    first_in = asyncio.Event()
    second_in = asyncio.Event()

    async def insert(event_id: str, mine: asyncio.Event, other: asyncio.Event) -> None:
        async with db.transaction() as conn:
            await events_repo.insert_many(
                conn, [(new_event(event_id, "conv"), False)], taking.taker
            )
            mine.set()
            await other.wait()  # both inserted, neither committed

    await asyncio.gather(insert("e1", first_in, second_in), insert("e2", second_in, first_in))
    assert [e.id for e in taking.given] == ["e1"]
    assert await claim(db, "lane") == [], "e2 waits behind e1, which is in hand"
    taking.taker.release(taking.keys)
    assert taking.taker.holding == set()


async def test_nothing_is_handed_over_from_a_rollback_or_without_a_commit_to_wait_for(
    db: Database,
) -> None:
    taking = Taking()
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await events_repo.insert_many(conn, [(new_event("gone", "c1"), False)], taking.taker)
            raise RuntimeError("a later statement of the batch failed")
    async with db.connection() as conn:
        # Its own commit, with nothing to wait on: inserted for the lanes, not claimed.
        await events_repo.insert_many(conn, [(new_event("e1", "c2"), False)], taking.taker)
        rows = await conn.fetch("SELECT id, claimed_by FROM events")
    assert taking.given == []
    assert taking.taker.holding == set(), "the rolled back insert let its conversation go"
    assert [(r["id"], r["claimed_by"]) for r in rows] == [("e1", None)]


async def test_queue_bookkeeping_commits_without_waiting_for_the_disk(db: Database) -> None:
    """Claims and acknowledgements may be lost in a crash (a redelivery, same event id):
    their commits do not wait for the WAL flush, and the setting ends with their statement,
    so it never reaches what a pooled connection runs next (a webhook's commit)."""
    await queue(db, "e1", "conv")
    async with db.connection() as conn:
        async with conn.transaction():
            assert [c.id for c in await events_repo.claim(conn, "w", 10, 60)] == ["e1"]
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        async with conn.transaction():
            await events_repo.delivered(conn, ["e1"], "w")
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        await events_repo.claim(conn, "w", 10, 60)  # on its own, as the workers run it
        assert await conn.fetchval("SHOW synchronous_commit") == "on"


async def test_stale_claims_are_taken_over(db: Database) -> None:
    await queue(db, "e1", "conv")
    assert await claim(db, "crashed") == ["e1"]
    assert await claim(db, "w2") == []
    async with db.connection() as conn:
        await conn.execute("UPDATE events SET heartbeat_at = now() - interval '10 minutes'")
    assert await claim(db, "w2", stale=120) == ["e1"]
    async with db.connection() as conn:
        await events_repo.delivered(
            conn, ["e1"], "crashed"
        )  # the old worker's word no longer counts
        status = await conn.fetchval("SELECT delivery_status FROM events")
    assert status == "pending"


async def test_sender_leases_are_exclusive_and_recovered(db: Database) -> None:
    async with db.connection() as conn:
        # Leases care about senders and their queued sends, not the rows behind them.
        await conn.execute("ALTER TABLE senders DROP CONSTRAINT senders_config_id_fkey")
        await conn.execute("ALTER TABLE sends DROP CONSTRAINT sends_message_id_fkey")
        for i in range(5):
            await conn.execute(
                "INSERT INTO senders (sender_key, config_id, mps) VALUES ($1, 'cfg', 1)", f"s{i}"
            )
            await conn.execute(
                "INSERT INTO sends (message_id, sender_key, state) VALUES ($1, $2, 'queued')",
                f"m{i}",
                f"s{i}",
            )
        first = await outbound_repo.claim_senders(conn, "w1", 3, 60)
    async with db.connection() as other:
        second = await outbound_repo.claim_senders(other, "w9", 10, 60)
    taken = [key for key, _ in first]
    assert len(taken) == 3
    assert sorted(key for key, _ in second) == sorted({f"s{i}" for i in range(5)} - set(taken))
    async with db.connection() as conn:
        assert await outbound_repo.claim_senders(conn, "w10", 10, 60) == []
        await conn.execute("UPDATE senders SET heartbeat_at = now() - interval '5 minutes'")
        recovered = await outbound_repo.claim_senders(conn, "w10", 10, 60)
    assert len(recovered) == 5


async def test_claims_of_dead_local_processes_are_released(db: Database) -> None:
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await child.wait()  # a pid that existed and is gone
    dead = f"delivery/{socket.gethostname()}/{child.pid}/abc123"
    alive = worker_id("delivery")
    elsewhere = f"delivery/another-host/{os.getpid()}/abc123"
    for i, holder in enumerate((dead, alive, elsewhere)):
        await queue(db, f"e{i}", f"conv-{i}")
        async with db.connection() as conn:
            await conn.execute("UPDATE events SET claimed_by = $1 WHERE id = $2", holder, f"e{i}")
    async with db.connection() as conn:
        assert await release_dead_local_claims(conn) == 1
        rows = await conn.fetch("SELECT id, claimed_by FROM events ORDER BY id")
    assert [(r["id"], r["claimed_by"]) for r in rows] == [
        ("e0", None),
        ("e1", alive),
        ("e2", elsewhere),
    ]


async def test_a_workers_own_leftover_lease_is_taken_again(db: Database) -> None:
    async with db.connection() as conn:
        await conn.execute("ALTER TABLE senders DROP CONSTRAINT senders_config_id_fkey")
        await conn.execute("ALTER TABLE sends DROP CONSTRAINT sends_message_id_fkey")
        for key in ("left", "busy"):
            await conn.execute(
                "INSERT INTO senders (sender_key, config_id, mps, claimed_by, heartbeat_at) "
                "VALUES ($1, 'cfg', 1, 'me', now())",
                key,
            )
            await conn.execute(
                "INSERT INTO sends (message_id, sender_key, state) VALUES ($1, $1, 'queued')", key
            )
        assert await outbound_repo.claim_senders(conn, "someone-else", 10, 60) == []
        again = await outbound_repo.claim_senders(conn, "me", 10, 60, running=["busy"])
    assert [key for key, _ in again] == ["left"]
