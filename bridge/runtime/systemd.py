"""systemd's notify protocol: READY, STOPPING and the watchdog, when systemd asks for them.

The protocol is one datagram per state change on the socket named by NOTIFY_SOCKET; it is
small enough that a dependency would add more than it saves.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from bridge.log import get_logger

log = get_logger(__name__)


class Notifier:
    """Sends states to systemd; does nothing when not run under a notify-type unit."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, state: str) -> None:
        if self._address is None:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect(self._address)
                sock.sendall(state.encode("ascii"))
            except OSError as exc:
                log.warning("systemd.notify_failed", state=state, error=str(exc))

    def ready(self, status: str = "serving") -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        self.send("STOPPING=1\nSTATUS=stopping")

    def watchdog_usec(self) -> int | None:
        """WATCHDOG_USEC, if systemd armed a watchdog for this very process."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
            return None
        return int(usec)

    def watchdog_interval(self) -> float | None:
        """Half of WATCHDOG_USEC, in seconds: how often to pet it."""
        usec = self.watchdog_usec()
        return None if usec is None else usec / 2_000_000

    @asynccontextmanager
    async def watchdog(self) -> AsyncIterator[None]:
        """Pet the watchdog while the event loop is alive to do it."""
        interval = self.watchdog_interval()
        if interval is None or not self.enabled:
            yield
            return

        async def pet() -> None:
            while True:
                self.send("WATCHDOG=1")
                await asyncio.sleep(interval)

        task = asyncio.create_task(pet(), name="systemd-watchdog")
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
