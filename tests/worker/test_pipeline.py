"""The batch pipeline on an in-memory store: caching, faults, and ordering of effects."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from bandit.policies.egreedy import EpsilonGreedyV1
from bandit.registry import make_policy
from schemas.events import TipShown
from streams.settings import Settings
from streams.worker.decoding import DeadLetter, RawEvent
from streams.worker.joiner import FeedbackRow, Joiner
from streams.worker.metrics import WorkerMetrics
from streams.worker.partitioning import partition_for
from streams.worker.pipeline import Pipeline
from streams.worker.state import UserRecord, user_key
from tests.worker.events import feedback, shown

SETTINGS = Settings()


class Rows:
    def __init__(self) -> None:
        self.rows: list[FeedbackRow] = []
        self.shows: list[TipShown] = []

    async def write(
        self,
        rows: Sequence[FeedbackRow],
        shows: Sequence[TipShown] = (),
        withdrawn: asyncio.Future[frozenset[str]] | None = None,
    ) -> None:
        left_out = await withdrawn if withdrawn is not None else frozenset()
        self.rows += [row for row in rows if row.event_id not in left_out]
        self.shows += shows


class Letters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


def raw(document: dict[str, object], offset: int, *, topic: str | None = None) -> RawEvent:
    user = str(document["userId"])
    if topic is None:
        is_show = document["type"] == "TipShown"
        topic = SETTINGS.topic_shown if is_show else SETTINGS.topic_feedback
    return RawEvent(
        topic, partition_for(user, SETTINGS.partitions), offset, 1_795_770_000_000,
        user.encode(), orjson.dumps(document),
    )  # fmt: skip


def pipeline(store: dict[str, bytes]) -> tuple[Pipeline, Rows, Letters]:
    rows, letters = Rows(), Letters()
    return (
        Pipeline(SETTINGS, [EpsilonGreedyV1()], store, rows, letters, WorkerMetrics()),
        rows,
        letters,
    )


async def test_store_bytes_win_over_the_hot_cache() -> None:
    store: dict[str, bytes] = {}
    p, _, _ = pipeline(store)
    await p.handle([raw(shown("u", "a"), 0), raw(feedback("u", "a"), 1)])
    assert UserRecord.decode(store["u"]).pulls == 1
    # The store's value is replaced behind the cache's back (a changelog recovery does this).
    store["u"] = UserRecord().encode()
    await p.handle([raw(shown("u", "b"), 2), raw(feedback("u", "b"), 3)])
    assert UserRecord.decode(store["u"]).pulls == 1  # learned on the fresh record, not the cache


async def test_the_hot_cache_is_bounded_by_bytes_least_recently_used_out_first() -> None:
    store: dict[str, bytes] = {}
    tiny = Settings(hot_cache_mb=16384 / 2**20)  # 16 KiB of decoded records
    p = Pipeline(tiny, [EpsilonGreedyV1()], store, Rows(), Letters(), WorkerMetrics())
    for offset, user in enumerate(f"u{i}" for i in range(50)):
        await p.handle(
            [raw(shown(user, "a"), 2 * offset), raw(feedback(user, "a"), 2 * offset + 1)]
        )
    assert sum(hot.size for hot in p.hot.entries()) == p.hot.bytes <= 16384
    assert 0 < len(p.hot.keys()) < 50
    assert p.hot.keys()[-1] == "u49"  # the newest stays, the oldest went first
    assert "u0" not in p.hot
    # An evicted user is read back from the store, not lost.
    await p.handle([raw(shown("u0", "b"), 200), raw(feedback("u0", "b"), 201)])
    assert UserRecord.decode(store["u0"]).pulls == 2


async def test_the_expiry_schedule_holds_one_entry_per_user_and_fires_as_deadlines_move() -> None:
    store: dict[str, bytes] = {}
    settings = Settings(reward_wait_s=60)
    p = Pipeline(settings, [EpsilonGreedyV1()], store, Rows(), Letters(), WorkerMetrics())
    t0 = 1_795_770_000_000

    def at(document: dict[str, object], offset: int, ms: int) -> RawEvent:
        event = raw(document, offset)
        return RawEvent(event.topic, event.partition, offset, ms, event.key, event.value)

    partition = partition_for("u", SETTINGS.partitions)
    other = next(f"v{i}" for i in range(1000) if partition_for(f"v{i}", 8) == partition)
    await p.handle([at(shown("u", "a"), 0, t0)])
    for i in range(20):  # every write leaves a show waiting, each due later than a's
        await p.handle([at(shown("u", f"b{i}"), 1 + i, t0 + 1000 * (i + 1))])
    assert len(p._deadlines[partition]) == 1  # a's deadline stands for the user
    # Another user's event moves stream time past a's and b0..b9's deadlines.
    await p.handle([at(shown(other, "x"), 30, t0 + 70_500)])
    waiting = UserRecord.decode(store["u"]).pending_shows
    assert sorted(waiting) == sorted(f"b{i}" for i in range(10, 20))
    await p.handle([at(shown(other, "y"), 31, t0 + 100_000)])  # the next deadline was kept
    assert UserRecord.decode(store["u"]).pending_shows == {}
    # A deadline that comes due with nothing to expire (c was answered) still hands on the
    # next one (d's), though processing the user changed nothing.
    t1 = t0 + 200_000
    await p.handle([at(shown("u", "c"), 40, t1)])
    await p.handle([at(feedback("u", "c"), 41, t1 + 1000), at(shown("u", "d"), 42, t1 + 30_000)])
    await p.handle([at(shown(other, "z"), 43, t1 + 61_000)])  # c's old deadline: a no-op
    assert list(UserRecord.decode(store["u"]).pending_shows) == ["d"]
    await p.handle([at(shown(other, "w"), 44, t1 + 91_000)])
    assert UserRecord.decode(store["u"]).pending_shows == {}


@pytest.mark.parametrize("cuts", [(), (1,), (2,), (1, 2)], ids=["one", "1|2", "2|1", "1|1|1"])
@pytest.mark.parametrize("default_reward", [None, 0.0])
async def test_a_feedback_after_its_shows_deadline_is_late_however_the_batches_are_cut(
    cuts: tuple[int, ...], default_reward: float | None
) -> None:
    """A show, another user's event past the show's deadline (hours later in stream time,
    not "now"), then the feedback: the show expired before the feedback came, in one batch
    or three, so the feedback is never learned from."""
    settings = Settings(reward_wait_s=60, default_reward=default_reward)
    store: dict[str, bytes] = {}
    rows = Rows()
    p = Pipeline(settings, [EpsilonGreedyV1()], store, rows, Letters(), WorkerMetrics())
    t0 = 1_795_770_000_000 - 3 * 3_600_000
    partition = partition_for("u", SETTINGS.partitions)
    other = next(f"v{i}" for i in range(1000) if partition_for(f"v{i}", 8) == partition)

    def at(document: dict[str, object], offset: int, ms: int) -> RawEvent:
        event = raw(document, offset)
        return RawEvent(event.topic, event.partition, offset, ms, event.key, event.value)

    events = [
        at(shown("u", "a"), 0, t0),
        at(shown(other, "x"), 1, t0 + 61_000),
        at(feedback("u", "a"), 2, t0 + 62_000),
    ]
    for start, end in zip((0, *cuts), (*cuts, len(events)), strict=True):
        await p.handle(events[start:end])
    record = UserRecord.decode(store["u"])
    assert record.pulls == (0 if default_reward is None else 1)
    assert record.reward_milli_sum == 0
    assert sorted(r.status for r in rows.rows if r.user_id == "u") == ["expired", "expired"]


@pytest.mark.parametrize(("after_ms", "status"), [(60_000, "applied"), (60_001, "expired")])
async def test_a_feedback_is_in_time_up_to_its_shows_deadline_even_when_it_moves_stream_time(
    after_ms: int, status: str
) -> None:
    """The feedback itself is the first record past the deadline: it comes too late."""
    settings = Settings(reward_wait_s=60)
    store: dict[str, bytes] = {}
    rows = Rows()
    p = Pipeline(settings, [EpsilonGreedyV1()], store, rows, Letters(), WorkerMetrics())
    t0 = 1_795_770_000_000 - 3 * 3_600_000
    show, answer = raw(shown("u", "a"), 0), raw(feedback("u", "a"), 1)
    await p.handle(
        [
            RawEvent(show.topic, show.partition, 0, t0, show.key, show.value),
            RawEvent(answer.topic, answer.partition, 1, t0 + after_ms, answer.key, answer.value),
        ]
    )
    assert {r.status for r in rows.rows} == {status}
    assert UserRecord.decode(store["u"]).pulls == (status == "applied")


async def test_a_failing_user_is_dead_lettered_and_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store: dict[str, bytes] = {}
    p, rows, letters = pipeline(store)
    await p.handle([raw(shown("bad", "a"), 0), raw(shown("good", "a"), 1)])
    before = store["bad"]
    store_blob_is_cached = p.hot["bad"].blob is before
    assert store_blob_is_cached

    class FailingJoiner(Joiner):
        __slots__ = ()

        def process(self, record: UserRecord, user_id: str, *args: Any, **kwargs: Any) -> Any:
            if user_id == "bad":
                record.pulls += 100  # half-updated, then a bug
                raise RuntimeError("boom")
            return super().process(record, user_id, *args, **kwargs)

    p.joiner = FailingJoiner(p.policies, reward_wait_ms=p.joiner.wait_ms)
    await p.handle([raw(feedback("bad", "a"), 2), raw(feedback("good", "a"), 3)])
    assert [(d.code, d.event.offset) for d in letters.letters] == [("internal_error", 2)]
    failed = [r for r in caplog.records if r.getMessage().startswith("processing user")]
    assert [(r.user_id, r.exc_info is not None) for r in failed] == [("bad", True)]  # type: ignore[attr-defined]
    letter = letters.letters[0]
    assert letter.event_id == orjson.loads(letter.event.value)["eventId"]
    assert letter.user_id == "bad"
    assert store["bad"] is before  # untouched
    assert "bad" not in p.hot  # and no half-updated cached copy survives
    assert [r.user_id for r in rows.rows] == ["good"]


async def test_wrong_partition_and_key_mismatch_never_reach_state() -> None:
    store: dict[str, bytes] = {}
    p, rows, letters = pipeline(store)
    event = raw(shown("u", "a"), 0)
    wrong = RawEvent(event.topic, (event.partition + 1) % 8, 1, event.timestamp_ms,
                     event.key, event.value)  # fmt: skip
    mismatched = RawEvent(event.topic, event.partition, 2, event.timestamp_ms, b"v", event.value)
    await p.handle([wrong, mismatched])
    assert sorted(d.code for d in letters.letters) == ["key_mismatch", "wrong_partition"]
    assert store == {}
    assert rows.shows == []


@pytest.mark.parametrize("sim", [False, True])
async def test_shows_are_logged_for_production_only(sim: bool) -> None:
    p, rows, _ = pipeline({})
    extra = {"source": "sim", "runId": "r1"} if sim else {}
    await p.handle([raw(shown("u", "a", **extra), 0), raw(feedback("u", "a", **extra), 1)])
    assert (len(rows.shows), len(rows.rows)) == ((0, 0) if sim else (1, 1))


def pooled_pipeline(store: dict[str, bytes]) -> Pipeline:
    policies = [make_policy("pooledmix-v3"), make_policy("pooled-v1")]
    return Pipeline(SETTINGS, policies, store, Rows(), Letters(), WorkerMetrics())


def pooled_traffic(
    users: int, start: int = 0, tips: str = "abc", run: str | None = None
) -> list[RawEvent]:
    extra = {} if run is None else {"source": "sim", "runId": run}
    events, offset = [], start
    for u in range(users):
        for tip, action in zip(tips, ("done", "dismiss", "snooze"), strict=True):
            events += [
                raw(shown(f"user-{u}", tip, **extra), offset),
                raw(feedback(f"user-{u}", tip, action, **extra), offset + 1),
            ]
            offset += 2
    return events


async def test_pooled_prior_is_one_per_policy_over_every_partition_and_rebuilt_exactly() -> None:
    store: dict[str, bytes] = {}
    p = pooled_pipeline(store)
    await p.handle(pooled_traffic(40))
    assert len({partition_for(f"user-{u}", SETTINGS.partitions) for u in range(40)}) > 1
    live = {pol.name: p.pools.total(pol, None) for pol in p.pools.pooled}
    assert live["pooledmix-v3"].users == live["pooled-v1"].users == 40
    assert live["pooled-v1"].pulls.tolist() == [120]
    # A restart (or a rebalance) rebuilds the pools from the stored records: the same bits.
    again = pooled_pipeline(dict(store))
    again.ensure_indexed(set(range(SETTINGS.partitions)))
    for pol in again.pools.pooled:
        assert again.pools.total(pol, None) == live[pol.name]
    # Losing a partition subtracts exactly its users.
    lost = partition_for("user-0", SETTINGS.partitions)
    again.on_partitions_changed(set(range(SETTINGS.partitions)) - {lost})
    left = sum(partition_for(f"user-{u}", SETTINGS.partitions) != lost for u in range(40))
    assert again.pools.total(again.pools.pooled[1], None).users == left


async def test_a_failing_user_leaves_the_pool_as_the_records_say() -> None:
    store: dict[str, bytes] = {}
    p = pooled_pipeline(store)
    await p.handle(pooled_traffic(10))

    class FailingJoiner(Joiner):
        __slots__ = ()

        def process(self, record: UserRecord, user_id: str, *args: Any, **kwargs: Any) -> Any:
            result = super().process(record, user_id, *args, **kwargs)  # the pool moved...
            if user_id == "user-3":
                raise RuntimeError("boom")  # ...and then a bug: its record is not stored
            return result

    p.joiner = FailingJoiner(p.policies, reward_wait_ms=p.joiner.wait_ms)
    await p.handle(pooled_traffic(10, start=1000, tips="def"))
    p.ensure_indexed(set(range(SETTINGS.partitions)))  # the broken partition is rebuilt
    fresh = pooled_pipeline(dict(store))
    fresh.ensure_indexed(set(range(SETTINGS.partitions)))
    for pol in p.pools.pooled:
        assert p.pools.total(pol, None) == fresh.pools.total(pol, None)
    assert p.pools.total(p.pools.pooled[1], None).pulls.tolist() == [57]  # 19 × 3 learned


async def test_a_failing_learning_step_dead_letters_only_the_users_of_that_call() -> None:
    """The batch's rewards are learned together: one call per pooled policy and run, over
    the run's partitions. A bug in one call dead-letters its users' events and keeps their
    records and the pools as stored; users learned in other calls are written as usual."""
    store: dict[str, bytes] = {}
    p = pooled_pipeline(store)
    await p.handle(pooled_traffic(10) + pooled_traffic(10, start=100, run="r1"))
    victims = {user_key(f"user-{u}", "r1") for u in range(10)}
    assert victims <= set(store)
    assert len({partition_for(f"user-{u}", SETTINGS.partitions) for u in range(10)}) > 1
    mix = p.policies[0]
    learn = mix.update_many

    def exploding(users: Any, shared: Any, *args: Any) -> None:
        learn(users, shared, *args)  # the pool moved...
        if shared.whole is p.pools.total(mix, "r1"):
            raise RuntimeError("boom")  # ...and then a bug

    mix.update_many = exploding  # type: ignore[method-assign]
    kept = {key: store[key] for key in victims}
    await p.handle(
        pooled_traffic(10, start=1000, tips="def")
        + pooled_traffic(10, start=2000, tips="def", run="r1")
    )
    letters = p.dead_letters.letters  # type: ignore[attr-defined]
    assert {(d.user_id, d.run_id) for d in letters} == {(f"user-{u}", "r1") for u in range(10)}
    assert {d.code for d in letters} == {"internal_error"}
    assert len(letters) == 6 * len(victims)  # every event of theirs, none lost
    assert {key: store[key] for key in victims} == kept
    assert not victims & set(p.hot.keys())
    assert all(UserRecord.decode(store[f"user-{u}"]).pulls == 6 for u in range(10))
    assert {r.user_id for r in p.rows.rows[-30:]} == {f"user-{u}" for u in range(10)}  # type: ignore[attr-defined]
    p.ensure_indexed(set(range(SETTINGS.partitions)))  # the broken partitions are rebuilt
    fresh = pooled_pipeline(dict(store))
    fresh.ensure_indexed(set(range(SETTINGS.partitions)))
    for pol in p.pools.pooled:
        for run in (None, "r1"):
            assert p.pools.total(pol, run) == fresh.pools.total(pol, run)


async def test_a_batch_learns_each_users_rewards_in_order_as_one_at_a_time_would() -> None:
    """Alone in its batches, a user ends byte-identical to learning one reward per batch."""
    together: dict[str, bytes] = {}
    await pooled_pipeline(together).handle(pooled_traffic(1))
    apart: dict[str, bytes] = {}
    p = pooled_pipeline(apart)
    for event in pooled_traffic(1):
        await p.handle([event])
    assert (
        UserRecord.decode(together["user-0"]).policy_blobs
        == UserRecord.decode(apart["user-0"]).policy_blobs
    )


async def test_pooled_priors_stored_by_earlier_versions_are_deleted() -> None:
    partition = partition_for("user-0", SETTINGS.partitions)
    legacy = f"\x1epooledmix-v3\x1f\x1f{partition}"
    store: dict[str, bytes] = {legacy: b"old stack"}
    p = pooled_pipeline(store)
    await p.handle(pooled_traffic(1))
    assert legacy not in store
    assert "user-0" in store


async def test_dead_letters_are_logged_with_the_ids_known(caplog: pytest.LogCaptureFixture) -> None:
    """A dead letter's log record carries the user, event and run ids (JSON logs show them)."""
    p, _, letters = pipeline({})
    event = raw(shown("u-log", "a"), 0)
    mismatched = RawEvent(event.topic, event.partition, 5, event.timestamp_ms, b"v", event.value)
    undecodable = RawEvent(event.topic, event.partition, 6, event.timestamp_ms, b"u-key", b"{")
    with caplog.at_level(logging.WARNING, logger="streams.worker.pipeline"):
        await p.handle([mismatched, undecodable])
    assert len(letters.letters) == 2
    records = {r.code: r for r in caplog.records if hasattr(r, "code")}  # type: ignore[attr-defined]
    assert set(records) == {"key_mismatch", "invalid_json"}
    first = records["key_mismatch"]
    assert first.user_id == "u-log"  # type: ignore[attr-defined]
    assert first.event_id == orjson.loads(event.value)["eventId"]  # type: ignore[attr-defined]
    assert (first.topic, first.offset) == (event.topic, 5)  # type: ignore[attr-defined]
    # Undecodable: only the Kafka key (the userId by contract) is known.
    second = records["invalid_json"]
    assert second.user_id == "u-key"  # type: ignore[attr-defined]
    assert second.event_id is None  # type: ignore[attr-defined]


async def test_no_state_is_stored_before_the_rows_are_written_and_the_shows_go_on() -> None:
    """The shows' write starts before the join and the rows' before learning; the records
    wait for the rows (an ``expired`` row stored only in state would be lost), not for the
    shows: ``handle`` returns their write, for the batch's offsets to wait on."""

    class GatedRows:
        def __init__(self) -> None:
            self.started: list[str] = []
            self.gates = {"rows": asyncio.Event(), "shows": asyncio.Event()}

        async def write(
            self,
            rows: Sequence[FeedbackRow],
            shows: Sequence[TipShown] = (),
            withdrawn: asyncio.Future[frozenset[str]] | None = None,
        ) -> None:
            what = "rows" if rows else "shows"
            self.started.append(what)
            await self.gates[what].wait()

    store: dict[str, bytes] = {}
    gated = GatedRows()
    p = Pipeline(SETTINGS, [EpsilonGreedyV1()], store, gated, Letters(), WorkerMetrics())
    batch = asyncio.ensure_future(p.handle([raw(shown("u", "a"), 0), raw(feedback("u", "a"), 1)]))
    for _ in range(20):
        await asyncio.sleep(0)
    assert gated.started == ["shows", "rows"]  # both under way at once
    assert store == {}  # and nothing stored while the rows are
    gated.gates["rows"].set()
    shows_written = await batch
    assert UserRecord.decode(store["u"]).pulls == 1  # stored while the shows are written
    assert shows_written is not None
    assert not shows_written.done()
    gated.gates["shows"].set()
    await shows_written
    # A batch without production shows leaves nothing to wait for.
    assert await p.handle([raw(feedback("u", "b"), 2)]) is None
