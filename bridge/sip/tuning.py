"""Timers and resource limits of the SIP layer, with RFC 3261 defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 §17 timer values in seconds; tests shrink T1 to run fast."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def f(self) -> float:
        return 64 * self.t1

    @property
    def j(self) -> float:
        return 64 * self.t1

    @property
    def k(self) -> float:
        return self.t4


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one peer can make the endpoint parse, buffer or remember."""

    max_message_bytes: int = 65536
    max_headers: int = 256
    max_line_bytes: int = 8192
    max_vias: int = 70
    max_tcp_connections: int = 1024
    max_tcp_connections_per_host: int = 32
    max_tcp_write_buffer: int = 1 << 20
    tcp_idle_timeout: float = 120.0
    tcp_connect_timeout: float = 5.0
    max_server_transactions: int = 10000
    overload_retry_after: int = 5


DEFAULT_TIMERS = Timers()
DEFAULT_LIMITS = Limits()
