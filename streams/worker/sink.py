"""Writes ``tip_feedback`` rows (and production shows, ``tip_shown``) in batches, idempotently.

A batch's rows are COPYed into a staging table of the connection's own, then moved with one
``INSERT ... SELECT ... ON CONFLICT (event_id) DO NOTHING``: a replay after a crash writes no
second row. A failing database is retried with backoff
for as long as it takes; the batch is not acknowledged to Kafka meanwhile, so nothing is
lost and the stream simply waits (back-pressure).

The sink also tells the truth about the database for ``/healthz``: ``health()`` gives a
reason while writes are being retried, or once the database has been unreachable for more
than ``DOWN_AFTER_S`` (a probe every few seconds notices an outage while no rows flow).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from urllib.parse import urlsplit

import asyncpg
import msgspec

from schemas.events import TipShown, from_epoch_ms
from schemas.migrations import migrate
from streams.worker.joiner import FeedbackRow
from streams.worker.metrics import WorkerMetrics

__all__ = ["DOWN_AFTER_S", "DatabaseUnavailableError", "FeedbackSink", "check_database"]

DOWN_AFTER_S = 10.0
PROBE_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)

# Each batch's rows are COPYed (binary) into a staging table of the connection's own, then
# moved with one INSERT ... SELECT ... ON CONFLICT (event_id) DO NOTHING: a replay writes no
# second row. Against the INSERT of unnest() arrays it replaced (asyncpg encodes arrays with
# an ABC check per element), `python -m bench.sink` (6 Dec 2026, 1,000 rows and 1,000 shows a
# write): the worker's CPU 7.6 instead of 9.7 µs a row, the write 22.5 instead of 24.5 µs a
# row (shows without candidates); 11.7 / 14.7 and 32.1 / 33.1 with 8 candidates a show. The
# staging tables are temporary: created with each connection, emptied at each commit.
_FEEDBACK_COLUMNS = (
    "event_id", "tip_id", "user_id", "action", "dwell_ms", "reward_milli", "policy",
    "propensity", "status", "occurred_at",
)  # fmt: skip
_SHOWN_COLUMNS = (
    "event_id", "tip_id", "user_id", "served_at", "policy", "propensity", "features",
    "candidates",
)  # fmt: skip
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS stage_feedback (
    event_id text, tip_id text, user_id text, action text, dwell_ms bigint,
    reward_milli integer, policy text, propensity double precision, status text,
    occurred_at timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_shown (
    event_id text, tip_id text, user_id text, served_at timestamptz, policy text,
    propensity double precision, features json, candidates json
) ON COMMIT DELETE ROWS;
"""
_INSERT = """
INSERT INTO tip_feedback
    (event_id, tip_id, user_id, action, dwell_ms, reward_milli, policy, propensity, status,
     occurred_at)
SELECT event_id, tip_id, user_id, action, dwell_ms, reward_milli, policy, propensity, status,
       occurred_at
FROM stage_feedback
ON CONFLICT (event_id) DO NOTHING
"""
_WITHDRAW = "DELETE FROM stage_feedback WHERE event_id = ANY($1::text[])"
_INSERT_SHOWN = """
INSERT INTO tip_shown
    (event_id, tip_id, user_id, served_at, policy, propensity, features, candidates)
SELECT event_id, tip_id, user_id, served_at, policy, propensity, features, candidates
FROM stage_shown
ON CONFLICT (event_id) DO NOTHING
"""

_JSON = msgspec.json.Encoder()  # features and candidates, as their wire JSON


_RETRYABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncio.TimeoutError,
    # A COPY on a connection the server has closed fails so ("cannot switch to state 15"),
    # not with a connection error (tests/worker/test_sink.py); the pool then replaces it.
    asyncpg.InternalClientError,
)


class DatabaseUnavailableError(RuntimeError):
    """PostgreSQL cannot be used: unreachable, or it refuses the credentials or database."""


def database_address(dsn: str) -> str:
    """``host:port/db`` of a database URL, without the credentials (safe to log)."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"


async def check_database(dsn: str, timeout_s: float = 20.0) -> None:
    """Connect once, retrying an unreachable server until ``timeout_s``; raise a one-line
    ``DatabaseUnavailableError`` naming the address (never the password) when it fails."""
    where = database_address(dsn)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=PROBE_TIMEOUT_S)
        except _RETRYABLE as exc:
            if time.monotonic() >= deadline:
                raise DatabaseUnavailableError(
                    f"cannot reach PostgreSQL at {where} within {timeout_s:.0f}s "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            await asyncio.sleep(0.5)
        except asyncpg.PostgresError as exc:  # bad password, no such database or role
            raise DatabaseUnavailableError(
                f"PostgreSQL at {where} refused the connection ({type(exc).__name__}: {exc})"
            ) from exc
        else:
            await conn.close()
            return


class FeedbackSink:
    """A small asyncpg pool with an explicit start/stop and a retrying batch write."""

    __slots__ = (
        "_clock",
        "_down_since",
        "_dsn",
        "_last_error",
        "_max_backoff_s",
        "_metrics",
        "_pool",
        "_retrying",
    )

    def __init__(
        self,
        dsn: str,
        metrics: WorkerMetrics,
        max_backoff_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self._metrics = metrics
        self._pool: asyncpg.Pool | None = None
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._down_since: float | None = None
        self._retrying = 0  # writes now failing and being retried (a batch runs two at once)
        self._last_error = ""

    # -- health ------------------------------------------------------------------------

    def health(self) -> str | None:
        """Why the database is not healthy, or None when it is."""
        where = database_address(self._dsn)
        if self._retrying:
            return f"database writes to {where} are failing and being retried: {self._last_error}"
        if self._down_since is not None:
            down_s = self._clock() - self._down_since
            if down_s > DOWN_AFTER_S:
                return f"database {where} unreachable for {down_s:.0f}s: {self._last_error}"
        return None

    def _failed(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._down_since is None:
            self._down_since = self._clock()

    def _succeeded(self) -> None:
        self._down_since = None
        self._last_error = ""

    async def probe(self) -> None:
        """One cheap round trip, so an outage shows in ``health()`` while no rows flow."""
        if self._pool is None or self._retrying:
            return
        try:
            async with self._pool.acquire(timeout=PROBE_TIMEOUT_S) as conn:
                await conn.fetchval("SELECT 1", timeout=PROBE_TIMEOUT_S)
        except (*_RETRYABLE, asyncpg.PostgresError) as exc:
            self._failed(exc)
        else:
            self._succeeded()

    async def ended_runs(self, run_ids: Collection[str], ended_s: float) -> list[str]:
        """Of ``run_ids``, the simulated runs whose ``sim_runs`` row ended (any status but
        ``running``) at least ``ended_s`` ago, by the database's clock. A run with no row
        (load mode without ``--record``) never ends here."""
        if self._pool is None or not run_ids:
            return []
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT run_id FROM sim_runs WHERE run_id = ANY($1::text[]) "
                "AND status <> 'running' AND finished_at <= now() - make_interval(secs => $2)",
                list(run_ids),
                ended_s,
            )
        return [row["run_id"] for row in rows]

    async def start(self) -> None:
        backoff = 0.2
        while True:
            try:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=4, init=_create_staging, reset=_keep_session
                )
                break
            except _RETRYABLE as exc:
                log.warning("PostgreSQL not reachable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
        async with self._pool.acquire() as conn:
            applied = await migrate(conn)
        if applied:
            log.info("applied migrations %s", applied)

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def write(
        self,
        rows: Sequence[FeedbackRow],
        shows: Sequence[TipShown] = (),
        withdrawn: asyncio.Future[frozenset[str]] | None = None,
    ) -> None:
        """Write feedback rows and production shows in one transaction, retrying until done.

        The worker writes a batch's shows and its feedback rows apart, at once (the shows need
        nothing of the join, so they are written while it runs); either alone is idempotent.
        The rows are copied in as soon as the join made them, while the batch learns;
        ``withdrawn`` then says which of them to leave out (those of users whose learning
        failed, which are dead-lettered instead). Cancelling it rolls the write back.
        """
        if not rows and not shows:
            return
        backoff = 0.1
        failing = False
        left_out: frozenset[str] = frozenset()
        try:
            while True:
                try:
                    assert self._pool is not None, "sink not started"
                    async with self._pool.acquire() as conn, conn.transaction():
                        if rows:
                            await conn.copy_records_to_table(
                                "stage_feedback", records=_records(rows), columns=_FEEDBACK_COLUMNS
                            )
                            left_out = await withdrawn if withdrawn is not None else left_out
                            if left_out:
                                await conn.execute(_WITHDRAW, list(left_out))
                            await conn.execute(_INSERT)
                        if shows:
                            await conn.copy_records_to_table(
                                "stage_shown", records=_show_records(shows), columns=_SHOWN_COLUMNS
                            )
                            await conn.execute(_INSERT_SHOWN)
                except _RETRYABLE as exc:
                    if not failing:
                        failing = True
                        self._retrying += 1
                    self._failed(exc)
                    self._metrics.sink_retries.inc()
                    what = "tip_feedback" if rows else "tip_shown"
                    log.warning("%s write failed (%s); retrying in %.1fs", what, exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff_s)
                else:
                    break
        finally:
            if failing:
                self._retrying -= 1
        if not self._retrying:
            self._succeeded()
        if rows:
            self._metrics.rows_written.inc(len(rows) - len(left_out))
            self._metrics.rows_written_at.set_to_current_time()


async def _create_staging(conn: asyncpg.Connection) -> None:
    await conn.execute(_STAGING)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset between writes (no session state but the staging tables, which the
    pool's default reset keeps too): saves a round trip per write."""


def _show_records(shows: Sequence[TipShown]) -> list[tuple[object, ...]]:
    return [
        (
            s.event_id,
            s.tip_id,
            s.user_id,
            s.served_at,
            s.policy,
            s.propensity,
            _JSON.encode(s.features).decode(),
            _JSON.encode(s.candidates).decode() if s.candidates is not None else None,
        )
        for s in shows
    ]


def _records(rows: Sequence[FeedbackRow]) -> list[tuple[object, ...]]:
    return [
        (
            r.event_id,
            r.tip_id,
            r.user_id,
            r.action,
            r.dwell_ms,
            r.reward_milli,
            r.policy,
            r.propensity,
            r.status,
            from_epoch_ms(r.occurred_at_ms),
        )
        for r in rows
    ]
