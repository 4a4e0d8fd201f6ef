"""The user agent the bridge uses: answers requests through a handler and sends MESSAGEs."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from bridge.log import get_logger
from bridge.sip.digest import with_credentials
from bridge.sip.errors import SipTransportError, TransactionTimeout
from bridge.sip.headers import Headers, Params, Via
from bridge.sip.message import (
    SIP_VERSION,
    SipMessage,
    SipRequest,
    SipResponse,
    build_response,
    new_branch,
    new_tag,
)
from bridge.sip.proxy import Destination, resolve
from bridge.sip.transaction import ServerTransaction, TransactionTable, server_key
from bridge.sip.transport import (
    Link,
    Source,
    TransportLayer,
    TransportStats,
    response_address,
    stamp_via,
)
from bridge.sip.tuning import DEFAULT_LIMITS, DEFAULT_TIMERS, Limits, Timers
from bridge.sip.uri import NameAddr

log = get_logger("bridge.sip")

Handler = Callable[[SipRequest, Source], Awaitable[SipResponse]]
OutcomeKind = Literal["response", "timeout", "transport_error"]
DEFAULT_USER_AGENT = "pbx-sms-bridge"
_OWN_HEADERS = frozenset(
    {"via", "from", "to", "call-id", "cseq", "max-forwards", "content-length", "content-type"}
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a request: its final response, a Timer F timeout, or a transport error."""

    kind: OutcomeKind
    status: int | None = None
    reason: str = ""
    response: SipResponse | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def __str__(self) -> str:
        if self.kind == "response":
            return f"SIP {self.status} {self.reason}"
        return f"SIP {self.kind.replace('_', ' ')}: {self.reason}"


@dataclass(slots=True)
class EndpointStats:
    """Counters of the user agent; the transports keep their own."""

    requests: int = 0
    retransmissions_absorbed: int = 0
    stray_responses: int = 0
    overloaded: int = 0
    handler_errors: int = 0
    dropped: int = 0


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class SipEndpoint:
    """A small RFC 3428 user agent over UDP and TCP on one port; create it with `start`."""

    def __init__(
        self,
        *,
        handler: Handler | None,
        methods: Iterable[str],
        advertise: tuple[str, int] | None,
        timers: Timers,
        limits: Limits,
        user_agent: str,
        handler_timeout: float | None,
    ) -> None:
        self._handler = handler
        self._methods = frozenset(methods) if handler is not None else frozenset()
        self._allow = ", ".join([*sorted(self._methods), "OPTIONS"])
        self._advertise = advertise
        self._timers = timers
        self._limits = limits
        self._user_agent = user_agent
        self._handler_timeout = timers.f if handler_timeout is None else handler_timeout
        self._transport = TransportLayer(self._on_message, limits)
        self._table = TransactionTable(timers)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.stats = EndpointStats()

    @classmethod
    async def start(
        cls,
        listen_host: str,
        listen_port: int,
        *,
        handler: Handler | None = None,
        methods: Iterable[str] = ("MESSAGE",),
        advertise: tuple[str, int] | None = None,
        timers: Timers = DEFAULT_TIMERS,
        limits: Limits = DEFAULT_LIMITS,
        user_agent: str = DEFAULT_USER_AGENT,
        handler_timeout: float | None = None,
    ) -> SipEndpoint:
        """Listen on UDP and TCP at listen_host:listen_port (0 picks one port for both).

        `handler` answers each new request whose method is in `methods`; it gets
        `handler_timeout` seconds (default Timer F, after which no client still waits) before
        the request is answered 500. `advertise` is the host:port for Via when it differs
        from the bound address (NAT); with a wildcard bind and no `advertise`, the local
        address the OS would route from is used.
        """
        endpoint = cls(
            handler=handler,
            methods=methods,
            advertise=advertise,
            timers=timers,
            limits=limits,
            user_agent=user_agent,
            handler_timeout=handler_timeout,
        )
        await endpoint._transport.open(listen_host, listen_port)
        log.info(
            "sip.started", host=endpoint.host, port=endpoint.port, advertise=endpoint._advertise
        )
        return endpoint

    @property
    def host(self) -> str:
        return self._transport.host

    @property
    def port(self) -> int:
        return self._transport.port

    @property
    def live_transactions(self) -> tuple[int, int]:
        """How many (client, server) transactions are held in memory now."""
        return len(self._table.client), len(self._table.server)

    @property
    def transport_stats(self) -> TransportStats:
        return self._transport.stats

    async def close(self) -> None:
        """Stop listening, cancel handlers, timers and connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._table.close()
        await self._transport.close()
        log.info("sip.closed", port=self.port)

    # --- sending -----------------------------------------------------------------------

    async def send_message(
        self,
        request_uri: str,
        *,
        from_: NameAddr | str,
        to: NameAddr | str,
        body: bytes,
        destination: Destination,
        content_type: str = "text/plain;charset=UTF-8",
        extra_headers: Sequence[tuple[str, str]] = (),
        credentials: tuple[str, str] | None = None,
    ) -> Outcome:
        """Send a MESSAGE (RFC 3428) and answer one 401/407 challenge if credentials are given."""
        return await self.send_request(
            "MESSAGE",
            request_uri,
            from_=from_,
            to=to,
            body=body,
            destination=destination,
            content_type=content_type,
            extra_headers=extra_headers,
            credentials=credentials,
        )

    async def send_request(
        self,
        method: str,
        request_uri: str,
        *,
        from_: NameAddr | str,
        to: NameAddr | str,
        destination: Destination,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        credentials: tuple[str, str] | None = None,
    ) -> Outcome:
        """Send any out-of-dialog non-INVITE request (MESSAGE, OPTIONS) as a new transaction."""
        if method in ("INVITE", "ACK", "CANCEL"):
            raise ValueError(f"{method} needs transactions this endpoint does not implement")
        if any(name.lower() in _OWN_HEADERS for name, _ in extra_headers):
            raise ValueError("extra_headers may not set the headers the endpoint writes")
        sender = NameAddr.parse(from_) if isinstance(from_, str) else from_
        recipient = NameAddr.parse(to) if isinstance(to, str) else to
        try:
            target = await resolve(destination, family=self._transport.family)
        except SipTransportError as exc:
            return Outcome("transport_error", reason=str(exc))
        host, port = self._sent_by(target)
        headers = Headers()
        via = Via(target.transport.upper(), _bracketed(host), port, Params([("rport", None)]))
        headers.add("Via", str(via.with_param("branch", new_branch())))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(sender.with_tag(new_tag())))
        headers.add("To", str(recipient))
        headers.add("Call-ID", f"{secrets.token_hex(12)}@{_bracketed(host)}")
        headers.add("CSeq", f"1 {method}")
        headers.add("User-Agent", self._user_agent)
        if content_type is not None:
            headers.add("Content-Type", content_type)
        for name, value in extra_headers:
            headers.add(name, value)
        request = SipRequest(method, request_uri, headers, body)
        outcome = await self._transact(request, target)
        if credentials is not None and outcome.response is not None:
            retry = with_credentials(request, outcome.response, credentials)
            if retry is not None:
                outcome = await self._transact(retry, target)
        return outcome

    def _sent_by(self, target: Destination) -> tuple[str, int]:
        if self._advertise is not None:
            return self._advertise
        if not ipaddress.ip_address(self.host).is_unspecified:
            return self.host, self.port
        # Bound to a wildcard address: use the local address the OS would send from.
        with socket.socket(self._transport.family, socket.SOCK_DGRAM) as probe:
            probe.connect((target.host, target.port))
            return str(probe.getsockname()[0]), self.port

    async def _transact(self, request: SipRequest, target: Destination) -> Outcome:
        if self._closed:
            return Outcome("transport_error", reason="the SIP endpoint is closed")
        try:
            link: Link
            if target.transport == "tcp":
                link = await self._transport.tcp_link(target.host, target.port)
            else:
                link = self._transport.udp_link(target.host, target.port)
            response = await self._table.run_client(request, link)
        except TransactionTimeout as exc:
            log.debug("sip.request.timeout", method=request.method, call_id=request.call_id)
            return Outcome("timeout", reason=str(exc))
        except SipTransportError as exc:
            return Outcome("transport_error", reason=str(exc))
        return Outcome("response", response.status, response.reason, response)

    # --- receiving ---------------------------------------------------------------------

    def _on_message(self, message: SipMessage, source: Source, link: Link) -> None:
        try:
            if isinstance(message, SipResponse):
                if not self._table.on_response(message):
                    self.stats.stray_responses += 1
            else:
                self._on_request(message, source, link)
        except Exception:
            # Called from the transports' protocol callbacks: never let one message kill them.
            self.stats.dropped += 1
            log.exception("sip.internal_error", transport=source.transport, host=source.host)

    def _on_request(self, request: SipRequest, source: Source, link: Link) -> None:
        self.stats.requests += 1
        via = request.top_via
        if via is None or self._closed:
            self.stats.dropped += 1
            return
        via = stamp_via(request, via, source)
        if source.transport == "udp":
            link = self._transport.udp_link(*response_address(via, source))
        if request.method == "ACK":
            return
        key = server_key(request)
        if key is None:
            self._send_stateless(link, build_response(request, 400, "Missing Call-ID or CSeq"))
            return
        existing = self._table.server.get(key)
        if existing is not None:
            self.stats.retransmissions_absorbed += 1
            existing.on_retransmission()
            return
        if len(self._table.server) >= self._limits.max_server_transactions:
            self.stats.overloaded += 1
            retry_after = ("Retry-After", str(self._limits.overload_retry_after))
            self._send_stateless(link, build_response(request, 503, headers=[retry_after]))
            return
        transaction = self._table.add_server(key, request, link)
        log.debug(
            "sip.request.received",
            method=request.method,
            call_id=request.call_id,
            transport=source.transport,
            host=source.host,
        )
        self._dispatch(transaction, request, source)

    def _problem(self, request: SipRequest) -> tuple[int, str] | None:
        if request.version != SIP_VERSION:
            return 505, "Version Not Supported"
        for name in ("From", "To", "Call-ID", "CSeq"):
            if name not in request.headers:
                return 400, f"Missing {name}"
        cseq = request.cseq
        if cseq is not None and cseq.method != request.method:
            return 400, "CSeq method does not match the request"
        if request.max_forwards == 0 and request.method != "OPTIONS":
            return 483, "Too Many Hops"
        if request.uri.split(":", 1)[0].lower() not in ("sip", "sips"):
            return 416, "Unsupported URI Scheme"
        return None

    def _dispatch(
        self, transaction: ServerTransaction, request: SipRequest, source: Source
    ) -> None:
        problem = self._problem(request)
        if problem is not None:
            transaction.respond(build_response(request, *problem))
        elif request.method == "OPTIONS":
            transaction.respond(build_response(request, 200, headers=[("Allow", self._allow)]))
        elif request.method == "CANCEL":
            # CANCEL does not affect a non-INVITE request (RFC 3261 §9.2); it only gets an answer.
            found = self._table.cancel_target(request) is not None
            transaction.respond(build_response(request, 200 if found else 481))
        elif request.method in self._methods:
            task = asyncio.get_running_loop().create_task(
                self._run_handler(transaction, request, source)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            transaction.respond(build_response(request, 405, headers=[("Allow", self._allow)]))

    async def _run_handler(
        self, transaction: ServerTransaction, request: SipRequest, source: Source
    ) -> None:
        assert self._handler is not None
        try:
            async with asyncio.timeout(self._handler_timeout):
                response = await self._handler(request, source)
            if response.status < 200:
                raise ValueError("the handler must return a final response")
            transaction.respond(response)
        except TimeoutError:
            self.stats.handler_errors += 1
            log.warning("sip.handler_timeout", method=request.method, call_id=request.call_id)
            transaction.respond(build_response(request, 500, headers=[("Retry-After", "5")]))
        except Exception:
            self.stats.handler_errors += 1
            log.exception("sip.handler_error", method=request.method, call_id=request.call_id)
            transaction.respond(build_response(request, 500))

    def _send_stateless(self, link: Link, response: SipResponse) -> None:
        try:
            link.send(response.to_bytes())
        except SipTransportError as exc:
            log.debug("sip.response.unsent", reason=str(exc))
