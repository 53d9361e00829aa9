"""The real worker against the real broker and database: the feedback loop end to end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from bandit.explore import EpsilonGreedyScores
from bandit.registry import DEFAULT_POLICY, make_policy
from streams.dev.worker_process import WorkerProcess
from streams.settings import Settings
from streams.worker.partitioning import partition_for
from tests.worker.events import T0, Producer, feedback, shown, wait_for_rows
from tests.worker.reward_cases import DONE_REWARD_AT_DWELL_BOUNDARIES

pytestmark = pytest.mark.integration

WAIT_S = 600.0  # reward wait in stream time; expiry is driven by Kafka record timestamps
T0_MS = int(T0.timestamp() * 1000)


@pytest.fixture
async def worker(topics: Settings, database: str) -> AsyncIterator[WorkerProcess]:
    async with WorkerProcess(topics, reward_wait_s=WAIT_S) as process:
        yield process


def user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


async def test_rewards_at_every_dwell_boundary_and_stats(
    worker: WorkerProcess, pg: asyncpg.Connection
) -> None:
    u = user()
    cases = DONE_REWARD_AT_DWELL_BOUNDARIES
    events = [(f"tip-{d}", feedback(u, f"tip-{d}", "done", d), m) for d, m in cases]
    candidates = [{"tipId": "other", "priority": 1, "isOverdue": False, "taskAgeDays": 0}]
    shows = [shown(u, tip, candidates=candidates, candidateCount=2) for tip, _, _ in events]
    async with Producer(worker.settings) as kafka:
        await kafka.shows(*shows)
        await kafka.feedbacks(*(fb for _, fb, _ in events))
    rows = await wait_for_rows(pg, [fb["eventId"] for _, fb, _ in events])
    for tip, fb, milli in events:
        row = rows[fb["eventId"]]
        assert (row["tip_id"], row["status"], row["reward_milli"], row["action"]) == (
            tip,
            "applied",
            milli,
            "done",
        )
        assert (row["policy"], row["propensity"], row["user_id"]) == ("egreedy-v1", 0.9125, u)
        assert row["dwell_ms"] == int(tip.removeprefix("tip-"))
    logged = await pg.fetch("SELECT * FROM tip_shown WHERE user_id = $1", u)
    assert sorted(r["event_id"] for r in logged) == sorted(s["eventId"] for s in shows)
    assert {(r["policy"], r["propensity"]) for r in logged} == {("egreedy-v1", 0.9125)}
    assert all(orjson.loads(r["candidates"]) == candidates for r in logged)
    assert orjson.loads(logged[0]["features"])["priority"] == 3
    status, stats = await worker.get(f"/stats/egreedy/{u}")
    assert status == 200
    assert stats["pulls"] == 6
    assert stats["cumulative_reward"] == pytest.approx(sum(m for _, m in cases) / 1000)
    assert stats["estimated_mean"] == pytest.approx(stats["cumulative_reward"] / 6)
    assert stats["last_updated"].startswith(str(T0.year))


async def test_derived_dwell_out_of_order_duplicates_and_legacy(
    worker: WorkerProcess, pg: asyncpg.Connection
) -> None:
    u = user()
    derived = feedback(u, "derived", "done", None, at=T0 + timedelta(seconds=200))
    early = feedback(u, "early-fb", "snooze", 4000)
    first = feedback(u, "dup", "dismiss", 2000)
    second = feedback(u, "dup", "done", 30_000, at=T0 + timedelta(seconds=90))
    legacy = feedback(u, "legacy", "helpful", None)
    async with Producer(worker.settings) as kafka:
        await kafka.feedbacks(early)  # before its show: must wait for it
        await kafka.shows(shown(u, "derived"), shown(u, "dup"), shown(u, "legacy"))
        await kafka.feedbacks(derived, first, legacy)
        await asyncio.sleep(1.0)  # the show arrives well after its feedback
        await kafka.shows(shown(u, "early-fb"))
        await kafka.feedbacks(second, first)  # a later feedback and a re-delivery
    rows = await wait_for_rows(pg, [e["eventId"] for e in (derived, early, first, second, legacy)])
    assert (rows[derived["eventId"]]["dwell_ms"], rows[derived["eventId"]]["reward_milli"]) == (
        200_000,
        600,
    )
    assert (rows[early["eventId"]]["status"], rows[early["eventId"]]["reward_milli"]) == (
        "applied",
        100,
    )
    assert (rows[first["eventId"]]["status"], rows[first["eventId"]]["reward_milli"]) == (
        "applied",
        -1000,
    )
    assert (rows[second["eventId"]]["status"], rows[second["eventId"]]["reward_milli"]) == (
        "duplicate",
        None,
    )
    assert (rows[legacy["eventId"]]["status"], rows[legacy["eventId"]]["reward_milli"]) == (
        "legacy",
        None,
    )
    count = await pg.fetchval("SELECT count(*) FROM tip_feedback WHERE user_id = $1", u)
    assert count == 5  # the re-delivery wrote no second row
    _, stats = await worker.get(f"/stats/egreedy/{u}")
    assert stats["pulls"] == 3  # derived, early-fb, dup: legacy and duplicates not learned
    assert stats["cumulative_reward"] == pytest.approx(0.6 + 0.1 - 1.0)


async def test_expiry_by_stream_time(worker: WorkerProcess, pg: asyncpg.Connection) -> None:
    u = user()
    lonely = shown(u, "never-answered")
    async with Producer(worker.settings) as kafka:
        await kafka.shows(lonely, timestamp_ms=T0_MS)
        # Any later event in the same partition advances stream time past the wait.
        await kafka.shows(shown(u, "later"), timestamp_ms=T0_MS + int(WAIT_S * 1000) + 1)
    rows = await wait_for_rows(pg, [lonely["eventId"]])
    row = rows[lonely["eventId"]]
    assert (row["status"], row["action"], row["reward_milli"], row["tip_id"]) == (
        "expired",
        None,
        None,
        "never-answered",
    )


async def test_simulated_traffic_is_kept_apart(
    worker: WorkerProcess, pg: asyncpg.Connection
) -> None:
    u = user()
    prod_fb = feedback(u, "p1", "done", 30_000)
    sim = {"source": "sim", "runId": "run-iso"}
    sim_fbs = [feedback(u, f"s{i}", "dismiss", 1000, **sim) for i in range(3)]
    async with Producer(worker.settings) as kafka:
        await kafka.shows(shown(u, "p1"))
        await kafka.feedbacks(prod_fb)
        await wait_for_rows(pg, [prod_fb["eventId"]])
        _, before = await worker.get(f"/stats/egreedy/{u}")
        await kafka.shows(*(shown(u, f"s{i}", **sim) for i in range(3)))
        await kafka.feedbacks(*sim_fbs)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        status, sim_stats = await worker.get(f"/stats/egreedy/{u}?run_id=run-iso")
        if status == 200 and sim_stats["pulls"] == 3:
            break
        assert asyncio.get_running_loop().time() < deadline, sim_stats
        await asyncio.sleep(0.2)
    assert sim_stats["cumulative_reward"] == pytest.approx(-3.0)
    _, after = await worker.get(f"/stats/egreedy/{u}")
    assert after == before  # the production user's state did not move
    sim_rows = await pg.fetchval(
        "SELECT count(*) FROM tip_feedback WHERE event_id = ANY($1)",
        [f["eventId"] for f in sim_fbs],
    )
    assert sim_rows == 0
    assert await pg.fetchval("SELECT count(*) FROM tip_shown WHERE user_id = $1", u) == 1


DEAD_LETTER_CASES = [
    ("invalid_json", b'{"type": "TipFeedback",'),
    ("schema_violation", b'{"type": "TipFeedback", "schemaVersion": 1}'),
    ("payload_too_large", b"x" * 70_000),
]


async def test_bad_input_is_dead_lettered_with_headers(
    worker: WorkerProcess, pg: asyncpg.Connection
) -> None:
    u = user()
    settings = worker.settings
    partitions = settings.partitions
    good_partition = partition_for(u, partitions)
    sent: dict[str, tuple[str, bytes]] = {}  # code -> (topic, value)
    async with Producer(settings) as kafka:
        for code, value in DEAD_LETTER_CASES:
            await kafka.send(settings.topic_feedback, value, key=u)
            sent[code] = (settings.topic_feedback, value)
        for code, document in (
            ("unknown_action", feedback(u, "x", "maybe")),
            ("dwell_out_of_range", feedback(u, "x", "done", 2_592_000_001)),
            ("unsupported_schema_version", {**feedback(u, "x"), "schemaVersion": 2}),
        ):
            await kafka.send(settings.topic_feedback, document)
            sent[code] = (settings.topic_feedback, b"")
        await kafka.send(settings.topic_shown, shown(u, "x"), key="someone-else")
        sent["key_mismatch"] = (settings.topic_shown, b"")
        await kafka.send(
            settings.topic_shown, shown(u, "y"), partition=(good_partition + 1) % partitions
        )
        sent["wrong_partition"] = (settings.topic_shown, b"")
        # A good event after the bad ones: the worker kept going.
        good = feedback(u, "ok", "snooze", 3000)
        await kafka.shows(shown(u, "ok"))
        await kafka.feedbacks(good)
    await wait_for_rows(pg, [good["eventId"]])

    consumer = AIOKafkaConsumer(
        settings.topic_deadletter,
        **settings.aiokafka_kwargs(),
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    letters: dict[str, dict[str, bytes]] = {}
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(letters) < len(sent) and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers)
                    letters[headers["x-error-code"].decode()] = {**headers, "value": record.value}
    finally:
        await consumer.stop()
    assert set(letters) == set(sent)
    for code, (topic, value) in sent.items():
        headers = letters[code]
        assert headers["x-source-topic"].decode() == topic
        assert int(headers["x-source-offset"]) >= 0
        assert 0 <= int(headers["x-source-partition"]) < partitions
        assert headers["x-error-detail"]
        if value:
            assert headers["value"] == value  # the original bytes, untouched
    status, metrics = await _metrics(worker)
    assert status == 200
    assert 'tipstream_deadlettered_total{code="invalid_json"} 1.0' in metrics


async def _metrics(worker: WorkerProcess) -> tuple[int, str]:
    import aiohttp  # noqa: PLC0415

    async with aiohttp.ClientSession() as http, http.get(worker.url + "/metrics") as response:
        return response.status, await response.text()


async def test_score_answers_and_rejects_bad_requests(worker: WorkerProcess) -> None:
    body = {
        "user_id": user(),
        "candidates": [
            {"tip_id": "a", "features": {"priority": 1, "is_overdue": False, "task_age_days": 0}},
            {"tip_id": "b", "features": {"priority": 4, "is_overdue": True, "task_age_days": 9}},
        ],
        "context": {"hour_of_day": 8, "day_of_week": 1},
        "seed": 7,
    }
    status, answer = await worker.post("/score/egreedy", body)
    assert status == 200, answer
    assert answer["tip_id"] in {"a", "b"}
    assert answer["policy"] == DEFAULT_POLICY == worker.settings.policy
    # A fresh user over two candidates: the greedy tip has 1 − ε/2 and the other ε/2, with ε
    # the serving policy's own first-round ε (exact ε-greedy propensities); an unexplored
    # answer is the greedy tip.
    policy = make_policy(DEFAULT_POLICY)
    assert isinstance(policy, EpsilonGreedyScores)
    epsilon = policy.epsilon_for(policy.new_user())
    greedy, other = 1 - epsilon / 2, epsilon / 2
    assert answer["propensity"] in (pytest.approx(greedy), pytest.approx(other))
    if not answer["explored"]:
        assert answer["propensity"] == pytest.approx(greedy)
    again = await worker.post("/score/egreedy", body)
    assert again == (200, answer)  # the same seed draws the same exploration
    status, error = await worker.post("/score/egreedy", {**body, "candidates": []})
    assert status == 400
    assert "candidates" in error["error"]
    status, error = await worker.post("/score/egreedy", {**body, "policy": "nope"})
    assert status == 400
    status, _ = await worker.post(f"/admin/users/{body['user_id']}/reset", {})
    assert status == 401
    status, _ = await worker.get(f"/stats/egreedy/{user()}")
    assert status == 404
