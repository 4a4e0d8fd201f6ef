"""Typed application keys shared by the fake's handlers."""

from __future__ import annotations

from aiohttp import web

from .state import Credential, FakeState
from .webhooks import Dispatcher

STATE_KEY = web.AppKey("fake_twilio_state", FakeState)
DISPATCHER_KEY = web.AppKey("fake_twilio_dispatcher", Dispatcher)
# Set by the API middleware once a request has authenticated.
CREDENTIAL = web.RequestKey("fake_twilio_credential", Credential)


def base_url_of(request: web.Request) -> str:
    """The fake's public base URL: configured, else the origin this request reached."""
    configured = request.app[STATE_KEY].config.public_base_url
    return (configured or str(request.url.origin())).rstrip("/")
