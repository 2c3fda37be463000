"""What the receiver counts for Prometheus (`GET /metrics`): deliveries and how fast they are
answered, the queue's depth, runs and their durations, bodies being read and event streams open."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "deploy_pipeline_deliveries", "Webhook deliveries", ["event", "outcome"], registry=r
        )
        self.ack = Histogram(
            "deploy_pipeline_ack_seconds",
            "Time from a delivery's arrival to its answer",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.queue_depth = Gauge(
            "deploy_pipeline_queue_depth", "Deliveries waiting to run", registry=r
        )
        self.runs = Counter(
            "deploy_pipeline_runs", "Runs finished", ["action", "result"], registry=r
        )
        self.run_seconds = Histogram(
            "deploy_pipeline_run_seconds", "Run durations", ["action"], registry=r
        )
        self.uploads = Gauge(
            "deploy_pipeline_uploads",
            "Webhook bodies being read (DEPLOY_PIPELINE_UPLOADS at most)",
            registry=r,
        )
        self.event_streams = Gauge(
            "deploy_pipeline_event_streams",
            "Run event streams open (GET /api/runs/{id}/events)",
            registry=r,
        )
