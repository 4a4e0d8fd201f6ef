"""The internal API (`/api/v1`): thin handlers and the route table they are served from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter

from bridge.errors import InvalidInput
from bridge.models import (
    ConfigId,
    DeliveryTarget,
    DeliveryTargetPut,
    Direction,
    ExplainRequest,
    Extension,
    InboundExplainRequest,
    InboundRule,
    IssuedToken,
    Message,
    MessageFilter,
    MessageId,
    OptOut,
    OutboundExplainRequest,
    OutboundRule,
    Page,
    SendRequest,
    SipRetried,
    SipSettings,
    SipSettingsPut,
    SmsConfig,
    SmsConfigCreate,
    SmsConfigPatch,
    Tenant,
    TenantCreate,
    TenantId,
    TenantPatch,
    TenantToken,
    TestMessageRequest,
    TokenCreate,
    TokenId,
    Trunk,
    TrunkCreate,
    TrunkId,
    TrunkPatch,
)
from bridge.web.http import model_response, parse_body
from bridge.web.keys import Services, services_of
from bridge.web.stream import events_stream

PREFIX = "/api/v1"
DIRECTIONS: dict[str, Direction] = {"inbound": "inbound", "outbound": "outbound"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ApiRoute:
    """One operation: how it is served, who may call it, and how it is documented."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: Any = None
    response: Any = None
    status: int = 200
    admin_only: bool = False
    query: tuple[str, ...] = ()


def services(request: web.Request) -> Services:
    return services_of(request)


def tenant_id(request: web.Request) -> TenantId:
    return TenantId(request.match_info["tenant_id"])


def paging(request: web.Request) -> tuple[str | None, int]:
    raw = request.query.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 500:
        raise InvalidInput.field("limit", "must be a whole number from 1 to 500")
    return request.query.get("cursor") or None, int(raw)


def no_content() -> web.Response:
    return web.Response(status=204)


# Built once: a TypeAdapter compiles its validator.
TENANT_CREATE = TypeAdapter(TenantCreate)
TENANT_PATCH = TypeAdapter(TenantPatch)
TOKEN_CREATE = TypeAdapter(TokenCreate)
DELIVERY_PUT = TypeAdapter(DeliveryTargetPut)
TRUNK_CREATE = TypeAdapter(TrunkCreate)
TRUNK_PATCH = TypeAdapter(TrunkPatch)
CONFIG_CREATE = TypeAdapter(SmsConfigCreate)
CONFIG_PATCH = TypeAdapter(SmsConfigPatch)
EXTENSIONS = TypeAdapter(list[Extension])
INBOUND_RULES = TypeAdapter(list[InboundRule])
OUTBOUND_RULES = TypeAdapter(list[OutboundRule])
SEND = TypeAdapter(SendRequest)
TEST_MESSAGE = TypeAdapter(TestMessageRequest)
EXPLAIN: TypeAdapter[InboundExplainRequest | OutboundExplainRequest] = TypeAdapter(ExplainRequest)
SIP_PUT = TypeAdapter(SipSettingsPut)


# --- tenants ---------------------------------------------------------------------------------


async def create_tenant(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, TENANT_CREATE)
    return model_response(await services(request).tenants.create(body), 201)


async def list_tenants(request: web.Request) -> web.StreamResponse:
    cursor, limit = paging(request)
    return model_response(await services(request).tenants.list(cursor, limit))


async def get_tenant(request: web.Request) -> web.StreamResponse:
    return model_response(await services(request).tenants.get(tenant_id(request)))


async def patch_tenant(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, TENANT_PATCH)
    return model_response(await services(request).tenants.update(tenant_id(request), body))


async def delete_tenant(request: web.Request) -> web.StreamResponse:
    await services(request).tenants.delete(tenant_id(request))
    return no_content()


async def issue_token(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, TOKEN_CREATE)
    return model_response(
        await services(request).tenants.issue_token(tenant_id(request), body), 201
    )


async def list_tokens(request: web.Request) -> web.StreamResponse:
    return model_response(await services(request).tenants.list_tokens(tenant_id(request)))


async def revoke_token(request: web.Request) -> web.StreamResponse:
    token = TokenId(request.match_info["token_id"])
    await services(request).tenants.revoke_token(tenant_id(request), token)
    return no_content()


async def put_delivery(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, DELIVERY_PUT)
    target = await services(request).tenants.put_delivery_target(tenant_id(request), body)
    return model_response(target)


async def get_delivery(request: web.Request) -> web.StreamResponse:
    return model_response(await services(request).tenants.get_delivery_target(tenant_id(request)))


# --- trunks ----------------------------------------------------------------------------------


def trunk_id(request: web.Request) -> TrunkId:
    return TrunkId(request.match_info["trunk_id"])


async def create_trunk(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, TRUNK_CREATE)
    return model_response(
        await services(request).tenants.create_trunk(tenant_id(request), body), 201
    )


async def list_trunks(request: web.Request) -> web.StreamResponse:
    cursor, limit = paging(request)
    page = await services(request).tenants.list_trunks(tenant_id(request), cursor, limit)
    return model_response(page)


async def get_trunk(request: web.Request) -> web.StreamResponse:
    trunk = await services(request).tenants.get_trunk(tenant_id(request), trunk_id(request))
    return model_response(trunk)


async def patch_trunk(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, TRUNK_PATCH)
    trunk = await services(request).tenants.update_trunk(
        tenant_id(request), trunk_id(request), body
    )
    return model_response(trunk)


async def delete_trunk(request: web.Request) -> web.StreamResponse:
    await services(request).tenants.delete_trunk(tenant_id(request), trunk_id(request))
    return no_content()


# --- SMS configurations ----------------------------------------------------------------------


def config_id(request: web.Request) -> ConfigId:
    return ConfigId(request.match_info["config_id"])


async def number_context(request: web.Request) -> dict[str, object]:
    """Numbers written without + are read in the tenant's default country."""
    country = await services(request).sms_configs.default_country(tenant_id(request))
    return {"default_country": country}


async def create_config(request: web.Request) -> web.StreamResponse:
    context = await number_context(request)
    body = await parse_body(request, CONFIG_CREATE, context)
    return model_response(await services(request).sms_configs.create(tenant_id(request), body), 201)


async def list_configs(request: web.Request) -> web.StreamResponse:
    cursor, limit = paging(request)
    page = await services(request).sms_configs.list(tenant_id(request), cursor, limit)
    return model_response(page)


async def get_config(request: web.Request) -> web.StreamResponse:
    config = await services(request).sms_configs.get(tenant_id(request), config_id(request))
    return model_response(config)


async def patch_config(request: web.Request) -> web.StreamResponse:
    context = await number_context(request)
    body = await parse_body(request, CONFIG_PATCH, context)
    config = await services(request).sms_configs.update(
        tenant_id(request), config_id(request), body
    )
    return model_response(config)


async def delete_config(request: web.Request) -> web.StreamResponse:
    await services(request).sms_configs.delete(tenant_id(request), config_id(request))
    return no_content()


async def rotate_webhook(request: web.Request) -> web.StreamResponse:
    config = await services(request).sms_configs.rotate_webhook(
        tenant_id(request), config_id(request)
    )
    return model_response(config)


# --- extensions and rules --------------------------------------------------------------------


async def get_extensions(request: web.Request) -> web.StreamResponse:
    return model_response(await services(request).dialplan.get_extensions(tenant_id(request)))


async def put_extensions(request: web.Request) -> web.StreamResponse:
    context = await number_context(request)
    body = await parse_body(request, EXTENSIONS, context)
    return model_response(await services(request).dialplan.put_extensions(tenant_id(request), body))


async def get_inbound_rules(request: web.Request) -> web.StreamResponse:
    return model_response(await services(request).dialplan.get_inbound_rules(tenant_id(request)))


async def put_inbound_rules(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, INBOUND_RULES)
    rules = await services(request).dialplan.put_inbound_rules(tenant_id(request), body)
    return model_response(rules)


async def get_outbound_rules(request: web.Request) -> web.StreamResponse:
    return model_response(await services(request).dialplan.get_outbound_rules(tenant_id(request)))


async def put_outbound_rules(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, OUTBOUND_RULES)
    rules = await services(request).dialplan.put_outbound_rules(tenant_id(request), body)
    return model_response(rules)


# --- texts on the phones (SIP) ---------------------------------------------------------------


async def get_sip(request: web.Request) -> web.StreamResponse:
    return model_response(await services(request).sip.get(tenant_id(request)))


async def put_sip(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, SIP_PUT)
    return model_response(await services(request).sip.put(tenant_id(request), body))


async def delete_sip(request: web.Request) -> web.StreamResponse:
    await services(request).sip.delete(tenant_id(request))
    return no_content()


async def sip_retry(request: web.Request) -> web.StreamResponse:
    extension = request.match_info["extension"]
    count = await services(request).sip.retry_extension(tenant_id(request), extension)
    return model_response(SipRetried(extension=extension, due_now=count))


# --- messages, opt-outs, routing ------------------------------------------------------------


def message_id(request: web.Request) -> MessageId:
    return MessageId(request.match_info["message_id"])


async def list_messages(request: web.Request) -> web.StreamResponse:
    cursor, limit = paging(request)
    query = request.query
    direction: Direction | None = None
    if "direction" in query:
        direction = DIRECTIONS.get(query["direction"])
        if direction is None:
            raise InvalidInput.field("direction", "must be inbound or outbound")
    number = query.get("number")
    filters = MessageFilter(
        direction=direction,
        status=query.get("status"),
        config_id=query.get("config_id"),
        number=number,
    )
    page = await services(request).messages.list_messages(
        tenant_id(request), filters, cursor, limit
    )
    return model_response(page)


async def get_message(request: web.Request) -> web.StreamResponse:
    message = await services(request).messages.get(tenant_id(request), message_id(request))
    return model_response(message)


async def get_media(request: web.Request) -> web.StreamResponse:
    raw = request.match_info["index"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 1000:
        raise InvalidInput.field("index", "must be a whole number from 0 to 1000")
    found = await services(request).messages.media(
        tenant_id(request), message_id(request), int(raw)
    )
    return web.Response(body=found.data, headers={"Content-Type": found.content_type})


async def list_opt_outs(request: web.Request) -> web.StreamResponse:
    cursor, limit = paging(request)
    page = await services(request).messages.opt_outs(tenant_id(request), cursor, limit)
    return model_response(page)


async def explain(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, EXPLAIN)
    if isinstance(body, InboundExplainRequest):
        answer = await services(request).inbound.explain(tenant_id(request), body)
    else:
        answer = await services(request).outbound.explain(tenant_id(request), body)
    return web.json_response(answer)


async def send_message(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, SEND)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise InvalidInput.field("Idempotency-Key", "must be 1-200 characters")
    message = await services(request).outbound.accept(tenant_id(request), body, key)
    return model_response(message, 202)


async def validate_config(request: web.Request) -> web.StreamResponse:
    answer = await services(request).credentials.validate(tenant_id(request), config_id(request))
    return web.json_response(answer)


async def test_message(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, TEST_MESSAGE)
    send = SendRequest(from_extension="test", to=body.to, body=body.body)
    message = await services(request).outbound.accept(
        tenant_id(request), send, None, test_config=config_id(request)
    )
    return model_response(message, 202)


T = "/tenants/{tenant_id}"
C = T + "/sms-configs/{config_id}"
PAGED = ("cursor", "limit")

# fmt: off
# One row per operation: method, path, handler, summary, body, response, status, access.
ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute("POST", "/tenants", create_tenant, "Create a tenant", TenantCreate, Tenant, 201,
             admin_only=True),
    ApiRoute("GET", "/tenants", list_tenants, "List tenants", None, Page[Tenant], admin_only=True,
             query=PAGED),
    ApiRoute("GET", T, get_tenant, "Read a tenant", None, Tenant),
    ApiRoute("PATCH", T, patch_tenant, "Change a tenant", TenantPatch, Tenant),
    ApiRoute("DELETE", T, delete_tenant, "Delete a tenant and everything it owns", None, None,
             204, admin_only=True),
    ApiRoute("POST", T + "/tokens", issue_token, "Issue a tenant token (shown once)", TokenCreate,
             IssuedToken, 201, admin_only=True),
    ApiRoute("GET", T + "/tokens", list_tokens, "List a tenant's tokens (never the tokens)",
             None, Page[TenantToken], admin_only=True),
    ApiRoute("DELETE", T + "/tokens/{token_id}", revoke_token, "Revoke a tenant token", None,
             None, 204, admin_only=True),
    ApiRoute("PUT", T + "/delivery", put_delivery, "Set the delivery target", DeliveryTargetPut,
             DeliveryTarget),
    ApiRoute("GET", T + "/delivery", get_delivery, "Read the delivery target (not its secret)",
             None, DeliveryTarget),
    ApiRoute("POST", T + "/trunks", create_trunk, "Create a trunk", TrunkCreate, Trunk, 201),
    ApiRoute("GET", T + "/trunks", list_trunks, "List trunks", None, Page[Trunk], query=PAGED),
    ApiRoute("GET", T + "/trunks/{trunk_id}", get_trunk, "Read a trunk", None, Trunk),
    ApiRoute("PATCH", T + "/trunks/{trunk_id}", patch_trunk, "Rename a trunk", TrunkPatch, Trunk),
    ApiRoute("DELETE", T + "/trunks/{trunk_id}", delete_trunk, "Delete a trunk", None, None, 204),
    ApiRoute("POST", T + "/sms-configs", create_config, "Create an SMS configuration",
             SmsConfigCreate, SmsConfig, 201),
    ApiRoute("GET", T + "/sms-configs", list_configs, "List SMS configurations", None,
             Page[SmsConfig], query=PAGED),
    ApiRoute("GET", C, get_config, "Read an SMS configuration", None, SmsConfig),
    ApiRoute("PATCH", C, patch_config, "Change an SMS configuration", SmsConfigPatch, SmsConfig),
    ApiRoute("DELETE", C, delete_config, "Delete an SMS configuration", None, None, 204),
    ApiRoute("POST", C + "/rotate-webhook", rotate_webhook,
             "Issue a new webhook token; the old one works for the grace period", None, SmsConfig),
    ApiRoute("PUT", T + "/extensions", put_extensions, "Replace all extensions", list[Extension],
             Page[Extension]),
    ApiRoute("GET", T + "/extensions", get_extensions, "List extensions", None, Page[Extension]),
    ApiRoute("PUT", T + "/inbound-rules", put_inbound_rules, "Replace the inbound rules",
             list[InboundRule], Page[InboundRule]),
    ApiRoute("GET", T + "/inbound-rules", get_inbound_rules, "List the inbound rules", None,
             Page[InboundRule]),
    ApiRoute("PUT", T + "/outbound-rules", put_outbound_rules, "Replace the outbound rules",
             list[OutboundRule], Page[OutboundRule]),
    ApiRoute("GET", T + "/outbound-rules", get_outbound_rules, "List the outbound rules", None,
             Page[OutboundRule]),
    ApiRoute("POST", T + "/routing/explain", explain,
             "Which rule and extensions a message would get, and why", ExplainRequest,
             dict[str, object]),
    ApiRoute("POST", T + "/messages", send_message,
             "Send a text from an extension (optional Idempotency-Key header)", SendRequest,
             Message, 202),
    ApiRoute("POST", C + "/validate", validate_config, "Check the credentials against Twilio",
             None, dict[str, object]),
    ApiRoute("POST", C + "/test-message", test_message,
             "Send a test text from this configuration (rules not consulted)",
             TestMessageRequest, Message, 202),
    ApiRoute("PUT", T + "/sip", put_sip,
             "Set the tenant's SIP settings (texts on the phones); passwords are write-only",
             SipSettingsPut, SipSettings),
    ApiRoute("GET", T + "/sip", get_sip, "Read the tenant's SIP settings (never a password)",
             None, SipSettings),
    ApiRoute("DELETE", T + "/sip", delete_sip,
             "Turn SIP off for the tenant; texts waiting for a phone are given up", None, None,
             204),
    ApiRoute("POST", T + "/extensions/{extension}/sip-retry", sip_retry,
             "Send the extension's texts waiting for its phone now (it registered again)",
             None, SipRetried),
    ApiRoute("GET", T + "/messages", list_messages, "List messages, newest first", None,
             Page[Message], query=(*PAGED, "direction", "status", "config_id", "number")),
    ApiRoute("GET", T + "/messages/{message_id}", get_message,
             "Read a message with its media descriptors and status history", None, Message),
    ApiRoute("GET", T + "/messages/{message_id}/media/{index}", get_media,
             "The stored media file, with its content type", None, None),
    ApiRoute("GET", T + "/opt-outs", list_opt_outs, "Remote numbers that opted out", None,
             Page[OptOut], query=PAGED),
    ApiRoute("GET", T + "/events", events_stream,
             "Server-sent events: the events sent to the delivery target, resumable", None, None),
)
# fmt: on
