"""Worker identities, handing fresh work straight to this process's workers, and giving back
what workers of this host left behind when they died."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bridge.db.pool import Connection
from bridge.log import get_logger

log = get_logger(__name__)

Job = TypeVar("Job")

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


@dataclass
class Taker(Generic[Job]):
    """A queue worker that takes jobs as they are queued (see `Handoff`)."""

    worker: str
    # Given what it took, and the keys (conversations, phones) those jobs hold.
    receive: Callable[[Sequence[Job], Collection[str]], None]
    has_room: Callable[[], bool]
    # Keys with a job in hand, or in an insert not yet committed: at most one per key, so two
    # of a conversation queued at once by two transactions of this process are not both
    # taken (and sent side by side); the second waits in the queue behind the first.
    holding: set[str] = field(default_factory=set)

    def release(self, keys: Collection[str]) -> None:
        self.holding.difference_update(keys)

    @contextmanager
    def reserving(self, keys: Sequence[str]) -> Iterator[Reservation]:
        """For an insert of jobs of these keys: a job may be taken when it is the first of a
        key not held already, and those keys are held from now on; all given back if the
        insert fails."""
        free = []
        for key in keys:
            ok = key not in self.holding
            if ok:
                self.holding.add(key)
            free.append(ok)
        reservation = Reservation(self, free, {k for k, ok in zip(keys, free, strict=True) if ok})
        try:
            yield reservation
        except BaseException:
            self.release(reservation.keys)
            raise


@dataclass
class Reservation:
    """The keys an insert reserved (`Taker.reserving`); ``free`` says which of its jobs may be
    taken."""

    taker: Taker[Any]
    free: list[bool]
    keys: set[str]

    def keep_only(self, held: Collection[str]) -> None:
        """The insert took jobs of these keys: the others are let go now."""
        self.taker.release(self.keys - set(held))


class Handoff(Generic[Job]):
    """This process's worker of a queue, given the jobs it can do now as they are queued.

    They are inserted already claimed by it and handed over once their transaction commits:
    a fresh job costs no claim query (and its row no claim update) and no wake-up. What the
    handoff does not take (held, behind an open job of its conversation or phone, more than
    the worker has room for, no such worker running here) the worker's lanes claim from the
    table as before. A process that dies holding handed-over jobs gives them back as any
    worker's claims: they are done again (an event keeps its id, design §8).
    """

    def __init__(self) -> None:
        self._taker: Taker[Job] | None = None

    def attach(self, taker: Taker[Job] | None) -> None:
        self._taker = taker

    def taker(self) -> Taker[Job] | None:
        """The worker that takes jobs now, unless none runs here or it has no room."""
        taker = self._taker
        return taker if taker is not None and taker.has_room() else None


def taker_of(handoff: Handoff[Job] | None) -> Taker[Job] | None:
    """The handoff's taker now, if there is a handoff (see `Handoff.taker`)."""
    return None if handoff is None else handoff.taker()


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
