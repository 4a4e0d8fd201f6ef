"""Prometheus metrics, in a registry owned by the app rather than a module global."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _PoolCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        gauge = GaugeMetricFamily(
            "bridge_db_pool_connections", "Database pool connections", labels=["state"]
        )
        gauge.add_metric(["open"], stats["size"])
        gauge.add_metric(["idle"], stats["idle"])
        gauge.add_metric(["max"], stats["max"])
        yield gauge


class Metrics:
    """Every metric the bridge exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_resident_memory_bytes, process_open_fds, CPU seconds… (Linux only).
        ProcessCollector(registry=self.registry)
        self.http_requests = Counter(
            "bridge_http_requests",
            "HTTP requests answered",
            ["listener", "route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "bridge_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["listener", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.inbound = Counter(
            "bridge_inbound_messages",
            "Inbound webhooks by outcome: received, duplicate, unroutable, disabled",
            ["outcome"],
            registry=self.registry,
        )
        self.webhooks_rejected = Counter(
            "bridge_webhooks_rejected",
            "Twilio webhooks refused, by kind and reason",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.status_callbacks = Counter(
            "bridge_status_callbacks",
            "Status callbacks by outcome: applied, stale, early",
            ["outcome"],
            registry=self.registry,
        )
        self.status_polls = Counter(
            "bridge_status_polls",
            "Looks at Twilio for texts whose status stood still, by outcome: final, moved, "
            "unchanged, failed (Twilio could not be asked), gave_up (too old, not final)",
            ["outcome"],
            registry=self.registry,
        )
        self.ack_latency = Histogram(
            "bridge_inbound_ack_seconds",
            "From webhook received to acknowledged (committed)",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.media = Counter(
            "bridge_media_fetches",
            "Inbound media fetches by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "bridge_deliveries",
            "Event deliveries to the PBX: attempted, acknowledged, failed, dead",
            ["outcome"],
            registry=self.registry,
        )
        self.delivery_lag = Histogram(
            "bridge_delivery_lag_seconds",
            "From event queued to acknowledged by the PBX",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120, 600, 3600),
            registry=self.registry,
        )

        self.sends = Counter(
            "bridge_sends",
            "Attempts to hand outbound texts to Twilio, by outcome and Twilio code",
            ["outcome", "code"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "bridge_send_queue_depth", "Outbound texts waiting for Twilio", registry=self.registry
        )
        self.shaping_delay = Histogram(
            "bridge_send_shaping_delay_seconds",
            "How long a text waited for its sender's pacing slot",
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.twilio_latency = Histogram(
            "bridge_twilio_request_duration_seconds",
            "Twilio REST API latency by operation",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.sip_messages = Counter(
            "bridge_sip_messages",
            "SIP MESSAGEs (design §10) by direction (to_phone, from_phone) and outcome",
            ["direction", "outcome"],
            registry=self.registry,
        )

    def observe_twilio(self, operation: str, status: int | None, seconds: float) -> None:
        self.twilio_latency.labels(operation).observe(seconds)

    def watch_pool(self, stats: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_PoolCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)
