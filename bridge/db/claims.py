"""Worker identities, and giving back what workers of this host left behind when they died."""

from __future__ import annotations

import os
import secrets
import socket

from bridge.db.pool import Connection
from bridge.log import get_logger

log = get_logger(__name__)

# Every table whose rows workers claim: who holds claims there, and giving them back.
_HOLDERS = """
SELECT claimed_by FROM events WHERE claimed_by LIKE $1
UNION SELECT claimed_by FROM message_media WHERE claimed_by LIKE $1
UNION SELECT claimed_by FROM senders WHERE claimed_by LIKE $1
UNION SELECT claimed_by FROM sip_deliveries WHERE claimed_by LIKE $1
"""

_RELEASE = """
WITH e AS (UPDATE events SET claimed_by = NULL WHERE claimed_by = ANY ($1::text[]) RETURNING 1),
     m AS (UPDATE message_media SET claimed_by = NULL WHERE claimed_by = ANY ($1::text[])
           RETURNING 1),
     s AS (UPDATE senders SET claimed_by = NULL WHERE claimed_by = ANY ($1::text[]) RETURNING 1),
     p AS (UPDATE sip_deliveries SET claimed_by = NULL WHERE claimed_by = ANY ($1::text[])
           RETURNING 1)
SELECT (SELECT count(*) FROM e) + (SELECT count(*) FROM m) + (SELECT count(*) FROM s)
       + (SELECT count(*) FROM p)
"""


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
    dead: list[str] = []
    for row in await conn.fetch(_HOLDERS, f"%/{_host()}/%"):
        holder: str = row["claimed_by"]
        parts = holder.split("/")
        if len(parts) == 4 and parts[2].isdigit() and _dead(int(parts[2])):
            dead.append(holder)
    if not dead:
        return 0
    released: int = await conn.fetchval(_RELEASE, dead)
    if released:
        log.info("claims.released_dead", count=released)
    return released
