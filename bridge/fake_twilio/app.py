"""Assembly of the fake: the aiohttp application, and running it on a real loopback socket."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from aiohttp import web

from . import api, control, numbers_api
from .context import DISPATCHER_KEY, STATE_KEY
from .formats import API_VERSION
from .models import InboundSpec
from .numbers import Capabilities, HttpMethod, IncomingNumber, MessagingService
from .records import WebhookRecord
from .state import Account, ApiKey, FakeConfig, FakeState, KeyType
from .webhooks import Dispatcher, InboundResult

WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def create_app(state: FakeState | None = None) -> web.Application:
    """Build the fake's application around `state` (a fresh one if not given)."""
    state = state or FakeState()
    app = web.Application(middlewares=[api.api_middleware])
    app[STATE_KEY] = state
    app[DISPATCHER_KEY] = Dispatcher(state)
    api.add_routes(app)
    numbers_api.add_routes(app)
    control.add_routes(app)
    app.cleanup_ctx.append(_dispatcher_ctx)
    return app


async def _dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
    dispatcher = app[DISPATCHER_KEY]
    await dispatcher.start()
    yield
    await dispatcher.close()


class FakeTwilio:
    """A running fake Twilio: where it listens, its state, and shortcuts for tests."""

    def __init__(self, app: web.Application, base_url: str) -> None:
        self.app = app
        self.base_url = base_url

    @property
    def state(self) -> FakeState:
        """The fake's whole in-memory state."""
        return self.app[STATE_KEY]

    @property
    def dispatcher(self) -> Dispatcher:
        """The part that sends callbacks and inbound webhooks."""
        return self.app[DISPATCHER_KEY]

    def account_url(self, account_sid: str) -> str:
        """`{base}/2010-04-01/Accounts/{sid}`, the prefix of an account's resources."""
        return f"{self.base_url}/{API_VERSION}/Accounts/{account_sid}"

    def add_account(
        self,
        sid: str | None = None,
        auth_token: str | None = None,
        *,
        numbers: Iterable[str] = (),
        friendly_name: str = "Fake account",
        whatsapp_senders: Iterable[str] = (),
    ) -> Account:
        """Register an account (SID/token generated when omitted)."""
        return self.state.add_account(
            sid,
            auth_token,
            numbers=list(numbers),
            friendly_name=friendly_name,
            whatsapp_senders=list(whatsapp_senders),
        )

    def add_whatsapp_sender(self, account_sid: str, number: str) -> None:
        """Register an E.164 number of the account as a WhatsApp sender."""
        senders = self.state.accounts[account_sid].whatsapp_senders
        if number not in senders:
            senders.append(number)
        self.state.notify()

    def add_key(self, account_sid: str, kind: KeyType = "standard") -> ApiKey:
        """Register an API key of `kind` for an account."""
        return self.state.add_key(account_sid, kind=kind)

    def add_number(
        self,
        account_sid: str,
        phone_number: str,
        *,
        sms_url: str = "",
        sms_method: HttpMethod = "POST",
        sms_fallback_url: str = "",
        capabilities: Capabilities | None = None,
        service_sid: str | None = None,
    ) -> IncomingNumber:
        """Provision a phone number on an account (an IncomingPhoneNumber, PN…)."""
        number = self.state.directory.add_number(
            account_sid,
            phone_number,
            sms_url=sms_url,
            sms_method=sms_method,
            sms_fallback_url=sms_fallback_url,
            capabilities=capabilities,
            service_sid=service_sid,
        )
        self.state.notify()
        return number

    def add_service(
        self,
        account_sid: str,
        *,
        numbers: Iterable[str] = (),
        inbound_request_url: str | None = None,
        use_inbound_webhook_on_number: bool = False,
        friendly_name: str = "Fake Messaging Service",
        rcs_sender: str | None = None,
    ) -> MessagingService:
        """Create a Messaging Service (MG…) owning `numbers` (E.164, provisioned if new); with
        `rcs_sender` it sends RCS first to phone numbers."""
        service = self.state.directory.add_service(
            account_sid,
            numbers=numbers,
            inbound_request_url=inbound_request_url,
            use_inbound_webhook_on_number=use_inbound_webhook_on_number,
            friendly_name=friendly_name,
            rcs_sender=rcs_sender,
        )
        self.state.notify()
        return service

    async def send_inbound(
        self,
        url: str | None,
        *,
        from_: str,
        to: str,
        body: str = "",
        media: Iterable[tuple[str, bytes]] = (),
        **options: object,
    ) -> InboundResult:
        """Deliver an inbound message; `media` holds (type, bytes), options as /_fake/inbound.

        With `url` None it goes where the number `to` is configured to send it.
        """
        payload: dict[str, object] = {
            "from": from_,
            "to": to,
            "body": body,
            "media": [
                {"content_type": ctype, "data_base64": base64.b64encode(data).decode()}
                for ctype, data in media
            ],
            **options,
        }
        if url is not None:
            payload["url"] = url
        spec = InboundSpec.model_validate(payload)
        return await self.dispatcher.send_inbound(
            spec, self.state.config.public_base_url or self.base_url
        )

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until `predicate()` holds (TimeoutError after `within` seconds)."""
        await self.state.wait_for(predicate, within)

    async def wait_callbacks(
        self, count: int, message_sid: str | None = None, within: float = 5.0
    ) -> list[WebhookRecord]:
        """Wait until at least `count` status callbacks were sent (for one message if given)."""
        await self.wait_for(lambda: len(self.state.callbacks(message_sid)) >= count, within)
        return self.state.callbacks(message_sid)

    async def idle(self, within: float = 5.0) -> None:
        """Wait until no lifecycle or webhook work is running."""
        await self.wait_for(lambda: not self.dispatcher.busy, within)


@asynccontextmanager
async def running_fake_twilio(
    config: FakeConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    accounts: Iterable[tuple[str, str]] = (),
) -> AsyncIterator[FakeTwilio]:
    """Serve the fake on `host:port` (0 = an ephemeral port) for the duration of the block."""
    state = FakeState(config)
    for sid, token in accounts:
        state.add_account(sid, token)
    app = create_app(state)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        shown = "127.0.0.1" if host in WILDCARD_HOSTS else host
        shown = f"[{shown}]" if ":" in shown else shown
        base_url = f"http://{shown}:{bound_port}"
        if state.config.public_base_url is None and host not in WILDCARD_HOSTS:
            state.config.public_base_url = base_url
        yield FakeTwilio(app, base_url)
    finally:
        await runner.cleanup()
