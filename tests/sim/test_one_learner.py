"""Through the worker and in-process are one computation (issue 10).

With ``--concurrency 1`` the simulator's schedule is the same both ways, every score waits
until the worker has learned from every earlier reward of the run (``min_run_updates``), and
the in-process policy draws its exploration from the same seed the worker is sent. So the
same seed must give the same choices, propensities, reactions and rewards, and the worker's
final user states must be, byte for byte, those of the policy replayed in-process over the
same schedule. For a pooled policy this also checks the pool: every user's state depends on
the pooled types it was learned against.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from typing import Any

import asyncpg
import pytest

from bandit.base import Moment, Task
from bandit.registry import make_policy
from judges.world import World
from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig, make_users, resolve_personas
from tests.sim.simhelpers import judgments, run_rows

pytestmark = pytest.mark.integration


def _replayed_states(policy_name: str, config: SimConfig, rows: list[dict[str, Any]]) -> dict:
    """The policy's user states after the run's rewards, in the schedule's order (round by
    round, users in the run's order), learned in this process."""
    policy = make_policy(policy_name)
    users = make_users(World(config.seed), resolve_personas(config.personas_path), config.users)
    order = {u.user_id: i for i, u in enumerate(users)}
    states = {u.user_id: policy.new_user() for u in users}
    shared = policy.new_shared()
    for row in sorted(rows, key=lambda r: (r["round"], order[r["user_id"]])):
        if row["reward_milli"] is None:
            continue
        moment = Moment(**row["features"]["moment"])
        chosen = row["features"]["chosen"]
        task = Task(
            chosen["tip_id"], chosen["priority"], chosen["is_overdue"], chosen["task_age_days"]
        )
        policy.update(states[row["user_id"]], shared, moment, task, row["reward_milli"] / 1000)
    return {u: hashlib.sha256(policy.encode_user(s)).hexdigest() for u, s in states.items()}


@pytest.mark.parametrize("policy", ["egreedy-v1", "pooledmix-v3"])
async def test_worker_and_inprocess_are_the_same_computation(
    topics: Settings, database: str, pg: asyncpg.Connection, policy: str
) -> None:
    config = SimConfig(
        policy=policy,
        via="worker",
        users=2,
        rounds=6,
        seed=404,
        concurrency=1,
        epsilon=topics.epsilon,
    )
    async with WorkerProcess(topics, policy=policy) as worker:
        through = await run_closed_loop(worker.settings, config, quiet=True)
        rows_worker = await run_rows(pg, through["run_id"])
        digests = {}
        for user_id in {r["user_id"] for r in rows_worker}:
            # The run ends when its last feedback is published, not when it is learned from.
            rewarded = sum(
                1 for r in rows_worker if r["user_id"] == user_id and r["reward_milli"] is not None
            )
            path = f"/stats/egreedy/{user_id}?run_id={through['run_id']}"
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                status, stats = await worker.get(path)
                assert status == 200, stats
                if stats["pulls"] >= rewarded or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.1)
            digests[user_id] = stats["state_sha256"]
    inprocess = await run_closed_loop(
        topics, dataclasses.replace(config, via="inprocess"), quiet=True
    )
    rows_inprocess = await run_rows(pg, inprocess["run_id"])

    assert len(rows_worker) == 10 * 6
    assert judgments(rows_worker) == judgments(rows_inprocess)
    explored = sum(r["explored"] for r in rows_worker)
    assert 0 < explored < len(rows_worker)  # both ways explored, at the same moments
    assert digests == _replayed_states(policy, config, rows_inprocess)
