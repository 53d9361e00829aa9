"""Where the simulator writes: ``sim_runs`` (one row per run) and ``sim_events`` (one per judgment).

Events are buffered and written in batches with ``COPY`` (a run of 100k judgments is a few
hundred round trips, not 100k). A batch is also written once ``progress_every_s`` has passed
since the last, and each batch adds its rows to ``sim_runs.events``: a running run's
progress and its partial curve are live (``tipstream console`` polls them), at most about one
small write a second. ``sim_requests`` (migration 0002) holds the external judge's
pending requests between its two phases.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from schemas.migrations import migrate
from streams.worker.sink import check_database

__all__ = [
    "DATABASE_WAIT_S",
    "EVENT_COLUMNS",
    "EventRow",
    "SimStore",
    "connect_pool",
    "fetch_events",
    "fetch_run",
]

# How long a one-shot command (simulate, report, evaluate) waits for a database that refuses
# connections, which may be starting, before it fails; the worker waits 20 s.
DATABASE_WAIT_S = 10.0

EVENT_COLUMNS = (
    "run_id",
    "event_id",
    "round",
    "user_id",
    "persona",
    "tip_id",
    "action",
    "dwell_ms",
    "reward_milli",
    "policy",
    "propensity",
    "explored",
    "features",
    "expected_reward",
    "occurred_at",
)


@dataclass(frozen=True, slots=True)
class EventRow:
    """One judgment, as stored in ``sim_events``."""

    run_id: str
    event_id: str
    round: int
    user_id: str
    persona: str
    tip_id: str
    action: str
    dwell_ms: int | None
    reward_milli: int | None
    policy: str
    propensity: float
    explored: bool
    features: Mapping[str, Any]
    expected_reward: float | None
    occurred_at: datetime

    def as_record(self) -> tuple[Any, ...]:
        return (
            self.run_id,
            self.event_id,
            self.round,
            self.user_id,
            self.persona,
            self.tip_id,
            self.action,
            self.dwell_ms,
            self.reward_milli,
            self.policy,
            self.propensity,
            self.explored,
            self.features,
            self.expected_reward,
            self.occurred_at,
        )


def _jsonb_encode(value: Any) -> bytes:
    # jsonb's binary wire format: a version byte (1), then the JSON text.
    text = value.encode() if isinstance(value, str) else orjson.dumps(value)
    return b"\x01" + text


def _jsonb_decode(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects through orjson; binary, so COPY can use it too.
    await conn.set_type_codec(
        "jsonb",
        encoder=_jsonb_encode,
        decoder=_jsonb_decode,
        schema="pg_catalog",
        format="binary",
    )


async def connect_pool(database_url: str, *, max_size: int = 4) -> asyncpg.Pool:
    """A small pool with jsonb decoded to Python; migrations applied (idempotent).

    An unreachable database raises ``DatabaseUnavailableError`` (one line naming host:port)
    within ``DATABASE_WAIT_S``, the worker's own probe.
    """
    await check_database(database_url, timeout_s=DATABASE_WAIT_S)
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=max_size, init=_init_connection
    )
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool


class SimStore:
    """Writes one run's rows; ``add`` buffers, ``flush`` writes a batch with COPY and the
    progress (``sim_runs.events``); ``add`` flushes a full batch, or any batch once
    ``progress_every_s`` has passed since the last flush."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        run_id: str,
        *,
        batch_size: int = 500,
        progress_every_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self.run_id = run_id
        self.batch_size = batch_size
        self.progress_every_s = progress_every_s
        self._buffer: list[tuple[Any, ...]] = []
        self._lock = asyncio.Lock()
        self._last_flush = time.monotonic()
        self.written = 0

    # -- runs ---------------------------------------------------------------------------------
    async def create_run(self, config: Mapping[str, Any]) -> None:
        await self.pool.execute(
            "INSERT INTO sim_runs (run_id, status, config) VALUES ($1, 'running', $2)",
            self.run_id,
            dict(config),
        )

    async def finish_run(
        self,
        status: str,
        *,
        events: int,
        mean_reward: float | None,
        error: str | None = None,
        stats: Mapping[str, Any] | None = None,
        llm: Mapping[str, Any] | None = None,
    ) -> None:
        llm = llm or {}
        await self.pool.execute(
            """
            UPDATE sim_runs SET status = $2, finished_at = now(), events = $3, mean_reward = $4,
                error = $5, stats = COALESCE($6, stats),
                llm_input_tokens = $7, llm_output_tokens = $8, llm_cache_read_tokens = $9,
                llm_cache_write_tokens = $10, llm_calls = $11, llm_fallbacks = $12
            WHERE run_id = $1
            """,
            self.run_id,
            status,
            events,
            mean_reward,
            error,
            dict(stats) if stats is not None else None,
            int(llm.get("input_tokens", 0)),
            int(llm.get("output_tokens", 0)),
            int(llm.get("cache_read_tokens", 0)),
            int(llm.get("cache_write_tokens", 0)),
            int(llm.get("calls", 0)),
            dict(llm.get("fallbacks", {})),
        )

    async def set_progress(self, events: int) -> None:
        await self.pool.execute(
            "UPDATE sim_runs SET events = $2 WHERE run_id = $1", self.run_id, events
        )

    # -- events -------------------------------------------------------------------------------
    async def add(self, row: EventRow) -> None:
        self._buffer.append(row.as_record())
        due = time.monotonic() - self._last_flush >= self.progress_every_s
        if len(self._buffer) >= self.batch_size or due:
            await self.flush()

    async def flush(self) -> None:
        """Write the buffered rows and add them to ``sim_runs.events`` (the rows so far)."""
        async with self._lock:
            self._last_flush = time.monotonic()
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table(
                    "sim_events", records=batch, columns=list(EVENT_COLUMNS)
                )
                await conn.execute(
                    "UPDATE sim_runs SET events = events + $2 "
                    "WHERE run_id = $1 AND status = 'running'",
                    self.run_id,
                    len(batch),
                )
            self.written += len(batch)

    # -- external judge: pending requests ------------------------------------------------------
    async def add_requests(self, requests: Iterable[tuple[str, int, Mapping[str, Any]]]) -> None:
        records = [
            (self.run_id, user_id, round_, dict(payload)) for user_id, round_, payload in requests
        ]
        async with self.pool.acquire() as conn:
            await conn.copy_records_to_table(
                "sim_requests", records=records, columns=["run_id", "user_id", "round", "request"]
            )

    async def pending_requests(self) -> dict[tuple[str, int], dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT user_id, round, request FROM sim_requests WHERE run_id = $1", self.run_id
        )
        return {(r["user_id"], r["round"]): r["request"] for r in rows}

    async def delete_requests(self, keys: Sequence[tuple[str, int]]) -> None:
        await self.pool.executemany(
            "DELETE FROM sim_requests WHERE run_id = $1 AND user_id = $2 AND round = $3",
            [(self.run_id, user_id, round_) for user_id, round_ in keys],
        )


async def fetch_run(pool: asyncpg.Pool, run_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT * FROM sim_runs WHERE run_id = $1", run_id)
    return dict(row) if row is not None else None


async def fetch_events(pool: asyncpg.Pool, run_id: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT * FROM sim_events WHERE run_id = $1 ORDER BY round, user_id", run_id
    )
    return [dict(r) for r in rows]
