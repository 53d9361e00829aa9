"""``python -m bench.sink`` runs both writes on the real PostgreSQL and cleans up after itself."""

from __future__ import annotations

import asyncpg

from bench.sink import run


async def test_the_sink_bench_measures_both_writes_and_drops_its_schema(
    database: str, pg: asyncpg.Connection
) -> None:
    figures = await run(rows=50, repeat=1, candidates=2)
    assert figures["copy_wall_us_per_row"] > 0
    assert figures["unnest_wall_us_per_row"] > 0
    assert figures["copy_vs_unnest_client_cpu"] > 0
    left = await pg.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bench_sink_%'")
    assert left == 0
