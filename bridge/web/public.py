"""The public listener: Twilio's webhooks, under BRIDGE_PUBLIC_BASE_URL's path."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from bridge.db.sms_configs import WebhookConfig
from bridge.errors import DatabaseUnavailable
from bridge.inbound import MissingParameter, Params
from bridge.log import get_logger
from bridge.web.keys import METRICS, services_of

log = get_logger(__name__)

TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM = "application/x-www-form-urlencoded"
PUBLIC_ORIGIN = web.AppKey("public_origin", str)
Receive = Callable[[WebhookConfig, Params], Awaitable[object]]


class Rejected(Exception):
    """A webhook refused at the door; nothing was stored."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason


def _storable(value: str) -> bool:
    """Whether PostgreSQL text can hold it: no NUL, and no lone surrogate (not UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def parse_params(raw: bytes, content_type: str, query: str) -> Params:
    """Every parameter received, duplicates and order kept: none is whitelisted."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(400, "body is not UTF-8") from exc
    if "\x00" in text or "%00" in text:
        raise Rejected(400, "NUL character")
    if content_type == FORM:
        return parse_qsl(text, keep_blank_values=True)
    if content_type == "application/json" and "bodySHA256=" in query:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise Rejected(400, "body is not JSON") from exc
        if not isinstance(data, dict):
            raise Rejected(400, "JSON body is not an object")
        params = [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in data.items()]
        # JSON escapes spell what a UTF-8 body cannot carry raw: NUL and lone surrogates.
        if "\\u" in text and not all(_storable(k) and _storable(v) for k, v in params):
            raise Rejected(400, "NUL character or lone surrogate")
        return params
    raise Rejected(415, "not form-encoded")


async def authenticated(request: web.Request, kind: str) -> tuple[WebhookConfig, Params]:
    """Resolve the token, bound and parse the body, and check Twilio's signature."""
    inbound = services_of(request).inbound
    config = await inbound.config_for(request.match_info["token"])
    if config is None:
        raise Rejected(404, "unknown token")
    try:
        raw = await request.read()  # bounded by the app's client_max_size
    except web.HTTPRequestEntityTooLarge as exc:
        raise Rejected(413, "body too large") from exc
    params = parse_params(raw, request.content_type, request.query_string)
    # The signed URL is what Twilio was given: our public base, not this request's Host.
    url = request.app[PUBLIC_ORIGIN] + request.raw_path
    if not inbound.verify(
        config,
        url=url,
        params=params if request.content_type == FORM else [],
        raw_body=raw,
        content_type=request.content_type,
        signature=request.headers.get("X-Twilio-Signature"),
    ):
        log.warning("webhook.bad_signature", kind=kind, config_id=config.id)
        raise Rejected(403, "bad signature")
    return config, params


async def _webhook(
    request: web.Request, kind: str, receive: Receive, answer: web.Response
) -> web.StreamResponse:
    """Refusals are bare statuses for Twilio, counted by reason; nothing was stored for them."""
    metrics = request.app[METRICS]
    try:
        config, params = await authenticated(request, kind)
        await receive(config, params)
    except Rejected as exc:
        metrics.webhooks_rejected.labels(kind, exc.reason).inc()
        return web.Response(status=exc.status)
    except MissingParameter:
        metrics.webhooks_rejected.labels(kind, "missing parameter").inc()
        return web.Response(status=400)
    except DatabaseUnavailable:
        # Not acknowledged, so Twilio tries again later; nothing was stored.
        metrics.webhooks_rejected.labels(kind, "database unavailable").inc()
        return web.Response(status=503)
    return answer


async def inbound_webhook(request: web.Request) -> web.StreamResponse:
    """Answered only once the message is committed: the 200 is the promise to keep it."""
    started = time.perf_counter()
    twiml = web.Response(body=TWIML_EMPTY, content_type="text/xml", charset="utf-8")
    response = await _webhook(request, "inbound", services_of(request).inbound.receive, twiml)
    if response is twiml:
        request.app[METRICS].ack_latency.observe(time.perf_counter() - started)
    return response


async def status_webhook(request: web.Request) -> web.StreamResponse:
    receive = services_of(request).status.receive
    return await _webhook(request, "status", receive, web.Response(status=204))


async def outbound_media(request: web.Request) -> web.StreamResponse:
    """What Twilio fetches for an outbound MMS: exact type and length, GET or HEAD."""
    found = await services_of(request).outbound.media(request.match_info["token"])
    if found is None:
        return web.Response(status=404)
    content_type, data = found
    return web.Response(
        body=data,
        headers={"Content-Type": content_type, "Cache-Control": "private, max-age=3600"},
    )


async def not_found(request: web.Request) -> web.StreamResponse:
    return web.Response(status=404)


def add_public_routes(app: web.Application, public_base_url: str) -> None:
    parts = urlsplit(public_base_url)
    prefix = parts.path.rstrip("/")
    app[PUBLIC_ORIGIN] = f"{parts.scheme}://{parts.netloc}"
    # Tokens are token_urlsafe: any other path is unknown without asking the database, which
    # refuses a NUL (a %00 in the path) with an error that would surface as a 500.
    token = "{token:[A-Za-z0-9_-]+}"
    app.router.add_post(prefix + f"/twilio/{token}/inbound", inbound_webhook)
    app.router.add_post(prefix + f"/twilio/{token}/status", status_webhook)
    app.router.add_get(prefix + f"/media/{token}", outbound_media)  # aiohttp adds HEAD
    app.router.add_route("*", "/{tail:.*}", not_found)
