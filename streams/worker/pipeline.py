"""The worker's hot path: one batch of Kafka events in, state, rows and dead letters out.

Per batch: decode and validate every event, dead-letter the bad ones, group the rest by
user (state key), load each user's record once, join and learn, expire what is overdue,
write the ``tip_feedback`` rows, and only then store the records. The writes overlap the
work that needs nothing of them: the feedback rows go to PostgreSQL while the batch learns
and encodes its records, and the production shows' ``tip_shown`` rows from the decode on,
into the next batch if need be (only the batch's offsets wait for them: ``handle`` returns
their write). Readers see the encoded records at once (``fresh``), before the store.

Why rows before state: rows are idempotent (``ON CONFLICT DO NOTHING``) and state carries
the guard. If the worker dies after the rows but before the state is flushed, the replay
recomputes the same rows and state; the other order could lose an ``expired`` row, which
is produced once, when stream time passes a deadline, and not by a re-delivered event.

Never raises: an event that fails unexpectedly is dead-lettered (``internal_error``) with
its original bytes, so nothing is lost and the stream keeps going.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from bandit.base import Policy
from schemas.events import TipFeedback, TipShown
from streams.settings import Settings
from streams.worker.decoding import DeadLetter, RawEvent, decode_event
from streams.worker.hot_cache import HotCache
from streams.worker.joiner import FeedbackRow, Joiner, PolicyModels
from streams.worker.learning import Learner, learn_together
from streams.worker.lookahead import DecodeAhead
from streams.worker.metrics import WorkerMetrics
from streams.worker.pools import Pools
from streams.worker.state import (
    SIM_SEPARATOR,
    UserRecord,
    chunk_key,
    decode_chunk,
    is_chunk_key,
    is_legacy_shared_key,
    key_partition,
    key_run,
    user_key,
    user_state,
)

__all__ = ["BatchSteps", "DeadLetterSink", "Pipeline", "RowSink"]

log = logging.getLogger(__name__)

# Often enough that a write's round trips to PostgreSQL go on while the batch computes.
YIELD_EVERY_USERS = 32
# Outcomes that say an event was seen before: its user's state is written again (_write_again).
REPLAYED_OUTCOMES = frozenset({"redelivered", "show_duplicate"})


class RowSink(Protocol):
    async def write(
        self,
        rows: Sequence[FeedbackRow],
        shows: Sequence[TipShown] = (),
        withdrawn: asyncio.Future[frozenset[str]] | None = None,
    ) -> None:
        """Write the rows and shows; ``withdrawn``: event ids of ``rows`` to leave out,
        known only after the write began (it may wait for them before it commits)."""


class _Encoded(NamedTuple):
    """A user's record ready to store: its blob, and the chunks to write and delete."""

    key: str
    record: UserRecord
    models: dict[str, Any]
    again: list[int]  # chunks of a replayed user to write again as they are
    new_chunks: dict[int, bytes]
    blob: bytes
    gone: list[int]


class DeadLetterSink(Protocol):
    async def send(self, letter: DeadLetter) -> None: ...


@dataclass(slots=True)
class _Group:
    user_id: str
    run_id: str | None
    partition: int
    events: list[tuple[TipShown | TipFeedback, int, int]]  # record time, stream time before
    raws: list[RawEvent]


class BatchSteps:
    """Wall seconds of a batch's steps (the other tasks that run while one awaits count
    towards it): what a slow batch's warning and ``tipstream_batch_step_seconds`` show.

    >>> steps = BatchSteps()
    >>> steps.mark("decode"); steps.mark("join"); steps.mark("decode")
    >>> sorted(steps.seconds), steps.total() >= 0
    (['decode', 'join'], True)
    """

    __slots__ = ("_last", "seconds")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, step: str) -> None:
        """The time since the last mark goes to ``step`` (added, if it ran before)."""
        now = time.perf_counter()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - self._last
        self._last = now

    def total(self) -> float:
        return sum(self.seconds.values())


@dataclass(slots=True)
class _Joined:
    """A user after the join: what to store (None: nothing changed), its rows, its models
    with the lessons still to learn, how many feedbacks it learns from and their latencies."""

    group: _Group
    changed: tuple[UserRecord, dict[str, Any], set[str], bool] | None
    rows: list[FeedbackRow]
    models: PolicyModels
    applied: int
    reward_latencies_ms: list[int]


class Pipeline:
    """Batch processor over a key-value state store (a faust Table in the worker)."""

    def __init__(  # noqa: PLR0917 (the pipeline's collaborators, wired once)
        self,
        settings: Settings,
        policies: Sequence[Policy],
        store: MutableMapping[str, bytes],
        rows: RowSink,
        dead_letters: DeadLetterSink,
        metrics: WorkerMetrics,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.settings = settings
        self.policies = list(policies)
        self.pools = Pools(self.policies)
        self.store = store
        self.rows = rows
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.joiner = Joiner(
            self.policies,
            reward_wait_ms=round(settings.reward_wait_s * 1000),
            default_reward=settings.default_reward,
            retention_ms=round(settings.dedupe_retention_s * 1000),
        )
        self._wall_clock_ms = wall_clock_ms
        self._stream_time_ms: dict[int, int] = {}
        # Expiry schedule per partition: a heap of (deadline, key) and, per key, the one
        # entry that counts; entries a key no longer matches are skipped when they pop, so
        # the heap holds about one entry per user with something pending, not one per write.
        self._deadlines: dict[int, list[tuple[int, str]]] = {}
        self._due: dict[int, dict[str, int]] = {}
        self._indexed: set[int] = set()  # partitions whose index and pools are built
        self._waiting: dict[int, tuple[int, int]] = {}  # partition -> (shows, feedback)
        self.hot = HotCache(round(settings.hot_cache_mb * 2**20))
        self.steps = BatchSteps()  # the last batch's
        # A batch's records while it waits for its rows, for readers (``on_fresh``: wake them).
        self.fresh: dict[str, bytes] = {}
        self.on_fresh: Callable[[], None] = lambda: None
        # Later batches' events decoded while this one waits (its ``source`` set by the app).
        self.ahead = DecodeAhead(
            lambda raw: decode_event(raw, settings), max_kept=8 * settings.batch_max
        )

    # -- partitions --------------------------------------------------------------------

    def on_partitions_changed(self, active: set[int]) -> None:
        """Forget what we knew of partitions we may have lost or gained (rebalance)."""
        self.hot.clear()  # also guarded by the bytes in _load; clearing frees the memory
        self.ahead.clear()
        for partition in list(self._indexed):
            if partition not in active:
                self._forget_partition(partition)
        self._publish_waiting()

    def ensure_indexed(self, partitions: set[int]) -> None:
        """Build what is not built yet for these owned partitions (before serving a pooled
        prior: it sums every owned partition, also those no event has reached yet)."""
        if partitions - self._indexed:
            self._index_partitions(partitions - self._indexed)

    def forget_runs(self, runs: set[str]) -> int:
        """Delete every record and chunk of these simulated runs, which have ended, with
        their pools and counts; return how many keys went. Called between batches.

        One pass over the store's keys. An event of such a run that still comes starts its
        user afresh (and is forgotten at a later sweep)."""
        doomed = [key for key in self.store if key_run(key) in runs]
        for key in doomed:
            partition = key_partition(key, self.settings.partitions)
            if not is_chunk_key(key) and partition in self._indexed:
                record = UserRecord.decode(self.store[key])
                self._due.get(partition, {}).pop(key, None)  # its heap entry is skipped
                shows, feedback = self._waiting.get(partition, (0, 0))
                self._waiting[partition] = (
                    shows - len(record.pending_shows),
                    feedback - sum(len(w) for w in record.pending_feedback.values()),
                )
            del self.store[key]
            self.hot.forget(key)
        for run in runs:
            self.pools.drop_run(run)
        self._publish_waiting()
        return len(doomed)

    def _forget_partition(self, partition: int) -> None:
        self._indexed.discard(partition)
        self._deadlines.pop(partition, None)
        self._due.pop(partition, None)
        self._waiting.pop(partition, None)
        self.pools.drop_partition(partition)

    def _index_partitions(self, partitions: set[int]) -> None:
        """Rebuild the expiry index, waiting counts and pooled priors of newly owned
        partitions from their records (the pools are derived state: ``streams.worker.pools``).

        One pass over the store for all of them, not one per partition: with a million users
        each pass costs seconds (a key's partition is a murmur2 hash in Python).
        """
        for partition in partitions:
            self._forget_partition(partition)
        heaps: dict[int, list[tuple[int, str]]] = {p: [] for p in partitions}
        waiting = dict.fromkeys(partitions, (0, 0))
        chunks: list[str] = []
        referenced: set[str] = set()
        stale: list[str] = []
        for key, blob in self.store.items():  # deletions wait: never change what is iterated
            partition = key_partition(key, self.settings.partitions)
            if partition not in partitions:
                continue
            if is_legacy_shared_key(key):
                stale.append(key)  # a pooled prior stored by an earlier version
                continue
            if is_chunk_key(key):
                chunks.append(key)
                continue
            record = UserRecord.decode(blob)
            referenced.update(chunk_key(key, number) for number in record.chunk_numbers)
            deadline = record.next_deadline_ms()
            if deadline is not None:
                heaps[partition].append((deadline, key))
            shows, feedback = waiting[partition]
            waiting[partition] = (
                shows + len(record.pending_shows),
                feedback + sum(len(w) for w in record.pending_feedback.values()),
            )
            _, _, run_id = key.partition(SIM_SEPARATOR)
            if run_id:
                self.pools.count_applied(run_id, partition, record.pulls)
            blobs = record.policy_blobs
            states = {
                p.name: user_state(p, blobs[p.name]) for p in self.pools.pooled if p.name in blobs
            }
            self.pools.add_user(run_id or None, partition, states)
        # A chunk no record refers to: its record was written without it, and a crash lost
        # the deletion after.
        for key in stale + [key for key in chunks if key not in referenced]:
            del self.store[key]
        for partition, heap in heaps.items():
            heapq.heapify(heap)
            self._deadlines[partition] = heap
            self._due[partition] = {key: deadline for deadline, key in heap}
            self._waiting[partition] = waiting[partition]
            self._indexed.add(partition)

    # -- the batch ---------------------------------------------------------------------

    async def handle(self, batch: Sequence[RawEvent]) -> asyncio.Future[None] | None:
        """Process the batch: its rows are written and its records stored on return.

        Returns the write of its production shows when it is still under way: the batch's
        offsets may be committed only once that is done too (a replay writes them again).
        """
        self.metrics.batch_size.observe(len(batch))
        steps = self.steps = BatchSteps()
        now_ms = self._wall_clock_ms()
        letters: list[DeadLetter] = []
        shows: list[TipShown] = []  # production shows, logged for off-policy evaluation
        groups: dict[str, _Group] = {}
        self.ensure_indexed({raw.partition for raw in batch})
        times = np.fromiter((raw.timestamp_ms for raw in batch), dtype=np.float64, count=len(batch))
        self.metrics.processing_lag.observe_many(np.maximum(0.0, (now_ms - times) / 1000))
        for raw in batch:
            stream_time = self._stream_time_ms.get(raw.partition, 0)
            self._stream_time_ms[raw.partition] = max(stream_time, raw.timestamp_ms)
            decoded = self.ahead.decode(raw)
            if isinstance(decoded, DeadLetter):
                letters.append(decoded)
                continue
            if isinstance(decoded, TipShown) and not decoded.is_sim:
                shows.append(decoded)
            key = user_key(decoded.user_id, decoded.run_id if decoded.is_sim else None)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(
                    decoded.user_id,
                    decoded.run_id if decoded.is_sim else None,
                    raw.partition,
                    [],
                    [],
                )
            group.events.append((decoded, raw.timestamp_ms, stream_time))
            group.raws.append(raw)
        self._add_due_expiries(groups)
        # The shows' rows need nothing of the join, nor the state of them: into PostgreSQL
        # while the batch runs, and the next one if need be.
        shows_written = asyncio.ensure_future(self.rows.write((), shows)) if shows else None
        steps.mark("decode")

        joined: dict[str, _Joined] = {}
        broken: set[int] = set()
        outcomes: Counter[tuple[str, str]] = Counter()  # counted into the metric once
        for done, (key, group) in enumerate(groups.items(), 1):
            if not done % YIELD_EVERY_USERS:
                # Let the consumer's heartbeat, the web server and the shows' write run during
                # a long batch: a lone worker busy with one batch must never be taken for dead.
                await asyncio.sleep(0)
            try:
                joined[key] = self._join_group(key, group, outcomes)
            except Exception as exc:  # a bug must not stop the stream or lose the events
                letters += self._fail_group(key, group, exc, broken)
        steps.mark("join")
        # The rows into PostgreSQL while the batch learns and encodes (the rows of a user
        # whose learning fails are withdrawn before they are committed). Simulated traffic
        # never writes tip_feedback.
        rows = [row for j in joined.values() if j.group.run_id is None for row in j.rows]
        withdrawn: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        rows_written = asyncio.ensure_future(self.rows.write(rows, (), withdrawn)) if rows else None
        try:
            learners = [
                Learner(key, (j.group.run_id, j.group.partition), j.models)
                for key, j in joined.items()
                if j.models.lessons
            ]
            failed = await learn_together(self.policies, learners, self.pools)
            for key, error in failed.items():
                letters += self._fail_group(key, joined[key].group, error, broken)
            withdrawn.set_result(
                frozenset(row.event_id for key in failed for row in joined.pop(key).rows)
            )
        finally:
            withdrawn.cancel()  # a no-op once set; else the rows' write rolls back
        steps.mark("learn")

        records: dict[str, tuple[UserRecord, dict[str, Any], set[str], bool]] = {}
        latencies_ms: list[int] = []
        for done, (key, j) in enumerate(joined.items(), 1):
            if not done % YIELD_EVERY_USERS:
                await asyncio.sleep(0)  # let the rows' write go on
            j.models.flush()
            latencies_ms += j.reward_latencies_ms
            if j.group.run_id is not None and j.applied:
                self.pools.count_applied(j.group.run_id, j.group.partition, j.applied)
            if j.changed is not None:
                records[key] = j.changed
        latencies = np.array(latencies_ms, dtype=np.float64)
        self.metrics.reward_latency.observe_many(np.maximum(0.0, latencies / 1000))

        steps.mark("learn")  # the learned models encoded into their records
        # Encode the records while PostgreSQL writes the rows; store none of them before.
        encoded = []
        for done, (key, (record, models, stored, replayed)) in enumerate(records.items(), 1):
            if not done % YIELD_EVERY_USERS:
                await asyncio.sleep(0)
            again = list(record.chunk_numbers) if replayed else []
            new_chunks, gone = record.spill(stored)
            encoded.append(_Encoded(key, record, models, again, new_chunks, record.encode(), gone))
        steps.mark("encode")
        # Readers (/stats, /score) see the records now; the store waits for the rows.
        self.fresh = {e.key: e.blob for e in encoded}
        self.on_fresh()
        try:
            if rows_written is not None:
                await self.ahead.wait(rows_written)
            steps.mark("rows")
            for e in encoded:
                self._write_again(e.key, e.again)
                for number, chunk in e.new_chunks.items():  # before the record (spill)
                    self.store[chunk_key(e.key, number)] = chunk
                self.store[e.key] = e.blob
                for number in e.gone:  # after it
                    self.store.pop(chunk_key(e.key, number), None)
                self.hot.put(e.key, e.blob, e.record, e.models)
        finally:
            self.fresh = {}
        steps.mark("store")
        for partition in broken:
            self._indexed.discard(partition)  # rebuilt from the stored records next time
        for (source, outcome), n in outcomes.items():
            self.metrics.events.labels(source, outcome).inc(n)
        for letter in letters:
            self.metrics.deadlettered.labels(letter.code).inc()
            log.warning(
                "dead-lettering %s[%d]@%d: %s: %s",
                letter.event.topic,
                letter.event.partition,
                letter.event.offset,
                letter.code,
                letter.detail[:300],
                extra=letter.log_context(),
            )
            await self.dead_letters.send(letter)
        self._publish_waiting()
        steps.mark("dead_letters")
        return shows_written

    def _add_due_expiries(self, groups: dict[str, _Group]) -> None:
        """Users with a deadline passed by stream time join the batch with no events."""
        for partition, heap in self._deadlines.items():
            now = self._stream_time_ms.get(partition)
            if now is None:
                continue
            due = self._due.setdefault(partition, {})
            while heap and heap[0][0] <= now:
                deadline, key = heapq.heappop(heap)
                if due.get(key) != deadline:
                    continue  # superseded by an earlier entry of the key, or already done
                del due[key]  # processing the user schedules its next deadline again
                if key in groups or key not in self.store:
                    continue
                user_id, _, run_id = key.partition(SIM_SEPARATOR)
                groups[key] = _Group(user_id, run_id or None, partition, [], [])

    def _write_again(self, key: str, numbers: Sequence[int]) -> None:
        """Write a replayed user's chunks again as they are (its record is written next).

        A store on disk (RocksDB) can hold writes whose changelog records a crash lost; the
        replay of the batch finds them applied and changes nothing, so without this the
        changelog would miss them for good once the batch's offsets are committed, and a
        worker that takes the partition over from the changelog would lack them.
        """
        for number in numbers:
            chunk = self.store.get(chunk_key(key, number))
            if chunk is not None:
                self.store[chunk_key(key, number)] = chunk

    def _load(self, key: str) -> tuple[UserRecord, dict[str, Any]]:
        blob = self.store.get(key)
        hot = self.hot.get(key, blob)
        if hot is not None:
            return hot.record, hot.models
        # Not cached, or the store holds other bytes (recovered from the changelog, reset).
        if blob is None:
            return UserRecord(), {}
        record = UserRecord.decode(blob)
        for number in record.chunk_numbers:
            chunk = self.store.get(chunk_key(key, number))
            if chunk is None:
                # Written before its record, so only a lost changelog write gets here.
                log.error(
                    "user %r: guard chunk %d is missing: its tips may be learned again", key, number
                )
                continue
            record.load_chunk(number, decode_chunk(chunk))
        return record, {}

    def _fail_group(
        self, key: str, group: _Group, exc: Exception, broken: set[int]
    ) -> list[DeadLetter]:
        """Dead-letter a user's events after a bug, keeping its stored record as it was."""
        log.error(
            "processing user %r failed; dead-lettering its events",
            key,
            exc_info=exc,
            extra={"user_id": group.user_id, "run_id": group.run_id},
        )
        self.hot.forget(key)  # its cached record may be half-updated
        broken.add(group.partition)  # and so may its share of the pools
        return [
            DeadLetter(
                raw, "internal_error", repr(exc), group.user_id, event.event_id, event.run_id
            )
            for raw, (event, _, _) in zip(group.raws, group.events, strict=True)
        ]

    def _join_group(self, key: str, group: _Group, outcomes: Counter[tuple[str, str]]) -> _Joined:
        """Join the user's events; its rewards are learned after, with the batch's others."""
        record, models = self._load(key)
        stored = set(record.settled)  # the guards already written: those may move to a chunk
        before = (len(record.pending_shows), sum(len(w) for w in record.pending_feedback.values()))
        pulls = record.pulls
        result = self.joiner.process(
            record,
            group.user_id,
            group.events,
            self._stream_time_ms.get(group.partition, 0),
            self.pools.views(group.run_id, group.partition),
            decoded_models=models,
            learn_later=True,
        )
        assert result.models is not None  # learn_later
        source = "sim" if group.run_id is not None else "prod"
        for outcome in result.outcomes:
            outcomes[source, outcome] += 1
        after = (len(record.pending_shows), sum(len(w) for w in record.pending_feedback.values()))
        shows, feedback = self._waiting.get(group.partition, (0, 0))
        self._waiting[group.partition] = (
            shows + after[0] - before[0],
            feedback + after[1] - before[1],
        )
        self._schedule(group.partition, key, record.next_deadline_ms())
        replayed = not REPLAYED_OUTCOMES.isdisjoint(result.outcomes)
        changed = (record, models, stored, replayed) if result.changed or replayed else None
        return _Joined(
            group,
            changed,
            result.rows,
            result.models,
            record.pulls - pulls,
            result.reward_latencies_ms,
        )

    def _schedule(self, partition: int, key: str, deadline: int | None) -> None:
        """Have the user processed by stream time ``deadline``. An earlier entry already in
        the heap stands (processing the user then schedules the later one); a deadline
        scheduled too early only costs a batch that changes nothing."""
        if deadline is None:
            return
        due = self._due.setdefault(partition, {})
        if key not in due or deadline < due[key]:
            due[key] = deadline
            heapq.heappush(self._deadlines.setdefault(partition, []), (deadline, key))

    def _publish_waiting(self) -> None:
        self.metrics.shows_waiting.set(sum(s for s, _ in self._waiting.values()))
        self.metrics.feedback_waiting.set(sum(f for _, f in self._waiting.values()))
