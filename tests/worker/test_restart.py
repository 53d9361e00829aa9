"""A worker stopped mid-stream (SIGTERM or kill -9) loses nothing and applies nothing twice.

Also with payload times a month older than the record times, as in a backfill or a replay:
the idempotence guard runs on stream time only, so such events are guarded like any other.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings
from tests.worker.events import T0, Producer, feedback, shown, wait_for_rows

pytestmark = pytest.mark.integration

USERS = 12
TIPS_PER_USER = 15
ACTIONS = [
    ("done", 30_000, 1000),
    ("done", 5_000, -300),
    ("snooze", 4_000, 100),
    ("dismiss", 1_000, -1000),
    ("done", 200_000, 600),
]


@pytest.mark.parametrize(
    ("kill", "payload_age", "stop_timeout_s", "store"),
    [
        (False, timedelta(0), 25.0, "memory"),
        (True, timedelta(0), 25.0, "memory"),
        (True, timedelta(days=30), 25.0, "memory"),
        # A stop that overruns its bound exits at once, mid-batch: a kill -9 in effect.
        (False, timedelta(days=30), 0.001, "memory"),
        # State on disk: the second worker starts on the first one's RocksDB files.
        (True, timedelta(days=30), 25.0, "rocksdb"),
    ],
    ids=["sigterm", "kill-9", "kill-9-backfill", "sigterm-overdue-backfill", "kill-9-rocksdb"],
)
async def test_restart_mid_stream_loses_nothing_and_applies_nothing_twice(
    topics: Settings,
    database: str,
    pg: asyncpg.Connection,
    kill: bool,
    payload_age: timedelta,
    stop_timeout_s: float,
    store: str,
) -> None:
    run = uuid.uuid4().hex[:8]
    users = [f"restart-{run}-{i}" for i in range(USERS)]
    expected: dict[str, tuple[int, int]] = {}  # user -> (pulls, reward milli sum)
    events: list[tuple[dict[str, object], dict[str, object]]] = []
    for u in users:
        total = 0
        for t in range(TIPS_PER_USER):
            action, dwell, milli = ACTIONS[(t + len(u)) % len(ACTIONS)]
            at = T0 - payload_age
            events.append(
                (
                    shown(u, f"tip-{t}", at=at),
                    feedback(u, f"tip-{t}", action, dwell, at=at + timedelta(seconds=40)),
                )
            )
            total += milli
        expected[u] = (TIPS_PER_USER, total)
    feedback_ids = [fb["eventId"] for _, fb in events]

    first = WorkerProcess(topics, loglevel="info", stop_timeout_s=stop_timeout_s, state_store=store)
    first.start()
    await first.wait_ready()
    async with Producer(topics) as kafka:

        async def produce_all() -> None:
            for show, fb in events:
                await kafka.shows(show)
                await kafka.feedbacks(fb)
                await asyncio.sleep(0.005)  # a steady stream, so the stop lands mid-way

        producing = asyncio.create_task(produce_all())
        # Stop once the worker is visibly part-way through.
        query = "SELECT count(*) FROM tip_feedback WHERE event_id = ANY($1)"
        while True:
            if await pg.fetchval(query, feedback_ids) >= len(events) // 4:
                break
            await asyncio.sleep(0.05)
        code = first.stop(kill=kill)
        assert code == (-9 if kill else 0), first.log()
        if stop_timeout_s < 1:
            assert "stop did not finish within" in first.log()
        done_before = await pg.fetchval(
            "SELECT count(*) FROM tip_feedback WHERE event_id = ANY($1)", feedback_ids
        )
        assert done_before < len(events), "the stop should land mid-stream"
        await producing

        # Same app id: same group, same changelog; and the same files for a store on disk.
        second = WorkerProcess(
            topics, loglevel="info", state_store=store, data_dir=first.settings.data_dir
        )
        second.start()
        try:
            await second.wait_ready()
            # Re-deliver a slice of feedback the first worker had already applied.
            for _, fb in events[:40]:
                await kafka.feedbacks(fb)
            try:
                rows = await wait_for_rows(pg, feedback_ids, timeout_s=90)
            except TimeoutError as exc:
                for name, proc in (("first", first), ("second", second)):
                    shutil.copy(proc.log_path, f"/tmp/tipstream-restart-{run}-{name}.log")
                _, health = await second.get("/healthz")
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(second.url + "/metrics") as response,
                ):
                    metrics = await response.text()
                state = Path(f"/tmp/tipstream-restart-{run}-state.txt")
                await asyncio.to_thread(state.write_text, f"{health}\n{metrics}")
                raise AssertionError(
                    f"{exc}\n-- first worker:\n{first.log()}\n-- second worker:\n{second.log()}"
                ) from exc
            assert {row["status"] for row in rows.values()} == {"applied"}
            count = await pg.fetchval(
                "SELECT count(*) FROM tip_feedback WHERE user_id = ANY($1)", users
            )
            assert count == len(events)
            for u, (pulls, milli) in expected.items():
                status, stats = await second.get(f"/stats/egreedy/{u}")
                assert status == 200, second.log()
                assert (stats["pulls"], round(stats["cumulative_reward"] * 1000)) == (
                    pulls,
                    milli,
                ), u
                db_sum = await pg.fetchval(
                    "SELECT sum(reward_milli) FROM tip_feedback WHERE user_id = $1", u
                )
                assert db_sum == milli
        finally:
            second.stop()
