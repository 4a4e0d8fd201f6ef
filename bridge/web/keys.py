"""Typed application keys: how handlers reach the services the app factory built."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from bridge.metrics import Metrics
from bridge.services.credentials import CredentialCheck
from bridge.services.diagnosis import DiagnosisService
from bridge.services.dialplan import DialplanService
from bridge.services.inbound import InboundService
from bridge.services.messages import MessageService
from bridge.services.outbound import OutboundService
from bridge.services.sip import SipSettingsService
from bridge.services.sms_configs import SmsConfigService
from bridge.services.status import StatusService
from bridge.services.tenants import TenantService
from bridge.services.twilio_setup import TwilioSetupService
from bridge.services.webhooks import WebhookAuth


class Readiness(Protocol):
    """What `/ready` asks: the process's own dependencies, checked by whoever started it."""

    async def readiness(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class Services:
    """Everything a handler may call."""

    tenants: TenantService
    sms_configs: SmsConfigService
    dialplan: DialplanService
    webhooks: WebhookAuth
    inbound: InboundService
    status: StatusService
    messages: MessageService
    outbound: OutboundService
    credentials: CredentialCheck
    sip: SipSettingsService
    twilio_setup: TwilioSetupService
    diagnosis: DiagnosisService
    health: Readiness


class Runtime:
    """Filled by the app's startup contexts (aiohttp freezes app state before they run)."""

    def __init__(self) -> None:
        self._services: Services | None = None
        self.public_port: int | None = None
        self.sip_port: int | None = None
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
