"""Load mode: open loop at a rate, bounded in-flight sends (counted, not timed)."""

from __future__ import annotations

import json

import asyncpg
import pytest

from streams.settings import Settings
from streams.sim.config import SimConfig
from streams.sim.load import run_load
from streams.sim.publisher import Publisher

pytestmark = pytest.mark.integration


async def test_in_flight_sends_stay_bounded(topics: Settings, pg: asyncpg.Connection) -> None:
    seen: list[Publisher] = []
    # A rate far above what any broker takes: sends must wait for acknowledgements.
    config = SimConfig(policy="egreedy-v1", users=2, rate=1e6, duration=1.0, max_in_flight=8)
    result = await run_load(topics, config, quiet=True, publisher_probe=seen.append)
    assert result.messages > 0
    assert result.messages % 2 == 0  # a show always goes with its feedback
    assert 1 <= result.peak_in_flight <= 8
    assert seen[0].in_flight == 0
    assert seen[0].acked == result.messages
    assert result.behind_messages > 0  # it could not keep 1e6/s: the shortfall is reported
    run = await pg.fetchrow("SELECT * FROM sim_runs WHERE run_id = $1", result.run_id)
    assert run["status"] == "finished"
    assert run["events"] == result.messages // 2
    stats = json.loads(run["stats"])
    assert stats["messages"] == result.messages
    assert stats["peak_in_flight"] == result.peak_in_flight


async def test_paced_run_sends_what_is_due(topics: Settings) -> None:
    config = SimConfig(policy="random", users=1, rate=200, duration=1.0)
    result = await run_load(topics, config, quiet=True, record=False)
    assert result.messages + result.behind_messages == 200
    assert result.peak_in_flight <= config.max_in_flight
