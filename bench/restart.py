"""``python -m bench.restart``: how long a worker holding many users' state takes to be back.

Fresh topics and app id; the state changelog is pre-filled with ``--users`` records (each
the record of a real user of the serving policy after ``--tips`` settled tips, from the
pipeline itself), keyed and partitioned as the worker writes them. Then, with the store
``--store`` names (``TIPSTREAM_STATE_STORE``):

1. start a worker: seconds until ``/healthz`` is 200 (the changelog replayed into the store),
   then until a new user's feedback is visible in ``/stats`` (the first batch indexes each
   owned partition's records), and the worker's resident memory;
2. ``kill -9`` it and start another on the same data directory: the same figures, the
   restart the issue asks about.

    flock /tmp/tipstream-integration.lock uv run python -m bench.restart --users 1000000 \
        --store rocksdb
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bandit.registry import DEFAULT_POLICY
from bench.layers import one_user_record
from bench.report import print_figures
from bench.worker_throughput import create_topics, make_pair
from streams.dev.devstack import ensure_up
from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings, get_settings
from streams.worker.app import STATE_TABLE
from streams.worker.state import key_partition

READY_TIMEOUT_S = 900.0
SEND_CHUNK = 20_000


async def fill_changelog(settings: Settings, users: int, record: bytes) -> float:
    """Write ``users`` records to the state changelog as the worker would; returns seconds."""
    topic = f"{settings.app_id}-{STATE_TABLE}-changelog"
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs())  # type: ignore[arg-type]
    await admin.start()
    try:
        await admin.create_topics([
            NewTopic(topic, settings.partitions, settings.replication_factor,
                     topic_configs={"cleanup.policy": "compact"}),
        ])  # fmt: skip
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        **settings.aiokafka_kwargs(),  # type: ignore[arg-type]
        linger_ms=20,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for first in range(0, users, SEND_CHUNK):
            futures = []
            for i in range(first, min(users, first + SEND_CHUNK)):
                key = f"restart-user-{i}"
                partition = key_partition(key, settings.partitions)
                # faust writes a str table key as JSON, the value raw (our record format)
                futures.append(
                    await producer.send(topic, record, key=orjson.dumps(key), partition=partition)
                )
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def first_feedback_visible(settings: Settings, worker: WorkerProcess, label: str) -> float:
    """Seconds from a new user's show and feedback sent to its pull visible in /stats."""
    user = f"restart-probe-{label}"
    show, answer = make_pair(0, user, datetime.now(UTC))
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs())  # type: ignore[arg-type]
    await producer.start()
    started = time.perf_counter()
    try:
        await producer.send_and_wait(settings.topic_shown, show[1], key=show[0])
        await producer.send_and_wait(settings.topic_feedback, answer[1], key=answer[0])
    finally:
        await producer.stop()
    deadline = started + READY_TIMEOUT_S
    while time.perf_counter() < deadline:
        status, body = await worker.get(f"/stats/egreedy/{user}")
        if status == 200 and body.get("pulls") == 1:
            return time.perf_counter() - started
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the probe's feedback was not visible after {READY_TIMEOUT_S:.0f}s")


async def check_recovered(worker: WorkerProcess, users: int, tips: int) -> None:
    """The pre-filled users are in the worker's state (so a recovery really took place)."""
    for i in sorted({0, users // 2, users - 1}):
        status, body = await worker.get(f"/stats/egreedy/restart-user-{i}")
        if status != 200 or body.get("pulls") != tips:
            raise RuntimeError(f"restart-user-{i} was not recovered: {status} {body}")


async def start_and_measure(
    settings: Settings, label: str, users: int, tips: int, store: str, data_dir: str | None
) -> tuple[WorkerProcess, dict[str, float]]:
    overrides = {} if data_dir is None else {"data_dir": data_dir}
    worker = WorkerProcess(settings, policy=DEFAULT_POLICY, state_store=store, **overrides)
    started = time.perf_counter()
    worker.start()
    await worker.wait_ready(timeout_s=READY_TIMEOUT_S)
    ready_s = time.perf_counter() - started
    assert worker.process is not None
    memory = resident_mib(worker.process.pid)
    first_s = await first_feedback_visible(settings, worker, label)
    await check_recovered(worker, users, tips)
    return worker, {
        f"{label}_healthy_s": ready_s,
        f"{label}_first_feedback_visible_s": first_s,
        f"{label}_resident_mib_when_healthy": memory,
        f"{label}_resident_mib_after_first_batch": resident_mib(worker.process.pid),
    }


async def run(users: int, tips: int, store: str = "memory") -> dict[str, float]:
    ensure_up()
    base = get_settings()
    settings = await create_topics(base)
    record = await one_user_record(settings.model_copy(update={"policy": DEFAULT_POLICY}), tips)
    fill_s = await fill_changelog(settings, users, record)
    figures: dict[str, float] = {
        "users": users,
        "record_bytes": len(record),
        "changelog_fill_s": fill_s,
    }
    worker, first = await start_and_measure(settings, "start", users, tips, store, None)
    figures |= first
    worker.stop(kill=True)
    # The same data directory: a store on disk starts from its files.
    worker, again = await start_and_measure(
        settings, "restart_after_kill9", users, tips, store, worker.settings.data_dir
    )
    figures |= again
    worker.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--tips", type=int, default=10, help="settled tips per user's record")
    parser.add_argument("--store", choices=["memory", "rocksdb"], default="memory")
    args = parser.parse_args()
    figures = asyncio.run(run(args.users, args.tips, args.store))
    print_figures(f"bench.restart: {args.users} users, {args.store} store", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
