"""``python -m bench.sink``: what writing a batch's rows to PostgreSQL costs, per row.

The worker's sink (``streams.worker.sink.FeedbackSink``: COPY into a staging table of the
connection's own, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``) against the
statement it replaced, one ``INSERT ... SELECT * FROM unnest($1::text[], ...)`` of column
arrays per table, by turns on the same kind of rows, in a schema of its own on the dev
stack's PostgreSQL (dropped at the end). Per row: the wall time of the write and the CPU it
took in this process (asyncpg's encoding; the worker's own time), medians over ``--repeat``
turns of ``--rows`` feedback rows and as many production shows (``--candidates`` each).

    uv run python -m bench.sink --rows 1000 --repeat 15
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

from bench.report import print_figures
from schemas.events import TipShown, from_epoch_ms
from schemas.migrations import migrate
from streams.dev.devstack import ensure_up
from streams.settings import get_settings
from streams.worker.joiner import FeedbackRow
from streams.worker.metrics import WorkerMetrics
from streams.worker.sink import FeedbackSink

T0_MS = 1_764_000_000_000  # a backfill's times: 24 Nov 2025

# The former statements (to 6 Dec 2026), kept here as the baseline.
_UNNEST_FEEDBACK = """
INSERT INTO tip_feedback
    (event_id, tip_id, user_id, action, dwell_ms, reward_milli, policy, propensity, status,
     occurred_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                     $6::integer[], $7::text[], $8::double precision[], $9::text[],
                     $10::timestamptz[])
ON CONFLICT (event_id) DO NOTHING
"""
_UNNEST_SHOWN = """
INSERT INTO tip_shown
    (event_id, tip_id, user_id, served_at, policy, propensity, features, candidates)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                     $6::double precision[], $7::json[], $8::json[])
ON CONFLICT (event_id) DO NOTHING
"""

_JSON = msgspec.json.Encoder()  # features and candidates, as their wire JSON


def _rows(n: int) -> list[FeedbackRow]:
    return [
        FeedbackRow(
            f"f-{uuid.uuid4()}",
            f"tip-{i}",
            f"user-{i % 2000}",
            "done",
            20_000 + i,
            750,
            "pooledmix-v3",
            0.9,
            "applied",
            T0_MS + i,
        )
        for i in range(n)
    ]


def _shows(n: int, candidates: int) -> list[TipShown]:
    features = {"hourOfDay": 9, "dayOfWeek": 2, "priority": 3, "isOverdue": False,
                "taskAgeDays": 1.5}  # fmt: skip
    listed = [
        {"tipId": f"tip-{k}", "priority": 1 + k % 4, "isOverdue": k % 2 == 0, "taskAgeDays": k}
        for k in range(candidates)
    ]
    return [
        msgspec.convert(
            {
                "type": "TipShown",
                "schemaVersion": 1,
                "eventId": f"s-{uuid.uuid4()}",
                "tipId": f"tip-{i}",
                "userId": f"user-{i % 2000}",
                "servedAt": from_epoch_ms(T0_MS + i).isoformat(),
                "policy": "pooledmix-v3",
                "propensity": 0.5,
                "features": features,
                **({"candidates": listed} if candidates else {}),
            },
            TipShown,
        )
        for i in range(n)
    ]


async def _unnest_write(
    conn: asyncpg.Connection, rows: Sequence[FeedbackRow], shows: Sequence[TipShown]
) -> None:
    async with conn.transaction():
        await conn.execute(
            _UNNEST_FEEDBACK,
            [r.event_id for r in rows], [r.tip_id for r in rows], [r.user_id for r in rows],
            [r.action for r in rows], [r.dwell_ms for r in rows], [r.reward_milli for r in rows],
            [r.policy for r in rows], [r.propensity for r in rows], [r.status for r in rows],
            [from_epoch_ms(r.occurred_at_ms) for r in rows],
        )  # fmt: skip
        await conn.execute(
            _UNNEST_SHOWN,
            [s.event_id for s in shows], [s.tip_id for s in shows], [s.user_id for s in shows],
            [s.served_at for s in shows], [s.policy for s in shows],
            [s.propensity for s in shows],
            [_JSON.encode(s.features).decode() for s in shows],
            [_JSON.encode(s.candidates).decode()
             if s.candidates is not None else None for s in shows],
        )  # fmt: skip


async def run(rows: int, repeat: int, candidates: int) -> dict[str, float]:
    settings = get_settings()
    schema = f"bench_sink_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{settings.database_url}?search_path={schema}"
    conn = await asyncpg.connect(dsn)
    sink = FeedbackSink(dsn, WorkerMetrics())
    wall: dict[str, list[float]] = {"copy": [], "unnest": []}
    cpu: dict[str, list[float]] = {"copy": [], "unnest": []}
    try:
        await migrate(conn)
        await sink.start()
        for turn in range(repeat + 1):  # the first turn warms both up, and is not counted
            for method in ("copy", "unnest"):
                batch, shows = _rows(rows), _shows(rows, candidates)
                started, cpu_started = time.perf_counter(), time.process_time()
                if method == "copy":
                    await sink.write(batch)
                    await sink.write((), shows)
                else:
                    await _unnest_write(conn, batch, shows)
                if turn:
                    per_row = 1e6 / (2 * rows)
                    wall[method].append((time.perf_counter() - started) * per_row)
                    cpu[method].append((time.process_time() - cpu_started) * per_row)
            print(f"bench.sink: turn {turn} of {repeat}", flush=True)
    finally:
        await sink.stop()
        await conn.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
    figures = {
        f"{method}_{what}_us_per_row": statistics.median(values[method])
        for what, values in (("wall", wall), ("client_cpu", cpu))
        for method in ("copy", "unnest")
    }
    figures["copy_vs_unnest_wall"] = (
        figures["copy_wall_us_per_row"] / figures["unnest_wall_us_per_row"]
    )
    figures["copy_vs_unnest_client_cpu"] = (
        figures["copy_client_cpu_us_per_row"] / figures["unnest_client_cpu_us_per_row"]
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="feedback rows (and shows) a turn")
    parser.add_argument("--repeat", type=int, default=15, help="turns counted, after a warm-up")
    parser.add_argument("--candidates", type=int, default=8, help="candidates listed per show")
    args = parser.parse_args()
    ensure_up(quiet=True)
    figures = asyncio.run(run(args.rows, args.repeat, args.candidates))
    print_figures(
        f"bench.sink: {args.rows} feedback rows and {args.rows} shows a write, "
        f"{args.candidates} candidates each, medians of {args.repeat} turns",
        figures,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
