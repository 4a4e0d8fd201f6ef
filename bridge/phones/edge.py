"""MESSAGE from a phone → a send through Twilio, with the same rules, checks and durability as
`POST /messages`: `202 Accepted` only once the text is committed, and a retransmission (same
Call-ID and CSeq, in any process) sends nothing twice."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.errors import BridgeError, Conflict, DatabaseUnavailable, InvalidInput
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.models import SendRequest, TenantId
from bridge.services.outbound import OutboundService
from bridge.services.sip import SipSettingsRow, SipSettingsService
from bridge.sip import (
    CpimError,
    DigestAuthenticator,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    Source,
    build_response,
    unwrap_cpim,
    warning_value,
)

log = get_logger(__name__)

TEXT = "text/plain"
CPIM = "message/cpim"
IS_COMPOSING = "application/im-iscomposing+xml"
# The API's refusal codes and the SIP answer each gets (design §10); any other refusal is 403.
STATUS_OF_REFUSAL = {
    "no_route": 404,
    "invalid_destination": 484,
    "country_not_allowed": 403,
    "recipient_opted_out": 403,
    "body_too_long": 413,
    "no_sender": 403,
    "too_much_media": 413,
}


@dataclass(frozen=True)
class Refusal(Exception):
    """A final answer other than 202, with the code the Warning header names."""

    status: int
    code: str


class PhoneEdge:
    """Answers the PBX's MESSAGEs: who sent it (source address and From domain), whether the
    PBX proved it (digest, when the tenant has an inbound password), and the send itself."""

    def __init__(
        self,
        sip: SipSettingsService,
        outbound: OutboundService,
        authenticator: DigestAuthenticator,
        metrics: Metrics,
        *,
        host: str,
    ) -> None:
        self._sip = sip
        self._outbound = outbound
        self._auth = authenticator
        self._metrics = metrics
        self._host = host

    async def handle(self, request: SipRequest, source: Source) -> SipResponse:
        try:
            response = await self._handle(request, source)
        except Refusal as refused:
            self._metrics.sip_messages.labels("from_phone", refused.code).inc()
            log.info("sip.refused", status=refused.status, code=refused.code, source=source.host)
            return build_response(
                request,
                refused.status,
                headers=[("Warning", warning_value(self._host, refused.code))],
            )
        return response

    async def _handle(self, request: SipRequest, source: Source) -> SipResponse:
        try:
            sender = request.from_
            target = SipUri.parse(request.uri)
            call_id, cseq = request.call_id, request.cseq
            from_uri = None if sender is None else SipUri.parse(sender.uri)
        except SipParseError as exc:
            raise Refusal(400, "malformed") from exc
        if from_uri is None or call_id is None or cseq is None:
            raise Refusal(400, "malformed")
        settings = await self._sip.for_source(from_uri.host, source.host)
        if settings is None:
            raise Refusal(403, "unknown_source")
        challenge = self._challenge(request, settings)
        if challenge is not None:
            return challenge
        text = self._text_of(request)
        if text is None:
            self._metrics.sip_messages.labels("from_phone", "typing").inc()
            return build_response(request, 200)
        message_id = await self._send(
            settings.tenant_id, from_uri, target, text, call_id, cseq.number
        )
        self._metrics.sip_messages.labels("from_phone", "accepted").inc()
        log.info("sip.accepted", tenant_id=settings.tenant_id, message_id=message_id)
        return build_response(request, 202, headers=[("X-Bridge-Message-Id", message_id)])

    def _challenge(self, request: SipRequest, settings: SipSettingsRow) -> SipResponse | None:
        """With an inbound password, the PBX must answer a digest challenge (407)."""
        password = self._sip.password(settings, "inbound_password")
        if password is None:
            return None
        realm = settings.values.domain
        offered = settings.values.inbound_digest
        verdict = self._auth.verify(
            request, realm=realm, password=password, proxy=True, algorithms=offered
        )
        if verdict.ok:
            return None
        # Challenged afresh: a stale nonce is answered as such, a wrong answer as refused.
        self._metrics.sip_messages.labels("from_phone", "challenged").inc()
        challenge = self._auth.challenge(
            request, realm, proxy=True, stale=verdict.status == "stale", algorithms=offered
        )
        if verdict.status == "rejected":
            challenge.headers.add("Warning", warning_value(self._host, "wrong_digest"))
        return challenge

    def _text_of(self, request: SipRequest) -> str | None:
        """The text a MESSAGE carries (CPIM unwrapped); None for a typing notice."""
        try:
            content_type = request.content_type
        except SipParseError as exc:
            raise Refusal(400, "malformed") from exc
        mime = "" if content_type is None else content_type.mime
        charset = None if content_type is None else content_type.charset
        body = request.body
        if mime == CPIM:
            try:
                inner = unwrap_cpim(body)
            except CpimError as exc:
                raise Refusal(400, "malformed_cpim") from exc
            mime, charset, body = inner.content_type.mime, inner.content_type.charset, inner.body
        if mime == IS_COMPOSING:
            return None
        if mime not in (TEXT, ""):
            raise Refusal(415, "unsupported_content_type")
        # A body that ends a line (SIPp's scenarios, some phones) ends no text: the line end
        # would reach the handset as an empty line and cost a character.
        return _decode(body, charset).rstrip("\r\n")

    async def _send(
        self,
        tenant_id: TenantId,
        sender: SipUri,
        target: SipUri,
        text: str,
        call_id: str,
        cseq: int,
    ) -> str:
        if not sender.user or not target.user:
            raise Refusal(404, "no_route")
        try:
            send = SendRequest(from_extension=sender.user, to=target.user, body=text)
        except ValueError as exc:
            raise Refusal(403, "unknown_extension") from exc
        try:
            message = await self._outbound.accept(
                tenant_id, send, f"sip:{call_id}:{cseq}", origin="sip"
            )
        except DatabaseUnavailable as exc:
            raise Refusal(503, "unavailable") from exc
        except Conflict as exc:
            raise Refusal(400, "conflict") from exc
        except InvalidInput as exc:
            raise Refusal(STATUS_OF_REFUSAL.get(exc.code, 403), _refusal_code(exc)) from exc
        except BridgeError as exc:
            raise Refusal(500, exc.code) from exc
        return message.id


def _refusal_code(exc: InvalidInput) -> str:
    """The API's own refusal code; a field problem of the send names the field instead."""
    if exc.code != "validation_error":
        return exc.code
    field = exc.details[0].field if exc.details else ""
    return "unknown_extension" if field == "from_extension" else "invalid_request"


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError) as exc:
        raise Refusal(400, "bad_charset") from exc
