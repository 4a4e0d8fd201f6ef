"""`sms-bridge serve`: run both listeners until SIGTERM/SIGINT, then stop in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal

import structlog
from aiohttp import web

from bridge.config import Settings
from bridge.errors import ListenFailed
from bridge.log import get_logger
from bridge.runtime.app import create_app
from bridge.runtime.bootstrap import RuntimeSecrets
from bridge.runtime.systemd import Notifier

log = get_logger(__name__)

PID_HEADER = "X-Bridge-Pid"
PARENT_CHECK_SECONDS = 1.0


async def _name_the_process(_request: web.Request, response: web.StreamResponse) -> None:
    """Which of the host's processes answered (`serve --processes N`), for operators."""
    response.headers[PID_HEADER] = str(os.getpid())


async def _watch_parent(stop: asyncio.Event, supervisor: int) -> None:
    """A child whose supervisor died (kill -9) stops by itself instead of serving on as an
    orphan that a restarted supervisor's children would share the ports with."""
    while os.getppid() == supervisor:  # noqa: ASYNC110 - a parent's death has no event to await
        await asyncio.sleep(PARENT_CHECK_SECONDS)
    log.warning("daemon.orphaned", supervisor=supervisor)
    stop.set()


async def serve(
    settings: Settings,
    secrets: RuntimeSecrets,
    *,
    slot: int | None = None,
    supervisor: int | None = None,
) -> None:
    """Start, tell systemd (or the supervisor, as its process ``slot``), wait for a stop
    signal, drain in-flight requests, close."""
    notifier = Notifier()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if slot is not None:
        structlog.contextvars.bind_contextvars(process=slot)
    app = create_app(settings, secrets)
    if slot is not None:
        app.on_response_prepare.append(_name_the_process)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_timeout)
    orphaned = None
    if supervisor is not None:
        orphaned = asyncio.create_task(_watch_parent(stop, supervisor))
    async with notifier.watchdog():
        await runner.setup()
        try:
            host, port = settings.internal_address
            try:
                await web.TCPSite(
                    runner, host, port, reuse_address=True, reuse_port=settings.processes > 1
                ).start()
            except OSError as exc:
                raise ListenFailed(
                    f"internal_listen (BRIDGE_INTERNAL_LISTEN) {settings.internal_listen}: "
                    f"{exc.strerror or exc}; choose a free address or stop what holds it"
                ) from None
            log.info("listener.internal", address=settings.internal_listen)
            # What start-up built lives as long as the daemon: moved out of the collector's
            # view, so full collections under load walk only what requests create.
            gc.collect()
            gc.freeze()
            notifier.ready()
            log.info("daemon.ready", public_base_url=settings.public_base_url)
            await stop.wait()
            log.info("daemon.stopping")
            notifier.stopping()
        finally:
            if orphaned is not None:
                orphaned.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await orphaned
            await runner.cleanup()
    log.info("daemon.stopped")
