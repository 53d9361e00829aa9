"""``python -m bench.learning``: cold start through the real worker and in-process, side by side.

For each persona set and world seed it runs the same simulation twice through the real
simulator (rule judge): once ``--via worker`` against a real ``tipstream worker`` serving
the policy (fresh topics, its own consumer group), once ``--via inprocess``. It prints
gap_closed with its 95% interval for each, the difference, and the pooled figure over all
seeds (units: one simulated user of one seed). Results go to ``var/bench-results.jsonl``.

    uv run python -m bench.learning --seeds 0,1,2,3,4 --personas standard,alternate

The long run (10 users per persona × 1,000 rounds, gap_closed over the last 200; 1.5 to 5
minutes per seed and persona set, both ways, depending on the machine):

    uv run python -m bench.learning --users 10 --rounds 1000 --last 200 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.worker_throughput import create_topics
from streams.analysis.compare import cell, run_rows
from streams.analysis.load import fetch_expectations
from streams.dev.devstack import ensure_up
from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings, get_settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig

PERSONA_SETS = ("standard", "alternate")  # shipped names (judges/personas/)


async def _gap(settings: Settings, run_ids: list[str], lo: int, hi: int) -> dict[str, float]:
    """gap_closed [95% bootstrap interval] over the runs' users in rounds [lo, hi), as
    ``tipstream compare``."""
    runs = [run_rows(r, await fetch_expectations(settings.database_url, r)) for r in run_ids]
    figures = cell(runs, lo, hi)
    value, low, high = figures.gap
    return {"gap_closed": value, "low": low, "high": high, "units": figures.units}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = get_settings()
    results: dict[str, Any] = {
        "policy": args.policy,
        "users": args.users,
        "rounds": args.rounds,
        "last": args.last,
    }
    window = (args.rounds - args.last if args.last else 0, args.rounds)
    print(f"gap_closed over rounds [{window[0]}, {window[1]}) of each run", flush=True)
    for personas in args.personas:
        runs: dict[str, list[str]] = {"worker": [], "inprocess": []}
        for seed in args.seeds:
            config = SimConfig(
                policy=args.policy,
                users=args.users,
                rounds=args.rounds,
                seed=seed,
                personas_path=personas,
                via="worker",
                concurrency=args.concurrency,
                epsilon=base.epsilon,
            )
            settings = await create_topics(base)
            started = time.monotonic()
            async with WorkerProcess(settings, policy=args.policy) as worker:
                through = await run_closed_loop(worker.settings, config, quiet=True)
            worker_s = time.monotonic() - started
            started = time.monotonic()
            local = await run_closed_loop(
                settings, dataclasses.replace(config, via="inprocess"), quiet=True
            )
            local_s = time.monotonic() - started
            runs["worker"].append(through["run_id"])
            runs["inprocess"].append(local["run_id"])
            w = await _gap(base, [through["run_id"]], *window)
            i = await _gap(base, [local["run_id"]], *window)
            print(
                f"{personas:<9} seed {seed}: worker {w['gap_closed']:.3f} [{w['low']:.3f}, "
                f"{w['high']:.3f}] ({worker_s:.0f} s)  in-process {i['gap_closed']:.3f} "
                f"[{i['low']:.3f}, {i['high']:.3f}] ({local_s:.0f} s)  "
                f"difference {w['gap_closed'] - i['gap_closed']:+.3f}",
                flush=True,
            )
            results[f"{personas}/{seed}"] = {"worker": w, "inprocess": i}
        for via, ids in runs.items():
            pooled = await _gap(base, ids, *window)
            results[f"{personas}/all/{via}"] = pooled
            print(
                f"{personas:<9} seeds {','.join(map(str, args.seeds))} {via:<9}: "
                f"{pooled['gap_closed']:.3f} [{pooled['low']:.3f}, {pooled['high']:.3f}]",
                flush=True,
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default=get_settings().policy)
    parser.add_argument(
        "--seeds", default="0,1,2,3,4", type=lambda s: [int(x) for x in s.split(",")]
    )
    parser.add_argument(
        "--personas",
        default="standard,alternate",
        type=lambda s: [p for p in s.split(",") if p],
        help="comma list of shipped sets: " + ", ".join(PERSONA_SETS),
    )
    parser.add_argument("--users", type=int, default=50, help="users per persona")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--last",
        type=int,
        default=0,
        help="gap_closed over the last N rounds only (the long run: --users 10 --rounds 1000 "
        "--last 200); default the whole run",
    )
    args = parser.parse_args()
    if not 0 <= args.last <= args.rounds:
        parser.error("--last must be between 0 and --rounds")
    unknown = set(args.personas) - set(PERSONA_SETS)
    if unknown:
        parser.error(f"unknown persona set(s) {sorted(unknown)}; known: {', '.join(PERSONA_SETS)}")
    ensure_up()
    results = asyncio.run(run(args))
    results["at"] = datetime.now(UTC).isoformat()
    path = Path("var/bench-results.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as out:
        out.write(orjson.dumps({"learning": results}) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
