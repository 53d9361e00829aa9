"""``bench.drift --via worker``: a drift run through a real worker is the in-memory run.

At concurrency 1 the worker and in-process are one computation (``test_one_learner``), so a
run whose personas drift mid-way must give the same choices both ways: the same gap_closed
and the same mean expected reward in every round, before and after the drift."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.drift import play_through_worker
from streams.analysis.recovery import round_means
from streams.sim.config import SimConfig
from streams.sim.in_memory import play_in_memory

pytestmark = pytest.mark.integration


async def test_a_drift_run_through_the_worker_is_the_in_memory_run(database: str) -> None:
    config = SimConfig(
        policy="egreedy-v1",
        users=1,
        rounds=8,
        seed=3,
        drift_at=4,
        drift="invert",
        concurrency=1,
        via="worker",
    )
    gap, stats = await play_through_worker(config)
    summary, in_memory = await play_in_memory(replace(config, via="inprocess"))
    assert len(stats) == len(in_memory) == 5 * 8
    assert gap == pytest.approx(summary["gap_closed"], abs=1e-12)
    assert round_means(stats).expected == pytest.approx(round_means(in_memory).expected)
    assert round_means(stats).oracle == pytest.approx(round_means(in_memory).oracle)
