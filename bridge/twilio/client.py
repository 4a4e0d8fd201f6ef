"""Adapter over Twilio's REST APIs: typed results and typed, classified errors.

It speaks the 2010-04-01 API on `base_url` (Messages, Accounts, IncomingPhoneNumbers) and the
Messaging v1 API on `messaging_api_base` (Services and their PhoneNumbers).

Every failure is one of three kinds, because the caller's durable queue must know whether a
create may have reached Twilio:

- `TwilioRejected`: Twilio answered with a 4xx other than 429; resending will not help.
- `TwilioUnavailable`: the request certainly was not processed (429, or no connection was ever
  made), so it may be sent again at once.
- `TwilioAmbiguous`: it may have been processed (5xx, timeout or connection lost after sending,
  an unreadable success); look for the message before resending.

There are no retries here; the caller's queue owns them. Only a create needs that care: reads
are safe to repeat after any failure, and the number and service updates set absolute values,
so repeating one that may have been applied is harmless too.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import aiohttp
from yarl import URL

from bridge.errors import BridgeError

__all__ = [
    "AccountInfo",
    "Credentials",
    "HttpMethod",
    "IncomingNumber",
    "ListedMessage",
    "MessageState",
    "MessagingService",
    "NumberCapabilities",
    "SentMessage",
    "ServiceNumber",
    "TwilioAmbiguous",
    "TwilioClient",
    "TwilioError",
    "TwilioRejected",
    "TwilioUnavailable",
]

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
MESSAGING_VERSION = "v1"
MAX_PAGE_SIZE = 1000
REDACTED = "[redacted]"


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("pbx-sms-bridge")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return f"pbx-sms-bridge/{version} aiohttp/{aiohttp.__version__}"


USER_AGENT = _user_agent()

Observer = Callable[[str, int | None, float], None]
JSONObject = dict[str, Any]
HttpMethod = Literal["GET", "POST"]
T = TypeVar("T")


@dataclass(frozen=True)
class Credentials:
    """An account's REST credentials: username is the Account SID or an API key SID (SK…)."""

    account_sid: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class SentMessage:
    """What Twilio answered to a create: the message as it was accepted."""

    sid: str
    status: str
    num_segments: int | None
    to: str
    from_: str | None
    date_created: datetime | None


@dataclass(frozen=True)
class ListedMessage:
    """One message from a Messages list."""

    sid: str
    status: str
    to: str
    from_: str | None
    body: str
    date_created: datetime | None
    error_code: int | None


@dataclass(frozen=True)
class MessageState:
    """Where a message stands now, as a fetch of its resource tells it."""

    sid: str
    status: str
    error_code: int | None
    error_message: str | None


@dataclass(frozen=True)
class AccountInfo:
    """The harmless part of an account resource (its auth token is dropped on arrival)."""

    sid: str
    status: str
    type: str | None
    friendly_name: str | None


@dataclass(frozen=True)
class NumberCapabilities:
    """What a phone number can receive and send."""

    sms: bool
    mms: bool
    voice: bool


@dataclass(frozen=True)
class IncomingNumber:
    """One of the account's phone numbers and the webhook its texts go to (unset URLs: None)."""

    sid: str
    phone_number: str
    friendly_name: str | None
    capabilities: NumberCapabilities
    sms_url: str | None
    sms_method: HttpMethod | None
    sms_fallback_url: str | None


@dataclass(frozen=True)
class MessagingService:
    """A Messaging Service: unless it defers to its numbers, their texts go to its own URL."""

    sid: str
    friendly_name: str | None
    inbound_request_url: str | None
    inbound_method: HttpMethod | None
    use_inbound_webhook_on_number: bool
    status_callback: str | None


@dataclass(frozen=True)
class ServiceNumber:
    """A phone number in a Messaging Service's sender pool (its SID is the number's PN…)."""

    sid: str
    phone_number: str
    service_sid: str | None


class TwilioError(BridgeError):
    """Twilio's API could not be used."""

    code = "twilio_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        http_status: int | None = None,
        twilio_code: int | None = None,
        more_info: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.twilio_code = twilio_code
        self.more_info = more_info


class TwilioRejected(TwilioError):
    """Twilio refused the request; sending it again unchanged will fail again."""

    code = "twilio_rejected"


class TwilioUnavailable(TwilioError):
    """Twilio certainly did not process the request; it is safe to send it again."""

    code = "twilio_unavailable"

    def __init__(
        self,
        message: str | None = None,
        *,
        http_status: int | None = None,
        twilio_code: int | None = None,
        more_info: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message, http_status=http_status, twilio_code=twilio_code, more_info=more_info
        )
        self.retry_after = retry_after


class TwilioAmbiguous(TwilioError):
    """Twilio may have processed the request; reconcile before sending it again."""

    code = "twilio_ambiguous"


# Failures raised before any byte of the request left this process.
_NOT_SENT = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ServerFingerprintMismatch,
)


class TwilioClient:
    """Twilio REST calls over a shared aiohttp session that the caller owns."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str = "https://api.twilio.com",
        *,
        connect_timeout: float = 5.0,
        total_timeout: float = 15.0,
        observe: Observer | None = None,
        messaging_api_base: str = "https://messaging.twilio.com",
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if not messaging_api_base.startswith(("http://", "https://")):
            raise ValueError("messaging_api_base must be an http(s) URL")
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._messaging_base = messaging_api_base.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout)
        self._observe = observe

    async def create_message(
        self,
        creds: Credentials,
        *,
        to: str,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        body: str | None = None,
        media_urls: Sequence[str] = (),
        status_callback: str | None = None,
        content_sid: str | None = None,
        content_variables: str | None = None,
    ) -> SentMessage:
        """Send one SMS/MMS (or WhatsApp message: ``whatsapp:`` addresses, and a template's
        ``content_sid`` with its ``content_variables`` JSON); a failure says whether Twilio may
        have taken it anyway."""
        form: list[tuple[str, str]] = [("To", to)]
        if from_ is not None:
            form.append(("From", from_))
        if messaging_service_sid is not None:
            form.append(("MessagingServiceSid", messaging_service_sid))
        if body is not None:
            form.append(("Body", body))
        form.extend(("MediaUrl", url) for url in media_urls)
        if content_sid is not None:
            form.append(("ContentSid", content_sid))
        if content_variables is not None:
            form.append(("ContentVariables", content_variables))
        if status_callback is not None:
            form.append(("StatusCallback", status_callback))
        operation = "create_message"
        status, doc = await self._call(
            operation, "POST", self._account_url(creds, "/Messages.json"), creds, data=form
        )
        return SentMessage(
            sid=_required(doc, "sid", operation, status),
            status=_required(doc, "status", operation, status),
            num_segments=_int(doc.get("num_segments")),
            to=_text(doc, "to") or to,
            from_=_text(doc, "from"),
            date_created=_date(doc.get("date_created")),
        )

    async def list_messages(
        self,
        creds: Credentials,
        *,
        to: str,
        sent_after: date | None = None,
        from_: str | None = None,
        page_size: int = 50,
        max_pages: int = 20,
    ) -> list[ListedMessage]:
        """Messages to `to` (sent on or after `sent_after`, a GMT day), newest first."""
        _check_paging(page_size, max_pages)
        first_query = [("To", to)]
        if from_ is not None:
            first_query.append(("From", from_))
        if sent_after is not None:
            first_query.append(("DateSent>", sent_after.isoformat()))
        first_query.append(("PageSize", str(page_size)))
        return await self._read_pages(
            "list_messages",
            self._account_url(creds, "/Messages.json"),
            creds,
            first_query,
            "messages",
            max_pages,
            _listed,
        )

    async def fetch_message(self, creds: Credentials, sid: str) -> MessageState:
        """One message by its SID (SM…/MM…), for its status now; safe to retry."""
        operation = "fetch_message"
        url = self._account_url(creds, f"/Messages/{quote(sid, safe='')}.json")
        status, doc = await self._call(operation, "GET", url, creds)
        return MessageState(
            sid=_required(doc, "sid", operation, status),
            status=_required(doc, "status", operation, status),
            error_code=_int(doc.get("error_code")),
            error_message=_text(doc, "error_message") or None,
        )

    async def list_incoming_numbers(
        self,
        creds: Credentials,
        *,
        phone_number: str | None = None,
        page_size: int = 50,
        max_pages: int = 20,
    ) -> list[IncomingNumber]:
        """The account's phone numbers, or only `phone_number` (E.164) itself; safe to retry.

        Twilio's PhoneNumber filter also matches partial numbers, so its answer is narrowed to
        the exact number here.
        """
        _check_paging(page_size, max_pages)
        query = [("PhoneNumber", phone_number)] if phone_number is not None else []
        query.append(("PageSize", str(page_size)))
        found = await self._read_pages(
            "list_incoming_numbers",
            self._account_url(creds, "/IncomingPhoneNumbers.json"),
            creds,
            query,
            "incoming_phone_numbers",
            max_pages,
            _incoming_number,
        )
        if phone_number is None:
            return found
        return [n for n in found if n.phone_number == phone_number]

    async def fetch_incoming_number(self, creds: Credentials, sid: str) -> IncomingNumber:
        """One phone number by its SID (PN…); an unknown one is TwilioRejected 404/20404."""
        operation = "fetch_incoming_number"
        url = self._account_url(creds, f"/IncomingPhoneNumbers/{quote(sid, safe='')}.json")
        status, doc = await self._call(operation, "GET", url, creds)
        return _incoming_number(doc, operation, status)

    async def update_incoming_number(
        self,
        creds: Credentials,
        sid: str,
        *,
        sms_url: str | None = None,
        sms_method: HttpMethod | None = None,
        sms_fallback_url: str | None = None,
    ) -> IncomingNumber:
        """Point a number's texts somewhere ("" clears a URL, None leaves it); the new state."""
        form = _form(
            ("SmsUrl", sms_url), ("SmsMethod", sms_method), ("SmsFallbackUrl", sms_fallback_url)
        )
        operation = "update_incoming_number"
        url = self._account_url(creds, f"/IncomingPhoneNumbers/{quote(sid, safe='')}.json")
        status, doc = await self._call(operation, "POST", url, creds, data=form)
        return _incoming_number(doc, operation, status)

    async def fetch_service(self, creds: Credentials, sid: str) -> MessagingService:
        """A Messaging Service by its SID (MG…); safe to retry."""
        operation = "fetch_service"
        status, doc = await self._call(operation, "GET", self._service_url(sid), creds)
        return _messaging_service(doc, operation, status)

    async def update_service(
        self,
        creds: Credentials,
        sid: str,
        *,
        inbound_request_url: str | None = None,
        inbound_method: HttpMethod | None = None,
        use_inbound_webhook_on_number: bool | None = None,
    ) -> MessagingService:
        """Change where a service's texts go ("" clears the URL, None leaves it); the new state."""
        form = _form(
            ("InboundRequestUrl", inbound_request_url),
            ("InboundMethod", inbound_method),
            ("UseInboundWebhookOnNumber", _boolean(use_inbound_webhook_on_number)),
        )
        operation = "update_service"
        status, doc = await self._call(operation, "POST", self._service_url(sid), creds, data=form)
        return _messaging_service(doc, operation, status)

    async def list_service_numbers(
        self, creds: Credentials, sid: str, *, page_size: int = 50, max_pages: int = 20
    ) -> list[ServiceNumber]:
        """The phone numbers in a Messaging Service's sender pool; safe to retry."""
        _check_paging(page_size, max_pages)
        return await self._read_pages(
            "list_service_numbers",
            self._service_url(sid, "/PhoneNumbers"),
            creds,
            [("PageSize", str(page_size))],
            "phone_numbers",
            max_pages,
            _service_number,
            meta_links=True,
        )

    async def fetch_account(self, creds: Credentials) -> AccountInfo:
        """The account resource; needs the auth token or a Main API key."""
        return await self._fetch_account("fetch_account", creds)

    async def check_credentials(self, creds: Credentials) -> AccountInfo | None:
        """Prove the credentials work: the account, or None for a key that may not read it."""
        try:
            return await self._fetch_account("check_credentials", creds)
        except TwilioRejected as exc:
            # With the auth token itself, a refusal can only mean the token is wrong.
            if exc.http_status not in (401, 403) or creds.username == creds.account_sid:
                raise
        # A Standard key cannot read /Accounts but can list messages; one item proves it works.
        await self._call(
            "check_credentials",
            "GET",
            self._account_url(creds, "/Messages.json"),
            creds,
            params=[("PageSize", "1")],
        )
        return None

    async def _fetch_account(self, operation: str, creds: Credentials) -> AccountInfo:
        url = self._account_url(creds, ".json")
        status, doc = await self._call(operation, "GET", url, creds)
        return AccountInfo(
            sid=_required(doc, "sid", operation, status),
            status=_required(doc, "status", operation, status),
            type=_text(doc, "type"),
            friendly_name=_text(doc, "friendly_name"),
        )

    def _account_url(self, creds: Credentials, suffix: str) -> str:
        sid = quote(creds.account_sid, safe="")
        return f"{self._base_url}/{API_VERSION}/Accounts/{sid}{suffix}"

    def _service_url(self, sid: str, suffix: str = "") -> str:
        return f"{self._messaging_base}/{MESSAGING_VERSION}/Services/{quote(sid, safe='')}{suffix}"

    async def _read_pages(
        self,
        operation: str,
        url: str,
        creds: Credentials,
        query: list[tuple[str, str]],
        key: str,
        max_pages: int,
        parse: Callable[[object, str, int], T],
        *,
        meta_links: bool = False,
    ) -> list[T]:
        """The records under `key` of up to `max_pages` pages, following Twilio's next links.

        The 2010 API links to the next page relative to its host (`next_page_uri`); the newer
        APIs with an absolute URL under `meta` (`next_page_url`).
        """
        params: list[tuple[str, str]] | None = query
        found: list[T] = []
        for _ in range(max_pages):
            status, doc = await self._call(operation, "GET", url, creds, params=params)
            items = doc.get(key)
            if not isinstance(items, list):
                raise _unreadable(operation, status)
            found.extend(parse(item, operation, status) for item in items)
            next_url = (
                self._next_meta_page(doc, operation, status)
                if meta_links
                else self._next_page(doc, operation, status)
            )
            if next_url is None:
                break
            # Later pages are fully described by Twilio's link.
            url, params = next_url, None
        return found

    def _next_page(self, doc: JSONObject, operation: str, status: int) -> str | None:
        uri = doc.get("next_page_uri")
        return self._follow(uri, operation, status) if isinstance(uri, str) and uri else None

    def _next_meta_page(self, doc: JSONObject, operation: str, status: int) -> str | None:
        meta = doc.get("meta")
        link = meta.get("next_page_url") if isinstance(meta, dict) else None
        if not link:
            return None
        # Like a relative link, an absolute one must stay on the host the credentials are for.
        try:
            home = URL(self._messaging_base).origin()
            same_host = isinstance(link, str) and URL(link).origin() == home
        except ValueError:
            same_host = False
        if not same_host:
            raise _off_host(operation, status)
        return str(link)

    def _follow(self, uri: str, operation: str, status: int) -> str:
        # An absolute or scheme-relative link could carry the credentials to another host.
        if not uri.startswith("/") or uri.startswith("//"):
            raise _off_host(operation, status)
        return self._base_url + uri

    async def _call(
        self,
        operation: str,
        method: str,
        url: str,
        creds: Credentials,
        *,
        params: list[tuple[str, str]] | None = None,
        data: list[tuple[str, str]] | None = None,
    ) -> tuple[int, JSONObject]:
        headers = {
            "Authorization": _authorization(creds),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        body: bytes | None = None
        if data is not None:
            # Encoded here, as Twilio reads it: aiohttp's FormData does the same with more steps,
            # and on a busy sending path it was a tenth of the process's time.
            body = urllib.parse.urlencode(data).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        status: int | None = None
        retry_after: str | None = None
        started = time.monotonic()
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                data=body,
                headers=headers,
                allow_redirects=False,
                raise_for_status=False,
                timeout=self._timeout,
            ) as response:
                status = answered = response.status
                retry_after = response.headers.get("Retry-After")
                raw = await response.read()
                if 200 <= answered < 300:
                    return answered, _json_object(raw, operation, answered)
                raise _status_error(operation, answered, raw, retry_after, creds)
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = _transport_error(operation, exc, status, retry_after)
            # A ClientResponseError's repr includes the request headers, Authorization too,
            # so it must not even stay reachable as the implicit context.
            cause = None if isinstance(exc, aiohttp.ClientResponseError) else exc
        finally:
            self._report(operation, status, time.monotonic() - started)
        raise failure from cause

    def _report(self, operation: str, status: int | None, seconds: float) -> None:
        if self._observe is None:
            return
        try:
            self._observe(operation, status, seconds)
        except Exception:
            # A broken metric must not turn a message Twilio accepted into an error to resend.
            log.exception("twilio.observe_failed operation=%s", operation)


def _check_paging(page_size: int, max_pages: int) -> None:
    if not 1 <= page_size <= MAX_PAGE_SIZE or max_pages < 1:
        raise ValueError("page_size must be within 1..1000 and max_pages at least 1")


def _form(*fields: tuple[str, str | None]) -> list[tuple[str, str]]:
    form = [(name, value) for name, value in fields if value is not None]
    if not form:
        raise ValueError("nothing to update")
    return form


def _boolean(value: bool | None) -> str | None:
    return None if value is None else ("true" if value else "false")


def _off_host(operation: str, status: int) -> TwilioAmbiguous:
    return TwilioAmbiguous(
        f"{operation}: HTTP {status} with a next page link off the API host", http_status=status
    )


def _authorization(creds: Credentials) -> str:
    try:
        return aiohttp.encode_basic_auth(creds.username, creds.password)
    except ValueError:
        raise TwilioRejected("the Twilio username must not contain ':'") from None


def _transport_error(
    operation: str, exc: BaseException, status: int | None, retry_after: str | None
) -> TwilioError:
    """Classify a failure to get a complete answer (`status` is set if headers arrived)."""
    if status is not None and not 200 <= status < 300:
        # The status line alone decides; only the error body was lost.
        return _status_error(operation, status, b"", retry_after, None)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, _NOT_SENT):
        return TwilioUnavailable(f"{operation}: could not connect ({detail})")
    if status is not None:
        return TwilioAmbiguous(
            f"{operation}: HTTP {status} but the answer was cut off ({detail})",
            http_status=status,
        )
    if isinstance(exc, TimeoutError):
        return TwilioAmbiguous(f"{operation}: no answer in time ({detail})")
    return TwilioAmbiguous(f"{operation}: connection failed after sending ({detail})")


def _status_error(
    operation: str,
    status: int,
    raw: bytes,
    retry_after: str | None,
    creds: Credentials | None,
) -> TwilioError:
    twilio_code, text, more_info = _error_fields(raw)
    if creds is not None:
        text = _scrub(text, creds)
        more_info = None if more_info is None else _scrub(more_info, creds)
    coded = f"Twilio error {twilio_code}" if twilio_code is not None else "no Twilio error code"
    message = f"{operation}: HTTP {status}, {coded}" + (f": {text}" if text else "")
    if status == 429:
        return TwilioUnavailable(
            message,
            http_status=status,
            twilio_code=twilio_code,
            more_info=more_info,
            retry_after=_retry_after(retry_after),
        )
    # 5xx, and 1xx/3xx which no API call should produce (redirects are never followed).
    kind = TwilioRejected if 400 <= status < 500 else TwilioAmbiguous
    return kind(message, http_status=status, twilio_code=twilio_code, more_info=more_info)


def _error_fields(raw: bytes) -> tuple[int | None, str, str | None]:
    # Never echo a body that is not Twilio's error document: proxies send whole HTML pages.
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return None, "", None
    message = _text(doc, "message") or ""
    return _int(doc.get("code")), message[:500], _text(doc, "more_info")


def _scrub(text: str, creds: Credentials) -> str:
    for secret in (creds.password, _authorization(creds).removeprefix("Basic ")):
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _json_object(raw: bytes, operation: str, status: int) -> JSONObject:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise _unreadable(operation, status)
    return doc


def _unreadable(operation: str, status: int) -> TwilioAmbiguous:
    # The body is never quoted: an account document carries the auth token.
    return TwilioAmbiguous(
        f"{operation}: HTTP {status} with an unreadable body", http_status=status
    )


def _listed(item: object, operation: str, status: int) -> ListedMessage:
    if not isinstance(item, dict):
        raise _unreadable(operation, status)
    return ListedMessage(
        sid=_required(item, "sid", operation, status),
        status=_required(item, "status", operation, status),
        to=_text(item, "to") or "",
        from_=_text(item, "from"),
        body=_text(item, "body") or "",
        date_created=_date(item.get("date_created")),
        error_code=_int(item.get("error_code")),
    )


def _incoming_number(item: object, operation: str, status: int) -> IncomingNumber:
    if not isinstance(item, dict):
        raise _unreadable(operation, status)
    capabilities = item.get("capabilities")
    flags = capabilities if isinstance(capabilities, dict) else {}
    return IncomingNumber(
        sid=_required(item, "sid", operation, status),
        phone_number=_required(item, "phone_number", operation, status),
        friendly_name=_text(item, "friendly_name"),
        capabilities=NumberCapabilities(
            sms=flags.get("sms") is True,
            mms=flags.get("mms") is True,
            voice=flags.get("voice") is True,
        ),
        # Twilio shows an unset URL as "" (and sometimes null); both mean "none".
        sms_url=_text(item, "sms_url") or None,
        sms_method=_method(item.get("sms_method")),
        sms_fallback_url=_text(item, "sms_fallback_url") or None,
    )


def _messaging_service(doc: JSONObject, operation: str, status: int) -> MessagingService:
    return MessagingService(
        sid=_required(doc, "sid", operation, status),
        friendly_name=_text(doc, "friendly_name"),
        inbound_request_url=_text(doc, "inbound_request_url") or None,
        inbound_method=_method(doc.get("inbound_method")),
        use_inbound_webhook_on_number=doc.get("use_inbound_webhook_on_number") is True,
        status_callback=_text(doc, "status_callback") or None,
    )


def _service_number(item: object, operation: str, status: int) -> ServiceNumber:
    if not isinstance(item, dict):
        raise _unreadable(operation, status)
    return ServiceNumber(
        sid=_required(item, "sid", operation, status),
        phone_number=_required(item, "phone_number", operation, status),
        service_sid=_text(item, "service_sid"),
    )


def _method(value: object) -> HttpMethod | None:
    if value == "GET":
        return "GET"
    if value == "POST":
        return "POST"
    return None


def _text(doc: JSONObject, key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) else None


def _required(doc: JSONObject, key: str, operation: str, status: int) -> str:
    value = _text(doc, key)
    if not value:
        raise _unreadable(operation, status)
    return value


def _int(value: object) -> int | None:
    # Twilio sends counts as strings ("1") and codes as integers; accept either.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _date(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
