"""Middleware: request ids, metrics and access logs, errors as JSON, bearer-token auth."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from bridge.errors import (
    BridgeError,
    FieldProblem,
    Forbidden,
    MalformedRequest,
    TenantNotFound,
    Unauthorized,
)
from bridge.log import get_logger
from bridge.services.tenants import Admin, Principal, TenantPrincipal
from bridge.web.http import error_response, status_of
from bridge.web.keys import LISTENER, METRICS, services_of

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def route_name(request: web.Request) -> str:
    """The route template (never the concrete path, which carries ids and tokens)."""
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id, then count, time and log the request."""
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        listener = request.app[LISTENER]
        route = route_name(request)
        metrics = request.app[METRICS]
        metrics.http_requests.labels(listener, route, request.method, str(status)).inc()
        metrics.http_latency.labels(listener, route).observe(elapsed)
        level = log.info if status >= 400 else log.debug
        level(
            "http.request",
            listener=listener,
            method=request.method,
            route=route,
            status=status,
            ms=round(elapsed * 1000, 2),
        )


# Headers whose values reach the database.
_STORED_HEADERS = ("Idempotency-Key", "Last-Event-ID")


def _carries_nul(request: web.Request) -> bool:
    """PostgreSQL text cannot hold U+0000: refuse it at the door instead of failing in SQL."""
    if "\x00" in request.path or "\x00" in request.query_string:
        return True
    if any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        return True
    return any("\x00" in request.headers.get(name, "") for name in _STORED_HEADERS)


# How an error leaves a listener: status, code, message, field problems → the response.
Render = Callable[[int, str, str, Sequence[FieldProblem]], web.StreamResponse]


def bare(status: int, code: str, message: str, details: Sequence[FieldProblem]) -> web.Response:
    """Twilio reads only the status, and an unknown token must say nothing else (design §7)."""
    return web.Response(status=status)


def errors_to(render: Render, *, refuse_nul: bool) -> Middleware:
    """Every error, expected or not, leaves through one table of statuses and ``render``."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if refuse_nul and _carries_nul(request):
                raise MalformedRequest("the path, query or a header contains a NUL character")
            return await handler(request)
        except BridgeError as exc:
            status = status_of(exc)
            if status == 503:
                log.warning("http.unavailable", error=exc.code, message=exc.message)
                return render(503, exc.code, "the database is unavailable; try again", ())
            if status == 500:
                log.error("http.bridge_error", error=exc.code, message=exc.message)
                return render(500, "internal_error", "internal error", ())
            return render(status, exc.code, exc.message, exc.details)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
                exc.status, "http_error"
            )
            return render(exc.status, code, exc.reason, ())
        except ConnectionResetError:
            # The client went away mid-request (aiohttp says so when its body stops short):
            # nothing of it was stored, and there is no one left to answer.
            log.info("http.client_gone", method=request.method, route=route_name(request))
            return render(400, "client_gone", "the client closed the connection", ())
        except Exception:
            log.exception("http.unhandled")
            return render(500, "internal_error", "internal error", ())

    return errors


# The internal API's errors are the JSON shape of design §5; the public listener's are bare,
# and its routes match tokens of URL-safe characters only (any other path, NUL or not, is 404).
errors_as_json = errors_to(error_response, refuse_nul=True)
errors_bare = errors_to(bare, refuse_nul=False)


@dataclass(frozen=True)
class Access:
    """Who may call a route: anyone, any authenticated caller, or the administrator only."""

    public: bool = False
    admin_only: bool = False


ACCESS = web.AppKey("access", dict[tuple[str, str], Access])


@web.middleware
async def require_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the bearer token; enforce admin-only routes and tenant scope."""
    rules = request.app[ACCESS].get((request.method, route_name(request)))
    if rules is None or rules.public:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    principal: Principal | None = None
    if scheme.lower() == "bearer" and token.strip():
        principal = await services_of(request).tenants.authenticate(token.strip())
    if principal is None:
        raise Unauthorized()
    if isinstance(principal, TenantPrincipal):
        if rules.admin_only:
            raise Forbidden()
        scoped = request.match_info.get("tenant_id")
        if scoped is not None and scoped != principal.tenant_id:
            # Another tenant's resources do not exist as far as this caller can tell.
            raise TenantNotFound()
        structlog.contextvars.bind_contextvars(tenant_id=principal.tenant_id)
    else:
        assert isinstance(principal, Admin)
    request[PRINCIPAL] = principal
    return await handler(request)
