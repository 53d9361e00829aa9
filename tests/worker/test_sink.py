"""The row sink on the real PostgreSQL: rows COPYed through per-connection staging tables land
once and as sent, two writes run at once, and a connection the server kills is replaced."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from schemas.events import TipShown, from_epoch_ms
from schemas.migrations import migrate
from streams.worker.joiner import FeedbackRow
from streams.worker.metrics import WorkerMetrics
from streams.worker.sink import FeedbackSink

# A backfill: times a month before "now", never the wall clock.
T0_MS = int((datetime.now(UTC) - timedelta(days=30)).timestamp() * 1000)


def row(i: int, **changes: object) -> FeedbackRow:
    fields: dict[str, object] = {
        "event_id": f"fb-{i}",
        "tip_id": f"tip-{i}",
        "user_id": f"user-{i % 3}",
        "action": "done",
        "dwell_ms": 20_000 + i,
        "reward_milli": 750,
        "policy": "pooledmix-v3",
        "propensity": 0.9,
        "status": "applied",
        "occurred_at_ms": T0_MS + i,
    }
    fields.update(changes)
    return FeedbackRow(**fields)  # type: ignore[arg-type]


def show(i: int, candidates: bool = True) -> TipShown:
    document = {
        "type": "TipShown",
        "schemaVersion": 1,
        "eventId": f"show-{i}",
        "tipId": f"tip-{i}",
        "userId": f"user-{i % 3}",
        "servedAt": from_epoch_ms(T0_MS + i).isoformat(),
        "policy": "pooledmix-v3",
        "propensity": 0.5,
        "features": {
            "hourOfDay": 9,
            "dayOfWeek": 2,
            "priority": 3,
            "isOverdue": False,
            "taskAgeDays": 1.5,
        },
    }
    if candidates:
        document["candidates"] = [
            {"tipId": f"tip-{i}", "priority": 3, "isOverdue": False, "taskAgeDays": 1.5},
            {"tipId": "other é\\", "priority": 1, "isOverdue": True, "taskAgeDays": 0.0},
        ]
    return msgspec.convert(document, TipShown)


async def counts(dsn: str) -> tuple[int, int]:
    """Rows in ``tip_feedback`` and in ``tip_shown``."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM tip_feedback), (SELECT count(*) FROM tip_shown)"
        )
    finally:
        await conn.close()
    assert row is not None
    return row[0], row[1]


@pytest.fixture
async def schema_dsn(database: str, pg: asyncpg.Connection) -> AsyncIterator[str]:
    """The database URL with a migrated schema of the test's own (search_path)."""
    schema = f"test_sink_{secrets.token_hex(4)}"
    await pg.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{database}?search_path={schema}"
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        yield dsn
    finally:
        await conn.close()
        await pg.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
async def sink(schema_dsn: str) -> AsyncIterator[FeedbackSink]:
    sink = FeedbackSink(schema_dsn, WorkerMetrics(), max_backoff_s=0.2)
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


async def test_rows_and_shows_land_once_and_as_sent(sink: FeedbackSink, schema_dsn: str) -> None:
    rows = [row(0), row(1, dwell_ms=None, reward_milli=None, action=None, status="expired")]
    rows.append(row(2, event_id="fb-0"))  # the same event twice in one batch: one row
    shows = [show(0), show(1, candidates=False)]
    await sink.write(rows)
    await sink.write((), shows)
    await sink.write(rows, shows)  # a replay after a crash: no second row
    conn = await asyncpg.connect(schema_dsn)
    try:
        feedback = await conn.fetch("SELECT * FROM tip_feedback ORDER BY event_id")
        shown = await conn.fetch("SELECT * FROM tip_shown ORDER BY event_id")
    finally:
        await conn.close()
    assert [r["event_id"] for r in feedback] == ["fb-0", "fb-1"]
    first, expired = feedback
    assert (first["tip_id"], first["dwell_ms"], first["reward_milli"]) == ("tip-0", 20_000, 750)
    assert first["occurred_at"] == from_epoch_ms(T0_MS)
    assert (expired["action"], expired["dwell_ms"], expired["reward_milli"]) == (None, None, None)
    assert expired["status"] == "expired"
    assert [r["event_id"] for r in shown] == ["show-0", "show-1"]
    assert shown[0]["served_at"] == from_epoch_ms(T0_MS)
    assert '"other é\\\\"' in shown[0]["candidates"]  # json, stored as sent
    assert shown[1]["candidates"] is None
    assert '"hourOfDay":9' in shown[1]["features"]
    # Nothing is left behind in the sink's staging tables after a commit.
    assert sink._pool is not None
    async with sink._pool.acquire() as own:
        staged = await own.fetchval(
            "SELECT (SELECT count(*) FROM stage_feedback) + (SELECT count(*) FROM stage_shown)"
        )
    assert staged == 0


async def test_two_writes_at_once_use_a_staging_table_each(
    sink: FeedbackSink, schema_dsn: str
) -> None:
    await asyncio.gather(
        sink.write([row(i) for i in range(0, 500)]),
        sink.write([row(i) for i in range(500, 1000)], [show(i) for i in range(300)]),
    )
    assert await counts(schema_dsn) == (1000, 300)


async def test_a_connection_killed_by_the_server_is_replaced_and_the_write_retried(
    sink: FeedbackSink, schema_dsn: str, pg: asyncpg.Connection
) -> None:
    await sink.write([row(0)])
    assert sink._pool is not None
    holders = sink._pool._holders  # the pool's live connections (asyncpg's own)
    pids = [h._con.get_server_pid() for h in holders if h._con is not None]
    assert pids
    await pg.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
    await sink.write([row(1)], [show(1)])  # a new connection, with its staging tables
    assert await counts(schema_dsn) == (2, 1)
    assert sink.health() is None


async def test_withdrawn_rows_are_left_out_of_a_write_already_under_way(
    sink: FeedbackSink, schema_dsn: str
) -> None:
    """The worker starts a batch's write before its learning ends: the rows of users whose
    learning then failed (dead-lettered instead) are withdrawn before the commit."""
    withdrawn: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
    write = asyncio.ensure_future(sink.write([row(i) for i in range(6)], (), withdrawn))
    for _ in range(50):  # the rows are copied in, and the write waits for the verdict
        await asyncio.sleep(0.01)
    assert not write.done()
    assert await counts(schema_dsn) == (0, 0)
    withdrawn.set_result(frozenset({"fb-1", "fb-4"}))
    await write
    conn = await asyncpg.connect(schema_dsn)
    try:
        ids = [r[0] for r in await conn.fetch("SELECT event_id FROM tip_feedback ORDER BY 1")]
    finally:
        await conn.close()
    assert ids == ["fb-0", "fb-2", "fb-3", "fb-5"]


async def test_a_write_retried_after_the_verdict_still_leaves_the_withdrawn_rows_out(
    sink: FeedbackSink, schema_dsn: str, pg: asyncpg.Connection
) -> None:
    await sink.write([row(0)])
    withdrawn: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
    withdrawn.set_result(frozenset({"fb-2"}))
    assert sink._pool is not None
    pids = [h._con.get_server_pid() for h in sink._pool._holders if h._con is not None]
    await pg.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
    await sink.write([row(1), row(2), row(3)], (), withdrawn)  # fails once, then retried
    assert await counts(schema_dsn) == (3, 0)  # fb-0, fb-1, fb-3
    assert sink._metrics.registry.get_sample_value("tipstream_sink_retries_total") == 1


async def test_a_cancelled_verdict_rolls_the_write_back(
    sink: FeedbackSink, schema_dsn: str
) -> None:
    withdrawn: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
    write = asyncio.ensure_future(sink.write([row(i) for i in range(4)], [show(0)], withdrawn))
    await asyncio.sleep(0.3)
    withdrawn.cancel()  # the batch failed before its learning ended
    with pytest.raises(asyncio.CancelledError):
        await write
    assert await counts(schema_dsn) == (0, 0)
    await sink.write([row(9)])  # the pool and its staging tables are fine after it
    assert await counts(schema_dsn) == (1, 0)
