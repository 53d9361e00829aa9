"""Helpers for the simulator tests: rows of a run, judgments, the summary check, the CLI."""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import sys
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from bandit.stats import t_975
from streams.dev.worker_process import child_env
from streams.settings import Settings


async def run_rows(pg: asyncpg.Connection, run_id: str) -> list[dict[str, Any]]:
    rows = await pg.fetch(
        "SELECT * FROM sim_events WHERE run_id = $1 ORDER BY round, user_id", run_id
    )
    out = []
    for row in rows:
        record = dict(row)
        record["features"] = json.loads(record["features"])
        out.append(record)
    return out


def judgments(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a run decided and how the personas reacted, without the run's own ids."""
    return [
        (r["user_id"], r["round"], r["tip_id"], r["action"], r["dwell_ms"], r["reward_milli"],
         r["propensity"], r["explored"])
        for r in rows
    ]  # fmt: skip


def mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


async def assert_summary_matches_db(pg: asyncpg.Connection, summary: dict[str, Any]) -> None:
    """The --json summary is what sim_runs and sim_events hold (rule judge)."""
    run_id = summary["run_id"]
    run = await pg.fetchrow("SELECT * FROM sim_runs WHERE run_id = $1", run_id)
    assert run is not None
    assert run["status"] == "finished", run["error"]
    rows = await run_rows(pg, run_id)
    assert run["events"] == summary["events"] == len(rows)
    rewards = [r["reward_milli"] / 1000 for r in rows]
    assert summary["mean_reward"] == pytest.approx(mean(rewards))
    assert run["mean_reward"] == pytest.approx(summary["mean_reward"])
    half = t_975(len(rewards) - 1) * statistics.stdev(rewards) / math.sqrt(len(rewards))
    assert summary["ci95_low"] == pytest.approx(mean(rewards) - half)
    assert summary["ci95_high"] == pytest.approx(mean(rewards) + half)

    expected = [r["expected_reward"] for r in rows]
    candidates = [r["features"]["candidates"] for r in rows]
    assert all(len(c) == 8 for c in candidates)
    random_ = mean([mean([c["expected_reward"] for c in cs]) for cs in candidates])
    oracle = mean([max(c["expected_reward"] for c in cs) for cs in candidates])
    assert summary["expected_mean_reward"] == pytest.approx(mean(expected))
    assert summary["random_expected_mean_reward"] == pytest.approx(random_)
    assert summary["oracle_expected_mean_reward"] == pytest.approx(oracle)
    assert summary["gap_closed"] == pytest.approx((mean(expected) - random_) / (oracle - random_))
    for r in rows:
        features = r["features"]
        chosen = features["candidates"][features["chosen_index"]]
        assert chosen["tip_id"] == r["tip_id"] == features["chosen"]["tip_id"]
        assert chosen["expected_reward"] == pytest.approx(r["expected_reward"])

    personas = {r["persona"] for r in rows}
    assert set(summary["per_persona"]) == personas
    for name, figures in summary["per_persona"].items():
        mine = [r for r in rows if r["persona"] == name]
        assert figures["events"] == len(mine)
        assert figures["mean_reward"] == pytest.approx(
            mean([r["reward_milli"] / 1000 for r in mine])
        )
        assert figures["expected_mean_reward"] == pytest.approx(
            mean([r["expected_reward"] for r in mine])
        )


async def consume_run(settings: Settings, run_id: str, count: int | None) -> dict[str, list[Any]]:
    """Every record of ``run_id`` on the shown and feedback topics: waits for ``count`` each,
    or with ``count`` None reads until three polls in a row find nothing."""
    consumer = AIOKafkaConsumer(
        settings.topic_shown,
        settings.topic_feedback,
        **settings.aiokafka_kwargs(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: dict[str, list[Any]] = {settings.topic_shown: [], settings.topic_feedback: []}
    try:
        deadline = asyncio.get_running_loop().time() + 30
        idle = 0
        while idle < 3 if count is None else any(len(v) < count for v in found.values()):
            assert asyncio.get_running_loop().time() < deadline, {
                k: len(v) for k, v in found.items()
            }
            batches = await consumer.getmany(timeout_ms=500)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for record in records:
                    if json.loads(record.value).get("runId") == run_id:
                        found[record.topic].append(record)
    finally:
        await consumer.stop()
    return found


async def run_cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.cli", *args,
        env=child_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=240)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
