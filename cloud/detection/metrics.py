"""Operational metrics of a detection worker, in Prometheus format (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


class DetectionMetrics:
    """Counters and histograms of one detection worker, on the given (or its own) registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "lw_detect_messages", "Gateway messages folded into the detectors", registry=r
        )
        self.duplicates = Counter(
            "lw_detect_duplicates", "Messages already taken by (boot, seq), ignored", registry=r
        )
        self.evaluations = Counter(
            "lw_detect_evaluations", "Gateway evaluations (closed minutes, events, sweeps)",
            registry=r,
        )  # fmt: skip
        self.findings = Counter("lw_detect_findings", "Findings the detectors reported", registry=r)
        self.alerts_opened = Counter("lw_detect_alerts_opened", "Alerts opened", registry=r)
        self.failed_batches = Counter(
            "lw_detect_failed_batches",
            "Stored batches a detection error skipped (acknowledged without detection; logged)",
            registry=r,
        )
        self.failed_gateways = Counter(
            "lw_detect_failed_gateways",
            "Gateways whose detectors failed on their share of a batch (logged; folded without"
            " evaluation)",
            registry=r,
        )
        self.skipped = Counter(
            "lw_detect_skipped",
            "Gateway evaluations dropped after a detector failed (their closed minutes)",
            registry=r,
        )
        self.store_errors = Counter(
            "lw_detect_store_errors", "Failed state-store transactions (retried)", registry=r
        )
        self.batch_size = Histogram(
            "lw_detect_batch_messages", "Messages per processed batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "lw_detect_batch_seconds", "Decode, fold, evaluate and commit of one batch",
            buckets=_LATENCY, registry=r,
        )  # fmt: skip
        self.lag = Histogram(
            "lw_detect_lag_seconds", "Gateway send to detection committed, live telemetry",
            buckets=_LATENCY, registry=r,
        )  # fmt: skip
