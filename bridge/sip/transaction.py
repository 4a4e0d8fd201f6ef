"""Non-INVITE transactions (RFC 3261 §17.1.2, §17.2.2), all state in memory and bounded."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Literal

from bridge.log import get_logger
from bridge.sip.errors import SipTransportError, TransactionTimeout
from bridge.sip.message import BRANCH_COOKIE, SipRequest, SipResponse, build_response
from bridge.sip.transport import Link
from bridge.sip.tuning import Timers

log = get_logger("bridge.sip.transaction")

ClientKey = tuple[str, str]
ServerKey = tuple[str, ...]
ServerState = Literal["trying", "proceeding", "completed", "terminated"]


def client_key(message: SipRequest | SipResponse) -> ClientKey | None:
    """RFC 3261 §17.1.3: top Via branch and CSeq method."""
    branch, cseq = message.branch, message.cseq
    if branch is None or cseq is None:
        return None
    return branch, cseq.method


def server_key(request: SipRequest, method: str | None = None) -> ServerKey | None:
    """RFC 3261 §17.2.3 (branch, sent-by, method), or an RFC 2543 fallback without a cookie."""
    via = request.top_via
    if via is None:
        return None
    method = method or request.method
    branch = via.branch or ""
    if branch.startswith(BRANCH_COOKIE):
        return "rfc3261", branch, via.sent_by.lower(), method
    cseq, call_id = request.cseq, request.call_id
    if cseq is None or call_id is None:
        return None
    sent_by = via.sent_by.lower()
    return "rfc2543", call_id, str(cseq.number), method, request.from_tag or "", sent_by, branch


class ClientTransaction:
    """Sends one request; retransmits it over UDP (Timer E) until a final response or Timer F."""

    def __init__(self, request: SipRequest, link: Link, timers: Timers) -> None:
        key = client_key(request)
        if key is None:
            raise ValueError("a request needs a Via branch and a CSeq")
        self.key = key
        self.retransmissions = 0
        self._data = request.to_bytes()
        self._link = link
        self._timers = timers
        self._final: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._provisional = False

    def receive(self, response: SipResponse) -> None:
        if self._final.done():
            return  # Completed: retransmissions of the final response are absorbed
        if response.status < 200:
            self._provisional = True
        else:
            self._final.set_result(response)

    async def run(self) -> SipResponse:
        """The final response; raises TransactionTimeout (Timer F) or SipTransportError."""
        loop = asyncio.get_running_loop()
        self._link.send(self._data)
        deadline = loop.time() + self._timers.f
        interval = self._timers.t1
        next_send = loop.time() + interval if not self._link.reliable else math.inf
        lost = self._link.lost
        while not self._final.done():
            now = loop.time()
            if now >= deadline:
                raise TransactionTimeout(f"no final response within {self._timers.f:g} s")
            await asyncio.wait(
                (self._final, lost),
                timeout=min(deadline, next_send) - now,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if self._final.done():
                break
            if lost.done():
                raise SipTransportError("the connection closed before a final response")
            if loop.time() >= next_send:
                self._link.send(self._data)
                self.retransmissions += 1
                # In Proceeding, Timer E stays at T2 (RFC 3261 §17.1.2.2).
                interval = (
                    self._timers.t2 if self._provisional else min(2 * interval, self._timers.t2)
                )
                next_send = loop.time() + interval
        return self._final.result()


class ServerTransaction:
    """Absorbs retransmissions of one request and repeats its response (RFC 3261 §17.2.2)."""

    def __init__(
        self,
        key: ServerKey,
        request: SipRequest,
        link: Link,
        table: TransactionTable,
    ) -> None:
        self.key = key
        self.request = request
        self.state: ServerState = "trying"
        self._link = link
        self._table = table
        self._last: bytes | None = None
        self._started = asyncio.get_running_loop().time()

    def on_retransmission(self) -> None:
        timers = self._table.timers
        if self.state == "trying":
            elapsed = asyncio.get_running_loop().time() - self._started
            # RFC 4320 §4.1: no 100 over UDP before the client's Timer E has grown to T2.
            if not self._link.reliable and elapsed >= timers.t2:
                self.respond(build_response(self.request, 100))
        elif self.state in ("proceeding", "completed") and self._last is not None:
            self._send(self._last)

    def respond(self, response: SipResponse) -> None:
        if self.state in ("completed", "terminated"):
            return
        self._last = response.to_bytes()
        self._send(self._last)
        if response.status < 200:
            self.state = "proceeding"
            return
        self.state = "completed"
        linger = 0.0 if self._link.reliable else self._table.timers.j
        self._table.later(linger, self.terminate)

    def _send(self, data: bytes) -> None:
        try:
            self._link.send(data)
        except SipTransportError as exc:
            log.debug("sip.response.unsent", reason=str(exc))

    def terminate(self) -> None:
        self.state = "terminated"
        self._table.forget(self)


class TransactionTable:
    """The live transactions of one endpoint, and the timers that end them."""

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self.client: dict[ClientKey, ClientTransaction] = {}
        self.server: dict[ServerKey, ServerTransaction] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._closed = False

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        if self._closed:
            return

        def fire() -> None:
            self._timers.discard(handle)
            callback()

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(handle)

    async def run_client(self, request: SipRequest, link: Link) -> SipResponse:
        transaction = ClientTransaction(request, link, self.timers)
        self.client[transaction.key] = transaction
        try:
            return await transaction.run()
        finally:
            # Timer K: stay matchable for T4 over UDP so late final responses are absorbed.
            linger = 0.0 if link.reliable else self.timers.k
            self.later(linger, lambda: self._forget_client(transaction))

    def _forget_client(self, transaction: ClientTransaction) -> None:
        if self.client.get(transaction.key) is transaction:
            del self.client[transaction.key]

    def on_response(self, response: SipResponse) -> bool:
        key = client_key(response)
        transaction = None if key is None else self.client.get(key)
        if transaction is None:
            return False
        transaction.receive(response)
        return True

    def add_server(self, key: ServerKey, request: SipRequest, link: Link) -> ServerTransaction:
        transaction = ServerTransaction(key, request, link, self)
        self.server[key] = transaction
        return transaction

    def cancel_target(self, cancel: SipRequest) -> ServerTransaction | None:
        """The transaction a CANCEL refers to (same branch and sent-by, other method)."""
        own = server_key(cancel)
        if own is None or own[0] != "rfc3261":
            return None
        for key, transaction in self.server.items():
            if key[:-1] == own[:-1] and key[-1] != "CANCEL":
                return transaction
        return None

    def forget(self, transaction: ServerTransaction) -> None:
        if self.server.get(transaction.key) is transaction:
            del self.server[transaction.key]

    def close(self) -> None:
        self._closed = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self.client.clear()
        self.server.clear()
