"""The internal API (`/api/v1`): thin handlers and the route table they are served from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from aiohttp import web
from pydantic import TypeAdapter

from bridge.models import (
    CHANNELS,
    AutoSetup,
    ConfigId,
    CredentialsCheck,
    DeliveryTarget,
    DeliveryTargetPut,
    Diagnosis,
    Direction,
    ExplainRequest,
    Explanation,
    Extension,
    InboundExplainRequest,
    InboundExplanation,
    InboundRule,
    IssuedToken,
    Message,
    MessageFilter,
    MessageId,
    MessageStatus,
    OptOut,
    OutboundExplainRequest,
    OutboundExplanation,
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
    TenantDiagnosis,
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
    TwilioSetup,
    TwilioSetupApplied,
    TwilioSetupRequest,
)
from bridge.twilio.client import TwilioError
from bridge.web.http import model_response, parse_body
from bridge.web.keys import Services, services_of
from bridge.web.params import Param, choice, flag, integer, text
from bridge.web.stream import EVENT_STREAM, LAST_EVENT_ID, LAST_EVENT_ID_QUERY, events_stream

PREFIX = "/api/v1"
DIRECTIONS: dict[str, Direction] = {"inbound": "inbound", "outbound": "outbound"}
STATUSES: dict[str, MessageStatus] = {status: status for status in get_args(MessageStatus)}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ApiRoute:
    """One operation: how it is served, who may call it, and how it is documented.

    ``params``: the query and header parameters (bridge.web.params), which the handler reads
    through the same objects. Path parameters come from ``PATH_PARAMS`` by name (a name not
    there is documented as a plain string). ``response`` is a pydantic model (or a union or
    page of them) for a JSON answer; ``media_type`` names any other answer's type.
    ``query`` lists untyped query names; prefer ``params``."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: Any = None
    response: Any = None
    status: int = 200
    admin_only: bool = False
    query: tuple[str, ...] = ()
    params: tuple[Param[Any], ...] = ()
    media_type: str = "application/json"
    description: str = ""
    # Whether a successful call may change what webhooks are routed by (the default for
    # anything but GET); sends, explanations and checks do not.
    configures: bool = True

    def serve(self) -> Handler:
        """The handler as mounted: one that changes configuration makes this process's
        webhooks see the change at once, not after their cache's second."""
        if self.method == "GET" or not self.configures:
            return self.handler
        handler = self.handler

        async def then_forget(request: web.Request) -> web.StreamResponse:
            response = await handler(request)
            if response.status < 400:
                services_of(request).webhooks.forget()
            return response

        return then_forget


def _path_id(name: str, what: str) -> Param[str]:
    # Not checked beyond being a string: an id of any other shape names nothing (404).
    return Param(name=name, description=what, schema={"type": "string"}, parse=str, where="path")


INDEX = integer("index", "The media item's position, from 0", minimum=0, maximum=1000, where="path")
PATH_PARAMS: Mapping[str, Param[Any]] = {
    param.name: param
    for param in (
        _path_id("tenant_id", "The tenant's id (ten_…)"),
        _path_id("trunk_id", "The trunk's id (trk_…)"),
        _path_id("config_id", "The SMS configuration's id (cfg_…)"),
        _path_id("token_id", "The tenant token's id (tok_…)"),
        _path_id("message_id", "The message's id (msg_…)"),
        _path_id("extension", "The extension, e.g. 101"),
        INDEX,
    )
}
CURSOR = text(
    "cursor", "The previous page's next_cursor; empty or absent: the first page", max_length=200
)
LIMIT = integer("limit", "Items per page", minimum=1, maximum=500, default=100)
PAGED = (CURSOR, LIMIT)
IDEMPOTENCY_KEY = text(
    "Idempotency-Key",
    "Kept 24 h per tenant: a repeat with the same body answers 202 with the same message, "
    "with another body 409",
    min_length=1,
    where="header",
)
MESSAGE_FILTERS = (
    choice("direction", "Only texts in this direction", DIRECTIONS),
    choice("status", "Only texts with this status", STATUSES),
    text("config_id", "Only texts of this SMS configuration (cfg_…)", max_length=100),
    text("number", "Only texts from or to this number, as stored (E.164)", max_length=40),
    choice("channel", "Only texts that travelled on this channel", CHANNELS),
)


def services(request: web.Request) -> Services:
    return services_of(request)


def tenant_id(request: web.Request) -> TenantId:
    return TenantId(request.match_info["tenant_id"])


def paging(request: web.Request) -> tuple[str | None, int]:
    return CURSOR.read(request) or None, LIMIT.value(request)


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
TWILIO_SETUP = TypeAdapter(TwilioSetupRequest)


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
    config = await services(request).sms_configs.create(tenant_id(request), body)
    return model_response(await with_auto_setup(request, config), 201)


async def with_auto_setup(request: web.Request, config: SmsConfig) -> SmsConfig:
    """With ``auto_setup``, Twilio is pointed at the (new) webhook URL now; the configuration
    stands whatever Twilio says, and the answer says what happened."""
    if not config.auto_setup:
        return config
    try:
        applied = await services(request).twilio_setup.apply(config.tenant_id, config.id, "all")
    except TwilioError as exc:
        return config.model_copy(update={"twilio_setup": AutoSetup(ok=False, error=exc.message)})
    return config.model_copy(update={"twilio_setup": AutoSetup(ok=True, changes=applied.changes)})


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
    return model_response(await with_auto_setup(request, config))


async def get_twilio_setup(request: web.Request) -> web.StreamResponse:
    setup = await services(request).twilio_setup.check(tenant_id(request), config_id(request))
    return model_response(setup)


async def post_twilio_setup(request: web.Request) -> web.StreamResponse:
    context = await number_context(request)
    body = await parse_body(request, TWILIO_SETUP, context)
    applied = await services(request).twilio_setup.apply(
        tenant_id(request), config_id(request), body.numbers
    )
    return model_response(applied)


CHECK_TWILIO = flag(
    "check_twilio", "Also read each number's setup from Twilio (design §11's twilio-setup)"
)


def check_twilio(request: web.Request) -> bool:
    return CHECK_TWILIO.value(request)


async def config_diagnosis(request: web.Request) -> web.StreamResponse:
    tenant, config = tenant_id(request), config_id(request)
    twilio = None
    if check_twilio(request):
        twilio = await services(request).twilio_setup.check(tenant, config)
    return model_response(await services(request).diagnosis.config(tenant, config, twilio))


async def tenant_diagnosis(request: web.Request) -> web.StreamResponse:
    tenant = tenant_id(request)
    twilio = None
    if check_twilio(request):
        setup = services(request).twilio_setup
        twilio = [await setup.check(tenant, c) for c in await setup.config_ids(tenant)]
    return model_response(await services(request).diagnosis.tenant(tenant, twilio))


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
    direction, status, config, number, channel = MESSAGE_FILTERS
    filters = MessageFilter(
        direction=direction.read(request),
        status=status.read(request),
        config_id=config.read(request),
        number=number.read(request),
        channel=channel.read(request),
    )
    page = await services(request).messages.list_messages(
        tenant_id(request), filters, cursor, limit
    )
    return model_response(page)


async def get_message(request: web.Request) -> web.StreamResponse:
    message = await services(request).messages.get(tenant_id(request), message_id(request))
    return model_response(message)


async def get_media(request: web.Request) -> web.StreamResponse:
    found = await services(request).messages.media(
        tenant_id(request), message_id(request), INDEX.value(request)
    )
    return web.Response(body=found.data, headers={"Content-Type": found.content_type})


async def list_opt_outs(request: web.Request) -> web.StreamResponse:
    cursor, limit = paging(request)
    page = await services(request).messages.opt_outs(tenant_id(request), cursor, limit)
    return model_response(page)


async def explain(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, EXPLAIN)
    answer: InboundExplanation | OutboundExplanation
    if isinstance(body, InboundExplainRequest):
        answer = await services(request).inbound.explain(tenant_id(request), body)
    else:
        answer = await services(request).outbound.explain(tenant_id(request), body)
    # The keys that do not apply to this decision are left out, as the models describe.
    return model_response(answer, exclude_unset=True)


async def send_message(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, SEND)
    key = IDEMPOTENCY_KEY.read(request)
    message = await services(request).outbound.accept(tenant_id(request), body, key)
    return model_response(message, 202)


async def validate_config(request: web.Request) -> web.StreamResponse:
    answer = await services(request).credentials.validate(tenant_id(request), config_id(request))
    return model_response(answer)


async def test_message(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, TEST_MESSAGE)
    send = SendRequest(from_extension="test", to=body.to, body=body.body)
    message = await services(request).outbound.accept(
        tenant_id(request), send, None, test_config=config_id(request)
    )
    return model_response(message, 202)


T = "/tenants/{tenant_id}"
C = T + "/sms-configs/{config_id}"

# fmt: off
# One row per operation: method, path, handler, summary, body, response, status, access.
ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute("POST", "/tenants", create_tenant, "Create a tenant", TenantCreate, Tenant, 201,
             admin_only=True),
    ApiRoute("GET", "/tenants", list_tenants, "List tenants", None, Page[Tenant], admin_only=True,
             params=PAGED),
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
    ApiRoute("GET", T + "/trunks", list_trunks, "List trunks", None, Page[Trunk], params=PAGED),
    ApiRoute("GET", T + "/trunks/{trunk_id}", get_trunk, "Read a trunk", None, Trunk),
    ApiRoute("PATCH", T + "/trunks/{trunk_id}", patch_trunk, "Rename a trunk", TrunkPatch, Trunk),
    ApiRoute("DELETE", T + "/trunks/{trunk_id}", delete_trunk, "Delete a trunk", None, None, 204),
    ApiRoute("POST", T + "/sms-configs", create_config, "Create an SMS configuration",
             SmsConfigCreate, SmsConfig, 201),
    ApiRoute("GET", T + "/sms-configs", list_configs, "List SMS configurations", None,
             Page[SmsConfig], params=PAGED),
    ApiRoute("GET", C, get_config, "Read an SMS configuration", None, SmsConfig),
    ApiRoute("PATCH", C, patch_config, "Change an SMS configuration", SmsConfigPatch, SmsConfig),
    ApiRoute("DELETE", C, delete_config, "Delete an SMS configuration", None, None, 204),
    ApiRoute("POST", C + "/rotate-webhook", rotate_webhook,
             "Issue a new webhook token; the old one works for the grace period", None, SmsConfig),
    ApiRoute("GET", C + "/twilio-setup", get_twilio_setup,
             "Where each number's texts go, read from Twilio", None, TwilioSetup),
    ApiRoute("POST", C + "/twilio-setup", post_twilio_setup,
             "Point the numbers' incoming texts at this configuration's webhook URL in Twilio",
             TwilioSetupRequest, TwilioSetupApplied),
    ApiRoute("GET", C + "/diagnosis", config_diagnosis,
             "Why texts don't arrive or go out, for this configuration", None, Diagnosis,
             params=(CHECK_TWILIO,)),
    ApiRoute("GET", T + "/diagnosis", tenant_diagnosis,
             "Why texts don't arrive or go out, for every configuration of the tenant", None,
             TenantDiagnosis, params=(CHECK_TWILIO,)),
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
             Explanation, configures=False),
    ApiRoute("POST", T + "/messages", send_message,
             "Send a text from an extension (optional Idempotency-Key header)", SendRequest,
             Message, 202, params=(IDEMPOTENCY_KEY,), configures=False),
    ApiRoute("POST", C + "/validate", validate_config, "Check the credentials against Twilio",
             None, CredentialsCheck, configures=False),
    ApiRoute("POST", C + "/test-message", test_message,
             "Send a test text from this configuration (rules not consulted)",
             TestMessageRequest, Message, 202, configures=False),
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
             None, SipRetried, configures=False),
    ApiRoute("GET", T + "/messages", list_messages, "List messages, newest first", None,
             Page[Message], params=(*PAGED, *MESSAGE_FILTERS)),
    ApiRoute("GET", T + "/messages/{message_id}", get_message,
             "Read a message with its media descriptors and status history", None, Message),
    ApiRoute("GET", T + "/messages/{message_id}/media/{index}", get_media,
             "The stored media file, with its content type", None, None,
             media_type="application/octet-stream",
             description="The body is the file; Content-Type is the item's own type."),
    ApiRoute("GET", T + "/opt-outs", list_opt_outs, "Remote numbers that opted out", None,
             Page[OptOut], params=PAGED),
    ApiRoute("GET", T + "/events", events_stream,
             "Server-sent events: the events sent to the delivery target, resumable", None, None,
             params=(LAST_EVENT_ID, LAST_EVENT_ID_QUERY), media_type="text/event-stream",
             description=EVENT_STREAM),
)
# fmt: on
