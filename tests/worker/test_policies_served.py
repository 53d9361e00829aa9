"""A pooled policy served by the real worker, with shadows learning beside it."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings
from streams.worker.partitioning import partition_for
from tests.worker.events import Producer, feedback, shown, wait_for_rows

pytestmark = pytest.mark.integration

CANDIDATES = [
    {"tip_id": "low", "features": {"priority": 1, "is_overdue": False, "task_age_days": 1}},
    {"tip_id": "high", "features": {"priority": 4, "is_overdue": True, "task_age_days": 3}},
]


async def test_pooled_policy_serves_and_shadows_learn(
    topics: Settings, database: str, pg: asyncpg.Connection
) -> None:
    worker = WorkerProcess(topics, policy="pooled-v1", shadow_policies="pooledmix-v1,egreedy-v1")
    worker.start()
    try:
        await worker.wait_ready()
        status, health = await worker.get("/healthz")
        assert (health["policy"], health["shadow_policies"]) == (
            "pooled-v1",
            ["pooledmix-v1", "egreedy-v1"],
        )
        run = uuid.uuid4().hex[:6]
        users = [f"pooled-{run}-{i}" for i in range(6)]
        fbs = []
        async with Producer(worker.settings) as kafka:
            for u in users:
                for t in range(5):
                    fb = feedback(u, f"t{t}", "done", 30_000)
                    fbs.append(fb["eventId"])
                    await kafka.shows(shown(u, f"t{t}"))
                    await kafka.feedbacks(fb)
        await wait_for_rows(pg, fbs)
        for u in users:
            _, stats = await worker.get(f"/stats/egreedy/{u}")
            assert stats["pulls"] == 5
        # The prior is pooled per partition: the new user must share one with trained users.
        trained = {partition_for(u, topics.partitions) for u in users}
        newcomer = next(
            f"new-{run}-{i}" for i in range(1000) if partition_for(f"new-{run}-{i}", 8) in trained
        )
        body = {
            "user_id": newcomer,
            "candidates": CANDIDATES,
            "context": {"hour_of_day": 9, "day_of_week": 4},
            "seed": 1,
        }
        answers = {}
        for policy in (None, "pooledmix-v1", "egreedy-v1"):
            status, answer = await worker.post("/score/egreedy", {**body, "policy": policy})
            assert status == 200, (answer, worker.log())
            answers[answer["policy"]] = answer
            assert 0 < answer["propensity"] <= 1
        assert set(answers) == {"pooled-v1", "pooledmix-v1", "egreedy-v1"}
        # The pooled prior learned from the other users' rewards (all +1 for the served tip
        # features above): a brand-new user's greedy score is no longer zero.
        assert answers["pooled-v1"]["score"] != 0.0
    finally:
        worker.stop()
