"""The control API under /_fake/: set the fake up, steer it, and read what it saw and sent."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .context import DISPATCHER_KEY, STATE_KEY, base_url_of
from .faults import Fault
from .models import (
    AccountSpec,
    CallbackSpec,
    ConfigPatch,
    FaultsSpec,
    InboundSpec,
    KeySpec,
    NumberSpec,
    ResetSpec,
    ServiceSpec,
)
from .numbers import Capabilities, IncomingNumber, MessagingService
from .records import Attempt, JSONValue
from .state import Account, ApiKey, FakeState, Message
from .webhooks import InboundResult, Unroutable

PREFIX = "/_fake"
M = TypeVar("M", bound=BaseModel)


def add_routes(app: web.Application) -> None:
    """Register the control routes."""
    router = app.router
    router.add_get(f"{PREFIX}/state", get_state)
    router.add_post(f"{PREFIX}/accounts", post_account)
    router.add_post(f"{PREFIX}/accounts/{{sid}}/keys", post_key)
    router.add_get(f"{PREFIX}/numbers", get_numbers)
    router.add_post(f"{PREFIX}/numbers", post_number)
    router.add_get(f"{PREFIX}/services", get_services)
    router.add_post(f"{PREFIX}/services", post_service)
    router.add_get(f"{PREFIX}/config", get_config)
    router.add_patch(f"{PREFIX}/config", patch_config)
    router.add_post(f"{PREFIX}/faults", post_faults)
    router.add_delete(f"{PREFIX}/faults", delete_faults)
    router.add_get(f"{PREFIX}/requests", get_requests)
    router.add_get(f"{PREFIX}/messages", get_messages)
    router.add_get(f"{PREFIX}/messages/{{sid}}", get_message)
    router.add_post(f"{PREFIX}/messages/{{sid}}/callbacks", post_callback)
    router.add_get(f"{PREFIX}/webhooks", get_webhooks)
    router.add_get(f"{PREFIX}/callbacks", get_callbacks)
    router.add_post(f"{PREFIX}/webhooks/{{index:\\d+}}/resend", post_resend)
    router.add_get(f"{PREFIX}/media-fetches", get_media_fetches)
    router.add_post(f"{PREFIX}/inbound", post_inbound)
    router.add_post(f"{PREFIX}/reset", post_reset)


def account_json(account: Account) -> dict[str, JSONValue]:
    """Control-API view of an account (includes its token: this is a test double)."""
    return {
        "sid": account.sid,
        "auth_token": account.auth_token,
        "friendly_name": account.friendly_name,
        "status": account.status,
        "numbers": list(account.numbers),
        "whatsapp_senders": list(account.whatsapp_senders),
    }


def key_json(key: ApiKey) -> dict[str, JSONValue]:
    """Control-API view of an API key."""
    return {"sid": key.sid, "secret": key.secret, "account_sid": key.account_sid, "kind": key.kind}


def number_json(number: IncomingNumber) -> dict[str, JSONValue]:
    """The IncomingPhoneNumber resource plus its Messaging Service (Twilio shows that elsewhere)."""
    return {**number.resource(), "messaging_service_sid": number.service_sid}


def service_json(
    state: FakeState, service: MessagingService, base_url: str
) -> dict[str, JSONValue]:
    """The Messaging Service resource plus its numbers."""
    numbers: list[JSONValue] = [n.phone_number for n in state.directory.service_numbers(service)]
    return {**service.resource(base_url), "numbers": numbers, "rcs_sender": service.rcs_sender}


def message_json(message: Message) -> dict[str, JSONValue]:
    """The message resource plus what only the fake knows (callback URL, raw params, media)."""
    document = message.resource()
    document["status_callback"] = message.status_callback
    document["content_sid"] = message.content_sid
    document["content_variables"] = message.content_variables
    document["params"] = [[k, v] for k, v in message.params]
    document["media"] = [
        {
            "sid": m.sid,
            "content_type": m.content_type,
            "source_url": m.source_url,
            "size": None if m.data is None else len(m.data),
        }
        for m in message.media
    ]
    return document


def twiml_ok(answer: Attempt | None) -> bool:
    """Whether an answer is what Twilio wants for "no reply": 200, XML, root <Response>."""
    if answer is None or answer.status != 200 or answer.content_type is None:
        return False
    media_type = answer.content_type.split(";")[0].strip().lower()
    if media_type not in ("text/xml", "application/xml"):
        return False
    try:
        return ET.fromstring(answer.body).tag == "Response"
    except ET.ParseError:
        return False


def inbound_json(result: InboundResult) -> dict[str, JSONValue]:
    """Control-API view of an inbound delivery."""
    return {
        "message_sid": result.message.sid,
        "message": message_json(result.message),
        "webhook": result.webhook.to_json(),
        "answer": None if result.webhook.answer is None else result.webhook.answer.to_json(),
        "twiml_ok": twiml_ok(result.webhook.answer),
        "fallback": None if result.fallback is None else result.fallback.to_json(),
        "routed_by": result.route,
    }


def _problem(status: int, message: str, details: JSONValue = None) -> web.Response:
    return web.json_response({"error": message, "details": details}, status=status)


async def _parse(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        details: JSONValue = [
            {"loc": ".".join(str(part) for part in error["loc"]), "msg": error["msg"]}
            for error in exc.errors()
        ]
        raise web.HTTPUnprocessableEntity(
            text=web.json_response({"error": "invalid body", "details": details}).text,
            content_type="application/json",
        ) from exc


def _state(request: web.Request) -> FakeState:
    return request.app[STATE_KEY]


async def get_state(request: web.Request) -> web.Response:
    """Overview: config, accounts, counts."""
    state = _state(request)
    return web.json_response(
        {
            "config": _config_json(state),
            "accounts": [account_json(a) for a in state.accounts.values()],
            "keys": [key_json(k) for k in state.keys.values()],
            "counts": {
                "numbers": len(state.directory.numbers),
                "services": len(state.directory.services),
                "messages": len(state.messages),
                "requests": len(state.requests),
                "webhooks": len(state.webhooks),
                "faults_pending": state.faults.pending(),
            },
            "busy": request.app[DISPATCHER_KEY].busy,
        }
    )


async def post_account(request: web.Request) -> web.Response:
    """Register an account → 201 with its SID and token."""
    spec = await _parse(request, AccountSpec)
    account = _state(request).add_account(
        spec.sid,
        spec.auth_token,
        friendly_name=spec.friendly_name,
        numbers=spec.numbers,
        status=spec.status,
        whatsapp_senders=spec.whatsapp_senders,
    )
    return web.json_response(account_json(account), status=201)


async def post_key(request: web.Request) -> web.Response:
    """Register an API key (standard or main) for an account → 201."""
    spec = await _parse(request, KeySpec)
    try:
        key = _state(request).add_key(
            request.match_info["sid"], kind=spec.kind, sid=spec.sid, secret=spec.secret
        )
    except KeyError:
        return _problem(404, "unknown account")
    return web.json_response(key_json(key), status=201)


async def get_numbers(request: web.Request) -> web.Response:
    """Every provisioned number, `?account_sid=…` for one account's."""
    directory = _state(request).directory
    account_sid = request.query.get("account_sid")
    numbers = [
        number_json(n)
        for n in directory.numbers.values()
        if account_sid is None or n.account_sid == account_sid
    ]
    return web.json_response({"numbers": numbers})


async def post_number(request: web.Request) -> web.Response:
    """Provision a number on an account (optionally into a service) → 201 with its resource."""
    spec = await _parse(request, NumberSpec)
    state = _state(request)
    if spec.account_sid not in state.accounts:
        return _problem(404, "unknown account")
    try:
        number = state.directory.add_number(
            spec.account_sid,
            spec.phone_number,
            sid=spec.sid,
            friendly_name=spec.friendly_name,
            capabilities=Capabilities(**spec.capabilities.model_dump()),
            sms_url=spec.sms_url,
            sms_method=spec.sms_method,
            sms_fallback_url=spec.sms_fallback_url,
            sms_fallback_method=spec.sms_fallback_method,
            status_callback=spec.status_callback,
            voice_url=spec.voice_url,
            service_sid=spec.messaging_service_sid,
        )
    except KeyError:
        return _problem(404, "unknown Messaging Service of this account")
    except ValueError as exc:
        return _problem(409, str(exc))
    state.notify()
    return web.json_response(number_json(number), status=201)


async def get_services(request: web.Request) -> web.Response:
    """Every Messaging Service with its numbers, `?account_sid=…` for one account's."""
    state = _state(request)
    account_sid = request.query.get("account_sid")
    services = [
        service_json(state, s, base_url_of(request))
        for s in state.directory.services.values()
        if account_sid is None or s.account_sid == account_sid
    ]
    return web.json_response({"services": services})


async def post_service(request: web.Request) -> web.Response:
    """Create a Messaging Service owning some numbers → 201 with its resource and numbers."""
    spec = await _parse(request, ServiceSpec)
    state = _state(request)
    if spec.account_sid not in state.accounts:
        return _problem(404, "unknown account")
    try:
        service = state.directory.add_service(
            spec.account_sid,
            sid=spec.sid,
            friendly_name=spec.friendly_name,
            inbound_request_url=spec.inbound_request_url,
            inbound_method=spec.inbound_method,
            fallback_url=spec.fallback_url,
            fallback_method=spec.fallback_method,
            status_callback=spec.status_callback,
            use_inbound_webhook_on_number=spec.use_inbound_webhook_on_number,
            numbers=spec.numbers,
            rcs_sender=spec.rcs_sender,
        )
    except KeyError as exc:
        return _problem(404, f"unknown number {exc.args[0]}")
    except ValueError as exc:
        return _problem(409, str(exc))
    state.notify()
    return web.json_response(service_json(state, service, base_url_of(request)), status=201)


def _config_json(state: FakeState) -> dict[str, JSONValue]:
    config = state.config
    return {name: getattr(config, name) for name in ConfigPatch.model_fields}


async def get_config(request: web.Request) -> web.Response:
    """Current knobs."""
    return web.json_response(_config_json(_state(request)))


async def patch_config(request: web.Request) -> web.Response:
    """Change knobs (latency, callback_delay, reorder/duplicate callbacks, ...)."""
    spec = await _parse(request, ConfigPatch)
    state = _state(request)
    for name, value in spec.model_dump(exclude_unset=True).items():
        setattr(state.config, name, value)
    return web.json_response(_config_json(state))


async def post_faults(request: web.Request) -> web.Response:
    """Queue faults for the next requests and/or set (or with null, stop) the random mode."""
    spec = await _parse(request, FaultsSpec)
    faults = _state(request).faults
    for item in spec.next:
        faults.add_next(Fault(item.kind, item.delay), item.count, item.operations)
    if spec.random is not None:
        mode = spec.random
        faults.set_random(
            mode.probability,
            mode.kinds,
            seed=mode.seed,
            operations=mode.operations,
            delay=mode.delay,
        )
    elif "random" in spec.model_fields_set:
        faults.stop_random()
    return web.json_response({"pending": faults.pending()})


async def delete_faults(request: web.Request) -> web.Response:
    """Stop all fault injection."""
    _state(request).faults.clear()
    return web.Response(status=204)


async def get_requests(request: web.Request) -> web.Response:
    """API requests received, optionally `?operation=create|fetch|list|...`."""
    operation = request.query.get("operation")
    records = [
        r.to_json()
        for r in _state(request).requests
        if operation is None or r.operation == operation
    ]
    return web.json_response({"requests": records})


async def get_messages(request: web.Request) -> web.Response:
    """Every stored message, oldest first."""
    messages = sorted(_state(request).messages.values(), key=lambda m: m.seq)
    return web.json_response({"messages": [message_json(m) for m in messages]})


async def get_message(request: web.Request) -> web.Response:
    """One stored message."""
    message = _state(request).messages.get(request.match_info["sid"])
    if message is None:
        return _problem(404, "unknown message")
    return web.json_response(message_json(message))


async def post_callback(request: web.Request) -> web.Response:
    """Send one status callback now (optionally moving the resource to that status too)."""
    spec = await _parse(request, CallbackSpec)
    message = _state(request).messages.get(request.match_info["sid"])
    if message is None:
        return _problem(404, "unknown message")
    if message.status_callback is None:
        return _problem(409, "message has no StatusCallback")
    dispatcher = request.app[DISPATCHER_KEY]
    if spec.apply:
        dispatcher.apply_status(message, spec.status, spec.error_code)
    record = await dispatcher.send_status(message, spec.status, spec.error_code)
    return web.json_response(None if record is None else record.to_json())


def _webhooks(request: web.Request, kind: str | None) -> web.Response:
    sid = request.query.get("message_sid")
    records = [
        {"index": index, **w.to_json()}
        for index, w in enumerate(_state(request).webhooks)
        if (kind is None or w.kind == kind) and (sid is None or w.message_sid == sid)
    ]
    return web.json_response({"webhooks": records})


async def get_webhooks(request: web.Request) -> web.Response:
    """Webhooks sent, `?kind=status|inbound|fallback&message_sid=…`, with their answers."""
    return _webhooks(request, request.query.get("kind"))


async def get_callbacks(request: web.Request) -> web.Response:
    """Status callbacks sent, `?message_sid=…`, with their answers."""
    return _webhooks(request, "status")


async def post_resend(request: web.Request) -> web.Response:
    """Send webhook number `index` again, byte for byte (as a Twilio retry would)."""
    webhooks = _state(request).webhooks
    index = int(request.match_info["index"])
    if index >= len(webhooks):
        return _problem(404, "unknown webhook")
    record = await request.app[DISPATCHER_KEY].resend(webhooks[index])
    return web.json_response({"index": len(webhooks) - 1, **record.to_json()})


async def get_media_fetches(request: web.Request) -> web.Response:
    """HEAD/GET requests the fake made to outbound MediaUrls."""
    return web.json_response(
        {"media_fetches": [f.to_json() for f in _state(request).media_fetches]}
    )


async def post_inbound(request: web.Request) -> web.Response:
    """Deliver an inbound message (to `url`, else as its number routes) and report the answer."""
    spec = await _parse(request, InboundSpec)
    try:
        result = await request.app[DISPATCHER_KEY].send_inbound(spec, base_url_of(request))
    except Unroutable as exc:
        return _problem(409, str(exc))
    except LookupError as exc:
        return _problem(404, str(exc))
    except ValueError as exc:
        return _problem(422, str(exc))
    return web.json_response(inbound_json(result))


async def post_reset(request: web.Request) -> web.Response:
    """Stop lifecycles; forget messages, records, faults (and accounts unless kept)."""
    spec = await _parse(request, ResetSpec)
    await request.app[DISPATCHER_KEY].cancel_pending()
    _state(request).reset(keep_accounts=spec.keep_accounts)
    return web.Response(status=204)
