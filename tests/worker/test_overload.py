"""A worker far behind a backlog is busy, not stalled: it reads every partition in turn,
re-reads nothing, and stays up until it has caught up.

The stall watchdog (``Worker.reread_missed``) once took a partition that waited behind a
full pipeline for more than ``STALL_S`` for a stuck one and sought back to it, again and
again: each seek threw away what was fetched, so the worker fell further behind, and a
seek from the wrong thread crashed aiokafka's fetcher (``KeyError`` in
``fetched_records``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.worker_throughput import fill, make_pair
from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings

pytestmark = pytest.mark.integration
PAIRS = 80_000  # events enough to keep the worker busy for well over STALL_S
USERS = 8_000


def _rereads(metrics_text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "tipstream_rereads_total"
    )


async def test_a_backlog_is_read_through_without_rereads(topics: Settings, database: str) -> None:
    served = datetime.now(UTC) - timedelta(days=3)  # a backfill: payload times days old
    pairs = [make_pair(i, f"overload-user-{i % USERS}", served) for i in range(PAIRS)]
    await fill(topics, [show for show, _ in pairs], [answer for _, answer in pairs])

    async with WorkerProcess(topics) as worker:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 240
        lag = None
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline:
                assert worker.process is not None
                assert worker.process.poll() is None, f"the worker died:\n{worker.log()}"
                async with http.get(worker.url + "/healthz") as reply:
                    health = await reply.json(content_type=None)
                lags = health.get("lag", {})
                if len(lags) == 2 * topics.partitions:
                    lag = sum(lags.values())
                    if lag == 0:
                        break
                await asyncio.sleep(1.0)
            assert lag == 0, f"the backlog was not read through: {health}"
            async with http.get(worker.url + "/metrics") as reply:
                rereads = _rereads(await reply.text())
        assert rereads == 0, f"a busy worker re-read {rereads:.0f} times:\n{worker.log()}"
