"""The batch pipeline on an in-memory store: caching, faults, and ordering of effects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from bandit.policies.egreedy import EpsilonGreedyV1
from schemas.events import TipShown
from streams.settings import Settings
from streams.worker.joiner import FeedbackRow, Joiner
from streams.worker.metrics import WorkerMetrics
from streams.worker.partitioning import partition_for
from streams.worker.pipeline import DeadLetter, Pipeline, RawEvent
from streams.worker.state import UserRecord
from tests.worker.events import feedback, shown

SETTINGS = Settings()


class Rows:
    def __init__(self) -> None:
        self.rows: list[FeedbackRow] = []
        self.shows: list[TipShown] = []

    async def write(self, rows: Sequence[FeedbackRow], shows: Sequence[TipShown] = ()) -> None:
        self.rows += rows
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


async def test_a_failing_user_is_dead_lettered_and_others_go_on() -> None:
    store: dict[str, bytes] = {}
    p, rows, letters = pipeline(store)
    await p.handle([raw(shown("bad", "a"), 0), raw(shown("good", "a"), 1)])
    before = store["bad"]
    store_blob_is_cached = p._hot["bad"].blob is before
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
    assert store["bad"] is before  # untouched
    assert "bad" not in p._hot  # and no half-updated cached copy survives
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
