"""The fake's REST API (Accounts, Messages, Media), its media "CDN", and the API middleware."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from aiohttp import web
from multidict import MultiDict

from .context import CREDENTIAL, DISPATCHER_KEY, STATE_KEY, base_url_of
from .faults import ALL_OPERATIONS, Operation
from .formats import ACCOUNTS_PREFIX, API_VERSION, MESSAGING_VERSION, new_sid
from .listing import BadQuery, build_page, parse_message_filter, parse_page
from .magic import (
    DELIVERED,
    INTERNAL_ERROR,
    OUTCOME_BY_TO,
    REJECT_BY_FROM,
    REJECT_BY_TO,
    SLOW_TO,
    TOO_MANY_REQUESTS,
    UNAVAILABLE,
    WHATSAPP_WINDOW_CLOSED,
    Outcome,
    error_response,
    not_found,
    rejection_response,
    unauthorized,
)
from .records import ApiRequestRecord, utcnow
from .segments import count_segments
from .state import Account, Credential, FakeState, Media, Message
from .validation import CreateRequest, Problem, channel_of, validate_create

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CDN_PREFIX = "/cdn/media"
CDN_LIFETIME = 4 * 3600
RECORD = web.RequestKey("fake_twilio_record", ApiRequestRecord)
_ACCOUNT = f"{ACCOUNTS_PREFIX}/{{AccountSid}}"
API_PREFIXES = (f"/{API_VERSION}/", f"/{MESSAGING_VERSION}/")

OPERATIONS: Mapping[str, Operation] = MappingProxyType(
    {
        "account": "account",
        "create": "create",
        "list": "list",
        "fetch": "fetch",
        "delete": "delete",
        "media_list": "media",
        "media_fetch": "media",
        "media_content": "media",
        "media_delete": "delete",
        "numbers_list": "numbers",
        "numbers_fetch": "numbers",
        "numbers_update": "numbers",
        "service_fetch": "services",
        "service_update": "services",
        "service_numbers": "services",
    }
)


def add_routes(app: web.Application) -> None:
    """Register the REST and CDN routes; route names select the operation for faults."""
    router = app.router
    router.add_get(f"{_ACCOUNT}.json", fetch_account, name="account")
    router.add_post(f"{_ACCOUNT}/Messages.json", create_message, name="create")
    router.add_get(f"{_ACCOUNT}/Messages.json", list_messages, name="list")
    router.add_get(f"{_ACCOUNT}/Messages/{{Sid}}.json", fetch_message, name="fetch")
    router.add_delete(f"{_ACCOUNT}/Messages/{{Sid}}.json", delete_message, name="delete")
    media = f"{_ACCOUNT}/Messages/{{MessageSid}}/Media"
    router.add_get(f"{media}.json", list_media, name="media_list")
    router.add_get(f"{media}/{{Sid}}.json", fetch_media, name="media_fetch")
    router.add_delete(f"{media}/{{Sid}}.json", delete_media, name="media_delete")
    router.add_get(f"{media}/{{Sid:[^/.]+}}", media_content, name="media_content")
    router.add_get(f"{CDN_PREFIX}/{{token}}", cdn_content, name="cdn")


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record, delay, authenticate and fault-inject every request to Twilio's APIs."""
    if not request.path.startswith(API_PREFIXES):
        return await handler(request)
    state = request.app[STATE_KEY]
    name = request.match_info.route.name or ""
    form = await request.post() if request.method == "POST" else None
    header = request.headers.get("Authorization")
    credential = state.authenticate(header)
    record = state.record_request(
        ApiRequestRecord(
            id=len(state.requests) + 1,
            operation=OPERATIONS.get(name, "unknown"),
            method=request.method,
            path=request.path,
            query=list(request.query.items()),
            auth_username=credential.username if credential else _claimed_username(header),
            auth_kind=credential.kind if credential else ("none" if header is None else "invalid"),
            form=[(k, v) for k, v in form.items() if isinstance(v, str)] if form else [],
        )
    )
    request[RECORD] = record
    if credential is not None:
        request[CREDENTIAL] = credential
    if state.config.latency:
        await asyncio.sleep(state.config.latency)
    response = await _answer(request, handler, state, credential, name)
    record.status = response.status
    response.headers["Twilio-Request-Id"] = new_sid("RQ")
    log.info("fake_twilio.api %s %s -> %s", request.method, request.path, response.status)
    state.notify()
    return response


async def _answer(
    request: web.Request,
    handler: Handler,
    state: FakeState,
    credential: Credential | None,
    name: str,
) -> web.StreamResponse:
    public_media = name == "media_content" and not state.config.media_auth
    if not public_media and not _allowed(request, credential, name):
        return unauthorized()
    operation = OPERATIONS.get(name)
    if operation is None:
        try:
            return await handler(request)
        except web.HTTPMethodNotAllowed:
            return error_response(405, 20004, "Method not allowed")
        except web.HTTPNotFound:
            return not_found(request.path)
    fault = state.faults.draw(operation) if operation in ALL_OPERATIONS else None
    if fault is not None:
        request[RECORD].fault = fault.kind
        if fault.kind == "slow":
            await asyncio.sleep(state.config.slow_delay if fault.delay is None else fault.delay)
        elif fault.kind != "500-after-create":
            return _fault_response(fault.kind, state.config.retry_after)
    response = await handler(request)
    if fault is not None and fault.kind == "500-after-create":
        return error_response(500, 20500, INTERNAL_ERROR)
    return response


def _allowed(request: web.Request, credential: Credential | None, name: str) -> bool:
    if credential is None:
        return False
    # Unmatched paths still carry the account in the URL; credentials must belong to it.
    parts = request.path.split("/")
    has_account = len(parts) > 3 and parts[2] == "Accounts"
    path_account = parts[3].removesuffix(".json") if has_account else None
    if path_account is not None and credential.account_sid != path_account:
        return False
    # Standard API keys cannot reach the /Accounts resource itself.
    return not (name == "account" and credential.kind == "standard")


def _fault_response(kind: str, retry_after: int) -> web.Response:
    if kind == "429":
        return error_response(429, 20429, TOO_MANY_REQUESTS, {"Retry-After": str(retry_after)})
    if kind == "429-no-retry-after":
        return error_response(429, 20429, TOO_MANY_REQUESTS)
    if kind == "503":
        return error_response(503, 20503, UNAVAILABLE)
    return error_response(500, 20500, INTERNAL_ERROR)


def _claimed_username(header: str | None) -> str | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        return base64.b64decode(header[6:].strip()).decode(errors="replace").partition(":")[0]
    except (binascii.Error, ValueError):
        return None


async def fetch_account(request: web.Request) -> web.Response:
    """GET /Accounts/{Sid}.json."""
    account = request.app[STATE_KEY].accounts[request.match_info["AccountSid"]]
    return web.json_response(account.resource())


async def create_message(request: web.Request) -> web.Response:
    """POST …/Messages.json: validate, apply magic numbers, store, start the lifecycle."""
    state = request.app[STATE_KEY]
    account = state.accounts[request.match_info["AccountSid"]]
    form = await request.post()
    params = MultiDict((k, v) for k, v in form.items() if isinstance(v, str))
    checked = validate_create(params, account)
    if isinstance(checked, Problem):
        return error_response(400, checked.code, checked.message)
    rejection = REJECT_BY_TO.get(checked.to) or REJECT_BY_FROM.get(checked.from_ or "")
    if rejection is not None and not rejection.after_create:
        return rejection_response(
            rejection, checked.to, checked.from_ or "", state.config.retry_after
        )
    sid = new_sid("MM" if checked.media_urls else "SM")
    now = utcnow()
    channel = channel_of(checked.to)
    message = Message(
        sid=sid,
        account_sid=account.sid,
        direction="outbound-api",
        status="accepted" if checked.messaging_service_sid else "queued",
        to=checked.to,
        from_=checked.from_,
        body=checked.body,
        # With a Messaging Service and no From, no sender is chosen yet, hence 0 segments;
        # other channels than SMS carry a message whole.
        num_segments=0
        if checked.from_ is None
        else 1
        if channel is not None
        else count_segments(checked.body),
        seq=state.next_seq(),
        messaging_service_sid=checked.messaging_service_sid,
        status_callback=checked.status_callback,
        content_sid=checked.content_sid,
        content_variables=checked.content_variables,
        media=[
            Media(new_sid("ME"), account.sid, sid, _guess_type(url), source_url=url)
            for url in checked.media_urls
        ],
        params=list(params.items()),
        created=now,
        updated=now,
        date_sent=now,
    )
    state.add_message(message)
    request[RECORD].message_sid = sid
    request.app[DISPATCHER_KEY].start_outbound(message, _outcome(state, account, checked))
    if rejection is not None:
        return rejection_response(
            rejection, checked.to, checked.from_ or "", state.config.retry_after
        )
    if checked.to == SLOW_TO:
        await asyncio.sleep(state.config.slow_delay)
    return web.json_response(message.resource(with_feedback=False), status=201)


async def list_messages(request: web.Request) -> web.Response:
    """GET …/Messages.json with filters and paging, newest first."""
    state = request.app[STATE_KEY]
    try:
        filters = parse_message_filter(request.query)
        page = parse_page(request.query)
    except BadQuery as exc:
        return error_response(400, 20001, str(exc))
    items = [
        m for m in state.account_messages(request.match_info["AccountSid"]) if filters.matches(m)
    ]
    document = build_page(
        path=request.path,
        key="messages",
        filters=filters.echoed,
        items=items,
        sid_of=lambda m: m.sid,
        render=lambda m: m.resource(),
        page=page,
    )
    return web.json_response(document)


async def fetch_message(request: web.Request) -> web.Response:
    """GET …/Messages/{Sid}.json."""
    message = _message(request, "Sid")
    if message is None:
        return not_found(request.path)
    return web.json_response(message.resource())


async def delete_message(request: web.Request) -> web.Response:
    """DELETE …/Messages/{Sid}.json → 204."""
    message = _message(request, "Sid")
    if message is None:
        return not_found(request.path)
    del request.app[STATE_KEY].messages[message.sid]
    return web.Response(status=204)


async def list_media(request: web.Request) -> web.Response:
    """GET …/Messages/{MessageSid}/Media.json."""
    message = _message(request, "MessageSid")
    if message is None:
        return not_found(request.path)
    try:
        page = parse_page(request.query)
    except BadQuery as exc:
        return error_response(400, 20001, str(exc))
    document = build_page(
        path=request.path,
        key="media_list",
        filters=[],
        items=message.media,
        sid_of=lambda m: m.sid,
        render=lambda m: m.resource(),
        page=page,
    )
    return web.json_response(document)


async def fetch_media(request: web.Request) -> web.Response:
    """GET …/Media/{Sid}.json: metadata."""
    media = _media(request)
    return not_found(request.path) if media is None else web.json_response(media.resource())


async def delete_media(request: web.Request) -> web.Response:
    """DELETE …/Media/{Sid}.json → 204."""
    message = _message(request, "MessageSid")
    media = _media(request)
    if message is None or media is None:
        return not_found(request.path)
    message.media.remove(media)
    return web.Response(status=204)


async def media_content(request: web.Request) -> web.Response:
    """GET …/Media/{Sid} (no extension): 307 to a short-lived signed CDN URL."""
    media = _media(request)
    if media is None:
        return not_found(request.path)
    expires = int(time.time()) + CDN_LIFETIME
    token = f"{media.sid}.{expires}.{_cdn_mac(request, media.sid, expires)}"
    location = f"{base_url_of(request)}{CDN_PREFIX}/{token}"
    return web.Response(status=307, headers={"Location": location})


async def cdn_content(request: web.Request) -> web.Response:
    """The signed CDN URL: refuses any Authorization header, like a pre-signed S3 URL."""
    if "Authorization" in request.headers:
        return _cdn_denied("Requests to signed media URLs must not carry credentials")
    sid, _, rest = request.match_info["token"].partition(".")
    expires_text, _, mac = rest.partition(".")
    if not expires_text.isdigit() or int(expires_text) < time.time():
        return _cdn_denied("Request has expired")
    if not hmac.compare_digest(mac, _cdn_mac(request, sid, int(expires_text))):
        return _cdn_denied("Signature does not match")
    state = request.app[STATE_KEY]
    for message in state.messages.values():
        for media in message.media:
            if media.sid == sid and media.data is not None:
                return web.Response(body=media.data, headers={"Content-Type": media.content_type})
    return web.Response(status=404, text="Not Found")


def _cdn_mac(request: web.Request, sid: str, expires: int) -> str:
    secret = request.app[STATE_KEY].cdn_secret
    return hmac.new(secret, f"{sid}.{expires}".encode(), hashlib.sha256).hexdigest()


def _cdn_denied(reason: str) -> web.Response:
    body = f"<Error><Code>AccessDenied</Code><Message>{reason}</Message></Error>"
    return web.Response(status=403, text=body, content_type="application/xml")


def _message(request: web.Request, key: str) -> Message | None:
    state = request.app[STATE_KEY]
    return state.find_message(request.match_info["AccountSid"], request.match_info[key])


def _media(request: web.Request) -> Media | None:
    message = _message(request, "MessageSid")
    if message is None:
        return None
    return next((m for m in message.media if m.sid == request.match_info["Sid"]), None)


def _outcome(state: FakeState, account: Account, checked: CreateRequest) -> Outcome:
    """How the message ends: by its magic `To`; a free-form WhatsApp message outside the
    user's 24-hour window is accepted, then fails with 63016 (a template passes)."""
    to = checked.to
    free_form = channel_of(to) == "whatsapp" and checked.content_sid is None
    if free_form and not state.whatsapp_window_open(account.sid, checked.from_ or "", to):
        return WHATSAPP_WINDOW_CLOSED
    return OUTCOME_BY_TO.get(to.partition(":")[2] if channel_of(to) else to, DELIVERED)


def _guess_type(url: str) -> str:
    guessed, _ = mimetypes.guess_type(url.split("?", 1)[0])
    return guessed or "application/octet-stream"
