"""The closed loop on the real broker and database: in-process, through the worker, the CLI."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from schemas.events import TipFeedback, TipShown, decode_feedback, decode_shown
from streams.dev.worker_process import WorkerProcess, child_env
from streams.settings import Settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig
from streams.worker.partitioning import partition_for
from tests.sim.simhelpers import (
    assert_summary_matches_db,
    consume_run,
    judgments,
    run_cli,
    run_rows,
)

pytestmark = pytest.mark.integration


def small(policy: str, via: str = "inprocess", seed: int = 101, rounds: int = 4) -> SimConfig:
    return SimConfig(policy=policy, via=via, users=1, rounds=rounds, seed=seed)  # type: ignore[arg-type]


async def test_inprocess_summary_matches_tables_and_topics(
    topics: Settings, pg: asyncpg.Connection
) -> None:
    summary = await run_closed_loop(topics, small("egreedy-v1"), quiet=True)
    assert summary["events"] == 5 * 4
    await assert_summary_matches_db(pg, summary)

    found = await consume_run(topics, summary["run_id"], summary["events"])
    rows = {(r["user_id"], r["round"]): r for r in await run_rows(pg, summary["run_id"])}
    for record in found[topics.topic_shown]:
        shown = decode_shown(record.value)
        assert isinstance(shown, TipShown), shown
        assert record.key == shown.user_id.encode()
        assert record.partition == partition_for(shown.user_id, topics.partitions)
        assert shown.is_sim
        assert shown.run_id == summary["run_id"]
        assert shown.policy == "egreedy-v1"
        assert 0 < shown.propensity <= 1
        assert shown.candidate_count == 8
        assert shown.candidates is not None
        assert len(shown.candidates) == 8
        assert shown.tip_id in {c.tip_id for c in shown.candidates}
        round_ = int(shown.event_id.split("/")[-2])
        row = rows[(shown.user_id, round_)]
        assert row["tip_id"] == shown.tip_id
        assert row["propensity"] == shown.propensity
        assert shown.features.priority == row["features"]["chosen"]["priority"]
        assert shown.features.hour_of_day == row["features"]["moment"]["hour_of_day"]
    for record in found[topics.topic_feedback]:
        feedback = decode_feedback(record.value)
        assert isinstance(feedback, TipFeedback), feedback
        assert record.key == feedback.user_id.encode()
        assert feedback.is_sim
        assert feedback.run_id == summary["run_id"]
        round_ = int(feedback.event_id.split("/")[-2])
        row = rows[(feedback.user_id, round_)]
        assert (feedback.tip_id, feedback.action.value, feedback.dwell_ms) == (
            row["tip_id"], row["action"], row["dwell_ms"]
        )  # fmt: skip


async def test_same_seed_same_judgments_and_random_faces_the_same_world(
    topics: Settings, pg: asyncpg.Connection
) -> None:
    first = await run_closed_loop(topics, small("egreedy-v1", seed=202), quiet=True)
    second = await run_closed_loop(topics, small("egreedy-v1", seed=202), quiet=True)
    baseline = await run_closed_loop(topics, small("random", seed=202), quiet=True)
    rows_1 = await run_rows(pg, first["run_id"])
    rows_2 = await run_rows(pg, second["run_id"])
    rows_r = await run_rows(pg, baseline["run_id"])
    assert judgments(rows_1) == judgments(rows_2)
    assert {k: v for k, v in first.items() if k != "run_id"} == {
        k: v for k, v in second.items() if k != "run_id"
    }

    def world(rows: list[dict[str, object]]) -> list[object]:
        return [
            (r["user_id"], r["round"], r["features"]["moment"],  # type: ignore[index]
             [{k: c[k] for k in ("tip_id", "priority", "is_overdue", "task_age_days",
                                 "expected_reward")}
              for c in r["features"]["candidates"]])  # type: ignore[index]
            for r in rows
        ]  # fmt: skip

    assert world(rows_1) == world(rows_r)
    assert all(r["propensity"] == pytest.approx(1 / 8) for r in rows_r)
    # Where both runs chose the same tip, the judge drew the same reaction.
    by_key = {(r["user_id"], r["round"]): r for r in rows_r}
    same_tip = [r for r in rows_1 if by_key[(r["user_id"], r["round"])]["tip_id"] == r["tip_id"]]
    for r in same_tip:
        other = by_key[(r["user_id"], r["round"])]
        assert (r["action"], r["dwell_ms"]) == (other["action"], other["dwell_ms"])


@pytest.fixture
async def worker(topics: Settings, database: str) -> AsyncIterator[WorkerProcess]:
    # A per-user policy: the determinism check below needs state that depends only on the
    # user's own events (a pooled prior also depends on the order users' feedback arrives).
    async with WorkerProcess(topics, policy="egreedy-v1") as process:
        yield process


async def test_through_the_worker_is_deterministic_and_learns(
    worker: WorkerProcess, pg: asyncpg.Connection
) -> None:
    config = small("egreedy-v1", via="worker", seed=303, rounds=5)
    first = await run_closed_loop(worker.settings, config, quiet=True)
    second = await run_closed_loop(worker.settings, config, quiet=True)
    await assert_summary_matches_db(pg, first)
    await assert_summary_matches_db(pg, second)
    rows = await run_rows(pg, first["run_id"])
    assert {r["features"]["via"] for r in rows} == {"worker"}
    assert judgments(rows) == judgments(await run_rows(pg, second["run_id"]))
    # The worker learned every judgment, in the run's namespace only.
    user_id = rows[0]["user_id"]
    status, stats = await worker.get(f"/stats/egreedy/{user_id}?run_id={first['run_id']}")
    assert status == 200
    assert stats["pulls"] == 5
    mine = [r["reward_milli"] / 1000 for r in rows if r["user_id"] == user_id]
    assert stats["cumulative_reward"] == pytest.approx(sum(mine))
    status, production = await worker.get(f"/stats/egreedy/{user_id}")
    assert status == 404 or production["pulls"] == 0  # production state untouched


async def test_cli_json_line_matches_tables(topics: Settings, pg: asyncpg.Connection) -> None:
    code, out, err = await run_cli(
        topics, "simulate", "--policy", "random", "--users", "1", "--rounds", "3",
        "--seed", "5", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {
        "run_id", "events", "mean_reward", "ci95_low", "ci95_high", "expected_mean_reward",
        "random_expected_mean_reward", "oracle_expected_mean_reward", "gap_closed",
        "per_persona", "fallbacks",
    }  # fmt: skip
    assert summary["events"] == 15
    assert summary["fallbacks"] == {}
    await assert_summary_matches_db(pg, summary)
    run = await pg.fetchrow("SELECT config FROM sim_runs WHERE run_id = $1", summary["run_id"])
    config = json.loads(run["config"])
    assert (config["policy"], config["via"], config["seed"], config["rounds"]) == (
        "random", "inprocess", 5, 3
    )  # fmt: skip


async def test_cli_json_logs_carry_the_run_id(topics: Settings, pg: asyncpg.Connection) -> None:
    """TIPSTREAM_LOG_FORMAT=json: stderr is JSON lines only, the run's start and finish
    among them with its run_id; stdout keeps the --json summary."""
    code, out, err = await run_cli(
        topics.model_copy(update={"log_format": "json"}),
        "simulate", "--policy", "random", "--users", "1", "--rounds", "2", "--seed", "5",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    run_id = json.loads(out.strip().splitlines()[-1])["run_id"]
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    mine = [line["message"] for line in lines if line.get("run_id") == run_id]
    assert f"run {run_id} started" in mine[0]
    assert mine[-1] == f"run {run_id} finished"


async def test_sigint_marks_the_run_cancelled(topics: Settings, pg: asyncpg.Connection) -> None:
    run_id = f"sim-test-cancel-{secrets.token_hex(3)}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.cli", "simulate", "--policy", "random",
        "--users", "20", "--rounds", "100000", "--run-id", run_id, "--quiet",
        env=child_env(topics), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(600):  # until it has recorded some judgments
            if (await pg.fetchval("SELECT count(*) FROM sim_events WHERE run_id = $1", run_id)) > 0:
                break
            await asyncio.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 1, err
    assert b"cancelled" in err
    run = await pg.fetchrow(
        "SELECT status, events, finished_at FROM sim_runs WHERE run_id = $1", run_id
    )
    assert run["status"] == "cancelled"
    assert run["events"] > 0
    assert run["finished_at"] is not None
