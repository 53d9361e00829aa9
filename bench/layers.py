"""``python -m bench.layers``: what each layer of the worker's own path costs per event, in
memory (no Kafka, no database), and the bytes a user's record takes.

The events are those of ``bench worker`` (``--pairs`` show/feedback pairs over ``--users``),
in batches of ``TIPSTREAM_BATCH_MAX``, through the real ``Pipeline`` over a dict store with
sinks that only count. Layers, each timed alone over the same events:

- decode: ``schemas.events`` validation of every event's bytes;
- learn: every policy's learning of every reward as the worker does it: the rewards of a
  batch together, one ``update_many`` per wave and pool view (``streams.worker.learning``);
- record encode: ``UserRecord.encode`` of every record the pipeline stored (one per changelog
  write);
- pipeline: the whole ``Pipeline.handle`` (decode, group, join, reward, learn, rows out,
  records stored), the sum of the above and the rest.

Then one user's 70 settled tips (a week at 10 a day), one per batch through the pipeline: the
bytes of each changelog write (the record, and the guard chunks it spills), and what the user
holds in the store; once with ``tip-N`` ids, once with ids as long as a UUID.

    uv run python -m bench.layers --policy pooledmix-v3
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bandit.base import Moment, Task
from bench.report import print_figures
from bench.worker_throughput import make_events, make_pair
from schemas.events import TipShown, decode_feedback, decode_shown
from streams.cli.worker import tune_gc
from streams.settings import Settings
from streams.worker.app import build_policies
from streams.worker.decoding import DeadLetter, RawEvent
from streams.worker.joiner import FeedbackRow, PolicyModels
from streams.worker.learning import Learner, learn_together
from streams.worker.metrics import WorkerMetrics
from streams.worker.partitioning import partition_for
from streams.worker.pipeline import Pipeline
from streams.worker.pools import Pools
from streams.worker.state import CHUNK_SEPARATOR, UserRecord, is_chunk_key

T0_MS = 1_700_000_000_000


class _Sinks:
    async def write(
        self,
        rows: Sequence[FeedbackRow],
        shows: Sequence[TipShown] = (),
        withdrawn: asyncio.Future[frozenset[str]] | None = None,
    ) -> None:
        if withdrawn is not None:
            await withdrawn

    async def send(self, letter: DeadLetter) -> None:
        raise RuntimeError(f"unexpected dead letter: {letter.code} {letter.detail}")


class _CountingStore(dict[str, bytes]):
    writes = 0
    written_bytes = 0
    largest = 0

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes += 1
        self.written_bytes += len(value)
        self.largest = max(self.largest, len(value))
        super().__setitem__(key, value)


def _raw_events(settings: Settings, pairs: int, users: int) -> list[RawEvent]:
    shows, feedback = make_events(pairs, users)
    raws = []
    for topic, events in ((settings.topic_shown, shows), (settings.topic_feedback, feedback)):
        for offset, (key, value) in enumerate(events):
            partition = partition_for(key.decode(), settings.partitions)
            raws.append(RawEvent(topic, partition, offset, T0_MS + offset, key, value))
    return raws


def _per_event_us(seconds: float, events: int) -> float:
    return seconds / events * 1e6


async def _learn_seconds(settings: Settings, pairs: int, users: int) -> float:
    """Learn ``pairs`` rewards as the pipeline does, a batch's worth (half of
    ``batch_max``: a show and a feedback per reward) at a time."""
    policies = build_policies(settings)
    pools = Pools(policies)
    records = [UserRecord() for _ in range(users)]
    decoded: list[dict[str, Any]] = [{} for _ in range(users)]
    partitions = [partition_for(f"user-{u}", settings.partitions) for u in range(users)]
    per_batch = max(1, settings.batch_max // 2)
    started = time.perf_counter()
    for first in range(0, pairs, per_batch):
        learners: dict[int, PolicyModels] = {}
        for i in range(first, min(pairs, first + per_batch)):
            u = i % users
            models = learners.get(u)
            if models is None:
                shared = pools.views(None, partitions[u])
                models = PolicyModels(policies, records[u], shared, decoded[u], later=True)
                learners[u] = models
            task = Task(f"t{i}", 1 + i % 4, i % 3 == 0, float(i % 20))
            models.learn(Moment(i % 24, i % 7), task, 0.5)
        await learn_together(
            policies,
            [Learner(str(u), (None, partitions[u]), m) for u, m in learners.items()],
            pools,
        )
    return time.perf_counter() - started


async def layers(settings: Settings, pairs: int, users: int) -> dict[str, float]:
    raws = _raw_events(settings, pairs, users)
    n = len(raws)
    started = time.perf_counter()
    for raw in raws:
        decode = decode_shown if raw.topic == settings.topic_shown else decode_feedback
        decode(raw.value, settings.max_event_bytes)
    decode_us = _per_event_us(time.perf_counter() - started, n)

    store = _CountingStore()
    sinks = _Sinks()
    pipeline = Pipeline(settings, build_policies(settings), store, sinks, sinks, WorkerMetrics())
    started = time.perf_counter()
    for i in range(0, n, settings.batch_max):
        await pipeline.handle(raws[i : i + settings.batch_max])
    pipeline_us = _per_event_us(time.perf_counter() - started, n)

    records = [UserRecord.decode(blob) for key, blob in store.items() if not is_chunk_key(key)]
    started = time.perf_counter()
    for record in records:
        record.encode()
    encode_us = (time.perf_counter() - started) / len(records) * 1e6 * store.writes / n

    learn_us = _per_event_us(await _learn_seconds(settings, pairs, users), n)
    return {
        "pipeline_us_per_event": pipeline_us,
        "pipeline_events_per_s": 1e6 / pipeline_us,
        "decode_us_per_event": decode_us,
        "learn_us_per_event": learn_us,
        "record_encode_us_per_event": encode_us,
        "other_us_per_event": pipeline_us - decode_us - learn_us - encode_us,
        "changelog_writes_per_event": store.writes / n,
        "bytes_per_changelog_write": store.written_bytes / store.writes,
    }


async def week_of_tips(
    settings: Settings, tips: int = 70, *, uuid_tips: bool = False
) -> dict[str, float]:
    """One user's ``tips`` settled tips, one per batch a minute apart, through the pipeline:
    the bytes of each changelog write, and what the user holds in the store at the end.

    ``uuid_tips``: tip ids as long as a UUID (36 characters) instead of ``tip-N``.
    """
    user = "bench-user-0"
    store = await _settle_tips(settings, user, tips, uuid_tips=uuid_tips)
    record = UserRecord.decode(store[user])
    held = sum(len(blob) for key, blob in store.items() if key.split(CHUNK_SEPARATOR)[0] == user)
    policy_bytes = sum(len(b) + len(name) + 5 for name, b in record.policy_blobs.items())
    prefix = "uuid_tips_" if uuid_tips else ""
    return {
        f"{prefix}settled_tips": tips,
        f"{prefix}record_bytes": len(store[user]),
        f"{prefix}store_bytes_per_user": held,
        f"{prefix}mean_bytes_per_changelog_write": store.written_bytes / store.writes,
        f"{prefix}max_bytes_per_changelog_write": store.largest,
        f"{prefix}changelog_writes_per_settled_tip": store.writes / tips,
        f"{prefix}policy_state_bytes": policy_bytes,
    }


async def one_user_record(settings: Settings, tips: int) -> bytes:
    """The record (without its chunks) of a user of the serving policy after ``tips`` tips."""
    user = "bench-user-0"
    return (await _settle_tips(settings, user, tips, uuid_tips=False))[user]


async def _settle_tips(
    settings: Settings, user: str, tips: int, *, uuid_tips: bool
) -> _CountingStore:
    store = _CountingStore()
    sinks = _Sinks()
    pipeline = Pipeline(settings, build_policies(settings), store, sinks, sinks, WorkerMetrics())
    partition = partition_for(user, settings.partitions)
    for i in range(tips):
        show, answer = make_pair(i, user, datetime.now(UTC) - timedelta(hours=1))
        if uuid_tips:
            show, answer = (_with_tip(event, str(uuid.UUID(int=i))) for event in (show, answer))
        at_ms = T0_MS + i * 60_000
        await pipeline.handle([
            RawEvent(settings.topic_shown, partition, 2 * i, at_ms, *show),
            RawEvent(settings.topic_feedback, partition, 2 * i + 1, at_ms, *answer),
        ])  # fmt: skip
    return store


def _with_tip(event: tuple[bytes, bytes], tip: str) -> tuple[bytes, bytes]:
    key, value = event
    document = orjson.loads(value)
    document["tipId"] = tip
    return key, orjson.dumps(document)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default=None, help="serving policy (default: the setting)")
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument(
        "--python-gc",
        action="store_true",
        help="keep Python's own collector settings (default: the worker's, tune_gc)",
    )
    args = parser.parse_args()
    settings = Settings() if args.policy is None else Settings(policy=args.policy)
    if not args.python_gc:
        tune_gc()
    figures = {
        **asyncio.run(layers(settings, args.pairs, args.users)),
        **asyncio.run(week_of_tips(settings)),
        **asyncio.run(week_of_tips(settings, uuid_tips=True)),
    }
    title = f"bench.layers: {settings.policy}, {args.pairs} pairs over {args.users} users"
    print_figures(title, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
