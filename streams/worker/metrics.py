"""Prometheus metrics for the worker: what a person running it needs to see.

A registry of our own (not the process-global default), so that tests and two apps in one
process do not collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["WorkerMetrics"]

_LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 6 * 3600, 86_400)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class WorkerMetrics:
    __slots__ = (
        "batch_size",
        "deadlettered",
        "events",
        "feedback_waiting",
        "input_lag",
        "processing_lag",
        "registry",
        "rereads",
        "reward_latency",
        "rows_written",
        "score_requests",
        "shows_waiting",
        "sink_retries",
    )

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "tipstream_events",
            "Event outcomes by source: applied, duplicate, legacy, expired, redelivered, late, "
            "show_waiting, show_joined, show_duplicate, feedback_waiting.",
            ["source", "outcome"],
            registry=r,
        )
        self.deadlettered = Counter(
            "tipstream_deadlettered",
            "Events sent to the dead-letter topic, by code.",
            ["code"],
            registry=r,
        )
        self.feedback_waiting = Gauge(
            "tipstream_feedback_waiting", "Feedback waiting for its show.", registry=r
        )
        self.shows_waiting = Gauge(
            "tipstream_shows_waiting", "Shows waiting for their feedback.", registry=r
        )
        self.reward_latency = Histogram(
            "tipstream_reward_latency_seconds",
            "occurredAt − servedAt of learned feedback.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.processing_lag = Histogram(
            "tipstream_processing_lag_seconds",
            "Now − Kafka record time, when processed.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "tipstream_batch_events",
            "Events per processed batch.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.rows_written = Counter(
            "tipstream_feedback_rows_written", "tip_feedback rows sent to PostgreSQL.", registry=r
        )
        self.sink_retries = Counter(
            "tipstream_sink_retries", "PostgreSQL writes retried after an error.", registry=r
        )
        self.rereads = Counter(
            "tipstream_rereads",
            "Seeks back to input events that were not processed (skipped by faust, or a stall).",
            registry=r,
        )
        self.input_lag = Gauge(
            "tipstream_input_lag_events",
            "Input events not yet processed per assigned partition (broker end offset − next "
            "offset to process), refreshed every 2 s.",
            ["topic", "partition"],
            registry=r,
        )
        self.score_requests = Counter(
            "tipstream_score_requests",
            "POST /score/egreedy requests, by outcome.",
            ["outcome"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
