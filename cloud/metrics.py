"""Operational metrics of the ingestor, in Prometheus format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    """Counters and histograms of one ingestor, on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.received = Counter(
            "lw_ingest_messages_received",
            "MQTT messages received",
            ["kind"],
            registry=self.registry,
        )
        self.stored_messages = Counter(
            "lw_ingest_messages_stored", "Telemetry messages stored", registry=self.registry
        )
        self.stored_readings = Counter(
            "lw_ingest_readings_stored", "Readings stored", registry=self.registry
        )
        self.duplicates = Counter(
            "lw_ingest_duplicates", "Messages already stored, dropped", registry=self.registry
        )
        self.rejected = Counter(
            "lw_ingest_rejected", "Messages rejected", ["reason"], registry=self.registry
        )
        self.clock_rebased = Counter(
            "lw_ingest_clock_rebased",
            "Telemetry messages whose stamps were shifted back by their gateway clock's lead",
            registry=self.registry,
        )
        self.store_errors = Counter(
            "lw_ingest_store_errors", "Failed store writes (retried)", registry=self.registry
        )
        self.batch_size = Histogram(
            "lw_ingest_batch_messages",
            "Messages per processed batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000),
            registry=self.registry,
        )
        self.lag = Histogram(
            "lw_ingest_lag_seconds",
            "Gateway send to stored, live messages",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.store_seconds = Histogram(
            "lw_ingest_store_write_seconds", "Telemetry store write latency", registry=self.registry
        )
        self.store_readings = Histogram(
            "lw_ingest_store_write_readings",
            "Readings per telemetry store write (one write per batch, acknowledged after it)",
            buckets=(100, 500, 1000, 2500, 5000, 10_000, 20_000, 40_000, 80_000),
            registry=self.registry,
        )
        self.state_seconds = Histogram(
            "lw_ingest_state_write_seconds",
            "State store transaction latency (ledger, rollups, registry) per batch",
            registry=self.registry,
        )
        self.state_cpu = Counter(
            "lw_ingest_state_cpu_seconds",
            "CPU (thread time) of the state store transactions; their wall time"
            " (lw_ingest_state_write_seconds_sum) minus this is waiting: write lock, fsync",
            registry=self.registry,
        )
        self.hook_cpu = Counter(
            "lw_ingest_hook_cpu_seconds",
            "CPU (thread time) of the stored hook (the detectors), per worker",
            registry=self.registry,
        )
        self.hook_seconds = Counter(
            "lw_ingest_hook_seconds",
            "Wall time of the stored hook (the detectors); minus its CPU is waiting",
            registry=self.registry,
        )
        self.acknowledged = Counter(
            "lw_ingest_messages_acknowledged",
            "MQTT messages acknowledged to the broker (after they were stored)",
            registry=self.registry,
        )
        self.pending = Gauge(
            "lw_ingest_messages_pending",
            "Messages this worker received and has not acknowledged yet (its share of the lag)",
            registry=self.registry,
        )
