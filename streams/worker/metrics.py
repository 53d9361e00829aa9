"""Prometheus metrics for the worker: what a person running it needs to see.

A registry of our own (not the process-global default), so that tests and two apps in one
process do not collide. It carries prometheus_client's process collector (``process_*``:
CPU, resident memory, open files, start time; Linux only) and platform collector
(``python_info``), which the default registry would otherwise have had.

The gauges of the worker's state (ready, database up, active partitions, ack-gate holes)
are read when scraped: :meth:`WorkerMetrics.watch` binds them to the worker.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["BatchHistogram", "WorkerMetrics"]

_LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 6 * 3600, 86_400)
_SCORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class BatchHistogram(Collector):
    """A histogram without labels that takes a batch's values in one numpy call.

    prometheus_client's ``Histogram.observe`` costs a few µs a value (a lock and a bucket
    search per call); per event that was 5% of the worker's time. Exposed exactly as a
    Histogram is (``_bucket{le}``, ``_count``, ``_sum``).

    >>> registry = CollectorRegistry()
    >>> lag = BatchHistogram("lag_seconds", "Lag.", (0.1, 1.0), registry)
    >>> lag.observe_many([0.05, 0.1, 0.5, 7.0])
    >>> value = registry.get_sample_value
    >>> [value("lag_seconds_bucket", {"le": le}) for le in ("0.1", "1.0", "+Inf")]
    [2.0, 3.0, 4.0]
    >>> value("lag_seconds_sum"), value("lag_seconds_count")
    (7.65, 4.0)
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = np.array(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last: above them all
        self._sum = 0.0
        registry.register(self)

    def observe_many(self, values: Sequence[float] | np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64)
        if v.size:
            # A value equal to a bound belongs to it (``le``): the first bound ≥ the value.
            index = np.searchsorted(self._bounds, v, side="left")
            self._counts += np.bincount(index, minlength=self._counts.size)
            self._sum += float(v.sum())

    def observe(self, value: float) -> None:
        self.observe_many([value])

    def collect(self) -> Iterator[Metric]:
        cumulative = np.cumsum(self._counts).astype(np.float64).tolist()
        les = [str(float(b)) for b in self._bounds.tolist()] + ["+Inf"]
        yield HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=list(zip(les, cumulative, strict=True)),
            sum_value=self._sum,
        )


class WorkerMetrics:
    __slots__ = (
        "active_partitions",
        "batch_seconds",
        "batch_size",
        "batch_step_seconds",
        "database_up",
        "deadlettered",
        "events",
        "feedback_waiting",
        "gc_pause",
        "holes",
        "input_lag",
        "processing_lag",
        "ready",
        "rebalances",
        "registry",
        "rereads",
        "reward_latency",
        "rows_written",
        "rows_written_at",
        "score_latency",
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
        self.reward_latency = BatchHistogram(
            "tipstream_reward_latency_seconds",
            "occurredAt − servedAt of learned feedback.",
            _LATENCY_BUCKETS,
            r,
        )
        self.processing_lag = BatchHistogram(
            "tipstream_processing_lag_seconds",
            "Now − Kafka record time, when processed.",
            _LAG_BUCKETS,
            r,
        )
        self.batch_size = Histogram(
            "tipstream_batch_events",
            "Events per processed batch.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "tipstream_batch_seconds",
            "Time to process one batch: decode, join, learn, rows, state (the loop is busy).",
            buckets=_PAUSE_BUCKETS,
            registry=r,
        )
        self.batch_step_seconds = Histogram(
            "tipstream_batch_step_seconds",
            "Wall time of each step of a batch: changelog_wait (before it), decode, join, "
            "learn, encode (the records, while the rows are written), rows (what is left of "
            "the PostgreSQL writes), store, dead_letters, changelog (its records delivered).",
            ["step"],
            buckets=_PAUSE_BUCKETS,
            registry=r,
        )
        self.gc_pause = Histogram(
            "tipstream_gc_pause_seconds",
            "Python garbage-collector pauses, by generation (the event loop stands still).",
            ["generation"],
            buckets=_PAUSE_BUCKETS,
            registry=r,
        )
        self.rows_written = Counter(
            "tipstream_feedback_rows_written", "tip_feedback rows sent to PostgreSQL.", registry=r
        )
        self.rows_written_at = Gauge(
            "tipstream_feedback_rows_written_timestamp_seconds",
            "Wall time (Unix seconds) of the last tip_feedback rows written: a sink that stops "
            "while input lag grows shows here, and a benchmark reads when the work ended "
            "without scraping a busy worker.",
            registry=r,
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

        self.score_latency = Histogram(
            "tipstream_score_latency_seconds",
            "Time to answer POST /score/egreedy, by outcome (a min_updates wait included).",
            ["outcome"],
            buckets=_SCORE_BUCKETS,
            registry=r,
        )
        self.rebalances = Counter(
            "tipstream_rebalances", "Consumer group rebalances completed.", registry=r
        )
        self.holes = Gauge(
            "tipstream_ackgate_holes",
            "Input partitions whose commits are held at an offset that was not processed "
            "(waiting to be read again).",
            registry=r,
        )
        self.active_partitions = Gauge(
            "tipstream_active_partitions",
            "Input partitions this worker owns (actively, not as a standby).",
            registry=r,
        )
        self.ready = Gauge(
            "tipstream_ready",
            "1 when the worker serves /score (not starting, recovering or rebalancing), else 0.",
            registry=r,
        )
        self.database_up = Gauge(
            "tipstream_database_up",
            "1 when PostgreSQL answers and writes succeed (as /healthz says), else 0.",
            registry=r,
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def watch(
        self,
        *,
        ready: Callable[[], bool],
        database_up: Callable[[], bool],
        active_partitions: Callable[[], int],
        holes: Callable[[], int],
    ) -> None:
        """Read these gauges from the worker when scraped; a reading that fails (the app not
        started yet) shows as 0."""
        for gauge, read in (
            (self.ready, ready),
            (self.database_up, database_up),
            (self.active_partitions, active_partitions),
            (self.holes, holes),
        ):
            gauge.set_function(_or_zero(read))

    def watch_gc(self) -> Callable[[], None]:
        """Time every garbage collection into ``gc_pause``; returns the function that stops it
        (``gc.callbacks`` is process-wide)."""
        started = [0.0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pause = time.perf_counter() - started[0]
                self.gc_pause.labels(str(info["generation"])).observe(pause)

        gc.callbacks.append(on_gc)
        return lambda: gc.callbacks.remove(on_gc)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _or_zero(read: Callable[[], bool | int]) -> Callable[[], float]:
    def value() -> float:
        try:
            return float(read())
        except Exception:
            return 0.0

    return value
