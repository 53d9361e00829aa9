"""The analysis' reads from PostgreSQL: the logged rows ``tipstream evaluate`` works on, the
judgments ``tipstream compare`` reads back, and the run ``tipstream report`` shows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from bandit.ope.logged import EvaluationInputError, Log
from streams.analysis.evaluate import production_rows, sim_rows
from streams.analysis.summary import RunReport, build_run_report
from streams.sim.store import DATABASE_WAIT_S, connect_pool, fetch_events, fetch_run
from streams.worker.sink import check_database

__all__ = [
    "EXPECTATIONS_QUERY",
    "PRODUCTION_QUERY",
    "connect",
    "fetch_expectations",
    "load_production_log",
    "load_report",
    "load_run_log",
]


async def connect(database_url: str) -> asyncpg.Connection:
    """One connection with json and jsonb decoded to Python objects (an unreachable database
    raises ``DatabaseUnavailableError``, one line naming host:port).

    Both: ``tip_shown``'s columns are json (cheaper to insert), the ``sim_*`` tables' jsonb.
    """
    await check_database(database_url, timeout_s=DATABASE_WAIT_S)
    conn = await asyncpg.connect(database_url)
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=orjson.dumps,
            decoder=orjson.loads,
            schema="pg_catalog",
            format="text",
        )
    return conn


# A tip may be shown to the same user more than once (``tipId`` is the join key, not the
# show): a feedback row belongs to the latest show of that (user, tip) served at or before it
# (to the first show if the clocks put it earlier), and a show is evaluated with the earliest
# applied feedback in its window.
PRODUCTION_QUERY = """
WITH shows AS (
    SELECT s.*,
           lag(s.served_at) OVER w AS prev_served_at,
           lead(s.served_at) OVER w AS next_served_at
    FROM tip_shown s
    WINDOW w AS (PARTITION BY s.user_id, s.tip_id ORDER BY s.served_at, s.event_id)
)
SELECT s.event_id, s.tip_id, s.user_id, s.served_at, s.policy, s.propensity,
       s.features, s.candidates, f.reward_milli
FROM shows s
JOIN LATERAL (
    SELECT fb.reward_milli FROM tip_feedback fb
    WHERE fb.user_id = s.user_id AND fb.tip_id = s.tip_id
      AND fb.status = 'applied' AND fb.reward_milli IS NOT NULL
      AND (s.prev_served_at IS NULL OR fb.occurred_at >= s.served_at)
      AND (s.next_served_at IS NULL OR fb.occurred_at < s.next_served_at)
    ORDER BY fb.occurred_at LIMIT 1
) f ON true
WHERE s.served_at >= $1
ORDER BY s.served_at, s.event_id
"""


async def load_run_log(database_url: str, run_id: str) -> Log:
    """The logged rows of one simulation run, in the order the simulator played them."""
    conn = await connect(database_url)
    try:
        run = await conn.fetchrow("SELECT config FROM sim_runs WHERE run_id = $1", run_id)
        if run is None:
            raise EvaluationInputError(f"no run {run_id!r} in sim_runs")
        events = await conn.fetch(
            "SELECT round, user_id, persona, reward_milli, policy, propensity, features "
            "FROM sim_events WHERE run_id = $1",
            run_id,
        )
    finally:
        await conn.close()
    config = run["config"] or {}
    rows, skipped = sim_rows(events, config.get("persona_names") or [])
    return Log(
        source=f"run {run_id}",
        rows=rows,
        epsilon=float(config.get("epsilon", 0.1)),
        skipped=skipped,
    )


async def load_production_log(database_url: str, since: datetime, epsilon: float) -> Log:
    """Production shows served from ``since`` on that have applied feedback."""
    conn = await connect(database_url)
    try:
        records = await conn.fetch(PRODUCTION_QUERY, since)
    finally:
        await conn.close()
    rows, skipped = production_rows(records)
    return Log(
        source=f"production since {since.isoformat()}", rows=rows, epsilon=epsilon, skipped=skipped
    )


# Per judgment of a rule-judge run: the expectation of the shown tip, and the random and
# oracle expectations of its row, the mean and the max of the candidates' expectations (as
# ``streams.analysis.summary.stat_from_row`` computes them from the same column).
EXPECTATIONS_QUERY = """
SELECT user_id, round, expected_reward, reward_milli,
       (SELECT avg((c->>'expected_reward')::float8)
          FROM jsonb_array_elements(features->'candidates') c) AS random_expected,
       (SELECT max((c->>'expected_reward')::float8)
          FROM jsonb_array_elements(features->'candidates') c) AS oracle_expected
FROM sim_events WHERE run_id = $1
"""


async def fetch_expectations(database_url: str, run_id: str) -> Sequence[Any]:
    """The rows of ``EXPECTATIONS_QUERY`` for one run."""
    conn = await connect(database_url)
    try:
        return list(await conn.fetch(EXPECTATIONS_QUERY, run_id))
    finally:
        await conn.close()


async def load_report(database_url: str, run_id: str) -> RunReport:
    """The run of ``sim_runs`` with its ``sim_events`` rows, summarized for its report."""
    pool = await connect_pool(database_url, max_size=1)
    try:
        run = await fetch_run(pool, run_id)
        if run is None:
            raise LookupError(f"no run {run_id!r} in sim_runs")
        rows = await fetch_events(pool, run_id)
    finally:
        await pool.close()
    return build_run_report(run, rows)
