"""Looking up quiet texts at Twilio: which texts are due, exclusive claims, and the poller's
growing waits, on a real PostgreSQL and the fake Twilio."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bridge.crypto import SecretBox, config_secret_context
from bridge.db import status_poll as repo
from bridge.db.pool import Database
from bridge.fake_twilio import FakeConfig, FakeTwilio, running_fake_twilio
from bridge.metrics import Metrics
from bridge.services.status import StatusService
from bridge.twilio.client import Credentials, TwilioClient
from bridge.workers.status_poll import StatusPoller
from tests import factories

QUIET = 600.0
MAX_AGE = 72 * 3600.0
SID = factories.account_sid()
TOKEN = factories.hex32()
BOX = SecretBox(os.urandom(32))


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[Database]:
    database = await Database.connect(db_dsn, min_size=1, max_size=6, slow_query_ms=1000)
    sealed = BOX.seal(TOKEN, config_secret_context("cfg_p", "auth_token"))
    async with database.connection() as conn:
        await conn.execute(
            "INSERT INTO tenants (id, name, default_country, affinity_hours) "
            "VALUES ('ten_p', 'P', 'US', 72)"
        )
        await conn.execute(
            "INSERT INTO trunks (id, tenant_id, name) VALUES ('trk_p', 'ten_p', 'T')"
        )
        await conn.execute(
            "INSERT INTO sms_configs (id, tenant_id, trunk_id, name, account_sid, credential_type,"
            " auth_token_last4, secrets_key_id, auth_token_sealed, allowed_countries)"
            " VALUES ('cfg_p', 'ten_p', 'trk_p', 'C', $1, 'auth_token', 'abcd', $2, $3, '{US}')",
            SID,
            sealed.key_id,
            sealed.blob,
        )
    yield database
    await database.close()


async def text(
    db: Database,
    message_id: str,
    *,
    status: str = "queued",
    rank: int = 1,
    sid: str | None = None,
    quiet_for: float = 2 * QUIET,
    age: float = 3 * QUIET,
    direction: str = "outbound",
) -> None:
    """A stored text whose status last moved ``quiet_for`` seconds ago."""
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO messages (id, tenant_id, config_id, direction, status, status_rank,"
            " from_number, to_number, twilio_sid, created_at, updated_at)"
            " VALUES ($1, 'ten_p', 'cfg_p', $2, $3, $4, '+15551230001', '+15557654321', $5,"
            " now() - make_interval(secs => $6), now() - make_interval(secs => $7))",
            message_id,
            direction,
            status,
            rank,
            sid if sid is not None else "SM" + message_id.encode().hex().ljust(32, "0")[:32],
            age,
            quiet_for,
        )


async def claim(db: Database, worker: str, limit: int = 10) -> list[str]:
    async with db.connection() as conn:
        await repo.discover(conn, QUIET, MAX_AGE, 1000)
        claimed = await repo.claim(
            conn,
            worker,
            limit,
            claim_seconds=60,
            quiet_seconds=QUIET,
            max_age_seconds=MAX_AGE,
        )
    return sorted(q.message_id for q in claimed)


async def test_only_quiet_texts_twilio_has_and_not_final_are_due(db: Database) -> None:
    await text(db, "m_quiet")
    await text(db, "m_sent", status="sent", rank=3)
    await text(db, "m_recent", quiet_for=QUIET / 2)
    await text(db, "m_final", status="delivered", rank=4)
    await text(db, "m_old", age=MAX_AGE + 60)
    await text(db, "m_inbound", status="received", rank=0, direction="inbound")
    assert await claim(db, "w1") == ["m_quiet", "m_sent"]
    assert await claim(db, "w2") == [], "claimed texts are not offered again meanwhile"


async def test_concurrent_pollers_never_share_a_text(db: Database) -> None:
    for i in range(30):
        await text(db, f"m{i:02d}")
    results = await asyncio.gather(*(claim(db, f"w{i}", limit=7) for i in range(5)))
    claimed = [m for batch in results for m in batch]
    assert len(claimed) == len(set(claimed)) == 30


async def test_a_claim_that_runs_out_is_taken_over_and_the_old_word_no_longer_counts(
    db: Database,
) -> None:
    await text(db, "m1")
    assert await claim(db, "crashed") == ["m1"]
    async with db.connection() as conn:
        await conn.execute("UPDATE status_polls SET next_poll_at = now() - interval '1 second'")
    assert await claim(db, "w2") == ["m1"]
    async with db.connection() as conn:
        await repo.reschedule(conn, "crashed", [repo.Reschedule("m1", 5, 1.0)])
        polls = await conn.fetchval("SELECT polls FROM status_polls")
    assert polls == 0


async def test_settled_rows_go_and_texts_given_up_on_are_counted(db: Database) -> None:
    await text(db, "m_final")
    await text(db, "m_aging", age=MAX_AGE - 60)
    await text(db, "m_waiting")
    assert await claim(db, "w1") == ["m_aging", "m_final", "m_waiting"]
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE messages SET status = 'delivered', status_rank = 4 WHERE id = 'm_final'"
        )
        await conn.execute(
            "UPDATE messages SET created_at = now() - interval '73 hours' WHERE id = 'm_aging'"
        )
        assert await repo.forget_settled(conn, MAX_AGE) == 1
        left = await conn.fetch("SELECT message_id FROM status_polls")
    assert [r["message_id"] for r in left] == ["m_waiting"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    # Its messages stand still until the test moves them, and tell nobody.
    async with running_fake_twilio(
        FakeConfig(callback_delay=3600.0), accounts=[(SID, TOKEN)]
    ) as server:
        yield server


async def test_the_poller_moves_a_text_forward_and_waits_longer_after_each_quiet_look(
    db: Database, fake: FakeTwilio
) -> None:
    metrics = Metrics()
    async with aiohttp.ClientSession() as session:
        client = TwilioClient(session, fake.base_url)
        created = await client.create_message(
            Credentials(SID, SID, TOKEN), to="+15557654321", from_="+15551230001", body="hi"
        )
        await text(db, "m1", sid=created.sid)
        poller = StatusPoller(
            db,
            client,
            BOX,
            StatusService(db, metrics),
            metrics,
            quiet_seconds=QUIET,
            max_interval_seconds=3 * QUIET,
            max_age_seconds=MAX_AGE,
            twilio_timeout=5.0,
        )

        async def look() -> tuple[float, int]:
            """One round, then when the next look is due (seconds from now) and looks so far."""
            assert await poller.poll_due() == 1
            async with db.connection() as conn:
                row = await conn.fetchrow(
                    "SELECT extract(epoch FROM next_poll_at - now())::float8 AS wait, polls"
                    " FROM status_polls"
                )
                await conn.execute("UPDATE status_polls SET next_poll_at = now()")
            return row["wait"], row["polls"]

        quiet = [await look() for _ in range(3)]
        message = fake.state.messages[created.sid]
        fake.dispatcher.apply_status(message, "sent", None)
        moved = await look()
        async with db.connection() as conn:
            # Its status just moved: not quiet again until QUIET has passed.
            await conn.execute("UPDATE messages SET updated_at = now() - interval '1 hour'")
        fake.dispatcher.apply_status(message, "undelivered", 30003)
        assert await poller.poll_due() == 1
        async with db.connection() as conn:
            stored = await conn.fetchrow("SELECT status, error_code FROM messages")
            history = await conn.fetch("SELECT status FROM message_status_history ORDER BY id")
            events = await conn.fetch("SELECT payload FROM events ORDER BY seq")
            left = await conn.fetchval("SELECT count(*) FROM status_polls")
        assert await poller.poll_due() == 0

    assert [polls for _, polls in quiet] == [1, 2, 3]
    # Each quiet look doubles the wait (2, 4, then capped at 3 times QUIET).
    assert [round(wait / QUIET) for wait, _ in quiet] == [2, 3, 3]
    assert moved[1] == 0 and round(moved[0] / QUIET) == 1
    assert (stored["status"], stored["error_code"]) == ("undelivered", 30003)
    assert [r["status"] for r in history] == ["sent", "undelivered"]
    assert len(events) == 2, "the PBX hears of each move"
    assert left == 0
    polled = {
        outcome: metrics.registry.get_sample_value(
            "bridge_status_polls_total", {"outcome": outcome}
        )
        for outcome in ("unchanged", "moved", "final")
    }
    assert polled == {"unchanged": 3, "moved": 1, "final": 1}
