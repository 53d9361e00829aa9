"""``python -m bench.scale_out``: one worker against two on the same machine, same run.

For each count (1, then 2): fresh topics, the workers started and settled first (every one
``/healthz`` ok and the partitions shared out, so no rebalance falls inside the timing), then
``--pairs`` show/feedback pairs over ``--users`` users produced at once; timed from the first
batch of any worker to the workers' ``tip_feedback`` rows adding up to the pairs.

    flock /tmp/tipstream-integration.lock uv run python -m bench.scale_out
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import aiohttp

from bandit.registry import DEFAULT_POLICY
from bench.report import print_figures
from bench.worker_throughput import create_topics, fill, make_events, rows_timer
from streams.dev.devstack import ensure_up
from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings, get_settings

SETTLE_TIMEOUT_S = 120.0


async def _settled(workers: list[WorkerProcess], partitions: int) -> None:
    """Every worker ready, and their partitions adding up to all of them, twice in a row."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    steady = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while steady < 2:
            if loop.time() > deadline:
                raise TimeoutError(f"workers not settled after {SETTLE_TIMEOUT_S:.0f}s")
            owned: list[int] = []
            for worker in workers:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(worker.url + "/healthz") as response:
                        body = await response.json(content_type=None)
                        if body.get("status") == "ok":
                            owned += body.get("partitions", [])
            steady = steady + 1 if sorted(owned) == list(range(partitions)) else 0
            await asyncio.sleep(1.0)


async def run_workers(base: Settings, count: int, pairs: int, users: int) -> float:
    """Events per second of ``count`` workers sharing the topics."""
    settings = await create_topics(base)
    workers = [
        WorkerProcess(settings, app_id=f"{settings.app_id}-scale", policy=DEFAULT_POLICY)
        for _ in range(count)
    ]
    for worker in workers:
        worker.start()
    try:
        await _settled(workers, settings.partitions)
        shows, feedback = make_events(pairs, users)
        timer = asyncio.create_task(rows_timer(workers, pairs))
        await fill(settings, shows, feedback)
        return 2 * pairs / (await timer).seconds
    finally:
        for worker in workers:
            worker.stop()


async def run(pairs: int, users: int) -> dict[str, float]:
    base = get_settings()
    one = await run_workers(base, 1, pairs, users)
    two = await run_workers(base, 2, pairs, users)
    return {"one_worker_eps": one, "two_workers_eps": two, "two_over_one": two / one}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    args = parser.parse_args()
    ensure_up()
    figures = asyncio.run(run(args.pairs, args.users))
    title = f"bench.scale_out: {DEFAULT_POLICY}, {args.pairs} pairs over {args.users} users"
    print_figures(title, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
