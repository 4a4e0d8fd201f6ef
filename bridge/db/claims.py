"""Worker identities, and giving back what workers of this host left behind when they died."""

from __future__ import annotations

import os
import secrets
import socket

from bridge.db.pool import Connection
from bridge.log import get_logger

log = get_logger(__name__)

# Every table whose rows workers claim, with its claim column.
CLAIMING_TABLES = ("events", "message_media", "senders")


def _host() -> str:
    return socket.gethostname().replace("/", "_")


def worker_id(kind: str) -> str:
    """``kind/host/pid/random``: unique, and telling which local process holds a claim."""
    return f"{kind}/{_host()}/{os.getpid()}/{secrets.token_hex(3)}"


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def release_dead_local_claims(conn: Connection) -> int:
    """Claims held by processes of this host that no longer exist (a kill -9, a crash) are
    released now rather than when they go stale, so a restart picks the work up at once.
    Other hosts' claims are left to go stale: their processes cannot be checked from here."""
    released = 0
    prefix = f"%/{_host()}/%"
    for table in CLAIMING_TABLES:
        holders = await conn.fetch(
            f"SELECT DISTINCT claimed_by FROM {table} WHERE claimed_by LIKE $1", prefix
        )
        for row in holders:
            holder: str = row["claimed_by"]
            parts = holder.split("/")
            if len(parts) != 4 or not parts[2].isdigit() or not _dead(int(parts[2])):
                continue
            status = await conn.execute(
                f"UPDATE {table} SET claimed_by = NULL WHERE claimed_by = $1", holder
            )
            released += int(status.split()[-1])
    if released:
        log.info("claims.released_dead", count=released)
    return released
