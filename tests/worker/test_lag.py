"""A worker started behind a backlog reports it: /healthz ``lag`` and the lag gauge rise,
then fall to zero once it has read everything (the 504 a simulation gets meanwhile points
here)."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings
from tests.worker.events import shown

pytestmark = pytest.mark.integration
BACKLOG = 30_000


async def test_backlog_shows_as_lag_then_drains(topics: Settings, database: str) -> None:
    producer = AIOKafkaProducer(**topics.aiokafka_kwargs(), linger_ms=20)  # type: ignore[arg-type]
    await producer.start()
    try:
        for i in range(BACKLOG):
            user = f"lag-user-{i % 3000}"
            event = shown(user, f"tip-{i}")
            await producer.send(topics.topic_shown, orjson.dumps(event), key=user.encode())
        await producer.flush()
    finally:
        await producer.stop()

    worker = WorkerProcess(topics)
    worker.start()
    try:
        await worker.wait_ready()
        peak, last, deadline = 0, None, asyncio.get_running_loop().time() + 240
        while asyncio.get_running_loop().time() < deadline:
            status, health = await worker.get("/healthz")
            lags = {
                k: v for k, v in health.get("lag", {}).items() if k.startswith(topics.topic_shown)
            }
            # Any partition's lag counts for the peak: a fast worker reads a partition's
            # share of the backlog before every partition has reported once.
            peak = max(peak, sum(lags.values()))
            if len(lags) == topics.partitions:
                last = sum(lags.values())
                if peak > 0 and last == 0:
                    break
            await asyncio.sleep(0.05)
        assert peak > 0, "the backlog never showed as lag"
        assert last == 0, f"lag did not drain: {health}"
        status, _ = await worker.get("/healthz")
        assert status == 200
        async with aiohttp.ClientSession() as http, http.get(worker.url + "/metrics") as reply:
            metrics = await reply.text()
        line = f'tipstream_input_lag_events{{partition="0",topic="{topics.topic_shown}"}} 0.0'
        assert line in metrics
    finally:
        worker.stop()
