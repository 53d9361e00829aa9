"""``python -m bench.chaos``: the exactly-once fault matrix, on the real broker and database.

Each scenario gets its own topics and app id, produces ``--pairs`` show/feedback pairs for
``--users`` users, runs the real worker (``egreedy-v1``, so the model is a ridge whose
sufficient statistics can be checked) through one kind of fault, waits for it to catch up,
and then checks three things against an offline replay of the very same events through
the pure joiner:

- every user's pulls and reward sum (``/stats``);
- the model's sufficient statistics A and b, read from the changelog, within 1e-9;
- every ``tip_feedback`` row (present once, with the replay's reward).

It prints one line per scenario and run: events, lost, doubled, wrong rows, model
mismatches, and the longest restart-to-healthy time. Exit code 1 if anything was lost or
doubled. ``--quick`` runs a small version (``make test`` runs it through
``tests/bench/test_chaos.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import msgspec
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from bandit.linear import Ridge
from bandit.registry import make_policy
from schemas.events import TipFeedback, TipShown
from streams.dev.devstack import ensure_up
from streams.dev.kafka import kafka_down, kafka_up
from streams.dev.postgres import postgres_down, postgres_up
from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings, get_settings
from streams.worker.joiner import Joiner
from streams.worker.partitioning import partition_for
from streams.worker.state import UserRecord
from streams.worker.topics import ensure_topics

__all__ = ["SCENARIOS", "Outcome", "run_scenario"]

POLICY = "egreedy-v1"
MONTH = timedelta(days=30)
# (action, dwellMs): None derives the dwell from the payload times (40 s apart: +1.0).
ACTIONS: list[tuple[str, int | None]] = [
    ("done", 30_000), ("done", None), ("done", 5_000), ("snooze", 4_000),
    ("dismiss", 1_000), ("done", 200_000),
]  # fmt: skip


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the events and what an offline replay says they must give --------------------------


@dataclass
class Workload:
    users: list[str]
    records: list[tuple[str, str, bytes]]  # (topic kind, user, value) in production order
    feedback_ids: list[str]
    expected_pulls: dict[str, int] = field(default_factory=dict)
    expected_milli: dict[str, int] = field(default_factory=dict)
    expected_rows: dict[str, int | None] = field(default_factory=dict)  # event id → reward
    expected_model: dict[str, Ridge] = field(default_factory=dict)


def make_workload(
    tag: str, users: int, pairs: int, shift: Callable[[int], timedelta], conflicting: bool
) -> Workload:
    """Pairs spread over users; ``shift(u)`` moves user u's payload times (backfills,
    wrong clocks); ``conflicting`` adds, for every 10th tip, a second feedback with the same
    event id and other content (the first must win)."""
    now = datetime.now(UTC).replace(microsecond=0)
    names = [f"chaos-{tag}-{u}" for u in range(users)]
    work = Workload(names, [], [])
    per_user: dict[str, list[TipShown | TipFeedback]] = {n: [] for n in names}
    for i in range(pairs):
        u = i % users
        user, tip = names[u], f"tip-{i // users}"
        served = now - timedelta(hours=1) + shift(u) + timedelta(milliseconds=i)
        action, dwell = ACTIONS[i % len(ACTIONS)]
        show = {
            "type": "TipShown", "schemaVersion": 1, "eventId": f"s-{tag}-{i}", "tipId": tip,
            "userId": user, "servedAt": iso(served), "policy": POLICY, "propensity": 0.9,
            "features": {"hourOfDay": i % 24, "dayOfWeek": i % 7, "priority": 1 + i % 4,
                         "isOverdue": i % 3 == 0, "taskAgeDays": float(i % 11)},
        }  # fmt: skip
        feedback = {
            "type": "TipFeedback", "schemaVersion": 1, "eventId": f"f-{tag}-{i}",
            "tipId": tip, "userId": user, "action": action,
            "occurredAt": iso(served + timedelta(seconds=40)),
        }  # fmt: skip
        if dwell is not None:
            feedback["dwellMs"] = dwell
        docs: list[tuple[str, dict[str, Any]]] = [("shown", show), ("feedback", feedback)]
        if conflicting and i % 10 == 0:
            docs.append(("feedback", {**feedback, "action": "dismiss", "dwellMs": 1_000}))
        for kind, doc in docs:
            value = orjson.dumps(doc)
            work.records.append((kind, user, value))
            model = TipShown if kind == "shown" else TipFeedback
            per_user[user].append(msgspec.json.decode(value, type=model))
        work.feedback_ids.append(str(feedback["eventId"]))
    policy = make_policy(POLICY)
    joiner = Joiner([policy], reward_wait_ms=86_400_000)
    stream_time = int(now.timestamp() * 1000)
    for user, events in per_user.items():
        record = UserRecord()
        result = joiner.process(
            record, user, [(e, stream_time, stream_time) for e in events], stream_time, {}
        )
        work.expected_pulls[user] = record.pulls
        work.expected_milli[user] = record.reward_milli_sum
        for row in result.rows:
            work.expected_rows.setdefault(row.event_id, row.reward_milli)
        work.expected_model[user] = Ridge.decode(record.policy_blobs[POLICY])
    return work


# -- one scenario's run --------------------------------------------------------------------


@dataclass
class Outcome:
    scenario: str
    events: int
    lost: int = 0
    doubled: int = 0
    wrong_rows: int = 0
    model_mismatches: int = 0
    recovery_s: float = 0.0

    @property
    def exact(self) -> bool:
        return not (self.lost or self.doubled or self.wrong_rows or self.model_mismatches)


class Run:
    """The topics, workers, producer and database of one scenario."""

    def __init__(self, base: Settings, work: Workload, tag: str) -> None:
        self.settings = base.model_copy(
            update={
                "topic_shown": f"chaos.{tag}.shown",
                "topic_feedback": f"chaos.{tag}.feedback",
                "topic_deadletter": f"chaos.{tag}.deadletter",
                "app_id": f"chaos-{tag}",
                "policy": POLICY,
                "shadow_policies": "",
            }
        )
        self.work = work
        self.workers: list[WorkerProcess] = []
        self.recoveries: list[float] = []
        self.pg: asyncpg.Connection | None = None

    async def start_worker(self, *, wait: bool = True) -> WorkerProcess:
        worker = WorkerProcess(self.settings, loglevel="warn")
        started = time.monotonic()
        worker.start()
        self.workers.append(worker)
        if wait:
            await worker.wait_ready(timeout_s=120)
            self.recoveries.append(time.monotonic() - started)
        return worker

    async def produce(self) -> None:
        producer = AIOKafkaProducer(**self.settings.aiokafka_kwargs(), linger_ms=5)
        await producer.start()
        try:
            topic = {"shown": self.settings.topic_shown, "feedback": self.settings.topic_feedback}
            pending = []
            for kind, user, value in self.work.records:
                pending.append(await producer.send(topic[kind], value, key=user.encode()))
                if len(pending) >= 2000:
                    await asyncio.gather(*pending)
                    pending.clear()
                    await asyncio.sleep(0.05)  # a steady stream, so faults land mid-way
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    async def rows_done(self) -> int:
        assert self.pg is not None
        query = "SELECT count(*) FROM tip_feedback WHERE event_id = ANY($1)"
        return int(await self.pg.fetchval(query, self.work.feedback_ids))

    async def until_rows(self, fraction: float, timeout_s: float = 300) -> None:
        target = int(len(self.work.feedback_ids) * fraction)
        deadline = time.monotonic() + timeout_s
        while await self.rows_done() < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"rows did not reach {target} in {timeout_s}s")
            await asyncio.sleep(0.05)

    async def caught_up(self, worker: WorkerProcess, timeout_s: float = 300) -> None:
        """Every input partition read to its end (lag 0 everywhere), twice in a row."""
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while quiet < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker did not catch up in {timeout_s}s:\n{worker.log()}")
            status, health = await worker.get("/healthz")
            lag: dict[str, int] = health.get("lag", {}) if status == 200 else {}
            full = len(lag) == 2 * self.settings.partitions
            quiet = quiet + 1 if full and not any(lag.values()) else 0
            await asyncio.sleep(1.0)

    async def reset_offsets_to_zero(self) -> None:
        """What an operator's offset reset does: the group reads the input from offset 0."""
        consumer = AIOKafkaConsumer(
            **self.settings.aiokafka_kwargs(),
            group_id=self.settings.app_id,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            tps = [
                TopicPartition(topic, p)
                for topic in (self.settings.topic_shown, self.settings.topic_feedback)
                for p in range(self.settings.partitions)
            ]
            consumer.assign(tps)
            await consumer.commit({tp: OffsetAndMetadata(0, "") for tp in tps})
        finally:
            await consumer.stop()

    async def changelog_models(self) -> dict[str, Ridge]:
        """The last changelog record of each user, decoded: what a recovering worker reads."""
        topic = f"{self.settings.app_id}-user-state-changelog"
        consumer = AIOKafkaConsumer(
            **self.settings.aiokafka_kwargs(),
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            latest: dict[str, bytes | None] = {}
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    for m in messages:
                        latest[orjson.loads(m.key)] = m.value  # faust writes str keys as JSON
        finally:
            await consumer.stop()
        models = {}
        for key, blob in latest.items():
            if blob is not None and key in self.work.expected_model:
                record = UserRecord.decode(blob)
                models[key] = Ridge.decode(record.policy_blobs[POLICY])
        return models

    async def verify(self, name: str, worker: WorkerProcess) -> Outcome:
        work = self.work
        outcome = Outcome(name, len(work.records))
        assert self.pg is not None
        rows = await self.pg.fetch(
            "SELECT event_id, reward_milli FROM tip_feedback WHERE event_id = ANY($1)",
            list(work.expected_rows),
        )
        found = {r["event_id"]: r["reward_milli"] for r in rows}
        outcome.lost += sum(1 for e in work.feedback_ids if e not in found)
        outcome.wrong_rows = sum(1 for e, r in found.items() if r != work.expected_rows[e])
        for user in work.users:
            status, stats = await worker.get(f"/stats/egreedy/{user}")
            pulls = stats["pulls"] if status == 200 else 0
            milli = round(stats["cumulative_reward"] * 1000) if status == 200 else 0
            outcome.lost += max(0, work.expected_pulls[user] - pulls)
            outcome.doubled += max(0, pulls - work.expected_pulls[user])
            if pulls == work.expected_pulls[user] and milli != work.expected_milli[user]:
                outcome.wrong_rows += 1
        models = await self.changelog_models()
        for user, expected in work.expected_model.items():
            got = models.get(user)
            if got is None or not (
                np.allclose(got.a, expected.a, rtol=0, atol=1e-9)
                and np.allclose(got.b, expected.b, rtol=0, atol=1e-9)
            ):
                outcome.model_mismatches += 1
        outcome.recovery_s = max(self.recoveries, default=0.0)
        return outcome

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.stop(kill=True)


# -- the faults ----------------------------------------------------------------------------

Fault = Callable[[Run], Awaitable[WorkerProcess]]


async def kill_three_times(run: Run) -> WorkerProcess:
    """kill -9 at a quarter and at half the rows, then once more during recovery."""
    producing = asyncio.create_task(run.produce())
    worker = await run.start_worker()
    await run.until_rows(0.25)
    worker.stop(kill=True)
    worker = await run.start_worker()
    await run.until_rows(0.5)
    worker.stop(kill=True)
    worker = await run.start_worker(wait=False)
    await asyncio.sleep(2.0)  # mid-recovery: tables restoring, not ready yet
    worker.stop(kill=True)
    await producing
    return await run.start_worker()


async def sigterm_midway(run: Run) -> WorkerProcess:
    producing = asyncio.create_task(run.produce())
    worker = await run.start_worker()
    await run.until_rows(0.4)
    stopped = time.monotonic()
    code = worker.stop()
    if code != 0 or time.monotonic() - stopped > 30:
        raise RuntimeError(f"SIGTERM took {time.monotonic() - stopped:.1f}s, exit {code}")
    await producing
    return await run.start_worker()


async def redeliver_everything(run: Run) -> WorkerProcess:
    """All of it processed, then the group's offsets reset to 0: every event comes again."""
    await run.produce()
    worker = await run.start_worker()
    await run.until_rows(1.0)
    await run.caught_up(worker)
    worker.stop()
    await run.reset_offsets_to_zero()
    return await run.start_worker()


async def kill_once(run: Run) -> WorkerProcess:
    producing = asyncio.create_task(run.produce())
    worker = await run.start_worker()
    await run.until_rows(0.5)
    worker.stop(kill=True)
    await producing
    return await run.start_worker()


async def broker_restart(run: Run) -> WorkerProcess:
    """The dev broker stopped for 10 s mid-stream and started again, its log kept on disk."""
    await run.produce()
    worker = await run.start_worker()
    await run.until_rows(0.4)
    await asyncio.to_thread(kafka_down)
    await asyncio.sleep(10)
    back = time.monotonic()
    await asyncio.to_thread(kafka_up, quiet=True)
    await worker.wait_ready(timeout_s=120)
    run.recoveries.append(time.monotonic() - back)
    return worker


async def database_outage(run: Run) -> WorkerProcess:
    """PostgreSQL stopped for 30 s mid-stream: the worker waits, then writes everything."""
    await run.produce()
    worker = await run.start_worker()
    await run.until_rows(0.4)
    assert run.pg is not None
    await run.pg.close()
    await asyncio.to_thread(postgres_down)
    await asyncio.sleep(30)
    status, health = await worker.get("/healthz")
    if status != 503:
        raise RuntimeError(f"/healthz said {status} with the database down: {health}")
    back = time.monotonic()
    await asyncio.to_thread(postgres_up, quiet=True)
    run.pg = await asyncpg.connect(run.settings.database_url)
    await worker.wait_ready(timeout_s=120)
    run.recoveries.append(time.monotonic() - back)
    return worker


async def two_workers_one_killed(run: Run) -> WorkerProcess:
    """Two workers with a standby replica each; one is killed -9. The fail-over time is how
    long the survivor takes to answer ``/score`` itself for a user the dead one owned."""
    run.settings = run.settings.model_copy(update={"standby_replicas": 1})
    await run.produce()
    doomed = await run.start_worker()
    survivor = await run.start_worker()
    await run.until_rows(0.5)
    await survivor.wait_ready()
    _, health = await doomed.get("/healthz")
    owned = set(health["partitions"])
    if not owned:
        raise RuntimeError(f"the first worker owns no partition: {health}")
    user = next(u for u in run.work.users if partition_for(u, run.settings.partitions) in owned)
    body = {
        "user_id": user,
        "candidates": [{"tip_id": "t", "features": {"priority": 1, "is_overdue": False,
                                                    "task_age_days": 0.0}}],
        "context": {"hour_of_day": 9, "day_of_week": 1},
    }  # fmt: skip
    doomed.stop(kill=True)
    killed = time.monotonic()
    while True:
        try:
            status, _ = await survivor.post(
                "/score/egreedy", body, headers={"x-tipstream-forwarded": "1"}
            )
        except aiohttp.ClientError:
            status = 0
        if status == 200 and partition_for(user, run.settings.partitions) in set(
            (await survivor.get("/healthz"))[1]["partitions"]
        ):
            break
        if time.monotonic() - killed > 120:
            raise TimeoutError("the survivor never served the dead worker's users")
        await asyncio.sleep(0.1)
    run.recoveries.append(time.monotonic() - killed)
    return survivor


@dataclass(frozen=True)
class Scenario:
    description: str
    fault: Fault
    shift: Callable[[int], timedelta] = lambda _u: timedelta(0)
    conflicting: bool = False


SCENARIOS: dict[str, Scenario] = {
    "kill9-now": Scenario("kill -9 three times, once in recovery", kill_three_times),
    "kill9-backfill": Scenario(
        "kill -9 three times, payload times a month old", kill_three_times, lambda _u: -MONTH
    ),
    "sigterm": Scenario("SIGTERM mid-stream", sigterm_midway),
    "redeliver-from-0": Scenario("group offsets reset to 0 after all", redeliver_everything),
    "far-times": Scenario(
        "payload times 10 years back or a year ahead, kill -9",
        kill_once,
        lambda u: -3650 * timedelta(days=1) if u % 2 else 365 * timedelta(days=1),
    ),
    "same-id-other-content": Scenario(
        "a second feedback with the same event id and other content, kill -9",
        kill_once,
        conflicting=True,
    ),
    # These stop the shared dev broker or database: run them alone.
    "broker-restart": Scenario("the broker stopped 10 s and restarted", broker_restart),
    "postgres-30s": Scenario("PostgreSQL stopped for 30 s", database_outage),
    "two-workers-kill9": Scenario(
        "two workers, standby replicas, one killed -9 (recovery = fail-over)",
        two_workers_one_killed,
    ),
}


async def run_scenario(base: Settings, name: str, *, users: int, pairs: int) -> Outcome:
    scenario = SCENARIOS[name]
    tag = f"{name}-{secrets.token_hex(3)}"
    work = make_workload(tag, users, pairs, scenario.shift, scenario.conflicting)
    run = Run(base, work, tag)
    await ensure_topics(run.settings)
    run.pg = await asyncpg.connect(base.database_url)
    try:
        worker = await scenario.fault(run)
        await run.until_rows(1.0)
        await run.caught_up(worker)
        return await run.verify(name, worker)
    finally:
        run.stop_all()
        await run.pg.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--pairs", type=int, default=20_000, help="show/feedback pairs (20000)")
    parser.add_argument("--users", type=int, default=200, help="users (200)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each scenario (1)")
    parser.add_argument(
        "--only", default="", help=f"comma list of scenarios (default all: {', '.join(SCENARIOS)})"
    )
    parser.add_argument("--quick", action="store_true", help="2,000 pairs for 40 users")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    users, pairs = (40, 2_000) if args.quick else (args.users, args.pairs)
    # A producer's first sends to new topics meet NotLeaderForPartition and are retried.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    ensure_up()
    base = get_settings()
    print(f"{'scenario':<24}{'events':>8}{'lost':>6}{'doubled':>9}{'wrong rows':>12}"
          f"{'model':>7}{'recovery s':>12}  what")  # fmt: skip
    failed = False
    for name in names:
        for _ in range(args.runs):
            started = time.monotonic()
            outcome = asyncio.run(run_scenario(base, name, users=users, pairs=pairs))
            failed |= not outcome.exact
            print(
                f"{name:<24}{outcome.events:>8}{outcome.lost:>6}{outcome.doubled:>9}"
                f"{outcome.wrong_rows:>12}{outcome.model_mismatches:>7}"
                f"{outcome.recovery_s:>12.1f}  {SCENARIOS[name].description} "
                f"({time.monotonic() - started:.0f}s)",
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
