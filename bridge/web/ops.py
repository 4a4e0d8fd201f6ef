"""Operational endpoints on the internal listener: health, readiness, metrics, OpenAPI."""

from __future__ import annotations

import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.web.api import ROUTES
from bridge.web.keys import METRICS, services_of
from bridge.web.openapi import openapi_document

OPENAPI = web.AppKey("openapi", bytes)


async def health(request: web.Request) -> web.StreamResponse:
    """The process is up and serving; says nothing about its dependencies."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.StreamResponse:
    """Ready when the database answers and its schema is the one this code expects."""
    report = await services_of(request).health.readiness()
    return web.json_response(report, status=200 if report["status"] == "ready" else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


def openapi_bytes() -> bytes:
    return json.dumps(openapi_document(ROUTES), separators=(",", ":")).encode("utf-8")
