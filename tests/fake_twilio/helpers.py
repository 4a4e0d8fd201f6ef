"""Shared tools for the fake-Twilio tests: the OpenAPI oracle, a webhook sink, an API caller."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy, MultiDict

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.state import Account

SPEC_PATH = Path(__file__).resolve().parent.parent / "data" / "twilio_api_v2010_messaging.json"
DATA = Path(__file__).resolve().parent / "data"
NUMBERS_SPEC_PATH = DATA / "twilio_api_v2010_incoming_phone_numbers.json"
SERVICES_SPEC_PATH = DATA / "twilio_messaging_v1_services.json"
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
RFC2822_GMT = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000")
ISO8601_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM = "application/x-www-form-urlencoded"

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    """An OpenAPI description copied from twilio-oai (the Messages one by default)."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def response_schema(spec: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    """The JSON schema of one documented answer."""
    answer = spec["paths"][path][method]["responses"][status]
    schema: dict[str, Any] = answer["content"]["application/json"]["schema"]
    return schema


def response_example(
    spec: dict[str, Any], path: str, method: str, status: str, name: str
) -> dict[str, Any]:
    """One documented example answer."""
    answer = spec["paths"][path][method]["responses"][status]
    value: dict[str, Any] = answer["content"]["application/json"]["examples"][name]["value"]
    return value


def schema_errors(
    value: Any, schema: dict[str, Any], spec: dict[str, Any], at: str = "$"
) -> list[str]:
    """Check `value` against the subset of OpenAPI schema rules the spec uses."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return schema_errors(value, spec["components"]["schemas"][name], spec, at)
    if value is None:
        return [] if schema.get("nullable") else [f"{at}: null but not nullable"]
    expected = schema.get("type")
    if expected is not None and not _has_type(value, expected):
        return [f"{at}: {type(value).__name__} is not {expected}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in enum")
    if isinstance(value, str):
        errors.extend(_string_errors(value, schema, at))
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value:
                errors.append(f"{at}.{name}: missing")
            else:
                errors.extend(schema_errors(value[name], sub, spec, f"{at}.{name}"))
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors.extend(schema_errors(item, schema["items"], spec, f"{at}[{index}]"))
    return errors


def _has_type(value: Any, expected: str) -> bool:
    if expected in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, JSON_TYPES[expected])


def _string_errors(value: str, schema: dict[str, Any], at: str) -> list[str]:
    errors = []
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{at}: {value!r} does not match {schema['pattern']}")
    if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 10**9):
        errors.append(f"{at}: length {len(value)} out of bounds")
    if schema.get("format") == "date-time-rfc-2822":
        if RFC2822_GMT.fullmatch(value):
            parsedate_to_datetime(value)
        else:
            errors.append(f"{at}: {value!r} is not an RFC 2822 GMT date")
    if schema.get("format") == "date-time" and not ISO8601_UTC.fullmatch(value):
        errors.append(f"{at}: {value!r} is not an ISO 8601 UTC date")
    return errors


def basic(username: str, password: str) -> dict[str, str]:
    """An Authorization header for HTTP Basic."""
    return {"Authorization": aiohttp.encode_basic_auth(username, password)}


@dataclass
class Reply:
    """An HTTP answer, read fully."""

    status: int
    headers: CIMultiDictProxy[str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class TwilioApi:
    """Calls the fake's REST API as one account, over real HTTP."""

    http: aiohttp.ClientSession
    fake: FakeTwilio
    account: Account

    @property
    def auth(self) -> dict[str, str]:
        return basic(self.account.sid, self.account.auth_token)

    async def request(
        self,
        method: str,
        path: str,
        *,
        data: Sequence[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        params: Sequence[tuple[str, str]] | None = None,
    ) -> Reply:
        url = path if path.startswith("http") else self.fake.base_url + path
        async with self.http.request(
            method,
            url,
            data=list(data) if data is not None else None,
            params=list(params) if params is not None else None,
            headers=self.auth if headers is None else headers,
            allow_redirects=False,
        ) as response:
            return Reply(response.status, response.headers, await response.text())

    def path(self, suffix: str = "") -> str:
        return f"/2010-04-01/Accounts/{self.account.sid}{suffix}"

    async def create(self, *pairs: tuple[str, str], headers: dict[str, str] | None = None) -> Reply:
        return await self.request("POST", self.path("/Messages.json"), data=pairs, headers=headers)

    async def send(self, to: str = "+15551230002", body: str = "hello", **extra: str) -> Reply:
        pairs = [("To", to), ("From", "+15551230001"), ("Body", body), *extra.items()]
        return await self.create(*pairs)

    async def list(self, *params: tuple[str, str]) -> Reply:
        return await self.request("GET", self.path("/Messages.json"), params=params)

    async def fetch(self, sid: str) -> Reply:
        return await self.request("GET", self.path(f"/Messages/{sid}.json"))


@dataclass
class Received:
    """One request the sink got."""

    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def form(self) -> MultiDict[str]:
        return MultiDict(parse_qsl(self.body.decode(), keep_blank_values=True))


Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Sink:
    """A loopback HTTP server standing in for the bridge's public webhook listener."""

    received: list[Received] = field(default_factory=list)
    responders: dict[str, Responder] = field(default_factory=dict)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path_qs: str) -> str:
        return self.base_url + path_qs

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path_qs.split("?")[0] == path]

    async def wait(self, count: int, path: str, within: float = 5.0) -> list[Received]:
        async with asyncio.timeout(within):
            while len(self.at(path)) < count:
                self._event.clear()
                await self._event.wait()
        return self.at(path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.method, request.path_qs, request.headers, body))
        self._event.set()
        responder = self.responders.get(request.path)
        if responder is not None:
            return await responder(request)
        if request.path.startswith("/status"):
            return web.Response(status=204)
        return web.Response(text=TWIML_EMPTY, content_type="text/xml")
