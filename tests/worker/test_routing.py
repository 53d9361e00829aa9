"""Two workers in one group: a request reaches the worker owning the user's partition."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings
from streams.worker.partitioning import partition_for

pytestmark = pytest.mark.integration

CANDIDATES = [
    {"tip_id": "a", "features": {"priority": 1, "is_overdue": False, "task_age_days": 0}},
    {"tip_id": "b", "features": {"priority": 4, "is_overdue": True, "task_age_days": 9}},
]


async def _partitions(worker: WorkerProcess) -> set[int]:
    status, health = await worker.get("/healthz")
    return set(health["partitions"]) if status == 200 else set()


async def _score_outcomes(worker: WorkerProcess) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(worker.url + "/metrics") as response:
        text = await response.text()
    found = {}
    for line in text.splitlines():
        if line.startswith("tipstream_score_requests_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            found[outcome] = float(line.split()[-1])
    return found


async def test_score_is_forwarded_to_the_partition_owner(topics: Settings, database: str) -> None:
    one, two = WorkerProcess(topics), WorkerProcess(topics)
    one.start()
    two.start()
    try:
        await one.wait_ready()
        await two.wait_ready()
        # Wait for the group to settle: every partition owned, by exactly one of the two.
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            mine, theirs = await _partitions(one), await _partitions(two)
            if mine and theirs and not mine & theirs and len(mine | theirs) == topics.partitions:
                break
            assert asyncio.get_running_loop().time() < deadline, (mine, theirs)
            await asyncio.sleep(0.5)
        # One user per partition the other worker owns: a wrong owner for any of them shows.
        users = {partition_for(f"route-{i}", 8): f"route-{i}" for i in range(1000)}
        routed = [users[p] for p in sorted(theirs)]
        answers = {}
        for user in routed:
            body = {"user_id": user, "candidates": CANDIDATES,
                    "context": {"hour_of_day": 8, "day_of_week": 1}, "seed": 3}  # fmt: skip
            status, answers[user] = await one.post("/score/egreedy", body)
            assert status == 200, (answers[user], one.log(), two.log())
            assert answers[user]["tip_id"] in {"a", "b"}
        assert (await _score_outcomes(one)) == {"forwarded": len(routed)}
        assert (await _score_outcomes(two)) == {"ok": len(routed)}
        user = routed[0]
        body = {"user_id": user, "candidates": CANDIDATES,
                "context": {"hour_of_day": 8, "day_of_week": 1}, "seed": 3}  # fmt: skip
        # The owner answers directly, with the same seeded draw.
        assert await two.post("/score/egreedy", body) == (200, answers[user])
        status, _ = await one.get(f"/stats/egreedy/{user}")
        assert status == 404  # forwarded too: the owner has no state for this user yet
    finally:
        one.stop()
        two.stop()
