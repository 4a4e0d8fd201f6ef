"""The fake's phone-number APIs: IncomingPhoneNumbers (2010-04-01) and Messaging Services (v1).

Both sit behind the same middleware as the Messages API: HTTP Basic with the auth token or an
API key, faults, records. An account only ever sees its own numbers and services; any other
SID is a 404, as Twilio answers.
"""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDict

from .context import CREDENTIAL, STATE_KEY, base_url_of
from .formats import ACCOUNTS_PREFIX, SERVICES_PREFIX
from .listing import BadQuery, build_meta_page, build_page, parse_number_filter, parse_page
from .magic import error_response, not_found
from .numbers import IncomingNumber, MessagingService
from .records import utcnow
from .validation import Changes, Problem, validate_number_update, validate_service_update

_NUMBERS = f"{ACCOUNTS_PREFIX}/{{AccountSid}}/IncomingPhoneNumbers"


def add_routes(app: web.Application) -> None:
    """Register the IncomingPhoneNumbers and Services routes (names select fault operations)."""
    router = app.router
    router.add_get(f"{_NUMBERS}.json", list_numbers, name="numbers_list")
    router.add_get(f"{_NUMBERS}/{{Sid}}.json", fetch_number, name="numbers_fetch")
    router.add_post(f"{_NUMBERS}/{{Sid}}.json", update_number, name="numbers_update")
    router.add_get(f"{SERVICES_PREFIX}/{{Sid}}", fetch_service, name="service_fetch")
    router.add_post(f"{SERVICES_PREFIX}/{{Sid}}", update_service, name="service_update")
    router.add_get(
        f"{SERVICES_PREFIX}/{{ServiceSid}}/PhoneNumbers",
        list_service_numbers,
        name="service_numbers",
    )


async def list_numbers(request: web.Request) -> web.Response:
    """GET …/IncomingPhoneNumbers.json with PhoneNumber/FriendlyName filters and paging."""
    directory = request.app[STATE_KEY].directory
    try:
        filters = parse_number_filter(request.query)
        page = parse_page(request.query)
    except BadQuery as exc:
        return error_response(400, 20001, str(exc))
    account_sid = request.match_info["AccountSid"]
    items = [n for n in directory.account_numbers(account_sid) if filters.matches(n)]
    document = build_page(
        path=request.path,
        key="incoming_phone_numbers",
        filters=filters.echoed,
        items=items,
        sid_of=lambda n: n.sid,
        render=lambda n: n.resource(),
        page=page,
    )
    return web.json_response(document)


async def fetch_number(request: web.Request) -> web.Response:
    """GET …/IncomingPhoneNumbers/{Sid}.json."""
    number = _number(request)
    return not_found(request.path) if number is None else web.json_response(number.resource())


async def update_number(request: web.Request) -> web.Response:
    """POST …/IncomingPhoneNumbers/{Sid}.json: change its webhooks, methods or name."""
    number = _number(request)
    if number is None:
        return not_found(request.path)
    checked = validate_number_update(await _form(request))
    if isinstance(checked, Problem):
        return error_response(400, checked.code, checked.message)
    _apply(number, checked)
    return web.json_response(number.resource())


async def fetch_service(request: web.Request) -> web.Response:
    """GET /v1/Services/{Sid}."""
    service = _service(request, "Sid")
    if service is None:
        return _service_not_found(request)
    return web.json_response(service.resource(base_url_of(request)))


async def update_service(request: web.Request) -> web.Response:
    """POST /v1/Services/{Sid}: change its inbound webhook, fallback, callback or settings."""
    service = _service(request, "Sid")
    if service is None:
        return _service_not_found(request)
    checked = validate_service_update(await _form(request))
    if isinstance(checked, Problem):
        return error_response(400, checked.code, checked.message)
    _apply(service, checked)
    return web.json_response(service.resource(base_url_of(request)))


async def list_service_numbers(request: web.Request) -> web.Response:
    """GET /v1/Services/{ServiceSid}/PhoneNumbers: the numbers in the service's sender pool."""
    service = _service(request, "ServiceSid")
    if service is None:
        return _service_not_found(request)
    try:
        page = parse_page(request.query)
    except BadQuery as exc:
        return error_response(400, 20001, str(exc))
    base_url = base_url_of(request)
    document = build_meta_page(
        base_url=base_url,
        path=request.path,
        key="phone_numbers",
        items=request.app[STATE_KEY].directory.service_numbers(service),
        sid_of=lambda n: n.sid,
        render=lambda n: n.service_resource(base_url),
        page=page,
    )
    return web.json_response(document)


def _number(request: web.Request) -> IncomingNumber | None:
    directory = request.app[STATE_KEY].directory
    return directory.find_number(request.match_info["AccountSid"], request.match_info["Sid"])


def _service(request: web.Request, key: str) -> MessagingService | None:
    directory = request.app[STATE_KEY].directory
    return directory.find_service(request[CREDENTIAL].account_sid, request.match_info[key])


def _service_not_found(request: web.Request) -> web.Response:
    # The newer APIs name the resource without their version prefix.
    return not_found(request.path.removeprefix("/v1"))


async def _form(request: web.Request) -> MultiDict[str]:
    form = await request.post()
    return MultiDict((k, v) for k, v in form.items() if isinstance(v, str))


def _apply(resource: IncomingNumber | MessagingService, changes: Changes) -> None:
    for attribute, value in changes.items():
        setattr(resource, attribute, value)
    resource.updated = utcnow()
