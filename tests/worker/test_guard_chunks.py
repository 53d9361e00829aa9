"""Guards spilled to chunks through the pipeline: small writes, every guard kept, every crash
point safe, and forgetting on stream time (events stamped hours apart, not "now")."""

from __future__ import annotations

import uuid
from collections import UserDict

import orjson
import pytest

from bandit.base import Policy
from bandit.policies.egreedy import EpsilonGreedyV1
from bandit.registry import DEFAULT_POLICY, make_policy
from streams.settings import Settings
from streams.worker import state
from streams.worker.decoding import RawEvent
from streams.worker.metrics import WorkerMetrics
from streams.worker.partitioning import partition_for
from streams.worker.pipeline import Pipeline
from streams.worker.state import UserRecord, chunk_key, is_chunk_key
from tests.worker.events import feedback, shown
from tests.worker.test_pipeline import Letters, Rows

SETTINGS = Settings()
T0_MS = 1_795_770_000_000  # stream time of the first batch; later ones are spaced a minute
USER = "u-chunks"
SMALL_CHUNK_BYTES = 250  # about three UUID tips' guards: a short run fills several


class ChangelogStore(UserDict[str, bytes]):
    """A store that keeps its writes in order, as the changelog receives them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, bytes | None]] = []

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes.append((key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.writes.append((key, None))
        super().__delitem__(key)


def pipeline(
    store: UserDict[str, bytes], policy: Policy, settings: Settings = SETTINGS
) -> Pipeline:
    return Pipeline(settings, [policy], store, Rows(), Letters(), WorkerMetrics())


def raw(document: dict[str, object], offset: int, at_ms: int) -> RawEvent:
    topic = SETTINGS.topic_shown if document["type"] == "TipShown" else SETTINGS.topic_feedback
    user = str(document["userId"])
    return RawEvent(topic, partition_for(user, SETTINGS.partitions), offset, at_ms, user.encode(),
                    orjson.dumps(document))  # fmt: skip


def tip_batches(tips: int, policy: str = "egreedy-v1") -> list[list[RawEvent]]:
    """One batch per tip (a show and its feedback), a minute of stream time apart."""
    batches = []
    for i in range(tips):
        tip, at = str(uuid.UUID(int=i)), T0_MS + i * 60_000  # tip ids as long as a UUID
        batches.append([raw(shown(USER, tip, policy=policy), 2 * i, at),
                        raw(feedback(USER, tip, event_id=f"fb-{i}"), 2 * i + 1, at)])  # fmt: skip
    return batches


def record_of(store: UserDict[str, bytes]) -> UserRecord:
    return UserRecord.decode(store[USER])


async def test_a_week_of_tips_is_written_in_small_records_and_every_guard_holds() -> None:
    store = ChangelogStore()
    p = pipeline(store, make_policy(DEFAULT_POLICY))
    batches = tip_batches(70, DEFAULT_POLICY)
    for batch in batches:
        await p.handle(batch)
    sizes = [len(value) for _, value in store.writes if value is not None]
    assert max(sizes) <= 1024, max(sizes)
    assert any(is_chunk_key(key) for key in store)
    assert record_of(store).pulls == 70
    # Every feedback delivered again, to a worker that starts from the stored bytes alone.
    again = pipeline(store, make_policy(DEFAULT_POLICY))
    await again.handle([batch[1] for batch in batches])
    assert record_of(store).pulls == 70


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of about three UUID tips' guards, so that a short run fills several."""
    monkeypatch.setattr(state, "CHUNK_MAX_BYTES", SMALL_CHUNK_BYTES)


@pytest.mark.parametrize(
    "chunk_bytes", [SMALL_CHUNK_BYTES, state.CHUNK_MAX_BYTES], ids=["small", "default"]
)
@pytest.mark.parametrize("retention_s", [7 * 86_400, 300], ids=["week", "5-minutes"])
async def test_every_crash_point_of_a_batch_is_replayed_exactly_once(
    retention_s: int, chunk_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut each batch's changelog writes after every prefix (a crash loses the rest), start a
    fresh worker on what landed, replay the batch: the model is as if nothing had happened.
    With a 5-minute retention, guards are forgotten (and, with small chunks, whole chunks
    deleted) as the run goes; with the default size, the one chunk is rewritten as it grows."""
    monkeypatch.setattr(state, "CHUNK_MAX_BYTES", chunk_bytes)
    settings = Settings(dedupe_retention_s=retention_s)
    batches = tip_batches(3 * 5 + 2)
    store = ChangelogStore()
    p = pipeline(store, EpsilonGreedyV1(), settings)
    cuts = 0
    for k, batch in enumerate(batches):
        before, start = dict(store), len(store.writes)
        await p.handle(batch)
        ops, want = store.writes[start:], record_of(store)
        for cut in range(len(ops)):
            landed = ChangelogStore()
            landed.update(before)
            for key, value in ops[:cut]:
                if value is None:
                    landed.pop(key, None)
                else:
                    landed[key] = value
            fresh = pipeline(landed, EpsilonGreedyV1(), settings)
            await fresh.handle(batch)  # the replay after the crash
            # And the whole history again (offsets reset): no tip may be joined twice.
            await fresh.handle([event for b in batches[: k + 1] for event in b])
            got = record_of(landed)
            assert (got.pulls, got.policy_blobs) == (want.pulls, want.policy_blobs), (k, cut)
            cuts += 1
    assert cuts > len(batches)  # some batches wrote a chunk before their record
    chunk_writes = [key for key, value in store.writes if value is not None and is_chunk_key(key)]
    if chunk_bytes > SMALL_CHUNK_BYTES:
        assert len(chunk_writes) > len(set(chunk_writes))  # a chunk was rewritten as it grew
    if retention_s == 300 and chunk_bytes == SMALL_CHUNK_BYTES:
        assert any(value is None for _, value in store.writes)  # chunks were deleted


@pytest.mark.usefixtures("small_chunks")
async def test_chunked_guards_are_forgotten_on_stream_time_and_old_shows_stay_refused() -> None:
    settings = Settings(dedupe_retention_s=3600)
    store = ChangelogStore()
    p = pipeline(store, EpsilonGreedyV1(), settings)
    batches = tip_batches(12)  # 12 minutes of stream time: several chunks
    for batch in batches:
        await p.handle(batch)
    assert sum(is_chunk_key(key) for key in store) >= 2
    late = T0_MS + 3 * 3_600_000  # three hours on: past the retention of every guard
    await p.handle([raw(shown(USER, "fresh"), 100, late), raw(feedback(USER, "fresh"), 101, late)])
    assert not any(is_chunk_key(key) for key in store)
    assert not record_of(store).chunk_numbers
    # A replay of the first tip, with its old record times: refused, never learned twice.
    await p.handle(batches[0])
    assert record_of(store).pulls == 13


async def test_a_chunk_no_record_refers_to_is_deleted_when_its_partition_is_indexed() -> None:
    store = ChangelogStore()
    await pipeline(store, EpsilonGreedyV1()).handle(tip_batches(1)[0])
    store[chunk_key(USER, 7)] = b"\x04"  # left behind by a crash (a lost deletion)
    await pipeline(store, EpsilonGreedyV1()).handle(tip_batches(2)[1])
    assert chunk_key(USER, 7) not in store
