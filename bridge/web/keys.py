"""Typed application keys: how handlers reach the services the app factory built."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from bridge.db.notify import Listener
from bridge.db.pool import Database
from bridge.dialplan import DialplanService
from bridge.health import Health
from bridge.inbound import InboundService
from bridge.messages import MessageService
from bridge.metrics import Metrics
from bridge.outbound import OutboundService
from bridge.sms_configs import SmsConfigService
from bridge.status import StatusService
from bridge.tenants import TenantService
from bridge.twilio.client import TwilioClient
from bridge.validation import CredentialCheck


@dataclass(frozen=True)
class Services:
    """Everything a handler may call."""

    db: Database
    tenants: TenantService
    sms_configs: SmsConfigService
    dialplan: DialplanService
    inbound: InboundService
    status: StatusService
    messages: MessageService
    outbound: OutboundService
    credentials: CredentialCheck
    health: Health
    listener: Listener
    http: aiohttp.ClientSession
    twilio: TwilioClient
    schema_version: int


class Runtime:
    """Filled by the app's startup contexts (aiohttp freezes app state before they run)."""

    def __init__(self) -> None:
        self._services: Services | None = None
        self.public_port: int | None = None
        self.stopping = asyncio.Event()

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the app has not started")
        return self._services

    @services.setter
    def services(self, value: Services) -> None:
        self._services = value


RUNTIME = web.AppKey("runtime", Runtime)
METRICS = web.AppKey("metrics", Metrics)
LISTENER = web.AppKey("listener", str)


def services_of(request: web.Request) -> Services:
    return request.app[RUNTIME].services
