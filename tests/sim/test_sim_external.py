"""The external judge's two phases on the real broker and database."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from streams.settings import Settings
from streams.sim.config import SimConfig
from streams.sim.external import (
    JudgmentLinesError,
    run_external_judgments,
    run_external_requests,
)
from tests.sim.simhelpers import consume_run, run_cli, run_rows

pytestmark = pytest.mark.integration


def judged(line: str, action: str = "done", dwell_ms: int | None = 30_000) -> str:
    request = json.loads(line)
    return json.dumps({**request, "action": action, "dwell_ms": dwell_ms})


async def status_of(pg: asyncpg.Connection, run_id: str) -> str:
    return str(await pg.fetchval("SELECT status FROM sim_runs WHERE run_id = $1", run_id))


async def test_two_phases(topics: Settings, pg: asyncpg.Connection, tmp_path: Path) -> None:
    requests_path = tmp_path / "requests.jsonl"
    config = SimConfig(policy="random", judge="external", users=1, rounds=2, seed=9)
    phase1 = await run_external_requests(topics, config, str(requests_path), quiet=True)
    run_id = phase1["run_id"]
    lines = requests_path.read_text().splitlines()
    assert phase1["requests"] == len(lines) == 10
    assert await status_of(pg, run_id) == "running"
    assert await pg.fetchval("SELECT count(*) FROM sim_requests WHERE run_id = $1", run_id) == 10

    # A bad line: reported by number, nothing published.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join([judged(lines[0], action="maybe"), "not json", *map(judged, lines[2:])]) + "\n"
    )
    with pytest.raises(JudgmentLinesError) as caught:
        await run_external_judgments(topics, str(bad), run_id, quiet=True)
    assert "line 1: bad action 'maybe'" in str(caught.value)
    assert "line 2: invalid JSON" in str(caught.value)
    assert await run_rows(pg, run_id) == []
    code, _, err = await run_cli(
        topics, "simulate", "--judgments-in", str(bad), "--run-id", run_id, "--quiet"
    )
    assert code == 2
    assert "line 1" in err

    # Part of the judgments: published and recorded, the rest stays pending.
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(judged(line) for line in lines[:7]) + "\n")
    partial = await run_external_judgments(topics, str(first), run_id, quiet=True)
    assert (partial["accepted"], partial["pending"]) == (7, 3)
    assert len(partial["missing"]) == 3
    assert await status_of(pg, run_id) == "running"

    rest = tmp_path / "rest.jsonl"
    rest.write_text(
        "\n".join(
            [judged(lines[7], "snooze", None), *(judged(x, "dismiss", 2_000) for x in lines[8:])]
        )
    )
    final = await run_external_judgments(topics, str(rest), run_id, quiet=True)
    assert (final["accepted"], final["pending"]) == (3, 0)
    assert await status_of(pg, run_id) == "finished"
    rows = await run_rows(pg, run_id)
    assert final["events"] == len(rows) == 10
    assert final["expected_mean_reward"] is None
    assert sorted(r["reward_milli"] for r in rows) == [-1000, -1000, 100] + [1000] * 7
    assert final["mean_reward"] == pytest.approx((7 * 1.0 + 0.1 - 2.0) / 10)
    assert all(r["expected_reward"] is None for r in rows)

    found = await consume_run(topics, run_id, 10)
    assert len(found[topics.topic_shown]) == len(found[topics.topic_feedback]) == 10

    # Finished: a second phase 2 is refused.
    with pytest.raises(ValueError, match="finished"):
        await run_external_judgments(topics, str(rest), run_id, quiet=True)
