"""faust peers of the worker: an agent that does nothing per event, and one that updates one
table entry per event (the naive per-user job).

Run as ``python -m bench.peers.faust_agent empty|table APP_ID TARGET`` with TIPSTREAM_*
settings in the environment; prints one JSON line ``{"events", "seconds"}`` (first to last
event) and exits.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import faust
import orjson
from faust.worker import Worker

from streams.settings import Settings
from streams.worker.app import raw_topic

__all__ = ["main"]


def main() -> None:
    mode, app_id, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode not in {"empty", "table"}:
        raise SystemExit(f"mode must be empty or table, not {mode!r}")
    settings = Settings()
    app = faust.App(
        app_id,
        broker="kafka://" + settings.kafka_bootstrap,
        store="memory://",
        topic_partitions=settings.partitions,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
    )
    source = raw_topic(app, settings.topic_shown, settings.topic_feedback)  # as the worker reads
    counts = app.Table("counts", default=int, partitions=settings.partitions)
    seen = 0
    started = cpu_started = 0.0

    @app.agent(source)
    async def count(stream: Any) -> None:
        nonlocal seen, started, cpu_started
        async for value in stream:
            if seen == 0:
                started = time.perf_counter()
                cpu_started = time.process_time()
            if mode == "table":
                try:
                    counts[orjson.loads(value)["userId"]] += 1
                except Exception as exc:  # a silent agent crash would hang the benchmark
                    print(f"naive agent failed: {exc!r}", file=sys.stderr, flush=True)
                    os._exit(1)
            seen += 1
            if seen == target:
                elapsed = time.perf_counter() - started
                cpu = time.process_time() - cpu_started  # every thread's
                result = {"events": seen, "seconds": elapsed, "cpu_seconds": cpu}
                print(orjson.dumps(result).decode(), flush=True)
                os._exit(0)  # measured; no need for a graceful faust shutdown

    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
