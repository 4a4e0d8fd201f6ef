"""The composition root: the only module that wires everything together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import suppress

import aiohttp
from aiohttp import web

import bridge
from bridge.bootstrap import RuntimeSecrets
from bridge.config import Settings
from bridge.db.claims import release_dead_local_claims
from bridge.db.embedded import EmbeddedPostgres
from bridge.db.migrate import code_version, migrate, schema_version
from bridge.db.notify import Listener
from bridge.db.pool import Database
from bridge.delivery import DeliveryWorker
from bridge.dialplan import DialplanService
from bridge.errors import BridgeError, DatabaseUnavailable, ListenFailed, SchemaTooNew
from bridge.health import Health
from bridge.inbound import InboundService
from bridge.log import get_logger
from bridge.media import MediaFetcher
from bridge.messages import MessageService
from bridge.metrics import Metrics
from bridge.netguard import PublicOnlyResolver
from bridge.outbound import OutboundService
from bridge.sender import SendWorker
from bridge.sms_configs import SmsConfigService
from bridge.status import StatusService
from bridge.tenants import TenantService
from bridge.twilio.client import TwilioClient
from bridge.validation import CredentialCheck
from bridge.web import ops
from bridge.web.api import PREFIX, ROUTES
from bridge.web.keys import LISTENER, METRICS, RUNTIME, Runtime, Services
from bridge.web.middleware import ACCESS, Access, errors_as_json, observe, require_auth
from bridge.web.public import add_public_routes

log = get_logger(__name__)

CONNECT_ATTEMPTS = 10
USER_AGENT = f"pbx-sms-bridge/{bridge.__version__}"
Context = Callable[[web.Application], AsyncIterator[None]]


class SchemaBehind(BridgeError):
    """The database schema is older than this code and migrating on start is off."""

    code = "schema_behind"


async def connect_with_retry(settings: Settings, dsn: str) -> Database:
    """Wait for a database that is still starting, as after a host reboot, before giving up."""
    delay = 0.5
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            return await Database.connect(
                dsn,
                min_size=settings.db_pool_min,
                max_size=settings.db_pool_max,
                slow_query_ms=settings.db_slow_query_ms,
            )
        except DatabaseUnavailable as exc:
            if attempt == CONNECT_ATTEMPTS:
                raise
            log.warning("db.connect_retry", attempt=attempt, error=exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


async def prepare_schema(db: Database, settings: Settings) -> int:
    """Migrate (or, when told not to, insist the schema is already current)."""
    latest = code_version()
    async with db.connection() as conn:
        if settings.migrate_on_start:
            await migrate(conn)
            return latest
        current = await schema_version(conn)
    if current > latest:
        raise SchemaTooNew(f"the database schema is at version {current}, this code at {latest}")
    if current < latest:
        raise SchemaBehind(
            f"the database schema is at version {current} and this code needs {latest}: "
            "run sms-bridge migrate"
        )
    return latest


def _database(settings: Settings, secrets: RuntimeSecrets, runtime: Runtime) -> Context:
    async def context(app: web.Application) -> AsyncIterator[None]:
        embedded: EmbeddedPostgres | None = None
        dsn = settings.database_url.get_secret_value()
        if not dsn:
            embedded = EmbeddedPostgres(settings.data_dir)
            dsn = await asyncio.to_thread(embedded.start)
        try:
            db = await connect_with_retry(settings, dsn)
            listener = Listener(dsn)
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
                runtime.services = build_services(
                    settings, secrets, app[METRICS], db, listener, session, media_session, version
                )
                app[METRICS].watch_pool(db.stats)
                yield
            finally:
                runtime.stopping.set()
                await media_session.close()
                await session.close()
                await listener.close()
                await db.close()
        finally:
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)

    return context


def build_services(
    settings: Settings,
    secrets: RuntimeSecrets,
    metrics: Metrics,
    db: Database,
    listener: Listener,
    session: aiohttp.ClientSession,
    media_session: aiohttp.ClientSession,
    schema_version: int,
) -> Services:
    inbound = InboundService(db, secrets.box, metrics, media_max_items=settings.media_max_items)
    sms_configs = SmsConfigService(
        db, secrets.box, settings.public_base_url, settings.webhook_grace_hours * 3600
    )
    twilio = TwilioClient(
        session,
        settings.twilio_api_base,
        connect_timeout=settings.twilio_connect_timeout,
        total_timeout=settings.twilio_timeout,
        observe=metrics.observe_twilio,
    )
    return Services(
        db=db,
        tenants=TenantService(db, secrets.box, secrets.admin_token),
        sms_configs=sms_configs,
        dialplan=DialplanService(db),
        inbound=inbound,
        status=StatusService(db, metrics),
        messages=MessageService(db, inbound),
        outbound=OutboundService(
            db,
            sms_configs,
            media_session,
            media_max_items=settings.media_max_items,
            media_max_bytes=settings.media_max_bytes,
            media_ttl_seconds=settings.outbound_media_ttl_hours * 3600,
            allow_private_media=settings.media_url_allow_private,
        ),
        credentials=CredentialCheck(db, secrets.box, twilio),
        health=Health(db, schema_version),
        listener=listener,
        http=session,
        twilio=twilio,
        schema_version=schema_version,
    )


def _workers(settings: Settings, secrets: RuntimeSecrets, runtime: Runtime) -> Context:
    """Background workers own their tasks: started here, cancelled and awaited here."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        if not settings.run_workers:
            yield
            return
        services = runtime.services
        metrics = app[METRICS]
        session = services.http
        async with services.db.connection() as conn:
            await release_dead_local_claims(conn)
        delivery = DeliveryWorker(
            services.db,
            services.listener,
            session,
            secrets.box,
            metrics,
            timeout=settings.delivery_timeout,
            max_age_seconds=settings.delivery_max_age_hours * 3600,
            poll_seconds=settings.worker_poll_seconds,
        )
        media = MediaFetcher(
            services.db,
            services.listener,
            session,
            secrets.box,
            metrics,
            twilio_api_base=settings.twilio_api_base,
            max_bytes=settings.media_max_bytes,
            attempts=settings.media_fetch_attempts,
            poll_seconds=settings.worker_poll_seconds,
        )
        sender = SendWorker(
            services.db,
            services.listener,
            services.twilio,
            secrets.box,
            services.status,
            metrics,
            public_base_url=settings.public_base_url,
            max_leases=settings.send_concurrency,
            account_concurrency=settings.account_concurrency,
            poll_seconds=settings.worker_poll_seconds,
        )
        tasks = [
            asyncio.create_task(delivery.run(), name="delivery-worker"),
            asyncio.create_task(media.run(), name="media-fetcher"),
            asyncio.create_task(sender.run(), name="send-worker"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return context


def create_public_app(runtime: Runtime, metrics: Metrics, settings: Settings) -> web.Application:
    """The Twilio-facing app: webhooks and media only."""
    app = web.Application(middlewares=[observe], client_max_size=settings.webhook_max_body_bytes)
    app[RUNTIME] = runtime
    app[METRICS] = metrics
    app[LISTENER] = "public"
    add_public_routes(app, settings.public_base_url)
    return app


def _public_listener(settings: Settings, runtime: Runtime, metrics: Metrics) -> Context:
    async def context(app: web.Application) -> AsyncIterator[None]:
        public = create_public_app(runtime, metrics, settings)
        runner = web.AppRunner(public, access_log=None, shutdown_timeout=settings.shutdown_timeout)
        await runner.setup()
        host, port = settings.public_address
        site = web.TCPSite(runner, host, port, reuse_address=True)
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
        app.router.add_route(route.method, PREFIX + route.path, route.handler)
        access[(route.method, PREFIX + route.path)] = Access(admin_only=route.admin_only)
    app[ACCESS] = access

    async def end_streams(_app: web.Application) -> None:
        # Runs before the runner waits for in-flight requests: event streams end now instead
        # of holding the shutdown for its whole timeout.
        runtime.stopping.set()

    app.on_shutdown.append(end_streams)
    app.cleanup_ctx.append(_database(settings, secrets, runtime))
    app.cleanup_ctx.append(_workers(settings, secrets, runtime))
    app.cleanup_ctx.append(_public_listener(settings, runtime, metrics))
    return app
