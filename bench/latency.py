"""``python -m bench.latency``: from a feedback sent to its effect visible in ``/stats``.

A real worker (fresh topics, the default policy) takes steady load, ``--rate`` events/s of
show/feedback pairs over ``--users`` users for ``--seconds``; set it to about half of the
worker's sustained rate (``python -m bench worker``). Beside the load, a probe user gets one
pair every ``--probe-every`` seconds; the clock starts just before its feedback is sent and
stops when ``/stats/egreedy/<probe>`` first shows the new pull (polled every 2 ms). Prints
p50, p99 and max over the probes, and the load rate actually produced; then, from the
worker's ``/metrics``, what stood the loop still meanwhile: batches and garbage-collector
pauses over 50 ms, and the longest of each (the upper bound of its histogram bucket).

    uv run python -m bench.latency --rate 2500 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

import aiohttp
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from bench.report import print_figures
from bench.worker_throughput import create_topics, make_pair
from streams.dev.devstack import ensure_up
from streams.dev.worker_process import WorkerProcess
from streams.record_batches import send_in_batches
from streams.settings import Settings, get_settings
from streams.worker.partitioning import partition_for

TICK_S = 0.01


def _served_now() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=30)  # its feedback "occurs" now


async def _load(
    producer: AIOKafkaProducer, settings: Settings, rate: float, users: int, stop: asyncio.Event
) -> int:
    """Pairs at ``rate`` events/s (two per pair) until ``stop``; returns the events sent.

    Each tick's records go out as one record batch per partition (``send_in_batches``, as
    the simulator's load mode sends): aiokafka's per-record ``send`` cost the load generator
    a third of a core at 5,000 events/s, on the 2 cores the worker needs."""
    sent, i = 0, 0
    started = time.perf_counter()
    deliveries: list[asyncio.Future[object]] = []
    while not stop.is_set():
        due = int((time.perf_counter() - started) * rate / 2)
        shows, answers = [], []
        while i < due:
            user = f"latency-user-{i % users}"
            show, answer = make_pair(i, user, _served_now())
            partition = partition_for(user, settings.partitions)
            shows.append((partition, *show))
            answers.append((partition, *answer))
            i += 1
        for topic, records in ((settings.topic_shown, shows), (settings.topic_feedback, answers)):
            if records:
                batches = await send_in_batches(producer, topic, records)
                deliveries += [batch.delivery for batch in batches]
                sent += len(records)
        deliveries = [d for d in deliveries if not d.done()]
        await asyncio.sleep(TICK_S)
    await asyncio.gather(*deliveries)
    return sent


async def _probe(
    producer: AIOKafkaProducer,
    settings: Settings,
    http: aiohttp.ClientSession,
    url: str,
    n: int,
) -> float:
    """Seconds from sending the probe user's ``n``-th feedback to ``/stats`` showing it."""
    user = "latency-probe"
    show, answer = make_pair(10_000_000 + n, user, _served_now())
    await producer.send_and_wait(settings.topic_shown, show[1], key=show[0])
    started = time.perf_counter()
    await producer.send(settings.topic_feedback, answer[1], key=answer[0])
    while True:
        async with http.get(f"{url}/stats/egreedy/{user}") as response:
            if response.status == 200:
                body = await response.json(content_type=None)
                if body["pulls"] >= n:
                    return time.perf_counter() - started
        await asyncio.sleep(0.002)


def _stalls(metrics_text: str, threshold_s: float = 0.05) -> dict[str, float]:
    """Batches, each step of a batch, GC pauses and events' processing lags above
    ``threshold_s``, and the bucket bound of the longest of each."""
    counts: dict[str, dict[float, float]] = {"batch": {}, "gc": {}, "lag": {}}
    names = {
        "tipstream_batch_seconds_bucket": "batch",
        "tipstream_gc_pause_seconds_bucket": "gc",
        # Kafka record time to processing: a wait before the worker reads an event shows here.
        "tipstream_processing_lag_seconds_bucket": "lag",
    }
    sums: dict[str, dict[str, float]] = {"sum": {}, "count": {}}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            base, _, part = sample.name.rpartition("_")
            if base == "tipstream_batch_step_seconds" and part in sums:
                sums[part][sample.labels["step"]] = sample.value
            kind = names.get(sample.name)
            if sample.name == "tipstream_batch_step_seconds_bucket":
                kind = f"step_{sample.labels['step']}"
                counts.setdefault(kind, {})
            if kind is not None:  # cumulative buckets, summed over GC generations
                bound = float(sample.labels["le"])
                counts[kind][bound] = counts[kind].get(bound, 0.0) + sample.value
    figures: dict[str, float] = {}
    for kind, buckets in counts.items():
        bounds = sorted(buckets)
        total = buckets[bounds[-1]] if bounds else 0.0
        under = max((buckets[b] for b in bounds if b <= threshold_s), default=0.0)
        figures[f"{kind}_count"] = total
        figures[f"{kind}_over_{round(threshold_s * 1000)}ms"] = total - under
        longest = next((b for b in bounds if buckets[b] >= total), 0.0)
        figures[f"{kind}_longest_le_ms"] = 1000 * longest
    for step, count in sums["count"].items():  # where a batch's time goes on average
        figures[f"step_{step}_mean_ms"] = 1000 * sums["sum"].get(step, 0.0) / max(count, 1.0)
    return figures


async def run(rate: float, users: int, seconds: float, probe_every: float) -> dict[str, float]:
    settings = await create_topics(get_settings())
    async with WorkerProcess(settings, app_id=settings.app_id + "-latency") as worker:
        producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), linger_ms=2)  # type: ignore[arg-type]
        await producer.start()
        stop = asyncio.Event()
        latencies: list[float] = []
        try:
            load = asyncio.create_task(_load(producer, settings, rate, users, stop))
            started = time.perf_counter()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                n = 0
                while time.perf_counter() - started < seconds:
                    n += 1
                    probe_started = time.perf_counter()
                    latencies.append(await _probe(producer, settings, http, worker.url, n))
                    spent = time.perf_counter() - probe_started
                    await asyncio.sleep(max(0.0, probe_every - spent))
                async with http.get(f"{worker.url}/metrics") as response:
                    metrics_text = await response.text()
            stop.set()
            sent = await load
            elapsed = time.perf_counter() - started
        finally:
            stop.set()
            await producer.stop()
    ordered = sorted(latencies)
    return {
        "load_events_per_s": sent / elapsed,
        "probes": len(ordered),
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "max_ms": 1000 * ordered[-1],
        **_stalls(metrics_text),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2500.0, help="load, events/s")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--probe-every", type=float, default=0.1, help="seconds between probes")
    args = parser.parse_args()
    ensure_up()
    figures = asyncio.run(run(args.rate, args.users, args.seconds, args.probe_every))
    print_figures(f"bench.latency: load {args.rate:,.0f} events/s over {args.users} users", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
