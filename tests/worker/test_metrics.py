"""WorkerMetrics: its own registry carries the process and platform collectors, and the
state gauges read the worker when scraped."""

from __future__ import annotations

import gc
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.worker.metrics import WorkerMetrics


def _samples(metrics: WorkerMetrics) -> dict[str, float]:
    text = metrics.render().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels or sample.name == "python_info"
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process_* is Linux only")
def test_process_and_platform_metrics_are_on_our_registry() -> None:
    samples = _samples(WorkerMetrics())
    assert samples["process_resident_memory_bytes"] > 0
    assert "process_cpu_seconds_total" in samples
    assert "process_open_fds" in samples
    assert samples["python_info"] == 1.0
    # Two registries in one process do not collide (each has its own collectors).
    assert _samples(WorkerMetrics())["process_resident_memory_bytes"] > 0


def test_state_gauges_are_read_when_scraped() -> None:
    metrics = WorkerMetrics()
    state = {"ready": False, "holes": 2}

    def broken() -> int:
        raise RuntimeError("the app has not started")

    metrics.watch(
        ready=lambda: bool(state["ready"]),
        database_up=lambda: True,
        active_partitions=broken,
        holes=lambda: int(state["holes"]),
    )
    samples = _samples(metrics)
    assert samples["tipstream_ready"] == 0.0
    assert samples["tipstream_database_up"] == 1.0
    assert samples["tipstream_active_partitions"] == 0.0  # a failed reading is 0, not an error
    assert samples["tipstream_ackgate_holes"] == 2.0
    state.update(ready=True, holes=0)
    samples = _samples(metrics)
    assert (samples["tipstream_ready"], samples["tipstream_ackgate_holes"]) == (1.0, 0.0)


def test_score_latency_and_rebalances() -> None:
    metrics = WorkerMetrics()
    metrics.score_latency.labels("ok").observe(0.003)
    metrics.rebalances.inc()
    text = metrics.render().decode()
    assert 'tipstream_score_latency_seconds_bucket{le="0.005",outcome="ok"} 1.0' in text
    assert 'tipstream_score_latency_seconds_bucket{le="0.0025",outcome="ok"} 0.0' in text
    assert "tipstream_rebalances_total 1.0" in text


def test_gc_pauses_are_timed_by_generation_until_unwatched() -> None:
    metrics = WorkerMetrics()

    def full_collections() -> float:
        text = metrics.render().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "tipstream_gc_pause_seconds_count"
            and sample.labels.get("generation") == "2"
        )

    unwatch = metrics.watch_gc()
    try:
        gc.collect()
        gc.collect()
    finally:
        unwatch()
    assert full_collections() == 2
    gc.collect()  # no longer watched
    assert full_collections() == 2
