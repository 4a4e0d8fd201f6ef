"""The composition root: the only module that wires everything together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass

import aiohttp
from aiohttp import web

import bridge
from bridge.config import Settings
from bridge.db.claims import Handoff, release_dead_local_claims
from bridge.db.events import Claimed
from bridge.db.notify import Listener
from bridge.db.pool import Database
from bridge.db.sip_deliveries import SipJob
from bridge.db.webhook_counts import RefusalLog
from bridge.errors import BridgeError, ListenFailed
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.netguard import PublicOnlyResolver
from bridge.phones.edge import PhoneEdge
from bridge.runtime.bootstrap import RuntimeSecrets
from bridge.runtime.database import open_database, prepare_schema
from bridge.runtime.health import Health
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
from bridge.sip import DigestAuthenticator, SipEndpoint
from bridge.twilio.client import TwilioClient
from bridge.urls import PublicUrls
from bridge.web import ops
from bridge.web.api import PREFIX, ROUTES
from bridge.web.keys import LISTENER, METRICS, RUNTIME, Runtime, Services
from bridge.web.middleware import (
    ACCESS,
    Access,
    errors_as_json,
    errors_bare,
    observe,
    require_auth,
)
from bridge.web.public import add_public_routes
from bridge.workers.delivery import DeliveryWorker
from bridge.workers.inbound_media import MediaFetcher
from bridge.workers.sender import SendWorker
from bridge.workers.sip_delivery import SipDeliveryWorker
from bridge.workers.status_poll import StatusPoller

log = get_logger(__name__)

USER_AGENT = f"pbx-sms-bridge/{bridge.__version__}"
REFUSALS_FLUSH_SECONDS = 1.0
# A SIP delivery in progress renews its claim with each part; past a few Timer F timeouts
# (32 s each) without that, its worker is gone and another takes the text over.
SIP_STALE_CLAIM_SECONDS = 130.0
Context = Callable[[web.Application], AsyncIterator[None]]


@dataclass
class Infrastructure:
    """What the services were built on, for the workers started after them."""

    db: Database
    listener: Listener
    session: aiohttp.ClientSession
    twilio: TwilioClient
    status: StatusService
    # Fresh events and MESSAGEs, from the services that queue them to this process's workers.
    handoff: Handoff[Claimed]
    phones_handoff: Handoff[SipJob]
    # Set when SIP is on (BRIDGE_SIP_LISTEN): the one user agent, shared by edge and worker.
    sip: SipEndpoint | None = None


def _database(
    settings: Settings, secrets: RuntimeSecrets, runtime: Runtime, infra: list[Infrastructure]
) -> Context:
    async def context(app: web.Application) -> AsyncIterator[None]:
        async with open_database(settings) as opened:
            db = opened.db
            listener = Listener(opened.dsn)
            db.announce = listener.announce
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=200), headers={"User-Agent": USER_AGENT}
            )
            # Tenants name these URLs: unless allowed, only public addresses are reachable.
            media_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=20,
                    resolver=None if settings.media_url_allow_private else PublicOnlyResolver(),
                ),
                headers={"User-Agent": USER_AGENT},
            )
            try:
                version = await prepare_schema(db, settings)
                await listener.start()
                twilio = TwilioClient(
                    session,
                    settings.twilio_api_base,
                    connect_timeout=settings.twilio_connect_timeout,
                    total_timeout=settings.twilio_timeout,
                    observe=app[METRICS].observe_twilio,
                    messaging_api_base=settings.twilio_messaging_api_base,
                )
                refusals = RefusalLog()
                handoff, phones_handoff = Handoff[Claimed](), Handoff[SipJob]()
                runtime.services = build_services(
                    settings,
                    secrets,
                    app[METRICS],
                    db,
                    listener,
                    twilio,
                    media_session,
                    refusals,
                    version,
                    handoff,
                    phones_handoff,
                )
                flushing = asyncio.create_task(_flush_refusals(refusals, db), name="refusals")
                infra.append(
                    Infrastructure(
                        db,
                        listener,
                        session,
                        twilio,
                        runtime.services.status,
                        handoff,
                        phones_handoff,
                    )
                )
                app[METRICS].watch_pool(db.stats)
                try:
                    yield
                finally:
                    flushing.cancel()
                    await asyncio.gather(flushing, return_exceptions=True)
                    with suppress(Exception):
                        await refusals.flush(db)
            finally:
                runtime.stopping.set()
                await media_session.close()
                await session.close()
                await listener.close()

    return context


async def _flush_refusals(refusals: RefusalLog, db: Database) -> None:
    """Refused webhooks are counted in memory and written once a second, in one transaction."""
    while True:
        await asyncio.sleep(REFUSALS_FLUSH_SECONDS)
        try:
            await refusals.flush(db)
        except (OSError, BridgeError) as exc:
            log.warning("refusals.flush_failed", error=str(exc))


def build_services(
    settings: Settings,
    secrets: RuntimeSecrets,
    metrics: Metrics,
    db: Database,
    listener: Listener,
    twilio: TwilioClient,
    media_session: aiohttp.ClientSession,
    refusals: RefusalLog,
    schema_version: int,
    handoff: Handoff[Claimed] | None = None,
    phones_handoff: Handoff[SipJob] | None = None,
) -> Services:
    urls = PublicUrls(settings.public_base_url)
    return Services(
        tenants=TenantService(db, secrets.box, secrets.admin_token),
        sms_configs=SmsConfigService(db, secrets.box, urls, settings.webhook_grace_hours * 3600),
        dialplan=DialplanService(db),
        webhooks=WebhookAuth(db, secrets.box, refusals, urls.prefix),
        inbound=InboundService(
            db,
            metrics,
            media_max_items=settings.media_max_items,
            handoff=handoff,
            phones_handoff=phones_handoff,
        ),
        status=StatusService(db, metrics, handoff),
        messages=MessageService(db, listener),
        outbound=OutboundService(
            db,
            media_session,
            media_max_items=settings.media_max_items,
            media_max_bytes=settings.media_max_bytes,
            media_ttl_seconds=settings.outbound_media_ttl_hours * 3600,
            allow_private_media=settings.media_url_allow_private,
        ),
        credentials=CredentialCheck(db, secrets.box, twilio),
        sip=SipSettingsService(db, secrets.box),
        twilio_setup=TwilioSetupService(db, secrets.box, twilio, urls),
        diagnosis=DiagnosisService(db),
        health=Health(db, schema_version),
    )


def _sip_listener(
    settings: Settings, secrets: RuntimeSecrets, runtime: Runtime, infra: list[Infrastructure]
) -> Context:
    """SIP MESSAGE on UDP and TCP (design §10), when BRIDGE_SIP_LISTEN names an address."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        address = settings.sip_address
        if address is None:
            yield
            return
        (base,) = infra
        services = runtime.services
        advertised = settings.sip_advertised
        assert advertised is not None
        edge = PhoneEdge(
            services.sip,
            services.outbound,
            # Every process with this secret key signs and checks the same nonces.
            DigestAuthenticator(secrets.box.derive("sip digest nonces")),
            app[METRICS],
            host=advertised[0],
        )
        host, port = address
        try:
            endpoint = await SipEndpoint.start(
                host,
                port,
                handler=edge.handle,
                advertise=advertised if settings.sip_advertise else None,
                user_agent=USER_AGENT,
            )
        except OSError as exc:
            raise ListenFailed(
                f"sip_listen (BRIDGE_SIP_LISTEN) {settings.sip_listen}: "
                f"{exc.strerror or exc}; choose a free address or stop what holds it"
            ) from None
        base.sip = endpoint
        runtime.sip_port = endpoint.port
        log.info("listener.sip", address=f"{host}:{endpoint.port}", transports="udp,tcp")
        try:
            yield
        finally:
            await endpoint.close()

    return context


def _workers(settings: Settings, secrets: RuntimeSecrets, infra: list[Infrastructure]) -> Context:
    """Background workers own their tasks: started here, cancelled and awaited here."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        if not settings.run_workers:
            yield
            return
        (base,) = infra
        metrics = app[METRICS]
        async with base.db.connection() as conn:
            await release_dead_local_claims(conn)
        delivery = DeliveryWorker(
            base.db,
            base.listener,
            base.session,
            secrets.box,
            metrics,
            timeout=settings.delivery_timeout,
            max_age_seconds=settings.delivery_max_age_hours * 3600,
            poll_seconds=settings.worker_poll_seconds,
            handoff=base.handoff,
        )
        media = MediaFetcher(
            base.db,
            base.listener,
            base.session,
            secrets.box,
            metrics,
            twilio_api_base=settings.twilio_api_base,
            max_bytes=settings.media_max_bytes,
            attempts=settings.media_fetch_attempts,
            poll_seconds=settings.worker_poll_seconds,
            urls=PublicUrls(settings.public_base_url),
            link_ttl_seconds=settings.sip_media_url_hours * 3600,
        )
        sender = SendWorker(
            base.db,
            base.listener,
            base.twilio,
            secrets.box,
            base.status,
            metrics,
            urls=PublicUrls(settings.public_base_url),
            twilio_timeout=settings.twilio_timeout,
            max_leases=settings.send_concurrency,
            account_concurrency=settings.account_concurrency,
            poll_seconds=settings.worker_poll_seconds,
        )
        status_poller = StatusPoller(
            base.db,
            base.twilio,
            secrets.box,
            base.status,
            metrics,
            quiet_seconds=settings.status_poll_after_seconds,
            max_interval_seconds=settings.status_poll_max_interval_seconds,
            max_age_seconds=settings.status_poll_max_age_hours * 3600,
            twilio_timeout=settings.twilio_timeout,
        )
        tasks = [
            asyncio.create_task(delivery.run(), name="delivery-worker"),
            asyncio.create_task(media.run(), name="media-fetcher"),
            asyncio.create_task(sender.run(), name="send-worker"),
            asyncio.create_task(status_poller.run(), name="status-poller"),
        ]
        if base.sip is not None:
            phones = SipDeliveryWorker(
                base.db,
                base.listener,
                base.sip,
                secrets.box,
                metrics,
                poll_seconds=settings.worker_poll_seconds,
                retry_base_seconds=settings.sip_retry_base_seconds,
                retry_cap_seconds=settings.sip_retry_cap_seconds,
                stale_seconds=SIP_STALE_CLAIM_SECONDS,
                handoff=base.phones_handoff,
            )
            tasks.append(asyncio.create_task(phones.run(), name="sip-delivery"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return context


def create_public_app(runtime: Runtime, metrics: Metrics, settings: Settings) -> web.Application:
    """The Twilio-facing app: webhooks and media only, on the internal API's error table."""
    app = web.Application(
        middlewares=[observe, errors_bare], client_max_size=settings.webhook_max_body_bytes
    )
    app[RUNTIME] = runtime
    app[METRICS] = metrics
    app[LISTENER] = "public"
    add_public_routes(app, PublicUrls(settings.public_base_url))
    return app


def _public_listener(settings: Settings, runtime: Runtime, metrics: Metrics) -> Context:
    async def context(app: web.Application) -> AsyncIterator[None]:
        public = create_public_app(runtime, metrics, settings)
        runner = web.AppRunner(public, access_log=None, shutdown_timeout=settings.shutdown_timeout)
        await runner.setup()
        host, port = settings.public_address
        site = web.TCPSite(
            runner, host, port, reuse_address=True, reuse_port=settings.processes > 1
        )
        try:
            try:
                await site.start()
            except OSError as exc:
                raise ListenFailed(
                    f"public_listen (BRIDGE_PUBLIC_LISTEN) {settings.public_listen}: "
                    f"{exc.strerror or exc}; choose a free address or stop what holds it"
                ) from None
            sockets = [s for s in runner.addresses if isinstance(s, tuple)]
            runtime.public_port = sockets[0][1] if sockets else port
            log.info("listener.public", address=f"{host}:{runtime.public_port}")
            yield
        finally:
            with suppress(Exception):
                await runner.cleanup()

    return context


def create_app(settings: Settings, secrets: RuntimeSecrets) -> web.Application:
    """The internal app; its startup opens the database, the services and the public listener."""
    runtime = Runtime()
    metrics = Metrics()
    # Inline MMS media arrives base64-encoded in the JSON body: allow for it.
    max_body = settings.media_max_bytes * 4 // 3 + 256 * 1024
    app = web.Application(
        middlewares=[observe, errors_as_json, require_auth], client_max_size=max_body
    )
    app[RUNTIME] = runtime
    app[METRICS] = metrics
    app[LISTENER] = "internal"
    app[ops.OPENAPI] = ops.openapi_bytes()
    access: dict[tuple[str, str], Access] = {}
    for path, handler in (
        ("/health", ops.health),
        ("/ready", ops.ready),
        ("/metrics", ops.metrics),
        (PREFIX + "/openapi.json", ops.openapi),
    ):
        app.router.add_get(path, handler)
        access[("GET", path)] = Access(public=True)
        access[("HEAD", path)] = Access(public=True)
    for route in ROUTES:
        app.router.add_route(route.method, PREFIX + route.path, route.serve())
        access[(route.method, PREFIX + route.path)] = Access(admin_only=route.admin_only)
    app[ACCESS] = access

    async def end_streams(_app: web.Application) -> None:
        # Runs before the runner waits for in-flight requests: event streams end now instead
        # of holding the shutdown for its whole timeout.
        runtime.stopping.set()

    app.on_shutdown.append(end_streams)
    infra: list[Infrastructure] = []
    app.cleanup_ctx.append(_database(settings, secrets, runtime, infra))
    app.cleanup_ctx.append(_sip_listener(settings, secrets, runtime, infra))
    app.cleanup_ctx.append(_workers(settings, secrets, infra))
    app.cleanup_ctx.append(_public_listener(settings, runtime, metrics))
    return app
