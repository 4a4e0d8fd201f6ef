"""Run `sms-bridge serve` as a real process for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp


def run_cli(
    *args: str,
    env: dict[str, str],
    timeout: float = 120,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``sms-bridge ARGS`` in a child process with only the given BRIDGE_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=preexec_fn,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def udp_free(port: int) -> bool:
    """Whether nothing listens on UDP ``port`` (a SIP peer needs it as well as TCP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Daemon:
    """One `sms-bridge serve` process with its own ports and data directory."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.public_port = free_port()
        self.internal_port = free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        self.env = {
            **base,
            "BRIDGE_DATA_DIR": str(data_dir),
            "BRIDGE_PUBLIC_LISTEN": f"127.0.0.1:{self.public_port}",
            "BRIDGE_INTERNAL_LISTEN": f"127.0.0.1:{self.internal_port}",
            "BRIDGE_PUBLIC_BASE_URL": "https://pbx.example.test/sms",
            "BRIDGE_LOG_FORMAT": "json",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def internal(self) -> str:
        return f"http://127.0.0.1:{self.internal_port}"

    def start(self, *args: str) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    async def wait_ready(self, limit: float = 90) -> float:
        """Seconds until /ready answers 200; fails if the process exits first."""
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - started < limit:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"daemon exited {self.process.returncode}: {self.logs()}")
                try:
                    async with session.get(self.internal + "/ready") as response:
                        if response.status == 200:
                            return time.monotonic() - started
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"daemon not ready after {limit}s: {self.logs()}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        try:
            return self.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()
