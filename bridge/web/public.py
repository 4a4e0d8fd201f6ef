"""The public listener: Twilio's webhooks and outbound media, under BRIDGE_PUBLIC_BASE_URL's path.

Refusals are BridgeErrors like everywhere else, answered by the same middleware and error
table as the internal API; nothing is stored for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from aiohttp import web

from bridge.errors import (
    BridgeError,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from bridge.services.webhooks import RequestSeen, WebhookConfig
from bridge.twilio.webhooks import MissingParameter, Params
from bridge.urls import PublicUrls
from bridge.web.keys import METRICS, services_of

TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM = "application/x-www-form-urlencoded"
PUBLIC_URLS = web.AppKey("public_urls", PublicUrls)
Receive = Callable[[WebhookConfig, Params], Awaitable[object]]


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
        raise MalformedRequest("the body is not UTF-8") from exc
    if "\x00" in text or "%00" in text:
        raise MalformedRequest("the body contains a NUL character")
    if content_type == FORM:
        return parse_qsl(text, keep_blank_values=True)
    if content_type == "application/json" and "bodySHA256=" in query:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MalformedRequest("the body is not JSON") from exc
        if not isinstance(data, dict):
            raise MalformedRequest("the JSON body is not an object")
        params = [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in data.items()]
        # JSON escapes spell what a UTF-8 body cannot carry raw: NUL and lone surrogates.
        if "\\u" in text and not all(_storable(k) and _storable(v) for k, v in params):
            raise MalformedRequest("the body holds a NUL character or a lone surrogate")
        return params
    raise UnsupportedMediaType("webhooks are form-encoded (or JSON with bodySHA256)")


async def authenticated(request: web.Request, kind: str) -> tuple[WebhookConfig, Params]:
    """Resolve the token, bound and parse the body, and check Twilio's signature."""
    webhooks = services_of(request).webhooks
    config = await webhooks.config_for(request.match_info["token"])
    try:
        try:
            raw = await request.read()  # bounded by the app's client_max_size
        except web.HTTPRequestEntityTooLarge as exc:
            raise PayloadTooLarge() from exc
        params = parse_params(raw, request.content_type, request.query_string)
    except BridgeError:
        webhooks.refused(config.id, kind, "refused")
        raise
    headers = request.headers
    webhooks.verify(
        config,
        kind=kind,
        # The signed URL is what Twilio was given: our public base, not this request's Host.
        url=request.app[PUBLIC_URLS].origin + request.raw_path,
        params=params if request.content_type == FORM else [],
        raw_body=raw,
        content_type=request.content_type,
        signature=headers.get("X-Twilio-Signature"),
        seen=RequestSeen(
            path=request.raw_path,
            host=headers.get("Host"),
            forwarded_proto=headers.get("X-Forwarded-Proto"),
            forwarded_host=headers.get("X-Forwarded-Host"),
            forwarded_port=headers.get("X-Forwarded-Port"),
            forwarded_prefix=headers.get("X-Forwarded-Prefix"),
        ),
    )
    return config, params


async def _webhook(request: web.Request, kind: str, receive: Receive) -> None:
    """Refusals are counted by reason, then answered by the error middleware."""
    try:
        config, params = await authenticated(request, kind)
        try:
            await receive(config, params)
        except MissingParameter:
            services_of(request).webhooks.refused(config.id, kind, "refused")
            raise
    except BridgeError as exc:
        request.app[METRICS].webhooks_rejected.labels(kind, exc.code.replace("_", " ")).inc()
        raise


async def inbound_webhook(request: web.Request) -> web.StreamResponse:
    """Answered only once the message is committed: the 200 is the promise to keep it."""
    started = time.perf_counter()
    await _webhook(request, "inbound", services_of(request).inbound.receive)
    request.app[METRICS].ack_latency.observe(time.perf_counter() - started)
    return web.Response(body=TWIML_EMPTY, content_type="text/xml", charset="utf-8")


async def status_webhook(request: web.Request) -> web.StreamResponse:
    await _webhook(request, "status", services_of(request).status.receive)
    return web.Response(status=204)


async def outbound_media(request: web.Request) -> web.StreamResponse:
    """What Twilio fetches for an outbound MMS: exact type and length, GET or HEAD."""
    found = await services_of(request).outbound.media(request.match_info["token"])
    return web.Response(
        body=found.data,
        headers={"Content-Type": found.content_type, "Cache-Control": "private, max-age=3600"},
    )


async def not_found(request: web.Request) -> web.StreamResponse:
    raise NotFound()


def add_public_routes(app: web.Application, urls: PublicUrls) -> None:
    app[PUBLIC_URLS] = urls
    app.router.add_post(urls.inbound_route, inbound_webhook)
    app.router.add_post(urls.status_route, status_webhook)
    app.router.add_get(urls.media_route, outbound_media)  # aiohttp adds HEAD
    app.router.add_route("*", "/{tail:.*}", not_found)
