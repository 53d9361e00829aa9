"""A slow batch is logged with the wall time of each step, and every batch's steps are in
``tipstream_batch_step_seconds`` (what a p99 latency is made of)."""

from __future__ import annotations

import logging

import pytest

from streams.settings import Settings
from streams.worker.app import SLOW_BATCH_S, Worker


def _step_count(worker: Worker, step: str) -> float | None:
    return worker.metrics.registry.get_sample_value(
        "tipstream_batch_step_seconds_count", {"step": step}
    )


def test_every_step_is_timed_and_only_a_slow_batch_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker(Settings())
    steps = worker.pipeline.steps
    steps.seconds.update({"decode": 0.01, "join": 0.02})
    with caplog.at_level(logging.WARNING, logger="streams.worker.app"):
        worker._report_steps(100, waited_s=0.001)
        assert not [r for r in caplog.records if "slow batch" in r.getMessage()]
        steps.seconds["rows"] = SLOW_BATCH_S  # the database was slow to answer
        worker._report_steps(100, waited_s=0.001)
    slow = [r.getMessage() for r in caplog.records if "slow batch" in r.getMessage()]
    assert slow == [
        "slow batch: 100 events in 281 ms (changelog_wait 1, decode 10, join 20, rows 250)"
    ]
    assert _step_count(worker, "changelog_wait") == 2
    assert _step_count(worker, "rows") == 1
