"""Late feedback through a real worker (issue 10, item 5; streams/sim/stream_clock.py).

The run is played on fresh topics in its own stream time, from 2000-01-01: shows stamped
with their round's time, each feedback published with its arrival time before the first
block it has arrived by, lost and late feedback never published, and clock records that move
every partition of the run to the block's time. With ``--concurrency 1`` the worker then
learns exactly what the in-process learner learns, when it learns it: the same seed gives
the same choices and rewards both ways, every published feedback is learned, and every show
whose feedback is lost or late expires in the worker (learned with the default reward when
one is set).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from judges.delay import parse_delay
from judges.world import World
from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig, SimUsageError, make_users, resolve_personas
from streams.sim.delivery import APPLIED, EXPIRED, LATE, Delivery
from streams.sim.stream_clock import STREAM_EPOCH_MS, check_fresh_topics
from tests.sim.simhelpers import consume_run, judgments, run_rows

pytestmark = pytest.mark.integration

ROUND_S = 3600.0
WAIT_S = 4 * 3600.0  # a show expires 4 rounds after it was served


def _expected(config: SimConfig, rows: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    """The schedule's deliveries replayed over the run's rows, by kind (own reward or
    expiry, whatever the default reward): what is due by the last round's choices, and what
    is still on its way then."""
    users = make_users(World(config.seed), resolve_personas(config.personas_path), config.users)
    order = {u.user_id: i for i, u in enumerate(users)}
    world = World(config.seed)
    delay = parse_delay(config.delay, lost=config.delay_lost)
    delivery = Delivery(
        delay, round_s=ROUND_S, reward_wait_s=WAIT_S, default_reward=0.0, late_arrivals=True
    )
    by_id = {u.user_id: u for u in users}
    for row in sorted(rows, key=lambda r: (r["round"], order[r["user_id"]])):
        user = by_id[row["user_id"]]
        rng = world.delivery_rng(user.persona, user.index, row["round"])
        delivery.post(row, row["round"], 0.0, dwell_ms=row["dwell_ms"], rng=rng)
    due = Counter(a.kind for a in delivery.due(config.rounds - 1))
    return due, Counter(a.kind for a in delivery.due(10**9))


async def _sim_outcomes(worker: WorkerProcess) -> Counter[str]:
    async with aiohttp.ClientSession() as http, http.get(worker.url + "/metrics") as response:
        text = await response.text()
    found: Counter[str] = Counter()
    pattern = r'^tipstream_events_total\{outcome="(\w+)",source="sim"\} ([0-9.e+]+)$'
    for outcome, value in re.findall(pattern, text, flags=re.MULTILINE):
        found[outcome] += round(float(value))
    return found


@pytest.mark.parametrize("default_reward", [-0.5, None])
async def test_late_feedback_through_the_worker_is_the_in_process_schedule(
    topics: Settings, database: str, pg: asyncpg.Connection, default_reward: float | None
) -> None:
    settings = topics.model_copy(update={"reward_wait_s": WAIT_S, "default_reward": default_reward})
    config = SimConfig(
        policy="egreedy-v1",
        via="worker",
        users=2,
        rounds=12,
        seed=11,
        concurrency=1,
        epsilon=settings.epsilon,
        delay="exp:7200",  # a mean of 2 rounds: many on time, some after the 4-round wait
        delay_lost=0.2,
        round_s=ROUND_S,
        reward_wait_s=WAIT_S,
        default_reward=default_reward,
    )
    async with WorkerProcess(settings, policy=config.policy) as worker:
        through = await asyncio.wait_for(
            run_closed_loop(worker.settings, config, quiet=True), timeout=300
        )
        rows_worker = await run_rows(pg, through["run_id"])
        records = await consume_run(settings, through["run_id"], None)
        kinds, after = _expected(config, rows_worker)
        learned = kinds[APPLIED] + (kinds[EXPIRED] if default_reward is not None else 0)
        pulls: dict[str, int] = {}
        for user_id in sorted({r["user_id"] for r in rows_worker}):
            status, stats = await worker.get(f"/stats/egreedy/{user_id}?run_id={through['run_id']}")
            assert status == 200, stats
            pulls[user_id] = stats["pulls"]
        outcomes = await _sim_outcomes(worker)

        # A second such run on the same topics would start behind their stream time.
        with pytest.raises(SimUsageError, match="topics and a worker of their own"):
            await run_closed_loop(worker.settings, config, quiet=True)

    inprocess = await run_closed_loop(
        topics, dataclasses.replace(config, via="inprocess"), quiet=True
    )
    rows_inprocess = await run_rows(pg, inprocess["run_id"])

    # One schedule: the same choices, reactions and rewards both ways, and the same fate of
    # every feedback.
    assert len(rows_worker) == 10 * 12
    assert judgments(rows_worker) == judgments(rows_inprocess)
    feedback = through["feedback"]
    assert feedback.pop("stream_epoch") == "2000-01-01T00:00:00.000Z"
    assert feedback == inprocess["feedback"]
    assert feedback["lost"] > 0
    assert feedback["late"] > 0
    assert feedback["on_time"] > 0
    assert kinds[APPLIED] + after[APPLIED] == feedback["on_time"]
    assert kinds[EXPIRED] + after[EXPIRED] == feedback["lost"] + feedback["late"]

    # Event times are the run's stream time, never the wall clock: shows at their round's
    # time, feedback at its arrival (after its show; by its deadline, or after it for the
    # late ones), the lost ones never published.
    round_ms = round(ROUND_S * 1000)
    shows = records[settings.topic_shown]
    assert len(shows) == len(rows_worker)
    for record in shows:
        event = json.loads(record.value)
        round_ = int(event["eventId"].split("/")[-2])
        assert record.timestamp == STREAM_EPOCH_MS + round_ * round_ms
        assert event["servedAt"].startswith("2000-01-01")
    published = records[settings.topic_feedback]
    feedbacks = [r for r in published if not json.loads(r.value)["eventId"].endswith("/clock")]
    clocks = [r for r in published if json.loads(r.value)["eventId"].endswith("/clock")]
    assert len(feedbacks) == kinds[APPLIED] + kinds[LATE]
    assert kinds[LATE] > 0
    deadline_ms = round(WAIT_S * 1000)
    late = 0
    for record in feedbacks:
        event = json.loads(record.value)
        round_ = int(event["eventId"].split("/")[-2])
        served = STREAM_EPOCH_MS + round_ * round_ms
        assert served < record.timestamp
        late += record.timestamp > served + deadline_ms
        assert record.timestamp <= STREAM_EPOCH_MS + (config.rounds - 1) * round_ms
    assert late == kinds[LATE]
    assert clocks
    assert all(r.timestamp % round_ms == STREAM_EPOCH_MS % round_ms for r in clocks)
    assert all(json.loads(r.value)["action"] == "helpful" for r in clocks)

    # The worker learned every published feedback and, with a default reward, every expired
    # show: exactly what the barrier counted; lost and late feedback expired its show, and
    # the late feedback that came was stored as late.
    assert sum(pulls.values()) == learned
    assert outcomes["applied"] == kinds[APPLIED]
    assert outcomes["expired"] == kinds[EXPIRED]
    assert outcomes["late"] == kinds[LATE]
    assert outcomes["legacy"] == len(clocks)


async def test_topics_whose_records_retention_deleted_are_not_taken_for_fresh(
    topics: Settings,
) -> None:
    """Records dated 2000 breach any time retention: the broker deletes an earlier run's
    within minutes, while a worker's stream time stays ahead. Injected with DeleteRecords."""
    await check_fresh_topics(topics)  # fresh: no refusal
    producer = AIOKafkaProducer(**topics.aiokafka_kwargs())  # type: ignore[arg-type]
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            topics.topic_feedback, b"{}", key=b"u", timestamp_ms=STREAM_EPOCH_MS
        )
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(**topics.aiokafka_kwargs())  # type: ignore[arg-type]
    await admin.start()
    try:
        tp = TopicPartition(sent.topic, sent.partition)
        await admin.delete_records({tp: RecordsToDelete(before_offset=sent.offset + 1)})
    finally:
        await admin.close()
    with pytest.raises(SimUsageError, match="were written to before"):
        await check_fresh_topics(topics)
