"""A small RFC 3428 (SIP MESSAGE) user agent over UDP and TCP, built on asyncio.

Self-contained: it imports nothing from the bridge but its logger. The public surface is
re-exported here; the modules are the parser (`parser`, `message`, `headers`, `uri`), digest
authentication (`digest`), the sockets (`transport`), transactions (`transaction`), the user
agent (`endpoint`), next hops (`proxy`) and bodies (`body`).
"""

from __future__ import annotations

from bridge.sip.body import UDP_BODY_LIMIT, CpimMessage, split_body, unwrap_cpim
from bridge.sip.digest import (
    DigestAuthenticator,
    DigestChallenge,
    DigestVerdict,
    authorization,
    parse_challenges,
    strongest,
)
from bridge.sip.endpoint import EndpointStats, Handler, Outcome, SipEndpoint
from bridge.sip.errors import (
    CpimError,
    SipError,
    SipParseError,
    SipTransportError,
    TransactionTimeout,
)
from bridge.sip.headers import ContentType, CSeq, Headers, Params, Via
from bridge.sip.message import (
    SipMessage,
    SipRequest,
    SipResponse,
    build_response,
    reason_phrase,
    warning_value,
)
from bridge.sip.parser import StreamFramer, parse_message
from bridge.sip.proxy import Destination, TransportName, parse_proxy, resolve
from bridge.sip.transport import Source, TransportStats
from bridge.sip.tuning import Limits, Timers
from bridge.sip.uri import NameAddr, SipUri

__all__ = [
    "UDP_BODY_LIMIT",
    "CSeq",
    "ContentType",
    "CpimError",
    "CpimMessage",
    "Destination",
    "DigestAuthenticator",
    "DigestChallenge",
    "DigestVerdict",
    "EndpointStats",
    "Handler",
    "Headers",
    "Limits",
    "NameAddr",
    "Outcome",
    "Params",
    "SipEndpoint",
    "SipError",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipTransportError",
    "SipUri",
    "Source",
    "StreamFramer",
    "Timers",
    "TransactionTimeout",
    "TransportName",
    "TransportStats",
    "Via",
    "authorization",
    "build_response",
    "parse_challenges",
    "parse_message",
    "parse_proxy",
    "reason_phrase",
    "resolve",
    "split_body",
    "strongest",
    "unwrap_cpim",
    "warning_value",
]
