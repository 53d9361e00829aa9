"""The LLM judge in the loop, without any key, with ``--fallback rule``: every judgment falls
back and is counted (without ``--fallback rule`` the run refuses to start).

The API is never reached: no credentials, and the base URL points at a closed local port.
"""

from __future__ import annotations

import json

import asyncpg
import pytest

from streams.settings import Settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig, SimUsageError
from tests.sim.simhelpers import run_rows

pytestmark = pytest.mark.integration


async def test_fallbacks_are_counted_on_the_run(
    topics: Settings, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    config = SimConfig(policy="random", judge="llm", users=1, rounds=2, seed=4, fallback="rule")
    summary = await run_closed_loop(topics, config, quiet=True)
    assert summary["events"] == 10
    assert summary["fallbacks"] == {"no_api_key": 10}
    for key in ("expected_mean_reward", "random_expected_mean_reward", "gap_closed"):
        assert summary[key] is None
    run = await pg.fetchrow("SELECT * FROM sim_runs WHERE run_id = $1", summary["run_id"])
    assert run["status"] == "finished"
    assert json.loads(run["llm_fallbacks"]) == {"no_api_key": 10}
    assert run["llm_input_tokens"] == 0
    rows = await run_rows(pg, summary["run_id"])
    assert {r["features"]["fallback_reason"] for r in rows} == {"no_api_key"}
    assert all(r["expected_reward"] is None for r in rows)
    assert all("expected_reward" not in c for r in rows for c in r["features"]["candidates"])


async def test_without_fallback_a_run_without_a_key_never_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    nowhere = Settings(kafka_bootstrap="127.0.0.1:1", database_url="postgresql://x@127.0.0.1:1/x")
    with pytest.raises(SimUsageError, match="ANTHROPIC_API_KEY"):
        await run_closed_loop(nowhere, SimConfig(policy="random", judge="llm"), quiet=True)
