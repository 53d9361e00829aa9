"""Events per second, measured in one run on the same pre-filled topics:

1. raw aiokafka ``getmany`` + orjson decode of the feedback topic (the ceiling);
2. peers over both topics (``bench.peers``): faust's empty agent, a naive faust agent updating
   one table entry per event, and quixstreams doing that naive per-user job with RocksDB
   state, exactly-once and at-least-once (``uv sync --group bench``);
3. the tipstream worker: shows and feedback to state and ``tip_feedback`` rows, serving the
   default policy (``pooledmix-v3``, a mixture of 15 pooled types) and then ``egreedy-v1``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bandit.registry import DEFAULT_POLICY
from schemas.events import decode_feedback
from streams.dev.worker_process import WorkerProcess, child_env
from streams.settings import Settings


def make_events(
    pairs: int, users: int
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    start = datetime.now(UTC) - timedelta(hours=1)
    shows, feedback = [], []
    for i in range(pairs):
        show, answer = make_pair(i, f"bench-user-{i % users}", start + timedelta(milliseconds=i))
        shows.append(show)
        feedback.append(answer)
    return shows, feedback


def make_pair(
    i: int, user: str, served: datetime
) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    """The ``i``-th tip shown to ``user`` at ``served`` and its feedback 30 s later, as
    (Kafka key, value) pairs."""
    tip = f"tip-{i}"
    show = {
        "type": "TipShown",
        "schemaVersion": 1,
        "eventId": f"s-{uuid.uuid4()}",
        "tipId": tip,
        "userId": user,
        "servedAt": _rfc3339(served),
        "policy": "egreedy-v1",
        "propensity": 0.9125,
        "features": {
            "hourOfDay": i % 24,
            "dayOfWeek": i % 7,
            "priority": 1 + i % 4,
            "isOverdue": i % 3 == 0,
            "taskAgeDays": float(i % 20),
        },
    }
    answer = {
        "type": "TipFeedback",
        "schemaVersion": 1,
        "eventId": f"f-{uuid.uuid4()}",
        "tipId": tip,
        "userId": user,
        "action": ("done", "snooze", "dismiss")[i % 3],
        "dwellMs": 20_000 + i % 100_000,
        "occurredAt": _rfc3339(served + timedelta(seconds=30)),
    }
    key = user.encode()
    return (key, orjson.dumps(show)), (key, orjson.dumps(answer))


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def create_topics(settings: Settings) -> Settings:
    suffix = secrets.token_hex(4)
    names = {
        "topic_shown": f"bench.shown.{suffix}",
        "topic_feedback": f"bench.feedback.{suffix}",
        "topic_deadletter": f"bench.deadletter.{suffix}",
    }
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs())  # type: ignore[arg-type]
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, settings.partitions, settings.replication_factor) for n in names.values()]
        )
    finally:
        await admin.close()
    await asyncio.sleep(1.0)  # leaders elected
    return settings.model_copy(update={**names, "app_id": f"bench-{suffix}"})


async def fill(
    settings: Settings, shows: list[tuple[bytes, bytes]], feedback: list[tuple[bytes, bytes]]
) -> None:
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), linger_ms=10)  # type: ignore[arg-type]
    await producer.start()
    try:
        for topic, events in ((settings.topic_shown, shows), (settings.topic_feedback, feedback)):
            futures = [await producer.send(topic, value, key=key) for key, value in events]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_consume(settings: Settings, topic: str, expected: int, validate: bool) -> float:
    """Seconds from the first to the last of ``expected`` records, decoded."""
    consumer = AIOKafkaConsumer(
        topic,
        **settings.aiokafka_kwargs(),
        group_id=None,  # type: ignore[arg-type]
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen, started = 0, 0.0
    try:
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                if seen == 0 and records:
                    started = time.perf_counter()
                for record in records:
                    if validate:
                        decode_feedback(record.value)
                    else:
                        orjson.loads(record.value)
                seen += len(records)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


class Timed(NamedTuple):
    """A run's wall seconds (first event to last) and the CPU seconds its process spent in
    them (every thread). CPU per event is steadier than a rate on a shared 2-core machine,
    where the broker, PostgreSQL and other work take the cores by turns."""

    seconds: float
    cpu_seconds: float
    # The worker's own wall seconds per batch step (``tipstream_batch_step_seconds``).
    steps: tuple[tuple[str, float], ...] = ()


def peer(settings: Settings, module: str, mode: str, expected: int) -> Timed:
    """A ``bench.peers`` subprocess's time from its first to its ``expected``-th event."""
    app_id = f"{settings.app_id}-{module}-{mode}"
    result = subprocess.run(
        [sys.executable, "-m", f"bench.peers.{module}", mode, app_id, str(expected)],
        env=child_env(settings),
        capture_output=True,
        timeout=600,
        check=False,
    )
    # faust sends stdout through its logging, so the result line may be on either stream.
    for line in (result.stdout + result.stderr).decode().splitlines():
        if '{"events"' in line:
            found = orjson.loads(line[line.index('{"events"') :].strip())
            return Timed(float(found["seconds"]), float(found["cpu_seconds"]))
    raise RuntimeError(f"peer {module} {mode} failed:\n{result.stderr.decode()[-3000:]}")


async def tipstream_worker(
    settings: Settings, expected_rows: int, policy: str, profile_dir: Path | None = None
) -> Timed:
    """Seconds from the worker's first batch to its last ``tip_feedback`` row written, the
    worker serving (and so learning) ``policy``; sampled by py-spy into ``profile_dir``."""
    worker = WorkerProcess(settings, app_id=f"{settings.app_id}-worker-{policy}", policy=policy)
    worker.start()
    spy = None
    if profile_dir is not None and worker.process is not None:
        spy = _profiler(worker.process.pid, profile_dir / f"worker-{policy}.txt")
    try:
        return await rows_timer([worker], expected_rows)
    finally:
        worker.stop()
        if spy is not None:
            spy.wait(timeout=60)  # py-spy writes its file when the worker has exited


async def rows_timer(workers: list[WorkerProcess], expected_rows: int) -> Timed:
    """From the first batch of any of ``workers`` to their ``tip_feedback`` rows written
    adding up to ``expected_rows``, from the workers' ``/metrics``; CPU from ``/proc``.

    Until the first batch, ``/metrics`` is read every 50 ms; after it, once a second, and the
    end is the workers' own time of their last rows written
    (``tipstream_feedback_rows_written_timestamp_seconds``). Scraping a busy worker 20 times
    a second cost it 6.5% of its time (py-spy, 6 Dec 2026), a load its peers, which time
    themselves, do not carry.
    """
    started: float | None = None
    cpu_started = 0.0
    async with aiohttp.ClientSession() as http:
        while True:
            batches = rows = last_write = 0.0
            for worker in workers:
                if worker.process is not None and worker.process.poll() is not None:
                    raise RuntimeError(f"worker exited:\n{worker.log()}")
                try:
                    async with http.get(worker.url + "/metrics") as response:
                        text = await response.text()
                except aiohttp.ClientError:
                    continue
                batches += _sample(text, "tipstream_batch_events_count")
                rows += _sample(text, "tipstream_feedback_rows_written_total")
                last_write = max(
                    last_write, _sample(text, "tipstream_feedback_rows_written_timestamp_seconds")
                )
            if started is None and batches > 0:
                started = time.time()  # the workers' gauge is wall time too (same machine)
                cpu_started = sum(_cpu_seconds(w) for w in workers)
            if rows >= expected_rows and started is not None:
                cpu = sum(_cpu_seconds(w) for w in workers) - cpu_started
                return Timed(last_write - started, cpu, await _step_seconds(http, workers))
            await asyncio.sleep(0.05 if started is None else 1.0)


async def _step_seconds(
    http: aiohttp.ClientSession, workers: list[WorkerProcess]
) -> tuple[tuple[str, float], ...]:
    """Each batch step's wall seconds, summed over ``workers``' whole runs."""
    steps: dict[str, float] = {}
    prefix = 'tipstream_batch_step_seconds_sum{step="'
    for worker in workers:
        async with http.get(worker.url + "/metrics") as response:
            text = await response.text()
        for line in text.splitlines():
            if line.startswith(prefix):
                step = line[len(prefix) : line.index('"', len(prefix))]
                steps[step] = steps.get(step, 0.0) + float(line.rsplit(maxsplit=1)[1])
    return tuple(steps.items())


def _cpu_seconds(worker: WorkerProcess) -> float:
    """User and system CPU seconds of the worker's process so far (Linux ``/proc``)."""
    assert worker.process is not None
    fields = Path(f"/proc/{worker.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling process ``pid`` until it exits, into ``output`` (raw format)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    return subprocess.Popen(
        [*command, "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _sample(metrics_text: str, name: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def run_worker_bench(
    settings: Settings,
    pairs: int = 20_000,
    users: int = 2_000,
    profile_dir: Path | None = None,
    repeat: int = 1,
) -> dict[str, float]:
    """Every peer and both workers once; then, with ``repeat`` > 1, quixstreams exactly-once
    and the default worker again by turns, ``repeat`` pairs in all, and the median of the
    pairs' ratios (each pair ran back to back, so the machine's slow spells hit both)."""
    settings = await create_topics(settings)
    shows, feedback = make_events(pairs, users)
    await fill(settings, shows, feedback)
    raw_s = await raw_consume(settings, settings.topic_feedback, pairs, validate=False)
    validated_s = await raw_consume(settings, settings.topic_feedback, pairs, validate=True)
    events = 2 * pairs
    peers = {
        "faust_empty_agent": peer(settings, "faust_agent", "empty", events),
        "naive_faust_table": peer(settings, "faust_agent", "table", events),
        "quix_exactly_once": peer(settings, "quix_app", "exactly-once", events),
        "quix_at_least_once": peer(settings, "quix_app", "at-least-once", events),
    }
    # The shipped default policy, then egreedy-v1 (the cheapest learner, the figure of
    # earlier records); the second worker finds the rows already written (ON CONFLICT).
    timed = {
        **peers,
        "tipstream_worker": await tipstream_worker(settings, pairs, DEFAULT_POLICY, profile_dir),
        "tipstream_worker_egreedy_v1": await tipstream_worker(
            settings, pairs, "egreedy-v1", profile_dir
        ),
    }
    rates = {
        "raw_aiokafka_orjson_eps": pairs / raw_s,
        "raw_aiokafka_validated_eps": pairs / validated_s,
        **{f"{name}_eps": events / t.seconds for name, t in timed.items()},
        **{f"{name}_cpu_us_per_event": 1e6 * t.cpu_seconds / events for name, t in timed.items()},
    }
    for worker in ("tipstream_worker", "tipstream_worker_egreedy_v1"):
        for baseline in ("quix_exactly_once", "faust_empty_agent", "naive_faust_table"):
            rates[f"{worker}_vs_{baseline}"] = rates[f"{worker}_eps"] / rates[f"{baseline}_eps"]
        # The same comparison in CPU per event (the peer's over ours: above 1 is cheaper).
        rates[f"{worker}_cpu_vs_quix_exactly_once"] = (
            rates["quix_exactly_once_cpu_us_per_event"] / rates[f"{worker}_cpu_us_per_event"]
        )
    rates["worker_vs_raw"] = rates["tipstream_worker_eps"] / rates["raw_aiokafka_orjson_eps"]
    rates.update(_steps_per_event(timed["tipstream_worker"], events))
    if repeat > 1:
        rates.update(await _alternate(settings, pairs, repeat, timed))
    return rates


def _steps_per_event(worker: Timed, events: int) -> dict[str, float]:
    """The default worker's wall µs per event in each batch step, and outside any batch
    (waiting for faust's next batch, and faust's commits)."""
    out = {
        f"tipstream_worker_step_{name}_us_per_event": 1e6 * s / events for name, s in worker.steps
    }
    busy = sum(s for step, s in worker.steps if step != "changelog_wait")
    out["tipstream_worker_between_batches_us_per_event"] = 1e6 * (worker.seconds - busy) / events
    return out


async def _alternate(
    settings: Settings, pairs: int, repeat: int, first: dict[str, Timed]
) -> dict[str, float]:
    events = 2 * pairs
    turns = [(first["quix_exactly_once"], first["tipstream_worker"])]
    for turn in range(1, repeat):
        again = settings.model_copy(update={"app_id": f"{settings.app_id}-again{turn}"})
        quix = peer(again, "quix_app", "exactly-once", events)
        await _forget_rows(settings)
        turns.append((quix, await tipstream_worker(again, pairs, DEFAULT_POLICY)))
    ratios = [quix.seconds / worker.seconds for quix, worker in turns]
    cpu = [quix.cpu_seconds / worker.cpu_seconds for quix, worker in turns]
    out = {f"tipstream_worker_vs_quix_exactly_once_turn{i}": r for i, r in enumerate(ratios)}
    # Each turn's own rates and the worker's steps, to see which side and step a slow turn
    # lost its time in (the first turn has been the slowest in most runs).
    for i, (quix, worker) in enumerate(turns):
        out[f"turn{i}_quix_exactly_once_eps"] = events / quix.seconds
        out[f"turn{i}_tipstream_worker_eps"] = events / worker.seconds
        for name, value in _steps_per_event(worker, events).items():
            step = name.removeprefix("tipstream_worker_").removesuffix("_us_per_event")
            out[f"turn{i}_{step}_us_per_event"] = value
    out["tipstream_worker_vs_quix_exactly_once_median"] = statistics.median(ratios)
    out["tipstream_worker_cpu_vs_quix_exactly_once_median"] = statistics.median(cpu)
    return out


async def _forget_rows(settings: Settings) -> None:
    """Delete the bench users' ``tip_feedback`` and ``tip_shown`` rows, so that the next
    worker inserts them as the first did rather than finding them there (a conflict costs
    less than an insert: leaving the shows made every turn after the first look faster)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("DELETE FROM tip_feedback WHERE user_id LIKE 'bench-user-%'")
        await conn.execute("DELETE FROM tip_shown WHERE user_id LIKE 'bench-user-%'")
    finally:
        await conn.close()
