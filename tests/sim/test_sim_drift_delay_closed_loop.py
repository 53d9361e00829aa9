"""Drift and late feedback on the real broker and database: the run in memory is the closed
loop's run, and the scenario is stored in ``sim_runs.config``."""

from __future__ import annotations

import json

import asyncpg
import pytest

from streams.settings import Settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig
from streams.sim.in_memory import play_in_memory

pytestmark = pytest.mark.integration


async def test_in_memory_is_the_closed_loop_with_drift_and_delay(
    topics: Settings, pg: asyncpg.Connection
) -> None:
    config = SimConfig(
        policy="pooledmix-v3",
        users=2,
        rounds=6,
        seed=9,
        drift_at=3,
        delay="exp:3600",
        delay_lost=0.1,
        reward_wait_s=7200.0,
        default_reward=0.0,
    )
    summary = await run_closed_loop(topics, config, quiet=True)
    memory, _ = await play_in_memory(config)
    for key in ("events", "mean_reward", "expected_mean_reward", "gap_closed", "per_persona"):
        assert summary[key] == memory[key], key
    assert summary["feedback"] == memory["feedback"]
    assert summary["feedback"]["learned_default"] > 0
    row = await pg.fetchrow("SELECT config FROM sim_runs WHERE run_id = $1", summary["run_id"])
    assert row is not None
    stored = row["config"] if isinstance(row["config"], dict) else json.loads(row["config"])
    assert (stored["drift_at"], stored["drift"], stored["delay"]) == (3, "rotate", "exp:3600")
    assert (stored["delay_lost"], stored["default_reward"]) == (0.1, 0.0)
    assert stored["world"]["drift"] == {"at_round": 3, "mapping": "rotate"}
