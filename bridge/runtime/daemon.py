"""`sms-bridge serve`: run both listeners until SIGTERM/SIGINT, then stop in order."""

from __future__ import annotations

import asyncio
import gc
import signal

from aiohttp import web

from bridge.config import Settings
from bridge.errors import ListenFailed
from bridge.log import get_logger
from bridge.runtime.app import create_app
from bridge.runtime.bootstrap import RuntimeSecrets
from bridge.runtime.systemd import Notifier

log = get_logger(__name__)


async def serve(settings: Settings, secrets: RuntimeSecrets) -> None:
    """Start, tell systemd, wait for a stop signal, drain in-flight requests, close."""
    notifier = Notifier()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = create_app(settings, secrets)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_timeout)
    async with notifier.watchdog():
        await runner.setup()
        try:
            host, port = settings.internal_address
            try:
                await web.TCPSite(runner, host, port, reuse_address=True).start()
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
            await runner.cleanup()
    log.info("daemon.stopped")
