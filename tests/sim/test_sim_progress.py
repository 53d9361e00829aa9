"""The simulator's live progress: ``sim_runs.events`` counts the rows written while a run runs.

``tipstream console`` polls it (and the partial curve in ``sim_events``), so a batch must be
written when it is full or once ``progress_every_s`` has passed, not only at the end.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from streams.sim.store import EventRow, SimStore, connect_pool


def _row(run_id: str, i: int) -> EventRow:
    return EventRow(
        run_id=run_id,
        event_id=f"e{i}",
        round=i,
        user_id="u0",
        persona="p",
        tip_id="t",
        action="done",
        dwell_ms=1000,
        reward_milli=1000,
        policy="random",
        propensity=0.5,
        explored=False,
        features={},
        expected_reward=None,
        occurred_at=datetime.now(UTC),
    )


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect_pool(database, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def _events(pool: asyncpg.Pool, run_id: str) -> tuple[int, int]:
    progress = await pool.fetchval("SELECT events FROM sim_runs WHERE run_id = $1", run_id)
    rows = await pool.fetchval("SELECT count(*) FROM sim_events WHERE run_id = $1", run_id)
    return int(progress), int(rows)


async def test_progress_is_written_on_time_not_only_when_a_batch_fills(
    pool: asyncpg.Pool,
) -> None:
    run_id = f"test-progress-{secrets.token_hex(4)}"
    store = SimStore(pool, run_id, batch_size=1000, progress_every_s=0.2)
    await store.create_run({"policy": "random"})
    try:
        await store.add(_row(run_id, 0))  # the first add after create: not due yet
        await store.add(_row(run_id, 1))
        assert await _events(pool, run_id) == (0, 0)
        await asyncio.sleep(0.25)
        await store.add(_row(run_id, 2))  # due: all three written, progress 3
        assert await _events(pool, run_id) == (3, 3)
        await store.add(_row(run_id, 3))
        assert await _events(pool, run_id) == (3, 3)
        await store.flush()
        assert await _events(pool, run_id) == (4, 4)
        await store.finish_run("finished", events=store.written, mean_reward=1.0)
        assert await _events(pool, run_id) == (4, 4)
    finally:
        await pool.execute("DELETE FROM sim_runs WHERE run_id = $1", run_id)


async def test_a_full_batch_is_written_with_its_progress(pool: asyncpg.Pool) -> None:
    run_id = f"test-progress-{secrets.token_hex(4)}"
    store = SimStore(pool, run_id, batch_size=2, progress_every_s=3600)
    await store.create_run({"policy": "random"})
    try:
        for i in range(5):
            await store.add(_row(run_id, i))
        assert await _events(pool, run_id) == (4, 4)
        assert store.written == 4
    finally:
        await pool.execute("DELETE FROM sim_runs WHERE run_id = $1", run_id)
